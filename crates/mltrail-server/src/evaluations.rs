//! `/api/v1/models/{name}/versions/{version}/evaluation`: a model version's evaluation
//! (`mltrail evaluate`) is kept as canonical JSON in the artifact store under its digest, and
//! recorded as an audit event carrying that digest; its metrics are logged on the version's run
//! under scikit-learn's names as `mlflow.evaluate` logs them, so MLflow clients see them there.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use mltrail_core::{ArtifactPath, ModelVersionNumber};
use mltrail_store::evaluations::{self, Assessment};
use mltrail_store::metrics::{self, Batch, NewMetric};
use mltrail_store::{registry, runs};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The layout `mltrail evaluate` sends (mltrail-explain's `evaluation::FORMAT`).
const FORMAT: &str = "mltrail.evaluation/1";
/// The layout `mltrail robustness` sends (mltrail-explain's `robustness::FORMAT`).
const ROBUSTNESS_FORMAT: &str = "mltrail.robustness/1";

fn path(text: &str) -> ApiResult<ArtifactPath> {
    ArtifactPath::parse(text).map_err(|e| ApiError::invalid(format!("`{text}`: {e}")))
}

/// Keeps an assessment of `name`/`number` as canonical JSON under its BLAKE3 digest in the
/// artifact store and records the digest in the trail: its digest and artifact path.
pub(crate) async fn keep(
    state: &AppState,
    actor: &str,
    what: Assessment,
    name: &str,
    number: ModelVersionNumber,
    document: &Value,
) -> ApiResult<(String, String)> {
    let canonical = mltrail_core::canonical_json(document);
    let digest = blake3::hash(canonical.as_bytes()).to_hex().to_string();
    let artifact = what.artifact_path(name, number.0, &digest);
    state
        .artifacts
        .put(&path(&artifact)?, canonical.into_bytes().into())
        .await?;
    evaluations::record_assessment(&state.store, actor, what, name, number.0, digest.clone())
        .await?;
    Ok((digest, artifact))
}

/// The metrics MLflow clients see on the version's run, by `mlflow.evaluate`'s names.
fn run_metrics(evaluation: &Value) -> Vec<(&'static str, f64)> {
    let names: &[(&str, &str, &str)] = &[
        ("classification", "accuracy", "accuracy_score"),
        ("classification", "precision", "precision_score"),
        ("classification", "recall", "recall_score"),
        ("classification", "f1", "f1_score"),
        ("classification", "roc_auc", "roc_auc"),
        ("classification", "log_loss", "log_loss"),
        ("classification", "brier", "brier_score_loss"),
        ("classification", "example_count", "example_count"),
        ("regression", "rmse", "root_mean_squared_error"),
        ("regression", "mae", "mean_absolute_error"),
        ("regression", "r2", "r2_score"),
        ("regression", "example_count", "example_count"),
    ];
    names
        .iter()
        .filter_map(|(task, field, name)| Some((*name, evaluation[*task][*field].as_f64()?)))
        .collect()
}

/// What every kept assessment carries: its layout, and the model version of the path.
fn check_document(
    body: &Value,
    format: &str,
    writer: &str,
    name: &str,
    number: ModelVersionNumber,
) -> ApiResult<()> {
    if body["format"] != format {
        return Err(ApiError::invalid(format!(
            "`format` must be \"{format}\" (the layout `{writer}` writes)"
        ))
        .at_column(Some("format"), None));
    }
    for field in ["model", "version", "dataset", "label"] {
        crate::req::body_text(body, field, "a non-empty string")?;
    }
    if body["model"] != name || body["version"] != number.0.to_string().as_str() {
        return Err(ApiError::invalid(format!(
            "`model` and `version` must name {name}/{} (the path's version)",
            number.0
        )));
    }
    Ok(())
}

/// `POST`: the body is the evaluation (`mltrail evaluate` makes it).
async fn record(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path((name, version)): Path<(String, String)>,
    crate::req::JsonBody(body): crate::req::JsonBody,
) -> ApiResult<Json<Value>> {
    let number = crate::req::version_number(&version)?;
    check_document(&body, FORMAT, "mltrail evaluate", &name, number)?;
    if !body["classification"].is_object() && !body["regression"].is_object() {
        return Err(ApiError::invalid(
            "an evaluation holds `classification` or `regression` metrics",
        ));
    }
    let mv = registry::get_model_version(&state.store, &name, number).await?;
    let (digest, artifact) =
        keep(&state, &actor, Assessment::Evaluation, &name, number, &body).await?;
    // The version's run shows the metrics, as mlflow.evaluate leaves them.
    let (_, run_id) = crate::lineage::run_of(&state.store, &mv).await?;
    let mut logged = Vec::new();
    if let Ok(run) = runs::parse_run_id(&run_id) {
        let now = mltrail_core::now_millis();
        let values = run_metrics(&body);
        let batch = Batch::new(
            values
                .iter()
                .map(|(key, value)| NewMetric {
                    key: key.to_string(),
                    value: *value,
                    timestamp: now,
                    step: 0,
                    model_id: None,
                })
                .collect(),
            Vec::new(),
            Vec::new(),
        )?;
        if let Some(batch) = batch {
            metrics::log_batch(&state.store, &actor, run, batch).await?;
            logged = values.iter().map(|(k, _)| *k).collect();
        }
    }
    Ok(Json(json!({
        "digest": digest,
        "artifact": artifact,
        "run_id": run_id,
        "run_metrics": logged,
    })))
}

/// The newest assessment of a version, as recorded and kept: one recorded before the version
/// was created (about an earlier version with that number, since deleted) is not its.
pub(crate) async fn latest_of(
    state: &AppState,
    what: Assessment,
    name: &str,
    number: ModelVersionNumber,
) -> ApiResult<Option<(Value, mltrail_store::audit::LoggedEvent)>> {
    let mv = registry::get_model_version(&state.store, name, number).await?;
    let Some(event) =
        evaluations::latest_assessment(&state.store, what, name, number.0, mv.creation_timestamp)
            .await?
    else {
        return Ok(None);
    };
    let digest = event.event.state_digest.clone().unwrap_or_default();
    let artifact = what.artifact_path(name, number.0, &digest);
    let bytes = state.artifacts.get(&path(&artifact)?).await?;
    if blake3::hash(&bytes).to_hex().as_str() != digest {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "INVALID_STATE",
            format!(
                "the kept {} {artifact} is not what audit event {} recorded: it was changed",
                what.kind(),
                event.event.seq
            ),
        ));
    }
    let document = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    Ok(Some((document, event)))
}

/// The newest evaluation of a version, as recorded and kept.
pub(crate) async fn latest(
    state: &AppState,
    name: &str,
    number: ModelVersionNumber,
) -> ApiResult<Option<(Value, mltrail_store::audit::LoggedEvent)>> {
    latest_of(state, Assessment::Evaluation, name, number).await
}

/// The newest robustness report of a version, as recorded and kept.
pub(crate) async fn latest_robustness(
    state: &AppState,
    name: &str,
    number: ModelVersionNumber,
) -> ApiResult<Option<(Value, mltrail_store::audit::LoggedEvent)>> {
    latest_of(state, Assessment::Robustness, name, number).await
}

/// The newest assessment of `what` with its event, answered under `key`; 404 with `hint` (the
/// command that makes one) when there is none.
async fn newest(
    state: &AppState,
    what: Assessment,
    key: &str,
    name: &str,
    version: &str,
    hint: &str,
) -> ApiResult<Json<Value>> {
    let number = crate::req::version_number(version)?;
    let Some((document, event)) = latest_of(state, what, name, number).await? else {
        return Err(ApiError::not_found(format!(
            "{name}/{} has no {key} yet (`{hint}`)",
            number.0
        )));
    };
    Ok(Json(json!({
        key: document,
        "digest": event.event.state_digest,
        "entity": format!("{}:{name}/{}", what.kind(), number.0),
        "event": event,
    })))
}

/// `GET`: the newest evaluation with its event.
async fn get_latest(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let hint = format!("mltrail evaluate {name}/{version} --data DATASET@V --label COL");
    newest(
        &state,
        Assessment::Evaluation,
        "evaluation",
        &name,
        &version,
        &hint,
    )
    .await
}

/// `POST`: the body is the robustness report (`mltrail robustness` makes it), kept under its
/// digest and recorded as an audit event, as evaluations are.
async fn record_robustness(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path((name, version)): Path<(String, String)>,
    crate::req::JsonBody(body): crate::req::JsonBody,
) -> ApiResult<Json<Value>> {
    let number = crate::req::version_number(&version)?;
    check_document(
        &body,
        ROBUSTNESS_FORMAT,
        "mltrail robustness",
        &name,
        number,
    )?;
    for field in [
        "epsilon",
        "clean_accuracy",
        "robust_accuracy",
        "attack_success_rate",
    ] {
        if !body[field].as_f64().is_some_and(f64::is_finite) {
            return Err(
                ApiError::invalid(format!("`{field}` must be a finite number"))
                    .at_column(Some(field), None),
            );
        }
    }
    registry::get_model_version(&state.store, &name, number).await?;
    let (digest, artifact) =
        keep(&state, &actor, Assessment::Robustness, &name, number, &body).await?;
    Ok(Json(json!({"digest": digest, "artifact": artifact})))
}

/// `GET`: the newest robustness report with its event.
async fn get_robustness(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let hint =
        format!("mltrail robustness {name}/{version} --data DATASET@V --label COL --epsilon E");
    newest(
        &state,
        Assessment::Robustness,
        "robustness",
        &name,
        &version,
        &hint,
    )
    .await
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{name}/versions/{version}/evaluation",
            get(get_latest).post(record),
        )
        .route(
            "/{name}/versions/{version}/robustness",
            get(get_robustness).post(record_robustness),
        )
}
