//! The tracking, registry, dataset, monitor and deployment REST decoders, in process against a
//! SQLite store: any method, path suffix, query string and body is answered with a 2xx or a
//! 4xx carrying MLflow's JSON error, never a panic or a 5xx (a 5xx would be an input mistaken
//! for a server fault).
//!
//! Input: the first byte picks the route, the second the method; up to the first newline of
//! the rest is appended to the path (a query string or more segments), the remainder is the
//! JSON body.

use axum::body::Body;
use axum::http::{Method, Request};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const ROUTES: &[&str] = &[
    "/api/2.0/mlflow/experiments/create",
    "/api/2.0/mlflow/experiments/get",
    "/api/2.0/mlflow/experiments/get-by-name",
    "/api/2.0/mlflow/experiments/search",
    "/api/2.0/mlflow/experiments/update",
    "/api/2.0/mlflow/experiments/delete",
    "/api/2.0/mlflow/experiments/restore",
    "/api/2.0/mlflow/experiments/set-experiment-tag",
    "/api/2.0/mlflow/experiments/delete-experiment-tag",
    "/api/2.0/mlflow/runs/create",
    "/api/2.0/mlflow/runs/get",
    "/api/2.0/mlflow/runs/update",
    "/api/2.0/mlflow/runs/delete",
    "/api/2.0/mlflow/runs/restore",
    "/api/2.0/mlflow/runs/search",
    "/api/2.0/mlflow/runs/log-metric",
    "/api/2.0/mlflow/runs/log-parameter",
    "/api/2.0/mlflow/runs/set-tag",
    "/api/2.0/mlflow/runs/delete-tag",
    "/api/2.0/mlflow/runs/log-batch",
    "/api/2.0/mlflow/runs/log-inputs",
    "/api/2.0/mlflow/runs/outputs",
    "/api/2.0/mlflow/metrics/get-history",
    "/api/2.0/mlflow/registered-models/create",
    "/api/2.0/mlflow/registered-models/get",
    "/api/2.0/mlflow/registered-models/rename",
    "/api/2.0/mlflow/registered-models/update",
    "/api/2.0/mlflow/registered-models/delete",
    "/api/2.0/mlflow/registered-models/search",
    "/api/2.0/mlflow/registered-models/get-latest-versions",
    "/api/2.0/mlflow/registered-models/set-tag",
    "/api/2.0/mlflow/registered-models/delete-tag",
    "/api/2.0/mlflow/registered-models/alias",
    "/api/2.0/mlflow/model-versions/create",
    "/api/2.0/mlflow/model-versions/get",
    "/api/2.0/mlflow/model-versions/update",
    "/api/2.0/mlflow/model-versions/delete",
    "/api/2.0/mlflow/model-versions/search",
    "/api/2.0/mlflow/model-versions/set-tag",
    "/api/2.0/mlflow/model-versions/delete-tag",
    "/api/2.0/mlflow/model-versions/transition-stage",
    "/api/2.0/mlflow/model-versions/get-download-uri",
    "/api/2.0/mlflow/logged-models",
    "/api/2.0/mlflow/logged-models/search",
    "/api/2.0/mlflow/logged-models/",
    "/api/2.0/mlflow-artifacts/artifacts/",
    "/api/v1/datasets",
    "/api/v1/datasets/",
    "/api/v1/monitors",
    "/api/v1/monitors/",
    "/api/v1/alerts",
    "/api/v1/deployments",
    "/api/v1/deployments/events",
];

const METHODS: [Method; 5] = [
    Method::POST,
    Method::GET,
    Method::PATCH,
    Method::DELETE,
    Method::PUT,
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let app = runtime.block_on(async {
            let uri = format!("sqlite:///{}/mltrail.db", dir.path().display());
            let store = mltrail_store::MetaStore::open(&mltrail_store::StoreConfig::new(uri))
                .await
                .expect("a store");
            let artifacts = mltrail_artifacts::ArtifactStore::open(
                dir.path().join("artifacts").to_str().expect("a UTF-8 path"),
            )
            .expect("an artifact store");
            let webhooks = Arc::new(mltrail_server::webhooks::WebhookSink::new(
                store.clone(),
                Default::default(),
            ));
            let monitors = Arc::new(mltrail_monitor::runner::Engine::new(
                store.clone(),
                artifacts.clone(),
                webhooks.clone(),
                2,
            ));
            let state = mltrail_server::AppState {
                store,
                artifacts,
                webhooks,
                monitors,
                auth: std::sync::Arc::new(mltrail_server::auth::Auth::new(
                    mltrail_server::auth::AuthMode::Off,
                )),
                privacy: None,
                checkpoints: None,
                ui: Default::default(),
                http: Default::default(),
            };
            mltrail_server::router(state, mltrail_server::Limits::default())
        });
        Fixture {
            runtime,
            app,
            _dir: dir,
        }
    })
}

pub fn run(data: &[u8]) {
    let [route, method, rest @ ..] = data else {
        return;
    };
    let (suffix, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let Ok(suffix) = std::str::from_utf8(suffix) else {
        return;
    };
    let path = format!("{}{}", ROUTES[usize::from(*route) % ROUTES.len()], suffix);
    let method = METHODS[usize::from(*method) % METHODS.len()].clone();
    let Ok(request) = Request::builder()
        .method(method.clone())
        .uri(&path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let response = fixture
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        if status.is_server_error() {
            let text = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            panic!(
                "{method} {path} answered {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
    });
}
