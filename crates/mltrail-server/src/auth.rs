//! Authentication and the coarse access rules of the tracking server.
//!
//! With auth on, every request passes [`authenticate`]: it checks HTTP Basic credentials
//! (argon2id) or a bearer service token, refuses anything else with 401, and then asks
//! [`Need::of`] what the route requires: admins do everything, a token does what its scopes
//! allow, and a user who is not an admin does what their release roles allow on mltrail's own
//! routes and what their permissions allow on experiments and registered models
//! ([`crate::permissions`], checked next). The result rides in the request's extensions as a
//! [`Caller`], which handlers turn into the audit trail's actor. With auth off no middleware
//! runs: handlers name the actor from what the request claims ([`claimed`]: a Basic user name,
//! else anonymous).
//!
//! Checked credentials are cached for [`CACHE_SECONDS`], keyed by a BLAKE3 digest of the
//! `Authorization` header (never the header itself), so the mlflow client, which sends Basic
//! credentials on every call, pays argon2 once per TTL rather than per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use mltrail_core::{Permission, Principal, ReleaseRole, Scope};
use mltrail_store::access::permissions;
use mltrail_store::access::tokens::{self, TokenCheck};
use mltrail_store::access::users;
use mltrail_store::MetaStore;

use crate::error::ApiError;
use crate::guard::{Fast, Guard};
use crate::permissions::Grants;

/// How long a checked credential is trusted without asking the store again: a changed
/// password, a demoted admin or a revoked token (changed with the CLI, against the store)
/// takes effect within this, on a server and on the deployments that ask it (`whoami` is
/// never answered from the cache). Changes made through a server's own user routes take
/// effect there at once. A token is never cached past its expiry.
pub const CACHE_SECONDS: u64 = 10;
/// Entries kept at most; when full, expired entries go, then all (a flood of distinct bad
/// headers is never cached, so only real callers fill it).
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
    /// A user's release roles (none for tokens).
    pub release_roles: Vec<ReleaseRole>,
    /// A user's permissions, when they are not an admin: only then are requests checked
    /// resource by resource.
    pub grants: Option<Arc<Grants>>,
}

impl Caller {
    /// As `/api/v1/auth/whoami` answers.
    pub(crate) fn whoami(&self) -> Whoami {
        Whoami {
            actor: self.principal.to_string(),
            admin: self.admin,
            scopes: self
                .scopes
                .as_ref()
                .map(|s| s.iter().map(|x| x.as_str()).collect()),
            release_roles: self.release_roles.clone(),
        }
    }

    /// As `/api/v1/auth/whoami` answers: `{"actor", "admin", "scopes", "release_roles"}`
    /// (`scopes` null for users).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.whoami()).unwrap_or_default()
    }

    /// Whether a user's release roles give what `scope` names.
    pub(crate) fn role_allows(&self, scope: Scope) -> bool {
        self.release_roles
            .iter()
            .any(|r| r.scopes().contains(&scope))
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
        // Absent from servers that predate release roles.
        let release_roles = match &value["release_roles"] {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|r| r.as_str().and_then(ReleaseRole::parse))
                .collect::<Option<Vec<_>>>()?,
            _ => return None,
        };
        Some(Caller {
            principal: Principal::parse(value["actor"].as_str()?),
            admin: value["admin"].as_bool()?,
            scopes,
            release_roles,
            grants: None,
        })
    }

    fn unchecked(principal: Principal) -> Self {
        Caller {
            principal,
            admin: false,
            scopes: None,
            release_roles: Vec::new(),
            grants: None,
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

impl AuthCounters {
    /// A permission denial: counted and logged, not audited per attempt (whichever check made
    /// it: the guard's, or a logging handler's deferred one).
    pub(crate) fn count_denial(&self, caller: &Caller, path: &str) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(actor = %caller.principal, path, "permission denied");
    }
}

/// A checked caller and until when it may be used.
type Cached = (Arc<Caller>, Instant);

/// Checked credentials for [`CACHE_SECONDS`], keyed by a BLAKE3 digest of the
/// `Authorization` header (never the header itself). Only successes are kept.
#[derive(Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
    /// Moved by [`CredentialCache::forget_all`]: a check that began before it does not store
    /// what it read (it may be the state from before the change).
    generation: AtomicU64,
}

impl CredentialCache {
    /// The key of a header value.
    pub fn key(header: &HeaderValue) -> [u8; 32] {
        *blake3::hash(header.as_bytes()).as_bytes()
    }

    /// Forgets every cached credential.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.entries.lock() {
            cache.clear();
        }
    }

    /// Forgets the cached credentials of one principal (every header that named them).
    pub fn forget(&self, principal: &Principal) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.entries.lock() {
            cache.retain(|_, (caller, _)| caller.principal != *principal);
        }
    }

    /// The generation to give [`CredentialCache::put`] for a check starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Caller>> {
        let cache = self.entries.lock().ok()?;
        let (caller, until) = cache.get(key)?;
        (Instant::now() < *until).then(|| caller.clone())
    }

    /// Keeps a checked caller for [`CACHE_SECONDS`], or until `expires` (a token's expiry, in
    /// epoch milliseconds) when that is sooner, unless the cache was cleared since the check
    /// began (`generation`). When full, entries past their time go first, then all.
    pub fn put(&self, key: [u8; 32], caller: Arc<Caller>, generation: u64, expires: Option<i64>) {
        let Ok(mut cache) = self.entries.lock() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let now = Instant::now();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        let mut until = now + Duration::from_secs(CACHE_SECONDS);
        if let Some(expires) = expires {
            let left = expires.saturating_sub(mltrail_core::now_millis()).max(0);
            until = until.min(now + Duration::from_millis(left as u64));
        }
        cache.insert(key, (caller, until));
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

/// The web UI's sign-in sessions: a cookie naming the user and when it ends, with a keyed hash
/// of both under a key made at each start (a restart, or another replica, signs everyone out;
/// behind a load balancer, route a browser to one replica or use HTTP Basic).
pub struct Sessions {
    key: [u8; 32],
    /// Cookies signed out before their end (their keyed hash, and that end): refused until
    /// then, so a copied cookie dies with the sign-out.
    revoked: Mutex<HashMap<[u8; 32], i64>>,
}

/// 32 bytes from the OS's random numbers, through two v4 UUIDs (244 random bits): the keys
/// sessions and CSRF tokens are signed with, made at each start.
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mltrail_session";

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            key: random_key(),
            revoked: Mutex::new(HashMap::new()),
        }
    }
}

impl Sessions {
    /// How long a sign-in lasts.
    pub const LIFETIME_MS: i64 = 12 * 3_600_000;

    fn mac(&self, username: &str, expires: i64) -> blake3::Hash {
        blake3::keyed_hash(&self.key, format!("{username}\n{expires}").as_bytes())
    }

    /// The cookie value signing `username` in until `now_ms` + [`Self::LIFETIME_MS`]: the
    /// name in base64url (any name fits a cookie), the end, and the keyed hash.
    pub fn issue(&self, username: &str, now_ms: i64) -> String {
        use base64::Engine as _;
        let expires = now_ms + Self::LIFETIME_MS;
        format!(
            "{}.{expires}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(username),
            self.mac(username, expires).to_hex()
        )
    }

    /// The user a cookie value signs in, and when it ends, if it is this server's and not over
    /// (the hash compared in constant time: `blake3::Hash`'s equality).
    pub fn open(&self, value: &str, now_ms: i64) -> Option<(String, i64)> {
        use base64::Engine as _;
        let mut parts = value.split('.');
        let (name, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let username = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(name)
                .ok()?,
        )
        .ok()?;
        let expires: i64 = expires.parse().ok()?;
        let mac = blake3::Hash::from_hex(mac).ok()?;
        let revoked = self
            .revoked
            .lock()
            .map_or(true, |r| r.contains_key(mac.as_bytes()));
        (mac == self.mac(&username, expires) && now_ms < expires && !revoked)
            .then_some((username, expires))
    }

    /// Signs a cookie out: it is refused from now on, on this server.
    pub fn revoke(&self, value: &str, now_ms: i64) {
        let Some((_, expires)) = self.open(value, now_ms) else {
            return;
        };
        let Some(mac) = value
            .rsplit('.')
            .next()
            .and_then(|m| blake3::Hash::from_hex(m).ok())
        else {
            return;
        };
        if let Ok(mut revoked) = self.revoked.lock() {
            // Cookies past their end are refused anyway: forget them.
            revoked.retain(|_, end| *end > now_ms);
            revoked.insert(*mac.as_bytes(), expires);
        }
    }
}

/// The session cookie's value among a request's cookies.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// Whether a request may be authenticated by the session cookie: reads, and the web UI's own
/// forms (which carry a CSRF token); never another write, which a cross-site page could make a
/// browser send with the cookie attached.
fn session_allowed(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) || path.starts_with("/ui/")
}

/// Whether a refused request is a browser asking for a page, better sent to the sign-in page
/// than answered 401.
fn wants_page(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && (path == "/" || path == "/ui" || path.starts_with("/ui/"))
}

/// 303 to the sign-in page, which sends the browser back to `back` afterwards.
pub fn to_sign_in(back: &str) -> Response {
    let location = format!(
        "/ui/login?next={}",
        percent_encoding::utf8_percent_encode(back, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The server's authentication state: the mode, the credential cache, the sign-in sessions and
/// the counters.
pub struct Auth {
    pub mode: AuthMode,
    /// The web UI's sign-in sessions.
    pub sessions: Sessions,
    /// What users who are not admins may do on an experiment or registered model no grant
    /// names (MLflow's `default_permission`; READ unless configured).
    pub default_permission: Permission,
    cache: CredentialCache,
    /// Checks in progress, by header digest: requests presenting the same credentials while
    /// one is being checked wait for it instead of each running argon2 (64 connections of one
    /// client starting together ran 64 checks, stalling the server for most of a second).
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    pub counters: AuthCounters,
    /// The experiments of runs and logged models, for the permission checks.
    pub(crate) owners: crate::permissions::Owners,
}

impl Auth {
    pub fn new(mode: AuthMode) -> Self {
        Auth {
            mode,
            sessions: Sessions::default(),
            default_permission: Permission::Read,
            cache: CredentialCache::default(),
            in_flight: Mutex::new(HashMap::new()),
            counters: AuthCounters::default(),
            owners: Default::default(),
        }
    }

    /// The lock of the check for `key`, shared by every request presenting it meanwhile.
    fn check_lock(&self, key: &[u8; 32]) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let mut in_flight = self.in_flight.lock().ok()?;
        Some(in_flight.entry(*key).or_default().clone())
    }

    fn check_done(&self, key: &[u8; 32]) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            // The last holder removes it (the map keeps one reference itself).
            if in_flight
                .get(key)
                .is_some_and(|l| Arc::strong_count(l) <= 1)
            {
                in_flight.remove(key);
            }
        }
    }

    /// Forgets one principal's cached credentials: after a change that concerns only them
    /// (a grant to the creator of an experiment), so that creating things does not make
    /// every other client pay argon2 again.
    pub fn forget(&self, principal: &Principal) {
        self.cache.forget(principal);
    }

    /// The same, with another default permission for users who are not admins.
    pub fn with_default_permission(self, default_permission: Permission) -> Self {
        Auth {
            default_permission,
            ..self
        }
    }

    /// Forgets every cached credential, after a password, an admin flag, a user or a
    /// permission changed through this server (other servers notice within
    /// [`CACHE_SECONDS`]).
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
    /// What this token scope names. Among users: for the scopes of experiments, runs and the
    /// registry, what their permissions allow (checked next, resource by resource); for the
    /// others, what their release roles allow.
    Scope(Scope),
    /// The user, permission and role routes: any user (the handler decides between self,
    /// MANAGE on the resource, and admin); a token needs `admin`.
    Account,
    /// Anyone authenticated (`/api/v1/auth/whoami`, which serving processes ask about their
    /// callers).
    Identified,
}

/// POST routes that only read (MLflow sends its searches as POST).
const POSTED_QUERIES: &[&str] = &[
    "/2.0/mlflow/experiments/search",
    "/2.0/mlflow/runs/search",
    "/2.0/mlflow/registered-models/search",
    "/2.0/mlflow/registered-models/get-latest-versions",
    "/2.0/mlflow/model-versions/search",
    "/2.0/mlflow/logged-models/search",
];

impl Need {
    /// The need of a request, by method and path (and, for an artifact listing, the folder in
    /// its query). Paths are compared whole or by prefix from the start, never by a segment
    /// found anywhere: an artifact may be named `get` or live under `mlflow/users/`. Reads are
    /// GET and HEAD, and the POSTs in [`POSTED_QUERIES`]; everything else writes.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Need {
        // The API's description holds no data (it is the published source's), and client
        // generators fetch it before they have credentials.
        if matches!(
            path,
            "/health"
                | "/version"
                | "/favicon.ico"
                | "/ui/login"
                | "/ui/logout"
                | "/api/v1/openapi.json"
        ) || path.starts_with("/ui/static/")
        {
            return Need::Open;
        }
        if path == "/api/v1/auth/whoami" {
            return Need::Identified;
        }
        // The server's counters are for those who read it (users, tokens with a reading
        // scope: a Prometheus scraper gets `read`), not for a scoring client's `predict` token.
        if path == "/metrics" {
            return Need::Read;
        }
        // The web UI: the trail needs what reading it through the API would (its verify button,
        // an admin), a prediction what reading a stored prediction needs; other pages read.
        if path == "/ui/audit/verify" {
            return Need::Scope(Scope::Admin);
        }
        if path == "/ui/audit" {
            return Need::Scope(Scope::AuditRead);
        }
        if path.starts_with("/ui/predictions") {
            return Need::Scope(Scope::PredictionsRead);
        }
        // The same routes are served under /api and /ajax-api.
        let Some(p) = path
            .strip_prefix("/ajax-api")
            .or_else(|| path.strip_prefix("/api"))
        else {
            // No API route lives elsewhere: unknown paths answer 404 after this.
            return Need::Read;
        };
        if p.starts_with("/2.0/mlflow/users/")
            || p.starts_with("/3.0/mlflow/users/")
            || p.starts_with("/3.0/mlflow/roles/")
            || p.starts_with("/2.0/mlflow/experiments/permissions/")
            || p.starts_with("/2.0/mlflow/registered-models/permissions/")
        {
            return Need::Account;
        }
        let reads = *method == Method::GET
            || *method == Method::HEAD
            || (*method == Method::POST && POSTED_QUERIES.contains(&p));
        if let Some(artifact) = p.strip_prefix("/2.0/mlflow-artifacts/artifacts") {
            // Archived prediction logs hold callers' inputs (possibly personal data): reading
            // them, or listing their names, needs what reading a stored prediction from a
            // deployment needs.
            let listed = match artifact.trim_start_matches('/') {
                "" => crate::permissions::listed_folder(query),
                _ => String::new(),
            };
            let archive =
                crate::permissions::in_archive(artifact) || crate::permissions::in_archive(&listed);
            return match (archive, reads) {
                (true, true) => Need::Scope(Scope::PredictionsRead),
                (true, false) => Need::Scope(Scope::Deployments),
                (false, true) => Need::Read,
                (false, false) => Need::Scope(Scope::RunsWrite),
            };
        }
        // Personal data: serving processes get subjects' keys with their deployment token;
        // an export reads stored inputs; an erasure is an admin's; the list of erasures is
        // part of the trail.
        match (method.as_str(), p) {
            ("POST", "/v1/privacy/subject-keys") => return Need::Scope(Scope::Deployments),
            // A prediction's record holds its inputs.
            ("GET" | "HEAD", p) if p.starts_with("/v1/predictions/") => {
                return Need::Scope(Scope::PredictionsRead)
            }
            ("POST", "/v1/privacy/export") => return Need::Scope(Scope::PredictionsRead),
            ("POST", "/v1/privacy/erase") => return Need::Scope(Scope::Admin),
            (_, "/v1/privacy/erasures") => return Need::Scope(Scope::AuditRead),
            // The trail names every actor and entity: what the trail page needs; verifying
            // it reads everything, an admin's.
            ("GET" | "HEAD", "/v1/audit/events") => return Need::Scope(Scope::AuditRead),
            (_, "/v1/audit/verify") => return Need::Scope(Scope::Admin),
            _ => {}
        }
        if reads {
            return Need::Read;
        }
        // The services' log setting is an operator's.
        if p.starts_with("/v1/settings") {
            return Need::Scope(Scope::Admin);
        }
        // mltrail's gated alias move needs what MLflow's does; a gate is an admin's.
        if let Some(rest) = p.strip_prefix("/v1/models/") {
            let mut parts = rest.split('/').skip(1);
            match parts.next() {
                Some("aliases") => return Need::Scope(Scope::AliasesMove),
                Some("gates") => return Need::Scope(Scope::Admin),
                _ => {}
            }
        }
        Need::Scope(if p == "/2.0/mlflow/registered-models/alias" {
            Scope::AliasesMove
        } else if p.starts_with("/2.0/mlflow/registered-models/")
            || p.starts_with("/2.0/mlflow/model-versions/")
        {
            Scope::ModelsRegister
        } else if p.starts_with("/v1/deployments") {
            Scope::Deployments
        } else if p.starts_with("/v1/monitors")
            || p.starts_with("/v1/alerts")
            || p.starts_with("/v1/metrics")
            || p.starts_with("/v1/annotations")
        {
            Scope::Monitors
        } else {
            // Experiments, runs, metrics, logged models, datasets.
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
            (Some(scopes), Need::Scope(scope)) => (scopes.contains(&scope)
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
            (None, Need::Scope(Scope::RunsWrite | Scope::ModelsRegister | Scope::AliasesMove)) => {
                Ok(())
            }
            (None, Need::Scope(scope)) if caller.role_allows(scope) => Ok(()),
            (None, Need::Scope(Scope::PredictionsRead)) => Err(format!(
                "user `{}` may not read archived predictions (their inputs may be personal data): an admin, a user with the auditor role or a token with `predictions:read` may",
                caller.principal.name()
            )),
            (None, Need::Scope(Scope::Deployments)) => Err(format!(
                "user `{}` may not change deployments: an admin, a user with the deployer role or a token with `deployments` may",
                caller.principal.name()
            )),
            (None, Need::Scope(scope)) => Err(format!(
                "user `{}` is not an admin, and `{scope}` is for admins and tokens with that scope",
                caller.principal.name()
            )),
            (_, Need::Open | Need::Identified) => Ok(()),
        }
    }
}

/// The path whose answer is never taken from the credential cache: serving processes cache it
/// in turn (one cache between a revocation and a refusal, not two).
const WHOAMI: &str = "/api/v1/auth/whoami";

/// `--auth on`: checks the caller and what the route needs, and adds the [`Caller`] to the
/// request. A cached credential of an admin or a token is decided without awaiting; a miss,
/// and every request of a user checked resource by resource, take [`Guard::slow`].
impl Guard for AuthGate {
    fn fast(&self, request: &mut Request) -> Fast {
        let need = Need::of(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        if need == Need::Open {
            request
                .extensions_mut()
                .insert(Arc::new(Caller::unchecked(Principal::Anonymous)));
            return Fast::Pass;
        }
        if request.uri().path() == WHOAMI {
            return Fast::Check;
        }
        let Some(raw) = presented(
            &self.auth,
            request.method(),
            request.uri().path(),
            request.headers(),
        ) else {
            let (method, uri) = (request.method(), request.uri());
            if wants_page(method, uri.path()) {
                return Fast::Refuse(to_sign_in(uri.path_and_query().map_or("/", |p| p.as_str())));
            }
            return Fast::Refuse(no_credentials());
        };
        let Some(caller) = self.auth.cache.get(&CredentialCache::key(&raw)) else {
            return Fast::Check;
        };
        if let Err(why) = need.allows(&caller) {
            return Fast::Refuse(denied(
                &self.auth.counters,
                &caller,
                request.uri().path(),
                why,
            ));
        }
        if caller.grants.is_some() {
            if crate::permissions::deferred(request.method(), request.uri().path()) {
                // The handler checks the run it decodes (`RunCheck`).
                let check = crate::permissions::RunCheck {
                    caller: caller.clone(),
                    uri: request.uri().clone(),
                };
                request.extensions_mut().insert(check);
                request.extensions_mut().insert(caller);
                return Fast::Pass;
            }
            // Its permissions are checked next, in the slow path, which takes the caller
            // from here rather than checking the credentials again.
            request.extensions_mut().insert(caller);
            return Fast::Check;
        }
        request.extensions_mut().insert(caller);
        Fast::Pass
    }

    fn slow(self, request: Request) -> BoxFuture<'static, Result<Request, Response>> {
        Box::pin(async move {
            let auth = &self.auth;
            let need = Need::of(
                request.method(),
                request.uri().path(),
                request.uri().query(),
            );
            let cacheable = request.uri().path() != WHOAMI;
            let caller = match request.extensions().get::<Arc<Caller>>() {
                Some(cached) => cached.clone(),
                None => {
                    let raw = presented(
                        auth,
                        request.method(),
                        request.uri().path(),
                        request.headers(),
                    )
                    .ok_or_else(no_credentials)?;
                    check(auth, &self.store, &raw, cacheable).await?
                }
            };
            if let Err(why) = need.allows(&caller) {
                return Err(denied(&auth.counters, &caller, request.uri().path(), why));
            }
            let mut request = match &caller.grants {
                None => request,
                Some(grants) => {
                    let user = caller.principal.name();
                    // (A `Uri` clone shares its bytes: the path stays for the log line.)
                    let uri = request.uri().clone();
                    let checked = crate::permissions::check(
                        &self.store,
                        &self.artifacts_uri,
                        &self.auth.owners,
                        user,
                        grants,
                        request,
                        self.max_body,
                    )
                    .await;
                    match checked {
                        Ok(request) => request,
                        Err(refusal) => {
                            if refusal.status() == StatusCode::FORBIDDEN {
                                auth.counters.count_denial(&caller, uri.path());
                            }
                            return Err(refusal);
                        }
                    }
                }
            };
            request.extensions_mut().insert(caller);
            Ok(request)
        })
    }
}

/// What the guard needs, and no more (it is cloned per request that awaits a check).
#[derive(Clone)]
pub struct AuthGate {
    pub auth: Arc<Auth>,
    pub store: MetaStore,
    /// Largest JSON body read when a user's permission check needs its parameters.
    pub max_body: usize,
    /// The artifact store's URI (a model version's source may name a place under it).
    pub artifacts_uri: String,
}

/// Who a request's credentials are.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Whoami {
    /// `user:<name>`, `token:<id>`, `anonymous`, or with auth off the claimed name.
    actor: String,
    admin: bool,
    /// A token's scopes; null for a user (whose roles decide).
    scopes: Option<Vec<&'static str>>,
    /// The user's release roles (`approver`, `deployer`, …).
    #[schema(value_type = Vec<String>)]
    release_roles: Vec<ReleaseRole>,
}

/// `GET /api/v1/auth/whoami`: who the request's credentials are, for serving processes that
/// check their callers with this server.
#[utoipa::path(get, path = "/api/v1/auth/whoami", tag = "auth",
    responses((status = 200, description = "Who the credentials are", body = Whoami)))]
pub async fn whoami(
    caller: Option<axum::Extension<Arc<Caller>>>,
    headers: HeaderMap,
) -> axum::Json<Whoami> {
    axum::Json(match caller {
        Some(caller) => caller.0.whoami(),
        None => Caller::unchecked(claimed(&headers)).whoami(),
    })
}

/// With auth off: the Basic user name a request claims (unchecked), else anonymous.
pub(crate) fn claimed(headers: &HeaderMap) -> Principal {
    match credentials(headers) {
        // Unchecked, so kept printable: the trail's text listing is one line per event.
        Some(Credentials::Basic { username, .. }) if !username.is_empty() => {
            Principal::Unverified(username.chars().filter(|c| !c.is_control()).collect())
        }
        _ => Principal::Anonymous,
    }
}

enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    /// The web UI's session cookie (never taken from a client's `Authorization` header: only
    /// [`presented`] makes one, from the cookie).
    Session(String),
}

/// What a request presents to authenticate: its `Authorization` header, else (where
/// [`session_allowed`]) its session cookie when that is this server's and not over, as
/// `Session <user>` with the cookie's end.
fn presented(auth: &Auth, method: &Method, path: &str, headers: &HeaderMap) -> Option<HeaderValue> {
    if let Some(raw) = headers.get(header::AUTHORIZATION) {
        // `Session` is this server's own spelling of a cookie, never a client's header: a
        // stolen cookie value must not authenticate the writes cookies are kept from.
        let sent_session = raw.as_bytes().starts_with(b"Session ");
        return (!sent_session).then(|| raw.clone());
    }
    if !session_allowed(method, path) {
        return None;
    }
    let cookie = session_cookie(headers)?;
    auth.sessions.open(cookie, mltrail_core::now_millis())?;
    // The cookie's whole value goes into the check (and its cache key), re-verified there.
    HeaderValue::from_str(&format!("Session {cookie}")).ok()
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    credentials_in(headers.get(header::AUTHORIZATION)?)
}

fn credentials_in(value: &HeaderValue) -> Option<Credentials> {
    let value = value.to_str().ok()?;
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
    } else if scheme == "Session" {
        Some(Credentials::Session(rest.trim().to_string()))
    } else {
        None
    }
}

/// Checks credentials the cache did not answer for; a 401 response when they fail. Requests
/// presenting the same credentials take turns, and a later one takes what the first cached,
/// when `cached` allows (not for `/api/v1/auth/whoami`, whose answer serving processes cache
/// in turn: one cache between a revocation and a refusal, not two).
async fn check(
    auth: &Auth,
    store: &MetaStore,
    raw: &HeaderValue,
    cached: bool,
) -> Result<Arc<Caller>, Response> {
    let key = CredentialCache::key(raw);
    let lock = auth.check_lock(&key);
    let checked = match &lock {
        Some(lock) => {
            let _turn = lock.lock().await;
            // Whoever held the lock before may have filled the cache.
            match cached.then(|| auth.cache.get(&key)).flatten() {
                Some(caller) => Ok(caller),
                None => check_store(auth, store, raw, key).await,
            }
        }
        None => check_store(auth, store, raw, key).await,
    };
    drop(lock);
    auth.check_done(&key);
    checked
}

/// The store's answer about the request's credentials, cached when they pass.
async fn check_store(
    auth: &Auth,
    store: &MetaStore,
    raw: &HeaderValue,
    key: [u8; 32],
) -> Result<Arc<Caller>, Response> {
    let generation = auth.cache.generation();
    // A store that cannot answer is logged in full and answered in general terms: the caller
    // is not authenticated yet.
    let unavailable = |e: mltrail_store::StoreError| {
        tracing::error!(error = %e, "cannot check credentials");
        cannot_check()
    };
    let mut expires = None;
    let failed = |why: &str| {
        auth.counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = why, "authentication failed");
        unauthenticated(why)
    };
    let user_caller = |user: users::User, grants: Option<Arc<Grants>>| Caller {
        principal: Principal::User(user.username),
        admin: user.is_admin,
        scopes: None,
        release_roles: user.release_roles,
        grants,
    };
    let grants_of = |user: &users::User| {
        let is_admin = user.is_admin;
        let id = user.id;
        async move {
            if is_admin {
                Ok(None)
            } else {
                permissions::grants_of(store, id).await.map(|grants| {
                    Some(Arc::new(Grants {
                        default: auth.default_permission,
                        grants,
                    }))
                })
            }
        }
    };
    let caller = match credentials_in(raw) {
        None => {
            return Err(failed(
                "the Authorization header is neither Basic nor Bearer",
            ))
        }
        Some(Credentials::Basic { username, password }) => {
            match users::check_password(store, &username, &password).await {
                Ok(Some(user)) => {
                    let grants = grants_of(&user).await.map_err(unavailable)?;
                    user_caller(user, grants)
                }
                Ok(None) => return Err(failed("wrong user name or password")),
                Err(e) => return Err(unavailable(e)),
            }
        }
        Some(Credentials::Session(cookie)) => {
            let Some((username, ends)) = auth.sessions.open(&cookie, mltrail_core::now_millis())
            else {
                return Err(failed("the sign-in session is over or not this server's"));
            };
            expires = Some(ends);
            match users::get_user(store, &username).await {
                Ok(user) => {
                    let grants = grants_of(&user).await.map_err(unavailable)?;
                    user_caller(user, grants)
                }
                Err(e) if e.kind() == mltrail_store::StoreErrorKind::NotFound => {
                    return Err(failed("the signed-in user no longer exists"))
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Some(Credentials::Bearer(secret)) => {
            match tokens::check_secret(store, &secret, mltrail_core::now_millis()).await {
                Ok(TokenCheck::Valid(token)) => {
                    expires = token.expires_time;
                    Caller {
                        principal: Principal::Token(token.name.clone()),
                        admin: token.scopes.contains(&Scope::Admin),
                        scopes: Some(token.scopes),
                        release_roles: Vec::new(),
                        grants: None,
                    }
                }
                Ok(TokenCheck::Expired(_)) => return Err(failed("the token has expired")),
                Ok(TokenCheck::Revoked(_)) => return Err(failed("the token was revoked")),
                Ok(TokenCheck::Unknown) => return Err(failed("unknown token")),
                Err(e) => return Err(unavailable(e)),
            }
        }
    };
    let caller = Arc::new(caller);
    auth.cache.put(key, caller.clone(), generation, expires);
    Ok(caller)
}

/// 503 when credentials cannot be checked (the store or the tracking server did not answer):
/// the details are logged, never told to a caller who is not authenticated yet.
pub(crate) fn cannot_check() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "TEMPORARILY_UNAVAILABLE",
        "credentials cannot be checked right now; retry",
    )
    .into_response()
}

/// 403 for an authenticated caller the route refuses: counted and logged, not audited.
pub(crate) fn denied(
    counters: &AuthCounters,
    caller: &Caller,
    path: &str,
    why: String,
) -> Response {
    counters.count_denial(caller, path);
    ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why).into_response()
}

fn no_credentials() -> Response {
    unauthenticated("this server requires authentication: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) or a bearer token (MLFLOW_TRACKING_TOKEN)")
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
    fn a_session_names_its_user_until_it_ends_and_only_for_this_key() {
        let sessions = Sessions::default();
        let value = sessions.issue("ada.lovelace@example.org", 1_000);
        assert_eq!(
            sessions.open(&value, 2_000),
            Some((
                "ada.lovelace@example.org".to_string(),
                1_000 + Sessions::LIFETIME_MS
            ))
        );
        assert_eq!(
            sessions.open(&value, 1_000 + Sessions::LIFETIME_MS),
            None,
            "over"
        );
        assert_eq!(
            Sessions::default().open(&value, 2_000),
            None,
            "another server's key"
        );
        // A name or an end changed without the key does not pass.
        let (_, rest) = value.split_once('.').unwrap();
        assert_eq!(sessions.open(&format!("YWRtaW4.{rest}"), 2_000), None);
        let forged = value.replace(
            &format!(".{}.", 1_000 + Sessions::LIFETIME_MS),
            ".99999999999999.",
        );
        assert_eq!(sessions.open(&forged, 2_000), None);
        assert_eq!(sessions.open("garbage", 2_000), None);
    }

    #[test]
    fn forgetting_one_principal_keeps_the_others_cached() {
        let cache = CredentialCache::default();
        let caller = |name: &str| {
            Arc::new(Caller {
                principal: Principal::User(name.into()),
                ..Caller::unchecked(Principal::Anonymous)
            })
        };
        let (alice, bob) = ([1u8; 32], [2u8; 32]);
        cache.put(alice, caller("alice"), cache.generation(), None);
        cache.put(bob, caller("bob"), cache.generation(), None);
        // A check that began before the change does not store what it read.
        let before = cache.generation();
        cache.forget(&Principal::User("alice".into()));
        assert!(cache.get(&alice).is_none());
        assert!(cache.get(&bob).is_some());
        cache.put(alice, caller("alice"), before, None);
        assert!(cache.get(&alice).is_none());
    }

    #[test]
    fn routes_map_to_what_they_need() {
        let cases = [
            (Method::GET, "/health", Need::Open),
            (Method::GET, "/api/v1/openapi.json", Need::Open),
            (
                Method::GET,
                "/api/v1/audit/events",
                Need::Scope(Scope::AuditRead),
            ),
            (
                Method::POST,
                "/api/v1/audit/verify",
                Need::Scope(Scope::Admin),
            ),
            (
                Method::HEAD,
                "/api/v1/audit/events",
                Need::Scope(Scope::AuditRead),
            ),
            (Method::GET, "/api/2.0/mlflow/runs/get", Need::Read),
            (Method::POST, "/api/2.0/mlflow/runs/search", Need::Read),
            (Method::POST, "/ajax-api/2.0/mlflow/runs/search", Need::Read),
            (
                Method::POST,
                "/api/2.0/mlflow/runs/log-metric",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/experiments/create",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/a/b",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/create",
                Need::Scope(Scope::ModelsRegister),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/model-versions/create",
                Need::Scope(Scope::ModelsRegister),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/alias",
                Need::Scope(Scope::AliasesMove),
            ),
            (
                Method::DELETE,
                "/api/2.0/mlflow/registered-models/alias",
                Need::Scope(Scope::AliasesMove),
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
                Need::Scope(Scope::Deployments),
            ),
            (
                Method::POST,
                "/api/v1/monitors",
                Need::Scope(Scope::Monitors),
            ),
            (
                Method::DELETE,
                "/api/v1/monitors/abc",
                Need::Scope(Scope::Monitors),
            ),
        ];
        // Artifact paths are names a client chose: no segment of them decides the need.
        let adversarial = [
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/get",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::DELETE,
                "/ajax-api/2.0/mlflow-artifacts/artifacts/1/r/search",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/mlflow/users/x",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/registered-models/alias",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/model-versions/x",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::DELETE,
                "/api/2.0/mlflow/logged-models/m-1/tags/search",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/runs/get",
                Need::Scope(Scope::RunsWrite),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts/predictions/d/2026-12-03/a.parquet",
                Need::Scope(Scope::PredictionsRead),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts/predictions",
                Need::Scope(Scope::PredictionsRead),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/predictions/d/x.parquet",
                Need::Scope(Scope::Deployments),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts/1/predictions/x",
                Need::Read,
            ),
            (Method::POST, "/somewhere/mlflow/users/create", Need::Read),
            // The archive stays the archive however its path is spelled.
            (
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts/%70redictions/d/x.parquet",
                Need::Scope(Scope::PredictionsRead),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts//predictions/d/x.parquet",
                Need::Scope(Scope::PredictionsRead),
            ),
        ];
        for (method, path, need) in adversarial {
            assert_eq!(Need::of(&method, path, None), need, "{method} {path}");
        }
        for (method, path, need) in cases {
            assert_eq!(Need::of(&method, path, None), need, "{method} {path}");
        }
        // A listing of the archive is a read of stored predictions; of anything else, a read.
        let listing = "/api/2.0/mlflow-artifacts/artifacts";
        for (query, need) in [
            ("path=predictions", Need::Scope(Scope::PredictionsRead)),
            ("path=predictions%2Fd", Need::Scope(Scope::PredictionsRead)),
            (
                "path=%2F%2Fpredictions",
                Need::Scope(Scope::PredictionsRead),
            ),
            ("path=1%2Fr", Need::Read),
        ] {
            assert_eq!(
                Need::of(&Method::GET, listing, Some(query)),
                need,
                "{query}"
            );
        }
    }

    #[test]
    fn tokens_do_what_their_scopes_say_and_users_read() {
        let token = |scopes: Vec<Scope>| Caller {
            principal: Principal::Token("t".into()),
            admin: scopes.contains(&Scope::Admin),
            scopes: Some(scopes),
            release_roles: Vec::new(),
            grants: None,
        };
        let ci = token(vec![Scope::RunsWrite]);
        assert!(Need::Read.allows(&ci).is_ok());
        assert!(Need::Scope(Scope::RunsWrite).allows(&ci).is_ok());
        assert!(Need::Scope(Scope::ModelsRegister).allows(&ci).is_err());
        let scorer = token(vec![Scope::Predict]);
        assert!(Need::Read.allows(&scorer).is_err());
        assert!(Need::Scope(Scope::AliasesMove)
            .allows(&token(vec![Scope::Admin]))
            .is_ok());
        let user = Caller {
            principal: Principal::User("alice".into()),
            admin: false,
            scopes: None,
            release_roles: Vec::new(),
            grants: None,
        };
        assert!(Need::Read.allows(&user).is_ok());
        // Permissions decide next, resource by resource.
        assert!(Need::Scope(Scope::RunsWrite).allows(&user).is_ok());
        assert!(Need::Scope(Scope::Deployments).allows(&user).is_err());
        assert!(Need::Scope(Scope::PredictionsRead).allows(&user).is_err());
        assert!(Need::Scope(Scope::Monitors).allows(&user).is_err());
        let deployer = Caller {
            release_roles: vec![ReleaseRole::Deployer],
            ..user.clone()
        };
        assert!(Need::Scope(Scope::Deployments).allows(&deployer).is_ok());
        assert!(Need::Scope(Scope::PredictionsRead)
            .allows(&deployer)
            .is_err());
        let auditor = Caller {
            release_roles: vec![ReleaseRole::Auditor],
            ..user.clone()
        };
        assert!(Need::Scope(Scope::PredictionsRead).allows(&auditor).is_ok());
        assert!(Need::Scope(Scope::Deployments).allows(&auditor).is_err());
        let admin = Caller {
            admin: true,
            ..user
        };
        assert!(Need::Scope(Scope::AliasesMove).allows(&admin).is_ok());
    }
}
