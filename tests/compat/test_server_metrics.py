"""The tracking server's own series on `/metrics`: requests and latency by route pattern and
status, the writer's group sizes and durations, its queue, and the database's size on disk (on
every backend the suite runs: SQLite, PostgreSQL)."""
import re
import threading

import requests


def samples(text):
    """{(name, frozenset(labels)): value} of OpenMetrics text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(found, name, **labels):
    want = frozenset((k, str(v)) for k, v in labels.items())
    return found.get((name, want), 0.0)


def test_requests_writes_and_database_size_are_exposed(server, client, unique):
    url = server["url"]
    before = samples(requests.get(f"{url}/metrics", timeout=30).text)
    experiment = client.create_experiment(unique("server-metrics"))
    run = client.create_run(experiment).info.run_id
    writers = 8
    per_writer = 25

    def log(w):
        for step in range(per_writer):
            client.log_metric(run, f"m{w}", float(step), step=step)

    threads = [threading.Thread(target=log, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.get_run(run)
    # An id in the path is the pattern's, not a new series; a path no route knows is `unmatched`.
    assert requests.get(f"{url}/api/v1/monitors/no-such-monitor", timeout=10).status_code == 404
    assert requests.get(f"{url}/no/such/route", timeout=10).status_code == 404

    after = samples(requests.get(f"{url}/metrics", timeout=30).text)
    count = "mltrail_http_request_duration_seconds_count"
    logged = value(after, count, method="POST", route="/api/2.0/mlflow/runs/log-metric", status=200) - value(
        before, count, method="POST", route="/api/2.0/mlflow/runs/log-metric", status=200)
    assert logged == writers * per_writer
    assert value(after, count, method="GET", route="/api/2.0/mlflow/runs/get", status=200) >= 1
    assert value(after, count, method="GET", route="/api/v1/monitors/{id}", status=404) >= 1
    assert value(after, count, method="GET", route="unmatched", status=404) >= 1
    assert not any("no-such-monitor" in dict(labels).get("route", "") for _, labels in after)
    # Latency buckets are cumulative and end with every request.
    buckets = sorted(
        (float(dict(labels)["le"]), v) for (name, labels), v in after.items()
        if name == "mltrail_http_request_duration_seconds_bucket"
        and dict(labels).get("route") == "/api/2.0/mlflow/runs/log-metric" and dict(labels).get("status") == "200"
    )
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == value(
        after, count, method="POST", route="/api/2.0/mlflow/runs/log-metric", status=200)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))

    # Every write went through a group: the groups' sizes add up to at least the metrics logged.
    groups = value(after, "mltrail_store_write_group_size_count") - value(before, "mltrail_store_write_group_size_count")
    written = value(after, "mltrail_store_write_group_size_sum") - value(before, "mltrail_store_write_group_size_sum")
    assert 1 <= groups <= written and written >= writers * per_writer
    assert value(after, "mltrail_store_write_group_seconds_count") == value(after, "mltrail_store_write_group_size_count")
    assert value(after, "mltrail_store_write_group_seconds_sum") > 0
    assert ("mltrail_store_write_queue_depth", frozenset()) in after
    assert value(after, "mltrail_store_write_groups_failed_total") == 0
    assert value(after, "mltrail_store_database_bytes") > 0
    # The suite's PostgreSQL runs as its superuser, so the WAL folder is readable there too.
    assert ("mltrail_store_wal_bytes", frozenset()) in after
