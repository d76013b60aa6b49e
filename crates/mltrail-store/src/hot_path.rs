//! The tracking writes the writer coalesces (see `writer`'s [`Coalesced`]): metric logs
//! (`log-metric`, metric-only `log-batch`) and, on SQLite files, run creations. A group of them
//! costs the new runs with their tags, one lookup of the runs logged to, one block per
//! (run, key) and request, one upsert per latest (run, key), and their audit events.
//!
//! This module only dispatches: what a run creation and a metric log do, and their SQL, are
//! `runs`' and `metrics`'. What it owns is what they share across a group: the lifecycle
//! stages of the runs it has seen.

use crate::metrics::{self, LogStatements, MetricLog};
use crate::records::Run;
use crate::runs::{self, CreateStatements, RunCreate, RunStages};
use crate::writer::{AuditCtx, Coalesced, Db, NativeGroup, Tx};
use crate::StoreError;

/// A coalesced tracking write.
pub(crate) enum Request {
    LogMetrics(MetricLog),
    /// Only on the native path; elsewhere `create_run` is a general job.
    CreateRun(RunCreate),
}

impl From<MetricLog> for Request {
    fn from(log: MetricLog) -> Self {
        Request::LogMetrics(log)
    }
}

impl From<RunCreate> for Request {
    fn from(create: RunCreate) -> Self {
        Request::CreateRun(create)
    }
}

/// The lifecycle stage of runs that recent groups created or logged to. On SQLite this
/// process is the only writer, so the cache is exact until a general job (which may delete or
/// restore a run) runs; it saves one statement per group on the hot path.
#[derive(Default)]
pub(crate) struct TrackingPath {
    stages: RunStages,
}

/// The native path's statements, prepared once for the connection's life.
pub(crate) struct Statements {
    runs: CreateStatements,
    metrics: LogStatements,
}

/// Each run creation's answer and each metric log's result, in arrival order.
pub(crate) struct Answers {
    created: Vec<Result<Run, StoreError>>,
    logged: Vec<Result<(), StoreError>>,
}

impl Coalesced for TrackingPath {
    type Request = Request;
    type Answers = Answers;
    type Statements = Statements;

    fn prepare(db: &Db) -> Result<Statements, StoreError> {
        Ok(Statements {
            runs: CreateStatements::prepare(db)?,
            metrics: LogStatements::prepare(db)?,
        })
    }

    fn forget(&mut self) {
        self.stages.clear();
    }

    async fn apply<'a>(
        &'a mut self,
        tx: &'a mut Tx,
        audit: &'a mut AuditCtx,
        requests: &'a [Request],
    ) -> Result<Answers, StoreError> {
        let mut created = Vec::new();
        for create in run_creations(requests) {
            // Run creations take the native path only; handled here too, so every request
            // this path is given is answered.
            audit.set_actor(create.actor.clone());
            created.push(runs::insert_run(tx, audit, &create.draft).await?);
        }
        let logs = metric_logs(requests);
        let logged = metrics::apply_sql(tx, audit, &logs, &mut self.stages).await?;
        Ok(Answers { created, logged })
    }

    fn apply_native(
        &mut self,
        group: &mut NativeGroup<'_, Statements>,
        requests: &[Request],
    ) -> Result<Answers, StoreError> {
        // Creations first, so a log for a run created in the same group finds it.
        let created = run_creations(requests)
            .map(|create| {
                runs::create_native(
                    &mut group.statements.runs,
                    &mut group.chain,
                    create,
                    &mut self.stages,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let logged = metrics::apply_native(
            &mut group.statements.metrics,
            &mut group.chain,
            &metric_logs(requests),
            &mut self.stages,
        )?;
        Ok(Answers { created, logged })
    }

    fn answer(requests: Vec<Request>, answers: Result<Answers, StoreError>) {
        let (mut created, mut logged) = match answers {
            Ok(a) => (a.created.into_iter(), a.logged.into_iter()),
            Err(e) => {
                for request in requests {
                    match request {
                        Request::LogMetrics(log) => {
                            let _ = log.reply.send(Err(e.clone()));
                        }
                        Request::CreateRun(create) => {
                            let _ = create.reply.send(Err(e.clone()));
                        }
                    }
                }
                return;
            }
        };
        for request in requests {
            match request {
                Request::LogMetrics(log) => {
                    let _ = log.reply.send(logged.next().unwrap_or(Ok(())));
                }
                Request::CreateRun(create) => {
                    let _ = create
                        .reply
                        .send(created.next().unwrap_or(Err(StoreError::Closed)));
                }
            }
        }
    }
}

fn metric_logs(requests: &[Request]) -> Vec<&MetricLog> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::LogMetrics(log) => Some(log),
            Request::CreateRun(_) => None,
        })
        .collect()
}

fn run_creations(requests: &[Request]) -> impl Iterator<Item = &RunCreate> {
    requests.iter().filter_map(|r| match r {
        Request::CreateRun(create) => Some(create),
        Request::LogMetrics(_) => None,
    })
}
