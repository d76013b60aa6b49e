"""`mltrail evaluate` on a model the real mlflow client logged: its metrics equal scikit-learn's
on the probabilities the serving runtime gives, and the mlflow client sees them on the run."""
import json
import subprocess

import numpy as np
import pytest
import requests

from test_serving import credit_model, start_serve  # noqa: F401  (credit_model is a fixture)


def test_an_evaluation_equals_scikit_learn_and_shows_on_the_mlflow_run(server, client, credit_model, tmp_path, unique):
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import (accuracy_score, brier_score_loss, f1_score, log_loss, precision_score,
                                 recall_score, roc_auc_score)

    name, frame = credit_model
    rng = np.random.default_rng(1)
    truth = ((frame.income > 50) & (frame.debt_ratio < 0.3)).astype(int).to_numpy()
    flipped = rng.random(len(truth)) < 0.15  # so that the metrics are not all 1
    truth = np.where(flipped, 1 - truth, truth)
    data = frame.assign(label=truth)
    path = tmp_path / "holdout.csv"
    data.to_csv(path, index=False)
    dataset = unique("holdout")
    added = subprocess.run([server["binary"], "data", "add", str(path), "--name", dataset, "--target", "label",
                            "--tracking-uri", server["url"]], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr

    # The probabilities the serving runtime gives on these rows are what sklearn scores.
    proc, url = start_serve(server, f"{name}/1", tmp_path, "--deployment", unique("scored"))
    try:
        body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
        answer = requests.post(f"{url}/api/v1/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    outputs = [p["outputs"] for p in answer.json()["predictions"]]
    predicted = np.array([o["label"] for o in outputs])
    probabilities = np.array([o["probabilities"] for o in outputs], dtype=np.float64)

    out = subprocess.run([server["binary"], "evaluate", f"{name}/1", "--data", f"{dataset}@1", "--json",
                          "--tracking-uri", server["url"]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    evaluation = json.loads(out.stdout)
    m = evaluation["classification"]
    want = {
        "accuracy": accuracy_score(truth, predicted),
        "precision": precision_score(truth, predicted),
        "recall": recall_score(truth, predicted),
        "f1": f1_score(truth, predicted),
        "roc_auc": roc_auc_score(truth, probabilities[:, 1]),
        "log_loss": log_loss(truth, probabilities),
        "brier": brier_score_loss(truth, probabilities[:, 1]),
    }
    for key, value in want.items():
        assert m[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    prob_true, prob_pred = calibration_curve(truth, probabilities[:, 1], n_bins=10)
    assert m["calibration"]["prob_true"] == pytest.approx(prob_true.tolist(), rel=1e-12)
    assert m["calibration"]["prob_pred"] == pytest.approx(prob_pred.tolist(), rel=1e-12)
    assert m["example_count"] == len(truth)

    # The version's run (the logged model's source run) shows them under mlflow.evaluate's names.
    run = client.get_run(evaluation["run_id"])
    assert [o.model_id for o in run.outputs.model_outputs]  # the run mlflow logged the model in
    metrics = run.data.metrics
    assert metrics["accuracy_score"] == pytest.approx(want["accuracy"], rel=1e-12)
    assert metrics["roc_auc"] == pytest.approx(want["roc_auc"], rel=1e-12)
    kept = requests.get(f"{server['url']}/api/v1/models/{name}/versions/1/evaluation", timeout=30)
    assert kept.status_code == 200, kept.text
    assert kept.json()["digest"] == evaluation["digest"]
