"""Logs the UI tests' data through the real mlflow client (run by tests/ui/test_pages.py in a
process of its own, so the links the client prints can be read from its output).

Run names, params, tags and artifact names carry script payloads: the pages must show them as
text. Usage: log_runs.py OUT_DIR STEPS RUNS
"""
import csv
import math
import sys
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric
from PIL import Image
from sklearn.linear_model import LogisticRegression

XSS = ['<script>alert("xss-script")</script>', '"><img src=x onerror=alert("xss-img")>', "\"onerror=alert('xss-attr')"]

out, steps, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
client = MlflowClient()
mlflow.set_experiment(f"ui {XSS[0]}")
for i in range(count):
    lr = [0.1, 0.03, 0.01, 0.003][i % 4]
    with mlflow.start_run(run_name=f"run-{i} {XSS[2]}") as run:
        mlflow.log_params({"lr": lr, "depth": 3 + i % 2, "note": XSS[1]})
        mlflow.set_tag("team", XSS[0])
        now = 1_700_000_000_000
        history = [Metric("loss", math.exp(-s * lr / 10) + 0.02 * math.sin(s / 7), now + s, s) for s in range(steps)]
        for start in range(0, len(history), 1000):
            client.log_batch(run.info.run_id, metrics=history[start:start + 1000])
        mlflow.log_metric("accuracy", 0.7 + lr)
        mlflow.log_text(f"notes {XSS[0]}", "notes/readme.txt")
        with open(out / "scores.csv", "w", newline="") as f:
            csv.writer(f).writerows([["row", "score"], [1, 0.5], [2, XSS[1]]])
        mlflow.log_artifact(str(out / "scores.csv"), "tables")
        Image.new("RGB", (40, 20), (200, 30, 30)).save(out / "plot.png")
        mlflow.log_artifact(str(out / "plot.png"))
        if i == 0:
            x = np.random.default_rng(0).normal(size=(200, 3))
            y = (x[:, 0] > 0).astype(int)
            mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="model", registered_model_name="ui-model",
                                     input_example=x[:2])
