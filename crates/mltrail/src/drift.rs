//! `mltrail drift REFERENCE CURRENT`: per-column drift with Evidently's default tests, the dataset
//! verdict, and optional JSON and HTML reports.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_data::table::{self, Table};
use mltrail_monitor::compare::{compare, ColumnComparison, CompareError, CompareOptions, Side};
use mltrail_monitor::drift::{ColumnDrift, Method};
use mltrail_monitor::report;
use serde_json::json;

use crate::args::ClientArgs;

#[derive(Args)]
pub struct DriftArgs {
    /// Reference data: a .csv (header row) or .parquet file, or a dataset version NAME@VERSION
    /// (NAME alone for the latest) stored with `mltrail data add`.
    pub reference: PathBuf,
    /// Current data, same forms.
    pub current: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
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
    pub drift_share: f64,
    /// Exit with status 1 when the dataset drifts (for CI and cron jobs).
    #[arg(long)]
    pub fail_on_drift: bool,
    /// The schema of a reference given as a dataset version: its declared column types.
    #[arg(skip)]
    reference_schema: Option<mltrail_data::schema::DatasetSchema>,
}

impl DriftArgs {
    /// Evidently's defaults on two inputs (files or dataset versions).
    pub fn between(
        reference: PathBuf,
        current: PathBuf,
        client: ClientArgs,
        exclude: Vec<String>,
    ) -> Self {
        DriftArgs {
            reference,
            current,
            client,
            json: None,
            html: None,
            columns: Vec::new(),
            exclude,
            categorical: Vec::new(),
            numerical: Vec::new(),
            method: None,
            drift_share: 0.5,
            fail_on_drift: false,
            reference_schema: None,
        }
    }
}

/// Replaces dataset-version arguments by a local copy of their file (kept in `dir`). An argument
/// that names an existing file is used as it is.
pub async fn resolve_inputs(args: &mut DriftArgs, dir: &std::path::Path) -> Result<()> {
    let client = args.client.client()?;
    for (slot, tag) in [
        (&mut args.reference, "reference"),
        (&mut args.current, "current"),
    ] {
        let is_reference = tag == "reference";
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
        if answer["rows_stored"] == false {
            bail!("dataset {text} was logged by mlflow.log_input: mltrail has its schema and row count but not its rows; add the file with `mltrail data add` and compare against that version");
        }
        let source = v["source"]
            .as_str()
            .ok_or_else(|| anyhow!("dataset {text} has no source"))?;
        let file_name = v["file_name"].as_str().unwrap_or("data.csv");
        let local = dir.join(format!("{tag}-{file_name}"));
        let bytes = client
            .download_shown(source, &format!("downloading {text}"))
            .await?;
        std::fs::write(&local, bytes)
            .with_context(|| format!("cannot write {}", local.display()))?;
        *slot = local;
        if is_reference {
            args.reference_schema =
                Some(mltrail_data::schema::DatasetSchema::from_json(&v["schema"]));
        }
    }
    Ok(())
}

fn load(path: &std::path::Path, keep: table::ColumnFilter) -> Result<Table> {
    table::read_filtered(path, keep).map_err(|e| anyhow!("{e}"))
}

/// The verdict table `mltrail drift` prints, from its JSON report's `columns` and `dataset`
/// (a monitor window's stored result has the same fields).
/// Writes `value` as pretty JSON to `path`, or to stdout when `path` is `-`.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    if path.as_os_str() == "-" {
        print!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

pub fn print_verdicts(columns: &[serde_json::Value], dataset: &serde_json::Value) {
    println!(
        "{:<24} {:<12} {:<16} {:>12} {:>10}  drift",
        "column", "type", "method", "value", "threshold"
    );
    for c in columns {
        let p_value = c["p_value"].as_f64();
        let value = p_value.or(c["statistic"].as_f64()).unwrap_or(f64::NAN);
        let shown = if value != 0.0 && value.abs() < 1e-4 {
            format!("{value:.3e}")
        } else {
            format!("{value:.4}")
        };
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        println!(
            "{:<24} {:<12} {:<16} {:>12} {:>10}  {}",
            text("column"),
            text("column_type"),
            format!(
                "{}{}",
                text("method"),
                if p_value.is_some() { " (p)" } else { "" }
            ),
            shown,
            c["threshold"].as_f64().unwrap_or(f64::NAN),
            if c["drifted"] == true { "DRIFT" } else { "-" }
        );
    }
    println!(
        "dataset: {} of {} columns drifted ({:.1}%): {} (threshold {:.0}%)",
        dataset["drifted_columns"].as_u64().unwrap_or(0),
        columns.len(),
        dataset["share"].as_f64().unwrap_or(0.0) * 100.0,
        if dataset["drift"] == true {
            "DATASET DRIFT"
        } else {
            "no dataset drift"
        },
        dataset["drift_share"].as_f64().unwrap_or(0.5) * 100.0
    );
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
    let mut options = CompareOptions {
        columns: args.columns.clone(),
        exclude: args.exclude.clone(),
        categorical: args.categorical.clone(),
        numerical: args.numerical.clone(),
        method,
        drift_share: args.drift_share,
        histograms: args.html.is_some(),
        private: Vec::new(),
    };
    if let Some(schema) = &args.reference_schema {
        options.follow_schema(schema);
    }
    // Read both files at once (one per core), parsing only the columns asked for.
    let keep = |name: &str| options.wants(name);
    let (reference, current) = std::thread::scope(|s| {
        let r = s.spawn(|| load(&args.reference, &keep));
        let c = load(&args.current, &keep);
        (
            r.join()
                .unwrap_or_else(|_| Err(anyhow!("reading {} failed", args.reference.display()))),
            c,
        )
    });
    let comparison = compare(reference?, current?, &options).map_err(|e| match e {
        CompareError::MissingColumn { column, side } => anyhow!(
            "column `{column}` is not in {}",
            if side == Side::Reference {
                &args.reference
            } else {
                &args.current
            }
            .display()
        ),
        other => anyhow!("{other}"),
    })?;
    for missing in &comparison.only_in_reference {
        eprintln!("note: column `{missing}` is only in the reference; skipped");
    }
    let dataset = &comparison.dataset;
    let columns: Vec<serde_json::Value> = comparison
        .columns
        .iter()
        .map(|ColumnComparison { drift: c, kind, .. }| {
            json!({
                "column": c.column, "column_type": kind.name(), "method": c.method.name(), "statistic": c.statistic,
                "p_value": c.p_value, "threshold": c.threshold, "drifted": c.drifted,
            })
        })
        .collect();
    let dataset_json = json!({"drifted_columns": dataset.drifted_columns, "share": dataset.share, "drift": dataset.drift, "drift_share": args.drift_share});
    print_verdicts(&columns, &dataset_json);

    if let Some(path) = &args.json {
        let body = json!({
            "reference": args.reference.display().to_string(),
            "current": args.current.display().to_string(),
            "columns": columns,
            "dataset": dataset_json,
        });
        write_json(path, &body)?;
    }
    if let Some(path) = &args.html {
        let pairs: Vec<(ColumnDrift, report::Histogram)> = comparison
            .columns
            .iter()
            .filter_map(|c| c.histogram.clone().map(|h| (c.drift.clone(), h)))
            .collect();
        let title = format!("{} → {}", args.reference.display(), args.current.display());
        std::fs::write(
            path,
            report::html(&title, &pairs, dataset, args.drift_share),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Outcome {
        fail: args.fail_on_drift && dataset.drift,
    })
}
