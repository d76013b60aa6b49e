//! The audit trail's storage side: which entities exist, how their state is read for a digest,
//! the chain head the writer extends, and `verify`, which re-derives everything from the rows.

use crate::sql::{blob, int, key_value_object, opt_int, opt_text, text};
use crate::tracking::NewMetric;
use crate::{AuditCtx, MetaStore, StoreError, Tx};
use futures::TryStreamExt;
use mltrail_core::audit::state_digest as digest_of;
use mltrail_core::{AuditEvent, GENESIS_HASH};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::AnyConnection;
use std::collections::HashMap;

/// Something the audit trail records state for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    Experiment(i64),
    Run(String),
    /// The metric values one request logged (`run_id/batch_id`).
    MetricBatch {
        run_id: String,
        batch_id: String,
    },
    /// The params one request logged. Params are immutable, so like metrics they are recorded
    /// per request rather than re-digested with the run on every change.
    ParamBatch {
        run_id: String,
        batch_id: String,
    },
    LoggedModel(String),
    DatasetVersion {
        name: String,
        version: i64,
    },
    RegisteredModel(String),
    ModelVersion {
        name: String,
        version: i64,
    },
    Monitor(String),
    /// One evaluated window of a monitor.
    MonitorResult {
        monitor_id: String,
        window_start: i64,
    },
    Alert(String),
}

/// Events whose state lives outside the database carry this kind; `verify` checks their chain
/// links but not their state.
pub const ARTIFACT_KIND: &str = "artifact";

impl Entity {
    pub fn kind(&self) -> &'static str {
        match self {
            Entity::Experiment(_) => "experiment",
            Entity::Run(_) => "run",
            Entity::MetricBatch { .. } => "metrics",
            Entity::ParamBatch { .. } => "params",
            Entity::LoggedModel(_) => "logged_model",
            Entity::DatasetVersion { .. } => "dataset_version",
            Entity::RegisteredModel(_) => "registered_model",
            Entity::ModelVersion { .. } => "model_version",
            Entity::Monitor(_) => "monitor",
            Entity::MonitorResult { .. } => "monitor_result",
            Entity::Alert(_) => "alert",
        }
    }

    pub fn id(&self) -> String {
        match self {
            Entity::Experiment(id) => id.to_string(),
            Entity::Run(id)
            | Entity::LoggedModel(id)
            | Entity::RegisteredModel(id)
            | Entity::Monitor(id)
            | Entity::Alert(id) => id.clone(),
            Entity::MonitorResult {
                monitor_id,
                window_start,
            } => format!("{monitor_id}/{window_start}"),
            Entity::MetricBatch { run_id, batch_id } | Entity::ParamBatch { run_id, batch_id } => {
                format!("{run_id}/{batch_id}")
            }
            Entity::ModelVersion { name, version } | Entity::DatasetVersion { name, version } => {
                format!("{name}/{version}")
            }
        }
    }

    pub fn parse(kind: &str, id: &str) -> Option<Entity> {
        Some(match kind {
            "experiment" => Entity::Experiment(id.parse().ok()?),
            "run" => Entity::Run(id.to_string()),
            "metrics" => {
                let (run_id, batch_id) = id.split_once('/')?;
                Entity::MetricBatch {
                    run_id: run_id.into(),
                    batch_id: batch_id.into(),
                }
            }
            "params" => {
                let (run_id, batch_id) = id.split_once('/')?;
                Entity::ParamBatch {
                    run_id: run_id.into(),
                    batch_id: batch_id.into(),
                }
            }
            "logged_model" => Entity::LoggedModel(id.to_string()),
            "dataset_version" => {
                let (name, version) = id.rsplit_once('/')?;
                Entity::DatasetVersion {
                    name: name.into(),
                    version: version.parse().ok()?,
                }
            }
            "registered_model" => Entity::RegisteredModel(id.to_string()),
            "monitor" => Entity::Monitor(id.to_string()),
            "alert" => Entity::Alert(id.to_string()),
            "monitor_result" => {
                let (monitor_id, start) = id.rsplit_once('/')?;
                Entity::MonitorResult {
                    monitor_id: monitor_id.into(),
                    window_start: start.parse().ok()?,
                }
            }
            "model_version" => {
                let (name, version) = id.rsplit_once('/')?;
                Entity::ModelVersion {
                    name: name.into(),
                    version: version.parse().ok()?,
                }
            }
            _ => return None,
        })
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

/// A `runs` row, as the audit trail records it.
pub(crate) struct RunRecord {
    pub experiment_id: i64,
    pub run_name: String,
    pub user_id: String,
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
    pub deleted_time: Option<i64>,
}

/// The recorded state of a run: its row, tags (`{key: value}`), inputs and outputs. Shared by
/// `load_state` (what `verify` reads back) and `create_run` (which knows the new run's state
/// without reading it back).
pub(crate) fn run_state(
    run: &RunRecord,
    tags: Value,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
) -> Value {
    json!({
        "experiment_id": run.experiment_id,
        "run_name": run.run_name,
        "user_id": run.user_id,
        "status": run.status,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "artifact_uri": run.artifact_uri,
        "lifecycle_stage": run.lifecycle_stage,
        "deleted_time": run.deleted_time,
        "tags": tags,
        "inputs": inputs,
        "outputs": outputs,
    })
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

/// The recorded state of one param request: (key, value) pairs sorted by key bytes.
pub(crate) fn param_batch_state(mut pairs: Vec<(String, String)>) -> Value {
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Value::Array(pairs.into_iter().map(|(k, v)| json!([k, v])).collect())
}

async fn kv(conn: &mut AnyConnection, sql: &'static str, id: &str) -> Result<Value, StoreError> {
    let rows = sqlx::query(sql)
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    key_value_object(&rows)
}

/// The entity's current state as JSON, or `None` when it does not exist. This one function is
/// what the writer digests when recording and what `verify` digests when checking.
pub async fn load_state(
    conn: &mut AnyConnection,
    entity: &Entity,
) -> Result<Option<Value>, StoreError> {
    match entity {
        Entity::Experiment(id) => {
            let Some(row) = sqlx::query("SELECT * FROM experiments WHERE experiment_id = $1")
                .bind(*id)
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let tags = {
                let rows =
                    sqlx::query("SELECT key, value FROM experiment_tags WHERE experiment_id = $1")
                        .bind(*id)
                        .fetch_all(&mut *conn)
                        .await?;
                key_value_object(&rows)?
            };
            Ok(Some(json!({
                "name": text(&row, "name")?,
                "artifact_location": text(&row, "artifact_location")?,
                "lifecycle_stage": text(&row, "lifecycle_stage")?,
                "creation_time": int(&row, "creation_time")?,
                "last_update_time": int(&row, "last_update_time")?,
                "tags": tags,
            })))
        }
        Entity::Run(id) => {
            let Some(row) = sqlx::query("SELECT * FROM runs WHERE run_uuid = $1")
                .bind(id.clone())
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let tags = kv(conn, "SELECT key, value FROM tags WHERE run_uuid = $1", id).await?;
            let inputs: Vec<Value> = sqlx::query("SELECT dataset_name, dataset_digest, dataset_json, tags_json FROM run_inputs WHERE run_uuid = $1 ORDER BY dataset_name, dataset_digest")
                .bind(id.clone())
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok(json!([text(r, "dataset_name")?, text(r, "dataset_digest")?, text(r, "dataset_json")?, text(r, "tags_json")?])))
                .collect::<Result<_, StoreError>>()?;
            let outputs: Vec<Value> = sqlx::query(
                "SELECT model_id, step FROM run_outputs WHERE run_uuid = $1 ORDER BY model_id",
            )
            .bind(id.clone())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok(json!([text(r, "model_id")?, int(r, "step")?])))
            .collect::<Result<_, StoreError>>()?;
            Ok(Some(run_state(
                &RunRecord {
                    experiment_id: int(&row, "experiment_id")?,
                    run_name: text(&row, "run_name")?,
                    user_id: text(&row, "user_id")?,
                    status: text(&row, "status")?,
                    start_time: opt_int(&row, "start_time")?,
                    end_time: opt_int(&row, "end_time")?,
                    artifact_uri: text(&row, "artifact_uri")?,
                    lifecycle_stage: text(&row, "lifecycle_stage")?,
                    deleted_time: opt_int(&row, "deleted_time")?,
                },
                tags,
                inputs,
                outputs,
            )))
        }
        Entity::MetricBatch { run_id, batch_id } => {
            // By batch id alone: with run_uuid in the WHERE clause SQLite may walk the
            // (run_uuid, key) index, which grows with every value the run logged.
            let rows = sqlx::query(
                "SELECT run_uuid, key, model_id, points FROM metric_blocks WHERE batch_id = $1",
            )
            .bind(batch_id.clone())
            .fetch_all(&mut *conn)
            .await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let mut values = Vec::new();
            for r in &rows {
                if &text(r, "run_uuid")? != run_id {
                    return Ok(Some(json!(["moved to another run", text(r, "run_uuid")?])));
                }
                let key = text(r, "key")?;
                let model_id = opt_text(r, "model_id")?;
                for p in crate::metric_block::decode(&blob(r, "points")?)? {
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
        Entity::ParamBatch { run_id, batch_id } => {
            let rows = sqlx::query("SELECT run_uuid, key, value FROM params WHERE batch_id = $1")
                .bind(batch_id.clone())
                .fetch_all(&mut *conn)
                .await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let mut pairs = Vec::with_capacity(rows.len());
            for r in &rows {
                if &text(r, "run_uuid")? != run_id {
                    return Ok(Some(json!(["moved to another run", text(r, "run_uuid")?])));
                }
                pairs.push((text(r, "key")?, text(r, "value")?));
            }
            Ok(Some(param_batch_state(pairs)))
        }
        Entity::DatasetVersion { name, version } => {
            let Some(row) =
                sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 AND version = $2")
                    .bind(name.clone())
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await?
            else {
                return Ok(None);
            };
            let v = crate::datasets::from_row(&row)?;
            Ok(Some(
                json!({"file": v.file, "created_time": v.created_time, "created_by": v.created_by}),
            ))
        }
        Entity::Monitor(id) => Ok(crate::monitors::find_monitor(conn, id)
            .await?
            .as_ref()
            .map(crate::monitors::monitor_state)),
        Entity::MonitorResult {
            monitor_id,
            window_start,
        } => crate::monitors::find_result(conn, monitor_id, *window_start)
            .await?
            .as_ref()
            .map(crate::monitors::row_state)
            .transpose(),
        Entity::Alert(id) => crate::monitors::find_alert(conn, id)
            .await?
            .as_ref()
            .map(crate::monitors::row_state)
            .transpose(),
        Entity::LoggedModel(id) => {
            let Some(row) = sqlx::query("SELECT * FROM logged_models WHERE model_id = $1")
                .bind(id.clone())
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let tags = kv(
                conn,
                "SELECT key, value FROM logged_model_tags WHERE model_id = $1",
                id,
            )
            .await?;
            let params = kv(
                conn,
                "SELECT key, value FROM logged_model_params WHERE model_id = $1",
                id,
            )
            .await?;
            Ok(Some(json!({
                "experiment_id": int(&row, "experiment_id")?,
                "name": text(&row, "name")?,
                "artifact_uri": text(&row, "artifact_uri")?,
                "status": text(&row, "status")?,
                "creation_time": int(&row, "creation_time")?,
                "last_updated_time": int(&row, "last_updated_time")?,
                "source_run_id": opt_text(&row, "source_run_id")?,
                "model_type": opt_text(&row, "model_type")?,
                "lifecycle_stage": text(&row, "lifecycle_stage")?,
                "tags": tags,
                "params": params,
            })))
        }
        Entity::RegisteredModel(name) => {
            let Some(row) = sqlx::query("SELECT * FROM registered_models WHERE name = $1")
                .bind(name.clone())
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let tags = kv(
                conn,
                "SELECT key, value FROM registered_model_tags WHERE name = $1",
                name,
            )
            .await?;
            let aliases = kv(conn, "SELECT alias AS key, CAST(version AS TEXT) AS value FROM registered_model_aliases WHERE name = $1", name).await?;
            Ok(Some(json!({
                "creation_time": int(&row, "creation_time")?,
                "last_updated_time": int(&row, "last_updated_time")?,
                "description": text(&row, "description")?,
                "tags": tags,
                "aliases": aliases,
            })))
        }
        Entity::ModelVersion { name, version } => {
            let Some(row) =
                sqlx::query("SELECT * FROM model_versions WHERE name = $1 AND version = $2")
                    .bind(name.clone())
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await?
            else {
                return Ok(None);
            };
            let rows = sqlx::query(
                "SELECT key, value FROM model_version_tags WHERE name = $1 AND version = $2",
            )
            .bind(name.clone())
            .bind(*version)
            .fetch_all(&mut *conn)
            .await?;
            let tags = key_value_object(&rows)?;
            Ok(Some(json!({
                "creation_time": int(&row, "creation_time")?,
                "last_updated_time": int(&row, "last_updated_time")?,
                "description": text(&row, "description")?,
                "user_id": text(&row, "user_id")?,
                "current_stage": text(&row, "current_stage")?,
                "source": text(&row, "source")?,
                "run_id": text(&row, "run_id")?,
                "status": text(&row, "status")?,
                "model_id": text(&row, "model_id")?,
                "tags": tags,
            })))
        }
    }
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
        let digest = load_state(tx, entity).await?.map(|s| digest_of(&s));
        self.record_external(tx, action, entity.kind(), &entity.id(), digest)
            .await
    }
}

/// (entity type, entity id) → (seq, digest) of its latest event.
type LatestByEntity = HashMap<(String, String), (i64, Option<String>)>;

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokenLink {
    /// The event at which the chain or the state stops matching (0 when a row has no event).
    pub seq: i64,
    pub entity_type: String,
    pub entity_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub events: i64,
    pub entities_checked: usize,
    pub broken: Option<BrokenLink>,
}

/// Recomputes the chain from the genesis hash, then checks that every entity's current state
/// digests to what its latest event recorded, and that no audited row exists without an event.
pub async fn verify(store: &MetaStore) -> Result<VerifyReport, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let mut latest: LatestByEntity = HashMap::new();
    let mut prev = GENESIS_HASH;
    let mut expected_seq = 1;
    let mut events = 0;
    let mut broken: Option<BrokenLink> = None;
    {
        let mut rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq").fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let event = AuditEvent {
                seq: int(&row, "seq")?,
                time: int(&row, "time")?,
                actor: text(&row, "actor")?,
                action: text(&row, "action")?,
                entity_type: text(&row, "entity_type")?,
                entity_id: text(&row, "entity_id")?,
                state_digest: opt_text(&row, "state_digest")?,
            };
            let link = |reason: String| BrokenLink {
                seq: event.seq,
                entity_type: event.entity_type.clone(),
                entity_id: event.entity_id.clone(),
                reason,
            };
            if event.seq != expected_seq {
                broken = Some(link(format!(
                    "expected event {expected_seq}, found {}: events are missing",
                    event.seq
                )));
                break;
            }
            let recomputed = prev.next(&event);
            if recomputed.to_hex() != text(&row, "hash")? {
                broken = Some(link("the event's hash does not match its content and the previous link: the event was edited".into()));
                break;
            }
            prev = recomputed;
            expected_seq += 1;
            events += 1;
            latest.insert(
                (event.entity_type.clone(), event.entity_id.clone()),
                (event.seq, event.state_digest.clone()),
            );
        }
    }
    if broken.is_some() {
        return Ok(VerifyReport {
            events,
            entities_checked: 0,
            broken,
        });
    }
    let mut ordered: Vec<_> = latest.iter().collect();
    ordered.sort_by_key(|(_, (seq, _))| *seq);
    let mut checked = 0;
    for ((kind, id), (seq, recorded)) in ordered {
        let Some(entity) = Entity::parse(kind, id) else {
            continue;
        };
        let actual = load_state(&mut conn, &entity).await?.map(|s| digest_of(&s));
        checked += 1;
        if &actual != recorded {
            let reason = match (&actual, recorded) {
                (None, Some(_)) => "the row was deleted after this event recorded it".to_string(),
                (Some(_), None) => "the row exists although this event recorded its deletion".to_string(),
                _ => "the stored state differs from the digest this event recorded: the row was edited".to_string(),
            };
            return Ok(VerifyReport {
                events,
                entities_checked: checked,
                broken: Some(BrokenLink {
                    seq: *seq,
                    entity_type: kind.clone(),
                    entity_id: id.clone(),
                    reason,
                }),
            });
        }
    }
    if let Some(orphan) = find_unrecorded_row(&mut conn, &latest).await? {
        return Ok(VerifyReport {
            events,
            entities_checked: checked,
            broken: Some(orphan),
        });
    }
    Ok(VerifyReport {
        events,
        entities_checked: checked,
        broken: None,
    })
}

async fn find_unrecorded_row(
    conn: &mut AnyConnection,
    latest: &LatestByEntity,
) -> Result<Option<BrokenLink>, StoreError> {
    let queries: [(&str, &str); 11] = [
        (
            "experiment",
            "SELECT CAST(experiment_id AS TEXT) AS id FROM experiments",
        ),
        ("run", "SELECT run_uuid AS id FROM runs"),
        (
            "metrics",
            "SELECT DISTINCT run_uuid || '/' || batch_id AS id FROM metric_blocks",
        ),
        (
            "params",
            "SELECT DISTINCT run_uuid || '/' || batch_id AS id FROM params",
        ),
        ("logged_model", "SELECT model_id AS id FROM logged_models"),
        (
            "registered_model",
            "SELECT name AS id FROM registered_models",
        ),
        (
            "model_version",
            "SELECT name || '/' || CAST(version AS TEXT) AS id FROM model_versions",
        ),
        (
            "dataset_version",
            "SELECT name || '/' || CAST(version AS TEXT) AS id FROM dataset_versions",
        ),
        ("monitor", "SELECT monitor_id AS id FROM monitors"),
        (
            "monitor_result",
            "SELECT monitor_id || '/' || CAST(window_start AS TEXT) AS id FROM monitor_results",
        ),
        ("alert", "SELECT alert_id AS id FROM alerts"),
    ];
    for (kind, sql) in queries {
        let mut rows = sqlx::query(sql).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let id = text(&row, "id")?;
            if !latest.contains_key(&(kind.to_string(), id.clone())) {
                return Ok(Some(BrokenLink {
                    seq: 0,
                    entity_type: kind.into(),
                    entity_id: id,
                    reason: "this row has no audit event: it was inserted behind the server's back"
                        .into(),
                }));
            }
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Serialize)]
pub struct LoggedEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    pub hash: String,
}

/// Events in sequence order, optionally only those of one entity (`run:<id>`, `experiment:<id>`,
/// or just a type such as `registered_model`).
pub async fn list_events(
    store: &MetaStore,
    entity: Option<&str>,
    limit: i64,
) -> Result<Vec<LoggedEvent>, StoreError> {
    let (kind, id) = match entity {
        None => (None, None),
        Some(spec) => match spec.split_once(':') {
            Some((k, i)) => (Some(k.to_string()), Some(i.to_string())),
            None => (Some(spec.to_string()), None),
        },
    };
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE ($1 = '' OR entity_type = $1) AND ($2 = '' OR entity_id = $2) ORDER BY seq LIMIT $3",
    )
    .bind(kind.unwrap_or_default())
    .bind(id.unwrap_or_default())
    .bind(limit)
    .fetch_all(store.readers())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LoggedEvent {
                event: AuditEvent {
                    seq: int(row, "seq")?,
                    time: int(row, "time")?,
                    actor: text(row, "actor")?,
                    action: text(row, "action")?,
                    entity_type: text(row, "entity_type")?,
                    entity_id: text(row, "entity_id")?,
                    state_digest: opt_text(row, "state_digest")?,
                },
                hash: text(row, "hash")?,
            })
        })
        .collect()
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
