//! Metrics: the values a run logs, MLflow's batch rules, their history, the latest value per
//! key, and the state the audit trail records for each request's values. Metric logs are the
//! hottest write: a metric-only request joins the writer's coalesced path (`hot_path`), which
//! runs the plan, statements and events defined here for a whole group at once.

pub(crate) mod block;

pub(crate) use block::{insert_blocks, upsert_latest, MetricInsert};

use crate::audited::Audited;
use crate::error::Invalid;
use crate::names::{validate_key, validate_len, MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN};
use crate::records::*;
use crate::runs::{self, check_active, RunStages};
use crate::sql::{blob, opt_text, placeholders, text};
use crate::writer::{Db, NativeChain, PendingEvent, Stmt};
use crate::{AuditCtx, MetaStore, StoreError, Tx};
use block::{blocks_of, latest_per_key, stored_value, Block, UPSERT_LATEST_TAIL};
use mltrail_core::RunId;
use serde_json::{json, Value};
use sqlx::AnyConnection;
use tokio::sync::oneshot;

pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;

/// Rows per multi-row statement; keeps bound parameters far below SQLite's limit.
const ROWS_PER_STATEMENT: usize = 100;

/// A metric value as submitted.
#[derive(Debug, Clone)]
pub struct NewMetric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    pub model_id: Option<String>,
}

/// The metric values one request logged (`run_id/batch_id`), as the audit trail records them.
pub(crate) struct MetricBatch {
    pub run_id: String,
    pub batch_id: String,
}

impl Audited for MetricBatch {
    const KIND: &'static str = "metrics";
    const LIST_IDS: &'static str =
        "SELECT DISTINCT run_uuid || '/' || batch_id AS id FROM metric_blocks";

    fn parse(id: &str) -> Option<Self> {
        let (run_id, batch_id) = id.split_once('/')?;
        Some(MetricBatch {
            run_id: run_id.into(),
            batch_id: batch_id.into(),
        })
    }

    fn id(&self) -> String {
        format!("{}/{}", self.run_id, self.batch_id)
    }

    async fn state(&self, conn: &mut AnyConnection) -> Result<Option<Value>, StoreError> {
        // By batch id alone: with run_uuid in the WHERE clause SQLite may walk the
        // (run_uuid, key) index, which grows with every value the run logged.
        let rows = sqlx::query(
            "SELECT run_uuid, key, model_id, points FROM metric_blocks WHERE batch_id = $1",
        )
        .bind(self.batch_id.clone())
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut values = Vec::new();
        for r in &rows {
            if text(r, "run_uuid")? != self.run_id {
                return Ok(Some(json!(["moved to another run", text(r, "run_uuid")?])));
            }
            let key = text(r, "key")?;
            let model_id = opt_text(r, "model_id")?;
            for p in block::decode(&blob(r, "points")?)? {
                values.push(NewMetric {
                    key: key.clone(),
                    value: p.value,
                    timestamp: p.timestamp,
                    step: p.step,
                    model_id: model_id.clone(),
                });
            }
        }
        Ok(Some(metric_batch_state(values)))
    }
}

/// The recorded state of one metric request. Shared by the writer (which digests the values
/// it is inserting, without reading them back) and by `verify` (which digests what is stored),
/// so both sides sort and format identically, whatever the database's collation.
pub(crate) fn metric_batch_state(mut rows: Vec<NewMetric>) -> Value {
    rows.sort_by(audit_order);
    Value::Array(
        rows.into_iter()
            // Display keeps NaN and infinities distinct, which JSON numbers cannot.
            .map(|m| json!([m.key, m.value.to_string(), m.timestamp, m.step, m.model_id]))
            .collect(),
    )
}

/// The order a metric request's values are digested in: key bytes (not the database's
/// collation), then step, timestamp and value.
fn audit_order(a: &NewMetric, b: &NewMetric) -> std::cmp::Ordering {
    a.key
        .as_bytes()
        .cmp(b.key.as_bytes())
        .then(a.step.cmp(&b.step))
        .then(a.timestamp.cmp(&b.timestamp))
        .then(a.value.total_cmp(&b.value))
}

/// The digest of [`metric_batch_state`] over `metrics`, written straight into the hash: the
/// writer digests every request it commits, and building the JSON tree for a 1,000-value
/// batch cost more than inserting it. Byte-for-byte the canonical JSON of that state (a test
/// holds the two together), so `verify` can keep recomputing it from the stored rows.
pub(crate) fn metric_batch_digest(metrics: &[NewMetric]) -> String {
    let mut order: Vec<&NewMetric> = metrics.iter().collect();
    order.sort_by(|a, b| audit_order(a, b));
    let mut text = String::with_capacity(16 + metrics.len() * 48);
    text.push('[');
    for (i, m) in order.into_iter().enumerate() {
        use std::fmt::Write;
        if i > 0 {
            text.push(',');
        }
        text.push('[');
        push_json_string(&mut text, &m.key);
        // The value as its Display string, as in `metric_batch_state`; never needs escaping.
        let _ = write!(text, ",\"{}\",{},{},", m.value, m.timestamp, m.step);
        match &m.model_id {
            Some(id) => push_json_string(&mut text, id),
            None => text.push_str("null"),
        }
        text.push(']');
    }
    text.push(']');
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's string escaping, the same the canonical form uses.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

async fn insert_metrics(
    tx: &mut Tx,
    run_id: &str,
    batch_id: &str,
    metrics: &[NewMetric],
) -> Result<(), StoreError> {
    insert_blocks(tx, &blocks_of(run_id, batch_id, metrics)).await?;
    let rows: Vec<MetricInsert> = metrics.iter().map(|m| (run_id, batch_id, m)).collect();
    upsert_latest(tx, &rows).await
}

/// What one logging request carries (`log-batch`; with one element, `log-metric`,
/// `log-parameter`, `set-tag`), checked against MLflow's batch limits and key rules.
#[derive(Debug, Clone)]
pub struct Batch {
    metrics: Vec<NewMetric>,
    params: Vec<KeyValue>,
    tags: Vec<KeyValue>,
}

impl Batch {
    /// Checks the batch; `None` when it holds nothing, which MLflow accepts without looking
    /// the run up (so the caller need not name a run that exists).
    pub fn new(
        metrics: Vec<NewMetric>,
        params: Vec<KeyValue>,
        tags: Vec<KeyValue>,
    ) -> Result<Option<Batch>, StoreError> {
        if metrics.len() > MAX_BATCH_METRICS
            || params.len() > MAX_BATCH_PARAMS
            || tags.len() > MAX_BATCH_TAGS
        {
            return Err(Invalid::BatchTooLarge {
                max_metrics: MAX_BATCH_METRICS,
                max_params: MAX_BATCH_PARAMS,
                max_tags: MAX_BATCH_TAGS,
                metrics: metrics.len(),
                params: params.len(),
                tags: tags.len(),
            }
            .into());
        }
        for m in &metrics {
            validate_key("metric", &m.key)?;
        }
        for p in &params {
            validate_key("parameter", &p.key)?;
            validate_len("Param", &p.key, &p.value, MAX_PARAM_VALUE_LEN)?;
        }
        for t in &tags {
            validate_key("tag", &t.key)?;
            validate_len("Tag", &t.key, &t.value, MAX_TAG_VALUE_LEN)?;
        }
        let empty = metrics.is_empty() && params.is_empty() && tags.is_empty();
        Ok((!empty).then_some(Batch {
            metrics,
            params,
            tags,
        }))
    }
}

/// Logs a batch to a run, all or nothing. A metric-only batch takes the writer's coalesced
/// path.
pub async fn log_batch(
    store: &MetaStore,
    actor: &str,
    run_id: RunId,
    batch: Batch,
) -> Result<(), StoreError> {
    let Batch {
        metrics,
        params,
        tags,
    } = batch;
    let run_id = run_id.into_inner();
    if params.is_empty() && tags.is_empty() {
        let (reply, answer) = oneshot::channel();
        let log = MetricLog {
            actor: actor.to_string(),
            run_id,
            metrics,
            reply,
        };
        return store.coalesce(log, answer).await;
    }
    // Up to three events: the params, the run (its tags), the metrics.
    store
        .transaction(actor, async move |tx, audit| {
            runs::require_active_run(tx, &run_id).await?;
            if !params.is_empty() {
                runs::log_params(tx, audit, &run_id, &params).await?;
            }
            if !tags.is_empty() {
                runs::set_tags(tx, audit, &run_id, &tags).await?;
            }
            if !metrics.is_empty() {
                let batch_id = uuid::Uuid::now_v7().simple().to_string();
                insert_metrics(tx, &run_id, &batch_id, &metrics).await?;
                let batch = MetricBatch {
                    run_id: run_id.clone(),
                    batch_id,
                };
                audit.record(tx, "run.log_metrics", &batch).await?;
            }
            Ok(())
        })
        .await
}

pub async fn metric_history(
    store: &MetaStore,
    run_id: &RunId,
    key: &str,
    max_results: i64,
    page: PageToken,
) -> Result<Page<Metric>, StoreError> {
    let offset = page.offset();
    let run_id = run_id.as_str();
    let mut conn = store.readers().acquire().await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT run_uuid FROM runs WHERE run_uuid = $1")
            .bind(run_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_none() {
        return Err(runs::not_found_run(run_id));
    }
    let blocks = sqlx::query("SELECT points FROM metric_blocks WHERE run_uuid = $1 AND key = $2")
        .bind(run_id.to_string())
        .bind(key.to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut points = Vec::new();
    for block in &blocks {
        points.extend(block::decode(&blob(block, "points")?)?);
    }
    block::sort_history(&mut points);
    // One more than the page, so `page_of` can tell whether another page follows.
    let metrics = points
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(max_results + 1).unwrap_or(usize::MAX))
        .map(|p| Metric {
            key: key.to_string(),
            value: MetricValue(p.value),
            timestamp: p.timestamp,
            step: p.step,
            run_id: None,
        })
        .collect();
    Ok(page_of(metrics, offset, max_results))
}

// ---------------------------------------------------------------- the coalesced path

/// Metric values for one run from one request, on the writer's coalesced path.
pub(crate) struct MetricLog {
    pub actor: String,
    pub run_id: String,
    pub metrics: Vec<NewMetric>,
    pub reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The native path's statements for metric logs, prepared once for the connection's life.
pub(crate) struct LogStatements {
    lookup: Stmt,
    insert_block: Stmt,
    upsert_latest: Stmt,
}

impl LogStatements {
    pub(crate) fn prepare(db: &Db) -> Result<Self, StoreError> {
        Ok(LogStatements {
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
}

/// Decides each log's fate from the runs' lifecycle stages and names the accepted logs'
/// metric batches. Shared by the SQL and the native SQLite paths.
struct MetricPlan {
    results: Vec<Result<(), StoreError>>,
    /// (index into the logs, batch id) of every accepted log, in arrival order.
    accepted: Vec<(usize, String)>,
}

/// Run ids whose stage is not cached yet.
fn uncached_runs<'a>(logs: &[&'a MetricLog], stages: &mut RunStages) -> Vec<&'a str> {
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

fn plan_metric_logs(logs: &[&MetricLog], stages: &RunStages) -> MetricPlan {
    let results: Vec<Result<(), StoreError>> = logs
        .iter()
        .map(|log| check_active(&log.run_id, stages.get(&log.run_id).map(String::as_str)))
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

/// Applies a group's metric logs on the native connection; returns each log's own result.
pub(crate) fn apply_native(
    st: &mut LogStatements,
    chain: &mut NativeChain<'_>,
    logs: &[&MetricLog],
    stages: &mut RunStages,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let missing: Vec<String> = uncached_runs(logs, stages)
        .into_iter()
        .map(str::to_string)
        .collect();
    for id in missing {
        st.lookup.bind_text(1, &id)?;
        let found = st.lookup.step();
        if let Ok(true) = found {
            stages.insert(id, st.lookup.column_text(0));
        }
        st.lookup.reset();
        found?;
    }
    let plan = plan_metric_logs(logs, stages);
    if !plan.accepted.is_empty() {
        let insert = &mut st.insert_block;
        for block in plan.blocks(logs) {
            insert.bind_text(1, block.run_id)?;
            insert.bind_text(2, block.key)?;
            insert.bind_opt_text(3, block.model_id)?;
            insert.bind_text(4, block.batch_id)?;
            insert.bind_i64(5, block.count)?;
            insert.bind_blob(6, &block.points)?;
            insert.step_done()?;
        }
        let upsert = &mut st.upsert_latest;
        for ((run_id, key), m) in latest_per_key(&plan.rows(logs)) {
            let (value, nan) = stored_value(m.value);
            upsert.bind_text(1, run_id)?;
            upsert.bind_text(2, key)?;
            upsert.bind_opt_f64(3, value)?;
            upsert.bind_i64(4, nan)?;
            upsert.bind_i64(5, m.timestamp)?;
            upsert.bind_i64(6, m.step)?;
            upsert.step_done()?;
        }
        chain.append(plan.events(logs))?;
    }
    Ok(plan.results)
}

/// Applies a group's metric logs with a few statements; returns each log's own result (a log
/// for a missing or deleted run fails alone). A failing statement fails the whole group,
/// general jobs included, which the writer then rolls back.
pub(crate) async fn apply_sql(
    conn: &mut Tx,
    audit: &mut AuditCtx,
    logs: &[&MetricLog],
    stages: &mut RunStages,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_metric_digest_equals_the_canonical_state_digest() {
        let metric = |key: &str, value: f64, step: i64, model: Option<&str>| NewMetric {
            key: key.into(),
            value,
            timestamp: 1_700_000_000_000_i64.wrapping_sub(step),
            step,
            model_id: model.map(str::to_string),
        };
        let metrics = vec![
            metric("loss", 0.5, 2, None),
            metric("loss", 0.1 + 0.2, 1, None),
            metric("acc", f64::NAN, 1, Some("m-\"1\"")),
            metric("acc", f64::INFINITY, 1, None),
            metric("acc", f64::NEG_INFINITY, -4, None),
            metric("we\\ird \u{1}\n ключ", -0.0, 0, None),
            metric("big", 1e300, i64::MAX, None),
            metric("tiny", 5e-324, i64::MIN, None),
        ];
        assert_eq!(
            metric_batch_digest(&metrics),
            mltrail_core::audit::state_digest(&metric_batch_state(metrics.clone()))
        );
        assert_eq!(
            metric_batch_digest(&[]),
            mltrail_core::audit::state_digest(&metric_batch_state(Vec::new()))
        );
    }
}
