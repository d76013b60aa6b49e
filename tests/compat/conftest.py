"""Starts a real `mltrail server` for the compatibility suite and points the mlflow client at it.

Environment:
  MLTRAIL_BIN                  the binary (default: target/debug/mltrail)
  MLTRAIL_TEST_BACKEND_URI     metadata store (default: a fresh SQLite file in a temp folder)
  MLTRAIL_TEST_ARTIFACTS       artifact destination (default: a temp folder)
  MLTRAIL_TEST_AUTH            `on`: the server runs with --auth on and the client logs in as the
                               first admin with MLFLOW_TRACKING_USERNAME/PASSWORD (HTTP Basic)
"""
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("mltrail")
    binary = os.environ.get("MLTRAIL_BIN", str(ROOT / "target" / "debug" / "mltrail"))
    backend = os.environ.get("MLTRAIL_TEST_BACKEND_URI") or f"sqlite:///{data}/mltrail.db"
    artifacts = os.environ.get("MLTRAIL_TEST_ARTIFACTS") or str(data / "artifacts")
    port = free_port()
    log = open(data / "server.log", "w")
    auth = os.environ.get("MLTRAIL_TEST_AUTH") == "on"
    env = dict(os.environ)
    if auth:
        env.update({"MLTRAIL_ADMIN_USERNAME": "compat-admin", "MLTRAIL_ADMIN_PASSWORD": "compat-password-1"})
        # The mlflow client authenticates as that admin through its own variables; the tests'
        # raw `requests` calls, which send no Authorization header, as the admin too.
        os.environ["MLFLOW_TRACKING_USERNAME"] = "compat-admin"
        os.environ["MLFLOW_TRACKING_PASSWORD"] = "compat-password-1"
        import requests

        plain_request = requests.Session.request

        def request_with_credentials(session, method, url, **kwargs):
            headers = kwargs.get("headers") or {}
            if kwargs.get("auth") is None and not any(k.lower() == "authorization" for k in headers):
                kwargs["auth"] = ("compat-admin", "compat-password-1")
            return plain_request(session, method, url, **kwargs)

        requests.Session.request = request_with_credentials
    proc = subprocess.Popen(
        [binary, "server", "--port", str(port), "--backend-store-uri", backend, "--artifacts-destination", artifacts,
         "--monitor-interval-ms", "200", "--auth", "on" if auth else "off"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mltrail server exited: {(data / 'server.log').read_text()}")
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("mltrail server did not start within 30 s")
    os.environ["MLFLOW_TRACKING_URI"] = url
    yield {"url": url, "backend": backend, "artifacts": artifacts, "binary": binary, "data": data, "auth": auth}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def client(server):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(server["url"])
    return MlflowClient(server["url"])


@pytest.fixture
def unique():
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"
