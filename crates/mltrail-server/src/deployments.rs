//! `/api/v1/deployments/events`: serving processes report what they deploy and every model swap,
//! so the audit trail says which version answered from when; `/api/v1/deployments/segments`:
//! each prediction-log segment they archive.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use mltrail_serving::segment_tree::ArchivedSegment;
use mltrail_store::deployments::{self, DeploymentAction, DeploymentEvent};
use mltrail_store::segments;

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    crate::req::body_text(body, name, "a non-empty string")
}

async fn record(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let deployment = field(&body, "deployment")?.to_string();
    // A deployment's events are `deployment:<name>:<model>/<version>`: a colon in the name
    // would make one deployment's history another's.
    if deployment.contains(':') {
        return Err(ApiError::invalid(format!(
            "`deployment` may not contain `:`, got `{deployment}`"
        )));
    }
    let model = field(&body, "model")?.to_string();
    let version = field(&body, "version")?.to_string();
    let digest = field(&body, "digest")?.to_string();
    let action = field(&body, "action")?;
    let action = DeploymentAction::parse(action).ok_or_else(|| {
        ApiError::invalid(format!(
            "`action` must be deploy, swap or stop, got `{action}`"
        ))
    })?;
    let event = DeploymentEvent {
        deployment,
        model,
        version,
        digest,
        action,
    };
    let id = deployments::record_event(&state.store, &actor, event).await?;
    Ok(Json(json!({"recorded": id})))
}

/// A serving replica's metrics (its `/metrics` text), kept in memory for the web UI's live
/// panels; it needs what deployment events need.
async fn report_metrics(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let deployment = field(&body, "deployment")?;
    let replica = field(&body, "replica")?;
    // The process that sent it: a new one counts from zero (an older sender names none).
    let boot = body.get("boot").and_then(Value::as_str).unwrap_or("");
    // Names are kept in memory: they are as short as the ones serving processes send.
    for (name, value) in [
        ("deployment", deployment),
        ("replica", replica),
        ("boot", boot),
    ] {
        if value.len() > 200 || value.contains(':') {
            return Err(ApiError::invalid(format!(
                "`{name}` must be at most 200 bytes without `:`"
            )));
        }
    }
    let text = body
        .get("metrics")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("`metrics` must be the replica's /metrics text"))?;
    let sample = mltrail_web::live::LiveSample::parse(text, mltrail_core::now_millis());
    state.ui.report(deployment, replica, boot, sample);
    Ok(Json(json!({})))
}

/// A serving process archived a prediction-log segment: its summary becomes an audit event
/// (entity `prediction_segment`, id the file's path, digest the summary's), so each archived
/// prediction has a proof that it is in the trail. It needs what deployment events need (the
/// `deployments` scope or the deployer role).
async fn record_segment(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let segment: ArchivedSegment = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(format!(
            "an archived segment is {{artifact, deployment, records, first_id, last_id, root}}: {e}"
        ))
    })?;
    segment.check().map_err(|field| {
        ApiError::invalid(format!(
            "`{field}` does not describe an archived segment of deployment `{}` (artifact under predictions/<deployment>/, records > 0, first_id ≤ last_id, root a lowercase SHA-256 hex)",
            segment.deployment
        ))
    })?;
    if !segment.named_by_root() {
        return Err(ApiError::invalid(format!(
            "`root`: the file's name `{}` announces another root (a replica names its file <replica>-<seq>-<first 16 hex of root>.parquet)",
            segment.artifact
        )));
    }
    check_against_file(&state, &segment).await?;
    let digest = segment.state_digest();
    let new =
        segments::record_archived(&state.store, &actor, &segment.artifact, digest.clone()).await?;
    Ok(Json(
        json!({"recorded": segment.artifact, "state_digest": digest, "new": new}),
    ))
}

/// A summary is recorded only for a file that is there and holds as many records as it says.
/// (Its root is not recomputed here: that costs about 3.5 µs a record, as much again as the
/// replica spent making it, and every trace recomputes it from the file anyway, so a summary
/// that does not match its file shows in each of its records' traces.)
async fn check_against_file(state: &AppState, segment: &ArchivedSegment) -> ApiResult<()> {
    let path = mltrail_core::ArtifactPath::parse(&segment.artifact)
        .map_err(|e| ApiError::invalid(format!("`artifact`: {e}")))?;
    use mltrail_serving::archive::{footer_rows, Footer};
    let not_a_segment = |why: String| {
        ApiError::invalid(format!(
            "`artifact`: the file at `{}` is not an archived segment: {why}",
            segment.artifact
        ))
    };
    // Only the footer is read (a segment's file can be tens of megabytes; its footer is a
    // few kilobytes), once more if it is longer than guessed.
    let mut last = 64 << 10;
    let rows = loop {
        let (tail, size) = match state.artifacts.get_tail(&path, last).await {
            Ok(read) => read,
            Err(mltrail_artifacts::ArtifactError::NotFound(_)) => {
                return Err(ApiError::not_found(format!(
                    "`artifact`: no file at `{}`; upload the segment before recording it",
                    segment.artifact
                )))
            }
            Err(e) => return Err(ApiError::internal(e)),
        };
        match footer_rows(&tail, size).map_err(|e| not_a_segment(e.to_string()))? {
            Footer::Rows(rows) => break rows,
            Footer::NeedLast(needed) if needed > last => last = needed,
            Footer::NeedLast(_) => return Err(not_a_segment("its footer does not read".into())),
        }
    };
    if rows != segment.records {
        return Err(ApiError::invalid(format!(
            "`records`: the file at `{}` holds {rows} records, not {}",
            segment.artifact, segment.records
        )));
    }
    Ok(())
}

/// Every deployment the audit trail knows, with what it serves now (its latest event).
async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let latest = known(&state.store).await?;
    Ok(Json(
        json!({"deployments": latest.into_values().collect::<Vec<_>>()}),
    ))
}

/// Deployment name → what it serves now (`model`, `version`, `status`, …), from the trail.
pub(crate) async fn known(
    store: &mltrail_store::MetaStore,
) -> ApiResult<std::collections::BTreeMap<String, Value>> {
    Ok(deployments::current(store)
        .await?
        .into_iter()
        .map(|(name, d)| {
            let body = json!({"name": d.name, "model": d.model, "version": d.version, "digest": d.digest,
                   "status": d.status, "since": d.since, "actor": d.actor, "swaps": d.swaps});
            (name, body)
        })
        .collect())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/events", post(record))
        .route("/metrics", post(report_metrics))
        .route("/segments", post(record_segment))
        .merge(crate::routing::routes())
}
