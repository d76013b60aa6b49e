"""Release gates through the real mlflow client: a protected alias (and the Production stage)
moves only on evidence (an evaluation meeting the requirements, compared with the champion's)
and, with --auth on, a second person's approval; every accepted move leaves a gate report the
audit trail verifies; an override is an admin's, with a reason, and flagged."""
import json
import os
import subprocess
import time

import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException

from test_auth import as_user
from test_serving import credit_model  # noqa: F401  (a fixture)


def mltrail(server, *args, check=True):
    done = subprocess.run([server["binary"], *args, "--tracking-uri", server["url"]],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def holdout(server, frame, tmp_path, unique):
    """A labelled copy of the training rows with a sensitive column, stored as a dataset."""
    rng = np.random.default_rng(3)
    truth = ((frame.income > 50) & (frame.debt_ratio < 0.3)).astype(int).to_numpy()
    truth = np.where(rng.random(len(truth)) < 0.1, 1 - truth, truth)
    data = frame.assign(label=truth, sex=np.where(rng.random(len(truth)) < 0.5, "f", "m"))
    path = tmp_path / "holdout.csv"
    data.to_csv(path, index=False)
    name = unique("holdout")
    mltrail(server, "data", "add", str(path), "--name", name, "--target", "label")
    return f"{name}@1"


def evaluate(server, model, dataset):
    mltrail(server, "evaluate", model, "--data", dataset, "--sensitive", "sex", "--importance-rows", "0")


def second_version(client, name):
    v1 = client.get_model_version(name, "1")
    return client.create_model_version(name, v1.source, run_id=v1.run_id).version


def gate(server, name, approvals, *requirements):
    args = ["gates", "set", name, "--alias", "production", "--approvals", str(approvals)]
    for r in requirements:
        args += ["--require", r]
    return mltrail(server, *args)


REQUIREMENTS = (
    "evaluation.roc_auc >= 0.8",
    "evaluation.roc_auc >= champion.evaluation.roc_auc - 0.01",
    "fairness.sex.demographic_parity_difference <= 0.5",
)


def test_a_protected_alias_moves_only_on_evidence(server, client, credit_model, tmp_path, unique):
    name, frame = credit_model  # version 1 is at production already, before any gate
    candidate = second_version(client, name)
    gate(server, name, 0, *REQUIREMENTS)
    shown = mltrail(server, "gates", "show", name, "--json")
    assert json.loads(shown.stdout)["gates"][0]["requirements"] == list(REQUIREMENTS)

    # No evidence yet: refused, each failed requirement with its reason.
    with pytest.raises(MlflowException) as refused:
        client.set_registered_model_alias(name, "production", candidate)
    message = str(refused.value)
    assert "evaluation.roc_auc >= 0.8" in message and f"{name}/{candidate} has no evaluation" in message
    assert client.get_registered_model(name).aliases["production"] == "1"
    checked = mltrail(server, "gates", "check", f"{name}/{candidate}", "--alias", "production", check=False)
    assert checked.returncode == 1 and "fails" in checked.stdout

    # The candidate evaluated, the champion not: the champion's requirement says so.
    dataset = holdout(server, frame, tmp_path, unique)
    evaluate(server, f"{name}/{candidate}", dataset)
    with pytest.raises(MlflowException, match=f"{name}/1 has no evaluation"):
        client.set_registered_model_alias(name, "production", candidate)
    evaluate(server, f"{name}/1", dataset)
    client.set_registered_model_alias(name, "production", candidate)
    assert client.get_registered_model(name).aliases["production"] == candidate

    # The move kept a report: every requirement, its value, the evidence's digests.
    reports = requests.get(f"{server['url']}/api/v1/models/{name}/gate-reports", timeout=30).json()["gate_reports"]
    assert len(reports) == 1
    report = reports[0]["report"]
    assert [r["requirement"] for r in report["requirements"]] == list(REQUIREMENTS)
    assert all(r["verdict"] == "pass" and isinstance(r["value"], float) for r in report["requirements"])
    assert report["champion"] == 1 and report["passed"] and report["override"] is None
    kept = requests.get(f"{server['url']}/api/v1/models/{name}/versions/{candidate}/evaluation", timeout=30).json()
    assert report["evidence"]["candidate"]["evaluation"]["digest"] == kept["digest"]
    # The trail holds the report under its digest, just before the move it admitted.
    log = subprocess.run([server["binary"], "audit", "log", "--entity", f"gate_report:{reports[0]['digest']}",
                          "--json", "--backend-store-uri", server["backend"]], capture_output=True, text=True)
    assert log.returncode == 0, log.stderr
    events = [json.loads(line) for line in log.stdout.splitlines()]
    assert [(e["action"], e["state_digest"]) for e in events] == [("gate.pass", reports[0]["digest"])]
    verified = subprocess.run([server["binary"], "audit", "verify", "--backend-store-uri", server["backend"]],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # MLflow's stage Production is guarded by the same gate: a version without evidence stays out.
    third = second_version(client, name)
    with pytest.raises(MlflowException, match="refuses moving version .* into stage Production"):
        client.transition_model_version_stage(name, third, "Production")
    assert client.get_model_version(name, third).current_stage == "None"
    client.transition_model_version_stage(name, third, "Staging")  # no gate on staging


def test_requirements_and_policies_are_checked_when_set(server, client, credit_model):
    name, _ = credit_model
    bad = mltrail(server, "gates", "set", name, "--alias", "production", "--require", "roc_auc > 0.8", check=False)
    assert bad.returncode != 0 and "evaluation.METRIC" in bad.stderr
    answer = requests.put(f"{server['url']}/api/v1/models/{name}/gates/production",
                          json={"requirements": ["evaluation.roc_auc >= 0.8"], "approvals": -1}, timeout=30)
    assert answer.status_code == 400 and "approvals" in answer.json()["message"]
    answer = requests.put(f"{server['url']}/api/v1/models/{name}/gates/production",
                          json={"requirements": "evaluation.roc_auc >= 0.8"}, timeout=30)
    assert answer.status_code == 400 and "requirements" in answer.json()["message"]


def test_approvals_need_identified_users(server, client, credit_model):
    if server["auth"]:
        pytest.skip("auth off only")
    name, _ = credit_model
    answer = requests.post(f"{server['url']}/api/v1/models/{name}/versions/1/approvals",
                           json={"alias": "production"}, timeout=30)
    assert answer.status_code == 403 and "--auth on" in answer.json()["message"]


@pytest.fixture
def auth(server):
    if not server["auth"]:
        pytest.skip("runs in the suite's --auth on pass")
    from mlflow.server import get_app_client

    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    yield get_app_client("basic-auth", tracking_uri=server["url"]), admin
    as_user(*admin)


def test_four_eyes_and_overrides(server, client, auth, credit_model, tmp_path, unique):
    auth_client, admin = auth
    name, frame = credit_model  # registered by the admin: the admin is the versions' author
    approver, plain = unique("approver"), unique("plain")
    for user in (approver, plain):
        auth_client.create_user(user, "a-password-of-12")
    roles = subprocess.run([server["binary"], "users", "set-roles", approver, "approver",
                            "--backend-store-uri", server["backend"]], capture_output=True, text=True)
    assert roles.returncode == 0, roles.stderr
    candidate = second_version(client, name)
    gate(server, name, 1, *REQUIREMENTS[:1])
    dataset = holdout(server, frame, tmp_path, unique)
    evaluate(server, f"{name}/{candidate}", dataset)
    with pytest.raises(MlflowException, match="approvals: 0 of 1"):
        client.set_registered_model_alias(name, "production", candidate)

    # The author's own approval does not count: it is refused, the approver role notwithstanding.
    roles = subprocess.run([server["binary"], "users", "set-roles", admin[0], "approver",
                            "--backend-store-uri", server["backend"]], capture_output=True, text=True)
    assert roles.returncode == 0, roles.stderr
    own = mltrail(server, "models", "approve", f"{name}/{candidate}", "--comment", "mine", check=False)
    assert own.returncode != 0 and "author of a version cannot approve it" in own.stderr
    # Nor may a user without the approver role approve.
    as_user(plain, "a-password-of-12")
    assert mltrail(server, "models", "approve", f"{name}/{candidate}", check=False).returncode != 0
    # The approver does; then the mlflow client's move passes.
    as_user(approver, "a-password-of-12")
    mltrail(server, "models", "approve", f"{name}/{candidate}", "--comment", "checked the holdout")
    as_user(*admin)
    # An approval lapses with its approver's role.
    subprocess.run([server["binary"], "users", "set-roles", approver, "", "--backend-store-uri", server["backend"]],
                   check=True, capture_output=True)
    time.sleep(0.2)
    with pytest.raises(MlflowException, match="approvals: 0 of 1"):
        client.set_registered_model_alias(name, "production", candidate)
    subprocess.run([server["binary"], "users", "set-roles", approver, "approver", "--backend-store-uri",
                    server["backend"]], check=True, capture_output=True)
    client.set_registered_model_alias(name, "production", candidate)
    report = requests.get(f"{server['url']}/api/v1/models/{name}/gate-reports", timeout=30).json()["gate_reports"][0]
    given = report["report"]["approvals"]["given"]
    assert [(a["approver"], a["comment"]) for a in given] == [(f"user:{approver}", "checked the holdout")]

    # A new version needs new approvals; the stage path says so too.
    third = second_version(client, name)
    evaluate(server, f"{name}/{third}", dataset)
    with pytest.raises(MlflowException, match="approvals: 0 of 1"):
        client.transition_model_version_stage(name, third, "Production")

    # An override is an admin's, needs a reason, and is flagged in the report and the trail.
    move = f"{server['url']}/api/v1/models/{name}/aliases/production"
    auth_client.grant_user_permission(approver, "registered_model", name, "EDIT")  # may move aliases
    denied = requests.post(move, json={"version": third, "override_reason": "hotfix"},
                           auth=(approver, "a-password-of-12"), timeout=30)
    assert denied.status_code == 403 and "admin" in denied.json()["message"]
    as_user(*admin)
    assert requests.post(move, json={"version": third, "override_reason": " "}, timeout=30).status_code == 400
    # A token may move aliases only with `aliases:move`, and change gates only with `admin`.
    answer = requests.put(f"{server['url']}/api/v1/models/{name}/gates/production",
                          json={"requirements": [], "approvals": 0}, auth=(approver, "a-password-of-12"), timeout=30)
    assert answer.status_code == 403, answer.text
    done = mltrail(server, "models", "set-alias", f"{name}/{third}", "--alias", "production",
                   "--override-reason", "incident 4711: roll forward")
    assert "OVERRIDDEN" in done.stdout
    latest = requests.get(f"{server['url']}/api/v1/models/{name}/gate-reports", params={"version": third},
                          timeout=30).json()["gate_reports"][0]
    assert latest["report"]["override"] == {"by": f"user:{admin[0]}", "reason": "incident 4711: roll forward"}
    assert not latest["report"]["passed"]
    log = subprocess.run([server["binary"], "audit", "log", "--entity", f"gate_report:{latest['digest']}", "--json",
                          "--backend-store-uri", server["backend"]], capture_output=True, text=True)
    assert [json.loads(line)["action"] for line in log.stdout.splitlines()] == ["gate.override"]
    assert client.get_registered_model(name).aliases["production"] == str(third)
    for user in (approver, plain):
        auth_client.delete_user(user)


def test_drift_compares_the_candidates_training_data_with_production_inputs(server, client, credit_model, tmp_path,
                                                                           unique):
    import time

    from test_serving import start_serve

    name, frame = credit_model
    training = tmp_path / "train.csv"
    frame.to_csv(training, index=False)
    dataset = unique("credit-train")
    mltrail(server, "data", "add", str(training), "--name", dataset)
    candidate = second_version(client, name)
    client.set_model_version_tag(name, candidate, "mltrail.training_data", f"{dataset}@1")
    mltrail(server, "gates", "set", name, "--alias", "staging", "--approvals", "0",
            "--require", "drift.share <= 0.1")
    # No deployment serves the model yet: the requirement fails, saying so.
    checked = mltrail(server, "gates", "check", f"{name}/{candidate}", "--alias", "staging", "--json", check=False)
    assert "no deployment of" in json.loads(checked.stdout)["requirements"][0]["reason"]

    deployment = unique("credit-prod")
    proc, url = start_serve(server, f"{name}@production", tmp_path, "--deployment", deployment,
                            "--segment-seconds", "1", "--archive-interval-ms", "200")
    try:
        shifted = frame.assign(income=frame.income + 30)
        body = {"dataframe_split": {"columns": list(shifted.columns), "data": shifted.values.tolist()}}
        assert requests.post(f"{url}/api/v1/predict", json=body, timeout=60).status_code == 200
        deadline, report = time.time() + 60, None
        while time.time() < deadline:
            checked = mltrail(server, "gates", "check", f"{name}/{candidate}", "--alias", "staging", "--json",
                              check=False)
            report = json.loads(checked.stdout)
            if report["requirements"][0]["value"] is not None:
                break
            time.sleep(0.3)
        requirement = report["requirements"][0]
        # income moved by 3 standard deviations: 1 of 3 columns drifted.
        assert requirement["verdict"] == "fail" and abs(requirement["value"] - 1 / 3) < 1e-12, requirement
        drift = report["evidence"]["candidate"]["drift"]
        assert drift["training_data"] == f"{dataset}@1"
        assert [d["deployment"] for d in drift["deployments"]] == [deployment]
        assert drift["deployments"][0]["drifted"] == ["income"] and drift["deployments"][0]["rows"] == len(frame)
        with pytest.raises(MlflowException, match="drift.share <= 0.1: value 0.333"):
            client.set_registered_model_alias(name, "staging", candidate)
        mltrail(server, "gates", "set", name, "--alias", "staging", "--approvals", "0",
                "--require", "drift.share <= 0.5")
        client.set_registered_model_alias(name, "staging", candidate)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
