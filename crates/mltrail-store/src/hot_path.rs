//! The tracking writes the writer coalesces (see `writer`'s [`Coalesced`]): metric logs
//! (`log-metric`, metric-only `log-batch`) and, on SQLite files, run creations. A group of them
//! costs one lookup of the runs involved, one block per (run, key) and request, one upsert per
//! latest (run, key), the new runs with their tags, and their audit events.
//!
//! Same schema, same SQL, same audit events on both paths; the portable one goes through sqlx
//! inside the group's transaction, the native one through the writer's own SQLite connection
//! with statements prepared once.

use crate::audited::Audited;
use crate::metric_block::{
    blocks_of, insert_blocks, latest_per_key, metric_batch_digest, stored_value, upsert_latest,
    Block, MetricBatch, MetricInsert, UPSERT_LATEST_TAIL,
};
use crate::records::Run;
use crate::sql::{placeholders, text};
use crate::tracking::{not_found_run, NewMetric, RunDraft, RunRef, INSERT_RUN};
use crate::writer::{AuditCtx, Coalesced, Db, NativeGroup, PendingEvent, Stmt, Tx};
use crate::StoreError;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// Rows per multi-row statement; keeps bound parameters far below SQLite's limit.
const ROWS_PER_STATEMENT: usize = 100;

/// A coalesced tracking write.
pub(crate) enum Request {
    LogMetrics(MetricLog),
    /// Only on the native path; elsewhere `create_run` is a general job.
    CreateRun(RunCreate),
}

/// Metric values for one run from one request.
pub(crate) struct MetricLog {
    pub actor: String,
    pub run_id: String,
    pub metrics: Vec<NewMetric>,
    pub reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A `runs/create`.
pub(crate) struct RunCreate {
    pub actor: String,
    pub draft: RunDraft,
    pub reply: oneshot::Sender<Result<Run, StoreError>>,
}

/// The coalesced path's state: the lifecycle stage of runs that metric logs recently touched.
/// On SQLite this process is the only writer, so the cache is exact until a general job (which
/// may delete or restore a run) runs; it saves one statement per group on the hot path.
#[derive(Default)]
pub(crate) struct TrackingPath {
    stages: HashMap<String, String>,
}

/// The native path's statements, prepared once for the connection's life.
pub(crate) struct Statements {
    experiment: Stmt,
    insert_run: Stmt,
    insert_tag: Stmt,
    lookup: Stmt,
    insert_block: Stmt,
    upsert_latest: Stmt,
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
            experiment: Stmt::prepare(
                db,
                "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = ?1",
            )?,
            insert_run: Stmt::prepare(db, INSERT_RUN)?,
            insert_tag: Stmt::prepare(
                db,
                "INSERT INTO tags (run_uuid, key, value) VALUES (?1, ?2, ?3)",
            )?,
            lookup: Stmt::prepare(db, "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?1")?,
            insert_block: Stmt::prepare(
                db,
                "INSERT INTO metric_blocks (run_uuid, key, model_id, batch_id, point_count, points) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            upsert_latest: Stmt::prepare(
                db,
                &format!("INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES (?1, ?2, ?3, ?4, ?5, ?6) {UPSERT_LATEST_TAIL}"),
            )?,
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
        let logs = metric_logs(requests);
        let mut created = Vec::new();
        for create in run_creations(requests) {
            created.push(create_run_sql(tx, audit, create).await?);
        }
        let logged = apply_metric_logs(tx, audit, &logs, &mut self.stages).await?;
        Ok(Answers { created, logged })
    }

    fn apply_native(
        &mut self,
        group: &mut NativeGroup<'_, Statements>,
        requests: &[Request],
    ) -> Result<Answers, StoreError> {
        let created = run_creations(requests)
            .map(|create| create_run_native(group, create, &mut self.stages))
            .collect::<Result<Vec<_>, _>>()?;
        let logs = metric_logs(requests);
        let st = &mut *group.statements;
        let missing: Vec<String> = uncached_runs(&logs, &mut self.stages)
            .into_iter()
            .map(str::to_string)
            .collect();
        for id in missing {
            st.lookup.bind_text(1, &id)?;
            let found = st.lookup.step();
            if let Ok(true) = found {
                self.stages.insert(id, st.lookup.column_text(0));
            }
            st.lookup.reset();
            found?;
        }
        let plan = plan_metric_logs(&logs, &self.stages);
        if !plan.accepted.is_empty() {
            let insert = &mut st.insert_block;
            for block in plan.blocks(&logs) {
                insert.bind_text(1, block.run_id)?;
                insert.bind_text(2, block.key)?;
                insert.bind_opt_text(3, block.model_id)?;
                insert.bind_text(4, block.batch_id)?;
                insert.bind_i64(5, block.count)?;
                insert.bind_blob(6, &block.points)?;
                insert.step_done()?;
            }
            let upsert = &mut st.upsert_latest;
            for ((run_id, key), m) in latest_per_key(&plan.rows(&logs)) {
                let (value, nan) = stored_value(m.value);
                upsert.bind_text(1, run_id)?;
                upsert.bind_text(2, key)?;
                upsert.bind_opt_f64(3, value)?;
                upsert.bind_i64(4, nan)?;
                upsert.bind_i64(5, m.timestamp)?;
                upsert.bind_i64(6, m.step)?;
                upsert.step_done()?;
            }
            group.append(plan.events(&logs))?;
        }
        Ok(Answers {
            created,
            logged: plan.results,
        })
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

/// Inserts one run with its tags and its audit event on the native path. The outer `Err` is a
/// failed statement (the group rolls back); the inner one is this request's own answer
/// (unknown or deleted experiment).
fn create_run_native(
    group: &mut NativeGroup<'_, Statements>,
    create: &RunCreate,
    stages: &mut HashMap<String, String>,
) -> Result<Result<Run, StoreError>, StoreError> {
    let st = &mut *group.statements;
    let draft = &create.draft;
    st.experiment.bind_i64(1, draft.experiment_id)?;
    let found = st.experiment.step();
    let experiment = match found {
        Ok(true) => Some((st.experiment.column_text(0), st.experiment.column_text(1))),
        _ => None,
    };
    st.experiment.reset();
    found?;
    let (record, digest) = match draft.complete(experiment) {
        Ok(completed) => completed,
        Err(refused) => return Ok(Err(refused)),
    };
    let insert = &mut st.insert_run;
    insert.bind_text(1, &draft.id)?;
    insert.bind_i64(2, record.experiment_id)?;
    insert.bind_text(3, &record.run_name)?;
    insert.bind_text(4, &record.user_id)?;
    insert.bind_text(5, &record.status)?;
    insert.bind_opt_i64(6, record.start_time)?;
    insert.bind_text(7, &record.artifact_uri)?;
    insert.bind_text(8, &record.lifecycle_stage)?;
    insert.step_done()?;
    for (key, value) in &draft.tags {
        st.insert_tag.bind_text(1, &draft.id)?;
        st.insert_tag.bind_text(2, key)?;
        st.insert_tag.bind_text(3, value)?;
        st.insert_tag.step_done()?;
    }
    group.append(vec![PendingEvent {
        actor: create.actor.clone(),
        action: "run.create".to_string(),
        entity_type: RunRef::KIND.to_string(),
        entity_id: draft.id.clone(),
        state_digest: Some(digest),
    }])?;
    stages.insert(draft.id.clone(), record.lifecycle_stage.clone());
    Ok(Ok(draft.answer(record)))
}

/// A run creation on the portable path (not taken today: `create_run` is a general job there,
/// `crate::tracking::create_run_job`), so the path handles every request it may be given.
async fn create_run_sql(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    create: &RunCreate,
) -> Result<Result<Run, StoreError>, StoreError> {
    audit.set_actor(create.actor.clone());
    crate::tracking::insert_run(tx, audit, &create.draft).await
}

/// Decides each log's fate from the runs' lifecycle stages and names the accepted logs'
/// metric batches. Shared by the SQL and the native SQLite paths.
struct MetricPlan {
    results: Vec<Result<(), StoreError>>,
    /// (index into the logs, batch id) of every accepted log, in arrival order.
    accepted: Vec<(usize, String)>,
}

/// Run ids whose stage is not cached yet.
fn uncached_runs<'a>(logs: &[&'a MetricLog], stages: &mut HashMap<String, String>) -> Vec<&'a str> {
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

fn plan_metric_logs(logs: &[&MetricLog], stages: &HashMap<String, String>) -> MetricPlan {
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
    fn rows<'a>(&'a self, logs: &[&'a MetricLog]) -> Vec<MetricInsert<'a>> {
        self.accepted
            .iter()
            .flat_map(|(i, batch)| {
                let log = logs[*i];
                log.metrics
                    .iter()
                    .map(move |m| (log.run_id.as_str(), batch.as_str(), m))
            })
            .collect()
    }

    /// The history blocks to insert: per accepted request, one per (key, model id).
    fn blocks<'a>(&'a self, logs: &[&'a MetricLog]) -> Vec<Block<'a>> {
        self.accepted
            .iter()
            .flat_map(|(i, batch)| blocks_of(&logs[*i].run_id, batch, &logs[*i].metrics))
            .collect()
    }

    /// One event per accepted request, in arrival order; the digest is of the values inserted.
    fn events(&self, logs: &[&MetricLog]) -> Vec<PendingEvent> {
        self.accepted
            .iter()
            .map(|(i, batch)| {
                let log = logs[*i];
                let entity = MetricBatch {
                    run_id: log.run_id.clone(),
                    batch_id: batch.clone(),
                };
                PendingEvent {
                    actor: log.actor.clone(),
                    action: "run.log_metrics".to_string(),
                    entity_type: MetricBatch::KIND.to_string(),
                    entity_id: entity.id(),
                    state_digest: Some(metric_batch_digest(&log.metrics)),
                }
            })
            .collect()
    }
}

/// Applies a group's metric logs with a few statements; returns each log's own result (a log
/// for a missing or deleted run fails alone). A failing statement fails the whole group,
/// general jobs included, which the writer then rolls back.
async fn apply_metric_logs(
    conn: &mut Tx,
    audit: &mut AuditCtx,
    logs: &[&MetricLog],
    stages: &mut HashMap<String, String>,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let run_ids = uncached_runs(logs, stages);
    for chunk in run_ids.chunks(ROWS_PER_STATEMENT) {
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
    audit.append(conn, plan.events(logs)).await?;
    Ok(plan.results)
}
