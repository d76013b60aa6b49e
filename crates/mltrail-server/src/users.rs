//! MLflow's user routes (`/api/2.0/mlflow/users/*`), which `mlflow.server.get_app_client
//! ("basic-auth", …)` calls: create, get, current, list, update-password, update-admin, delete.
//! Answers carry MLflow's shapes (`{"user": {id, username, is_admin, …}}`, `{}`) so its
//! `AuthServiceClient` works unchanged.
//!
//! Who may call what follows MLflow 3.17: admins create, list, promote and delete users; a user
//! reads and changes only their own account, and must give the current password to change it.
//! Unlike MLflow, listing users is for admins only (MLflow lets anyone logged in list them).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json, Router};
use mltrail_core::ResourceType;
use mltrail_store::access::permissions;
use mltrail_store::access::users::{self, User};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::req::Req;
use crate::AppState;

pub(crate) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users/create", post(create))
        .route("/users/get", get(get_one))
        .route("/users/current", get(current))
        .route("/users/list", get(list))
        .route("/users/update-password", patch(update_password))
        .route("/users/update-admin", patch(update_admin))
        .route("/users/delete", delete(delete_one))
        .route_layer(axum::middleware::from_fn_with_state(state, only_with_auth))
}

/// Without authentication there are no accounts to manage: the routes answer as unknown ones.
pub(crate) async fn only_with_auth(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.auth.mode == crate::auth::AuthMode::Off {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            "user management exists only when the server runs with --auth on",
        )
        .into_response();
    }
    next.run(request).await
}

/// A user as MLflow answers it, with the user's own grants in the 2.x shape (the mlflow 2.x
/// client's `User.from_json` reads both lists; 3.x ignores them) and their release roles.
async fn user_json(state: &AppState, user: &User) -> ApiResult<Value> {
    let mut experiments = Vec::new();
    let mut models = Vec::new();
    for p in permissions::own_grants(&state.store, &user.username).await? {
        match p.resource_type {
            ResourceType::Experiment => experiments.push(json!({
                "experiment_id": p.resource_pattern, "user_id": user.id, "permission": p.permission})),
            ResourceType::RegisteredModel => models.push(json!({
                "name": p.resource_pattern, "user_id": user.id, "permission": p.permission})),
        }
    }
    Ok(json!({
        "id": user.id,
        "username": user.username,
        "is_admin": user.is_admin,
        "experiment_permissions": experiments,
        "registered_model_permissions": models,
        "release_roles": user.release_roles,
    }))
}

fn forbidden(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why)
}

fn require_admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(forbidden(format!("only an admin may {what}")))
    }
}

/// The caller's own user name, when the caller is a user (not a token, not anonymous).
fn own_name(caller: &Caller) -> Option<&str> {
    match &caller.principal {
        mltrail_core::Principal::User(name) => Some(name),
        _ => None,
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
    req: Req,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "create users")?;
    let (username, password) = (req.str("username")?, req.str("password")?);
    let user = users::create_user(&state.store, &req.actor, &username, &password, false).await?;
    Ok(Json(json!({"user": user_json(&state, &user).await?})))
}

async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
    req: Req,
) -> ApiResult<Json<Value>> {
    let username = req.str("username")?;
    if !caller.admin && own_name(&caller) != Some(username.as_str()) {
        return Err(forbidden("a user may read only their own account"));
    }
    let user = users::get_user(&state.store, &username).await?;
    Ok(Json(json!({"user": user_json(&state, &user).await?})))
}

async fn current(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
) -> ApiResult<Json<Value>> {
    let Some(name) = own_name(&caller) else {
        return Err(ApiError::invalid(format!(
            "{} is not a user: /users/current answers for password logins",
            caller.principal
        )));
    };
    let user = users::get_user(&state.store, name).await?;
    Ok(Json(
        json!({"user": user_json(&state, &user).await?, "is_basic_auth": true}),
    ))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "list users")?;
    let listed = users::list_users(&state.store).await?;
    let mut users = Vec::with_capacity(listed.len());
    for u in &listed {
        let roles = permissions::user_roles(&state.store, &u.username).await?;
        users.push(
            json!({"id": u.id, "username": u.username, "is_admin": u.is_admin,
            "roles": roles, "release_roles": u.release_roles}),
        );
    }
    Ok(Json(json!({"users": users})))
}

async fn update_password(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
    req: Req,
) -> ApiResult<Json<Value>> {
    let (username, password) = (req.str("username")?, req.str("password")?);
    let own = own_name(&caller) == Some(username.as_str());
    if !own && !caller.admin {
        return Err(forbidden("a user may change only their own password"));
    }
    // As MLflow: whoever changes their own password proves they know it, admins included.
    if own {
        let Some(current) = req.opt_str("current_password")? else {
            return Err(ApiError::invalid(
                "Current password is required when changing your own password.",
            ));
        };
        if users::check_password(&state.store, &username, &current)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid("Current password does not match."));
        }
        if current == password {
            return Err(ApiError::invalid(
                "New password must differ from the current password.",
            ));
        }
    }
    users::update_password(&state.store, &req.actor, &username, &password).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn update_admin(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
    req: Req,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "change who is an admin")?;
    let username = req.str("username")?;
    let is_admin = match req.value("is_admin") {
        Some(Value::Bool(b)) => *b,
        None => return Err(ApiError::missing("is_admin")),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Parameter 'is_admin' must be a JSON boolean (true or false), got {other}"
            )))
        }
    };
    users::update_admin(&state.store, &req.actor, &username, is_admin).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}

async fn delete_one(
    State(state): State<AppState>,
    Extension(caller): Extension<std::sync::Arc<Caller>>,
    req: Req,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "delete users")?;
    let username = req.str("username")?;
    if own_name(&caller) == Some(username.as_str()) {
        return Err(ApiError::bad_request(
            "Users cannot delete their own account. Ask another admin to delete this user instead.",
        ));
    }
    users::delete_user(&state.store, &req.actor, &username).await?;
    state.auth.forget_all();
    Ok(Json(json!({})))
}
