//! `mltrail predictions export`: the prediction log of a deployment (archived Parquet from the
//! artifact store, plus segments still local) filtered by time, as Parquet or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use mltrail_serving::archive::{from_parquet, schema, to_parquet, ArchiveStore};
use mltrail_serving::predlog::PredictionLog;
use serde_json::Value;

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
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// Output file (required for Parquet; CSV goes to stdout without it).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Local segments not archived yet (default: ./mltrail-data/predictions/<deployment> if it exists).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch for `--since`.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64> {
    let t = text.trim();
    if let Some(unit) = t
        .chars()
        .last()
        .filter(|c| matches!(c, 's' | 'm' | 'h' | 'd'))
    {
        if let Ok(n) = t[..t.len() - 1].parse::<i64>() {
            let ms = n * match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return Ok(now_ms - ms);
        }
    }
    let bad = || {
        anyhow!("--since `{text}` is not a date (2026-11-27), a UTC time (2026-11-27T10:00:00Z) or a duration (6h)")
    };
    let (date, time) = t
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or((t, "00:00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let tm: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let [y, mo, da] = d[..] else {
        return Err(bad());
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return Err(bad());
    }
    let (h, mi, s) = (
        tm.first().copied().unwrap_or(0),
        tm.get(1).copied().unwrap_or(0),
        tm.get(2).copied().unwrap_or(0),
    );
    Ok(((days_from_civil(y, mo, da) * 24 + h) * 60 + mi) * 60_000 + s * 1000)
}

/// One CSV cell: empty for missing, text as is (or as JSON when `json_text`), quoted when needed.
pub(crate) fn csv_field(v: Option<&Value>, json_text: bool) -> String {
    let text = match v {
        None | Some(Value::Null) => return String::new(),
        Some(Value::String(s)) if !json_text => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// A deployment's log records at or after `since` (ms): archived Parquet from the artifact store,
/// then local segments (default `./mltrail-data/predictions/<deployment>`), oldest first.
pub async fn collect(
    client: &Client,
    deployment: &str,
    since: Option<i64>,
    log_dir: Option<PathBuf>,
) -> Result<Vec<Value>> {
    let root = format!("predictions/{deployment}");
    let mut records: Vec<Value> = Vec::new();
    let files = client.list(&root).await.map_err(|e| anyhow!(e))?;
    for file in files.iter().filter(|f| f.ends_with(".parquet")) {
        let bytes = client.get(file).await.map_err(|e| anyhow!(e))?;
        records.extend(tokio::task::spawn_blocking(move || from_parquet(bytes)).await??);
    }
    let log_dir =
        log_dir.unwrap_or_else(|| PathBuf::from("mltrail-data/predictions").join(deployment));
    if log_dir.exists() {
        records.extend(
            PredictionLog::records(&log_dir)
                .with_context(|| format!("reading {}", log_dir.display()))?,
        );
    }
    records.retain(|r| {
        since.is_none_or(|s| {
            r.get("time_ms")
                .and_then(Value::as_i64)
                .is_some_and(|t| t >= s)
        })
    });
    records.sort_by_key(|r| r.get("time_ms").and_then(Value::as_i64).unwrap_or(0));
    records.dedup_by(|a, b| a == b);
    Ok(records)
}

pub async fn export(args: ExportArgs) -> Result<usize> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()?;
    if matches!(args.format, Format::Parquet) && args.output.is_none() {
        bail!("--format parquet needs --output FILE");
    }
    let client = args.client.client()?;
    let records = collect(&client, &args.deployment, since, args.log_dir.clone()).await?;
    let count = records.len();
    match args.format {
        Format::Parquet => {
            let bytes = tokio::task::spawn_blocking(move || to_parquet(&records)).await??;
            let out = args.output.as_ref().ok_or_else(|| anyhow!("--output"))?;
            std::fs::write(out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        Format::Csv => {
            let schema = schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let mut text = names.join(",") + "\n";
            for r in &records {
                let row: Vec<String> = names
                    .iter()
                    .map(|n| {
                        csv_field(
                            r.get(*n),
                            matches!(*n, "inputs" | "outputs" | "label" | "ranking"),
                        )
                    })
                    .collect();
                text.push_str(&row.join(","));
                text.push('\n');
            }
            match &args.output {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_times_and_durations() {
        assert_eq!(parse_since("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(
            parse_since("2026-11-27T00:00:00Z", 0).unwrap(),
            1_795_737_600_000
        );
        assert_eq!(parse_since("6h", 10 * 3_600_000).unwrap(), 4 * 3_600_000);
        assert!(parse_since("yesterday", 0).is_err());
        assert!(parse_since("2026-13-01", 0).is_err());
    }
}
