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
    /// Write a metric's points as a table (time_ms, time, value), its annotated periods tagged
    /// (columns annotation, annotation_kind) or left out, optionally stored as a dataset
    /// version: a model trained on it then does not learn the campaign either.
    Export(ExportArgs),
    /// Read a series from a Prometheus text endpoint (a `/metrics` page) and push its value as
    /// a point, every --every until --times scrapes were taken (or forever).
    Scrape(ScrapeArgs),
}

/// What to do with annotated periods in an export.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnnotatedPeriods {
    /// Keep every row; say which annotation holds it (columns annotation, annotation_kind).
    Tag,
    /// Leave out the rows inside annotated periods.
    Exclude,
    /// Keep every row, without annotation columns.
    Include,
}

#[derive(Args)]
pub struct ExportArgs {
    name: String,
    /// From this time (2026-11-27, 2026-11-27T10:00:00Z, or a duration ago such as 30d).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Annotated periods: tag the rows they hold, exclude them, or include them untagged.
    #[arg(long, value_enum, default_value = "tag")]
    annotations: AnnotatedPeriods,
    #[arg(long, value_enum, default_value = "parquet")]
    format: crate::predictions::Format,
    /// Output file (CSV goes to stdout without it; Parquet needs it unless --dataset).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Also store the table as a version of this dataset.
    #[arg(long)]
    dataset: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ScrapeArgs {
    /// The page to read, e.g. http://shop:9100/metrics.
    url: String,
    /// The series: a name with the labels that pick it, `shop_revenue_total{region="eu"}`
    /// (a series with more labels than given still matches; two matching series are refused).
    #[arg(long)]
    series: String,
    /// The business metric to push it as.
    #[arg(long = "as")]
    metric: String,
    /// Time between scrapes (30s, 1m, 1h).
    #[arg(long, default_value = "1m")]
    every: String,
    /// Stop after this many scrapes (default: run until stopped).
    #[arg(long)]
    times: Option<u64>,
    /// Push the increase since the previous scrape instead of the value (for a counter such as
    /// revenue_total): the first scrape pushes nothing; a counter reset pushes the new value.
    #[arg(long)]
    increase: bool,
    #[command(flatten)]
    client: ClientArgs,
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

/// A metric's points from/until the times a user typed, with the annotations over them.
async fn metric_points(
    client: &crate::tracking_client::Client,
    name: &str,
    since: &Option<String>,
    until: &Option<String>,
) -> Result<Value> {
    let now = mltrail_core::now_millis();
    let mut query = Vec::new();
    for (key, given) in [("since", since), ("until", until)] {
        if let Some(text) = given {
            query.push(format!(
                "{key}={}",
                crate::predictions::parse_since(text, now)?
            ));
        }
    }
    client
        .get_json(
            &format!("/api/v1/metrics/{name}?{}", query.join("&")),
            &format!("metric {name}"),
        )
        .await
}

async fn show(args: ShowArgs) -> Result<()> {
    let client = args.client.client()?;
    let answer = metric_points(&client, &args.name, &args.since, &args.until).await?;
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
        MetricsCommand::Export(args) => export(args).await,
        MetricsCommand::Scrape(args) => scrape(args).await,
    }
}

/// An active annotated period, as the API lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Period {
    pub name: String,
    pub kind: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub metrics: Vec<String>,
}

impl Period {
    fn holds(&self, time_ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&time_ms)
    }
}

/// The active annotations about `subject` (a metric, or a deployment for its prediction log):
/// those naming it, and those naming no metric (about everything).
pub async fn periods_about(
    client: &crate::tracking_client::Client,
    subject: &str,
) -> Result<Vec<Period>> {
    let answer = client
        .get_json("/api/v1/annotations", "annotations")
        .await?;
    let all: Vec<Period> = serde_json::from_value(answer["annotations"].clone())
        .context("the server's annotations")?;
    Ok(all
        .into_iter()
        .filter(|p| p.metrics.is_empty() || p.metrics.iter().any(|m| m == subject))
        .collect())
}

/// The first of `periods` holding `time_ms`.
pub fn period_at(periods: &[Period], time_ms: i64) -> Option<&Period> {
    periods.iter().find(|p| p.holds(time_ms))
}

/// `batch` with two more columns, `annotation` and `annotation_kind`: the annotated period
/// holding each row's `time_column` (null outside every one).
pub fn tag_batch(
    batch: &arrow_array::RecordBatch,
    time_column: &str,
    periods: &[Period],
) -> Result<arrow_array::RecordBatch> {
    use arrow_array::{Array, Int64Array, StringArray};
    let times = batch
        .column_by_name(time_column)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| anyhow::anyhow!("the table has no {time_column} column to tag"))?;
    let held: Vec<Option<&Period>> = (0..times.len())
        .map(|i| {
            (!times.is_null(i))
                .then(|| period_at(periods, times.value(i)))
                .flatten()
        })
        .collect();
    let names: StringArray = held.iter().map(|p| p.map(|p| p.name.as_str())).collect();
    let kinds: StringArray = held.iter().map(|p| p.map(|p| p.kind.as_str())).collect();
    let mut fields: Vec<arrow_schema::Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(arrow_schema::Field::new(
        "annotation",
        arrow_schema::DataType::Utf8,
        true,
    ));
    fields.push(arrow_schema::Field::new(
        "annotation_kind",
        arrow_schema::DataType::Utf8,
        true,
    ));
    let mut columns = batch.columns().to_vec();
    columns.push(std::sync::Arc::new(names));
    columns.push(std::sync::Arc::new(kinds));
    Ok(arrow_array::RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        columns,
    )?)
}

/// A table as Parquet or CSV bytes.
pub fn table_bytes(
    batch: &arrow_array::RecordBatch,
    format: crate::predictions::Format,
) -> Result<Vec<u8>> {
    Ok(match format {
        crate::predictions::Format::Parquet => mltrail_serving::training::to_parquet(batch)?,
        crate::predictions::Format::Csv => {
            let mut text = Vec::new();
            arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut text)
                .write(batch)?;
            text
        }
    })
}

async fn export(args: ExportArgs) -> Result<()> {
    if matches!(args.format, crate::predictions::Format::Parquet)
        && args.output.is_none()
        && args.dataset.is_none()
    {
        bail!("--format parquet needs --output FILE (or --dataset NAME)");
    }
    let client = args.client.client()?;
    let answer = metric_points(&client, &args.name, &args.since, &args.until).await?;
    let periods = periods_about(&client, &args.name).await?;
    let mut points: Vec<(i64, f64)> = answer["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["time"].as_i64()?, p["value"].as_f64()?)))
        .collect();
    let before = points.len();
    if args.annotations == AnnotatedPeriods::Exclude {
        points.retain(|(t, _)| period_at(&periods, *t).is_none());
    }
    let batch = arrow_array::RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("time_ms", arrow_schema::DataType::Int64, false),
            arrow_schema::Field::new("time", arrow_schema::DataType::Utf8, false),
            arrow_schema::Field::new("value", arrow_schema::DataType::Float64, false),
        ])),
        vec![
            std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(
                points.iter().map(|p| p.0),
            )),
            std::sync::Arc::new(arrow_array::StringArray::from_iter_values(
                points
                    .iter()
                    .map(|p| mltrail_core::time::rfc3339_millis(p.0)),
            )),
            std::sync::Arc::new(arrow_array::Float64Array::from_iter_values(
                points.iter().map(|p| p.1),
            )),
        ],
    )?;
    let batch = match args.annotations {
        AnnotatedPeriods::Tag => tag_batch(&batch, "time_ms", &periods)?,
        _ => batch,
    };
    let bytes = table_bytes(&batch, args.format)?;
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None if matches!(args.format, crate::predictions::Format::Csv) => {
            std::io::Write::write_all(&mut std::io::stdout(), &bytes)?
        }
        None => {}
    }
    eprintln!(
        "{}: {} points written{}",
        args.name,
        points.len(),
        match args.annotations {
            AnnotatedPeriods::Exclude => format!(
                ", {} inside annotated periods left out ({})",
                before - points.len(),
                periods
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            AnnotatedPeriods::Tag => format!(
                ", {} of them tagged with their annotated period",
                points
                    .iter()
                    .filter(|(t, _)| period_at(&periods, *t).is_some())
                    .count()
            ),
            AnnotatedPeriods::Include => String::new(),
        }
    );
    if let Some(name) = &args.dataset {
        let extension = match args.format {
            crate::predictions::Format::Parquet => "parquet",
            crate::predictions::Format::Csv => "csv",
        };
        let file_name = format!("{}-metric.{extension}", args.name);
        let (version, _) =
            crate::data::add_bytes(&client, name, &file_name, bytes, None, None).await?;
        eprintln!("stored as dataset version {name}@{version}");
    }
    Ok(())
}

/// One series of a Prometheus text exposition: its name and labels.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    name: String,
    labels: Vec<(String, String)>,
}

/// `name{label="value",…}` as a selector (the labels may be left out).
fn parse_selector(text: &str) -> Result<Selector> {
    let text = text.trim();
    let (name, labels) = match text.split_once('{') {
        None => (text, Vec::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .ok_or_else(|| anyhow::anyhow!("--series `{text}`: a `{{` without its `}}`"))?;
            (
                name,
                parse_labels(body).with_context(|| format!("--series `{text}`"))?,
            )
        }
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid {
        bail!("--series `{text}`: `{name}` is not a Prometheus metric name");
    }
    Ok(Selector {
        name: name.to_string(),
        labels,
    })
}

/// `a="x",b="y"` (the exposition format's escapes `\\`, `\"` and `\n` read back).
fn parse_labels(body: &str) -> Result<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("a label without `=` in `{body}`"))?;
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| anyhow::anyhow!("label `{}` needs a quoted value", key.trim()))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("an unfinished escape in `{body}`"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("an unterminated label value in `{body}`"),
            }
        };
        labels.push((key.trim().to_string(), value));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

/// The value (and its timestamp, when the page gives one) of the one series `selector` picks
/// in an exposition page.
fn find_sample(page: &str, selector: &Selector) -> Result<(f64, Option<i64>)> {
    let mut found = Vec::new();
    for line in page.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('}') {
            Some(close) if line.contains('{') => (&line[..=close], &line[close + 1..]),
            _ => match line.split_once(char::is_whitespace) {
                Some((name, rest)) => (name, rest),
                None => continue,
            },
        };
        let Ok(sample) = parse_selector(series) else {
            continue;
        };
        let matches = sample.name == selector.name
            && selector.labels.iter().all(|l| sample.labels.contains(l));
        if !matches {
            continue;
        }
        let mut words = rest.split_whitespace();
        let value = match words.next() {
            Some("+Inf") => f64::INFINITY,
            Some("-Inf") => f64::NEG_INFINITY,
            Some(v) => v
                .parse::<f64>()
                .with_context(|| format!("`{line}`: the value is not a number"))?,
            None => bail!("`{line}` has no value"),
        };
        let time = words.next().and_then(|t| t.parse::<i64>().ok());
        found.push((series.to_string(), value, time));
    }
    match found.as_slice() {
        [(_, value, time)] => Ok((*value, *time)),
        [] => bail!(
            "no series `{}` with those labels on the page",
            selector.name
        ),
        many => bail!(
            "{} series match; give more labels to pick one: {}",
            many.len(),
            many.iter()
                .map(|m| m.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn scrape(args: ScrapeArgs) -> Result<()> {
    let selector = parse_selector(&args.series)?;
    let every = mltrail_core::time::parse_duration_ms(&args.every)
        .map_err(|e| anyhow::anyhow!("--every {e}"))?;
    if every < 1 {
        bail!("--every must be at least 1ms");
    }
    let client = args.client.client()?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut previous: Option<f64> = None;
    let mut taken = 0u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        u64::try_from(every).unwrap_or(u64::MAX),
    ));
    loop {
        tick.tick().await;
        let page = http
            .get(&args.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("scraping {}", args.url))?
            .text()
            .await?;
        let (value, stamped) = find_sample(&page, &selector)?;
        let time = stamped.unwrap_or_else(mltrail_core::now_millis);
        let pushed = if args.increase {
            let increase = previous.map(|p| if value >= p { value - p } else { value });
            previous = Some(value);
            increase
        } else {
            Some(value)
        };
        if let Some(v) = pushed {
            if !v.is_finite() {
                bail!(
                    "{} is {v}: a business metric takes finite values",
                    selector.name
                );
            }
            client
                .post(
                    &format!("/api/v1/metrics/{}", args.metric),
                    &json!({"points": [{"time": time, "value": v}]}),
                    &format!("push metric {}", args.metric),
                )
                .await?;
            eprintln!("{} {}: {v}", utc(time), args.metric);
        }
        taken += 1;
        if args.times.is_some_and(|n| taken >= n) {
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_picked_from_an_exposition_page() {
        let page = "# HELP shop_revenue_total Revenue.\n# TYPE shop_revenue_total counter\nshop_revenue_total{region=\"eu\",shop=\"a\"} 1027.5\nshop_revenue_total{region=\"us\",shop=\"a\"} 88 1764000000000\nshop_orders 12\nlabel_with_escapes{path=\"a\\\"b,c\"} 3\n";
        let eu = parse_selector(r#"shop_revenue_total{region="eu"}"#).unwrap();
        assert_eq!(find_sample(page, &eu).unwrap(), (1027.5, None));
        let us = parse_selector(r#"shop_revenue_total{region="us"}"#).unwrap();
        assert_eq!(
            find_sample(page, &us).unwrap(),
            (88.0, Some(1_764_000_000_000))
        );
        let plain = parse_selector("shop_orders").unwrap();
        assert_eq!(find_sample(page, &plain).unwrap().0, 12.0);
        let escaped = parse_selector(r#"label_with_escapes{path="a\"b,c"}"#).unwrap();
        assert_eq!(find_sample(page, &escaped).unwrap().0, 3.0);
        let both = parse_selector("shop_revenue_total").unwrap();
        assert!(find_sample(page, &both)
            .unwrap_err()
            .to_string()
            .contains("2 series match"));
        let none = parse_selector(r#"shop_revenue_total{region="apac"}"#).unwrap();
        assert!(find_sample(page, &none).is_err());
        assert!(parse_selector("shop revenue").is_err());
        assert!(parse_selector(r#"x{a="1""#).is_err());
    }
}
