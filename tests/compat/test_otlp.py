"""OpenTelemetry export from the log setting every service follows: once `mltrail logging set
--otlp-endpoint` names a collector, a running `mltrail serve` sends a span per scored request (a
child of the caller's `traceparent`, naming the prediction), its log events, and its `/metrics`
counters over OTLP/HTTP, without a restart; the trace id in the stored record equals the
request's. The collector here is a small OTLP/HTTP receiver that decodes the protobuf with the
OpenTelemetry project's own message classes."""
import http.server
import subprocess
import threading
import time

import pytest
import requests
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from test_ranking import recommender  # noqa: F401  (a fixture)
from test_routing import wait_for
from test_serving import start_serve

MESSAGES = {
    "/v1/traces": trace_service_pb2.ExportTraceServiceRequest,
    "/v1/logs": logs_service_pb2.ExportLogsServiceRequest,
    "/v1/metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}


@pytest.fixture
def collector():
    received = {path: [] for path in MESSAGES}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            message = MESSAGES.get(self.path)
            if message is None or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            decoded = message()
            decoded.ParseFromString(body)
            received[self.path].append(decoded)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", received
    httpd.shutdown()


def attributes(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = v.string_value if v.HasField("string_value") else (
            v.int_value if v.HasField("int_value") else [x.string_value for x in v.array_value.values])
    return out


def spans(received):
    return [(span, attributes(rs.resource.attributes)) for req in list(received["/v1/traces"])
            for rs in req.resource_spans for ss in rs.scope_spans for span in ss.spans]


def logging_cli(server, *args):
    done = subprocess.run([server["binary"], "logging", *args, "--tracking-uri", server["url"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_a_running_serve_exports_spans_logs_and_metrics_to_the_collector_the_setting_names(
        server, recommender, collector, tmp_path, unique):  # noqa: F811
    endpoint, received = collector
    deployment = unique("otlp")
    proc, url = start_serve(server, f"{recommender}/1", tmp_path, "--deployment", deployment)
    try:
        rows = {"dataframe_records": [{"relevance": 0.5, "price": -1.0}, {"relevance": -1.0, "price": 1.0}]}
        requests.post(f"{url}/api/v1/predict", json=rows, timeout=30).raise_for_status()
        assert received["/v1/traces"] == [], "nothing is exported before the setting names a collector"

        refused = requests.put(f"{server['url']}/api/v1/settings/log", json={"otlp_endpoint": "ftp://x"}, timeout=10)
        assert refused.status_code == 400 and refused.json()["message"].startswith("`otlp_endpoint`"), refused.text
        logging_cli(server, "set", "--otlp-endpoint", endpoint, "--filter", "info,sqlx=warn")

        trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

        def scored_with_trace():
            answer = requests.post(f"{url}/api/v1/predict", json=rows, timeout=30,
                                   headers={"traceparent": f"00-{trace_id}-{parent}-01"})
            answer.raise_for_status()
            ids = [p["prediction_id"] for p in answer.json()["predictions"]]
            time.sleep(0.5)
            found = [(s, r) for s, r in spans(received) if attributes(s.attributes).get("mltrail.prediction_id") == ids[0]]
            return (found[0], ids) if found else None

        # The serve follows the setting within seconds: its next requests are spans.
        (span, resource), ids = wait_for(scored_with_trace, seconds=30)
        assert span.trace_id.hex() == trace_id and span.parent_span_id.hex() == parent
        assert span.name == "POST /api/v1/predict" and span.kind == span.SPAN_KIND_SERVER
        attrs = attributes(span.attributes)
        assert attrs["mltrail.deployment"] == deployment and attrs["mltrail.rows"] == 2
        assert attrs["mltrail.prediction_ids"] == ids
        assert resource["service.name"] == "mltrail-serve" and resource["mltrail.deployment"] == deployment
        assert span.end_time_unix_nano > span.start_time_unix_nano
        # The stored record carries the same trace id.
        record = requests.get(f"{url}/api/v1/predictions/{ids[0]}", timeout=30).json()
        assert record["trace_id"] == trace_id

        # Log events: the serve's own line saying the setting is in force.
        def logged():
            lines = [attributes(r.attributes) | {"body": r.body.string_value}
                     for req in list(received["/v1/logs"]) for rl in req.resource_logs for sl in rl.scope_logs
                     for r in sl.log_records if "log setting" in r.body.string_value]
            return lines or None
        line = wait_for(logged, seconds=30)[0]
        assert line["otlp_endpoint"] == endpoint

        # Metrics: the same counters as /metrics.
        def requests_counted():
            for req in list(received["/v1/metrics"]):
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.name == "mltrail_requests_total":
                                points = [p for p in m.sum.data_points
                                          if attributes(p.attributes).get("deployment") == deployment]
                                if points and points[0].as_double >= 2:
                                    return m, points[0]
        metric, point = wait_for(requests_counted, seconds=20)
        assert metric.sum.is_monotonic and attributes(point.attributes)["version"] == "1"

        # The tracking server follows the same setting: its gauges, read from the store.
        def server_gauges():
            names = {m.name for req in list(received["/v1/metrics"]) for rm in req.resource_metrics
                     if attributes(rm.resource.attributes).get("service.name") == "mltrail-server"
                     for sm in rm.scope_metrics for m in sm.metrics}
            return names if "mltrail_monitor_references_loaded" in names else None
        wait_for(server_gauges, seconds=40)
    finally:
        requests.put(f"{server['url']}/api/v1/settings/log", json={"otlp_endpoint": None}, timeout=10)
        time.sleep(2.5)
        requests.delete(f"{server['url']}/api/v1/settings/log", timeout=10)
        proc.terminate()
        proc.wait(timeout=15)
