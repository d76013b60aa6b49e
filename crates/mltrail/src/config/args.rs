//! The flags of `mltrail server` and of the commands that open the store (`mltrail audit`). They
//! are the configuration's top layer: each one sets the key of the same name ([`Layer::flags`]),
//! and `--help` shows the key's default and environment variables beside it.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{Layer, LogFormat};

/// The config file to read.
#[derive(Debug, Default, Args)]
pub struct ConfigArgs {
    /// A mltrail.toml with settings for every mltrail process (`mltrail config example` prints
    /// one with every key) [env: MLTRAIL_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `mltrail server`'s flags. They keep the names of the keys of `[server]` from before
/// mltrail.toml had other tables (`--backend-store-uri` sets `[store] backend_store_uri`).
#[derive(Debug, Args, Serialize)]
pub struct ServerArgs {
    /// Address to bind. A non-loopback address needs --auth on (or --insecure-no-auth).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on (0 picks a free port and prints it).
    #[arg(long)]
    pub port: Option<u16>,
    /// on: every request but /health and /version authenticates with HTTP Basic (a user) or a
    /// bearer token; the first start creates the admin from MLTRAIL_ADMIN_USERNAME (default
    /// admin) and MLTRAIL_ADMIN_PASSWORD. off: anyone who reaches the port may do anything.
    #[arg(long, value_enum)]
    pub auth: Option<super::AuthModeArg>,
    /// Allow auth off on a non-loopback address (a trusted network only; warned at every start).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_no_auth: bool,
    /// With --auth on: what users who are not admins may do on an experiment or registered
    /// model no grant names (MLflow's default_permission; READ unless set).
    #[arg(long, value_enum)]
    pub default_permission: Option<super::DefaultPermission>,
    /// Metadata store: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host:port/db.
    #[arg(long)]
    pub backend_store_uri: Option<String>,
    /// Artifact store: a local folder or s3://bucket/prefix (AWS_* variables; AWS_ENDPOINT_URL for S3-compatible servers).
    #[arg(long)]
    pub artifacts_destination: Option<String>,
    /// Log output format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Largest accepted artifact upload, in bytes.
    #[arg(long)]
    pub max_artifact_bytes: Option<usize>,
    /// How often monitors look for windows that are due, in milliseconds.
    #[arg(long)]
    pub monitor_interval_ms: Option<u64>,
    /// Attempts to deliver an alert to a webhook before giving up.
    #[arg(long)]
    pub webhook_attempts: Option<u32>,
    /// Wait before the second webhook attempt, in milliseconds; it doubles after each failure.
    #[arg(long)]
    pub webhook_backoff_ms: Option<u64>,
    #[command(flatten)]
    #[serde(skip)]
    pub config: ConfigArgs,
}

impl ServerArgs {
    pub fn layer(&self) -> anyhow::Result<Layer> {
        Layer::flags("server", self)
    }
}

/// Where `mltrail audit …` finds the store.
#[derive(Debug, Args, Serialize)]
pub struct StoreArgs {
    /// The server's metadata store (same forms as `mltrail server --backend-store-uri`).
    #[arg(long)]
    pub backend_store_uri: Option<String>,
    #[command(flatten)]
    #[serde(skip)]
    pub config: ConfigArgs,
}

impl StoreArgs {
    pub fn layer(&self) -> anyhow::Result<Layer> {
        Layer::flags("store", self)
    }
}
