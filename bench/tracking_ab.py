"""A/B helper for the tracking write path (not a benchmark: it runs mltrail alone, no peer).

Starts one `mltrail server` on a fresh database in bench/.work, runs the chosen wrk scripts of
bench/tracking.py against it, prints req/s and p99, and removes the database. Alternate two
builds to compare them on this noisy VM:

    .venv/bin/python bench/tracking_ab.py --binary /tmp/old/mltrail log_metric:1 log_metric:64
    .venv/bin/python bench/tracking_ab.py --binary target/release/mltrail log_metric:1 log_metric:64

With --postgres the server runs on a throwaway PostgreSQL (scripts/pg.sh) instead of SQLite. With
--auth the server runs with --auth on and every request carries an admin's Basic credentials
(as the mlflow client sends them on every call): alternate runs with and without it to measure
what authentication costs. --send-credentials sends the same header to a server with auth off, so
both runs give wrk (which shares the 2 cores) the same work.
"""
import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cpu_use
import tracking

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(HERE.parent / "target" / "release" / "mltrail"))
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk measurement")
    ap.add_argument("--postgres", action="store_true", help="run the server on a throwaway PostgreSQL")
    ap.add_argument("--auth", action="store_true", help="run the server with --auth on; requests send Basic credentials")
    ap.add_argument("--as-user", action="store_true",
                    help="with --auth: send the credentials of a user who is not an admin (their requests are "
                         "checked resource by resource; the experiment is theirs, so they MANAGE it)")
    ap.add_argument("--send-credentials", action="store_true",
                    help="send the same Basic credentials to a server with auth off: the client's work (wrk shares "
                         "the machine) is then the same as with --auth, and the difference is the server's")
    ap.add_argument("loads", nargs="*", default=["create_run:1", "log_metric:1", "log_metric:64", "log_batch:1"],
                    help=f"SCRIPT:CONNECTIONS, SCRIPT one of {', '.join(tracking.LUA)}")
    args = ap.parse_args()
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    root = tempfile.mkdtemp(prefix="ab-", dir=work)
    try:
        append, overwrite = tracking.fdatasync_rates(root, 2.0)
        print(f"fdatasync: {append:.0f}/s appending, {overwrite:.0f}/s overwriting")
        extra = []
        if args.postgres:
            os.chmod(root, 0o755)
            uri = subprocess.run([str(HERE.parent / "scripts" / "pg.sh"), "start", f"{root}/pg"], check=True,
                                 capture_output=True, text=True).stdout.strip()
            extra = ["--backend-store-uri", uri]
        if args.auth:
            os.environ["MLTRAIL_ADMIN_PASSWORD"] = "bench-password-0001"
            extra = [*extra, "--auth", "on"]
        server = tracking.start_mltrail(args.binary, root, extra=extra)
        if args.auth or args.send_credentials:
            server.auth = ("admin", "bench-password-0001")
        if args.auth and args.as_user:
            store = f"sqlite:///{os.path.abspath(server.db_path)}"
            subprocess.run([os.path.abspath(args.binary), "users", "create", "bench-user", "--password-stdin",
                            "--backend-store-uri", store], input="bench-user-password\n", text=True,
                           check=True, capture_output=True)
            server.auth = ("bench-user", "bench-user-password")
        try:
            exp = server.post("experiments/create", {"name": "ab"})["experiment_id"]
            for load in args.loads:
                script, conns = load.split(":")
                run = server.post("runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
                before = cpu_use.process_seconds(server.proc.pid)
                r = tracking.wrk(server, script, int(conns), args.duration, RUN=run, EXP=exp)
                # The server's own CPU per request: on this shared VM a steadier measure of what
                # a change costs than req/s, which wrk (on the same 2 cores) and the disk move.
                cpu_us = (cpu_use.process_seconds(server.proc.pid) - before) / (r["rps"] * args.duration) * 1e6
                print(f"{script} c{conns}: {r['rps']:.0f} req/s  p99 {r['p99_ms']} ms  non-2xx {r['non_2xx']}"
                      f"  server CPU {cpu_us:.1f} us/request", flush=True)
        finally:
            server.stop()
    finally:
        if args.postgres:
            subprocess.run([str(HERE.parent / "scripts" / "pg.sh"), "stop", f"{root}/pg"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
