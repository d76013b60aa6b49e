//! Runs: their rows, tags, params, inputs and outputs, MLflow's rules for them, and the state the
//! audit trail records for a run and for a request's params. A run's metrics are `metrics`'.
//! Creating a run goes through the writer's coalesced path on SQLite files (`hot_path`), with
//! the statements prepared here.

use crate::audited::{text_key, Audited};
use crate::datasets;
use crate::error::{Conflict, Invalid, NotFound};
use crate::names::{validate_key, validate_len, MAX_TAG_VALUE_LEN};
use crate::records::*;
use crate::sql::{
    fetch_ids, int, key_value, key_value_object_of, metric_value, opt_int, placeholders, text,
    values_rows,
};
use crate::writer::{Db, NativeChain, PendingEvent, Stmt};
use crate::{AuditCtx, MetaStore, StoreError, Tx};
use mltrail_core::state::{LifecycleStage, RunStatus, ViewType};
use mltrail_core::{now_millis, ExperimentId, RunId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;

pub(crate) fn not_found_run(run_id: &str) -> StoreError {
    NotFound::Run(run_id.to_string()).into()
}

/// A run id as a request spelled it; one that is not 32 hex digits names no run, and is
/// answered as any unknown run is.
pub fn parse_run_id(raw: &str) -> Result<RunId, StoreError> {
    RunId::parse(raw).ok_or_else(|| not_found_run(raw))
}

/// A run, as the audit trail records it: its row, tags, inputs and outputs (params and metrics
/// are recorded per request, as [`ParamBatch`]es and metric batches).
pub(crate) struct RunRef(pub String);

impl Audited for RunRef {
    const KIND: &'static str = "run";
    const LIST_IDS: &'static str = "SELECT run_uuid AS id FROM runs";

    text_key!(RunRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let id = &self.0;
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE run_uuid = $1")
            .bind(id.clone())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let tags = key_value_object_of(conn, "SELECT key, value FROM tags WHERE run_uuid = $1", id)
            .await?;
        let inputs: Vec<serde_json::Value> = sqlx::query("SELECT dataset_name, dataset_digest, dataset_json, tags_json FROM run_inputs WHERE run_uuid = $1 ORDER BY dataset_name, dataset_digest")
            .bind(id.clone())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok(json!([text(r, "dataset_name")?, text(r, "dataset_digest")?, text(r, "dataset_json")?, text(r, "tags_json")?])))
            .collect::<Result<_, StoreError>>()?;
        let outputs: Vec<serde_json::Value> = sqlx::query(
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
/// [`RunRef::state`] (what `verify` reads back) and `create_run` (which knows the new run's
/// state without reading it back).
pub(crate) fn run_state(
    run: &RunRecord,
    tags: serde_json::Value,
    inputs: Vec<serde_json::Value>,
    outputs: Vec<serde_json::Value>,
) -> serde_json::Value {
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

/// The params one request logged. Params are immutable, so like metrics they are recorded per
/// request rather than re-digested with the run on every change.
pub(crate) struct ParamBatch {
    pub run_id: String,
    pub batch_id: String,
}

impl Audited for ParamBatch {
    const KIND: &'static str = "params";
    const LIST_IDS: &'static str = "SELECT DISTINCT run_uuid || '/' || batch_id AS id FROM params";

    fn parse(id: &str) -> Option<Self> {
        let (run_id, batch_id) = id.split_once('/')?;
        Some(ParamBatch {
            run_id: run_id.into(),
            batch_id: batch_id.into(),
        })
    }

    fn id(&self) -> String {
        format!("{}/{}", self.run_id, self.batch_id)
    }

    /// Its (key, value) pairs sorted by key bytes.
    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let rows = sqlx::query("SELECT run_uuid, key, value FROM params WHERE batch_id = $1")
            .bind(self.batch_id.clone())
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut pairs = Vec::with_capacity(rows.len());
        for r in &rows {
            if text(r, "run_uuid")? != self.run_id {
                return Ok(Some(json!(["moved to another run", text(r, "run_uuid")?])));
            }
            pairs.push((text(r, "key")?, text(r, "value")?));
        }
        pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(Some(serde_json::Value::Array(
            pairs.into_iter().map(|(k, v)| json!([k, v])).collect(),
        )))
    }
}

/// Fields of `runs/create`.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub experiment_id: ExperimentId,
    pub user_id: String,
    pub run_name: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

pub(crate) const RUN_NAME_TAG: &str = "mlflow.runName";

/// MLflow names unnamed runs with two words and a number; so do we, deterministically from the id.
fn generated_run_name(run_id: &RunId) -> String {
    const ADJECTIVES: [&str; 16] = [
        "able", "bold", "calm", "deft", "eager", "fair", "glad", "keen", "lucid", "merry", "neat",
        "quick", "sharp", "swift", "vivid", "wise",
    ];
    const NOUNS: [&str; 16] = [
        "otter", "heron", "lynx", "finch", "panda", "wren", "bison", "crane", "gecko", "koala",
        "mole", "newt", "owl", "stork", "tern", "yak",
    ];
    let bytes = run_id.as_str().as_bytes();
    let a = (bytes[0] as usize) % 16;
    let n = (bytes[1] as usize + bytes[2] as usize) % 16;
    let num = u32::from_str_radix(&run_id.as_str()[28..32], 16).unwrap_or(0) % 1000;
    format!("{}-{}-{}", ADJECTIVES[a], NOUNS[n], num)
}

pub async fn create_run(store: &MetaStore, actor: &str, new: NewRun) -> Result<Run, StoreError> {
    for tag in &new.tags {
        validate_key("tag", &tag.key)?;
        validate_len("Tag", &tag.key, &tag.value, MAX_TAG_VALUE_LEN)?;
    }
    let run_id = RunId::generate();
    let id = run_id.as_str().to_string();
    let tag_name = new
        .tags
        .iter()
        .find(|t| t.key == RUN_NAME_TAG)
        .map(|t| t.value.clone());
    let run_name = new
        .run_name
        .clone()
        .filter(|n| !n.is_empty())
        .or(tag_name)
        .unwrap_or_else(|| generated_run_name(&run_id));
    // Tags as stored: later duplicates win (as the upsert would), the run name is a tag.
    let mut tags: std::collections::BTreeMap<String, String> = new
        .tags
        .iter()
        .filter(|t| t.key != RUN_NAME_TAG)
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    tags.insert(RUN_NAME_TAG.into(), run_name.clone());
    let draft = RunDraft {
        id,
        experiment_id: new.experiment_id.0,
        run_name,
        user_id: new.user_id,
        start_time: new.start_time.unwrap_or_else(now_millis),
        tags,
    };
    if store.coalesces_run_creations() {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let create = RunCreate {
            actor: actor.to_string(),
            draft,
            reply,
        };
        return store.coalesce(create, answer).await;
    }
    store
        .transaction(actor, async move |tx, audit| {
            insert_run(tx, audit, &draft).await?
        })
        .await
}

/// Inserts a new run with its tags and its event through sqlx. The outer `Err` is a failed
/// statement; the inner one the creation's own refusal (unknown or deleted experiment).
pub(crate) async fn insert_run(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    draft: &RunDraft,
) -> Result<Result<Run, StoreError>, StoreError> {
    let experiment = sqlx::query(
        "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = $1",
    )
    .bind(draft.experiment_id)
    .fetch_optional(&mut *tx)
    .await?;
    let experiment = match experiment {
        Some(row) => Some((
            text(&row, "lifecycle_stage")?,
            text(&row, "artifact_location")?,
        )),
        None => None,
    };
    let (record, digest) = match draft.complete(experiment) {
        Ok(completed) => completed,
        Err(refused) => return Ok(Err(refused)),
    };
    sqlx::query(INSERT_RUN)
        .bind(draft.id.clone())
        .bind(record.experiment_id)
        .bind(record.run_name.clone())
        .bind(record.user_id.clone())
        .bind(record.status.clone())
        .bind(record.start_time)
        .bind(record.artifact_uri.clone())
        .bind(record.lifecycle_stage.clone())
        .execute(&mut *tx)
        .await?;
    let rows = values_rows(tx, draft.tags.len(), 3);
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tags (run_uuid, key, value) VALUES {rows}"
    )));
    for (key, value) in &draft.tags {
        insert = insert
            .bind(draft.id.clone())
            .bind(key.clone())
            .bind(value.clone());
    }
    insert.execute(&mut *tx).await?;
    audit
        .record_external(tx, "run.create", RunRef::KIND, &draft.id, Some(digest))
        .await?;
    Ok(Ok(draft.answer(record)))
}

/// The new run's row; shared with the native path (SQLite binds `$n` by position too).
pub(crate) const INSERT_RUN: &str = "INSERT INTO runs (run_uuid, experiment_id, run_name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)";

/// A run about to be created: all of it but what its experiment decides.
pub(crate) struct RunDraft {
    pub id: String,
    pub experiment_id: i64,
    pub run_name: String,
    pub user_id: String,
    pub start_time: i64,
    /// Final tags by key (the run name included), in key-byte order.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl RunDraft {
    /// The run as it will be stored, given its experiment's (stage, artifact location), and
    /// the digest of its audited state. The state is known here, so nobody reads it back; the
    /// audit tests hold it equal to what `verify` reads from the rows.
    pub(crate) fn complete(
        &self,
        experiment: Option<(String, String)>,
    ) -> Result<(RunRecord, String), StoreError> {
        let Some((stage, location)) = experiment else {
            return Err(NotFound::Experiment(self.experiment_id).into());
        };
        if stage != LifecycleStage::Active.as_str() {
            return Err(Conflict::ExperimentNotActive {
                experiment_id: self.experiment_id,
                stage,
            }
            .into());
        }
        let record = RunRecord {
            experiment_id: self.experiment_id,
            run_name: self.run_name.clone(),
            user_id: self.user_id.clone(),
            status: "RUNNING".into(),
            start_time: Some(self.start_time),
            end_time: None,
            artifact_uri: format!("{}/{}/artifacts", location.trim_end_matches('/'), self.id),
            lifecycle_stage: LifecycleStage::Active.as_str().into(),
            deleted_time: None,
        };
        let tags: serde_json::Map<String, serde_json::Value> = self
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let state = run_state(&record, tags.into(), Vec::new(), Vec::new());
        Ok((record, mltrail_core::audit::state_digest(&state)))
    }

    /// What `runs/create` answers: the stored run, with no params, metrics, inputs or outputs.
    pub(crate) fn answer(&self, record: RunRecord) -> Run {
        Run {
            info: RunInfo {
                run_uuid: self.id.clone(),
                run_id: self.id.clone(),
                experiment_id: record.experiment_id.to_string(),
                run_name: record.run_name,
                user_id: record.user_id,
                status: record.status,
                start_time: record.start_time,
                end_time: None,
                artifact_uri: record.artifact_uri,
                lifecycle_stage: record.lifecycle_stage,
            },
            data: RunData {
                tags: self
                    .tags
                    .iter()
                    .map(|(key, value)| KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                ..RunData::default()
            },
            inputs: RunInputs::default(),
            outputs: RunOutputs::default(),
        }
    }
}

async fn upsert_tag(tx: &mut Tx, run_id: &str, tag: &KeyValue) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO tags (run_uuid, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value")
        .bind(run_id.to_string())
        .bind(tag.key.clone())
        .bind(tag.value.clone())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn run_info_from_row(row: &AnyRow) -> Result<RunInfo, StoreError> {
    let id = text(row, "run_uuid")?;
    Ok(RunInfo {
        run_uuid: id.clone(),
        run_id: id,
        experiment_id: int(row, "experiment_id")?.to_string(),
        run_name: text(row, "run_name")?,
        user_id: text(row, "user_id")?,
        status: text(row, "status")?,
        start_time: opt_int(row, "start_time")?,
        end_time: opt_int(row, "end_time")?,
        artifact_uri: text(row, "artifact_uri")?,
        lifecycle_stage: text(row, "lifecycle_stage")?,
    })
}

/// Loads whole runs (info, latest metrics, params, tags, inputs, outputs) for the given rows,
/// in their order, with one query per table rather than one per run.
pub(crate) async fn runs_from_rows(
    conn: &mut AnyConnection,
    rows: Vec<AnyRow>,
) -> Result<Vec<Run>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let infos: Vec<RunInfo> = rows
        .iter()
        .map(run_info_from_row)
        .collect::<Result<_, _>>()?;
    let ids: Vec<String> = infos.iter().map(|i| i.run_uuid.clone()).collect();
    let list = placeholders(1, ids.len());
    let mut data: HashMap<String, RunData> = HashMap::new();
    let mut inputs: HashMap<String, RunInputs> = HashMap::new();
    let mut outputs: HashMap<String, RunOutputs> = HashMap::new();
    for row in fetch_ids(conn, &format!("SELECT run_uuid, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_uuid IN ({list}) ORDER BY key"), &ids).await? {
        data.entry(text(&row, "run_uuid")?).or_default().metrics.push(Metric {
            key: text(&row, "key")?,
            value: MetricValue(metric_value(&row, "value", "is_nan")?),
            timestamp: int(&row, "timestamp")?,
            step: int(&row, "step")?,
            run_id: None,
        });
    }
    for row in fetch_ids(
        conn,
        &format!("SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({list}) ORDER BY key"),
        &ids,
    )
    .await?
    {
        data.entry(text(&row, "run_uuid")?)
            .or_default()
            .params
            .push(key_value(&row)?);
    }
    for row in fetch_ids(
        conn,
        &format!("SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({list}) ORDER BY key"),
        &ids,
    )
    .await?
    {
        data.entry(text(&row, "run_uuid")?)
            .or_default()
            .tags
            .push(key_value(&row)?);
    }
    for row in fetch_ids(conn, &format!("SELECT run_uuid, dataset_json, tags_json FROM run_inputs WHERE run_uuid IN ({list}) ORDER BY dataset_name"), &ids).await? {
        let dataset = serde_json::from_str(&text(&row, "dataset_json")?).unwrap_or(serde_json::Value::Null);
        let tags = serde_json::from_str(&text(&row, "tags_json")?).unwrap_or_default();
        inputs.entry(text(&row, "run_uuid")?).or_default().dataset_inputs.push(DatasetInput { tags, dataset });
    }
    for row in fetch_ids(conn, &format!("SELECT run_uuid, model_id, step FROM run_outputs WHERE run_uuid IN ({list}) ORDER BY model_id"), &ids).await? {
        outputs.entry(text(&row, "run_uuid")?).or_default().model_outputs.push(ModelIo { model_id: text(&row, "model_id")?, step: int(&row, "step")? });
    }
    Ok(infos
        .into_iter()
        .map(|info| {
            let id = info.run_uuid.clone();
            Run {
                data: data.remove(&id).unwrap_or_default(),
                inputs: inputs.remove(&id).unwrap_or_default(),
                outputs: outputs.remove(&id).unwrap_or_default(),
                info,
            }
        })
        .collect())
}

pub(crate) async fn load_run(conn: &mut AnyConnection, run_id: &str) -> Result<Run, StoreError> {
    let row = sqlx::query("SELECT * FROM runs WHERE run_uuid = $1")
        .bind(run_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found_run(run_id))?;
    Ok(runs_from_rows(conn, vec![row]).await?.remove(0))
}

pub async fn get_run(store: &MetaStore, run_id: &RunId) -> Result<Run, StoreError> {
    let run_id = run_id.as_str();
    let mut conn = store.readers().acquire().await?;
    load_run(&mut conn, run_id).await
}

/// The lifecycle stages of runs the coalesced path has seen, by run id.
pub(crate) type RunStages = HashMap<String, String>;

/// A `runs/create` on the coalesced path.
pub(crate) struct RunCreate {
    pub actor: String,
    pub draft: RunDraft,
    pub reply: oneshot::Sender<Result<Run, StoreError>>,
}

/// The native path's statements for run creations, prepared once for the connection's life.
pub(crate) struct CreateStatements {
    experiment: Stmt,
    insert_run: Stmt,
    insert_tag: Stmt,
}

impl CreateStatements {
    pub(crate) fn prepare(db: &Db) -> Result<Self, StoreError> {
        Ok(CreateStatements {
            experiment: Stmt::prepare(
                db,
                "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = ?1",
            )?,
            insert_run: Stmt::prepare(db, INSERT_RUN)?,
            insert_tag: Stmt::prepare(
                db,
                "INSERT INTO tags (run_uuid, key, value) VALUES (?1, ?2, ?3)",
            )?,
        })
    }
}

/// Inserts one run with its tags and its audit event on the native path, and notes its stage.
/// The outer `Err` is a failed statement (the group rolls back); the inner one is this
/// request's own answer (unknown or deleted experiment).
pub(crate) fn create_native(
    st: &mut CreateStatements,
    chain: &mut NativeChain<'_>,
    create: &RunCreate,
    stages: &mut RunStages,
) -> Result<Result<Run, StoreError>, StoreError> {
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
    chain.append(vec![PendingEvent {
        actor: create.actor.clone(),
        action: "run.create".to_string(),
        entity_type: RunRef::KIND.to_string(),
        entity_id: draft.id.clone(),
        state_digest: Some(digest),
    }])?;
    stages.insert(draft.id.clone(), record.lifecycle_stage.clone());
    Ok(Ok(draft.answer(record)))
}

/// Logging requires an active run, as in MLflow.
pub(crate) async fn require_active_run(tx: &mut Tx, run_id: &str) -> Result<(), StoreError> {
    let stage: Option<String> =
        sqlx::query_scalar("SELECT lifecycle_stage FROM runs WHERE run_uuid = $1")
            .bind(run_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    check_active(run_id, stage.as_deref())
}

/// The answer to "may this run log?", given its stored stage (`None`: no such run).
pub(crate) fn check_active(run_id: &str, stage: Option<&str>) -> Result<(), StoreError> {
    match stage {
        None => Err(not_found_run(run_id)),
        Some("active") => Ok(()),
        Some(other) => Err(Conflict::RunNotActive {
            run_id: run_id.to_string(),
            stage: other.to_string(),
        }
        .into()),
    }
}

pub async fn update_run(
    store: &MetaStore,
    actor: &str,
    run_id: RunId,
    status: Option<RunStatus>,
    end_time: Option<i64>,
    run_name: Option<String>,
) -> Result<RunInfo, StoreError> {
    let run_id = run_id.into_inner();
    store
        .audited(
            actor,
            "run.update",
            RunRef(run_id.clone()),
            async move |tx| {
                require_active_run(tx, &run_id).await?;
                if let Some(status) = status {
                    sqlx::query("UPDATE runs SET status = $1 WHERE run_uuid = $2")
                        .bind(status.as_str())
                        .bind(run_id.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(end) = end_time {
                    sqlx::query("UPDATE runs SET end_time = $1 WHERE run_uuid = $2")
                        .bind(end)
                        .bind(run_id.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(name) = run_name.filter(|n| !n.is_empty()) {
                    sqlx::query("UPDATE runs SET run_name = $1 WHERE run_uuid = $2")
                        .bind(name.clone())
                        .bind(run_id.clone())
                        .execute(&mut *tx)
                        .await?;
                    upsert_tag(
                        tx,
                        &run_id,
                        &KeyValue {
                            key: RUN_NAME_TAG.into(),
                            value: name,
                        },
                    )
                    .await?;
                }
                Ok(load_run(tx, &run_id).await?.info)
            },
        )
        .await
}

pub async fn set_run_stage(
    store: &MetaStore,
    actor: &str,
    run_id: RunId,
    stage: LifecycleStage,
) -> Result<(), StoreError> {
    let run_id = run_id.into_inner();
    let action = if stage == LifecycleStage::Deleted {
        "run.delete"
    } else {
        "run.restore"
    };
    store
        .audited(actor, action, RunRef(run_id.clone()), async move |tx| {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT lifecycle_stage FROM runs WHERE run_uuid = $1")
                    .bind(run_id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(not_found_run(&run_id));
            }
            let deleted_time = (stage == LifecycleStage::Deleted).then(now_millis);
            sqlx::query(
                "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_uuid = $3",
            )
            .bind(stage.as_str())
            .bind(deleted_time)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
}

/// Moves every run of an experiment that is in the other stage to `stage` (deleting or
/// restoring an experiment does so to its runs, as in MLflow); returns the runs it moved, whose
/// events the caller records after the experiment's.
pub(crate) async fn set_stage_in_experiment(
    tx: &mut Tx,
    experiment_id: i64,
    stage: LifecycleStage,
    now: i64,
) -> Result<Vec<RunRef>, StoreError> {
    let from = if stage == LifecycleStage::Deleted {
        "active"
    } else {
        "deleted"
    };
    let runs: Vec<String> = sqlx::query_scalar(
        "SELECT run_uuid FROM runs WHERE experiment_id = $1 AND lifecycle_stage = $2",
    )
    .bind(experiment_id)
    .bind(from)
    .fetch_all(&mut *tx)
    .await?;
    let deleted_time = (stage == LifecycleStage::Deleted).then_some(now);
    sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE experiment_id = $3 AND lifecycle_stage = $4")
        .bind(stage.as_str())
        .bind(deleted_time)
        .bind(experiment_id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    Ok(runs.into_iter().map(RunRef).collect())
}

/// Inserts params under `batch_id`, refusing to change an existing value (MLflow's rule:
/// params are immutable). Returns whether any new param was stored.
async fn insert_params(
    tx: &mut Tx,
    run_id: &str,
    batch_id: &str,
    params: &[KeyValue],
) -> Result<bool, StoreError> {
    let mut existing: HashMap<String, String> = HashMap::new();
    for chunk in params.chunks(100) {
        let sql = format!(
            "SELECT key, value FROM params WHERE run_uuid = $1 AND key IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(run_id.to_string());
        for p in chunk {
            query = query.bind(p.key.clone());
        }
        for row in query.fetch_all(&mut *tx).await? {
            existing.insert(text(&row, "key")?, text(&row, "value")?);
        }
    }
    let mut fresh: Vec<&KeyValue> = Vec::new();
    for param in params {
        match existing.get(&param.key) {
            Some(old) if *old == param.value => {}
            Some(old) => {
                return Err(Invalid::ParamChanged {
                    run_id: run_id.to_string(),
                    key: param.key.clone(),
                    old: old.clone(),
                    new: param.value.clone(),
                }
                .into())
            }
            None => match fresh.iter().find(|p| p.key == param.key) {
                Some(earlier) if earlier.value != param.value => {
                    return Err(Invalid::DuplicateParam(param.key.clone()).into())
                }
                Some(_) => {}
                None => fresh.push(param),
            },
        }
    }
    for chunk in fresh.chunks(100) {
        let values = values_rows(tx, chunk.len(), 4);
        let sql = format!("INSERT INTO params (run_uuid, key, value, batch_id) VALUES {values}");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            query = query
                .bind(run_id.to_string())
                .bind(p.key.clone())
                .bind(p.value.clone())
                .bind(batch_id.to_string());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(!fresh.is_empty())
}

/// Logs a request's params: they are stored under a new batch, recorded as one event when any
/// is new (re-logging a param with its value is allowed and records nothing).
pub(crate) async fn log_params(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    run_id: &str,
    params: &[KeyValue],
) -> Result<(), StoreError> {
    let batch_id = uuid::Uuid::now_v7().simple().to_string();
    if insert_params(tx, run_id, &batch_id, params).await? {
        let batch = ParamBatch {
            run_id: run_id.to_string(),
            batch_id,
        };
        audit.record(tx, "run.log_params", &batch).await?;
    }
    Ok(())
}

/// Sets tags (a `mlflow.runName` tag renames the run too) and records the run's new state.
pub(crate) async fn set_tags(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    run_id: &str,
    tags: &[KeyValue],
) -> Result<(), StoreError> {
    for tag in tags {
        upsert_tag(tx, run_id, tag).await?;
        if tag.key == RUN_NAME_TAG {
            sqlx::query("UPDATE runs SET run_name = $1 WHERE run_uuid = $2")
                .bind(tag.value.clone())
                .bind(run_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
    }
    audit
        .record(tx, "run.set_tags", &RunRef(run_id.to_string()))
        .await
}

pub async fn delete_tag(
    store: &MetaStore,
    actor: &str,
    run_id: RunId,
    key: String,
) -> Result<(), StoreError> {
    let run_id = run_id.into_inner();
    store
        .audited(
            actor,
            "run.delete_tag",
            RunRef(run_id.clone()),
            async move |tx| {
                require_active_run(tx, &run_id).await?;
                let done = sqlx::query("DELETE FROM tags WHERE run_uuid = $1 AND key = $2")
                    .bind(run_id.clone())
                    .bind(key.clone())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(NotFound::RunTag { run_id, key }.into());
                }
                Ok(())
            },
        )
        .await
}

/// A dataset a run consumed (`log-inputs`): the dataset as the client described it, verbatim.
#[derive(Debug, Clone)]
pub struct NewDatasetInput {
    pub name: String,
    pub digest: String,
    pub dataset: serde_json::Value,
    pub tags: Vec<KeyValue>,
}

pub async fn log_inputs(
    store: &MetaStore,
    actor: &str,
    run_id: RunId,
    datasets: Vec<NewDatasetInput>,
) -> Result<(), StoreError> {
    let run_id = run_id.into_inner();
    let user = actor.to_string();
    // Each input may record a dataset version of its own before the run's event.
    store
        .transaction(actor, async move |tx, audit| {
            require_active_run(tx, &run_id).await?;
            for d in &datasets {
                let tags_json = serde_json::to_string(&d.tags)
                    .map_err(|e| Invalid::InputTags(Arc::new(e)))?;
                sqlx::query("INSERT INTO run_inputs (run_uuid, dataset_name, dataset_digest, dataset_json, tags_json) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_uuid, dataset_name, dataset_digest) DO UPDATE SET dataset_json = excluded.dataset_json, tags_json = excluded.tags_json")
                    .bind(run_id.clone())
                    .bind(d.name.clone())
                    .bind(d.digest.clone())
                    .bind(d.dataset.to_string())
                    .bind(tags_json)
                    .execute(&mut *tx)
                    .await?;
                datasets::record_logged_input(tx, audit, &user, &d.dataset).await?;
            }
            audit.record(tx, "run.log_inputs", &RunRef(run_id)).await
        })
        .await
}

pub async fn log_outputs(
    store: &MetaStore,
    actor: &str,
    run_id: RunId,
    models: Vec<ModelIo>,
) -> Result<(), StoreError> {
    let run_id = run_id.into_inner();
    store
        .audited(actor, "run.log_outputs", RunRef(run_id.clone()), async move |tx| {
            require_active_run(tx, &run_id).await?;
            for m in &models {
                sqlx::query("INSERT INTO run_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3) ON CONFLICT (run_uuid, model_id) DO UPDATE SET step = excluded.step")
                    .bind(run_id.clone())
                    .bind(m.model_id.clone())
                    .bind(m.step)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        })
        .await
}

pub async fn search_runs(
    store: &MetaStore,
    experiment_ids: &[ExperimentId],
    filter: &str,
    view: ViewType,
    max_results: i64,
    order_by: &[String],
    page: PageToken,
) -> Result<Page<Run>, StoreError> {
    let offset = page.offset();
    let experiment_ids: Vec<i64> = experiment_ids.iter().map(|id| id.0).collect();
    let ids = &experiment_ids;
    let mut conn = store.readers().acquire().await?;
    let want = max_results + 1;
    let rows = if crate::search::ordered_by_one_key(order_by)? {
        use crate::search::{runs_query_part, Part};
        use sqlx::Connection;
        // The parts read one snapshot: a value logged between two of them would otherwise put
        // a run on the page twice, or leave it out.
        let mut snapshot = conn.begin().await?;
        if store.backend() == crate::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *snapshot)
                .await?;
        }
        let conn = &mut *snapshot;
        // The runs with a value come first; the page takes from the others only past them.
        let mut rows = runs_query_part(ids, filter, view, order_by, Part::Valued, want, offset)?
            .fetch_all(conn)
            .await?;
        let taken = rows.len() as i64;
        if taken < want {
            let skip = if taken == 0 && offset > 0 {
                let counted =
                    runs_query_part(ids, filter, view, order_by, Part::CountValued, 0, 0)?
                        .fetch_all(conn)
                        .await?;
                let valued = counted
                    .first()
                    .map(|row| int(row, "n"))
                    .transpose()?
                    .unwrap_or(0);
                (offset - valued).max(0)
            } else {
                0
            };
            rows.extend(
                runs_query_part(
                    ids,
                    filter,
                    view,
                    order_by,
                    Part::Unvalued,
                    want - taken,
                    skip,
                )?
                .fetch_all(conn)
                .await?,
            );
        }
        // Read only: nothing to commit.
        snapshot.rollback().await?;
        rows
    } else {
        crate::search::runs_query(ids, filter, view, order_by, want, offset)?
            .fetch_all(&mut conn)
            .await?
    };
    let has_more = rows.len() as i64 > max_results;
    let rows: Vec<AnyRow> = rows.into_iter().take(max_results as usize).collect();
    let runs = runs_from_rows(&mut conn, rows).await?;
    Ok(Page {
        items: runs,
        next_page_token: has_more.then(|| format!("o{}", offset + max_results)),
    })
}
