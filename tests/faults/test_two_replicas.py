"""Two tracking servers on one PostgreSQL database and one S3 artifact destination, and two
serving replicas of one deployment, each replica talking to its own server, under load; one
replica killed with SIGKILL mid-load and restarted on the same log directory. Shows that:

1. no acknowledged prediction is lost: every prediction_id answered with a 200 by either replica
   is in the Parquet archive (`predictions/<deployment>/<date>/<replica>-<segment>.parquet` in
   S3) exactly once, the killed replica's unarchived segments included (recovered and archived
   by the restarted process);
2. both replicas' archives land, under two distinct replica ids (one per log directory, kept
   across the restart);
3. a monitor on the deployment counts every archived row of both replicas in its windows, and
   although both servers run a monitor engine on the same database, every window is evaluated
   by one of them (each claims a window before reading it) and stored once (one result, one
   `monitor.result` audit event), and its alert fires once;
4. either replica finds the other's archived predictions by id;
5. `mltrail audit verify` passes afterwards, artifacts included.

A request in flight when the replica is killed may have been logged without being answered:
such a row is archived (and counted by the monitor) without being acknowledged. The test allows
at most the in-flight requests' rows for that, all from the killed replica.

Runs its own throwaway PostgreSQL (scripts/pg.sh), moto S3 server (scripts/s3.sh), two
`mltrail server` and two `mltrail serve` processes, all on 127.0.0.1. Bounded: three client
threads per replica, each stops after 60 s at the latest; every wait is 60 s at most.
"""
import csv
import io
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import requests

from faultlib import BIN, ROOT, free_port, ok, register_model, stop_all, wait_for

BUCKET = "mltrail-replicas"
DEPLOYMENT = "replicated"
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
THREADS_PER_REPLICA = 3
ROWS_PER_REQUEST = 2
WINDOW_MS = 2000
# Must cover the kill, the restart and the restarted replica's first archive round: the monitor
# reads the archive, and a window evaluated before the killed replica's rows land misses them.
DELAY_MS = 10_000


@pytest.fixture
def cluster():
    # Not pytest's tmp_path: PostgreSQL runs as an unprivileged user when the tests run as root,
    # and pytest's folder is private to root.
    work = Path(tempfile.mkdtemp(prefix="mltrail-two-replicas-"))
    os.chmod(work, 0o755)
    procs = []
    try:
        yield work, procs
    finally:
        stop_all(procs)
        subprocess.run([str(ROOT / "scripts" / "s3.sh"), "stop", str(work / "s3")], capture_output=True)
        subprocess.run([str(ROOT / "scripts" / "pg.sh"), "stop", str(work / "pg")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def test_two_servers_and_two_replicas_lose_nothing_when_a_replica_is_killed(cluster):
    work, procs = cluster
    pg = subprocess.run([str(ROOT / "scripts" / "pg.sh"), "start", str(work / "pg")], check=True,
                        capture_output=True, text=True, timeout=120).stdout.strip()
    endpoint = subprocess.run([str(ROOT / "scripts" / "s3.sh"), "start", str(work / "s3"), BUCKET],
                              check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": endpoint, "MLTRAIL_LOG": "info",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    destination = f"s3://{BUCKET}/artifacts"
    logs = work / "logs"
    logs.mkdir()

    def server(name):
        port = free_port()
        proc = subprocess.Popen([BIN, "server", "--port", str(port), "--backend-store-uri", pg,
                                 "--artifacts-destination", destination, "--monitor-interval-ms", "200"],
                                stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "a"), env=env)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for(f"tracking {name}", lambda: ok(f"{url}/health") or proc.poll() is not None)
        assert proc.poll() is None, (logs / f"{name}.log").read_text()
        return url

    # One after the other: the second finds the schema the first created.
    tracking1 = server("server1")
    tracking2 = server("server2")

    model = register_model(tracking1, "replicated-model")
    reference = work / "reference.csv"
    rng = random.Random(7)
    with open(reference, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{i}" for i in range(6)])
        for _ in range(300):
            out.writerow([round(rng.gauss(0, 1), 4) for _ in range(6)])
    added = subprocess.run([BIN, "data", "add", str(reference), "--name", "replicated-reference",
                            "--tracking-uri", tracking1], capture_output=True, text=True, timeout=120, env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    dataset = added.stdout.strip().splitlines()[-1]

    dirs = {"A": work / "predictions-a", "B": work / "predictions-b"}
    trackings = {"A": tracking1, "B": tracking2}
    ports = {"A": free_port(), "B": free_port()}
    serving = {r: f"http://127.0.0.1:{ports[r]}" for r in dirs}
    replicas = {}

    def serve(r):
        log = logs / f"serve-{r}.log"
        proc = subprocess.Popen([BIN, "serve", "--model", f"{model}@production", "--tracking-uri", trackings[r],
                                 "--port", str(ports[r]), "--deployment", DEPLOYMENT, "--log-dir", str(dirs[r]),
                                 "--segment-seconds", "1", "--archive-interval-ms", "200"],
                                stdout=subprocess.PIPE, stderr=open(log, "a"), env=env, text=True)
        procs.append(proc)
        line = proc.stdout.readline()
        assert "listening on" in line, f"replica {r} did not start: {line!r}\n{log.read_text()}"
        replicas[r] = proc

    serve("A")
    serve("B")

    created = requests.post(f"{tracking1}/api/v1/monitors", timeout=30, json={
        "deployment": DEPLOYMENT, "window": f"{WINDOW_MS // 1000}s", "delay": f"{DELAY_MS // 1000}s",
        "reference": dataset, "start": int(time.time() * 1000), "alerts": ["rows > 0"]})
    assert created.status_code == 200, created.text
    monitor = created.json()["monitor"]["id"]

    # Load: THREADS_PER_REPLICA clients per replica; B is killed and restarted in the middle.
    acknowledged = {r: set() for r in dirs}
    statuses = {r: Counter() for r in dirs}
    lock, stop = threading.Lock(), threading.Event()
    last_ack = [0]

    def client(r, seed):
        session, rnd, end = requests.Session(), random.Random(seed), time.time() + 60
        while not stop.is_set() and time.time() < end:
            body = {"inputs": [[round(rnd.gauss(0, 1), 4) for _ in range(6)] for _ in range(ROWS_PER_REQUEST)]}
            try:
                answer = session.post(f"{serving[r]}/api/v1/predict", json=body, timeout=10)
                code = answer.status_code
            except requests.RequestException:
                code, answer = "connection", None
                session = requests.Session()
            with lock:
                statuses[r][code] += 1
                if code == 200:
                    acknowledged[r].update(p["prediction_id"] for p in answer.json()["predictions"])
                    last_ack[0] = max(last_ack[0], int(time.time() * 1000))
            if code != 200:
                time.sleep(0.05)
            else:
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(r, f"{r}{i}")) for r in dirs for i in range(THREADS_PER_REPLICA)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        with lock:
            before_kill = {r: len(acknowledged[r]) for r in dirs}
        replicas["B"].kill()  # SIGKILL, mid-load
        replicas["B"].wait(timeout=15)
        killed_at = time.time()
        serve("B")
        restarted_after = time.time() - killed_at
        with lock:
            acked_b_at_restart = len(acknowledged["B"])
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=70)
    assert before_kill["A"] > 0 and before_kill["B"] > 0, (before_kill, statuses)
    assert len(acknowledged["B"]) > acked_b_at_restart, ("the restarted replica answered nothing", statuses)
    assert set(statuses["A"]) == {200}, statuses
    assert set(statuses["B"]) <= {200, "connection"}, statuses
    assert restarted_after * 1000 < DELAY_MS - 2000, f"the restart took {restarted_after:.1f} s, longer than the monitor's delay allows"
    all_acknowledged = acknowledged["A"] | acknowledged["B"]
    assert not acknowledged["A"] & acknowledged["B"]

    # 1. Every acknowledged prediction is archived exactly once.
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    wait_for("every acknowledged prediction in the archive",
             lambda: {i for i, _ in archived_rows(s3)} >= all_acknowledged)
    # The archivers' rounds after the last request: nothing archived twice in the meantime.
    time.sleep(2)
    rows = archived_rows(s3)
    counts = Counter(i for i, _ in rows)
    twice = {i: n for i, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} predictions archived more than once, e.g. {list(twice.items())[:3]}"
    archived = set(counts)
    assert all_acknowledged <= archived, f"{len(all_acknowledged - archived)} acknowledged predictions lost"
    # Rows logged but not answered: only requests in flight at the kill, on the killed replica.
    extra = archived - all_acknowledged
    replica_ids = {r: (dirs[r] / "replica-id").read_text().strip() for r in dirs}
    replica_of = dict(rows)
    assert len(extra) <= THREADS_PER_REPLICA * ROWS_PER_REQUEST, f"{len(extra)} archived rows never acknowledged"
    assert all(replica_of[i] == replica_ids["B"] for i in extra), extra

    # 2. Both replicas' archives, under two distinct replica ids.
    assert replica_ids["A"] != replica_ids["B"]
    assert set(replica_of.values()) == set(replica_ids.values()), (set(replica_of.values()), replica_ids)
    for r in dirs:
        assert all(replica_of[i] == replica_ids[r] for i in acknowledged[r]), f"replica {r}'s rows under another id"
    # The kill left records in B's unarchived segments; the restarted process recovered them
    # (all archived above) and left nothing behind but (at most) the segment it writes now.
    opened = re.findall(r"prediction log opened .*?records=(\d+)", strip_ansi((logs / "serve-B.log").read_text()))
    assert len(opened) == 2 and int(opened[1]) > 0, f"no records recovered on restart: {opened}"
    wait_for("B's recovered segments archived", lambda: len(list(dirs["B"].glob("segment-*.log"))) <= 1)

    # 4. Lookups by id across replicas, from the archive.
    for asker, owner in (("A", "B"), ("B", "A")):
        for pid in sorted(acknowledged[owner])[:3] + sorted(acknowledged[owner])[-3:]:
            found = requests.get(f"{serving[asker]}/api/v1/predictions/{pid}", timeout=30)
            assert found.status_code == 200, f"replica {asker} looking up {owner}'s {pid}: {found.status_code} {found.text}"
            assert found.json()["id"] == pid, found.text

    # 3. The monitor counted every row of both replicas, each window once.
    def results(tracking):
        answer = requests.get(f"{tracking}/api/v1/monitors/{monitor}/results", params={"limit": 1000}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["results"]

    wait_for("the monitor's windows past the load",
             lambda: any(w["window_end"] > last_ack[0] for w in results(tracking1)), seconds=DELAY_MS / 1000 + 30)
    # One more pass of each engine: a window evaluated twice would show up now.
    time.sleep(1)
    windows = results(tracking1)
    # (Windows after the load keep coming, as no_data: compare what both had.)
    newest = max(w["window_start"] for w in windows)
    assert windows == [w for w in results(tracking2) if w["window_start"] <= newest], \
        "the two servers disagree on the monitor's results"
    starts = Counter(w["window_start"] for w in windows)
    assert all(n == 1 for n in starts.values()), f"windows stored twice: {[s for s, n in starts.items() if n > 1]}"
    ordered = sorted(windows, key=lambda w: w["window_start"])
    assert all(a["window_end"] == b["window_start"] for a, b in zip(ordered, ordered[1:])), "a gap between windows"
    assert [w for w in windows if w["rows"] > 0 and w["status"] != "ok"] == [], "a window with data was not compared"
    counted = sum(w["rows"] for w in windows)
    assert counted == len(archived), (
        f"the monitor counted {counted} rows; {len(archived)} are archived "
        f"({len(all_acknowledged)} acknowledged): "
        + json.dumps([(w["window_start"], w["rows"], w["status"]) for w in ordered]))
    versions = Counter()
    for w in windows:
        versions.update(w["result"].get("versions", {}))
    assert sum(versions.values()) == counted
    alerts = requests.get(f"{tracking1}/api/v1/monitors/{monitor}/alerts", timeout=30).json()["alerts"]
    assert [(a["rule"], a["state"]) for a in alerts] == [("rows > 0", "firing")], alerts
    events = audit_events(pg, "monitor_result", env)
    per_window = Counter(e["entity_id"] for e in events if e["entity_id"].startswith(f"{monitor}/")
                         and int(e["entity_id"].rsplit("/", 1)[1]) <= newest)
    assert per_window == Counter({f"{monitor}/{w['window_start']}": 1 for w in windows}), per_window
    # Each window was evaluated by one server: the other never started on it (it would have
    # failed to store a duplicate and said so).
    for name in ("server1", "server2"):
        text = strip_ansi((logs / f"{name}.log").read_text())
        assert "monitor window not evaluated" not in text, text[-2000:]

    # 5. Everything stopped: the audit trail verifies, the archive's bytes included.
    stop_all(procs, seconds=30)
    verified = subprocess.run([BIN, "audit", "verify", "--backend-store-uri", pg,
                               "--artifacts-destination", destination],
                              capture_output=True, text=True, timeout=120, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def archived_rows(s3):
    """(prediction id, replica id) for every prediction row in the deployment's archive."""
    rows = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"artifacts/predictions/{DEPLOYMENT}/")
    for page in pages:
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            assert name.endswith(".parquet"), obj["Key"]
            # <replica>-<segment>-<start of the records' Merkle root>.parquet
            replica = name.split("-", 1)[0]
            body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body), columns=["type", "id"]).to_pydict()
            rows += [(i, replica) for t, i in zip(table["type"], table["id"]) if t == "prediction"]
    return rows


def audit_events(pg, kind, env):
    listed = subprocess.run([BIN, "audit", "log", "--backend-store-uri", pg, "--entity", kind, "--json",
                             "--limit", "100000"], capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
