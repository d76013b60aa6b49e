//! The single writer. SQLite allows one writer at a time; instead of letting request tasks fight
//! for the lock ("database is locked"), every mutation is sent here. The writer takes whatever
//! has queued up, runs it in one transaction, commits once (one fsync for the whole group) and
//! only then answers each caller.
//!
//! It runs on a thread of its own (`thread.rs`), not on a runtime worker: a commit blocks for
//! its fsync and for SQLite's work, and on a worker it held up the request tasks queued there
//! (at 64 connections the writer spent a fifth of its time waiting for its turn after yielding
//! to them, and every large group paid `block_in_place`'s hand-over of the worker).
//!
//! Two kinds of work share a group:
//! - general jobs, each under its own SAVEPOINT so a failing job rolls back alone;
//! - coalesced requests ([`Coalesced`]): writes so frequent that a group's worth are applied
//!   with a handful of statements rather than one job each (per-statement cost is what limits a
//!   database driver, so a group of 64 requests costs a handful of statements). What they are
//!   and which SQL they run is the domain's (metric logs and run creations, `hot_path.rs`); the
//!   writer decides when they run and when they are answered. On SQLite files they run on the
//!   native connection (`native.rs`) in a transaction of their own, after the jobs'; elsewhere
//!   in the jobs' transaction.
//!
//! This module and its children are infrastructure: they know transactions, the audit chain's
//! rows and SQLite's C API, and no entity of the domain.

mod answer;
mod chain;
pub(crate) mod checkpoint;
pub(crate) mod native;
mod stats;
mod thread;

pub use chain::AuditCtx;
pub(crate) use chain::PendingEvent;
pub(crate) use native::{Db, Native, NativeChain, NativeGroup, Stmt};
pub(crate) use stats::WriterStats;

use crate::error::DatabaseError;
use crate::sql::Backend;
use crate::StoreError;
use answer::Waiting;
use futures::future::LocalBoxFuture;
use std::future::Future;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The connection a write job runs on, already inside the group's transaction.
pub type Tx = sqlx::AnyConnection;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type JobFn = Box<
    dyn for<'c> FnOnce(&'c mut Tx, &'c mut AuditCtx) -> LocalBoxFuture<'c, (bool, Completion)>
        + Send,
>;

/// Writes the writer coalesces: a whole group of them is applied with a few statements. The
/// domain implements this (`hot_path.rs`); the writer only calls it.
pub(crate) trait Coalesced: Send + 'static {
    /// One request, carrying the sender of its answer.
    type Request: Send + 'static;
    /// What a group's requests came to, kept until the group's transaction committed.
    type Answers;
    /// Statements the native path prepares once, on its own connection.
    type Statements: Send + 'static;

    /// Prepares [`Self::Statements`] on the native connection.
    fn prepare(db: &Db) -> Result<Self::Statements, StoreError>;

    /// Whatever the implementation remembers about stored rows may be stale: general jobs ran
    /// (they may delete or restore rows), a group failed, or the database has other writers.
    fn forget(&mut self);

    /// Applies `requests` inside the group's transaction, after its general jobs (the portable
    /// path). An `Err` is a failed statement: the whole group rolls back.
    fn apply<'a>(
        &'a mut self,
        tx: &'a mut Tx,
        audit: &'a mut AuditCtx,
        requests: &'a [Self::Request],
    ) -> impl Future<Output = Result<Self::Answers, StoreError>> + 'a;

    /// Applies `requests` on the native connection, inside the transaction
    /// [`Native::transaction`] opened. An `Err` rolls that transaction back.
    fn apply_native(
        &mut self,
        group: &mut NativeGroup<'_, Self::Statements>,
        requests: &[Self::Request],
    ) -> Result<Self::Answers, StoreError>;

    /// Answers every request: from `answers` when the group committed, with the group's error
    /// when it did not.
    fn answer(requests: Vec<Self::Request>, answers: Result<Self::Answers, StoreError>);
}

enum Msg<R> {
    Job { actor: String, run: JobFn },
    Coalesced(R),
    Shutdown(oneshot::Sender<()>),
}

/// Upper bound on requests per transaction, so one commit never holds a huge backlog hostage.
const MAX_GROUP: usize = 512;
/// Writes between two `PRAGMA optimize` runs (SQLite refreshes planner statistics of tables
/// that changed a lot; bounded by `analysis_limit`).
const OPTIMIZE_EVERY: usize = 20_000;

pub(crate) struct WriterHandle<C: Coalesced> {
    sender: mpsc::Sender<Msg<C::Request>>,
    waiting: Waiting,
    native: bool,
    stats: WriterStats,
    join: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<C: Coalesced> WriterHandle<C> {
    /// Starts the writer thread on `conn` (and `native`, on SQLite files), continuing the audit
    /// chain from its stored head.
    /// `reconnect`: how to open a new connection when the server's connection is lost
    /// (PostgreSQL restarted); `None` on SQLite, whose file connection cannot be cut.
    pub(crate) async fn start(
        mut conn: Tx,
        reconnect: Option<sqlx::any::AnyConnectOptions>,
        backend: Backend,
        native: Option<Native<C::Statements>>,
        coalesced: C,
    ) -> Result<Self, StoreError> {
        let head = chain::load_head(&mut conn).await?;
        let (sender, receiver) = mpsc::channel(4096);
        let has_native = native.is_some();
        let stats = WriterStats::default();
        let thread_stats = stats.clone();
        let join = thread::spawn(
            "mltrail-writer",
            tokio::runtime::Handle::current(),
            move || {
                run(
                    Connection {
                        conn: Some(conn),
                        reconnect,
                    },
                    native,
                    coalesced,
                    backend,
                    receiver,
                    AuditCtx::new(head),
                    thread_stats,
                )
            },
        )
        .map_err(|e| DatabaseError::WriterThread(std::sync::Arc::new(e)))?;
        Ok(WriterHandle {
            sender,
            waiting: Waiting::default(),
            native: has_native,
            stats,
            join: Mutex::new(Some(join)),
        })
    }

    /// Runs `job` as a general job of the next group; answers after the group committed.
    pub(crate) async fn submit<T, F>(&self, actor: String, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Tx, &mut AuditCtx) -> Result<T, StoreError> + Send + 'static,
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

    /// Queues a coalesced request and waits for the answer whose sender it carries.
    pub(crate) async fn coalesce<T>(
        &self,
        request: C::Request,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.ask(Msg::Coalesced(request), answer).await
    }

    /// Queues `msg` and waits for the answer it carries the sender of.
    async fn ask<T>(
        &self,
        msg: Msg<C::Request>,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.sender
            .send(msg)
            .await
            .map_err(|_| StoreError::Closed)?;
        self.waiting.answer(answer).await?
    }

    /// Whether coalesced requests take the native SQLite path.
    pub(crate) fn has_native(&self) -> bool {
        self.native
    }

    /// The group sizes and durations the writer thread observes.
    pub(crate) fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes queued and not yet taken into a group (read from the channel, not counted).
    pub(crate) fn queue_depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
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

/// The writer's connection, and how to open it again. A connection the database cut (a
/// PostgreSQL restart) is dropped after the group that failed on it; the next group opens a
/// new one. Only PostgreSQL reconnects, and every PostgreSQL group reloads the chain's head
/// (`begin_group`), so an in-doubt commit cannot fork the chain.
struct Connection {
    conn: Option<Tx>,
    reconnect: Option<sqlx::any::AnyConnectOptions>,
}

impl Connection {
    /// The open connection, opening a new one if the last was lost.
    async fn get(&mut self) -> Result<&mut Tx, StoreError> {
        if self.conn.is_none() {
            let Some(options) = &self.reconnect else {
                return Err(StoreError::Closed);
            };
            let conn = <sqlx::AnyConnection as sqlx::Connection>::connect_with(options).await?;
            tracing::info!("writer reconnected to the database");
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or(StoreError::Closed)
    }

    /// After a failed group: drops the connection if the failure says it was cut.
    fn check(&mut self, error: &StoreError) {
        if self.reconnect.is_some() && matches!(error, StoreError::Database(d) if d.is_connection())
        {
            tracing::warn!(error = %error, "writer lost its database connection; reconnecting on the next write");
            self.conn = None;
        }
    }
}

async fn run<C: Coalesced>(
    mut connection: Connection,
    mut native: Option<Native<C::Statements>>,
    mut coalesced: C,
    backend: Backend,
    mut receiver: mpsc::Receiver<Msg<C::Request>>,
    mut audit: AuditCtx,
    stats: WriterStats,
) {
    let mut writes_since_optimize = 0usize;
    let begin = match backend {
        // IMMEDIATE takes the write lock up front, so a reader upgrading can never deadlock us.
        Backend::Sqlite => "BEGIN IMMEDIATE",
        // The chain's head is read after the chain lock is taken (`begin_group`): only right
        // under READ COMMITTED, whatever the role's default isolation is.
        Backend::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED",
    };
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        let Some(first) = receiver.recv().await else {
            break;
        };
        let started = std::time::Instant::now();
        let mut failed = false;
        let mut jobs = Vec::new();
        let mut requests = Vec::new();
        let mut take = |msg: Msg<C::Request>| match msg {
            Msg::Job { actor, run } => jobs.push((actor, run)),
            Msg::Coalesced(request) => requests.push(request),
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
        if jobs.is_empty() && requests.is_empty() {
            continue;
        }
        // On SQLite this process is the usual writer, and only general jobs may change what the
        // coalesced path remembers; PostgreSQL may have other writers. (Another process writing
        // SQLite is noticed by its moved chain head once the write lock is held.)
        if !jobs.is_empty() || backend != Backend::Sqlite {
            coalesced.forget();
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
        // Coalesced requests take the native path when there is one (its own transaction,
        // after the jobs'), otherwise they share the jobs' transaction.
        let requests_in_sql = native.is_none() && !requests.is_empty();
        let mut answers: Option<Result<C::Answers, StoreError>> = None;
        if !jobs.is_empty() || requests_in_sql {
            let mut sql_answers = None;
            let sql_outcome = match connection.get().await {
                Err(e) => {
                    // No connection: nothing ran. Dropping the jobs answers their callers that
                    // the store is unavailable; coalesced requests get `e` below.
                    drop(jobs);
                    Err(e)
                }
                Ok(conn) => {
                    let begun = begin_group(conn, backend, begin, &mut audit).await;
                    if matches!(begun, Ok(true)) {
                        coalesced.forget();
                    }
                    // Taken after begin_group, which reloads the head.
                    let committed_head = audit.head_snapshot();
                    let mut sql_outcome = match begun {
                        Ok(_) => run_jobs(conn, &mut audit, jobs, &mut completions).await,
                        Err(e) => Err(e),
                    };
                    if sql_outcome.is_ok() && requests_in_sql {
                        sql_outcome = coalesced
                            .apply(conn, &mut audit, &requests)
                            .await
                            .map(|a| sql_answers = Some(a));
                    }
                    let sql_outcome = match sql_outcome {
                        Ok(()) => exec(conn, "COMMIT").await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = &sql_outcome {
                        coalesced.forget();
                        tracing::error!(error = %e, "write group failed; rolling back");
                        let _ = exec(conn, "ROLLBACK").await;
                        audit.restore(committed_head);
                    }
                    sql_outcome
                }
            };
            if let Err(e) = &sql_outcome {
                failed = true;
                connection.check(e);
            }
            for completion in completions {
                completion(sql_outcome.clone());
            }
            if requests_in_sql {
                answers = Some(sql_outcome.and_then(|()| sql_answers.ok_or(StoreError::Closed)));
            }
        }
        if let (Some(native), false) = (native.as_mut(), requests.is_empty()) {
            let outcome = native.transaction(&mut audit, |group, foreign| {
                if foreign {
                    coalesced.forget();
                }
                coalesced.apply_native(group, &requests)
            });
            if let Err(e) = &outcome {
                failed = true;
                coalesced.forget();
                tracing::error!(error = %e, "native write group failed; rolled back");
            }
            answers = Some(outcome);
        }
        if let Some(answers) = answers {
            C::answer(requests, answers);
        }
        stats.group(size, started.elapsed().as_secs_f64(), failed);
        writes_since_optimize += size;
        if backend == Backend::Sqlite && writes_since_optimize >= OPTIMIZE_EVERY {
            writes_since_optimize = 0;
            if let Some(conn) = connection.conn.as_mut() {
                if let Err(e) = exec(conn, "PRAGMA optimize").await {
                    tracing::warn!(error = %e, "PRAGMA optimize failed");
                }
            }
        }
        if let Some(native) = native.as_mut() {
            native.bound_wal();
        }
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Opens a group's transaction and reloads the chain's head once no one else can move it;
/// returns whether another writer had (so cached state must go). On PostgreSQL it waits for
/// the chain lock first: separate statements, because under READ COMMITTED a statement reads
/// the snapshot taken when it started, and the head must be read after the lock is held.
/// (Sending the three as one simple-query batch measured slower, not faster:
/// docs/benchmarks.md.) On SQLite BEGIN IMMEDIATE holds the write lock; another process may
/// have written before it (`mltrail users create` beside a running server).
async fn begin_group(
    conn: &mut Tx,
    backend: Backend,
    begin: &'static str,
    audit: &mut AuditCtx,
) -> Result<bool, StoreError> {
    exec(conn, begin).await?;
    if backend == Backend::Postgres {
        exec(conn, crate::sql::TAKE_CHAIN_LOCK).await?;
    }
    let stored = chain::load_head(conn).await?;
    let foreign = stored != audit.head_snapshot();
    audit.restore(stored);
    Ok(foreign)
}

async fn run_jobs(
    conn: &mut Tx,
    audit: &mut AuditCtx,
    jobs: Vec<(String, JobFn)>,
    completions: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    for (actor, job) in jobs {
        audit.set_actor(actor);
        let before = audit.head_snapshot();
        exec(conn, "SAVEPOINT job").await?;
        let (ok, completion) = job(conn, audit).await;
        completions.push(completion);
        if ok {
            exec(conn, "RELEASE SAVEPOINT job").await?;
        } else {
            exec(conn, "ROLLBACK TO SAVEPOINT job").await?;
            exec(conn, "RELEASE SAVEPOINT job").await?;
            audit.restore(before);
        }
    }
    Ok(())
}
