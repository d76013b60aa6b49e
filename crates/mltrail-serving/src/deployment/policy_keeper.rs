//! Keeping a deployment on the routing policy the tracking server holds for it, and the
//! policy's learning shared: each round reads the policy in force (a new one is loaded beside
//! the old and put in force; an ended one leaves the deployment's own model serving alone)
//! and reports what this replica learned since its last report, resuming from the total of
//! every replica's reports the server answers with.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::follower::{DeploymentAction, DeploymentEvent, DeploymentJournal};
use super::source::{load, BoxFuture, ModelSource, SourceError};
use super::Deployment;
use crate::routing::{Policy, RoutingState};

/// Where policies and what they learned are kept (the tracking server).
pub trait PolicyStore: Send + Sync {
    /// The policy in force for `deployment` (its JSON), if any.
    fn policy<'a>(
        &'a self,
        deployment: &'a str,
    ) -> BoxFuture<'a, Result<Option<Json>, SourceError>>;
    /// What the policy with digest `policy` learned for `deployment`, if anything.
    fn learned<'a>(
        &'a self,
        deployment: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoutingState>, SourceError>>;
    /// Adds `delta` to the total; answers the new total.
    fn report<'a>(
        &'a self,
        deployment: &'a str,
        delta: &'a RoutingState,
    ) -> BoxFuture<'a, Result<RoutingState, SourceError>>;
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// The policy in force is unchanged.
    Kept,
    /// A new policy is in force (its digest).
    Routed(String),
    /// The policy ended: the deployment's own model serves alone.
    Ended,
}

/// Puts `document` in force on `deployment`: the arms' versions loaded, what the policy
/// learned read back. Each arm's version is recorded as deployed.
pub async fn apply(
    deployment: &Deployment,
    document: &Json,
    models: &dyn ModelSource,
    policies: &dyn PolicyStore,
    journal: &dyn DeploymentJournal,
) -> Result<String, SourceError> {
    let policy = Arc::new(
        Policy::from_json(document)
            .map_err(|e| SourceError::unavailable("the deployment's routing policy", e))?,
    );
    let mut loaded = Vec::with_capacity(policy.arms.len());
    for arm in &policy.arms {
        let version = models.version(arm).await?;
        loaded.push(load(models, &version).await?);
    }
    let events: Vec<DeploymentEvent> = loaded
        .iter()
        .map(|m| DeploymentEvent {
            deployment: deployment.name().to_string(),
            action: DeploymentAction::Deploy,
            model: m.name.clone(),
            version: m.version.clone(),
            digest: m.digest.clone(),
        })
        .collect();
    let learned = policies.learned(deployment.name(), &policy.digest).await?;
    let digest = policy.digest.clone();
    deployment
        .route(policy.clone(), loaded, learned)
        .map_err(|e| SourceError::unavailable("the deployment's routing policy", e))?;
    for event in &events {
        journal.record(event).await?;
    }
    tracing::info!(deployment = %deployment.name(), policy = %policy.name, kind = policy.rule.kind(), version = policy.version(), arms = policy.arms.len(), "routing policy in force");
    Ok(digest)
}

/// One round: follow the policy, then report what was learned.
pub async fn keep_once(
    deployment: &Deployment,
    models: &dyn ModelSource,
    policies: &dyn PolicyStore,
    journal: &dyn DeploymentJournal,
) -> Result<Round, SourceError> {
    let document = policies.policy(deployment.name()).await?;
    let in_force = deployment.routing();
    let round = match (&document, &in_force) {
        (None, None) => Round::Kept,
        (None, Some(_)) => {
            deployment.unroute();
            tracing::info!(deployment = %deployment.name(), "routing policy ended: the deployment's own model serves alone");
            Round::Ended
        }
        (Some(doc), current) => {
            let digest = blake3::hash(&mltrail_core::jcs::of_value(doc))
                .to_hex()
                .to_string();
            if current
                .as_ref()
                .is_some_and(|r| r.policy().digest == digest)
            {
                Round::Kept
            } else {
                Round::Routed(apply(deployment, doc, models, policies, journal).await?)
            }
        }
    };
    report(deployment, policies).await?;
    Ok(round)
}

/// Sends what the policy in force learned here since the last report; on failure it stays
/// pending for the next round.
pub async fn report(
    deployment: &Deployment,
    policies: &dyn PolicyStore,
) -> Result<(), SourceError> {
    let Some(routing) = deployment.routing() else {
        return Ok(());
    };
    let router = routing.router();
    let delta = router.take_pending();
    if delta.is_empty() {
        return Ok(());
    }
    match policies.report(deployment.name(), &delta).await {
        Ok(total) => {
            router.resume(total);
            Ok(())
        }
        Err(e) => {
            router.give_back(&delta);
            Err(e)
        }
    }
}

/// Runs [`keep_once`] every `every` until the task is dropped; a failed round keeps the
/// policy in force and is retried.
pub fn spawn(
    deployment: Arc<Deployment>,
    models: Arc<dyn ModelSource>,
    policies: Arc<dyn PolicyStore>,
    journal: Arc<dyn DeploymentJournal>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = keep_once(
                &deployment,
                models.as_ref(),
                policies.as_ref(),
                journal.as_ref(),
            )
            .await
            {
                tracing::warn!(error = %e, "routing policy check failed; the policy in force keeps serving");
            }
        }
    })
}
