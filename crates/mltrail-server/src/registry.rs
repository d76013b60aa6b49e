//! `/registered-models/*` and `/model-versions/*`.

use crate::error::{ApiError, ApiResult};
use crate::permissions::Seen;
use crate::req::{key_values, page_body, EmptyList, Req};
use crate::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use mltrail_core::state::ModelStage;
use mltrail_core::{ModelVersionNumber, ResourceType, RunId};
use mltrail_store::registry::{self, parse_version, NewModelVersion};
use serde_json::{json, Value};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/registered-models/create", post(create_model))
        .route("/registered-models/get", get(get_model))
        .route("/registered-models/rename", post(rename_model))
        .route(
            "/registered-models/update",
            axum::routing::patch(update_model),
        )
        .route(
            "/registered-models/delete",
            axum::routing::delete(delete_model),
        )
        .route(
            "/registered-models/search",
            get(search_models).post(search_models),
        )
        .route(
            "/registered-models/get-latest-versions",
            post(latest_versions).get(latest_versions),
        )
        .route("/registered-models/set-tag", post(set_model_tag))
        .route(
            "/registered-models/delete-tag",
            axum::routing::delete(delete_model_tag),
        )
        .route(
            "/registered-models/alias",
            post(set_alias).delete(delete_alias).get(get_by_alias),
        )
        .route("/model-versions/create", post(create_version))
        .route("/model-versions/get", get(get_version))
        .route(
            "/model-versions/update",
            axum::routing::patch(update_version),
        )
        .route(
            "/model-versions/delete",
            axum::routing::delete(delete_version),
        )
        .route(
            "/model-versions/search",
            get(search_versions).post(search_versions),
        )
        .route("/model-versions/transition-stage", post(transition_stage))
        .route("/model-versions/get-download-uri", get(download_uri))
        .route("/model-versions/set-tag", post(set_version_tag))
        .route(
            "/model-versions/delete-tag",
            axum::routing::delete(delete_version_tag),
        )
}

type JsonResult = ApiResult<Json<Value>>;

fn version(req: &Req) -> ApiResult<ModelVersionNumber> {
    Ok(parse_version(&req.str("version")?)?)
}

async fn create_model(State(state): State<AppState>, req: Req) -> JsonResult {
    let model = registry::create_registered_model(
        &state.store,
        &req.actor,
        req.str("name")?,
        req.opt_str("description")?.unwrap_or_default(),
        key_values(req.value("tags"), "tags")?,
    )
    .await?;
    crate::grants::creator_manages(
        &state,
        &req.actor,
        ResourceType::RegisteredModel,
        &model.name,
    )
    .await;
    Ok(Json(json!({"registered_model": model})))
}

async fn get_model(State(state): State<AppState>, req: Req) -> JsonResult {
    Ok(Json(
        json!({"registered_model": registry::get_registered_model(&state.store, &req.str("name")?).await?}),
    ))
}

async fn rename_model(State(state): State<AppState>, req: Req) -> JsonResult {
    // Grants follow the model to its new name (in the rename's transaction), as in MLflow.
    let model = registry::rename_registered_model(
        &state.store,
        &req.actor,
        req.str("name")?,
        req.str("new_name")?,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({"registered_model": model})))
}

async fn update_model(State(state): State<AppState>, req: Req) -> JsonResult {
    let model = registry::update_registered_model(
        &state.store,
        &req.actor,
        req.str("name")?,
        req.opt_str("description")?.unwrap_or_default(),
    )
    .await?;
    Ok(Json(json!({"registered_model": model})))
}

async fn delete_model(State(state): State<AppState>, req: Req) -> JsonResult {
    // The model's grants go with it: its name may be taken again by someone else.
    registry::delete_registered_model(&state.store, &req.actor, req.str("name")?).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn search_models(State(state): State<AppState>, seen: Seen, req: Req) -> JsonResult {
    let max = req.max_results(100, 1000)?;
    let page = registry::search_registered_models(
        &state.store,
        &req.opt_str("filter")?.unwrap_or_default(),
        max,
        &req.str_list("order_by"),
        req.page()?,
        &seen.0.registered_models,
    )
    .await?;
    Ok(Json(page_body(
        "registered_models",
        page,
        EmptyList::Written,
    )))
}

async fn latest_versions(State(state): State<AppState>, req: Req) -> JsonResult {
    let name = req.str("name")?;
    // No stages: every stage; stages no version can be in match none.
    let stages = req.str_list("stages");
    let stages: Option<Vec<ModelStage>> =
        (!stages.is_empty()).then(|| stages.iter().filter_map(|s| ModelStage::parse(s)).collect());
    let versions = registry::get_latest_versions(&state.store, &name, stages.as_deref()).await?;
    Ok(Json(json!({"model_versions": versions})))
}

async fn set_model_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    let tag = mltrail_store::KeyValue {
        key: req.str("key")?,
        value: req.opt_str("value")?.unwrap_or_default(),
    };
    registry::set_registered_model_tag(&state.store, &req.actor, req.str("name")?, tag).await?;
    Ok(Json(json!({})))
}

async fn delete_model_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    registry::delete_registered_model_tag(
        &state.store,
        &req.actor,
        req.str("name")?,
        req.str("key")?,
    )
    .await?;
    Ok(Json(json!({})))
}

/// The caller the guard identified (auth on), for gates: an override is an admin's.
type Who = Option<axum::Extension<std::sync::Arc<crate::auth::Caller>>>;

/// A move of a protected alias is checked against its release gate (`gates.rs`); MLflow's
/// client sees a refusal as an `MlflowException` listing each failed requirement.
async fn set_alias(State(state): State<AppState>, caller: Who, req: Req) -> JsonResult {
    let (name, alias, number) = (req.str("name")?, req.str("alias")?, version(&req)?);
    let caller = caller.as_ref().map(|axum::Extension(c)| c.as_ref());
    let pass = crate::gates::pass_for(
        &state,
        caller,
        &req.actor,
        crate::gates::Move {
            name: &name,
            alias: &alias,
            stage: None,
            version: number.0,
        },
        None,
    )
    .await?;
    registry::set_alias(&state.store, &req.actor, name, alias, number, pass).await?;
    Ok(Json(json!({})))
}

async fn delete_alias(State(state): State<AppState>, req: Req) -> JsonResult {
    registry::delete_alias(
        &state.store,
        &req.actor,
        req.str("name")?,
        req.str("alias")?,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn get_by_alias(State(state): State<AppState>, req: Req) -> JsonResult {
    let mv =
        registry::get_version_by_alias(&state.store, &req.str("name")?, &req.str("alias")?).await?;
    Ok(Json(json!({"model_version": mv})))
}

async fn create_version(State(state): State<AppState>, req: Req) -> JsonResult {
    let source = req.str("source")?;
    mltrail_core::artifact_path::validate_model_source(&source, state.artifacts.uri())?;
    let name = req.str("name")?;
    let run_id = req.opt_str("run_id")?.unwrap_or_default();
    let run_link = req.opt_str("run_link")?.unwrap_or_default();
    let description = req.opt_str("description")?.unwrap_or_default();
    let model_id = req.opt_str("model_id")?.unwrap_or_default();
    let tags = key_values(req.value("tags"), "tags")?;
    let run_id = match run_id.as_str() {
        "" => None,
        raw => Some(
            RunId::parse(raw)
                .ok_or_else(|| ApiError::invalid(format!("Invalid run_id '{raw}'")))?,
        ),
    };
    let new = NewModelVersion {
        name,
        source,
        run_id,
        run_link,
        description,
        model_id,
        tags,
    };
    let mv = registry::create_model_version(&state.store, &req.actor, new).await?;
    Ok(Json(json!({"model_version": mv})))
}

async fn get_version(State(state): State<AppState>, req: Req) -> JsonResult {
    Ok(Json(
        json!({"model_version": registry::get_model_version(&state.store, &req.str("name")?, version(&req)?).await?}),
    ))
}

async fn update_version(State(state): State<AppState>, req: Req) -> JsonResult {
    let mv = registry::update_model_version(
        &state.store,
        &req.actor,
        req.str("name")?,
        version(&req)?,
        req.opt_str("description")?.unwrap_or_default(),
    )
    .await?;
    Ok(Json(json!({"model_version": mv})))
}

async fn delete_version(State(state): State<AppState>, req: Req) -> JsonResult {
    registry::delete_model_version(&state.store, &req.actor, req.str("name")?, version(&req)?)
        .await?;
    Ok(Json(json!({})))
}

async fn search_versions(State(state): State<AppState>, seen: Seen, req: Req) -> JsonResult {
    let max = req.max_results(10000, 200000)?;
    let page = registry::search_model_versions(
        &state.store,
        &req.opt_str("filter")?.unwrap_or_default(),
        max,
        &req.str_list("order_by"),
        req.page()?,
        &seen.0.registered_models,
    )
    .await?;
    Ok(Json(page_body("model_versions", page, EmptyList::Written)))
}

async fn transition_stage(State(state): State<AppState>, caller: Who, req: Req) -> JsonResult {
    let raw = req.str("stage")?;
    let stage = ModelStage::parse(&raw).ok_or_else(|| ApiError::invalid(format!("Invalid Model Version stage: {raw}. Value must be one of None, Staging, Production, Archived.")))?;
    let archive = req.opt_bool("archive_existing_versions")?.unwrap_or(false);
    let (name, number) = (req.str("name")?, version(&req)?);
    // Into Production (Staging) only through the gate of alias `production` (`staging`).
    let pass = match registry::gate_alias_of_stage(stage) {
        Some(alias) => {
            let caller = caller.as_ref().map(|axum::Extension(c)| c.as_ref());
            crate::gates::pass_for(
                &state,
                caller,
                &req.actor,
                crate::gates::Move {
                    name: &name,
                    alias,
                    stage: Some(stage),
                    version: number.0,
                },
                None,
            )
            .await?
        }
        None => None,
    };
    let mv =
        registry::transition_stage(&state.store, &req.actor, name, number, stage, archive, pass)
            .await?;
    Ok(Json(json!({"model_version": mv})))
}

async fn download_uri(State(state): State<AppState>, req: Req) -> JsonResult {
    let uri = registry::download_uri(&state.store, &req.str("name")?, version(&req)?).await?;
    Ok(Json(json!({"artifact_uri": uri})))
}

async fn set_version_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    let tag = mltrail_store::KeyValue {
        key: req.str("key")?,
        value: req.opt_str("value")?.unwrap_or_default(),
    };
    registry::set_model_version_tag(
        &state.store,
        &req.actor,
        req.str("name")?,
        version(&req)?,
        tag,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn delete_version_tag(State(state): State<AppState>, req: Req) -> JsonResult {
    registry::delete_model_version_tag(
        &state.store,
        &req.actor,
        req.str("name")?,
        version(&req)?,
        req.str("key")?,
    )
    .await?;
    Ok(Json(json!({})))
}
