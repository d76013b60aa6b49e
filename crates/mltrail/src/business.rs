//! `mltrail metrics push|show|list` (business metrics the anomaly monitors watch) and
//! `mltrail annotate` / `mltrail annotations list|delete` (periods their baselines leave out).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};

#[derive(Subcommand)]
pub enum MetricsCommand {
    /// Push points of a business metric (revenue, orders, request volume): from a CSV file with
    /// `time` and `value` columns, or one value. A stored point is never rewritten: pushing a
    /// time again with another value is refused.
    Push(PushArgs),
    /// A metric's points (optionally from/until a time) and the annotations over them.
    Show(ShowArgs),
    /// The metrics pushed: how many points each, first and last time.
    List(ListArgs),
}

#[derive(Args)]
pub struct PushArgs {
    /// The metric's name: letters, digits, `_`, `-` and `.`.
    name: String,
    /// A CSV file whose header names `time` (Unix milliseconds, or an RFC 3339 time) and
    /// `value`; other columns are refused.
    #[arg(long, conflicts_with = "value", required_unless_present = "value")]
    file: Option<PathBuf>,
    /// One value (instead of --file), at --time.
    #[arg(long, allow_hyphen_values = true)]
    value: Option<f64>,
    /// The value's time (RFC 3339, a date, or Unix milliseconds). Default: now.
    #[arg(long, requires = "value")]
    time: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    name: String,
    /// From this time (2026-11-27, 2026-11-27T10:00:00Z, or a duration ago such as 7d).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (same forms).
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

/// Mark a period (a campaign, an outage, a holiday) so anomaly monitors' baselines leave it
/// out: a two-week campaign learned as normal makes the weeks after it look like drops. Every
/// annotation is an audit event. Prints its id.
#[derive(Args)]
pub struct AnnotateArgs {
    /// What it was ("spring campaign").
    #[arg(long)]
    name: String,
    /// Its start: 2026-03-01, 2026-03-01T08:00:00Z, or Unix milliseconds.
    #[arg(long)]
    from: String,
    /// Its end (not included), in the same forms.
    #[arg(long)]
    to: String,
    /// The metrics it is about (comma-separated). Default: every metric.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    /// campaign, outage, holiday, incident or other.
    #[arg(long, default_value = "other")]
    kind: String,
    /// Anything a later reader should know.
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
pub enum AnnotationsCommand {
    /// Annotations, oldest first.
    List(AnnotationsListArgs),
    /// Delete an annotation: baselines learn from its period again (the trail keeps it).
    Delete(AnnotationDeleteArgs),
}

#[derive(Args)]
pub struct AnnotationsListArgs {
    /// Only those about this metric.
    #[arg(long)]
    metric: Option<String>,
    /// Deleted ones too.
    #[arg(long)]
    include_deleted: bool,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct AnnotationDeleteArgs {
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

fn utc(ms: i64) -> String {
    mltrail_core::time::rfc3339_seconds(ms)
}

/// A time as the API takes it: Unix milliseconds stay a number, anything else is sent as text
/// (the server reads RFC 3339 times and dates).
fn time_value(text: &str) -> Value {
    match text.trim().parse::<i64>() {
        Ok(ms) => json!(ms),
        Err(_) => json!(text.trim()),
    }
}

/// A CSV of `time,value` rows as the API's points; the error names the line.
fn points_of_csv(path: &PathBuf) -> Result<Vec<Value>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(time), Some(value)) = (column("time"), column("value")) else {
        bail!(
            "{}: the header must name `time` and `value` (got {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        );
    };
    if headers.len() != 2 {
        bail!(
            "{}: only `time` and `value` columns are taken (got {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        );
    }
    let mut points = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} line {}", path.display(), i + 2))?;
        let text = record.get(value).unwrap_or_default().trim();
        // Sent as the number it was written as: a double parses it exactly once, server-side.
        let number: serde_json::Number = serde_json::from_str(text).with_context(|| {
            format!(
                "{} line {}: value `{text}` is not a number",
                path.display(),
                i + 2
            )
        })?;
        points.push(
            json!({"time": time_value(record.get(time).unwrap_or_default()), "value": number}),
        );
    }
    Ok(points)
}

async fn push(args: PushArgs) -> Result<()> {
    let client = args.client.client()?;
    let points = match (&args.file, args.value) {
        (Some(file), _) => points_of_csv(file)?,
        (None, Some(value)) => {
            let time = match &args.time {
                Some(t) => time_value(t),
                None => json!(mltrail_core::now_millis()),
            };
            vec![json!({"time": time, "value": value})]
        }
        (None, None) => bail!("give --file FILE.csv or --value V"),
    };
    let n = points.len();
    let mut added = 0;
    let mut unchanged = 0;
    // In turns of 50,000: a year of minutes is one command, not one huge request.
    for chunk in points.chunks(50_000) {
        let answer = client
            .post(
                &format!("/api/v1/metrics/{}", args.name),
                &json!({"points": chunk}),
                &format!("push metric {}", args.name),
            )
            .await?;
        added += answer["added"].as_u64().unwrap_or(0);
        unchanged += answer["unchanged"].as_u64().unwrap_or(0);
    }
    eprintln!(
        "{}: {n} points given, {added} stored, {unchanged} already there",
        args.name
    );
    Ok(())
}

async fn show(args: ShowArgs) -> Result<()> {
    let client = args.client.client()?;
    let mut query = Vec::new();
    let now = mltrail_core::now_millis();
    if let Some(since) = &args.since {
        query.push(format!(
            "since={}",
            crate::predictions::parse_since(since, now)?
        ));
    }
    if let Some(until) = &args.until {
        query.push(format!(
            "until={}",
            crate::predictions::parse_since(until, now)?
        ));
    }
    let answer = client
        .get_json(
            &format!("/api/v1/metrics/{}?{}", args.name, query.join("&")),
            &format!("metric {}", args.name),
        )
        .await?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    for a in answer["annotations"].as_array().into_iter().flatten() {
        println!(
            "annotated {} – {}: {} ({})",
            utc(a["from_ms"].as_i64().unwrap_or(0)),
            utc(a["to_ms"].as_i64().unwrap_or(0)),
            a["name"].as_str().unwrap_or_default(),
            a["kind"].as_str().unwrap_or_default()
        );
    }
    println!("{:<21} value", "time");
    for p in answer["points"].as_array().into_iter().flatten() {
        println!(
            "{:<21} {}",
            utc(p["time"].as_i64().unwrap_or(0)),
            p["value"]
        );
    }
    Ok(())
}

async fn list(args: ListArgs) -> Result<()> {
    let client = args.client.client()?;
    let answer = client.get_json("/api/v1/metrics", "metrics").await?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!(
        "{:<32} {:>10} {:<21} {:<21}",
        "metric", "points", "first", "last"
    );
    for m in answer["metrics"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {:>10} {:<21} {:<21}",
            m["name"].as_str().unwrap_or_default(),
            m["points"].as_i64().unwrap_or(0),
            utc(m["first_time"].as_i64().unwrap_or(0)),
            utc(m["last_time"].as_i64().unwrap_or(0))
        );
    }
    Ok(())
}

pub async fn run_metrics(command: MetricsCommand) -> Result<()> {
    match command {
        MetricsCommand::Push(args) => push(args).await,
        MetricsCommand::Show(args) => show(args).await,
        MetricsCommand::List(args) => list(args).await,
    }
}

pub async fn annotate(args: AnnotateArgs) -> Result<()> {
    let client = args.client.client()?;
    let body = json!({
        "name": args.name, "kind": args.kind, "from": time_value(&args.from),
        "to": time_value(&args.to), "metrics": args.metrics, "note": args.note,
    });
    let answer = client
        .post("/api/v1/annotations", &body, "annotate")
        .await?;
    let a = &answer["annotation"];
    eprintln!(
        "annotated {} – {} as `{}` ({}) for {}",
        utc(a["from_ms"].as_i64().unwrap_or(0)),
        utc(a["to_ms"].as_i64().unwrap_or(0)),
        a["name"].as_str().unwrap_or_default(),
        a["kind"].as_str().unwrap_or_default(),
        if args.metrics.is_empty() {
            "every metric".to_string()
        } else {
            args.metrics.join(", ")
        }
    );
    println!("{}", a["id"].as_str().unwrap_or_default());
    Ok(())
}

pub async fn run_annotations(command: AnnotationsCommand) -> Result<()> {
    match command {
        AnnotationsCommand::List(args) => {
            let client = args.client.client()?;
            let mut query = vec![format!("include_deleted={}", args.include_deleted)];
            if let Some(m) = &args.metric {
                query.push(format!("metric={m}"));
            }
            let answer = client
                .get_json(
                    &format!("/api/v1/annotations?{}", query.join("&")),
                    "annotations",
                )
                .await?;
            if args.output.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            println!(
                "{:<34} {:<21} {:<21} {:<9} {:<8} name (metrics)",
                "id", "from", "to", "kind", "status"
            );
            for a in answer["annotations"].as_array().into_iter().flatten() {
                let metrics: Vec<&str> = a["metrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<34} {:<21} {:<21} {:<9} {:<8} {} ({})",
                    a["id"].as_str().unwrap_or_default(),
                    utc(a["from_ms"].as_i64().unwrap_or(0)),
                    utc(a["to_ms"].as_i64().unwrap_or(0)),
                    a["kind"].as_str().unwrap_or_default(),
                    a["status"].as_str().unwrap_or_default(),
                    a["name"].as_str().unwrap_or_default(),
                    if metrics.is_empty() {
                        "every metric".to_string()
                    } else {
                        metrics.join(", ")
                    }
                );
            }
            Ok(())
        }
        AnnotationsCommand::Delete(args) => {
            let client = args.client.client()?;
            client
                .delete(
                    &format!("/api/v1/annotations/{}", args.id),
                    &format!("annotation {}", args.id),
                )
                .await?;
            eprintln!("deleted annotation {}", args.id);
            Ok(())
        }
    }
}
