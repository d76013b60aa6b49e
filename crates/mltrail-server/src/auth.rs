//! Authentication and the coarse access rules of the tracking server.
//!
//! Every request passes [`authenticate`]: with auth off it names who the request claims to be
//! (a Basic user name, unchecked, else anonymous); with auth on it checks HTTP Basic
//! credentials (argon2id) or a bearer service token, refuses anything else with 401, and then
//! asks [`Need::of`] what the route requires: users who are not admins read (MLflow's default
//! READ permission; per-resource grants are not built yet), admins do everything, and a token
//! does what its scopes allow. The result rides in the request's extensions as a [`Caller`],
//! which handlers turn into the audit trail's actor.
//!
//! Checked credentials are cached for [`CACHE_SECONDS`], keyed by a BLAKE3 digest of the
//! `Authorization` header (never the header itself), so the mlflow client, which sends Basic
//! credentials on every call, pays argon2 once per TTL rather than per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mltrail_core::{Principal, Scope};
use mltrail_store::access::tokens::{self, TokenCheck};
use mltrail_store::access::users;
use mltrail_store::MetaStore;

use crate::error::ApiError;
use crate::AppState;

/// How long a checked credential is trusted without asking the store again: a changed
/// password, a demoted admin or a revoked token (changed with the CLI, against the store)
/// takes effect within this.
pub const CACHE_SECONDS: u64 = 10;
/// Entries kept at most; the cache is emptied when full (a flood of distinct bad headers is
/// never cached, so only real callers fill it).
const CACHE_CAPACITY: usize = 10_000;

/// Whether requests must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request is let in and named by what it claims (loopback or `--insecure-no-auth`).
    Off,
    /// HTTP Basic (users) or bearer tokens; anything else is 401.
    On,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub principal: Principal,
    pub admin: bool,
    /// A token's scopes; `None` for users and when auth is off.
    pub scopes: Option<Vec<Scope>>,
}

impl Caller {
    /// As `/api/v1/auth/whoami` answers: `{"actor", "admin", "scopes"}` (`scopes` null for users).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "actor": self.principal.to_string(),
            "admin": self.admin,
            "scopes": self.scopes.as_ref().map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
        })
    }

    /// The inverse of [`Caller::to_json`]; `None` for anything else (an unknown scope included).
    pub fn from_json(value: &serde_json::Value) -> Option<Caller> {
        let scopes = match &value["scopes"] {
            serde_json::Value::Null => None,
            serde_json::Value::Array(items) => Some(
                items
                    .iter()
                    .map(|s| s.as_str().and_then(Scope::parse))
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        };
        Some(Caller {
            principal: Principal::parse(value["actor"].as_str()?),
            admin: value["admin"].as_bool()?,
            scopes,
        })
    }

    fn unchecked(principal: Principal) -> Self {
        Caller {
            principal,
            admin: false,
            scopes: None,
        }
    }
}

/// Counts for `/metrics`: refused credentials and refused permissions (logged, not audited:
/// an attacker must not be able to grow the trail).
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub failed_logins: AtomicU64,
    pub denied: AtomicU64,
}

/// Checked credentials for [`CACHE_SECONDS`], keyed by a BLAKE3 digest of the
/// `Authorization` header (never the header itself). Only successes are kept.
#[derive(Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl CredentialCache {
    /// The key of a header value.
    pub fn key(header: &HeaderValue) -> [u8; 32] {
        *blake3::hash(header.as_bytes()).as_bytes()
    }

    /// Forgets every cached credential.
    pub fn forget_all(&self) {
        if let Ok(mut cache) = self.entries.lock() {
            cache.clear();
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Caller> {
        let cache = self.entries.lock().ok()?;
        let (caller, until) = cache.get(key)?;
        (Instant::now() < *until).then(|| caller.clone())
    }

    pub fn put(&self, key: [u8; 32], caller: Caller) {
        if let Ok(mut cache) = self.entries.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            let until = Instant::now() + Duration::from_secs(CACHE_SECONDS);
            cache.insert(key, (caller, until));
        }
    }
}

impl AuthCounters {
    /// Both counters registered in `registry` (OpenMetrics names end in `_total`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let counter = |value: &AtomicU64| {
            let c = prometheus_client::metrics::counter::Counter::<u64>::default();
            c.inc_by(value.load(Ordering::Relaxed));
            c
        };
        registry.register(
            "mltrail_auth_failed_logins",
            "Requests refused 401: wrong password, unknown, expired or revoked token, unreadable credentials.",
            counter(&self.failed_logins),
        );
        registry.register(
            "mltrail_auth_denied",
            "Authenticated requests refused 403: the user or token may not do what was asked.",
            counter(&self.denied),
        );
    }

    /// The counters alone, as OpenMetrics text (ending with `# EOF`).
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The server's authentication state: the mode, the credential cache and the counters.
pub struct Auth {
    pub mode: AuthMode,
    cache: CredentialCache,
    pub counters: AuthCounters,
}

impl Auth {
    pub fn new(mode: AuthMode) -> Self {
        Auth {
            mode,
            cache: CredentialCache::default(),
            counters: AuthCounters::default(),
        }
    }

    /// Forgets every cached credential, after a password, an admin flag or a user changed
    /// through this server (other servers notice within [`CACHE_SECONDS`]).
    pub fn forget_all(&self) {
        self.cache.forget_all();
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Health and version: load balancers ask without credentials.
    Open,
    /// Reading; a token needs `read` or any scope that writes on the tracking server.
    Read,
    /// Changing what a token scope names.
    Write(Scope),
    /// The user routes: any user (the handler decides between self and admin); a token needs
    /// `admin`.
    Account,
    /// Anyone authenticated (`/api/v1/auth/whoami`, which serving processes ask about their
    /// callers; `/metrics`).
    Identified,
}

impl Need {
    /// The need of a request, by method and path. A POST whose last path segment names a query
    /// (`runs/search`, `registered-models/get-latest-versions`) reads.
    pub fn of(method: &Method, path: &str) -> Need {
        if matches!(path, "/health" | "/version") {
            return Need::Open;
        }
        if path.contains("/mlflow/users/") {
            return Need::Account;
        }
        if matches!(path, "/api/v1/auth/whoami" | "/metrics") {
            return Need::Identified;
        }
        let last = path.rsplit('/').next().unwrap_or("");
        let reads = method == Method::GET
            || method == Method::HEAD
            || matches!(
                last,
                "search" | "get" | "list" | "get-by-name" | "get-latest-versions"
            );
        if reads {
            return Need::Read;
        }
        let area = path
            .trim_start_matches("/ajax-api")
            .trim_start_matches("/api");
        Need::Write(if area.contains("/registered-models/alias") {
            Scope::AliasesMove
        } else if area.contains("/registered-models/") || area.contains("/model-versions/") {
            Scope::ModelsRegister
        } else if area.starts_with("/v1/deployments") {
            Scope::Deployments
        } else if area.starts_with("/v1/monitors") || area.starts_with("/v1/alerts") {
            Scope::Monitors
        } else {
            // Experiments, runs, metrics, artifacts, logged models, datasets.
            Scope::RunsWrite
        })
    }

    /// Whether `caller` may do what this needs; the refusal's reason otherwise.
    pub fn allows(self, caller: &Caller) -> Result<(), String> {
        if matches!(self, Need::Open | Need::Identified) || caller.admin {
            return Ok(());
        }
        match (&caller.scopes, self) {
            (Some(scopes), Need::Read) => {
                let reads = scopes.iter().any(|s| {
                    matches!(
                        s,
                        Scope::Read
                            | Scope::RunsWrite
                            | Scope::ModelsRegister
                            | Scope::AliasesMove
                            | Scope::Deployments
                            | Scope::Monitors
                            | Scope::Admin
                    )
                });
                reads
                    .then_some(())
                    .ok_or_else(|| format!("token `{}` has no scope that reads (add `read`)", caller.principal.name()))
            }
            (Some(scopes), Need::Write(scope)) => (scopes.contains(&scope)
                || scopes.contains(&Scope::Admin))
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "token `{}` lacks the scope `{scope}` this request needs",
                    caller.principal.name()
                )
            }),
            (Some(_), Need::Account) => Err(format!(
                "token `{}` lacks the scope `admin` that managing users needs",
                caller.principal.name()
            )),
            (None, Need::Read | Need::Account) => Ok(()),
            (None, Need::Write(_)) => Err(format!(
                "user `{}` may read only: not an admin, and per-resource permissions are not granted by this server yet",
                caller.principal.name()
            )),
            (_, Need::Open | Need::Identified) => Ok(()),
        }
    }
}

/// The middleware: names the caller, enforces auth when on, and adds [`Caller`] to the request.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    let caller = match auth.mode {
        AuthMode::Off => Caller::unchecked(claimed(request.headers())),
        AuthMode::On => {
            let need = Need::of(request.method(), request.uri().path());
            if need == Need::Open {
                Caller::unchecked(Principal::Anonymous)
            } else {
                match check(auth, &state.store, request.headers()).await {
                    Ok(caller) => {
                        if let Err(why) = need.allows(&caller) {
                            auth.counters.denied.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(actor = %caller.principal, method = %request.method(), path = request.uri().path(), "permission denied");
                            return ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why)
                                .into_response();
                        }
                        caller
                    }
                    Err(refusal) => return refusal,
                }
            }
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// `GET /api/v1/auth/whoami`: who the request's credentials are, for serving processes that
/// check their callers with this server.
pub async fn whoami(
    axum::Extension(caller): axum::Extension<Caller>,
) -> axum::Json<serde_json::Value> {
    axum::Json(caller.to_json())
}

/// With auth off: the Basic user name a request claims (unchecked), else anonymous.
fn claimed(headers: &HeaderMap) -> Principal {
    match credentials(headers) {
        Some(Credentials::Basic { username, .. }) if !username.is_empty() => {
            Principal::Unverified(username)
        }
        _ => Principal::Anonymous,
    }
}

enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let text = crate::req::decode_base64(rest.trim())?;
        let (username, password) = text.split_once(':')?;
        Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.trim().to_string()))
    } else {
        None
    }
}

/// Checks the request's credentials (through the cache); a 401 response when they fail.
async fn check(auth: &Auth, store: &MetaStore, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthenticated("this server requires authentication: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) or a bearer token (MLFLOW_TRACKING_TOKEN)"));
    };
    let key = CredentialCache::key(raw);
    if let Some(caller) = auth.cache.get(&key) {
        return Ok(caller);
    }
    let failed = |why: &str| {
        auth.counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = why, "authentication failed");
        unauthenticated(why)
    };
    let caller = match credentials(headers) {
        None => {
            return Err(failed(
                "the Authorization header is neither Basic nor Bearer",
            ))
        }
        Some(Credentials::Basic { username, password }) => {
            match users::check_password(store, &username, &password).await {
                Ok(Some(user)) => Caller {
                    principal: Principal::User(user.username),
                    admin: user.is_admin,
                    scopes: None,
                },
                Ok(None) => return Err(failed("wrong user name or password")),
                Err(e) => return Err(ApiError::from(e).into_response()),
            }
        }
        Some(Credentials::Bearer(secret)) => {
            match tokens::check_secret(store, &secret, mltrail_core::now_millis()).await {
                Ok(TokenCheck::Valid(token)) => Caller {
                    principal: Principal::Token(token.name.clone()),
                    admin: token.scopes.contains(&Scope::Admin),
                    scopes: Some(token.scopes),
                },
                Ok(TokenCheck::Expired(_)) => return Err(failed("the token has expired")),
                Ok(TokenCheck::Revoked(_)) => return Err(failed("the token was revoked")),
                Ok(TokenCheck::Unknown) => return Err(failed("unknown token")),
                Err(e) => return Err(ApiError::from(e).into_response()),
            }
        }
    };
    auth.cache.put(key, caller.clone());
    Ok(caller)
}

pub fn unauthenticated(why: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", why).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mltrail\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_what_they_need() {
        let cases = [
            (Method::GET, "/health", Need::Open),
            (Method::GET, "/api/2.0/mlflow/runs/get", Need::Read),
            (Method::POST, "/api/2.0/mlflow/runs/search", Need::Read),
            (Method::POST, "/ajax-api/2.0/mlflow/runs/search", Need::Read),
            (
                Method::POST,
                "/api/2.0/mlflow/runs/log-metric",
                Need::Write(Scope::RunsWrite),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/experiments/create",
                Need::Write(Scope::RunsWrite),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/a/b",
                Need::Write(Scope::RunsWrite),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/create",
                Need::Write(Scope::ModelsRegister),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/model-versions/create",
                Need::Write(Scope::ModelsRegister),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/alias",
                Need::Write(Scope::AliasesMove),
            ),
            (
                Method::DELETE,
                "/api/2.0/mlflow/registered-models/alias",
                Need::Write(Scope::AliasesMove),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow/registered-models/alias",
                Need::Read,
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/get-latest-versions",
                Need::Read,
            ),
            (
                Method::POST,
                "/api/v1/deployments/events",
                Need::Write(Scope::Deployments),
            ),
            (
                Method::POST,
                "/api/v1/monitors",
                Need::Write(Scope::Monitors),
            ),
            (
                Method::DELETE,
                "/api/v1/monitors/abc",
                Need::Write(Scope::Monitors),
            ),
        ];
        for (method, path, need) in cases {
            assert_eq!(Need::of(&method, path), need, "{method} {path}");
        }
    }

    #[test]
    fn tokens_do_what_their_scopes_say_and_users_read() {
        let token = |scopes: Vec<Scope>| Caller {
            principal: Principal::Token("t".into()),
            admin: scopes.contains(&Scope::Admin),
            scopes: Some(scopes),
        };
        let ci = token(vec![Scope::RunsWrite]);
        assert!(Need::Read.allows(&ci).is_ok());
        assert!(Need::Write(Scope::RunsWrite).allows(&ci).is_ok());
        assert!(Need::Write(Scope::ModelsRegister).allows(&ci).is_err());
        let scorer = token(vec![Scope::Predict]);
        assert!(Need::Read.allows(&scorer).is_err());
        assert!(Need::Write(Scope::AliasesMove)
            .allows(&token(vec![Scope::Admin]))
            .is_ok());
        let user = Caller {
            principal: Principal::User("alice".into()),
            admin: false,
            scopes: None,
        };
        assert!(Need::Read.allows(&user).is_ok());
        assert!(Need::Write(Scope::RunsWrite).allows(&user).is_err());
        let admin = Caller {
            admin: true,
            ..user
        };
        assert!(Need::Write(Scope::AliasesMove).allows(&admin).is_ok());
    }
}
