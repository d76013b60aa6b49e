//! `mltrail predictions export`: the prediction log of a deployment (archived Parquet from the
//! artifact store, plus segments still local) filtered by time, as Parquet or CSV; with
//! `--for-training`, as a training table that says which routing policy caused each row
//! (`mltrail_serving::training`), optionally stored as a dataset version.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use mltrail_serving::archive::{to_batch, to_parquet};
use mltrail_serving::archive_read::{read_between, ReadStats, TimeRange};
use mltrail_serving::predlog::PredictionLog;
use mltrail_serving::record::LogRecord;

use crate::args::ClientArgs;
use crate::tracking_client::Client;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Parquet,
    Csv,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The deployment whose predictions to export.
    #[arg(long)]
    deployment: String,
    /// Only records at or after this time: 2026-11-27, 2026-11-27T10:00:00Z, or a duration ago (90m, 6h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only records at or before this time (same forms as --since; a date alone means the end of
    /// that day). With either, only the day folders and Parquet row groups that can hold the
    /// range are downloaded.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// Output file (required for Parquet; CSV goes to stdout without it).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Local segments not archived yet (default: ./mltrail-data/predictions/<deployment> if it exists).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// A training table instead of log records: one row per returned prediction with its
    /// inputs, outputs (prediction_*), latest label and reward, and `arm`, `propensity`,
    /// `ips_weight` (1 / propensity), `returned`, `experiment`, `policy`, `policy_version`.
    #[arg(long)]
    for_training: bool,
    /// With --for-training: only this arm's predictions (as the policy names it).
    #[arg(long, requires = "for_training", conflicts_with = "exclude_arms")]
    arm: Option<String>,
    /// With --for-training: leave out these arms' predictions (comma-separated).
    #[arg(long, requires = "for_training", value_delimiter = ',')]
    exclude_arms: Vec<String>,
    /// With --for-training: only predictions whose propensity is known and positive, so every
    /// row can be weighted by ips_weight (routed by a policy with exploration).
    #[arg(long, requires = "for_training")]
    ips: bool,
    /// With --for-training: keep the shadows' predictions too (returned = false).
    #[arg(long, requires = "for_training")]
    include_shadows: bool,
    /// With --for-training: also store the table as a version of this dataset (its rows say
    /// which experiment, policy and arm each came from).
    #[arg(long, requires = "for_training")]
    dataset: Option<String>,
    /// Annotated periods about this deployment (`mltrail annotate` naming it, or naming no
    /// metric): `tag` adds columns annotation and annotation_kind, `exclude` leaves their
    /// records out (so a model trained on them does not learn a campaign), `include` (the
    /// default) leaves the records as they are.
    #[arg(long, value_enum, default_value = "include")]
    annotations: crate::business::AnnotatedPeriods,
    #[command(flatten)]
    client: ClientArgs,
}

/// Milliseconds since the epoch for `--since`.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64> {
    mltrail_core::time::parse_since(text, now_ms).map_err(|e| anyhow!("--since {e}"))
}

/// The time range of `--since` and `--until` (the same forms; until must not be before since).
pub fn time_range(since: Option<&str>, until: Option<&str>, now_ms: i64) -> Result<TimeRange> {
    let since = since.map(|s| parse_since(s, now_ms)).transpose()?;
    let until = until
        .map(|u| {
            let at =
                mltrail_core::time::parse_since(u, now_ms).map_err(|e| anyhow!("--until {e}"))?;
            // A date alone means the whole of that day: `--since D --until D` is day D.
            let date_only = u.trim().len() == 10 && u.trim().as_bytes().get(4) == Some(&b'-');
            Ok::<i64, anyhow::Error>(if date_only { at + 86_399_999 } else { at })
        })
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            bail!(
                "--until ({}) is before --since ({}): give an end after the start",
                mltrail_core::time::rfc3339_seconds(u),
                mltrail_core::time::rfc3339_seconds(s)
            );
        }
    }
    Ok(TimeRange { since, until })
}

/// The day folder of an archived file (`predictions/<deployment>/<day>/<file>`).
fn day_of<'a>(root: &str, file: &'a str) -> Option<&'a str> {
    let rest = file.strip_prefix(root)?.strip_prefix('/')?;
    let (day, name) = rest.split_once('/')?;
    (!name.contains('/')).then_some(day)
}

/// A deployment's log records in `range`: archived Parquet from the artifact store (only the
/// day folders that can hold the range, and in each file its footer and the row groups whose
/// time statistics overlap the range), then local segments (default
/// `./mltrail-data/predictions/<deployment>`), oldest first.
pub async fn collect(
    client: &Client,
    deployment: &str,
    range: TimeRange,
    log_dir: Option<PathBuf>,
) -> Result<Vec<LogRecord>> {
    let root = format!("predictions/{deployment}");
    let mut records: Vec<LogRecord> = Vec::new();
    let listed: Vec<(String, u64)> = client
        .list_files(&root)
        .await
        .with_context(|| format!("listing {root}"))?
        .into_iter()
        .filter(|(f, _)| f.ends_with(".parquet"))
        .collect();
    let archived: u64 = listed.iter().map(|(_, size)| size).sum();
    let files: Vec<(String, u64)> = listed
        .into_iter()
        .filter(|(f, _)| day_of(&root, f).is_none_or(|day| range.may_hold_day(day)))
        .collect();
    let bar = crate::progress::bytes(
        files.iter().map(|(_, size)| size).sum(),
        &format!("reading the archive of {deployment}"),
    );
    let mut stats = ReadStats::default();
    for (file, size) in &files {
        records.extend(read_between(client, file, *size, range, &mut stats).await?);
        bar.inc(*size);
    }
    bar.finish_and_clear();
    if range != TimeRange::default() && archived > 0 {
        eprintln!(
            "read {} of the archive's {} ({} row groups of {} files; {} row groups outside the range left unread)",
            indicatif::HumanBytes(stats.bytes_fetched),
            indicatif::HumanBytes(archived),
            stats.row_groups_read,
            stats.files_read,
            stats.row_groups_skipped,
        );
    }
    let log_dir =
        log_dir.unwrap_or_else(|| PathBuf::from("mltrail-data/predictions").join(deployment));
    // The shadows' records are in a folder of their own.
    for dir in [log_dir.clone(), log_dir.join("shadow")] {
        if dir.exists() {
            records.extend(
                PredictionLog::records(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?,
            );
        }
    }
    records.retain(|r| range.contains(r.time_ms()));
    records.sort_by_key(LogRecord::time_ms);
    records.dedup_by(|a, b| a.same_as(b));
    Ok(records)
}

pub async fn export(args: ExportArgs) -> Result<usize> {
    let range = time_range(
        args.since.as_deref(),
        args.until.as_deref(),
        mltrail_core::now_millis(),
    )?;
    if matches!(args.format, Format::Parquet) && args.output.is_none() && args.dataset.is_none() {
        bail!("--format parquet needs --output FILE");
    }
    let client = args.client.client()?;
    let mut records = collect(&client, &args.deployment, range, args.log_dir.clone()).await?;
    use crate::business::{period_at, periods_about, AnnotatedPeriods};
    let periods = match args.annotations {
        AnnotatedPeriods::Include => Vec::new(),
        _ => periods_about(&client, &args.deployment).await?,
    };
    if args.annotations == AnnotatedPeriods::Exclude {
        let before = records.len();
        records.retain(|r| period_at(&periods, r.time_ms()).is_none());
        eprintln!(
            "{} records inside annotated periods left out",
            before - records.len()
        );
    }
    if args.for_training {
        return training(&client, &args, records, &periods).await;
    }
    let count = records.len();
    if args.annotations == AnnotatedPeriods::Tag {
        let batch = crate::business::tag_batch(&to_batch(&records)?, "time_ms", &periods)?;
        let bytes = crate::business::table_bytes(&batch, args.format)?;
        match &args.output {
            Some(path) => std::fs::write(path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => std::io::stdout().write_all(&bytes)?,
        }
        return Ok(count);
    }
    match args.format {
        Format::Parquet => {
            let bytes = tokio::task::spawn_blocking(move || to_parquet(&records)).await??;
            let out = args.output.as_ref().ok_or_else(|| anyhow!("--output"))?;
            std::fs::write(out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        Format::Csv => {
            let batch = to_batch(&records)?;
            let mut text = Vec::new();
            arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut text)
                .write(&batch)?;
            match &args.output {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(&text)?,
            }
        }
    }
    Ok(count)
}

/// `--for-training`: the training table, written and, with `--dataset`, stored as a version.
async fn training(
    client: &Client,
    args: &ExportArgs,
    records: Vec<LogRecord>,
    periods: &[crate::business::Period],
) -> Result<usize> {
    use mltrail_serving::training::{training_table, TrainingFilter};
    let filter = TrainingFilter {
        arm: args.arm.clone(),
        exclude_arms: args.exclude_arms.clone(),
        ips: args.ips,
        include_shadows: args.include_shadows,
    };
    let (batch, cut) = tokio::task::spawn_blocking(move || training_table(&records, &filter))
        .await?
        .map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "{} rows; left out: {} of other arms, {} without a propensity, {} shadows",
        cut.rows, cut.other_arms, cut.no_propensity, cut.shadows
    );
    let batch = if args.annotations == crate::business::AnnotatedPeriods::Tag {
        crate::business::tag_batch(&batch, "time_ms", periods)?
    } else {
        batch
    };
    let bytes = match args.format {
        Format::Parquet => mltrail_serving::training::to_parquet(&batch)?,
        Format::Csv => {
            let mut text = Vec::new();
            arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut text)
                .write(&batch)?;
            text
        }
    };
    match (&args.output, args.format) {
        (Some(path), _) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        (None, Format::Csv) => std::io::stdout().write_all(&bytes)?,
        // Parquet without --output: only stored as a dataset version.
        (None, Format::Parquet) => {}
    }
    if let Some(name) = &args.dataset {
        let extension = match args.format {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        };
        let file_name = format!("{}-training.{extension}", args.deployment);
        let (version, _) =
            crate::data::add_bytes(client, name, &file_name, bytes, Some("label"), None).await?;
        eprintln!("stored as dataset version {name}@{version}");
    }
    Ok(cut.rows)
}
