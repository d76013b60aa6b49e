//! Keeping an alias-following deployment on the version its alias names: a poll asks the
//! [`ModelSource`] which version the alias points at; when it moved, the new version is loaded
//! beside the old one and swapped in, and the swap is recorded in the [`DeploymentJournal`].

use std::sync::Arc;
use std::time::Duration;

pub use mltrail_store::deployments::{DeploymentAction, DeploymentEvent};

use super::source::{load, BoxFuture, ModelRef, ModelSource, SourceError};
use super::Deployment;

/// Where deployment events are recorded (the tracking server's audit trail).
pub trait DeploymentJournal: Send + Sync {
    fn record<'a>(&'a self, event: &'a DeploymentEvent) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// The event that says `deployment` now serves `model` (deployed or swapped in).
pub(crate) fn event_of(
    deployment: &Deployment,
    action: DeploymentAction,
    model: &super::LoadedModel,
) -> DeploymentEvent {
    DeploymentEvent {
        deployment: deployment.name().to_string(),
        action,
        model: model.name.clone(),
        version: model.version.clone(),
        digest: model.digest.clone(),
    }
}

/// One check: swaps in the version `model` names now if it is not the one serving. Returns the
/// (old, new) versions when it swapped.
pub async fn follow_once(
    deployment: &Deployment,
    source: &dyn ModelSource,
    journal: &dyn DeploymentJournal,
    model: &ModelRef,
) -> Result<Option<(String, String)>, SourceError> {
    let named = source.version(model).await?;
    let current = deployment.current();
    if named.version == current.version {
        return Ok(None);
    }
    let next = load(source, &named).await?;
    // A version this deployment could only answer with errors is not swapped in.
    deployment
        .can_serve(&next)
        .map_err(|why| SourceError::unavailable(format!("{named} (the alias moved)"), why))?;
    let event = event_of(deployment, DeploymentAction::Swap, &next);
    deployment.swap(next);
    tracing::info!(deployment = %deployment.name(), from = %current.version, to = %event.version, "alias moved: swapped the model");
    journal.record(&event).await?;
    Ok(Some((current.version.clone(), event.version)))
}

/// One check of every arm of the routing policy in force that names an alias: an arm whose
/// alias moved is swapped to the version it names now. Returns the arms swapped.
pub async fn follow_arms(
    deployment: &Deployment,
    source: &dyn ModelSource,
    journal: &dyn DeploymentJournal,
) -> Result<Vec<usize>, SourceError> {
    let Some(routing) = deployment.routing() else {
        return Ok(Vec::new());
    };
    let mut swapped = Vec::new();
    for (arm, model) in routing.policy().arms.iter().enumerate() {
        if !model.is_alias() {
            continue;
        }
        let named = source.version(model).await?;
        let serving = routing.serving(arm);
        if named.version == serving.version {
            continue;
        }
        let next = load(source, &named).await?;
        let event = event_of(deployment, DeploymentAction::Swap, &next);
        // A policy replaced meanwhile keeps its own arms.
        if !deployment
            .routing()
            .is_some_and(|now| Arc::ptr_eq(&now, &routing))
        {
            break;
        }
        if deployment.swap_arm(arm, next).is_none() {
            continue;
        }
        tracing::info!(deployment = %deployment.name(), arm = %model, from = %serving.version, to = %event.version, "an arm's alias moved: swapped its model");
        journal.record(&event).await?;
        swapped.push(arm);
    }
    Ok(swapped)
}

/// Checks the alias every `every` until the task is dropped: the routing policy's alias arms
/// while one is in force, else `model` when it is an alias. A failed check keeps the current
/// versions serving and is retried.
pub fn spawn(
    deployment: Arc<Deployment>,
    source: Arc<dyn ModelSource>,
    journal: Arc<dyn DeploymentJournal>,
    model: Option<ModelRef>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let checked = if deployment.routing().is_some() {
                follow_arms(&deployment, source.as_ref(), journal.as_ref())
                    .await
                    .map(|_| ())
            } else if let Some(model) = model.as_ref().filter(|m| m.is_alias()) {
                follow_once(&deployment, source.as_ref(), journal.as_ref(), model)
                    .await
                    .map(|_| ())
            } else {
                Ok(())
            };
            if let Err(e) = checked {
                tracing::warn!(error = %e, "alias check failed; still serving the current version");
            }
        }
    })
}
