"""Models logged by mlflow.xgboost.log_model and mlflow.lightgbm.log_model, served by
`mltrail serve --model NAME@ALIAS` with no Python at serve time: the XGBoost UBJSON file, the
LightGBM text model and the skops-stored LightGBM scikit-learn wrappers are read in Rust into
ONNX trees, and the answers must equal the libraries' own (to 1e-6), missing values included."""
import numpy as np
import pandas as pd
import pytest
import requests

from test_serving import start_serve

COLUMNS = ["income", "age", "debt_ratio", "utilization"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(rng.normal(size=(600, 4)), columns=COLUMNS)
    frame["age"] = (frame["age"] * 10 + 40).round()
    # Missing values in training, so trees learn where they go.
    frame.loc[rng.random(600) < 0.05, "debt_ratio"] = np.nan
    score = frame.income + 0.5 * frame.utilization - 0.02 * (frame.age - 40) + np.nan_to_num(frame.debt_ratio)
    binary = (score > 0).astype(int)
    three = np.digitize(score, [-0.7, 0.7])
    target = 100 + 30 * score + rng.normal(size=600)
    return frame, binary, three, target


def log(client, unique, flavor, model, frame, label):
    import mlflow
    from mlflow.models import infer_signature

    name = unique(flavor)
    mlflow.set_experiment(unique("tree-flavors"))
    logger = getattr(mlflow, flavor)
    with mlflow.start_run():
        logger.log_model(model, name="model", registered_model_name=name, signature=infer_signature(frame, label))
    client.set_registered_model_alias(name, "production", "1")
    return name


def served(server, name, tmp_path, sample):
    proc, url = start_serve(server, f"{name}@production", tmp_path / name)
    try:
        rows = [[None if pd.isna(v) else float(v) for v in row] for row in sample.values.tolist()]
        answer = requests.post(f"{url}/api/v1/predict", json={"dataframe_split": {"columns": COLUMNS, "data": rows}},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        return [r["outputs"] for r in answer.json()["predictions"]]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def sample_of(frame):
    sample = frame.sample(60, random_state=2).copy()
    sample.iloc[:5, COLUMNS.index("income")] = np.nan  # missing where training had none
    assert sample.isna().any().any()
    return sample


def check_classifier(outputs, labels, probabilities):
    assert [o["label"] for o in outputs] == [int(v) for v in labels]
    for o, p in zip(outputs, probabilities):
        assert o["probabilities"] == pytest.approx([float(v) for v in p], abs=1e-6)


def test_xgboost_classifiers_and_regressor_answer_as_xgboost(server, client, unique, tmp_path, data):
    import xgboost as xgb

    frame, binary, three, target = data
    sample = sample_of(frame)
    model = xgb.XGBClassifier(n_estimators=40, max_depth=4, learning_rate=0.3).fit(frame, binary)
    outputs = served(server, log(client, unique, "xgboost", model, frame, binary), tmp_path, sample)
    check_classifier(outputs, model.predict(sample), model.predict_proba(sample))

    multi = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(frame, three)
    outputs = served(server, log(client, unique, "xgboost", multi, frame, three), tmp_path, sample)
    check_classifier(outputs, multi.predict(sample), multi.predict_proba(sample))

    regressor = xgb.XGBRegressor(n_estimators=30, max_depth=4).fit(frame, target)
    outputs = served(server, log(client, unique, "xgboost", regressor, frame, target), tmp_path, sample)
    want = regressor.predict(sample)
    assert [o["variable"] for o in outputs] == pytest.approx([float(v) for v in want], rel=1e-6, abs=1e-6)


def test_lightgbm_boosters_and_sklearn_wrappers_answer_as_lightgbm(server, client, unique, tmp_path, data):
    import lightgbm as lgb

    frame, binary, three, target = data
    sample = sample_of(frame)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15}, lgb.Dataset(frame, binary), 30)
    outputs = served(server, log(client, unique, "lightgbm", booster, frame, binary), tmp_path, sample)
    p = booster.predict(sample)
    check_classifier(outputs, (p > 0.5).astype(int), np.column_stack([1 - p, p]))

    # Labels that are not 0..K-1 come back as the classifier's own.
    labels = np.array([3, 5, 9])[three]
    multi = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(frame, labels)
    outputs = served(server, log(client, unique, "lightgbm", multi, frame, labels), tmp_path, sample)
    check_classifier(outputs, multi.predict(sample), multi.predict_proba(sample))

    regressor = lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(frame, target)
    outputs = served(server, log(client, unique, "lightgbm", regressor, frame, target), tmp_path, sample)
    assert [o["variable"] for o in outputs] == pytest.approx([float(v) for v in regressor.predict(sample)],
                                                             rel=1e-6, abs=1e-6)


def test_an_xgboost_prediction_is_explained_by_the_same_treeshap(server, client, unique, tmp_path, data):
    """Read natively, an XGBoost model's trees are the runtime's trees: TreeSHAP explains them in
    log-odds, adding up to the margin, which is the logit of XGBoost's own probability."""
    import json
    import subprocess

    import xgboost as xgb

    frame, binary, _, _ = data
    train = frame.fillna(0.0)
    model = xgb.XGBClassifier(n_estimators=25, max_depth=3).fit(train, binary)
    name = log(client, unique, "xgboost", model, train, binary)
    csv = tmp_path / "train.csv"
    train.assign(label=binary).to_csv(csv, index=False)
    dataset = unique("xgb-train")
    added = subprocess.run([server["binary"], "data", "add", str(csv), "--name", dataset, "--target", "label",
                            "--tracking-uri", server["url"]], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    shown = json.loads(subprocess.run([server["binary"], "data", "show", f"{dataset}@1", "--json", "--tracking-uri",
                                       server["url"]], capture_output=True, text=True, timeout=60).stdout)
    client.set_model_version_tag(name, "1", "mltrail.training_data", f"{dataset}@1")
    client.set_model_version_tag(name, "1", "mltrail.training_data_digest", shown["digest"])
    proc, url = start_serve(server, f"{name}@production", tmp_path / "explained", "--explain", "always")
    try:
        row = train.iloc[[7]]
        answer = requests.post(f"{url}/api/v1/predict", json={"dataframe_split": {
            "columns": COLUMNS, "data": row.values.tolist()}}, timeout=30)
        assert answer.status_code == 200, answer.text
        pid = answer.json()["predictions"][0]["prediction_id"]
        explained = requests.get(f"{url}/api/v1/predictions/{pid}/explanation", timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert explained["method"] == "tree_interventional" and explained["output_space"] == "log_odds"
    values = explained["values"]
    assert set(values) == set(COLUMNS)
    assert explained["base_value"] + sum(values.values()) == pytest.approx(explained["output"], abs=1e-9)
    p = float(model.predict_proba(row)[0, 1])
    assert explained["output"] == pytest.approx(np.log(p / (1 - p)), abs=1e-5)
