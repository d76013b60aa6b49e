"""`mltrail models card`: a model card made only from the trail, in the Model Card Toolkit's
v0.0.2 layout (checked field by field below), with every section filled from what was
recorded (training data, evaluation, fairness by group, robustness, global importance, the gate
report), numbers that read back as the recorded doubles, and its digest in the audit trail."""
import json
import re
import subprocess

import requests

from test_robustness import labelled, mltrail, store
from test_serving import credit_model  # noqa: F401  (a fixture)

# The Model Card Toolkit's schema v0.0.2 (model_card_toolkit/schema/v0.0.2), as a field layout:
# every value is a string, an array or an object; only the top level refuses other keys.
STRING = "string"
LAYOUT = {
    "schema_version": STRING,
    "model_details": {
        "name": STRING, "overview": STRING, "documentation": STRING,
        "owners": [{"name": STRING, "contact": STRING}],
        "version": {"name": STRING, "date": STRING, "diff": STRING},
        "licenses": [{"identifier": STRING, "custom_text": STRING}],
        "references": [{"reference": STRING}],
        "citations": [{"style": STRING, "citation": STRING}],
        "path": STRING,
    },
    "model_parameters": {
        "model_architecture": STRING,
        "data": [{"name": STRING, "link": STRING, "description": STRING,
                  "sensitive": {"sensitive_data": [STRING]},
                  "graphics": {"description": STRING, "collection": [{"name": STRING, "image": STRING}]}}],
        "input_format": STRING, "input_format_map": [{"key": STRING, "value": STRING}],
        "output_format": STRING, "output_format_map": [{"key": STRING, "value": STRING}],
    },
    "quantitative_analysis": {
        "performance_metrics": [{"type": STRING, "value": STRING, "slice": STRING,
                                 "confidence_interval": {"lower_bound": STRING, "upper_bound": STRING}}],
        "graphics": {"description": STRING, "collection": [{"name": STRING, "image": STRING}]},
    },
    "considerations": {
        "users": [{"description": STRING}], "use_cases": [{"description": STRING}],
        "limitations": [{"description": STRING}], "tradeoffs": [{"description": STRING}],
        "ethical_considerations": [{"name": STRING, "mitigation_strategy": STRING}],
    },
}


def conforms(value, layout, where="card"):
    """Problems of `value` against `layout`; mltrail also writes no empty or null field."""
    if layout == STRING:
        return [] if isinstance(value, str) and value else [f"{where}: not a non-empty string"]
    if isinstance(layout, list):
        if not isinstance(value, list) or not value:
            return [f"{where}: not a non-empty array"]
        return [p for i, item in enumerate(value) for p in conforms(item, layout[0], f"{where}[{i}]")]
    if not isinstance(value, dict) or not value:
        return [f"{where}: not a non-empty object"]
    problems = [f"{where}.{k}: not in the layout" for k in value if k not in layout]
    return problems + [p for k, v in value.items() if k in layout for p in conforms(v, layout[k], f"{where}.{k}")]


def test_a_card_made_from_the_trail_in_the_toolkit_layout(server, client, credit_model, tmp_path, unique):
    name, frame = credit_model
    training = store(server, labelled(frame, 3), tmp_path, unique("train"))
    client.set_model_version_tag(name, "1", "mltrail.training_data", training)
    client.set_model_version_tag(name, "1", "intended_use", "Pre-screening credit applications; a person decides.")
    client.update_model_version(name, "1", description="Gradient boosting on three features.")
    rows = labelled(frame, 5).assign(sex=["f" if i % 2 else "m" for i in range(len(frame))])
    holdout = store(server, rows, tmp_path, unique("holdout"))
    mltrail(server, "evaluate", f"{name}/1", "--data", holdout, "--sensitive", "sex", "--importance-rows", "50")
    mltrail(server, "robustness", f"{name}/1", "--data", holdout, "--epsilon", "0.2", "--max-rows", "40",
            "--queries", "1000", "--iterations", "5")
    mltrail(server, "gates", "set", name, "--alias", "staging", "--approvals", "0",
            "--require", "evaluation.roc_auc >= 0.5", "--require", "fairness.sex.demographic_parity_difference <= 1")
    client.set_registered_model_alias(name, "staging", "1")

    out = mltrail(server, "models", "card", f"{name}/1", "--format", "json")
    card = json.loads(out.stdout)
    assert conforms(card, LAYOUT) == []
    assert card["schema_version"] == "0.0.2" and set(card) == set(LAYOUT)
    details = card["model_details"]
    assert details["name"] == name and details["version"]["name"] == "1"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", details["version"]["date"])
    assert "Gradient boosting" in details["overview"]
    assert "through its release gate" in details["documentation"]
    references = [r["reference"] for r in details["references"]]
    report = requests.get(f"{server['url']}/api/v1/models/{name}/gate-reports", timeout=30).json()["gate_reports"][0]
    assert f"urn:mltrail:gate_report:{report['digest']}" in references
    assert [d["name"] for d in card["model_parameters"]["data"]][:2] == [training, holdout]

    # Numbers read back as the recorded doubles.
    evaluation = requests.get(f"{server['url']}/api/v1/models/{name}/versions/1/evaluation", timeout=30).json()["evaluation"]
    metrics = {(m["type"], m["slice"]): m["value"] for m in card["quantitative_analysis"]["performance_metrics"]}
    assert float(metrics[("roc_auc", holdout)]) == evaluation["classification"]["roc_auc"]
    frame_f = evaluation["fairness"]["metric_frames"]["sex"]["by_group"]["f"]
    assert float(metrics[("selection_rate", "sex=f")]) == frame_f["selection_rate"]
    assert ("demographic_parity_difference", "sex") in metrics
    assert any(t.startswith("mean |SHAP| of ") for t, _ in metrics)
    assert any(t == "robust_accuracy" for t, _ in metrics)
    considerations = card["considerations"]
    assert considerations["use_cases"][0]["description"].startswith("Pre-screening")
    names = " ".join(e["name"] for e in considerations["ethical_considerations"])
    assert "Group fairness by sex" in names and "Adversarial robustness" in names
    fairness = next(e for e in considerations["ethical_considerations"] if "fairness by sex" in e["name"])
    assert "fairness.sex.demographic_parity_difference <= 1" in fairness["mitigation_strategy"]

    # Kept and recorded; Markdown and HTML from the same card.
    kept = requests.get(f"{server['url']}/api/v1/models/{name}/versions/1/card", timeout=30).json()
    log = subprocess.run([server["binary"], "audit", "log", "--entity", f"model_card:{name}/1", "--json",
                          "--backend-store-uri", server["backend"]], capture_output=True, text=True)
    assert [json.loads(line)["state_digest"] for line in log.stdout.splitlines()] == [kept["digest"]]
    md = mltrail(server, "models", "card", f"{name}/1", "--format", "md").stdout
    for section in ["## Model details", "## Model parameters", "## Quantitative analysis", "## Considerations",
                    "## References"]:
        assert section in md
    html_path = tmp_path / "card.html"
    mltrail(server, "models", "card", f"{name}/1", "--format", "html", "--output", str(html_path))
    html = html_path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "Quantitative analysis" in html
    page = requests.get(f"{server['url']}/ui/models/{name}/versions/1/card", timeout=30)
    assert page.status_code == 200 and "Ethical considerations" in page.text
