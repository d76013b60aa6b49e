"""A real `mltrail server` (SQLite, --auth on) with data logged through the real mlflow client, and
headless Chromium signed in as its admin, for the web UI's tests.

Screenshots go to target/ui-screenshots/ (MLTRAIL_UI_SCREENSHOTS to change) for a person to look at.
"""
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
ADMIN, PASSWORD = "ui-admin", "ui-password-0001"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("mltrail-ui")
    binary = os.environ.get("MLTRAIL_BIN", str(ROOT / "target" / "debug" / "mltrail"))
    port = free_port()
    log = open(data / "server.log", "w")
    env = dict(os.environ, MLTRAIL_ADMIN_USERNAME=ADMIN, MLTRAIL_ADMIN_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [binary, "server", "--port", str(port), "--backend-store-uri", f"sqlite:///{data}/mltrail.db",
         "--artifacts-destination", str(data / "artifacts"), "--auth", "on"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"mltrail server did not start: {(data / 'server.log').read_text()}")
            time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    os.environ.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=PASSWORD)
    yield {"url": url, "data": data}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser(server, tmp_path_factory):
    from cdp import Browser

    token = base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()
    b = Browser(tmp_path_factory.mktemp("chromium"), headers={"Authorization": f"Basic {token}"})
    yield b
    b.close()


@pytest.fixture(scope="session")
def shots():
    return Path(os.environ.get("MLTRAIL_UI_SCREENSHOTS", ROOT / "target" / "ui-screenshots"))
