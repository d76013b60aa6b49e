//! Users who log in with a password (HTTP Basic), as MLflow's basic-auth app has them: a name,
//! an integer id, an argon2id hash and an admin flag.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use std::sync::OnceLock;

use super::password;
use crate::audited::{text_key, Audited};
use crate::error::{AlreadyExists, Conflict, Invalid, NotFound};
use crate::sql::{int, text};
use crate::{MetaStore, StoreError};
use mltrail_core::{now_millis, ReleaseRole};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub created_time: i64,
    /// What the user may do in a release beside their permissions (sorted, no repeats).
    pub release_roles: Vec<ReleaseRole>,
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let roles = text(row, "release_roles")?;
    Ok(User {
        id: int(row, "user_id")?,
        username: text(row, "username")?,
        is_admin: int(row, "is_admin")? != 0,
        created_time: int(row, "created_time")?,
        release_roles: ReleaseRole::parse_list(&roles).map_err(Conflict::StoredReleaseRole)?,
    })
}

async fn find(
    conn: &mut AnyConnection,
    username: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let row = sqlx::query("SELECT * FROM users WHERE username = $1")
        .bind(username.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref()
        .map(|r| Ok((user_from_row(r)?, text(r, "password_hash")?)))
        .transpose()
}

/// A user as the audit trail records it: the row, with a digest of the password hash in place
/// of the hash.
pub(crate) struct UserRef(pub String);

impl Audited for UserRef {
    const KIND: &'static str = "user";
    const LIST_IDS: &'static str = "SELECT username AS id FROM users";

    text_key!(UserRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(find(conn, &self.0).await?.map(|(user, hash)| {
            let mut state = serde_json::json!({
                "id": user.id,
                "username": user.username,
                "is_admin": user.is_admin,
                "created_time": user.created_time,
                "password_digest": blake3::hash(hash.as_bytes()).to_hex().to_string(),
            });
            // Only when there are some, so the state of users recorded before release roles
            // existed digests as it did then.
            if !user.release_roles.is_empty() {
                state["release_roles"] = serde_json::json!(user.release_roles);
            }
            state
        }))
    }
}

/// Argon2 computations allowed at once, two per core: each takes 19 MiB and tens of
/// milliseconds of a core, and failed logins are never cached, so a flood of bad credentials
/// must queue here rather than take every blocking thread and gigabytes of memory.
fn argon2_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(2 * cores)
    })
}

/// Runs an argon2 computation on a blocking thread, within [`argon2_permits`].
async fn argon2<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    let _permit = argon2_permits()
        .acquire()
        .await
        .map_err(|_| StoreError::Closed)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| StoreError::Closed)
}

async fn hash_off_thread(password: String) -> Result<String, StoreError> {
    argon2(move || password::hash(&password)).await?
}

pub async fn create_user(
    store: &MetaStore,
    actor: &str,
    username: &str,
    password: &str,
    is_admin: bool,
) -> Result<User, StoreError> {
    if !super::valid_username(username) {
        return Err(Invalid::Username.into());
    }
    let hash = hash_off_thread(password.to_string()).await?;
    let name = username.to_string();
    store
        .audited(actor, "user.create", UserRef(name.clone()), async move |tx| {
            if find(tx, &name).await?.is_some() {
                return Err(AlreadyExists::User(name.clone()).into());
            }
            // Ids are the writer's to assign (no backend sequences); never reused while the
            // highest exists.
            let id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(user_id), 0) + 1 FROM users")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO users (user_id, username, password_hash, is_admin, created_time) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(name.clone())
                .bind(hash)
                .bind(i64::from(is_admin))
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
            find(tx, &name)
                .await?
                .map(|(user, _)| user)
                .ok_or_else(|| Conflict::UserVanished(name.clone()).into())
        })
        .await
}

pub async fn get_user(store: &MetaStore, username: &str) -> Result<User, StoreError> {
    let mut conn = store.readers().acquire().await?;
    find(&mut conn, username)
        .await?
        .map(|(user, _)| user)
        .ok_or_else(|| NotFound::User(username.to_string()).into())
}

/// Every user, by id.
pub async fn list_users(store: &MetaStore) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query("SELECT * FROM users ORDER BY user_id")
        .fetch_all(store.readers())
        .await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn count_users(store: &MetaStore) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(store.readers())
        .await?)
}

/// The user whose name and password these are; `None` for a wrong password or an unknown
/// name. Both take the same argon2 time, so timing does not tell which names exist.
pub async fn check_password(
    store: &MetaStore,
    username: &str,
    password: &str,
) -> Result<Option<User>, StoreError> {
    let found = {
        let mut conn = store.readers().acquire().await?;
        find(&mut conn, username).await?
    };
    let password = password.to_string();
    argon2(move || match found {
        Some((user, hash)) => password::verify(&password, &hash).then_some(user),
        None => {
            password::verify(&password, decoy_hash());
            None
        }
    })
    .await
}

/// A hash no password matches, verified against when the name is unknown.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = hex::encode(password::random_bytes::<16>());
        password::hash(&secret).unwrap_or_default()
    })
}

/// A query whose first parameters are bound, the user name to come last.
type UserQuery = sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>;

/// Runs `sql` on one user as the audited `action`: `bind` binds its leading parameters, and
/// the user name is bound last. No such user is `NotFound`.
async fn change_user(
    store: &MetaStore,
    actor: &str,
    action: &'static str,
    username: &str,
    sql: &'static str,
    bind: impl FnOnce(UserQuery) -> UserQuery + Send + 'static,
) -> Result<(), StoreError> {
    let name = username.to_string();
    store
        .audited(actor, action, UserRef(name.clone()), async move |tx| {
            let changed = bind(sqlx::query(sql))
                .bind(name.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                return Err(NotFound::User(name.clone()).into());
            }
            Ok(())
        })
        .await
}

pub async fn update_password(
    store: &MetaStore,
    actor: &str,
    username: &str,
    password: &str,
) -> Result<(), StoreError> {
    let hash = hash_off_thread(password.to_string()).await?;
    change_user(
        store,
        actor,
        "user.update_password",
        username,
        "UPDATE users SET password_hash = $1 WHERE username = $2",
        move |query| query.bind(hash),
    )
    .await
}

/// Refuses to leave the store without an admin: with none, no one could manage users or
/// grants through a server (only `mltrail users` against the store could restore one).
async fn keep_an_admin(conn: &mut AnyConnection, user: &User) -> Result<(), StoreError> {
    if !user.is_admin {
        return Ok(());
    }
    let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE is_admin != 0")
        .fetch_one(&mut *conn)
        .await?;
    if admins <= 1 {
        return Err(Conflict::LastAdmin(user.username.clone()).into());
    }
    Ok(())
}

pub async fn update_admin(
    store: &MetaStore,
    actor: &str,
    username: &str,
    is_admin: bool,
) -> Result<(), StoreError> {
    let name = username.to_string();
    store
        .audited(
            actor,
            "user.update_admin",
            UserRef(name.clone()),
            async move |tx| {
                let Some((user, _)) = find(tx, &name).await? else {
                    return Err(NotFound::User(name.clone()).into());
                };
                if !is_admin {
                    keep_an_admin(tx, &user).await?;
                }
                sqlx::query("UPDATE users SET is_admin = $1 WHERE user_id = $2")
                    .bind(i64::from(is_admin))
                    .bind(user.id)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            },
        )
        .await
}

/// Sets the user's release roles (replacing what they had).
pub async fn set_release_roles(
    store: &MetaStore,
    actor: &str,
    username: &str,
    roles: &[ReleaseRole],
) -> Result<(), StoreError> {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let joined = roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    change_user(
        store,
        actor,
        "user.update_release_roles",
        username,
        "UPDATE users SET release_roles = $1 WHERE username = $2",
        move |query| query.bind(joined),
    )
    .await
}

/// Deletes the user with their own grants (their hidden role) and their role assignments,
/// each an audit event of the role it changes.
pub async fn delete_user(store: &MetaStore, actor: &str, username: &str) -> Result<(), StoreError> {
    let name = username.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let Some((user, _)) = find(tx, &name).await? else {
                return Err(NotFound::User(name.clone()).into());
            };
            keep_an_admin(tx, &user).await?;
            super::permissions::forget_user(tx, audit, user.id).await?;
            sqlx::query("DELETE FROM users WHERE user_id = $1")
                .bind(user.id)
                .execute(&mut *tx)
                .await?;
            audit
                .record(tx, "user.delete", &UserRef(name.clone()))
                .await
        })
        .await
}

/// The user's id, inside a transaction; `NotFound` when there is no such user.
pub(crate) async fn user_id(conn: &mut AnyConnection, username: &str) -> Result<i64, StoreError> {
    Ok(find(conn, username)
        .await?
        .ok_or_else(|| NotFound::User(username.to_string()))?
        .0
        .id)
}
