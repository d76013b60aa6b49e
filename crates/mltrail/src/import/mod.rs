//! `mltrail import mlflow SOURCE`: an MLflow server's history (its database or file store, read
//! directly) brought into mltrail's store with the same ids, and the artifacts under the
//! source's artifacts root copied into mltrail's artifact store. The order is the order of
//! references (experiments, logged models, runs, registered models, then artifact bytes), so
//! an import cut off anywhere leaves nothing dangling and the next one carries on: whatever
//! is here already is skipped, and a second import of an unchanged source writes nothing.

mod relocate;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mltrail_artifacts::ArtifactStore;
use mltrail_core::ArtifactPath;
use mltrail_store::import::mlflow_db::{MlflowDb, RUNS_PER_READ};
use mltrail_store::import::mlflow_files::MlflowFiles;
use mltrail_store::import::{self as store_import, sessions, Experiment, Written};
use mltrail_store::{MetaStore, StoreConfig};
use serde::Serialize;

use crate::config::{self, Layer, Loaded};
use relocate::{Relocation, Root};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Bring an MLflow server's history in: experiments, runs (params, full metric histories,
    /// tags, dataset inputs, outputs), logged models, registered models with their versions,
    /// stages, aliases and tags, and the artifacts. Ids are kept, so `runs:/<id>/…`,
    /// `models:/name/3` and notebooks keep working once the client points at mltrail.
    ///
    /// SOURCE is read, never written: an MLflow database (`sqlite:///mlflow.db`,
    /// `postgresql://user@host/mlflow`; MLflow 2.x and 3.x) or a file store folder (`./mlruns`).
    /// What is here already is skipped, not updated: an interrupted import resumes and a
    /// repeated one changes nothing, so stop the MLflow server before the import that counts
    /// (a run still running there is brought over as it was then). Each imported entity gets
    /// an audit event saying where it came from.
    Mlflow(MlflowArgs),
}

#[derive(Args)]
pub struct MlflowArgs {
    /// The MLflow store: a database URI or a file store folder.
    source: String,
    /// Where the source's artifacts are: the MLflow server's --artifacts-destination
    /// (`./mlartifacts`, `s3://bucket/prefix`). Default: a file store's own folder; for a
    /// database, `mlartifacts` beside a SQLite file when it exists. Locations outside it are
    /// kept as they are and not copied.
    #[arg(long)]
    artifacts_root: Option<String>,
    /// Only these experiments (ids or names, comma-separated); default: all. Registered
    /// models are always imported whole.
    #[arg(long, value_delimiter = ',')]
    experiments: Vec<String>,
    /// Import the metadata only; copy no artifact bytes.
    #[arg(long)]
    no_artifacts: bool,
    #[command(flatten)]
    store: config::StoreArgs,
    #[command(flatten)]
    target: TargetArtifactsArgs,
    #[command(flatten)]
    output: crate::args::JsonArgs,
}

// Sets `[store] artifacts_destination` like the server's flag of the same name.
#[derive(Args, Serialize)]
struct TargetArtifactsArgs {
    /// mltrail's artifact store, where the artifacts are copied (same forms as the server's
    /// flag; default: the config file's, then ./mltrail-data/artifacts).
    #[arg(long)]
    artifacts_destination: Option<String>,
}

/// What one import did, per kind of entity.
#[derive(Debug, Default, Serialize)]
struct Summary {
    source: String,
    experiments: Counts,
    runs: Counts,
    logged_models: Counts,
    model_versions: Counts,
    artifacts: Counts,
    artifact_bytes_copied: u64,
    /// Locations outside the artifacts root, kept as they were.
    locations_not_moved: usize,
    /// Files under the root whose names are not artifact paths (warned one by one).
    artifacts_not_copied: usize,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
struct Counts {
    imported: usize,
    already_here: usize,
}

impl From<Written> for Counts {
    fn from(w: Written) -> Self {
        Counts {
            imported: w.imported,
            already_here: w.present,
        }
    }
}

impl std::ops::AddAssign<Written> for Counts {
    fn add_assign(&mut self, w: Written) {
        self.imported += w.imported;
        self.already_here += w.present;
    }
}

/// The source, whichever form it has.
enum Source {
    Db(MlflowDb),
    Files(MlflowFiles),
}

macro_rules! both {
    ($source:expr, $method:ident ( $($arg:expr),* )) => {
        match $source {
            Source::Db(db) => db.$method($($arg),*).await,
            Source::Files(files) => files.$method($($arg),*).await,
        }
    };
}

impl Source {
    /// The source and how the audit trail names it (credentials masked, paths absolute).
    async fn open(given: &str) -> Result<(Source, String)> {
        let is_database = given.contains("://") && !given.starts_with("file://");
        if is_database {
            let origin = match given.strip_prefix("sqlite:///") {
                Some(path) => format!("sqlite:///{}", absolute(path).display()),
                None => config::redact(given),
            };
            let db = MlflowDb::open(given).await.with_context(|| {
                format!("cannot read the MLflow database {}", config::redact(given))
            })?;
            return Ok((Source::Db(db), format!("mlflow {origin}")));
        }
        let folder = absolute(given.strip_prefix("file://").unwrap_or(given));
        if !folder.is_dir() {
            bail!(
                "{given} is neither a database URI (sqlite:///mlflow.db, postgresql://…) nor a folder: give the MLflow server's --backend-store-uri"
            );
        }
        let files = MlflowFiles::open(&folder)?;
        Ok((Source::Files(files), format!("mlflow {}", folder.display())))
    }

    /// The artifacts root when none is given.
    fn default_root(&self, given: &str) -> Option<Root> {
        match self {
            Source::Files(_) => Some(Root::parse(given.strip_prefix("file://").unwrap_or(given))),
            Source::Db(_) => {
                let file = given.strip_prefix("sqlite:///")?;
                let beside = absolute(file).parent()?.join("mlartifacts");
                beside
                    .is_dir()
                    .then(|| Root::parse(&beside.display().to_string()))
            }
        }
    }
}

fn absolute(path: &str) -> std::path::PathBuf {
    std::path::absolute(Path::new(path)).unwrap_or_else(|_| Path::new(path).to_path_buf())
}

pub async fn run(command: ImportCommand) -> Result<()> {
    let ImportCommand::Mlflow(args) = command;
    let loaded = Loaded::load(
        &args.store.config,
        args.store
            .layer()?
            .then(Layer::flags("store", &args.target)?),
    )?;
    let (source, origin) = Source::open(&args.source).await?;
    let relocation = Relocation::new(match &args.artifacts_root {
        Some(root) => Some(Root::parse(root)),
        None => source.default_root(&args.source),
    });
    let uri = loaded.config.store.backend_store_uri.clone();
    let store = MetaStore::open(&StoreConfig::new(&uri))
        .await
        .with_context(|| format!("cannot open backend store {}", config::redact(&uri)))?;
    let destination = loaded.config.store.artifacts_destination.clone();
    let actor = crate::access::local_actor();
    // The import is a record of its own (the Server page lists it), finished with what it did
    // or the error that stopped it.
    let session = sessions::begin(&store, &actor, &origin).await;
    let imported = match &session {
        Ok(_) => import(&store, &source, &origin, &relocation, &args, &destination).await,
        Err(e) => Err(anyhow::anyhow!("cannot record the import: {e}")),
    };
    if let Ok(id) = &session {
        let outcome = match &imported {
            Ok(summary) => serde_json::to_value(summary)?,
            Err(e) => serde_json::json!({"error": format!("{e:#}")}),
        };
        if let Err(e) = sessions::finish(&store, &actor, id, &outcome).await {
            tracing::warn!(error = %e, "the import's end was not recorded");
        }
    }
    store.close().await;
    if let Source::Db(db) = &source {
        db.close().await;
    }
    let summary = imported?;
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

async fn import(
    store: &MetaStore,
    source: &Source,
    origin: &str,
    relocation: &Relocation,
    args: &MlflowArgs,
    destination: &str,
) -> Result<Summary> {
    let actor = crate::access::local_actor();
    let mut summary = Summary {
        source: origin.to_string(),
        ..Summary::default()
    };
    // A location under the artifacts root goes through the proxy, and the files of those
    // `copied` (runs', logged models', versions': an experiment's folder also holds a file
    // store's metadata, and traces) are copied; one outside it stays and is counted.
    let mut not_moved = 0;
    let mut prefixes: Vec<String> = Vec::new();
    let mut relocate = |location: &mut String, copied: bool| match relocation.relocate(location) {
        Some(path) if copied => prefixes.push(path),
        Some(_) => {}
        None if location.is_empty() => {}
        None => not_moved += 1,
    };

    let all: Vec<Experiment> = both!(source, experiments(&[]))?;
    let chosen = choose(&all, &args.experiments)?;
    let mut experiments: Vec<Experiment> =
        all.into_iter().filter(|e| chosen.contains(&e.id)).collect();
    for e in &mut experiments {
        relocate(&mut e.artifact_location, false);
    }
    let ids: Vec<i64> = experiments.iter().map(|e| e.id).collect();
    summary.experiments = store_import::import_experiments(store, &actor, origin, experiments)
        .await?
        .into();

    let mut models = both!(source, logged_models(&ids))?;
    for m in &mut models {
        relocate(&mut m.artifact_uri, true);
    }
    summary.logged_models = store_import::import_logged_models(store, &actor, origin, models)
        .await?
        .into();

    let run_ids = both!(source, run_ids(&ids))?;
    let here = store_import::present_runs(store, &run_ids).await?;
    summary.runs.already_here = here.len();
    let missing: Vec<String> = run_ids
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !here.contains(id))
        .collect();
    let bar = crate::progress::items(missing.len() as u64, "importing runs");
    let mut chunks = missing.chunks(RUNS_PER_READ);
    let mut next = match chunks.next() {
        Some(chunk) => Some(both!(source, runs(chunk))?),
        None => None,
    };
    // The next runs are read from the source while the writer commits these.
    while let Some(mut runs) = next.take() {
        for run in &mut runs {
            relocate(&mut run.artifact_uri, true);
        }
        let count = runs.len() as u64;
        let read = async {
            match chunks.next() {
                Some(chunk) => both!(source, runs(chunk)).map(Some),
                None => Ok(None),
            }
        };
        let (written, read) =
            tokio::join!(store_import::import_runs(store, &actor, origin, runs), read);
        summary.runs += written?;
        next = read?;
        bar.inc(count);
    }
    bar.finish_and_clear();

    for mut model in both!(source, registered_models())? {
        for v in model.versions.iter_mut() {
            if !v.is_deleted() && !relocate::names_an_entity(&v.source) {
                relocate(&mut v.source, true);
            }
        }
        summary.model_versions +=
            store_import::import_registered_model(store, &actor, origin, model).await?;
    }

    summary.locations_not_moved = not_moved;
    if !args.no_artifacts {
        if let Some(root) = relocation.root() {
            if let Root::Local(path) = root {
                if !path.is_dir() {
                    bail!(
                        "the artifacts root {} is not a folder: give the MLflow server's --artifacts-destination with --artifacts-root, or --no-artifacts",
                        path.display()
                    );
                }
            }
            copy_artifacts(
                store,
                &actor,
                origin,
                root,
                destination,
                prefixes,
                &mut summary,
            )
            .await?;
        }
    }
    Ok(summary)
}

/// The ids of the experiments `wanted` names (ids or names); all when it is empty.
fn choose(all: &[Experiment], wanted: &[String]) -> Result<HashSet<i64>> {
    if wanted.is_empty() {
        return Ok(all.iter().map(|e| e.id).collect());
    }
    wanted
        .iter()
        .map(|w| {
            all.iter()
                .find(|e| e.name == *w || e.id.to_string() == *w)
                .map(|e| e.id)
                .with_context(|| {
                    format!("the source has no experiment named or numbered `{w}`: list them with the mlflow client, or leave --experiments out to import all")
                })
        })
        .collect()
}

/// Copies the files under `prefixes` of the source's artifacts root that mltrail's store does
/// not hold yet (same path, same size, and an audit event), each recorded as
/// `artifact.import` with its BLAKE3 digest so `audit verify --artifacts-destination`
/// re-hashes it like any upload.
async fn copy_artifacts(
    store: &MetaStore,
    actor: &str,
    origin: &str,
    root: &Root,
    destination: &str,
    prefixes: Vec<String>,
    summary: &mut Summary,
) -> Result<()> {
    if prefixes.is_empty() {
        return Ok(());
    }
    let prefixes: HashSet<String> = prefixes.into_iter().collect();
    let from = ArtifactStore::open(&root.uri())
        .with_context(|| format!("cannot open the source's artifacts at {}", root.uri()))?;
    let to = ArtifactStore::open(destination)
        .with_context(|| format!("cannot open mltrail's artifact store {destination}"))?;
    let (listed, refused) = from.files_and_refused().await?;
    for reason in &refused {
        tracing::warn!(%reason, "a source artifact was not copied");
    }
    summary.artifacts_not_copied = refused.len();
    let wanted: Vec<(ArtifactPath, u64)> = listed
        .into_iter()
        .filter(|(path, _)| under_any(path.as_str(), &prefixes))
        .collect();
    let held: HashMap<String, u64> = to
        .files()
        .await?
        .into_iter()
        .map(|(path, size)| (path.to_string(), size))
        .collect();
    let recorded: HashSet<String> = mltrail_store::audit::list_events(
        store,
        Some(mltrail_store::audit::ARTIFACT_KIND),
        None,
        i64::MAX,
    )
    .await?
    .into_iter()
    .map(|e| e.event.entity_id)
    .collect();
    let total: u64 = wanted.iter().map(|(_, size)| size).sum();
    let bar = crate::progress::bytes(total, "copying artifacts");
    for (path, size) in wanted {
        let key = path.to_string();
        if held.get(&key) == Some(&size) && recorded.contains(&key) {
            summary.artifacts.already_here += 1;
            bar.inc(size);
            continue;
        }
        let (_, chunks) = from
            .get_stream(&path)
            .await
            .with_context(|| format!("cannot read the source artifact {key}"))?;
        mltrail_store::artifacts::put_stream_as(
            store,
            &to,
            actor,
            &format!("artifact.import from {origin}"),
            &path,
            chunks,
        )
        .await
        .with_context(|| format!("cannot copy the artifact {key}"))?;
        summary.artifacts.imported += 1;
        summary.artifact_bytes_copied += size;
        bar.inc(size);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Whether `path` is one of `prefixes` or inside one: its ancestors are looked up, so a
/// million files against a hundred thousand runs' folders stay a few lookups each.
fn under_any(path: &str, prefixes: &HashSet<String>) -> bool {
    if prefixes.contains("") || prefixes.contains(path) {
        return true;
    }
    path.match_indices('/')
        .any(|(end, _)| prefixes.contains(&path[..end]))
}

fn print_summary(s: &Summary) {
    println!("imported from {}", s.source);
    let line = |what: &str, c: &Counts| {
        println!(
            "  {what:<16} {:>9} imported, {} already here",
            c.imported, c.already_here
        );
    };
    line("experiments", &s.experiments);
    line("runs", &s.runs);
    line("logged models", &s.logged_models);
    line("model versions", &s.model_versions);
    line("artifact files", &s.artifacts);
    if s.artifact_bytes_copied > 0 {
        println!("  {:<16} {:>9} bytes copied", "", s.artifact_bytes_copied);
    }
    if s.artifacts_not_copied > 0 {
        println!(
            "  {} files under the artifacts root have names that are not artifact paths and were not copied (each named in a warning above)",
            s.artifacts_not_copied
        );
    }
    if s.locations_not_moved > 0 {
        println!(
            "  {} artifact locations are outside the artifacts root and were kept as they were (their files not copied): pass --artifacts-root",
            s.locations_not_moved
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_under_their_runs_folders_only() {
        let prefixes: HashSet<String> = ["1/abc/artifacts", "1/models/m-1/artifacts"]
            .into_iter()
            .map(String::from)
            .collect();
        assert!(under_any("1/abc/artifacts/model/MLmodel", &prefixes));
        assert!(under_any("1/abc/artifacts", &prefixes));
        assert!(under_any("1/models/m-1/artifacts/x", &prefixes));
        assert!(!under_any("1/abc/meta.yaml", &prefixes));
        assert!(!under_any("1/abcd/artifacts/x", &prefixes));
        assert!(!under_any("1/meta.yaml", &prefixes));
        let everything: HashSet<String> = [String::new()].into_iter().collect();
        assert!(under_any("anything/at/all", &everything));
    }
}
