"""A monitor's pages in headless Chromium: a deployment served by `mltrail serve`, traffic whose
`income` drifts further window by window with labels fed back, and the monitor's drift history,
heat map, performance and alerts drawn from its stored results."""
import os
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import requests

from conftest import ADMIN, PASSWORD, ROOT
from test_pages import clean

WINDOW_MS = 2_000
WINDOWS = 8
AUTH = (ADMIN, PASSWORD)


@pytest.fixture(scope="session")
def monitored(server, tmp_path_factory):
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    work = tmp_path_factory.mktemp("monitored")
    binary = os.environ.get("MLTRAIL_BIN", str(ROOT / "target" / "debug" / "mltrail"))
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "income": rng.normal(50, 10, 300), "age": rng.integers(18, 80, 300).astype(float),
        "debt_ratio": rng.beta(2, 5, 300), "tenure": rng.exponential(5, 300),
    }).astype(np.float32)
    label = ((frame.income > 50) & (frame.debt_ratio < 0.3)).astype(int)
    model = LogisticRegression(max_iter=1000).fit(frame.values, label)
    onnx_model = to_onnx(model, frame.values[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    mlflow.set_tracking_uri(server["url"])
    mlflow.set_experiment("ui-credit")
    with mlflow.start_run():
        mlflow.onnx.log_model(onnx_model, name="model", registered_model_name="ui-credit",
                              signature=infer_signature(frame, label))
    frame.assign(label=label).to_csv(work / "train.csv", index=False)
    added = subprocess.run([binary, "data", "add", str(work / "train.csv"), "--name", "ui-credit-train",
                            "--tracking-uri", server["url"]], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    # The version names its training data, so every prediction is explained while served.
    mlflow.MlflowClient(server["url"]).set_model_version_tag("ui-credit", "1", "mltrail.training_data", "ui-credit-train@1")
    created = requests.post(f"{server['url']}/api/v1/monitors", auth=AUTH, timeout=30, json={
        "deployment": "ui-credit-prod", "window": "2s", "delay": "2s", "reference": "ui-credit-train@1",
        "alerts": ["drift_share >= 0.5"]})
    assert created.status_code == 200, created.text
    monitor = created.json()["monitor"]["id"]
    serve = subprocess.Popen(
        [binary, "serve", "--model", "ui-credit/1", "--tracking-uri", server["url"], "--port", "0",
         "--deployment", "ui-credit-prod", "--log-dir", str(work / "log"), "--segment-seconds", "1",
         "--archive-interval-ms", "200", "--explain", "always", "--report-interval-ms", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, MLTRAIL_LOG="warn"), text=True)
    line = serve.stdout.readline()
    assert "listening on" in line, line + serve.stdout.read()
    url = line.strip().rsplit(" ", 1)[-1]
    try:
        last = 0
        predicted = []
        for k in range(WINDOWS):
            now = time.time() * 1000
            time.sleep(((now // WINDOW_MS + 1) * WINDOW_MS + 150 - now) / 1000)
            # income moves further out each window, debt_ratio from the fourth; from then on the
            # labels stop matching the model's answers too.
            batch = frame.sample(100, random_state=k).assign(
                income=lambda f: f.income + 4 * k, debt_ratio=lambda f: f.debt_ratio + 0.06 * max(0, k - 3))
            answer = requests.post(f"{url}/api/v1/predict", timeout=60, json={
                "dataframe_split": {"columns": list(batch.columns), "data": batch.values.tolist()}})
            assert answer.status_code == 200, answer.text
            truth = label.loc[batch.index].values
            predicted.append(answer.json()["predictions"][0]["prediction_id"])
            for p, t in zip(answer.json()["predictions"], truth):
                fed = requests.post(f"{url}/api/v1/feedback", timeout=30,
                                    json={"prediction_id": p["prediction_id"], "label": int(t if k < 4 else 1 - t)})
                assert fed.status_code == 200, fed.text
            last = (time.time() * 1000) // WINDOW_MS * WINDOW_MS
        deadline = time.time() + 60
        while time.time() < deadline:
            results = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results?limit=100", auth=AUTH, timeout=30).json()["results"]
            if any(r["window_start"] >= last for r in results):
                break
            time.sleep(0.3)
        ok = [r for r in results if r["status"] == "ok"]
        assert len(ok) >= WINDOWS - 1, results
        return {"monitor": monitor, "results": ok, "predictions": predicted, "training": work / "train.csv"}
    finally:
        serve.terminate()
        serve.wait(timeout=15)


def test_a_monitors_drift_history_heat_map_performance_and_alerts(browser, server, monitored, shots):
    assert browser.goto(server["url"] + "/ui/monitors") == 200
    clean(browser)
    assert monitored["monitor"] in browser.eval("document.body.innerText")
    alerts_api = f"{server['url']}/api/v1/monitors/{monitored['monitor']}/alerts"
    before = requests.get(alerts_api, auth=AUTH, timeout=30).json()["alerts"]
    page = f"{server['url']}/ui/monitors/{monitored['monitor']}"
    assert browser.goto(page) == 200
    clean(browser)
    ok = monitored["results"]
    # The drift share curve has a point per compared window, and the threshold is drawn.
    first = browser.eval("document.querySelector('figure.chart svg path').getAttribute('d')")
    assert first.count("L") == len(ok) - 1
    assert browser.eval("document.querySelectorAll('figure.chart svg line[stroke-dasharray]').length") >= 1
    # The heat map: a cell per feature and window, a dot on each drifted one, as stored.
    cells = browser.eval("document.querySelectorAll('svg.heat rect').length")
    assert cells == 4 * len(ok)
    drifted = sum(1 for r in ok for f in r["result"]["features"] if f["drifted"])
    assert drifted > 0
    assert browser.eval("document.querySelectorAll('svg.heat circle').length") == drifted
    # Performance per metric with its reference value, and the alerts the rule fired.
    titles = browser.eval("[...document.querySelectorAll('figure.chart h3')].map(h => h.textContent)")
    assert "accuracy" in titles
    after = requests.get(alerts_api, auth=AUTH, timeout=30).json()["alerts"]
    assert before, "income and debt_ratio drift past the rule's share"
    # The monitor keeps evaluating (empty windows may resolve the alert), so the page shows what
    # the store held between the two reads.
    shown = browser.eval("[...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Alerts')).textContent")
    assert shown in {f"Alerts ({n})" for n in range(len(before), len(after) + 1)}, (shown, len(before), len(after))
    browser.screenshot(shots / "monitor.png")
    # What the README shows: the drift share over time and the heat map.
    bottom = browser.eval("(() => { const h = [...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Performance')); return h.getBoundingClientRect().top + scrollY; })()")
    browser.screenshot(shots / "monitor-drift.png", height=int(bottom) - 8)
    # A window's drift report opens from the windows table.
    report = browser.eval("[...document.querySelectorAll('a')].find(a => a.textContent === 'drift report').href")
    assert browser.goto(report) == 200
    assert "columns drifted" in browser.eval("document.body.innerText")


def test_a_prediction_page_shows_lineage_inputs_explanation_and_feedback(browser, server, monitored, shots):
    page = server["url"] + "/ui/predictions"
    assert browser.goto(page) == 200
    clean(browser)
    pid = monitored["predictions"][-1]
    browser.eval(f"document.getElementById('id').value = '{pid}'; document.querySelector('form[role=search]').submit()")
    browser.wait_until("location.search.includes('id=')")
    clean(browser)
    trace = requests.get(f"{server['url']}/api/v1/predictions/{pid}/record", auth=AUTH, timeout=30).json()
    steps = browser.eval("[...document.querySelectorAll('ol.lineage li')].map(li => li.querySelector('.kind').textContent)")
    assert steps == ["training data", "run", "model version", "deployment", "prediction"]
    inputs = browser.eval("[...[...document.querySelectorAll('h2')].find(h => h.textContent === 'Inputs').nextElementSibling.querySelectorAll('tr')].map(tr => [tr.querySelector('th').textContent, tr.querySelector('td').textContent])")
    assert {k: float(v) for k, v in inputs} == pytest.approx({k: float(v) for k, v in trace["inputs"].items()})
    # The waterfall: a bar per input column, from the base value to the output.
    assert browser.eval("document.querySelectorAll('svg.waterfall rect').length") == 4
    assert "feedback (1)" in browser.eval("document.body.innerText").lower()
    browser.screenshot(shots / "prediction.png")
    # An id that is no prediction answers 404 on the same page; one that is no UUID, 400.
    missing = "01a24000-0000-7000-8000-000000000000"
    assert browser.goto(f"{page}?id={missing}") == 404
    assert "not in the archive" in browser.eval("document.querySelector('[role=alert]').textContent")
    assert browser.goto(f"{page}?id=nope") == 400


def test_dataset_pages_profile_versions_runs_and_drift_between_versions(browser, server, monitored, tmp_path, shots):
    import mlflow

    binary = os.environ.get("MLTRAIL_BIN", str(ROOT / "target" / "debug" / "mltrail"))
    url = server["url"]
    # A second version whose income moved, and a run that logs a dataset through mlflow.
    train = pd.read_csv(monitored["training"])
    train.assign(income=train.income + 25).to_csv(tmp_path / "train-v2.csv", index=False)
    added = subprocess.run([binary, "data", "add", str(tmp_path / "train-v2.csv"), "--name", "ui-credit-train",
                            "--tracking-uri", url], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    mlflow.set_experiment("ui-datasets")
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_pandas(train.head(50), name="ui-logged"), context="training")
    assert browser.goto(url + "/ui/datasets") == 200
    clean(browser)
    names = browser.eval("[...document.querySelectorAll('tbody tr td:first-child')].map(td => td.textContent)")
    assert {"ui-credit-train", "ui-logged"} <= set(names)
    assert browser.goto(url + "/ui/datasets/ui-credit-train") == 200
    clean(browser)
    assert browser.eval("document.querySelectorAll('h2 + table tbody tr').length") == 2, "two versions"
    # A histogram per column of the shown (newest) version, its bins the stored profile's.
    answer = requests.get(f"{url}/api/v1/datasets/ui-credit-train/versions/2", auth=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    profile = answer.json()
    assert browser.eval("document.querySelectorAll('svg.bars').length") == len(train.columns)
    income_bins = browser.eval("[...document.querySelector('svg[aria-label=\"Histogram of income\"]').querySelectorAll('rect')].length")
    assert income_bins == 10
    assert profile["dataset_version"]["version"] == 2, "the page shows the newest version"
    # A version must keep its file in its dataset's folder: not a run's artifacts, not the
    # prediction archive (whoever reads datasets would read them through its drift report).
    outside = requests.post(f"{url}/api/v1/datasets", auth=AUTH, timeout=30, json={
        "name": "sneaky", "digest": "a" * 64, "source": "predictions/ui-credit-prod/2026-12-04/x.parquet",
        "file_name": "x.parquet", "rows": 1, "schema": [], "profile": {}})
    assert outside.status_code == 400 and "datasets/sneaky/" in outside.json()["message"], outside.text
    browser.screenshot(shots / "dataset.png")
    browser.goto(url + "/ui/datasets/ui-logged")
    clean(browser)
    assert browser.eval(f"!!document.querySelector('a[href=\"/ui/runs/{run.info.run_id}\"]')"), "the run that used it"
    # The drift report between the two versions, from the page's form.
    browser.goto(url + "/ui/datasets/ui-credit-train")
    browser.eval("document.querySelector('form[action$=\"/drift\"]').submit()")
    browser.wait_until("location.pathname.endsWith('/drift')")
    assert browser.problems() == []
    text = browser.eval("document.body.innerText")
    assert "ui-credit-train@1 → ui-credit-train@2" in text and "1 of 5 columns drifted" in text, text[:400]


def test_deployment_pages_show_what_is_served_and_its_history(browser, server, monitored, shots):
    url = server["url"]
    assert browser.goto(url + "/ui/deployments") == 200
    clean(browser)
    row = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(td => td.textContent)).find(r => r[0] === 'ui-credit-prod')")
    assert row[1] == "stopped" and row[2] == "ui-credit v1", row
    assert browser.goto(url + "/ui/deployments/ui-credit-prod") == 200
    clean(browser)
    actions = browser.eval("[...document.querySelectorAll('tbody tr')].map(tr => tr.cells[1].textContent)")
    assert actions == ["stop", "deploy"], actions
    # The live panels, from the replica's reports every 500 ms while it served: requests and
    # rows per second of version 1, latency percentiles; no failures.
    panels = browser.eval("[...document.querySelectorAll('figure.chart h3')].map(h => h.textContent)")
    assert panels[:4] == ["Requests per second", "Rows scored per second", "Latency", "Failures per second"], panels
    panel = "[...document.querySelectorAll('figure.chart')].find(f => f.querySelector('h3')?.textContent === '{}')"
    legend = browser.eval(panel.format("Latency") + ".querySelector('figcaption').textContent")
    assert "p50" in legend and "p99" in legend
    rows_path = browser.eval(panel.format("Rows scored per second") + ".querySelector('svg path').getAttribute('d')")
    assert rows_path.count("L") >= 10, "a rate per report over the traffic's seconds"
    assert "No failed request" in browser.eval(panel.format("Failures per second") + ".textContent")
    version_chart = browser.eval("[...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Version served')).nextElementSibling.querySelectorAll('svg path').length")
    assert version_chart == 1, "the version over time"
    browser.screenshot(shots / "deployment.png")
    assert browser.goto(url + "/ui/deployments/nobody") == 404


def test_a_deployment_page_shows_its_routing_experiment(browser, server, monitored, shots):
    """The experiment panel: the policy in force, each arm's numbers and their intervals drawn."""
    url = server["url"]
    base = f"{url}/api/v1/deployments/ui-credit-prod/policy"
    aliased = requests.post(f"{url}/api/2.0/mlflow/registered-models/alias", auth=AUTH, timeout=30,
                            json={"name": "ui-credit", "alias": "champion", "version": "1"})
    assert aliased.status_code == 200, aliased.text
    policy = {"kind": "thompson", "name": "offer", "experiment": "offer-2026-12",
              "arms": ["ui-credit/1", "ui-credit@champion"]}
    put = requests.put(base, json={"policy": policy}, auth=AUTH, timeout=30)
    assert put.status_code == 200, put.text
    digest = put.json()["digest"]
    delta = {"policy": digest, "arms": [
        {"requests": 40, "rewards": 40, "reward_sum": 12.0, "reward_squares": 12.0},
        {"requests": 60, "rewards": 60, "reward_sum": 42.0, "reward_squares": 42.0},
    ]}
    import uuid
    reported = requests.post(base + "/state", json={"report_id": str(uuid.uuid4()), "delta": delta}, auth=AUTH, timeout=30)
    assert reported.status_code == 200, reported.text
    try:
        assert browser.goto(url + "/ui/deployments/ui-credit-prod") == 200
        clean(browser)
        text = browser.eval("document.body.innerText")
        assert "offer-2026-12" in text and "thompson" in text
        rows = browser.eval("document.querySelectorAll('table.experiment tbody tr').length")
        assert rows == 2
        assert "0.3000" in text and "0.7000" in text, text[:2000]
        dots = browser.eval("[...document.querySelectorAll('svg.chart circle')].length")
        assert dots >= 2, "each arm's mean with its interval"
        browser.screenshot(shots / "deployment-experiment.png")
    finally:
        requests.delete(base, auth=AUTH, timeout=30)


def test_a_business_metric_its_annotation_baseline_and_drop(browser, server, shots):
    """Four weeks of hourly orders with a weekly pattern, an annotated outage, and a drop in the
    last day: the metric's page draws the series with the baseline its monitor expected, lists
    the annotation and the drops; the monitor's page, observed against expected."""
    hour, day, week = 3_600_000, 86_400_000, 7 * 86_400_000
    now = int(time.time() * 1000)
    start = (now - 5 * week) // week * week + 4 * day  # a Monday (the epoch was a Thursday)
    rng = np.random.default_rng(3)
    hours = np.arange(4 * 7 * 24)
    values = 200.0 * (1.0 + 0.4 * np.cos(2 * np.pi * (hours % 24 - 13) / 24)) * (1.0 + 0.02 * rng.standard_normal(len(hours)))
    times = start + hours * hour
    values = np.where(times >= start + 4 * week - day, values * 0.5, values)
    name = f"ui-orders-{int(time.time())}"
    pushed = requests.post(f"{server['url']}/api/v1/metrics/{name}", auth=AUTH, timeout=30,
                           json={"points": [{"time": int(t), "value": float(v)} for t, v in zip(times, values)]})
    assert pushed.status_code == 200 and pushed.json()["added"] == len(hours), pushed.text
    annotated = requests.post(f"{server['url']}/api/v1/annotations", auth=AUTH, timeout=30, json={
        "name": "payment outage", "kind": "outage", "from": int(start + 2 * week), "to": int(start + 2 * week + day),
        "metrics": [name]})
    assert annotated.status_code == 200, annotated.text
    created = requests.post(f"{server['url']}/api/v1/monitors", auth=AUTH, timeout=30, json={
        "metric": name, "window": "6h", "delay": "0s", "start": int(start + 3 * week),
        "seasonal": {"season": "1d", "seasons": 3}})
    assert created.status_code == 200, created.text
    monitor = created.json()["monitor"]["id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        results = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results?limit=1000", auth=AUTH, timeout=30).json()["results"]
        if len(results) >= 28:
            break
        time.sleep(0.5)
    drops = sum(r["result"]["values"].get("drops", 0) for r in results if r["status"] == "ok")
    assert drops >= 20, drops

    assert browser.goto(server["url"] + "/ui/metrics") == 200
    clean(browser)
    assert name in browser.eval("document.body.innerText")
    assert browser.goto(f"{server['url']}/ui/metrics/{name}") == 200
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert "payment outage" in text and f"Drops and spikes ({int(drops)})" in text
    # The series and the baseline the monitor expected, two curves.
    assert browser.eval("document.querySelectorAll('figure.chart svg path').length") >= 2
    browser.screenshot(shots / "business-metric.png")
    assert browser.goto(f"{server['url']}/ui/monitors/{monitor}") == 200
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert f"Monitor of business metric {name}" in text and "drops" in text
    assert browser.goto(f"{server['url']}/ui/metrics/no-such-metric") == 404


def test_the_server_page_shows_requests_by_route_and_the_stores_commits(browser, server, shots):
    # A few writes and a refused request, so both tables have rows.
    for _ in range(3):
        created = requests.post(f"{server['url']}/api/2.0/mlflow/experiments/create", auth=AUTH, timeout=30,
                                json={"name": f"server-page-{time.time_ns()}"})
        assert created.status_code == 200, created.text
    assert requests.get(f"{server['url']}/api/2.0/mlflow/experiments/get?experiment_id=none", auth=AUTH,
                        timeout=30).status_code >= 400
    assert browser.goto(server["url"] + "/ui/server") == 200
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert "/api/2.0/mlflow/experiments/create" in text and "/api/2.0/mlflow/experiments/get" in text
    assert "Write groups committed" in text and "Database on disk" in text
    # The size distribution of write groups, drawn.
    assert browser.eval("document.querySelectorAll('figure svg rect').length") >= 1
    # The navigation leads here.
    assert browser.eval("[...document.querySelectorAll('nav a')].some(a => a.getAttribute('href') === '/ui/server')")
    browser.screenshot(shots / "server.png")


def test_the_native_api_page_lists_every_operation_and_its_bodies(browser, server, shots):
    document = requests.get(f"{server['url']}/api/v1/openapi.json", timeout=30).json()
    operations = [(m, p) for p, item in document["paths"].items() for m in item if m in ("get", "put", "post", "delete")]
    assert browser.goto(server["url"] + "/ui/server") == 200
    assert browser.eval("[...document.querySelectorAll('a')].some(a => a.getAttribute('href') === '/ui/api')")
    assert browser.goto(server["url"] + "/ui/api") == 200
    clean(browser)
    text = browser.eval("document.body.innerText")
    assert f"{len(operations)} operations" in text
    # One row per operation, and each body a link to its fields.
    assert browser.eval("document.querySelectorAll('tbody tr[id]').length") == len(operations)
    assert "/api/v1/monitors/{id}/windows/{start}/report" in text and "MonitorIn" in text
    broken = browser.eval("[...document.querySelectorAll('a[href^=\"#schema-\"]')]"
                          ".filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length")
    assert broken == 0
    browser.screenshot(shots / "api.png")
