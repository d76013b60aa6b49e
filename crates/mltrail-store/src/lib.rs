//! mltrail-store owns the metadata: one SQL schema, migrated the same way on SQLite (the embedded
//! default) and PostgreSQL, reached through sqlx's runtime-generic `Any` driver, with MLflow's
//! rules for each entity and the audit trail's record of every change.
//!
//! Reads go through a connection pool. Every write goes through one writer (`writer/`, on a
//! thread of its own) that group-commits concurrent requests into one transaction and one fsync,
//! and appends the audit event for each change inside that same transaction, so "what changed"
//! and "what was recorded about it" can never disagree. Artifact bytes are written through the
//! store too ([`artifacts`]), with their event. This crate must not know about HTTP.
//!
//! Its modules are layered; each imports only from the layers below it (domain modules take the
//! [`MetaStore`] handle the wiring defines):
//! - infrastructure, which knows no entity: `writer/` (group commit, general jobs, the
//!   `Coalesced` trait for writes applied a group at a time, the audit chain's
//!   head and rows, the native SQLite connection, checkpoints), `sql.rs`, `search.rs` (MLflow
//!   filters compiled to SQL), [`records`] (the wire shapes), `error.rs`;
//! - the audit trail, which knows no entity either: `audited.rs` (the `Audited`
//!   trait an entity implements, recording an event, `verify` over a list of kinds, the event log);
//! - the domain, one module per entity family, each owning its SQL, its MLflow rules and the
//!   state its events digest: [`names`] (key rules they share), [`datasets`], [`runs`],
//!   [`metrics`], [`experiments`], [`logged_models`], [`registry`], [`monitors`],
//!   [`artifacts`], [`deployments`], and `hot_path.rs`, which hands the writer's coalesced groups
//!   to `runs` and `metrics`. Within the domain there is no circle either: `runs` uses
//!   `datasets`; `metrics` and `experiments` use `runs`; `registry` uses `runs`, `datasets`,
//!   `logged_models` and `gates` (which uses none);
//! - the wiring: this file ([`MetaStore`], opening, the list of audited kinds behind [`audit`])
//!   and `schema.rs` (the migrations of every table).

pub mod access;
pub mod artifacts;
mod audited;
pub mod backup;
pub mod business;
pub mod datasets;
pub mod deployments;
mod error;
pub mod evaluations;
pub mod experiments;
pub mod gates;
mod hot_path;
pub mod import;
pub mod logged_models;
pub mod metrics;
pub mod monitors;
pub mod names;
pub mod privacy;
pub mod records;
pub mod registry;
pub mod routing;
pub mod runs;
mod schema;
mod search;
pub mod segments;
pub mod settings;
mod sql;
mod writer;

pub use error::{
    AlreadyExists, Conflict, DatabaseError, Invalid, NotFound, QueryError, StoreError,
    StoreErrorKind,
};
pub use records::*;
pub use sql::Backend;
pub use writer::{AuditCtx, Tx};

/// The audit trail: `verify` and the event log. Events are appended by the writer inside the
/// transaction of the change they record; each domain module says what state its entities'
/// events digest.
pub mod audit {
    use crate::audited::{AuditedKind, Kind};
    pub use crate::audited::{BrokenLink, EventQuery, LoggedEvent, VerifyReport};
    use crate::{datasets, experiments, logged_models, metrics, monitors, registry, runs};
    use crate::{MetaStore, StoreError};

    /// Events whose state lives outside the database carry this kind; `verify` checks their
    /// chain links but not their state.
    pub use crate::artifacts::ARTIFACT_KIND;

    /// Every entity kind with state in the database, in the order `verify` looks for rows
    /// that have no event.
    const KINDS: [&dyn AuditedKind; 20] = [
        &Kind::<experiments::ExperimentRef>::new(),
        &Kind::<runs::RunRef>::new(),
        &Kind::<metrics::MetricBatch>::new(),
        &Kind::<runs::ParamBatch>::new(),
        &Kind::<logged_models::LoggedModelRef>::new(),
        &Kind::<registry::RegisteredModelRef>::new(),
        &Kind::<registry::ModelVersionRef>::new(),
        &Kind::<crate::gates::ReportRef>::new(),
        &Kind::<datasets::VersionRef>::new(),
        &Kind::<monitors::MonitorRef>::new(),
        &Kind::<monitors::MonitorResultRef>::new(),
        &Kind::<monitors::AlertRef>::new(),
        &Kind::<crate::access::users::UserRef>::new(),
        &Kind::<crate::access::tokens::TokenRef>::new(),
        &Kind::<crate::access::permissions::RoleRef>::new(),
        &Kind::<crate::privacy::ErasureRef>::new(),
        &Kind::<crate::business::PointBatch>::new(),
        &Kind::<crate::business::AnnotationRef>::new(),
        &Kind::<crate::settings::SettingRef>::new(),
        &Kind::<crate::import::sessions::ImportRef>::new(),
    ];

    /// Recomputes the chain from the genesis hash, then checks that every entity's current
    /// state digests to what its latest event recorded, and that no audited row exists without
    /// an event.
    pub async fn verify(store: &MetaStore) -> Result<VerifyReport, StoreError> {
        let mut conn = store.readers().acquire().await?;
        crate::audited::verify(&mut conn, &KINDS).await
    }

    /// A page of events, newest first, filtered by entity, actor, action and time.
    pub async fn search_events(
        store: &MetaStore,
        query: &EventQuery,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        crate::audited::search_events(store.readers(), query, limit).await
    }

    /// Events in sequence order, optionally only those of one entity (`run:<id>`,
    /// `experiment:<id>`, or just a type such as `registered_model`) and of one actor (its
    /// spelling, `token:ci`, or its name, `ci`).
    pub async fn list_events(
        store: &MetaStore,
        entity: Option<&str>,
        actor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        crate::audited::list_events(store.readers(), entity, actor, limit).await
    }

    /// The trail as Merkle leaves (`mltrail_core::merkle`), in sequence order: each event's
    /// sequence number and the leaf hash of its chain hash. The chain is recomputed from the
    /// events in the same read, and a stored hash that does not follow from its event and the
    /// events before it is refused: a leaf always stands for the event's content, not for
    /// whatever the `hash` column holds.
    pub async fn leaves(
        store: &MetaStore,
    ) -> Result<Vec<(i64, mltrail_core::merkle::Hash)>, StoreError> {
        use futures::TryStreamExt;
        let mut rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq").fetch(store.readers());
        let mut leaves = Vec::new();
        let mut chain = mltrail_core::GENESIS_HASH;
        while let Some(row) = rows.try_next().await? {
            let logged = crate::audited::logged_event(&row)?;
            chain = chain.next(&logged.event);
            if chain.to_hex() != logged.hash {
                return Err(crate::error::Conflict::ChainBroken(logged.event.seq).into());
            }
            leaves.push((logged.event.seq, mltrail_core::merkle::leaf_hash(&chain.0)));
        }
        Ok(leaves)
    }

    /// One event, by its sequence number.
    pub async fn event(store: &MetaStore, seq: i64) -> Result<Option<LoggedEvent>, StoreError> {
        crate::audited::event(store.readers(), seq).await
    }

    /// The chain hash before event `seq` (the genesis hash, in hex, before the first): with
    /// it, whoever holds an event can recompute the event's own hash.
    pub async fn previous_hash(store: &MetaStore, seq: i64) -> Result<String, StoreError> {
        let before: Option<String> = sqlx::query_scalar(
            "SELECT hash FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(seq)
        .fetch_optional(store.readers())
        .await?;
        Ok(before.unwrap_or_else(|| mltrail_core::GENESIS_HASH.to_hex()))
    }

    /// An entity's state as its events digest it (`state_digest` of the latest is the
    /// BLAKE3 of its canonical JSON); `None` when it no longer exists or its kind keeps its
    /// state outside the database (artifacts, deployments, archived segments).
    pub async fn entity_state(
        store: &MetaStore,
        kind: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(audited) = KINDS.iter().find(|k| k.kind() == kind) else {
            return Ok(None);
        };
        let mut conn = store.readers().acquire().await?;
        let state = match audited.state(&mut conn, id) {
            Some(state) => state.await?,
            None => None,
        };
        Ok(state)
    }

    /// The events of a run's params and metrics batches (their ids are `RUN/BATCH`), in
    /// sequence order.
    pub async fn run_batch_events(
        store: &MetaStore,
        run_id: &str,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        // `RUN/` up to `RUN0` ('0' follows '/') is every id with that prefix, through the
        // entity index.
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE entity_type IN ('params', 'metrics') \
             AND entity_id >= $1 AND entity_id < $2 ORDER BY seq",
        )
        .bind(format!("{run_id}/"))
        .bind(format!("{run_id}0"))
        .fetch_all(store.readers())
        .await?;
        rows.iter().map(crate::audited::logged_event).collect()
    }
}

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::Arc;

/// The handle every domain operation takes. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    readers: AnyPool,
    writer: writer::WriterHandle<hot_path::TrackingPath>,
    checkpointer: tokio::sync::Mutex<Option<writer::checkpoint::Checkpointer>>,
    /// The SQLite file, for its size and its WAL's; `None` in memory and on PostgreSQL.
    database_file: Option<std::path::PathBuf>,
    /// Release gates the configuration names (`[gates] policies`): a model created or renamed
    /// to a listed name gets them in the same transaction, so it is never ungated.
    configured_gates: std::sync::RwLock<Vec<gates::ConfiguredGate>>,
}

/// The database's size on disk, each part `None` when it cannot be read (an in-memory
/// database, a PostgreSQL role without `pg_monitor` for the WAL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageSize {
    pub database_bytes: Option<u64>,
    pub wal_bytes: Option<u64>,
}

/// How the store was asked to open.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `postgresql://…`.
    pub uri: String,
    /// Readers in the pool.
    pub max_readers: u32,
}

impl StoreConfig {
    pub fn new(uri: impl Into<String>) -> Self {
        StoreConfig {
            uri: uri.into(),
            max_readers: 8,
        }
    }
}

/// Translates MLflow-style store URIs into the URL sqlx expects, and names the backend.
pub fn resolve_uri(uri: &str) -> Result<(Backend, String), StoreError> {
    if let Some(path) = uri.strip_prefix("sqlite:///") {
        if path.is_empty() {
            return Err(Invalid::StoreUriWithoutFile(uri.to_string()).into());
        }
        return Ok((Backend::Sqlite, format!("sqlite://{path}")));
    }
    if uri == "sqlite::memory:" || uri == "sqlite://:memory:" {
        return Ok((Backend::Sqlite, "sqlite::memory:".to_string()));
    }
    if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
        return Ok((Backend::Postgres, uri.to_string()));
    }
    Err(Invalid::UnsupportedStoreUri(uri.to_string()).into())
}

impl MetaStore {
    /// Opens (creating if needed) and migrates the store, then starts its writer thread.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = resolve_uri(&config.uri)?;
        if backend == Backend::Sqlite {
            if let Some(parent) = sqlite_file(&url)
                .and_then(|p| std::path::Path::new(p).parent().map(|p| p.to_path_buf()))
            {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent).map_err(|e| Invalid::DatabaseFolder {
                        path: parent.display().to_string(),
                        source: Arc::new(e),
                    })?;
                }
            }
        }
        let url = match backend {
            Backend::Sqlite if url != "sqlite::memory:" => format!("{url}?mode=rwc"),
            _ => url,
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let mut writer_conn = sqlx::AnyConnection::connect_with(&options).await?;
        let reconnect = (backend == Backend::Postgres).then(|| options.clone());
        if backend == Backend::Sqlite {
            for pragma in [
                "PRAGMA journal_mode = WAL",
                // FULL: a commit is fsynced before it is acknowledged (durable across power loss).
                "PRAGMA synchronous = FULL",
                "PRAGMA busy_timeout = 10000",
                "PRAGMA case_sensitive_like = ON",
            ] {
                sqlx::query(pragma).execute(&mut writer_conn).await?;
            }
            if sqlite_file(&url).is_some() {
                // Checkpoints run on their own connection (writer/checkpoint.rs), not inside commits.
                sqlx::query("PRAGMA wal_autocheckpoint = 0")
                    .execute(&mut writer_conn)
                    .await?;
            }
        }
        schema::migrate(&mut writer_conn, backend).await?;
        if backend == Backend::Sqlite {
            // Without statistics SQLite plans a filtered search from the wrong index (400 ms
            // instead of 40 over 100k runs). A bounded ANALYZE now, and `PRAGMA optimize` as
            // the writer goes (see writer/mod.rs), keep them current.
            sqlx::query("PRAGMA analysis_limit = 1000")
                .execute(&mut writer_conn)
                .await?;
            sqlx::query("PRAGMA optimize = 0x10002")
                .execute(&mut writer_conn)
                .await?;
        }
        let readers = AnyPoolOptions::new()
            .max_connections(config.max_readers.max(1))
            // A database that is down answers reads with a 503 after this, not sqlx's 30 s.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        // MLflow's LIKE is case-sensitive; SQLite's is not by default.
                        sqlx::query("PRAGMA case_sensitive_like = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        // File-backed SQLite gets the native metric path on a second connection to the same
        // file; an in-memory database would be a different database on another connection.
        let native = match backend {
            Backend::Sqlite => match sqlite_file(&url) {
                Some(file) => Some(writer::Native::open(
                    file,
                    <hot_path::TrackingPath as writer::Coalesced>::prepare,
                )?),
                None => None,
            },
            _ => None,
        };
        let checkpointer = match (backend, sqlite_file(&url)) {
            (Backend::Sqlite, Some(_)) => {
                Some(writer::checkpoint::Checkpointer::start(&url).await?)
            }
            _ => None,
        };
        let writer = writer::WriterHandle::start(
            writer_conn,
            reconnect,
            backend,
            native,
            hot_path::TrackingPath::default(),
        )
        .await?;
        let store = MetaStore {
            inner: Arc::new(Inner {
                backend,
                readers,
                writer,
                checkpointer: tokio::sync::Mutex::new(checkpointer),
                database_file: match backend {
                    Backend::Sqlite => sqlite_file(&url).map(std::path::PathBuf::from),
                    Backend::Postgres => None,
                },
                configured_gates: std::sync::RwLock::new(Vec::new()),
            }),
        };
        experiments::ensure_default_experiment(&store).await?;
        Ok(store)
    }

    /// Which database the store is on.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub(crate) fn readers(&self) -> &AnyPool {
        &self.inner.readers
    }

    /// The configuration's release gates, applied from now on to models created or renamed to
    /// a name they list.
    pub fn configure_gates(&self, configured: Vec<gates::ConfiguredGate>) {
        // A poisoned lock only means a panic elsewhere while it was held; the list is whole.
        *self
            .inner
            .configured_gates
            .write()
            .unwrap_or_else(|e| e.into_inner()) = configured;
    }

    /// The configured gates of the model `name`: `(alias, policy)`.
    pub(crate) fn configured_gates_for(
        &self,
        name: &str,
    ) -> Vec<(String, mltrail_core::gate::Policy)> {
        self.inner
            .configured_gates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|g| g.model == name)
            .map(|g| (g.alias.clone(), g.policy.clone()))
            .collect()
    }

    /// Runs `job` inside the writer's current group-commit transaction: how the domain modules
    /// write. The result is returned only after the transaction holding it has committed (and,
    /// on SQLite, been fsynced).
    pub(crate) async fn transaction<T, F>(&self, actor: &str, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Tx, &mut AuditCtx) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.submit(actor.to_string(), job).await
    }

    /// Runs `body` in the writer's transaction, then records `action` for `entity`, whose state
    /// digest is read back from that transaction: the shape of most audited writes. Writes
    /// that record several events, or an entity known only inside the transaction, use
    /// [`Self::transaction`] and `AuditCtx::record`.
    pub(crate) async fn audited<E, T, F>(
        &self,
        actor: &str,
        action: &'static str,
        entity: E,
        body: F,
    ) -> Result<T, StoreError>
    where
        E: audited::Audited,
        T: Send + 'static,
        F: AsyncFnOnce(&mut Tx) -> Result<T, StoreError> + Send + 'static,
    {
        self.transaction(actor, async move |tx, audit| {
            let value = body(tx).await?;
            audit.record(tx, action, &entity).await?;
            Ok(value)
        })
        .await
    }

    /// Queues a coalesced tracking write (`hot_path`) and waits for its answer.
    pub(crate) async fn coalesce<T>(
        &self,
        request: impl Into<hot_path::Request>,
        answer: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.inner.writer.coalesce(request.into(), answer).await
    }

    /// Whether run creations take the coalesced native path (SQLite files).
    pub(crate) fn coalesces_run_creations(&self) -> bool {
        self.inner.writer.has_native()
    }

    /// Registers the writer's own metrics (group sizes and durations, failed groups, the
    /// queue's depth now) in `registry`, for `/metrics`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.writer.stats().register(registry);
        let depth = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        depth.set(i64::try_from(self.inner.writer.queue_depth()).unwrap_or(i64::MAX));
        registry.register(
            "mltrail_store_write_queue_depth",
            "Writes waiting for the writer to take them into a group",
            depth,
        );
    }

    /// How large the database is on disk now: the SQLite file and its WAL, or on PostgreSQL
    /// `pg_database_size` and the server's WAL folder (`pg_ls_waldir`, which needs a superuser
    /// or the `pg_monitor` role; `None` without it).
    pub async fn storage_size(&self) -> StorageSize {
        match (&self.inner.database_file, self.inner.backend) {
            (Some(file), _) => {
                let size = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.len());
                let mut wal = file.clone().into_os_string();
                wal.push("-wal");
                StorageSize {
                    database_bytes: size(file),
                    wal_bytes: Some(size(std::path::Path::new(&wal)).unwrap_or(0)),
                }
            }
            (None, Backend::Postgres) => {
                let one = |sql: &'static str| async move {
                    match sqlx::query_scalar::<_, i64>(sql)
                        .fetch_one(self.readers())
                        .await
                    {
                        Ok(v) => u64::try_from(v).ok(),
                        Err(e) => {
                            tracing::debug!(error = %e, sql, "database size not readable");
                            None
                        }
                    }
                };
                StorageSize {
                    database_bytes: one("SELECT pg_database_size(current_database())::BIGINT")
                        .await,
                    wal_bytes: one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM pg_ls_waldir()")
                        .await,
                }
            }
            (None, Backend::Sqlite) => StorageSize::default(),
        }
    }

    /// Closes the pool and stops the writer after it drained every queued write.
    pub async fn close(&self) {
        self.inner.writer.shutdown().await;
        self.inner.readers.close().await;
        if let Some(c) = self.inner.checkpointer.lock().await.take() {
            c.stop().await;
        }
    }
}

pub(crate) fn sqlite_file(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_mlflow_style_uris() {
        assert_eq!(
            resolve_uri("sqlite:///./data/m.db").unwrap(),
            (Backend::Sqlite, "sqlite://./data/m.db".into())
        );
        assert_eq!(
            resolve_uri("sqlite:////tmp/m.db").unwrap(),
            (Backend::Sqlite, "sqlite:///tmp/m.db".into())
        );
        assert_eq!(
            resolve_uri("postgresql://u@127.0.0.1:5432/db").unwrap().0,
            Backend::Postgres
        );
        assert!(resolve_uri("mysql://x").is_err());
        assert!(resolve_uri("sqlite:///").is_err());
    }

    /// The README promises that an acknowledged write survives a power cut: WAL with
    /// `synchronous = FULL`, read inside the writer's own transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_writer_fsyncs_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite:///{}/m.db", dir.path().display());
        let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
        let (journal, synchronous) = store
            .transaction("test", async |tx, _| {
                let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut *tx)
                    .await?;
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut *tx)
                    .await?;
                Ok((journal, synchronous))
            })
            .await
            .unwrap();
        assert_eq!(journal.to_lowercase(), "wal");
        assert_eq!(
            synchronous, 2,
            "synchronous must be FULL (2): every acknowledged commit is fsynced"
        );
        store.close().await;
    }
}
