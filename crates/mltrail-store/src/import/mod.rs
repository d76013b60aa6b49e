//! Another tracking server's history brought in with its ids (`mltrail import mlflow`): the
//! entities as the source holds them ([`Experiment`], [`Run`], [`LoggedModel`],
//! [`RegisteredModel`]), the readers of MLflow's database (`mlflow_db`) and file store
//! (`mlflow_files`), and the writes that store them.
//!
//! Ids are kept (a notebook's `runs:/<id>/model` and `models:/name/3` keep working), so an
//! entity whose id is here already is not written again: that is what makes an import
//! resumable and a second one a no-op. An id that is here but names something else (another
//! experiment called 3) is a collision, refused before anything of that batch is written.
//! Each entity written records one audit event whose action says where it came from
//! (`run.import from mlflow sqlite:////data/mlflow.db`), with the state digest its kind always
//! records, so `audit verify` checks imported entities like any other.

pub mod mlflow_db;
pub mod mlflow_files;
pub mod sessions;

use crate::audited::Audited;
use crate::error::{Conflict, Invalid, NotFound};
use crate::experiments::ExperimentRef;
use crate::logged_models::LoggedModelRef;
use crate::metrics::{metric_batch_digest, upsert_latest, MetricBatch, MetricInsert, NewMetric};
use crate::registry::{ModelVersionRef, RegisteredModelRef};
use crate::runs::{NewDatasetInput, ParamBatch, RunRef};
use crate::sql::{text, values_rows};
use crate::{datasets, AuditCtx, KeyValue, MetaStore, StoreError, Tx};
use std::sync::Arc;

/// An experiment as the source holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub id: i64,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<KeyValue>,
}

/// A run as the source holds it, with everything it logged.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub id: String,
    pub experiment_id: i64,
    pub name: String,
    pub user_id: String,
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
    pub deleted_time: Option<i64>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
    /// Every value of every metric, in any order; `model_id` where the value was logged for a
    /// logged model.
    pub metrics: Vec<NewMetric>,
    pub inputs: Vec<NewDatasetInput>,
    /// Logged models the run produced, with the step they were logged at.
    pub outputs: Vec<(String, i64)>,
}

/// A logged model (MLflow 3) as the source holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    pub id: String,
    pub experiment_id: i64,
    pub name: String,
    pub artifact_uri: String,
    /// `READY`, `PENDING` or `FAILED`.
    pub status: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    pub lifecycle_stage: String,
    pub tags: Vec<KeyValue>,
    pub params: Vec<KeyValue>,
}

/// A registered model with its versions and aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    pub tags: Vec<KeyValue>,
    pub versions: Vec<ModelVersion>,
    /// (alias, version).
    pub aliases: Vec<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub version: i64,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    pub user_id: String,
    pub current_stage: String,
    pub source: String,
    pub run_id: String,
    pub run_link: String,
    pub status: String,
    /// The logged model the version was registered from (`models:/m-…`), or empty.
    pub model_id: String,
    pub tags: Vec<KeyValue>,
}

/// The stage MLflow gives a model version it deleted.
const DELETED_VERSION: &str = "Deleted_Internal";

impl ModelVersion {
    /// MLflow keeps a deleted version's row, with this stage, and shows it nowhere: an import
    /// leaves it out.
    pub fn is_deleted(&self) -> bool {
        self.current_stage == DELETED_VERSION
    }
}

/// What an import wrote of one batch, and what it found already here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub imported: usize,
    pub present: usize,
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, other: Written) {
        self.imported += other.imported;
        self.present += other.present;
    }
}

/// The audit action of an imported entity of `kind`.
fn action(kind: &str, origin: &str) -> String {
    format!("{kind}.import from {origin}")
}

/// Writes experiments not here yet. An id here under another name, or a name here under
/// another id, is refused.
pub async fn import_experiments(
    store: &MetaStore,
    actor: &str,
    origin: &str,
    experiments: Vec<Experiment>,
) -> Result<Written, StoreError> {
    let origin = origin.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let mut written = Written::default();
            for e in &experiments {
                let here: Option<String> =
                    sqlx::query_scalar("SELECT name FROM experiments WHERE experiment_id = $1")
                        .bind(e.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match here {
                    Some(name) if name == e.name => {
                        written.present += 1;
                        continue;
                    }
                    Some(name) => {
                        return Err(collision(
                            format!("experiment {}", e.id),
                            format!("experiment `{name}`"),
                            format!("experiment `{}`", e.name),
                        ))
                    }
                    None => {}
                }
                let named: Option<i64> =
                    sqlx::query_scalar("SELECT experiment_id FROM experiments WHERE name = $1")
                        .bind(e.name.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(id) = named {
                    return Err(collision(
                        format!("experiment `{}`", e.name),
                        format!("that name as experiment {id}"),
                        format!("it as experiment {}", e.id),
                    ));
                }
                sqlx::query("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(e.id)
                    .bind(e.name.clone())
                    .bind(e.artifact_location.clone())
                    .bind(e.lifecycle_stage.clone())
                    .bind(e.creation_time)
                    .bind(e.last_update_time)
                    .execute(&mut *tx)
                    .await?;
                for tag in &e.tags {
                    sqlx::query("INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3)")
                        .bind(e.id)
                        .bind(tag.key.clone())
                        .bind(tag.value.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                audit
                    .record(tx, &action(ExperimentRef::KIND, &origin), &ExperimentRef(e.id))
                    .await?;
                written.imported += 1;
            }
            Ok(written)
        })
        .await
}

fn collision(what: String, ours: String, theirs: String) -> StoreError {
    Conflict::ImportCollision { what, ours, theirs }.into()
}

/// The runs among `runs` (id, experiment) that are here already, which an import skips; a run
/// here under another experiment is a collision.
pub async fn present_runs(
    store: &MetaStore,
    runs: &[(String, i64)],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let mut here = std::collections::HashSet::new();
    for chunk in runs.chunks(500) {
        let sql = format!(
            "SELECT run_uuid, experiment_id FROM runs WHERE run_uuid IN ({})",
            crate::sql::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, _) in chunk {
            query = query.bind(id.clone());
        }
        let found: std::collections::HashMap<String, i64> = query
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    crate::sql::text(r, "run_uuid")?,
                    crate::sql::int(r, "experiment_id")?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        for (id, experiment) in chunk {
            match found.get(id) {
                Some(ours) if ours != experiment => {
                    return Err(run_collision(id, *ours, *experiment));
                }
                Some(_) => {
                    here.insert(id.clone());
                }
                None => {}
            }
        }
    }
    Ok(here)
}

fn run_collision(id: &str, ours: i64, theirs: i64) -> StoreError {
    collision(
        format!("run {id}"),
        format!("a run of experiment {ours}"),
        format!("a run of experiment {theirs}"),
    )
}

/// Writes runs not here yet, each with its params, tags, metric history, inputs and outputs,
/// in one transaction: a run is either all here or not at all.
pub async fn import_runs(
    store: &MetaStore,
    actor: &str,
    origin: &str,
    runs: Vec<Run>,
) -> Result<Written, StoreError> {
    let origin = origin.to_string();
    let user = actor.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let mut written = Written::default();
            for run in &runs {
                let here: Option<i64> =
                    sqlx::query_scalar("SELECT experiment_id FROM runs WHERE run_uuid = $1")
                        .bind(run.id.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                match here {
                    Some(ours) if ours != run.experiment_id => {
                        return Err(run_collision(&run.id, ours, run.experiment_id));
                    }
                    Some(_) => {
                        written.present += 1;
                        continue;
                    }
                    None => {}
                }
                let experiment: Option<i64> = sqlx::query_scalar(
                    "SELECT experiment_id FROM experiments WHERE experiment_id = $1",
                )
                .bind(run.experiment_id)
                .fetch_optional(&mut *tx)
                .await?;
                if experiment.is_none() {
                    return Err(NotFound::Experiment(run.experiment_id).into());
                }
                write_run(tx, audit, &user, &origin, run).await?;
                written.imported += 1;
            }
            Ok(written)
        })
        .await
}

async fn write_run(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    user: &str,
    origin: &str,
    run: &Run,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO runs (run_uuid, experiment_id, run_name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage, deleted_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(run.id.clone())
        .bind(run.experiment_id)
        .bind(run.name.clone())
        .bind(run.user_id.clone())
        .bind(run.status.clone())
        .bind(run.start_time)
        .bind(run.end_time)
        .bind(run.artifact_uri.clone())
        .bind(run.lifecycle_stage.clone())
        .bind(run.deleted_time)
        .execute(&mut *tx)
        .await?;
    insert_pairs(tx, "tags (run_uuid, key, value)", &run.id, &run.tags, None).await?;
    let batch_id = uuid::Uuid::now_v7().simple().to_string();
    if !run.params.is_empty() {
        insert_pairs(
            tx,
            "params (run_uuid, key, value, batch_id)",
            &run.id,
            &run.params,
            Some(&batch_id),
        )
        .await?;
        let batch = ParamBatch {
            run_id: run.id.clone(),
            batch_id: batch_id.clone(),
        };
        audit
            .record(tx, &action(ParamBatch::KIND, origin), &batch)
            .await?;
    }
    if !run.metrics.is_empty() {
        crate::metrics::insert_blocks(
            tx,
            &crate::metrics::block::blocks_of(&run.id, &batch_id, &run.metrics),
        )
        .await?;
        let rows: Vec<MetricInsert> = run
            .metrics
            .iter()
            .map(|m| (run.id.as_str(), batch_id.as_str(), m))
            .collect();
        upsert_latest(tx, &rows).await?;
        let batch = MetricBatch {
            run_id: run.id.clone(),
            batch_id,
        };
        audit
            .record_external(
                tx,
                &action(MetricBatch::KIND, origin),
                MetricBatch::KIND,
                &batch.id(),
                Some(metric_batch_digest(&run.metrics)),
            )
            .await?;
    }
    for input in &run.inputs {
        let tags_json =
            serde_json::to_string(&input.tags).map_err(|e| Invalid::InputTags(Arc::new(e)))?;
        sqlx::query("INSERT INTO run_inputs (run_uuid, dataset_name, dataset_digest, dataset_json, tags_json) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_uuid, dataset_name, dataset_digest) DO NOTHING")
            .bind(run.id.clone())
            .bind(input.name.clone())
            .bind(input.digest.clone())
            .bind(input.dataset.to_string())
            .bind(tags_json)
            .execute(&mut *tx)
            .await?;
        let recorded = action("dataset_version", origin);
        datasets::record_input_as(tx, audit, user, &input.dataset, &recorded).await?;
    }
    for (model_id, step) in &run.outputs {
        sqlx::query("INSERT INTO run_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3) ON CONFLICT (run_uuid, model_id) DO NOTHING")
            .bind(run.id.clone())
            .bind(model_id.clone())
            .bind(*step)
            .execute(&mut *tx)
            .await?;
    }
    audit
        .record(tx, &action(RunRef::KIND, origin), &RunRef(run.id.clone()))
        .await
}

/// Inserts `(owner, key, value[, batch])` rows into `table_columns`, a hundred per statement.
async fn insert_pairs(
    tx: &mut Tx,
    table_columns: &str,
    owner: &str,
    pairs: &[KeyValue],
    batch: Option<&str>,
) -> Result<(), StoreError> {
    let width = if batch.is_some() { 4 } else { 3 };
    for chunk in pairs.chunks(100) {
        let values = values_rows(tx, chunk.len(), width);
        let sql = format!("INSERT INTO {table_columns} VALUES {values}");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for pair in chunk {
            query = query
                .bind(owner.to_string())
                .bind(pair.key.clone())
                .bind(pair.value.clone());
            if let Some(batch) = batch {
                query = query.bind(batch.to_string());
            }
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Writes logged models not here yet, with their tags and params.
pub async fn import_logged_models(
    store: &MetaStore,
    actor: &str,
    origin: &str,
    models: Vec<LoggedModel>,
) -> Result<Written, StoreError> {
    let origin = origin.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let mut written = Written::default();
            for m in &models {
                let here: Option<i64> =
                    sqlx::query_scalar("SELECT experiment_id FROM logged_models WHERE model_id = $1")
                        .bind(m.id.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                match here {
                    Some(ours) if ours != m.experiment_id => {
                        return Err(collision(
                            format!("logged model {}", m.id),
                            format!("a model of experiment {ours}"),
                            format!("a model of experiment {}", m.experiment_id),
                        ));
                    }
                    Some(_) => {
                        written.present += 1;
                        continue;
                    }
                    None => {}
                }
                sqlx::query("INSERT INTO logged_models (model_id, experiment_id, name, artifact_uri, status, creation_time, last_updated_time, source_run_id, model_type, lifecycle_stage) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                    .bind(m.id.clone())
                    .bind(m.experiment_id)
                    .bind(m.name.clone())
                    .bind(m.artifact_uri.clone())
                    .bind(m.status.clone())
                    .bind(m.creation_time)
                    .bind(m.last_updated_time)
                    .bind(m.source_run_id.clone())
                    .bind(m.model_type.clone())
                    .bind(m.lifecycle_stage.clone())
                    .execute(&mut *tx)
                    .await?;
                insert_pairs(tx, "logged_model_tags (model_id, key, value)", &m.id, &m.tags, None)
                    .await?;
                insert_pairs(tx, "logged_model_params (model_id, key, value)", &m.id, &m.params, None)
                    .await?;
                audit
                    .record(tx, &action(LoggedModelRef::KIND, &origin), &LoggedModelRef(m.id.clone()))
                    .await?;
                written.imported += 1;
            }
            Ok(written)
        })
        .await
}

/// Writes a registered model if it is not here, then its versions and aliases that are not
/// (a model imported before gains the versions the source has added since). Counts versions.
pub async fn import_registered_model(
    store: &MetaStore,
    actor: &str,
    origin: &str,
    model: RegisteredModel,
) -> Result<Written, StoreError> {
    let origin = origin.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let mut written = Written::default();
            let name = model.name.clone();
            let here: Option<String> =
                sqlx::query_scalar("SELECT name FROM registered_models WHERE name = $1")
                    .bind(name.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            let mut changed = here.is_none();
            if here.is_none() {
                sqlx::query("INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES ($1, $2, $3, $4)")
                    .bind(name.clone())
                    .bind(model.creation_time)
                    .bind(model.last_updated_time)
                    .bind(model.description.clone())
                    .execute(&mut *tx)
                    .await?;
                for tag in &model.tags {
                    sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3)")
                        .bind(name.clone())
                        .bind(tag.key.clone())
                        .bind(tag.value.clone())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for v in model.versions.iter().filter(|v| !v.is_deleted()) {
                let here = sqlx::query(
                    "SELECT source, run_id FROM model_versions WHERE name = $1 AND version = $2",
                )
                .bind(name.clone())
                .bind(v.version)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = here {
                    let (source, run_id) = (text(&row, "source")?, text(&row, "run_id")?);
                    // The same version imported before, or another model under that number.
                    if source != v.source || run_id != v.run_id {
                        return Err(collision(
                            format!("version {} of model `{name}`", v.version),
                            format!("a version of {source} (run `{run_id}`)"),
                            format!("a version of {} (run `{}`)", v.source, v.run_id),
                        ));
                    }
                    written.present += 1;
                    continue;
                }
                sqlx::query("INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, current_stage, source, run_id, run_link, status, model_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                    .bind(name.clone())
                    .bind(v.version)
                    .bind(v.creation_time)
                    .bind(v.last_updated_time)
                    .bind(v.description.clone())
                    .bind(v.user_id.clone())
                    .bind(v.current_stage.clone())
                    .bind(v.source.clone())
                    .bind(v.run_id.clone())
                    .bind(v.run_link.clone())
                    .bind(v.status.clone())
                    .bind(v.model_id.clone())
                    .execute(&mut *tx)
                    .await?;
                for tag in &v.tags {
                    sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4)")
                        .bind(name.clone())
                        .bind(v.version)
                        .bind(tag.key.clone())
                        .bind(tag.value.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                let version = ModelVersionRef {
                    name: name.clone(),
                    version: v.version,
                };
                audit
                    .record(tx, &action(ModelVersionRef::KIND, &origin), &version)
                    .await?;
                written.imported += 1;
            }
            for (alias, version) in &model.aliases {
                let done = sqlx::query("INSERT INTO registered_model_aliases (name, alias, version) VALUES ($1, $2, $3) ON CONFLICT (name, alias) DO NOTHING")
                    .bind(name.clone())
                    .bind(alias.clone())
                    .bind(*version)
                    .execute(&mut *tx)
                    .await?;
                changed |= done.rows_affected() > 0;
            }
            if changed {
                audit
                    .record(tx, &action(RegisteredModelRef::KIND, &origin), &RegisteredModelRef(name))
                    .await?;
            }
            Ok(written)
        })
        .await
}
