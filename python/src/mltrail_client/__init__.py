"""A small typed client for mltrail's native API (`/api/v1`), standard library only.

`Serving` talks to a `mltrail serve` process (predictions, feedback, records, explanations);
`Tracking` to `mltrail server` (monitors, alerts, datasets and catalogs, business metrics,
archived records and lineage, the audit trail). The MLflow REST API needs no client of ours: the
`mlflow` package works against `mltrail server` as it is.
"""
from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

__all__ = ["MltrailError", "Serving", "Tracking", "Json", "ItemId"]
__version__ = "0.1.0"

Json = Dict[str, Any]
ItemId = Union[str, int]


class MltrailError(Exception):
    """A request mltrail refused or could not answer: the HTTP status, the server's error code and
    message (which starts with the field at fault, e.g. `points[3].value: …`), and for a scoring
    request the `column` and `row` at fault."""

    def __init__(self, status: int, error_code: str, message: str, body: Optional[Json] = None):
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.body: Json = body or {}

    @property
    def column(self) -> Optional[str]:
        value = self.body.get("column")
        return value if isinstance(value, str) else None

    @property
    def row(self) -> Optional[int]:
        value = self.body.get("row")
        return value if isinstance(value, int) else None


class _Http:
    def __init__(self, url: str, token: Optional[str], username: Optional[str], password: Optional[str],
                 timeout: float):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        token = token or os.environ.get("MLTRAIL_TRACKING_TOKEN") or os.environ.get("MLFLOW_TRACKING_TOKEN")
        username = username or os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.authorization: Optional[str] = f"Bearer {token}"
        elif username and password:
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.authorization = f"Basic {pair}"
        else:
            self.authorization = None

    def request(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
                body: Optional[Any] = None) -> Any:
        url = self.url + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            # allow_nan=False: NaN and infinities are not JSON, and the server refuses them.
            data = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if self.authorization:
            headers["Authorization"] = self.authorization
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                kind = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {}
            if not isinstance(payload, dict):
                payload = {}
            raise MltrailError(e.code, str(payload.get("error_code", "HTTP_ERROR")),
                               str(payload.get("message", raw.decode(errors="replace")[:500] or e.reason)),
                               payload) from None
        if "json" not in kind:
            return raw.decode()
        return json.loads(raw) if raw else None


    def object(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
               body: Optional[Any] = None, *, key: Optional[str] = None) -> Json:
        """A JSON object answer (or its `key` member, itself an object)."""
        value = self.request(method, path, query, body)
        if key is not None and isinstance(value, dict):
            value = value.get(key)
        if not isinstance(value, dict):
            raise MltrailError(0, "UNEXPECTED_ANSWER", f"{method} {path} did not answer a JSON object"
                               + (f" under `{key}`" if key else ""))
        return value

    def objects(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None, *,
                key: str) -> List[Json]:
        """The list of JSON objects under `key` of the answer."""
        value = self.object(method, path, query).get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise MltrailError(0, "UNEXPECTED_ANSWER", f"{method} {path} did not answer a list under `{key}`")
        return value


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


class Serving:
    """A serving process (`mltrail serve`): score, send feedback, read predictions back."""

    def __init__(self, url: str, *, token: Optional[str] = None, username: Optional[str] = None,
                 password: Optional[str] = None, timeout: float = 30.0):
        self._http = _Http(url, token, username, password, timeout)

    def predict(self, *, records: Optional[Sequence[Mapping[str, Any]]] = None,
                columns: Optional[Sequence[str]] = None, data: Optional[Sequence[Sequence[Any]]] = None,
                instances: Optional[Sequence[Any]] = None) -> Json:
        """Scores rows: `records` (a dict per row), `columns` with `data` (MLflow's
        `dataframe_split`), or `instances`. Answers `{"predictions": [...]}`, an entry per row
        with its `prediction_id`, `model`, `version`, `digest` and `outputs` (a ranking
        deployment: one impression, `{"prediction_id", "items", "scores", …}`)."""
        given = [records is not None, data is not None, instances is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of records=, data= (with columns=) or instances=")
        if records is not None:
            body: Json = {"dataframe_records": list(records)}
        elif data is not None:
            if columns is None:
                raise ValueError("data= needs columns=")
            body = {"dataframe_split": {"columns": list(columns), "data": [list(r) for r in data]}}
        else:
            body = {"instances": list(instances or [])}
        return self._http.object("POST", "/api/v1/predict", body=body)

    def feedback(self, prediction_id: str, *, label: Any = None, reward: Optional[float] = None,
                 displayed: Optional[Sequence[ItemId]] = None,
                 clicked: Optional[Sequence[ItemId]] = None) -> Json:
        """Attaches what happened after a prediction: its true `label`, a `reward`, or for a
        ranking the items `displayed` (in display order) and `clicked`."""
        body: Json = {"prediction_id": prediction_id}
        if label is not None:
            body["label"] = label
        if reward is not None:
            body["reward"] = reward
        if displayed is not None:
            body["displayed"] = list(displayed)
        if clicked is not None:
            body["clicked"] = list(clicked)
        if len(body) == 1:
            raise ValueError("give at least one of label=, reward=, displayed=, clicked=")
        return self._http.object("POST", "/api/v1/feedback", body=body)

    def prediction(self, prediction_id: str) -> Json:
        """The logged record with its feedback (local segments, then the archive)."""
        return self._http.object("GET", f"/api/v1/predictions/{_quote(prediction_id)}")

    def explanation(self, prediction_id: str) -> Json:
        """SHAP values per input, base value, method and reason codes."""
        return self._http.object("GET", f"/api/v1/predictions/{_quote(prediction_id)}/explanation")

    def counterfactual(self, prediction_id: str, features: Sequence[str],
                       ranges: Optional[Mapping[str, Sequence[float]]] = None) -> Json:
        """The smallest change of `features` (within `ranges`: name -> (low, high)) that changes
        the decision."""
        query: Json = {"features": ",".join(features)}
        if ranges:
            query["ranges"] = ",".join(f"{k}:{float(lo)!r}..{float(hi)!r}" for k, (lo, hi) in ranges.items())
        return self._http.object("GET", f"/api/v1/predictions/{_quote(prediction_id)}/counterfactual", query)

    def record(self, prediction_id: str) -> Json:
        """A prediction not archived yet with its lineage (the tracking server answers once archived)."""
        return self._http.object("GET", f"/api/v1/predictions/{_quote(prediction_id)}/record")

    def deployment(self) -> Json:
        """What is served: name, model, version, digest, engine, signature, explain mode, output."""
        return self._http.object("GET", "/api/v1/deployment")


class Tracking:
    """The tracking server (`mltrail server`): monitors, alerts, datasets, catalogs, business
    metrics and annotations, archived records and lineage, the audit trail."""

    def __init__(self, url: str, *, token: Optional[str] = None, username: Optional[str] = None,
                 password: Optional[str] = None, timeout: float = 60.0):
        self._http = _Http(url, token, username, password, timeout)

    # Monitors and alerts.
    def create_monitor(self, *, deployment: Optional[str] = None, window: Union[str, int] = "1h",
                       **settings: Any) -> Json:
        """Creates a monitor; `settings` are the REST fields (`reference`, `delay`, `drift_share`,
        `alerts`, `webhooks`, `exclude`, `sensitive`, `ranking`, `metric`, `seasonal`, `start`).
        Returns the monitor."""
        body: Json = {"window": window, **settings}
        if deployment is not None:
            body["deployment"] = deployment
        return self._http.object("POST", "/api/v1/monitors", body=body, key="monitor")

    def monitors(self, *, deployment: Optional[str] = None, include_deleted: bool = False) -> List[Json]:
        query = {"deployment": deployment, "include_deleted": include_deleted or None}
        return self._http.objects("GET", "/api/v1/monitors", query, key="monitors")

    def monitor(self, monitor_id: str) -> Json:
        return self._http.object("GET", f"/api/v1/monitors/{_quote(monitor_id)}", key="monitor")

    def delete_monitor(self, monitor_id: str) -> None:
        self._http.request("DELETE", f"/api/v1/monitors/{_quote(monitor_id)}")

    def monitor_results(self, monitor_id: str, *, limit: int = 100) -> List[Json]:
        """Window results, newest first."""
        return self._http.objects("GET", f"/api/v1/monitors/{_quote(monitor_id)}/results",
                                  {"limit": limit}, key="results")

    def monitor_alerts(self, monitor_id: str, *, limit: Optional[int] = None) -> List[Json]:
        return self._http.objects("GET", f"/api/v1/monitors/{_quote(monitor_id)}/alerts",
                                  {"limit": limit}, key="alerts")

    def alerts(self, *, limit: Optional[int] = None) -> List[Json]:
        """Every monitor's alerts, newest first."""
        return self._http.objects("GET", "/api/v1/alerts", {"limit": limit}, key="alerts")

    # Datasets and catalogs.
    def dataset_versions(self, name: Optional[str] = None) -> List[Json]:
        """Dataset versions, newest first (without profiles); every dataset's without `name`."""
        return self._http.objects("GET", "/api/v1/datasets", {"name": name}, key="dataset_versions")

    def dataset_version(self, name: str, version: Union[int, str] = "latest") -> Json:
        """`{"dataset_version": {…, schema, profile}, "rows_stored", "runs"}`."""
        return self._http.object("GET", f"/api/v1/datasets/{_quote(name)}/versions/{_quote(str(version))}")

    def push_catalog(self, name: str, items: Sequence[Mapping[str, Any]]) -> Json:
        """Stores `items` as the next version of catalog (dataset) `name`."""
        return self._http.object("PUT", f"/api/v1/catalogs/{_quote(name)}", body={"items": list(items)})

    # Business metrics and annotations.
    def push_metric(self, name: str, points: Sequence[Mapping[str, Any]]) -> Json:
        """Adds points (`{"time": ms or RFC 3339, "value": number}`); stored points are never rewritten."""
        return self._http.object("POST", f"/api/v1/metrics/{_quote(name)}", body={"points": list(points)})

    def metric(self, name: str, *, since: Optional[str] = None, until: Optional[str] = None) -> Json:
        """A metric's points and the annotations over them."""
        return self._http.object("GET", f"/api/v1/metrics/{_quote(name)}", {"since": since, "until": until})

    def annotate(self, *, name: str, start: Union[int, str], end: Union[int, str], kind: str = "other",
                 metrics: Optional[Sequence[str]] = None, note: Optional[str] = None) -> Json:
        """Marks a period (a campaign, an outage) that anomaly baselines leave out."""
        body: Json = {"name": name, "kind": kind, "from": start, "to": end}
        if metrics is not None:
            body["metrics"] = list(metrics)
        if note is not None:
            body["note"] = note
        return self._http.object("POST", "/api/v1/annotations", body=body, key="annotation")

    # Records, lineage and the audit trail.
    def prediction_record(self, prediction_id: str, *, deployment: Optional[str] = None) -> Json:
        """An archived prediction with everything behind it and its proofs."""
        return self._http.object("GET", f"/api/v1/predictions/{_quote(prediction_id)}/record",
                                  {"deployment": deployment})

    def lineage(self, model: str, version: Union[int, str], *, deployment: Optional[str] = None) -> Json:
        """What stands behind a model version: its run, training data and their audit events."""
        return self._http.object("GET", "/api/v1/lineage",
                                  {"model": model, "version": version, "deployment": deployment})

    def audit_events(self, *, entity: Optional[str] = None, actor: Optional[str] = None,
                     action: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
                     page_size: int = 100, limit: Optional[int] = None) -> Iterator[Json]:
        """Audit events newest first, fetched a page at a time. `entity`: `kind`, `kind:id` or
        `kind:prefix*`; `action`: exact or a prefix ending in `.`; `since`/`until`: a date, a time
        or a duration ago (`6h`). Stops after `limit` events when given."""
        before: Optional[int] = None
        given = 0
        while True:
            page = self._http.object("GET", "/api/v1/audit/events", {
                "entity": entity, "actor": actor, "action": action, "since": since, "until": until,
                "before": before, "limit": page_size})
            for event in page["events"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield event
            before = page.get("next_before")
            if before is None:
                return

    def verify_audit(self) -> Json:
        """Recomputes the chain and every entity's state (an admin's): `intact`, `events`,
        `entities_checked`, and where it `broken` if it is."""
        return self._http.object("POST", "/api/v1/audit/verify")

    def whoami(self) -> Json:
        return self._http.object("GET", "/api/v1/auth/whoami")
