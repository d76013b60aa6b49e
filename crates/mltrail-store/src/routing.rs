//! Deployments' routing policies and what they learned. A policy is kept as the canonical JSON
//! in force for a deployment (one per deployment; setting another replaces it), and each
//! change is an event on entity `routing_policy:<deployment>` whose digest is the policy's.
//! What a policy learned is one row per (deployment, policy): the sum of every replica's
//! reports, replaced in the reporting transaction, each report an event on entity
//! `routing_state:<deployment>/<policy digest>` whose digest is the new total's.
//!
//! The store keeps text; what a state is and how two add up is the serving crate's
//! (`mltrail_serving::routing::RoutingState`), passed in as the merge.

use crate::sql::{int, text};
use crate::{MetaStore, NotFound, StoreError};

/// The entity type of policy events; their id is the deployment.
pub const POLICY_KIND: &str = "routing_policy";
/// The entity type of learned-state events; their id is `<deployment>/<policy digest>`.
pub const STATE_KIND: &str = "routing_state";

/// A deployment's policy in force.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    pub deployment: String,
    /// Canonical JSON (RFC 8785).
    pub policy: String,
    /// BLAKE3 of `policy`, hex.
    pub digest: String,
    pub updated_time: i64,
    pub actor: String,
    /// A canary rolled back: the failed check and its values (JSON).
    pub rolled_back: Option<String>,
}

/// What a policy learned, summed over replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    /// Canonical JSON.
    pub state: String,
    pub digest: String,
    /// Reports added into it.
    pub reports: i64,
    pub updated_time: i64,
}

fn policy_of(row: &sqlx::any::AnyRow) -> Result<StoredPolicy, StoreError> {
    Ok(StoredPolicy {
        deployment: text(row, "deployment")?,
        policy: text(row, "policy")?,
        digest: text(row, "digest")?,
        updated_time: int(row, "updated_time")?,
        actor: text(row, "actor")?,
        rolled_back: crate::sql::opt_text(row, "rolled_back")?,
    })
}

fn state_of(row: &sqlx::any::AnyRow) -> Result<StoredState, StoreError> {
    Ok(StoredState {
        state: text(row, "state")?,
        digest: text(row, "digest")?,
        reports: int(row, "reports")?,
        updated_time: int(row, "updated_time")?,
    })
}

/// Puts `policy` (canonical JSON with its digest) in force for `deployment`. Setting the
/// policy in force again records nothing.
pub async fn set_policy(
    store: &MetaStore,
    actor: &str,
    deployment: String,
    policy: String,
    digest: String,
) -> Result<StoredPolicy, StoreError> {
    let who = actor.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let existing = sqlx::query("SELECT * FROM routing_policies WHERE deployment = $1")
                .bind(deployment.clone())
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(policy_of)
                .transpose()?;
            if let Some(existing) = existing.filter(|e| e.digest == digest) {
                return Ok(existing);
            }
            let now = mltrail_core::now_millis();
            sqlx::query("DELETE FROM routing_policies WHERE deployment = $1")
                .bind(deployment.clone())
                .execute(&mut *tx)
                .await?;
            // Every policy a deployment had is kept: its replicas may still report under it.
            let known: Option<i64> = sqlx::query_scalar(
                "SELECT count(*) FROM routing_policy_versions WHERE deployment = $1 AND digest = $2",
            )
            .bind(deployment.clone())
            .bind(digest.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if known.unwrap_or(0) == 0 {
                sqlx::query(
                    "INSERT INTO routing_policy_versions (deployment, digest, policy) VALUES ($1, $2, $3)",
                )
                .bind(deployment.clone())
                .bind(digest.clone())
                .bind(policy.clone())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO routing_policies (deployment, policy, digest, updated_time, actor) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(deployment.clone())
            .bind(policy.clone())
            .bind(digest.clone())
            .bind(now)
            .bind(who.clone())
            .execute(&mut *tx)
            .await?;
            audit
                .record_external(tx, "routing.set_policy", POLICY_KIND, &deployment, Some(digest.clone()))
                .await?;
            Ok(StoredPolicy {
                deployment,
                policy,
                digest,
                updated_time: now,
                actor: who,
                rolled_back: None,
            })
        })
        .await
}

/// Ends `deployment`'s policy: its replicas serve their own model alone again. What the policy
/// learned is kept (setting the same policy again resumes it).
pub async fn delete_policy(
    store: &MetaStore,
    actor: &str,
    deployment: String,
) -> Result<(), StoreError> {
    store
        .transaction(actor, async move |tx, audit| {
            let deleted = sqlx::query("DELETE FROM routing_policies WHERE deployment = $1")
                .bind(deployment.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(NotFound::RoutingPolicy(deployment).into());
            }
            audit
                .record_external(tx, "routing.delete_policy", POLICY_KIND, &deployment, None)
                .await
        })
        .await
}

/// Rolls back the canary `policy_digest` in force for `deployment`: `verdict` (canonical
/// JSON: the failed check and its values) is kept with the policy and digested in the trail.
/// Returns whether this call rolled it back (false: it was already, or another policy is in
/// force).
pub async fn roll_back(
    store: &MetaStore,
    actor: &str,
    deployment: String,
    policy_digest: String,
    verdict: String,
) -> Result<bool, StoreError> {
    store
        .transaction(actor, async move |tx, audit| {
            let changed = sqlx::query(
                "UPDATE routing_policies SET rolled_back = $1 WHERE deployment = $2 AND digest = $3 AND rolled_back IS NULL",
            )
            .bind(verdict.clone())
            .bind(deployment.clone())
            .bind(policy_digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Ok(false);
            }
            let digest = blake3::hash(verdict.as_bytes()).to_hex().to_string();
            audit
                .record_external(tx, "routing.rollback", POLICY_KIND, &deployment, Some(digest))
                .await?;
            Ok(true)
        })
        .await
}

/// The policy in force for `deployment`.
pub async fn policy(
    store: &MetaStore,
    deployment: &str,
) -> Result<Option<StoredPolicy>, StoreError> {
    sqlx::query("SELECT * FROM routing_policies WHERE deployment = $1")
        .bind(deployment.to_string())
        .fetch_optional(store.readers())
        .await?
        .as_ref()
        .map(policy_of)
        .transpose()
}

/// A policy `deployment` had (in force now or earlier), as canonical JSON, by its digest.
pub async fn policy_version(
    store: &MetaStore,
    deployment: &str,
    digest: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT policy FROM routing_policy_versions WHERE deployment = $1 AND digest = $2",
    )
    .bind(deployment.to_string())
    .bind(digest.to_string())
    .fetch_optional(store.readers())
    .await?)
}

/// What the policy with `policy_digest` learned for `deployment`.
pub async fn state(
    store: &MetaStore,
    deployment: &str,
    policy_digest: &str,
) -> Result<Option<StoredState>, StoreError> {
    sqlx::query("SELECT * FROM routing_states WHERE deployment = $1 AND policy_digest = $2")
        .bind(deployment.to_string())
        .bind(policy_digest.to_string())
        .fetch_optional(store.readers())
        .await?
        .as_ref()
        .map(state_of)
        .transpose()
}

/// Reports' ids are kept this long: a replica resends an unacknowledged report within its
/// report interval, far sooner.
const REPORT_IDS_KEPT_MS: i64 = 24 * 3600 * 1000;

/// Adds a replica's report `report_id` to what the policy learned, in one transaction: `merge`
/// gets the stored total's canonical JSON (none before the first report) and returns the new
/// total's canonical JSON and digest, or why the report does not fit (then nothing changes).
/// A report taken already changes nothing and answers the total as it is.
pub async fn add_state<M>(
    store: &MetaStore,
    actor: &str,
    deployment: String,
    policy_digest: String,
    report_id: String,
    merge: M,
) -> Result<StoredState, StoreError>
where
    M: FnOnce(Option<&str>) -> Result<(String, String), String> + Send + 'static,
{
    store
        .transaction(actor, async move |tx, audit| {
            let stored = sqlx::query(
                "SELECT * FROM routing_states WHERE deployment = $1 AND policy_digest = $2",
            )
            .bind(deployment.clone())
            .bind(policy_digest.clone())
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(state_of)
            .transpose()?;
            let now = mltrail_core::now_millis();
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT reported_time FROM routing_reports WHERE report_id = $1")
                    .bind(report_id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let (Some(_), Some(stored)) = (taken, &stored) {
                return Ok(stored.clone());
            }
            let (state, digest) = merge(stored.as_ref().map(|s| s.state.as_str()))
                .map_err(crate::error::Invalid::RoutingState)?;
            sqlx::query("DELETE FROM routing_reports WHERE reported_time < $1")
                .bind(now - REPORT_IDS_KEPT_MS)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO routing_reports (report_id, reported_time) VALUES ($1, $2)")
                .bind(report_id.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let reports = stored.as_ref().map_or(0, |s| s.reports) + 1;
            sqlx::query("DELETE FROM routing_states WHERE deployment = $1 AND policy_digest = $2")
                .bind(deployment.clone())
                .bind(policy_digest.clone())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO routing_states (deployment, policy_digest, state, digest, reports, updated_time) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(deployment.clone())
            .bind(policy_digest.clone())
            .bind(state.clone())
            .bind(digest.clone())
            .bind(reports)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            audit
                .record_external(
                    tx,
                    "routing.learn",
                    STATE_KIND,
                    &format!("{deployment}/{policy_digest}"),
                    Some(digest.clone()),
                )
                .await?;
            Ok(StoredState {
                state,
                digest,
                reports,
                updated_time: now,
            })
        })
        .await
}
