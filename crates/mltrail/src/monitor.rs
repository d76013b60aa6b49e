//! `mltrail monitor create|list|results|alerts|delete`: the server's continuous monitors, and
//! `mltrail monitor check`: drift of a deployment's logged inputs against a dataset version, on
//! demand, from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use mltrail_serving::record::LogRecord;

use crate::args::{ClientArgs, JsonArgs, LimitArgs};

#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Watch a deployment: on every window of its prediction log, the server computes feature
    /// drift, prediction drift and (once labels arrive) performance against the reference,
    /// stores the result, exports it as Prometheus gauges and fires alerts. Prints the id.
    Create(CreateArgs),
    /// The active monitors, with their latest window.
    List(ListArgs),
    /// A monitor's window results, newest first.
    Results(ResultsArgs),
    /// Alerts fired (by one monitor, or all), newest first.
    Alerts(AlertsArgs),
    /// Stop a monitor (its results and alerts are kept).
    Delete(DeleteArgs),
    /// One evaluated window as the drift report: the table of its stored verdicts, the JSON, and
    /// the self-contained HTML report (a histogram per column) the server renders.
    Report(ReportArgs),
    /// Compare the inputs a deployment logged (optionally since a time) with a dataset version,
    /// column by column, as `mltrail drift` does.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The deployment to watch (`mltrail serve --deployment`).
    #[arg(long, required_unless_present = "metric", conflicts_with = "metric")]
    deployment: Option<String>,
    /// A business metric to watch instead (`mltrail metrics push`): each window's points are
    /// judged against a seasonal baseline learned from the weeks before, leaving annotated
    /// periods out (`mltrail annotate`); drops and spikes are alerts ("anomalies >= 1" unless
    /// --alert says otherwise, e.g. "drops >= 1").
    #[arg(long)]
    metric: Option<String>,
    /// With --metric: the season, points this far apart being the same moment (7d holds the
    /// daily pattern too).
    #[arg(long, requires = "metric", default_value = "7d")]
    season: String,
    /// With --metric: the past seasons whose median is a point's baseline.
    #[arg(long, requires = "metric", default_value_t = 3)]
    seasons: usize,
    /// With --metric: how many robust spreads (1.4826 × MAD of relative deviations) a point
    /// may stray before it is a drop or a spike.
    #[arg(long, requires = "metric", default_value_t = 4.0)]
    z: f64,
    /// With --metric: how many seasons back a baseline may reach past annotated periods.
    #[arg(long, requires = "metric", default_value_t = 8)]
    horizon: usize,
    /// Watch a ranking deployment's (`mltrail serve --output ranking`) served orders against
    /// the orders its front end reports displaying (feedback `displayed`, `clicked`): each
    /// window gives agreement, Kendall τ, top-k overlap, nDCG@k of both orders and the sort key
    /// the display follows ("ranking.agreement < 0.9" unless --alert says otherwise).
    #[arg(long, requires = "deployment", conflicts_with_all = ["reference", "drift_share", "exclude", "sensitive"])]
    ranking: bool,
    /// With --ranking: the cut-off of top-k overlap and nDCG@k, and how many top items a
    /// repeat compares.
    #[arg(long, requires = "ranking", default_value_t = 10)]
    k: usize,
    /// With --ranking: how far back an impression for the same request key (`mltrail serve
    /// --key-column`) counts as the one before (default: the window). A repeat serves that
    /// key the same top k items; ranking.repeat_share is their share.
    #[arg(long, requires = "ranking")]
    repeat_lookback: Option<String>,
    /// Window length: 30s, 15m, 1h, 1d. Windows are aligned to the clock (1h: on the hour).
    #[arg(long, default_value = "1h")]
    window: String,
    /// How long after a window ends it is evaluated: time for the serving replicas to archive
    /// their log segments (`mltrail serve --segment-seconds`, `--archive-interval-ms`) and for
    /// labels to arrive. Feedback received later is not counted in that window.
    #[arg(long, default_value = "10m")]
    delay: String,
    /// `training` (the dataset version the served model version was registered with, via
    /// --training-data) or a dataset version NAME@VERSION. Default: training.
    #[arg(long, conflicts_with = "metric")]
    reference: Option<String>,
    /// The dataset drifts when at least this share of input columns drift. Default: 0.5.
    #[arg(long, conflicts_with = "metric")]
    drift_share: Option<f64>,
    /// An alert rule `METRIC OP THRESHOLD [for N]`, repeatable, e.g. "drift_share >= 0.3 for 2",
    /// "feature_drifted.income == 1", "accuracy < 0.8". Default: "dataset_drift == 1".
    #[arg(long = "alert")]
    alerts: Vec<String>,
    /// POST every alert as JSON to this URL (repeatable); retried with backoff.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// Input columns to leave out of feature drift (ids, timestamps).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Sensitive input columns (comma-separated): each window reports demographic parity (all
    /// predictions), equalized odds and equal opportunity (labelled ones) across their groups,
    /// as values alert rules read, e.g. "demographic_parity_difference.sex > 0.1".
    #[arg(long, value_delimiter = ',')]
    sensitive: Vec<String>,
    /// Evaluate history too: the first window is the one holding this time (2026-11-27,
    /// 2026-11-27T10:00:00Z, or a duration ago such as 7d). Default: now.
    #[arg(long)]
    since: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(mut_arg("json", |a| a.help("Print the server's JSON instead of a table")))]
pub struct ListArgs {
    #[arg(long)]
    deployment: Option<String>,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(mut_arg("limit", |a| a.default_value("24")))]
#[command(mut_arg("json", |a| a.help(
    "Print the server's JSON (every column's test, statistic and verdict) instead of a table"
)))]
pub struct ResultsArgs {
    /// The monitor id (`mltrail monitor list`).
    id: String,
    #[command(flatten)]
    limit: LimitArgs,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(mut_arg("limit", |a| a.default_value("50")))]
pub struct AlertsArgs {
    /// Only this monitor's alerts.
    id: Option<String>,
    #[command(flatten)]
    limit: LimitArgs,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The monitor id.
    id: String,
    /// Which window: `latest` (the latest with data), `drift` (the latest that drifted), or the
    /// window's start as shown by `mltrail monitor results` (2026-11-27T10:00:00Z or Unix ms).
    #[arg(long, default_value = "latest")]
    window: String,
    /// Write the HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the JSON report (the window's stored verdicts) here (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct DeleteArgs {
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

fn utc_time(ms: i64) -> String {
    mltrail_core::time::rfc3339_seconds(ms)
}

fn human_ms(ms: i64) -> String {
    mltrail_core::time::duration_text(ms)
}

fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One result line: drift, drifted columns and the performance metrics that were computed.
fn summary(result: &Value) -> String {
    if let Some(e) = result["result"]["error"].as_str() {
        return format!("error: {e}");
    }
    let r = &result["result"];
    if r["ranking"].is_object() {
        let v = &r["values"];
        let number = |k: &str| v[k].as_f64().unwrap_or(0.0);
        let mut line = format!(
            "{} impressions, {} displayed reported",
            number("impressions"),
            number("displayed_impressions"),
        );
        if let Some(agreement) = v["ranking.agreement"].as_f64() {
            line.push_str(&format!("; {:.0}% in served order", agreement * 100.0));
        }
        if let Some(tau) = v["ranking.kendall_tau"].as_f64() {
            line.push_str(&format!(", Kendall τ {tau:.3}"));
        }
        if let Some(finding) = r["ranking"]["finding"].as_str() {
            line.push_str(&format!("; {finding}"));
        }
        return line;
    }
    if r["metric"].is_string() {
        let v = &r["values"];
        let number = |k: &str| v[k].as_f64().unwrap_or(0.0);
        return format!(
            "{} points judged: {} drops, {} spikes; observed {:.4} against an expected {:.4}{}",
            number("points"),
            number("drops"),
            number("spikes"),
            number("observed"),
            number("expected"),
            match number("annotated_points") {
                0.0 => String::new(),
                n => format!("; {n} points annotated"),
            }
        );
    }
    let mut parts = Vec::new();
    if let Some(share) = r["dataset"]["share"].as_f64() {
        let drifted: Vec<&str> = r["features"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["drifted"] == true)
            .filter_map(|c| c["column"].as_str())
            .collect();
        parts.push(format!(
            "{} {:.0}% of columns drifted{}",
            if r["dataset"]["drift"] == true {
                "DATASET DRIFT:"
            } else {
                "no dataset drift:"
            },
            share * 100.0,
            if drifted.is_empty() {
                String::new()
            } else {
                format!(" ({})", drifted.join(", "))
            }
        ));
    }
    if r["prediction"]["drifted"] == true {
        parts.push("prediction drift".into());
    }
    if let Some(m) = r["performance"]["metrics"].as_object() {
        let shown: Vec<String> = m
            .iter()
            .filter_map(|(k, v)| Some(format!("{k} {:.3}", v.as_f64()?)))
            .collect();
        parts.push(shown.join(", "));
    }
    parts.join("; ")
}

async fn create(args: CreateArgs) -> Result<()> {
    let client = args.client.client()?;
    let now = mltrail_core::now_millis();
    let start = args
        .since
        .as_deref()
        .map(|s| crate::predictions::parse_since(s, now))
        .transpose()?;
    let mut body = serde_json::json!({
        "window": args.window, "delay": args.delay, "alerts": args.alerts,
        "webhooks": args.webhooks, "start": start,
    });
    let watched = match (&args.deployment, &args.metric) {
        (_, Some(metric)) => {
            body["metric"] = metric.clone().into();
            body["seasonal"] = serde_json::json!({
                "season": args.season, "seasons": args.seasons, "z": args.z, "horizon": args.horizon,
            });
            format!("business metric `{metric}`")
        }
        (Some(deployment), None) if args.ranking => {
            body["deployment"] = deployment.clone().into();
            body["ranking"] = serde_json::json!({"k": args.k});
            if let Some(lookback) = &args.repeat_lookback {
                body["ranking"]["repeat_lookback"] = lookback.clone().into();
            }
            format!("the rankings `{deployment}` served")
        }
        (Some(deployment), None) => {
            body["deployment"] = deployment.clone().into();
            body["reference"] = args.reference.as_deref().unwrap_or("training").into();
            body["drift_share"] = args.drift_share.unwrap_or(0.5).into();
            body["exclude"] = serde_json::json!(args.exclude);
            body["sensitive"] = serde_json::json!(args.sensitive);
            format!("`{deployment}`")
        }
        (None, None) => bail!("give --deployment NAME or --metric NAME"),
    };
    if args.metric.is_some() && !(args.exclude.is_empty() && args.sensitive.is_empty()) {
        bail!("--exclude and --sensitive are a deployment monitor's; a business metric has no columns");
    }
    let answer = client
        .post("/api/v1/monitors", &body, "create monitor")
        .await?;
    let m = &answer["monitor"];
    eprintln!(
        "monitor {} watches {watched} every {} (evaluated {} after each window) against {}; alerts: {}",
        m["id"].as_str().unwrap_or("?"),
        human_ms(m["window_ms"].as_i64().unwrap_or(0)),
        human_ms(m["delay_ms"].as_i64().unwrap_or(0)),
        if args.metric.is_some() {
            "its seasonal baseline".to_string()
        } else if args.ranking {
            "what the front end displayed".to_string()
        } else {
            m["reference"].as_str().unwrap_or_default().to_string()
        },
        m["config"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
    );
    println!("{}", m["id"].as_str().unwrap_or_default());
    Ok(())
}

async fn list(args: ListArgs) -> Result<()> {
    let client = args.client.client()?;
    let query = args
        .deployment
        .as_deref()
        .map(|d| format!("?deployment={d}"))
        .unwrap_or_default();
    let answer = client
        .get_json(&format!("/api/v1/monitors{query}"), "list monitors")
        .await?;
    if args.output.json {
        return print_json(&answer);
    }
    println!(
        "{:<34} {:<20} {:>6} {:<24} latest window",
        "id", "deployment", "window", "reference"
    );
    for m in answer["monitors"].as_array().into_iter().flatten() {
        let id = m["id"].as_str().unwrap_or_default();
        let latest = client
            .get_json(
                &format!("/api/v1/monitors/{id}/results?limit=1"),
                "monitor results",
            )
            .await?;
        let latest = latest["results"]
            .as_array()
            .and_then(|r| r.first())
            .map(|r| {
                format!(
                    "{} ({} rows): {}",
                    utc_time(r["window_start"].as_i64().unwrap_or(0)),
                    r["rows"].as_i64().unwrap_or(0),
                    summary(r)
                )
            })
            .unwrap_or_else(|| "none yet".into());
        println!(
            "{:<34} {:<20} {:>6} {:<24} {latest}",
            id,
            m["metric"]
                .as_str()
                .map(|metric| format!("metric:{metric}"))
                .unwrap_or_else(|| m["deployment"].as_str().unwrap_or_default().to_string()),
            human_ms(m["window_ms"].as_i64().unwrap_or(0)),
            m["reference"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

async fn results(args: ResultsArgs) -> Result<()> {
    let client = args.client.client()?;
    let answer = client
        .get_json(
            &format!(
                "/api/v1/monitors/{}/results?limit={}",
                args.id, args.limit.limit
            ),
            &format!("monitor {}", args.id),
        )
        .await?;
    if args.output.json {
        return print_json(&answer);
    }
    println!(
        "{:<21} {:>8} {:<8} result",
        "window start", "rows", "status"
    );
    for r in answer["results"].as_array().into_iter().flatten() {
        println!(
            "{:<21} {:>8} {:<8} {}",
            utc_time(r["window_start"].as_i64().unwrap_or(0)),
            r["rows"].as_i64().unwrap_or(0),
            r["status"].as_str().unwrap_or_default(),
            summary(r)
        );
    }
    Ok(())
}

async fn alerts(args: AlertsArgs) -> Result<()> {
    let client = args.client.client()?;
    let path = match &args.id {
        Some(id) => format!("/api/v1/monitors/{id}/alerts?limit={}", args.limit.limit),
        None => format!("/api/v1/alerts?limit={}", args.limit.limit),
    };
    let answer = client.get_json(&path, "alerts").await?;
    if args.output.json {
        return print_json(&answer);
    }
    for a in answer["alerts"].as_array().into_iter().flatten() {
        println!(
            "{}  {}",
            utc_time(a["fired_time"].as_i64().unwrap_or(0)),
            a["details"]["message"].as_str().unwrap_or_default()
        );
    }
    Ok(())
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
    /// Only predictions at or before this time (same forms; a date alone means the end of that
    /// day). With either, only the archive's day folders and Parquet row groups that can hold
    /// the range are downloaded.
    #[arg(long)]
    until: Option<String>,
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
    #[command(flatten)]
    client: ClientArgs,
}

/// The logged inputs as a CSV file (arrow-csv): one row per prediction, the columns of the first
/// record; text as is, other values as JSON, missing ones empty.
fn write_inputs(records: &[LogRecord], path: &std::path::Path) -> Result<usize> {
    let inputs: Vec<serde_json::Map<String, Value>> = records
        .iter()
        .filter_map(|r| match r {
            LogRecord::Prediction(p) => serde_json::from_str(p.inputs.get()).ok(),
            LogRecord::Feedback(_) | LogRecord::Explanation(_) => None,
        })
        .collect();
    let Some(first) = inputs.first() else {
        bail!("the deployment logged no predictions in that period")
    };
    let names: Vec<String> = first.keys().cloned().collect();
    let columns: Vec<arrow_array::ArrayRef> = names
        .iter()
        .map(|name| {
            let cells: arrow_array::StringArray = inputs
                .iter()
                .map(|row| match row.get(name) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect();
            std::sync::Arc::new(cells) as arrow_array::ArrayRef
        })
        .collect();
    let schema = arrow_schema::Schema::new(
        names
            .iter()
            .map(|n| arrow_schema::Field::new(n, arrow_schema::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let batch = arrow_array::RecordBatch::try_new(std::sync::Arc::new(schema), columns)?;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(file)
        .write(&batch)?;
    Ok(inputs.len())
}

/// The window `spec` names among a monitor's results.
fn pick_window<'a>(results: &'a [Value], spec: &str) -> Result<&'a Value> {
    let with_data = |r: &&Value| r["status"] == "ok";
    let found = match spec {
        "latest" => results.iter().find(with_data),
        "drift" => results.iter().filter(with_data).find(|r| {
            r["result"]["dataset"]["drift"] == true
                || r["result"]["features"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|c| c["drifted"] == true))
        }),
        other => {
            let start = match other.parse::<i64>() {
                Ok(ms) => ms,
                Err(_) => crate::predictions::parse_since(other, 0)?,
            };
            results.iter().find(|r| r["window_start"] == start)
        }
    };
    found.ok_or_else(|| anyhow::anyhow!("no evaluated window with data matches `--window {spec}` (see `mltrail monitor results`)"))
}

async fn report(args: ReportArgs) -> Result<bool> {
    let client = args.client.client()?;
    let answer = client
        .get_json(
            &format!("/api/v1/monitors/{}/results?limit=10000", args.id),
            &format!("monitor {}", args.id),
        )
        .await?;
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let window = pick_window(&results, &args.window)?;
    let start = window["window_start"].as_i64().unwrap_or(0);
    let result = &window["result"];
    eprintln!(
        "window {} – {}: {} predictions against {}",
        utc_time(start),
        utc_time(window["window_end"].as_i64().unwrap_or(0)),
        window["rows"],
        result["reference"].as_str().unwrap_or("?")
    );
    let columns = result["features"].as_array().cloned().unwrap_or_default();
    crate::drift::print_verdicts(&columns, &result["dataset"]);
    if let Some(path) = &args.json {
        let body = serde_json::json!({
            "monitor": args.id, "window_start": start, "window_end": window["window_end"],
            "reference": result["reference"], "columns": columns, "dataset": result["dataset"],
            "prediction": result["prediction"], "performance": result["performance"],
        });
        crate::drift::write_json(path, &body)?;
    }
    if let Some(path) = &args.html {
        // The server renders it from the archived log, as the monitor saw the window.
        let page = client
            .get_text(
                &format!("/api/v1/monitors/{}/windows/{start}/report", args.id),
                "window report",
            )
            .await?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(false)
}

pub async fn run(command: MonitorCommand) -> Result<bool> {
    let args = match command {
        MonitorCommand::Create(args) => return create(args).await.map(|_| false),
        MonitorCommand::List(args) => return list(args).await.map(|_| false),
        MonitorCommand::Results(args) => return results(args).await.map(|_| false),
        MonitorCommand::Alerts(args) => return alerts(args).await.map(|_| false),
        MonitorCommand::Delete(args) => {
            let client = args.client.client()?;
            client
                .delete(
                    &format!("/api/v1/monitors/{}", args.id),
                    &format!("monitor {}", args.id),
                )
                .await?;
            eprintln!(
                "monitor {} stopped; its results and alerts are kept",
                args.id
            );
            return Ok(false);
        }
        MonitorCommand::Report(args) => return report(args).await,
        MonitorCommand::Check(args) => args,
    };
    let now = mltrail_core::now_millis();
    let range = crate::predictions::time_range(args.since.as_deref(), args.until.as_deref(), now)?;
    let client = args.client.client()?;
    let records =
        crate::predictions::collect(&client, &args.deployment, range, args.log_dir.clone()).await?;
    let work = tempfile::tempdir()?;
    let current = work.path().join(format!("{}-inputs.csv", args.deployment));
    let n = write_inputs(&records, &current)?;
    eprintln!(
        "{n} logged predictions of deployment `{}` against {}",
        args.deployment,
        args.reference.display()
    );
    let mut drift_args =
        crate::drift::DriftArgs::between(args.reference, current, args.client, Vec::new());
    drift_args.json = args.json;
    drift_args.html = args.html;
    drift_args.fail_on_drift = args.fail_on_drift;
    crate::drift::resolve_inputs(&mut drift_args, work.path()).await?;
    let outcome = tokio::task::spawn_blocking(move || crate::drift::run(drift_args)).await??;
    Ok(outcome.fail)
}
