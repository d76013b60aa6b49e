//! `mltrail evaluate NAME/VERSION --data DATASET@V --label COL`: runs a model version over a
//! stored dataset version with the serving runtime, compares its answers with the labels
//! (scikit-learn's metrics), by sensitive groups (Fairlearn's) and explains a sample (global
//! importance), then keeps the result as the version's evaluation on the tracking server (an
//! audit event with its digest; the metrics on the version's run) with an HTML report.

use std::path::PathBuf;

use crate::tracking_client::segment as encode;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_data::table;
use mltrail_explain::evaluation::{self, report, Evaluation, Inputs};
use mltrail_explain::model::{Method, ModelExplainer};
use mltrail_serving::deployment::{load, ModelRef, ModelSource};
use serde_json::json;

use crate::args::ClientArgs;
use crate::tracking_client::Client;

#[derive(Args)]
pub struct EvaluateArgs {
    /// The model version: NAME/VERSION, or NAME@ALIAS for the version an alias names now.
    model: String,
    /// The labelled dataset version to evaluate on (DATASET@VERSION, stored with `mltrail data
    /// add`).
    #[arg(long)]
    data: String,
    /// The column holding the truth (default: the dataset's recorded target).
    #[arg(long)]
    label: Option<String>,
    /// Columns to split the classification metrics by (Fairlearn's MetricFrame and parity
    /// scalars), comma-separated.
    #[arg(long, value_delimiter = ',')]
    sensitive: Vec<String>,
    /// Rows explained for global importance (mean |SHAP| per column; needs the version's
    /// training data); 0 leaves importance out.
    #[arg(long, default_value_t = 1000)]
    importance_rows: usize,
    /// Background rows of the training data the explanations are measured against.
    #[arg(long, default_value_t = 100)]
    explain_background: usize,
    /// Also write the HTML report here (it is kept on the server either way).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print the evaluation as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// A stored dataset version's rows, digest and recorded target.
pub(crate) async fn dataset(
    client: &Client,
    version: &str,
) -> Result<(table::Table, String, Option<String>)> {
    let (name, number) = version
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("--data `{version}` is not DATASET@VERSION"))?;
    let record = client
        .get_json(
            &format!(
                "/api/v1/datasets/{}/versions/{}",
                encode(name),
                encode(number)
            ),
            &format!("dataset {version}"),
        )
        .await?;
    let digest = record["dataset_version"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let target = record["dataset_version"]["target"]
        .as_str()
        .map(str::to_string);
    let stored = ModelSource::dataset(client, version)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let bytes = ModelSource::read(client, &stored.path)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let file_name = stored.file_name.clone();
    let table = tokio::task::spawn_blocking(move || table::read_bytes(&file_name, &bytes))
        .await?
        .with_context(|| format!("reading dataset {version}"))?;
    Ok((table, digest, target))
}

pub async fn run(args: EvaluateArgs) -> Result<()> {
    check(&args)?;
    let client = args.client.client()?;
    let reference = ModelRef::parse(&args.model)?;
    let served = ModelSource::version(&client, &reference)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let loaded = load(&client, &served).await.map_err(|e| anyhow!("{e}"))?;
    let (table, data_digest, target) = dataset(&client, &args.data).await?;
    let label = args.label.clone().or(target).ok_or_else(|| {
        anyhow!(
            "--label: name the column holding the truth ({} records no target)",
            args.data
        )
    })?;
    // Global importance is measured against the version's training data, as explanations are.
    let explainer = match (&loaded.training_data, args.importance_rows) {
        (_, 0) => None,
        (None, _) => {
            eprintln!("note: no global importance: {}/{} records no training data (register it with --training-data)", loaded.name, loaded.version);
            None
        }
        (Some(training), _) => {
            let (rows, _, _) = dataset(&client, training).await?;
            let columns = loaded.signature.column_names();
            match mltrail_explain::served::numeric_rows(&rows, &columns, training) {
                Ok(numbers) => Some(numbers),
                Err(why) => {
                    eprintln!("note: no global importance: {why}");
                    None
                }
            }
        }
    };
    let (importance_rows, background) = (args.importance_rows, args.explain_background.max(1));
    let sensitive = args.sensitive.clone();
    let label_column = label.clone();
    let (evaluation, loaded) = tokio::task::spawn_blocking(move || -> Result<_> {
        let explainer = match explainer {
            Some(training) => match ModelExplainer::new(
                &loaded.model,
                &training,
                Method::Interventional,
                background,
            ) {
                Ok(e) => Some(e),
                Err(e) => {
                    eprintln!("note: no global importance: {e}");
                    None
                }
            },
            None => None,
        };
        let evaluation = evaluation::evaluate(&Inputs {
            loaded: &loaded,
            table: &table,
            label: &label_column,
            sensitive: &sensitive,
            explainer: explainer.as_ref(),
            importance_rows,
        })?;
        Ok((evaluation, loaded))
    })
    .await??;
    let mut body = serde_json::to_value(&evaluation)?;
    body["model"] = json!(loaded.name);
    body["version"] = json!(loaded.version);
    body["model_digest"] = json!(loaded.digest);
    body["dataset"] = json!(args.data);
    body["dataset_digest"] = json!(data_digest);
    body["created_time"] = json!(mltrail_core::now_millis());
    let path = format!(
        "/api/v1/models/{}/versions/{}/evaluation",
        encode(&loaded.name),
        encode(&loaded.version)
    );
    let kept = client.post(&path, &body, "keep the evaluation").await?;
    let digest = kept["digest"].as_str().unwrap_or_default().to_string();
    let html = report::html(
        &format!("{}/{} on {}", loaded.name, loaded.version, args.data),
        &evaluation,
    );
    let report_path = format!(
        "evaluations/{}/{}/{digest}.html",
        loaded.name, loaded.version
    );
    client
        .upload(&report_path, html.clone().into_bytes())
        .await?;
    if let Some(file) = &args.html {
        std::fs::write(file, &html).with_context(|| format!("cannot write {}", file.display()))?;
    }
    if args.json {
        body["digest"] = json!(digest);
        body["report"] = json!(report_path);
        body["run_id"] = kept["run_id"].clone();
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print_summary(&evaluation, &loaded.name, &loaded.version, &args.data);
        println!(
            "kept as {}/{}'s evaluation (digest {digest}); report: {report_path}",
            loaded.name, loaded.version
        );
        match kept["run_metrics"].as_array().filter(|m| !m.is_empty()) {
            Some(m) => println!(
                "metrics logged on run {} ({} of them)",
                kept["run_id"].as_str().unwrap_or("?"),
                m.len()
            ),
            None => println!(
                "no run to log the metrics on ({}/{} names none)",
                loaded.name, loaded.version
            ),
        }
    }
    Ok(())
}

fn print_summary(e: &Evaluation, name: &str, version: &str, data: &str) {
    println!(
        "{name}/{version} on {data}: {} rows, label `{}` ({})",
        e.rows, e.label, e.task
    );
    let show = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
    if let Some(m) = &e.classification {
        for (k, v) in [
            ("accuracy", Some(m.accuracy)),
            ("precision", Some(m.precision)),
            ("recall", Some(m.recall)),
            ("f1", Some(m.f1)),
            ("roc_auc", m.roc_auc),
            ("log_loss", m.log_loss),
            ("brier", m.brier),
        ] {
            println!("  {k:<10} {}", show(v));
        }
    }
    if let Some(m) = &e.regression {
        for (k, v) in [("rmse", m.rmse), ("mae", m.mae), ("r2", m.r2)] {
            println!("  {k:<10} {v:.4}");
        }
    }
    if let Some(f) = &e.fairness {
        for (column, s) in f["scalar"].as_object().into_iter().flatten() {
            println!(
                "  {column}: demographic parity difference {}, equalized odds difference {}",
                show(s["between_groups"]["demographic_parity_difference"].as_f64()),
                show(s["between_groups"]["equalized_odds_difference"].as_f64())
            );
        }
    }
    if let Some(i) = &e.importance {
        let top: Vec<String> = i
            .columns
            .iter()
            .take(5)
            .map(|(c, v)| format!("{c} {v:.4}"))
            .collect();
        println!("  importance (mean |SHAP|): {}", top.join(", "));
    }
}

/// Refuses what cannot be evaluated before any work: an empty sensitive name.
pub fn check(args: &EvaluateArgs) -> Result<()> {
    if args.sensitive.iter().any(|s| s.trim().is_empty()) {
        bail!("--sensitive: name columns, comma-separated (e.g. --sensitive sex,age_group)");
    }
    Ok(())
}
