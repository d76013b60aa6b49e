//! `mltrail monitor check`: drift of a deployment's logged inputs (and outputs) against the
//! dataset version it should look like, on demand. The continuous, server-side monitors of the
//! monitoring issue will run this same comparison on windows.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::predictions::csv_field;
use crate::tracking_client::{resolve_uri, Client, TRACKING_URI_HELP};

#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Compare the inputs a deployment logged (optionally since a time) with a dataset version,
    /// column by column, as `mltrail drift` does.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long)]
    deployment: String,
    /// The reference: a dataset version NAME@VERSION (e.g. the model's training data) or a file.
    #[arg(long)]
    reference: PathBuf,
    /// Only predictions at or after this time: 2026-11-27, 2026-11-27T10:00:00Z, or 6h / 90m / 7d.
    #[arg(long)]
    since: Option<String>,
    /// Local log segments not archived yet (default ./mltrail-data/predictions/<deployment>).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Exit with status 1 when the logged data drifts.
    #[arg(long)]
    fail_on_drift: bool,
    #[arg(long, help = TRACKING_URI_HELP)]
    tracking_uri: Option<String>,
}

/// The logged inputs as a CSV file: one row per prediction, the columns of the first record.
fn write_inputs(records: &[Value], path: &std::path::Path) -> Result<usize> {
    let inputs: Vec<&serde_json::Map<String, Value>> = records
        .iter()
        .filter(|r| r["type"] == "prediction")
        .filter_map(|r| r["inputs"].as_object())
        .collect();
    let Some(first) = inputs.first() else {
        bail!("the deployment logged no predictions in that period")
    };
    let columns: Vec<&String> = first.keys().collect();
    let mut text = columns
        .iter()
        .map(|c| csv_field(Some(&Value::from(c.as_str())), false))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for row in &inputs {
        text.push_str(
            &columns
                .iter()
                .map(|c| csv_field(row.get(*c), false))
                .collect::<Vec<_>>()
                .join(","),
        );
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(inputs.len())
}

pub async fn run(command: MonitorCommand) -> Result<bool> {
    let MonitorCommand::Check(args) = command;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let since = args
        .since
        .as_deref()
        .map(|s| crate::predictions::parse_since(s, now))
        .transpose()?;
    let client = Client::new(resolve_uri(args.tracking_uri.clone()))?;
    let records =
        crate::predictions::collect(&client, &args.deployment, since, args.log_dir.clone()).await?;
    let work = tempfile::tempdir()?;
    let current = work.path().join(format!("{}-inputs.csv", args.deployment));
    let n = write_inputs(&records, &current)?;
    eprintln!(
        "{n} logged predictions of deployment `{}` against {}",
        args.deployment,
        args.reference.display()
    );
    let mut drift_args =
        crate::drift::DriftArgs::between(args.reference, current, args.tracking_uri, Vec::new());
    drift_args.json = args.json;
    drift_args.html = args.html;
    drift_args.fail_on_drift = args.fail_on_drift;
    crate::drift::resolve_inputs(&mut drift_args, work.path()).await?;
    let outcome = tokio::task::spawn_blocking(move || crate::drift::run(drift_args)).await??;
    Ok(outcome.fail)
}
