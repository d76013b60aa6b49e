"""MLflow's AuthServiceClient against `mltrail server --auth on` (run by the suite's auth pass,
MLTRAIL_TEST_AUTH=on; skipped otherwise): users created, read, promoted, re-passworded and deleted
through the routes the pinned client calls; per-resource permissions granted, resolved and
enforced (READ may not log, DENY and NO_PERMISSIONS hide from search, MANAGE may grant); roles."""
import os
import subprocess

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException


def as_user(username, password):
    """The client's credentials for the next calls (the mlflow client reads them per request)."""
    os.environ["MLFLOW_TRACKING_USERNAME"] = username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


@pytest.fixture
def auth(server):
    if not server["auth"]:
        pytest.skip("runs in the suite's --auth on pass")
    from mlflow.server import get_app_client

    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    yield get_app_client("basic-auth", tracking_uri=server["url"])
    as_user(*admin)


def test_auth_service_client_manages_users(auth, client, unique):
    name = unique("bob")
    user = auth.create_user(name, "bob-password-0001")
    assert user.username == name and not user.is_admin and user.id > 0
    assert auth.get_user(name).id == user.id
    with pytest.raises(RestException, match="RESOURCE_ALREADY_EXISTS"):
        auth.create_user(name, "bob-password-0001")
    with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
        auth.create_user(unique("short"), "short")

    # A plain user reads (the default READ), may not write what they were not granted, nor
    # manage users.
    experiment = client.create_experiment(unique("owned-by-admin"))
    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    as_user(name, "bob-password-0001")
    assert client.get_experiment(experiment).experiment_id == experiment
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.set_experiment_tag(experiment, "k", "v")
    with pytest.raises(RestException, match="PERMISSION_DENIED"):
        auth.create_user(unique("eve"), "eve-password-0001")
    # Self-service password change needs the current password.
    with pytest.raises(RestException, match="Current password is required"):
        auth.update_user_password(name, "bob-password-0002")
    auth.update_user_password(name, "bob-password-0002", current_password="bob-password-0001")
    as_user(name, "bob-password-0001")
    with pytest.raises(MlflowException, match="401|UNAUTHENTICATED|not authenticated"):
        client.get_experiment(experiment)

    # Promoted, bob writes; deleted, bob is out.
    as_user(*admin)
    auth.update_user_admin(name, True)
    assert auth.get_user(name).is_admin
    as_user(name, "bob-password-0002")
    client.create_experiment(unique("by-admin-bob"))
    as_user(*admin)
    auth.delete_user(name)
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        auth.get_user(name)


def visible(client, experiment_id):
    return experiment_id in {e.experiment_id for e in client.search_experiments(max_results=50000)}


def test_permissions_are_granted_resolved_and_enforced(auth, client, unique, server):
    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    bob, carol = unique("bob"), unique("carol")
    auth.create_user(bob, "bob-password-0001")
    auth.create_user(carol, "carol-password-01")
    theirs = client.create_experiment(unique("admins"))
    model = unique("model")
    client.create_registered_model(model)

    # READ (the default) may view but not log.
    as_user(bob, "bob-password-0001")
    assert client.get_experiment(theirs).experiment_id == theirs
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_run(theirs)
    # The creator of an experiment MANAGEs it: logs, and grants to others.
    mine = client.create_experiment(unique("bobs"))
    run = client.create_run(mine)
    client.log_metric(run.info.run_id, "m", 0.1)
    assert auth.get_user_permission(bob, "experiment", mine).permission == "MANAGE"
    auth.grant_user_permission(carol, "experiment", mine, "EDIT")
    with pytest.raises(RestException, match="RESOURCE_ALREADY_EXISTS"):
        auth.grant_user_permission(carol, "experiment", mine, "READ")
    # Granting needs MANAGE on the resource; NO_PERMISSIONS is never granted (as MLflow 3).
    with pytest.raises(RestException, match="PERMISSION_DENIED"):
        auth.grant_user_permission(carol, "experiment", theirs, "EDIT")
    with pytest.raises(RestException, match="INVALID_PARAMETER_VALUE"):
        auth.grant_user_permission(carol, "experiment", mine, "NO_PERMISSIONS")

    as_user(carol, "carol-password-01")
    client.log_param(client.create_run(mine).info.run_id, "p", "1")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.delete_experiment(mine)  # EDIT does not delete
    # A run that does not exist is refused like one the user may not see.
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.get_run("0" * 32)

    # DENY hides an experiment from search and refuses it, whatever the default.
    as_user(*admin)
    auth.grant_user_permission(carol, "experiment", theirs, "DENY")
    result = auth.get_user_permission(carol, "experiment", theirs)
    assert (result.permission, result.allowed) == ("DENY", False)
    secret_run = client.create_run(theirs).info.run_id
    client.log_text(secret_run, "not for carol", "secret.txt")
    as_user(carol, "carol-password-01")
    assert not visible(client, theirs) and visible(client, mine)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.get_experiment(theirs)
    assert client.search_runs([theirs]) == []
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.list_artifacts(secret_run)
    # A listing reads its folder from the query alone: a body naming another folder is ignored.
    listing = requests.get(server["url"] + "/api/2.0/mlflow-artifacts/artifacts",
                           params={"path": mine}, json={"path": f"{theirs}/{secret_run}/artifacts"},
                           auth=(carol, "carol-password-01"))
    assert listing.status_code == 200 and "secret.txt" not in listing.text, listing.text
    # A version cannot be made from a run one may not read.
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_model_version(model, f"runs:/{secret_run}/model")
    as_user(*admin)
    auth.revoke_user_permission(carol, "experiment", theirs)
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        auth.revoke_user_permission(carol, "experiment", theirs)
    as_user(carol, "carol-password-01")
    assert visible(client, theirs)

    # The mlflow 2.x per-resource route stores NO_PERMISSIONS: that user no longer sees it.
    as_user(*admin)
    url = server["url"] + "/api/2.0/mlflow/experiments/permissions/create"
    answer = requests.post(url, json={"experiment_id": theirs, "username": carol, "permission": "NO_PERMISSIONS"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["experiment_permission"]["permission"] == "NO_PERMISSIONS"
    as_user(carol, "carol-password-01")
    assert not visible(client, theirs)
    as_user(*admin)
    requests.delete(server["url"] + "/api/2.0/mlflow/experiments/permissions/delete",
                    json={"experiment_id": theirs, "username": carol}).raise_for_status()

    # Registered models: READ may not change; a grant of EDIT may; aliases need EDIT.
    as_user(bob, "bob-password-0001")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.update_registered_model(model, description="by bob")
    as_user(*admin)
    auth.grant_user_permission(bob, "registered_model", model, "EDIT")
    as_user(bob, "bob-password-0001")
    client.update_registered_model(model, description="by bob")
    assert client.get_registered_model(model).description == "by bob"
    # A version's files must be readable by whoever registers it, wherever the source names them.
    as_user(*admin)
    auth.grant_user_permission(bob, "experiment", theirs, "DENY")
    as_user(bob, "bob-password-0001")
    for source in (f"mlflow-artifacts:/{theirs}/{secret_run}/artifacts", "mlflow-artifacts:/predictions/d"):
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
            client.create_model_version(model, source)
    as_user(*admin)
    auth.revoke_user_permission(bob, "experiment", theirs)

    # A DENY on every experiment forbids creating one, as in MLflow.
    as_user(*admin)
    auth.grant_user_permission(carol, "experiment", "*", "DENY")
    as_user(carol, "carol-password-01")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_experiment(unique("by-carol"))
    as_user(*admin)
    auth.revoke_user_permission(carol, "experiment", "*")

    # Roles bundle permissions: a role with EDIT on every experiment, assigned to carol.
    as_user(*admin)
    role = auth.create_role("default", unique("editors"), "may log anywhere")
    granted = auth.add_role_permission(role.id, "experiment", "*", "EDIT")
    assert granted.permission == "EDIT" and auth.list_role_permissions(role.id)[0].id == granted.id
    auth.assign_role(carol, role.id)
    assert role.id in {r.id for r in auth.list_user_roles(carol)}
    as_user(carol, "carol-password-01")
    client.create_run(theirs)
    as_user(*admin)
    auth.unassign_role(carol, role.id)
    as_user(carol, "carol-password-01")
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_run(theirs)
    as_user(*admin)
    auth.delete_role(role.id)
    auth.delete_user(bob)
    auth.delete_user(carol)


def test_release_roles_open_what_they_name(auth, client, unique, server):
    """An auditor reads the archive of prediction logs; a plain user may not; nobody else's
    grants decide it."""
    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    auditor, plain = unique("auditor"), unique("plain")
    for name in (auditor, plain):
        auth.create_user(name, "a-password-of-12")
    done = subprocess.run([server["binary"], "users", "set-roles", auditor, "auditor",
                           "--backend-store-uri", server["backend"]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    archived = server["url"] + "/api/2.0/mlflow-artifacts/artifacts/predictions/roles/2026-12-03/x.parquet"
    requests.put(archived, data=b"stands for a Parquet file", auth=admin).raise_for_status()
    assert requests.get(archived, auth=(auditor, "a-password-of-12")).status_code == 200
    assert requests.get(archived, auth=(plain, "a-password-of-12")).status_code == 403
    listing = server["url"] + "/api/2.0/mlflow-artifacts/artifacts"
    assert requests.get(listing, params={"path": "predictions"}, auth=(plain, "a-password-of-12")).status_code == 403
    assert requests.get(listing, params={"path": "predictions"}, auth=(auditor, "a-password-of-12")).status_code == 200
    # The auditor changes nothing they were not granted.
    assert requests.put(archived, data=b"x", auth=(auditor, "a-password-of-12")).status_code == 403
    auth.delete_user(auditor)
    auth.delete_user(plain)
