"""Models logged with mlflow.sklearn.log_model, served by `mltrail serve --model NAME@ALIAS`
without extra steps: converted to ONNX on the first serve (skl2onnx, checked on the input
example), kept as the version's derived artifact, and reused by the next serve; and
`mltrail models convert` ahead of time, refusing what it cannot convert with the reason."""
import subprocess

import numpy as np
import pandas as pd
import pytest
import requests

from test_serving import start_serve


def log_sklearn(client, unique, model, frame, label, **extra):
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    name = unique("sk")
    mlflow.set_experiment(unique("sklearn-serving"))
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                 signature=infer_signature(frame, label), **extra)
    client.set_registered_model_alias(name, "production", "1")
    return name


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "income": rng.normal(50, 10, 300),
        "age": rng.integers(18, 80, 300).astype(float),
        "debt_ratio": rng.beta(2, 5, 300),
    })
    label = ((frame.income > 50) & (frame.debt_ratio < 0.3)).astype(int)
    return frame, label


def tags_of(client, name):
    return client.get_model_version(name, "1").tags


def test_a_pickled_classifier_is_converted_on_first_serve_and_the_conversion_is_kept(server, client, unique, tmp_path, data):
    from sklearn.ensemble import GradientBoostingClassifier

    frame, label = data
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(frame, label)
    # MLflow 3 stores scikit-learn models with skops, which loads tree internals only when told to
    # trust them.
    name = log_sklearn(client, unique, model, frame, label, input_example=frame.head(5),
                       skops_trusted_types=["sklearn.tree._tree.Tree"])
    proc, url = start_serve(server, f"{name}@production", tmp_path / "first")
    try:
        sample = frame.sample(40, random_state=1)
        answer = requests.post(f"{url}/api/v1/predict", json={"dataframe_split": {
            "columns": list(sample.columns), "data": sample.values.tolist()}}, timeout=30)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["predictions"]
        want = model.predict_proba(sample)
        for row, p in zip(rows, want):
            assert row["outputs"]["probabilities"] == pytest.approx(list(p), abs=1e-5)
        assert [r["outputs"]["label"] for r in rows] == list(model.predict(sample))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    # The conversion is kept on the version, with what it came from and how it was checked.
    tags = tags_of(client, name)
    assert tags["mltrail.derived_onnx"].startswith(f"derived/{name}-") and "/1/" in tags["mltrail.derived_onnx"]
    assert len(tags["mltrail.derived_onnx_digest"]) == 64
    import json
    derived_from = json.loads(tags["mltrail.derived_from"])
    assert derived_from["flavor"] == "sklearn" and derived_from["rows_checked"] == 5
    assert derived_from["max_abs_difference"] <= 1e-5
    # A second replica reads the kept file: no second conversion, so the tags did not change.
    proc, url = start_serve(server, f"{name}@production", tmp_path / "second")
    try:
        deployment = requests.get(f"{url}/api/v1/deployment", timeout=30).json()
        assert deployment["digest"] == tags["mltrail.derived_onnx_digest"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert tags_of(client, name) == tags


def test_models_convert_ahead_of_time_and_refusals_say_why(server, client, unique, data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    frame, label = data
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, label)
    name = log_sklearn(client, unique, pipeline, frame, label, input_example=frame.head(3))
    run = lambda *args: subprocess.run([server["binary"], "models", *args, "--tracking-uri", server["url"]],
                                       capture_output=True, text=True, timeout=300)
    done = run("convert", f"{name}/1", "--json")
    assert done.returncode == 0, done.stderr
    import json
    shown = json.loads(done.stdout)
    assert shown["converted"] is True and shown["check"]["estimator"] == "Pipeline"
    assert tags_of(client, name)["mltrail.derived_onnx"] == shown["derived_onnx"]
    again = run("convert", f"{name}/1")
    assert again.returncode == 0 and "already has a derived ONNX file" in again.stdout

    # What skl2onnx cannot convert is refused with its reason, and nothing is kept.
    odd = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(frame, label)
    odd_name = log_sklearn(client, unique, odd, frame, label, input_example=frame.head(3))
    refused = run("convert", f"{odd_name}/1")
    assert refused.returncode != 0
    assert "cannot be converted to ONNX" in refused.stderr and "FunctionTransformer" in refused.stderr, refused.stderr
    assert "mltrail.derived_onnx" not in tags_of(client, odd_name)

    # Without an input example there is nothing to check the conversion on.
    bare = log_sklearn(client, unique, pipeline, frame, label)
    refused = run("convert", f"{bare}/1")
    assert refused.returncode != 0 and "input example" in refused.stderr, refused.stderr
