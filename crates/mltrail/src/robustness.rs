//! `mltrail robustness NAME/VERSION --data DATASET@V --epsilon E`: attacks a classifier's
//! correctly classified rows within an L∞ ball (features scaled by their training standard
//! deviation unless `--raw`), verifies tree ensembles, measures noise and missing-feature
//! accuracy (mltrail-explain's `robustness`), and keeps the report as the version's robustness
//! report on the tracking server (an audit event with its digest; gates read it). With
//! `--augment NAME` the adversarial examples found, with their true labels, become a new
//! version of dataset NAME, named on the model version (`mltrail.adversarial_data`).

use crate::tracking_client::segment as encode;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_explain::evaluation::{class_name, label_value};
use mltrail_explain::robustness::{self, HsjaSettings, Input, Settings, VerifySettings};
use mltrail_serving::deployment::{load, ModelRef, ModelSource};
use serde_json::{json, Value};

use crate::args::ClientArgs;

/// The tag naming the adversarial dataset version made from a model version.
const ADVERSARIAL_TAG: &str = "mltrail.adversarial_data";

#[derive(Args)]
pub struct RobustnessArgs {
    /// The model version: NAME/VERSION, or NAME@ALIAS for the version an alias names now.
    model: String,
    /// The labelled dataset version to attack (DATASET@VERSION).
    #[arg(long)]
    data: String,
    /// The column holding the truth (default: the dataset's recorded target).
    #[arg(long)]
    label: Option<String>,
    /// The L∞ radius, in units of each feature's training standard deviation (or raw units
    /// with --raw).
    #[arg(long)]
    epsilon: f64,
    /// The features an attack may change, comma-separated (default: every input column).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// The norm of the ball; only linf is supported.
    #[arg(long, default_value = "linf")]
    norm: String,
    /// Measure distances in the features' own units instead of training standard deviations.
    #[arg(long)]
    raw: bool,
    /// Gaussian noise levels (in the same units as epsilon) to measure accuracy under.
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.1,0.2")]
    sigmas: Vec<f64>,
    /// At most this many labelled rows are assessed (a seeded sample; every number in the
    /// report is about the same rows, so the bounds stay bounds).
    #[arg(long, default_value_t = 500)]
    max_rows: usize,
    /// Model evaluations the black-box attack may spend per row.
    #[arg(long, default_value_t = 20_000)]
    queries: usize,
    /// Iterations of the black-box attack (HopSkipJump's max_iter).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Random restarts of the tree attack.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Trees merged at a time by the verification (ART's max_clique).
    #[arg(long, default_value_t = 2)]
    verify_clique: usize,
    /// Merging levels of the verification at most (ART's max_level is 2).
    #[arg(long, default_value_t = 4)]
    verify_levels: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the adversarial examples found, with their true labels, as a new version of this
    /// dataset (retrain on it: the countermeasure; lineage shows it).
    #[arg(long)]
    augment: Option<String>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: RobustnessArgs) -> Result<()> {
    if args.norm != "linf" {
        bail!(
            "--norm {}: only linf is supported (the L∞ ball every attack and the verification use)",
            args.norm
        );
    }
    if !(args.epsilon > 0.0 && args.epsilon.is_finite()) {
        bail!("--epsilon must be a positive number, e.g. 0.05");
    }
    if args.sigmas.iter().any(|s| !(*s >= 0.0 && s.is_finite())) {
        bail!("--sigmas must be non-negative numbers, e.g. 0.05,0.1");
    }
    let client = args.client.client()?;
    let reference = ModelRef::parse(&args.model)?;
    let served = ModelSource::version(&client, &reference)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let loaded = load(&client, &served).await.map_err(|e| anyhow!("{e}"))?;
    let (table, data_digest, target) = crate::evaluate::dataset(&client, &args.data).await?;
    let label = args.label.clone().or(target).ok_or_else(|| {
        anyhow!(
            "--label: name the column holding the truth ({} records no target)",
            args.data
        )
    })?;
    let columns = loaded.signature.column_names();
    let rows = mltrail_explain::served::numeric_rows(&table, &columns, &args.data)
        .map_err(|e| anyhow!("{e}"))?;
    let target_column = table
        .column(&label)
        .ok_or_else(|| anyhow!("--label `{label}` is not a column of {}", args.data))?;
    let truth: Vec<Option<String>> = (0..table.rows)
        .map(|r| class_name(&label_value(&target_column.values, r)))
        .collect();
    let attacked: Vec<usize> = if args.features.is_empty() {
        (0..columns.len()).collect()
    } else {
        args.features
            .iter()
            .map(|f| {
                columns.iter().position(|c| c == f).ok_or_else(|| {
                    anyhow!(
                        "--features: `{f}` is not an input of the model ({})",
                        columns.join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    // Distances are in training standard deviations: the same ε means the same for every
    // feature, whatever its units.
    let (scale, scale_source) = if args.raw {
        (vec![1.0; columns.len()], json!({"source": "raw"}))
    } else {
        let training = loaded.training_data.clone().ok_or_else(|| {
            anyhow!(
                "{}/{} records no training data, whose standard deviations scale the features: register it with --training-data, or give --raw to measure in the features' own units",
                loaded.name, loaded.version
            )
        })?;
        let (train, _, _) = crate::evaluate::dataset(&client, &training).await?;
        let train_rows = mltrail_explain::served::numeric_rows(&train, &columns, &training)
            .map_err(|e| anyhow!("{e}"))?;
        let std: Vec<f64> = mltrail_explain::served::column_stats(&train_rows, columns.len())
            .into_iter()
            .map(|(_, _, sd)| sd)
            .collect();
        let mut scale = Vec::with_capacity(std.len());
        for (j, s) in std.iter().enumerate() {
            if *s > 0.0 {
                scale.push(*s);
            } else if attacked.contains(&j) {
                bail!(
                    "feature `{}` is constant in the training data {training}: leave it out with --features, or give --raw",
                    columns[j]
                );
            } else {
                scale.push(1.0);
            }
        }
        let by_column: serde_json::Map<String, Value> = columns
            .iter()
            .zip(&scale)
            .map(|(c, s)| (c.clone(), json!(s)))
            .collect();
        (
            scale,
            json!({"source": "training_std", "training_data": training, "std": by_column}),
        )
    };
    let settings = Settings {
        epsilon: args.epsilon,
        attacked,
        scale,
        sigmas: args.sigmas.clone(),
        max_rows: args.max_rows,
        restarts: args.restarts,
        hsja: HsjaSettings {
            max_iter: args.iterations,
            max_queries: args.queries,
            ..HsjaSettings::default()
        },
        verify: VerifySettings {
            clique: args.verify_clique,
            levels: args.verify_levels,
            ..VerifySettings::default()
        },
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    // One line on stderr, redrawn at most twice a second, where a person watches (as `mltrail
    // backup` does).
    let watched = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (report, examples, loaded) = tokio::task::spawn_blocking(move || -> Result<_> {
        let last = std::sync::Mutex::new(std::time::Instant::now());
        let progress = move |stage: &'static str, done: usize, total: usize| {
            let Ok(mut shown) = last.lock() else { return };
            if watched && (done + 1 == total || shown.elapsed().as_millis() >= 500) {
                *shown = std::time::Instant::now();
                eprint!(
                    "\r{stage}: {}/{total} rows{}",
                    done + 1,
                    if done + 1 == total { "\n" } else { "" }
                );
            }
        };
        let (report, examples) = robustness::assess(
            &Input {
                model: &loaded.model,
                columns: &columns,
                rows: &rows,
                truth: &truth,
                progress: &progress,
            },
            &settings,
        )?;
        Ok((report, examples, loaded))
    })
    .await??;
    let seconds = started.elapsed().as_secs_f64();

    let mut body = serde_json::to_value(&report)?;
    body["model"] = json!(loaded.name);
    body["version"] = json!(loaded.version);
    body["model_digest"] = json!(loaded.digest);
    body["dataset"] = json!(args.data);
    body["dataset_digest"] = json!(data_digest);
    body["label"] = json!(label);
    body["scale"] = scale_source;
    body["settings"] = json!({
        "restarts": args.restarts, "max_rows": args.max_rows, "seed": args.seed,
        "hop_skip_jump": {"max_iter": args.iterations, "max_queries": args.queries},
        "verification": {"clique": args.verify_clique, "levels": args.verify_levels},
    });
    body["created_time"] = json!(mltrail_core::now_millis());
    if let Some(dataset) = &args.augment {
        let written = augment(&client, dataset, &label, &loaded, &examples).await?;
        body["augmented"] = json!(written);
    }
    let path = format!(
        "/api/v1/models/{}/versions/{}/robustness",
        encode(&loaded.name),
        encode(&loaded.version)
    );
    let kept = client
        .post(&path, &body, "keep the robustness report")
        .await?;
    let digest = kept["digest"].as_str().unwrap_or_default().to_string();
    if args.json {
        body["digest"] = json!(digest);
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    print_summary(&report, &loaded.name, &loaded.version, &args.data);
    if let Some(written) = body.get("augmented") {
        println!("adversarial examples: {written}");
    }
    println!(
        "kept as {}/{}'s robustness report (digest {digest}); {seconds:.1} s",
        loaded.name, loaded.version
    );
    Ok(())
}

/// Writes the examples with their true labels as a new version of `dataset`, and names it on
/// the model version.
async fn augment(
    client: &crate::tracking_client::Client,
    dataset: &str,
    label: &str,
    loaded: &mltrail_serving::deployment::LoadedModel,
    examples: &[robustness::Example],
) -> Result<Value> {
    if examples.is_empty() {
        eprintln!("note: no adversarial example was found, so no dataset version was written");
        return Ok(Value::Null);
    }
    let columns = loaded.signature.column_names();
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(columns.iter().map(String::as_str).chain([label]))?;
    for e in examples {
        // Shortest round-trip decimal: the values read back exactly as attacked.
        let mut record: Vec<String> = e.values.iter().map(|v| format!("{v:?}")).collect();
        record.push(e.label.clone());
        csv.write_record(&record)?;
    }
    let bytes = csv
        .into_inner()
        .context("writing the adversarial examples")?;
    let file_name = format!(
        "adversarial-{}-{}.csv",
        loaded.name.replace('/', "_"),
        loaded.version
    );
    let (version, _) =
        crate::data::add_bytes(client, dataset, &file_name, bytes, Some(label), None).await?;
    let named = format!("{dataset}@{version}");
    client
        .post(
            "/api/2.0/mlflow/model-versions/set-tag",
            &json!({"name": loaded.name, "version": loaded.version, "key": ADVERSARIAL_TAG, "value": named}),
            "name the adversarial data on the model version",
        )
        .await?;
    Ok(json!({"dataset_version": named, "examples": examples.len()}))
}

fn print_summary(r: &robustness::Report, name: &str, version: &str, data: &str) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    println!(
        "{name}/{version} on {data}: {} rows, ε = {} (L∞), features {}",
        r.rows,
        r.epsilon,
        r.attacked_features.join(", ")
    );
    println!("  clean accuracy            {}", pct(r.clean_accuracy));
    println!(
        "  robust accuracy ≤         {}  (attacks found examples)",
        pct(r.robust_accuracy)
    );
    match r.verified_robust_accuracy {
        Some(v) => println!("  verified robust accuracy ≥ {}  (clique method)", pct(v)),
        None => println!("  verified robust accuracy  — (tree ensembles only)"),
    }
    println!(
        "  attack success rate       {} of {} rows attacked",
        pct(r.attack_success_rate),
        r.rows_attacked
    );
    if let Some(m) = r.median_perturbation {
        println!("  median perturbation       {m:.4}");
    }
    for a in &r.attacks {
        println!(
            "  {:<24}  {} flipped ({}){}",
            a.attack,
            a.successes,
            pct(a.success_rate),
            a.mean_queries
                .map(|q| format!(", {q:.0} queries per row"))
                .unwrap_or_default()
        );
    }
    for n in &r.noise {
        println!("  noise σ = {:<6}  accuracy {}", n.sigma, pct(n.accuracy));
    }
    for m in &r.missing {
        match m.accuracy {
            Some(a) => println!("  without {:<16}  accuracy {}", m.feature, pct(a)),
            None => println!(
                "  without {:<16}  cannot score ({})",
                m.feature,
                m.note.as_deref().unwrap_or("")
            ),
        }
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
}
