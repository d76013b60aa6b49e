//! MLflow 3's logged models: `mlflow.<flavor>.log_model` creates one, uploads its files under
//! `<experiment>/models/<model_id>/artifacts`, and marks it ready.

use crate::access::permissions::Visible;
use crate::audited::{text_key, Audited};
use crate::error::{NotFound, QueryError};
use crate::names::validate_key;
use crate::records::*;
use crate::search::{compare, Bind, Plan};
use crate::sql::{blob, int, key_value_object_of, key_values, opt_text, text};
use crate::{MetaStore, StoreError};
use mltrail_core::filter::{parse_filter, Entity as FilterEntity};
use mltrail_core::state::LoggedModelStatus;
use mltrail_core::{now_millis, ExperimentId, LoggedModelId};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

fn not_found(id: &str) -> StoreError {
    NotFound::LoggedModel(id.to_string()).into()
}

/// A logged-model id as a request spelled it; one that is not `m-` and 32 hex digits names no
/// model, and is answered as any unknown model is.
pub fn parse_id(raw: &str) -> Result<LoggedModelId, StoreError> {
    LoggedModelId::parse(raw).ok_or_else(|| not_found(raw))
}

/// A logged model, as the audit trail records it: its row, tags and params.
pub(crate) struct LoggedModelRef(pub String);

impl Audited for LoggedModelRef {
    const KIND: &'static str = "logged_model";
    const LIST_IDS: &'static str = "SELECT model_id AS id FROM logged_models";

    text_key!(LoggedModelRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let id = &self.0;
        let Some(row) = sqlx::query("SELECT * FROM logged_models WHERE model_id = $1")
            .bind(id.clone())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let tags = key_value_object_of(
            conn,
            "SELECT key, value FROM logged_model_tags WHERE model_id = $1",
            id,
        )
        .await?;
        let params = key_value_object_of(
            conn,
            "SELECT key, value FROM logged_model_params WHERE model_id = $1",
            id,
        )
        .await?;
        Ok(Some(serde_json::json!({
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
}

#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    pub experiment_id: ExperimentId,
    /// Recorded as given: MLflow does not check that it names a run.
    pub name: String,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

async fn kvs(
    conn: &mut AnyConnection,
    table: &'static str,
    id: &str,
) -> Result<Vec<KeyValue>, StoreError> {
    let sql = format!("SELECT key, value FROM {table} WHERE model_id = $1 ORDER BY key");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    key_values(&rows)
}

async fn from_row(conn: &mut AnyConnection, row: &AnyRow) -> Result<LoggedModel, StoreError> {
    let id = text(row, "model_id")?;
    let tags = kvs(conn, "logged_model_tags", &id).await?;
    let params = kvs(conn, "logged_model_params", &id).await?;
    let metrics = model_metrics(conn, &id).await?;
    Ok(LoggedModel {
        info: LoggedModelInfo {
            model_id: id,
            experiment_id: int(row, "experiment_id")?.to_string(),
            name: text(row, "name")?,
            creation_timestamp_ms: int(row, "creation_time")?,
            last_updated_timestamp_ms: int(row, "last_updated_time")?,
            artifact_uri: text(row, "artifact_uri")?,
            status: text(row, "status")?,
            model_type: opt_text(row, "model_type")?,
            source_run_id: opt_text(row, "source_run_id")?,
            tags,
        },
        data: LoggedModelData { params, metrics },
    })
}

/// Every value logged for the model (a metric logged with its `model_id`), as MLflow lists
/// them: each with the run that logged it.
async fn model_metrics(conn: &mut AnyConnection, id: &str) -> Result<Vec<Metric>, StoreError> {
    let blocks = sqlx::query(
        "SELECT run_uuid, key, points FROM metric_blocks WHERE model_id = $1 AND model_id IS NOT NULL",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut metrics = Vec::new();
    for b in &blocks {
        let run_id = text(b, "run_uuid")?;
        let key = text(b, "key")?;
        for p in crate::metrics::block::decode(&blob(b, "points")?)? {
            metrics.push(Metric {
                key: key.clone(),
                value: MetricValue(p.value),
                timestamp: p.timestamp,
                step: p.step,
                run_id: Some(run_id.clone()),
            });
        }
    }
    Ok(metrics)
}

async fn load(conn: &mut AnyConnection, id: &str) -> Result<LoggedModel, StoreError> {
    let row = sqlx::query("SELECT * FROM logged_models WHERE model_id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(id))?;
    from_row(conn, &row).await
}

async fn upsert_kv(
    conn: &mut AnyConnection,
    table: &'static str,
    id: &str,
    kv: &KeyValue,
) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .bind(kv.key.clone())
        .bind(kv.value.clone())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn create_logged_model(
    store: &MetaStore,
    actor: &str,
    new: NewLoggedModel,
) -> Result<LoggedModel, StoreError> {
    for kv in new.params.iter().chain(new.tags.iter()) {
        validate_key("key", &kv.key)?;
    }
    let id = LoggedModelId::generate().into_inner();
    store
        .audited(actor, "logged_model.create", LoggedModelRef(id.clone()), async move |tx| {
            let location: Option<String> = sqlx::query_scalar("SELECT artifact_location FROM experiments WHERE experiment_id = $1 AND lifecycle_stage = 'active'")
                .bind(new.experiment_id.0)
                .fetch_optional(&mut *tx)
                .await?;
            let location = location.ok_or(NotFound::ActiveExperiment(new.experiment_id.0))?;
            let name = if new.name.is_empty() { "model".to_string() } else { new.name.clone() };
            let artifact_uri = format!("{}/models/{id}/artifacts", location.trim_end_matches('/'));
            let now = now_millis();
            sqlx::query("INSERT INTO logged_models (model_id, experiment_id, name, artifact_uri, status, creation_time, last_updated_time, source_run_id, model_type, lifecycle_stage) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, 'active')")
                .bind(id.clone())
                .bind(new.experiment_id.0)
                .bind(name)
                .bind(artifact_uri)
                .bind(LoggedModelStatus::Pending.as_str())
                .bind(now)
                .bind(new.source_run_id.clone())
                .bind(new.model_type.clone())
                .execute(&mut *tx)
                .await?;
            for p in &new.params {
                upsert_kv(tx, "logged_model_params", &id, p).await?;
            }
            for t in &new.tags {
                upsert_kv(tx, "logged_model_tags", &id, t).await?;
            }
            load(tx, &id).await
        })
        .await
}

pub async fn get_logged_model(
    store: &MetaStore,
    id: &LoggedModelId,
) -> Result<LoggedModel, StoreError> {
    let id = id.as_str();
    let mut conn = store.readers().acquire().await?;
    load(&mut conn, id).await
}

async fn require(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT model_id FROM logged_models WHERE model_id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    found.map(|_| ()).ok_or_else(|| not_found(id))
}

pub async fn finalize_logged_model(
    store: &MetaStore,
    actor: &str,
    id: LoggedModelId,
    status: LoggedModelStatus,
) -> Result<LoggedModel, StoreError> {
    let id = id.into_inner();
    store
        .audited(actor, "logged_model.finalize", LoggedModelRef(id.clone()), async move |tx| {
            require(tx, &id).await?;
            sqlx::query("UPDATE logged_models SET status = $1, last_updated_time = $2 WHERE model_id = $3")
                .bind(status.as_str())
                .bind(now_millis())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            load(tx, &id).await
        })
        .await
}

pub async fn set_logged_model_tags(
    store: &MetaStore,
    actor: &str,
    id: LoggedModelId,
    tags: Vec<KeyValue>,
) -> Result<(), StoreError> {
    let id = id.into_inner();
    for t in &tags {
        validate_key("tag", &t.key)?;
    }
    store
        .audited(
            actor,
            "logged_model.set_tags",
            LoggedModelRef(id.clone()),
            async move |tx| {
                require(tx, &id).await?;
                for t in &tags {
                    upsert_kv(tx, "logged_model_tags", &id, t).await?;
                }
                Ok(())
            },
        )
        .await
}

pub async fn delete_logged_model_tag(
    store: &MetaStore,
    actor: &str,
    id: LoggedModelId,
    key: String,
) -> Result<(), StoreError> {
    let id = id.into_inner();
    store
        .audited(
            actor,
            "logged_model.delete_tag",
            LoggedModelRef(id.clone()),
            async move |tx| {
                require(tx, &id).await?;
                sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
                    .bind(id.clone())
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            },
        )
        .await
}

pub async fn log_logged_model_params(
    store: &MetaStore,
    actor: &str,
    id: LoggedModelId,
    params: Vec<KeyValue>,
) -> Result<(), StoreError> {
    let id = id.into_inner();
    store
        .audited(
            actor,
            "logged_model.log_params",
            LoggedModelRef(id.clone()),
            async move |tx| {
                require(tx, &id).await?;
                for p in &params {
                    upsert_kv(tx, "logged_model_params", &id, p).await?;
                }
                Ok(())
            },
        )
        .await
}

pub async fn delete_logged_model(
    store: &MetaStore,
    actor: &str,
    id: LoggedModelId,
) -> Result<(), StoreError> {
    let id = id.into_inner();
    store
        .audited(actor, "logged_model.delete", LoggedModelRef(id.clone()), async move |tx| {
            require(tx, &id).await?;
            sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_time = $1 WHERE model_id = $2")
                .bind(now_millis())
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await
}

/// One `order_by` entry of `logged-models/search`.
#[derive(Debug, Clone)]
pub struct ModelOrder {
    pub field_name: String,
    pub ascending: bool,
}

/// Logged models matching `filter`, in the experiments `visible` names.
pub async fn search_logged_models(
    store: &MetaStore,
    experiment_ids: &[ExperimentId],
    filter: &str,
    max_results: i64,
    order_by: &[ModelOrder],
    page: PageToken,
    visible: &Visible<i64>,
) -> Result<Page<LoggedModel>, StoreError> {
    let offset = page.offset();
    let mut plan = Plan::default();
    let mut conditions = vec!["m.lifecycle_stage = 'active'".to_string()];
    conditions.extend(visible.condition(&mut plan, "m.experiment_id", Bind::Int));
    if !experiment_ids.is_empty() {
        let ids: Vec<String> = experiment_ids
            .iter()
            .map(|i| plan.bind(Bind::Int(i.0)))
            .collect();
        conditions.push(format!("m.experiment_id IN ({})", ids.join(", ")));
    }
    for clause in parse_filter(filter)? {
        let column = match (clause.entity, clause.key.as_str()) {
            (FilterEntity::Attribute, "name") => "m.name",
            (FilterEntity::Attribute, "model_id") => "m.model_id",
            (FilterEntity::Attribute, "status") => "m.status",
            (FilterEntity::Attribute, "model_type") => "m.model_type",
            (FilterEntity::Attribute, "source_run_id") => "m.source_run_id",
            (_, key) => return Err(QueryError::LoggedModelFilter(key.to_string()).into()),
        };
        conditions.push(compare(&mut plan, column, &clause, false)?);
    }
    let mut order = Vec::new();
    for o in order_by {
        let column = match o.field_name.as_str() {
            "name" => "m.name",
            "creation_timestamp" | "creation_time" => "m.creation_time",
            "last_updated_timestamp" => "m.last_updated_time",
            other => return Err(QueryError::LoggedModelOrder(other.to_string()).into()),
        };
        order.push(format!(
            "{column} {}",
            if o.ascending { "ASC" } else { "DESC" }
        ));
    }
    order.push("m.creation_time DESC".into());
    order.push("m.model_id ASC".into());
    let limit = plan.bind(Bind::Int(max_results + 1));
    let off = plan.bind(Bind::Int(offset));
    let sql = format!(
        "SELECT m.* FROM logged_models m WHERE {} ORDER BY {} LIMIT {limit} OFFSET {off}",
        conditions.join(" AND "),
        order.join(", ")
    );
    let mut conn = store.readers().acquire().await?;
    let rows = plan.fetch(&sql, &mut conn).await?;
    let mut models = Vec::with_capacity(rows.len());
    for row in &rows {
        models.push(from_row(&mut conn, row).await?);
    }
    Ok(page_of(models, offset, max_results))
}
