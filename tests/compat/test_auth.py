"""MLflow's AuthServiceClient against `mltrail server --auth on` (run by the suite's auth pass,
MLTRAIL_TEST_AUTH=on; skipped otherwise): users created, read, promoted, re-passworded and deleted
through the routes the pinned client calls, and what a plain user may not do."""
import os

import pytest
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

    # A plain user reads, but may not write (per-resource grants are not built yet) nor manage users.
    experiment = client.create_experiment(unique("owned-by-admin"))
    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    as_user(name, "bob-password-0001")
    assert client.get_experiment(experiment).experiment_id == experiment
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_experiment(unique("by-bob"))
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
