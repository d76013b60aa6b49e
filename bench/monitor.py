"""One monitor window of N logged predictions, evaluated by `mltrail server`, against Evidently's
DataDriftPreset on the same rows, in one run.

The window is written as the serving replicas archive it (Parquet under
predictions/<deployment>/<day>/ in the artifact store), one hour in the past. A monitor created
with `start` in that hour evaluates it at once. Measured: from monitor creation to the stored
result (reading the archive, turning logged JSON inputs into columns, the drift tests, storing),
and the server's peak resident memory (VmHWM) before and after. The peer is Evidently run on the
window's rows (read from CSV) against the same reference, under GNU time.

With `--baseline OTHER_BINARY` (an earlier build of mltrail), that build evaluates the same
window in a server of its own, in the same run, and a before/after line is printed.
"""
import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from drift import measured  # GNU time around a whole process (bench/drift.py)

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "tests" / "golden"
HOUR = 3_600_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def vm_hwm_mib(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def write_window(current_csv, artifacts, window_start, per_file=100_000):
    table = pacsv.read_csv(current_csv)
    features = [c for c in table.column_names if c != "label"]
    rows = table.select(features).to_pylist()
    n = len(rows)
    day = time.strftime("%Y-%m-%d", time.gmtime(window_start / 1000))
    out = Path(artifacts) / "predictions" / "bench" / day
    out.mkdir(parents=True, exist_ok=True)
    step = (HOUR - 1000) / n
    for f, lo in enumerate(range(0, n, per_file)):
        chunk = rows[lo : lo + per_file]
        k = len(chunk)
        columns = {
            "type": ["prediction"] * k,
            "id": [str(uuid.uuid4()) for _ in range(k)],
            "deployment": ["bench"] * k,
            "model": ["m"] * k,
            "version": ["1"] * k,
            "digest": ["0" * 64] * k,
            "arm": [None] * k,
            "policy": [None] * k,
            "time_ms": [int(window_start + (lo + i) * step) for i in range(k)],
            "latency_us": [100] * k,
            "inputs": [json.dumps(r) for r in chunk],
            "outputs": ['{"label":0}'] * k,
            "label": [None] * k,
            "ranking": [None] * k,
            "reward": [None] * k,
            "propensity": [None] * k,
        }
        schema = pa.schema(
            [(c, pa.string()) for c in ["type", "id", "deployment", "model", "version", "digest", "arm", "policy"]]
            + [("time_ms", pa.int64()), ("latency_us", pa.int64())]
            + [(c, pa.string()) for c in ["inputs", "outputs", "label", "ranking"]]
            + [("reward", pa.float64()), ("propensity", pa.float64())]
        )
        pq.write_table(pa.table(columns, schema=schema), out / f"bench-{f + 1:012}.parquet", compression="snappy")
    return n


def evidently(python, reference, current, out):
    return measured([python, str(HERE / "drift_evidently.py"), str(reference), str(current), str(out)])


def measure_window(binary, data):
    """One server of `binary` evaluating the window: (predictions, seconds for the first window,
    seconds once the reference is prepared, peak RSS before, after, per-column verdicts)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        artifacts = Path(tmp) / "artifacts"
        server = subprocess.Popen(
            [binary, "server", "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp}/m.db",
             "--artifacts-destination", str(artifacts), "--monitor-interval-ms", "100"],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "server.log", "w"),
            env={**os.environ, "MLTRAIL_LOG": "warn"},
        )
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            subprocess.run([binary, "data", "add", str(data / "reference.csv"), "--name", "ref",
                            "--target", "label", "--tracking-uri", url], check=True, capture_output=True)
            window_start = (int(time.time() * 1000) // HOUR - 1) * HOUR
            n = write_window(data / "current.csv", artifacts, window_start)
            before = vm_hwm_mib(server.pid)
            t0 = time.perf_counter()
            monitor = call(f"{url}/api/v1/monitors", {"deployment": "bench", "window": "1h", "delay": "0s",
                                                      "reference": "ref@1", "start": window_start})["monitor"]
            deadline = time.time() + 900
            while time.time() < deadline:
                windows = call(f"{url}/api/v1/monitors/{monitor['id']}/results")["results"]
                done = [r for r in windows if r["window_start"] == window_start]
                if done:
                    break
                time.sleep(0.05)
            seconds = time.perf_counter() - t0
            after = vm_hwm_mib(server.pid)
            result = done[0]
            if result["status"] != "ok":
                raise RuntimeError(f"window not evaluated: {result}")
            mine = {c["column"]: c["drifted"] for c in result["result"]["features"]}
            # A second monitor on the same window: the reference is already loaded and
            # prepared, as it is for every window after a monitor's first.
            t1 = time.perf_counter()
            again = call(f"{url}/api/v1/monitors", {"deployment": "bench", "window": "1h", "delay": "0s",
                                                    "reference": "ref@1", "start": window_start})["monitor"]
            while time.time() < deadline:
                if any(r["window_start"] == window_start for r in call(f"{url}/api/v1/monitors/{again['id']}/results")["results"]):
                    break
                time.sleep(0.05)
            later = time.perf_counter() - t1
        finally:
            server.terminate()
            server.wait(timeout=30)
    return n, seconds, later, before, after, mine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mltrail", required=True)
    ap.add_argument("--evidently-python", required=True)
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--baseline", help="an earlier mltrail binary to measure beside --mltrail (before/after)")
    args = ap.parse_args()
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": []}
    for rows in [int(r) for r in args.rows.split(",")]:
        data = HERE / ".work" / "drift" / f"rows-{rows}"
        if not (data / "current.csv").exists():
            data.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(GOLDEN / "gen_data.py"), "--rows", str(rows), "--out", str(data)], check=True)
        measured_builds = {"mltrail": args.mltrail} | ({"baseline": args.baseline} if args.baseline else {})
        windows = {name: measure_window(binary, data) for name, binary in measured_builds.items()}
        n, seconds, later, before, after, mine = windows["mltrail"]
        peer = evidently(args.evidently_python, data / "reference.csv", data / "current.csv", data / "evidently-monitor.json")
        theirs = json.loads((data / "evidently-monitor.json").read_text())["drifted"]
        run = {
            "rows": n,
            "mltrail": {"seconds": seconds, "seconds_reference_prepared": later,
                        "server_peak_rss_mib_before": before, "server_peak_rss_mib_after": after},
            "evidently": peer,
            "speedup": peer["seconds"] / seconds,
            "same_verdicts": mine == {k: v for k, v in theirs.items() if k in mine},
            "drifted_columns": sorted(c for c, d in mine.items() if d),
        }
        if args.baseline:
            _, b_seconds, b_later, b_before, b_after, b_mine = windows["baseline"]
            run["baseline"] = {"seconds": b_seconds, "seconds_reference_prepared": b_later,
                               "server_peak_rss_mib_before": b_before, "server_peak_rss_mib_after": b_after,
                               "same_verdicts": b_mine == mine}
            print(f"{n:>9} predictions, before/after: first window {b_seconds:.2f} -> {seconds:.2f} s, "
                  f"later {b_later:.2f} -> {later:.2f} s, server peak RSS {b_after:.0f} -> {after:.0f} MiB; "
                  f"same verdicts: {b_mine == mine}", flush=True)
        results["runs"].append(run)
        print(f"{n:>9} predictions in one window: mltrail monitor {seconds:6.2f} s, {later:5.2f} s once the reference is prepared "
              f"(server peak RSS {before:.0f} -> {after:.0f} MiB); "
              f"Evidently {peer['seconds']:6.2f} s, {peer['peak_rss_mib']:.0f} MiB; {run['speedup']:.1f}x; same verdicts: {run['same_verdicts']}")
    out = HERE / "results" / "monitor.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
