//! Model cards made only from the trail: `POST /api/v1/models/{name}/versions/{v}/card` builds
//! the card of a version from what the store and the kept documents say (the registry's
//! descriptions and tags, the training dataset version and its profile, the newest evaluation
//! with fairness and global importance, the newest robustness report, the gate reports and
//! approvals, the deployments serving it and their monitors' recent alerts), keeps it under its
//! digest and records the digest in the audit trail (`model_version.card`); `GET` answers the
//! newest kept card.
//!
//! The JSON follows Google's Model Card Toolkit schema v0.0.2 field for field (strings for
//! every value, no empty or null fields, nothing at the top level beside its five keys), so the
//! toolkit and what reads its cards read these; where the trail has more than a field holds,
//! it goes into `documentation` and `references` (`urn:mltrail:…`).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};

use mltrail_core::ModelVersionNumber;
use mltrail_store::evaluations::Assessment;
use mltrail_store::gates as stored;
use mltrail_store::{datasets, deployments, monitors, registry, KeyValue};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The MCT schema version the cards follow.
pub const SCHEMA_VERSION: &str = "0.0.2";

/// Characters a URN may not hold as they are (RFC 3986's excluded, and `%` itself); others,
/// names included, stay readable.
const URN_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `urn:mltrail:KIND:ID`, the id escaped so the reference is a URI whatever the name holds.
fn urn(kind: &str, id: &str) -> String {
    format!(
        "urn:mltrail:{kind}:{}",
        percent_encoding::utf8_percent_encode(id, URN_ESCAPED)
    )
}

/// A number as the card writes it: the shortest text that reads back as the same double.
fn decimal(v: f64) -> String {
    format!("{v:?}")
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        // Counts stay integers; other numbers in their shortest round-trip form.
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Number(n) => n.as_f64().map(decimal),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn tag<'a>(tags: &'a [KeyValue], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
        .filter(|v| !v.is_empty())
}

fn date(ms: i64) -> String {
    mltrail_core::time::utc_date(ms)
}

/// Drops empty strings, arrays and objects, and nulls, as the toolkit leaves them out.
fn pruned(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) => {
            let items: Vec<Value> = items.into_iter().filter_map(pruned).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| pruned(v).map(|v| (k, v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other),
    }
}

fn metric(kind: &str, value: String, slice: &str) -> Value {
    json!({"type": kind, "value": value, "slice": slice})
}

/// The card of `name`/`number`, from the trail as it stands.
pub(crate) async fn build(
    state: &AppState,
    name: &str,
    number: ModelVersionNumber,
) -> ApiResult<Value> {
    let model = registry::get_registered_model(&state.store, name).await?;
    let mv = registry::get_model_version(&state.store, name, number).await?;
    let v = number.0;
    let tag_of = |key: &str| {
        tag(&mv.tags, key)
            .or_else(|| tag(&model.tags, key))
            .map(str::to_string)
    };
    let mut documentation = Vec::new();
    let mut references = vec![urn("model_version", &format!("{name}/{v}"))];
    let mut data = Vec::new();
    let mut metrics = Vec::new();
    let mut ethics = Vec::new();
    let mut limitations: Vec<String> = tag_of("limitations").into_iter().collect();

    documentation.push(format!(
        "Version {v} of {name}, registered by {} on {} from `{}`.",
        mv.user_id,
        mltrail_core::time::rfc3339_seconds(mv.creation_timestamp),
        mv.source
    ));
    if let Ok((_, run_id)) = crate::lineage::run_of(&state.store, &mv).await {
        if !run_id.is_empty() {
            documentation.push(format!("Trained in run {run_id}."));
            references.push(urn("run", &run_id));
        }
    }

    // Training data: the dataset version, its profile and its personal-data columns.
    match tag(&mv.tags, registry::TRAINING_DATA_TAG).map(str::parse::<datasets::VersionRef>) {
        Some(Ok(vr)) => match datasets::get_version(&state.store, &vr).await {
            Ok(d) => {
                let columns: Vec<&Value> = d.file.schema.as_array().map(|c| c.iter().collect()).unwrap_or_default();
                let pii: Vec<String> = columns
                    .iter()
                    .filter(|c| c["pii"] == true)
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect();
                let described: Vec<String> = columns
                    .iter()
                    .filter_map(|c| Some(format!("{} ({})", c["name"].as_str()?, c["type"].as_str().unwrap_or("?"))))
                    .collect();
                data.push(json!({
                    "name": format!("{}@{}", d.name, d.version),
                    "link": urn("dataset", &format!("{}@{}", d.name, d.version)),
                    "description": format!(
                        "Training data: {} rows, {} columns: {}. BLAKE3 {}; target {}.",
                        d.file.rows, columns.len(), described.join(", "), d.file.digest,
                        d.file.target.as_deref().unwrap_or("not recorded")
                    ),
                    "sensitive": {"sensitive_data": pii.clone()},
                }));
                if !pii.is_empty() {
                    ethics.push(json!({
                        "name": format!("The training data holds personal data: {}.", pii.join(", ")),
                        "mitigation_strategy": if tag(&mv.tags, mltrail_core::tags::PRIVACY).is_some() {
                            "Stored predictions seal these columns per subject (mltrail.privacy); a subject's data can be exported and erased.".to_string()
                        } else {
                            "None recorded: the version has no mltrail.privacy tag, so stored predictions keep these inputs in the clear.".to_string()
                        },
                    }));
                }
            }
            Err(e) => documentation.push(format!("The training dataset {vr} could not be read: {e}.")),
        },
        Some(Err(e)) => documentation.push(format!("The training-data tag is not NAME@VERSION: {e}.")),
        None => limitations.push("The training data is not recorded (register with --training-data), so the card cannot describe it.".into()),
    }

    // The newest evaluation (read once: metrics, fairness, global importance, model digest).
    let mut model_digest = None;
    match crate::evaluations::latest_of(state, Assessment::Evaluation, name, number).await {
        Ok(Some((e, event))) => {
            model_digest = e["model_digest"].as_str().map(str::to_string);
            let dataset = e["dataset"].as_str().unwrap_or("?").to_string();
            references.push(urn(
                "evaluation",
                &event.event.state_digest.clone().unwrap_or_default(),
            ));
            documentation.push(format!(
                "Evaluated on {dataset} ({} rows, label `{}`) by {} on {}; audit event {}.",
                e["rows"],
                e["label"].as_str().unwrap_or("?"),
                event.event.actor,
                date(event.event.time),
                event.event.seq
            ));
            data.push(json!({"name": dataset, "link": urn("dataset", &dataset), "description": "Evaluation data."}));
            for task in ["classification", "regression"] {
                for (k, v) in e[task].as_object().into_iter().flatten() {
                    if let Some(text) = v.is_number().then(|| value_text(v)).flatten() {
                        metrics.push(metric(k, text, &dataset));
                    }
                }
            }
            let frames = &e["fairness"]["metric_frames"];
            for (column, frame) in frames.as_object().into_iter().flatten() {
                for (group, values) in frame["by_group"].as_object().into_iter().flatten() {
                    for m in [
                        "selection_rate",
                        "accuracy",
                        "true_positive_rate",
                        "false_positive_rate",
                    ] {
                        if let Some(text) = value_text(&values[m]) {
                            metrics.push(metric(m, text, &format!("{column}={group}")));
                        }
                    }
                }
                let scalars = &e["fairness"]["scalar"][column]["between_groups"];
                let dpd = scalars["demographic_parity_difference"].as_f64();
                for (k, val) in scalars.as_object().into_iter().flatten() {
                    if let Some(text) = value_text(val) {
                        metrics.push(metric(k, text, column));
                    }
                }
                if let Some(d) = dpd {
                    ethics.push(json!({
                        "name": format!("Group fairness by {column}: demographic parity difference {} between groups.", decimal(d)),
                        "mitigation_strategy": gate_mentions(state, name, &format!("fairness.{column}.")).await,
                    }));
                }
            }
            if let Some(imp) = e["importance"].as_object() {
                for pair in imp
                    .get("columns")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(col), Some(val)) = (pair[0].as_str(), pair[1].as_f64()) {
                        metrics.push(metric(
                            &format!("mean |SHAP| of {col}"),
                            decimal(val),
                            "global explanation",
                        ));
                    }
                }
            }
        }
        Ok(None) => limitations.push(
            "No evaluation is recorded (`mltrail evaluate`): performance and fairness are unknown."
                .into(),
        ),
        Err(e) => documentation.push(format!("The evaluation could not be read: {}.", e.message)),
    }

    // The newest robustness report.
    match crate::evaluations::latest_of(state, Assessment::Robustness, name, number).await {
        Ok(Some((r, event))) => {
            let eps = r["epsilon"].as_f64().map(decimal).unwrap_or_default();
            let slice = format!(
                "{} at epsilon {eps} (L-inf)",
                r["dataset"].as_str().unwrap_or("?")
            );
            references.push(urn(
                "robustness",
                &event.event.state_digest.clone().unwrap_or_default(),
            ));
            documentation.push(format!(
                "Robustness assessed on {} at epsilon {eps} (L-inf, {}) by {} on {}; audit event {}.",
                r["dataset"].as_str().unwrap_or("?"),
                if r["scale"]["source"] == "raw" { "raw units" } else { "training standard deviations" },
                event.event.actor,
                date(event.event.time),
                event.event.seq
            ));
            for k in [
                "clean_accuracy",
                "robust_accuracy",
                "verified_robust_accuracy",
                "attack_success_rate",
                "median_perturbation",
            ] {
                if let Some(text) = value_text(&r[k]) {
                    metrics.push(metric(k, text, &slice));
                }
            }
            for n in r["noise"].as_array().into_iter().flatten() {
                if let (Some(s), Some(text)) = (n["sigma"].as_f64(), value_text(&n["accuracy"])) {
                    metrics.push(metric(
                        "accuracy under gaussian noise",
                        text,
                        &format!("sigma {}", decimal(s)),
                    ));
                }
            }
            for m in r["missing"].as_array().into_iter().flatten() {
                if let (Some(f), Some(text)) = (m["feature"].as_str(), value_text(&m["accuracy"])) {
                    metrics.push(metric("accuracy with a feature missing", text, f));
                }
            }
            let augmented = r["augmented"]["dataset_version"].as_str();
            ethics.push(json!({
                "name": format!(
                    "Adversarial robustness at epsilon {eps}: robust accuracy at most {}, verified at least {}.",
                    value_text(&r["robust_accuracy"]).unwrap_or_else(|| "?".into()),
                    value_text(&r["verified_robust_accuracy"]).unwrap_or_else(|| "unknown (not a tree ensemble)".into())
                ),
                "mitigation_strategy": match augmented {
                    Some(d) => format!("Adversarial examples written as {d} for retraining. {}", gate_mentions(state, name, "robustness.").await),
                    None => gate_mentions(state, name, "robustness.").await,
                },
            }));
        }
        Ok(None) => {
            limitations.push("No robustness assessment is recorded (`mltrail robustness`).".into())
        }
        Err(e) => documentation.push(format!(
            "The robustness report could not be read: {}.",
            e.message
        )),
    }

    // Releases: gate reports and approvals.
    let reports =
        stored::reports(&state.store, name, Some(v), model.creation_timestamp, 50).await?;
    for r in &reports {
        let report = &r.report;
        let given: Vec<String> = report["approvals"]["given"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{} ({})",
                    a["approver"].as_str().unwrap_or("?"),
                    a["comment"].as_str().unwrap_or("")
                )
            })
            .collect();
        let failed: Vec<String> = report["requirements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|q| q["verdict"] == "fail")
            .map(|q| q["requirement"].as_str().unwrap_or("?").to_string())
            .collect();
        references.push(urn("gate_report", &r.digest));
        documentation.push(format!(
            "Moved to @{} on {} by {} through its release gate (requirements: {}; approvals: {}){}.",
            r.alias,
            date(r.created_time),
            report["checked_by"].as_str().unwrap_or("?"),
            report["requirements"].as_array().map_or(0, Vec::len),
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            },
            if report["override"].is_object() {
                " as an OVERRIDE"
            } else {
                ""
            }
        ));
        if let Some(o) = report["override"].as_object() {
            ethics.push(json!({
                "name": format!(
                    "Released to @{} by an override of its failed gate (failed: {}): {}.",
                    r.alias,
                    failed.join("; "),
                    o.get("reason").and_then(Value::as_str).unwrap_or("")
                ),
                "mitigation_strategy": format!("Overridden by {}; the report is kept as {}.", o.get("by").and_then(Value::as_str).unwrap_or("?"), r.digest),
            }));
        }
    }

    // Deployments serving this version and their monitors' recent alerts.
    let serving = deployments::current(&state.store).await?;
    for d in serving
        .values()
        .filter(|d| d.model == name && d.version == v.to_string())
    {
        references.push(urn("deployment", &d.name));
        documentation.push(format!(
            "Deployment `{}`: {} since {} (by {}).",
            d.name,
            d.status,
            date(d.since),
            d.actor
        ));
        for m in monitors::list_monitors(&state.store, Some(&d.name), false).await? {
            let alerts = monitors::list_alerts(&state.store, Some(&m.id), 5).await?;
            for a in alerts {
                documentation.push(format!(
                    "Monitor {} of `{}`: alert `{}` {} on {}.",
                    m.id.as_str(),
                    d.name,
                    a.rule,
                    a.state.as_str(),
                    date(a.fired_time)
                ));
            }
        }
    }

    let signature = tag(&mv.tags, mltrail_core::tags::SIGNATURE);
    let input_map: Vec<Value> = signature
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(json!({"key": c["name"].as_str()?, "value": c["type"].as_str().unwrap_or("")}))
        })
        .collect();
    let model_digest = model_digest;
    let overview = [model.description.as_str(), mv.description.as_str()]
        .iter()
        .filter(|d| !d.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n\n");
    let card = json!({
        "schema_version": SCHEMA_VERSION,
        "model_details": {
            "name": name,
            "overview": if overview.is_empty() { format!("Version {v} of registered model {name}.") } else { overview },
            "documentation": documentation.join("\n"),
            "owners": [{"name": mv.user_id}],
            "version": {"name": v.to_string(), "date": date(mv.creation_timestamp)},
            "licenses": tag_of("license").map(|l| vec![json!({"identifier": l})]),
            "references": references.into_iter().map(|r| json!({"reference": r})).collect::<Vec<_>>(),
            "path": mv.source,
        },
        "model_parameters": {
            "model_architecture": model_digest.map(|d| format!("ONNX graph, BLAKE3 {d}")),
            "data": data,
            "input_format": signature,
            "input_format_map": input_map,
        },
        "quantitative_analysis": {"performance_metrics": metrics},
        "considerations": {
            "users": tag_of("users").map(|u| vec![json!({"description": u})]),
            "use_cases": tag_of("intended_use").map(|u| vec![json!({"description": u})]),
            "limitations": limitations.into_iter().map(|l| json!({"description": l})).collect::<Vec<_>>(),
            "tradeoffs": tag_of("tradeoffs").map(|u| vec![json!({"description": u})]),
            "ethical_considerations": ethics,
        },
    });
    Ok(pruned(card).unwrap_or_else(|| json!({"schema_version": SCHEMA_VERSION})))
}

/// What the model's gates require of values starting with `prefix`, as a mitigation.
async fn gate_mentions(state: &AppState, name: &str, prefix: &str) -> String {
    let Ok(policies) = stored::policies(&state.store, name).await else {
        return "None recorded.".into();
    };
    let named: Vec<String> = policies
        .iter()
        .flat_map(|p| {
            p.requirements
                .iter()
                .filter(|r| r.starts_with(prefix))
                .map(move |r| format!("@{} requires {r}", p.alias))
        })
        .collect();
    if named.is_empty() {
        "No release gate requires it.".into()
    } else {
        format!("Release gates: {}.", named.join("; "))
    }
}

/// A model card as kept.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct CardKept {
    /// The card (Model Card Toolkit's layout, `mltrail.model-card/…`).
    #[schema(value_type = Object)]
    card: Value,
    /// BLAKE3 of the card's canonical JSON.
    digest: String,
    /// Where it is kept in the artifact store.
    artifact: String,
}

/// The newest kept card with its audit event.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct CardRead {
    #[schema(value_type = Object)]
    card: Value,
    digest: Option<String>,
    event: mltrail_store::audit::LoggedEvent,
}

/// `POST`: builds the card, keeps it under its digest and records the digest.
#[utoipa::path(post, path = "/{name}/versions/{version}/card", tag = "cards",
    params(crate::gates::ModelVersionPath),
    responses((status = 200, description = "The card built from what the trail holds, kept", body = CardKept)))]
async fn record(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(crate::gates::ModelVersionPath { name, version }): Path<crate::gates::ModelVersionPath>,
) -> ApiResult<Json<CardKept>> {
    let number = crate::req::version_number(&version)?;
    let card = build(&state, &name, number).await?;
    let (digest, artifact) =
        crate::evaluations::keep(&state, &actor, Assessment::Card, &name, number, &card).await?;
    Ok(Json(CardKept {
        card,
        digest,
        artifact,
    }))
}

/// `GET`: the newest kept card with its event.
#[utoipa::path(get, path = "/{name}/versions/{version}/card", tag = "cards",
    params(crate::gates::ModelVersionPath),
    responses((status = 200, description = "The newest kept card", body = CardRead)))]
async fn newest(
    State(state): State<AppState>,
    Path(crate::gates::ModelVersionPath { name, version }): Path<crate::gates::ModelVersionPath>,
) -> ApiResult<Json<CardRead>> {
    let number = crate::req::version_number(&version)?;
    let Some((card, event)) =
        crate::evaluations::latest_of(&state, Assessment::Card, &name, number).await?
    else {
        return Err(ApiError::not_found(format!(
            "{name}/{} has no model card yet (`mltrail models card {name}/{}`)",
            number.0, number.0
        )));
    };
    Ok(Json(CardRead {
        card,
        digest: event.event.state_digest.clone(),
        event,
    }))
}

/// Nested under `/api/v1/models`.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(newest, record))
}
