//! mltrail-server is the HTTP edge: the MLflow-compatible REST API (`/api/2.0/mlflow/…`, its
//! `/ajax-api/…` alias, `/api/3.0/mlflow/server-info`) and the artifact proxy
//! (`/api/2.0/mlflow-artifacts/…`). Handlers only translate between HTTP and the domain crates;
//! request fields are parsed and validated here, once, and errors are mapped to MLflow's codes
//! in one place ([`error`]).

mod artifacts;
mod audit;
pub mod auth;
mod business;
pub(crate) mod cards;
mod catalogs;
mod datasets;
mod deployments;
pub mod error;
mod evaluations;
mod gates;
mod grants;
pub mod guard;
pub mod http_metrics;
pub mod lineage;
mod logged_models;
mod metric_body;
pub mod metrics;
mod monitors;
pub mod openapi;
pub mod permissions;
mod privacy;
mod registry;
mod req;
mod routing;
pub mod scoring;
pub mod scoring_auth;
mod settings;
pub mod tls;
mod tracking;
pub mod ui;
mod users;
pub mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use axum::{Json, Router};
use mltrail_artifacts::ArtifactStore;
use mltrail_store::MetaStore;
use std::future::Future;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: MetaStore,
    pub artifacts: ArtifactStore,
    /// Where monitors' alerts go besides the log; `/metrics` reports its delivery counters.
    pub webhooks: std::sync::Arc<webhooks::WebhookSink>,
    /// The monitors' engine (it also renders a window's report on request).
    pub monitors: std::sync::Arc<mltrail_monitor::runner::Engine>,
    /// Whether requests authenticate, the credential cache and the refusal counters.
    pub auth: std::sync::Arc<auth::Auth>,
    /// The keys of the people predictions are about; `None` without a master key (then
    /// nothing can be stored sealed, and `/api/v1/privacy` answers 503).
    pub privacy: Option<std::sync::Arc<mltrail_serving::privacy::StoreKeys>>,
    /// Signs the checkpoints traces carry; `None` when the server has no audit signing key.
    pub checkpoints: Option<lineage::SharedSigner>,
    /// The web UI's CSRF key and last verification of the trail.
    pub ui: std::sync::Arc<ui::UiState>,
    /// Requests and latency by route and status, for `/metrics`.
    pub http: std::sync::Arc<http_metrics::HttpMetrics>,
}

/// Largest JSON request body the MLflow REST API accepts unless configured otherwise, in bytes.
pub const DEFAULT_MAX_JSON_BYTES: usize = 16 << 20;
/// Largest artifact upload accepted unless configured otherwise, in bytes.
pub const DEFAULT_MAX_ARTIFACT_BYTES: usize = 1 << 30;

/// Limits the server enforces on request bodies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_json_bytes: usize,
    pub max_artifact_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
        }
    }
}

/// The native API (`/api/v1/…`): every route declared with its entry in the OpenAPI document.
fn native_routes(limits: Limits) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::TrackingApi::openapi())
        .nest("/api/v1/datasets", datasets::routes())
        .nest("/api/v1/deployments", deployments::routes())
        .nest(
            "/api/v1/models",
            evaluations::routes()
                .merge(gates::routes())
                .merge(cards::routes()),
        )
        .nest("/api/v1/monitors", monitors::routes())
        .nest("/api/v1/alerts", monitors::alert_routes())
        .nest(
            "/api/v1/metrics",
            business::metric_routes(limits.max_json_bytes),
        )
        .nest(
            "/api/v1/annotations",
            business::annotation_routes(limits.max_json_bytes),
        )
        .nest("/api/v1/audit", audit::routes())
        .nest("/api/v1/settings", settings::routes())
        .nest(
            "/api/v1/privacy",
            privacy::routes().layer(DefaultBodyLimit::max(limits.max_json_bytes)),
        )
        .nest("/api/v1/catalogs", catalogs::routes())
        .routes(utoipa_axum::routes!(lineage::lineage))
        .routes(utoipa_axum::routes!(lineage::record))
        .routes(utoipa_axum::routes!(auth::whoami))
}

/// The tracking server's OpenAPI document, as `/api/v1/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::completed(native_routes(Limits::default()).into_openapi())
}

pub fn router(state: AppState, limits: Limits) -> Router {
    let (native, document) = native_routes(limits).split_for_parts();
    let document = openapi::Rendered::new(&openapi::completed(document));
    let api = tracking::routes()
        .merge(registry::routes())
        .merge(users::routes(state.clone()))
        .merge(grants::routes_v2(state.clone()))
        .merge(logged_models::routes())
        .layer(DefaultBodyLimit::max(limits.max_json_bytes));
    let app = Router::new()
        .nest("/api/2.0/mlflow", api.clone())
        .nest("/ajax-api/2.0/mlflow", api)
        .nest(
            "/api/3.0/mlflow",
            grants::routes_v3(state.clone()).layer(DefaultBodyLimit::max(limits.max_json_bytes)),
        )
        .nest(
            "/ajax-api/3.0/mlflow",
            grants::routes_v3(state.clone()).layer(DefaultBodyLimit::max(limits.max_json_bytes)),
        )
        .nest(
            "/api/2.0/mlflow-artifacts",
            artifacts::routes().layer(DefaultBodyLimit::max(limits.max_artifact_bytes)),
        )
        .nest(
            "/ajax-api/2.0/mlflow-artifacts",
            artifacts::routes().layer(DefaultBodyLimit::max(limits.max_artifact_bytes)),
        )
        .route("/metrics", get(metrics::metrics))
        .merge(native)
        .route(
            "/api/v1/openapi.json",
            get(move || std::future::ready(document.clone())),
        )
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .merge(ui::routes())
        .fallback(error::not_found_route)
        .method_not_allowed_fallback(error::method_not_allowed);
    // With auth off nothing is checked, so no middleware runs (handlers name the actor from
    // the headers themselves).
    let app = match state.auth.mode {
        auth::AuthMode::On => app.layer(guard::GuardLayer(auth::AuthGate {
            auth: state.auth.clone(),
            store: state.store.clone(),
            max_body: limits.max_json_bytes,
            artifacts_uri: state.artifacts.uri().to_string(),
        })),
        auth::AuthMode::Off => app,
    };
    // Outermost, so a request's time includes its authentication.
    app.layer(TraceLayer::new_for_http())
        .layer(http_metrics::RequestMetricsLayer(state.http.clone()))
        .with_state(state)
}

async fn server_info() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": {},
        "server": "mltrail",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Serves until `shutdown` resolves, then finishes in-flight requests; over TLS when given an
/// acceptor ([`tls::acceptor`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, tls, router(state, limits), shutdown).await
}

/// Serves `app` on plain TCP or, with an acceptor, TLS (both servers use this).
pub async fn serve_router(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(without_nagle(listener), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// Sends what a response writes at once. With Nagle's algorithm on, a response written in two
/// parts (headers, then a streamed body such as an artifact download) held its second part until
/// the client acknowledged the first, and clients delay that ACK by 40 ms: a kept-alive client
/// such as mlflow's waited 41-48 ms on half or more of its downloads (`tests/downloads.rs`).
pub fn without_nagle(listener: TcpListener) -> impl Listener<Addr = std::net::SocketAddr> {
    listener.tap_io(|connection| {
        if let Err(e) = connection.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot turn off Nagle's algorithm on a connection");
        }
    })
}
