//! `/api/v1/deployments/events`: serving processes report what they deploy and every model swap,
//! so the audit trail says which version answered from when; `/api/v1/deployments/segments`:
//! each prediction-log segment they archive.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::openapi::Done;
use crate::req::{required_text, Body};
use crate::AppState;
use mltrail_serving::segment_tree::ArchivedSegment;
use mltrail_store::deployments::{self, DeploymentAction, DeploymentEvent};
use mltrail_store::segments;

fn field<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    required_text(value.as_deref(), name, "a non-empty string")
}

/// What a serving process deploys, or a model swap or stop.
#[derive(Deserialize, ToSchema)]
struct DeploymentEventIn {
    /// The deployment's name, without `:`.
    #[schema(required, nullable = false)]
    deployment: Option<String>,
    /// The registered model served.
    #[schema(required, nullable = false)]
    model: Option<String>,
    /// Its version.
    #[schema(required, nullable = false)]
    version: Option<String>,
    /// The served model file's digest.
    #[schema(required, nullable = false)]
    digest: Option<String>,
    /// `deploy`, `swap` or `stop`.
    #[schema(required, nullable = false)]
    action: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct EventRecorded {
    /// The deployment event's id in the audit trail.
    recorded: String,
}

#[utoipa::path(post, path = "/events", tag = "deployments", request_body = DeploymentEventIn,
    responses((status = 200, description = "The event is in the audit trail", body = EventRecorded)))]
async fn record(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(body): Body<DeploymentEventIn>,
) -> ApiResult<Json<EventRecorded>> {
    let deployment = field(&body.deployment, "deployment")?.to_string();
    // A deployment's events are `deployment:<name>:<model>/<version>`: a colon in the name
    // would make one deployment's history another's.
    if deployment.contains(':') {
        return Err(ApiError::invalid(format!(
            "`deployment` may not contain `:`, got `{deployment}`"
        )));
    }
    let model = field(&body.model, "model")?.to_string();
    let version = field(&body.version, "version")?.to_string();
    let digest = field(&body.digest, "digest")?.to_string();
    let action = field(&body.action, "action")?;
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
    Ok(Json(EventRecorded { recorded: id }))
}

/// A serving replica's `/metrics` text.
#[derive(Deserialize, ToSchema)]
struct ReplicaMetrics {
    #[schema(required, nullable = false)]
    deployment: Option<String>,
    /// The replica's name.
    #[schema(required, nullable = false)]
    replica: Option<String>,
    /// The sending process's id: a new one counts from zero.
    #[serde(default)]
    boot: Option<String>,
    /// The replica's `/metrics` text (OpenMetrics).
    #[schema(required, nullable = false)]
    metrics: Option<String>,
}

/// A serving replica's metrics (its `/metrics` text), kept in memory for the web UI's live
/// panels; it needs what deployment events need.
#[utoipa::path(post, path = "/metrics", tag = "deployments", request_body = ReplicaMetrics,
    responses((status = 200, description = "Kept for the live panels", body = Done)))]
async fn report_metrics(
    State(state): State<AppState>,
    Body(body): Body<ReplicaMetrics>,
) -> ApiResult<Json<Done>> {
    let deployment = field(&body.deployment, "deployment")?;
    let replica = field(&body.replica, "replica")?;
    // The process that sent it: a new one counts from zero (an older sender names none).
    let boot = body.boot.as_deref().unwrap_or("");
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
        .metrics
        .as_deref()
        .ok_or_else(|| ApiError::invalid("`metrics` must be the replica's /metrics text"))?;
    let sample = mltrail_web::live::LiveSample::parse(text, mltrail_core::now_millis());
    state.ui.report(deployment, replica, boot, sample);
    Ok(Json(Done {}))
}

#[derive(Serialize, ToSchema)]
struct SegmentRecorded {
    /// The segment's artifact path.
    recorded: String,
    state_digest: String,
    /// False when this segment was recorded before.
    new: bool,
}

/// A serving process archived a prediction-log segment: its summary becomes an audit event
/// (entity `prediction_segment`, id the file's path, digest the summary's), so each archived
/// prediction has a proof that it is in the trail. It needs what deployment events need (the
/// `deployments` scope or the deployer role).
#[utoipa::path(post, path = "/segments", tag = "deployments", request_body = ArchivedSegment,
    responses((status = 200, description = "The segment's summary is in the audit trail", body = SegmentRecorded)))]
async fn record_segment(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(segment): Body<ArchivedSegment>,
) -> ApiResult<Json<SegmentRecorded>> {
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
    Ok(Json(SegmentRecorded {
        recorded: segment.artifact,
        state_digest: digest,
        new,
    }))
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

#[derive(Serialize, ToSchema)]
struct Deployments {
    /// By name.
    deployments: Vec<deployments::DeploymentState>,
}

/// Every deployment the audit trail knows, with what it serves now (its latest event).
#[utoipa::path(get, path = "/", tag = "deployments",
    responses((status = 200, description = "Every deployment, by name", body = Deployments)))]
async fn list(State(state): State<AppState>) -> ApiResult<Json<Deployments>> {
    let latest = deployments::current(&state.store).await?;
    Ok(Json(Deployments {
        deployments: latest.into_values().collect(),
    }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(record))
        .routes(routes!(report_metrics))
        .routes(routes!(record_segment))
        .merge(crate::routing::routes())
}
