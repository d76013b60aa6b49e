//! `mltrail backup`: a consistent copy of a SQLite store and its artifacts, checked by
//! `audit verify` before the command says it is done. The copy is itself a store: restoring it
//! is pointing `mltrail server` at it (docs/operations.md).

use crate::config::{self, Layer, Loaded};
use anyhow::{bail, Context, Result};
use clap::Args;
use mltrail_artifacts::{ArtifactError, ArtifactStore};
use mltrail_store::{MetaStore, StoreConfig};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BackupArgs {
    /// The folder to write: mltrail.db, artifacts/ and manifest.json. It must not exist yet (or
    /// be empty).
    pub output: PathBuf,
    #[command(flatten)]
    pub store: config::StoreArgs,
    #[command(flatten)]
    pub artifacts: BackupArtifactsArgs,
}

// Sets `[store] artifacts_destination` like the server's flag of the same name.
#[derive(Args, Serialize)]
pub struct BackupArtifactsArgs {
    /// The artifact store to copy (same forms as the server's flag; default: the config
    /// file's, then ./mltrail-data/artifacts when it exists).
    #[arg(long)]
    artifacts_destination: Option<String>,
}

/// What `manifest.json` records about a backup.
#[derive(Serialize)]
struct Manifest {
    created: String,
    mltrail_version: &'static str,
    backend_store_uri: String,
    artifacts_destination: Option<String>,
    audit_events: i64,
    entities_checked: usize,
    artifact_files: usize,
    artifact_bytes: u64,
}

pub async fn run(
    args: BackupArgs,
    artifacts_of: impl Fn(&Loaded) -> Option<String>,
) -> Result<ExitCode> {
    let loaded = Loaded::load(
        &args.store.config,
        args.store
            .layer()?
            .then(Layer::flags("store", &args.artifacts)?),
    )?;
    let destination = artifacts_of(&loaded);
    let master_key = crate::privacy::master_key_path(&loaded.config).filter(|k| k.exists());
    let uri = loaded.config.store.backend_store_uri;
    let out = &args.output;
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose a new folder for the backup",
            out.display()
        );
    }
    // Built beside its final name and renamed when whole: an interrupted backup never looks
    // like one, and a rerun starts over.
    let mut partial = out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let partial = std::fs::canonicalize(&partial)?;
    let made = make(&uri, destination.as_deref(), &partial).await;
    let manifest = match made {
        Ok(Made::Verified(manifest)) => manifest,
        Ok(Made::Broken(b)) => {
            eprintln!(
                "the copy in {} does not verify at event {} ({} {}): {}; if the source passes `mltrail audit verify`, something changed during the backup: run it again",
                partial.display(),
                b.seq,
                b.entity_type,
                b.entity_id,
                b.reason
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let manifest_file = partial.join("manifest.json");
    std::fs::write(&manifest_file, serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::File::open(&manifest_file)?.sync_all()?;
    std::fs::File::open(&partial)?.sync_all()?;
    if out.exists() {
        std::fs::remove_dir(out)?;
    }
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    let out = std::fs::canonicalize(out)?;
    println!(
        "backup written to {}: {} audit events and {} artifact files ({}) verified",
        out.display(),
        manifest.audit_events,
        manifest.artifact_files,
        mltrail_core::units::bytes_text(manifest.artifact_bytes)
    );
    let artifacts_flag = if destination.is_some() {
        format!(
            " --artifacts-destination {}",
            out.join("artifacts").display()
        )
    } else {
        String::new()
    };
    println!(
        "run it: mltrail server --backend-store-uri sqlite:///{}{artifacts_flag}",
        out.join("mltrail.db").display()
    );
    // The master key stays out of the backup on purpose: with it, the backup's sealed personal
    // data could be read by whoever holds the copy.
    if let Some(key) = master_key {
        println!(
            "the privacy master key {} is not in the backup (keep it apart): a server on the copy needs it as [privacy] master_key_file, or beside the copy's database",
            key.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

enum Made {
    Verified(Manifest),
    Broken(mltrail_store::audit::BrokenLink),
}

/// Copies the database, then the artifacts, into `into`, and verifies the copy.
async fn make(uri: &str, destination: Option<&str>, into: &Path) -> Result<Made> {
    let db = into.join("mltrail.db");
    mltrail_store::backup::snapshot(uri, &db)
        .await
        .with_context(|| format!("cannot copy the store {}", config::redact(uri)))?;
    // Artifacts after the database: every artifact the copied trail records was written
    // before the snapshot, so it is there to copy.
    let copy_root = into.join("artifacts");
    let (files, bytes) = match destination {
        Some(source) => {
            copy_artifacts(
                &ArtifactStore::open(source)?,
                &ArtifactStore::open(&copy_root.display().to_string())?,
            )
            .await?
        }
        None => (0, 0),
    };
    let copy = MetaStore::open(&StoreConfig::new(format!("sqlite:///{}", db.display())))
        .await
        .context("cannot open the copied store")?;
    let copied_artifacts = destination
        .map(|_| ArtifactStore::open(&copy_root.display().to_string()))
        .transpose()?;
    let verified = crate::verify_artifacts::verify_store(&copy, copied_artifacts.as_ref()).await;
    copy.close().await;
    let (report, _) = verified?;
    if let Some(broken) = report.broken {
        return Ok(Made::Broken(broken));
    }
    Ok(Made::Verified(Manifest {
        created: mltrail_core::time::rfc3339_seconds(mltrail_core::now_millis()),
        mltrail_version: env!("CARGO_PKG_VERSION"),
        backend_store_uri: config::redact(uri),
        artifacts_destination: destination.map(str::to_string),
        audit_events: report.events,
        entities_checked: report.entities_checked,
        artifact_files: files,
        artifact_bytes: bytes,
    }))
}

/// Copies every file of `source` into `target` (the same names, escaped the same way);
/// returns (files, bytes). A file deleted since the listing is skipped: if the copied trail
/// records it, verification says so.
async fn copy_artifacts(source: &ArtifactStore, target: &ArtifactStore) -> Result<(usize, u64)> {
    let files = source.files().await?;
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let progress = Progress::new(files.len(), total);
    let (mut copied_files, mut copied) = (0usize, 0u64);
    for (i, (path, _)) in files.iter().enumerate() {
        // Whole files in memory, one at a time: uploads are capped (1 GiB by default).
        let bytes = match source.get(path).await {
            Ok(bytes) => bytes,
            Err(ArtifactError::NotFound(_)) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read artifact {path}")),
        };
        copied += bytes.len() as u64;
        target
            .put(path, bytes)
            .await
            .with_context(|| format!("cannot write artifact {path} into the backup"))?;
        copied_files += 1;
        progress.show(i + 1, copied, false);
    }
    progress.show(files.len(), copied, true);
    Ok((copied_files, copied))
}

/// One line on stderr, rewritten at most twice a second, and only where a person watches.
struct Progress {
    files: usize,
    bytes: u64,
    on: bool,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(files: usize, bytes: u64) -> Self {
        Self {
            files,
            bytes,
            on: std::io::stderr().is_terminal(),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    fn show(&self, done: usize, copied: u64, last: bool) {
        if !self.on || (!last && self.last.get().elapsed() < Duration::from_millis(500)) {
            return;
        }
        self.last.set(Instant::now());
        eprint!(
            "\rcopying artifacts: {done}/{} files, {} of {}{}",
            self.files,
            mltrail_core::units::bytes_text(copied),
            mltrail_core::units::bytes_text(self.bytes),
            if last { "\n" } else { "" }
        );
    }
}
