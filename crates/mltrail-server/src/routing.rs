//! `/api/v1/deployments/{deployment}/policy`: a deployment's routing policy, set, read and
//! ended through the tracking server (each change an audit event) and followed by its serving
//! replicas; `…/policy/state`: what the policy learned, each replica's report added to the
//! total in one transaction (each report an audit event digesting the new total).

use axum::extract::{Path, State};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::{required_text, Body};
use crate::AppState;
use mltrail_serving::routing::report::ExperimentReport;
use mltrail_serving::routing::{Policy, RoutingState};
use mltrail_store::routing::{self, StoredPolicy};

fn check_deployment(deployment: &str) -> ApiResult<()> {
    if deployment.is_empty() || deployment.len() > 256 || deployment.contains(':') {
        return Err(ApiError::invalid(format!(
            "deployment `{deployment}` must be 1-256 characters without `:`"
        ))
        .at_column(Some("deployment"), None));
    }
    Ok(())
}

/// A deployment's routing policy as stored.
#[derive(Serialize, ToSchema)]
struct PolicyRead {
    deployment: String,
    /// The policy in its canonical form: `{"kind", "arms", …}`.
    #[schema(value_type = Object)]
    policy: Value,
    /// BLAKE3 of the canonical policy, hex.
    digest: String,
    /// The digest's first 16 hex digits, as replicas report it.
    version: String,
    updated_time: i64,
    actor: String,
    /// The failed check that rolled a canary back, if one did.
    #[schema(value_type = Option<Object>)]
    rolled_back: Option<Value>,
}

fn policy_body(stored: &StoredPolicy) -> ApiResult<PolicyRead> {
    let policy: Value = serde_json::from_str(&stored.policy).map_err(ApiError::internal)?;
    Ok(PolicyRead {
        deployment: stored.deployment.clone(),
        policy,
        digest: stored.digest.clone(),
        version: stored.digest[..16.min(stored.digest.len())].to_string(),
        updated_time: stored.updated_time,
        actor: stored.actor.clone(),
        rolled_back: stored
            .rolled_back
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok()),
    })
}

/// A routing policy to put in force.
#[derive(Deserialize, ToSchema)]
struct PolicyIn {
    /// The policy: `{"kind": "fixed"|"canary"|"shadow"|"epsilon_greedy"|…, "arms": […], …}`
    /// (`docs/routing.md`).
    #[schema(required, value_type = Object)]
    policy: Option<Value>,
}

/// A policy as sent, checked as serving will read it.
fn read_policy(body: &PolicyIn) -> ApiResult<Policy> {
    let document = body.policy.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "`policy` (the policy as a JSON object: {\"kind\": …, \"arms\": […]}) is required",
        )
        .at_column(Some("policy"), None)
    })?;
    Policy::from_json(document).map_err(|e| {
        let field = format!("policy.{}", e.field);
        ApiError::invalid(e.to_string()).at_column(Some(&field), None)
    })
}

#[utoipa::path(get, path = "/{deployment}/policy", tag = "routing", params(Deployment),
    responses((status = 200, description = "The policy in force", body = PolicyRead)))]
async fn get_policy(
    State(state): State<AppState>,
    Path(Deployment { deployment }): Path<Deployment>,
) -> ApiResult<Json<PolicyRead>> {
    check_deployment(&deployment)?;
    let stored = routing::policy(&state.store, &deployment)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("deployment `{deployment}` has no routing policy"))
        })?;
    Ok(Json(policy_body(&stored)?))
}

#[utoipa::path(put, path = "/{deployment}/policy", tag = "routing", params(Deployment),
    request_body = PolicyIn,
    responses((status = 200, description = "The policy now in force", body = PolicyRead)))]
async fn put_policy(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(Deployment { deployment }): Path<Deployment>,
    Body(body): Body<PolicyIn>,
) -> ApiResult<Json<PolicyRead>> {
    check_deployment(&deployment)?;
    let policy = read_policy(&body)?;
    // Replicas load every arm; one that names nothing would leave them on the old policy.
    for arm in &policy.arms {
        use mltrail_serving::deployment::ModelRef;
        let found = match arm {
            ModelRef::Version { name, version } => {
                mltrail_store::registry::get_model_version(&state.store, name, *version)
                    .await
                    .map(|_| ())
            }
            ModelRef::Alias { name, alias } => {
                mltrail_store::registry::get_version_by_alias(&state.store, name, alias)
                    .await
                    .map(|_| ())
            }
        };
        found.map_err(|e| {
            ApiError::invalid(format!(
                "policy `arms`: `{arm}` names no model version ({e})"
            ))
            .at_column(Some("policy.arms"), None)
        })?;
    }
    if let mltrail_serving::routing::Rule::Canary(canary) = &policy.rule {
        for monitor in &canary.monitors {
            mltrail_store::monitors::get_monitor(
                &state.store,
                &mltrail_core::MonitorId::from(monitor.clone()),
            )
            .await
            .map_err(|e| {
                ApiError::invalid(format!(
                    "policy `monitors`: `{monitor}` is not a monitor ({e})"
                ))
                .at_column(Some("policy.monitors"), None)
            })?;
        }
    }
    let stored = routing::set_policy(
        &state.store,
        &actor,
        deployment,
        policy.canonical.clone(),
        policy.digest.clone(),
    )
    .await?;
    Ok(Json(policy_body(&stored)?))
}

#[derive(Serialize, ToSchema)]
struct PolicyDeleted {
    deployment: String,
    deleted: bool,
}

#[utoipa::path(delete, path = "/{deployment}/policy", tag = "routing", params(Deployment),
    responses((status = 200, description = "The deployment's replicas go back to their own model", body = PolicyDeleted)))]
async fn delete_policy(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(Deployment { deployment }): Path<Deployment>,
) -> ApiResult<Json<PolicyDeleted>> {
    check_deployment(&deployment)?;
    routing::delete_policy(&state.store, &actor, deployment.clone()).await?;
    Ok(Json(PolicyDeleted {
        deployment,
        deleted: true,
    }))
}

/// The deployment a routing route is about.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct Deployment {
    /// 1-256 characters without `:`.
    deployment: String,
}

/// What a policy learned, summed over every replica's reports.
#[derive(Serialize, ToSchema)]
struct LearnedState {
    deployment: String,
    policy_digest: String,
    /// The routing state (per arm counts and sums); null before any report.
    #[schema(value_type = Option<Object>)]
    state: Option<Value>,
    digest: Option<String>,
    reports: i64,
    updated_time: Option<i64>,
}

fn state_body(
    deployment: &str,
    policy: &str,
    stored: Option<routing::StoredState>,
) -> ApiResult<LearnedState> {
    let (state, digest, reports, updated_time) = match stored {
        Some(s) => (
            Some(serde_json::from_str::<Value>(&s.state).map_err(ApiError::internal)?),
            Some(s.digest),
            s.reports,
            Some(s.updated_time),
        ),
        None => (None, None, 0, None),
    };
    Ok(LearnedState {
        deployment: deployment.to_string(),
        policy_digest: policy.to_string(),
        state,
        digest,
        reports,
        updated_time,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StateQuery {
    /// A policy's digest; the policy in force when left out.
    policy: Option<String>,
}

/// What a policy learned: the one in force, or `?policy=<digest>`'s.
#[utoipa::path(get, path = "/{deployment}/policy/state", tag = "routing", params(Deployment, StateQuery),
    responses((status = 200, description = "What the policy learned", body = LearnedState)))]
async fn get_state(
    State(state): State<AppState>,
    Path(Deployment { deployment }): Path<Deployment>,
    axum::extract::Query(query): axum::extract::Query<StateQuery>,
) -> ApiResult<Json<LearnedState>> {
    check_deployment(&deployment)?;
    let digest = match query.policy {
        Some(d) => d,
        None => {
            routing::policy(&state.store, &deployment)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!("deployment `{deployment}` has no routing policy"))
                })?
                .digest
        }
    };
    let stored = routing::state(&state.store, &deployment, &digest).await?;
    Ok(Json(state_body(&deployment, &digest, stored)?))
}

/// A replica's report of what it learned.
#[derive(Deserialize, ToSchema)]
struct StateReport {
    /// What the replica learned since its last report, for the policy it names.
    #[schema(required, value_type = Object)]
    delta: Option<Value>,
    /// The report's id (a UUID): a report sent twice is added once.
    #[schema(required, nullable = false)]
    report_id: Option<String>,
}

/// A replica's report: `{"delta": <what it learned since its last report>}` for the policy
/// the delta names; answers the new total.
#[utoipa::path(post, path = "/{deployment}/policy/state", tag = "routing", params(Deployment),
    request_body = StateReport,
    responses((status = 200, description = "The new total", body = LearnedState)))]
async fn report_state(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(Deployment { deployment }): Path<Deployment>,
    Body(body): Body<StateReport>,
) -> ApiResult<Json<LearnedState>> {
    check_deployment(&deployment)?;
    let delta: RoutingState = body
        .delta
        .ok_or_else(|| {
            ApiError::invalid("`delta` (a routing state) is required")
                .at_column(Some("delta"), None)
        })
        .and_then(|d| {
            serde_json::from_value(d).map_err(|e| {
                ApiError::invalid(format!("`delta` is not a routing state: {e}"))
                    .at_column(Some("delta"), None)
            })
        })?;
    let report_id = required_text(
        body.report_id.as_deref(),
        "report_id",
        "the report's id, a UUID",
    )?;
    let report_id = uuid::Uuid::parse_str(report_id)
        .map_err(|_| {
            ApiError::invalid(format!("`report_id` must be a UUID, got `{report_id}`"))
                .at_column(Some("report_id"), None)
        })?
        .to_string();
    // The policy is read back from the server's own copy (in force now or earlier: a replica
    // reports its old policy's last learning when the policy changes): its arm count and
    // context width decide which states fit, whatever the replica believes.
    let policy = match routing::policy_version(&state.store, &deployment, &delta.policy).await? {
        Some(text) => serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| Policy::from_json(&v).ok())
            .ok_or_else(|| ApiError::internal("the stored policy cannot be read"))?,
        None => {
            return Err(ApiError::invalid(format!(
                "`delta` belongs to policy {}, which deployment `{deployment}` never had",
                delta.policy
            ))
            .at_column(Some("delta"), None))
        }
    };
    let (arms, width) = (policy.arms.len(), policy.context_width());
    delta
        .check(&policy.digest, arms, width)
        .map_err(|e| ApiError::invalid(format!("`delta`: {e}")).at_column(Some("delta"), None))?;
    let digest = policy.digest.clone();
    let merged = routing::add_state(
        &state.store,
        &actor,
        deployment.clone(),
        digest.clone(),
        report_id,
        move |stored| {
            let mut total = match stored {
                Some(text) => serde_json::from_str::<RoutingState>(text)
                    .map_err(|e| format!("the stored state cannot be read: {e}"))?,
                None => RoutingState::empty(&delta.policy, arms),
            };
            total.add(&delta);
            Ok((total.canonical(), total.digest()))
        },
    )
    .await?;
    Ok(Json(state_body(&deployment, &digest, Some(merged))?))
}

/// The policy in force for `deployment` and its experiment report; `None` without a policy.
pub(crate) async fn report_of(
    state: &AppState,
    deployment: &str,
) -> ApiResult<Option<(StoredPolicy, ExperimentReport)>> {
    let Some(stored) = routing::policy(&state.store, deployment).await? else {
        return Ok(None);
    };
    let policy = serde_json::from_str::<Value>(&stored.policy)
        .ok()
        .and_then(|v| Policy::from_json(&v).ok())
        .ok_or_else(|| ApiError::internal("the stored policy cannot be read"))?;
    let learned = match routing::state(&state.store, deployment, &policy.digest).await? {
        Some(s) => serde_json::from_str::<RoutingState>(&s.state).map_err(ApiError::internal)?,
        None => RoutingState::empty(&policy.digest, policy.arms.len()),
    };
    let share = match &policy.rule {
        mltrail_serving::routing::Rule::Canary(canary) => {
            mltrail_serving::routing::canary::share_now(
                canary,
                stored.updated_time,
                stored.rolled_back.is_some(),
            )
        }
        _ => 0.0,
    };
    let report = mltrail_serving::routing::report::experiment(&policy, &learned, share);
    Ok(Some((stored, report)))
}

/// The experiment report of a deployment's policy in force.
#[derive(Serialize, ToSchema)]
struct Experiment {
    /// Per arm requests, rewards, mean reward with its interval, current propensities, and
    /// the regret estimate.
    #[serde(flatten)]
    report: ExperimentReport,
    deployment: String,
    #[schema(value_type = Option<Object>)]
    rolled_back: Option<Value>,
}

/// The experiment view of the policy in force: per arm requests, rewards, mean reward with
/// its interval, current propensities, and the regret estimate.
#[utoipa::path(get, path = "/{deployment}/experiment", tag = "routing", params(Deployment),
    responses((status = 200, description = "The experiment report", body = Experiment)))]
async fn experiment(
    State(state): State<AppState>,
    Path(Deployment { deployment }): Path<Deployment>,
) -> ApiResult<Json<Experiment>> {
    check_deployment(&deployment)?;
    let (stored, report) = report_of(&state, &deployment).await?.ok_or_else(|| {
        ApiError::not_found(format!("deployment `{deployment}` has no routing policy"))
    })?;
    let rolled_back = stored
        .rolled_back
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok());
    Ok(Json(Experiment {
        report,
        deployment,
        rolled_back,
    }))
}

/// The web UI's panel of a deployment's experiment.
pub(crate) async fn experiment_view(
    state: &AppState,
    deployment: &str,
) -> ApiResult<Option<mltrail_web::experiments::ExperimentView>> {
    let Some((stored, report)) = report_of(state, deployment).await? else {
        return Ok(None);
    };
    Ok(Some(mltrail_web::experiments::ExperimentView {
        experiment: report.experiment,
        policy: report.policy,
        kind: report.kind.to_string(),
        version: report.version,
        set_by: stored.actor,
        set_at: stored.updated_time,
        arms: report
            .arms
            .into_iter()
            .map(|a| mltrail_web::experiments::ArmRow {
                arm: a.arm,
                requests: a.requests,
                rewards: a.rewards,
                mean_reward: a.mean_reward,
                interval: a.interval,
                propensity: a.propensity,
            })
            .collect(),
        regret: report.regret,
        warnings: report.warnings,
        rolled_back: stored.rolled_back,
        policy_json: stored.policy,
    }))
}

/// A replica's finding that the canary in force failed a check.
#[derive(Deserialize, ToSchema)]
struct RollBack {
    /// The canary policy's digest.
    #[schema(required, nullable = false)]
    policy: Option<String>,
    /// The failed check and its values.
    #[schema(required, value_type = Object)]
    verdict: Option<Value>,
}

#[derive(Serialize, ToSchema)]
struct RolledBack {
    deployment: String,
    /// False when an earlier report rolled it back already.
    rolled_back: bool,
    /// Where an alias-driven canary's alias went: `{"alias", "moved_to"}` or
    /// `{"alias", "not_moved": why}`.
    #[schema(value_type = Option<Object>)]
    alias: Option<Value>,
}

/// A replica found that the canary in force failed a check: `{"policy": <digest>, "verdict":
/// {...}}`. The first report rolls it back (an audit event); later ones change nothing.
#[utoipa::path(post, path = "/{deployment}/policy/rollback", tag = "routing", params(Deployment),
    request_body = RollBack,
    responses((status = 200, description = "The canary is rolled back", body = RolledBack)))]
async fn roll_back(
    State(state): State<AppState>,
    caller: Option<Extension<std::sync::Arc<crate::auth::Caller>>>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(Deployment { deployment }): Path<Deployment>,
    Body(body): Body<RollBack>,
) -> ApiResult<Json<RolledBack>> {
    check_deployment(&deployment)?;
    let digest = required_text(
        body.policy.as_deref(),
        "policy",
        "the canary policy's digest",
    )?
    .to_string();
    let verdict = body
        .verdict
        .as_ref()
        .filter(|v| v.is_object())
        .ok_or_else(|| {
            ApiError::invalid("`verdict` (the failed check and its values, an object) is required")
                .at_column(Some("verdict"), None)
        })?;
    let mut verdict = verdict.clone();
    let stored = routing::policy(&state.store, &deployment).await?;
    let policy = stored
        .as_ref()
        .filter(|p| p.digest == digest)
        .and_then(|p| serde_json::from_str::<Value>(&p.policy).ok())
        .and_then(|v| Policy::from_json(&v).ok());
    // An alias-driven canary: the alias the candidate names goes back to the stable version,
    // through its gate, as the caller; the outcome is part of the verdict the trail digests.
    if let Some(policy) = policy.as_ref().filter(
        |p| matches!(&p.rule, mltrail_serving::routing::Rule::Canary(c) if c.move_alias_back),
    ) {
        if stored.as_ref().is_some_and(|p| p.rolled_back.is_none()) {
            verdict["alias"] = move_alias_back(
                &state,
                caller.as_ref().map(|Extension(c)| c.as_ref()),
                &actor,
                policy,
            )
            .await;
        }
    }
    let canonical =
        String::from_utf8(mltrail_core::jcs::of_value(&verdict)).map_err(ApiError::internal)?;
    let rolled =
        routing::roll_back(&state.store, &actor, deployment.clone(), digest, canonical).await?;
    Ok(Json(RolledBack {
        deployment,
        rolled_back: rolled,
        alias: verdict.get("alias").cloned(),
    }))
}

/// Moves the alias the canary's candidate arm names back to the stable arm's version (the
/// version an alias stable arm names now), through the alias's gate: `{"alias", "moved_to"}`,
/// or `{"alias", "not_moved": why}` (the rollback stands either way).
async fn move_alias_back(
    state: &AppState,
    caller: Option<&crate::auth::Caller>,
    actor: &str,
    policy: &Policy,
) -> Value {
    use mltrail_serving::deployment::ModelRef;
    let (ModelRef::Alias { name, alias }, stable) = (&policy.arms[1], &policy.arms[0]) else {
        return Value::Null;
    };
    let version = match stable {
        ModelRef::Version { version, .. } => Ok(*version),
        ModelRef::Alias { name, alias } => {
            mltrail_store::registry::get_version_by_alias(&state.store, name, alias)
                .await
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    v.version
                        .parse::<i64>()
                        .map(mltrail_core::ModelVersionNumber)
                        .map_err(|e| e.to_string())
                })
        }
    };
    let moved = async {
        let version = version?;
        let pass = crate::gates::pass_for(
            state,
            caller,
            actor,
            crate::gates::Move {
                name,
                alias,
                stage: None,
                version: version.0,
            },
            None,
        )
        .await
        .map_err(|e| e.message)?;
        mltrail_store::registry::set_alias(
            &state.store,
            actor,
            name.clone(),
            alias.clone(),
            version,
            pass,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(version.0)
    }
    .await;
    match moved {
        Ok(v) => json!({"alias": format!("{name}@{alias}"), "moved_to": v.to_string()}),
        Err(why) => json!({"alias": format!("{name}@{alias}"), "not_moved": why}),
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(get_state, report_state))
        .routes(routes!(experiment))
        .routes(routes!(roll_back))
}
