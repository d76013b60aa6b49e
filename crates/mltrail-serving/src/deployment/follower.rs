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
    let event = DeploymentEvent {
        deployment: deployment.name().to_string(),
        action: DeploymentAction::Swap,
        model: next.name.clone(),
        version: next.version.clone(),
        digest: next.digest.clone(),
    };
    deployment.swap(next);
    tracing::info!(deployment = %deployment.name(), from = %current.version, to = %event.version, "alias moved: swapped the model");
    journal.record(&event).await?;
    Ok(Some((current.version.clone(), event.version)))
}

/// Checks the alias every `every` until the task is dropped; a failed check keeps the current
/// version serving and is retried.
pub fn spawn(
    deployment: Arc<Deployment>,
    source: Arc<dyn ModelSource>,
    journal: Arc<dyn DeploymentJournal>,
    model: ModelRef,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) =
                follow_once(&deployment, source.as_ref(), journal.as_ref(), &model).await
            {
                tracing::warn!(error = %e, "alias check failed; still serving the current version");
            }
        }
    })
}
