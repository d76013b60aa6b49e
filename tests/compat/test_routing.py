"""Routing policies on a live deployment: a bandit learns from feedback, shares what it learned
through the tracking server and resumes it after `kill -9`; a split keeps a user on one arm;
a shadow scores off the request's path and is logged, never returned; every record carries
its log signature, also once archived as Parquet."""
import json
import random
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import requests

from test_gates import mltrail
from test_serving import start_serve


@pytest.fixture
def two_versions(server, tmp_path, unique):
    """Two logistic regressions on (income, age), registered as versions 1 and 2 of one model."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    name = unique("routed")
    for i, flip in enumerate([1, -1]):
        y = (flip * x[:, 0] > 0).astype(int)
        model = LogisticRegression().fit(x, y)
        onnx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
        path = tmp_path / f"v{i + 1}.onnx"
        path.write_bytes(onnx.SerializeToString())
        mltrail(server, "models", "register", name, str(path), "--signature", "income,age")
    return name


def write_policy(tmp_path, text):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def start(server, tmp_path, deployment, *extra):
    return start_serve(server, None, tmp_path, "--deployment", deployment, "--policy-interval-ms", "200",
                       "--policy-report-interval-ms", "200", *extra)


def predict(url, rows):
    answer = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": rows}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def trail(server, entity):
    log = subprocess.run([server["binary"], "audit", "log", "--entity", entity, "--json",
                          "--backend-store-uri", server["backend"]], capture_output=True, text=True, timeout=60)
    assert log.returncode == 0, log.stderr
    return [json.loads(line) for line in log.stdout.splitlines()]


def wait_for(check, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def archived(server, deployment, tmp_path):
    """The deployment's archived records only (an empty local log folder)."""
    empty = tmp_path / "none"
    empty.mkdir(exist_ok=True)
    out = tmp_path / "archived.parquet"
    mltrail(server, "predictions", "export", "--deployment", deployment, "--output", str(out), "--log-dir", str(empty))
    return pd.read_parquet(out)


def test_a_thompson_bandit_learns_shares_and_resumes_after_kill_9(server, two_versions, tmp_path, unique):
    name = two_versions
    deployment = unique("bandit")
    policy = write_policy(tmp_path, f'''
kind = "thompson"
name = "credit-bandit"
experiment = "offer-2026-12"
arms = ["{name}/1", "{name}/2"]
key = "user_id"
draws = 500
seed = 7
''')
    proc, url = start(server, tmp_path, deployment, "--policy", str(policy), "--segment-seconds", "1",
                      "--archive-interval-ms", "200")
    world = random.Random(5)
    rate = {f"{name}/1": 0.2, f"{name}/2": 0.8}
    chosen = []
    try:
        for i in range(300):
            p = predict(url, [{"income": 0.5, "age": 0.1, "user_id": f"u{i}"}])[0]
            assert p["arm"] in rate and 0 < p["propensity"] <= 1
            chosen.append(p["arm"])
            reward = 1 if world.random() < rate[p["arm"]] else 0
            fb = requests.post(f"{url}/api/v1/feedback", json={"prediction_id": p["prediction_id"], "reward": reward}, timeout=10)
            assert fb.status_code == 200, fb.text
        assert chosen[-100:].count(f"{name}/2") >= 85, chosen[-100:]

        # The record names the policy, its version, the arm, its propensity and the key.
        record = requests.get(f"{url}/api/v1/predictions/{p['prediction_id']}", timeout=10).json()
        assert record["arm"] == p["arm"] and record["propensity"] == p["propensity"]
        assert record["experiment"] == "offer-2026-12" and record["policy"] == "credit-bandit"
        assert len(record["policy_version"]) == 16 and record["returned"] is True
        assert record["request_key"] == "u299"

        # A reward the policy cannot take is refused, naming the field; nothing is learned.
        bad = requests.post(f"{url}/api/v1/feedback", json={"prediction_id": p["prediction_id"], "reward": 3}, timeout=10)
        assert bad.status_code == 400 and "reward" in bad.text

        # Every replica's report adds up on the tracking server, each one an audit event.
        def learned():
            got = json.loads(mltrail(server, "experiments", "show", "--deployment", deployment, "--json").stdout)
            return got if sum(a["rewards"] for a in got["arms"]) == 300 else None
        shown = wait_for(learned)
        assert sum(a["requests"] for a in shown["arms"]) == 300
        best = [a for a in shown["arms"] if a["arm"] == f"{name}/2"][0]
        assert best["mean_reward"] > 0.6 and best["propensity"] > 0.9
        lo, hi = best["interval"]
        assert lo < best["mean_reward"] < hi
        table = mltrail(server, "experiments", "show", "--deployment", deployment).stdout
        assert "regret estimate" in table and f"{name}/2" in table
        reports = [e for e in trail(server, "routing_state") if e["entity_id"].startswith(f"{deployment}/")]
        assert reports and reports[-1]["action"] == "routing.learn"

        # The log signature survives archiving as Parquet.
        def all_archived():
            frame = archived(server, deployment, tmp_path)
            predictions = frame[frame["type"] == "prediction"]
            return frame if len(predictions) == 300 else None
        frame = wait_for(all_archived, 30)
        predictions = frame[frame["type"] == "prediction"]
        assert predictions["arm"].notna().all() and predictions["policy_version"].notna().all()
        assert (predictions["propensity"] > 0).all() and predictions["returned"].all()
        assert set(predictions["request_key"]) == {f"u{i}" for i in range(300)}

        # Training exports: inverse-propensity weights, or a losing arm's records left out.
        out = tmp_path / "training.parquet"
        dataset = unique("bandit-training")
        mltrail(server, "predictions", "export", "--deployment", deployment, "--for-training", "--ips",
                "--output", str(out), "--log-dir", str(tmp_path / "predictions"), "--dataset", dataset)
        table = pd.read_parquet(out)
        assert len(table) == 300 and np.allclose(table["ips_weight"], 1 / table["propensity"], rtol=0, atol=0)
        assert set(table["reward"].dropna()) <= {0.0, 1.0} and table["reward"].notna().all()
        assert {"income", "age", "prediction_label", "experiment", "policy_version", "returned"} <= set(table.columns)
        stored = requests.get(f"{server['url']}/api/v1/datasets/{dataset}/versions/1", timeout=10).json()
        assert stored["dataset_version"]["rows"] == 300
        # Annotated periods about the deployment: tagged, or left out of the training data.
        cut = int(table["time_ms"].median())
        mltrail(server, "annotate", "--name", "launch week", "--kind", "campaign", "--from", str(int(table["time_ms"].min())),
                "--to", str(cut), "--metrics", deployment)
        inside = int((table["time_ms"] < cut).sum())
        assert 0 < inside < 300
        for mode, rows in [("tag", 300), ("exclude", 300 - inside)]:
            out = tmp_path / f"{mode}.parquet"
            mltrail(server, "predictions", "export", "--deployment", deployment, "--for-training", "--annotations", mode,
                    "--output", str(out), "--log-dir", str(tmp_path / "predictions"))
            annotated = pd.read_parquet(out)
            assert len(annotated) == rows, mode
            if mode == "tag":
                assert (annotated["annotation"] == "launch week").sum() == inside
                assert (annotated["annotation_kind"].dropna() == "campaign").all()
            else:
                assert (annotated["time_ms"] >= cut).all()
        out = tmp_path / "winner.parquet"
        mltrail(server, "predictions", "export", "--deployment", deployment, "--for-training",
                "--exclude-arms", f"{name}/1", "--output", str(out), "--log-dir", str(tmp_path / "predictions"))
        winner = pd.read_parquet(out)
        assert (winner["arm"] == f"{name}/2").all() and len(winner) == chosen.count(f"{name}/2")

        # Off-policy evaluation of "always the second arm" from the bandit's logs: its true
        # value is 0.8.
        always = tmp_path / "always.toml"
        always.write_text(f'kind = "split"\narms = ["{name}/1", "{name}/2"]\nweights = [0, 1]\n')
        got = json.loads(mltrail(server, "experiments", "evaluate", "--deployment", deployment, "--target-policy",
                                 str(always), "--log-dir", str(tmp_path / "predictions"), "--json").stdout)
        assert got["rounds"] == 300
        for e in got["estimates"]:
            assert abs(e["value"] - 0.8) < 0.15, e
            assert e["interval"][0] < e["value"] < e["interval"][1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    # Restarted without --policy: it follows the tracking server's policy and resumes the
    # posterior (a fresh prior would give each arm propensity 0.5).
    proc, url = start(server, tmp_path, deployment)
    try:
        p = predict(url, [{"income": 0.5, "age": 0.1, "user_id": "after"}])[0]
        assert p["arm"] == f"{name}/2" and p["propensity"] > 0.9, p
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_split_keeps_users_on_their_arm_and_a_shadow_is_logged_not_returned(server, two_versions, tmp_path, unique):
    name = two_versions
    deployment = unique("split")
    policy = write_policy(tmp_path, f'''
kind = "split"
arms = ["{name}/1", "{name}/2"]
weights = [0.5, 0.5]
key = "user_id"
''')
    proc, url = start(server, tmp_path, deployment, "--policy", str(policy))
    try:
        users = [f"user-{i}" for i in range(40)]
        rows = [{"income": 1.0, "age": 0.0, "user_id": u} for u in users]
        first = predict(url, rows)
        again = predict(url, rows[::-1])[::-1]
        assert [p["arm"] for p in first] == [p["arm"] for p in again]
        arms = {p["arm"] for p in first}
        assert arms == {f"{name}/1", f"{name}/2"}, arms
        assert all(p["propensity"] == 0.5 for p in first)
        # A row routed to each arm gets that version's answer; version 2 flips version 1.
        by_arm = {p["arm"]: p["outputs"]["label"] for p in first}
        assert by_arm[f"{name}/1"] != by_arm[f"{name}/2"]
        # Prometheus gauges per arm.
        exposition = requests.get(f"{url}/metrics", timeout=10).text
        assert f'arm="{name}/1"' in exposition and "mltrail_arm_requests" in exposition
        assert "mltrail_arm_propensity" in exposition
        # The policy's key column is required.
        missing = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": [{"income": 1.0, "age": 0.0}]}, timeout=10)
        assert missing.status_code == 400 and "user_id" in missing.text

        # Switched at runtime to a shadow through the tracking server (an audit event).
        shadow = write_policy(tmp_path, f'kind = "shadow"\narms = ["{name}/1", "{name}/2"]\n')
        mltrail(server, "experiments", "set-policy", str(shadow), "--deployment", deployment)
        # (Under the split, a row without its key is refused; under the shadow, it is answered.)
        wait_for(lambda: requests.post(f"{url}/api/v1/predict", json={"dataframe_records": [{"income": 1.0, "age": 0.0}]},
                                       timeout=10).status_code == 200)
        answered = [predict(url, [{"income": 1.0, "age": 0.0}])[0] for _ in range(20)]
        assert all(p["version"] == "1" and p["arm"] == f"{name}/1" for p in answered)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = tmp_path / "all.parquet"
    mltrail(server, "predictions", "export", "--deployment", deployment, "--output", str(out),
            "--log-dir", str(tmp_path / "predictions"))
    frame = pd.read_parquet(out)
    frame = frame[(frame["type"] == "prediction") & (frame["policy"] == "shadow")]
    shadows = frame[frame["returned"] == False]  # noqa: E712
    returned = frame[frame["returned"] == True]  # noqa: E712
    ids = set(returned["id"])
    assert len(shadows) >= 1 and set(shadows["shadow_of"]) <= ids
    assert (shadows["version"] == "2").all() and shadows["propensity"].isna().all()
    # The shadow's answer is logged: version 2's label differs from version 1's.
    first = returned.set_index("id").loc[shadows["shadow_of"].iloc[0]]
    assert json.loads(shadows["outputs"].iloc[0])["label"] != json.loads(first["outputs"])["label"]

    changes = [e for e in trail(server, f"routing_policy:{deployment}")]
    assert [e["action"] for e in changes] == ["routing.set_policy", "routing.set_policy"]


def test_a_canary_that_degrades_accuracy_rolls_back_and_a_good_one_completes(server, two_versions, tmp_path, unique):
    name = two_versions
    rows = [{"income": 1.0, "age": 0.0, "user_id": f"c{i}"} for i in range(120)]

    # Version 2 answers 0 where version 1 (and the truth) says 1: its accuracy drops by ~1. The
    # canary is alias-driven: `candidate` was moved to version 2, and goes back to 1.
    client = requests.Session()
    moved = client.post(f"{server['url']}/api/2.0/mlflow/registered-models/alias", timeout=10,
                        json={"name": name, "alias": "candidate", "version": "2"})
    assert moved.status_code == 200, moved.text
    deployment = unique("canary-bad")
    # A policy naming a version that does not exist is refused before any replica sees it.
    nothing = requests.put(f"{server['url']}/api/v1/deployments/{deployment}/policy", timeout=10,
                           json={"policy": {"kind": "canary", "arms": [f"{name}/1", f"{name}/99"]}})
    assert nothing.status_code == 400 and "policy.arms" in nothing.text, nothing.text
    bad = write_policy(tmp_path, f'''
kind = "canary"
arms = ["{name}/1", "{name}@candidate"]
key = "user_id"
steps = [50, 100]
step_seconds = 3600
window_seconds = 30
min_requests = 10
max_accuracy_drop = 0.2
move_alias_back = true
''')
    proc, url = start(server, tmp_path, deployment, "--policy", str(bad))
    try:
        answered = predict(url, rows)
        assert {p["arm"] for p in answered} == {f"{name}/1", f"{name}@candidate"}
        assert all(p["propensity"] == 0.5 for p in answered)
        for p in answered:
            fb = requests.post(f"{url}/api/v1/feedback", json={"prediction_id": p["prediction_id"], "label": 1}, timeout=10)
            assert fb.status_code == 200, fb.text
        started = time.time()
        policy = wait_for(lambda: (lambda got: got if got["rolled_back"] else None)(
            requests.get(f"{server['url']}/api/v1/deployments/{deployment}/policy", timeout=5).json()))
        # Within one window (30 s) of the labels, well within it in fact.
        assert time.time() - started < 30
        assert policy["rolled_back"]["rule"] == "max_accuracy_drop" and policy["rolled_back"]["value"] > 0.2
        assert policy["rolled_back"]["candidate_arm"] == f"{name}@candidate"
        assert policy["rolled_back"]["alias"] == {"alias": f"{name}@candidate", "moved_to": "1"}
        alias = client.get(f"{server['url']}/api/2.0/mlflow/registered-models/alias", timeout=10,
                           params={"name": name, "alias": "candidate"}).json()
        assert alias["model_version"]["version"] == "1"
        after = wait_for(lambda: (lambda ps: ps if all(p["arm"] == f"{name}/1" for p in ps) else None)(predict(url, rows[:20])))
        assert all(p["propensity"] == 1.0 for p in after)
        rollbacks = [e for e in trail(server, f"routing_policy:{deployment}") if e["action"] == "routing.rollback"]
        assert len(rollbacks) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # The same model registered again is a candidate as good as the stable arm: it completes
    # its schedule and takes all the traffic.
    same = subprocess.run([server["binary"], "models", "register", name, str(tmp_path / "v1.onnx"), "--signature",
                           "income,age", "--tracking-uri", server["url"]], capture_output=True, text=True, timeout=60)
    assert same.returncode == 0, same.stderr
    third = same.stdout.strip().splitlines()[-1].split()[-1]
    deployment = unique("canary-good")
    good = write_policy(tmp_path, f'''
kind = "canary"
arms = ["{name}/1", "{name}/{third}"]
key = "user_id"
steps = [50, 100]
step_seconds = 1
min_requests = 10
max_accuracy_drop = 0.2
''')
    proc, url = start(server, tmp_path, deployment, "--policy", str(good))
    try:
        for p in predict(url, rows):
            requests.post(f"{url}/api/v1/feedback", json={"prediction_id": p["prediction_id"], "label": 1}, timeout=10)
        done = wait_for(lambda: (lambda ps: ps if all(p["arm"] == f"{name}/{third}" for p in ps) else None)(predict(url, rows)))
        assert all(p["propensity"] == 1.0 for p in done)
        assert requests.get(f"{server['url']}/api/v1/deployments/{deployment}/policy", timeout=5).json()["rolled_back"] is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_slow_shadow_adds_no_error_to_the_primary_and_its_latency_is_measured(server, two_versions, tmp_path, unique):
    """The shadow is a 400-tree ensemble, several times the primary's (a logistic regression)
    work. The primary's p99 over sequential requests is measured alone, then
    with the shadow behind it."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier

    name = two_versions
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    heavy = GradientBoostingClassifier(n_estimators=400, max_depth=6, random_state=0).fit(x, y)
    onnx = to_onnx(heavy, x[:1], options={id(heavy): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    path = tmp_path / "heavy.onnx"
    path.write_bytes(onnx.SerializeToString())
    registered = mltrail(server, "models", "register", name, str(path), "--signature", "income,age")
    heavy_version = registered.stdout.strip().splitlines()[-1].split()[-1]

    rows = [{"income": float(a), "age": float(b)} for a, b in rng.normal(size=(50, 2))]

    def p99(url, n=200):
        took = []
        for i in range(n):
            start = time.perf_counter()
            answer = requests.post(f"{url}/api/v1/predict", json={"dataframe_records": rows}, timeout=10)
            took.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            assert all(p["version"] == "1" for p in answer.json()["predictions"])
        return float(np.percentile(took, 99))

    alone, url = start(server, tmp_path, unique("primary"), "--model", f"{name}/1")
    try:
        p99(url, 20)
        without = p99(url)
    finally:
        alone.terminate()
        alone.wait(timeout=30)
    policy = write_policy(tmp_path, f'kind = "shadow"\narms = ["{name}/1", "{name}/{heavy_version}"]\n')
    deployment = unique("shadowed")
    shadowed, url = start(server, tmp_path, deployment, "--policy", str(policy))
    try:
        p99(url, 20)
        with_shadow = p99(url)
        skipped = [line for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines()
                   if line.startswith("mltrail_shadow_skipped")]
    finally:
        shadowed.terminate()
        shadowed.wait(timeout=30)
    print(f"primary p99 alone {without * 1000:.2f} ms, with a slow shadow {with_shadow * 1000:.2f} ms; {skipped}")
    # No error and always the primary's answer (above), and the shadow did score: its records
    # are in the shadows' own log. What it costs the primary's p99 is measured here and by
    # bench/serving_ab.py --policy-b shadow; the +10 % bar is not met yet at 100 rows and 16
    # connections (docs/benchmarks.md), so this test does not claim it.
    out = tmp_path / "shadowed.parquet"
    mltrail(server, "predictions", "export", "--deployment", deployment, "--output", str(out),
            "--log-dir", str(tmp_path / "predictions"))
    frame = pd.read_parquet(out)
    shadows = frame[(frame["type"] == "prediction") & (frame["returned"] == False)]  # noqa: E712
    assert len(shadows) > 0 and (shadows["version"] == heavy_version).all()
    assert shadows["shadow_of"].notna().all()
