//! One typed configuration for every mltrail process: the tables of `mltrail.toml` (`[server]`,
//! `[store]`, `[log]`, `[monitor]`, `[serve]`), merged once from, lowest first, the defaults
//! declared here, the file (`--config` or `MLTRAIL_CONFIG`), `MLTRAIL_*` environment variables,
//! and the flags of the command that runs. [`Loaded`] remembers where each value came from, for
//! `mltrail config show`.
//!
//! Each key is declared once, in a `config_table!` below: its type, its default and the text that
//! documents it (in `mltrail config example`, the README and `--help`). Its environment variable
//! is `MLTRAIL_<TABLE>_<KEY>`; keys that existed before the file had tables keep their older
//! variables and `[server]` spellings too (`layers.rs`). A new table (`[auth]` next) is one more
//! `config_table!` and one more field of [`Config`].

mod args;
mod layers;
mod show;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

pub use args::{ConfigArgs, ServerArgs, StoreArgs};
pub use layers::{Env, Layer};
pub use show::{annotate_help, example};

use crate::serve::{CatalogModeArg, DurabilityArg, ExplainArg, ExplainMethodArg, OutputArg};
use crate::tracking_client::DEFAULT_TRACKING_URI;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_STORE: &str = "sqlite:///./mltrail-data/mltrail.db";
pub const DEFAULT_ARTIFACTS: &str = "./mltrail-data/artifacts";
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
    /// JSON lines in the Elastic Common Schema (`@timestamp`, `log.level`, `message`, …).
    Ecs,
}

/// Whether the servers require authentication (`[auth] mode`, `--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthModeArg {
    /// Every request is let in; only allowed on a loopback address (or with
    /// --insecure-no-auth).
    #[default]
    Off,
    /// HTTP Basic (users) or bearer tokens on every request but /health and /version.
    On,
}

impl From<AuthModeArg> for mltrail_server::auth::AuthMode {
    fn from(mode: AuthModeArg) -> Self {
        match mode {
            AuthModeArg::Off => mltrail_server::auth::AuthMode::Off,
            AuthModeArg::On => mltrail_server::auth::AuthMode::On,
        }
    }
}

/// What users who are not admins may do on an experiment or registered model that no grant
/// names (`[auth] default_permission`, MLflow's `default_permission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DefaultPermission {
    /// Nothing: users see only what they are granted (or create).
    NoPermissions,
    /// View everything, change only what they are granted (MLflow's default).
    #[default]
    Read,
    /// As READ (USE matters for MLflow's gateway endpoints, which mltrail does not have).
    Use,
    /// Change everything, delete only what they are granted.
    Edit,
    /// Everything, granting included.
    Manage,
}

impl From<DefaultPermission> for mltrail_core::Permission {
    fn from(p: DefaultPermission) -> Self {
        match p {
            DefaultPermission::NoPermissions => mltrail_core::Permission::NoPermissions,
            DefaultPermission::Read => mltrail_core::Permission::Read,
            DefaultPermission::Use => mltrail_core::Permission::Use,
            DefaultPermission::Edit => mltrail_core::Permission::Edit,
            DefaultPermission::Manage => mltrail_core::Permission::Manage,
        }
    }
}

/// What one table of mltrail.toml holds, for messages, `config show` and the generated example.
#[derive(Debug)]
pub struct TableSchema {
    pub name: &'static str,
    pub doc: &'static str,
    pub keys: &'static [KeySchema],
}

#[derive(Debug)]
pub struct KeySchema {
    pub name: &'static str,
    pub doc: &'static str,
}

/// Declares one table of mltrail.toml: its struct (serde, unknown keys refused), its `Default`
/// (each key's default, written once, here) and its keys' documentation (the doc comments).
macro_rules! config_table {
    (
        $(#[doc = $table_doc:literal])*
        pub struct $name:ident in $table:literal {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident: $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[doc = $table_doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            pub const SCHEMA: TableSchema = TableSchema {
                name: $table,
                doc: concat!($($table_doc, "\n",)*),
                keys: &[$(KeySchema { name: stringify!($field), doc: concat!($($doc, "\n",)*) },)*],
            };
        }
    };
}

config_table! {
    /// The tracking and registry server (`mltrail server`).
    pub struct ServerTable in "server" {
        /// Address to bind. A non-loopback address needs `[auth] mode = "on"` (or
        /// insecure_no_auth).
        pub host: String = DEFAULT_HOST.to_string(),
        /// Port to listen on (0 picks a free port and prints it).
        pub port: u16 = 5000,
        /// Largest accepted artifact upload, in bytes.
        pub max_artifact_bytes: usize = mltrail_server::DEFAULT_MAX_ARTIFACT_BYTES,
        /// Largest accepted request body of the MLflow REST API (JSON), in bytes.
        pub max_json_bytes: usize = mltrail_server::DEFAULT_MAX_JSON_BYTES,
        /// Serve HTTPS with this PEM certificate chain (leaf first); needs tls_key.
        pub tls_cert: Option<PathBuf> = None,
        /// The PEM private key of tls_cert.
        pub tls_key: Option<PathBuf> = None,
    }
}

config_table! {
    /// Authentication of the servers (`mltrail server`, `mltrail serve`): users with passwords
    /// and service tokens (README "Authentication").
    pub struct AuthTable in "auth" {
        /// `on`: every request but /health and /version authenticates (HTTP Basic or a bearer
        /// token); `off`: anyone who reaches the port may do anything, so the server refuses
        /// to bind a non-loopback address unless insecure_no_auth is set.
        pub mode: AuthModeArg = AuthModeArg::Off,
        /// Bind a non-loopback address with auth off (a trusted network only; warned at every
        /// start).
        pub insecure_no_auth: bool = false,
        /// What users who are not admins may do on an experiment or registered model no grant
        /// names: READ (view all, change what they are granted or created), EDIT, MANAGE, or
        /// NO_PERMISSIONS (see only what they are granted or created).
        pub default_permission: DefaultPermission = DefaultPermission::Read,
    }
}

config_table! {
    /// Where the server keeps metadata and artifacts (`mltrail server`, `mltrail audit`).
    pub struct StoreTable in "store" {
        /// Metadata store: sqlite:///relative.db, sqlite:////absolute.db or
        /// postgresql://user@host:port/db.
        pub backend_store_uri: String = DEFAULT_STORE.to_string(),
        /// Artifact store: a local folder or s3://bucket/prefix (AWS_* variables; AWS_ENDPOINT_URL
        /// for S3-compatible servers).
        pub artifacts_destination: String = DEFAULT_ARTIFACTS.to_string(),
    }
}

config_table! {
    /// Logs of every mltrail process (on stderr).
    pub struct LogTable in "log" {
        /// Log output format: text, json or ecs (Elastic Common Schema). The tracking server's
        /// log setting (`mltrail logging set`), once made, overrides it while the process runs.
        pub format: LogFormat = LogFormat::Text,
        /// Which events are logged: a tracing filter such as `debug` or `info,sqlx=warn`.
        pub filter: String = DEFAULT_LOG_FILTER.to_string(),
        /// An OpenTelemetry collector's OTLP/HTTP endpoint (`http://127.0.0.1:4318`): log
        /// events go to `/v1/logs`, a span per scored request to `/v1/traces`, and a serving
        /// replica's `/metrics` counters and gauges to `/v1/metrics` every 5 s. The tracking
        /// server's log setting, once made, overrides it.
        pub otlp_endpoint: Option<String> = None,
    }
}

config_table! {
    /// The server's monitors and the delivery of their alerts (`mltrail server`).
    pub struct MonitorTable in "monitor" {
        /// How often monitors look for windows that are due, in milliseconds (at least 10).
        pub interval_ms: u64 = 10_000,
        /// Reference datasets the monitors keep loaded, the most recently used first (at least
        /// 1). A 1M-row reference takes about 200 MiB; one that was dropped is read again when
        /// a monitor needs it.
        pub reference_cache: usize = 4,
        /// Attempts to deliver an alert to a webhook before giving up (at least 1).
        pub webhook_attempts: u32 = mltrail_server::webhooks::RetryPolicy::default().attempts,
        /// Wait before the second webhook attempt, in milliseconds; it doubles after each failure
        /// (at most a minute).
        pub webhook_backoff_ms: u64 = u64::try_from(
            mltrail_server::webhooks::RetryPolicy::default().first_backoff.as_millis(),
        )
        .unwrap_or(u64::MAX),
    }
}

config_table! {
    /// One deployment served by `mltrail serve`.
    pub struct ServeTable in "serve" {
        /// The model to serve: NAME@ALIAS (followed: a moved alias is swapped in) or NAME/VERSION.
        pub model: Option<String> = None,
        /// Deployment name that logs, metrics and audit events use (default: the model's name).
        pub deployment: Option<String> = None,
        /// The tracking server the model comes from and prediction logs are archived to.
        pub tracking_uri: String = DEFAULT_TRACKING_URI.to_string(),
        /// Address to bind.
        pub host: String = DEFAULT_HOST.to_string(),
        /// Port to listen on (0 picks a free one and prints it).
        pub port: u16 = 5001,
        /// Where prediction-log segments are written (default:
        /// ./mltrail-data/predictions/<deployment>).
        pub log_dir: Option<PathBuf> = None,
        /// `default`: answer once the record is written to the log segment (survives kill -9),
        /// fsync every 5 ms; `fsync`: answer only after a group-committed fsync (survives power
        /// loss).
        pub durability: DurabilityArg = DurabilityArg::Default,
        /// How often to check whether a followed alias moved, in milliseconds (at least 50).
        pub poll_interval_ms: u64 = 5000,
        /// Largest request body accepted, in bytes (larger ones get 413).
        pub max_body_bytes: usize = 16 << 20,
        /// Roll the prediction-log segment after this many bytes (at most 3 GiB).
        pub segment_bytes: u64 = mltrail_serving::predlog::DEFAULT_SEGMENT_BYTES,
        /// Roll the prediction-log segment after this many seconds, at most 86400 (monitors see a
        /// window once its segments are archived, so keep this below the monitors' --delay).
        pub segment_seconds: u64 = mltrail_serving::predlog::DEFAULT_SEGMENT_AGE.as_secs(),
        /// How often sealed segments are converted to Parquet and uploaded to the artifact store
        /// (predictions/<deployment>/<date>/), in milliseconds (at least 100).
        pub archive_interval_ms: u64 = 60_000,
        /// How often the deployment's metrics are sent to the tracking server for the web UI's
        /// live panels, in milliseconds (at least 200; 0 sends none).
        pub report_interval_ms: u64 = 10_000,
        /// Serve HTTPS with this PEM certificate chain (leaf first); needs tls_key.
        pub tls_cert: Option<PathBuf> = None,
        /// The PEM private key of tls_cert.
        pub tls_key: Option<PathBuf> = None,
        /// Prediction ids kept in memory for lookups and feedback (16 bytes each; at least 1).
        /// Beyond it, the ids of the oldest segments not yet archived move to index files
        /// beside them.
        pub index_entries: usize = mltrail_serving::predlog::DEFAULT_INDEX_ENTRIES,
        /// When predictions are explained (SHAP values from the version's training data, with
        /// reason codes): `off`, `on_request` (computed on first read, then kept) or `always`
        /// (into every prediction's record while serving).
        pub explain: ExplainArg = ExplainArg::OnRequest,
        /// How tree ensembles are explained: `interventional` (against a background sample of
        /// the training data) or `path_dependent` (with node covers from all of it).
        pub explain_method: ExplainMethodArg = ExplainMethodArg::Interventional,
        /// Rows of the training data in the explanations' background sample (seeded; all of
        /// them when the dataset has that many or fewer).
        pub explain_background: usize = 100,
        /// What a request is answered with: `predictions` (one per row) or `ranking` (the
        /// rows are one impression's candidate items; the answer is their ids by descending
        /// score, under one prediction id; needs item_column).
        pub output: OutputArg = OutputArg::Predictions,
        /// With output = "ranking": the request column holding each candidate's item id (a
        /// string or an integer; it need not be a model input).
        pub item_column: Option<String> = None,
        /// With output = "ranking": the model output ranked by (default: a classifier's
        /// probabilities, its second output, taking the positive class; else its only output).
        pub score_output: Option<String> = None,
        /// With output = "ranking": the request column naming whom an impression is for (a
        /// user id, the same on every row), logged as its `request_key`; what a ranking
        /// monitor counts repeats by.
        pub key_column: Option<String> = None,
        /// With output = "ranking": the dataset (`mltrail data add … --name NAME`) whose
        /// newest version is the catalog every served item is checked against.
        pub catalog: Option<String> = None,
        /// The catalog's column of item ids (default: item_column).
        pub catalog_item_column: Option<String> = None,
        /// The catalog's column saying whether an item is available (true/false or 1/0;
        /// default: every listed item is).
        pub catalog_available_column: Option<String> = None,
        /// What happens to an item out of the catalog: `flag` (served, named in the record
        /// and the answer) or `filter` (left out of the answer, named in both).
        pub catalog_mode: CatalogModeArg = CatalogModeArg::Flag,
        /// How often the catalog's newest version is looked for, in milliseconds (at least
        /// 100): a new version is in force for the next request, without a restart.
        pub catalog_interval_ms: u64 = 5000,
        /// A routing policy file (TOML: kind, arms, …; docs/experiments.md): set as the
        /// deployment's policy on the tracking server at start. Without it, the policy the
        /// tracking server holds for the deployment (if any) is followed.
        pub policy: Option<PathBuf> = None,
        /// How often the deployment's routing policy is read from the tracking server (a
        /// canary's step and analysis run then too), in milliseconds (at least 100).
        pub policy_interval_ms: u64 = 1000,
        /// How often what the routing policy learned here is reported to the tracking server,
        /// in milliseconds (at least 100): each report is an audit event, and a kill -9 loses
        /// at most this much of the learning (the feedback itself stays in the log).
        pub policy_report_interval_ms: u64 = 10_000,
    }
}

config_table! {
    /// The audit trail's signed checkpoints (`mltrail audit checkpoint`, `audit verify
    /// --checkpoint`).
    pub struct AuditTable in "audit" {
        /// The file of the Ed25519 key checkpoints are signed with, in the signed-note format
        /// (default: beside a SQLite store's file, `<db>.audit-signing-key`; other stores must
        /// name one). Made on first use; keep it out of reach of whoever can write the database.
        pub signing_key_file: Option<PathBuf> = None,
        /// The key `audit verify --checkpoint` checks signatures with (`<name>+<hash>+<key>`,
        /// as `mltrail audit verifier-key` prints it); default: the signing key's own.
        pub verifier_key: Option<String> = None,
        /// The name of this trail in its checkpoints (their first line) and of the key made
        /// for it: give each trail its own, URL-like (`mltrail.example.com/ml-team`), so that
        /// whoever collects checkpoints of several tells them apart. A key keeps the name it
        /// was made with.
        pub origin: String = crate::checkpoint::DEFAULT_ORIGIN.to_string(),
    }
}

config_table! {
    /// Personal data in stored predictions (columns a model version's `mltrail.privacy` tag
    /// marks): sealed per subject, exported and erased with `mltrail privacy`.
    pub struct PrivacyTable in "privacy" {
        /// The file of the master key that wraps every subject's key (64 hex digits). Default:
        /// beside a SQLite store's file, `<db>.privacy-master-key`, made on first start; other
        /// stores must name one (every server of one database names the same key). Without
        /// it, deployments that seal personal data cannot log. Back it up apart from the
        /// database: losing it makes every sealed value unreadable.
        pub master_key_file: Option<PathBuf> = None,
    }
}

config_table! {
    /// Release gates the tracking server sets when it starts (also `mltrail gates set`, and
    /// REST); docs/releases.md.
    pub struct GatesTable in "gates" {
        /// Gates on registered models' aliases, e.g. `[{model = "credit", alias =
        /// "production", require = ["evaluation.roc_auc >= 0.8"], approvals = 1}]`. At start
        /// each one listed replaces the stored gate of its alias when they differ (recorded in
        /// the trail, actor `local:config`); a gate not listed is left as it is. A model
        /// created (or renamed) to a listed name later gets its gates in the same
        /// transaction. In the environment, JSON:
        /// `[{"model": "credit", "alias": "production", "require": […], "approvals": 1}]`.
        pub policies: Vec<GatePolicyEntry> = Vec::new(),
    }
}

/// One gate of `[gates] policies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePolicyEntry {
    pub model: String,
    pub alias: String,
    #[serde(default)]
    pub require: Vec<String>,
    #[serde(default = "one_approval")]
    pub approvals: u32,
}

fn one_approval() -> u32 {
    1
}

/// Everything mltrail.toml can say. Each process reads the tables it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerTable,
    pub auth: AuthTable,
    pub store: StoreTable,
    pub log: LogTable,
    pub monitor: MonitorTable,
    pub serve: ServeTable,
    pub audit: AuditTable,
    pub privacy: PrivacyTable,
    pub gates: GatesTable,
}

impl Config {
    /// Every table, in the order of the fields above (a unit test holds them together).
    pub const TABLES: &'static [TableSchema] = &[
        ServerTable::SCHEMA,
        AuthTable::SCHEMA,
        StoreTable::SCHEMA,
        LogTable::SCHEMA,
        MonitorTable::SCHEMA,
        ServeTable::SCHEMA,
        AuditTable::SCHEMA,
        PrivacyTable::SCHEMA,
        GatesTable::SCHEMA,
    ];

    fn table(name: &str) -> Option<&'static TableSchema> {
        Self::TABLES.iter().find(|t| t.name == name)
    }
}

/// The TLS acceptor a server's `tls_cert` and `tls_key` make; `None` for plain HTTP.
pub fn tls_acceptor(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    table: &str,
) -> anyhow::Result<Option<mltrail_server::tls::TlsAcceptor>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(mltrail_server::tls::acceptor(cert, key)?)),
        _ => anyhow::bail!(
            "[{table}] tls_cert and tls_key go together: give both (--tls-cert and --tls-key) or neither"
        ),
    }
}

impl MonitorTable {
    /// The monitors' tick: never below 10 ms, so a mistyped value cannot spin a core.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.interval_ms.max(10))
    }

    /// How alerts are delivered to webhooks: at least one attempt.
    pub fn retry_policy(&self) -> mltrail_server::webhooks::RetryPolicy {
        mltrail_server::webhooks::RetryPolicy {
            attempts: self.webhook_attempts.max(1),
            first_backoff: std::time::Duration::from_millis(self.webhook_backoff_ms),
            ..Default::default()
        }
    }
}

/// One key of mltrail.toml: `[table] name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub table: &'static str,
    pub name: &'static str,
}

impl Key {
    /// The key `[table] name`, when there is one.
    pub fn find(table: &str, name: &str) -> Option<Key> {
        let schema = Config::table(table)?;
        let key = schema.keys.iter().find(|k| k.name == name)?;
        Some(Key {
            table: schema.name,
            name: key.name,
        })
    }

    /// Every key, table by table, in declaration order.
    pub fn all() -> impl Iterator<Item = Key> {
        Config::TABLES.iter().flat_map(|t| {
            t.keys.iter().map(|k| Key {
                table: t.name,
                name: k.name,
            })
        })
    }

    /// The environment variables that set this key, the first set one winning:
    /// `MLTRAIL_<TABLE>_<KEY>`, then the older names the key had.
    pub fn env_names(self) -> Vec<String> {
        let mut names = vec![format!(
            "MLTRAIL_{}_{}",
            self.table.to_uppercase(),
            self.name.to_uppercase()
        )];
        for (name, key) in layers::LEGACY_ENV {
            if *key == self && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }

    pub fn doc(self) -> &'static str {
        Config::table(self.table)
            .and_then(|t| t.keys.iter().find(|k| k.name == self.name))
            .map(|k| k.doc)
            .unwrap_or_default()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`[{}] {}`", self.table, self.name)
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A config file; `legacy` is the older spelling the file used (`[server] log_format`).
    File {
        path: PathBuf,
        legacy: Option<String>,
    },
    Env(String),
    Flag(String),
}

impl Source {
    fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File { .. } => "file",
            Source::Env(_) => "env",
            Source::Flag(_) => "flag",
        }
    }

    /// The file's path, the variable's or the flag's name.
    fn origin(&self) -> Option<String> {
        match self {
            Source::Default => None,
            Source::File { path, .. } => Some(path.display().to_string()),
            Source::Env(name) | Source::Flag(name) => Some(name.clone()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, legacy: None } => write!(f, "{}", path.display()),
            Source::File {
                path,
                legacy: Some(spelling),
            } => write!(f, "{} (as {spelling}, its older spelling)", path.display()),
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// The merged configuration, with where each value came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    sources: BTreeMap<Key, Source>,
    /// The mltrail.toml that was read, and what named it (`--config` or `MLTRAIL_CONFIG`).
    pub file: Option<(PathBuf, Source)>,
    /// `MLTRAIL_*` variables that set no key (other tools share the prefix, so they are no error).
    pub ignored_env: Vec<String>,
}

impl Loaded {
    /// Defaults, then the config file, then the process's `MLTRAIL_*` variables, then `flags`.
    pub fn load(config: &ConfigArgs, flags: Layer) -> Result<Self> {
        Self::load_with(config.config.as_deref(), &Env::from_process(), flags)
    }

    /// [`Loaded::load`] with the environment given (tests pass their own).
    pub fn load_with(config_flag: Option<&Path>, env: &Env, flags: Layer) -> Result<Self> {
        let file = match config_flag {
            Some(path) => Some((path.to_path_buf(), Source::Flag("--config".into()))),
            None => env
                .text(layers::CONFIG_ENV)?
                .map(|path| (PathBuf::from(path), Source::Env(layers::CONFIG_ENV.into()))),
        };
        let mut layers = Vec::new();
        if let Some((path, _)) = &file {
            layers.push(Layer::file(path)?);
        }
        let (from_env, ignored_env) = Layer::env(env)?;
        layers.push(from_env);
        layers.push(flags);

        let mut merged = serde_json::to_value(Config::default())?;
        let mut sources: BTreeMap<Key, Source> = Key::all().map(|k| (k, Source::Default)).collect();
        for entry in layers.into_iter().flat_map(Layer::into_entries) {
            let table = merged
                .get_mut(entry.key.table)
                .and_then(serde_json::Value::as_object_mut)
                .ok_or_else(|| anyhow!("no table [{}] in the defaults", entry.key.table))?;
            table.insert(entry.key.name.to_string(), entry.value);
            sources.insert(entry.key, entry.source);
        }
        // Every value was checked against its key's type as its layer was read, so this only
        // fails on a bug; the message still says what the merge produced.
        let config = serde_json::from_value(merged).context("the merged configuration")?;
        Ok(Loaded {
            config,
            sources,
            file,
            ignored_env,
        })
    }

    pub fn source(&self, key: Key) -> &Source {
        self.sources.get(&key).unwrap_or(&Source::Default)
    }

    /// Runs a check on the value of `[table] name`; its error names the key and where the value
    /// came from. Checks that need more than the value's type (an empty store URI, a model
    /// reference) go through here.
    pub fn check<T>(
        &self,
        table: &str,
        name: &str,
        check: impl FnOnce(&Config) -> Result<T>,
    ) -> Result<T> {
        let key = Key::find(table, name).ok_or_else(|| anyhow!("no key [{table}] {name}"))?;
        check(&self.config).with_context(|| match self.source(key) {
            Source::Default => key.to_string(),
            source => format!("{key} (from {source})"),
        })
    }

    /// Values for display: each key's value with secrets hidden.
    fn values(&self) -> Result<serde_json::Value> {
        let mut value = serde_json::to_value(&self.config)?;
        redact_strings(&mut value);
        Ok(value)
    }

    /// What `mltrail config show` prints.
    pub fn show_text(&self) -> Result<String> {
        show::text(self)
    }

    /// What `mltrail config show --json` prints.
    pub fn show_json(&self) -> Result<serde_json::Value> {
        show::json(self)
    }
}

fn redact_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = redact(s),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_strings),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_strings),
        _ => {}
    }
}

/// Hides a password in a database URI before it is logged.
pub fn redact(uri: &str) -> String {
    mltrail_core::redact::redact_uri(uri)
}

#[cfg(test)]
mod tests;
