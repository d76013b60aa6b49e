//! Release gates as stored: a protected alias's policy, approvals of a version for an alias,
//! and the reports of checked moves. What a gate requires is checked by the caller from the
//! evidence it reads (`mltrail_core::gate`); this module keeps the policy, refuses a move of a
//! protected alias that comes without a report made against the policy and champion as they
//! stand in the moving transaction ([`admit`]), and keeps the report under its digest.
//!
//! Policies are part of the registered model's audited state, approvals part of the version's
//! (both only when there are any, so stores without gates digest as before); a report is an
//! entity of its own (`gate_report:<digest>`), never changed or deleted, so the evidence of a
//! release outlives the model.

use crate::audited::Audited;
use crate::error::{Conflict, NotFound};
use crate::sql::{int, text};
use crate::{MetaStore, StoreError, Tx};
use mltrail_core::gate::Policy;
use mltrail_core::{now_millis, Principal};
use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

/// The entity type of gate reports; their id is the report's digest.
pub const REPORT_KIND: &str = "gate_report";

/// A gate the configuration names.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfiguredGate {
    pub model: String,
    pub alias: String,
    pub policy: Policy,
}

/// A policy as stored: requirements in canonical spelling and the approvals a version needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPolicy {
    pub name: String,
    pub alias: String,
    pub requirements: Vec<String>,
    pub approvals: u32,
}

impl StoredPolicy {
    pub fn policy(&self) -> Result<Policy, StoreError> {
        Policy::parse(&self.requirements, self.approvals).map_err(|e| {
            Conflict::StoredValue {
                what: "gate requirement",
                value: e.to_string(),
                expected: "a requirement mltrail parses",
            }
            .into()
        })
    }
}

/// One approval of a version for an alias.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub approver: String,
    pub comment: String,
    pub created_time: i64,
}

/// A kept report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredReport {
    pub digest: String,
    pub name: String,
    pub alias: String,
    pub version: i64,
    pub created_time: i64,
    pub report: Value,
}

/// What a checked move brings to the transaction that moves: the report (canonical JSON, with
/// the policy and champion it was checked against) and its digest.
#[derive(Debug, Clone)]
pub struct GatePass {
    pub report: Value,
    /// The policy's requirements as checked, and the approvals it asked for.
    pub requirements: Vec<String>,
    pub approvals: u32,
    /// The version the alias (or stage) held when checked; `None` on a first release.
    pub champion: Option<i64>,
    /// An admin's override of a failed gate: flagged in the trail by its action.
    pub overridden: bool,
}

impl GatePass {
    pub fn digest(&self) -> String {
        mltrail_core::audit::state_digest(&self.report)
    }
}

fn policy_of(row: &sqlx::any::AnyRow) -> Result<StoredPolicy, StoreError> {
    let raw = text(row, "requirements")?;
    let requirements: Vec<String> =
        serde_json::from_str(&raw).map_err(|e| Conflict::StoredJson {
            column: "gate_policies.requirements".into(),
            source: std::sync::Arc::new(e),
        })?;
    Ok(StoredPolicy {
        name: text(row, "name")?,
        alias: text(row, "alias")?,
        requirements,
        approvals: u32::try_from(int(row, "approvals")?).map_err(|_| Conflict::StoredValue {
            what: "gate approvals",
            value: int(row, "approvals")
                .map(|n| n.to_string())
                .unwrap_or_default(),
            expected: "a whole number from 0",
        })?,
    })
}

/// The policy on `name`'s `alias`, read in `conn` (a transaction's, when moving).
pub(crate) async fn policy_in(
    conn: &mut AnyConnection,
    name: &str,
    alias: &str,
) -> Result<Option<StoredPolicy>, StoreError> {
    sqlx::query("SELECT * FROM gate_policies WHERE name = $1 AND alias = $2")
        .bind(name.to_string())
        .bind(alias.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(policy_of)
        .transpose()
}

pub async fn policy(
    store: &MetaStore,
    name: &str,
    alias: &str,
) -> Result<Option<StoredPolicy>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    policy_in(&mut conn, name, alias).await
}

/// Every policy of `name`, by alias.
pub async fn policies(store: &MetaStore, name: &str) -> Result<Vec<StoredPolicy>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    policies_in(&mut conn, name).await
}

pub(crate) async fn policies_in(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Vec<StoredPolicy>, StoreError> {
    sqlx::query("SELECT * FROM gate_policies WHERE name = $1 ORDER BY alias")
        .bind(name.to_string())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(policy_of)
        .collect()
}

/// The registered model's audited state's `gates`: `{alias: {requirements, approvals}}`, or
/// `None` when it has none (so the state of a model without gates is what it always was).
pub(crate) async fn model_state(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<Value>, StoreError> {
    let policies = policies_in(conn, name).await?;
    if policies.is_empty() {
        return Ok(None);
    }
    Ok(Some(Value::Object(
        policies
            .into_iter()
            .map(|p| {
                (
                    p.alias,
                    serde_json::json!({"requirements": p.requirements, "approvals": p.approvals}),
                )
            })
            .collect(),
    )))
}

pub(crate) async fn approvals_in(
    conn: &mut AnyConnection,
    name: &str,
    version: i64,
    alias: Option<&str>,
) -> Result<Vec<(String, Approval)>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM model_approvals WHERE name = $1 AND version = $2 ORDER BY alias, created_time, approver",
    )
    .bind(name.to_string())
    .bind(version)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                text(row, "alias")?,
                Approval {
                    approver: text(row, "approver")?,
                    comment: text(row, "comment")?,
                    created_time: int(row, "created_time")?,
                },
            ))
        })
        .filter(|r| match (r, alias) {
            (Ok((a, _)), Some(wanted)) => a == wanted,
            _ => true,
        })
        .collect()
}

/// The approvals of `name`/`version` for `alias`, oldest first.
pub async fn approvals(
    store: &MetaStore,
    name: &str,
    version: i64,
    alias: &str,
) -> Result<Vec<Approval>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    Ok(approvals_in(&mut conn, name, version, Some(alias))
        .await?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// The version's audited state's `approvals`: `{alias: [{approver, comment, created_time}]}`,
/// or `None` when it has none.
pub(crate) async fn version_state(
    conn: &mut AnyConnection,
    name: &str,
    version: i64,
) -> Result<Option<Value>, StoreError> {
    let all = approvals_in(conn, name, version, None).await?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut by_alias = serde_json::Map::new();
    for (alias, approval) in all {
        let entry = by_alias
            .entry(alias)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(
                serde_json::to_value(approval).map_err(|e| {
                    StoreError::from(Conflict::Unserializable(std::sync::Arc::new(e)))
                })?,
            );
        }
    }
    Ok(Some(Value::Object(by_alias)))
}

/// Sets (or replaces) the policy on `name`'s `alias`, in the model's transaction.
pub(crate) async fn set_policy_in(
    tx: &mut Tx,
    name: &str,
    alias: &str,
    policy: &Policy,
) -> Result<(), StoreError> {
    let requirements = serde_json::to_string(&policy.spelled())
        .map_err(|e| Conflict::Unserializable(std::sync::Arc::new(e)))?;
    sqlx::query("INSERT INTO gate_policies (name, alias, requirements, approvals) VALUES ($1, $2, $3, $4) ON CONFLICT (name, alias) DO UPDATE SET requirements = excluded.requirements, approvals = excluded.approvals")
        .bind(name.to_string())
        .bind(alias.to_string())
        .bind(requirements)
        .bind(i64::from(policy.approvals))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(crate) async fn delete_policy_in(
    tx: &mut Tx,
    name: &str,
    alias: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM gate_policies WHERE name = $1 AND alias = $2")
        .bind(name.to_string())
        .bind(alias.to_string())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(NotFound::GatePolicy {
            name: name.to_string(),
            alias: alias.to_string(),
        }
        .into());
    }
    Ok(())
}

/// Records `approver`'s approval of `name`/`version` for `alias` (a second approval by the
/// same person replaces the first's comment). The version's author cannot approve it.
pub(crate) async fn approve_in(
    tx: &mut Tx,
    name: &str,
    version: i64,
    alias: &str,
    approver: &str,
    comment: &str,
) -> Result<(), StoreError> {
    let author: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name.to_string())
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
    let author = author.ok_or_else(|| NotFound::ModelVersion {
        name: name.to_string(),
        version,
    })?;
    // People are compared by name, however they were established: `unverified:ana` (auth
    // off), `local:ana` (a command on the store) and `user:ana` are one person. An author
    // nobody identified cannot be told apart from the approver.
    let author_is = Principal::parse(&author);
    if matches!(author_is, Principal::Anonymous) {
        return Err(Conflict::UnknownAuthor {
            name: name.to_string(),
            version,
        }
        .into());
    }
    if author_is.name() == Principal::parse(approver).name() {
        return Err(Conflict::OwnApproval {
            name: name.to_string(),
            version,
            approver: approver.to_string(),
        }
        .into());
    }
    sqlx::query("INSERT INTO model_approvals (name, version, alias, approver, comment, created_time) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version, alias, approver) DO UPDATE SET comment = excluded.comment, created_time = excluded.created_time")
        .bind(name.to_string())
        .bind(version)
        .bind(alias.to_string())
        .bind(approver.to_string())
        .bind(comment.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The version a gated move of `alias` is compared with: `current` (what the alias or stage
/// holds now), else the version the newest kept report of `alias` admitted (the alias was
/// deleted, or its version was), so that emptying an alias never makes a first release.
pub(crate) async fn champion_in(
    conn: &mut AnyConnection,
    name: &str,
    alias: &str,
    current: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    if current.is_some() {
        return Ok(current);
    }
    Ok(sqlx::query_scalar(
        "SELECT version FROM gate_reports WHERE name = $1 AND alias = $2 ORDER BY created_time DESC, digest LIMIT 1",
    )
    .bind(name.to_string())
    .bind(alias.to_string())
    .fetch_optional(&mut *conn)
    .await?)
}

/// Where a gated move stands: `None` when `alias` has no policy and no pass came (an ordinary
/// move); the pass's digest when the pass was made against the policy and champion as they
/// are now; an error otherwise. The report is kept (and its event recorded by the caller).
pub(crate) async fn admit(
    tx: &mut Tx,
    name: &str,
    alias: &str,
    version: i64,
    current: Option<i64>,
    pass: Option<&GatePass>,
) -> Result<Option<String>, StoreError> {
    let policy = policy_in(tx, name, alias).await?;
    let champion = champion_in(tx, name, alias, current).await?;
    let (policy, pass) = match (policy, pass) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(Conflict::Gated {
                name: name.to_string(),
                alias: alias.to_string(),
            }
            .into())
        }
        (None, Some(_)) => {
            return Err(Conflict::GateChanged {
                name: name.to_string(),
                alias: alias.to_string(),
            }
            .into())
        }
        (Some(policy), Some(pass)) => (policy, pass),
    };
    if policy.requirements != pass.requirements
        || policy.approvals != pass.approvals
        || champion != pass.champion
    {
        return Err(Conflict::GateChanged {
            name: name.to_string(),
            alias: alias.to_string(),
        }
        .into());
    }
    // The report must be about this move, and say it passed or was overridden with a reason.
    let r = &pass.report;
    let about_this_move = r["model"] == name
        && r["version"] == version
        && r["alias"] == alias
        && r["champion"] == serde_json::json!(champion);
    let reason = r["override"]["reason"]
        .as_str()
        .is_some_and(|t| !t.trim().is_empty());
    let admitted = if pass.overridden {
        reason
    } else {
        r["passed"] == true && r["override"].is_null()
    };
    if !about_this_move || !admitted {
        return Err(Conflict::GateReportInvalid {
            name: name.to_string(),
            alias: alias.to_string(),
        }
        .into());
    }
    let digest = pass.digest();
    sqlx::query("INSERT INTO gate_reports (digest, name, alias, version, created_time, report) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest) DO NOTHING")
        .bind(digest.clone())
        .bind(name.to_string())
        .bind(alias.to_string())
        .bind(version)
        .bind(now_millis())
        .bind(mltrail_core::canonical_json(&pass.report))
        .execute(&mut *tx)
        .await?;
    Ok(Some(digest))
}

fn report_of(row: &sqlx::any::AnyRow) -> Result<StoredReport, StoreError> {
    let raw = text(row, "report")?;
    Ok(StoredReport {
        digest: text(row, "digest")?,
        name: text(row, "name")?,
        alias: text(row, "alias")?,
        version: int(row, "version")?,
        created_time: int(row, "created_time")?,
        report: serde_json::from_str(&raw).map_err(|e| Conflict::StoredJson {
            column: "gate_reports.report".into(),
            source: std::sync::Arc::new(e),
        })?,
    })
}

/// The reports of moves of `name`'s aliases, newest first (of `version` only, when given).
/// Reports made before `since` (the model's creation: an earlier model of that name, since
/// deleted) are left out.
pub async fn reports(
    store: &MetaStore,
    name: &str,
    version: Option<i64>,
    since: i64,
    limit: i64,
) -> Result<Vec<StoredReport>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM gate_reports WHERE name = $1 AND ($2 < 0 OR version = $2) AND created_time >= $3 ORDER BY created_time DESC, digest LIMIT $4",
    )
    .bind(name.to_string())
    .bind(version.unwrap_or(-1))
    .bind(since)
    .bind(limit)
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(report_of).collect()
}

pub async fn report(store: &MetaStore, digest: &str) -> Result<StoredReport, StoreError> {
    let row = sqlx::query("SELECT * FROM gate_reports WHERE digest = $1")
        .bind(digest.to_string())
        .fetch_optional(store.readers())
        .await?
        .ok_or_else(|| NotFound::GateReport(digest.to_string()))?;
    report_of(&row)
}

/// A kept report, as the trail records it: its content, whose digest is its id.
pub(crate) struct ReportRef(pub String);

impl Audited for ReportRef {
    const KIND: &'static str = REPORT_KIND;
    const LIST_IDS: &'static str = "SELECT digest AS id FROM gate_reports";

    crate::audited::text_key!(ReportRef);

    async fn state(&self, conn: &mut AnyConnection) -> Result<Option<Value>, StoreError> {
        let raw: Option<String> =
            sqlx::query_scalar("SELECT report FROM gate_reports WHERE digest = $1")
                .bind(self.0.clone())
                .fetch_optional(&mut *conn)
                .await?;
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| {
                Conflict::StoredJson {
                    column: "gate_reports.report".into(),
                    source: std::sync::Arc::new(e),
                }
                .into()
            })
        })
        .transpose()
    }
}
