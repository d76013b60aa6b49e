//! The model registry: registered models, one model's versions and aliases, and a version with
//! its source run, training data, signature and evaluation.

use crate::chart;
use crate::layout::{self, model_href, run_href, value_of, version_href, Section, Viewer};
use maud::{html, Markup};
use mltrail_core::tags;
use mltrail_store::gates::{StoredPolicy, StoredReport};
use mltrail_store::records::{KeyValue, ModelVersion, RegisteredModel};
use serde_json::Value;

/// Every registered model the viewer may see.
pub fn models_page(viewer: &Viewer<'_>, models: &[RegisteredModel]) -> Markup {
    let body = html! {
        @if models.is_empty() {
            p.empty { "No registered models yet. Register one with " code { "mlflow.register_model(…)" } " or " code { "mltrail register" } "." }
        } @else {
            table.wide {
                caption { (models.len()) " registered models" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Latest versions" } th scope="col" { "Aliases" } th scope="col" { "Last update" } } }
                tbody { @for m in models { tr {
                    td { a href=(model_href(&m.name)) { (m.name) } }
                    td { @for v in &m.latest_versions { a.badge href=(version_href(&m.name, &v.version)) { "v" (v.version) " " (v.current_stage) } } }
                    td { @for a in &m.aliases { a.badge href=(version_href(&m.name, &a.version)) { "@" (a.alias) " → v" (a.version) } } }
                    td { (layout::time(m.last_updated_timestamp)) }
                } } }
            }
        }
    };
    layout::page(Section::Models, viewer, &[], "Registered models", body)
}

/// One registered model: description, aliases, tags and every version.
pub fn model_page(
    viewer: &Viewer<'_>,
    model: &RegisteredModel,
    versions: &[ModelVersion],
    gates: &[StoredPolicy],
    reports: &[StoredReport],
) -> Markup {
    let body = html! {
        @if !model.description.is_empty() { p { (model.description) } }
        h2 { "Aliases" }
        @if model.aliases.is_empty() { p.empty { "No aliases." } } @else {
            table { tbody { @for a in &model.aliases { tr {
                th scope="row" { "@" (a.alias) }
                td { a href=(version_href(&model.name, &a.version)) { "version " (a.version) } }
            } } } }
        }
        @if !gates.is_empty() {
            h2 { "Release gates" }
            table.wide {
                thead { tr { th scope="col" { "Alias" } th scope="col" { "Requirements" } th scope="col" { "Approvals" } } }
                tbody { @for g in gates { tr {
                    th scope="row" { "@" (g.alias) }
                    td { @for r in &g.requirements { code { (r) } br; } @if g.requirements.is_empty() { span.muted { "none" } } }
                    td.num { (g.approvals) }
                } } }
            }
        }
        @if !reports.is_empty() {
            h2 { "Gated moves" }
            (reports_table(reports))
        }
        h2 { "Versions (" (versions.len()) ")" }
        @if versions.is_empty() { p.empty { "No versions." } } @else {
            table.wide {
                thead { tr { th scope="col" { "Version" } th scope="col" { "Stage" } th scope="col" { "Aliases" } th scope="col" { "Source run" } th scope="col" { "Training data" } th scope="col" { "Created" } th scope="col" { "By" } } }
                tbody { @for v in versions { tr {
                    td { a href=(version_href(&v.name, &v.version)) { "v" (v.version) } }
                    td { (v.current_stage) }
                    td { @for a in &v.aliases { span.badge { "@" (a) } } }
                    td { @if v.run_id.is_empty() { span.muted { "—" } } @else { a href=(run_href(&v.run_id)) { code { (v.run_id) } } } }
                    td { (value_of(&v.tags, tags::TRAINING_DATA).unwrap_or("")) }
                    td { (layout::time(v.creation_timestamp)) }
                    td { (v.user_id) }
                } } }
            }
        }
        p.muted { a href=(crate::audit::trail_href(&format!("registered_model:{}", model.name))) { "Audit trail of this model" } " (who created it, moved its aliases, registered each version)" }
        @if !model.tags.is_empty() {
            h2 { "Tags" }
            table { tbody { @for t in &model.tags { tr { td { (t.key) } td { (t.value) } } } } }
        }
    };
    layout::page(
        Section::Models,
        viewer,
        &[("Models".into(), "/ui/models".into())],
        &model.name,
        body,
    )
}

/// What a version's page shows besides the version itself.
pub struct VersionPage<'a> {
    pub version: &'a ModelVersion,
    /// The column names and types the version takes (its `mltrail.signature` tag, else the
    /// MLmodel file's signature), as text; `None` when neither says.
    pub signature: Option<String>,
    /// The newest evaluation, as kept (`mltrail evaluate`).
    pub evaluation: Option<Value>,
    /// The newest robustness report, as kept (`mltrail robustness`).
    pub robustness: Option<Value>,
    /// Each release gate of the model, with what it would say about this version now.
    pub gates: Vec<GatePanel>,
    /// The reports of gated moves to this version, newest first.
    pub reports: Vec<StoredReport>,
}

/// A gate and its check of one version now (a report as `GET …/gates/{alias}/check` gives it).
pub struct GatePanel {
    pub policy: StoredPolicy,
    pub check: Value,
}

/// A version: stage, aliases, source run, training data, signature, evaluation and tags.
pub fn version_page(viewer: &Viewer<'_>, page: &VersionPage<'_>) -> Markup {
    let v = page.version;
    let other_tags: Vec<&KeyValue> = v.tags.iter().filter(|t| t.key != tags::SIGNATURE).collect();
    let body = html! {
        table { tbody {
            tr { th scope="row" { "Stage" } td { (v.current_stage) } }
            tr { th scope="row" { "Aliases" } td { @if v.aliases.is_empty() { span.muted { "none" } } @for a in &v.aliases { span.badge { "@" (a) } } } }
            tr { th scope="row" { "Status" } td { (v.status) } }
            tr { th scope="row" { "Source run" } td { @if v.run_id.is_empty() { span.muted { "none recorded" } } @else { a href=(run_href(&v.run_id)) { code { (v.run_id) } } } } }
            tr { th scope="row" { "Source" } td { code { (v.source) } } }
            tr { th scope="row" { "Training data" } td {
                @match value_of(&v.tags, tags::TRAINING_DATA) {
                    Some(d) => { code { (d) } @if let Some(digest) = value_of(&v.tags, tags::TRAINING_DATA_DIGEST) { " " span.muted { "digest " code { (digest) } } } },
                    None => span.muted { "not named (register with " code { "--training-data NAME@V" } ")" },
                }
            } }
            tr { th scope="row" { "Created" } td { (layout::time(v.creation_timestamp)) " by " (v.user_id) } }
            @if !v.description.is_empty() { tr { th scope="row" { "Description" } td { (v.description) } } }
            tr { th scope="row" { "History" } td { a href=(crate::audit::trail_href(&format!("model_version:{}/{}", v.name, v.version))) { "audit trail of this version" } } }
            tr { th scope="row" { "Model card" } td { a href=(format!("{}/card", version_href(&v.name, &v.version))) { "model card, from the trail" } } }
        } }
        h2 { "Signature" }
        @match &page.signature {
            Some(text) => pre.preview { (text) },
            None => p.empty { "The version names no columns." },
        }
        h2 { "Evaluation" }
        @match &page.evaluation {
            None => p.empty { "Not evaluated yet: " code { "mltrail evaluate " (v.name) "/" (v.version) " --data DATASET@V --label COLUMN" } },
            Some(evaluation) => (evaluation_summary(evaluation)),
        }
        h2 { "Robustness" }
        @match &page.robustness {
            None => p.empty { "Not assessed yet: " code { "mltrail robustness " (v.name) "/" (v.version) " --data DATASET@V --epsilon 0.05" } },
            Some(report) => (robustness_summary(report)),
        }
        h2 { "Release gates" }
        @if page.gates.is_empty() {
            p.empty { "No alias of " (v.name) " is protected. " code { "mltrail gates set " (v.name) " --alias production --require \"evaluation.roc_auc >= 0.8\" --approvals 1" } }
        }
        @for g in &page.gates { (gate_panel(v, g)) }
        @if !page.reports.is_empty() {
            h3 { "Gated moves to this version" }
            (reports_table(&page.reports))
        }
        h2 { "Tags" }
        @if other_tags.is_empty() { p.empty { "No tags." } } @else {
            table { tbody { @for t in &other_tags { tr { td { (t.key) } td { (t.value) } } } } }
        }
    };
    layout::page(
        Section::Models,
        viewer,
        &[
            ("Models".into(), "/ui/models".into()),
            (v.name.clone(), model_href(&v.name)),
        ],
        &format!("{} version {}", v.name, v.version),
        body,
    )
}

/// The numbers of an evaluation (its scalar metrics) and what it was computed on.
fn evaluation_summary(evaluation: &Value) -> Markup {
    let text = |k: &str| evaluation.get(k).and_then(Value::as_str).unwrap_or("");
    let metrics: Vec<(&str, f64)> = ["classification", "regression"]
        .iter()
        .filter_map(|k| evaluation.get(*k).and_then(Value::as_object))
        .flat_map(|o| o.iter())
        .filter_map(|(k, v)| v.as_f64().map(|n| (k.as_str(), n)))
        .collect();
    html! {
        p { "On " code { (text("dataset")) } ", label " code { (text("label")) } ", "
            (evaluation.get("rows").and_then(Value::as_u64).unwrap_or(0)) " rows (" (text("task")) ")." }
        table { tbody { @for (k, n) in &metrics { tr { th scope="row" { (k) } td.num title=(n) { (chart::short_number(*n)) } } } } }
        @if evaluation.get("fairness").is_some() { p.muted { "Fairness numbers were computed too: " code { "GET /api/v1/models/" (text("model")) "/versions/" (evaluation.get("version").map(|v| v.to_string()).unwrap_or_default()) "/evaluation" } } }
    }
}

/// What a gate would say about moving its alias to this version now: each requirement with
/// its value, bound and verdict, and the approvals.
fn gate_panel(v: &ModelVersion, g: &GatePanel) -> Markup {
    let report = &g.check;
    let passed = report["passed"].as_bool() == Some(true);
    let given = report["approvals"]["given"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let number = |x: &Value| x.as_f64().map(chart::short_number).unwrap_or_default();
    html! {
        h3 { "@" (g.policy.alias) " "
            @if passed { span.badge.ok { "would pass" } } @else { span.badge.bad { "would fail" } } }
        @if report["requirements"].as_array().into_iter().flatten().any(|r| r["verdict"] == "vacuous") { p.muted { "First release: @" (g.policy.alias) " points at no version yet, so requirements naming the champion hold." } }
        @else if let Some(c) = report["champion"].as_i64() { p.muted { "Champion: " a href=(version_href(&v.name, &c.to_string())) { "version " (c) } } }
        table.wide {
            thead { tr { th scope="col" { "Requirement" } th scope="col" { "Value" } th scope="col" { "Bound" } th scope="col" { "Verdict" } th scope="col" { "Why" } } }
            tbody {
                @for r in report["requirements"].as_array().into_iter().flatten() { tr {
                    td { code { (r["requirement"].as_str().unwrap_or("")) } }
                    td.num { (number(&r["value"])) }
                    td.num { (number(&r["bound"])) }
                    td { @match r["verdict"].as_str().unwrap_or("") {
                        "pass" => span.badge.ok { "pass" },
                        "vacuous" => span.badge { "holds (first release)" },
                        other => span.badge.bad { (other) },
                    } }
                    td { (r["reason"].as_str().unwrap_or("")) }
                } }
                tr {
                    td { "approvals" }
                    td.num { (given.len()) }
                    td.num { (g.policy.approvals) }
                    td { @if given.len() >= g.policy.approvals as usize { span.badge.ok { "pass" } } @else { span.badge.bad { "fail" } } }
                    td { @for a in &given { (a["approver"].as_str().unwrap_or("")) @if let Some(c) = a["comment"].as_str().filter(|c| !c.is_empty()) { ": " (c) } br; } }
                }
            }
        }
        @if !passed { p.muted { "Approve with " code { "mltrail models approve " (v.name) "/" (v.version) " --alias " (g.policy.alias) " --comment \"…\"" } " (a user with the approver role who did not create it)." } }
    }
}

/// Kept gate reports: when, which move, by whom, overridden or not, and the digest the
/// trail holds.
pub fn reports_table(reports: &[StoredReport]) -> Markup {
    html! {
        table.wide {
            thead { tr { th scope="col" { "When" } th scope="col" { "Move" } th scope="col" { "By" } th scope="col" { "Outcome" } th scope="col" { "Report digest" } } }
            tbody { @for r in reports { tr {
                td { (layout::time(r.created_time)) }
                td { "@" (r.alias) " → " a href=(version_href(&r.name, &r.version.to_string())) { "v" (r.version) } }
                td { (r.report["checked_by"].as_str().unwrap_or("")) }
                td { @if r.report["override"].is_object() {
                        span.badge.bad { "override" } " " (r.report["override"]["reason"].as_str().unwrap_or(""))
                    } @else { span.badge.ok { "passed" } } }
                td { a href=(crate::audit::trail_href(&format!("gate_report:{}", r.digest))) { code { (r.digest.get(..16).unwrap_or(&r.digest)) "…" } } }
            } } }
        }
    }
}

/// A robustness report's bounds, attacks, noise and missing-feature accuracy.
fn robustness_summary(r: &Value) -> Markup {
    let pct = |x: &Value| {
        x.as_f64()
            .map(|v| format!("{:.1}%", 100.0 * v))
            .unwrap_or_else(|| "—".into())
    };
    let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    html! {
        p { "On " code { (text("dataset")) } ", ε = " (r["epsilon"].as_f64().unwrap_or(0.0)) " (L∞, "
            (if r["scale"]["source"] == "raw" { "raw units" } else { "training standard deviations" }) "), "
            (r["rows_attacked"].as_u64().unwrap_or(0)) " rows attacked." }
        table { tbody {
            tr { th scope="row" { "clean accuracy" } td.num { (pct(&r["clean_accuracy"])) } }
            tr { th scope="row" { "robust accuracy (upper bound)" } td.num { (pct(&r["robust_accuracy"])) } }
            tr { th scope="row" { "verified robust accuracy (lower bound)" } td.num { (pct(&r["verified_robust_accuracy"])) } }
            tr { th scope="row" { "attack success rate" } td.num { (pct(&r["attack_success_rate"])) } }
            tr { th scope="row" { "median perturbation" } td.num { (r["median_perturbation"].as_f64().map(chart::short_number).unwrap_or_else(|| "—".into())) } }
            @for a in r["attacks"].as_array().into_iter().flatten() {
                tr { th scope="row" { "attack " (a["attack"].as_str().unwrap_or("")) } td.num { (pct(&a["success_rate"])) } }
            }
            @for n in r["noise"].as_array().into_iter().flatten() {
                tr { th scope="row" { "accuracy, noise σ = " (n["sigma"].as_f64().unwrap_or(0.0)) } td.num { (pct(&n["accuracy"])) } }
            }
            @for m in r["missing"].as_array().into_iter().flatten() {
                tr { th scope="row" { "accuracy without " (m["feature"].as_str().unwrap_or("")) } td.num { (pct(&m["accuracy"])) } }
            }
        } }
        @if let Some(a) = r["augmented"]["dataset_version"].as_str() { p.muted { "Adversarial examples written as dataset " code { (a) } "." } }
        @for n in r["notes"].as_array().into_iter().flatten() { p.muted { (n.as_str().unwrap_or("")) } }
    }
}
