//! `mltrail users …` and `mltrail tokens …` (against the store directly, so the first admin can
//! be made before any server runs, and a locked-out admin can be restored by whoever holds the
//! database), and what `mltrail server` checks about authentication before it listens.

use std::io::BufRead;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mltrail_core::{Principal, ReleaseRole, Scope};
use mltrail_store::access::{tokens, users};
use mltrail_store::{MetaStore, StoreConfig};

use crate::config::{self, AuthTable, Loaded};

/// The environment variable a new password is read from when not given on stdin.
const PASSWORD_ENV: &str = "MLTRAIL_PASSWORD";

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user who logs in with a password (HTTP Basic; the mlflow client's
    /// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD).
    ///
    /// The password comes from stdin with --password-stdin, else from MLTRAIL_PASSWORD; it is
    /// stored as an argon2id hash.
    Create {
        name: String,
        /// An admin may do everything, including managing users and tokens.
        #[arg(long)]
        admin: bool,
        /// Release roles, comma-separated: approver (approves releases at gates), deployer
        /// (reports and changes deployments), auditor (reads the trail and stored predictions).
        #[arg(long, value_delimiter = ',')]
        role: Vec<String>,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        output: crate::args::JsonArgs,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// Set a user's password (from stdin with --password-stdin, else MLTRAIL_PASSWORD).
    SetPassword {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// Set a user's release roles, replacing the ones they have (an empty list removes all):
    /// approver, deployer, auditor.
    SetRoles {
        name: String,
        /// Comma-separated, e.g. `approver,deployer`; "" for none.
        roles: String,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// Delete a user. Their past actions stay in the audit trail under their name.
    Delete {
        name: String,
        #[command(flatten)]
        store: config::StoreArgs,
    },
}

#[derive(Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of stdin (else from MLTRAIL_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a service token and print its secret once (only a digest is stored). Give it to
    /// the service as MLTRAIL_TRACKING_TOKEN or MLFLOW_TRACKING_TOKEN (a bearer token).
    Create {
        /// A name for the audit trail: `token:NAME` is the actor of what the token does.
        #[arg(long)]
        name: String,
        /// What the token may do, comma-separated: read, runs:write, models:register,
        /// aliases:move, deployments, predict, feedback, predictions:read, monitors,
        /// audit:read, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Lifetime, such as 90d or 12h (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// List tokens (never their secrets), revoked ones included.
    List {
        #[command(flatten)]
        output: crate::args::JsonArgs,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// Revoke a token: refused by every server within 10 seconds (their credential cache).
    Revoke {
        name: String,
        #[command(flatten)]
        store: config::StoreArgs,
    },
}

/// Who runs a command against the store directly: the operating system's user.
pub fn local_actor() -> String {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    Principal::Local(name).to_string()
}

async fn open(args: &config::StoreArgs) -> Result<MetaStore> {
    let uri = Loaded::load(&args.config, args.layer()?)?
        .config
        .store
        .backend_store_uri;
    MetaStore::open(&StoreConfig::new(&uri))
        .await
        .with_context(|| format!("cannot open backend store {}", config::redact(&uri)))
}

fn read_password(args: &PasswordArgs) -> Result<String> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            bail!("no password on stdin: pipe one line, e.g. `echo \"$PASSWORD\" | mltrail users create NAME --password-stdin`");
        }
        return Ok(password);
    }
    std::env::var(PASSWORD_ENV).map_err(|_| {
        anyhow::anyhow!(
            "no password given: pass --password-stdin and pipe it, or set {PASSWORD_ENV}"
        )
    })
}

pub async fn users(command: UsersCommand) -> Result<()> {
    let actor = local_actor();
    match command {
        UsersCommand::Create {
            name,
            admin,
            role,
            password,
            store,
        } => {
            let roles = release_roles(&role.join(","))?;
            let password = read_password(&password)?;
            let store = open(&store).await?;
            let made = async {
                let user = users::create_user(&store, &actor, &name, &password, admin).await?;
                if !roles.is_empty() {
                    users::set_release_roles(&store, &actor, &name, &roles).await?;
                }
                Ok::<_, mltrail_store::StoreError>(user)
            }
            .await;
            store.close().await;
            let user = made?;
            println!(
                "created {} `{}` (id {}){}",
                if user.is_admin { "admin" } else { "user" },
                user.username,
                user.id,
                if roles.is_empty() {
                    String::new()
                } else {
                    format!(" with release roles {}", join_roles(&roles))
                }
            );
        }
        UsersCommand::List { output, store } => {
            let store = open(&store).await?;
            let listed = users::list_users(&store).await;
            store.close().await;
            if output.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"users": listed?}))?
                );
                return Ok(());
            }
            println!(
                "{:>4}  {:<32} {:<6} {:<26} created",
                "id", "name", "admin", "release roles"
            );
            for u in listed? {
                println!(
                    "{:>4}  {:<32} {:<6} {:<26} {}",
                    u.id,
                    u.username,
                    if u.is_admin { "yes" } else { "no" },
                    if u.release_roles.is_empty() {
                        "-".to_string()
                    } else {
                        join_roles(&u.release_roles)
                    },
                    mltrail_core::time::rfc3339_millis(u.created_time)
                );
            }
        }
        UsersCommand::SetRoles { name, roles, store } => {
            let roles = release_roles(&roles)?;
            let store = open(&store).await?;
            let done = users::set_release_roles(&store, &actor, &name, &roles).await;
            store.close().await;
            done?;
            println!(
                "release roles of `{name}`: {} (servers apply them within 10 seconds)",
                if roles.is_empty() {
                    "none".to_string()
                } else {
                    join_roles(&roles)
                }
            );
        }
        UsersCommand::SetPassword {
            name,
            password,
            store,
        } => {
            let password = read_password(&password)?;
            let store = open(&store).await?;
            let done = users::update_password(&store, &actor, &name, &password).await;
            store.close().await;
            done?;
            println!("password of `{name}` changed (servers accept the new one at once and the old one for at most 10 more seconds)");
        }
        UsersCommand::Delete { name, store } => {
            let store = open(&store).await?;
            let done = users::delete_user(&store, &actor, &name).await;
            store.close().await;
            done?;
            println!("deleted user `{name}`");
        }
    }
    Ok(())
}

fn release_roles(text: &str) -> Result<Vec<ReleaseRole>> {
    ReleaseRole::parse_list(text).map_err(|unknown| {
        anyhow::anyhow!("unknown release role `{unknown}`: use approver, deployer or auditor")
    })
}

fn join_roles(roles: &[ReleaseRole]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn tokens(command: TokensCommand) -> Result<()> {
    let actor = local_actor();
    match command {
        TokensCommand::Create {
            name,
            scope,
            expires,
            store,
        } => {
            let scopes = Scope::parse_list(&scope.join(",")).map_err(|unknown| {
                anyhow::anyhow!(
                    "unknown scope `{unknown}`; the scopes are {}",
                    Scope::join(&Scope::ALL).replace(',', ", ")
                )
            })?;
            let expires_time = expires
                .map(|text| {
                    mltrail_core::time::parse_duration_ms(&text)
                        .map(|ms| mltrail_core::now_millis().saturating_add(ms))
                        .map_err(|e| anyhow::anyhow!("--expires {text}: {e} (e.g. 90d or 12h)"))
                })
                .transpose()?;
            let store = open(&store).await?;
            let made = tokens::create_token(&store, &actor, &name, scopes, expires_time).await;
            store.close().await;
            let made = made?;
            eprintln!(
                "token `{}` created with scopes {}{}; its secret (shown once, only a digest is kept):",
                made.token.name,
                Scope::join(&made.token.scopes),
                made.token
                    .expires_time
                    .map(|t| format!(", expires {}", mltrail_core::time::rfc3339_millis(t)))
                    .unwrap_or_default()
            );
            println!("{}", made.secret);
        }
        TokensCommand::List { output, store } => {
            let store = open(&store).await?;
            let listed = tokens::list_tokens(&store).await;
            store.close().await;
            if output.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"tokens": listed?}))?
                );
                return Ok(());
            }
            println!(
                "{:<24} {:<10} {:<26} {:<26} scopes",
                "name", "state", "created", "expires"
            );
            let now = mltrail_core::now_millis();
            for t in listed? {
                let state = if t.revoked_time.is_some() {
                    "revoked"
                } else if t.expires_time.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<10} {:<26} {:<26} {}",
                    t.name,
                    state,
                    mltrail_core::time::rfc3339_millis(t.created_time),
                    t.expires_time
                        .map(mltrail_core::time::rfc3339_millis)
                        .unwrap_or_else(|| "never".into()),
                    Scope::join(&t.scopes)
                );
            }
        }
        TokensCommand::Revoke { name, store } => {
            let store = open(&store).await?;
            let done = tokens::revoke_token(&store, &actor, &name).await;
            store.close().await;
            done?;
            println!(
                "revoked token `{name}`; servers refuse it within {} seconds",
                mltrail_server::auth::CACHE_SECONDS
            );
        }
    }
    Ok(())
}

/// Refuses auth off on an address other hosts reach, unless the operator said so explicitly.
pub fn check_bind(auth: &AuthTable, bound: SocketAddr, command: &str) -> Result<()> {
    // `to_canonical`: an IPv4-mapped IPv6 loopback (::ffff:127.0.0.1) is loopback too.
    if auth.mode == config::AuthModeArg::On || bound.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    if !auth.insecure_no_auth {
        bail!(
            "refusing to listen on {bound} without authentication: anyone who reaches it could change or delete anything. \
             Start with `mltrail {command} --auth on` (users and tokens: see README \"Authentication\"), \
             bind 127.0.0.1, or, on a network you trust, add --insecure-no-auth"
        );
    }
    tracing::warn!(address = %bound, "authentication is OFF on a non-loopback address (--insecure-no-auth): anyone who reaches this port can change or delete anything");
    Ok(())
}

/// With auth on and no user yet, creates the first admin from MLTRAIL_ADMIN_USERNAME (default
/// `admin`) and MLTRAIL_ADMIN_PASSWORD; without a password there is no way in, so it refuses.
pub async fn ensure_first_admin(store: &MetaStore) -> Result<()> {
    if users::count_users(store).await? > 0 {
        return Ok(());
    }
    let name = std::env::var("MLTRAIL_ADMIN_USERNAME").unwrap_or_else(|_| "admin".into());
    let Ok(password) = std::env::var("MLTRAIL_ADMIN_PASSWORD") else {
        bail!(
            "auth is on and the store has no user yet: set MLTRAIL_ADMIN_PASSWORD (and MLTRAIL_ADMIN_USERNAME, default admin) \
             for this first start, or create one with `mltrail users create NAME --admin --password-stdin`"
        );
    };
    let admin = users::create_user(store, &local_actor(), &name, &password, true)
        .await
        .context(
            "cannot create the first admin from MLTRAIL_ADMIN_USERNAME/MLTRAIL_ADMIN_PASSWORD",
        )?;
    tracing::info!(user = %admin.username, "created the first admin");
    Ok(())
}
