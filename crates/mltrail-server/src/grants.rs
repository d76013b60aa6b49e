//! MLflow's permission and role routes, as `AuthServiceClient` (mlflow 3.17) and the mlflow
//! 2.x client call them:
//! - `/api/3.0/mlflow/users/permissions/{grant,revoke,get,list}` and
//!   `/api/3.0/mlflow/users/current/permissions`;
//! - `/api/3.0/mlflow/roles/*` and `/api/3.0/mlflow/users/roles/list`;
//! - the 2.x per-resource routes `/api/2.0/mlflow/experiments/permissions/*` and
//!   `/api/2.0/mlflow/registered-models/permissions/*`.
//!
//! Who may call: an admin anything; a user grants, revokes and reads grants on what they
//! MANAGE, and reads their own permissions and roles; roles are managed by admins. Every change
//! is an audit event (kind `role`) and takes effect at once on this server (its credential
//! cache is emptied), within [`crate::auth::CACHE_SECONDS`] on others.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json, Router};
use mltrail_core::{Action, Permission, Principal, ResourceType};
use mltrail_store::access::permissions::{self, Existing, Role};
use mltrail_store::access::users;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::req::Req;
use crate::AppState;

type JsonResult = ApiResult<Json<Value>>;
type Who = Extension<Arc<Caller>>;

/// The 3.0 routes, nested under `/api/3.0/mlflow` and `/ajax-api/3.0/mlflow`.
pub(crate) fn routes_v3(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users/permissions/grant", post(grant))
        .route("/users/permissions/revoke", post(revoke))
        .route("/users/permissions/get", get(get_one))
        .route("/users/permissions/list", get(list_of_user))
        .route("/users/current/permissions", get(list_of_caller))
        .route("/users/roles/list", get(roles_of_user))
        .route("/roles/create", post(create_role))
        .route("/roles/get", get(get_role))
        .route("/roles/list", get(list_roles))
        .route("/roles/update", patch(update_role))
        .route("/roles/delete", delete(delete_role))
        .route("/roles/permissions/add", post(add_role_permission))
        .route("/roles/permissions/remove", delete(remove_role_permission))
        .route("/roles/permissions/list", get(list_role_permissions))
        .route("/roles/permissions/update", patch(update_role_permission))
        .route("/roles/assign", post(assign))
        .route("/roles/unassign", delete(unassign))
        .route("/roles/users/list", get(role_users))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::users::only_with_auth,
        ))
}

/// The 2.x per-resource routes, nested under `/api/2.0/mlflow` and `/ajax-api/2.0/mlflow`.
pub(crate) fn routes_v2(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (prefix, rt) in [
        ("/experiments", ResourceType::Experiment),
        ("/registered-models", ResourceType::RegisteredModel),
    ] {
        router = router
            .route(
                &format!("{prefix}/permissions/create"),
                post(
                    move |State(s): State<AppState>, Extension(c): Who, req: Req| async move {
                        v2_write(&s, &c, &req, rt, Existing::Refuse).await
                    },
                ),
            )
            .route(
                &format!("{prefix}/permissions/get"),
                get(
                    move |State(s): State<AppState>, Extension(c): Who, req: Req| async move {
                        v2_read(&s, &c, &req, rt).await
                    },
                ),
            )
            .route(
                &format!("{prefix}/permissions/update"),
                patch(
                    move |State(s): State<AppState>, Extension(c): Who, req: Req| async move {
                        v2_write(&s, &c, &req, rt, Existing::Require).await
                    },
                ),
            )
            .route(
                &format!("{prefix}/permissions/delete"),
                delete(
                    move |State(s): State<AppState>, Extension(c): Who, req: Req| async move {
                        v2_remove(&s, &c, &req, rt).await
                    },
                ),
            );
    }
    router.route_layer(axum::middleware::from_fn_with_state(
        state,
        crate::users::only_with_auth,
    ))
}

fn forbidden(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why)
}

fn resource_type(req: &Req) -> ApiResult<ResourceType> {
    let raw = req.str("resource_type")?;
    ResourceType::parse(&raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid resource type '{raw}'. Valid resource types are: ('experiment', 'registered_model')"
        ))
    })
}

fn permission(req: &Req) -> ApiResult<Permission> {
    let raw = req.str("permission")?;
    Permission::parse(&raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid permission '{raw}'. Valid permissions are: ('READ', 'USE', 'EDIT', 'MANAGE', 'NO_PERMISSIONS', 'DENY')"
        ))
    })
}

fn own_name(caller: &Caller) -> Option<&str> {
    match &caller.principal {
        Principal::User(name) => Some(name),
        _ => None,
    }
}

/// Admins, and users who MANAGE the resource (for `*`: admins only), may change who may use it.
fn may_manage(caller: &Caller, resource_type: ResourceType, id: &str) -> ApiResult<()> {
    if caller.admin {
        return Ok(());
    }
    let manages = id != "*"
        && caller
            .grants
            .as_ref()
            .is_some_and(|g| g.level(resource_type, id).allows(Action::Manage));
    if manages {
        Ok(())
    } else {
        Err(forbidden(format!(
            "{} may not change permissions on {resource_type} `{id}`: that needs MANAGE on it (or an admin, for `*`)",
            caller.principal
        )))
    }
}

fn admin_or_self(caller: &Caller, username: &str, what: &str) -> ApiResult<()> {
    if caller.admin || own_name(caller) == Some(username) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "only an admin or `{username}` may {what}"
        )))
    }
}

fn admin_only(caller: &Caller, what: &str) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(forbidden(format!("only an admin may {what}")))
    }
}

async fn grant(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    let (username, rt) = (req.str("username")?, resource_type(&req)?);
    let id = req.str("resource_id")?;
    may_manage(&caller, rt, &id)?;
    let level = permission(&req)?;
    users::get_user(&state.store, &username).await?;
    permissions::grant(
        &state.store,
        &req.actor,
        &username,
        rt,
        &id,
        level,
        Existing::Refuse,
        false,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn revoke(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    let (username, rt) = (req.str("username")?, resource_type(&req)?);
    let id = req.str("resource_id")?;
    may_manage(&caller, rt, &id)?;
    permissions::revoke(&state.store, &req.actor, &username, rt, &id).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

/// The user's level on one resource, resolved as checks resolve it; `allowed` is MLflow's
/// (whether it reaches USE).
async fn get_one(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    let (username, rt) = (req.str("username")?, resource_type(&req)?);
    let id = req.str("resource_id")?;
    admin_or_self(&caller, &username, "read this user's permissions")?;
    let level = effective(&state, &username, rt, &id).await?;
    Ok(Json(
        json!({"allowed": level.can_use(), "permission": level}),
    ))
}

async fn effective(
    state: &AppState,
    username: &str,
    rt: ResourceType,
    id: &str,
) -> ApiResult<Permission> {
    let user = users::get_user(&state.store, username).await?;
    if user.is_admin {
        return Ok(Permission::Manage);
    }
    let grants = crate::permissions::Grants {
        default: state.auth.default_permission,
        grants: permissions::grants_of(&state.store, user.id).await?,
    };
    Ok(grants.level(rt, id))
}

async fn permission_rows(state: &AppState, username: &str) -> JsonResult {
    let user = users::get_user(&state.store, username).await?;
    let mut rows = Vec::new();
    for role in permissions::user_roles(&state.store, username).await? {
        for p in &role.permissions {
            rows.push(json!({
                "role_id": role.id,
                "role_name": role.name,
                "workspace": role.workspace,
                "resource_type": p.resource_type,
                "resource_pattern": p.resource_pattern,
                "permission": p.permission,
            }));
        }
    }
    Ok(Json(
        json!({"is_admin": user.is_admin, "permissions": rows}),
    ))
}

async fn list_of_user(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    let username = req.str("username")?;
    admin_or_self(&caller, &username, "list this user's permissions")?;
    permission_rows(&state, &username).await
}

async fn list_of_caller(State(state): State<AppState>, Extension(caller): Who) -> JsonResult {
    let Some(name) = own_name(&caller) else {
        return Err(ApiError::invalid(format!(
            "{} is not a user: this route answers for password logins",
            caller.principal
        )));
    };
    permission_rows(&state, name).await
}

async fn roles_of_user(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    let username = req.str("username")?;
    admin_or_self(&caller, &username, "list this user's roles")?;
    let roles = permissions::user_roles(&state.store, &username).await?;
    Ok(Json(json!({"roles": roles})))
}

fn role_id(req: &Req, key: &str) -> ApiResult<i64> {
    req.opt_i64(key)?.ok_or_else(|| ApiError::missing(key))
}

async fn create_role(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    admin_only(&caller, "create roles")?;
    let workspace = req
        .opt_str("workspace")?
        .unwrap_or_else(|| permissions::WORKSPACE.into());
    let description = match req.value("description") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                "Role description must be a string or null.",
            ))
        }
    };
    let role = permissions::create_role(
        &state.store,
        &req.actor,
        &workspace,
        &req.str("name")?,
        description.as_deref(),
    )
    .await?;
    Ok(Json(json!({"role": role})))
}

/// Admins, and users the role is assigned to, may read a role.
async fn readable_role(state: &AppState, caller: &Caller, id: i64) -> ApiResult<Role> {
    if !caller.admin {
        let mine = match own_name(caller) {
            Some(name) => permissions::user_roles(&state.store, name)
                .await?
                .into_iter()
                .any(|r| r.id == id),
            None => false,
        };
        if !mine {
            return Err(forbidden(
                "only an admin or a holder of the role may read it",
            ));
        }
    }
    Ok(permissions::get_role(&state.store, id).await?)
}

async fn get_role(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    let role = readable_role(&state, &caller, role_id(&req, "role_id")?).await?;
    Ok(Json(json!({"role": role})))
}

async fn list_roles(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    admin_only(&caller, "list every role")?;
    for workspace in req.str_list("workspace") {
        if workspace != permissions::WORKSPACE {
            return Err(ApiError::invalid(format!(
                "this server has no workspaces: roles live in workspace `default` (got `{workspace}`)"
            )));
        }
    }
    Ok(Json(
        json!({"roles": permissions::list_roles(&state.store).await?}),
    ))
}

async fn update_role(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    admin_only(&caller, "change roles")?;
    let (name, description) = (req.opt_str("name")?, req.opt_str("description")?);
    if name.is_none() && description.is_none() {
        return Err(ApiError::invalid(
            "At least one of 'name' or 'description' must be provided to update a role.",
        ));
    }
    let role = permissions::update_role(
        &state.store,
        &req.actor,
        role_id(&req, "role_id")?,
        name.as_deref(),
        description.as_deref(),
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({"role": role})))
}

async fn delete_role(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    admin_only(&caller, "delete roles")?;
    permissions::delete_role(&state.store, &req.actor, role_id(&req, "role_id")?).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn add_role_permission(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    admin_only(&caller, "change roles")?;
    let added = permissions::add_role_permission(
        &state.store,
        &req.actor,
        role_id(&req, "role_id")?,
        resource_type(&req)?,
        &req.str("resource_pattern")?,
        permission(&req)?,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({"role_permission": added})))
}

async fn remove_role_permission(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    admin_only(&caller, "change roles")?;
    let id = role_id(&req, "role_permission_id")?;
    permissions::remove_role_permission(&state.store, &req.actor, id).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn list_role_permissions(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    let role = readable_role(&state, &caller, role_id(&req, "role_id")?).await?;
    Ok(Json(json!({"role_permissions": role.permissions})))
}

async fn update_role_permission(
    State(state): State<AppState>,
    Extension(caller): Who,
    req: Req,
) -> JsonResult {
    admin_only(&caller, "change roles")?;
    let updated = permissions::update_role_permission(
        &state.store,
        &req.actor,
        role_id(&req, "role_permission_id")?,
        permission(&req)?,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({"role_permission": updated})))
}

async fn assign(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    admin_only(&caller, "assign roles")?;
    let assignment = permissions::assign_role(
        &state.store,
        &req.actor,
        &req.str("username")?,
        role_id(&req, "role_id")?,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({"assignment": assignment})))
}

async fn unassign(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    admin_only(&caller, "unassign roles")?;
    permissions::unassign_role(
        &state.store,
        &req.actor,
        &req.str("username")?,
        role_id(&req, "role_id")?,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn role_users(State(state): State<AppState>, Extension(caller): Who, req: Req) -> JsonResult {
    admin_only(&caller, "list a role's users")?;
    let assignments =
        permissions::role_assignments(&state.store, role_id(&req, "role_id")?).await?;
    Ok(Json(json!({"assignments": assignments})))
}

/// The resource a 2.x route names: an experiment by `experiment_id`, a model by `name`.
fn v2_resource(req: &Req, rt: ResourceType) -> ApiResult<String> {
    match rt {
        ResourceType::Experiment => Ok(req.experiment_id()?.0.to_string()),
        ResourceType::RegisteredModel => req.str("name"),
    }
}

/// The 2.x answer for one user's grant: `{"experiment_permission": {experiment_id, user_id,
/// permission}}` or `{"registered_model_permission": {name, user_id, permission}}`.
fn v2_json(rt: ResourceType, id: &str, user_id: i64, level: Permission) -> Value {
    match rt {
        ResourceType::Experiment => json!({"experiment_permission": {
            "experiment_id": id, "user_id": user_id, "permission": level}}),
        ResourceType::RegisteredModel => json!({"registered_model_permission": {
            "name": id, "user_id": user_id, "permission": level}}),
    }
}

/// 2.x create and update; 2.x accepts NO_PERMISSIONS (a user held to nothing on it).
async fn v2_write(
    state: &AppState,
    caller: &Caller,
    req: &Req,
    rt: ResourceType,
    existing: Existing,
) -> JsonResult {
    let id = v2_resource(req, rt)?;
    may_manage(caller, rt, &id)?;
    let level = permission(req)?;
    let username = req.str("username")?;
    let user = users::get_user(&state.store, &username).await?;
    permissions::grant(
        &state.store,
        &req.actor,
        &username,
        rt,
        &id,
        level,
        existing,
        true,
    )
    .await?;
    state.auth.forget_all();
    Ok(Json(if existing == Existing::Refuse {
        v2_json(rt, &id, user.id, level)
    } else {
        json!({})
    }))
}

async fn v2_read(state: &AppState, caller: &Caller, req: &Req, rt: ResourceType) -> JsonResult {
    let id = v2_resource(req, rt)?;
    may_manage(caller, rt, &id)?;
    let username = req.str("username")?;
    let user = users::get_user(&state.store, &username).await?;
    match permissions::own_grant(&state.store, &username, rt, &id).await? {
        Some(level) => Ok(Json(v2_json(rt, &id, user.id, level))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!(
                "Permission for user={username} on resource_type={rt}, resource_id={id} not found."
            ),
        )),
    }
}

async fn v2_remove(state: &AppState, caller: &Caller, req: &Req, rt: ResourceType) -> JsonResult {
    let id = v2_resource(req, rt)?;
    may_manage(caller, rt, &id)?;
    permissions::revoke(&state.store, &req.actor, &req.str("username")?, rt, &id).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

/// After an experiment or registered model is created: its creator, when a user, MANAGEs it
/// (as in MLflow, admins included). Their cached grants are forgotten so the next request sees
/// the new one (theirs only: any user may create, and emptying the whole cache each time would
/// let one user make every client pay argon2 again).
pub(crate) async fn creator_manages(state: &AppState, actor: &str, rt: ResourceType, id: &str) {
    let Principal::User(name) = Principal::parse(actor) else {
        return;
    };
    let granted = permissions::grant(
        &state.store,
        actor,
        &name,
        rt,
        id,
        Permission::Manage,
        Existing::Replace,
        false,
    )
    .await;
    match granted {
        Ok(()) => state.auth.forget(&Principal::User(name.clone())),
        Err(e) => {
            tracing::error!(error = %e, user = %name, resource_type = %rt, id, "cannot grant MANAGE to the creator")
        }
    }
}
