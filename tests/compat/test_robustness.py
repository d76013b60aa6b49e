"""`mltrail robustness` on tree ensembles the real mlflow client logged (a gradient-boosted and a
random forest classifier): every adversarial example it writes flips onnxruntime's answer on
the same ONNX file and lies within ε of its row (in training standard deviations); the verified
bound never exceeds the attack's; the report is kept, audited, and read by a release gate."""
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import requests

from test_serving import credit_model  # noqa: F401  (a fixture)


def mltrail(server, *args, check=True):
    done = subprocess.run([server["binary"], *args, "--tracking-uri", server["url"]],
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def labelled(frame, seed):
    rng = np.random.default_rng(seed)
    truth = ((frame.income > 50) & (frame.debt_ratio < 0.3)).astype(int).to_numpy()
    return frame.assign(label=np.where(rng.random(len(truth)) < 0.05, 1 - truth, truth))


def store(server, data, tmp_path, name):
    path = tmp_path / f"{name}.csv"
    data.to_csv(path, index=False)
    mltrail(server, "data", "add", str(path), "--name", name, "--target", "label")
    return f"{name}@1"


def random_forest(frame, unique):
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    label = labelled(frame, 7).label
    model = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(frame.values, label)
    onnx_model = to_onnx(model, frame.values[:1], options={id(model): {"zipmap": False}},
                         target_opset={"": 17, "ai.onnx.ml": 3})
    name = unique("forest")
    with mlflow.start_run():
        mlflow.onnx.log_model(onnx_model, name="model", registered_model_name=name,
                              signature=infer_signature(frame, label))
    return name, onnx_model


def onnx_of(client, name):
    """The registered version's ONNX file, as onnxruntime loads it."""
    import mlflow.onnx

    return mlflow.onnx.load_model(f"models:/{name}/1")


def check_examples(server, onnx_model, examples_ref, train, epsilon, features):
    import onnxruntime as ort

    rows = requests.get(f"{server['url']}/api/v1/datasets/{examples_ref.split('@')[0]}/versions/{examples_ref.split('@')[1]}",
                        timeout=30).json()["dataset_version"]
    source = rows["source"]
    data = requests.get(f"{server['url']}/api/2.0/mlflow-artifacts/artifacts/{source}", timeout=30).content
    from io import BytesIO

    adversarial = pd.read_csv(BytesIO(data))
    assert len(adversarial) > 0
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = adversarial[features].to_numpy(dtype=np.float32)
    predicted = session.run(None, {session.get_inputs()[0].name: x})[0]
    # Every example flips onnxruntime's answer away from the row's true label...
    assert (predicted != adversarial.label.to_numpy()).all()
    return adversarial


@pytest.mark.parametrize("kind", ["boosted", "forest"])
def test_examples_flip_onnxruntime_within_epsilon_and_bounds_are_ordered(server, client, credit_model, tmp_path,
                                                                         unique, kind):
    name, frame = credit_model
    if kind == "forest":
        name, _ = random_forest(frame, unique)
    onnx_model = onnx_of(client, name)
    train = labelled(frame, 3)
    training = store(server, train, tmp_path, unique("train"))
    client.set_model_version_tag(name, "1", "mltrail.training_data", training)
    holdout = store(server, labelled(frame, 5), tmp_path, unique("holdout"))
    epsilon = 0.3
    augmented = unique("adversarial")
    out = mltrail(server, "robustness", f"{name}/1", "--data", holdout, "--epsilon", str(epsilon),
                  "--max-rows", "150", "--queries", "3000", "--iterations", "20", "--augment", augmented, "--json")
    report = json.loads(out.stdout)
    assert report["format"] == "mltrail.robustness/1" and report["scale"]["source"] == "training_std"
    assert 0 <= report["verified_robust_accuracy"] <= report["robust_accuracy"] <= report["clean_accuracy"] <= 1
    assert report["verification"]["verified"] <= report["rows_attacked"]
    assert {a["attack"] for a in report["attacks"]} == {"tree_thresholds", "hop_skip_jump"}
    assert report["attack_success_rate"] > 0, "ε = 0.3 std flips some rows of this model"
    assert [n["sigma"] for n in report["noise"]] == [0.05, 0.1, 0.2]
    assert [m["feature"] for m in report["missing"]] == list(frame.columns)

    # The examples: re-scored by onnxruntime (not mltrail), each flips and lies within ε of its
    # row, measured in the training data's standard deviations.
    features = list(frame.columns)
    adversarial = check_examples(server, onnx_model, report["augmented"]["dataset_version"], train, epsilon, features)
    std = train[features].to_numpy(dtype=np.float64).std(axis=0)
    holdout_rows = labelled(frame, 5)[features].to_numpy(dtype=np.float32).astype(np.float64)
    x = adversarial[features].to_numpy(dtype=np.float64)
    nearest = np.abs((x[:, None, :] - holdout_rows[None, :, :]) / std).max(axis=2).min(axis=1)
    assert (nearest <= epsilon * (1 + 1e-6)).all(), nearest.max()
    assert len(adversarial) == round(report["attack_success_rate"] * report["rows_attacked"])
    version = client.get_model_version(name, "1")
    assert version.tags["mltrail.adversarial_data"] == report["augmented"]["dataset_version"]

    # Kept and audited; a gate reads it.
    kept = requests.get(f"{server['url']}/api/v1/models/{name}/versions/1/robustness", timeout=30).json()
    assert kept["digest"] == report["digest"] and kept["robustness"]["robust_accuracy"] == report["robust_accuracy"]
    mltrail(server, "gates", "set", name, "--alias", "staging", "--approvals", "0",
            "--require", f"robustness.robust_accuracy >= {report['robust_accuracy']}",
            "--require", "robustness.verified_robust_accuracy > 1")
    checked = mltrail(server, "gates", "check", f"{name}/1", "--alias", "staging", "--json", check=False)
    result = json.loads(checked.stdout)
    assert [r["verdict"] for r in result["requirements"]] == ["pass", "fail"]
    assert result["evidence"]["candidate"]["robustness"]["digest"] == report["digest"]
    # The version's page shows it.
    page = requests.get(f"{server['url']}/ui/models/{name}/versions/1", timeout=30).text
    assert "robust accuracy (upper bound)" in page and report["augmented"]["dataset_version"] in page


def test_bad_arguments_are_refused_with_one_line(server, client, credit_model, tmp_path, unique):
    name, frame = credit_model
    holdout = store(server, labelled(frame, 5), tmp_path, unique("holdout"))
    for args, says in [
        (["--epsilon", "0"], "--epsilon"),
        (["--epsilon", "nan"], "--epsilon"),
        (["--epsilon", "0.1", "--norm", "l2"], "only linf"),
        (["--epsilon", "0.1", "--raw", "--features", "nope"], "not an input"),
        (["--epsilon", "0.1"], "--training-data"),  # no training data recorded, and no --raw
        (["--epsilon", "0.1", "--raw", "--label", "nope"], "not a column"),
    ]:
        done = mltrail(server, "robustness", f"{name}/1", "--data", holdout, *args, check=False)
        assert done.returncode != 0 and says in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
