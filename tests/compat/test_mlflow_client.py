"""The real mlflow client, unchanged, against mltrail server."""
import json
import math
import os
import subprocess

import mlflow
import numpy as np
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException


def test_experiments_lifecycle(client, unique):
    name = unique("exp")
    exp_id = client.create_experiment(name, tags={"team": "risk"})
    exp = client.get_experiment(exp_id)
    assert exp.name == name
    assert exp.tags["team"] == "risk"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert client.get_experiment_by_name(name).experiment_id == exp_id
    assert client.get_experiment_by_name(name + "-missing") is None
    with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS|already exists"):
        client.create_experiment(name)

    client.set_experiment_tag(exp_id, "stage", "dev")
    client.rename_experiment(exp_id, name + "-renamed")
    exp = client.get_experiment(exp_id)
    assert exp.name == name + "-renamed" and exp.tags["stage"] == "dev"

    found = client.search_experiments(filter_string=f"name = '{name}-renamed'")
    assert [e.experiment_id for e in found] == [exp_id]
    found = client.search_experiments(filter_string="tags.stage = 'dev'", order_by=["name ASC"])
    assert exp_id in [e.experiment_id for e in found]

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = [e.experiment_id for e in client.search_experiments()]
    assert exp_id not in active
    deleted = [e.experiment_id for e in client.search_experiments(view_type=mlflow.entities.ViewType.DELETED_ONLY)]
    assert exp_id in deleted
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def test_search_experiments_paginates(client, unique):
    prefix = unique("page")
    ids = {client.create_experiment(f"{prefix}-{i}") for i in range(5)}
    seen, token = set(), None
    while True:
        page = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=2, page_token=token)
        seen.update(e.experiment_id for e in page)
        token = page.token
        if not token:
            break
    assert seen == ids


def test_runs_params_metrics_tags(client, unique):
    exp_id = client.create_experiment(unique("runs"))
    run = client.create_run(exp_id, run_name="first", tags={"k": "v"})
    run_id = run.info.run_id
    assert run.info.run_name == "first" and run.info.status == "RUNNING"
    client.log_param(run_id, "lr", "0.01")
    for step, value in enumerate([0.5, 0.4, 0.3]):
        client.log_metric(run_id, "loss", value, step=step)
    client.log_metric(run_id, "nan_metric", float("nan"))
    client.set_tag(run_id, "stage", "dev")
    client.log_batch(
        run_id,
        metrics=[Metric("acc", 0.9, 1000, 1), Metric("acc", 0.95, 1001, 2)],
        params=[Param("depth", "3")],
        tags=[RunTag("note", "batch")],
    )
    fetched = client.get_run(run_id)
    assert fetched.data.params == {"lr": "0.01", "depth": "3"}
    assert fetched.data.metrics["loss"] == 0.3
    assert fetched.data.metrics["acc"] == 0.95
    assert math.isnan(fetched.data.metrics["nan_metric"])
    assert fetched.data.tags["stage"] == "dev" and fetched.data.tags["note"] == "batch" and fetched.data.tags["k"] == "v"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.4), (2, 0.3)]

    # Params are immutable, as in MLflow.
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE|Changing param values"):
        client.log_param(run_id, "lr", "0.02")
    client.log_param(run_id, "lr", "0.01")  # same value again is fine

    client.delete_tag(run_id, "stage")
    assert "stage" not in client.get_run(run_id).data.tags

    client.set_terminated(run_id, "FINISHED")
    info = client.get_run(run_id).info
    assert info.status == "FINISHED" and info.end_time is not None

    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException):
        client.log_metric(run_id, "after_delete", 1.0)
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"

    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_run("0" * 32)


def test_fluent_api_and_nested_runs(server, unique):
    mlflow.set_experiment(unique("fluent"))
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"C": 1.0, "max_iter": 100})
        mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=1)
        mlflow.set_tag("owner", "demo")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_metric", 3.0)
    client = mlflow.MlflowClient()
    child_run = client.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child_run.info.status == "FINISHED"
    parent_run = client.get_run(parent.info.run_id)
    assert parent_run.data.params == {"C": "1.0", "max_iter": "100"}
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in children] == [child.info.run_id]


def test_search_runs_filters_and_ordering(client, unique):
    exp_id = client.create_experiment(unique("search"))
    ids = []
    for i in range(6):
        run = client.create_run(exp_id, run_name=f"run-{i}", tags={"parity": "even" if i % 2 == 0 else "odd"})
        client.log_metric(run.info.run_id, "acc", i / 10)
        client.log_param(run.info.run_id, "model", "tree" if i < 3 else "linear")
        ids.append(run.info.run_id)
    client.set_terminated(ids[0])

    def search(filter_string="", order_by=None, **kw):
        return [r.info.run_id for r in client.search_runs([exp_id], filter_string, order_by=order_by, **kw)]

    assert search("metrics.acc > 0.25", ["metrics.acc DESC"]) == [ids[5], ids[4], ids[3]]
    assert search("params.model = 'tree'", ["metrics.acc ASC"]) == ids[:3]
    assert search("metrics.acc >= 0.2 AND params.model = 'tree'") == [ids[2]]
    assert set(search("tags.parity = 'even'")) == {ids[0], ids[2], ids[4]}
    assert set(search("params.model LIKE 'tr%'")) == set(ids[:3])
    assert set(search("params.model ILIKE 'TR%'")) == set(ids[:3])
    assert search("params.model LIKE 'TR%'") == []
    assert set(search("attributes.run_name IN ('run-1', 'run-4')")) == {ids[1], ids[4]}
    assert search("attributes.status = 'FINISHED'") == [ids[0]]
    assert search("attributes.status != 'FINISHED'", ["attributes.run_name ASC"]) == ids[1:]
    assert search("tags.missing IS NULL", ["metrics.acc ASC"]) == ids
    assert search("", ["params.model ASC", "metrics.acc DESC"]) == [ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]
    # Pagination through the client.
    page1 = client.search_runs([exp_id], "", order_by=["metrics.acc ASC"], max_results=4)
    page2 = client.search_runs([exp_id], "", order_by=["metrics.acc ASC"], max_results=4, page_token=page1.token)
    assert [r.info.run_id for r in page1] + [r.info.run_id for r in page2] == ids
    # Deleted runs only show up when asked for.
    client.delete_run(ids[5])
    assert ids[5] not in search()
    assert search(run_view_type=mlflow.entities.ViewType.DELETED_ONLY) == [ids[5]]
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        client.search_runs([exp_id], "metrics.acc >>> 1")


def test_artifacts_round_trip(client, tmp_path, unique):
    exp_id = client.create_experiment(unique("art"))
    run_id = client.create_run(exp_id).info.run_id
    note = tmp_path / "notes.txt"
    note.write_text("hello artifact\n")
    client.log_artifact(run_id, str(note), artifact_path="docs")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps({"a": 1}))
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    client.log_artifacts(run_id, str(folder), artifact_path="bundle")

    top = {f.path: f.is_dir for f in client.list_artifacts(run_id)}
    assert top == {"docs": True, "bundle": True}
    files = {f.path: f.file_size for f in client.list_artifacts(run_id, "bundle")}
    assert files == {"bundle/a.json": 8, "bundle/sub": None}

    out = tmp_path / "out"
    out.mkdir()
    path = client.download_artifacts(run_id, "docs/notes.txt", str(out))
    assert open(path).read() == "hello artifact\n"
    whole = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="bundle", dst_path=str(tmp_path / "whole"))
    assert open(os.path.join(whole, "sub", "b.bin"), "rb").read() == bytes(range(256)) * 100


def test_sklearn_model_log_register_and_load(client, server, unique):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    expected = model.predict(X[:10])

    mlflow.set_experiment(unique("sk"))
    name = unique("credit")
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        info = mlflow.sklearn.log_model(model, name="model", input_example=X[:3], registered_model_name=name)
    assert info.model_id.startswith("m-")

    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert (by_run.predict(X[:10]) == expected).all()
    by_version = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert (by_version.predict(X[:10]) == expected).all()
    by_id = mlflow.sklearn.load_model(f"models:/{info.model_id}")
    assert (by_id.predict(X[:10]) == expected).all()

    client.set_registered_model_alias(name, "champion", "1")
    by_alias = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert (by_alias.predict(X[:10]) == expected).all()
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    # A second registration through register_model (runs:/ URI) creates version 2.
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert mv.version == "2"
    logged = client.get_logged_model(info.model_id)
    assert logged.status == "READY" or str(logged.status).endswith("READY")


def test_registry_search_tags_stages_aliases_deletes(client, unique):
    exp_id = client.create_experiment(unique("reg"))
    run_id = client.create_run(exp_id).info.run_id
    name = unique("reg-model")
    client.create_registered_model(name, tags={"task": "clf"}, description="demo")
    with pytest.raises(MlflowException, match="RESOURCE_ALREADY_EXISTS"):
        client.create_registered_model(name)
    source = f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts/model"
    v1 = client.create_model_version(name, source, run_id, tags={"quality": "ok"})
    v2 = client.create_model_version(name, source, run_id)
    assert (v1.version, v2.version) == ("1", "2")
    assert client.get_model_version(name, "1").tags == {"quality": "ok"}

    client.set_registered_model_tag(name, "owner", "team-a")
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.delete_model_version_tag(name, "1", "quality")
    assert client.get_model_version(name, "1").tags == {}
    client.update_registered_model(name, description="updated")
    client.update_model_version(name, "2", description="second")
    model = client.get_registered_model(name)
    assert model.description == "updated" and model.tags == {"task": "clf", "owner": "team-a"}
    assert client.get_model_version(name, "2").description == "second"

    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    assert client.get_model_version(name, "1").current_stage == "Archived"
    latest = client.get_latest_versions(name, stages=["Production"])
    assert [v.version for v in latest] == ["2"]

    client.set_registered_model_alias(name, "champion", "2")
    client.set_registered_model_alias(name, "challenger", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    client.set_registered_model_alias(name, "champion", "1")  # the alias moves
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert set(client.get_registered_model(name).aliases) == {"champion", "challenger"}
    client.delete_registered_model_alias(name, "challenger")
    assert set(client.get_registered_model(name).aliases) == {"champion"}

    assert [m.name for m in client.search_registered_models(filter_string=f"name = '{name}'")] == [name]
    assert name in [m.name for m in client.search_registered_models(filter_string="name LIKE 'reg-model-%'")]
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert [v.version for v in client.search_model_versions(f"run_id = '{run_id}' and name = '{name}'", order_by=["version_number ASC"])] == ["1", "2"]
    assert client.get_model_version_download_uri(name, "1") == source

    new_name = name + "-renamed"
    client.rename_registered_model(name, new_name)
    assert client.get_model_version(new_name, "2").name == new_name
    client.delete_model_version(new_name, "1")
    assert [v.version for v in client.search_model_versions(f"name = '{new_name}'")] == ["2"]
    client.delete_registered_model(new_name)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(new_name)


def test_model_version_source_must_stay_in_the_store(client, unique):
    name = unique("evil")
    client.create_registered_model(name)
    for source in ["file:///etc/passwd", "/etc/passwd", "s3://someone-else/x", "mlflow-artifacts:/../../etc", "http://169.254.169.254/"]:
        with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
            client.create_model_version(name, source, None)


def test_log_inputs_datasets(client, server, unique):
    import pandas as pd

    mlflow.set_experiment(unique("datasets"))
    df = pd.DataFrame({"x": [1.5, 2.5, 3.5], "city": ["a", "b", "a"], "label": [0, 1, 0]})
    name = unique("credit-train")
    dataset = mlflow.data.from_pandas(df, name=name, targets="label")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == [name]
    assert inputs[0].dataset.digest == dataset.digest
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    found = mlflow.search_runs(filter_string=f"datasets.name = '{name}'", output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]

    # The logged dataset is a dataset version linked to the run (schema and row count; the
    # client never uploads the rows).
    r = requests.get(f"{server['url']}/api/v1/datasets/{name}/versions/1")
    assert r.status_code == 200, r.text
    version = r.json()
    assert version["runs"] == [run.info.run_id]
    assert version["rows_stored"] is False
    assert version["dataset_version"]["rows"] == 3
    assert version["dataset_version"]["digest"] == dataset.digest
    types = {c["name"]: c["type"] for c in version["dataset_version"]["schema"]}
    assert types == {"x": "numeric", "city": "categorical", "label": "numeric"}
    # A model version registered from the run records it as its training data.
    model_name = unique("trained-on-logged-input")
    client.create_registered_model(model_name)
    mv = client.create_model_version(model_name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert mv.tags["mltrail.training_data"] == f"{name}@1"
    assert mv.tags["mltrail.training_data_digest"] == dataset.digest


def test_errors_are_mlflow_shaped(server):
    url = server["url"]
    r = requests.get(f"{url}/api/2.0/mlflow/experiments/get", params={"experiment_id": "999999"})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = requests.post(f"{url}/api/2.0/mlflow/experiments/create", data="{not json")
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={})
    assert r.status_code == 400 and "name" in r.json()["message"]
    r = requests.post(f"{url}/api/2.0/mlflow/runs/log-metric", json={"run_id": "0" * 32, "key": "a", "value": "x", "timestamp": 1})
    assert r.status_code == 400 and "value" in r.json()["message"]
    r = requests.get(f"{url}/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
    assert r.status_code == 200 and r.json()["experiment"]["name"] == "Default"


def test_audit_trail_verifies_after_the_whole_suite(server, client, unique):
    # Runs last in this module: every mutation above must have left a verifiable chain.
    exp_id = client.create_experiment(unique("audit"))
    run_id = client.create_run(exp_id).info.run_id
    client.log_metric(run_id, "m", 1.0)
    out = subprocess.run(
        [server["binary"], "audit", "verify", "--backend-store-uri", server["backend"], "--artifacts-destination", server["artifacts"]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "audit trail intact" in out.stdout
    assert "artifacts re-hashed" in out.stdout and " 0 artifacts" not in out.stdout
    log = subprocess.run(
        [server["binary"], "audit", "log", "--backend-store-uri", server["backend"], "--entity", f"run:{run_id}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    actions = [json.loads(line)["action"] for line in log.stdout.splitlines()]
    assert actions == ["run.create"]


def test_doubles_and_multibyte_text_come_back_exactly(client, unique):
    """Every metric path keeps the double it was given, bit for bit, on this backend (SQLite or
    PostgreSQL); lengths are counted in characters, as MLflow counts them."""
    import random
    import struct


    rng = random.Random(20)
    values = [28 / 30, 0.1 + 0.2, 0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308]
    while len(values) < 200:
        v = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if v == v and abs(v) != float("inf"):
            values.append(v)
    exp = client.create_experiment(unique("exact"))
    run = client.create_run(exp).info.run_id
    for step, v in enumerate(values[:50]):
        client.log_metric(run, "single", v, step=step, timestamp=1)
    client.log_batch(run, metrics=[Metric("batch", v, 1, step) for step, v in enumerate(values)])
    client.log_batch(run, metrics=[Metric("general", v, 1, step) for step, v in enumerate(values)],
                     params=[Param("accents", "é" * 5000)])
    bits = lambda v: struct.pack("<d", v)
    for key, sent in [("single", values[:50]), ("batch", values), ("general", values)]:
        got = {m.step: m.value for m in client.get_metric_history(run, key)}
        assert len(got) == len(sent), key
        for step, v in enumerate(sent):
            assert bits(got[step]) == bits(v), f"{key} step {step}: sent {v!r}, read {got[step]!r}"
    assert client.get_run(run).data.params["accents"] == "é" * 5000
