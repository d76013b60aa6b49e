"""Soak: the tracking server and a serving deployment under steady load at 80 % of what they
manage together, with a monitor evaluating the deployment's traffic, for 30 minutes.

1. Capacity: wrk at full speed against both at once (log-metric, 16 connections; 1-row
   /api/v1/predict, 16 connections) for --capacity-seconds.
2. Soak: both loads at 80 % of those rates (wrk with a per-connection delay of about 4 ms and
   as many connections as that rate needs, re-aimed after every chunk), in chunks of
   --chunk-seconds, for --minutes; RSS of both processes sampled every 2 s; after the run, the
   monitor's evaluated windows are counted.
Prints and writes bench/results/soak.json and an RSS/p99-over-time plot (--plot). Passes when
there were 0 errors, RSS is flat after the first quarter (the median of each fifth of the rest
within +-10 % of their mean: archiving a segment makes short peaks, growth moves the medians),
and no chunk's p99 exceeds 3x the median chunk's. Not a test: a 30-minute benchmark
(docs/reliability.md).
"""
import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BODY_PREDICT = json.dumps({"inputs": [[0.5, -1.2, 0.3, 2.0, 0.1, -0.7]]})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait_up(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
{delay}
"""


def wrk(url, body, conns, seconds, delay_ms=None):
    delay = f"function delay() return {delay_ms} end" if delay_ms else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.format(body=body, delay=delay))
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                              "-s", f.name, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return {
        "rps": rps,
        "requests": requests_done,
        "errors": (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0),
        "p99_ms": float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else None,
    }


def both(tracking_url, serving_url, conns, seconds, delays=(None, None)):
    """Runs the tracking and the serving load at the same time; `conns` per load."""
    results = {}

    def go(name, url, body, c, delay):
        results[name] = wrk(url, body, c, seconds, delay)

    threads = [
        threading.Thread(target=go, args=("tracking", tracking_url, BODY_METRIC, conns[0], delays[0])),
        threading.Thread(target=go, args=("serving", serving_url, BODY_PREDICT, conns[1], delays[1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


BODY_METRIC = ""


def main():
    global BODY_METRIC
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "mltrail"))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--chunk-seconds", type=int, default=30)
    ap.add_argument("--capacity-seconds", type=int, default=15)
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "soak.png"))
    ap.add_argument("--output", default=str(HERE / "results" / "soak.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    procs = []
    try:
        env = {**os.environ, "MLTRAIL_LOG": "warn"}
        port = free_port()
        tracking = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([args.binary, "server", "--port", str(port), "--backend-store-uri",
                                   f"sqlite:///{work}/mltrail.db", "--artifacts-destination", str(work / "artifacts")],
                                  stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"), env=env)
        procs.append(server)
        wait_up(f"{tracking}/health")
        api = f"{tracking}/api/2.0/mlflow/"
        exp = requests.post(api + "experiments/create", json={"name": "soak"}).json()["experiment_id"]
        run = requests.post(api + "runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]
        BODY_METRIC = json.dumps({"run_id": run, "key": "loss", "value": 0.25, "timestamp": 1, "step": 0})

        # The model, and a reference for the monitor with the columns it is served with.
        model = ROOT / "tests" / "fixtures" / "onnx" / "logreg.onnx"
        subprocess.run([args.binary, "models", "register", "soak", str(model), "--tracking-uri", tracking],
                       check=True, capture_output=True, env=env)
        rng = np.random.default_rng(0)
        reference = work / "reference.csv"
        cols = [f"f{i}" for i in range(6)]
        data = rng.normal(size=(2000, 6))
        reference.write_text(",".join(cols) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in data) + "\n")
        subprocess.run([args.binary, "data", "add", str(reference), "--name", "soak-ref", "--tracking-uri", tracking],
                       check=True, capture_output=True, env=env)
        sport = free_port()
        serve = subprocess.Popen([args.binary, "serve", "--model", "soak/1", "--tracking-uri", tracking,
                                  "--port", str(sport), "--deployment", "soak", "--log-dir", str(work / "predictions"),
                                  "--segment-seconds", "20", "--archive-interval-ms", "5000"],
                                 stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "w"), env=env)
        procs.append(serve)
        serving = f"http://127.0.0.1:{sport}"
        wait_up(f"{serving}/health")
        monitor = requests.post(f"{tracking}/api/v1/monitors", json={
            "deployment": "soak", "reference": "soak-ref@1", "window": "1m", "delay": "30s"}).json()
        monitor_id = monitor["monitor"]["id"]

        print(f"capacity: both loads at full speed for {args.capacity_seconds} s", flush=True)
        capacity = both(f"{tracking}/api/2.0/mlflow/runs/log-metric", f"{serving}/api/v1/predict", (16, 16),
                        args.capacity_seconds)
        target = {k: v["rps"] * args.load for k, v in capacity.items()}
        print(f"  tracking {capacity['tracking']['rps']:.0f} req/s, serving {capacity['serving']['rps']:.0f} req/s; "
              f"soak at {target['tracking']:.0f} and {target['serving']:.0f}", flush=True)

        samples, stop = [], threading.Event()
        started = time.time()

        def sample():
            while not stop.is_set():
                samples.append((time.time() - started, rss_mib(server.pid), rss_mib(serve.pid)))
                stop.wait(2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        # wrk's delay is in whole milliseconds: about 4 ms per connection keeps the rate fine-grained.
        conns = {k: max(8, min(512, round(target[k] * 0.004))) for k in target}
        delays = {k: max(1, round(conns[k] * 1000 / target[k])) for k in target}
        chunks = []
        end = started + args.minutes * 60
        while time.time() < end:
            seconds = int(min(args.chunk_seconds, max(1, end - time.time())))
            r = both(f"{tracking}/api/2.0/mlflow/runs/log-metric", f"{serving}/api/v1/predict",
                     (conns["tracking"], conns["serving"]), seconds, (delays["tracking"], delays["serving"]))
            chunks.append({"t": time.time() - started, **{f"{k}_{m}": r[k][m] for k in r for m in r[k]},
                           "delay_tracking_ms": delays["tracking"], "delay_serving_ms": delays["serving"],
                           "connections_tracking": conns["tracking"], "connections_serving": conns["serving"]})
            # Re-aim: the delay does not count the service time, so the rate runs a little low.
            for k in delays:
                delays[k] = max(1, round(delays[k] * r[k]["rps"] / target[k]))
            print(f"  {chunks[-1]['t']/60:5.1f} min: tracking {r['tracking']['rps']:.0f} req/s p99 "
                  f"{r['tracking']['p99_ms']:.2f} ms, serving {r['serving']['rps']:.0f} req/s p99 "
                  f"{r['serving']['p99_ms']:.2f} ms, errors {r['tracking']['errors'] + r['serving']['errors']}, "
                  f"RSS {samples[-1][1]:.0f} / {samples[-1][2]:.0f} MiB", flush=True)
        stop.set()
        sampler.join()
        time.sleep(65)  # let the last windows close and be evaluated
        results = requests.get(f"{tracking}/api/v1/monitors/{monitor_id}/results").json()["results"]
        evaluated = [r for r in results if r["status"] == "ok"]
        rows_evaluated = sum(r["rows"] for r in evaluated)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    warm = [s for s in samples if s[0] >= args.minutes * 60 / 4]
    verdict = {}
    for i, name in ((1, "server"), (2, "serve")):
        values = [s[i] for s in warm if s[i] is not None]
        fifths = [values[j * len(values) // 5:(j + 1) * len(values) // 5] for j in range(5)]
        medians = [statistics.median(f) for f in fifths if f]
        mean = statistics.fmean(medians)
        verdict[f"rss_{name}_medians_mib"] = [round(m, 1) for m in medians]
        verdict[f"rss_{name}_max_dev_pct"] = max(abs(m - mean) / mean * 100 for m in medians)
        verdict[f"rss_{name}_peak_mib"] = max(values)
    for k in ("tracking", "serving"):
        p99s = [c[f"{k}_p99_ms"] for c in chunks]
        verdict[f"{k}_p99_median_ms"] = statistics.median(p99s)
        verdict[f"{k}_p99_max_ms"] = max(p99s)
        verdict[f"{k}_rate_pct_of_capacity"] = statistics.fmean(c[f"{k}_rps"] for c in chunks) / capacity[k]["rps"] * 100
    errors = sum(c["tracking_errors"] + c["serving_errors"] for c in chunks)
    total = sum(c["tracking_requests"] + c["serving_requests"] for c in chunks)
    passed = (errors == 0
              and all(verdict[f"rss_{n}_max_dev_pct"] <= 10 for n in ("server", "serve"))
              and all(verdict[f"{k}_p99_max_ms"] <= 3 * verdict[f"{k}_p99_median_ms"] for k in ("tracking", "serving")))
    report = {
        "machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "minutes": args.minutes, "capacity": capacity, "chunks": chunks, "rss_samples": samples,
        "requests": total, "errors": errors, "monitor_windows_evaluated": len(evaluated),
        "monitor_rows_evaluated": rows_evaluated, "verdict": verdict, "passed": passed,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))
    plot(report, args.plot)
    print(json.dumps({k: v for k, v in report.items() if k not in ("chunks", "rss_samples", "capacity")}, indent=1))
    print("PASSED" if passed else "FAILED")
    return 0 if passed else 1


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s[0] / 60 for s in report["rss_samples"]]
    top.plot(t, [s[1] for s in report["rss_samples"]], label="mltrail server (tracking + monitors)")
    top.plot(t, [s[2] for s in report["rss_samples"]], label="mltrail serve (deployment)")
    top.set_ylabel("RSS (MiB)")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right")
    top.set_title(f"Soak, {report['minutes']:.0f} min at 80 % of capacity ({report['date']})")
    ct = [c["t"] / 60 for c in report["chunks"]]
    bottom.plot(ct, [c["tracking_p99_ms"] for c in report["chunks"]], marker=".", label="log-metric p99")
    bottom.plot(ct, [c["serving_p99_ms"] for c in report["chunks"]], marker=".", label="predict p99")
    bottom.set_ylabel("p99 per chunk (ms)")
    bottom.set_xlabel("minutes")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
