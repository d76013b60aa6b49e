//! `mltrail drift REFERENCE CURRENT`: per-column drift with Evidently's default tests, the dataset
//! verdict, and optional JSON and HTML reports.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_data::table::{self, Table, Values};
use mltrail_monitor::drift::{self, ColumnDrift, Method, Sample};
use mltrail_monitor::report;
use serde_json::json;

#[derive(Args)]
pub struct DriftArgs {
    /// Reference data: a .csv (header row) or .parquet file.
    reference: PathBuf,
    /// Current data, same columns.
    current: PathBuf,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Only these columns (comma-separated; default: every column in both files).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Leave these columns out, e.g. the target or an id.
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Treat these columns as categorical (default: text columns, and integer columns with at
    /// most 10 distinct reference values).
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
    /// Treat these columns as numerical even when they have few distinct values.
    #[arg(long, value_delimiter = ',')]
    numerical: Vec<String>,
    /// Use this test for every column instead of Evidently's default choice:
    /// ks, wasserstein, jensenshannon, psi, chisquare, chi2_contingency, z.
    #[arg(long)]
    method: Option<String>,
    /// The dataset drifts when at least this share of columns drift.
    #[arg(long, default_value_t = 0.5)]
    drift_share: f64,
    /// Exit with status 1 when the dataset drifts (for CI and cron jobs).
    #[arg(long)]
    fail_on_drift: bool,
}

fn floats(v: &Values) -> Vec<f64> {
    let out: Vec<f64> = match v {
        Values::Int(x) => x.iter().flatten().map(|i| *i as f64).collect(),
        Values::Float(x) => x.iter().flatten().copied().collect(),
        Values::Text(_) => Vec::new(),
    };
    // Evidently drops missing and infinite values before testing.
    out.into_iter().filter(|x| x.is_finite()).collect()
}

fn texts(v: &Values) -> Vec<String> {
    match v {
        Values::Text(x) => x.iter().flatten().cloned().collect(),
        Values::Int(x) => x.iter().flatten().map(|i| i.to_string()).collect(),
        Values::Float(x) => x
            .iter()
            .flatten()
            .filter(|f| !f.is_nan())
            .map(|f| f.to_string())
            .collect(),
    }
}

/// The two samples of one column, typed by the reference (and the flags).
fn samples(
    name: &str,
    r: &Values,
    c: &Values,
    args: &DriftArgs,
) -> Result<(Sample, Sample, &'static str)> {
    let forced_cat = args.categorical.iter().any(|n| n == name);
    let forced_num = args.numerical.iter().any(|n| n == name);
    match r {
        Values::Text(_) if forced_num => {
            bail!("column `{name}` holds text; it cannot be --numerical")
        }
        Values::Text(_) => Ok((
            Sample::Categorical(texts(r)),
            Sample::Categorical(texts(c)),
            "categorical",
        )),
        _ if matches!(c, Values::Text(_)) => {
            bail!("column `{name}` is numeric in the reference but text in the current data")
        }
        Values::Int(_) | Values::Float(_) if forced_cat => Ok((
            Sample::Discrete(floats(r)),
            Sample::Discrete(floats(c)),
            "categorical",
        )),
        Values::Int(_) => {
            let values = floats(r);
            let distinct: HashSet<u64> = values.iter().map(|v| v.to_bits()).collect();
            if distinct.len() <= 10 && !forced_num {
                Ok((
                    Sample::Discrete(values),
                    Sample::Discrete(floats(c)),
                    "categorical",
                ))
            } else {
                Ok((
                    Sample::Numeric(values),
                    Sample::Numeric(floats(c)),
                    "numerical",
                ))
            }
        }
        Values::Float(_) => Ok((
            Sample::Numeric(floats(r)),
            Sample::Numeric(floats(c)),
            "numerical",
        )),
    }
}

fn load(path: &std::path::Path) -> Result<Table> {
    table::read(path).map_err(|e| anyhow!("{e}"))
}

pub struct Outcome {
    /// The dataset drifted and `--fail-on-drift` asked for a failing exit status.
    pub fail: bool,
}

pub fn run(args: DriftArgs) -> Result<Outcome> {
    let method = args
        .method
        .as_deref()
        .map(|m| Method::parse(m).ok_or_else(|| anyhow!("--method `{m}` is not one of ks, wasserstein, jensenshannon, psi, chisquare, chi2_contingency, z")))
        .transpose()?;
    let (reference, current) = (load(&args.reference)?, load(&args.current)?);
    let wanted: Vec<String> = if args.columns.is_empty() {
        reference
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| current.column(n).is_some())
            .collect()
    } else {
        args.columns.clone()
    };
    let wanted: Vec<String> = wanted
        .into_iter()
        .filter(|n| !args.exclude.contains(n))
        .collect();
    if wanted.is_empty() {
        bail!("no column to compare: the files share none (or all were excluded)");
    }
    for missing in reference
        .columns
        .iter()
        .map(|c| &c.name)
        .filter(|n| current.column(n).is_none() && !args.exclude.contains(n))
    {
        eprintln!("note: column `{missing}` is only in the reference; skipped");
    }
    let mut results: Vec<(ColumnDrift, report::Histogram, &'static str)> = Vec::new();
    for name in &wanted {
        let r = reference
            .column(name)
            .ok_or_else(|| anyhow!("column `{name}` is not in {}", args.reference.display()))?;
        let c = current
            .column(name)
            .ok_or_else(|| anyhow!("column `{name}` is not in {}", args.current.display()))?;
        let (rs, cs, kind) = samples(name, &r.values, &c.values, &args)?;
        let verdict =
            drift::column_drift(name, &rs, &cs, method, None).map_err(|e| anyhow!("{e}"))?;
        let histogram = report::histogram(&rs, &cs);
        results.push((verdict, histogram, kind));
    }
    let columns: Vec<ColumnDrift> = results.iter().map(|(c, _, _)| c.clone()).collect();
    let dataset = drift::dataset_drift(&columns, args.drift_share);

    println!(
        "{:<24} {:<12} {:<16} {:>12} {:>10}  drift",
        "column", "type", "method", "value", "threshold"
    );
    for (c, _, kind) in &results {
        let value = c.p_value.unwrap_or(c.statistic);
        let shown = if value != 0.0 && value.abs() < 1e-4 {
            format!("{value:.3e}")
        } else {
            format!("{value:.4}")
        };
        println!(
            "{:<24} {:<12} {:<16} {:>12} {:>10}  {}",
            c.column,
            kind,
            format!(
                "{}{}",
                c.method.name(),
                if c.p_value.is_some() { " (p)" } else { "" }
            ),
            shown,
            c.threshold,
            if c.drifted { "DRIFT" } else { "-" }
        );
    }
    println!(
        "dataset: {} of {} columns drifted ({:.1}%): {} (threshold {:.0}%)",
        dataset.drifted_columns,
        columns.len(),
        dataset.share * 100.0,
        if dataset.drift {
            "DATASET DRIFT"
        } else {
            "no dataset drift"
        },
        args.drift_share * 100.0
    );

    if let Some(path) = &args.json {
        let body = json!({
            "reference": args.reference.display().to_string(),
            "current": args.current.display().to_string(),
            "columns": results.iter().map(|(c, _, kind)| json!({
                "column": c.column, "column_type": kind, "method": c.method.name(), "statistic": c.statistic,
                "p_value": c.p_value, "threshold": c.threshold, "drifted": c.drifted,
            })).collect::<Vec<_>>(),
            "dataset": {"drifted_columns": dataset.drifted_columns, "share": dataset.share, "drift": dataset.drift, "drift_share": args.drift_share},
        });
        let text = serde_json::to_string_pretty(&body)? + "\n";
        if path.as_os_str() == "-" {
            print!("{text}");
        } else {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    if let Some(path) = &args.html {
        let pairs: Vec<(ColumnDrift, report::Histogram)> =
            results.into_iter().map(|(c, h, _)| (c, h)).collect();
        let title = format!("{} → {}", args.reference.display(), args.current.display());
        std::fs::write(
            path,
            report::html(&title, &pairs, &dataset, args.drift_share),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Outcome {
        fail: args.fail_on_drift && dataset.drift,
    })
}
