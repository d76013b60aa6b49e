"""The Python client in python/ (installed into the venv by scripts/setup.sh) against a running
`mltrail server` and `mltrail serve`: predictions and feedback, records, monitors and alerts,
datasets and catalogs, business metrics and annotations, lineage, and the audit trail."""
import pytest
from mltrail_client import MltrailError, Serving, Tracking

from test_serving import credit_model, start_serve  # noqa: F401 (a fixture)


def test_serving_and_tracking_through_the_client(server, credit_model, tmp_path, unique):  # noqa: F811
    name, frame = credit_model
    proc, url = start_serve(server, f"{name}@production", tmp_path)
    try:
        serving = Serving(url)
        tracking = Tracking(server["url"])

        deployment = serving.deployment()
        assert deployment["model"] == name and deployment["version"] == "1"
        answer = serving.predict(records=frame.head(3).to_dict(orient="records"))
        rows = answer["predictions"]
        assert len(rows) == 3 and all(r["model"] == name for r in rows)
        split = serving.predict(columns=list(frame.columns), data=frame.head(2).values.tolist())
        assert [r["outputs"] for r in split["predictions"]] == [r["outputs"] for r in rows[:2]]
        pid = rows[0]["prediction_id"]
        serving.feedback(pid, label=1, reward=0.25)
        logged = serving.prediction(pid)
        assert logged["inputs"]["income"] == pytest.approx(float(frame.income.iloc[0]))
        assert logged["feedback"][0]["reward"] == 0.25
        # Refusals carry the status, the code and what is at fault.
        with pytest.raises(MltrailError) as missing:
            serving.feedback("01890000-0000-7000-8000-000000000000", label=1)
        assert missing.value.status == 404
        with pytest.raises(MltrailError) as bad:
            serving.predict(records=[{"income": 1.0, "age": 2.0}])
        assert bad.value.status == 400 and bad.value.column == "debt_ratio"
        with pytest.raises(ValueError):
            serving.predict()

        # A catalog push is a dataset version, usable as a monitor's reference.
        catalog = unique("credit-reference")
        stored = tracking.push_catalog(catalog, frame.head(50).to_dict(orient="records"))
        assert stored["created"] is True
        versions = tracking.dataset_versions(catalog)
        assert [v["version"] for v in versions] == [1]
        one = tracking.dataset_version(catalog, 1)
        assert one["dataset_version"]["rows"] == 50
        deployment_name = deployment["deployment"]
        monitor = tracking.create_monitor(deployment=deployment_name, window="1h", reference=f"{catalog}@1")
        assert any(m["id"] == monitor["id"] for m in tracking.monitors(deployment=deployment_name))
        assert tracking.monitor(monitor["id"])["id"] == monitor["id"]
        assert isinstance(tracking.monitor_results(monitor["id"], limit=5), list)
        assert isinstance(tracking.monitor_alerts(monitor["id"]), list)
        assert isinstance(tracking.alerts(limit=5), list)
        tracking.delete_monitor(monitor["id"])
        with pytest.raises(MltrailError) as refused:
            tracking.create_monitor(deployment=deployment_name, window="soon")
        assert refused.value.status == 400 and refused.value.message.startswith("`window`")

        # Business metrics keep the doubles given, bit for bit.
        metric = unique("revenue")
        value = 0.1 + 0.2
        tracking.push_metric(metric, [{"time": 1_780_000_000_000, "value": value}])
        assert tracking.metric(metric)["points"][0]["value"] == value
        with pytest.raises(MltrailError) as not_a_number:
            tracking.push_metric(metric, [{"time": 1_780_000_060_000, "value": "12"}])
        assert not_a_number.value.status == 400 and "points[0].value" in not_a_number.value.message
        note = tracking.annotate(name=unique("campaign"), start=1_780_000_000_000, end=1_780_000_600_000,
                                 kind="campaign", metrics=[metric])
        assert note["kind"] == "campaign"

        assert tracking.lineage(name, 1)["model_version"]["name"] == name

        # The audit trail: the monitor's own events, and pages that follow each other.
        events = list(tracking.audit_events(entity=f"monitor:{monitor['id']}"))
        assert {e["action"] for e in events} >= {"monitor.create", "monitor.delete"}
        paged = list(tracking.audit_events(page_size=2, limit=5))
        assert len(paged) == 5
        assert all(a["seq"] > b["seq"] for a, b in zip(paged, paged[1:]))
        with pytest.raises(MltrailError) as bad_time:
            list(tracking.audit_events(since="yesterday-ish"))
        assert bad_time.value.status == 400 and "since" in bad_time.value.message
        verified = tracking.verify_audit()
        assert verified["intact"] is True and verified["events"] >= len(paged)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_client_is_typed_strictly():
    import subprocess
    import sys
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "python" / "src"
    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", "/dev/null", str(package)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
