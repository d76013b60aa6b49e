//! Deployments as the audit trail knows them: serving processes report what they deploy and
//! every model swap, so the trail says which model version answered from when. The state of a
//! deployment lives in its serving process; here it is events (their digest is the served
//! artifact's), and what a deployment serves now is read back from its latest event.

use crate::audited::list_events;
use crate::{MetaStore, StoreError};
use std::collections::BTreeMap;

/// The entity type of deployment events; their id is `DEPLOYMENT:MODEL/VERSION`.
pub const DEPLOYMENT_KIND: &str = "deployment";

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentAction {
    /// It started serving a model version.
    Deploy,
    /// It swapped to another model version (its alias moved).
    Swap,
    /// It stopped serving.
    Stop,
}

impl DeploymentAction {
    /// The action as serving processes send it: `deploy`, `swap` or `stop`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "deploy" => Some(DeploymentAction::Deploy),
            "swap" => Some(DeploymentAction::Swap),
            "stop" => Some(DeploymentAction::Stop),
            _ => None,
        }
    }

    /// The action as serving processes send it (the inverse of [`Self::parse`]).
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentAction::Deploy => "deploy",
            DeploymentAction::Swap => "swap",
            DeploymentAction::Stop => "stop",
        }
    }

    /// The action its event records.
    pub fn event_action(self) -> &'static str {
        match self {
            DeploymentAction::Deploy => "deployment.deploy",
            DeploymentAction::Swap => "deployment.swap",
            DeploymentAction::Stop => "deployment.stop",
        }
    }
}

/// One report of a serving process.
#[derive(Debug, Clone)]
pub struct DeploymentEvent {
    pub deployment: String,
    pub model: String,
    pub version: String,
    /// The digest of the model artifact it serves.
    pub digest: String,
    pub action: DeploymentAction,
}

/// Records `event`; returns the entity id it was recorded under.
pub async fn record_event(
    store: &MetaStore,
    actor: &str,
    event: DeploymentEvent,
) -> Result<String, StoreError> {
    let id = format!("{}:{}/{}", event.deployment, event.model, event.version);
    let entity = id.clone();
    store
        .transaction(actor, async move |tx, audit| {
            audit
                .record_external(
                    tx,
                    event.action.event_action(),
                    DEPLOYMENT_KIND,
                    &entity,
                    Some(event.digest),
                )
                .await
        })
        .await?;
    Ok(id)
}

/// What a deployment serves now, from its latest event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DeploymentState {
    pub name: String,
    pub model: String,
    pub version: String,
    pub digest: Option<String>,
    /// `serving`, or `stopped` after a stop event.
    pub status: &'static str,
    /// When the latest event was recorded.
    pub since: i64,
    pub actor: String,
    /// How many swaps its events recorded.
    pub swaps: u64,
}

/// Every deployment the audit trail knows, by name.
pub async fn current(store: &MetaStore) -> Result<BTreeMap<String, DeploymentState>, StoreError> {
    let events = list_events(store.readers(), Some(DEPLOYMENT_KIND), None, i64::MAX).await?;
    let mut latest: BTreeMap<String, DeploymentState> = BTreeMap::new();
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
        let swaps = latest.get(deployment).map_or(0, |d| d.swaps)
            + u64::from(e.action == DeploymentAction::Swap.event_action());
        latest.insert(
            deployment.to_string(),
            DeploymentState {
                name: deployment.to_string(),
                model: model.to_string(),
                version: version.to_string(),
                digest: e.state_digest,
                status,
                since: e.time,
                actor: e.actor,
                swaps,
            },
        );
    }
    Ok(latest)
}
