//! `/api/v1/deployments/events`: serving processes report what they deploy and every model swap,
//! so the audit trail says which version answered from when.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub const DEPLOYMENT_KIND: &str = "deployment";

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("`{name}` (a non-empty string) is required")))
}

async fn record(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let deployment = field(&body, "deployment")?.to_string();
    let model = field(&body, "model")?;
    let version = field(&body, "version")?;
    let digest = field(&body, "digest")?.to_string();
    let action = match field(&body, "action")? {
        "deploy" => "deployment.deploy",
        "swap" => "deployment.swap",
        "stop" => "deployment.stop",
        other => {
            return Err(ApiError::invalid(format!(
                "`action` must be deploy, swap or stop, got `{other}`"
            )))
        }
    };
    let id = format!("{deployment}:{model}/{version}");
    let actor = crate::req::actor_of(&headers);
    let entity = id.clone();
    state
        .store
        .write(&actor, move |tx, audit| {
            Box::pin(async move {
                audit
                    .record_external(tx, action, DEPLOYMENT_KIND, &entity, Some(digest))
                    .await
            })
        })
        .await?;
    Ok(Json(json!({"recorded": id})))
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
    let events = mltrail_store::audit::list_events(store, Some(DEPLOYMENT_KIND), i64::MAX).await?;
    let mut latest: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for logged in events {
        let e = logged.event;
        let Some((deployment, served)) = e.entity_id.split_once(':') else {
            continue;
        };
        let Some((model, version)) = served.rsplit_once('/') else {
            continue;
        };
        let status = match e.action.as_str() {
            "deployment.stop" => "stopped",
            _ => "serving",
        };
        let swaps = latest
            .get(deployment)
            .and_then(|d| d["swaps"].as_u64())
            .unwrap_or(0)
            + u64::from(e.action == "deployment.swap");
        latest.insert(
            deployment.to_string(),
            json!({"name": deployment, "model": model, "version": version, "digest": e.state_digest,
                   "status": status, "since": e.time, "actor": e.actor, "swaps": swaps}),
        );
    }
    Ok(latest)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/events", post(record))
}
