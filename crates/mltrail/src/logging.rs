//! The process's log output: a tracing filter, a format (text, JSON, or Elastic Common Schema)
//! and an optional OTLP endpoint (`crate::otlp`: logs, spans of scored requests, metrics), all
//! changeable while it runs. `mltrail server` and every `mltrail serve` start with their own
//! `[log]` table, then follow the tracking server's log setting (`mltrail logging set`), so one
//! change reaches every service without a restart or a redeploy.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogTable, DEFAULT_LOG_FILTER};

/// What the output layer sits on: the registry under the reloadable filter.
type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;
/// What the OTLP layer sits on: the output over the filter.
type WithOutput = Layered<reload::Layer<Output, Filtered>, Filtered>;
/// The bridge of log events to the OTLP exporter in force, if any.
type Otlp = Option<Box<dyn Layer<WithOutput> + Send + Sync>>;

/// The handles that change the running subscriber, and what is in force.
struct Control {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Filtered>,
    otlp: reload::Handle<Otlp, WithOutput>,
    current: Mutex<Current>,
}

/// The setting in force, and the OTLP exporter it started.
struct Current {
    filter: String,
    format: LogFormat,
    otlp_endpoint: Option<String>,
    exporter: Option<Arc<crate::otlp::Exporter>>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

fn output(format: LogFormat) -> Output {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => Box::new(layer),
        LogFormat::Json => Box::new(layer.json()),
        LogFormat::Ecs => Box::new(layer.event_format(Ecs)),
    }
}

/// Installs the process's subscriber from `[log]`.
pub fn init(log: &LogTable) {
    // An unreadable filter falls back to the default, as an unreadable MLTRAIL_LOG always did.
    let (filter, unreadable) = match EnvFilter::try_new(&log.filter) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new(DEFAULT_LOG_FILTER), Some(e)),
    };
    let (filter_layer, filter) = reload::Layer::new(filter);
    let (output_layer, output_handle) = reload::Layer::new(output(log.format));
    let (otlp_layer, otlp) = reload::Layer::new(None::<Box<dyn Layer<WithOutput> + Send + Sync>>);
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(output_layer)
        .with(otlp_layer)
        .try_init()
        .is_ok();
    if installed {
        let _ = CONTROL.set(Control {
            filter,
            output: output_handle,
            otlp,
            current: Mutex::new(Current {
                filter: log.filter.clone(),
                format: log.format,
                // Started by `start_otlp` once the process knows who it is (`crate::otlp::identify`).
                otlp_endpoint: None,
                exporter: None,
            }),
        });
        let _ = CONFIGURED_OTLP.set(log.otlp_endpoint.clone().filter(|e| !e.is_empty()));
    }
    if let Some(e) = unreadable {
        tracing::warn!(filter = %log.filter, error = %e, "cannot read the log filter; using the default");
    }
}

/// `[log] otlp_endpoint`, started by [`start_otlp`].
static CONFIGURED_OTLP: OnceLock<Option<String>> = OnceLock::new();

/// A log setting as the tracking server keeps it (`GET /api/v1/settings/log`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Setting {
    pub filter: String,
    pub format: LogFormat,
    /// Where logs, spans and metrics are exported (OTLP/HTTP), if anywhere.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

/// Log events of the exporter's own HTTP stack would be exported by the exporter itself, one
/// export causing the next.
fn exported(target: &str) -> bool {
    !["hyper", "h2", "reqwest", "tower", "opentelemetry", "rustls"]
        .iter()
        .any(|t| target.starts_with(t))
}

/// The OTLP log bridge, handed only the events [`exported`] lets through. (A per-layer filter
/// does not work inside a reloaded layer: its filter id is set only for layers present when the
/// subscriber is built.)
struct Exported<L>(L);

impl<S: Subscriber, L: Layer<S>> Layer<S> for Exported<L> {
    fn on_event(&self, event: &Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if exported(event.metadata().target()) {
            self.0.on_event(event, ctx);
        }
    }
}

/// Puts OTLP export to `endpoint` in force (or, with `None`, stops it): the old exporter sends
/// what it queued and stops; scored requests become spans of the new one.
fn switch_otlp(
    control: &Control,
    current: &mut Current,
    endpoint: Option<&str>,
) -> Result<(), String> {
    let started = match endpoint {
        Some(endpoint) => {
            let endpoint = endpoint.to_string();
            // The exporters' HTTP client is blocking: made (and later dropped) off the async
            // runtime's threads.
            let exporter = std::thread::spawn(move || crate::otlp::Exporter::start(&endpoint))
                .join()
                .map_err(|_| "the OTLP exporter could not be started".to_string())?
                .map_err(|e| e.to_string())?;
            let exporter = Arc::new(exporter);
            crate::otlp::Exporter::watch_metrics(&exporter);
            Some(exporter)
        }
        None => None,
    };
    let layer: Otlp = started.as_ref().map(|e| {
        Box::new(Exported(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&e.logs),
        )) as Box<dyn Layer<WithOutput> + Send + Sync>
    });
    control.otlp.reload(layer).map_err(|e| e.to_string())?;
    mltrail_server::scoring::observe_scoring(
        started
            .clone()
            .map(|e| e as Arc<dyn mltrail_server::scoring::ScoringObserver>),
    );
    if let Some(old) = std::mem::replace(&mut current.exporter, started) {
        std::thread::spawn(move || old.shutdown());
    }
    current.otlp_endpoint = endpoint.map(str::to_string);
    Ok(())
}

/// Starts `[log] otlp_endpoint`, once the process has said who it is (`crate::otlp::identify`).
pub fn start_otlp() {
    let (Some(control), Some(Some(endpoint))) = (CONTROL.get(), CONFIGURED_OTLP.get()) else {
        return;
    };
    let mut current = control.current.lock().unwrap_or_else(|p| p.into_inner());
    if current.otlp_endpoint.is_some() {
        return;
    }
    match switch_otlp(control, &mut current, Some(endpoint)) {
        Ok(()) => tracing::info!(endpoint, "exporting logs, traces and metrics over OTLP"),
        Err(e) => tracing::warn!(endpoint, error = %e, "cannot export over OTLP"),
    }
}

/// Whether an OTLP exporter is in force.
pub fn otlp_active() -> bool {
    CONTROL.get().is_some_and(|control| {
        control
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exporter
            .is_some()
    })
}

/// Sends what the OTLP exporter queued and stops it (at the process's end).
pub fn stop_otlp() {
    let Some(control) = CONTROL.get() else { return };
    let mut current = control.current.lock().unwrap_or_else(|p| p.into_inner());
    mltrail_server::scoring::observe_scoring(None);
    let _ = control.otlp.reload(None);
    if let Some(exporter) = current.exporter.take() {
        let _ = std::thread::spawn(move || exporter.shutdown()).join();
    }
    current.otlp_endpoint = None;
}

/// Puts `setting` in force; `Ok(false)` when it already was. A filter tracing cannot read, or
/// an OTLP endpoint that cannot be used, is refused and what is in force kept.
pub fn apply(setting: &Setting) -> Result<bool, String> {
    let Some(control) = CONTROL.get() else {
        return Ok(false);
    };
    let mut current = control.current.lock().unwrap_or_else(|p| p.into_inner());
    let endpoint = setting.otlp_endpoint.as_deref().filter(|e| !e.is_empty());
    if current.filter == setting.filter
        && current.format == setting.format
        && current.otlp_endpoint.as_deref() == endpoint
    {
        return Ok(false);
    }
    let filter = EnvFilter::try_new(&setting.filter).map_err(|e| e.to_string())?;
    if current.otlp_endpoint.as_deref() != endpoint {
        switch_otlp(control, &mut current, endpoint)?;
    }
    control.filter.reload(filter).map_err(|e| e.to_string())?;
    if current.format != setting.format {
        control
            .output
            .reload(output(setting.format))
            .map_err(|e| e.to_string())?;
    }
    current.filter = setting.filter.clone();
    current.format = setting.format;
    Ok(true)
}

/// How often a service asks the tracking server for the log setting.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Follows the setting `fetch` reads, every [`FOLLOW_EVERY`]: each change is put in force and
/// said once, in the new format. A setting that cannot be read is logged at debug and retried.
pub fn follow<F, Fut>(fetch: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Option<Setting>>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match fetch().await {
                Ok(Some(setting)) => match apply(&setting) {
                    Ok(true) => tracing::info!(
                        filter = %setting.filter,
                        format = ?setting.format,
                        otlp_endpoint = setting.otlp_endpoint.as_deref().unwrap_or("none"),
                        "log setting from the tracking server in force"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(filter = %setting.filter, error = %e, "cannot use the tracking server's log setting")
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the tracking server's log setting")
                }
            }
        }
    })
}

/// Events as Elastic Common Schema JSON, one object a line: `@timestamp`, `log.level`,
/// `message`, `log.logger` (the event's target), `ecs.version`, and the event's other fields
/// under their own names (`trace.id` is ECS's).
struct Ecs;

/// The ECS version the lines follow.
const ECS_VERSION: &str = "8.11.0";

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), json!(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), json!(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for Ecs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or(json!(""));
        let mut line = Map::new();
        line.insert(
            "@timestamp".into(),
            json!(mltrail_core::time::rfc3339_millis(
                mltrail_core::now_millis()
            )),
        );
        line.insert(
            "log.level".into(),
            json!(event.metadata().level().as_str().to_ascii_lowercase()),
        );
        line.insert("message".into(), message);
        line.insert("log.logger".into(), json!(event.metadata().target()));
        line.insert("ecs.version".into(), json!(ECS_VERSION));
        for (key, value) in fields {
            line.entry(key).or_insert(value);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}
