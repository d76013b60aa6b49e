//! The model registry: registered models, versions, stages, aliases and tags.

use crate::access::permissions::Visible;
use crate::audited::{name_version_key, text_key, Audited};
use crate::error::{AlreadyExists, Invalid, NotFound, QueryError};
use crate::gates::GatePass;
use crate::names::validate_key;
use crate::records::*;
use crate::search::{compare, Bind, Plan};
use crate::sql::{int, key_value_object, key_value_object_of, key_values, text};
use crate::{MetaStore, StoreError, Tx};
use mltrail_core::filter::{parse_filter, parse_order_by, Entity as FilterEntity, Op};
use mltrail_core::now_millis;
use mltrail_core::state::ModelStage;
use mltrail_core::{ModelVersionNumber, RunId};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// Every table keyed by a registered model's name, dependents first (the order deletes need).
const MODEL_TABLES: [&str; 7] = [
    "gate_policies",
    "model_approvals",
    "registered_model_aliases",
    "model_version_tags",
    "model_versions",
    "registered_model_tags",
    "registered_models",
];

/// A registered model, as the audit trail records it: its row, tags and aliases (its versions
/// are entities of their own).
pub(crate) struct RegisteredModelRef(pub String);

impl Audited for RegisteredModelRef {
    const KIND: &'static str = "registered_model";
    const LIST_IDS: &'static str = "SELECT name AS id FROM registered_models";

    text_key!(RegisteredModelRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let name = &self.0;
        let Some(row) = sqlx::query("SELECT * FROM registered_models WHERE name = $1")
            .bind(name.clone())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let tags = key_value_object_of(
            conn,
            "SELECT key, value FROM registered_model_tags WHERE name = $1",
            name,
        )
        .await?;
        let aliases = key_value_object_of(conn, "SELECT alias AS key, CAST(version AS TEXT) AS value FROM registered_model_aliases WHERE name = $1", name).await?;
        let mut state = serde_json::json!({
            "creation_time": int(&row, "creation_time")?,
            "last_updated_time": int(&row, "last_updated_time")?,
            "description": text(&row, "description")?,
            "tags": tags,
            "aliases": aliases,
        });
        // Gates and the reports gated aliases moved on, only where there are any: a model
        // without gates digests as it did before gates existed.
        if let Some(gates) = crate::gates::model_state(conn, name).await? {
            state["gates"] = gates;
        }
        let gated = key_value_object_of(conn, "SELECT alias AS key, gate_report AS value FROM registered_model_aliases WHERE name = $1 AND gate_report IS NOT NULL", name).await?;
        if gated.as_object().is_some_and(|m| !m.is_empty()) {
            state["gated_aliases"] = gated;
        }
        Ok(Some(state))
    }
}

/// A model version, as the audit trail records it (its id is `NAME/VERSION`): its row and tags.
pub(crate) struct ModelVersionRef {
    pub name: String,
    pub version: i64,
}

impl Audited for ModelVersionRef {
    const KIND: &'static str = "model_version";
    const LIST_IDS: &'static str =
        "SELECT name || '/' || CAST(version AS TEXT) AS id FROM model_versions";

    name_version_key!(ModelVersionRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(row) =
            sqlx::query("SELECT * FROM model_versions WHERE name = $1 AND version = $2")
                .bind(self.name.clone())
                .bind(self.version)
                .fetch_optional(&mut *conn)
                .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT key, value FROM model_version_tags WHERE name = $1 AND version = $2",
        )
        .bind(self.name.clone())
        .bind(self.version)
        .fetch_all(&mut *conn)
        .await?;
        let tags = key_value_object(&rows)?;
        let mut state = serde_json::json!({
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
        });
        // Approvals and the report a gated stage move was admitted on, only where there are
        // any (as the model's gates).
        if let Some(approvals) = crate::gates::version_state(conn, &self.name, self.version).await?
        {
            state["approvals"] = approvals;
        }
        if let Some(report) = crate::sql::opt_text(&row, "stage_gate_report")? {
            state["stage_gate_report"] = serde_json::Value::String(report);
        }
        Ok(Some(state))
    }
}

fn model_not_found(name: &str) -> StoreError {
    NotFound::RegisteredModel(name.to_string()).into()
}

fn version_not_found(name: &str, version: i64) -> StoreError {
    NotFound::ModelVersion {
        name: name.to_string(),
        version,
    }
    .into()
}

/// Versions arrive as strings in MLflow's API: parsed once, at the edge.
pub fn parse_version(raw: &str) -> Result<ModelVersionNumber, StoreError> {
    ModelVersionNumber::parse(raw).ok_or_else(|| Invalid::Version(raw.to_string()).into())
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(Invalid::Missing("name").into());
    }
    if name.contains('/') || name.contains('\\') || name.contains(':') {
        return Err(Invalid::ModelName(name.to_string()).into());
    }
    Ok(())
}

fn validate_alias(alias: &str) -> Result<(), StoreError> {
    let ok = !alias.is_empty()
        && crate::names::chars(alias) <= 255
        && alias
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        // `v1`, `V23`: version-like names are reserved. (By characters: a multibyte first
        // character must not be split.)
        && !(alias.starts_with(['v', 'V'])
            && alias.len() > 1
            && alias[1..].chars().all(|c| c.is_ascii_digit()))
        && !alias.eq_ignore_ascii_case("latest");
    if ok {
        Ok(())
    } else {
        Err(Invalid::Alias(alias.to_string()).into())
    }
}

async fn require_model(tx: &mut AnyConnection, name: &str) -> Result<(), StoreError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM registered_models WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    found.map(|_| ()).ok_or_else(|| model_not_found(name))
}

async fn require_version(
    tx: &mut AnyConnection,
    name: &str,
    version: i64,
) -> Result<(), StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT version FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name.to_string())
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
    found
        .map(|_| ())
        .ok_or_else(|| version_not_found(name, version))
}

async fn touch_model(tx: &mut Tx, name: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
        .bind(now)
        .bind(name.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn versions_from_rows(
    conn: &mut AnyConnection,
    rows: Vec<AnyRow>,
) -> Result<Vec<ModelVersion>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name = text(&row, "name")?;
        let version = int(&row, "version")?;
        let tags = sqlx::query("SELECT key, value FROM model_version_tags WHERE name = $1 AND version = $2 ORDER BY key")
            .bind(name.clone())
            .bind(version)
            .fetch_all(&mut *conn)
            .await?;
        let tags = key_values(&tags)?;
        let aliases: Vec<String> = sqlx::query_scalar("SELECT alias FROM registered_model_aliases WHERE name = $1 AND version = $2 ORDER BY alias")
            .bind(name.clone())
            .bind(version)
            .fetch_all(&mut *conn)
            .await?;
        out.push(ModelVersion {
            name,
            version: version.to_string(),
            creation_timestamp: int(&row, "creation_time")?,
            last_updated_timestamp: int(&row, "last_updated_time")?,
            user_id: text(&row, "user_id")?,
            current_stage: text(&row, "current_stage")?,
            description: text(&row, "description")?,
            source: text(&row, "source")?,
            run_id: text(&row, "run_id")?,
            status: text(&row, "status")?,
            run_link: text(&row, "run_link")?,
            model_id: text(&row, "model_id")?,
            tags,
            aliases,
        });
    }
    Ok(out)
}

async fn load_version(
    conn: &mut AnyConnection,
    name: &str,
    version: i64,
) -> Result<ModelVersion, StoreError> {
    let row = sqlx::query("SELECT * FROM model_versions WHERE name = $1 AND version = $2")
        .bind(name.to_string())
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| version_not_found(name, version))?;
    Ok(versions_from_rows(conn, vec![row]).await?.remove(0))
}

/// The newest version in each stage, as MLflow's `latest_versions` reports them.
async fn latest_versions(
    conn: &mut AnyConnection,
    name: &str,
    stages: Option<&[ModelStage]>,
) -> Result<Vec<ModelVersion>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM model_versions v WHERE name = $1 AND version = (SELECT MAX(version) FROM model_versions w WHERE w.name = v.name AND w.current_stage = v.current_stage) ORDER BY version",
    )
    .bind(name.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut versions = versions_from_rows(conn, rows).await?;
    if let Some(stages) = stages {
        versions
            .retain(|v| ModelStage::parse(&v.current_stage).is_some_and(|s| stages.contains(&s)));
    }
    Ok(versions)
}

async fn load_model(conn: &mut AnyConnection, row: &AnyRow) -> Result<RegisteredModel, StoreError> {
    let name = text(row, "name")?;
    let tags =
        sqlx::query("SELECT key, value FROM registered_model_tags WHERE name = $1 ORDER BY key")
            .bind(name.clone())
            .fetch_all(&mut *conn)
            .await?;
    let tags = key_values(&tags)?;
    let aliases = sqlx::query(
        "SELECT alias, version FROM registered_model_aliases WHERE name = $1 ORDER BY alias",
    )
    .bind(name.clone())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Alias {
            alias: text(r, "alias")?,
            version: int(r, "version")?.to_string(),
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let latest = latest_versions(conn, &name, None).await?;
    Ok(RegisteredModel {
        name,
        creation_timestamp: int(row, "creation_time")?,
        last_updated_timestamp: int(row, "last_updated_time")?,
        description: text(row, "description")?,
        latest_versions: latest,
        tags,
        aliases,
    })
}

async fn get_model_conn(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<RegisteredModel, StoreError> {
    let row = sqlx::query("SELECT * FROM registered_models WHERE name = $1")
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| model_not_found(name))?;
    load_model(conn, &row).await
}

pub async fn create_registered_model(
    store: &MetaStore,
    actor: &str,
    name: String,
    description: String,
    tags: Vec<KeyValue>,
) -> Result<RegisteredModel, StoreError> {
    validate_name(&name)?;
    for t in &tags {
        validate_key("tag", &t.key)?;
    }
    let gates = store.configured_gates_for(&name);
    store
        .audited(actor, "registered_model.create", RegisteredModelRef(name.clone()), async move |tx| {
            let exists: Option<String> = sqlx::query_scalar("SELECT name FROM registered_models WHERE name = $1")
                .bind(name.clone())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Err(AlreadyExists::RegisteredModel(name).into());
            }
            let now = now_millis();
            sqlx::query("INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES ($1, $2, $2, $3)")
                .bind(name.clone())
                .bind(now)
                .bind(description)
                .execute(&mut *tx)
                .await?;
            for (alias, policy) in &gates {
                crate::gates::set_policy_in(tx, &name, alias, policy).await?;
            }
            for t in &tags {
                sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3)")
                    .bind(name.clone())
                    .bind(t.key.clone())
                    .bind(t.value.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            get_model_conn(tx, &name).await
        })
        .await
}

pub async fn get_registered_model(
    store: &MetaStore,
    name: &str,
) -> Result<RegisteredModel, StoreError> {
    let mut conn = store.readers().acquire().await?;
    get_model_conn(&mut conn, name).await
}

pub async fn rename_registered_model(
    store: &MetaStore,
    actor: &str,
    name: String,
    new_name: String,
) -> Result<RegisteredModel, StoreError> {
    validate_name(&new_name)?;
    let gates = store.configured_gates_for(&new_name);
    // Both names and every version under both: the old ones no longer exist.
    store
        .transaction(actor, async move |tx, audit| {
            require_model(tx, &name).await?;
            let clash: Option<String> =
                sqlx::query_scalar("SELECT name FROM registered_models WHERE name = $1")
                    .bind(new_name.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if clash.is_some() {
                return Err(AlreadyExists::RegisteredModel(new_name).into());
            }
            let versions: Vec<i64> = sqlx::query_scalar(
                "SELECT version FROM model_versions WHERE name = $1 ORDER BY version",
            )
            .bind(name.clone())
            .fetch_all(&mut *tx)
            .await?;
            for table in MODEL_TABLES {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET name = $1 WHERE name = $2"
                )))
                .bind(new_name.clone())
                .bind(name.clone())
                .execute(&mut *tx)
                .await?;
            }
            // The configuration's gates for the new name replace the moved ones of their aliases.
            for (alias, policy) in &gates {
                crate::gates::set_policy_in(tx, &new_name, alias, policy).await?;
            }
            // Kept reports are listed under the model's name (their content keeps the old one).
            sqlx::query("UPDATE gate_reports SET name = $1 WHERE name = $2")
                .bind(new_name.clone())
                .bind(name.clone())
                .execute(&mut *tx)
                .await?;
            touch_model(tx, &new_name, now_millis()).await?;
            crate::access::permissions::rename_resource(
                tx,
                audit,
                mltrail_core::ResourceType::RegisteredModel,
                &name,
                &new_name,
            )
            .await?;
            audit
                .record(
                    tx,
                    "registered_model.rename",
                    &RegisteredModelRef(name.clone()),
                )
                .await?;
            audit
                .record(
                    tx,
                    "registered_model.rename",
                    &RegisteredModelRef(new_name.clone()),
                )
                .await?;
            for v in versions {
                audit
                    .record(
                        tx,
                        "model_version.rename",
                        &ModelVersionRef {
                            name: name.clone(),
                            version: v,
                        },
                    )
                    .await?;
                audit
                    .record(
                        tx,
                        "model_version.rename",
                        &ModelVersionRef {
                            name: new_name.clone(),
                            version: v,
                        },
                    )
                    .await?;
            }
            get_model_conn(tx, &new_name).await
        })
        .await
}

pub async fn update_registered_model(
    store: &MetaStore,
    actor: &str,
    name: String,
    description: String,
) -> Result<RegisteredModel, StoreError> {
    store
        .audited(actor, "registered_model.update", RegisteredModelRef(name.clone()), async move |tx| {
            require_model(tx, &name).await?;
            sqlx::query("UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE name = $3")
                .bind(description)
                .bind(now_millis())
                .bind(name.clone())
                .execute(&mut *tx)
                .await?;
            get_model_conn(tx, &name).await
        })
        .await
}

pub async fn delete_registered_model(
    store: &MetaStore,
    actor: &str,
    name: String,
) -> Result<(), StoreError> {
    // Each version, then the model, all recorded as gone.
    store
        .transaction(actor, async move |tx, audit| {
            require_model(tx, &name).await?;
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM model_versions WHERE name = $1")
                    .bind(name.clone())
                    .fetch_all(&mut *tx)
                    .await?;
            for table in MODEL_TABLES {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE name = $1"
                )))
                .bind(name.clone())
                .execute(&mut *tx)
                .await?;
            }
            crate::access::permissions::forget_resource(
                tx,
                audit,
                mltrail_core::ResourceType::RegisteredModel,
                &name,
            )
            .await?;
            for v in versions {
                audit
                    .record(
                        tx,
                        "model_version.delete",
                        &ModelVersionRef {
                            name: name.clone(),
                            version: v,
                        },
                    )
                    .await?;
            }
            audit
                .record(tx, "registered_model.delete", &RegisteredModelRef(name))
                .await
        })
        .await
}

pub async fn set_registered_model_tag(
    store: &MetaStore,
    actor: &str,
    name: String,
    tag: KeyValue,
) -> Result<(), StoreError> {
    validate_key("tag", &tag.key)?;
    store
        .audited(actor, "registered_model.set_tag", RegisteredModelRef(name.clone()), async move |tx| {
            require_model(tx, &name).await?;
            sqlx::query("INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value")
                .bind(name.clone())
                .bind(tag.key)
                .bind(tag.value)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await
}

pub async fn delete_registered_model_tag(
    store: &MetaStore,
    actor: &str,
    name: String,
    key: String,
) -> Result<(), StoreError> {
    store
        .audited(
            actor,
            "registered_model.delete_tag",
            RegisteredModelRef(name.clone()),
            async move |tx| {
                require_model(tx, &name).await?;
                sqlx::query("DELETE FROM registered_model_tags WHERE name = $1 AND key = $2")
                    .bind(name.clone())
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            },
        )
        .await
}

/// Registry tag filters: `!=` also matches models without the tag (MLflow 3's client appends
/// ``tags.`mlflow.prompt.is_prompt` != 'true'`` to every registered-model search).
fn tag_condition(
    plan: &mut Plan,
    alias: &str,
    clause: &mltrail_core::filter::Clause,
) -> Result<(String, &'static str), StoreError> {
    Ok(match clause.op {
        Op::IsNull => ("1 = 1".into(), "NOT EXISTS"),
        Op::IsNotNull => ("1 = 1".into(), "EXISTS"),
        Op::Ne => {
            let mut eq = clause.clone();
            eq.op = Op::Eq;
            (
                compare(plan, &format!("{alias}.value"), &eq, false)?,
                "NOT EXISTS",
            )
        }
        _ => (
            compare(plan, &format!("{alias}.value"), clause, false)?,
            "EXISTS",
        ),
    })
}

fn model_order(term: &str, prefix: &str) -> Result<String, StoreError> {
    let term = parse_order_by(term)?;
    let column = match term.key.as_str() {
        "name" => "name",
        "timestamp" | "creation_timestamp" => "creation_time",
        "last_updated_timestamp" => "last_updated_time",
        "version_number" | "version" if prefix == "v" => "version",
        other => return Err(QueryError::RegistryOrder(other.to_string()).into()),
    };
    Ok(format!(
        "{prefix}.{column} {}",
        if term.ascending { "ASC" } else { "DESC" }
    ))
}

/// Registered models matching `filter`, among those `visible` names.
pub async fn search_registered_models(
    store: &MetaStore,
    filter: &str,
    max_results: i64,
    order_by: &[String],
    page: PageToken,
    visible: &Visible<String>,
) -> Result<Page<RegisteredModel>, StoreError> {
    let offset = page.offset();
    let mut plan = Plan::default();
    let mut conditions = vec!["1 = 1".to_string()];
    conditions.extend(visible.condition(&mut plan, "m.name", Bind::Text));
    for (n, clause) in parse_filter(filter)?.iter().enumerate() {
        match (clause.entity, clause.key.as_str()) {
            (FilterEntity::Attribute, "name") => {
                conditions.push(compare(&mut plan, "m.name", clause, false)?)
            }
            (FilterEntity::Tag, key) => {
                let alias = format!("t{n}");
                let key = plan.bind(Bind::Text(key.to_string()));
                let (cmp, exists) = tag_condition(&mut plan, &alias, clause)?;
                conditions.push(format!("{exists} (SELECT 1 FROM registered_model_tags {alias} WHERE {alias}.name = m.name AND {alias}.key = {key} AND {cmp})"));
            }
            (_, key) => return Err(QueryError::RegisteredModelFilter(key.to_string()).into()),
        }
    }
    let mut order: Vec<String> = order_by
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| model_order(t, "m"))
        .collect::<Result<_, _>>()?;
    order.push("m.name ASC".into());
    let limit = plan.bind(Bind::Int(max_results + 1));
    let off = plan.bind(Bind::Int(offset));
    let sql = format!(
        "SELECT m.* FROM registered_models m WHERE {} ORDER BY {} LIMIT {limit} OFFSET {off}",
        conditions.join(" AND "),
        order.join(", ")
    );
    let mut conn = store.readers().acquire().await?;
    let rows = plan.fetch(&sql, &mut conn).await?;
    let mut models = Vec::with_capacity(rows.len());
    for row in &rows {
        models.push(load_model(&mut conn, row).await?);
    }
    Ok(page_of(models, offset, max_results))
}

pub async fn get_latest_versions(
    store: &MetaStore,
    name: &str,
    stages: Option<&[ModelStage]>,
) -> Result<Vec<ModelVersion>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    require_model(&mut conn, name).await?;
    latest_versions(&mut conn, name, stages).await
}

/// Fields of `model-versions/create`. `source` must already be validated by the caller, which
/// knows the artifact store.
#[derive(Debug, Clone, Default)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<RunId>,
    pub run_link: String,
    pub description: String,
    pub model_id: String,
    pub tags: Vec<KeyValue>,
}

/// Tag naming the dataset version (NAME@VERSION) a model version was trained on.
pub const TRAINING_DATA_TAG: &str = "mltrail.training_data";

pub async fn create_model_version(
    store: &MetaStore,
    actor: &str,
    new: NewModelVersion,
) -> Result<ModelVersion, StoreError> {
    for t in &new.tags {
        validate_key("tag", &t.key)?;
    }
    let user = actor.to_string();
    let mut new = new;
    // The version number is known only inside the transaction; the model is touched too.
    store
        .transaction(actor, async move |tx, audit| {
            require_model(tx, &new.name).await?;
            // Without an explicit training-data tag, the run's logged training input is it.
            if let Some(run_id) = new.run_id.as_ref().filter(|_| !new.tags.iter().any(|t| t.key == TRAINING_DATA_TAG)) {
                if let Some(d) = crate::datasets::training_input_of_run(tx, run_id.as_str()).await? {
                    new.tags.push(KeyValue { key: TRAINING_DATA_TAG.into(), value: format!("{}@{}", d.name, d.version) });
                    new.tags.push(KeyValue { key: "mltrail.training_data_digest".into(), value: d.file.digest });
                }
            }
            let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = $1")
                .bind(new.name.clone())
                .fetch_one(&mut *tx)
                .await?;
            let now = now_millis();
            sqlx::query("INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, current_stage, source, run_id, run_link, status, model_id) VALUES ($1, $2, $3, $3, $4, $5, 'None', $6, $7, $8, 'READY', $9)")
                .bind(new.name.clone())
                .bind(version)
                .bind(now)
                .bind(new.description)
                .bind(user)
                .bind(new.source)
                // No run: stored as '', as MLflow does.
                .bind(new.run_id.map(RunId::into_inner).unwrap_or_default())
                .bind(new.run_link)
                .bind(new.model_id)
                .execute(&mut *tx)
                .await?;
            for t in &new.tags {
                sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4)")
                    .bind(new.name.clone())
                    .bind(version)
                    .bind(t.key.clone())
                    .bind(t.value.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            touch_model(tx, &new.name, now).await?;
            audit.record(tx, "model_version.create", &ModelVersionRef { name: new.name.clone(), version }).await?;
            audit.record(tx, "registered_model.new_version", &RegisteredModelRef(new.name.clone())).await?;
            load_version(tx, &new.name, version).await
        })
        .await
}

pub async fn get_model_version(
    store: &MetaStore,
    name: &str,
    version: ModelVersionNumber,
) -> Result<ModelVersion, StoreError> {
    let version = version.0;
    let mut conn = store.readers().acquire().await?;
    load_version(&mut conn, name, version).await
}

pub async fn update_model_version(
    store: &MetaStore,
    actor: &str,
    name: String,
    version: ModelVersionNumber,
    description: String,
) -> Result<ModelVersion, StoreError> {
    let version = version.0;
    store
        .audited(actor, "model_version.update", ModelVersionRef { name: name.clone(), version }, async move |tx| {
            require_version(tx, &name, version).await?;
            sqlx::query("UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE name = $3 AND version = $4")
                .bind(description)
                .bind(now_millis())
                .bind(name.clone())
                .bind(version)
                .execute(&mut *tx)
                .await?;
            load_version(tx, &name, version).await
        })
        .await
}

pub async fn transition_stage(
    store: &MetaStore,
    actor: &str,
    name: String,
    version: ModelVersionNumber,
    stage: ModelStage,
    archive_existing: bool,
    gate: Option<GatePass>,
) -> Result<ModelVersion, StoreError> {
    let version = version.0;
    // The gate's report, versions archived to make room, then this version, then the model.
    store
        .transaction(actor, async move |tx, audit| {
            require_version(tx, &name, version).await?;
            let now = now_millis();
            let report = match gate_alias_of_stage(stage) {
                Some(alias) => {
                    let champion = stage_champion(tx, &name, stage, version).await?;
                    crate::gates::admit(tx, &name, alias, version, champion, gate.as_ref()).await?
                }
                None if gate.is_some() => return Err(crate::error::Conflict::GateChanged { name: name.clone(), alias: stage.as_str().to_lowercase() }.into()),
                None => None,
            };
            if let (Some(digest), Some(pass)) = (&report, &gate) {
                audit.record(tx, gate_action(pass), &crate::gates::ReportRef(digest.clone())).await?;
            }
            if archive_existing && matches!(stage, ModelStage::Staging | ModelStage::Production) {
                let others: Vec<i64> = sqlx::query_scalar("SELECT version FROM model_versions WHERE name = $1 AND current_stage = $2 AND version != $3")
                    .bind(name.clone())
                    .bind(stage.as_str())
                    .bind(version)
                    .fetch_all(&mut *tx)
                    .await?;
                for other in others {
                    sqlx::query("UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1, stage_gate_report = NULL WHERE name = $2 AND version = $3")
                        .bind(now)
                        .bind(name.clone())
                        .bind(other)
                        .execute(&mut *tx)
                        .await?;
                    audit.record(tx, "model_version.transition_stage", &ModelVersionRef { name: name.clone(), version: other }).await?;
                }
            }
            sqlx::query("UPDATE model_versions SET current_stage = $1, last_updated_time = $2, stage_gate_report = $3 WHERE name = $4 AND version = $5")
                .bind(stage.as_str())
                .bind(now)
                .bind(report)
                .bind(name.clone())
                .bind(version)
                .execute(&mut *tx)
                .await?;
            touch_model(tx, &name, now).await?;
            audit.record(tx, "model_version.transition_stage", &ModelVersionRef { name: name.clone(), version }).await?;
            audit.record(tx, "registered_model.touch", &RegisteredModelRef(name.clone())).await?;
            load_version(tx, &name, version).await
        })
        .await
}

pub async fn delete_model_version(
    store: &MetaStore,
    actor: &str,
    name: String,
    version: ModelVersionNumber,
) -> Result<(), StoreError> {
    let version = version.0;
    // The version as gone, and the model it was touched on.
    store
        .transaction(actor, async move |tx, audit| {
            require_version(tx, &name, version).await?;
            for table in [
                "model_approvals",
                "registered_model_aliases",
                "model_version_tags",
                "model_versions",
            ] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE name = $1 AND version = $2"
                )))
                .bind(name.clone())
                .bind(version)
                .execute(&mut *tx)
                .await?;
            }
            touch_model(tx, &name, now_millis()).await?;
            audit
                .record(
                    tx,
                    "model_version.delete",
                    &ModelVersionRef {
                        name: name.clone(),
                        version,
                    },
                )
                .await?;
            audit
                .record(tx, "registered_model.touch", &RegisteredModelRef(name))
                .await
        })
        .await
}

pub async fn set_model_version_tag(
    store: &MetaStore,
    actor: &str,
    name: String,
    version: ModelVersionNumber,
    tag: KeyValue,
) -> Result<(), StoreError> {
    let version = version.0;
    validate_key("tag", &tag.key)?;
    store
        .audited(actor, "model_version.set_tag", ModelVersionRef { name: name.clone(), version }, async move |tx| {
            require_version(tx, &name, version).await?;
            sqlx::query("INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value")
                .bind(name.clone())
                .bind(version)
                .bind(tag.key)
                .bind(tag.value)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await
}

pub async fn delete_model_version_tag(
    store: &MetaStore,
    actor: &str,
    name: String,
    version: ModelVersionNumber,
    key: String,
) -> Result<(), StoreError> {
    let version = version.0;
    store
        .audited(
            actor,
            "model_version.delete_tag",
            ModelVersionRef {
                name: name.clone(),
                version,
            },
            async move |tx| {
                require_version(tx, &name, version).await?;
                sqlx::query(
                    "DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3",
                )
                .bind(name.clone())
                .bind(version)
                .bind(key)
                .execute(&mut *tx)
                .await?;
                Ok(())
            },
        )
        .await
}

/// Model versions matching `filter`, of the registered models `visible` names.
pub async fn search_model_versions(
    store: &MetaStore,
    filter: &str,
    max_results: i64,
    order_by: &[String],
    page: PageToken,
    visible: &Visible<String>,
) -> Result<Page<ModelVersion>, StoreError> {
    let offset = page.offset();
    let mut plan = Plan::default();
    let mut conditions = vec!["1 = 1".to_string()];
    conditions.extend(visible.condition(&mut plan, "v.name", Bind::Text));
    for (n, clause) in parse_filter(filter)?.iter().enumerate() {
        match (clause.entity, clause.key.as_str()) {
            (FilterEntity::Attribute, "name") => {
                conditions.push(compare(&mut plan, "v.name", clause, false)?)
            }
            (FilterEntity::Attribute, "run_id") => {
                conditions.push(compare(&mut plan, "v.run_id", clause, false)?)
            }
            (FilterEntity::Attribute, "source_path") => {
                conditions.push(compare(&mut plan, "v.source", clause, false)?)
            }
            (FilterEntity::Attribute, "version_number") => {
                conditions.push(compare(&mut plan, "v.version", clause, true)?)
            }
            (FilterEntity::Tag, key) => {
                let alias = format!("t{n}");
                let key = plan.bind(Bind::Text(key.to_string()));
                let (cmp, exists) = tag_condition(&mut plan, &alias, clause)?;
                conditions.push(format!("{exists} (SELECT 1 FROM model_version_tags {alias} WHERE {alias}.name = v.name AND {alias}.version = v.version AND {alias}.key = {key} AND {cmp})"));
            }
            (_, key) => return Err(QueryError::ModelVersionFilter(key.to_string()).into()),
        }
    }
    let mut order: Vec<String> = order_by
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| model_order(t, "v"))
        .collect::<Result<_, _>>()?;
    order.push("v.name ASC".into());
    order.push("v.version DESC".into());
    let limit = plan.bind(Bind::Int(max_results + 1));
    let off = plan.bind(Bind::Int(offset));
    let sql = format!(
        "SELECT v.* FROM model_versions v WHERE {} ORDER BY {} LIMIT {limit} OFFSET {off}",
        conditions.join(" AND "),
        order.join(", ")
    );
    let mut conn = store.readers().acquire().await?;
    let rows = plan.fetch(&sql, &mut conn).await?;
    let versions = versions_from_rows(&mut conn, rows).await?;
    Ok(page_of(versions, offset, max_results))
}

pub async fn set_alias(
    store: &MetaStore,
    actor: &str,
    name: String,
    alias: String,
    version: ModelVersionNumber,
    gate: Option<GatePass>,
) -> Result<(), StoreError> {
    let version = version.0;
    validate_alias(&alias)?;
    // A protected alias moves only with a report made against its policy and the version it
    // holds now, both read again here; the report's event comes first, the move's after it.
    store
        .transaction(actor, async move |tx, audit| {
            require_version(tx, &name, version).await?;
            let champion: Option<i64> = sqlx::query_scalar("SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2")
                .bind(name.clone())
                .bind(alias.clone())
                .fetch_optional(&mut *tx)
                .await?;
            let report = crate::gates::admit(tx, &name, &alias, version, champion, gate.as_ref()).await?;
            if let (Some(digest), Some(pass)) = (&report, &gate) {
                audit.record(tx, gate_action(pass), &crate::gates::ReportRef(digest.clone())).await?;
            }
            sqlx::query("INSERT INTO registered_model_aliases (name, alias, version, gate_report) VALUES ($1, $2, $3, $4) ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, gate_report = excluded.gate_report")
                .bind(name.clone())
                .bind(alias)
                .bind(version)
                .bind(report)
                .execute(&mut *tx)
                .await?;
            audit.record(tx, "registered_model.set_alias", &RegisteredModelRef(name)).await
        })
        .await
}

/// The audit action of a gate report: a pass, or an admin's override of a failed gate.
fn gate_action(pass: &GatePass) -> &'static str {
    if pass.overridden {
        "gate.override"
    } else {
        "gate.pass"
    }
}

/// The alias whose gate guards moving a version into `stage`: `production` for Production,
/// `staging` for Staging; none for the others.
pub fn gate_alias_of_stage(stage: ModelStage) -> Option<&'static str> {
    match stage {
        ModelStage::Production => Some("production"),
        ModelStage::Staging => Some("staging"),
        _ => None,
    }
}

/// The version a stage move's gate compares with: the newest other version in that stage.
async fn stage_champion(
    conn: &mut AnyConnection,
    name: &str,
    stage: ModelStage,
    candidate: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT MAX(version) FROM model_versions WHERE name = $1 AND current_stage = $2 AND version != $3")
        .bind(name.to_string())
        .bind(stage.as_str())
        .bind(candidate)
        .fetch_one(&mut *conn)
        .await?)
}

/// The version a gated move of `alias` (or, for a stage's gate alias, of that stage) would be
/// compared with now: what it holds, else the version its newest kept report admitted.
pub async fn champion(
    store: &MetaStore,
    name: &str,
    alias: &str,
    stage: Option<ModelStage>,
    candidate: i64,
) -> Result<Option<i64>, StoreError> {
    let current = champion_now(store, name, alias, stage, candidate).await?;
    let mut conn = store.readers().acquire().await?;
    crate::gates::champion_in(&mut conn, name, alias, current).await
}

/// What `alias` (or `stage`: its newest version other than `candidate`) holds now.
pub async fn champion_now(
    store: &MetaStore,
    name: &str,
    alias: &str,
    stage: Option<ModelStage>,
    candidate: i64,
) -> Result<Option<i64>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    Ok(match stage {
        Some(stage) => stage_champion(&mut conn, name, stage, candidate).await?,
        None => {
            sqlx::query_scalar(
                "SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2",
            )
            .bind(name.to_string())
            .bind(alias.to_string())
            .fetch_optional(&mut *conn)
            .await?
        }
    })
}

/// Protects `name`'s `alias` with `policy` (replacing its policy, if any).
pub async fn set_gate(
    store: &MetaStore,
    actor: &str,
    name: String,
    alias: String,
    policy: mltrail_core::gate::Policy,
) -> Result<(), StoreError> {
    validate_alias(&alias)?;
    store
        .audited(
            actor,
            "registered_model.set_gate",
            RegisteredModelRef(name.clone()),
            async move |tx| {
                require_model(tx, &name).await?;
                crate::gates::set_policy_in(tx, &name, &alias, &policy).await
            },
        )
        .await
}

/// Removes the gate on `name`'s `alias`.
pub async fn delete_gate(
    store: &MetaStore,
    actor: &str,
    name: String,
    alias: String,
) -> Result<(), StoreError> {
    store
        .audited(
            actor,
            "registered_model.delete_gate",
            RegisteredModelRef(name.clone()),
            async move |tx| {
                require_model(tx, &name).await?;
                crate::gates::delete_policy_in(tx, &name, &alias).await
            },
        )
        .await
}

/// Records `actor`'s approval of `name`/`version` for `alias`. Who may approve (the approver
/// role) is the caller's to check; that the author cannot is checked here.
pub async fn approve(
    store: &MetaStore,
    actor: &str,
    name: String,
    version: ModelVersionNumber,
    alias: String,
    comment: String,
) -> Result<(), StoreError> {
    let version = version.0;
    validate_alias(&alias)?;
    let approver = actor.to_string();
    store
        .audited(
            actor,
            "model_version.approve",
            ModelVersionRef {
                name: name.clone(),
                version,
            },
            async move |tx| {
                require_version(tx, &name, version).await?;
                crate::gates::approve_in(tx, &name, version, &alias, &approver, &comment).await
            },
        )
        .await
}

pub async fn delete_alias(
    store: &MetaStore,
    actor: &str,
    name: String,
    alias: String,
) -> Result<(), StoreError> {
    store
        .audited(
            actor,
            "registered_model.delete_alias",
            RegisteredModelRef(name.clone()),
            async move |tx| {
                require_model(tx, &name).await?;
                let done = sqlx::query(
                    "DELETE FROM registered_model_aliases WHERE name = $1 AND alias = $2",
                )
                .bind(name.clone())
                .bind(alias.clone())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(NotFound::Alias(alias).into());
                }
                Ok(())
            },
        )
        .await
}

pub async fn get_version_by_alias(
    store: &MetaStore,
    name: &str,
    alias: &str,
) -> Result<ModelVersion, StoreError> {
    let mut conn = store.readers().acquire().await?;
    require_model(&mut conn, name).await?;
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2",
    )
    .bind(name.to_string())
    .bind(alias.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let version = version.ok_or_else(|| NotFound::Alias(alias.to_string()))?;
    load_version(&mut conn, name, version).await
}

/// Resolves a version's `source` into the artifact URI its files live under.
pub async fn download_uri(
    store: &MetaStore,
    name: &str,
    version: ModelVersionNumber,
) -> Result<String, StoreError> {
    let mv = get_model_version(store, name, version).await?;
    resolve_source(store, &mv.source).await
}

pub async fn resolve_source(store: &MetaStore, source: &str) -> Result<String, StoreError> {
    if let Some(rest) = source.strip_prefix("models:/") {
        let id = rest.trim_start_matches('/');
        if id.starts_with("m-") && !id.contains('/') {
            let id = crate::logged_models::parse_id(id)?;
            return Ok(crate::logged_models::get_logged_model(store, &id)
                .await?
                .info
                .artifact_uri);
        }
    }
    if let Some(rest) = source.strip_prefix("runs:/") {
        let (run_id, path) = rest
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((rest, ""));
        let run = crate::runs::get_run(store, &crate::runs::parse_run_id(run_id)?).await?;
        return Ok(if path.is_empty() {
            run.info.artifact_uri
        } else {
            format!("{}/{}", run.info.artifact_uri, path)
        });
    }
    Ok(source.to_string())
}
