//! `/api/v1/datasets`: register, list and read dataset versions. The file itself is uploaded
//! through the artifact proxy first; this records what it is.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use mltrail_store::datasets::{self, DatasetFile, NewDatasetVersion, VersionRef};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("`{name}` (a string) is required")))
}

async fn add(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    // The store refuses a source outside the dataset's folder (`datasets::file_path`).
    let source = field(&body, "source")?.to_string();
    let new = NewDatasetVersion {
        name: field(&body, "name")?.to_string(),
        file: DatasetFile {
            digest: field(&body, "digest")?.to_string(),
            source,
            file_name: field(&body, "file_name")?.to_string(),
            rows: body
                .get("rows")
                .and_then(Value::as_i64)
                .filter(|r| *r > 0)
                .ok_or_else(|| ApiError::invalid("`rows` must be a positive integer"))?,
            target: body
                .get("target")
                .and_then(Value::as_str)
                .map(str::to_string),
            schema: body
                .get("schema")
                .filter(|s| s.is_array())
                .cloned()
                .ok_or_else(|| ApiError::invalid("`schema` must be a list of columns"))?,
            profile: body
                .get("profile")
                .filter(|p| p.is_object())
                .cloned()
                .ok_or_else(|| ApiError::invalid("`profile` must be an object"))?,
        },
    };
    let (version, created) = datasets::add_version(&state.store, &actor, new).await?;
    Ok(Json(
        json!({"dataset_version": version, "created": created}),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    name: Option<String>,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let versions = datasets::list_versions(&state.store, q.name.as_deref()).await?;
    // Listing leaves out the profiles; `get` has them.
    let slim: Vec<Value> = versions
        .into_iter()
        .map(|v| json!({"name": v.name, "version": v.version, "digest": v.file.digest, "rows": v.file.rows, "file_name": v.file.file_name, "target": v.file.target, "created_time": v.created_time, "created_by": v.created_by}))
        .collect();
    Ok(Json(json!({"dataset_versions": slim})))
}

async fn get_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let version = match version.as_str() {
        "latest" => None,
        v => Some(v.parse::<i64>().map_err(|_| {
            ApiError::invalid(format!("version `{v}` is not a number or `latest`"))
        })?),
    };
    let v = match version {
        None => datasets::latest_version(&state.store, &name).await?,
        Some(version) => datasets::get_version(&state.store, &VersionRef { name, version }).await?,
    };
    let runs = datasets::runs_using(&state.store, &v).await?;
    Ok(Json(
        json!({"dataset_version": v, "rows_stored": v.file.has_rows(), "runs": runs}),
    ))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list).post(add))
        .route("/{name}/versions/{version}", get(get_version))
}
