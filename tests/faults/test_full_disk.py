"""A full disk under the SQLite store and under the prediction log, then space again: writes
get a clear 503 TEMPORARILY_UNAVAILABLE while the disk is full (never a 500, never a hang, never
a 200 for something not stored); once space returns they succeed again without a restart;
nothing acknowledged is lost or corrupted (read back, after a restart too; `audit verify`).

Each disk is a small tmpfs this test mounts (it runs as root, as the suite does on CI) and fills
with a filler file; deleting the filler is "space returns". Bounded: a few hundred requests.
"""
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from faultlib import BIN, free_port, ok, register_model, stop_all, wait_for


@pytest.fixture
def work():
    work = Path(tempfile.mkdtemp(prefix="mltrail-full-disk-"))
    procs, mounts = [], []
    yield work, procs, mounts
    stop_all(procs)
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def small_disk(work, mounts, name, size):
    path = work / name
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"the full-disk tests mount a tmpfs and need root: {mounted.stderr}"
    mounts.append(path)
    return path


def fill(disk, leave=0):
    """Writes a filler file until the disk is full, then frees `leave` bytes (whole 4 KiB
    pages, tmpfs's unit); returns its path."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        if leave:
            f.truncate(os.path.getsize(filler) - leave)
    return filler


def start_server(work, procs, store, artifacts=None):
    port = free_port()
    env = {**os.environ, "MLTRAIL_LOG": "warn"}
    procs.append(subprocess.Popen([BIN, "server", "--port", str(port), "--backend-store-uri", store,
                                   "--artifacts-destination", str(artifacts or work / "artifacts")],
                                  stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "a"), env=env))
    url = f"http://127.0.0.1:{port}"
    wait_for("the tracking server", lambda: ok(f"{url}/health"))
    return url


def test_the_sqlite_store_on_a_full_disk_refuses_clearly_and_recovers(work):
    work, procs, mounts = work
    disk = small_disk(work, mounts, "store-disk", "4m")
    store = f"sqlite:///{disk}/mltrail.db"
    url = start_server(work, procs, store, artifacts=disk / "artifacts")
    api = f"{url}/api/2.0/mlflow/"
    upload = f"{url}/api/2.0/mlflow-artifacts/artifacts/full/blob.bin"
    exp = requests.post(api + "experiments/create", json={"name": "full"}).json()["experiment_id"]
    run = requests.post(api + "runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]
    acknowledged = set()
    session = requests.Session()

    def log(step):
        # A long param per step, so a full disk is reached quickly however SQLite reuses pages.
        r = session.post(api + "runs/log-batch", timeout=60, json={
            "run_id": run, "metrics": [{"key": "m", "value": step, "timestamp": 1, "step": step}],
            "params": [{"key": f"p{step}", "value": "x" * 5000}]})
        assert r.status_code in (200, 503), f"step {step}: {r.status_code} {r.text}"
        if r.status_code == 200:
            acknowledged.add(step)
        else:
            assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", r.text
        return r.status_code

    for step in range(20):
        assert log(step) == 200
    filler = fill(disk)
    refused = [s for s in range(20, 220) if log(s) == 503]
    assert refused, "the disk never filled up"
    # The artifact folder shares the full disk: an upload is a 503 too, and leaves no file.
    full = requests.put(upload, data=b"a" * 65536, timeout=60)
    assert full.status_code == 503 and full.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", full.text
    assert requests.get(upload, timeout=60).status_code == 404
    filler.unlink()
    wait_for("writes to succeed again", lambda: log(1000 + len(acknowledged)) == 200, seconds=30)
    assert log(5000) == 200
    assert requests.put(upload, data=b"a" * 65536, timeout=60).status_code == 200
    assert requests.get(upload, timeout=60).content == b"a" * 65536

    history = requests.get(api + "metrics/get-history", params={"run_id": run, "metric_key": "m"}).json()
    assert {int(m["step"]) for m in history["metrics"]} == acknowledged
    params = requests.get(api + "runs/get", params={"run_id": run}).json()["run"]["data"]["params"]
    assert {int(p["key"][1:]) for p in params} == acknowledged
    stop_all(procs)
    verified = subprocess.run([BIN, "audit", "verify", "--backend-store-uri", store], capture_output=True,
                              text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_prediction_log_on_a_full_disk_refuses_clearly_and_recovers(work):
    work, procs, mounts = work
    url = start_server(work, procs, f"sqlite:///{work}/mltrail.db")
    model = register_model(url, "full-disk")
    disk = small_disk(work, mounts, "log-disk", "2m")
    log_dir = disk / "predictions"

    def start_serve():
        serve = subprocess.Popen([BIN, "serve", "--model", f"{model}@production", "--tracking-uri", url,
                                  "--port", "0", "--deployment", "full", "--log-dir", str(log_dir),
                                  "--archive-interval-ms", "600000"],
                                 stdout=subprocess.PIPE, stderr=open(work / "serve.log", "a"), text=True,
                                 env={**os.environ, "MLTRAIL_LOG": "warn"})
        procs.append(serve)
        line = serve.stdout.readline()
        assert "listening on" in line, line
        return serve, line.strip().rsplit(" ", 1)[-1]

    serve, serving = start_serve()
    acknowledged = set()
    session = requests.Session()

    def predict(i):
        rows = [[0.01 * i, 0.2, -0.3, 1.0, 0.5, float(r)] for r in range(20)]
        r = session.post(f"{serving}/api/v1/predict", json={"inputs": rows}, timeout=60)
        assert r.status_code in (200, 503), f"request {i}: {r.status_code} {r.text}"
        if r.status_code == 200:
            acknowledged.update(p["prediction_id"] for p in r.json()["predictions"])
        else:
            assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE", r.text
        return r.status_code

    for i in range(10):
        assert predict(i) == 200
    # One page left: the next batch (20 records, over 4 KiB) is written part-way, then fails.
    filler = fill(disk, leave=4096)
    refused = [i for i in range(10, 200) if predict(i) == 503]
    assert refused, "the disk never filled up"
    filler.unlink()
    wait_for("predictions to be logged again", lambda: predict(1000 + len(acknowledged)) == 200, seconds=30)
    for i in range(5):
        assert predict(2000 + i) == 200

    def readable(base):
        for pid in sorted(acknowledged):
            found = session.get(f"{base}/api/v1/predictions/{pid}", timeout=30)
            assert found.status_code == 200 and found.json()["id"] == pid, f"{pid}: {found.text}"
        return True

    assert readable(serving)
    assert "cut a write that failed part-way" in (work / "serve.log").read_text(), \
        "no write failed part-way: the test did not reach the case it is for"
    serve.terminate()
    serve.wait(timeout=15)
    procs.remove(serve)
    serve, serving = start_serve()
    assert readable(serving)
    assert "cut a torn tail" not in (work / "serve.log").read_text()
