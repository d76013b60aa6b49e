//! The OpenTelemetry exporter a log setting can name (`otlp_endpoint`, OTLP/HTTP with protobuf):
//! the process's log events go out as OTLP logs, each scored request as a span (a child of the
//! caller's `traceparent`, with its prediction ids), and the same counters and gauges as
//! `/metrics` every few seconds. It is built when the setting names an endpoint and shut down
//! (flushing what is queued) when the setting changes, in `crate::logging`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// How often the metrics are exported.
pub const METRICS_EVERY: Duration = Duration::from_secs(5);

/// Who this process is in what it exports: `service.name` and resource attributes (a serving
/// replica names its deployment), set once the process knows.
static IDENTITY: OnceLock<(String, Vec<(String, String)>)> = OnceLock::new();

/// Where the metrics come from: the OpenMetrics text the process serves at `/metrics`.
type Render = Arc<dyn Fn() -> String + Send + Sync>;
static METRICS: OnceLock<Render> = OnceLock::new();

/// Names this process in everything it exports (the first call wins).
pub fn identify(service: &str, attributes: Vec<(String, String)>) {
    let _ = IDENTITY.set((service.to_string(), attributes));
}

/// Exports what `render` returns (OpenMetrics text) as OTLP metrics (the first call wins).
pub fn export_metrics(render: Render) {
    let _ = METRICS.set(render);
}

fn resource() -> Resource {
    let (service, attributes) = IDENTITY
        .get()
        .cloned()
        .unwrap_or_else(|| ("mltrail".to_string(), Vec::new()));
    Resource::builder()
        .with_service_name(service)
        .with_attributes(attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}

/// The exporters of one endpoint.
pub struct Exporter {
    tracer: opentelemetry_sdk::trace::SdkTracer,
    traces: SdkTracerProvider,
    pub logs: SdkLoggerProvider,
    metrics: Option<Metrics>,
}

/// The metrics side of an exporter: an instrument per sample name seen so far.
struct Metrics {
    provider: SdkMeterProvider,
    meter: opentelemetry::metrics::Meter,
    snapshot: Arc<Snapshot>,
    registered: Mutex<HashSet<String>>,
}

/// Counter and gauge samples, each with whether it is a counter.
type Samples = Arc<Vec<(Sample, bool)>>;

/// The text's samples, rendered and parsed once for all instruments of one export (each
/// instrument's callback runs in turn; rendering the text once per instrument repeated the same
/// work for every family).
struct Snapshot {
    render: Render,
    taken: Mutex<Option<(std::time::Instant, Samples)>>,
}

impl Snapshot {
    /// The samples of at most a second ago.
    fn samples(&self) -> Samples {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, samples)) = taken.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return samples.clone();
            }
        }
        let fresh = Arc::new(samples(&(self.render)()));
        *taken = Some((std::time::Instant::now(), fresh.clone()));
        fresh
    }
}

impl Metrics {
    /// Registers an observable instrument for each counter and gauge sample name the text has
    /// now and had not before (families appear later: a monitor created, a policy set), each
    /// reading the export's snapshot of the text.
    fn register_new(&self) {
        let current = self.snapshot.samples();
        let mut registered = self.registered.lock().unwrap_or_else(|p| p.into_inner());
        for (sample, counter) in current.iter() {
            if !registered.insert(sample.name.clone()) {
                continue;
            }
            let (snapshot, wanted) = (self.snapshot.clone(), sample.name.clone());
            let observe = move |observer: &dyn opentelemetry::metrics::AsyncInstrument<f64>| {
                for (sample, _) in snapshot.samples().iter() {
                    if sample.name == wanted {
                        let attributes: Vec<KeyValue> = sample
                            .labels
                            .iter()
                            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                            .collect();
                        observer.observe(sample.value, &attributes);
                    }
                }
            };
            if *counter {
                self.meter
                    .f64_observable_counter(sample.name.clone())
                    .with_callback(observe)
                    .build();
            } else {
                self.meter
                    .f64_observable_gauge(sample.name.clone())
                    .with_callback(observe)
                    .build();
            }
        }
    }
}

/// The URL of one signal under `endpoint` (`http://collector:4318` → `…/v1/traces`), as the
/// OTLP/HTTP specification builds it from a base endpoint.
fn signal_url(endpoint: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", endpoint.trim_end_matches('/'))
}

/// Checks an endpoint: an http(s) URL with a host.
pub fn check_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => anyhow::bail!("OTLP endpoint `{endpoint}` is not an http:// or https:// URL"),
    }
}

impl Exporter {
    /// Exporters of traces, logs and (when this process serves metrics) metrics to `endpoint`.
    pub fn start(endpoint: &str) -> anyhow::Result<Self> {
        check_endpoint(endpoint)?;
        let timeout = Duration::from_secs(10);
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(signal_url(endpoint, "traces"))
            .with_timeout(timeout)
            .build()?;
        let traces = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource())
            .build();
        let tracer = traces.tracer("mltrail");
        let log_exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_endpoint(signal_url(endpoint, "logs"))
            .with_timeout(timeout)
            .build()?;
        let logs = SdkLoggerProvider::builder()
            .with_batch_exporter(log_exporter)
            .with_resource(resource())
            .build();
        let metrics = match METRICS.get() {
            Some(render) => {
                let exporter = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_endpoint(signal_url(endpoint, "metrics"))
                    .with_timeout(timeout)
                    .build()?;
                let provider = SdkMeterProvider::builder()
                    .with_reader(
                        PeriodicReader::builder(exporter)
                            .with_interval(METRICS_EVERY)
                            .build(),
                    )
                    .with_resource(resource())
                    .build();
                let metrics = Metrics {
                    meter: provider.meter("mltrail"),
                    provider,
                    snapshot: Arc::new(Snapshot {
                        render: render.clone(),
                        taken: Mutex::new(None),
                    }),
                    registered: Mutex::new(HashSet::new()),
                };
                metrics.register_new();
                Some(metrics)
            }
            None => None,
        };
        // The logger is made here so that a bad provider shows now, not at the first event.
        let _ = logs.logger("mltrail");
        Ok(Exporter {
            tracer,
            traces,
            logs,
            metrics,
        })
    }

    /// Sends what is queued and stops. It waits for the exporters' threads: call it off the
    /// async runtime's threads.
    pub fn shutdown(&self) {
        let _ = self.traces.shutdown();
        let _ = self.logs.shutdown();
        if let Some(m) = &self.metrics {
            let _ = m.provider.shutdown();
        }
    }

    /// Registers the metric families that appear while `exporter` is in force, every
    /// [`METRICS_EVERY`], until it is dropped.
    pub fn watch_metrics(exporter: &Arc<Exporter>) {
        if exporter.metrics.is_none() {
            return;
        }
        let weak: Weak<Exporter> = Arc::downgrade(exporter);
        std::thread::spawn(move || loop {
            std::thread::sleep(METRICS_EVERY);
            match weak.upgrade() {
                Some(e) => {
                    if let Some(m) = &e.metrics {
                        m.register_new();
                    }
                }
                None => return,
            }
        });
    }
}

/// The parent a `traceparent` header names (version 00: `00-<trace id>-<span id>-<flags>`),
/// sampled as its flags say; `None` for a header the W3C rules say to ignore.
fn remote_parent(traceparent: &str) -> Option<SpanContext> {
    let trace = mltrail_serving::record::trace_id_of(traceparent)?;
    let mut parts = traceparent.trim().split('-');
    let span = parts.nth(2)?;
    let flags = u8::from_str_radix(parts.next()?.get(..2)?, 16).ok()?;
    let span_id = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    Some(SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

impl mltrail_server::scoring::ScoringObserver for Exporter {
    fn scored(&self, request: &mltrail_server::scoring::ScoredRequest<'_>) {
        let parent = match request.traceparent.and_then(remote_parent) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let mut attributes = vec![
            KeyValue::new("mltrail.deployment", request.deployment.to_string()),
            KeyValue::new("http.route", request.route),
            KeyValue::new("mltrail.rows", request.rows as i64),
        ];
        if let Some(first) = request.prediction_ids.first() {
            attributes.push(KeyValue::new("mltrail.prediction_id", first.to_string()));
        }
        if request.prediction_ids.len() > 1 {
            attributes.push(KeyValue::new(
                "mltrail.prediction_ids",
                opentelemetry::Value::Array(
                    request
                        .prediction_ids
                        .iter()
                        .map(|id| opentelemetry::StringValue::from(id.to_string()))
                        .collect::<Vec<_>>()
                        .into(),
                ),
            ));
        }
        let mut span = self
            .tracer
            .span_builder(format!("POST {}", request.route))
            .with_kind(SpanKind::Server)
            .with_start_time(request.started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        if let Some(error) = request.error {
            span.set_status(Status::error(error.to_string()));
        }
        span.end_with_timestamp(request.started + request.duration);
    }
}

/// One sample of OpenMetrics text: the sample's name, its labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// The counter and gauge samples of OpenMetrics text (a histogram's `_count` and `_sum` count
/// as counters); other lines are skipped.
fn samples(text: &str) -> Vec<(Sample, bool)> {
    let mut kinds: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((family, kind)) = rest.split_once(' ') {
                kinds.insert(family, kind.trim());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        let family = ["_total", "_count", "_sum", "_bucket", "_created", "_info"]
            .iter()
            .find_map(|suffix| sample.name.strip_suffix(suffix))
            .filter(|f| kinds.contains_key(f))
            .unwrap_or(&sample.name);
        let counter = match kinds.get(family).copied() {
            Some("counter") => sample.name.ends_with("_total"),
            Some("histogram") => sample.name.ends_with("_count") || sample.name.ends_with("_sum"),
            Some("gauge") => false,
            _ => continue,
        };
        if kinds.get(family) == Some(&"gauge") || counter {
            out.push((sample, counter));
        }
    }
    out
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let (head, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}')?)?),
        None => (head, Vec::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.push((name.trim().to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_and_gauges_are_read_with_their_labels() {
        let text = "# HELP mltrail_requests Requests.\n# TYPE mltrail_requests counter\nmltrail_requests_total{deployment=\"d\",model=\"m\",version=\"1\"} 12\n# TYPE mltrail_deployment_info gauge\nmltrail_deployment_info{deployment=\"d\",digest=\"a\\\"b\"} 1\n# TYPE mltrail_request_duration_seconds histogram\nmltrail_request_duration_seconds_sum{deployment=\"d\"} 0.5\nmltrail_request_duration_seconds_count{deployment=\"d\"} 12\nmltrail_request_duration_seconds_bucket{deployment=\"d\",le=\"0.005\"} 3\n# EOF\n";
        let s = samples(text);
        let names: Vec<(&str, bool)> = s.iter().map(|(s, c)| (s.name.as_str(), *c)).collect();
        assert_eq!(
            names,
            [
                ("mltrail_requests_total", true),
                ("mltrail_deployment_info", false),
                ("mltrail_request_duration_seconds_sum", true),
                ("mltrail_request_duration_seconds_count", true),
            ]
        );
        assert_eq!(s[0].0.value, 12.0);
        assert_eq!(
            s[1].0.labels,
            [
                ("deployment".into(), "d".into()),
                ("digest".into(), "a\"b".into())
            ]
        );
    }

    #[test]
    fn a_traceparent_is_the_span_s_remote_parent() {
        let parent =
            remote_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled() && parent.is_remote());
        assert!(remote_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none());
        assert!(remote_parent("garbage").is_none());
        assert!(check_endpoint("http://127.0.0.1:4318").is_ok());
        assert!(check_endpoint("ftp://x").is_err() && check_endpoint("http://").is_err());
        assert_eq!(
            signal_url("http://c:4318/", "logs"),
            "http://c:4318/v1/logs"
        );
    }
}
