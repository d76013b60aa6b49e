"""The native API's OpenAPI 3.1 documents (`/api/v1/openapi.json` on `mltrail server` and on
`mltrail serve`): valid by openapi-spec-validator, and every documented operation called on a
real server. Each JSON body sent is checked against the operation's documented request schema,
and each answer against the documented response of its status (a status the document does not
list fails), so a handler that drifts from its document fails here. The set of operations
called must be the set documented: a new route without a call here fails too.

The servers are this test's own (SQLite, auth off, a fresh store), so every call's outcome is
known; the shared server's document is also fetched without credentials (it is open even when
the server authenticates)."""
import json
import os
import subprocess
import time
import urllib.request
import uuid

import pytest
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import free_port
from test_serving import archived_record, credit_classifier, start_serve

METHODS = ("get", "put", "post", "delete", "patch")


def pointer(*parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """A server's document, and the calls made against it."""

    def __init__(self, base):
        self.base = base
        self.doc = requests.get(f"{base}/api/v1/openapi.json", timeout=30).json()
        validate(self.doc)
        assert self.doc["openapi"] == "3.1.0"
        self.registry = Registry().with_resource(
            "urn:api", Resource.from_contents(self.doc, default_specification=DRAFT202012))
        self.documented = {(m, path) for path, item in self.doc["paths"].items() for m in item if m in METHODS}
        self.called = set()

    def check(self, value, *location):
        schema = {"$ref": "urn:api#" + pointer(*location)}
        errors = sorted(Draft202012Validator(schema, registry=self.registry).iter_errors(value), key=str)
        assert not errors, f"{pointer(*location)}: {errors[0].message} at {list(errors[0].absolute_path)}"

    def resolve(self, schema):
        while "$ref" in schema:
            name = schema["$ref"].removeprefix("#/components/schemas/")
            schema = self.doc["components"]["schemas"][name]
        return schema

    def valid(self, value, schema):
        def absolute(s):
            if isinstance(s, dict):
                return {k: ("urn:api" + v if k == "$ref" else absolute(v)) for k, v in s.items()}
            return [absolute(v) for v in s] if isinstance(s, list) else s
        return Draft202012Validator(absolute(schema), registry=self.registry).is_valid(value)

    def undeclared(self, value, schema, where="body"):
        """The keys of `value` its schema does not declare (a schema validates extra keys, so a
        handler answering a key its document lacks would pass validation alone). A free-form
        object (no properties declared) may hold anything."""
        schema = self.resolve(schema)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                matching = [o for o in schema[key] if self.valid(value, o)]
                return self.undeclared(value, matching[0], where) if matching else []
        if isinstance(value, list):
            items = schema.get("items")
            return [k for i, v in enumerate(value) for k in self.undeclared(v, items, f"{where}[{i}]")] if items else []
        if not isinstance(value, dict):
            return []
        parts = [self.resolve(p) for p in schema.get("allOf", [schema])]
        # A part composed of others (a flattened one) declares theirs.
        while any("allOf" in p for p in parts):
            parts = [self.resolve(q) for p in parts for q in p.get("allOf", [p])]
        properties = {}
        for part in parts:
            if "properties" not in part and not isinstance(part.get("additionalProperties"), dict):
                if part.get("additionalProperties") is not False:
                    return []  # free-form
            properties.update(part.get("properties", {}))
        extra = [p.get("additionalProperties") for p in parts if isinstance(p.get("additionalProperties"), dict)]
        found = []
        for key, v in value.items():
            if key in properties:
                found += self.undeclared(v, properties[key], f"{where}.{key}")
            elif extra:
                found += self.undeclared(v, extra[0], f"{where}.{key}")
            else:
                found.append(f"{where}.{key}")
        return found

    def call(self, method, template, expect, path=None, query=None, body=None, data=None, headers=None):
        """Calls `method template` (its `{…}` filled from `path`); the answer must have status
        `expect` and match what the document says of that status."""
        op = self.doc["paths"][template][method]
        self.called.add((method, template))
        if body is not None:
            self.check(body, "paths", template, method, "requestBody", "content", "application/json", "schema")
        declared = {p["name"]: p for p in op.get("parameters", [])}
        for name in (query or {}):
            assert declared.get(name, {}).get("in") == "query", f"{method} {template}: `{name}` is not a documented query parameter"
        for name in (path or {}):
            assert declared.get(name, {}).get("in") == "path", f"{method} {template}: `{name}` is not a documented path parameter"
        url = self.base + template.format(**(path or {}))
        answer = requests.request(method.upper(), url, params=query, json=body, data=data, headers=headers, timeout=60)
        assert answer.status_code == expect, f"{method} {url}: {answer.status_code} {answer.text[:500]}"
        status = str(expect)
        if status not in op["responses"]:
            status = status[0] + "XX"
        assert status in op["responses"], f"{method} {template} documents no {expect}"
        content = op["responses"][status].get("content", {})
        kind = answer.headers.get("content-type", "").split(";")[0]
        assert kind in content, f"{method} {template}: answered {kind}, documented {list(content)}"
        if kind == "application/json":
            self.check(answer.json(), "paths", template, method, "responses", status, "content", kind, "schema")
            extra = self.undeclared(answer.json(), content[kind]["schema"])
            assert not extra, f"{method} {template} answered keys its document does not declare: {extra}"
            return answer.json()
        return answer.text

    def all_called(self):
        missing = self.documented - self.called
        assert not missing, f"documented but not called here: {sorted(missing)}"


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A fresh `mltrail server` on SQLite with auth off."""
    data = tmp_path_factory.mktemp("openapi")
    binary = os.environ.get("MLTRAIL_BIN", str(__import__("conftest").ROOT / "target" / "debug" / "mltrail"))
    port = free_port()
    log = open(data / "server.log", "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_TEST_")}
    proc = subprocess.Popen(
        [binary, "server", "--port", str(port), "--backend-store-uri", f"sqlite:///{data}/mltrail.db",
         "--artifacts-destination", str(data / "artifacts"), "--monitor-interval-ms", "200", "--auth", "off"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert proc.poll() is None and time.time() < deadline, (data / "server.log").read_text()
        time.sleep(0.05)
    yield {"url": url, "binary": binary, "backend": f"sqlite:///{data}/mltrail.db", "data": data}
    proc.terminate()
    proc.wait(timeout=15)
    log.close()


def log_model(url, name):
    """An ONNX classifier of income, age and debt ratio, registered as versions 1 and 2 of
    `name` (the same file), with its training rows."""
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature

    frame, label, _, onnx_model = credit_classifier(seed=1, rows=200, trees=20)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        mlflow.set_experiment(f"openapi-{uuid.uuid4().hex[:8]}")
        with mlflow.start_run():
            mlflow.onnx.log_model(onnx_model, name="model", registered_model_name=name,
                                  signature=infer_signature(frame, label), input_example=frame.head(3))
        client = mlflow.MlflowClient(url)
        first = client.get_model_version(name, "1")
        client.create_model_version(name, first.source, run_id=first.run_id)
    finally:
        mlflow.set_tracking_uri(previous)
    return frame, label


def test_the_shared_servers_document_is_open(server):
    # urllib, not requests: the auth pass makes requests send the admin's password.
    with urllib.request.urlopen(f"{server['url']}/api/v1/openapi.json", timeout=30) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
        doc = json.load(answer)
    validate(doc)
    assert doc["info"]["title"] == "mltrail native API"


@pytest.mark.skipif(any(os.environ.get(v) for v in ("MLTRAIL_TEST_BACKEND_URI", "MLTRAIL_TEST_ARTIFACTS", "MLTRAIL_TEST_AUTH")),
                    reason="its server is its own (SQLite, auth off): run in the plain pass")
def test_every_documented_route_answers_as_documented(own_server, tmp_path):
    url = own_server["url"]
    api = Contract(url)
    tag = uuid.uuid4().hex[:8]
    name, deployment, catalog, metric = f"credit-{tag}", f"scoring-{tag}", f"train-{tag}", f"revenue-{tag}"
    frame, label = log_model(url, name)

    api.call("get", "/api/v1/auth/whoami", 200)

    # The training rows as a catalog version: a dataset version explanations read.
    items = [dict(item_id=f"row-{i}", label=int(y), **{k: float(v) for k, v in row.items()})
             for i, ((_, row), y) in enumerate(zip(frame.iterrows(), label))]
    added = api.call("put", "/api/v1/catalogs/{name}", 200, path={"name": catalog}, body={"items": items})
    assert added["created"] is True
    version = api.call("get", "/api/v1/datasets/{name}/versions/{version}", 200,
                       path={"name": catalog, "version": "latest"})["dataset_version"]
    again = {k: version[k] for k in ("name", "digest", "source", "file_name", "rows", "schema", "profile")}
    assert api.call("post", "/api/v1/datasets", 200, body=again)["created"] is False
    listed = api.call("get", "/api/v1/datasets", 200, query={"name": catalog})["dataset_versions"]
    assert [v["version"] for v in listed] == [1]
    tagged = requests.post(f"{url}/api/2.0/mlflow/model-versions/set-tag", timeout=30,
                           json={"name": name, "version": "1", "key": "mltrail.training_data", "value": f"{catalog}@1"})
    assert tagged.status_code == 200, tagged.text

    # Deployments, as serving processes report them.
    event = {"deployment": deployment, "model": name, "version": "1", "digest": "0" * 64, "action": "deploy"}
    api.call("post", "/api/v1/deployments/events", 200, body=event)
    api.call("post", "/api/v1/deployments/metrics", 200,
             body={"deployment": deployment, "replica": "r1", "boot": "b1", "metrics": "# EOF\n"})
    assert any(d["name"] == deployment for d in api.call("get", "/api/v1/deployments", 200)["deployments"])

    # A routing policy, what it learned, its experiment report, a canary's rollback.
    at = {"deployment": deployment}
    api.call("get", "/api/v1/deployments/{deployment}/policy", 404, path=at)
    canary = {"kind": "canary", "arms": [f"{name}/1", f"{name}/2"]}
    policy = api.call("put", "/api/v1/deployments/{deployment}/policy", 200, path=at, body={"policy": canary})
    assert api.call("get", "/api/v1/deployments/{deployment}/policy", 200, path=at)["digest"] == policy["digest"]
    arm = {"requests": 3, "rewards": 1, "reward_sum": 0.5, "reward_squares": 0.25}
    report = {"delta": {"policy": policy["digest"], "arms": [arm, arm]}, "report_id": str(uuid.uuid4())}
    learned = api.call("post", "/api/v1/deployments/{deployment}/policy/state", 200, path=at, body=report)
    assert learned["reports"] == 1
    assert api.call("get", "/api/v1/deployments/{deployment}/policy/state", 200, path=at)["reports"] == 1
    api.call("get", "/api/v1/deployments/{deployment}/experiment", 200, path=at)
    verdict = {"policy": policy["digest"], "verdict": {"check": "error_rate", "value": 0.5}}
    assert api.call("post", "/api/v1/deployments/{deployment}/policy/rollback", 200, path=at,
                    body=verdict)["rolled_back"] is True
    api.call("delete", "/api/v1/deployments/{deployment}/policy", 200, path=at)

    # A model version's evaluation, robustness report and card.
    mv = {"name": name, "version": "1"}
    evaluation = {"format": "mltrail.evaluation/1", "model": name, "version": "1", "dataset": f"{catalog}@1",
                  "label": "label", "classification": {"accuracy": 0.9, "roc_auc": 0.95, "example_count": 200}}
    api.call("get", "/api/v1/models/{name}/versions/{version}/evaluation", 404, path=mv)
    kept = api.call("post", "/api/v1/models/{name}/versions/{version}/evaluation", 200, path=mv, body=evaluation)
    assert api.call("get", "/api/v1/models/{name}/versions/{version}/evaluation", 200,
                    path=mv)["digest"] == kept["digest"]
    robustness = {"format": "mltrail.robustness/1", "model": name, "version": "1", "dataset": f"{catalog}@1",
                  "label": "label", "epsilon": 0.1, "clean_accuracy": 0.9, "robust_accuracy": 0.8,
                  "attack_success_rate": 0.1}
    api.call("post", "/api/v1/models/{name}/versions/{version}/robustness", 200, path=mv, body=robustness)
    api.call("get", "/api/v1/models/{name}/versions/{version}/robustness", 200, path=mv)
    api.call("post", "/api/v1/models/{name}/versions/{version}/card", 200, path=mv)
    api.call("get", "/api/v1/models/{name}/versions/{version}/card", 200, path=mv)

    # A release gate, its dry run, approvals (which need auth on), the gated move, its report.
    gate = {"name": name, "alias": "production"}
    api.call("put", "/api/v1/models/{name}/gates/{alias}", 200, path=gate,
             body={"requirements": ["evaluation.roc_auc >= 0.8"], "approvals": 0})
    assert api.call("get", "/api/v1/models/{name}/gates/{alias}", 200, path=gate)["gate"]["approvals"] == 0
    assert len(api.call("get", "/api/v1/models/{name}/gates", 200, path={"name": name})["gates"]) == 1
    dry = api.call("get", "/api/v1/models/{name}/gates/{alias}/check", 200, path=gate, query={"version": "1"})
    assert dry["failures"] == []
    api.call("post", "/api/v1/models/{name}/versions/{version}/approvals", 403, path=mv,
             body={"alias": "production", "comment": "looked at it"})
    api.call("get", "/api/v1/models/{name}/versions/{version}/approvals", 200, path=mv,
             query={"alias": "production"})
    moved = api.call("post", "/api/v1/models/{name}/aliases/{alias}", 200, path=gate, body={"version": "1"})
    reports = api.call("get", "/api/v1/models/{name}/gate-reports", 200, path={"name": name})["gate_reports"]
    assert reports[0]["digest"] == moved["gate_report"]
    api.call("get", "/api/v1/models/{name}/gate-reports/{digest}", 200,
             path={"name": name, "digest": moved["gate_report"]})
    api.call("delete", "/api/v1/models/{name}/gates/{alias}", 200, path=gate)

    # Business metrics and annotations.
    at_metric = {"name": metric}
    pushed = api.call("post", "/api/v1/metrics/{name}", 200, path=at_metric,
                      body={"points": [{"time": 1_780_000_000_000, "value": 0.1 + 0.2},
                                       {"time": "2026-05-28T20:27:20Z", "value": 3}]})
    assert pushed == {"added": 2, "unchanged": 0}
    assert api.call("get", "/api/v1/metrics/{name}", 200, path=at_metric)["points"][0]["value"] == 0.1 + 0.2
    assert any(m["name"] == metric for m in api.call("get", "/api/v1/metrics", 200)["metrics"])
    note = api.call("post", "/api/v1/annotations", 200,
                    body={"name": "launch", "kind": "campaign", "from": 1_780_000_000_000,
                          "to": "2026-06-01", "metrics": [metric], "note": "spring"})["annotation"]
    assert api.call("get", "/api/v1/annotations", 200, query={"metric": metric})["annotations"][0]["id"] == note["id"]
    api.call("get", "/api/v1/annotations/{id}", 200, path={"id": note["id"]})
    api.call("delete", "/api/v1/annotations/{id}", 200, path={"id": note["id"]})

    # Log settings every service follows.
    api.call("get", "/api/v1/settings/log", 200)
    assert api.call("put", "/api/v1/settings/log", 200, body={"filter": "info,sqlx=warn", "format": "json"})["log"]
    api.call("delete", "/api/v1/settings/log", 200)

    # Privacy (this store keeps its master key beside its database).
    keys = api.call("post", "/api/v1/privacy/subject-keys", 200, body={"subjects": ["alice"]})["keys"]
    api.call("post", "/api/v1/privacy/export", 200, body={"subject": "alice"})
    erased = api.call("post", "/api/v1/privacy/erase", 200, body={"subject": "alice", "reason": "asked on 2026-12-06"})
    assert erased["erasure"]["subject_hash"] == keys[0]["subject_hash"]
    api.call("get", "/api/v1/privacy/erasures", 200)

    api.call("get", "/api/v1/lineage", 200, query={"model": name, "version": "1"})

    # A serving process: every route of its own document (it archives only after its defaults,
    # so its records stay its own while this runs).
    proc, serving_url = start_serve(own_server, f"{name}@production", tmp_path / "kept", "--deployment", deployment,
                                    "--explain", "on_request")
    try:
        scoring = Contract(serving_url)
        rows = frame.head(3)
        split = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
        scoring.call("post", "/invocations", 200, body=split)
        scoring.call("post", "/invocations", 200, body={"inputs": {c: rows[c].tolist() for c in rows.columns}})
        csv = rows.to_csv(index=False)
        scoring.call("post", "/invocations", 200, data=csv, headers={"Content-Type": "text/csv"})
        answer = scoring.call("post", "/api/v1/predict", 200, body={"dataframe_records": rows.to_dict("records")})
        scoring.call("post", "/api/v1/predict", 200, body={"instances": rows.values.tolist()})
        pid = answer["predictions"][0]["prediction_id"]
        scoring.call("get", "/api/v1/predictions/{id}/record", 200, path={"id": pid})
        scoring.call("post", "/api/v1/feedback", 200, body={"prediction_id": pid, "label": 1})
        scoring.call("post", "/api/v1/feedback", 400, body={"prediction_id": "not-an-id", "label": 1})
        scoring.call("get", "/api/v1/predictions/{id}", 200, path={"id": pid})
        scoring.call("get", "/api/v1/predictions/{id}/explanation", 200, path={"id": pid})
        scoring.call("get", "/api/v1/predictions/{id}/counterfactual", 200, path={"id": pid},
                     query={"features": "income,debt_ratio"})
        scoring.call("get", "/api/v1/deployment", 200)
        scoring.call("post", "/api/v1/noop", 200, body={"ping": 1})
        refused = scoring.call("post", "/api/v1/predict", 400, body={"dataframe_records": [{"income": 1.0}]})
        assert refused["column"] == "age"
        scoring.all_called()
    finally:
        proc.terminate()
        proc.wait(timeout=15)

    # Another, archiving at once: the tracking server answers for its record, with its
    # segment's summary, which a replica reporting it again changes nothing by.
    proc, serving_url = start_serve(own_server, f"{name}@production", tmp_path / "archived", "--deployment", deployment,
                                    "--segment-seconds", "1", "--archive-interval-ms", "200")
    try:
        answer = requests.post(f"{serving_url}/api/v1/predict", json=split, timeout=60)
        assert answer.status_code == 200, answer.text
        pid = answer.json()["predictions"][0]["prediction_id"]
        archived_record(url, pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    trace = api.call("get", "/api/v1/predictions/{id}/record", 200, path={"id": pid}, query={"deployment": deployment})
    summary = trace["segment"]["segment"]
    assert api.call("post", "/api/v1/deployments/segments", 200, body=summary)["new"] is False

    # A monitor of the deployment over the archive: the window holding the predictions
    # compared with the training rows, its report, alerts.
    start = trace["prediction"]["time_ms"] // 5000 * 5000 - 5000
    monitor = api.call("post", "/api/v1/monitors", 200,
                       body={"deployment": deployment, "window": "5s", "delay": 0, "reference": f"{catalog}@1",
                             "start": start, "alerts": ["drift_share >= 0.9"], "ranking": False})["monitor"]
    at_monitor = {"id": monitor["id"]}
    assert api.call("get", "/api/v1/monitors/{id}", 200, path=at_monitor)["monitor"]["id"] == monitor["id"]
    assert any(m["id"] == monitor["id"] for m in api.call("get", "/api/v1/monitors", 200,
                                                          query={"deployment": deployment})["monitors"])
    deadline = time.time() + 30
    while not (compared := [r for r in api.call("get", "/api/v1/monitors/{id}/results", 200, path=at_monitor,
                                                query={"limit": 100})["results"] if r["status"] == "ok"]):
        assert time.time() < deadline, "the window of the predictions was not compared"
        time.sleep(0.2)
    report = api.call("get", "/api/v1/monitors/{id}/windows/{start}/report", 200,
                      path={"id": monitor["id"], "start": compared[0]["window_start"]})
    assert "<html" in report.lower()
    api.call("get", "/api/v1/monitors/{id}/alerts", 200, path=at_monitor)
    api.call("get", "/api/v1/alerts", 200, query={"limit": 10})
    api.call("delete", "/api/v1/monitors/{id}", 200, path=at_monitor)
    api.call("post", "/api/v1/monitors", 400, body={"deployment": deployment, "window": "soon"})

    # The trail of all of it, whole.
    events = api.call("get", "/api/v1/audit/events", 200, query={"entity": f"monitor:{monitor['id']}"})["events"]
    assert {e["action"] for e in events} >= {"monitor.create", "monitor.delete"}
    assert api.call("post", "/api/v1/audit/verify", 200)["intact"] is True

    api.all_called()
