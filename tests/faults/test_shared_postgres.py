"""Two `mltrail server` processes on one PostgreSQL database, both taking writes at once: every
write is acknowledged, each server reads what the other wrote, and the audit trail stays one
unbroken chain (`mltrail audit verify`). Without a shared lock on the chain's head, each
process would continue the chain from its own last event and the second writer would fail.
A `pg_dump` taken while they write restores (pg_restore into a new database) to a store that
passes `audit verify` too: the backup path docs/operations.md gives for PostgreSQL.

Runs its own throwaway PostgreSQL (scripts/pg.sh). Bounded: 4 writer threads x 150 requests.
"""
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from faultlib import BIN, ROOT, free_port, ok, wait_for


def test_two_servers_on_one_database_keep_one_audit_chain():
    work = Path(tempfile.mkdtemp(prefix="mltrail-shared-pg-"))
    os.chmod(work, 0o755)
    procs = []
    try:
        uri = subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start", str(work / "pg")], check=True,
                             capture_output=True, text=True, timeout=120).stdout.strip()
        # Both start at once on the empty database: one migrates it, the other waits its turn.
        urls = []
        for i in range(2):
            port = free_port()
            procs.append(subprocess.Popen([BIN, "server", "--port", str(port), "--backend-store-uri", uri,
                                           "--artifacts-destination", str(work / "artifacts")],
                                          stdout=subprocess.DEVNULL, stderr=open(work / f"server{i}.log", "w"),
                                          env={**os.environ, "MLTRAIL_LOG": "warn"}))
            urls.append(f"http://127.0.0.1:{port}")
        for i, (u, p) in enumerate(zip(urls, procs)):
            wait_for(f"server {i}", lambda u=u, p=p: ok(f"{u}/health") or p.poll() is not None)
            assert p.poll() is None, (work / f"server{i}.log").read_text()
        api = [f"{u}/api/2.0/mlflow/" for u in urls]
        exp = requests.post(api[0] + "experiments/create", json={"name": "shared"}).json()["experiment_id"]
        run = requests.post(api[1] + "runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]

        acknowledged, failures, lock = set(), [], threading.Lock()

        def writer(w):
            session = requests.Session()
            for i in range(150):
                step = w * 1000 + i
                target = api[(w + i) % 2]
                kind = i % 3
                if kind == 0:
                    r = session.post(target + "runs/log-metric", timeout=30,
                                     json={"run_id": run, "key": "m", "value": step, "timestamp": 1, "step": step})
                elif kind == 1:
                    r = session.post(target + "runs/log-parameter", timeout=30,
                                     json={"run_id": run, "key": f"p{step}", "value": "v"})
                else:
                    r = session.post(target + "experiments/set-experiment-tag", timeout=30,
                                     json={"experiment_id": exp, "key": f"t{step}", "value": "v"})
                with lock:
                    if r.status_code == 200:
                        acknowledged.add((kind, step))
                    else:
                        failures.append((target, r.status_code, r.text))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        wait_for("writes under way", lambda: len(acknowledged) >= 50, seconds=60)
        pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))[-1].parent
        dump = work / "mltrail.dump"
        subprocess.run([str(pg_bin / "pg_dump"), "--format=custom", f"--dbname={uri}", f"--file={dump}"],
                       check=True, capture_output=True, timeout=120)
        during_dump = len(acknowledged)
        for t in threads:
            t.join(timeout=120)
        assert during_dump < 600, "the dump was not taken under writes"
        assert not failures, failures[:3]

        for base in api:
            history = requests.get(base + "metrics/get-history",
                                   params={"run_id": run, "metric_key": "m", "max_results": 10000}).json()
            assert {int(m["step"]) for m in history["metrics"]} == {s for k, s in acknowledged if k == 0}
            params = requests.get(base + "runs/get", params={"run_id": run}).json()["run"]["data"]["params"]
            assert {int(p["key"][1:]) for p in params} == {s for k, s in acknowledged if k == 1}
            tags = requests.get(base + "experiments/get", params={"experiment_id": exp}).json()["experiment"]["tags"]
            assert {int(t["key"][1:]) for t in tags if t["key"].startswith("t")} == {s for k, s in acknowledged if k == 2}

        for p in procs:
            p.terminate()
            p.wait(timeout=15)
        procs.clear()
        verified = subprocess.run([BIN, "audit", "verify", "--backend-store-uri", uri],
                                  capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr

        host, port = uri.split("@", 1)[1].split("/", 1)[0].split(":")
        subprocess.run([str(pg_bin / "createdb"), "-h", host, "-p", port, "-U", "mltrail", "restored"],
                       check=True, capture_output=True, timeout=60)
        restored = uri.rsplit("/", 1)[0] + "/restored"
        subprocess.run([str(pg_bin / "pg_restore"), f"--dbname={restored}", str(dump)],
                       check=True, capture_output=True, timeout=120)
        verified = subprocess.run([BIN, "audit", "verify", "--backend-store-uri", restored],
                                  capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "audit trail intact" in verified.stdout
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run([str(ROOT / "scripts" / "pg.sh"), "stop", str(work / "pg")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
