"""PostgreSQL stopped and started again under write load: while it is down every write is a
clear 503 TEMPORARILY_UNAVAILABLE (never a 500, never a hang); once it is back the server
reconnects on its own; no acknowledged write is lost; `mltrail audit verify` passes.

Runs its own throwaway PostgreSQL (scripts/pg.sh) and mltrail server on 127.0.0.1. Bounded:
four writer threads, each stops after 60 s at the latest.
"""
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from faultlib import BIN, ROOT, free_port


def pg_ctl(work, *args):
    initdb = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]
    cmd = [str(initdb.parent / "pg_ctl"), "-D", str(work / "pg" / "data"), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "mltrailpg", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=90)


def test_writes_get_503_while_postgresql_is_down_and_nothing_acknowledged_is_lost():
    # Not pytest's tmp_path: PostgreSQL runs as an unprivileged user when the tests run as root,
    # and pytest's folder is private to root.
    work = Path(tempfile.mkdtemp(prefix="mltrail-faults-"))
    os.chmod(work, 0o755)
    try:
        check_restart(work)
    finally:
        subprocess.run([str(ROOT / "scripts" / "pg.sh"), "stop", str(work / "pg")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def check_restart(work):
    uri = subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start", str(work / "pg")], check=True,
                         capture_output=True, text=True).stdout.strip()
    pg_port = uri.rsplit(":", 1)[1].split("/")[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/"
    server = subprocess.Popen([BIN, "server", "--port", str(port), "--backend-store-uri", uri,
                               "--artifacts-destination", str(work / "artifacts")],
                              stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"),
                              env={**os.environ, "MLTRAIL_LOG": "warn"})
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        exp = requests.post(url + "experiments/create", json={"name": "faults"}).json()["experiment_id"]
        run = requests.post(url + "runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]

        acknowledged, statuses, lock = [], {}, threading.Lock()
        stop = threading.Event()

        def writer(w):
            session = requests.Session()
            step, end = w * 1_000_000, time.time() + 60
            while not stop.is_set() and time.time() < end:
                step += 1
                try:
                    r = session.post(url + "runs/log-metric", timeout=30,
                                     json={"run_id": run, "key": "m", "value": step, "timestamp": 1, "step": step})
                    code = r.status_code
                except requests.RequestException:
                    code = "connection"
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == 200:
                        acknowledged.append(step)
                time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        pg_ctl(work, "-m", "fast", "-w", "stop")
        time.sleep(2)
        with lock:
            during = dict(statuses)
        # A read while the database is down is a 503 too, and does not hang.
        started = time.time()
        read = requests.post(url + "runs/search", json={"experiment_ids": [exp]}, timeout=30)
        assert read.status_code == 503, read.text
        assert time.time() - started < 10
        pg_ctl(work, "-l", str(work / "pg" / "server.log"), "-o", f"-h 127.0.0.1 -p {pg_port} -k {work / 'pg'}", "-w", "start")
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join()

        assert during.get(503, 0) > 0, during
        assert set(statuses) <= {200, 503}, statuses
        # The server came back by itself: a write now succeeds.
        r = requests.post(url + "runs/log-metric", json={"run_id": run, "key": "m", "value": 1, "timestamp": 1, "step": 0})
        assert r.status_code == 200, r.text
        acknowledged.append(0)
        history = requests.get(url + "metrics/get-history",
                               params={"run_id": run, "metric_key": "m", "max_results": 25000}).json()
        stored = {m["step"] for m in history["metrics"]}
        lost = set(acknowledged) - stored
        assert not lost, f"{len(lost)} acknowledged writes are missing"
        assert len(acknowledged) > 20
    finally:
        server.terminate()
        server.wait(timeout=30)
    verify = subprocess.run([BIN, "audit", "verify", "--backend-store-uri", uri], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
