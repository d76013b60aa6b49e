//! Requests to the tracking server and their latency, by method, route and status, for its
//! `/metrics`. The route is the router's pattern (`/api/2.0/mlflow/runs/get`,
//! `/api/v1/monitors/{id}`), never the request's own path, so ids do not make new series;
//! requests no route matched count under `unmatched`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Seconds, from a cached read (~50 µs) to a large artifact upload.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Arc<str>,
    status: u16,
}

fn histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// The request histograms, one per method, route and status seen.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::new_with_constructor(histogram),
        }
    }
}

impl HttpMetrics {
    fn observe(&self, method: &'static str, route: Arc<str>, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RouteLabels {
                method,
                route,
                status,
            })
            .observe(seconds);
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "mltrail_http_request_duration",
            "Requests the server answered and how long each took (to the response's head; a streamed body may go on), by method, route pattern and status. Its _count is the number of requests",
            Unit::Seconds,
            self.requests.clone(),
        );
    }
}

/// `Router::layer(RequestMetricsLayer(metrics))`: axum applies it to each route, after
/// routing, so the matched pattern is in the request's extensions.
#[derive(Clone)]
pub struct RequestMetricsLayer(pub Arc<HttpMetrics>);

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl<S> tower::Service<Request> for Measured<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        let route: Arc<str> = match request.extensions().get::<MatchedPath>() {
            Some(matched) => Arc::from(matched.as_str()),
            None => Arc::from("unmatched"),
        };
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            metrics.observe(
                method,
                route,
                response.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    /// The route label is the pattern (nested prefixes included), not the path; statuses and
    /// unmatched paths are separate series.
    #[tokio::test]
    async fn requests_are_counted_by_route_pattern_and_status() {
        let metrics = Arc::new(HttpMetrics::default());
        let inner = Router::new().route("/items/{id}", get(|| async { "ok" }));
        let app = Router::new()
            .nest("/api", inner)
            .layer(RequestMetricsLayer(metrics.clone()));
        for path in ["/api/items/1", "/api/items/2", "/nowhere"] {
            let request = Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .expect("request");
            app.clone().oneshot(request).await.expect("answer");
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("mltrail_http_request_duration_seconds_count{method=\"GET\",route=\"/api/items/{id}\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("mltrail_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"),
            "{text}"
        );
    }
}
