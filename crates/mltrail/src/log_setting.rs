//! `mltrail logging show|set|reset`: the log filter and format the tracking server holds for
//! every service. `mltrail server` and each `mltrail serve` put a change in force within
//! seconds (`crate::logging::follow`), without a restart; each change is an audit event.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};
use crate::config::LogFormat;

#[derive(Subcommand)]
pub enum LoggingCommand {
    /// The setting every service follows, and who made it; none means each service's own [log].
    Show(ShowArgs),
    /// Change the filter and/or the format of every service's log (an admin's, with --auth on).
    Set(SetArgs),
    /// Remove the setting: services keep what is in force until they restart with their own [log].
    Reset(ResetArgs),
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct SetArgs {
    /// Which events are logged: a tracing filter such as `debug` or `info,sqlx=warn`.
    #[arg(long)]
    filter: Option<String>,
    /// text, json, or ecs (Elastic Common Schema JSON lines).
    #[arg(long, value_enum)]
    format: Option<LogFormat>,
    /// Export logs, a span per scored request and serving replicas' metrics to this
    /// OpenTelemetry collector (OTLP/HTTP, e.g. http://127.0.0.1:4318).
    #[arg(long, conflicts_with = "no_otlp")]
    otlp_endpoint: Option<String>,
    /// Stop exporting over OTLP.
    #[arg(long)]
    no_otlp: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ResetArgs {
    #[command(flatten)]
    client: ClientArgs,
}

fn describe(setting: &Value) -> String {
    match setting {
        Value::Null => "no log setting: each service logs as its own [log] says".into(),
        s => format!(
            "filter `{}`, format {}, OTLP export {} (set {} by {})",
            s["value"]["filter"].as_str().unwrap_or_default(),
            s["value"]["format"].as_str().unwrap_or_default(),
            s["value"]["otlp_endpoint"]
                .as_str()
                .map_or("off".to_string(), |e| format!("to {e}")),
            mltrail_core::time::rfc3339_seconds(s["updated_time"].as_i64().unwrap_or(0)),
            s["actor"].as_str().unwrap_or_default()
        ),
    }
}

pub async fn run(command: LoggingCommand) -> Result<()> {
    match command {
        LoggingCommand::Show(args) => {
            let answer = args
                .client
                .client()?
                .get_json("/api/v1/settings/log", "the log setting")
                .await?;
            if args.output.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("{}", describe(&answer["log"]));
            }
        }
        LoggingCommand::Set(args) => {
            if args.filter.is_none()
                && args.format.is_none()
                && args.otlp_endpoint.is_none()
                && !args.no_otlp
            {
                anyhow::bail!("give --filter FILTER, --format text|json|ecs, --otlp-endpoint URL or --no-otlp");
            }
            let mut body = json!({});
            if let Some(filter) = &args.filter {
                body["filter"] = json!(filter);
            }
            if let Some(format) = args.format {
                body["format"] = serde_json::to_value(format)?;
            }
            if let Some(endpoint) = &args.otlp_endpoint {
                body["otlp_endpoint"] = json!(endpoint);
            } else if args.no_otlp {
                body["otlp_endpoint"] = Value::Null;
            }
            let client = args.client.client()?;
            let answer = client
                .put("/api/v1/settings/log", &body, "set the log setting")
                .await?;
            eprintln!(
                "{}; services follow within {} s",
                describe(&answer["log"]),
                crate::logging::FOLLOW_EVERY.as_secs()
            );
        }
        LoggingCommand::Reset(args) => {
            args.client
                .client()?
                .delete("/api/v1/settings/log", "the log setting")
                .await?;
            eprintln!("log setting removed");
        }
    }
    Ok(())
}
