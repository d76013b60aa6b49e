//! The web UI's routes: each handler fetches what its page shows, with the caller's
//! permissions (the experiments and models a user may not read are neither listed nor shown),
//! and hands it to `mltrail_web` to render. With `--auth on` the guard has authenticated the
//! browser (its session cookie, or HTTP Basic) before a handler runs, as for the API. One
//! module per section of the UI; this one holds what they share (the caller, errors as pages,
//! the query string, the assets).

use crate::permissions::Seen;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use mltrail_core::artifact_path::{source_artifact_path, ArtifactPath};
use mltrail_core::state::ViewType;
use mltrail_core::{tags, ExperimentId, MonitorId};
use mltrail_store::records::{Page, PageToken, Run};
use mltrail_store::{
    business, datasets, experiments, metrics, monitors, registry, runs, StoreError, StoreErrorKind,
};
use mltrail_web::chart::{self, Series};
use mltrail_web::runs::{ArtifactEntry, Column, ColumnKind, Comparison, Preview, RunPage};
use mltrail_web::runs::{RunsQuery, RunsTable};
use mltrail_web::{layout, Section, Viewer};
use std::sync::Arc;

mod audit;
mod data;
mod models;
mod monitoring;
mod predictions;
mod serving;
mod session;
mod tracking;
use self::{
    audit::*, data::*, models::*, monitoring::*, predictions::*, serving::*, session::*,
    tracking::*,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/ui", get(|| async { Redirect::to("/ui/experiments") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/experiments") }))
        // Pages that are not the UI's own (a drift report) make browsers ask for an icon.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/ui/static/app.css", get(stylesheet))
        .route("/ui/static/app.js", get(script))
        .route("/ui/experiments", get(experiments_list))
        .route("/ui/experiments/{id}", get(experiment_runs))
        .route("/ui/runs/{id}", get(run))
        .route("/ui/compare", get(compare))
        .route("/ui/models", get(models))
        .route("/ui/models/{name}", get(model))
        .route("/ui/models/{name}/versions/{version}", get(version))
        .route(
            "/ui/models/{name}/versions/{version}/card",
            get(models::card),
        )
        .route("/ui/login", get(sign_in_page).post(sign_in))
        .route("/ui/logout", axum::routing::post(sign_out))
        .route("/ui/audit", get(audit_trail))
        .route("/ui/audit/verify", axum::routing::post(verify_trail))
        .route("/ui/predictions", get(prediction))
        .route("/ui/datasets", get(datasets_list))
        .route("/ui/datasets/{name}", get(dataset))
        .route("/ui/datasets/{name}/drift", get(dataset_drift))
        .route("/ui/deployments", get(deployments_list))
        .route("/ui/deployments/{name}", get(deployment))
        .route("/ui/monitors", get(monitors_list))
        .route("/ui/monitors/{id}", get(monitor))
        .route("/ui/metrics", get(metrics_list))
        .route("/ui/metrics/{name}", get(metric))
        .route("/ui/server", get(server_health))
        .route("/ui/api", get(api_reference))
}

/// What the UI keeps between requests: the secret its forms' CSRF tokens are keyed with, and
/// the last verification of the trail run from it.
pub struct UiState {
    csrf_key: [u8; 32],
    verification: std::sync::Mutex<Option<mltrail_web::audit::Verification>>,
    /// What serving replicas reported for the live panels, by deployment (in memory: the
    /// last hour of reports since this server started).
    live: std::sync::Mutex<std::collections::HashMap<String, mltrail_web::live::LiveDeployment>>,
    /// The server speaks HTTPS itself: its session cookie is `Secure`.
    secure: bool,
}

/// Deployments whose reports are kept at most; past it the one heard from longest ago goes.
const LIVE_DEPLOYMENTS: usize = 1_000;

impl Default for UiState {
    fn default() -> Self {
        // A fresh key per start: a token outlives neither the process nor the user it names.
        UiState {
            csrf_key: crate::auth::random_key(),
            verification: std::sync::Mutex::new(None),
            live: Default::default(),
            secure: false,
        }
    }
}

impl UiState {
    /// Marks the session cookie `Secure` (for a server that serves HTTPS itself).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Keeps a replica's report of its metrics (`POST /api/v1/deployments/metrics`).
    pub fn report(
        &self,
        deployment: &str,
        replica: &str,
        boot: &str,
        sample: mltrail_web::live::LiveSample,
    ) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if !live.contains_key(deployment) && live.len() >= LIVE_DEPLOYMENTS {
            let stalest = live
                .iter()
                .min_by_key(|(_, d)| {
                    d.replicas
                        .values()
                        .filter_map(|s| s.back())
                        .map(|s| s.time_ms)
                        .max()
                })
                .map(|(name, _)| name.clone());
            if let Some(name) = stalest {
                live.remove(&name);
            }
        }
        live.entry(deployment.to_string())
            .or_default()
            .add(replica, boot, sample);
    }

    /// The token a form posted by `who` must carry: a keyed hash of the principal, so another
    /// site cannot forge a request the browser would send with the user's credentials.
    fn csrf_token(&self, who: &str) -> String {
        blake3::keyed_hash(&self.csrf_key, who.as_bytes())
            .to_hex()
            .to_string()
    }

    /// Whether `token` is `who`'s (compared in constant time: `blake3::Hash`'s equality).
    fn csrf_holds(&self, who: &str, token: &str) -> bool {
        blake3::Hash::from_hex(token)
            .is_ok_and(|t| t == blake3::keyed_hash(&self.csrf_key, who.as_bytes()))
    }
}

/// Why a page cannot be shown, as the page a browser then gets.
enum Problem {
    NotFound(String),
    BadRequest(String),
    Forbidden(String),
    Store(Box<StoreError>),
    /// A page already rendered, answered with this status.
    Rendered(StatusCode, String),
    Other(String),
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        Problem::Store(Box::new(e))
    }
}

struct Shown {
    section: Section,
    viewer: Option<String>,
    /// The viewer's CSRF token, for the sign-out form in the page's header.
    csrf: String,
    problem: Problem,
}

impl IntoResponse for Shown {
    fn into_response(self) -> Response {
        let (status, title, message) = match self.problem {
            Problem::Rendered(status, page) => return (status, Html(page)).into_response(),
            Problem::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Problem::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Problem::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            Problem::Store(e) => match e.kind() {
                StoreErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not found", e.to_string()),
                StoreErrorKind::InvalidParameter => {
                    (StatusCode::BAD_REQUEST, "Bad request", e.to_string())
                }
                StoreErrorKind::Unavailable | StoreErrorKind::Closed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    format!("The store cannot answer now; try again shortly ({e})."),
                ),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
            },
            Problem::Other(m) => (StatusCode::INTERNAL_SERVER_ERROR, "Error", m),
        };
        let viewer = Viewer {
            who: self.viewer.as_deref(),
            csrf: &self.csrf,
        };
        (
            status,
            Html(layout::problem(self.section, &viewer, title, &message).into_string()),
        )
            .into_response()
    }
}

/// Who is looking, and what they may see.
struct Ctx {
    viewer: Option<String>,
    admin: bool,
    seen: Seen,
    /// The token this user's forms carry.
    csrf: String,
}

impl axum::extract::FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<Arc<crate::auth::Caller>>();
        let viewer = caller.map(|c| c.principal.to_string());
        // With auth off there is no caller, and everyone may do everything.
        let admin = caller.is_none_or(|c| c.admin);
        let seen = Seen::from_request_parts(parts, state).await?;
        let csrf = state
            .ui
            .csrf_token(viewer.as_deref().unwrap_or("anonymous"));
        Ok(Ctx {
            viewer,
            admin,
            seen,
            csrf,
        })
    }
}

impl Ctx {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            who: self.viewer.as_deref(),
            csrf: &self.csrf,
        }
    }

    /// Who the audit records and CSRF tokens name (`anonymous` with auth off).
    fn who(&self) -> String {
        self.viewer.clone().unwrap_or_else(|| "anonymous".into())
    }

    fn fail(&self, section: Section, problem: impl Into<Problem>) -> Shown {
        Shown {
            section,
            viewer: self.viewer.clone(),
            csrf: self.csrf.clone(),
            problem: problem.into(),
        }
    }

    fn experiment_visible(&self, id: &str) -> bool {
        id.parse::<i64>()
            .is_ok_and(|id| self.seen.0.experiments.allows(&id))
    }
}

type PageResult = Result<Html<String>, Shown>;

fn html(markup: Markup) -> PageResult {
    Ok(Html(markup.into_string()))
}

/// The query's values, each key possibly repeated (`col=…&col=…`).
fn pairs(query: &Option<String>) -> Vec<(String, String)> {
    form(query.as_deref().unwrap_or("").as_bytes())
}

/// The fields of a form's body (`application/x-www-form-urlencoded`), or of a query string.
fn form(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn all(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

async fn stylesheet() -> Response {
    asset(layout::STYLESHEET, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(layout::SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `/`: the experiments list; the script there turns the mlflow client's `/#/…` links into
/// the matching page.
async fn home(state: State<AppState>, ctx: Ctx) -> PageResult {
    experiments_list(state, ctx).await
}
