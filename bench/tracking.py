"""Measures mltrail server and mlflow server on the same machine, in one run.

Every write measured here is durable on both sides: mltrail acknowledges after a group-committed
fsync (SQLite WAL, synchronous=FULL); mlflow server commits through SQLAlchemy on SQLite.
Raw HTTP load comes from wrk; client-side numbers from the real mlflow client.

With `--baseline OTHER_BINARY` (an earlier build of mltrail), that build is measured the same way
right after this one, in the same run, and a before/after table is printed: how a change on the
tracking path is checked for a regression.
"""
import argparse
import base64
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BASELINE = "mltrail (baseline)"
VENV_BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Server:
    def __init__(self, label, cmd, cwd, port, db_path):
        self.label, self.port, self.db_path = label, port, db_path
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(Path(cwd) / "server.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_up(self.url, self.proc)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    # (user, password) when the server runs with --auth on.
    auth = None

    def post(self, path, body):
        r = requests.post(f"{self.url}/api/2.0/mlflow/{path}", json=body, timeout=600, auth=self.auth)
        r.raise_for_status()
        return r.json()


def start_mltrail(binary, root, label="mltrail", extra=()):
    d = Path(root) / label.replace(" ", "-").strip("()")
    d.mkdir()
    port = free_port()
    return Server(label, [os.path.abspath(binary), "server", "--port", str(port), *extra], d, port,
                  d / "mltrail-data" / "mltrail.db")


def start_mlflow(root, workers):
    d = Path(root) / f"mlflow-w{workers}"
    d.mkdir()
    port = free_port()
    cmd = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{d}/mlflow.db", "--artifacts-destination", str(d / "artifacts"),
           "--workers", str(workers)]
    return Server(f"mlflow --workers {workers}", cmd, d, port, d / "mlflow.db")


def fdatasync_rates(directory, seconds=3.0):
    """Two ceilings for a durable one-at-a-time write on this disk: 4 KiB appends, each
    followed by fdatasync (the file grows, so the filesystem journals its size too), and 4 KiB
    overwrites of an already allocated file, each followed by fdatasync (what a recycled
    SQLite WAL does once it has wrapped)."""
    block = b"x" * 4096
    path = Path(directory) / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.write(fd, block)
        os.fdatasync(fd)
        n += 1
    append = n / (time.perf_counter() - start)
    os.close(fd)
    path.unlink()
    blocks = 2048
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for i in range(blocks):
        os.pwrite(fd, block, i * 4096)
    os.fsync(fd)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        os.pwrite(fd, block, (n % blocks) * 4096)
        os.fdatasync(fd)
        n += 1
    overwrite = n / (time.perf_counter() - start)
    os.close(fd)
    path.unlink()
    return append, overwrite


LUA = {
    "log_metric": """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"run_id":"%s","key":"m","value":%d,"timestamp":%d,"step":%d}', "{RUN}", counter, counter, counter)
  return wrk.format("POST", "/api/2.0/mlflow/runs/log-metric", {["Content-Type"]="application/json"}, body)
end
""",
    "create_run": """
request = function()
  return wrk.format("POST", "/api/2.0/mlflow/runs/create", {["Content-Type"]="application/json"}, '{"experiment_id":"{EXP}"}')
end
""",
    "log_param": """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"run_id":"%s","key":"p%d","value":"v"}', "{RUN}", counter)
  return wrk.format("POST", "/api/2.0/mlflow/runs/log-parameter", {["Content-Type"]="application/json"}, body)
end
""",
    "log_batch": """
counter = 0
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 1000 do
    parts[i] = string.format('{"key":"b%d","value":%d.5,"timestamp":%d,"step":%d}', i % 10, i, counter, counter * 1000 + i)
  end
  local body = '{"run_id":"{RUN}","metrics":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/api/2.0/mlflow/runs/log-batch", {["Content-Type"]="application/json"}, body)
end
""",
}


def wrk(server, script, conns, duration, **subst):
    text = LUA[script]
    if server.auth:
        # Every request carries the credentials, as the mlflow client sends them.
        token = base64.b64encode(f"{server.auth[0]}:{server.auth[1]}".encode()).decode()
        text = text.replace('{["Content-Type"]="application/json"}',
                            '{["Content-Type"]="application/json", ["Authorization"]="Basic ' + token + '"}')
    for k, v in subst.items():
        text = text.replace("{" + k + "}", v)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(text)
    threads = min(conns, 2)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "30s", "-s", f.name, server.url],
                         capture_output=True, text=True, timeout=duration + 120).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = None
    if p99:
        p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else "", "p99_ms": p99_ms}


def client_rates(server, seconds, max_calls):
    """The real mlflow client, one call at a time."""
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(server.url)
    exp = client.create_experiment(f"client-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(exp).info.run_id

    def rate(fn):
        n, start = 0, time.perf_counter()
        while n < max_calls and time.perf_counter() - start < seconds:
            fn(n)
            n += 1
        return n / (time.perf_counter() - start)

    ts = int(time.time() * 1000)
    res = {
        "client_log_metric_per_s": rate(lambda i: client.log_metric(run_id, "m", float(i), step=i)),
        "client_create_run_per_s": rate(lambda i: client.create_run(exp)),
        "client_log_param_per_s": rate(lambda i: client.log_param(run_id, f"p{i}", "v")),
    }
    batch_rate = rate(lambda i: client.log_batch(run_id, metrics=[Metric(f"b{k % 10}", float(k), ts, i * 1000 + k) for k in range(1000)]))
    res["client_log_batch_values_per_s"] = batch_rate * 1000
    return res


def populate_mltrail(server, exp_id, runs):
    """Through the API (so the audit trail is real): create_run + log_batch per run, 16 clients."""
    rng = random.Random(7)
    values = [(rng.random(), rng.choice("abcd")) for _ in range(runs)]
    next_index = iter(range(runs))
    lock = threading.Lock()

    def worker():
        s = requests.Session()
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            r = s.post(f"{server.url}/api/2.0/mlflow/runs/create", json={"experiment_id": exp_id, "run_name": f"r{i}"}).json()
            run_id = r["run"]["info"]["run_id"]
            m, p = values[i]
            s.post(f"{server.url}/api/2.0/mlflow/runs/log-batch",
                   json={"run_id": run_id, "metrics": [{"key": "m", "value": m, "timestamp": 1, "step": 0}], "params": [{"key": "p", "value": p}]}).raise_for_status()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def populate_mlflow_sql(server, exp_id, runs):
    """MLflow creates ~5 runs/s over REST here, so 100k runs (5+ hours) go straight into its own
    schema with one transaction; the server then searches them exactly as if logged by clients."""
    rng = random.Random(7)
    con = sqlite3.connect(server.db_path)
    now = int(time.time() * 1000)
    rows_runs, rows_metrics, rows_params, rows_tags = [], [], [], []
    for i in range(runs):
        rid = uuid.uuid4().hex
        m, p = rng.random(), rng.choice("abcd")
        rows_runs.append((rid, f"r{i}", "UNKNOWN", "", "", "bench", "RUNNING", now + i, None, "", "active", f"mlflow-artifacts:/{exp_id}/{rid}/artifacts", int(exp_id)))
        rows_metrics.append(("m", m, 1, 0, 0, rid))
        rows_params.append(("p", p, rid))
        rows_tags.append(("mlflow.runName", f"r{i}", rid))
    with con:
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows_runs)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", rows_metrics)
        con.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", rows_metrics)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", rows_params)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", rows_tags)
    con.close()


def search_ms(server, exp_id, repeats):
    body = {"experiment_ids": [exp_id], "filter": "metrics.m > 0.5 and params.p = 'a'", "order_by": ["metrics.m DESC"], "max_results": 100}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        r = requests.post(f"{server.url}/api/2.0/mlflow/runs/search", json=body, timeout=600)
        r.raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
        n = len(r.json().get("runs", []))
    return statistics.median(times), n


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mltrail", required=True)
    ap.add_argument("--runs", type=int, default=100_000, help="runs to search over")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk measurement")
    ap.add_argument("--client-seconds", type=float, default=8)
    ap.add_argument("--baseline", help="an earlier mltrail binary to measure beside --mltrail (before/after)")
    ap.add_argument("--keep", action="store_true", help="keep the servers' data folders")
    ap.add_argument("--out", default=str(HERE / "results" / "tracking.json"))
    args = ap.parse_args()

    # On the project's disk (not a tmpfs), so the fsync probe and both databases share a device.
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    root = tempfile.mkdtemp(prefix="run-", dir=work)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.platform()}",
               "runs_searched": args.runs, "servers": {}}
    results["fdatasync_per_s"], results["fdatasync_overwrite_per_s"] = fdatasync_rates(root)
    print(f"fdatasync on this disk: {results['fdatasync_per_s']:.0f}/s appending 4 KiB, {results['fdatasync_overwrite_per_s']:.0f}/s overwriting 4 KiB", flush=True)

    starters = [lambda: start_mltrail(args.mltrail, root)]
    if args.baseline:
        starters.append(lambda: start_mltrail(args.baseline, root, BASELINE))
    starters += [lambda: start_mlflow(root, 1), lambda: start_mlflow(root, 4)]
    for starter in starters:
        server = starter()
        print(f"\n== {server.label}", flush=True)
        r = {}
        try:
            exp = server.post("experiments/create", {"name": "wrk"})["experiment_id"]
            run = server.post("runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
            for name, script, conns in [("create_run c1", "create_run", 1), ("log_metric c1", "log_metric", 1), ("log_metric c8", "log_metric", 8),
                                        ("log_metric c64", "log_metric", 64), ("log_param c1", "log_param", 1), ("log_batch c1", "log_batch", 1)]:
                if script in ("log_param", "log_batch"):
                    run = server.post("runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
                r[name] = wrk(server, script, conns, args.duration, RUN=run, EXP=exp)
                print(f"  {name:<16} {r[name]['rps']:>10.1f} req/s  p99 {r[name]['p99_ms']} ms  non-2xx {r[name]['non_2xx']} {r[name]['socket_errors']}", flush=True)
            r.update(client_rates(server, args.client_seconds, 5000))
            for k in ("client_log_metric_per_s", "client_create_run_per_s", "client_log_param_per_s", "client_log_batch_values_per_s"):
                print(f"  {k:<32} {r[k]:>10.1f}", flush=True)
            search_exp = server.post("experiments/create", {"name": "search"})["experiment_id"]
            start = time.perf_counter()
            if server.label in ("mltrail", BASELINE):
                populate_mltrail(server, search_exp, args.runs)
                how = "through the API"
            else:
                populate_mlflow_sql(server, search_exp, args.runs)
                how = "by SQL into mlflow's schema"
            print(f"  populated {args.runs} runs {how} in {time.perf_counter() - start:.1f} s", flush=True)
            median, n = search_ms(server, search_exp, 21 if server.label in ("mltrail", BASELINE) else 3)
            r["search_runs_median_ms"], r["search_runs_returned"] = median, n
            print(f"  search_runs over {args.runs} runs: median {median:.1f} ms ({n} runs returned)", flush=True)
        finally:
            server.stop()
        results["servers"][server.label] = r

    ours = results["servers"]["mltrail"]
    theirs = {k: v for k, v in results["servers"].items() if k not in ("mltrail", BASELINE)}

    def best(key, field=None, lower=False):
        vals = [(v[key][field] if field else v[key]) for v in theirs.values()]
        return min(vals) if lower else max(vals)

    print("\n== mltrail vs the faster mlflow configuration (ratio > 1 means mltrail is better)")
    rows = []
    for key in ("create_run c1", "log_metric c1", "log_metric c8", "log_metric c64", "log_param c1", "log_batch c1"):
        mine, other = ours[key]["rps"], best(key, "rps")
        rows.append((f"{key} (raw HTTP, req/s)", mine, other, mine / other))
    for key in ("client_log_metric_per_s", "client_create_run_per_s", "client_log_param_per_s", "client_log_batch_values_per_s"):
        mine, other = ours[key], best(key)
        rows.append((key, mine, other, mine / other))
    mine, other = ours["search_runs_median_ms"], best("search_runs_median_ms", lower=True)
    rows.append((f"search_runs over {args.runs} runs (median ms)", mine, other, other / mine))
    batch_values = ours["log_batch c1"]["rps"] * 1000
    rows.append(("log_batch metric values/s (raw HTTP)", batch_values, best("log_batch c1", "rps") * 1000, batch_values / (best("log_batch c1", "rps") * 1000)))
    for name, mine, other, ratio in rows:
        print(f"  {name:<48} mltrail {mine:>12.1f}   mlflow {other:>10.1f}   ratio {ratio:>8.1f}x")
    for key in ("log_metric c1", "create_run c1"):
        share_append = ours[key]["rps"] / results["fdatasync_per_s"] * 100
        share_overwrite = ours[key]["rps"] / results["fdatasync_overwrite_per_s"] * 100
        print(f"  {key} as a share of this disk's fdatasync rate: {share_append:.0f} % (appends), {share_overwrite:.0f} % (overwrites)")
    results["ratios"] = {name: ratio for name, _, _, ratio in rows}
    if args.baseline:
        before = results["servers"][BASELINE]
        print("\n== before/after (baseline -> this build; ratio > 1 means this build is better)")
        changes = {}
        for key in ("create_run c1", "log_metric c1", "log_metric c8", "log_metric c64", "log_param c1", "log_batch c1"):
            changes[f"{key} req/s"] = (before[key]["rps"], ours[key]["rps"], ours[key]["rps"] / before[key]["rps"])
        for key in ("client_log_metric_per_s", "client_create_run_per_s", "client_log_param_per_s", "client_log_batch_values_per_s"):
            changes[key] = (before[key], ours[key], ours[key] / before[key])
        b, o = before["search_runs_median_ms"], ours["search_runs_median_ms"]
        changes["search_runs median ms"] = (b, o, b / o)
        for name, (b, o, ratio) in changes.items():
            print(f"  {name:<40} {b:>12.1f} -> {o:>12.1f}   {ratio:.2f}x")
        results["before_after"] = {name: ratio for name, (_, _, ratio) in changes.items()}
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {args.out}")


if __name__ == "__main__":
    main()
