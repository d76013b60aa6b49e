"""A ranking deployment (`mltrail serve --output ranking`): each request's rows are one
impression's candidates, answered with their ids by descending score under one prediction id.
A simulated front end that re-sorts the list alphabetically is caught by a ranking monitor
within one window, which names the sort; a front end that keeps the served order gives
agreement 1.0 and no alert."""
import json
import random
import time

import numpy as np
import pytest
import requests

from test_gates import mltrail
from test_serving import start_serve


@pytest.fixture
def recommender(server, tmp_path, unique):
    """A logistic regression scoring (relevance, price): relevance up, price down."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    onnx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    path = tmp_path / "recommender.onnx"
    path.write_bytes(onnx.SerializeToString())
    name = unique("recommender")
    mltrail(server, "models", "register", name, str(path), "--signature", "relevance,price")
    return name


def candidates(rng, n=8):
    """One impression's candidates, ids random so that no sort key but the score orders them."""
    return [{"item_id": f"sku-{rng.randrange(10**6):06d}", "relevance": rng.uniform(-2, 2), "price": rng.uniform(-2, 2)}
            for _ in range(n)]


def rank(url, rows):
    answer = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": rows}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ranking_windows(server, monitor, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        results = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results?limit=100", timeout=30).json()["results"]
        ok = [r for r in results if r["status"] == "ok"]
        if ok and sum(r["rows"] for r in ok) >= 20:
            return ok
        time.sleep(0.2)
    raise AssertionError(f"monitor {monitor}: no window with the impressions evaluated")


def serve_and_display(server, recommender, tmp_path, unique, displayed_order, seed):
    deployment = unique("shelf")
    (tmp_path / deployment).mkdir()
    proc, url = start_serve(server, f"{recommender}/1", tmp_path / deployment, "--deployment", deployment,
                            "--output", "ranking", "--item-column", "item_id",
                            "--segment-seconds", "1", "--archive-interval-ms", "200")
    rng = random.Random(seed)
    started = int(time.time() * 1000)
    served = []
    try:
        for _ in range(20):
            answer = rank(url, candidates(rng))
            shown = displayed_order(answer["items"])
            feedback = requests.post(f"{url}/api/v1/feedback", json={
                "prediction_id": answer["prediction_id"], "displayed": shown, "clicked": [shown[0]]}, timeout=30)
            assert feedback.status_code == 200, feedback.text
            served.append(answer)
        created = mltrail(server, "monitor", "create", "--deployment", deployment, "--ranking", "--k", "5",
                          "--window", "2s", "--delay", "2s", "--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started / 1000 - 2)))
        monitor = created.stdout.strip().splitlines()[-1]
        windows = ranking_windows(server, monitor)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    alerts = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/alerts", timeout=30).json()["alerts"]
    return deployment, url, monitor, windows, alerts, served


def test_a_ranking_is_served_under_one_id_and_bad_items_are_refused(server, recommender, tmp_path, unique):
    deployment = unique("shelf")
    proc, url = start_serve(server, f"{recommender}/1", tmp_path, "--deployment", deployment,
                            "--output", "ranking", "--item-column", "item_id")
    try:
        rows = [{"item_id": "b", "relevance": 0.0, "price": 0.0},
                {"item_id": "a", "relevance": 2.0, "price": -1.0},
                {"item_id": 7, "relevance": -2.0, "price": 2.0}]
        answer = rank(url, rows)
        assert answer["items"] == ["a", "b", 7], "by descending score; an integer id stays an integer"
        assert answer["scores"] == sorted(answer["scores"], reverse=True)
        assert answer["deployment"] == deployment and answer["version"] == "1"
        record = requests.get(f"{url}/api/v1/predictions/{answer['prediction_id']}", timeout=30).json()
        assert record["outputs"] == {"items": ["a", "b", 7], "scores": answer["scores"]}
        assert [r["item_id"] for r in record["inputs"]] == ["b", "a", 7], "the candidates, in request order"
        assert record["inputs"][1] == {"item_id": "a", "relevance": 2.0, "price": -1.0}
        mlflow_style = requests.post(f"{url}/invocations", json={"dataframe_records": rows}, timeout=30).json()
        assert mlflow_style["predictions"] == ["a", "b", 7]
        # CSV has no types: item ids are kept as written.
        csv = requests.post(f"{url}/api/v1/predict", data="item_id,relevance,price\n007,2.0,-1.0\n7,0.0,0.0\n",
                            headers={"Content-Type": "text/csv"}, timeout=30)
        assert csv.status_code == 200 and csv.json()["items"] == ["007", "7"], csv.text

        for bad, row, message in [
            ([{"item_id": 1.5, "relevance": 0, "price": 0}], 0, "a string or an integer"),
            ([{"item_id": "x", "relevance": 0, "price": 0}, {"item_id": "x", "relevance": 1, "price": 0}], 1, "twice"),
        ]:
            refused = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": bad}, timeout=30)
            assert refused.status_code == 400, refused.text
            body = refused.json()
            assert body.get("column") == "item_id" and body.get("row") == row and message in body["message"], body
        missing = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": [{"relevance": 0, "price": 0}]}, timeout=30)
        assert missing.status_code == 400 and "item_id" in missing.text, missing.text

        pid = answer["prediction_id"]
        for bad in [{"displayed": "a"}, {"displayed": ["a", "a"]}, {"clicked": [1.5]},
                    {"displayed": ["a"], "ranking": ["a"]}]:
            refused = requests.post(f"{url}/api/v1/feedback", json={"prediction_id": pid, **bad}, timeout=30)
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json().get("column") in bad, refused.json()
        kept = requests.post(f"{url}/api/v1/feedback", json={"prediction_id": pid, "displayed": [7, "a"], "clicked": ["a"]},
                             timeout=30)
        assert kept.status_code == 200, kept.text
        info = requests.get(f"{url}/api/v1/deployment", timeout=30).json()
        assert (info["output"], info["item_column"]) == ("ranking", "item_id")
    finally:
        proc.terminate()
        proc.wait(timeout=15)

    refused = mltrail(server, "serve", "--model", f"{recommender}/1", "--output", "ranking", "--port", "0", check=False)
    assert refused.returncode != 0 and "--item-column" in refused.stderr, refused.stderr


def test_a_front_end_that_re_sorts_alphabetically_is_caught_within_one_window(server, recommender, tmp_path, unique):
    deployment, _, monitor, windows, alerts, served = serve_and_display(
        server, recommender, tmp_path, unique, lambda items: sorted(items), seed=11)
    assert sum(w["rows"] for w in windows) == 20
    for w in windows:
        values = w["result"]["values"]
        assert values["ranking.agreement"] == 0.0, values
        assert values["ranking.sorted.alphabetical"] == 1.0 and values["ranking.sorted.served"] == 0.0
        assert values["reported_share"] == 1.0
        assert w["result"]["ranking"]["finding"] == "displayed order equals alphabetical order of item ids in 100 % of impressions"
    # The clicked item was shown first: the displayed order's nDCG is 1, the served order's less.
    assert all(w["result"]["values"]["ranking.ndcg_displayed"] == 1.0 for w in windows)
    assert all(w["result"]["values"]["ranking.ndcg_served"] < 1.0 for w in windows)
    fired = [a for a in alerts if a["state"] == "firing"]
    assert fired and fired[0]["rule"] == "ranking.agreement < 0.9", alerts
    first_window = min(w["window_start"] for w in windows)
    assert fired[0]["window_start"] == first_window, "within one window"
    assert "alphabetical order of item ids in 100 % of impressions" in fired[0]["details"]["message"]
    page = requests.get(f"{server['url']}/ui/monitors/{monitor}", timeout=30)
    assert page.status_code == 200 and "alphabetical order of item ids" in page.text
    trace = requests.get(f"{server['url']}/ui/predictions",
                         params={"id": served[0]["prediction_id"], "deployment": deployment}, timeout=30)
    assert trace.status_code == 200, trace.text
    assert "Displayed in another order than served." in trace.text


def test_a_front_end_that_keeps_the_served_order_agrees_and_raises_no_alert(server, recommender, tmp_path, unique):
    _, _, _, windows, alerts, _ = serve_and_display(server, recommender, tmp_path, unique, lambda items: list(items), seed=12)
    assert sum(w["rows"] for w in windows) == 20
    for w in windows:
        values = w["result"]["values"]
        assert values["ranking.agreement"] == 1.0 and values["ranking.kendall_tau"] == 1.0, values
        assert values["ranking.top_k_overlap"] == 1.0 and values["ranking.ndcg_served"] == 1.0
        assert w["result"]["ranking"].get("finding") is None
    assert alerts == []


def test_a_ranking_monitor_refuses_drift_settings(server, unique):
    refused = requests.post(f"{server['url']}/api/v1/monitors", json={
        "deployment": unique("shelf"), "window": "1h", "ranking": {"k": 5}, "reference": "training"}, timeout=30)
    assert refused.status_code == 400 and refused.json()["message"].startswith("`reference`"), refused.text
    refused = requests.post(f"{server['url']}/api/v1/monitors", json={
        "deployment": unique("shelf"), "window": "1h", "ranking": {"k": 0}}, timeout=30)
    assert refused.status_code == 400 and refused.json()["message"].startswith("`ranking.k`"), refused.text
    refused = requests.post(f"{server['url']}/api/v1/monitors", json={
        "deployment": unique("shelf"), "window": "1h", "ranking": True, "alerts": ["drift_share > 0.5"]}, timeout=30)
    assert refused.status_code == 400 and "ranking monitor" in refused.json()["message"], refused.text


def add_catalog(server, tmp_path, name, unavailable):
    path = tmp_path / f"{name}-{len(unavailable)}.csv"
    rows = ["item_id,available"] + [f"sku-{i:03d},{'false' if i in unavailable else 'true'}" for i in range(20)]
    path.write_text("\n".join(rows) + "\n")
    mltrail(server, "data", "add", str(path), "--name", name)


def shelf(rng, items):
    return [{"item_id": item, "relevance": rng.uniform(-2, 2), "price": rng.uniform(-2, 2)} for item in items]


def first_ranked_under(url, version, rows, seconds=15):
    """The first answer checked by catalog `version` (followed within --catalog-interval-ms)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        answer = rank(url, rows())
        if answer["catalog"] == version:
            return answer
        time.sleep(0.1)
    return answer


def wait_for_alert(server, monitor, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        alerts = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/alerts", timeout=30).json()["alerts"]
        if any(a["state"] == "firing" for a in alerts):
            return alerts
        time.sleep(0.2)
    raise AssertionError(f"monitor {monitor}: no alert fired")


def test_a_catalog_update_flags_or_filters_removed_items_and_alerts_within_one_window(server, recommender, tmp_path,
                                                                                       unique):
    catalog = unique("catalog")
    add_catalog(server, tmp_path, catalog, unavailable=set())
    listed = json.loads(mltrail(server, "data", "list", "--name", catalog, "--json").stdout)
    assert [(v["name"], v["version"], v["rows"]) for v in listed["dataset_versions"]] == [(catalog, 1, 20)]
    deployment = unique("shelf")
    proc, url = start_serve(server, f"{recommender}/1", tmp_path, "--deployment", deployment, "--output", "ranking",
                            "--item-column", "item_id", "--catalog", catalog, "--catalog-available-column", "available",
                            "--catalog-interval-ms", "200", "--segment-seconds", "1", "--archive-interval-ms", "200")
    filtering, filter_url = start_serve(server, f"{recommender}/1", tmp_path / "filter", "--deployment", unique("shelf"),
                                        "--output", "ranking", "--item-column", "item_id", "--catalog", catalog,
                                        "--catalog-available-column", "available", "--catalog-mode", "filter",
                                        "--catalog-interval-ms", "200")
    rng = random.Random(5)
    started = int(time.time() * 1000)
    try:
        items = [f"sku-{i:03d}" for i in range(8)]
        before = rank(url, shelf(rng, items))
        assert before["out_of_catalog"] == [] and before["catalog"] == f"{catalog}@1"
        info = requests.get(f"{url}/api/v1/deployment", timeout=30).json()
        assert info["catalog"] == {"name": catalog, "version": f"{catalog}@1", "available": 20, "mode": "flag"}

        # The business system pushes the next version as JSON: three items are no longer sold.
        refused = requests.put(f"{server['url']}/api/v1/catalogs/{catalog}", timeout=30,
                               json={"items": [{"item_id": "sku-000", "available": True},
                                               {"item_id": "sku-001", "available": "no"}]})
        assert refused.status_code == 400 and refused.json()["message"].startswith("`items.available`"), refused.text
        pushed = requests.put(f"{server['url']}/api/v1/catalogs/{catalog}", timeout=30, json={"items": [
            {"item_id": f"sku-{i:03d}", "available": i not in (0, 1, 2)} for i in range(20)]})
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["dataset_version"]["version"] == 2 and pushed.json()["created"] is True
        answer = first_ranked_under(url, f"{catalog}@2", lambda: shelf(rng, items))
        assert answer["catalog"] == f"{catalog}@2", "the new version is in force without a restart"
        assert sorted(answer["out_of_catalog"]) == ["sku-000", "sku-001", "sku-002"]
        assert sorted(answer["items"]) == items, "flagged, still served"
        record = requests.get(f"{url}/api/v1/predictions/{answer['prediction_id']}", timeout=30).json()
        flagged_at = record["time_ms"]
        assert sorted(record["outputs"]["out_of_catalog"]) == ["sku-000", "sku-001", "sku-002"]
        assert record["outputs"]["catalog"] == f"{catalog}@2" and record["outputs"]["catalog_items"] == 17
        for _ in range(5):
            rank(url, shelf(rng, items))

        filtered = first_ranked_under(filter_url, f"{catalog}@2", lambda: shelf(rng, items))
        assert sorted(filtered["filtered"]) == ["sku-000", "sku-001", "sku-002"]
        assert sorted(filtered["items"]) == items[3:] and len(filtered["scores"]) == 5

        monitor = mltrail(server, "monitor", "create", "--deployment", deployment, "--ranking", "--window", "2s",
                          "--delay", "2s", "--alert", "catalog.out_of_catalog_share > 0",
                          "--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started / 1000 - 2))
                          ).stdout.strip().splitlines()[-1]
        alerts = wait_for_alert(server, monitor)
    finally:
        for p in (proc, filtering):
            p.terminate()
            p.wait(timeout=15)
    fired = [a for a in alerts if a["state"] == "firing"]
    assert fired[0]["window_start"] <= flagged_at < fired[0]["window_end"], "the window of the first flagged impression"
    assert "out of catalog" in fired[0]["details"]["message"] and "sku-00" in fired[0]["details"]["message"]
    results = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results?limit=100", timeout=30).json()["results"]
    firing = next(r for r in results if r["window_start"] == fired[0]["window_start"])
    values = firing["result"]["values"]
    assert values["catalog.out_of_catalog_share"] > 0 and 0 < values["catalog.coverage"] <= 8 / 17
    assert 0 <= values["catalog.gini"] < 1
    # The items back in stock are a new version (not version 1 again); the same push twice is one.
    back = {"items": [{"item_id": f"sku-{i:03d}", "available": True} for i in range(20)]}
    for created, version in [(True, 3), (False, 3)]:
        pushed = requests.put(f"{server['url']}/api/v1/catalogs/{catalog}", json=back, timeout=30).json()
        assert (pushed["created"], pushed["dataset_version"]["version"]) == (created, version), pushed


def test_a_recommender_that_repeats_itself_trips_the_repeat_share_rule(server, recommender, tmp_path, unique):
    deployment = unique("shelf")
    proc, url = start_serve(server, f"{recommender}/1", tmp_path, "--deployment", deployment, "--output", "ranking",
                            "--item-column", "item_id", "--key-column", "user_id",
                            "--segment-seconds", "1", "--archive-interval-ms", "200")
    rng = random.Random(9)
    started = int(time.time() * 1000)
    try:
        stuck = {user: candidates(rng) for user in ["u1", "u2", "u3"]}
        for _ in range(4):
            for user, rows in stuck.items():
                answer = rank(url, [dict(r, user_id=user) for r in rows])
        record = requests.get(f"{url}/api/v1/predictions/{answer['prediction_id']}", timeout=30).json()
        assert record["outputs"]["request_key"] == "u3"
        mixed = [dict(r, user_id="u1" if i == 0 else "u2") for i, r in enumerate(candidates(rng))]
        refused = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": mixed}, timeout=30)
        assert refused.status_code == 400 and refused.json()["column"] == "user_id" and refused.json()["row"] == 1
        monitor = mltrail(server, "monitor", "create", "--deployment", deployment, "--ranking", "--window", "2s",
                          "--delay", "2s", "--k", "5", "--repeat-lookback", "1m", "--alert", "ranking.repeat_share > 0.5",
                          "--since", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started / 1000 - 2))
                          ).stdout.strip().splitlines()[-1]
        alerts = wait_for_alert(server, monitor)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert alerts[-1]["rule"] == "ranking.repeat_share > 0.5"
    results = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results?limit=100", timeout=30).json()["results"]
    repeats = [r["result"]["ranking"]["repeats"] for r in results if r["status"] == "ok" and "repeats" in r["result"]["ranking"]]
    assert sum(r["returning"] for r in repeats) == 9 and sum(r["repeated"] for r in repeats) == 9
