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
            "filter `{}`, format {} (set {} by {})",
            s["value"]["filter"].as_str().unwrap_or_default(),
            s["value"]["format"].as_str().unwrap_or_default(),
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
            if args.filter.is_none() && args.format.is_none() {
                anyhow::bail!("give --filter FILTER and/or --format text|json|ecs");
            }
            let mut body = json!({});
            if let Some(filter) = &args.filter {
                body["filter"] = json!(filter);
            }
            if let Some(format) = args.format {
                body["format"] = serde_json::to_value(format)?;
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
