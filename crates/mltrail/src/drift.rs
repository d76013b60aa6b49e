//! `mltrail drift REFERENCE CURRENT`: per-column drift with Evidently's default tests, the dataset
//! verdict, and optional JSON and HTML reports.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_data::table::{self, Table, Values};
use mltrail_monitor::drift::{self, Categories, ColumnDrift, Method, Sample};
use mltrail_monitor::report;
use serde_json::json;

#[derive(Args)]
pub struct DriftArgs {
    /// Reference data: a .csv (header row) or .parquet file, or a dataset version NAME@VERSION
    /// (NAME alone for the latest) stored with `mltrail data add`.
    pub reference: PathBuf,
    /// Current data, same forms.
    pub current: PathBuf,
    #[arg(long, help = crate::tracking_client::TRACKING_URI_HELP)]
    pub tracking_uri: Option<String>,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long)]
    pub html: Option<PathBuf>,
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
    pub fail_on_drift: bool,
}

/// Numbers without missing or infinite values (Evidently drops both before testing).
fn finite(mut values: Vec<f64>) -> Vec<f64> {
    values.retain(|x| x.is_finite());
    values
}

fn categories(labels: Vec<String>, mut codes: Vec<u32>) -> Categories {
    codes.retain(|c| *c != table::MISSING);
    Categories { labels, codes }
}

/// The two samples of one column, typed by the reference (and the flags); consumes the values.
fn samples(
    name: &str,
    r: Values,
    c: Values,
    args: &DriftArgs,
) -> Result<(Sample, Sample, &'static str)> {
    let forced_cat = args.categorical.iter().any(|n| n == name);
    let forced_num = args.numerical.iter().any(|n| n == name);
    match (r, c) {
        (Values::Text { .. }, _) if forced_num => {
            bail!("column `{name}` holds text; it cannot be --numerical")
        }
        (
            Values::Text { labels, codes },
            Values::Text {
                labels: cl,
                codes: cc,
            },
        ) => Ok((
            Sample::Categorical(categories(labels, codes)),
            Sample::Categorical(categories(cl, cc)),
            "categorical",
        )),
        (Values::Text { .. }, Values::Numeric { .. }) => {
            bail!("column `{name}` is text in the reference but numeric in the current data")
        }
        (Values::Numeric { .. }, Values::Text { .. }) => {
            bail!("column `{name}` is numeric in the reference but text in the current data")
        }
        (
            Values::Numeric {
                values: rv,
                integer,
            },
            Values::Numeric { values: cv, .. },
        ) => {
            let (rv, cv) = (finite(rv), finite(cv));
            let max = table::CATEGORICAL_INTEGER_MAX_DISTINCT;
            let categorical = forced_cat
                || (integer && !forced_num && drift::distinct_numbers_up_to(&rv, max) <= max);
            if categorical {
                Ok((Sample::Discrete(rv), Sample::Discrete(cv), "categorical"))
            } else {
                Ok((Sample::Numeric(rv), Sample::Numeric(cv), "numerical"))
            }
        }
    }
}

impl DriftArgs {
    /// Evidently's defaults on two inputs (files or dataset versions).
    pub fn between(
        reference: PathBuf,
        current: PathBuf,
        tracking_uri: Option<String>,
        exclude: Vec<String>,
    ) -> Self {
        DriftArgs {
            reference,
            current,
            tracking_uri,
            json: None,
            html: None,
            columns: Vec::new(),
            exclude,
            categorical: Vec::new(),
            numerical: Vec::new(),
            method: None,
            drift_share: 0.5,
            fail_on_drift: false,
        }
    }
}

/// Replaces dataset-version arguments by a local copy of their file (kept in `dir`). An argument
/// that names an existing file is used as it is.
pub async fn resolve_inputs(args: &mut DriftArgs, dir: &std::path::Path) -> Result<()> {
    let client = crate::tracking_client::Client::new(crate::tracking_client::resolve_uri(
        args.tracking_uri.clone(),
    ))?;
    for (slot, tag) in [
        (&mut args.reference, "reference"),
        (&mut args.current, "current"),
    ] {
        if slot.exists() {
            continue;
        }
        let text = slot.display().to_string();
        let (name, version) = text.split_once('@').unwrap_or((text.as_str(), "latest"));
        if name.is_empty() || name.contains(['/', '\\']) {
            bail!("{text}: no such file");
        }
        let answer = client
            .get_json(
                &format!("/api/v1/datasets/{name}/versions/{version}"),
                &format!("dataset {text}"),
            )
            .await
            .map_err(|e| {
                anyhow!("{text} is neither a file nor a stored dataset version ({e:#})")
            })?;
        let v = &answer["dataset_version"];
        let source = v["source"]
            .as_str()
            .ok_or_else(|| anyhow!("dataset {text} has no source"))?;
        let file_name = v["file_name"].as_str().unwrap_or("data.csv");
        let local = dir.join(format!("{tag}-{file_name}"));
        std::fs::write(&local, client.download(source).await?)
            .with_context(|| format!("cannot write {}", local.display()))?;
        *slot = local;
    }
    Ok(())
}

fn load(path: &std::path::Path, keep: table::ColumnFilter) -> Result<Table> {
    table::read_filtered(path, keep).map_err(|e| anyhow!("{e}"))
}

/// One column's verdict, with its histogram when an HTML report was asked for.
type ColumnOutcome = (ColumnDrift, Option<report::Histogram>);

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
    // Read both files at once (one per core), parsing only the columns asked for; by default the
    // columns both files have.
    let keep = |name: &str| {
        (args.columns.is_empty() || args.columns.iter().any(|c| c == name))
            && !args.exclude.iter().any(|c| c == name)
    };
    let (reference, current) = std::thread::scope(|s| {
        let r = s.spawn(|| load(&args.reference, &keep));
        let c = load(&args.current, &keep);
        (
            r.join()
                .unwrap_or_else(|_| Err(anyhow!("reading {} failed", args.reference.display()))),
            c,
        )
    });
    let (mut reference, mut current) = (reference?, current?);
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
    let mut prepared = Vec::with_capacity(wanted.len());
    for name in &wanted {
        let r = reference
            .take(name)
            .ok_or_else(|| anyhow!("column `{name}` is not in {}", args.reference.display()))?;
        let c = current
            .take(name)
            .ok_or_else(|| anyhow!("column `{name}` is not in {}", args.current.display()))?;
        prepared.push((
            name.clone(),
            std::sync::Mutex::new(samples(name, r, c, &args)?),
        ));
    }
    drop((reference, current));
    // Columns are independent: spread them over the cores.
    let want_histograms = args.html.is_some();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(prepared.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<ColumnOutcome>>>> = prepared
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((name, samples)) = prepared.get(i) else {
                    break;
                };
                let Ok(mut pair) = samples.lock() else { break };
                let (rs, cs, _) = &mut *pair;
                rs.sort();
                cs.sort();
                let (rs, cs) = (&*rs, &*cs);
                let result = drift::column_drift(name, rs, cs, method, None)
                    .map_err(|e| anyhow!("{e}"))
                    .map(|verdict| (verdict, want_histograms.then(|| report::histogram(rs, cs))));
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    let mut results: Vec<(ColumnDrift, Option<report::Histogram>, &'static str)> =
        Vec::with_capacity(prepared.len());
    for (slot, (_, pair)) in slots.into_iter().zip(&prepared) {
        let kind = pair.lock().map(|p| p.2).unwrap_or("numerical");
        let (verdict, histogram) = slot
            .into_inner()
            .ok()
            .flatten()
            .ok_or_else(|| anyhow!("a drift worker stopped"))??;
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
        let pairs: Vec<(ColumnDrift, report::Histogram)> = results
            .into_iter()
            .filter_map(|(c, h, _)| h.map(|h| (c, h)))
            .collect();
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
