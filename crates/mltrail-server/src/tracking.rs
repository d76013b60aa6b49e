//! `/experiments/*`, `/runs/*` and `/metrics/*`.

use crate::error::{ApiError, ApiResult};
use crate::metric_body::{self, MetricBody};
use crate::permissions::Seen;
use crate::req::{
    as_f64, as_i64, key_values, page_body, parse_experiment_id, EmptyList, RawReq, Req,
};
use crate::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use mltrail_core::state::{LifecycleStage, RunStatus, ViewType};
use mltrail_core::{ExperimentId, ResourceType};
use mltrail_store::experiments;
use mltrail_store::metrics::{self, Batch, NewMetric};
use mltrail_store::runs::{self, parse_run_id, NewDatasetInput, NewRun};
use mltrail_store::ModelIo;
use serde_json::{json, Value};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/experiments/create", post(create_experiment))
        .route("/experiments/get", get(get_experiment))
        .route("/experiments/get-by-name", get(get_experiment_by_name))
        .route(
            "/experiments/search",
            post(search_experiments).get(search_experiments),
        )
        .route("/experiments/list", get(search_experiments))
        .route("/experiments/update", post(update_experiment))
        .route("/experiments/delete", post(delete_experiment))
        .route("/experiments/restore", post(restore_experiment))
        .route("/experiments/set-experiment-tag", post(set_experiment_tag))
        .route(
            "/experiments/delete-experiment-tag",
            post(delete_experiment_tag),
        )
        .route("/runs/create", post(create_run))
        .route("/runs/get", get(get_run))
        .route("/runs/update", post(update_run))
        .route("/runs/delete", post(delete_run))
        .route("/runs/restore", post(restore_run))
        .route("/runs/search", post(search_runs).get(search_runs))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/delete-tag", post(delete_tag))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/log-inputs", post(log_inputs))
        .route("/runs/outputs", post(log_outputs))
        .route("/metrics/get-history", get(metric_history))
}

type JsonResult = ApiResult<Json<Value>>;

fn view_type(req: &Req, key: &str) -> ApiResult<ViewType> {
    match req.opt_str(key)? {
        None => Ok(ViewType::ActiveOnly),
        Some(raw) => ViewType::parse(&raw).ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid value '{raw}' for parameter '{key}': use ACTIVE_ONLY, DELETED_ONLY or ALL"
            ))
        }),
    }
}

/// Experiments may only keep artifacts inside our store; a foreign location would let a client
/// make the server read or write elsewhere.
fn checked_artifact_location(state: &AppState, req: &Req) -> ApiResult<Option<String>> {
    match req.opt_str("artifact_location")?.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(loc) => {
            mltrail_core::artifact_path::validate_model_source(&loc, state.artifacts.uri())
                .map_err(|_| ApiError::invalid(format!("artifact_location '{loc}' must be under mlflow-artifacts:/ or the server's artifact destination")))?;
            if loc.starts_with("runs:/") || loc.starts_with("models:/") {
                return Err(ApiError::invalid(format!(
                    "artifact_location '{loc}' must be a storage location"
                )));
            }
            Ok(Some(loc))
        }
    }
}

async fn create_experiment(State(state): State<AppState>, req: Req) -> JsonResult {
    let name = req.str("name")?;
    let location = checked_artifact_location(&state, &req)?;
    let tags = key_values(req.value("tags"), "tags")?;
    let id = experiments::create_experiment(&state.store, &req.actor, name, location, tags).await?;
    let id = id.to_string();
    crate::grants::creator_manages(&state, &req.actor, ResourceType::Experiment, &id).await;
    Ok(Json(json!({"experiment_id": id})))
}

async fn get_experiment(State(state): State<AppState>, req: Req) -> JsonResult {
    let experiment = experiments::get_experiment(&state.store, req.experiment_id()?).await?;
    Ok(Json(json!({"experiment": experiment})))
}

async fn get_experiment_by_name(State(state): State<AppState>, req: Req) -> JsonResult {
    let experiment =
        experiments::get_experiment_by_name(&state.store, &req.str("experiment_name")?).await?;
    Ok(Json(json!({"experiment": experiment})))
}

async fn search_experiments(State(state): State<AppState>, seen: Seen, req: Req) -> JsonResult {
    let view = view_type(&req, "view_type")?;
    let max = req.max_results(1000, 50000)?;
    let filter = req.opt_str("filter")?.unwrap_or_default();
    let page = experiments::search_experiments(
        &state.store,
        view,
        &filter,
        &req.str_list("order_by"),
        max,
        req.page()?,
        &seen.0.experiments,
    )
    .await?;
    Ok(Json(page_body("experiments", page, EmptyList::Written)))
}

async fn update_experiment(State(state): State<AppState>, req: Req) -> JsonResult {
    let id = req.experiment_id()?;
    if let Some(name) = req.opt_str("new_name")? {
        experiments::rename_experiment(&state.store, &req.actor, id, name).await?;
    }
    Ok(Json(json!({})))
}

async fn delete_experiment(State(state): State<AppState>, req: Req) -> JsonResult {
    experiments::set_experiment_stage(
        &state.store,
        &req.actor,
        req.experiment_id()?,
        LifecycleStage::Deleted,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn restore_experiment(State(state): State<AppState>, req: Req) -> JsonResult {
    experiments::set_experiment_stage(
        &state.store,
        &req.actor,
        req.experiment_id()?,
        LifecycleStage::Active,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn set_experiment_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    let tag = mltrail_store::KeyValue {
        key: req.str("key")?,
        value: req.opt_str("value")?.unwrap_or_default(),
    };
    experiments::set_experiment_tag(&state.store, &req.actor, req.experiment_id()?, tag).await?;
    Ok(Json(json!({})))
}

async fn delete_experiment_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    experiments::delete_experiment_tag(
        &state.store,
        &req.actor,
        req.experiment_id()?,
        req.str("key")?,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn create_run(State(state): State<AppState>, req: Req) -> JsonResult {
    let experiment_id = match req.opt_str("experiment_id")?.filter(|s| !s.is_empty()) {
        Some(raw) => parse_experiment_id(&raw)?,
        None => ExperimentId(0),
    };
    let new = NewRun {
        experiment_id,
        user_id: req.opt_str("user_id")?.unwrap_or_else(|| req.actor.clone()),
        run_name: req.opt_str("run_name")?,
        start_time: req.opt_i64("start_time")?,
        tags: key_values(req.value("tags"), "tags")?,
    };
    let run = runs::create_run(&state.store, &req.actor, new).await?;
    Ok(Json(json!({"run": run})))
}

async fn get_run(State(state): State<AppState>, req: Req) -> JsonResult {
    let run = runs::get_run(&state.store, &parse_run_id(&req.run_id()?)?).await?;
    Ok(Json(json!({"run": run})))
}

async fn update_run(State(state): State<AppState>, req: Req) -> JsonResult {
    let status = match req.opt_str("status")? {
        None => None,
        Some(raw) => Some(
            RunStatus::parse(&raw)
                .ok_or_else(|| ApiError::invalid(format!("Invalid run status '{raw}'")))?,
        ),
    };
    let run_id = req.run_id()?;
    let end_time = req.opt_i64("end_time")?;
    let run_name = req.opt_str("run_name")?;
    let info = runs::update_run(
        &state.store,
        &req.actor,
        parse_run_id(&run_id)?,
        status,
        end_time,
        run_name,
    )
    .await?;
    Ok(Json(json!({"run_info": info})))
}

async fn delete_run(State(state): State<AppState>, req: Req) -> JsonResult {
    runs::set_run_stage(
        &state.store,
        &req.actor,
        parse_run_id(&req.run_id()?)?,
        LifecycleStage::Deleted,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn restore_run(State(state): State<AppState>, req: Req) -> JsonResult {
    runs::set_run_stage(
        &state.store,
        &req.actor,
        parse_run_id(&req.run_id()?)?,
        LifecycleStage::Active,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn search_runs(State(state): State<AppState>, seen: Seen, req: Req) -> JsonResult {
    let ids = req
        .str_list("experiment_ids")
        .iter()
        .map(|s| parse_experiment_id(s))
        .collect::<ApiResult<Vec<_>>>()?;
    if ids.is_empty() {
        return Err(ApiError::missing("experiment_ids"));
    }
    // As MLflow: experiments the caller may not read are dropped from the request, silently.
    let ids: Vec<ExperimentId> = ids
        .into_iter()
        .filter(|id| seen.0.experiments.allows(&id.0))
        .collect();
    if ids.is_empty() {
        return Ok(Json(json!({})));
    }
    let view = view_type(&req, "run_view_type")?;
    let max = req.max_results(1000, 50000)?;
    let filter = req.opt_str("filter")?.unwrap_or_default();
    let page = runs::search_runs(
        &state.store,
        &ids,
        &filter,
        view,
        max,
        &req.str_list("order_by"),
        req.page()?,
    )
    .await?;
    Ok(Json(page_body("runs", page, EmptyList::Omitted)))
}

/// One metric from a JSON object (`log-metric`'s body, or an element of `log-batch`'s list).
pub(crate) fn metric_from(
    fields: &serde_json::Map<String, Value>,
    field: &str,
) -> ApiResult<NewMetric> {
    let get = |k: &str| fields.get(k).filter(|v| !v.is_null());
    let int = |k: &str| {
        get(k)
            .map(|v| {
                as_i64(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Parameter '{field}.{k}' must be an integer, got {v}"
                    ))
                })
            })
            .transpose()
    };
    let key = get("key")
        .and_then(|k| k.as_str())
        .ok_or_else(|| ApiError::missing(&format!("{field}.key")))?;
    let value = get("value").ok_or_else(|| ApiError::missing(&format!("{field}.value")))?;
    let value = as_f64(value).ok_or_else(|| {
        ApiError::invalid(format!(
            "Parameter '{field}.value' must be a number, got {value}"
        ))
    })?;
    Ok(NewMetric {
        key: key.to_string(),
        value,
        timestamp: int("timestamp")?
            .ok_or_else(|| ApiError::missing(&format!("{field}.timestamp")))?,
        step: int("step")?.unwrap_or(0),
        model_id: get("model_id").and_then(|m| m.as_str()).map(str::to_string),
    })
}

/// The logged models metrics link to (each needs UPDATE on its experiment, as the run does).
fn linked(metrics: &[NewMetric]) -> impl Iterator<Item = &str> {
    metrics.iter().filter_map(|m| m.model_id.as_deref())
}

async fn log_metric(State(state): State<AppState>, raw: RawReq) -> JsonResult {
    let request = match metric_body::log_metric(raw.query.as_deref(), &raw.body) {
        Some(request) => request,
        None => {
            let req = raw.fields()?;
            MetricBody {
                run_id: req.run_id()?,
                metrics: vec![metric_from(req.fields(), "metric")?],
            }
        }
    };
    raw.authorize_run(&state, &request.run_id, linked(&request.metrics))
        .await?;
    log(
        &state,
        &raw.actor,
        &request.run_id,
        request.metrics,
        vec![],
        vec![],
    )
    .await
}

/// Logs a batch to the run a request names. The batch is checked before the run id is parsed,
/// and an empty batch names no run that must exist: what MLflow answers, in its order.
async fn log(
    state: &AppState,
    actor: &str,
    run_id: &str,
    metrics: Vec<NewMetric>,
    params: Vec<mltrail_store::KeyValue>,
    tags: Vec<mltrail_store::KeyValue>,
) -> JsonResult {
    if let Some(batch) = Batch::new(metrics, params, tags)? {
        metrics::log_batch(&state.store, actor, parse_run_id(run_id)?, batch).await?;
    }
    Ok(Json(json!({})))
}

async fn log_param(State(state): State<AppState>, req: Req) -> JsonResult {
    let param = mltrail_store::KeyValue {
        key: req.str("key")?,
        value: req
            .opt_str("value")?
            .ok_or_else(|| ApiError::missing("value"))?,
    };
    log(
        &state,
        &req.actor,
        &req.run_id()?,
        vec![],
        vec![param],
        vec![],
    )
    .await
}

async fn set_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    let tag = mltrail_store::KeyValue {
        key: req.str("key")?,
        value: req.opt_str("value")?.unwrap_or_default(),
    };
    log(
        &state,
        &req.actor,
        &req.run_id()?,
        vec![],
        vec![],
        vec![tag],
    )
    .await
}

async fn delete_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    let run_id = req.run_id()?;
    let key = req.str("key")?;
    runs::delete_tag(&state.store, &req.actor, parse_run_id(&run_id)?, key).await?;
    Ok(Json(json!({})))
}

/// The `metrics` list of a `log-batch` body; errors name the element.
pub(crate) fn metrics_from(value: Option<&Value>) -> ApiResult<Vec<NewMetric>> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let field = format!("metrics[{i}]");
                m.as_object()
                    .ok_or_else(|| ApiError::invalid(format!("{field} must be an object")))
                    .and_then(|m| metric_from(m, &field))
            })
            .collect(),
        Some(_) => Err(ApiError::invalid("Parameter 'metrics' must be a list")),
    }
}

async fn log_batch(State(state): State<AppState>, raw: RawReq) -> JsonResult {
    let (run_id, metrics, params, tags) =
        match metric_body::log_batch(raw.query.as_deref(), &raw.body) {
            Some(request) => (request.run_id, request.metrics, vec![], vec![]),
            None => {
                let req = raw.fields()?;
                (
                    req.run_id()?,
                    metrics_from(req.value("metrics"))?,
                    key_values(req.value("params"), "params")?,
                    key_values(req.value("tags"), "tags")?,
                )
            }
        };
    raw.authorize_run(&state, &run_id, linked(&metrics)).await?;
    log(&state, &raw.actor, &run_id, metrics, params, tags).await
}

async fn log_inputs(State(state): State<AppState>, req: Req) -> JsonResult {
    let mut datasets = Vec::new();
    if let Some(items) = req.value("datasets").and_then(|d| d.as_array()) {
        for (i, item) in items.iter().enumerate() {
            let dataset = item
                .get("dataset")
                .cloned()
                .ok_or_else(|| ApiError::missing(&format!("datasets[{i}].dataset")))?;
            let field = |k: &str| {
                dataset
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::missing(&format!("datasets[{i}].dataset.{k}")))
            };
            datasets.push(NewDatasetInput {
                name: field("name")?,
                digest: field("digest")?,
                tags: key_values(item.get("tags"), "tags")?,
                dataset,
            });
        }
    }
    runs::log_inputs(
        &state.store,
        &req.actor,
        parse_run_id(&req.run_id()?)?,
        datasets,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn log_outputs(State(state): State<AppState>, req: Req) -> JsonResult {
    let mut models = Vec::new();
    if let Some(items) = req.value("models").and_then(|d| d.as_array()) {
        for (i, item) in items.iter().enumerate() {
            let model_id = item
                .get("model_id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| ApiError::missing(&format!("models[{i}].model_id")))?;
            let step = match item.get("step").filter(|v| !v.is_null()) {
                None => 0,
                Some(v) => as_i64(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Parameter 'models[{i}].step' must be an integer, got {v}"
                    ))
                })?,
            };
            models.push(ModelIo {
                model_id: model_id.to_string(),
                step,
            });
        }
    }
    runs::log_outputs(
        &state.store,
        &req.actor,
        parse_run_id(&req.run_id()?)?,
        models,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn metric_history(State(state): State<AppState>, req: Req) -> JsonResult {
    let max = req.opt_i64("max_results")?.unwrap_or(25000).clamp(1, 25000);
    let run_id = req.run_id()?;
    let key = req.str("metric_key")?;
    // The page token is checked before the run id, as the store checked it before the run.
    let page = req.page()?;
    let page =
        metrics::metric_history(&state.store, &parse_run_id(&run_id)?, &key, max, page).await?;
    Ok(Json(page_body("metrics", page, EmptyList::Written)))
}
