//! `/api/v1/models/{name}/versions/{version}/evaluation`: a model version's evaluation
//! (`mltrail evaluate`) is kept as canonical JSON in the artifact store under its digest, and
//! recorded as an audit event carrying that digest; its metrics are logged on the version's run
//! under scikit-learn's names as `mlflow.evaluate` logs them, so MLflow clients see them there.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

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

/// An evaluation as `mltrail evaluate` makes it. It is kept whole, as sent (under the digest
/// of its canonical JSON), so the handler checks the fields below on the document itself.
#[derive(ToSchema)]
#[allow(dead_code)] // The schema of the document `record` keeps.
struct EvaluationIn {
    /// `mltrail.evaluation/1`.
    format: String,
    /// The registered model: the path's.
    model: String,
    /// The version: the path's.
    version: String,
    /// The dataset version evaluated on, `NAME@VERSION`.
    dataset: String,
    /// The label column.
    label: String,
    /// Classification metrics (`accuracy`, `precision`, `recall`, `f1`, `roc_auc`, `log_loss`,
    /// `brier`, `example_count`, …); this or `regression`.
    #[schema(value_type = Option<Object>)]
    classification: Option<Value>,
    /// Regression metrics (`rmse`, `mae`, `r2`, `example_count`, …).
    #[schema(value_type = Option<Object>)]
    regression: Option<Value>,
}

#[derive(Serialize, ToSchema)]
struct EvaluationKept {
    /// BLAKE3 of the evaluation's canonical JSON.
    digest: String,
    /// Where it is kept in the artifact store.
    artifact: String,
    /// The version's run, where its metrics were logged.
    run_id: String,
    /// The metrics logged on the run, by `mlflow.evaluate`'s names.
    run_metrics: Vec<&'static str>,
}

/// `POST`: the body is the evaluation (`mltrail evaluate` makes it).
#[utoipa::path(post, path = "/{name}/versions/{version}/evaluation", tag = "evaluations",
    params(crate::gates::ModelVersionPath), request_body = EvaluationIn,
    responses((status = 200, description = "The evaluation, kept and in the trail", body = EvaluationKept)))]
async fn record(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(crate::gates::ModelVersionPath { name, version }): Path<crate::gates::ModelVersionPath>,
    crate::req::Body(body): crate::req::Body<Value>,
) -> ApiResult<Json<EvaluationKept>> {
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
    Ok(Json(EvaluationKept {
        digest,
        artifact,
        run_id,
        run_metrics: logged,
    }))
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

/// The newest evaluation of a version with its audit event.
#[derive(Serialize, ToSchema)]
struct EvaluationRead {
    /// The evaluation as kept.
    #[schema(value_type = Object)]
    evaluation: Value,
    digest: Option<String>,
    /// `evaluation:<name>/<version>`.
    entity: String,
    event: mltrail_store::audit::LoggedEvent,
}

/// The newest robustness report of a version with its audit event.
#[derive(Serialize, ToSchema)]
struct RobustnessRead {
    /// The robustness report as kept.
    #[schema(value_type = Object)]
    robustness: Value,
    digest: Option<String>,
    /// `robustness:<name>/<version>`.
    entity: String,
    event: mltrail_store::audit::LoggedEvent,
}

/// The newest assessment of `what` with its event, its entity name; 404 with `hint` (the
/// command that makes one) when there is none.
async fn newest(
    state: &AppState,
    what: Assessment,
    key: &str,
    name: &str,
    version: &str,
    hint: &str,
) -> ApiResult<(
    Value,
    Option<String>,
    String,
    mltrail_store::audit::LoggedEvent,
)> {
    let number = crate::req::version_number(version)?;
    let Some((document, event)) = latest_of(state, what, name, number).await? else {
        return Err(ApiError::not_found(format!(
            "{name}/{} has no {key} yet (`{hint}`)",
            number.0
        )));
    };
    Ok((
        document,
        event.event.state_digest.clone(),
        format!("{}:{name}/{}", what.kind(), number.0),
        event,
    ))
}

/// `GET`: the newest evaluation with its event.
#[utoipa::path(get, path = "/{name}/versions/{version}/evaluation", tag = "evaluations",
    params(crate::gates::ModelVersionPath),
    responses((status = 200, description = "The newest evaluation", body = EvaluationRead)))]
async fn get_latest(
    State(state): State<AppState>,
    Path(crate::gates::ModelVersionPath { name, version }): Path<crate::gates::ModelVersionPath>,
) -> ApiResult<Json<EvaluationRead>> {
    let hint = format!("mltrail evaluate {name}/{version} --data DATASET@V --label COL");
    let (evaluation, digest, entity, event) = newest(
        &state,
        Assessment::Evaluation,
        "evaluation",
        &name,
        &version,
        &hint,
    )
    .await?;
    Ok(Json(EvaluationRead {
        evaluation,
        digest,
        entity,
        event,
    }))
}

/// A robustness report as `mltrail robustness` makes it, kept whole as sent; the handler
/// checks the fields below on the document itself.
#[derive(ToSchema)]
#[allow(dead_code)] // The schema of the document `record_robustness` keeps.
struct RobustnessIn {
    /// `mltrail.robustness/1`.
    format: String,
    model: String,
    version: String,
    dataset: String,
    label: String,
    epsilon: f64,
    clean_accuracy: f64,
    robust_accuracy: f64,
    attack_success_rate: f64,
}

#[derive(Serialize, ToSchema)]
struct RobustnessKept {
    digest: String,
    artifact: String,
}

/// `POST`: the body is the robustness report (`mltrail robustness` makes it), kept under its
/// digest and recorded as an audit event, as evaluations are.
#[utoipa::path(post, path = "/{name}/versions/{version}/robustness", tag = "evaluations",
    params(crate::gates::ModelVersionPath), request_body = RobustnessIn,
    responses((status = 200, description = "The report, kept and in the trail", body = RobustnessKept)))]
async fn record_robustness(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(crate::gates::ModelVersionPath { name, version }): Path<crate::gates::ModelVersionPath>,
    crate::req::Body(body): crate::req::Body<Value>,
) -> ApiResult<Json<RobustnessKept>> {
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
    Ok(Json(RobustnessKept { digest, artifact }))
}

/// `GET`: the newest robustness report with its event.
#[utoipa::path(get, path = "/{name}/versions/{version}/robustness", tag = "evaluations",
    params(crate::gates::ModelVersionPath),
    responses((status = 200, description = "The newest robustness report", body = RobustnessRead)))]
async fn get_robustness(
    State(state): State<AppState>,
    Path(crate::gates::ModelVersionPath { name, version }): Path<crate::gates::ModelVersionPath>,
) -> ApiResult<Json<RobustnessRead>> {
    let hint =
        format!("mltrail robustness {name}/{version} --data DATASET@V --label COL --epsilon E");
    let (robustness, digest, entity, event) = newest(
        &state,
        Assessment::Robustness,
        "robustness",
        &name,
        &version,
        &hint,
    )
    .await?;
    Ok(Json(RobustnessRead {
        robustness,
        digest,
        entity,
        event,
    }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_latest, record))
        .routes(routes!(get_robustness, record_robustness))
}
