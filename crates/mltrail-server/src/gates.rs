//! Release gates over HTTP: policies on a registered model's protected aliases, approvals,
//! the check of a move (`check`, which every path that moves an alias or stage calls, MLflow's
//! included), the move itself, and the reports moves left.
//!
//! The check reads the evidence the trail holds (the version's newest evaluation, verified
//! against its event's digest; the champion's), counts the approvals, and makes the report; the
//! store admits the move only with a report made against the policy and champion it reads again
//! in the moving transaction.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use mltrail_core::gate::{self, Evidence, Policy, Source, Verdict};
use mltrail_core::state::ModelStage;
use mltrail_core::{ModelVersionNumber, ReleaseRole};
use mltrail_store::evaluations::Assessment;
use mltrail_store::gates::{self as stored, GatePass};
use mltrail_store::registry;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::req::{required_text, Body};
use crate::AppState;

/// The layout of gate reports.
pub const REPORT_FORMAT: &str = "mltrail.gate-report/1";

type Who = Option<Extension<Arc<Caller>>>;

/// A version's evidence and the digests of the documents it came from. What cannot be read
/// (a kept document changed or gone, a champion version deleted) becomes the reason its
/// requirements fail, never an error: an admin's override stays possible.
async fn evidence(
    state: &AppState,
    name: &str,
    version: i64,
    needs_drift: bool,
) -> (Evidence, Value) {
    let number = ModelVersionNumber(version);
    let mut unreadable = Vec::new();
    let mut documents = serde_json::Map::new();
    let mut kept = [None, None];
    for (slot, (what, source, key)) in [
        (Assessment::Evaluation, Source::Evaluation, "evaluation"),
        (Assessment::Robustness, Source::Robustness, "robustness"),
    ]
    .into_iter()
    .enumerate()
    {
        match crate::evaluations::latest_of(state, what, name, number).await {
            Ok(found) => {
                documents.insert(
                    key.into(),
                    found.as_ref().map_or(Value::Null, |(v, e)| cited(v, e)),
                );
                kept[slot] = found.map(|(v, _)| v);
            }
            Err(e) => unreadable.push((source, format!("{name}/{version}: {}", e.message))),
        }
    }
    let [evaluation, robustness] = kept;
    // Drift reads archived predictions: only when a requirement names it.
    let drift = if needs_drift {
        match drift_of(state, name, number).await {
            Ok(d) => Some(d),
            Err(why) => {
                unreadable.push((Source::Drift, why));
                None
            }
        }
    } else {
        None
    };
    documents.insert("drift".into(), drift.clone().unwrap_or(Value::Null));
    (
        Evidence {
            version: format!("{name}/{version}"),
            evaluation,
            robustness,
            drift,
            unreadable,
        },
        Value::Object(documents),
    )
}

/// How far the production inputs of the last day drift from a version's training data.
pub const DRIFT_WINDOW_MS: i64 = 24 * 3_600_000;

/// `drift.*` of a version: its training data against the inputs the deployments serving `name`
/// (any version) archived in the last [`DRIFT_WINDOW_MS`]: the largest `share` and the largest
/// `drifted_columns` over those deployments, and each deployment's comparison. Why there is none otherwise.
async fn drift_of(
    state: &AppState,
    name: &str,
    number: ModelVersionNumber,
) -> Result<Value, String> {
    let who = format!("{name}/{}", number.0);
    let mv = registry::get_model_version(&state.store, name, number)
        .await
        .map_err(|e| format!("{who}: {e}"))?;
    let training = mv
        .tags
        .iter()
        .find(|t| t.key == registry::TRAINING_DATA_TAG)
        .ok_or_else(|| {
            format!("{who} records no training data, which drift compares with production inputs")
        })?;
    let reference: mltrail_store::datasets::VersionRef = training
        .value
        .parse()
        .map_err(|e| format!("{who}'s training data `{}`: {e}", training.value))?;
    let serving: Vec<String> = mltrail_store::deployments::current(&state.store)
        .await
        .map_err(|e| e.to_string())?
        .into_values()
        .filter(|d| d.model == name && d.status == "serving")
        .map(|d| d.name)
        .collect();
    if serving.is_empty() {
        return Err(format!("no deployment of {name} is serving, so there are no production inputs to compare {who}'s training data with"));
    }
    let end = mltrail_core::now_millis();
    let mut compared = Vec::new();
    for deployment in &serving {
        match state
            .monitors
            .drift_against(deployment, end - DRIFT_WINDOW_MS, end, &reference)
            .await
        {
            Ok(Some(d)) => compared.push(d),
            Ok(None) => {}
            Err(e) => return Err(format!("drift of deployment `{deployment}`: {e}")),
        }
    }
    let worst = compared
        .iter()
        .max_by(|a, b| {
            a["share"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["share"].as_f64().unwrap_or(0.0))
        })
        .ok_or_else(|| {
            format!(
                "the deployments of {name} ({}) archived no inputs in the last 24 h",
                serving.join(", ")
            )
        })?;
    let most_drifted = compared
        .iter()
        .filter_map(|d| d["drifted_columns"].as_u64())
        .max()
        .unwrap_or(0);
    Ok(json!({
        "share": worst["share"],
        "drifted_columns": most_drifted,
        "training_data": training.value,
        "deployments": compared,
    }))
}

/// How a report cites a kept document: its digest and event, who recorded it, on what data.
fn cited(document: &Value, event: &mltrail_store::audit::LoggedEvent) -> Value {
    json!({
        "digest": event.event.state_digest,
        "seq": event.event.seq,
        "recorded_by": event.event.actor,
        "dataset": document.get("dataset"),
    })
}

/// What a move of `alias` (or into `stage`, whose gate alias `alias` is) to `version` would
/// find: `None` when the alias has no gate.
pub(crate) struct Checked {
    pub report: Value,
    pub passed: bool,
    pub failures: Vec<String>,
    pub requirements: Vec<String>,
    pub approvals: u32,
    pub champion: Option<i64>,
}

/// A move to check: of `alias` of `name` to `version`, or into `stage` (whose gate `alias` is).
#[derive(Clone, Copy)]
pub(crate) struct Move<'a> {
    pub name: &'a str,
    pub alias: &'a str,
    pub stage: Option<ModelStage>,
    pub version: i64,
}

pub(crate) async fn check(
    state: &AppState,
    actor: &str,
    to: Move<'_>,
) -> ApiResult<Option<Checked>> {
    let Move {
        name,
        alias,
        stage,
        version,
    } = to;
    let Some(stored_policy) = stored::policy(&state.store, name, alias).await? else {
        return Ok(None);
    };
    registry::get_model_version(&state.store, name, ModelVersionNumber(version)).await?;
    let policy: Policy = stored_policy.policy()?;
    let champion = registry::champion(&state.store, name, alias, stage, version).await?;
    let needs_drift = policy.requirements.iter().any(|r| {
        r.left.source == Source::Drift
            || matches!(&r.right, gate::Bound::Value { path, .. } if path.source == Source::Drift)
    });
    let (candidate, candidate_digests) = evidence(state, name, version, needs_drift).await;
    let (champion_evidence, champion_digests) = match champion {
        Some(c) => {
            let (mut e, d) = evidence(state, name, c, needs_drift).await;
            // The version the alias last held through its gate may be gone since.
            if let Err(err) =
                registry::get_model_version(&state.store, name, ModelVersionNumber(c)).await
            {
                let why = format!("the champion {name}/{c}: {err}");
                e.unreadable = vec![(Source::Evaluation, why.clone()), (Source::Robustness, why)];
            }
            (Some(e), d)
        }
        None => (None, Value::Null),
    };
    let results = gate::check(&policy, &candidate, champion_evidence.as_ref());
    // Approvals count while their approver still holds the approver role.
    let mut approvals = Vec::new();
    let mut lapsed = Vec::new();
    for a in stored::approvals(&state.store, name, version, alias).await? {
        let holds = match mltrail_core::Principal::parse(&a.approver) {
            mltrail_core::Principal::User(user) => {
                mltrail_store::access::users::get_user(&state.store, &user)
                    .await
                    .is_ok_and(|u| u.release_roles.contains(&ReleaseRole::Approver))
            }
            _ => false,
        };
        if holds {
            approvals.push(a);
        } else {
            lapsed.push(a);
        }
    }
    let mut failures: Vec<String> = results
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.line())
        .collect();
    if approvals.len() < policy.approvals as usize {
        failures.push(format!(
            "approvals: {} of {} (`mltrail models approve {name}/{version} --alias {alias}` by a user with the approver role who did not create the version)",
            approvals.len(),
            policy.approvals
        ));
    }
    let passed = failures.is_empty();
    let report = json!({
        "format": REPORT_FORMAT,
        "model": name,
        "version": version,
        "alias": alias,
        "stage": stage.map(|s| s.as_str()),
        "champion": champion,
        "first_release": champion.is_none(),
        "champion_source": match (champion, registry::champion_now(&state.store, name, alias, stage, version).await?) {
            (None, _) => "none",
            (Some(_), Some(_)) => if stage.is_some() { "stage" } else { "alias" },
            (Some(_), None) => "last_gated_move",
        },
        "policy": {"requirements": stored_policy.requirements, "approvals": policy.approvals},
        "requirements": results,
        "evidence": {"candidate": candidate_digests, "champion": champion_digests},
        "approvals": {"required": policy.approvals, "given": approvals, "lapsed": lapsed},
        "passed": passed,
        "override": Value::Null,
        "checked_by": actor,
        "checked_time": mltrail_core::now_millis(),
    });
    Ok(Some(Checked {
        report,
        passed,
        failures,
        requirements: stored_policy.requirements,
        approvals: policy.approvals,
        champion,
    }))
}

/// The pass a move of `alias` to `version` needs: `None` when the alias has no gate; refused
/// (400 `INVALID_STATE`, every failed requirement with its value) when the gate fails and no
/// admin overrides it with a reason.
pub(crate) async fn pass_for(
    state: &AppState,
    caller: Option<&Caller>,
    actor: &str,
    to: Move<'_>,
    override_reason: Option<String>,
) -> ApiResult<Option<GatePass>> {
    let Move {
        name,
        alias,
        stage,
        version,
    } = to;
    let Some(mut checked) = check(state, actor, to).await? else {
        if override_reason.is_some() {
            return Err(ApiError::invalid(format!(
                "{name}@{alias} has no release gate: there is nothing to override"
            )));
        }
        return Ok(None);
    };
    let moving = match stage {
        Some(s) => format!("into stage {}", s.as_str()),
        None => format!("to alias `{alias}`"),
    };
    let overridden = match override_reason {
        None if checked.passed => false,
        Some(_) if checked.passed => {
            return Err(ApiError::invalid(format!(
                "the release gate of {name}@{alias} passes version {version}: there is nothing to override (move it without a reason)"
            ))
            .at_column(Some("override_reason"), None))
        }
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_STATE",
                format!(
                "the release gate of {name}@{alias} refuses moving version {version} {moving}: {}",
                checked.failures.join("; ")
            ),
            ))
        }
        Some(reason) => {
            let admin = caller.is_some_and(|c| c.admin);
            if !admin {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    "only an admin may override a release gate (with --auth on, signed in as an admin)",
                ));
            }
            if reason.trim().is_empty() {
                return Err(ApiError::invalid(
                    "an override needs a reason (`override_reason`): it is kept in the report and the trail",
                )
                .at_column(Some("override_reason"), None));
            }
            checked.report["override"] = json!({"by": actor, "reason": reason});
            true
        }
    };
    Ok(Some(GatePass {
        report: checked.report,
        requirements: checked.requirements,
        approvals: checked.approvals,
        champion: checked.champion,
        overridden,
    }))
}

/// A release gate on a protected alias.
#[derive(Serialize, ToSchema)]
struct Gate {
    alias: String,
    /// Requirements such as `evaluation.roc_auc >= 0.8` (`docs/gates.md`).
    requirements: Vec<String>,
    /// Approvals by users with the approver role a move needs.
    approvals: u32,
}

fn policy_json(p: &stored::StoredPolicy) -> Gate {
    Gate {
        alias: p.alias.clone(),
        requirements: p.requirements.clone(),
        approvals: p.approvals,
    }
}

#[derive(Serialize, ToSchema)]
struct Gates {
    gates: Vec<Gate>,
}

#[derive(Serialize, ToSchema)]
struct GateRead {
    gate: Gate,
}

/// A registered model's protected alias.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ModelAlias {
    /// The registered model.
    name: String,
    /// The protected alias (`production`, `staging`, …).
    alias: String,
}

/// A registered model's version.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ModelVersionPath {
    /// The registered model.
    pub(crate) name: String,
    /// The version number.
    pub(crate) version: String,
}

/// A registered model.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ModelName {
    /// The registered model.
    name: String,
}

/// Policies change only by an admin when auth is on (with auth off, by anyone who reaches the
/// server: loopback, or a trusted network with --insecure-no-auth).
fn require_admin(caller: &Who, what: &str) -> ApiResult<()> {
    match caller {
        Some(Extension(c)) if !c.admin => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("only an admin may {what}"),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(get, path = "/{name}/gates", tag = "gates", params(ModelName),
    responses((status = 200, description = "The model's release gates", body = Gates)))]
async fn list_policies(
    State(state): State<AppState>,
    Path(ModelName { name }): Path<ModelName>,
) -> ApiResult<Json<Gates>> {
    registry::get_registered_model(&state.store, &name).await?;
    let policies = stored::policies(&state.store, &name).await?;
    Ok(Json(Gates {
        gates: policies.iter().map(policy_json).collect(),
    }))
}

#[utoipa::path(get, path = "/{name}/gates/{alias}", tag = "gates", params(ModelAlias),
    responses((status = 200, description = "The alias's release gate", body = GateRead)))]
async fn get_policy(
    State(state): State<AppState>,
    Path(ModelAlias { name, alias }): Path<ModelAlias>,
) -> ApiResult<Json<GateRead>> {
    registry::get_registered_model(&state.store, &name).await?;
    let policy = stored::policy(&state.store, &name, &alias)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name}@{alias} has no release gate")))?;
    Ok(Json(GateRead {
        gate: policy_json(&policy),
    }))
}

/// A release gate to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GateIn {
    /// Requirements such as `evaluation.roc_auc >= 0.8`; `[]` for a gate of approvals alone.
    requirements: Vec<String>,
    /// Approvals a move needs; 1 when left out.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    approvals: Option<u32>,
}

/// `PUT {"requirements": ["evaluation.roc_auc >= 0.8", …], "approvals": 1}`.
#[utoipa::path(put, path = "/{name}/gates/{alias}", tag = "gates", params(ModelAlias),
    request_body = GateIn,
    responses((status = 200, description = "The gate now set (admins only when auth is on)", body = GateRead)))]
async fn put_policy(
    State(state): State<AppState>,
    caller: Who,
    crate::req::Actor(actor): crate::req::Actor,
    Path(ModelAlias { name, alias }): Path<ModelAlias>,
    Body(body): Body<GateIn>,
) -> ApiResult<Json<GateRead>> {
    require_admin(&caller, "set a release gate")?;
    let (requirements, approvals) = (body.requirements, body.approvals.unwrap_or(1));
    let policy = Policy::parse(&requirements, approvals)
        .map_err(|e| ApiError::invalid(e.to_string()).at_column(Some("requirements"), None))?;
    registry::set_gate(&state.store, &actor, name.clone(), alias.clone(), policy).await?;
    get_policy(State(state), Path(ModelAlias { name, alias })).await
}

#[utoipa::path(delete, path = "/{name}/gates/{alias}", tag = "gates", params(ModelAlias),
    responses((status = 200, description = "The gate is removed (admins only when auth is on)", body = crate::openapi::Done)))]
async fn delete_policy(
    State(state): State<AppState>,
    caller: Who,
    crate::req::Actor(actor): crate::req::Actor,
    Path(ModelAlias { name, alias }): Path<ModelAlias>,
) -> ApiResult<Json<crate::openapi::Done>> {
    require_admin(&caller, "remove a release gate")?;
    registry::delete_gate(&state.store, &actor, name, alias).await?;
    Ok(Json(crate::openapi::Done {}))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionQuery {
    /// The version a move would put behind the alias (required).
    #[param(required)]
    version: Option<String>,
    /// The stage the gate guards, for a stage transition (`Production`, `Staging`).
    stage: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct DryRun {
    /// The gate report the move would make (`mltrail.gate-report/1`).
    #[schema(value_type = Object)]
    report: Value,
    /// The requirements that fail, each with why.
    failures: Vec<String>,
}

/// `GET …/gates/{alias}/check?version=N`: the report a move would make now, without moving.
#[utoipa::path(get, path = "/{name}/gates/{alias}/check", tag = "gates", params(ModelAlias, VersionQuery),
    responses((status = 200, description = "The report a move would make now", body = DryRun)))]
async fn dry_run(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(ModelAlias { name, alias }): Path<ModelAlias>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<DryRun>> {
    let raw = q.version.ok_or_else(|| {
        ApiError::invalid("`version` is required").at_column(Some("version"), None)
    })?;
    let version = crate::req::version_number(&raw)?;
    let stage = match q.stage.as_deref() {
        None => None,
        Some(s) => Some(
            ModelStage::parse(s)
                .filter(|s| registry::gate_alias_of_stage(*s) == Some(alias.as_str()))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`stage` `{s}` is not the stage the gate of `{alias}` guards"
                    ))
                    .at_column(Some("stage"), None)
                })?,
        ),
    };
    let to = Move {
        name: &name,
        alias: &alias,
        stage,
        version: version.0,
    };
    let checked = check(&state, &actor, to)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name}@{alias} has no release gate")))?;
    Ok(Json(DryRun {
        report: checked.report,
        failures: checked.failures,
    }))
}

/// An approval of a version for a protected alias.
#[derive(Deserialize, ToSchema)]
struct ApprovalIn {
    /// The protected alias the approval is for.
    #[schema(required, nullable = false)]
    alias: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Approvals {
    alias: String,
    approvals: Vec<stored::Approval>,
}

/// `POST …/versions/{version}/approvals {"alias": "production", "comment": "…"}`.
#[utoipa::path(post, path = "/{name}/versions/{version}/approvals", tag = "gates", params(ModelVersionPath),
    request_body = ApprovalIn,
    responses((status = 200, description = "The version's approvals for the alias, this one included (the approver role, auth on)", body = Approvals)))]
async fn approve(
    State(state): State<AppState>,
    caller: Who,
    Path(ModelVersionPath { name, version }): Path<ModelVersionPath>,
    Body(body): Body<ApprovalIn>,
) -> ApiResult<Json<Approvals>> {
    let number = crate::req::version_number(&version)?;
    let Some(Extension(caller)) = caller else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "approvals need a server with --auth on: with auth off nobody is identified, so four eyes cannot be told apart",
        ));
    };
    if caller.scopes.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "a service token cannot approve a release: approvals are made by users with the approver role",
        ));
    }
    // The approver role, admins included: an admin's way past a gate is an override, which
    // the report flags, not an approval. Read from the store, not the credential cache, so a
    // role just given or taken counts at once (as when the gate counts approvals).
    let roles = match &caller.principal {
        mltrail_core::Principal::User(user) => {
            mltrail_store::access::users::get_user(&state.store, user)
                .await?
                .release_roles
        }
        _ => Vec::new(),
    };
    if !roles.contains(&ReleaseRole::Approver) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "user `{}` does not have the approver role (`mltrail users set-roles {} approver`)",
                caller.principal.name(),
                caller.principal.name()
            ),
        ));
    }
    let alias = required_text(
        body.alias.as_deref(),
        "alias",
        "the protected alias the approval is for",
    )?
    .to_string();
    let comment = body.comment.unwrap_or_default();
    let actor = caller.principal.to_string();
    registry::approve(
        &state.store,
        &actor,
        name.clone(),
        number,
        alias.clone(),
        comment,
    )
    .await?;
    let approvals = stored::approvals(&state.store, &name, number.0, &alias).await?;
    Ok(Json(Approvals { alias, approvals }))
}

#[utoipa::path(get, path = "/{name}/versions/{version}/approvals", tag = "gates", params(ModelVersionPath, AliasQuery),
    responses((status = 200, description = "The version's approvals for the alias", body = Approvals)))]
async fn list_approvals(
    State(state): State<AppState>,
    Path(ModelVersionPath { name, version }): Path<ModelVersionPath>,
    Query(q): Query<AliasQuery>,
) -> ApiResult<Json<Approvals>> {
    let number = crate::req::version_number(&version)?;
    registry::get_model_version(&state.store, &name, number).await?;
    let alias = q.alias.unwrap_or_else(|| "production".into());
    let approvals = stored::approvals(&state.store, &name, number.0, &alias).await?;
    Ok(Json(Approvals { alias, approvals }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AliasQuery {
    /// The protected alias; `production` when left out.
    alias: Option<String>,
}

/// A model version number as MLflow's clients send it: `"3"` or `3`.
#[derive(ToSchema)]
// For the schema (one of the variants); it is read by `req::text_or_number`, below.
#[serde(untagged)]
enum VersionNumberIn {
    Text(String),
    Number(u64),
}

impl VersionNumberIn {
    fn text(self) -> String {
        match self {
            VersionNumberIn::Text(text) => text,
            VersionNumberIn::Number(n) => n.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for VersionNumberIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a model version number, as text (\"3\") or a whole number (3)";
        match crate::req::text_or_number(deserializer, EXPECTING)? {
            crate::req::TextOrNumber::Text(text) => Ok(VersionNumberIn::Text(text)),
            crate::req::TextOrNumber::Number(n) => n
                .as_u64()
                .map(VersionNumberIn::Number)
                .ok_or_else(|| crate::req::not_expected(&n, EXPECTING)),
        }
    }
}

/// A gated move of an alias.
#[derive(Deserialize, ToSchema)]
struct MoveIn {
    /// The version to put behind the alias.
    version: VersionNumberIn,
    /// An admin's reason to move past a failing gate; the report records it.
    override_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Moved {
    alias: String,
    version: String,
    /// The gate report's digest; null for an alias without a gate.
    gate_report: Option<String>,
    overridden: bool,
}

/// `POST …/aliases/{alias} {"version": "3", "override_reason": "…"}`: the move, gated.
#[utoipa::path(post, path = "/{name}/aliases/{alias}", tag = "gates", params(ModelAlias),
    request_body = MoveIn,
    responses((status = 200, description = "The alias moved, with the report its gate made", body = Moved)))]
async fn move_alias(
    State(state): State<AppState>,
    caller: Who,
    crate::req::Actor(actor): crate::req::Actor,
    Path(ModelAlias { name, alias }): Path<ModelAlias>,
    Body(body): Body<MoveIn>,
) -> ApiResult<Json<Moved>> {
    let version = crate::req::version_number(&body.version.text())?;
    let override_reason = body.override_reason;
    let pass = pass_for(
        &state,
        caller.as_ref().map(|Extension(c)| c.as_ref()),
        &actor,
        Move {
            name: &name,
            alias: &alias,
            stage: None,
            version: version.0,
        },
        override_reason,
    )
    .await?;
    let digest = pass.as_ref().map(GatePass::digest);
    let overridden = pass.as_ref().is_some_and(|p| p.overridden);
    registry::set_alias(&state.store, &actor, name, alias.clone(), version, pass).await?;
    Ok(Json(Moved {
        alias,
        version: version.0.to_string(),
        gate_report: digest,
        overridden,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportsQuery {
    /// Only this version's reports.
    version: Option<String>,
    /// 1 to 1000; 100 when left out.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    max_results: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct GateReports {
    /// Newest first.
    gate_reports: Vec<stored::StoredReport>,
}

#[derive(Serialize, ToSchema)]
struct GateReportRead {
    gate_report: stored::StoredReport,
}

#[utoipa::path(get, path = "/{name}/gate-reports", tag = "gates", params(ModelName, ReportsQuery),
    responses((status = 200, description = "The reports the model's gated moves left", body = GateReports)))]
async fn list_reports(
    State(state): State<AppState>,
    Path(ModelName { name }): Path<ModelName>,
    Query(q): Query<ReportsQuery>,
) -> ApiResult<Json<GateReports>> {
    let version = q
        .version
        .as_deref()
        .map(crate::req::version_number)
        .transpose()?;
    let limit = match q.max_results.as_deref() {
        None => 100,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "`max_results` must be a whole number from 1 to 1000, got `{raw}`"
                ))
                .at_column(Some("max_results"), None)
            })?,
    };
    let model = registry::get_registered_model(&state.store, &name).await?;
    let reports = stored::reports(
        &state.store,
        &name,
        version.map(|v| v.0),
        model.creation_timestamp,
        limit,
    )
    .await?;
    Ok(Json(GateReports {
        gate_reports: reports,
    }))
}

#[utoipa::path(get, path = "/{name}/gate-reports/{digest}", tag = "gates",
    params(("name" = String, Path, description = "The registered model"),
           ("digest" = String, Path, description = "The report's digest")),
    responses((status = 200, description = "One gate report", body = GateReportRead)))]
async fn get_report(
    State(state): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
) -> ApiResult<Json<GateReportRead>> {
    let report = stored::report(&state.store, &digest).await?;
    if report.name != name {
        return Err(ApiError::not_found(format!(
            "no gate report of `{name}` has the digest {digest}"
        )));
    }
    Ok(Json(GateReportRead {
        gate_report: report,
    }))
}

/// Nested under `/api/v1/models`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_policies))
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(dry_run))
        .routes(routes!(list_approvals, approve))
        .routes(routes!(move_alias))
        .routes(routes!(list_reports))
        .routes(routes!(get_report))
}

#[cfg(test)]
mod version_tests {
    use super::VersionNumberIn;

    #[test]
    fn a_version_number_is_text_or_a_whole_number() {
        let read =
            |text: &str| serde_json::from_str::<VersionNumberIn>(text).map(VersionNumberIn::text);
        assert_eq!(read(r#""3""#).ok().as_deref(), Some("3"));
        assert_eq!(read("3").ok().as_deref(), Some("3"));
        for refused in ["-1", "3.5", "null", "{}"] {
            let e = read(refused)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("a model version number"), "{refused}: {e}");
        }
    }
}
