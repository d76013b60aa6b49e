//! `/api/v1/privacy`: the keys that seal personal data in stored predictions (asked for by
//! serving processes), a subject's export (GDPR access) and erasure (GDPR erasure by
//! crypto-shredding), and the list of erasures. The sealing is `mltrail_core::privacy`; the
//! keys are `mltrail_store::privacy`; reading the archive is `mltrail_serving::privacy`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::req::body_text;
use crate::AppState;
use mltrail_core::privacy::SubjectHash;
use mltrail_serving::archive::ArtifactArchive;
use mltrail_serving::privacy::{export_subject, KeyCache, StoreKeys, SubjectKeys};
use mltrail_store::privacy::MAX_SUBJECTS;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/subject-keys", post(subject_keys))
        .route("/export", post(export))
        .route("/erase", post(erase))
        .route("/erasures", get(erasures))
}

/// The server's keys, or why there are none.
fn keys(state: &AppState) -> Result<&Arc<StoreKeys>, ApiError> {
    state.privacy.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            "this server has no privacy master key, so it keeps no personal data: set [privacy] master_key_file (MLTRAIL_PRIVACY_MASTER_KEY_FILE) and restart",
        )
    })
}

/// A list of at most [`MAX_SUBJECTS`] non-empty strings; `None` when the field is absent.
fn strings(body: &Value, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    let refuse = |why: String| ApiError::invalid(why).at_column(Some(field), None);
    let items = match body.get(field) {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(refuse(format!("`{field}` must be a list of strings"))),
    };
    if items.len() > MAX_SUBJECTS {
        return Err(refuse(format!(
            "`{field}` lists {} subjects; at most {MAX_SUBJECTS} per request",
            items.len()
        )));
    }
    items
        .iter()
        .map(|v| {
            v.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| refuse(format!("`{field}` must list non-empty strings")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn subject_hash(text: &str, field: &str) -> Result<SubjectHash, ApiError> {
    SubjectHash::parse(text).ok_or_else(|| {
        ApiError::invalid(format!(
            "`{field}`: `{text}` is not 64 lowercase hex digits"
        ))
        .at_column(Some(field), None)
    })
}

const SUBJECT: &str = "the subject's id, as the subject column holds it";

/// `POST /subject-keys` `{"subjects": [ID, …]}` (made when missing) or `{"subject_hashes":
/// [HEX, …]}` (looked up; `null` where erased) → `{"keys": [{"subject_hash", "key"}, …]}`, in
/// order. Serving processes ask with their `deployments` token.
async fn subject_keys(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let keys = keys(&state)?;
    let answer = match (
        strings(&body, "subjects")?,
        strings(&body, "subject_hashes")?,
    ) {
        (Some(subjects), None) => keys
            .for_subjects(&subjects)
            .await
            .map_err(ApiError::from_keys)?
            .into_iter()
            .map(|k| json!({"subject_hash": k.subject_hex(), "key": k.key.to_base64()}))
            .collect::<Vec<_>>(),
        (None, Some(hashes)) => {
            let parsed = hashes
                .iter()
                .map(|h| subject_hash(h, "subject_hashes"))
                .collect::<Result<Vec<_>, _>>()?;
            let found = keys
                .for_hashes(&parsed)
                .await
                .map_err(ApiError::from_keys)?;
            parsed
                .iter()
                .zip(found)
                .map(|(h, k)| json!({"subject_hash": h.to_hex(), "key": k.map(|k| k.to_base64())}))
                .collect()
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `subjects` (ids) and `subject_hashes`",
            )
            .at_column(Some("subjects"), None))
        }
    };
    Ok(Json(json!({"keys": answer})))
}

/// `POST /export` `{"subject": ID}`: every archived prediction about the subject, opened, with
/// the feedback on each (GDPR access).
async fn export(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let keys = keys(&state)?;
    let subject = body_text(&body, "subject", SUBJECT)?;
    let hash = keys.master().subject_hash(subject);
    let archive = ArtifactArchive(state.artifacts.clone());
    let found = export_subject(&archive, keys.as_ref(), hash)
        .await
        .map_err(ApiError::internal)?;
    // Who read whose data is worth a line in the log; the subject appears only as its hash.
    tracing::info!(actor = %actor, subject_hash = %hash, predictions = found.predictions.len(), "personal data exported");
    let predictions: Vec<Value> = found
        .predictions
        .into_iter()
        .map(|(prediction, feedback)| {
            let mut value = serde_json::to_value(&prediction).unwrap_or(Value::Null);
            value["feedback"] = serde_json::to_value(&feedback).unwrap_or(Value::Null);
            value
        })
        .collect();
    Ok(Json(json!({
        "subject_hash": hash.to_hex(),
        "predictions": predictions,
        "unreadable_files": found.unreadable,
        "covers": "the prediction archive: rows a serving process has not archived yet (its last few minutes) are not included",
    })))
}

/// `POST /erase` `{"subject": ID, "reason": TEXT}`, or `{"subject_hash": HEX, "reason"}` to
/// repeat a listed erasure (after restoring an older database backup): destroys the subject's
/// key (admins only).
async fn erase(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let keys = keys(&state)?;
    let reason = body_text(
        &body,
        "reason",
        "why: the request or rule the erasure answers",
    )?;
    let hash = match (body.get("subject"), body.get("subject_hash")) {
        (Some(_), None) => keys
            .master()
            .subject_hash(body_text(&body, "subject", SUBJECT)?),
        (None, Some(_)) => subject_hash(
            body_text(&body, "subject_hash", "64 lowercase hex digits")?,
            "subject_hash",
        )?,
        _ => {
            return Err(
                ApiError::invalid("give exactly one of `subject` and `subject_hash`")
                    .at_column(Some("subject"), None),
            )
        }
    };
    let erasure = mltrail_store::privacy::erase(&state.store, &actor, hash, reason).await?;
    Ok(Json(json!({
        "erasure": erasure,
        "serving_caches_seconds": KeyCache::TTL.as_secs(),
    })))
}

/// `GET /erasures`: every erasure (subject hash, reason, time), oldest first.
async fn erasures(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let list = mltrail_store::privacy::erasures(&state.store).await?;
    Ok(Json(json!({"erasures": list})))
}
