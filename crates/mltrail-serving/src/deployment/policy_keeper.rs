//! Keeping a deployment on the routing policy the tracking server holds for it, and the
//! policy's learning shared: each round reads the policy in force (a new one is loaded beside
//! the old and put in force; an ended one leaves the deployment's own model serving alone)
//! and reports what this replica learned since its last report, resuming from the total of
//! every replica's reports the server answers with. A canary's round also sets its step from
//! the time the policy was set, and judges what the candidate did in the current window
//! (from that total, so every replica's requests count): a failed check rolls it back on the
//! tracking server, which every replica then follows.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::follower::{DeploymentAction, DeploymentEvent, DeploymentJournal};
use super::source::{load, BoxFuture, ModelSource, SourceError};
use super::Deployment;
use crate::routing::{Policy, RoutingState};

/// A policy in force as the tracking server keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInForce {
    pub document: Json,
    /// When it was set (a canary's schedule counts from it), epoch milliseconds.
    pub since_ms: i64,
    /// A canary that failed a check.
    pub rolled_back: bool,
}

/// Where policies and what they learned are kept (the tracking server).
pub trait PolicyStore: Send + Sync {
    /// The policy in force for `deployment`, if any.
    fn policy<'a>(
        &'a self,
        deployment: &'a str,
    ) -> BoxFuture<'a, Result<Option<PolicyInForce>, SourceError>>;
    /// The first alert of monitor `monitor` that fired about a window starting at or after
    /// `since_ms`, if any (its JSON).
    fn fired_since<'a>(
        &'a self,
        monitor: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Option<Json>, SourceError>>;
    /// Rolls back the canary `policy` (its digest) in force for `deployment`, for `verdict`.
    fn roll_back<'a>(
        &'a self,
        deployment: &'a str,
        policy: &'a str,
        verdict: &'a Json,
    ) -> BoxFuture<'a, Result<(), SourceError>>;
    /// What the policy with digest `policy` learned for `deployment`, if anything.
    fn learned<'a>(
        &'a self,
        deployment: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoutingState>, SourceError>>;
    /// Adds `delta` (the report `id`: a report the server already took is not added again)
    /// to the total of the policy it names; answers the new total.
    fn report<'a>(
        &'a self,
        deployment: &'a str,
        id: uuid::Uuid,
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
    in_force: &PolicyInForce,
    models: &dyn ModelSource,
    policies: &dyn PolicyStore,
    journal: &dyn DeploymentJournal,
) -> Result<String, SourceError> {
    let policy = Arc::new(
        Policy::from_json(&in_force.document)
            .map_err(|e| SourceError::unavailable("the deployment's routing policy", e))?,
    );
    let mut loaded = Vec::with_capacity(policy.arms.len());
    for arm in &policy.arms {
        let version = models.version(arm).await?;
        loaded.push(load(models, &version).await?);
    }
    let events: Vec<DeploymentEvent> = loaded
        .iter()
        .map(|m| super::follower::event_of(deployment, DeploymentAction::Deploy, m))
        .collect();
    let learned = policies.learned(deployment.name(), &policy.digest).await?;
    let digest = policy.digest.clone();
    let routing = deployment
        .route(policy.clone(), loaded, learned)
        .map_err(|e| SourceError::unavailable("the deployment's routing policy", e))?;
    // A canary starts on the step the schedule is on (a replica that restarts mid-release is
    // not back at the first step), or at nothing once rolled back.
    if let crate::routing::Rule::Canary(canary) = &policy.rule {
        let share =
            crate::routing::canary::share_now(canary, in_force.since_ms, in_force.rolled_back);
        routing.router().set_canary_share(share);
    }
    for event in &events {
        journal.record(event).await?;
    }
    tracing::info!(deployment = %deployment.name(), policy = %policy.name, kind = policy.rule.kind(), version = policy.version(), arms = policy.arms.len(), "routing policy in force");
    Ok(digest)
}

/// A canary's analysis window: when it began and the total then.
struct Window {
    policy: String,
    start_ms: i64,
    at_start: RoutingState,
}

/// What a deployment's keeper carries from round to round.
pub struct Keeper {
    window: std::sync::Mutex<Option<Window>>,
    /// Reports go at most this often (each is an audit event); a policy change or end sends
    /// what is pending at once.
    report_every: std::time::Duration,
    last_report: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Keeper {
    fn default() -> Self {
        Keeper::new(std::time::Duration::ZERO)
    }
}

impl Keeper {
    pub fn new(report_every: std::time::Duration) -> Self {
        Keeper {
            window: std::sync::Mutex::new(None),
            report_every,
            last_report: std::sync::Mutex::new(None),
        }
    }

    /// Whether a report is due this round.
    fn report_due(&self) -> bool {
        let mut last = self.last_report.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= self.report_every);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }

    /// One round: report what was learned (when due, or before the policy changes), follow
    /// the policy, and for a canary set its step and judge its window.
    pub async fn round(
        &self,
        deployment: &Deployment,
        models: &dyn ModelSource,
        policies: &dyn PolicyStore,
        journal: &dyn DeploymentJournal,
    ) -> Result<Round, SourceError> {
        let in_force = policies.policy(deployment.name()).await?;
        let current = deployment.routing();
        let digest = in_force.as_ref().map(|p| {
            blake3::hash(&mltrail_core::jcs::of_value(&p.document))
                .to_hex()
                .to_string()
        });
        let changing = match (&digest, &current) {
            (None, routing) => routing.is_some(),
            (Some(d), Some(r)) => r.policy().digest != *d,
            (Some(_), None) => false,
        };
        // What the policy in force learned is reported before it is replaced or ended (the
        // server takes reports of a deployment's earlier policies too), and a failed report
        // does not stop the policy being followed: it stays in the outbox.
        let reported = if changing || self.report_due() {
            report(deployment, policies).await
        } else {
            Ok(())
        };
        if changing {
            if let (Err(e), Some(old)) = (&reported, &current) {
                tracing::warn!(deployment = %deployment.name(), policy = %old.policy().name, error = %e, "the policy is replaced before its last report reached the tracking server: what it learned since is lost");
            }
        }
        let round = match (&in_force, &current) {
            (None, None) => Round::Kept,
            (None, Some(_)) => {
                deployment.unroute();
                tracing::info!(deployment = %deployment.name(), "routing policy ended: the deployment's own model serves alone");
                Round::Ended
            }
            (Some(_), _) if !changing && current.is_some() => Round::Kept,
            (Some(p), _) => Round::Routed(apply(deployment, p, models, policies, journal).await?),
        };
        if let (Some(p), Some(routing)) = (&in_force, deployment.routing()) {
            self.canary(deployment, &routing, p, policies).await?;
        }
        reported?;
        Ok(round)
    }

    /// A canary's step, and its analysis of the current window.
    async fn canary(
        &self,
        deployment: &Deployment,
        routing: &super::Routing,
        in_force: &PolicyInForce,
        policies: &dyn PolicyStore,
    ) -> Result<(), SourceError> {
        let policy = routing.policy();
        let crate::routing::Rule::Canary(canary) = &policy.rule else {
            return Ok(());
        };
        let router = routing.router();
        let share =
            crate::routing::canary::share_now(canary, in_force.since_ms, in_force.rolled_back);
        if share != router.canary_share() {
            tracing::info!(deployment = %deployment.name(), share, "canary share");
        }
        router.set_canary_share(share);
        if in_force.rolled_back {
            return Ok(());
        }
        let now = mltrail_core::now_millis();
        let total = router.snapshot();
        for monitor in &canary.monitors {
            // A monitor that cannot be read is warned about; the other checks still run.
            let fired = match policies.fired_since(monitor, in_force.since_ms).await {
                Ok(fired) => fired,
                Err(e) => {
                    tracing::warn!(deployment = %deployment.name(), monitor, error = %e, "cannot read the canary's monitor; its other checks still run");
                    None
                }
            };
            if let Some(alert) = fired {
                router.set_canary_share(0.0);
                let body = serde_json::json!({
                    "rule": "monitor",
                    "monitor": monitor,
                    "alert": alert,
                    "candidate_arm": routing.label(1),
                });
                tracing::warn!(deployment = %deployment.name(), monitor, "canary rolled back: its monitor fired");
                return policies
                    .roll_back(deployment.name(), &policy.digest, &body)
                    .await;
            }
        }
        let verdict = {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = match &*window {
                Some(w) => w.policy != policy.digest || now - w.start_ms >= canary.window_ms,
                None => true,
            };
            // The window is judged up to now (a window that just ended too, for its last
            // stretch), then a new one begins when it is due.
            let verdict = window
                .as_ref()
                .filter(|w| w.policy == policy.digest)
                .and_then(|w| {
                    let stable = total.arms[0].since(&w.at_start.arms[0]);
                    let candidate = total.arms[1].since(&w.at_start.arms[1]);
                    crate::routing::canary::judge(canary, &stable, &candidate)
                });
            if fresh {
                *window = Some(Window {
                    policy: policy.digest.clone(),
                    start_ms: now,
                    at_start: total.clone(),
                });
            }
            verdict
        };
        if let Some(verdict) = verdict {
            // Out of traffic at once here; the other replicas follow the server's record.
            router.set_canary_share(0.0);
            let mut body = serde_json::to_value(&verdict).unwrap_or_default();
            body["candidate_arm"] = Json::from(routing.label(1));
            tracing::warn!(deployment = %deployment.name(), rule = verdict.rule, value = verdict.value, bound = verdict.bound, "canary rolled back");
            policies
                .roll_back(deployment.name(), &policy.digest, &body)
                .await?;
        }
        Ok(())
    }
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
    let Some((id, delta)) = router.outgoing() else {
        return Ok(());
    };
    // A failed report stays in the outbox, and goes again as it is.
    let total = policies.report(deployment.name(), id, &delta).await?;
    router.delivered(id, total);
    Ok(())
}

/// Runs [`Keeper::round`] now and then every `every` until the task is dropped; a failed
/// round keeps the policy in force and is retried.
pub fn spawn(
    deployment: Arc<Deployment>,
    models: Arc<dyn ModelSource>,
    policies: Arc<dyn PolicyStore>,
    journal: Arc<dyn DeploymentJournal>,
    every: Duration,
    report_every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let keeper = Keeper::new(report_every);
        loop {
            if let Err(e) = keeper
                .round(
                    &deployment,
                    models.as_ref(),
                    policies.as_ref(),
                    journal.as_ref(),
                )
                .await
            {
                tracing::warn!(error = %e, "routing policy check failed; the policy in force keeps serving");
            }
            tokio::time::sleep(every).await;
        }
    })
}
