"""`mltrail import mlflow`: a history written through the real mlflow client, once behind a real
`mlflow server` (SQLite database, proxied artifacts) and once in a file store (`./mlruns`), is
imported, and everything the mlflow client reads back from mltrail must equal what it read from
MLflow: experiments, runs (params, tags, metric histories to the bit, datasets), logged models,
registered models with versions, stages, aliases and tags, and artifacts. Ids are kept, so
`models:/name@alias` loads the same model. A second import changes nothing; the trail verifies
and says where each entity came from."""
import glob
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
import requests

from conftest import free_port
from mlflow_history import populate, snapshot

POSTGRES = os.environ.get("MLTRAIL_TEST_BACKEND_URI", "").startswith("postgres")
S3 = os.environ.get("MLTRAIL_TEST_ARTIFACTS", "").startswith("s3://")
# The import never goes through the servers' authentication; the passes without it cover it.
pytestmark = pytest.mark.skipif(os.environ.get("MLTRAIL_TEST_AUTH") == "on", reason="not about authentication")
plain_pass_only = pytest.mark.skipif(POSTGRES or S3, reason="the same in every backend: run in the plain pass")


def new_postgres_database(prefix):
    """A fresh database in the suite's PostgreSQL cluster; its URI."""
    base = os.environ["MLTRAIL_TEST_BACKEND_URI"]
    rest = base.split("://", 1)[1]
    user_host, _ = rest.rsplit("/", 1)
    user, host_port = user_host.split("@")
    host, port = host_port.split(":")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    createdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/createdb"))[-1]
    subprocess.run([createdb, "-h", host, "-p", port, "-U", user, name], check=True)
    return f"postgresql://{user}@{host}:{port}/{name}"


def source_and_target(tmp_path):
    """(MLflow's backend URI, its artifacts destination, mltrail's backend URI, its artifacts)
    for this pass: SQLite and folders, PostgreSQL databases, or S3 prefixes."""
    mlflow_db = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow_artifacts = str(tmp_path / "mlartifacts")
    target_db = f"sqlite:///{tmp_path}/target/mltrail.db"
    target_artifacts = str(tmp_path / "target" / "artifacts")
    if POSTGRES:
        mlflow_db = new_postgres_database("mlflow_source")
        target_db = new_postgres_database("mltrail_import")
    if S3:
        bucket = os.environ["MLTRAIL_TEST_ARTIFACTS"][len("s3://"):].split("/")[0]
        suffix = uuid.uuid4().hex[:8]
        mlflow_artifacts = f"s3://{bucket}/mlflow-source-{suffix}"
        target_artifacts = f"s3://{bucket}/import-{suffix}"
    return mlflow_db, mlflow_artifacts, target_db, target_artifacts


def wait_for(port, proc, log, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start within {seconds} s: {log.read_text()}")


def start_mlflow(tmp_path, backend, artifacts):
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    if "AWS_ENDPOINT_URL" in env:
        env["MLFLOW_S3_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
         str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
    )
    wait_for(port, proc, log)
    url = f"http://127.0.0.1:{port}"
    # The first request may come before the app has finished importing.
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return proc, url


def start_mltrail(server, tmp_path, backend, artifacts):
    port = free_port()
    log = tmp_path / "mltrail-server.log"
    proc = subprocess.Popen(
        [server["binary"], "server", "--port", str(port), "--backend-store-uri", backend,
         "--artifacts-destination", str(artifacts)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    wait_for(port, proc, log, seconds=30)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_import(server, source, target_db, target_artifacts, *extra):
    done = subprocess.run(
        [server["binary"], "import", "mlflow", source, "--backend-store-uri", target_db,
         "--artifacts-destination", str(target_artifacts), "--json", *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def read_back(url, made):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(url)
    try:
        return snapshot(MlflowClient(url), made)
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


def comparable(snap):
    # mltrail's own Default experiment was made when its store was; the rest must be equal.
    snap["experiments"]["0"].pop("created")
    return snap


def nan_as_mlflow_keeps_it(snap):
    """MLflow keeps a logged model's copy of a metric without the NaN flag its runs' metrics
    have, so it answers 0.0 for a NaN that was logged; mltrail answers the NaN. Everything
    else must be equal bit for bit."""
    for model in snap["logged_models"].values():
        model["metrics"] = sorted(
            (key, "0x0.0p+0" if value == "nan" else value, *rest) for key, value, *rest in model["metrics"]
        )
    return snap


def differences(ours, theirs, path=""):
    """Where two snapshots differ, as paths with both values (empty when equal)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(set(ours) | set(theirs), key=str):
            found += differences(ours.get(key, "<missing>"), theirs.get(key, "<missing>"), f"{path}/{key}")
        return found
    return [] if ours == theirs else [f"{path}: mltrail {ours!r} != mlflow {theirs!r}"]


def predictions(url, name):
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(url)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        frame = pd.DataFrame({"income": [0.5, 3.0], "age": [20.0, 58.0]})
        return [float(x) for x in model.predict(frame)]
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


def check_trail(server, target_db, target_artifacts, origin_part):
    done = subprocess.run(
        [server["binary"], "audit", "verify", "--backend-store-uri", target_db, "--artifacts-destination",
         str(target_artifacts), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["report"]["broken"] is None
    assert report["artifacts_checked"] > 0
    events = subprocess.run(
        [server["binary"], "audit", "log", "--backend-store-uri", target_db, "--json", "--limit", "100000"],
        capture_output=True, text=True, timeout=120,
    )
    assert events.returncode == 0, events.stderr
    actions = [json.loads(line)["action"] for line in events.stdout.splitlines() if line.strip()]
    imported = [a for a in actions if ".import from mlflow " in a]
    assert imported and all(origin_part in a for a in imported), actions[:5]
    kinds = {a.split(".import")[0] for a in imported}
    assert {"experiment", "run", "params", "metrics", "logged_model", "model_version", "registered_model",
            "artifact"} <= kinds, kinds
    return len(actions)


def test_import_from_an_mlflow_server_database(server, tmp_path):
    source_db, source_artifacts, target_db, target_artifacts = source_and_target(tmp_path)
    mlflow_proc, mlflow_url = start_mlflow(tmp_path, source_db, source_artifacts)
    try:
        made = populate(mlflow_url)
        expected = read_back(mlflow_url, made)
        expected_predictions = predictions(mlflow_url, made["models"][0])
    finally:
        stop(mlflow_proc)

    # The trail names the source as given, a SQLite path made absolute.
    origin = source_db.split("sqlite:///")[-1] if source_db.startswith("sqlite") else source_db
    summary = run_import(server, source_db, target_db, target_artifacts, "--artifacts-root", source_artifacts)
    assert summary["runs"] == {"imported": len(made["runs"]) + 1, "already_here": 0}
    assert summary["experiments"]["imported"] == 3
    assert summary["model_versions"]["imported"] == 4
    assert summary["artifacts"]["imported"] > 0 and summary["locations_not_moved"] == 0
    events = check_trail(server, target_db, target_artifacts, origin)

    again = run_import(server, source_db, target_db, target_artifacts, "--artifacts-root", source_artifacts)
    for kind in ["experiments", "runs", "logged_models", "model_versions", "artifacts"]:
        assert again[kind]["imported"] == 0, (kind, again)
    # The second import wrote nothing but its own record: started and finished.
    assert check_trail(server, target_db, target_artifacts, origin) == events + 2

    proc, url = start_mltrail(server, tmp_path, target_db, target_artifacts)
    try:
        # The web UI's Server page lists both imports, where from and what each wrote.
        page = requests.get(f"{url}/ui/server", timeout=30).text
        assert "Imported history" in page and page.count(origin.replace("&", "&amp;")) == 2, page[-3000:]
        actual = read_back(url, made)
        diffs = differences(nan_as_mlflow_keeps_it(comparable(actual)), comparable(expected))
        assert not diffs, "\n".join(diffs)
        assert predictions(url, made["models"][0]) == expected_predictions
    finally:
        stop(proc)


@plain_pass_only
def test_import_from_a_file_store(server, tmp_path, monkeypatch):
    # MLflow 3 writes file stores only when asked to (they are what older teams still have).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    made = populate(f"file://{store}")
    mlflow_proc, mlflow_url = start_mlflow(tmp_path, str(store), tmp_path / "unused-artifacts")
    try:
        expected = read_back(mlflow_url, made)
    finally:
        stop(mlflow_proc)

    target_db = f"sqlite:///{tmp_path}/target/mltrail.db"
    target_artifacts = tmp_path / "target" / "artifacts"
    # An import of one experiment, then of all: the second carries on from the first.
    first = run_import(server, str(store), target_db, target_artifacts, "--experiments", "churn")
    assert first["runs"]["imported"] == 3
    summary = run_import(server, str(store), target_db, target_artifacts)
    assert summary["runs"] == {"imported": len(made["runs"]) + 1 - 3, "already_here": 3}
    assert summary["locations_not_moved"] == 0
    events = check_trail(server, target_db, target_artifacts, str(store))
    # Only the runs' and models' artifacts are copied, not the store's own files around them.
    copied = [p.relative_to(target_artifacts) for p in target_artifacts.rglob("*") if p.is_file()]
    assert copied and not [p for p in copied if p.name == "meta.yaml" or "params" in p.parts], copied
    again = run_import(server, str(store), target_db, target_artifacts)
    for kind in ["experiments", "runs", "logged_models", "model_versions", "artifacts"]:
        assert again[kind]["imported"] == 0, (kind, again)
    assert check_trail(server, target_db, target_artifacts, str(store)) == events + 2

    proc, url = start_mltrail(server, tmp_path, target_db, target_artifacts)
    try:
        # A file store keeps a logged model's copy of a NaN as NaN: nothing to set aside.
        diffs = differences(comparable(read_back(url, made)), comparable(expected))
        assert not diffs, "\n".join(diffs)
    finally:
        stop(proc)


@plain_pass_only
def test_refuses_what_it_cannot_read(server, tmp_path):
    for source, says in [
        (str(tmp_path / "nowhere"), "neither a database URI"),
        (f"sqlite:///{tmp_path}/missing.db", "there is no file"),
        ("mysql://u@h/db", "unsupported"),
    ]:
        done = subprocess.run(
            [server["binary"], "import", "mlflow", source, "--backend-store-uri", f"sqlite:///{tmp_path}/t.db"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode != 0
        assert says in done.stderr.lower() or says in done.stderr, done.stderr


# The last schema of MLflow 2.x (2.22): the revision before MLflow 3 added logged models.
MLFLOW_2_HEAD = "0584bdc529eb"


def mlflow_2_database(path):
    """An empty database at MLflow 2.x's last schema, made by MLflow's own migrations (no
    logged models, no workspaces, inputs without steps)."""
    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    url = f"sqlite:///{path}"
    engine = sqlalchemy.create_engine(url)
    InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config = _get_alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, MLFLOW_2_HEAD)
    engine.dispose()
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == MLFLOW_2_HEAD
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "logged_models" not in tables and "inputs" in tables
    return con


@plain_pass_only
def test_import_from_an_mlflow_2_database(server, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    con = mlflow_2_database(tmp_path / "mlflow2.db")
    run = "0123456789abcdef0123456789abcdef"
    con.executescript(f"""
        INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
          VALUES (0, 'Default', '{tmp_path}/mlruns/0', 'active', 1, 1),
                 (7, 'legacy', '{tmp_path}/mlruns/7', 'active', 1700000000000, 1700000000001);
        INSERT INTO experiment_tags (key, value, experiment_id) VALUES ('team', 'risk', 7);
        INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time,
                          end_time, source_version, lifecycle_stage, artifact_uri, experiment_id)
          VALUES ('{run}', 'old-run', 'LOCAL', 'train.py', '', 'ana', 'FINISHED', 1700000000100, 1700000000900, '',
                  'active', '{tmp_path}/mlruns/7/{run}/artifacts', 7);
        INSERT INTO params (key, value, run_uuid) VALUES ('alpha', '0.5', '{run}');
        INSERT INTO tags (key, value, run_uuid) VALUES ('mlflow.runName', 'old-run', '{run}');
        INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES
          ('rmse', 0.30000000000000004, 1700000000200, '{run}', 0, 0),
          ('rmse', 0.1, 1700000000300, '{run}', 1, 0),
          ('rmse', 0, 1700000000400, '{run}', 2, 1);
        INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES
          ('rmse', 0, 1700000000400, 2, 1, '{run}');
        INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, dataset_source)
          VALUES ('d1', 7, 'houses', 'abc123', 'local', '{{"uri": "/data/houses.csv"}}');
        INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id)
          VALUES ('i1', 'DATASET', 'd1', 'RUN', '{run}');
        INSERT INTO input_tags (input_uuid, name, value) VALUES ('i1', 'mlflow.data.context', 'training');
        INSERT INTO registered_models (name, creation_time, last_updated_time, description)
          VALUES ('houses', 1700000001000, 1700000002000, 'price model');
        INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id,
                                    current_stage, source, run_id, status, status_message, run_link, storage_location)
          VALUES ('houses', 1, 1700000001500, 1700000001600, NULL, NULL, 'Production',
                  '{tmp_path}/mlruns/7/{run}/artifacts/model', '{run}', 'READY', NULL, NULL, NULL);
        INSERT INTO model_versions (name, version, creation_time, last_updated_time, current_stage, source, run_id,
                                    status)
          VALUES ('houses', 2, 1700000003000, 1700000004000, 'Deleted_Internal', 'REDACTED', '', 'READY');
        INSERT INTO registered_model_aliases (alias, version, name) VALUES ('live', 1, 'houses');
        INSERT INTO model_version_tags (key, value, name, version) VALUES ('approved', 'yes', 'houses', 1);
    """)
    con.commit()
    con.close()
    (tmp_path / "mlruns" / "7" / run / "artifacts" / "model").mkdir(parents=True)
    (tmp_path / "mlruns" / "7" / run / "artifacts" / "model" / "MLmodel").write_text("flavors: {}\n")

    target_db = f"sqlite:///{tmp_path}/target/mltrail.db"
    target_artifacts = tmp_path / "target" / "artifacts"
    summary = run_import(server, f"sqlite:///{tmp_path}/mlflow2.db", target_db, target_artifacts,
                         "--artifacts-root", str(tmp_path / "mlruns"))
    assert summary["runs"]["imported"] == 1 and summary["model_versions"]["imported"] == 1
    assert summary["logged_models"] == {"imported": 0, "already_here": 0}
    assert summary["artifacts"]["imported"] == 1 and summary["locations_not_moved"] == 0

    proc, url = start_mltrail(server, tmp_path, target_db, target_artifacts)
    try:
        client = MlflowClient(url)
        e = client.get_experiment("7")
        assert (e.name, e.tags, e.creation_time) == ("legacy", {"team": "risk"}, 1700000000000)
        r = client.get_run(run)
        assert (r.info.run_name, r.info.user_id, r.info.status) == ("old-run", "ana", "FINISHED")
        assert r.info.artifact_uri == f"mlflow-artifacts:/7/{run}/artifacts"
        assert r.data.params == {"alpha": "0.5"}
        history = [(m.step, m.value) for m in client.get_metric_history(run, "rmse")]
        assert history[:2] == [(0, 0.30000000000000004), (1, 0.1)] and history[2][1] != history[2][1]
        [dataset] = r.inputs.dataset_inputs
        assert (dataset.dataset.name, dataset.dataset.digest, dataset.dataset.source) == (
            "houses", "abc123", '{"uri": "/data/houses.csv"}')
        assert [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", "training")]
        v = client.get_model_version_by_alias("houses", "live")
        assert (v.version, v.current_stage, v.tags) == ("1", "Production", {"approved": "yes"})
        assert v.source == f"mlflow-artifacts:/7/{run}/artifacts/model"
        # A version MLflow deleted stays deleted.
        assert [m.version for m in client.search_model_versions("name='houses'")] == ["1"]
        mlflow.set_tracking_uri(url)
        try:
            local = mlflow.artifacts.download_artifacts(f"models:/houses@live", dst_path=str(tmp_path / "dl"))
        finally:
            mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        assert open(os.path.join(local, "MLmodel")).read() == "flavors: {}\n"
    finally:
        stop(proc)


@plain_pass_only
def test_refuses_an_id_taken_by_something_else(server, tmp_path):
    """A registered model here whose version 1 is another model: the import stops, naming both,
    and writes nothing of that model."""
    from mlflow import MlflowClient

    con = mlflow_2_database(tmp_path / "mlflow2.db")
    con.executescript("""
        INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
          VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 1, 1);
        INSERT INTO registered_models (name, creation_time, last_updated_time, description)
          VALUES ('houses', 1, 2, 'theirs');
        INSERT INTO model_versions (name, version, creation_time, last_updated_time, current_stage, source, run_id, status)
          VALUES ('houses', 1, 1, 1, 'None', 'mlflow-artifacts:/0/theirs/model', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
                  'READY');
    """)
    con.commit()
    con.close()
    target_db = f"sqlite:///{tmp_path}/target/mltrail.db"
    target_artifacts = tmp_path / "target" / "artifacts"
    proc, url = start_mltrail(server, tmp_path, target_db, target_artifacts)
    try:
        client = MlflowClient(url)
        client.create_registered_model("houses", description="ours")
        client.create_model_version("houses", "mlflow-artifacts:/0/ours/model", "a" * 32)
    finally:
        stop(proc)
    done = subprocess.run(
        [server["binary"], "import", "mlflow", f"sqlite:///{tmp_path}/mlflow2.db", "--backend-store-uri", target_db,
         "--artifacts-destination", str(target_artifacts), "--no-artifacts"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "cannot import version 1 of model `houses`" in done.stderr, done.stderr
    assert "mlflow-artifacts:/0/ours/model" in done.stderr and "mlflow-artifacts:/0/theirs/model" in done.stderr
    proc, url = start_mltrail(server, tmp_path, target_db, target_artifacts)
    try:
        client = MlflowClient(url)
        assert client.get_registered_model("houses").description == "ours"
        assert client.get_model_version("houses", "1").source == "mlflow-artifacts:/0/ours/model"
    finally:
        stop(proc)
