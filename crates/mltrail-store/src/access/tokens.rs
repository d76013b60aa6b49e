//! Service tokens: a name, the scopes it grants, an optional expiry, and the BLAKE3 digest of
//! its secret. The secret (`mlt_` and 64 hex digits, 256 random bits) is shown once when the
//! token is created and never stored; a slow hash would add nothing to a secret that cannot be
//! guessed, and the digest lets a request's token be found by index.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::password::random_bytes;
use crate::audited::{text_key, Audited};
use crate::error::{AlreadyExists, Conflict, Invalid, NotFound};
use crate::sql::{int, opt_int, text};
use crate::{MetaStore, StoreError};
use mltrail_core::access::constant_time_eq;
use mltrail_core::{now_millis, Scope};

/// Every secret starts with this, so a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "mlt_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Who created it (a principal's spelling).
    pub created_by: String,
    pub created_time: i64,
    pub expires_time: Option<i64>,
    pub revoked_time: Option<i64>,
}

impl Token {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A token just made, with its secret: the only time the secret exists outside the caller.
pub struct NewToken {
    pub token: Token,
    pub secret: String,
}

/// Never prints the secret (a panic message or a log line must not carry it).
impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &self.token)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a presented secret turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenCheck {
    Valid(Token),
    Expired(Token),
    Revoked(Token),
    Unknown,
}

fn token_from_row(row: &AnyRow) -> Result<Token, StoreError> {
    let scopes = text(row, "scopes")?;
    Ok(Token {
        name: text(row, "name")?,
        scopes: Scope::parse_list(&scopes).map_err(Conflict::StoredScope)?,
        created_by: text(row, "created_by")?,
        created_time: int(row, "created_time")?,
        expires_time: opt_int(row, "expires_time")?,
        revoked_time: opt_int(row, "revoked_time")?,
    })
}

async fn find(conn: &mut AnyConnection, name: &str) -> Result<Option<AnyRow>, StoreError> {
    Ok(sqlx::query("SELECT * FROM tokens WHERE name = $1")
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await?)
}

fn digest(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// A token as the audit trail records it: the whole row (the secret's digest included).
pub(crate) struct TokenRef(pub String);

impl Audited for TokenRef {
    const KIND: &'static str = "token";
    const LIST_IDS: &'static str = "SELECT name AS id FROM tokens";

    text_key!(TokenRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(row) = find(conn, &self.0).await? else {
            return Ok(None);
        };
        let token = token_from_row(&row)?;
        Ok(Some(serde_json::json!({
            "name": token.name,
            "scopes": Scope::join(&token.scopes),
            "created_by": token.created_by,
            "created_time": token.created_time,
            "expires_time": token.expires_time,
            "revoked_time": token.revoked_time,
            "secret_digest": text(&row, "secret_digest")?,
        })))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Makes a token; `expires_time` in epoch milliseconds.
pub async fn create_token(
    store: &MetaStore,
    actor: &str,
    name: &str,
    scopes: Vec<Scope>,
    expires_time: Option<i64>,
) -> Result<NewToken, StoreError> {
    if !valid_name(name) {
        return Err(Invalid::TokenName.into());
    }
    if scopes.is_empty() {
        return Err(Invalid::NoScope(Scope::join(&Scope::ALL)).into());
    }
    if expires_time.is_some_and(|t| t <= now_millis()) {
        return Err(Invalid::Expiry.into());
    }
    let secret = format!("{SECRET_PREFIX}{}", hex::encode(random_bytes::<32>()));
    let secret_digest = digest(&secret);
    let (name, created_by) = (name.to_string(), actor.to_string());
    let token = store
        .audited(actor, "token.create", TokenRef(name.clone()), async move |tx| {
            if find(tx, &name).await?.is_some() {
                return Err(AlreadyExists::Token(name.clone()).into());
            }
            sqlx::query("INSERT INTO tokens (name, scopes, created_by, created_time, expires_time, secret_digest) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(name.clone())
                .bind(Scope::join(&scopes))
                .bind(created_by)
                .bind(now_millis())
                .bind(expires_time)
                .bind(secret_digest)
                .execute(&mut *tx)
                .await?;
            find(tx, &name)
                .await?
                .as_ref()
                .map(token_from_row)
                .transpose()?
                .ok_or_else(|| Conflict::TokenVanished(name.clone()).into())
        })
        .await?;
    Ok(NewToken { token, secret })
}

/// Every token, revoked ones included, oldest first.
pub async fn list_tokens(store: &MetaStore) -> Result<Vec<Token>, StoreError> {
    let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_time, name")
        .fetch_all(store.readers())
        .await?;
    rows.iter().map(token_from_row).collect()
}

/// Revokes a token for good; its name stays taken so the trail names one token per name.
pub async fn revoke_token(store: &MetaStore, actor: &str, name: &str) -> Result<Token, StoreError> {
    let name = name.to_string();
    store
        .audited(
            actor,
            "token.revoke",
            TokenRef(name.clone()),
            async move |tx| {
                let changed = sqlx::query(
                    "UPDATE tokens SET revoked_time = $1 WHERE name = $2 AND revoked_time IS NULL",
                )
                .bind(now_millis())
                .bind(name.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Err(NotFound::ActiveToken(name.clone()).into());
                }
                find(tx, &name)
                    .await?
                    .as_ref()
                    .map(token_from_row)
                    .transpose()?
                    .ok_or_else(|| NotFound::Token(name.clone()).into())
            },
        )
        .await
}

/// What `secret` is, at `now` (epoch milliseconds).
pub async fn check_secret(
    store: &MetaStore,
    secret: &str,
    now: i64,
) -> Result<TokenCheck, StoreError> {
    if !secret.starts_with(SECRET_PREFIX) {
        return Ok(TokenCheck::Unknown);
    }
    let wanted = digest(secret);
    let row = sqlx::query("SELECT * FROM tokens WHERE secret_digest = $1")
        .bind(wanted.clone())
        .fetch_optional(store.readers())
        .await?;
    let Some(row) = row else {
        return Ok(TokenCheck::Unknown);
    };
    // The index found it; compare again without an early exit, so nothing about the stored
    // digest leaks through timing even if the database's comparison does.
    if !constant_time_eq(text(&row, "secret_digest")?.as_bytes(), wanted.as_bytes()) {
        return Ok(TokenCheck::Unknown);
    }
    let token = token_from_row(&row)?;
    Ok(if token.revoked_time.is_some() {
        TokenCheck::Revoked(token)
    } else if token.expires_time.is_some_and(|t| t <= now) {
        TokenCheck::Expired(token)
    } else {
        TokenCheck::Valid(token)
    })
}
