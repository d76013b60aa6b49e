"""`mlflow models serve` against `mltrail serve` on the same registered ONNX models, in one run.

mltrail logs every prediction to its durable log before answering (default: written to the
segment, fsync every 5 ms; --durability fsync: group-committed fsync before the answer). mlflow
keeps no record of what it served. Load comes from wrk on the same 2 cores.

With `--baseline OTHER_BINARY` (an earlier build of mltrail), that build also serves each model
with default durability, in the same run and against the same registry, and a before/after table
is printed: how a change on the serving path is checked for a regression.
"""
import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
FEATURES = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url, proc, path="/health", timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if requests.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def rss_mib(pid):
    """Resident memory of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = open(f"/proc/{p}/task/{p}/children").read().split()
            todo.extend(int(c) for c in children)
        except OSError:
            pass
    return total / 1024


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""


def wrk(url, path, body, conns, duration, authorization=None):
    os.sync()  # start every run with the previous runs' log data on disk, not in the page cache
    script = LUA.replace("{body}", body)
    if authorization:
        script += f'wrk.headers["Authorization"] = "{authorization}"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    threads = min(conns, 2)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "30s",
                          "-s", f.name, url + path], capture_output=True, text=True, timeout=duration + 120).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p):
        m = re.search(rf"\b{p}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else None

    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else None}


def train_and_register(tracking):
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking)
    x, y = make_classification(n_samples=5000, n_features=FEATURES, n_informative=6, random_state=0)
    x = x.astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    models = {
        "logreg": LogisticRegression(max_iter=1000).fit(x, y),
        "gbdt50": GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0).fit(x, y),
        # What explanation costs are measured on (bench/serving_ab.py --explain-b).
        "gbdt50d4": GradientBoostingClassifier(n_estimators=50, max_depth=4, random_state=0).fit(x, y),
    }
    mlflow.set_experiment("serving-bench")
    for name, est in models.items():
        onnx_model = to_onnx(est, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})  # ZipMap on: mlflow can answer DataFrames
        with mlflow.start_run():
            mlflow.onnx.log_model(onnx_model, name="model", registered_model_name=name,
                                  signature=infer_signature(frame, y))
    kernels = {
        "gbdt50 (depth 3)": to_onnx(models["gbdt50"], x[:1], options={id(models["gbdt50"]): {"zipmap": False}},
                                   target_opset={"": 17, "ai.onnx.ml": 3}),
    }
    rf = RandomForestClassifier(n_estimators=50, max_depth=12, random_state=0).fit(x, y)
    kernels["rf50 (depth 12)"] = to_onnx(rf, x[:1], options={id(rf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    return frame, kernels


def body(frame, rows):
    part = frame.head(rows)
    return json.dumps({"dataframe_split": {"columns": list(part.columns), "data": part.values.tolist()}})


def start(cmd, url, env, path, work):
    log = open(work / f"{url.rsplit(':', 1)[1]}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_up(url, proc, path)
    return proc


def stop(proc):
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    except Exception:
        proc.kill()


def ort_rows_per_sec(model_bytes, batch=1000, seconds=3.0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-2, 2, (batch, FEATURES)).astype(np.float32)
    name = s.get_inputs()[0].name
    for _ in range(3):
        s.run(None, {name: x})
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        s.run(None, {name: x})
        n += 1
    el = time.perf_counter() - t
    return {"rows_per_sec": n * batch / el, "ms_per_batch": el * 1000 / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mltrail", required=True)
    ap.add_argument("--kernel-bench", required=True)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--baseline", help="an earlier mltrail binary to serve beside --mltrail (before/after)")
    ap.add_argument("--kernel-only", action="store_true", help="only the tree-kernel comparison (results in serving-kernel.json)")
    args = ap.parse_args()
    mltrail = str(Path(args.mltrail).resolve())
    work = Path(tempfile.mkdtemp(prefix="serving-bench-", dir=HERE / ".work" if (HERE / ".work").exists() else None))
    env = dict(os.environ, MLTRAIL_LOG="warn", PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "duration_s": args.duration, "runs": [], "kernel": {}, "memory_mib": {}}

    tport = free_port()
    tracking = f"http://127.0.0.1:{tport}"
    tproc = start([mltrail, "server", "--port", str(tport), "--backend-store-uri", f"sqlite:///{work}/t.db",
                   "--artifacts-destination", str(work / "artifacts")], tracking, env, "/health", work)
    env["MLFLOW_TRACKING_URI"] = tracking
    try:
        frame, kernels = train_and_register(tracking)
        for label, model in kernels.items():
            path = work / f"{label.split()[0]}.onnx"
            path.write_bytes(model.SerializeToString())
            ours = json.loads(subprocess.run([args.kernel_bench, str(path), "1000", "3"], capture_output=True, text=True, check=True).stdout)
            theirs = ort_rows_per_sec(model.SerializeToString())
            results["kernel"][label] = {"mltrail_rows_per_sec": ours["rows_per_sec"], "onnxruntime_rows_per_sec": theirs["rows_per_sec"],
                                        "mltrail_ms_per_1000": ours["ms_per_batch"], "onnxruntime_ms_per_1000": theirs["ms_per_batch"]}
            print(f"kernel {label}: mltrail {ours['rows_per_sec']:,.0f} rows/s, onnxruntime {theirs['rows_per_sec']:,.0f} rows/s "
                  f"({ours['rows_per_sec'] / theirs['rows_per_sec']:.2f}x)", flush=True)

        bodies = {1: body(frame, 1), 100: body(frame, 100)}
        for model in ([] if args.kernel_only else ["logreg", "gbdt50"]):
            targets = []
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            mlflow_proc = start([str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{model}/1", "--env-manager", "local",
                                 "-h", "127.0.0.1", "-p", str(port)], url, env, "/ping", work)
            targets.append(("mlflow models serve", url, mlflow_proc, "/invocations", [1, 16, 64]))
            for durability, concs in [("default", [1, 16, 64]), ("fsync", [16, 64])]:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = start([mltrail, "serve", "--model", f"{model}/1", "--tracking-uri", tracking, "--port", str(port),
                              "--durability", durability, "--log-dir", str(work / f"log-{model}-{durability}")], url, env, "/health", work)
                targets.append((f"mltrail serve ({durability})", url, proc, "/invocations", concs))
                if durability == "default":
                    # The ceiling is measured beside each model, in the same run.
                    targets.append(("no-op ceiling (mltrail)", url, None, "/api/v1/noop", [1, 16, 64]))
            if args.baseline:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = start([str(Path(args.baseline).resolve()), "serve", "--model", f"{model}/1", "--tracking-uri", tracking,
                              "--port", str(port), "--log-dir", str(work / f"log-{model}-baseline")], url, env, "/health", work)
                # Measured just before this build's default runs, so the two are next to each other in time.
                targets.insert(1, ("baseline mltrail serve (default)", url, proc, "/invocations", [1, 16, 64]))
            # Same answers before measuring speed.
            a = requests.post(targets[0][1] + "/invocations", data=bodies[100], headers={"Content-Type": "application/json"}).json()
            ours = next(t for t in targets if t[0] == "mltrail serve (default)")
            b = requests.post(ours[1] + "/invocations", data=bodies[100], headers={"Content-Type": "application/json"}).json()
            def close(x, y):
                if isinstance(x, dict) and isinstance(y, dict):
                    return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
                if isinstance(x, list) and isinstance(y, list):
                    return len(x) == len(y) and all(close(p, q) for p, q in zip(x, y))
                if isinstance(x, float) or isinstance(y, float):
                    return abs(x - y) <= 1e-6
                return x == y

            same = close(a, b)
            print(f"{model}: mlflow and mltrail answers are the same JSON (floats within 1e-6) on 100 rows: {same}", flush=True)
            results.setdefault("agree", {})[model] = same
            for label, url, proc, path, concs in targets:
                for rows, text in bodies.items():
                    for c in concs:
                        r = wrk(url, path, text, c, args.duration)
                        r.update({"model": model, "server": label, "rows": rows, "concurrency": c})
                        results["runs"].append(r)
                        print(f"{model:7s} {label:28s} rows={rows:3d} c={c:2d}: {r['rps']:9.0f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms"
                              + (f"  NON-2XX {r['non_2xx']}" if r["non_2xx"] else ""), flush=True)
                if proc is not None:
                    results["memory_mib"][f"{model} {label}"] = rss_mib(proc.pid)
            for _, _, proc, _, _ in targets:
                if proc is not None:
                    stop(proc)
    finally:
        stop(tproc)
        # Every prediction of every run is logged: tens of GB after a full run.
        shutil.rmtree(work, ignore_errors=True)

    def find(model, server, rows, c):
        for r in results["runs"]:
            if (r["model"], r["server"], r["rows"], r["concurrency"]) == (model, server, rows, c):
                return r
        return None

    failed = [r for r in results["runs"] if r["non_2xx"]]
    if failed:
        print(f"\nWARNING: {len(failed)} runs had non-2xx answers; their req/s are not comparable", flush=True)
    if args.kernel_only:
        out = HERE / "results" / "serving-kernel.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({k: results[k] for k in ("machine", "date", "kernel")}, indent=1) + "\n")
        print(f"results in {out}")
        return
    print("\nratios (mltrail / mlflow req/s):")
    for model in ["logreg", "gbdt50"]:
        for rows in [1, 100]:
            for c in [1, 16, 64]:
                m, o = find(model, "mlflow models serve", rows, c), find(model, "mltrail serve (default)", rows, c)
                f = find(model, "mltrail serve (fsync)", rows, c)
                line = f"  {model:7s} rows={rows:3d} c={c:2d}: default {o['rps'] / m['rps']:7.1f}x"
                if f:
                    line += f", fsync {f['rps'] / m['rps']:7.1f}x"
                n = find(model, "no-op ceiling (mltrail)", rows, c)
                if n:
                    line += f"; default vs no-op: {o['rps'] / n['rps'] * 100:5.1f}% of req/s, p99 {o['p99_ms'] / n['p99_ms']:.2f}x"
                print(line)
    if args.baseline:
        print("\nbefore/after (baseline -> this build, default durability, req/s and p99 ms):")
        for model in ["logreg", "gbdt50"]:
            for rows in [1, 100]:
                for c in [1, 16, 64]:
                    b, o = find(model, "baseline mltrail serve (default)", rows, c), find(model, "mltrail serve (default)", rows, c)
                    print(f"  {model:7s} rows={rows:3d} c={c:2d}: {b['rps']:9.0f} -> {o['rps']:9.0f} req/s ({o['rps'] / b['rps']:.2f}x), "
                          f"p99 {b['p99_ms']} -> {o['p99_ms']} ms")
    print("memory (MiB):", json.dumps(results["memory_mib"], indent=1))
    out = HERE / "results" / "serving.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
