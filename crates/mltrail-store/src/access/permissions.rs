//! Who may do what to which experiment or registered model, stored as MLflow 3 stores it:
//! roles (in workspace `default`; this server has no other) hold permissions on a resource by
//! id or on all of a kind (`*`), and are assigned to users. A user's own grants live in a
//! hidden role named `__user_<id>__`, created on their first grant, so every grant is a role
//! permission and one query folds them all ([`grants_of`]).
//!
//! Each change is an audit event on the role it changes (kind `role`): its state holds its
//! name, its permissions and the ids of the users it is assigned to.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::users::user_id;
use crate::audited::{int_key, Audited};
use crate::error::{AlreadyExists, Conflict, Invalid, NotFound};
use crate::sql::{int, opt_text, text};
use crate::{AuditCtx, MetaStore, StoreError, Tx};
use mltrail_core::{Permission, ResourceType};

/// The only workspace: MLflow's name for a server without workspaces.
pub const WORKSPACE: &str = "default";
/// Names of the hidden per-user roles start with this; no other role may.
pub const USER_ROLE_PREFIX: &str = "__user_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePermission {
    pub id: i64,
    pub role_id: i64,
    pub resource_type: ResourceType,
    /// An experiment id, a registered model name, or `*` for all of the kind.
    pub resource_pattern: String,
    pub permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub id: i64,
    pub name: String,
    pub workspace: String,
    pub description: Option<String>,
    pub permissions: Vec<RolePermission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub id: i64,
    pub user_id: i64,
    pub role_id: i64,
}

/// One permission a user holds through one of their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource_type: ResourceType,
    pub resource_pattern: String,
    pub permission: Permission,
}

/// A resource id as a permission names it, in the one spelling checks compare: an
/// experiment's is its integer id without sign or leading zeros (`05` and `+5` are `5`), a
/// registered model's its name; `*` names all of the kind.
pub fn canonical_pattern(resource_type: ResourceType, pattern: &str) -> Result<String, StoreError> {
    let invalid = |why| Invalid::ResourcePattern {
        resource_type: resource_type.as_str(),
        pattern: pattern.to_string(),
        why,
    };
    if pattern == "*" {
        return Ok(pattern.to_string());
    }
    match resource_type {
        ResourceType::Experiment => match pattern.parse::<i64>() {
            Ok(id) if id >= 0 => Ok(id.to_string()),
            _ => Err(invalid("an experiment is named by its integer id, or `*` for all").into()),
        },
        ResourceType::RegisteredModel if pattern.is_empty() => {
            Err(invalid("a registered model is named by its name, or `*` for all").into())
        }
        ResourceType::RegisteredModel => Ok(pattern.to_string()),
    }
}

fn permission_from_row(row: &AnyRow) -> Result<Option<RolePermission>, StoreError> {
    // A kind this server does not know (a database shared with a newer version) grants nothing
    // here rather than failing every check.
    let Some(resource_type) = ResourceType::parse(&text(row, "resource_type")?) else {
        return Ok(None);
    };
    let level = text(row, "permission")?;
    Ok(Some(RolePermission {
        id: int(row, "permission_id")?,
        role_id: int(row, "role_id")?,
        resource_type,
        resource_pattern: text(row, "resource_pattern")?,
        permission: Permission::parse(&level).ok_or(Conflict::StoredPermission(level))?,
    }))
}

async fn role_permissions(
    conn: &mut AnyConnection,
    role_id: i64,
) -> Result<Vec<RolePermission>, StoreError> {
    let rows =
        sqlx::query("SELECT * FROM role_permissions WHERE role_id = $1 ORDER BY permission_id")
            .bind(role_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .iter()
        .map(permission_from_row)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect())
}

async fn find_role(conn: &mut AnyConnection, role_id: i64) -> Result<Option<Role>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM roles WHERE role_id = $1")
        .bind(role_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Role {
        id: role_id,
        name: text(&row, "name")?,
        workspace: text(&row, "workspace")?,
        description: opt_text(&row, "description")?,
        permissions: role_permissions(conn, role_id).await?,
    }))
}

async fn role(conn: &mut AnyConnection, role_id: i64) -> Result<Role, StoreError> {
    find_role(conn, role_id)
        .await?
        .ok_or_else(|| NotFound::Role(role_id).into())
}

/// A role as the audit trail records it: the role, its permissions and its users' ids.
pub(crate) struct RoleRef(pub i64);

impl Audited for RoleRef {
    const KIND: &'static str = "role";
    const LIST_IDS: &'static str = "SELECT CAST(role_id AS TEXT) AS id FROM roles";

    int_key!(RoleRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(role) = find_role(conn, self.0).await? else {
            return Ok(None);
        };
        let users: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM role_assignments WHERE role_id = $1 ORDER BY user_id",
        )
        .bind(self.0)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(serde_json::json!({"role": role, "users": users})))
    }
}

async fn next_id(tx: &mut Tx, sql: &'static str) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(sql).fetch_one(&mut *tx).await?)
}

/// The id of the user's hidden role, created (and assigned to them) when `create` and absent.
async fn own_role(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    user: i64,
    create: bool,
) -> Result<Option<i64>, StoreError> {
    let found = find_own_role(tx, user).await?;
    if found.is_some() || !create {
        return Ok(found);
    }
    let id = insert_role(tx, &own_role_name(user), None).await?;
    insert_assignment(tx, user, id).await?;
    audit.record(tx, "role.create", &RoleRef(id)).await?;
    Ok(Some(id))
}

async fn insert_role(
    tx: &mut Tx,
    name: &str,
    description: Option<&str>,
) -> Result<i64, StoreError> {
    let id = next_id(tx, "SELECT COALESCE(MAX(role_id), 0) + 1 FROM roles").await?;
    sqlx::query(
        "INSERT INTO roles (role_id, name, workspace, description) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(name.to_string())
    .bind(WORKSPACE)
    .bind(description.map(str::to_string))
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

async fn insert_assignment(tx: &mut Tx, user: i64, role: i64) -> Result<i64, StoreError> {
    let id = next_id(
        tx,
        "SELECT COALESCE(MAX(assignment_id), 0) + 1 FROM role_assignments",
    )
    .await?;
    sqlx::query(
        "INSERT INTO role_assignments (assignment_id, user_id, role_id) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(user)
    .bind(role)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// The permission row a role holds on one resource, if any.
async fn held(
    tx: &mut AnyConnection,
    role: i64,
    resource_type: ResourceType,
    pattern: &str,
) -> Result<Option<(i64, Permission)>, StoreError> {
    let row = sqlx::query("SELECT * FROM role_permissions WHERE role_id = $1 AND resource_type = $2 AND resource_pattern = $3")
        .bind(role)
        .bind(resource_type.as_str())
        .bind(pattern.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row
        .as_ref()
        .map(permission_from_row)
        .transpose()?
        .flatten()
        .map(|p| (p.id, p.permission)))
}

async fn insert_permission(
    tx: &mut Tx,
    role: i64,
    resource_type: ResourceType,
    pattern: &str,
    permission: Permission,
) -> Result<i64, StoreError> {
    let id = next_id(
        tx,
        "SELECT COALESCE(MAX(permission_id), 0) + 1 FROM role_permissions",
    )
    .await?;
    sqlx::query("INSERT INTO role_permissions (permission_id, role_id, resource_type, resource_pattern, permission) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(role)
        .bind(resource_type.as_str())
        .bind(pattern.to_string())
        .bind(permission.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(id)
}

async fn set_permission(tx: &mut Tx, id: i64, permission: Permission) -> Result<(), StoreError> {
    sqlx::query("UPDATE role_permissions SET permission = $1 WHERE permission_id = $2")
        .bind(permission.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How [`grant`] treats a grant the user holds already on that resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse (MLflow 3's grant route: change a level with revoke, then grant).
    Refuse,
    /// Replace the level (the grant a creator receives, and the 2.x update route).
    Replace,
    /// Only replace: no grant held is `NotFound` (the 2.x update route).
    Require,
}

/// Gives `username` `permission` on one resource (or `*`) through their hidden role.
/// `NO_PERMISSIONS` is refused unless `allow_none` (only the mlflow 2.x routes store it).
#[allow(clippy::too_many_arguments)]
pub async fn grant(
    store: &MetaStore,
    actor: &str,
    username: &str,
    resource_type: ResourceType,
    resource_id: &str,
    permission: Permission,
    existing: Existing,
    allow_none: bool,
) -> Result<(), StoreError> {
    let id = canonical_pattern(resource_type, resource_id)?;
    if !permission.grantable() && !allow_none {
        return Err(Invalid::UngrantablePermission(resource_type.as_str()).into());
    }
    let name = username.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let user = user_id(tx, &name).await?;
            let role = own_role(tx, audit, user, existing != Existing::Require).await?;
            let current = match role {
                Some(role) => held(tx, role, resource_type, &id).await?,
                None => None,
            };
            let missing = || NotFound::Permission {
                username: name.clone(),
                resource_type: resource_type.as_str(),
                resource_id: id.clone(),
            };
            let role = role.ok_or_else(missing)?;
            match (current, existing) {
                (Some(_), Existing::Refuse) => {
                    return Err(AlreadyExists::Permission {
                        username: name.clone(),
                        resource_type: resource_type.as_str(),
                        resource_id: id.clone(),
                    }
                    .into())
                }
                (None, Existing::Require) => return Err(missing().into()),
                (Some((row, _)), _) => set_permission(tx, row, permission).await?,
                (None, _) => {
                    insert_permission(tx, role, resource_type, &id, permission).await?;
                }
            }
            audit.record(tx, "permission.grant", &RoleRef(role)).await
        })
        .await
}

/// Takes back the grant `username` holds on one resource through their hidden role.
pub async fn revoke(
    store: &MetaStore,
    actor: &str,
    username: &str,
    resource_type: ResourceType,
    resource_id: &str,
) -> Result<(), StoreError> {
    // A pattern no grant can hold is not held.
    let id =
        canonical_pattern(resource_type, resource_id).unwrap_or_else(|_| resource_id.to_string());
    let name = username.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let user = user_id(tx, &name).await?;
            let missing = || NotFound::Permission {
                username: name.clone(),
                resource_type: resource_type.as_str(),
                resource_id: id.clone(),
            };
            let role = own_role(tx, audit, user, false)
                .await?
                .ok_or_else(missing)?;
            let (row, _) = held(tx, role, resource_type, &id)
                .await?
                .ok_or_else(missing)?;
            sqlx::query("DELETE FROM role_permissions WHERE permission_id = $1")
                .bind(row)
                .execute(&mut *tx)
                .await?;
            audit.record(tx, "permission.revoke", &RoleRef(role)).await
        })
        .await
}

/// The name of a user's hidden role.
fn own_role_name(user: i64) -> String {
    format!("{USER_ROLE_PREFIX}{user}__")
}

async fn find_own_role(conn: &mut AnyConnection, user: i64) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT role_id FROM roles WHERE workspace = $1 AND name = $2")
            .bind(WORKSPACE)
            .bind(own_role_name(user))
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// The grants `username` holds through their own role (not other roles'), by id.
pub async fn own_grants(
    store: &MetaStore,
    username: &str,
) -> Result<Vec<RolePermission>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let user = user_id(&mut conn, username).await?;
    match find_own_role(&mut conn, user).await? {
        Some(role) => role_permissions(&mut conn, role).await,
        None => Ok(Vec::new()),
    }
}

/// The grant `username` holds on one resource through their own role (not other roles).
pub async fn own_grant(
    store: &MetaStore,
    username: &str,
    resource_type: ResourceType,
    resource_id: &str,
) -> Result<Option<Permission>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let user = user_id(&mut conn, username).await?;
    let role = find_own_role(&mut conn, user).await?;
    let Ok(id) = canonical_pattern(resource_type, resource_id) else {
        return Ok(None);
    };
    match role {
        Some(role) => Ok(held(&mut conn, role, resource_type, &id)
            .await?
            .map(|(_, p)| p)),
        None => Ok(None),
    }
}

/// Every permission the user holds through any of their roles, their own included.
pub async fn grants_of(store: &MetaStore, user: i64) -> Result<Vec<Grant>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.* FROM role_permissions p JOIN role_assignments a ON a.role_id = p.role_id \
         WHERE a.user_id = $1 ORDER BY p.permission_id",
    )
    .bind(user)
    .fetch_all(store.readers())
    .await?;
    Ok(rows
        .iter()
        .map(permission_from_row)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|p| Grant {
            resource_type: p.resource_type,
            resource_pattern: p.resource_pattern,
            permission: p.permission,
        })
        .collect())
}

/// The ids of the roles holding a permission on exactly this resource.
async fn roles_on(
    tx: &mut Tx,
    resource_type: ResourceType,
    pattern: &str,
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT role_id FROM role_permissions WHERE resource_type = $1 AND resource_pattern = $2 ORDER BY role_id",
    )
    .bind(resource_type.as_str())
    .bind(pattern.to_string())
    .fetch_all(&mut *tx)
    .await?)
}

/// Inside the deletion of a registered model: every role's permission on it goes (its name
/// may be taken again, and the new model must not inherit the old one's grants). In the
/// deletion's transaction, so no one can create the name again in between.
pub(crate) async fn forget_resource(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    resource_type: ResourceType,
    pattern: &str,
) -> Result<(), StoreError> {
    for role in roles_on(tx, resource_type, pattern).await? {
        drop_grant(tx, role, resource_type, pattern).await?;
        audit
            .record(tx, "permission.revoke", &RoleRef(role))
            .await?;
    }
    Ok(())
}

async fn drop_grant(
    tx: &mut Tx,
    role: i64,
    resource_type: ResourceType,
    pattern: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM role_permissions WHERE role_id = $1 AND resource_type = $2 AND resource_pattern = $3")
        .bind(role)
        .bind(resource_type.as_str())
        .bind(pattern.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Inside the rename of a registered model: every role's permission on it moves to the new
/// name, in the rename's transaction (between two transactions, someone could create the freed
/// name, receive MANAGE on it as its creator, and see that grant moved onto the renamed model).
pub(crate) async fn rename_resource(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    resource_type: ResourceType,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    for role in roles_on(tx, resource_type, from).await? {
        // A grant the role held on the new name already stays; the old one goes.
        if held(tx, role, resource_type, to).await?.is_some() {
            drop_grant(tx, role, resource_type, from).await?;
        } else {
            sqlx::query("UPDATE role_permissions SET resource_pattern = $1 WHERE role_id = $2 AND resource_type = $3 AND resource_pattern = $4")
                .bind(to.to_string())
                .bind(role)
                .bind(resource_type.as_str())
                .bind(from.to_string())
                .execute(&mut *tx)
                .await?;
        }
        audit
            .record(tx, "permission.rename", &RoleRef(role))
            .await?;
    }
    Ok(())
}

/// Inside a user's deletion: their hidden role goes, and they leave every other role.
pub(crate) async fn forget_user(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    user: i64,
) -> Result<(), StoreError> {
    let own = own_role(tx, audit, user, false).await?;
    let roles: Vec<i64> = sqlx::query_scalar(
        "SELECT role_id FROM role_assignments WHERE user_id = $1 ORDER BY role_id",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM role_assignments WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for role in roles.into_iter().filter(|r| Some(*r) != own) {
        audit.record(tx, "role.unassign", &RoleRef(role)).await?;
    }
    if let Some(own) = own {
        delete_role_rows(tx, own).await?;
        audit.record(tx, "role.delete", &RoleRef(own)).await?;
    }
    Ok(())
}

async fn delete_role_rows(tx: &mut Tx, role: i64) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM role_permissions WHERE role_id = $1",
        "DELETE FROM role_assignments WHERE role_id = $1",
        "DELETE FROM roles WHERE role_id = $1",
    ] {
        sqlx::query(sql).bind(role).execute(&mut *tx).await?;
    }
    Ok(())
}

fn check_role_name(name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(Invalid::RoleName.into());
    }
    if name.starts_with(USER_ROLE_PREFIX) {
        return Err(Invalid::ReservedRoleName(name.to_string()).into());
    }
    Ok(())
}

fn check_workspace(workspace: &str) -> Result<(), StoreError> {
    if workspace != WORKSPACE {
        return Err(Invalid::Workspace(workspace.to_string()).into());
    }
    Ok(())
}

async fn name_taken(tx: &mut Tx, name: &str, other_than: i64) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT role_id FROM roles WHERE workspace = $1 AND name = $2 AND role_id != $3",
    )
    .bind(WORKSPACE)
    .bind(name.to_string())
    .bind(other_than)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(found.is_some())
}

pub async fn create_role(
    store: &MetaStore,
    actor: &str,
    workspace: &str,
    name: &str,
    description: Option<&str>,
) -> Result<Role, StoreError> {
    check_workspace(workspace)?;
    check_role_name(name)?;
    let (name, description) = (name.to_string(), description.map(str::to_string));
    store
        .transaction(actor, async move |tx, audit| {
            if name_taken(tx, &name, 0).await? {
                return Err(AlreadyExists::Role {
                    name: name.clone(),
                    workspace: WORKSPACE.to_string(),
                }
                .into());
            }
            let id = insert_role(tx, &name, description.as_deref()).await?;
            audit.record(tx, "role.create", &RoleRef(id)).await?;
            role(tx, id).await
        })
        .await
}

pub async fn get_role(store: &MetaStore, role_id: i64) -> Result<Role, StoreError> {
    let mut conn = store.readers().acquire().await?;
    role(&mut conn, role_id).await
}

/// Every role (the hidden per-user ones included, as MLflow lists them), by id.
pub async fn list_roles(store: &MetaStore) -> Result<Vec<Role>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT role_id FROM roles ORDER BY role_id")
        .fetch_all(&mut *conn)
        .await?;
    roles_of(&mut conn, ids).await
}

async fn roles_of(conn: &mut AnyConnection, ids: Vec<i64>) -> Result<Vec<Role>, StoreError> {
    let mut roles = Vec::with_capacity(ids.len());
    for id in ids {
        roles.push(role(conn, id).await?);
    }
    Ok(roles)
}

/// Changes a role's name, description or both (`None` leaves it; a hidden role keeps its name).
pub async fn update_role(
    store: &MetaStore,
    actor: &str,
    role_id: i64,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<Role, StoreError> {
    if let Some(name) = name {
        check_role_name(name)?;
    }
    let (name, description) = (name.map(str::to_string), description.map(str::to_string));
    store
        .transaction(actor, async move |tx, audit| {
            let current = role(tx, role_id).await?;
            if let Some(name) = &name {
                if current.name.starts_with(USER_ROLE_PREFIX) {
                    return Err(Invalid::ReservedRoleName(current.name.clone()).into());
                }
                if name_taken(tx, name, role_id).await? {
                    return Err(AlreadyExists::Role {
                        name: name.clone(),
                        workspace: WORKSPACE.to_string(),
                    }
                    .into());
                }
            }
            sqlx::query("UPDATE roles SET name = $1, description = $2 WHERE role_id = $3")
                .bind(name.unwrap_or(current.name))
                .bind(description.or(current.description))
                .bind(role_id)
                .execute(&mut *tx)
                .await?;
            audit.record(tx, "role.update", &RoleRef(role_id)).await?;
            role(tx, role_id).await
        })
        .await
}

pub async fn delete_role(store: &MetaStore, actor: &str, role_id: i64) -> Result<(), StoreError> {
    store
        .transaction(actor, async move |tx, audit| {
            role(tx, role_id).await?;
            delete_role_rows(tx, role_id).await?;
            audit.record(tx, "role.delete", &RoleRef(role_id)).await
        })
        .await
}

pub async fn add_role_permission(
    store: &MetaStore,
    actor: &str,
    role_id: i64,
    resource_type: ResourceType,
    pattern: &str,
    permission: Permission,
) -> Result<RolePermission, StoreError> {
    let pattern = canonical_pattern(resource_type, pattern)?;
    if !permission.grantable() {
        return Err(Invalid::UngrantablePermission(resource_type.as_str()).into());
    }
    store
        .transaction(actor, async move |tx, audit| {
            role(tx, role_id).await?;
            if held(tx, role_id, resource_type, &pattern).await?.is_some() {
                return Err(AlreadyExists::RolePermission {
                    role_id,
                    resource_type: resource_type.as_str(),
                    pattern: pattern.clone(),
                }
                .into());
            }
            let id = insert_permission(tx, role_id, resource_type, &pattern, permission).await?;
            audit
                .record(tx, "permission.grant", &RoleRef(role_id))
                .await?;
            Ok(RolePermission {
                id,
                role_id,
                resource_type,
                resource_pattern: pattern.clone(),
                permission,
            })
        })
        .await
}

async fn permission_row(tx: &mut Tx, id: i64) -> Result<RolePermission, StoreError> {
    let row = sqlx::query("SELECT * FROM role_permissions WHERE permission_id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref()
        .map(permission_from_row)
        .transpose()?
        .flatten()
        .ok_or_else(|| NotFound::RolePermission(id).into())
}

pub async fn remove_role_permission(
    store: &MetaStore,
    actor: &str,
    permission_id: i64,
) -> Result<(), StoreError> {
    store
        .transaction(actor, async move |tx, audit| {
            let found = permission_row(tx, permission_id).await?;
            sqlx::query("DELETE FROM role_permissions WHERE permission_id = $1")
                .bind(permission_id)
                .execute(&mut *tx)
                .await?;
            audit
                .record(tx, "permission.revoke", &RoleRef(found.role_id))
                .await
        })
        .await
}

pub async fn update_role_permission(
    store: &MetaStore,
    actor: &str,
    permission_id: i64,
    permission: Permission,
) -> Result<RolePermission, StoreError> {
    store
        .transaction(actor, async move |tx, audit| {
            let found = permission_row(tx, permission_id).await?;
            if !permission.grantable() {
                return Err(Invalid::UngrantablePermission(found.resource_type.as_str()).into());
            }
            set_permission(tx, permission_id, permission).await?;
            audit
                .record(tx, "permission.update", &RoleRef(found.role_id))
                .await?;
            Ok(RolePermission {
                permission,
                ..found
            })
        })
        .await
}

/// The role's users: who holds what it grants.
pub async fn role_assignments(
    store: &MetaStore,
    role_id: i64,
) -> Result<Vec<Assignment>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    role(&mut conn, role_id).await?;
    let rows =
        sqlx::query("SELECT * FROM role_assignments WHERE role_id = $1 ORDER BY assignment_id")
            .bind(role_id)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(assignment_from_row).collect()
}

fn assignment_from_row(row: &AnyRow) -> Result<Assignment, StoreError> {
    Ok(Assignment {
        id: int(row, "assignment_id")?,
        user_id: int(row, "user_id")?,
        role_id: int(row, "role_id")?,
    })
}

/// The roles assigned to `username` (their hidden role included).
pub async fn user_roles(store: &MetaStore, username: &str) -> Result<Vec<Role>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let user = user_id(&mut conn, username).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT role_id FROM role_assignments WHERE user_id = $1 ORDER BY role_id",
    )
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    roles_of(&mut conn, ids).await
}

pub async fn assign_role(
    store: &MetaStore,
    actor: &str,
    username: &str,
    role_id: i64,
) -> Result<Assignment, StoreError> {
    let name = username.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let user = user_id(tx, &name).await?;
            let assigned = role(tx, role_id).await?;
            // A user's own role holds their grants alone: assigning it would hand them over.
            if assigned.name.starts_with(USER_ROLE_PREFIX) {
                return Err(Invalid::ReservedRoleName(assigned.name).into());
            }
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT assignment_id FROM role_assignments WHERE user_id = $1 AND role_id = $2",
            )
            .bind(user)
            .bind(role_id)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_some() {
                return Err(AlreadyExists::Assignment {
                    user_id: user,
                    role_id,
                }
                .into());
            }
            let id = insert_assignment(tx, user, role_id).await?;
            audit.record(tx, "role.assign", &RoleRef(role_id)).await?;
            Ok(Assignment {
                id,
                user_id: user,
                role_id,
            })
        })
        .await
}

pub async fn unassign_role(
    store: &MetaStore,
    actor: &str,
    username: &str,
    role_id: i64,
) -> Result<(), StoreError> {
    let name = username.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let user = user_id(tx, &name).await?;
            let removed =
                sqlx::query("DELETE FROM role_assignments WHERE user_id = $1 AND role_id = $2")
                    .bind(user)
                    .bind(role_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if removed == 0 {
                return Err(NotFound::Assignment {
                    user_id: user,
                    role_id,
                }
                .into());
            }
            audit.record(tx, "role.unassign", &RoleRef(role_id)).await
        })
        .await
}

/// Which resources of one kind a search may return to its caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Visible<K> {
    /// Everything (admins, tokens, and servers without auth).
    #[default]
    All,
    /// Everything except these.
    AllBut(Vec<K>),
    /// Only these.
    Only(Vec<K>),
}

/// What a caller may see of experiments and registered models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    pub experiments: Visible<i64>,
    pub registered_models: Visible<String>,
}

impl<K: Clone> Visible<K> {
    /// The SQL condition on `column` (`None` when everything is visible); values are bound.
    pub(crate) fn condition(
        &self,
        plan: &mut crate::search::Plan,
        column: &str,
        bind: impl Fn(K) -> crate::search::Bind,
    ) -> Option<String> {
        let (list, negate) = match self {
            Visible::All => return None,
            Visible::AllBut(list) => (list, true),
            Visible::Only(list) => (list, false),
        };
        if list.is_empty() {
            return Some(if negate { "1 = 1" } else { "1 = 0" }.to_string());
        }
        let values: Vec<String> = list.iter().map(|k| plan.bind(bind(k.clone()))).collect();
        let not = if negate { "NOT " } else { "" };
        Some(format!("{column} {not}IN ({})", values.join(", ")))
    }
}

impl<K: PartialEq> Visible<K> {
    pub fn allows(&self, key: &K) -> bool {
        match self {
            Visible::All => true,
            Visible::AllBut(list) => !list.contains(key),
            Visible::Only(list) => list.contains(key),
        }
    }
}

/// The experiment a permission check resolves a request's resource to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Run,
    LoggedModel,
    ExperimentName,
}

/// The id of the experiment that holds a run, a logged model, or has a name; `None` when
/// there is no such thing (deleted ones included: they are restorable, and permissions on
/// them still count).
pub async fn experiment_of(
    store: &MetaStore,
    owner: Owner,
    key: &str,
) -> Result<Option<i64>, StoreError> {
    let sql = match owner {
        Owner::Run => "SELECT experiment_id FROM runs WHERE run_uuid = $1",
        Owner::LoggedModel => "SELECT experiment_id FROM logged_models WHERE model_id = $1",
        Owner::ExperimentName => "SELECT experiment_id FROM experiments WHERE name = $1",
    };
    Ok(sqlx::query_scalar(sql)
        .bind(key.to_string())
        .fetch_optional(store.readers())
        .await?)
}
