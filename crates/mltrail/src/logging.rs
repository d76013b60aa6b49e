//! The process's log output: a tracing filter and a format (text, JSON, or Elastic Common
//! Schema), both changeable while it runs. `mltrail server` and every `mltrail serve` start with
//! their own `[log]` table, then follow the tracking server's log setting (`mltrail logging
//! set`), so one change reaches every service without a restart or a redeploy.

use std::sync::{Mutex, OnceLock};
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

/// The handles that change the running subscriber, and what is in force.
struct Control {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Filtered>,
    current: Mutex<(String, LogFormat)>,
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
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(output_layer)
        .try_init()
        .is_ok();
    if installed {
        let _ = CONTROL.set(Control {
            filter,
            output: output_handle,
            current: Mutex::new((log.filter.clone(), log.format)),
        });
    }
    if let Some(e) = unreadable {
        tracing::warn!(filter = %log.filter, error = %e, "cannot read the log filter; using the default");
    }
}

/// A log setting as the tracking server keeps it (`GET /api/v1/settings/log`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Setting {
    pub filter: String,
    pub format: LogFormat,
}

/// Puts `setting` in force; `Ok(false)` when it already was. A filter tracing cannot read is
/// refused and the one in force kept.
pub fn apply(setting: &Setting) -> Result<bool, String> {
    let Some(control) = CONTROL.get() else {
        return Ok(false);
    };
    let mut current = control.current.lock().unwrap_or_else(|p| p.into_inner());
    if current.0 == setting.filter && current.1 == setting.format {
        return Ok(false);
    }
    let filter = EnvFilter::try_new(&setting.filter).map_err(|e| e.to_string())?;
    control.filter.reload(filter).map_err(|e| e.to_string())?;
    if current.1 != setting.format {
        control
            .output
            .reload(output(setting.format))
            .map_err(|e| e.to_string())?;
    }
    *current = (setting.filter.clone(), setting.format);
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
