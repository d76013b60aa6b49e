//! The single writer. SQLite allows one writer at a time; instead of letting request tasks fight
//! for the lock ("database is locked"), every mutation is sent here. The writer takes whatever
//! has queued up, runs it in one transaction, commits once (one fsync for the whole group) and
//! only then answers each caller.
//!
//! It runs on a thread of its own (`writer_thread.rs`), not on a runtime worker: a commit blocks
//! for its fsync and for SQLite's work, and on a worker it held up the request tasks queued
//! there (at 64 connections the writer spent a fifth of its time waiting for its turn after
//! yielding to them, and every large group paid `block_in_place`'s hand-over of the worker).
//!
//! Three kinds of work share a group:
//! - general jobs, each under its own SAVEPOINT so a failing job rolls back alone;
//! - metric logs (the hot path: `log-metric`, metric-only `log-batch`), which are coalesced:
//!   one lookup of the runs involved, one block per (run, key) and request, one upsert per
//!   latest (run, key), and their audit events. Per-statement cost is what limits a database
//!   driver, so a group of 64 requests costs a handful of statements;
//! - on SQLite files, run creations, which join the metric logs on the native path
//!   (`native.rs`); elsewhere `create_run` is a general job.

use crate::answer::Waiting;
use crate::audit::{metric_batch_digest, AuditHead, Entity};
use crate::metric_block::{blocks_of, insert_blocks, Block};
use crate::native::NativeWriter;
use crate::records::Run;
use crate::sql::{placeholders, placeholders_for, text};
use crate::tracking::{not_found_run, NewMetric, RunDraft};
use crate::{Backend, StoreError};
use futures::future::BoxFuture;
use mltrail_core::AuditEvent;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The connection a write job runs on, already inside the group's transaction.
pub type Tx = sqlx::AnyConnection;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type JobFn = Box<
    dyn for<'c> FnOnce(&'c mut Tx, &'c mut AuditCtx) -> BoxFuture<'c, (bool, Completion)> + Send,
>;

/// Metric values for one run from one request.
pub(crate) struct MetricLog {
    pub actor: String,
    pub run_id: String,
    pub metrics: Vec<NewMetric>,
    pub reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A `runs/create` for the native path (SQLite files only).
pub(crate) struct RunCreate {
    pub actor: String,
    pub draft: RunDraft,
    pub reply: oneshot::Sender<Result<Run, StoreError>>,
}

enum Msg {
    Job { actor: String, run: JobFn },
    Metrics(MetricLog),
    CreateRun(RunCreate),
    Shutdown(oneshot::Sender<()>),
}

/// Upper bound on requests per transaction, so one commit never holds a huge backlog hostage.
const MAX_GROUP: usize = 512;
/// Writes between two `PRAGMA optimize` runs (SQLite refreshes planner statistics of tables
/// that changed a lot; bounded by `analysis_limit`).
const OPTIMIZE_EVERY: usize = 20_000;
/// Rows per multi-row INSERT; keeps bound parameters far below SQLite's limit.
const ROWS_PER_INSERT: usize = 100;

pub(crate) struct WriterHandle {
    sender: mpsc::Sender<Msg>,
    waiting: Waiting,
    native: bool,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// (actor, action, entity type, entity id, state digest) of an event not yet chained.
pub(crate) type PendingEvent = (String, String, String, String, Option<String>);

/// Appends audit events for the job being run; the chain head carries across a group.
pub struct AuditCtx {
    actor: String,
    head: AuditHead,
}

impl AuditCtx {
    /// Appends one event for `entity`, whose state digest is read back from the transaction,
    /// so the digest describes exactly what is being committed.
    pub async fn record(
        &mut self,
        tx: &mut Tx,
        action: &str,
        entity: &Entity,
    ) -> Result<(), StoreError> {
        let digest = crate::audit::state_digest(tx, entity).await?;
        self.record_external(tx, action, entity.kind(), &entity.id(), digest)
            .await
    }

    /// Appends an event with a digest the caller computed: used directly for state that lives
    /// outside the database (an artifact's content digest).
    pub async fn record_external(
        &mut self,
        tx: &mut Tx,
        action: &str,
        kind: &str,
        id: &str,
        digest: Option<String>,
    ) -> Result<(), StoreError> {
        let actor = self.actor.clone();
        self.append_many(
            tx,
            vec![(
                actor,
                action.to_string(),
                kind.to_string(),
                id.to_string(),
                digest,
            )],
        )
        .await
    }

    /// Chains and inserts events (actor, action, entity type, entity id, digest) in order.
    pub(crate) fn head_snapshot(&self) -> AuditHead {
        self.head
    }

    pub(crate) fn restore(&mut self, head: AuditHead) {
        self.head = head;
    }

    /// Gives pending events their sequence numbers and chain hashes, advancing the head.
    /// The caller inserts the rows; if that fails, the whole group rolls back and the writer
    /// restores the head it had before the group.
    pub(crate) fn chain(&mut self, events: Vec<PendingEvent>) -> Vec<(AuditEvent, String)> {
        let time = mltrail_core::now_millis();
        let mut rows = Vec::with_capacity(events.len());
        for (actor, action, entity_type, entity_id, state_digest) in events {
            let event = AuditEvent {
                seq: self.head.seq + 1,
                time,
                actor,
                action,
                entity_type,
                entity_id,
                state_digest,
            };
            let hash = self.head.hash.next(&event);
            self.head = AuditHead {
                seq: event.seq,
                hash,
            };
            rows.push((event, hash.to_hex()));
        }
        rows
    }

    async fn append_many(
        &mut self,
        tx: &mut Tx,
        events: Vec<PendingEvent>,
    ) -> Result<(), StoreError> {
        let before = self.head;
        let rows = self.chain(events);
        let inserted = insert_audit_rows(tx, &rows).await;
        if inserted.is_err() {
            self.head = before;
        }
        inserted
    }
}

async fn insert_audit_rows(tx: &mut Tx, rows: &[(AuditEvent, String)]) -> Result<(), StoreError> {
    {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders_for(tx, 1 + i * 8, 8)))
                .collect();
            let sql = format!("INSERT INTO audit_log (seq, time, actor, action, entity_type, entity_id, state_digest, hash) VALUES {}", values.join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (e, hash) in chunk {
                query = query
                    .bind(e.seq)
                    .bind(e.time)
                    .bind(e.actor.clone())
                    .bind(e.action.clone())
                    .bind(e.entity_type.clone())
                    .bind(e.entity_id.clone())
                    .bind(e.state_digest.clone())
                    .bind(hash.clone());
            }
            query.execute(&mut *tx).await?;
        }
    }
    Ok(())
}

impl WriterHandle {
    pub(crate) async fn start(
        mut conn: Tx,
        backend: Backend,
        native: Option<NativeWriter>,
    ) -> Result<Self, StoreError> {
        let head = crate::audit::load_head(&mut conn).await?;
        let (sender, receiver) = mpsc::channel(4096);
        let has_native = native.is_some();
        let join = crate::writer_thread::spawn(
            "mltrail-writer",
            tokio::runtime::Handle::current(),
            run(conn, native, backend, receiver, head),
        )
        .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(WriterHandle {
            sender,
            waiting: Waiting::default(),
            native: has_native,
            join: Mutex::new(Some(join)),
        })
    }

    pub(crate) async fn submit<T, F>(&self, actor: String, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx, &'c mut AuditCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, StoreError>>();
        let run: JobFn = Box::new(move |tx, audit| {
            Box::pin(async move {
                let result = job(tx, audit).await;
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let _ = reply.send(match commit {
                        Ok(()) => result,
                        Err(e) => result.and(Err(e)),
                    });
                });
                (ok, completion)
            })
        });
        self.ask(Msg::Job { actor, run }, answer).await
    }

    /// Queues `msg` and waits for the answer it carries the sender of.
    async fn ask<T>(
        &self,
        msg: Msg,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.sender
            .send(msg)
            .await
            .map_err(|_| StoreError::Closed)?;
        self.waiting.answer(answer).await?
    }

    pub(crate) async fn log_metrics(
        &self,
        actor: String,
        run_id: String,
        metrics: Vec<NewMetric>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let log = MetricLog {
            actor,
            run_id,
            metrics,
            reply,
        };
        self.ask(Msg::Metrics(log), answer).await
    }

    /// Whether metric logs and run creations take the native SQLite path.
    pub(crate) fn has_native(&self) -> bool {
        self.native
    }

    /// Creates a run on the native path; only when [`Self::has_native`].
    pub(crate) async fn create_run(
        &self,
        actor: String,
        draft: RunDraft,
    ) -> Result<Run, StoreError> {
        let (reply, answer) = oneshot::channel();
        let create = RunCreate {
            actor,
            draft,
            reply,
        };
        self.ask(Msg::CreateRun(create), answer).await
    }

    pub(crate) async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        if let Some(join) = self.join.lock().await.take() {
            let _ = tokio::task::spawn_blocking(move || join.join()).await;
        }
    }
}

async fn exec(conn: &mut Tx, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(StoreError::from)
}

async fn run(
    mut conn: Tx,
    mut native: Option<NativeWriter>,
    backend: Backend,
    mut receiver: mpsc::Receiver<Msg>,
    head: AuditHead,
) {
    let mut audit = AuditCtx {
        actor: String::new(),
        head,
    };
    // Lifecycle stage of runs that metric logs recently touched. On SQLite this process is the
    // only writer, so the cache is exact until a general job (which may delete or restore a
    // run) runs; it saves one statement per group on the hot path.
    let mut stage_cache: HashMap<String, String> = HashMap::new();
    let mut writes_since_optimize = 0usize;
    let begin = match backend {
        // IMMEDIATE takes the write lock up front, so a reader upgrading can never deadlock us.
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        let Some(first) = receiver.recv().await else {
            break;
        };
        let mut jobs = Vec::new();
        let mut logs = Vec::new();
        let mut creates: Vec<RunCreate> = Vec::new();
        let mut take = |msg: Msg| match msg {
            Msg::Job { actor, run } => jobs.push((actor, run)),
            Msg::Metrics(log) => logs.push(log),
            Msg::CreateRun(create) => creates.push(create),
            Msg::Shutdown(done) => stop = Some(done),
        };
        take(first);
        let mut size = 1;
        while size < MAX_GROUP {
            match receiver.try_recv() {
                Ok(msg) => {
                    take(msg);
                    size += 1;
                }
                Err(_) => break,
            }
        }
        if jobs.is_empty() && logs.is_empty() && creates.is_empty() {
            continue;
        }
        // General jobs may delete or restore runs; only metric-only groups may trust the cache.
        if !jobs.is_empty() || backend != Backend::Sqlite {
            stage_cache.clear();
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
        let mut log_results: Vec<Result<(), StoreError>> = Vec::new();
        // Metric logs take the native path when there is one (its own transaction, after the
        // jobs'), otherwise they share the jobs' transaction.
        let logs_in_sql = native.is_none() && !logs.is_empty();
        let mut outcome = Ok(());
        if !jobs.is_empty() || logs_in_sql {
            let committed_head = audit.head;
            let mut sql_outcome = match exec(&mut conn, begin).await {
                Ok(()) => run_jobs(&mut conn, &mut audit, jobs, &mut completions).await,
                Err(e) => Err(e),
            };
            if sql_outcome.is_ok() && logs_in_sql {
                sql_outcome = apply_metric_logs(&mut conn, &mut audit, &logs, &mut stage_cache)
                    .await
                    .map(|results| log_results = results);
            }
            let sql_outcome = match sql_outcome {
                Ok(()) => exec(&mut conn, "COMMIT").await,
                Err(e) => Err(e),
            };
            if let Err(e) = &sql_outcome {
                stage_cache.clear();
                tracing::error!(error = %e, "write group failed; rolling back");
                let _ = exec(&mut conn, "ROLLBACK").await;
                audit.head = committed_head;
            }
            for completion in completions {
                completion(sql_outcome.clone());
            }
            outcome = sql_outcome;
        }
        let mut created: Vec<Result<Run, StoreError>> = Vec::new();
        if let (Some(native), true) = (native.as_mut(), !logs.is_empty() || !creates.is_empty()) {
            outcome = native
                .apply(&mut audit, &creates, &logs, &mut stage_cache)
                .map(|(runs, results)| {
                    created = runs;
                    log_results = results;
                });
            if let Err(e) = &outcome {
                tracing::error!(error = %e, "native write group failed; rolled back");
            }
        }
        // On success the native path answered every creation, in order.
        let mut created = created.into_iter();
        for create in creates {
            let answer = match &outcome {
                Err(e) => Err(e.clone()),
                Ok(()) => created.next().unwrap_or(Err(StoreError::Closed)),
            };
            let _ = create.reply.send(answer);
        }
        writes_since_optimize += size;
        if backend == Backend::Sqlite && writes_since_optimize >= OPTIMIZE_EVERY {
            writes_since_optimize = 0;
            if let Err(e) = exec(&mut conn, "PRAGMA optimize").await {
                tracing::warn!(error = %e, "PRAGMA optimize failed");
            }
        }
        for (i, log) in logs.into_iter().enumerate() {
            let result = match &outcome {
                Ok(()) => log_results.get(i).cloned().unwrap_or(Ok(())),
                Err(e) => Err(e.clone()),
            };
            let _ = log.reply.send(result);
        }
        if let Some(native) = native.as_mut() {
            native.bound_wal();
        }
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

async fn run_jobs(
    conn: &mut Tx,
    audit: &mut AuditCtx,
    jobs: Vec<(String, JobFn)>,
    completions: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    for (actor, job) in jobs {
        audit.actor = actor;
        let before = audit.head;
        exec(conn, "SAVEPOINT job").await?;
        let (ok, completion) = job(conn, audit).await;
        completions.push(completion);
        if ok {
            exec(conn, "RELEASE SAVEPOINT job").await?;
        } else {
            exec(conn, "ROLLBACK TO SAVEPOINT job").await?;
            exec(conn, "RELEASE SAVEPOINT job").await?;
            audit.head = before;
        }
    }
    Ok(())
}

/// Applies a group's metric logs with a few statements; returns each log's own result
/// (a log for a missing or deleted run fails alone). An `Err` fails the whole group.
/// Decides each log's fate from the runs' lifecycle stages and names the accepted logs'
/// metric batches. Shared by the SQL and the native SQLite paths.
pub(crate) struct MetricPlan {
    pub results: Vec<Result<(), StoreError>>,
    /// (index into the logs, batch id) of every accepted log, in arrival order.
    pub accepted: Vec<(usize, String)>,
}

/// Run ids whose stage is not cached yet.
pub(crate) fn uncached_runs<'a>(
    logs: &'a [MetricLog],
    stages: &mut HashMap<String, String>,
) -> Vec<&'a str> {
    if stages.len() > 100_000 {
        stages.clear();
    }
    let mut run_ids: Vec<&str> = logs
        .iter()
        .map(|l| l.run_id.as_str())
        .filter(|id| !stages.contains_key(*id))
        .collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    run_ids
}

pub(crate) fn plan_metric_logs(logs: &[MetricLog], stages: &HashMap<String, String>) -> MetricPlan {
    let results: Vec<Result<(), StoreError>> = logs
        .iter()
        .map(|log| match stages.get(&log.run_id).map(String::as_str) {
            None => Err(not_found_run(&log.run_id)),
            Some("active") => Ok(()),
            Some(other) => Err(StoreError::InvalidState(format!(
                "The run {} must be in the 'active' state. Current state is {other}.",
                log.run_id
            ))),
        })
        .collect();
    let accepted = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| (i, uuid::Uuid::now_v7().simple().to_string()))
        .collect();
    MetricPlan { results, accepted }
}

impl MetricPlan {
    /// Every accepted value, as (run id, batch id, value).
    pub(crate) fn rows<'a>(&'a self, logs: &'a [MetricLog]) -> Vec<MetricInsert<'a>> {
        self.accepted
            .iter()
            .flat_map(|(i, batch)| {
                logs[*i]
                    .metrics
                    .iter()
                    .map(move |m| (logs[*i].run_id.as_str(), batch.as_str(), m))
            })
            .collect()
    }

    /// The history blocks to insert: per accepted request, one per (key, model id).
    pub(crate) fn blocks<'a>(&'a self, logs: &'a [MetricLog]) -> Vec<Block<'a>> {
        self.accepted
            .iter()
            .flat_map(|(i, batch)| blocks_of(&logs[*i].run_id, batch, &logs[*i].metrics))
            .collect()
    }

    /// One event per accepted request, in arrival order; the digest is of the values inserted.
    pub(crate) fn events(&self, logs: &[MetricLog]) -> Vec<PendingEvent> {
        self.accepted
            .iter()
            .map(|(i, batch)| {
                let log = &logs[*i];
                let entity = Entity::MetricBatch {
                    run_id: log.run_id.clone(),
                    batch_id: batch.clone(),
                };
                (
                    log.actor.clone(),
                    "run.log_metrics".to_string(),
                    entity.kind().to_string(),
                    entity.id(),
                    Some(metric_batch_digest(&log.metrics)),
                )
            })
            .collect()
    }
}

/// The latest value per (run, key) among `rows`: max step, then max timestamp, then max value,
/// as in MLflow.
pub(crate) fn latest_per_key<'a>(
    rows: &[MetricInsert<'a>],
) -> Vec<((&'a str, &'a str), &'a NewMetric)> {
    let mut latest: HashMap<(&str, &str), &NewMetric> = HashMap::new();
    for (run_id, _, m) in rows {
        let slot = latest.entry((*run_id, m.key.as_str())).or_insert(*m);
        if newer(m, slot) {
            *slot = *m;
        }
    }
    latest.into_iter().collect()
}

/// Per-log problems (a missing or deleted run) are answered per log; a failing statement
/// fails the whole group, general jobs included, which the caller then rolls back.
async fn apply_metric_logs(
    conn: &mut Tx,
    audit: &mut AuditCtx,
    logs: &[MetricLog],
    stages: &mut HashMap<String, String>,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let run_ids = uncached_runs(logs, stages);
    for chunk in run_ids.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT run_uuid, lifecycle_stage FROM runs WHERE run_uuid IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            stages.insert(text(&row, "run_uuid")?, text(&row, "lifecycle_stage")?);
        }
    }
    let plan = plan_metric_logs(logs, stages);
    if plan.accepted.is_empty() {
        return Ok(plan.results);
    }
    insert_blocks(conn, &plan.blocks(logs)).await?;
    upsert_latest(conn, &plan.rows(logs)).await?;
    audit.append_many(conn, plan.events(logs)).await?;
    Ok(plan.results)
}

fn newer(m: &NewMetric, old: &NewMetric) -> bool {
    (m.step, m.timestamp) > (old.step, old.timestamp)
        || ((m.step, m.timestamp) == (old.step, old.timestamp) && m.value > old.value)
}

/// (run id, batch id, value) of one metric row to insert.
pub(crate) type MetricInsert<'a> = (&'a str, &'a str, &'a NewMetric);

/// Moves each (run, key)'s latest value forward to the newest of `rows` (portable path).
pub(crate) async fn upsert_latest(
    conn: &mut Tx,
    rows: &[MetricInsert<'_>],
) -> Result<(), StoreError> {
    let latest = latest_per_key(rows);
    for chunk in latest.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders_for(conn, 1 + i * 6, 6)))
            .collect();
        let sql = format!(
            "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES {} \
             ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step \
             WHERE excluded.step > latest_metrics.step \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp AND COALESCE(excluded.value, 0) > COALESCE(latest_metrics.value, 0))",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((run_id, key), m) in chunk {
            let (value, nan) = stored_value(m.value);
            query = query
                .bind(run_id.to_string())
                .bind(key.to_string())
                .bind(value)
                .bind(nan)
                .bind(m.timestamp)
                .bind(m.step);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// NaN cannot be stored in SQLite (it becomes NULL), so a flag column keeps it.
pub(crate) fn stored_value(v: f64) -> (Option<f64>, i64) {
    if v.is_nan() {
        (None, 1)
    } else {
        (Some(v), 0)
    }
}
