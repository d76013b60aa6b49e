//! Personal data: the tracking server's master key (made on first start beside a SQLite
//! store), the subject keys `mltrail serve` asks the tracking server for, and the `mltrail
//! privacy` commands (a subject's export and erasure, the list of erasures).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use mltrail_core::privacy::{DataKey, MasterKey, SubjectHash};
use mltrail_serving::deployment::BoxFuture;
use mltrail_serving::privacy::{KeyError, SubjectKey, SubjectKeys};
use serde_json::{json, Value};

use crate::args::ClientArgs;
use crate::config::Config;
use crate::tracking_client::Client;

/// Where the master key is: `[privacy] master_key_file`, else beside a SQLite store's file;
/// `None` for another store that names none.
pub fn master_key_path(config: &Config) -> Option<PathBuf> {
    config.privacy.master_key_file.clone().or_else(|| {
        crate::checkpoint::beside_store(&config.store.backend_store_uri, ".privacy-master-key")
    })
}

/// The master key at `path`; `None` when there is no such file.
fn load(path: &Path) -> Result<Option<MasterKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the privacy master key {}", path.display()))
        }
    };
    let key = MasterKey::from_text(&text).with_context(|| {
        format!(
            "{} is not a privacy master key (64 hex digits)",
            path.display()
        )
    })?;
    Ok(Some(key))
}

/// Makes a master key at `path` (readable by its owner only); the one already there if another
/// process made it first.
fn create(path: &Path) -> Result<MasterKey> {
    let text = MasterKey::generate_text()?;
    if crate::checkpoint::write_whole(path, &format!("{text}\n"), true)? {
        tracing::warn!(file = %path.display(), "made the privacy master key: back it up apart from the database (without it no sealed value can be read)");
        return Ok(MasterKey::from_text(&text)?);
    }
    load(path)?.ok_or_else(|| anyhow!("{} vanished while it was made", path.display()))
}

/// The tracking server's master key: read, or made on first use; refused when it is not the
/// key this database's subject keys were made with (a new key would hash everyone anew, so
/// exports would find nothing and erasures destroy nothing). `None` (and a warning) when the
/// store has no default place for it and none is named.
pub async fn server_master_key(
    config: &Config,
    store: &mltrail_store::MetaStore,
) -> Result<Option<Arc<MasterKey>>> {
    let Some(path) = master_key_path(config) else {
        tracing::warn!("no privacy master key: set [privacy] master_key_file (MLTRAIL_PRIVACY_MASTER_KEY_FILE) for deployments that seal personal data to log");
        return Ok(None);
    };
    let stored = mltrail_store::privacy::master_fingerprint(store).await?;
    let key = match (load(&path)?, stored) {
        (Some(key), _) => key,
        (None, None) => create(&path)?,
        (None, Some(fingerprint)) => bail!(
            "the privacy master key file {} is missing, but this database's subject keys were made with a key (fingerprint {fingerprint}): restore that file (backups do not hold it), or set [privacy] master_key_file to it; a new key could open none of them",
            path.display()
        ),
    };
    mltrail_store::privacy::adopt_master(store, &key)
        .await
        .with_context(|| format!("the privacy master key {}", path.display()))?;
    Ok(Some(Arc::new(key)))
}

/// `mltrail serve` asks the tracking server for subject keys with its own credentials (a
/// token with `deployments`), at most `MAX_SUBJECTS` a call (the cache splits longer lists).
impl SubjectKeys for Client {
    fn for_subjects<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<SubjectKey>, KeyError>> {
        Box::pin(async move {
            self.keys_call(json!({ "subjects": subjects }))
                .await?
                .into_iter()
                .map(|(hash, key)| {
                    key.map(|key| SubjectKey::new(hash, key))
                        .ok_or_else(|| KeyError("the tracking server made no key".into()))
                })
                .collect()
        })
    }

    fn for_hashes<'a>(
        &'a self,
        hashes: &'a [SubjectHash],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<DataKey>>>, KeyError>> {
        Box::pin(async move {
            let texts: Vec<String> = hashes.iter().map(SubjectHash::to_hex).collect();
            Ok(self
                .keys_call(json!({ "subject_hashes": texts }))
                .await?
                .into_iter()
                .map(|(_, k)| k)
                .collect())
        })
    }
}

impl Client {
    async fn keys_call(
        &self,
        body: Value,
    ) -> Result<Vec<(SubjectHash, Option<Arc<DataKey>>)>, KeyError> {
        let answer = self
            .post("/api/v1/privacy/subject-keys", &body, "subject keys")
            .await
            .map_err(|e| KeyError(e.into()))?;
        let bad = || KeyError("the tracking server's subject keys are malformed".into());
        answer
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|k| {
                let hash = k
                    .get("subject_hash")
                    .and_then(Value::as_str)
                    .and_then(SubjectHash::parse)
                    .ok_or_else(bad)?;
                let key = match k.get("key") {
                    Some(Value::String(text)) => {
                        Some(Arc::new(DataKey::from_base64(text).map_err(|_| bad())?))
                    }
                    _ => None,
                };
                Ok((hash, key))
            })
            .collect()
    }
}

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// Everything stored about one person (GDPR access): each archived prediction about them
    /// with its inputs opened, outputs, model version and feedback, as JSON. Needs
    /// `predictions:read` (or an admin, or the auditor role).
    Export(ExportArgs),
    /// Destroy one person's key (GDPR erasure): every stored value sealed with it, in log
    /// segments, Parquet files and their backups, becomes unreadable without rewriting any
    /// file. Recorded in the audit trail (who, when, why; the subject only as a keyed hash).
    /// Admins only.
    Erase(EraseArgs),
    /// The erasures done so far (subject hash, reason, time), oldest first.
    Erasures {
        #[command(flatten)]
        output: crate::args::JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub struct ExportArgs {
    /// The person's id, as the deployment's subject column holds it.
    #[arg(long)]
    subject: String,
    /// Write the JSON here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["subject", "subject_hash"])))]
pub struct EraseArgs {
    /// The person's id, as the deployment's subject column holds it.
    #[arg(long)]
    subject: Option<String>,
    /// The person's keyed hash, as `mltrail privacy erasures` lists it: to repeat an erasure
    /// after restoring a database backup taken before it.
    #[arg(long)]
    subject_hash: Option<String>,
    /// Why (the request or rule it answers): kept in the trail and shown to whoever reads it,
    /// so name the request, not the person.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(command: PrivacyCommand) -> Result<()> {
    match command {
        PrivacyCommand::Export(args) => {
            let client = args.client.client()?;
            let answer = client
                .post(
                    "/api/v1/privacy/export",
                    &json!({"subject": args.subject}),
                    "export a subject's data",
                )
                .await?;
            let text = serde_json::to_string_pretty(&answer)?;
            match &args.output {
                Some(path) => {
                    std::fs::write(path, format!("{text}\n"))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    let n = answer["predictions"].as_array().map_or(0, Vec::len);
                    eprintln!("{n} predictions written to {}", path.display());
                }
                None => println!("{text}"),
            }
        }
        PrivacyCommand::Erase(args) => {
            if args.reason.trim().is_empty() {
                bail!("--reason is empty: say which request or rule the erasure answers");
            }
            let client = args.client.client()?;
            let answer = client
                .post(
                    "/api/v1/privacy/erase",
                    &match (&args.subject, &args.subject_hash) {
                        (Some(subject), _) => json!({"subject": subject, "reason": args.reason}),
                        (None, hash) => json!({"subject_hash": hash, "reason": args.reason}),
                    },
                    "erase a subject",
                )
                .await?;
            let erasure = &answer["erasure"];
            let destroyed = erasure["keys_destroyed"].as_i64().unwrap_or(0);
            println!(
                "subject {} erased: {}; serving processes stop using the key within {} s",
                erasure["subject_hash"].as_str().unwrap_or("?"),
                if destroyed > 0 {
                    "its key is destroyed, every value sealed with it is unreadable"
                } else {
                    "nothing was stored about them (the request is recorded)"
                },
                answer["serving_caches_seconds"].as_u64().unwrap_or(30)
            );
        }
        PrivacyCommand::Erasures { output, client } => {
            let answer = client
                .client()?
                .get_json("/api/v1/privacy/erasures", "the erasures")
                .await?;
            if output.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            let list = answer["erasures"]
                .as_array()
                .ok_or_else(|| anyhow!("the server answered no list of erasures"))?;
            println!("{:<24} {:<64} REASON", "ERASED", "SUBJECT HASH");
            for e in list {
                println!(
                    "{:<24} {:<64} {}",
                    e["erased_time"]
                        .as_i64()
                        .map(mltrail_core::time::rfc3339_seconds)
                        .unwrap_or_default(),
                    e["subject_hash"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
