//! `/logged-models/*` (MLflow 3): what `mlflow.<flavor>.log_model` creates.

use crate::error::{ApiError, ApiResult};
use crate::req::{key_values, page_body, parse_experiment_id, EmptyList, Req};
use crate::AppState;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use mltrail_core::state::LoggedModelStatus;
use mltrail_core::LoggedModelId;
use mltrail_store::logged_models::{self, ModelOrder, NewLoggedModel};
use serde_json::{json, Value};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/logged-models", post(create))
        .route("/logged-models/search", post(search))
        .route(
            "/logged-models/{model_id}",
            get(get_one).patch(finalize).delete(delete_one),
        )
        .route(
            "/logged-models/{model_id}/tags",
            axum::routing::patch(set_tags),
        )
        .route("/logged-models/{model_id}/tags/{key}", delete(delete_tag))
        .route("/logged-models/{model_id}/params", post(log_params))
}

type JsonResult = ApiResult<Json<Value>>;

fn model_id(raw: &str) -> ApiResult<LoggedModelId> {
    Ok(logged_models::parse_id(raw)?)
}

async fn create(State(state): State<AppState>, req: Req) -> JsonResult {
    let new = NewLoggedModel {
        experiment_id: req.experiment_id()?,
        name: req.opt_str("name")?.unwrap_or_default(),
        source_run_id: req.opt_str("source_run_id")?.filter(|s| !s.is_empty()),
        model_type: req.opt_str("model_type")?.filter(|s| !s.is_empty()),
        params: key_values(req.value("params"), "params")?,
        tags: key_values(req.value("tags"), "tags")?,
    };
    let model = logged_models::create_logged_model(&state.store, &req.actor, new).await?;
    Ok(Json(json!({"model": model})))
}

async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> JsonResult {
    Ok(Json(
        json!({"model": logged_models::get_logged_model(&state.store, &model_id(&id)?).await?}),
    ))
}

async fn finalize(State(state): State<AppState>, Path(id): Path<String>, req: Req) -> JsonResult {
    let raw = req.str("status")?;
    let status = LoggedModelStatus::parse(&raw)
        .ok_or_else(|| ApiError::invalid(format!("Invalid logged model status '{raw}'")))?;
    let model =
        logged_models::finalize_logged_model(&state.store, &req.actor, model_id(&id)?, status)
            .await?;
    Ok(Json(json!({"model": model})))
}

async fn delete_one(State(state): State<AppState>, Path(id): Path<String>, req: Req) -> JsonResult {
    logged_models::delete_logged_model(&state.store, &req.actor, model_id(&id)?).await?;
    Ok(Json(json!({})))
}

async fn set_tags(State(state): State<AppState>, Path(id): Path<String>, req: Req) -> JsonResult {
    logged_models::set_logged_model_tags(
        &state.store,
        &req.actor,
        model_id(&id)?,
        key_values(req.value("tags"), "tags")?,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn delete_tag(
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    req: Req,
) -> JsonResult {
    logged_models::delete_logged_model_tag(&state.store, &req.actor, model_id(&id)?, key).await?;
    Ok(Json(json!({})))
}

async fn log_params(State(state): State<AppState>, Path(id): Path<String>, req: Req) -> JsonResult {
    logged_models::log_logged_model_params(
        &state.store,
        &req.actor,
        model_id(&id)?,
        key_values(req.value("params"), "params")?,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn search(
    State(state): State<AppState>,
    seen: crate::permissions::Seen,
    req: Req,
) -> JsonResult {
    let ids = req
        .str_list("experiment_ids")
        .iter()
        .map(|s| parse_experiment_id(s))
        .collect::<ApiResult<Vec<_>>>()?;
    let max = req.max_results(100, 1000)?;
    let mut order = Vec::new();
    if let Some(Value::Array(items)) = req.value("order_by") {
        for item in items {
            let field_name = item
                .get("field_name")
                .and_then(|f| f.as_str())
                .ok_or_else(|| ApiError::missing("order_by.field_name"))?;
            order.push(ModelOrder {
                field_name: field_name.to_string(),
                ascending: item
                    .get("ascending")
                    .and_then(|a| a.as_bool())
                    .unwrap_or(true),
            });
        }
    }
    let page = logged_models::search_logged_models(
        &state.store,
        &ids,
        &req.opt_str("filter")?.unwrap_or_default(),
        max,
        &order,
        req.page()?,
        &seen.0.experiments,
    )
    .await?;
    Ok(Json(page_body("models", page, EmptyList::Omitted)))
}
