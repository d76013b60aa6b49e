//! `mltrail data profile FILE`: what a dataset version will store as its monitoring reference,
//! for any CSV or Parquet file.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use mltrail_data::profile::{profile, Summary};
use mltrail_data::schema::{DatasetSchema, DeclaredSchema, SchemaChange};
use mltrail_data::table;
use mltrail_data::version;
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Store an immutable, content-addressed version of a CSV or Parquet file under NAME, with its
    /// inferred schema and profile; prints NAME@VERSION. The same content again returns the
    /// existing version.
    Add(AddArgs),
    /// List dataset versions (one dataset with --name).
    List(ListArgs),
    /// Show one version's schema and profile: NAME@VERSION, or NAME for the latest.
    Show(ShowArgs),
    /// Compare two versions: schema changes, then drift column by column (A is the reference).
    Diff(DiffArgs),
    /// Profile a CSV or Parquet file: per column the count, missing and distinct values, and the
    /// numeric summary (min, max, mean, std, quantiles, histogram) or the top categories.
    Profile(ProfileArgs),
}

#[derive(Args)]
pub struct AddArgs {
    /// A .csv (header row) or .parquet file.
    file: PathBuf,
    /// The dataset's name.
    #[arg(long)]
    name: String,
    /// The target (label) column, recorded with the version.
    #[arg(long)]
    target: Option<String>,
    /// Declared column types and PII tags, a TOML file:
    /// `[columns.email]` `type = "text"` `pii = true` (types: numeric, categorical, text, datetime);
    /// `subject = true` on the column naming the person a row is about.
    #[arg(long)]
    schema: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    /// NAME@VERSION, or NAME for the latest version.
    dataset: String,
    #[command(flatten)]
    output: crate::args::JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The reference version, NAME@VERSION.
    a: String,
    /// The current version, NAME@VERSION.
    b: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(mut_arg("json", |a| a.help("Print the profile as JSON instead of a table")))]
pub struct ProfileArgs {
    /// A .csv (header row) or .parquet file.
    file: PathBuf,
    #[command(flatten)]
    output: JsonArgs,
}

/// The user's declared schema (`--schema FILE`, TOML) applied to the inferred one.
fn apply_declared(
    schema: &mut DatasetSchema,
    t: &table::Table,
    path: &std::path::Path,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let declared: DeclaredSchema = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or("invalid")
        )
    })?;
    schema
        .apply(t, &declared)
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

async fn add(args: AddArgs) -> Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let file_name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("data")
        .to_string();
    let client = args.client.client()?;
    let (version, created) = add_bytes(
        &client,
        &args.name,
        &file_name,
        bytes,
        args.target.as_deref(),
        args.schema.as_deref(),
    )
    .await
    .with_context(|| args.file.display().to_string())?;
    println!("{}@{version}", args.name);
    if !created {
        eprintln!(
            "note: this content is already stored as {}@{version}; nothing new was added",
            args.name
        );
    }
    Ok(())
}

/// Stores a data file's bytes as a version of dataset `name` (profiled, schema inferred or
/// declared, uploaded, recorded): its version number, and whether it is new (the same content
/// under the same name is the version it already is).
pub(crate) async fn add_bytes(
    client: &crate::tracking_client::Client,
    name: &str,
    file_name: &str,
    bytes: Vec<u8>,
    target: Option<&str>,
    declared: Option<&std::path::Path>,
) -> Result<(i64, bool)> {
    // Refuse a bad name before reading or uploading anything.
    version::check_name(name).map_err(|e| anyhow!("--name {e}"))?;
    // Read and profile first: a file that cannot be read is refused before anything is stored.
    let (mut prepared, bytes) = {
        let (name, file_name) = (name.to_string(), file_name.to_string());
        tokio::task::spawn_blocking(move || -> Result<_> {
            let p = version::prepare(&name, &file_name, &bytes).map_err(|e| anyhow!("{e}"))?;
            Ok((p, bytes))
        })
        .await??
    };
    if let Some(target) = target {
        if prepared.table.column(target).is_none() {
            bail!("--target `{target}` is not a column of {file_name}");
        }
    }
    if let Some(path) = declared {
        apply_declared(&mut prepared.schema, &prepared.table, path)?;
    }
    let body = json!({
        "name": name, "digest": prepared.digest, "source": prepared.source, "file_name": file_name,
        "rows": prepared.table.rows, "target": target, "schema": prepared.schema,
        "profile": prepared.profile,
    });
    client
        .upload_shown(&prepared.source, bytes, &format!("uploading {file_name}"))
        .await?;
    let answer = client
        .post("/api/v1/datasets", &body, "register dataset version")
        .await?;
    let version = answer
        .pointer("/dataset_version/version")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let created = answer
        .get("created")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((version, created))
}

async fn list(args: ListArgs) -> Result<()> {
    let client = args.client.client()?;
    let query = args.name.map(|n| format!("?name={n}")).unwrap_or_default();
    let answer = client
        .get_json(&format!("/api/v1/datasets{query}"), "list datasets")
        .await?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>10}  {:<18} file",
        "name", "version", "rows", "digest"
    );
    for v in answer["dataset_versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        println!(
            "{:<24} {:>8} {:>10}  {:<18} {}",
            v["name"].as_str().unwrap_or_default(),
            v["version"].as_i64().unwrap_or_default(),
            v["rows"].as_i64().unwrap_or_default(),
            &v["digest"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(16)
                .collect::<String>(),
            v["file_name"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

async fn show(args: ShowArgs) -> Result<()> {
    let (name, version) = match args.dataset.split_once('@') {
        Some((n, v)) => (n.to_string(), v.to_string()),
        None => (args.dataset.clone(), "latest".to_string()),
    };
    let client = args.client.client()?;
    let answer = client
        .get_json(
            &format!("/api/v1/datasets/{name}/versions/{version}"),
            "show dataset",
        )
        .await?;
    let mut shown = answer["dataset_version"].clone();
    shown["runs"] = answer["runs"].clone();
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else {
        print!("{}", describe_version(&shown));
    }
    if answer["rows_stored"] == false {
        eprintln!("note: logged by mlflow.log_input, which records the schema and row count but not the rows; add the file with `mltrail data add` to monitor against it");
    }
    Ok(())
}

/// A dataset version for people: what it is, then a line per column (its type, whether it may
/// be missing or is personal data, and the profile's summary).
fn describe_version(v: &Value) -> String {
    use std::fmt::Write;
    let text = |value: &Value| value.as_str().unwrap_or("-").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}@{}  {} rows  {}  created {} by {}",
        text(&v["name"]),
        v["version"],
        v["rows"],
        text(&v["file_name"]),
        v["created_time"]
            .as_i64()
            .map(mltrail_core::time::rfc3339_seconds)
            .unwrap_or_default(),
        text(&v["created_by"]),
    );
    let _ = writeln!(
        out,
        "digest {}  target {}",
        text(&v["digest"]),
        text(&v["target"])
    );
    let _ = writeln!(
        out,
        "\n{:<24} {:<12} {:<8} {:<4} {:>8} {:>9}  summary",
        "column", "type", "missing?", "pii", "missing", "distinct"
    );
    let profiles = v["profile"]["columns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for column in v["schema"].as_array().cloned().unwrap_or_default() {
        let name = text(&column["name"]);
        let profile = profiles
            .iter()
            .find(|p| p["column"].as_str() == Some(name.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let yes_no = |b: &Value| if b == &Value::Bool(true) { "yes" } else { "no" };
        // For reading, not for copying: four decimals at most (--json has every digit).
        let number = |x: &Value| match x.as_f64() {
            Some(f) => {
                let text = format!("{f:.4}");
                let text = text.trim_end_matches('0').trim_end_matches('.');
                text.to_string()
            }
            None => "-".into(),
        };
        let summary = &profile["summary"];
        let said = match summary["kind"].as_str() {
            Some("numeric") => format!(
                "min {} · mean {} · max {}",
                number(&summary["min"]),
                number(&summary["mean"]),
                number(&summary["max"])
            ),
            Some(_) => summary["top"]
                .as_array()
                .map(|top| {
                    top.iter()
                        .take(3)
                        .map(|t| format!("{} ({})", text(&t["value"]), t["count"]))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .map(|t| format!("top {t}"))
                .unwrap_or_default(),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<8} {:<4} {:>8} {:>9}  {}",
            name,
            text(&column["type"]),
            yes_no(&column["nullable"]),
            yes_no(&column["pii"]),
            profile["missing"]
                .as_i64()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            profile["distinct"]
                .as_i64()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            said
        );
    }
    let runs: Vec<String> = v["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let _ = writeln!(
        out,
        "\nruns that logged it: {}",
        if runs.is_empty() {
            "none".to_string()
        } else {
            runs.join(", ")
        }
    );
    out
}

async fn diff(args: DiffArgs) -> Result<()> {
    let client = args.client.client()?;
    let fetch = |spec: String| {
        let client = client.clone();
        async move {
            let (name, version) = spec.split_once('@').unwrap_or((spec.as_str(), "latest"));
            let answer = client
                .get_json(
                    &format!("/api/v1/datasets/{name}/versions/{version}"),
                    &format!("dataset {spec}"),
                )
                .await?;
            Ok::<Value, anyhow::Error>(answer["dataset_version"].clone())
        }
    };
    let (a, b) = (fetch(args.a.clone()).await?, fetch(args.b.clone()).await?);
    let (sa, sb) = (
        DatasetSchema::from_json(&a["schema"]),
        DatasetSchema::from_json(&b["schema"]),
    );
    println!(
        "{} ({} rows) -> {} ({} rows)",
        args.a, a["rows"], args.b, b["rows"]
    );
    let changes = sa.changes_to(&sb);
    for change in &changes {
        match change {
            SchemaChange::Removed { column } => println!("schema: column `{column}` removed"),
            SchemaChange::Retyped { column, from, to } => println!(
                "schema: column `{column}` changed type {} -> {}",
                from.name(),
                to.name()
            ),
            SchemaChange::Added { column, kind } => {
                println!("schema: column `{column}` added ({})", kind.name())
            }
        }
    }
    if changes.is_empty() {
        println!("schema: unchanged ({} columns)", sa.columns.len());
    }
    let exclude: Vec<String> = [&a, &b]
        .iter()
        .filter_map(|v| v["target"].as_str().map(str::to_string))
        .collect();
    let mut drift_args =
        crate::drift::DriftArgs::between(args.a.into(), args.b.into(), args.client, exclude);
    let downloads = tempfile::tempdir()?;
    crate::drift::resolve_inputs(&mut drift_args, downloads.path()).await?;
    tokio::task::spawn_blocking(move || crate::drift::run(drift_args)).await??;
    Ok(())
}

pub async fn run(command: DataCommand) -> Result<()> {
    let args = match command {
        DataCommand::Diff(a) => return diff(a).await,
        DataCommand::Add(a) => return add(a).await,
        DataCommand::List(a) => return list(a).await,
        DataCommand::Show(a) => return show(a).await,
        DataCommand::Profile(args) => args,
    };
    let t =
        tokio::task::spawn_blocking(move || table::read(&args.file).map_err(|e| anyhow!("{e}")))
            .await??;
    let columns = profile(&t);
    if args.output.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&version::profile_document(t.rows, &columns))?
        );
        return Ok(());
    }
    println!("{} rows", t.rows);
    println!(
        "{:<24} {:>9} {:>9}  summary",
        "column", "missing", "distinct"
    );
    for c in &columns {
        let summary = match &c.summary {
            Some(Summary::Numeric(s)) => {
                let median = s
                    .quantiles
                    .iter()
                    .find(|(q, _)| *q == 0.5)
                    .map_or(f64::NAN, |(_, v)| *v);
                format!(
                    "min {:.4} median {:.4} max {:.4} mean {:.4} std {:.4}",
                    s.min, median, s.max, s.mean, s.std
                )
            }
            Some(Summary::Categorical { top }) => top
                .iter()
                .take(5)
                .map(|(v, n)| format!("{v} ({n})"))
                .collect::<Vec<_>>()
                .join(", "),
            None => "all missing".into(),
        };
        println!(
            "{:<24} {:>9} {:>9}  {}",
            c.name, c.missing, c.distinct, summary
        );
    }
    Ok(())
}
