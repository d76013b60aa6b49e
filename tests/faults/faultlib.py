"""What the fault-injection tests share: ports, waits, a registered model, scoring."""
import os
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("MLTRAIL_BIN", str(ROOT / "target" / "debug" / "mltrail"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ok(url):
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def register_model(tracking, name):
    """The committed logistic-regression fixture, logged and registered with the mlflow client
    (its artifacts go through the tracking server to its artifact store)."""
    import mlflow
    import mlflow.onnx
    import onnx

    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment(name)
    model = onnx.load(ROOT / "tests" / "fixtures" / "onnx" / "logreg.onnx")
    with mlflow.start_run():
        mlflow.onnx.log_model(model, name="model", registered_model_name=name)
    mlflow.MlflowClient().set_registered_model_alias(name, "production", "1")
    return name


def score(serving, n):
    ids = set()
    for i in range(n):
        body = {"inputs": [[0.1 * i, 0.2, -0.3, 1.0, 0.5, float(i % 3)]]}
        answer = requests.post(f"{serving}/api/v1/predict", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        ids.update(p["prediction_id"] for p in answer.json()["predictions"])
    return ids


def stop_all(procs, seconds=15):
    """SIGTERM to every process still running, then wait; SIGKILL what does not stop in time."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    procs.clear()
