//! `mltrail backup`: a consistent copy of a SQLite store and its artifacts, checked by
//! `audit verify` before the command says it is done. The copy is itself a store: restoring it
//! is pointing `mltrail server` at it (docs/operations.md).

use crate::config::{self, Layer, Loaded};
use anyhow::{bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use mltrail_artifacts::ArtifactStore;
use mltrail_store::{MetaStore, StoreConfig};
use serde::Serialize;
use std::io::{IsTerminal, Write};
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
    let uri = loaded.config.store.backend_store_uri;
    let out = &args.output;
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose a new folder for the backup",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let out = std::fs::canonicalize(out)?;

    let store = MetaStore::open(&StoreConfig::new(&uri))
        .await
        .with_context(|| format!("cannot open backend store {}", config::redact(&uri)))?;
    let db = out.join("mltrail.db");
    let snapshot = mltrail_store::backup::snapshot(&store, &db).await;
    store.close().await;
    snapshot?;
    // Artifacts after the database: every artifact the copied trail records was written
    // before the snapshot, so it is there to copy.
    let (files, bytes) = match &destination {
        Some(source) => {
            copy_artifacts(&ArtifactStore::open(source)?, &out.join("artifacts")).await?
        }
        None => (0, 0),
    };

    let copy = MetaStore::open(&StoreConfig::new(format!("sqlite:///{}", db.display())))
        .await
        .context("cannot open the copied store")?;
    let mut report = mltrail_store::audit::verify(&copy).await?;
    if report.broken.is_none() && destination.is_some() {
        let artifacts = ArtifactStore::open(&out.join("artifacts").display().to_string())?;
        report.broken = crate::verify_artifacts::verify(&copy, &artifacts)
            .await?
            .broken;
    }
    copy.close().await;
    if let Some(b) = report.broken {
        eprintln!(
            "the copy in {} does not verify: event {} ({} {}): {}; check the source with `mltrail audit verify`",
            out.display(),
            b.seq,
            b.entity_type,
            b.entity_id,
            b.reason
        );
        return Ok(ExitCode::from(1));
    }
    let manifest = Manifest {
        created: mltrail_core::time::rfc3339_seconds(mltrail_core::now_millis()),
        mltrail_version: env!("CARGO_PKG_VERSION"),
        backend_store_uri: config::redact(&uri),
        artifacts_destination: destination.clone(),
        audit_events: report.events,
        entities_checked: report.entities_checked,
        artifact_files: files,
        artifact_bytes: bytes,
    };
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    println!(
        "backup written to {}: {} audit events and {} artifacts ({}) verified",
        out.display(),
        report.events,
        files,
        human_bytes(bytes)
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
        db.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies every file of `source` under `to`, streaming; returns (files, bytes).
async fn copy_artifacts(source: &ArtifactStore, to: &Path) -> Result<(usize, u64)> {
    let files = source.files().await?;
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let progress = Progress::new(files.len(), total);
    let mut copied = 0u64;
    for (i, (path, _)) in files.iter().enumerate() {
        let target = to.join(path.as_str());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        let (_, mut stream) = source.get_stream(path).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            file.write_all(&chunk)?;
            copied += chunk.len() as u64;
        }
        file.sync_all()?;
        progress.show(i + 1, copied, false);
    }
    progress.show(files.len(), copied, true);
    Ok((files.len(), copied))
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
            human_bytes(copied),
            human_bytes(self.bytes),
            if last { "\n" } else { "" }
        );
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
