//! Requests to the tracking server and their latency, by method, route and status, for its
//! `/metrics`. The route is the router's pattern (`/api/2.0/mlflow/runs/get`,
//! `/api/v1/monitors/{id}`), never the request's own path, so ids do not make new series;
//! requests no route matched count under `unmatched`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Seconds, from a cached read (~50 µs) to a large artifact upload.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

const UNMATCHED: &str = "unmatched";

/// One route's histograms by method and status (a handful each, so a scan).
type Series = Vec<(&'static str, u16, Histogram)>;

/// The request histograms, one per method, route and status seen. Looked up by the route's
/// text, so a request allocates nothing here: `prometheus_client`'s `Family` wants an owned
/// label set per lookup, and with it this layer cost ~6 % of the tracking server's CPU per
/// metric logged at 64 connections (docs/benchmarks.md).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, Series>>,
}

impl HttpMetrics {
    fn observe(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        {
            // A poisoned lock only means a panic elsewhere while it was held; the map is whole.
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, _, histogram)) = routes
                .get(route)
                .and_then(|series| series.iter().find(|(m, s, _)| *m == method && *s == status))
            {
                histogram.observe(seconds);
                return;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let series = routes.entry(route.into()).or_default();
        let histogram = match series.iter().find(|(m, s, _)| *m == method && *s == status) {
            Some((_, _, histogram)) => histogram.clone(),
            None => {
                let histogram = Histogram::new(SECONDS_BUCKETS);
                series.push((method, status, histogram.clone()));
                histogram
            }
        };
        histogram.observe(seconds);
    }

    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

impl Collector for HttpMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut family = encoder.encode_descriptor(
            "mltrail_http_request_duration",
            "Requests the server answered and how long each took (to the response's head; a streamed body may go on), by method, route pattern and status. Its _count is the number of requests",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let mut sorted: Vec<_> = routes.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (route, series) in sorted {
            for (method, status, histogram) in series {
                let status = status.to_string();
                let labels = [
                    ("method", *method),
                    ("route", route.as_ref()),
                    ("status", status.as_str()),
                ];
                histogram.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
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
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        MeasuredFuture {
            inner: self.inner.call(request),
            started,
            method,
            route,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's answer, timed (no allocation: the inner future is held in place).
    pub struct MeasuredFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
        metrics: Arc<HttpMetrics>,
    }
}

impl<F> Future for MeasuredFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(never)) => match never {},
            Poll::Ready(Ok(response)) => response,
        };
        this.metrics.observe(
            this.method,
            this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
            response.status().as_u16(),
            this.started.elapsed().as_secs_f64(),
        );
        Poll::Ready(Ok(response))
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
