//! Experiments: MLflow's containers of runs, with their tags, and the state the audit trail
//! records for one. Deleting or restoring an experiment does the same to its runs (`runs`).

use crate::access::permissions::Visible;
use crate::audited::{int_key, Audited};
use crate::error::{AlreadyExists, Conflict, Invalid, NotFound};
use crate::names::{validate_key, validate_len, MAX_TAG_VALUE_LEN};
use crate::records::*;
use crate::sql::{int, key_value, key_value_object, placeholders, text};
use crate::{runs, MetaStore, StoreError, Tx};
use mltrail_core::state::{LifecycleStage, ViewType};
use mltrail_core::{now_millis, ExperimentId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use std::collections::HashMap;

pub const DEFAULT_EXPERIMENT: &str = "Default";

pub fn experiment_artifact_location(id: i64) -> String {
    format!("mlflow-artifacts:/{id}")
}

/// An experiment, as the audit trail records it: its row and tags.
pub(crate) struct ExperimentRef(pub i64);

impl Audited for ExperimentRef {
    const KIND: &'static str = "experiment";
    const LIST_IDS: &'static str = "SELECT CAST(experiment_id AS TEXT) AS id FROM experiments";

    int_key!(ExperimentRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let id = self.0;
        let Some(row) = sqlx::query("SELECT * FROM experiments WHERE experiment_id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let tags = {
            let rows =
                sqlx::query("SELECT key, value FROM experiment_tags WHERE experiment_id = $1")
                    .bind(id)
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
}

fn not_found(id: i64) -> StoreError {
    NotFound::Experiment(id).into()
}

fn experiment_from_row(row: &AnyRow, tags: Vec<KeyValue>) -> Result<Experiment, StoreError> {
    Ok(Experiment {
        experiment_id: int(row, "experiment_id")?.to_string(),
        name: text(row, "name")?,
        artifact_location: text(row, "artifact_location")?,
        lifecycle_stage: text(row, "lifecycle_stage")?,
        last_update_time: int(row, "last_update_time")?,
        creation_time: int(row, "creation_time")?,
        tags,
    })
}

async fn experiment_tags(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<KeyValue>>, StoreError> {
    let mut out: HashMap<i64, Vec<KeyValue>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ({}) ORDER BY key",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(&mut *conn).await? {
        out.entry(int(&row, "experiment_id")?)
            .or_default()
            .push(key_value(&row)?);
    }
    Ok(out)
}

async fn experiments_from_rows(
    conn: &mut AnyConnection,
    rows: Vec<AnyRow>,
) -> Result<Vec<Experiment>, StoreError> {
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| int(r, "experiment_id"))
        .collect::<Result<_, _>>()?;
    let mut tags = experiment_tags(conn, &ids).await?;
    rows.iter()
        .map(|r| {
            experiment_from_row(
                r,
                tags.remove(&int(r, "experiment_id")?).unwrap_or_default(),
            )
        })
        .collect()
}

/// Creates experiment 0, "Default", unless it exists (MLflow clients assume it does). A store
/// whose audit trail already records experiment 0 but has lost its row was tampered with:
/// re-creating it would add a fresh event and hide the deletion from `audit verify`, so it is
/// left missing and the server says why.
pub(crate) async fn ensure_default_experiment(store: &MetaStore) -> Result<(), StoreError> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT experiment_id FROM experiments WHERE experiment_id = 0")
            .fetch_optional(store.readers())
            .await?;
    if exists.is_some() {
        return Ok(());
    }
    let recorded: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM audit_log WHERE entity_type = 'experiment' AND entity_id = '0' LIMIT 1",
    )
    .fetch_optional(store.readers())
    .await?;
    if let Some(seq) = recorded {
        tracing::error!(
            event = seq,
            "experiment 0 is missing although the audit trail records it; not re-creating it (run `mltrail audit verify`)"
        );
        return Ok(());
    }
    store
        .transaction("system", async move |tx, audit| {
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT experiment_id FROM experiments WHERE experiment_id = 0")
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_none() {
                insert_experiment(
                    tx,
                    0,
                    DEFAULT_EXPERIMENT,
                    &experiment_artifact_location(0),
                    &[],
                )
                .await?;
                audit
                    .record(tx, "experiment.create", &ExperimentRef(0))
                    .await?;
            }
            Ok(())
        })
        .await
}

async fn insert_experiment(
    tx: &mut Tx,
    id: i64,
    name: &str,
    location: &str,
    tags: &[KeyValue],
) -> Result<(), StoreError> {
    let now = now_millis();
    sqlx::query("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES ($1, $2, $3, 'active', $4, $4)")
        .bind(id)
        .bind(name.to_string())
        .bind(location.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    for tag in tags {
        upsert_experiment_tag(tx, id, tag).await?;
    }
    Ok(())
}

async fn upsert_experiment_tag(tx: &mut Tx, id: i64, tag: &KeyValue) -> Result<(), StoreError> {
    validate_key("tag", &tag.key)?;
    validate_len("Tag", &tag.key, &tag.value, MAX_TAG_VALUE_LEN)?;
    sqlx::query("INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value")
        .bind(id)
        .bind(tag.key.clone())
        .bind(tag.value.clone())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Creates an experiment and returns its id. `artifact_location` must already be validated.
pub async fn create_experiment(
    store: &MetaStore,
    actor: &str,
    name: String,
    artifact_location: Option<String>,
    tags: Vec<KeyValue>,
) -> Result<ExperimentId, StoreError> {
    if name.trim().is_empty() {
        return Err(Invalid::Missing("name").into());
    }
    // The id is known only inside the transaction, so the event is recorded there.
    store
        .transaction(actor, async move |tx, audit| {
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT experiment_id FROM experiments WHERE name = $1")
                    .bind(name.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if existing.is_some() {
                return Err(AlreadyExists::Experiment(name).into());
            }
            let id: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(experiment_id), 0) + 1 FROM experiments")
                    .fetch_one(&mut *tx)
                    .await?;
            let location = artifact_location.unwrap_or_else(|| experiment_artifact_location(id));
            insert_experiment(tx, id, &name, &location, &tags).await?;
            audit
                .record(tx, "experiment.create", &ExperimentRef(id))
                .await?;
            Ok(ExperimentId(id))
        })
        .await
}

pub async fn get_experiment(store: &MetaStore, id: ExperimentId) -> Result<Experiment, StoreError> {
    let id = id.0;
    let mut conn = store.readers().acquire().await?;
    let row = sqlx::query("SELECT * FROM experiments WHERE experiment_id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(experiments_from_rows(&mut conn, vec![row]).await?.remove(0))
}

pub async fn get_experiment_by_name(
    store: &MetaStore,
    name: &str,
) -> Result<Experiment, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let row = sqlx::query("SELECT * FROM experiments WHERE name = $1")
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::from(NotFound::ExperimentNamed(name.to_string())))?;
    Ok(experiments_from_rows(&mut conn, vec![row]).await?.remove(0))
}

/// Experiments matching `filter`, among those `visible` names.
pub async fn search_experiments(
    store: &MetaStore,
    view: ViewType,
    filter: &str,
    order_by: &[String],
    max_results: i64,
    page: PageToken,
    visible: &Visible<i64>,
) -> Result<Page<Experiment>, StoreError> {
    let offset = page.offset();
    let plan =
        crate::search::experiments_query(view, filter, order_by, max_results + 1, offset, visible)?;
    let mut conn = store.readers().acquire().await?;
    let rows = plan.fetch_all(&mut conn).await?;
    let experiments = experiments_from_rows(&mut conn, rows).await?;
    Ok(page_of(experiments, offset, max_results))
}

async fn touch_experiment(tx: &mut Tx, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE experiments SET last_update_time = $1 WHERE experiment_id = $2")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn experiment_stage(tx: &mut Tx, id: i64) -> Result<LifecycleStage, StoreError> {
    let stage: Option<String> =
        sqlx::query_scalar("SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    stage
        .and_then(|s| LifecycleStage::parse(&s))
        .ok_or_else(|| not_found(id))
}

pub async fn rename_experiment(
    store: &MetaStore,
    actor: &str,
    id: ExperimentId,
    new_name: String,
) -> Result<(), StoreError> {
    let id = id.0;
    if new_name.trim().is_empty() {
        return Err(Invalid::Missing("new_name").into());
    }
    store
        .audited(
            actor,
            "experiment.rename",
            ExperimentRef(id),
            async move |tx| {
                if experiment_stage(tx, id).await? != LifecycleStage::Active {
                    return Err(Conflict::RenameInactiveExperiment(id).into());
                }
                let clash: Option<i64> = sqlx::query_scalar(
                    "SELECT experiment_id FROM experiments WHERE name = $1 AND experiment_id != $2",
                )
                .bind(new_name.clone())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if clash.is_some() {
                    return Err(AlreadyExists::Experiment(new_name).into());
                }
                sqlx::query(
                "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
            )
            .bind(new_name)
            .bind(now_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
                Ok(())
            },
        )
        .await
}

/// Soft-deletes (or restores) an experiment and, as MLflow does, its runs: one event for the
/// experiment, then one per run.
pub async fn set_experiment_stage(
    store: &MetaStore,
    actor: &str,
    id: ExperimentId,
    stage: LifecycleStage,
) -> Result<(), StoreError> {
    let id = id.0;
    store
        .transaction(actor, async move |tx, audit| {
            let current = experiment_stage(tx, id).await?;
            if id == 0 && stage == LifecycleStage::Deleted {
                return Err(Invalid::DeleteDefaultExperiment.into());
            }
            if current == stage {
                return if stage == LifecycleStage::Deleted {
                    Err(Conflict::ExperimentAlreadyDeleted(id).into())
                } else {
                    Err(Conflict::RestoreActiveExperiment(id).into())
                };
            }
            let now = now_millis();
            sqlx::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3")
                .bind(stage.as_str())
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let moved = runs::set_stage_in_experiment(tx, id, stage, now).await?;
            let action = if stage == LifecycleStage::Deleted {
                "delete"
            } else {
                "restore"
            };
            audit
                .record(tx, &format!("experiment.{action}"), &ExperimentRef(id))
                .await?;
            for run in moved {
                audit.record(tx, &format!("run.{action}"), &run).await?;
            }
            Ok(())
        })
        .await
}

pub async fn set_experiment_tag(
    store: &MetaStore,
    actor: &str,
    id: ExperimentId,
    tag: KeyValue,
) -> Result<(), StoreError> {
    let id = id.0;
    store
        .audited(
            actor,
            "experiment.set_tag",
            ExperimentRef(id),
            async move |tx| {
                if experiment_stage(tx, id).await? != LifecycleStage::Active {
                    return Err(Conflict::ExperimentTagOnInactive(id).into());
                }
                upsert_experiment_tag(tx, id, &tag).await?;
                touch_experiment(tx, id).await
            },
        )
        .await
}

pub async fn delete_experiment_tag(
    store: &MetaStore,
    actor: &str,
    id: ExperimentId,
    key: String,
) -> Result<(), StoreError> {
    let id = id.0;
    store
        .audited(
            actor,
            "experiment.delete_tag",
            ExperimentRef(id),
            async move |tx| {
                experiment_stage(tx, id).await?;
                let done = sqlx::query(
                    "DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2",
                )
                .bind(id)
                .bind(key.clone())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(NotFound::ExperimentTag {
                        experiment_id: id,
                        key,
                    }
                    .into());
                }
                touch_experiment(tx, id).await
            },
        )
        .await
}
