"""A/B helper for the serving path (not a benchmark: it runs two mltrail builds, no peer).

Registers the serving benchmark's two models once (bench/serving.py), starts `mltrail serve`
of both builds on the same model (default durability unless `--durability fsync`), and measures them in turns, A B A B…,
so that the disk's state and the machine's noise fall on both alike. Prints the median req/s
and p99 of each build per load, and the ratio. Every prediction is logged, so a 100-row load
writes about 200 MB/s; the log folders are removed at the end.

    .venv/bin/python bench/serving_ab.py --a /tmp/old/mltrail --b target/release/mltrail
    .venv/bin/python bench/serving_ab.py --a OLD --b NEW --model gbdt50 --rounds 5 100:16 100:64

With --auth-b, one build serves twice: A with auth off, B with `--auth on`, its requests carrying a
bearer token with the `predict` scope (the tracking server then runs with --auth on too): what
authentication costs a deployment.

    .venv/bin/python bench/serving_ab.py --a target/release/mltrail --b target/release/mltrail --auth-b 1:16

With --pii-b, one build serves two versions of one model trained on 20 features: A a plain one,
B the same file with a `mltrail.privacy` tag sealing 3 columns of the 20 (the issue's measure):
the subject f0, whose cells are whole-number customer ids in both A's and B's requests, and PII
f1 and f2. Both get the same body and log the same values; B seals three of them: what sealing
personal data costs a deployment. With --pii-subject beside, the subject is a `customer` id B's
requests send beside the 20 features instead (B then also parses and logs a 21st value). The
body's rows repeat, so after the first request every subject's key is in the serving process's
cache (the steady state of returning customers); a new subject costs one round trip to the
tracking server on top.

    .venv/bin/python bench/serving_ab.py --a target/release/mltrail --b target/release/mltrail --pii-b --model logreg 1:16 100:16

With --explain-b, one build serves one version twice: A with `--explain off`, B with `--explain always`
(each prediction's SHAP values computed while serving and stored in its record; interventional
TreeSHAP against 100 rows of the training data, which is added as a dataset and named on the
version): what explaining every prediction costs.

    .venv/bin/python bench/serving_ab.py --a target/release/mltrail --b target/release/mltrail --explain-b --model gbdt50d4 1:16 100:16

With --policy-b KIND, one build serves twice: A the model's version 1 alone, B a routing policy of
that kind over versions 1 and 2 (the same file registered again), every prediction logged with
its log signature: what routing costs a deployment (split 50/50, thompson with no rewards yet,
epsilon_greedy, or shadow, whose second arm scores every request on the shadow thread).

    .venv/bin/python bench/serving_ab.py --a target/release/mltrail --b target/release/mltrail --policy-b split 1:16 100:16
"""
import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import cpu_use
import serving

HERE = Path(__file__).resolve().parent


def drop_page_cache():
    """Empties the page cache (when allowed: root) so that every turn starts from the same state.

    On this VM, writing the log into the page cache is a third of a 100-row request's CPU, and its
    cost per byte doubled over a run as the cache filled (perf: copy_folio_from_iter_atomic);
    whichever build's turn came later paid more for the same bytes."""
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the build before (a baseline)")
    ap.add_argument("--b", required=True, help="the build after")
    ap.add_argument("--model", default="gbdt50", choices=["logreg", "gbdt50", "gbdt50d4"])
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk measurement")
    ap.add_argument("--durability", default="default", choices=["default", "fsync"])
    ap.add_argument("--rounds", type=int, default=4, help="turns of A then B per load")
    ap.add_argument("--auth-b", action="store_true", help="B serves with --auth on; its callers send a bearer token")
    ap.add_argument("--pii-b", action="store_true",
                    help="20 features; B serves a version sealing f1, f2 and a customer id sent beside them")
    ap.add_argument("--pii-subject", default="column", choices=["column", "beside"],
                    help="with --pii-b: the subject is model column f0 (3 sealed columns of 20), or sent beside")
    ap.add_argument("--explain-b", action="store_true",
                    help="B serves with --explain always (A with --explain off); the training data is added and named")
    ap.add_argument("--policy-b", choices=["split", "thompson", "epsilon_greedy", "shadow"],
                    help="B serves a routing policy of this kind over versions 1 and 2 of the model")
    ap.add_argument("loads", nargs="*", default=["1:1", "1:16", "1:64", "100:1", "100:16", "100:64"],
                    help="ROWS:CONNECTIONS")
    args = ap.parse_args()
    builds = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    work = Path(tempfile.mkdtemp(prefix="serving-ab-", dir=HERE / ".work" if (HERE / ".work").exists() else None))
    env = dict(os.environ, MLTRAIL_LOG="warn", PATH=f"{serving.VENV_BIN}:{os.environ['PATH']}")
    procs = []
    try:
        tport = serving.free_port()
        tracking = f"http://127.0.0.1:{tport}"
        auth = ["--auth", "on"] if args.auth_b else []
        if args.auth_b:
            env.update(MLTRAIL_ADMIN_PASSWORD="bench-password-0001", MLFLOW_TRACKING_USERNAME="admin",
                       MLFLOW_TRACKING_PASSWORD="bench-password-0001")
            os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="bench-password-0001")
        procs.append(serving.start([builds["B"], "server", "--port", str(tport), "--backend-store-uri", f"sqlite:///{work}/t.db",
                                    "--artifacts-destination", str(work / "artifacts"), *auth], tracking, env, "/health", work))
        tracking_pid = procs[-1].pid
        env["MLFLOW_TRACKING_URI"] = tracking
        authorization = {"A": None, "B": None}
        if args.auth_b:
            import subprocess
            secret = subprocess.run([builds["B"], "tokens", "create", "--name", "bench-scorer", "--scope", "predict",
                                     "--backend-store-uri", f"sqlite:///{work}/t.db"],
                                    check=True, capture_output=True, text=True, env=env).stdout.strip()
            authorization["B"] = f"Bearer {secret}"
        if args.pii_b:
            serving.FEATURES = 20
        frame, _ = serving.train_and_register(tracking)
        versions = {"A": "1", "B": "1"}
        explain = {"A": [], "B": []}
        if args.explain_b:
            import subprocess
            from mlflow import MlflowClient
            training = work / "training.csv"
            frame.to_csv(training, index=False)
            subprocess.run([builds["B"], "data", "add", str(training), "--name", "bench-train",
                            "--tracking-uri", tracking], check=True, capture_output=True, env=env)
            MlflowClient(tracking).set_model_version_tag(args.model, "1", "mltrail.training_data", "bench-train@1")
            explain = {"A": ["--explain", "off"], "B": ["--explain", "always"]}
        if args.pii_b:
            from mlflow import MlflowClient
            client = MlflowClient(tracking)
            source = client.get_model_version(args.model, "1").source
            subject = "f0" if args.pii_subject == "column" else "customer"
            sealed = client.create_model_version(args.model, source, tags={
                "mltrail.privacy": json.dumps({"subject": subject, "pii": ["f1", "f2"]})})
            versions["B"] = sealed.version
        served = {name: ["--model", f"{args.model}/{versions[name]}"] for name in builds}
        if args.policy_b:
            from mlflow import MlflowClient
            client = MlflowClient(tracking)
            source = client.get_model_version(args.model, "1").source
            second = client.create_model_version(args.model, source).version
            policy = work / "policy.toml"
            policy.write_text(f'kind = "{args.policy_b}"\narms = ["{args.model}/1", "{args.model}/{second}"]\n')
            served["B"] = ["--deployment", f"{args.model}-routed", "--policy", str(policy)]
        urls, pids = {}, {}
        for name, binary in builds.items():
            port = serving.free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            procs.append(serving.start([binary, "serve", *served[name], "--tracking-uri", tracking, "--port", str(port),
                                        "--durability", args.durability, "--log-dir", str(work / f"log-{name}"),
                                        *(auth if name == "B" else []), *explain[name]], urls[name], env, "/health", work))
            pids[name] = procs[-1].pid
        bodies = {}
        for load in args.loads:
            rows, conns = (int(x) for x in load.split(":"))
            text = bodies.setdefault(rows, serving.body(frame, rows))
            texts = {"A": text, "B": text}
            if args.pii_b and args.pii_subject == "column":
                # f0 carries whole-number customer ids, in both builds' requests alike.
                split = json.loads(text)["dataframe_split"]
                for i, row in enumerate(split["data"]):
                    row[0] = 1000 + i
                text = json.dumps({"dataframe_split": split})
                texts = {"A": text, "B": text}
            elif args.pii_b:
                split = json.loads(text)["dataframe_split"]
                split["columns"].append("customer")
                for i, row in enumerate(split["data"]):
                    row.append(f"customer-{i}")
                texts["B"] = json.dumps({"dataframe_split": split})
            runs = {"A": [], "B": []}
            for turn in range(args.rounds):
                # Who goes first alternates, and each turn starts once the page cache has written
                # the last turn's log out: a 100-row load logs hundreds of MB/s, and writeback
                # left over from one build's turn would otherwise slow the next build's.
                for name in (("A", "B") if turn % 2 == 0 else ("B", "A")):
                    os.sync()
                    drop_page_cache()
                    before = (cpu_use.process_seconds(pids[name]), cpu_use.machine_busy_seconds(), cpu_use.children_seconds(),
                              cpu_use.process_seconds(tracking_pid), cpu_use.written_bytes(pids[name]))
                    r = serving.wrk(urls[name], "/invocations", texts[name], conns, args.duration, authorization[name])
                    # CPU per request: steadier than req/s on this shared VM, whose speed drifts
                    # between turns. `cpu_us` is the deployment's own; `all_us` is the whole
                    # machine's but wrk's (the deployment, the kernel's writeback of its log, and
                    # the tracking server taking its archive), so bytes written count too.
                    done = r["rps"] * args.duration
                    if done <= 0:
                        # Seen once in dozens of runs (a 100-row turn on one connection): say so
                        # and keep the turn out of the medians rather than stop the whole run.
                        print(f"    {name}'s turn {turn} answered no request in {args.duration} s: {r}", flush=True)
                        continue
                    r["cpu_us"] = (cpu_use.process_seconds(pids[name]) - before[0]) / done * 1e6
                    r["written"] = (cpu_use.written_bytes(pids[name]) - before[4]) / done
                    r["tracking_us"] = (cpu_use.process_seconds(tracking_pid) - before[3]) / done * 1e6
                    r["all_us"] = ((cpu_use.machine_busy_seconds() - before[1]) - (cpu_use.children_seconds() - before[2])) / done * 1e6
                    runs[name].append(r)
            med = {n: (statistics.median(r["rps"] for r in rs), statistics.median(r["p99_ms"] for r in rs)) for n, rs in runs.items()}
            bad = sum(r["non_2xx"] for rs in runs.values() for r in rs)
            each = {n: ", ".join(f"{r['rps']:.0f}" for r in rs) for n, rs in runs.items()}
            print(f"{args.model} {args.durability} rows={rows:3d} c={conns:2d}: A {med['A'][0]:8.0f} req/s p99 {med['A'][1]:6.2f} ms | "
                  f"B {med['B'][0]:8.0f} req/s p99 {med['B'][1]:6.2f} ms | B/A {med['B'][0] / med['A'][0]:.2f}x"
                  f"  (A runs: {each['A']}; B runs: {each['B']})"
                  + (f"  NON-2XX {bad}" if bad else ""), flush=True)
            for key, what in (("cpu_us", "deployment CPU"), ("tracking_us", "tracking server CPU"), ("all_us", "machine CPU but wrk's")):
                cpu = {n: statistics.median(r[key] for r in rs) for n, rs in runs.items()}
                print(f"    {what} per request (median): A {cpu['A']:.1f} us | B {cpu['B']:.1f} us | "
                      f"A/B {cpu['A'] / cpu['B']:.2f}", flush=True)
            if args.policy_b == "shadow":
                import urllib.request
                metrics = urllib.request.urlopen(urls["B"] + "/metrics", timeout=10).read().decode()
                shadow = [line for line in metrics.splitlines() if line.startswith("mltrail_shadow_")]
                print(f"    B's shadow counters so far: {'; '.join(shadow)}", flush=True)
            written = {n: statistics.median(r["written"] for r in rs) for n, rs in runs.items()}
            print(f"    bytes written per request (log and response, median): A {written['A']:.0f} | B {written['B']:.0f} | "
                  f"B/A {written['B'] / written['A']:.2f}", flush=True)
    finally:
        for p in procs:
            serving.stop(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
