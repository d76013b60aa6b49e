//! `/api/v1/privacy`: the keys that seal personal data in stored predictions (asked for by
//! serving processes), a subject's export (GDPR access) and erasure (GDPR erasure by
//! crypto-shredding), and the list of erasures. The sealing is `mltrail_core::privacy`; the
//! keys are `mltrail_store::privacy`; reading the archive is `mltrail_serving::privacy`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::{required_text, Body};
use crate::AppState;
use mltrail_core::privacy::SubjectHash;
use mltrail_serving::archive::ArtifactArchive;
use mltrail_serving::privacy::{export_subject, KeyCache, StoreKeys, SubjectKeys};
use mltrail_store::privacy::{Erasure, MAX_SUBJECTS};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subject_keys))
        .routes(routes!(export))
        .routes(routes!(erase))
        .routes(routes!(erasures))
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
fn strings(items: Option<Vec<String>>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    let refuse = |why: String| ApiError::invalid(why).at_column(Some(field), None);
    let Some(items) = items else {
        return Ok(None);
    };
    if items.len() > MAX_SUBJECTS {
        return Err(refuse(format!(
            "`{field}` lists {} subjects; at most {MAX_SUBJECTS} per request",
            items.len()
        )));
    }
    if items.iter().any(String::is_empty) {
        return Err(refuse(format!("`{field}` must list non-empty strings")));
    }
    Ok(Some(items))
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

/// Subjects whose keys are asked for: exactly one of the two lists.
#[derive(Deserialize, ToSchema)]
struct KeysIn {
    /// Subjects' ids, as the subject column holds them (keys are made when missing).
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    subjects: Option<Vec<String>>,
    /// Subject hashes, 64 lowercase hex digits (looked up; the key is `null` where erased).
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    subject_hashes: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
struct SubjectKey {
    subject_hash: String,
    /// The subject's key, base64; null when the subject was erased.
    key: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Keys {
    /// In the order asked.
    keys: Vec<SubjectKey>,
}

/// `POST /subject-keys` `{"subjects": [ID, …]}` (made when missing) or `{"subject_hashes":
/// [HEX, …]}` (looked up; `null` where erased) → `{"keys": [{"subject_hash", "key"}, …]}`, in
/// order. Serving processes ask with their `deployments` token.
#[utoipa::path(post, path = "/subject-keys", tag = "privacy", request_body = KeysIn,
    responses((status = 200, description = "The subjects' keys (503 without a master key)", body = Keys)))]
async fn subject_keys(
    State(state): State<AppState>,
    Body(body): Body<KeysIn>,
) -> ApiResult<Json<Keys>> {
    let keys = keys(&state)?;
    let answer = match (
        strings(body.subjects, "subjects")?,
        strings(body.subject_hashes, "subject_hashes")?,
    ) {
        (Some(subjects), None) => keys
            .for_subjects(&subjects)
            .await
            .map_err(ApiError::from_keys)?
            .into_iter()
            .map(|k| SubjectKey {
                subject_hash: k.subject_hex().to_string(),
                key: Some(k.key.to_base64()),
            })
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
                .map(|(h, k)| SubjectKey {
                    subject_hash: h.to_hex(),
                    key: k.map(|k| k.to_base64()),
                })
                .collect()
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `subjects` (ids) and `subject_hashes`",
            )
            .at_column(Some("subjects"), None))
        }
    };
    Ok(Json(Keys { keys: answer }))
}

#[derive(Deserialize, ToSchema)]
struct ExportIn {
    /// The subject's id, as the subject column holds it.
    #[schema(required, nullable = false)]
    subject: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Exported {
    subject_hash: String,
    /// Each archived prediction about the subject, opened, with its `feedback`.
    #[schema(value_type = Vec<Object>)]
    predictions: Vec<Value>,
    /// Archive files that could not be read.
    unreadable_files: Vec<String>,
    /// What the export covers.
    covers: &'static str,
}

/// `POST /export` `{"subject": ID}`: every archived prediction about the subject, opened, with
/// the feedback on each (GDPR access).
#[utoipa::path(post, path = "/export", tag = "privacy", request_body = ExportIn,
    responses((status = 200, description = "The subject's data (503 without a master key)", body = Exported)))]
async fn export(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(body): Body<ExportIn>,
) -> ApiResult<Json<Exported>> {
    let keys = keys(&state)?;
    let subject = required_text(body.subject.as_deref(), "subject", SUBJECT)?;
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
    Ok(Json(Exported {
        subject_hash: hash.to_hex(),
        predictions,
        unreadable_files: found.unreadable,
        covers: "the prediction archive: rows a serving process has not archived yet (its last few minutes) are not included",
    }))
}

/// An erasure: exactly one of `subject` and `subject_hash`.
#[derive(Deserialize, ToSchema)]
struct EraseIn {
    /// The subject's id.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    subject: Option<String>,
    /// A listed erasure's subject hash, to repeat it (after restoring an older backup).
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    subject_hash: Option<String>,
    /// Why: the request or rule the erasure answers.
    #[schema(required, nullable = false)]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Erased {
    erasure: Erasure,
    /// How long serving processes may still hold the key in memory.
    serving_caches_seconds: u64,
}

/// `POST /erase` `{"subject": ID, "reason": TEXT}`, or `{"subject_hash": HEX, "reason"}` to
/// repeat a listed erasure (after restoring an older database backup): destroys the subject's
/// key (admins only).
#[utoipa::path(post, path = "/erase", tag = "privacy", request_body = EraseIn,
    responses((status = 200, description = "The subject's key is destroyed (admins only; 503 without a master key)", body = Erased)))]
async fn erase(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(body): Body<EraseIn>,
) -> ApiResult<Json<Erased>> {
    let keys = keys(&state)?;
    let reason = required_text(
        body.reason.as_deref(),
        "reason",
        "why: the request or rule the erasure answers",
    )?;
    let hash = match (&body.subject, &body.subject_hash) {
        (Some(_), None) => {
            keys.master()
                .subject_hash(required_text(body.subject.as_deref(), "subject", SUBJECT)?)
        }
        (None, Some(hex)) => subject_hash(hex, "subject_hash")?,
        _ => {
            return Err(
                ApiError::invalid("give exactly one of `subject` and `subject_hash`")
                    .at_column(Some("subject"), None),
            )
        }
    };
    let erasure = mltrail_store::privacy::erase(&state.store, &actor, hash, reason).await?;
    Ok(Json(Erased {
        erasure,
        serving_caches_seconds: KeyCache::TTL.as_secs(),
    }))
}

#[derive(Serialize, ToSchema)]
struct Erasures {
    /// Oldest first.
    erasures: Vec<Erasure>,
}

/// `GET /erasures`: every erasure (subject hash, reason, time), oldest first.
#[utoipa::path(get, path = "/erasures", tag = "privacy",
    responses((status = 200, description = "Every erasure", body = Erasures)))]
async fn erasures(State(state): State<AppState>) -> ApiResult<Json<Erasures>> {
    let erasures = mltrail_store::privacy::erasures(&state.store).await?;
    Ok(Json(Erasures { erasures }))
}
