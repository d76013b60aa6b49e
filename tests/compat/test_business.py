"""Business metrics with annotated periods, through the server and the CLI: a revenue series with
a daily and a weekly pattern and a two-week campaign, watched by two anomaly monitors. Without
the annotation the baseline learns the campaign and the weeks after it fire false drops; with it,
none, and a real 20 % drop afterwards is caught in its first window."""
import io
import json
import math
import subprocess
import time

import numpy as np
import pandas as pd
import requests

from test_gates import mltrail

HOUR = 3_600_000
DAY = 24 * HOUR
WEEK = 7 * DAY


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def revenue(start, weeks, campaign, drop_at):
    """Hourly revenue: daily and weekly patterns, 2 % noise, +60 % in the campaign, −20 % from drop_at."""
    rng = np.random.default_rng(7)
    hours = np.arange(weeks * 7 * 24)
    times = start + hours * HOUR
    daily = 1.0 + 0.5 * np.cos(2 * np.pi * (hours % 24 - 14) / 24)
    weekly = np.where((hours // 24) % 7 >= 5, 1.3, 1.0)
    values = 1000.0 * daily * weekly * (1.0 + 0.02 * rng.standard_normal(len(hours)))
    values = np.where((times >= campaign[0]) & (times < campaign[1]), values * 1.6, values)
    values = np.where(times >= drop_at, values * 0.8, values)
    return pd.DataFrame({"time": times, "value": values})


def results_of(server, monitor, windows, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        answer = requests.get(f"{server['url']}/api/v1/monitors/{monitor}/results?limit=10000", timeout=30)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        if len(results) >= windows:
            return sorted(results, key=lambda r: r["window_start"])
        time.sleep(0.5)
    raise AssertionError(f"monitor {monitor}: {len(results)} of {windows} windows evaluated")


def test_an_annotated_campaign_is_left_out_of_the_baseline(server, tmp_path, unique):
    now = int(time.time() * 1000)
    # Ten weeks of hours ending days before now, starting on a Monday at midnight UTC.
    monday = (now - 11 * WEEK) // WEEK * WEEK + 4 * DAY  # the epoch was a Thursday
    campaign = (monday + 4 * WEEK, monday + 6 * WEEK)
    drop_at = monday + 9 * WEEK + 2 * DAY
    frame = revenue(monday, 10, campaign, drop_at)
    csv = tmp_path / "revenue.csv"
    frame.to_csv(csv, index=False)
    plain, annotated = unique("revenue"), unique("revenue")
    for name in (plain, annotated):
        pushed = mltrail(server, "metrics", "push", name, "--file", str(csv))
        assert "1680 stored" in pushed.stderr, pushed.stderr
    # Pushing the same points again stores nothing; values come back bit for bit.
    again = mltrail(server, "metrics", "push", annotated, "--file", str(csv))
    assert "0 stored, 1680 already there" in again.stderr, again.stderr
    back = requests.get(f"{server['url']}/api/v1/metrics/{annotated}", timeout=30).json()
    assert [p["value"] for p in back["points"]] == frame["value"].tolist()
    assert back["metric"]["points"] == 1680
    shown = mltrail(server, "metrics", "show", annotated, "--since", iso(drop_at), "--json")
    assert len(json.loads(shown.stdout)["points"]) == (monday + 10 * WEEK - drop_at) // HOUR

    made = mltrail(server, "annotate", "--name", "spring campaign", "--kind", "campaign",
                   "--from", str(campaign[0]), "--to", str(campaign[1]), "--metrics", annotated,
                   "--note", "two weeks of 20 % off")
    annotation = made.stdout.strip()
    listed = json.loads(mltrail(server, "annotations", "list", "--metric", annotated, "--json").stdout)
    assert [a["id"] for a in listed["annotations"]] == [annotation]
    assert json.loads(mltrail(server, "annotations", "list", "--metric", plain, "--json").stdout)["annotations"] == []
    events = subprocess.run([server["binary"], "audit", "log", "--entity", f"annotation:{annotation}", "--json",
                             "--backend-store-uri", server["backend"]], capture_output=True, text=True, timeout=60)
    assert events.returncode == 0, events.stderr
    assert [json.loads(line)["action"] for line in events.stdout.splitlines()] == ["annotation.create"]

    monitors = {}
    for name in (plain, annotated):
        created = mltrail(server, "monitor", "create", "--metric", name, "--window", "6h", "--delay", "0s",
                          "--since", iso(campaign[1]), "--alert", "drops >= 1")
        monitors[name] = created.stdout.strip()
    windows = (drop_at + 4 * DAY - campaign[1]) // (6 * HOUR)
    judged = {name: results_of(server, monitors[name], windows) for name in monitors}

    def false_drops(results):
        return [r for r in results if r["window_end"] <= drop_at and r["result"]["values"].get("drops", 0) > 0]

    # Without the annotation: the two weeks after the campaign are full of drops that are not.
    assert len(false_drops(judged[plain])) >= 20, [r["window_start"] for r in false_drops(judged[plain])]
    # With it: none, and no spike either; what it learned from says what it left out.
    assert false_drops(judged[annotated]) == []
    assert all(r["result"]["values"].get("spikes", 0) == 0 for r in judged[annotated] if r["window_end"] <= drop_at)
    first_after = next(r for r in judged[annotated] if r["window_start"] == campaign[1])
    learned = first_after["result"]["learned_from"]
    assert learned["excluded"][0][0]["name"] == "spring campaign" and learned["excluded"][0][1] == 14 * 24
    # The real drop is caught in its first window, as an alert with the expected range.
    at_drop = next(r for r in judged[annotated] if r["window_start"] == drop_at)
    assert at_drop["result"]["values"]["drops"] >= 1
    alerts = requests.get(f"{server['url']}/api/v1/monitors/{monitors[annotated]}/alerts", timeout=30).json()["alerts"]
    fired = [a for a in alerts if a["state"] == "firing"]
    assert [a["window_start"] for a in fired] == [drop_at], fired
    assert "against an expected" in fired[0]["details"]["message"] and "range" in fired[0]["details"]["message"]
    assert fired[0]["details"]["business_metric"] == annotated


def test_points_are_checked_and_never_rewritten(server, unique):
    name = unique("orders")
    url = f"{server['url']}/api/v1/metrics/{name}"
    ok = requests.post(url, json={"points": [{"time": 1_000, "value": 0.1 + 0.2}, {"time": "2026-01-01T00:00:00Z", "value": 7}]}, timeout=10)
    assert ok.status_code == 200 and ok.json() == {"added": 2, "unchanged": 0}, ok.text
    back = requests.get(url, timeout=10).json()["points"]
    assert back == [{"time": 1_000, "value": 0.1 + 0.2}, {"time": 1_767_225_600_000, "value": 7.0}]
    changed = requests.post(url, json={"points": [{"time": 1_000, "value": 0.3}]}, timeout=10)
    assert changed.status_code == 400 and changed.json()["error_code"] == "INVALID_STATE", changed.text
    assert "never rewritten" in changed.json()["message"]
    for body, field in [({"points": [{"time": 5, "value": "12"}]}, "points[0].value"),
                        ({"points": [{"time": 5, "value": 9007199254740993}]}, "points[0].value"),
                        ({"points": [{"time": 5, "value": 18446744073709551617}]}, "points[0].value"),
                        ({"points": [{"time": 253402300800000, "value": 1}]}, "points[0].time"),
                        ({"points": [], "unit": "EUR"}, "unit"),
                        ({"points": [{"time": 5.5, "value": 1}]}, "points[0].time"),
                        ({"points": [{"time": 5, "value": 1, "unit": "EUR"}]}, "points[0].unit"),
                        ({"values": []}, "points")]:
        refused = requests.post(url, json=body, timeout=10)
        assert refused.status_code == 400, (body, refused.text)
        assert field in refused.json()["message"], (body, refused.text)
    assert requests.post(f"{server['url']}/api/v1/metrics/bad%20name", json={"points": []}, timeout=10).status_code == 400
    # Integers a double holds exactly are taken, and -0 keeps its sign.
    exact = requests.post(url, data='{"points": [{"time": 7, "value": 1152921504606846976}, {"time": 8, "value": -0}]}',
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert exact.status_code == 200, exact.text
    got = [p["value"] for p in requests.get(f"{url}?since=7&until=9", timeout=10).json()["points"]]
    assert got[0] == float(2**60) and int(got[0]) == 2**60
    assert got[1] == 0.0 and math.copysign(1.0, got[1]) == -1.0, got
    broken = requests.post(url, data="{not json", headers={"Content-Type": "application/json"}, timeout=10)
    assert broken.status_code == 400 and "points" in broken.json()["message"]
    monitors = f"{server['url']}/api/v1/monitors"
    for body, field in [({"metric": name, "window": "1h", "alerts": ["drift_share >= 0.3"]}, "alerts"),
                        ({"deployment": "d", "window": "1h", "alerts": ["drops >= 1"]}, "alerts"),
                        ({"metric": name, "window": "8d"}, "window"),
                        ({"metric": name, "window": "1h", "seasonal": {"season": 1e17}}, "season"),
                        ({"metric": name, "window": "1h", "seasonal": {"period": "7d"}}, "seasonal.period")]:
        refused = requests.post(monitors, json=body, timeout=10)
        assert refused.status_code == 400 and f"`{field}`" in refused.json()["message"], (body, refused.text)
    refused = requests.post(f"{server['url']}/api/v1/annotations", json={"name": "x", "from": 10, "to": 5}, timeout=10)
    assert refused.status_code == 400 and "`to`" in refused.json()["message"]
    refused = requests.post(f"{server['url']}/api/v1/annotations", json={"name": "x", "from": 1, "to": 5, "kind": "party"}, timeout=10)
    assert refused.status_code == 400 and "`kind`" in refused.json()["message"]
    refused = requests.post(f"{server['url']}/api/v1/monitors", json={"metric": name, "window": "1h", "reference": "training"}, timeout=10)
    assert refused.status_code == 400 and "`reference`" in refused.json()["message"]
    # The CLI says what to do in one line.
    bad = mltrail(server, "metrics", "push", name, "--value", "1", "--time", "1000", check=False)
    assert bad.returncode != 0 and "never rewritten" in bad.stderr


def test_exports_tag_or_leave_out_annotated_periods_and_a_prometheus_series_is_scraped(server, tmp_path, unique):
    import http.server
    import threading

    name = unique("visits")
    day = 86_400_000
    points = [{"time": i * 3_600_000, "value": float(i)} for i in range(72)]
    assert requests.post(f"{server['url']}/api/v1/metrics/{name}", json={"points": points}, timeout=10).status_code == 200
    made = mltrail(server, "annotate", "--name", "promo", "--kind", "campaign", "--from", str(day),
                   "--to", str(2 * day), "--metrics", name)
    assert made.stdout.strip()
    tagged = tmp_path / "tagged.parquet"
    done = mltrail(server, "metrics", "export", name, "--output", str(tagged))
    assert "72 points written, 24 of them tagged" in done.stderr, done.stderr
    frame = pd.read_parquet(tagged)
    assert list(frame.columns) == ["time_ms", "time", "value", "annotation", "annotation_kind"]
    assert (frame["annotation"] == "promo").sum() == 24 and frame["value"].tolist() == [float(i) for i in range(72)]
    assert frame.loc[frame["annotation"] == "promo", "time_ms"].between(day, 2 * day - 1).all()
    clean = mltrail(server, "metrics", "export", name, "--annotations", "exclude", "--format", "csv",
                    "--dataset", unique("visits-clean"))
    assert "48 points written, 24 inside annotated periods left out (promo)" in clean.stderr, clean.stderr
    assert "stored as dataset version" in clean.stderr
    rows = pd.read_csv(io.StringIO(clean.stdout))
    assert len(rows) == 48 and not rows["time_ms"].between(day, 2 * day - 1).any()

    # A counter on a Prometheus page, scraped three times; --increase pushes the differences.
    counts = iter([100.0, 130.5, 131.0])

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("# TYPE shop_revenue_total counter\n"
                    f'shop_revenue_total{{region="eu"}} {next(counts)}\n'
                    'shop_revenue_total{region="us"} 7\n').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    page = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        scraped = unique("revenue-eu")
        run = mltrail(server, "metrics", "scrape", f"http://127.0.0.1:{page.server_address[1]}/metrics",
                      "--series", 'shop_revenue_total{region="eu"}', "--as", scraped, "--every", "1s",
                      "--times", "3", "--increase")
    finally:
        page.shutdown()
    values = [p["value"] for p in requests.get(f"{server['url']}/api/v1/metrics/{scraped}", timeout=10).json()["points"]]
    assert values == [30.5, 0.5], (values, run.stderr)
    ambiguous = mltrail(server, "metrics", "scrape", "http://127.0.0.1:9/metrics", "--series", "x{", "--as", scraped,
                        check=False)
    assert ambiguous.returncode != 0 and "--series" in ambiguous.stderr
