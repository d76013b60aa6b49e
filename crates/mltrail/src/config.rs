//! Settings come from, in order of precedence: command-line flags, `MLTRAIL_*` environment
//! variables, the `--config` TOML file (`[server]` table), then defaults.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;

pub const DEFAULT_STORE: &str = "sqlite:///./mltrail-data/mltrail.db";
pub const DEFAULT_ARTIFACTS: &str = "./mltrail-data/artifacts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to bind. Non-loopback addresses expose the unauthenticated API to the network.
    #[arg(long, env = "MLTRAIL_HOST")]
    pub host: Option<String>,
    /// Port to listen on (0 picks a free port and prints it).
    #[arg(long, env = "MLTRAIL_PORT")]
    pub port: Option<u16>,
    /// Metadata store: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host:port/db.
    #[arg(long, env = "MLTRAIL_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
    /// Artifact store: a local folder or s3://bucket/prefix (AWS_* variables; AWS_ENDPOINT_URL for S3-compatible servers).
    #[arg(long, env = "MLTRAIL_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
    /// Log output format.
    #[arg(long, env = "MLTRAIL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest accepted artifact upload, in bytes.
    #[arg(long, env = "MLTRAIL_MAX_ARTIFACT_BYTES")]
    pub max_artifact_bytes: Option<usize>,
    /// How often monitors look for windows that are due, in milliseconds.
    #[arg(long, env = "MLTRAIL_MONITOR_INTERVAL_MS")]
    pub monitor_interval_ms: Option<u64>,
    /// Attempts to deliver an alert to a webhook before giving up.
    #[arg(long, env = "MLTRAIL_WEBHOOK_ATTEMPTS")]
    pub webhook_attempts: Option<u32>,
    /// Wait before the second webhook attempt, in milliseconds; it doubles after each failure.
    #[arg(long, env = "MLTRAIL_WEBHOOK_BACKOFF_MS")]
    pub webhook_backoff_ms: Option<u64>,
    /// A mltrail.toml whose [server] table sets any of these options.
    #[arg(long, env = "MLTRAIL_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    host: Option<String>,
    port: Option<u16>,
    backend_store_uri: Option<String>,
    artifacts_destination: Option<String>,
    log_format: Option<LogFormat>,
    max_artifact_bytes: Option<usize>,
    monitor_interval_ms: Option<u64>,
    webhook_attempts: Option<u32>,
    webhook_backoff_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
}

fn read_config(path: Option<&std::path::Path>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub backend_store_uri: String,
    pub artifacts_destination: String,
    pub log_format: LogFormat,
    pub max_artifact_bytes: usize,
    pub monitor_interval_ms: u64,
    pub webhook_attempts: u32,
    pub webhook_backoff_ms: u64,
}

impl ServerSettings {
    pub fn resolve(args: ServerArgs) -> Result<Self> {
        let file = read_config(args.config.as_deref())?.server;
        let settings = ServerSettings {
            host: args
                .host
                .or(file.host)
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: args.port.or(file.port).unwrap_or(5000),
            backend_store_uri: args
                .backend_store_uri
                .or(file.backend_store_uri)
                .unwrap_or_else(|| DEFAULT_STORE.into()),
            artifacts_destination: args
                .artifacts_destination
                .or(file.artifacts_destination)
                .unwrap_or_else(|| DEFAULT_ARTIFACTS.into()),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            max_artifact_bytes: args
                .max_artifact_bytes
                .or(file.max_artifact_bytes)
                .unwrap_or(1 << 30),
            monitor_interval_ms: args
                .monitor_interval_ms
                .or(file.monitor_interval_ms)
                .unwrap_or(10_000)
                .max(10),
            webhook_attempts: args
                .webhook_attempts
                .or(file.webhook_attempts)
                .unwrap_or(5)
                .max(1),
            webhook_backoff_ms: args
                .webhook_backoff_ms
                .or(file.webhook_backoff_ms)
                .unwrap_or(1_000),
        };
        if settings.backend_store_uri.trim().is_empty() {
            bail!("--backend-store-uri is empty");
        }
        Ok(settings)
    }
}

/// Where `mltrail audit …` finds the store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The server's metadata store (same forms as `mltrail server --backend-store-uri`).
    #[arg(long, env = "MLTRAIL_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
    /// Read the store URI from this mltrail.toml's [server] table.
    #[arg(long, env = "MLTRAIL_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

impl StoreArgs {
    /// Where `audit verify` finds artifacts: the flag, the config file, or the default folder
    /// when it exists (a store that never received an artifact has none to check).
    pub fn artifacts_destination(&self, flag: Option<String>) -> Result<Option<String>> {
        if flag.is_some() {
            return Ok(flag);
        }
        let file = read_config(self.config.as_deref())?.server;
        Ok(file.artifacts_destination.or_else(|| {
            std::path::Path::new(DEFAULT_ARTIFACTS)
                .exists()
                .then(|| DEFAULT_ARTIFACTS.to_string())
        }))
    }

    pub fn resolve(self) -> Result<String> {
        let file = read_config(self.config.as_deref())?.server;
        Ok(self
            .backend_store_uri
            .or(file.backend_store_uri)
            .unwrap_or_else(|| DEFAULT_STORE.into()))
    }
}

/// Hides a password in a database URI before it is logged.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &uri[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..scheme_end + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgresql://u:secret@h:5432/db"),
            "postgresql://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
