//! The artifact proxy (`/mlflow-artifacts/artifacts/…`): upload, download, list, delete.
//! Paths are parsed into `ArtifactPath` before anything touches storage; writes and deletes go
//! through the store, which records each with the content's BLAKE3 digest.

use crate::error::{ApiError, ApiResult};
use crate::req::Req;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mltrail_core::ArtifactPath;
use serde_json::{json, Value};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(list))
        .route("/artifacts/", get(list))
        .route(
            "/artifacts/{*path}",
            get(download).put(upload).delete(remove),
        )
}

fn parse(raw: &str) -> ApiResult<ArtifactPath> {
    Ok(ArtifactPath::parse(raw)?)
}

/// Lists a folder named by the query string alone (as MLflow reads a GET), so the access checks,
/// which read the same query, judge the folder that is listed.
async fn list(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> ApiResult<Json<Value>> {
    let req = Req::from_parts(String::new(), query.as_deref(), b"")?;
    let dir = parse(&req.opt_str("path")?.unwrap_or_default())?;
    let files = state.artifacts.list(&dir).await?;
    if files.is_empty() {
        return Ok(Json(json!({})));
    }
    let files: Vec<Value> = files
        .into_iter()
        .map(|f| match f.file_size {
            Some(size) => json!({"path": f.path, "is_dir": false, "file_size": size}),
            None => json!({"path": f.path, "is_dir": true}),
        })
        .collect();
    Ok(Json(json!({"files": files})))
}

async fn download(State(state): State<AppState>, Path(raw): Path<String>) -> ApiResult<Response> {
    let path = parse(&raw)?;
    let (size, stream) = state.artifacts.get_stream(&path).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "application/octet-stream"
            .parse()
            .map_err(|_| ApiError::invalid("bad header"))?,
    );
    headers.insert(header::CONTENT_LENGTH, size.into());
    Ok((headers, Body::from_stream(stream)).into_response())
}

async fn upload(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    crate::req::Actor(actor): crate::req::Actor,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let path = parse(&raw)?;
    // A body over --max-artifact-bytes answers 413 in MLflow's error shape, not axum's text.
    let body = body.map_err(|e| {
        let rejected = ApiError::body_rejected(e, "INVALID_PARAMETER_VALUE");
        ApiError {
            message: format!("artifact upload {raw}: {}", rejected.message),
            ..rejected
        }
    })?;
    if path.is_root() {
        return Err(ApiError::invalid("An artifact upload must name a file"));
    }
    mltrail_store::artifacts::put(&state.store, &state.artifacts, &actor, &path, body).await?;
    Ok(Json(json!({})))
}

async fn remove(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    req: Req,
) -> ApiResult<Json<Value>> {
    let path = parse(&raw)?;
    if path.is_root() {
        return Err(ApiError::invalid(
            "Refusing to delete the whole artifact store",
        ));
    }
    mltrail_store::artifacts::delete(&state.store, &state.artifacts, &req.actor, &path).await?;
    Ok(Json(json!({})))
}
