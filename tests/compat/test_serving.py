"""mlflow.onnx.log_model -> register -> `mltrail serve` -> the mlflow client's scoring format.

The request bodies are made by mlflow's own `convert_input_example_to_serving_input`, and the
answers are compared with `mlflow.pyfunc` (onnxruntime-python) on the same model version.
"""
import json
import os
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import requests


def start_serve(server, model, tmp_path, *extra):
    """`mltrail serve` of `model` (None: the deployment's routing policy names its models)."""
    env = dict(os.environ, MLTRAIL_LOG="warn")
    proc = subprocess.Popen(
        [server["binary"], "serve", *(["--model", model] if model else []), "--tracking-uri", server["url"], "--port", "0",
         "--log-dir", str(tmp_path / "predictions"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"mltrail serve did not start: {line}{proc.stdout.read()}")
    return proc, line.strip().rsplit(" ", 1)[-1]


def archived_record(tracking_url, pid, within=30):
    """The tracking server's trace of prediction `pid` once it is archived and its segment's
    summary is in the trail (the file is uploaded first, the summary recorded just after)."""
    deadline = time.time() + within
    while True:
        got = requests.get(f"{tracking_url}/api/v1/predictions/{pid}/record", timeout=30)
        if got.status_code == 200 and got.json()["segment"].get("in_trail") == "recorded":
            return got.json()
        assert got.status_code in (200, 404), got.text
        assert time.time() < deadline, f"prediction {pid} was not archived within {within} s: {got.text}"
        time.sleep(0.2)


def credit_classifier(seed=0, rows=400, trees=50):
    """Income, age and debt ratio, approved when income > 50 and the debt ratio < 0.3; a
    gradient-boosted classifier of it, and that model as ONNX (labels and probabilities as
    tensors, no zipmap)."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.normal(50, 10, rows).astype(np.float32),
        "age": rng.integers(18, 80, rows).astype(np.float32),
        "debt_ratio": rng.beta(2, 5, rows).astype(np.float32),
    })
    label = ((frame.income > 50) & (frame.debt_ratio < 0.3)).astype(int)
    model = GradientBoostingClassifier(n_estimators=trees, random_state=0).fit(frame.values, label)
    onnx_model = to_onnx(model, frame.values[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    return frame, label, model, onnx_model


@pytest.fixture
def credit_model(client, unique):
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature

    frame, label, model, onnx_model = credit_classifier()
    name = unique("credit-onnx")
    mlflow.set_experiment(unique("serving"))
    with mlflow.start_run():
        mlflow.log_param("n_estimators", 50)
        mlflow.log_metric("train_accuracy", float(model.score(frame.values, label)))
        mlflow.onnx.log_model(
            onnx_model, name="model", registered_model_name=name,
            signature=infer_signature(frame, label), input_example=frame.head(3),
        )
    client.set_registered_model_alias(name, "production", "1")
    return name, frame


def test_onnx_model_logged_by_mlflow_is_served_with_the_mlflow_scoring_format(server, credit_model, tmp_path):
    from mlflow.models import convert_input_example_to_serving_input

    name, frame = credit_model
    proc, url = start_serve(server, f"{name}@production", tmp_path)
    try:
        sample = frame.head(25)
        # mlflow's own onnx pyfunc cannot answer a DataFrame for this model (label and
        # probabilities differ in length); onnxruntime on the registered file is the reference.
        import mlflow.onnx
        import onnxruntime as ort

        session = ort.InferenceSession(mlflow.onnx.load_model(f"models:/{name}@production").SerializeToString())
        reference_labels, reference_probabilities = session.run(None, {session.get_inputs()[0].name: sample.values})
        payload = convert_input_example_to_serving_input(sample)
        answer = requests.post(f"{url}/invocations", data=payload, headers={"Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(sample)
        served_labels = [p["label"] for p in predictions]
        assert served_labels == [int(v) for v in reference_labels]
        for p, want in zip(predictions, reference_probabilities):
            assert p["probabilities"] == pytest.approx([float(w) for w in want], abs=1e-5)
        # The MLflow signature names the columns; requests may send them in any order.
        shuffled = {"dataframe_split": {"columns": ["debt_ratio", "income", "age"],
                                        "data": sample[["debt_ratio", "income", "age"]].values.tolist()}}
        again = requests.post(f"{url}/invocations", json=shuffled, timeout=30).json()["predictions"]
        assert [p["label"] for p in again] == served_labels

        native = requests.post(f"{url}/api/v1/predict", data=payload, headers={"Content-Type": "application/json"}, timeout=30).json()
        first = native["predictions"][0]
        assert first["model"] == name and first["version"] == "1"
        logged = requests.get(f"{url}/api/v1/predictions/{first['prediction_id']}", timeout=30).json()
        assert logged["inputs"]["income"] == pytest.approx(float(sample.income.iloc[0]))
        bad = requests.post(f"{url}/invocations", json={"dataframe_records": [{"income": 1.0, "age": 2.0}]}, timeout=30)
        assert bad.status_code == 400 and bad.json()["column"] == "debt_ratio"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_monitor_reads_the_archived_log_and_flags_the_shifted_column(server, credit_model, tmp_path, unique):
    # Runs on every backend of the suite: monitors, results and alerts in SQLite or PostgreSQL,
    # the prediction archive listed and read from a local folder or S3.
    name, frame = credit_model
    training = tmp_path / "train.csv"
    frame.to_csv(training, index=False)
    dataset = unique("credit-train")
    added = subprocess.run([server["binary"], "data", "add", str(training), "--name", dataset, "--tracking-uri", server["url"]],
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    deployment = unique("credit-prod")
    proc, url = start_serve(server, f"{name}@production", tmp_path, "--deployment", deployment,
                            "--segment-seconds", "1", "--archive-interval-ms", "200")
    try:
        shifted = frame.assign(income=frame.income + 30)
        body = {"dataframe_split": {"columns": list(shifted.columns), "data": shifted.values.tolist()}}
        started = int(time.time() * 1000)
        answer = requests.post(f"{url}/api/v1/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        # The served version records no training data, so `training` cannot be the reference.
        refused = requests.post(f"{server['url']}/api/v1/monitors", json={
            "deployment": deployment, "window": "1h", "reference": "training"}, timeout=30)
        assert refused.status_code == 400, refused.text
        assert refused.json()["message"].startswith("`reference`") and "no training data" in refused.json()["message"]
        created = requests.post(f"{server['url']}/api/v1/monitors", json={
            "deployment": deployment, "window": "2s", "delay": "2s", "reference": f"{dataset}@1",
            "start": started - 2000, "alerts": ["feature_drifted.income == 1"]}, timeout=30)
        assert created.status_code == 200, created.text
        monitor = created.json()["monitor"]["id"]
        deadline = time.time() + 60
        evaluated = []
        while time.time() < deadline:
            results = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results", timeout=30).json()["results"]
            evaluated = [r for r in results if r["status"] == "ok"]
            if evaluated:
                break
            time.sleep(0.2)
        assert evaluated, results
        window = evaluated[0]
        assert window["rows"] == len(frame)
        drifted = {c["column"]: c["drifted"] for c in window["result"]["features"]}
        assert drifted == {"income": True, "age": False, "debt_ratio": False}
        alerts = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/alerts", timeout=30).json()["alerts"]
        assert [a["rule"] for a in alerts] == ["feature_drifted.income == 1"]
        metrics = requests.get(f"{server['url']}/metrics", timeout=30).text
        assert f'mltrail_feature_drifted{{deployment="{deployment}",monitor="{monitor}",feature="income",method=' in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=15)
