//! The artifact proxy (`/mlflow-artifacts/artifacts/…`): upload, download, list, delete.
//! Paths are parsed into `ArtifactPath` before anything touches storage; writes and deletes go
//! through the store, which records each with the content's BLAKE3 digest.

use crate::error::{ApiError, ApiResult};
use crate::req::Req;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mltrail_artifacts::{ArtifactError, ByteSpan};
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

/// A file's bytes, whole or (with `Range: bytes=…`, one range) in part: readers of Parquet fetch
/// a footer and then only the row groups they need.
async fn download(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    let path = parse(&raw)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let wanted = match request_headers.get(header::RANGE) {
        Some(value) => byte_range(value)?,
        None => None,
    };
    if let Some(wanted) = wanted {
        let span = match wanted {
            ByteRange::From(start, end) => ByteSpan::From { start, end },
            ByteRange::Last(len) => ByteSpan::Last(len),
        };
        let (range, size, stream) = match state.artifacts.get_span_stream(&path, span).await {
            Err(ArtifactError::RangeNotSatisfiable { size }) => {
                let mut response =
                    ApiError::from(ArtifactError::RangeNotSatisfiable { size }).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(response);
            }
            other => other?,
        };
        let content_range =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
                .map_err(|_| ApiError::invalid("bad range"))?;
        headers.insert(header::CONTENT_RANGE, content_range);
        headers.insert(header::CONTENT_LENGTH, (range.end - range.start).into());
        return Ok((
            StatusCode::PARTIAL_CONTENT,
            headers,
            Body::from_stream(stream),
        )
            .into_response());
    }
    let (size, stream) = state.artifacts.get_stream(&path).await?;
    headers.insert(header::CONTENT_LENGTH, size.into());
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// One byte range of a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=START-END` (END exclusive here; `u64::MAX` for `bytes=START-`).
    From(u64, u64),
    /// `bytes=-LENGTH`: the file's last LENGTH bytes.
    Last(u64),
}

/// The range a `Range` header asks for; `None` for several ranges (the whole file is sent, as
/// HTTP allows). Anything else that is not a byte range is refused with what to send.
fn byte_range(value: &HeaderValue) -> ApiResult<Option<ByteRange>> {
    let bad = || {
        ApiError::invalid(
            "header `Range` must be bytes=START-END, bytes=START- or bytes=-LENGTH (one range)",
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    // A unit other than bytes is ignored, as RFC 9110 asks: the whole file is sent.
    let Some(spec) = text.strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => match number(end)? {
            0 => Err(bad()),
            len => Ok(Some(ByteRange::Last(len))),
        },
        (false, true) => Ok(Some(ByteRange::From(number(start)?, u64::MAX))),
        (false, false) => {
            let (first, last) = (number(start)?, number(end)?);
            if last < first {
                return Err(bad());
            }
            Ok(Some(ByteRange::From(first, last.saturating_add(1))))
        }
        (true, true) => Err(bad()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse_to_one_byte_range() {
        let parse = |s: &str| byte_range(&HeaderValue::from_str(s).unwrap());
        assert_eq!(parse("bytes=0-99").unwrap(), Some(ByteRange::From(0, 100)));
        assert_eq!(
            parse("bytes=100-").unwrap(),
            Some(ByteRange::From(100, u64::MAX))
        );
        assert_eq!(parse("bytes=-64").unwrap(), Some(ByteRange::Last(64)));
        assert_eq!(parse("bytes=0-1, 5-6").unwrap(), None);
        assert_eq!(parse("items=0-1").unwrap(), None);
        for bad in ["bytes=5-1", "bytes=-", "bytes=-0", "bytes=a-b", "bytes=1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
