"""`mltrail import mlflow` against moving the same history with mlflow-export-import.

Makes an MLflow 3 SQLite database (schema made by MLflow itself) holding RUNS runs, each with
5 params, 3 tags and METRICS metrics of STEPS steps, then:

1. times `mltrail import mlflow sqlite:///…` of the whole database (the issue's 100,000 runs x
   10 metrics x 100 steps = 100 million values);
2. on a smaller copy (PEER_RUNS runs), times mlflow-export-import 1.2.0 (the MLflow project's own
   tool: export-experiments from an `mlflow server` over the source, import-experiments into an
   `mlflow server` over an empty database) and mltrail's import of that same copy, and prints
   the ratio. The peer moves everything through REST calls, run by run, so it is measured on
   fewer runs; both rates are per run.

    .venv/bin/python bench/import_mlflow.py [--runs 100000] [--peer-runs 200]

Needs target/release/mltrail (cargo build --release -p mltrail). Work files go to
bench/.work/import (tens of GB at full size; removed at the end unless --keep).
"""
import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "import"
BINARY = ROOT / "target" / "release" / "mltrail"


def make_source(path, runs, metrics, steps, experiments=10):
    """An MLflow database with the schema MLflow itself creates, filled directly (logging 100
    million values through MLflow's API would take days)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "mlartifacts"))
    store.engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -1000000")
    now = 1_700_000_000_000
    for e in range(1, experiments + 1):
        con.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (?, ?, ?, 'active', ?, ?)",
            (e, f"experiment-{e}", f"mlflow-artifacts:/{e}", now, now),
        )
    keys = [f"metric_{k}" for k in range(metrics)]
    started = time.time()
    per_batch = 500
    for first in range(0, runs, per_batch):
        run_rows, params, tags, values, latest = [], [], [], [], []
        for r in range(first, min(first + per_batch, runs)):
            run_id = uuid.UUID(int=r + 1).hex
            experiment = 1 + r % experiments
            start = now + r * 1000
            run_rows.append((run_id, f"run-{r}", "LOCAL", "train.py", "", "bench", "FINISHED", start, start + 900,
                             "", "active", f"mlflow-artifacts:/{experiment}/{run_id}/artifacts", experiment))
            params += [(f"param_{p}", f"{(r * 7 + p) % 1000 / 1000}", run_id) for p in range(5)]
            tags += [("mlflow.runName", f"run-{r}", run_id), ("mlflow.user", "bench", run_id),
                     ("mlflow.source.name", "train.py", run_id)]
            for k, key in enumerate(keys):
                for step in range(steps):
                    value = ((r * 31 + k * 17 + step) % 9973) / 9973.0
                    values.append((key, value, start + step, run_id, step, 0))
                latest.append((key, value, start + steps - 1, steps - 1, 0, run_id))
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)", values)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)", latest)
        con.commit()
        done = min(first + per_batch, runs)
        if done % 10_000 == 0 or done == runs:
            print(f"  source: {done}/{runs} runs written ({time.time() - started:.0f} s)", file=sys.stderr)
    con.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mltrail_import(source, target):
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BINARY), "import", "mlflow", f"sqlite:///{source}", "--backend-store-uri", f"sqlite:///{target}/mltrail.db",
         "--artifacts-destination", str(target / "artifacts"), "--no-artifacts", "--json"],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"mltrail import failed: {done.stderr}")
    return seconds, json.loads(done.stdout)


def start_mlflow(backend, folder):
    port = free_port()
    log = open(folder / f"mlflow-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
         str(folder / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
    )
    import requests

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return proc, f"http://127.0.0.1:{port}"
        except requests.RequestException:
            time.sleep(0.3)
    proc.kill()
    sys.exit("mlflow server did not start")


def export_import_peer(source, folder):
    """mlflow-export-import's bulk export and import of every experiment, timed end to end."""
    lib = WORK / "export-import-lib"
    if not (lib / "mlflow_export_import").exists() or not (lib / "tabulate").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--target", str(lib), "mlflow-export-import==1.2.0", "shortuuid", "tabulate"], check=True)
    env = dict(os.environ, PYTHONPATH=str(lib), MLFLOW_DISABLE_TELEMETRY="true")
    exported = folder / "exported"
    shutil.rmtree(exported, ignore_errors=True)
    src_proc, src_url = start_mlflow(f"sqlite:///{source}", folder)
    dst_db = folder / "peer-target.db"
    dst_db.unlink(missing_ok=True)
    dst_proc, dst_url = start_mlflow(f"sqlite:///{dst_db}", folder)
    try:
        def tool(module, *args, url):
            done = subprocess.run([sys.executable, "-m", f"mlflow_export_import.bulk.{module}", *args],
                                  env=dict(env, MLFLOW_TRACKING_URI=url), capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{module} failed: {done.stderr[-3000:]}")

        started = time.perf_counter()
        tool("export_experiments", "--experiments", "all", "--output-dir", str(exported), url=src_url)
        exported_at = time.perf_counter()
        tool("import_experiments", "--input-dir", str(exported), url=dst_url)
        finished = time.perf_counter()
    finally:
        for proc in (src_proc, dst_proc):
            proc.terminate()
            proc.wait(timeout=30)
    con = sqlite3.connect(dst_db)
    moved = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    values = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    con.close()
    return finished - started, exported_at - started, moved, values


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--peer-runs", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit("build it first: cargo build --release -p mltrail")
    WORK.mkdir(parents=True, exist_ok=True)

    big = WORK / "full"
    big.mkdir(exist_ok=True)
    source = big / "mlflow.db"
    if not source.exists():
        print(f"making an MLflow database of {args.runs} runs x {args.metrics} metrics x {args.steps} steps",
              file=sys.stderr)
        make_source(source, args.runs, args.metrics, args.steps)
    seconds, summary = mltrail_import(source, big / "target")
    values = args.runs * args.metrics * args.steps
    print(f"mltrail import: {summary['runs']['imported']} runs, {values:,} metric values in {seconds:.1f} s "
          f"({summary['runs']['imported'] / seconds:,.0f} runs/s, {values / seconds / 1e6:.2f} M values/s); "
          f"source {source.stat().st_size / 1e9:.1f} GB, target {(big / 'target' / 'mltrail.db').stat().st_size / 1e9:.1f} GB")
    again, repeat = mltrail_import_again(source, big / "target")
    print(f"mltrail import again (nothing to do): {again:.1f} s, {repeat['runs']['imported']} runs imported")

    small = WORK / "peer"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir()
    peer_source = small / "mlflow.db"
    make_source(peer_source, args.peer_runs, args.metrics, args.steps, experiments=2)
    peer_seconds, export_seconds, moved, moved_values = export_import_peer(peer_source, small)
    ours, _ = mltrail_import(peer_source, small / "target")
    print(f"{args.peer_runs} runs: mlflow-export-import {peer_seconds:.1f} s (export {export_seconds:.1f} s; moved "
          f"{moved} runs, {moved_values:,} values), mltrail import {ours:.2f} s: ratio {peer_seconds / ours:.0f}x")
    print(f"at the peer's rate, {args.runs} runs would take {peer_seconds / args.peer_runs * args.runs / 3600:.1f} h")
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)


def mltrail_import_again(source, target):
    started = time.perf_counter()
    done = subprocess.run(
        [str(BINARY), "import", "mlflow", f"sqlite:///{source}", "--backend-store-uri", f"sqlite:///{target}/mltrail.db",
         "--artifacts-destination", str(target / "artifacts"), "--no-artifacts", "--json"],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        sys.exit(f"mltrail import failed: {done.stderr}")
    return time.perf_counter() - started, json.loads(done.stdout)


if __name__ == "__main__":
    main()
