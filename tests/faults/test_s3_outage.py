"""The S3-compatible store out of reach, then back: artifact requests fail clearly (503
TEMPORARILY_UNAVAILABLE with a JSON body, never a 500 or a hang); the serving deployment keeps
answering and logging locally, and its predictions stay readable by id; the archiver retries,
and once the store is back every acknowledged prediction lands in the Parquet archive exactly
once; `mltrail audit verify` passes, artifacts included.

The outage is a TCP relay between mltrail and moto that stops listening and drops its
connections (what a crashed or unreachable S3 endpoint looks like to a client). Stopping moto
itself would lose its in-memory buckets, and with them what was stored before the outage.
Bounded: a few hundred requests, every wait 60 s at most.
"""
import io
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import requests

from faultlib import BIN, ROOT, free_port, ok, register_model, score, stop_all, wait_for

BUCKET = "mltrail-faults"
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


class Relay:
    """Forwards 127.0.0.1:port to the upstream port while up; refuses connections while down."""

    def __init__(self, upstream):
        self.upstream, self.port = upstream, free_port()
        self.listener, self.conns, self.lock = None, [], threading.Lock()

    def up(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self):
        # shutdown wakes the thread blocked in accept(); close alone leaves the port listening.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_serving_keeps_logging_while_s3_is_down_and_everything_archives_after():
    work = Path(tempfile.mkdtemp(prefix="mltrail-s3-outage-"))
    procs = []
    try:
        endpoint = subprocess.run([str(ROOT / "scripts" / "s3.sh"), "start", str(work / "s3"), BUCKET],
                                  check=True, capture_output=True, text=True, timeout=60).stdout.strip()
        relay = Relay(int(endpoint.rsplit(":", 1)[1]))
        relay.up()
        check_outage(work, endpoint, relay, procs)
    finally:
        stop_all(procs)
        subprocess.run([str(ROOT / "scripts" / "s3.sh"), "stop", str(work / "s3")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def check_outage(work, endpoint, relay, procs):
    env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}", "MLTRAIL_LOG": "warn"}
    store = f"sqlite:///{work}/mltrail.db"
    destination = f"s3://{BUCKET}/artifacts"
    port = free_port()
    tracking = f"http://127.0.0.1:{port}"
    procs.append(subprocess.Popen([BIN, "server", "--port", str(port), "--backend-store-uri", store,
                                   "--artifacts-destination", destination],
                                  stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"), env=env))
    wait_for("the tracking server", lambda: ok(f"{tracking}/health"))

    model = register_model(tracking, "outage")
    serve = subprocess.Popen([BIN, "serve", "--model", f"{model}@production", "--tracking-uri", tracking,
                              "--port", "0", "--deployment", "faults", "--log-dir", str(work / "predictions"),
                              "--segment-seconds", "1", "--archive-interval-ms", "200"],
                             stdout=subprocess.PIPE, stderr=open(work / "serve.log", "w"), env=env, text=True)
    procs.append(serve)
    line = serve.stdout.readline()
    assert "listening on" in line, line
    serving = line.strip().rsplit(" ", 1)[-1]

    s3 = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in S3_ENV.items() if k != "AWS_REGION"},
                      region_name="us-east-1")
    acknowledged = set()
    acknowledged |= score(serving, 20)
    wait_for("the first archives", lambda: archived_ids(s3) >= acknowledged)

    relay.down()
    # Artifact requests through the tracking server: a clear 503, quickly.
    started = time.time()
    listing = requests.get(f"{tracking}/api/2.0/mlflow-artifacts/artifacts", params={"path": "predictions"}, timeout=60)
    assert listing.status_code == 503, listing.text
    assert listing.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    upload = requests.put(f"{tracking}/api/2.0/mlflow-artifacts/artifacts/outage/x.txt", data=b"x", timeout=60)
    assert upload.status_code == 503, upload.text
    assert time.time() - started < 60
    # Serving keeps answering and logging; predictions made during the outage are readable by id.
    during = score(serving, 30)
    acknowledged |= during
    some = next(iter(during))
    found = requests.get(f"{serving}/api/v1/predictions/{some}", timeout=30)
    assert found.status_code == 200 and found.json()["id"] == some, found.text
    # The archiver has tried and failed (its segments stay local, nothing new reached S3).
    wait_for("a failed archive attempt", lambda: "will retry" in (work / "serve.log").read_text())
    assert not (archived_ids(s3) & during)
    assert list((work / "predictions").glob("segment-*.log"))

    relay.up()
    acknowledged |= score(serving, 10)
    wait_for("every acknowledged prediction in the archive", lambda: archived_ids(s3) >= acknowledged)
    rows = archived_rows(s3)
    assert len(rows) == len(set(rows)), "a prediction was archived twice"
    assert set(rows) == acknowledged
    upload = requests.put(f"{tracking}/api/2.0/mlflow-artifacts/artifacts/outage/x.txt", data=b"x", timeout=60)
    assert upload.status_code == 200, upload.text

    stop_all(procs)
    verified = subprocess.run([BIN, "audit", "verify", "--backend-store-uri", store,
                               "--artifacts-destination", destination],
                              capture_output=True, text=True, timeout=120, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def archived_rows(s3):
    rows = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="artifacts/predictions/faults/")
    for page in pages:
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body), columns=["type", "id"]).to_pydict()
            rows += [i for t, i in zip(table["type"], table["id"]) if t == "prediction"]
    return rows


def archived_ids(s3):
    return set(archived_rows(s3))
