//! Who may call a serving process (`mltrail serve --auth on`). A serving process keeps no users
//! or tokens: it asks the tracking server who a caller's credentials are (`/api/v1/auth/whoami`,
//! through [`Identify`]) and caches the answer for [`crate::auth::CACHE_SECONDS`]; the tracking server
//! answers `whoami` without its own cache, so a revoked token is refused within that many
//! seconds.
//!
//! What each route needs: scoring (`/invocations`, `/api/v1/predict`) a token with `predict`;
//! `/api/v1/feedback` one with `feedback`; reading a stored prediction
//! (`/api/v1/predictions/{id}`, whose inputs may be personal data) one with `predictions:read`.
//! Users may score and send feedback; admins and auditors read stored predictions. `/health` and
//! `/ping` are open; the rest needs any authenticated caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use mltrail_core::{Principal, Scope};

use crate::auth::{cannot_check, denied, unauthenticated, AuthCounters, Caller, CredentialCache};
use crate::error::ApiError;
use crate::guard::{Fast, Guard};

/// What the tracking server said about a credential.
pub enum Identity {
    Known(Caller),
    /// Refused (wrong, expired, revoked): the reason to pass on.
    Refused(String),
}

/// Asks the tracking server who an `Authorization` header is. `Err` when it cannot be asked.
pub trait Identify: Send + Sync + 'static {
    fn identify<'a>(
        &'a self,
        authorization: &'a HeaderValue,
    ) -> Pin<Box<dyn Future<Output = Result<Identity, String>> + Send + 'a>>;
}

/// A serving process's authentication: the tracking server's answers, cached, and counts.
pub struct ServeAuth {
    identify: Box<dyn Identify>,
    cache: CredentialCache,
    pub counters: AuthCounters,
}

impl ServeAuth {
    pub fn new(identify: impl Identify) -> Self {
        ServeAuth {
            identify: Box::new(identify),
            cache: CredentialCache::default(),
            counters: AuthCounters::default(),
        }
    }
}

/// What a serving route needs; `None` for the open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Open,
    Scope(Scope),
    Identified,
}

fn need_of(path: &str) -> Need {
    match path {
        // The API's description holds no data; client generators fetch it first.
        "/health" | "/ping" | "/api/v1/openapi.json" => Need::Open,
        "/invocations" | "/api/v1/predict" | "/api/v1/noop" => Need::Scope(Scope::Predict),
        "/api/v1/feedback" => Need::Scope(Scope::Feedback),
        p if p.starts_with("/api/v1/predictions/") => Need::Scope(Scope::PredictionsRead),
        _ => Need::Identified,
    }
}

fn allows(caller: &Caller, need: Need) -> Result<(), String> {
    let scope = match need {
        Need::Open | Need::Identified => return Ok(()),
        Need::Scope(scope) => scope,
    };
    if caller.admin {
        return Ok(());
    }
    match &caller.scopes {
        Some(scopes) if scopes.contains(&scope) => Ok(()),
        Some(_) => Err(format!(
            "token `{}` lacks the scope `{scope}` this request needs",
            caller.principal.name()
        )),
        None if scope != Scope::PredictionsRead || caller.role_allows(scope) => Ok(()),
        None => Err(format!(
            "user `{}` may not read stored predictions (their inputs may be personal data): an admin, a user with the auditor role or a token with `predictions:read` may",
            caller.principal.name()
        )),
    }
}

/// The guard of `mltrail serve --auth on`: a cached caller is decided without awaiting; the
/// tracking server is asked on a miss only.
#[derive(Clone)]
pub struct ServeGuard(pub Arc<ServeAuth>);

impl Guard for ServeGuard {
    fn fast(&self, request: &mut Request) -> Fast {
        let need = need_of(request.uri().path());
        if need == Need::Open {
            return Fast::Pass;
        }
        let Some(raw) = request.headers().get(header::AUTHORIZATION) else {
            return Fast::Refuse(no_credentials());
        };
        match self.0.cache.get(&CredentialCache::key(raw)) {
            Some(caller) => match allows(&caller, need) {
                Ok(()) => Fast::Pass,
                Err(why) => {
                    Fast::Refuse(denied(&self.0.counters, &caller, request.uri().path(), why))
                }
            },
            None => Fast::Check,
        }
    }

    fn slow(self, request: Request) -> BoxFuture<'static, Result<Request, Response>> {
        Box::pin(async move {
            let need = need_of(request.uri().path());
            let Some(raw) = request.headers().get(header::AUTHORIZATION) else {
                return Err(no_credentials());
            };
            let caller = ask_tracking_server(&self.0, raw).await?;
            match allows(&caller, need) {
                Ok(()) => Ok(request),
                Err(why) => Err(denied(&self.0.counters, &caller, request.uri().path(), why)),
            }
        })
    }
}

fn no_credentials() -> Response {
    unauthenticated("this deployment requires authentication: send a bearer token (Authorization: Bearer mlt_…) or HTTP Basic credentials")
}

/// Who `raw` is, from the tracking server, cached when it is a checked principal.
async fn ask_tracking_server(auth: &ServeAuth, raw: &HeaderValue) -> Result<Arc<Caller>, Response> {
    let generation = auth.cache.generation();
    match auth.identify.identify(raw).await {
        // Only a checked principal counts: a tracking server restarted with auth off
        // answers `anonymous` or `unverified:NAME` for any header.
        Ok(Identity::Known(caller))
            if matches!(caller.principal, Principal::User(_) | Principal::Token(_)) =>
        {
            let caller = Arc::new(caller);
            auth.cache
                .put(CredentialCache::key(raw), caller.clone(), generation, None);
            Ok(caller)
        }
        Ok(Identity::Known(caller)) => {
            tracing::error!(answered = %caller.principal, "the tracking server no longer authenticates; refusing every caller");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                "callers cannot be checked: the tracking server does not authenticate",
            )
            .into_response())
        }
        Ok(Identity::Refused(why)) => {
            auth.counters.failed_logins.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "authentication failed");
            Err(unauthenticated(&why))
        }
        Err(why) => {
            tracing::warn!(error = %why, "cannot check credentials with the tracking server");
            Err(cannot_check())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_routes_need_their_scopes() {
        let token = |scopes: Vec<Scope>| Caller {
            principal: Principal::Token("t".into()),
            admin: false,
            scopes: Some(scopes),
            release_roles: Vec::new(),
            grants: None,
        };
        let scorer = token(vec![Scope::Predict]);
        assert!(allows(&scorer, need_of("/invocations")).is_ok());
        assert!(allows(&scorer, need_of("/api/v1/predict")).is_ok());
        assert_eq!(need_of("/api/v1/openapi.json"), Need::Open);
        assert!(allows(&scorer, need_of("/api/v1/feedback")).is_err());
        assert!(allows(
            &scorer,
            need_of("/api/v1/predictions/0190a0a0-0000-7000-8000-000000000000")
        )
        .is_err());
        let reader = token(vec![Scope::PredictionsRead]);
        assert!(allows(&reader, need_of("/api/v1/predictions/x")).is_ok());
        assert!(allows(&reader, need_of("/api/v1/predict")).is_err());
        let user = Caller {
            principal: Principal::User("alice".into()),
            admin: false,
            scopes: None,
            release_roles: Vec::new(),
            grants: None,
        };
        assert!(allows(&user, need_of("/api/v1/predict")).is_ok());
        assert!(allows(&user, need_of("/api/v1/predictions/x")).is_err());
        let auditor = Caller {
            release_roles: vec![mltrail_core::ReleaseRole::Auditor],
            ..user
        };
        assert!(allows(&auditor, need_of("/api/v1/predictions/x")).is_ok());
        assert_eq!(need_of("/health"), Need::Open);
        assert_eq!(need_of("/metrics"), Need::Identified);
    }

    #[test]
    fn callers_cross_the_wire_unchanged() {
        for caller in [
            Caller {
                principal: Principal::Token("ci".into()),
                admin: false,
                scopes: Some(vec![Scope::Predict, Scope::Feedback]),
                release_roles: Vec::new(),
                grants: None,
            },
            Caller {
                principal: Principal::User("alice".into()),
                admin: false,
                scopes: None,
                release_roles: vec![mltrail_core::ReleaseRole::Auditor],
                grants: None,
            },
        ] {
            assert_eq!(Caller::from_json(&caller.to_json()), Some(caller));
        }
        assert_eq!(
            Caller::from_json(
                &serde_json::json!({"actor": "token:x", "admin": false, "scopes": ["root"]})
            ),
            None
        );
    }
}
