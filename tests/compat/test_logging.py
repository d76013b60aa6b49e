"""One logging configuration for every service: the tracking server holds the log filter and
format, and a running `mltrail serve` (and the server itself) switches to a new format within
seconds, without a restart; every change is an audit event."""
import json
import os
import subprocess
import time

import requests

from test_serving import credit_model  # noqa: F401  (a fixture)


def lines_of(path):
    return [line for line in path.read_text().splitlines() if line.strip()]


def wait_for_line(path, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for line in lines_of(path):
            found = check(line)
            if found:
                return found
        time.sleep(0.2)
    raise AssertionError(f"no such line in {path}:\n" + "\n".join(lines_of(path)[-20:]))


def as_json(line):
    try:
        return json.loads(line)
    except ValueError:
        return None


def test_a_running_serve_follows_the_servers_log_format(server, credit_model, tmp_path, unique):  # noqa: F811
    name, _ = credit_model
    err = tmp_path / "serve.log"
    env = dict(os.environ)
    env.pop("MLTRAIL_LOG", None)
    with open(err, "w") as stderr:
        proc = subprocess.Popen([server["binary"], "serve", "--model", f"{name}/1", "--tracking-uri", server["url"],
                                 "--port", "0", "--log-dir", str(tmp_path / "predictions")],
                                stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    try:
        assert "listening on" in proc.stdout.readline()
        # The serve starts in its own format: text.
        assert as_json(wait_for_line(err, lambda l: "serving" in l and l)) is None

        def cli(*args, check=True):
            done = subprocess.run([server["binary"], "logging", *args, "--tracking-uri", server["url"]],
                                  capture_output=True, text=True, timeout=60)
            assert not check or done.returncode == 0, done.stderr
            return done

        cli("set", "--format", "json", "--filter", "info,sqlx=warn")
        applied = wait_for_line(err, lambda l: (j := as_json(l)) and "log setting" in json.dumps(j) and j)
        assert applied["level"] == "INFO" and applied["fields"]["format"] == "Json"
        cli("set", "--format", "ecs")
        applied = wait_for_line(err, lambda l: (j := as_json(l)) and j.get("ecs.version") and "log setting" in j["message"] and j)
        assert applied["log.level"] == "info" and "@timestamp" in applied and applied["filter"] == "info,sqlx=warn"
        # The tracking server itself follows too.
        wait_for_line(server["data"] / "server.log", lambda l: (j := as_json(l)) and j.get("ecs.version") and j)

        shown = json.loads(cli("show", "--json").stdout)["log"]
        assert shown["value"] == {"filter": "info,sqlx=warn", "format": "ecs"}
        # Refused, naming the field, and nothing changes.
        for body, field in [({"format": "xml"}, "format"), ({"filter": "info,=="}, "filter"), ({"level": "debug"}, "level")]:
            refused = requests.put(f"{server['url']}/api/v1/settings/log", json=body, timeout=10)
            assert refused.status_code == 400 and f"`{field}`" in refused.json()["message"], refused.text
        bad = cli("set", "--format", "xml", check=False)
        assert bad.returncode != 0
        log = subprocess.run([server["binary"], "audit", "log", "--entity", "setting:log", "--json",
                              "--backend-store-uri", server["backend"]], capture_output=True, text=True, timeout=60)
        assert [json.loads(l)["action"] for l in log.stdout.splitlines()][-2:] == ["settings.set", "settings.set"]
    finally:
        # Back to text for the rest of the suite, then no setting.
        requests.put(f"{server['url']}/api/v1/settings/log", json={"format": "text", "filter": "info,sqlx=warn"}, timeout=10)
        time.sleep(2.5)
        requests.delete(f"{server['url']}/api/v1/settings/log", timeout=10)
        proc.terminate()
        proc.wait(timeout=30)


def test_the_deployments_page_says_how_services_log(server):
    page = requests.get(f"{server['url']}/ui/deployments", timeout=10)
    assert page.status_code == 200
    assert "Logging:" in page.text and "mltrail logging set --format ecs" in page.text


def test_a_requests_trace_id_is_in_its_record_and_its_log_line(server, credit_model, tmp_path):  # noqa: F811
    name, frame = credit_model
    err = tmp_path / "serve.log"
    env = dict(os.environ, MLTRAIL_LOG="info,mltrail_server::scoring=debug")
    with open(err, "w") as stderr:
        proc = subprocess.Popen([server["binary"], "serve", "--model", f"{name}/1", "--tracking-uri", server["url"],
                                 "--port", "0", "--log-dir", str(tmp_path / "predictions")],
                                stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    try:
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.head(2).values.tolist()}}
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        answer = requests.post(f"{url}/api/v1/predict", json=body, timeout=30,
                               headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        assert answer.status_code == 200, answer.text
        ids = [p["prediction_id"] for p in answer.json()["predictions"]]
        for pid in ids:
            record = requests.get(f"{url}/api/v1/predictions/{pid}", timeout=30).json()
            assert record["trace_id"] == trace
        # The log line of the request joins on the same id.
        line = wait_for_line(err, lambda l: trace in l and l)
        assert ids[0] in line
        # A traceparent the W3C rules say to ignore is ignored.
        answer = requests.post(f"{url}/api/v1/predict", json=body, timeout=30,
                               headers={"traceparent": f"ff-{trace}-00f067aa0ba902b7-01"})
        pid = answer.json()["predictions"][0]["prediction_id"]
        assert "trace_id" not in requests.get(f"{url}/api/v1/predictions/{pid}", timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
