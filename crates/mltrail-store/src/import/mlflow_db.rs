//! Reading an MLflow tracking database (SQLite or PostgreSQL, the schema of MLflow 2.x and 3.x)
//! directly, read-only. Tables MLflow added over time (datasets and inputs in 2.4, logged models
//! in 3.0, workspaces in 3.x) are looked for, not assumed: an older database simply has none of
//! them. Only the `default` workspace is read; mltrail has one namespace.
//!
//! Every integer column is cast to BIGINT in the query, so the same code decodes SQLite's
//! integers and PostgreSQL's `integer` and `boolean` columns.

use super::{Experiment, LoggedModel, ModelVersion, RegisteredModel, Run};
use crate::error::Invalid;
use crate::metrics::NewMetric;
use crate::runs::NewDatasetInput;
use crate::sql::{int, opt_int, opt_text, placeholders, text};
use crate::writer::{Db, Stmt};
use crate::{KeyValue, StoreError};
use mltrail_core::state::LoggedModelStatus;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// Runs read per query round: a few hundred ids keep each `IN (…)` far below bind limits.
pub const RUNS_PER_READ: usize = 200;

/// An open MLflow database and what its schema has.
pub struct MlflowDb {
    pool: AnyPool,
    /// `workspace` columns (MLflow 3.x): only `default` is read.
    workspaces: bool,
    /// `datasets`, `inputs`, `input_tags` (MLflow 2.4+).
    inputs: bool,
    /// `logged_models` and their tags, params and metrics (MLflow 3).
    logged_models: bool,
    /// `registered_model_aliases` (MLflow 2.3+).
    aliases: bool,
    /// (run, metric key, timestamp, step) → the logged model a run's value was logged for.
    model_metrics: HashMap<(String, String, i64, i64), String>,
    /// A SQLite source's metric values are read through SQLite's C API on a blocking thread.
    /// Through sqlx each value was copied out of SQLite on its worker thread and freed on ours
    /// under the connection's mutex: at 100 million values that copying, freeing and the futex
    /// waits between them were most of the import's time (perf on the bench's source).
    native: Option<Arc<Mutex<Db>>>,
}

/// The sqlx URL of an MLflow (SQLAlchemy) database URI: `sqlite:///relative.db`,
/// `sqlite:////absolute.db`, `postgresql://…` (a `+driver` suffix, as in
/// `postgresql+psycopg2://`, is dropped).
pub fn source_url(uri: &str) -> Result<String, StoreError> {
    if let Some(path) = uri.strip_prefix("sqlite:///") {
        if path.is_empty() {
            return Err(Invalid::StoreUriWithoutFile(uri.to_string()).into());
        }
        if !std::path::Path::new(path).is_file() {
            return Err(Invalid::ImportSource {
                source_uri: uri.to_string(),
                reason: format!("there is no file {path}"),
            }
            .into());
        }
        // Read-only: an import never writes its source.
        return Ok(format!("sqlite://{path}?mode=ro"));
    }
    if let Some(rest) = uri.strip_prefix("postgresql") {
        let rest = match rest.split_once("://") {
            Some((driver, tail)) if driver.is_empty() || driver.starts_with('+') => tail,
            _ => {
                return Err(
                    Invalid::UnsupportedStoreUri(mltrail_core::redact::redact_uri(uri)).into(),
                )
            }
        };
        return Ok(format!("postgresql://{rest}"));
    }
    if uri.starts_with("postgres://") {
        return Ok(uri.to_string());
    }
    Err(Invalid::UnsupportedStoreUri(mltrail_core::redact::redact_uri(uri)).into())
}

impl MlflowDb {
    /// Opens the database at `uri` (see [`source_url`]) and checks it is MLflow's.
    pub async fn open(uri: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = source_url(uri)?;
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        // The schema is read from the catalog: a failing query is an error, never "absent".
        let postgres = url.starts_with("postgres");
        let has = async |table: &str, column: &str| -> Result<bool, StoreError> {
            let sql = if postgres {
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
            } else {
                "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2"
            };
            let found: i64 = sqlx::query_scalar(sql)
                .bind(table.to_string())
                .bind(column.to_string())
                .fetch_one(&pool)
                .await?;
            Ok(found > 0)
        };
        if !has("runs", "run_uuid").await? || !has("experiments", "experiment_id").await? {
            return Err(Invalid::ImportSource {
                source_uri: mltrail_core::redact::redact_uri(uri),
                reason: "it has no MLflow `runs` and `experiments` tables".into(),
            }
            .into());
        }
        let mut db = MlflowDb {
            workspaces: has("experiments", "workspace").await?,
            inputs: has("inputs", "input_uuid").await? && has("datasets", "dataset_uuid").await?,
            logged_models: has("logged_models", "model_id").await?,
            aliases: has("registered_model_aliases", "alias").await?,
            model_metrics: HashMap::new(),
            native: match uri.strip_prefix("sqlite:///") {
                Some(path) => Some(Arc::new(Mutex::new(Db::open_read_only(path)?))),
                None => None,
            },
            pool,
        };
        if db.logged_models {
            let rows = sqlx::query("SELECT run_id, metric_name, CAST(metric_timestamp_ms AS BIGINT) AS ts, CAST(metric_step AS BIGINT) AS step, model_id FROM logged_model_metrics")
                .fetch_all(&db.pool)
                .await?;
            for r in &rows {
                db.model_metrics.insert(
                    (
                        text(r, "run_id")?,
                        text(r, "metric_name")?,
                        int(r, "ts")?,
                        int(r, "step")?,
                    ),
                    text(r, "model_id")?,
                );
            }
        }
        Ok(db)
    }

    /// `AND <alias>workspace = 'default'` where the schema has workspaces.
    fn in_default(&self, alias: &str) -> String {
        if self.workspaces {
            format!(" AND {alias}workspace = 'default'")
        } else {
            String::new()
        }
    }

    /// Experiments in id order, with their tags; only those in `only` when it is not empty.
    pub async fn experiments(&self, only: &[i64]) -> Result<Vec<Experiment>, StoreError> {
        let sql = format!(
            "SELECT CAST(experiment_id AS BIGINT) AS experiment_id, name, artifact_location, lifecycle_stage, CAST(creation_time AS BIGINT) AS creation_time, CAST(last_update_time AS BIGINT) AS last_update_time FROM experiments WHERE 1 = 1{} ORDER BY experiment_id",
            self.in_default("")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        let tag_rows = sqlx::query("SELECT CAST(experiment_id AS BIGINT) AS experiment_id, key, value FROM experiment_tags")
            .fetch_all(&self.pool)
            .await?;
        let mut tags: HashMap<i64, Vec<KeyValue>> = HashMap::new();
        for r in &tag_rows {
            tags.entry(int(r, "experiment_id")?)
                .or_default()
                .push(pair(r, "key", "value")?);
        }
        let mut out = Vec::new();
        for r in &rows {
            let id = int(r, "experiment_id")?;
            if !only.is_empty() && !only.contains(&id) {
                continue;
            }
            out.push(Experiment {
                id,
                name: text(r, "name")?,
                artifact_location: opt_text(r, "artifact_location")?.unwrap_or_default(),
                lifecycle_stage: stage(r)?,
                creation_time: opt_int(r, "creation_time")?.unwrap_or(0),
                last_update_time: opt_int(r, "last_update_time")?.unwrap_or(0),
                tags: tags.remove(&id).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The ids of the runs of `experiments` with their experiment, in id order.
    pub async fn run_ids(&self, experiments: &[i64]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut ids = Vec::new();
        for chunk in experiments.chunks(500) {
            let sql = format!(
                "SELECT run_uuid, CAST(experiment_id AS BIGINT) AS experiment_id FROM runs WHERE experiment_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(&self.pool).await? {
                ids.push((text(&r, "run_uuid")?, int(&r, "experiment_id")?));
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The runs `ids` names, each with everything it logged, in the order of `ids`.
    pub async fn runs(&self, ids: &[String]) -> Result<Vec<Run>, StoreError> {
        let mut by_id: HashMap<String, Run> = HashMap::with_capacity(ids.len());
        for r in &self.rows_of("SELECT run_uuid, CAST(experiment_id AS BIGINT) AS experiment_id, name, user_id, status, CAST(start_time AS BIGINT) AS start_time, CAST(end_time AS BIGINT) AS end_time, artifact_uri, lifecycle_stage, CAST(deleted_time AS BIGINT) AS deleted_time FROM runs WHERE run_uuid IN ", ids).await? {
            let id = text(r, "run_uuid")?;
            by_id.insert(
                id.clone(),
                Run {
                    id,
                    experiment_id: int(r, "experiment_id")?,
                    name: opt_text(r, "name")?.unwrap_or_default(),
                    user_id: opt_text(r, "user_id")?.unwrap_or_default(),
                    status: opt_text(r, "status")?.unwrap_or_else(|| "FINISHED".into()),
                    start_time: opt_int(r, "start_time")?,
                    end_time: opt_int(r, "end_time")?,
                    artifact_uri: opt_text(r, "artifact_uri")?.unwrap_or_default(),
                    lifecycle_stage: stage(r)?,
                    deleted_time: opt_int(r, "deleted_time")?,
                    ..Run::default()
                },
            );
        }
        for r in &self
            .rows_of(
                "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ",
                ids,
            )
            .await?
        {
            if let Some(run) = by_id.get_mut(&text(r, "run_uuid")?) {
                run.params.push(pair(r, "key", "value")?);
            }
        }
        for r in &self
            .rows_of(
                "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ",
                ids,
            )
            .await?
        {
            if let Some(run) = by_id.get_mut(&text(r, "run_uuid")?) {
                run.tags.push(pair(r, "key", "value")?);
            }
        }
        for (run_id, key, value, timestamp, step) in self.metric_rows(ids).await? {
            let model_id = self
                .model_metrics
                .get(&(run_id.clone(), key.clone(), timestamp, step))
                .cloned();
            if let Some(run) = by_id.get_mut(&run_id) {
                run.metrics.push(NewMetric {
                    key,
                    value,
                    timestamp,
                    step,
                    model_id,
                });
            }
        }
        if self.inputs {
            self.read_inputs(ids, &mut by_id).await?;
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// (run, key, value, timestamp, step) of every metric value of the runs `ids`. MLflow keeps
    /// NaN as 0 with a flag (its databases have no NaN).
    async fn metric_rows(&self, ids: &[String]) -> Result<Vec<MetricRow>, StoreError> {
        if let Some(db) = &self.native {
            let (db, ids) = (db.clone(), ids.to_vec());
            return tokio::task::spawn_blocking(move || native_metric_rows(&db, &ids))
                .await
                .map_err(|e| Invalid::ImportSource {
                    source_uri: "the source database".into(),
                    reason: format!("reading metrics stopped: {e}"),
                })?;
        }
        let mut out = Vec::new();
        for r in &self.rows_of("SELECT run_uuid, key, value, CAST(timestamp AS BIGINT) AS timestamp, CAST(step AS BIGINT) AS step, CAST(CASE WHEN is_nan THEN 1 ELSE 0 END AS BIGINT) AS is_nan FROM metrics WHERE run_uuid IN ", ids).await? {
            let value = if int(r, "is_nan")? != 0 {
                f64::NAN
            } else {
                r.try_get::<f64, _>("value")?
            };
            out.push((text(r, "run_uuid")?, text(r, "key")?, value, int(r, "timestamp")?, int(r, "step")?));
        }
        Ok(out)
    }

    /// Rows of `select` (ending in `IN `) for `ids`.
    async fn rows_of(&self, select: &str, ids: &[String]) -> Result<Vec<AnyRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("{select}({})", placeholders(1, ids.len()));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.clone());
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Datasets the runs consumed (inputs of type DATASET, with their tags) and logged models
    /// they produced (outputs, MLflow 3).
    async fn read_inputs(
        &self,
        ids: &[String],
        runs: &mut HashMap<String, Run>,
    ) -> Result<(), StoreError> {
        let links = self
            .rows_of("SELECT input_uuid, source_type, source_id, destination_type, destination_id FROM inputs WHERE destination_id IN ", ids)
            .await?;
        let outputs = if self.logged_models {
            self.rows_of("SELECT source_id, destination_id, CAST(step AS BIGINT) AS step FROM inputs WHERE source_type = 'RUN_OUTPUT' AND source_id IN ", ids).await?
        } else {
            Vec::new()
        };
        for r in &outputs {
            if let Some(run) = runs.get_mut(&text(r, "source_id")?) {
                run.outputs
                    .push((text(r, "destination_id")?, int(r, "step")?));
            }
        }
        let mut datasets_wanted = Vec::new();
        let mut input_ids = Vec::new();
        for r in &links {
            if text(r, "source_type")? == "DATASET" && text(r, "destination_type")? == "RUN" {
                datasets_wanted.push(text(r, "source_id")?);
                input_ids.push(text(r, "input_uuid")?);
            }
        }
        if input_ids.is_empty() {
            return Ok(());
        }
        datasets_wanted.sort();
        datasets_wanted.dedup();
        let mut datasets: HashMap<String, serde_json::Value> = HashMap::new();
        for r in &self.rows_of("SELECT dataset_uuid, name, digest, dataset_source_type, dataset_source, dataset_schema, dataset_profile FROM datasets WHERE dataset_uuid IN ", &datasets_wanted).await? {
            let mut dataset = serde_json::Map::new();
            dataset.insert("name".into(), text(r, "name")?.into());
            dataset.insert("digest".into(), text(r, "digest")?.into());
            dataset.insert("source_type".into(), text(r, "dataset_source_type")?.into());
            dataset.insert("source".into(), text(r, "dataset_source")?.into());
            if let Some(schema) = opt_text(r, "dataset_schema")? {
                dataset.insert("schema".into(), schema.into());
            }
            if let Some(profile) = opt_text(r, "dataset_profile")? {
                dataset.insert("profile".into(), profile.into());
            }
            datasets.insert(text(r, "dataset_uuid")?, dataset.into());
        }
        let mut input_tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for r in &self
            .rows_of(
                "SELECT input_uuid, name, value FROM input_tags WHERE input_uuid IN ",
                &input_ids,
            )
            .await?
        {
            input_tags
                .entry(text(r, "input_uuid")?)
                .or_default()
                .push(pair(r, "name", "value")?);
        }
        for r in &links {
            if text(r, "source_type")? != "DATASET" || text(r, "destination_type")? != "RUN" {
                continue;
            }
            let Some(dataset) = datasets.get(&text(r, "source_id")?) else {
                continue;
            };
            let Some(run) = runs.get_mut(&text(r, "destination_id")?) else {
                continue;
            };
            let mut tags = input_tags
                .remove(&text(r, "input_uuid")?)
                .unwrap_or_default();
            tags.sort_by(|a, b| a.key.cmp(&b.key));
            run.inputs.push(NewDatasetInput {
                name: dataset["name"].as_str().unwrap_or_default().to_string(),
                digest: dataset["digest"].as_str().unwrap_or_default().to_string(),
                dataset: dataset.clone(),
                tags,
            });
        }
        Ok(())
    }

    /// Logged models of `experiments` (MLflow 3), with tags and params; none before MLflow 3.
    pub async fn logged_models(&self, experiments: &[i64]) -> Result<Vec<LoggedModel>, StoreError> {
        if !self.logged_models || experiments.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT model_id, CAST(experiment_id AS BIGINT) AS experiment_id, name, artifact_location, CAST(creation_timestamp_ms AS BIGINT) AS created, CAST(last_updated_timestamp_ms AS BIGINT) AS updated, CAST(status AS BIGINT) AS status, lifecycle_stage, model_type, source_run_id FROM logged_models WHERE experiment_id IN ({}) ORDER BY model_id", placeholders(1, experiments.len()));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in experiments {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for r in &sqlx::query("SELECT model_id, tag_key, tag_value FROM logged_model_tags")
            .fetch_all(&self.pool)
            .await?
        {
            tags.entry(text(r, "model_id")?)
                .or_default()
                .push(pair(r, "tag_key", "tag_value")?);
        }
        let mut params: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for r in &sqlx::query("SELECT model_id, param_key, param_value FROM logged_model_params")
            .fetch_all(&self.pool)
            .await?
        {
            params.entry(text(r, "model_id")?).or_default().push(pair(
                r,
                "param_key",
                "param_value",
            )?);
        }
        rows.iter()
            .map(|r| {
                let id = text(r, "model_id")?;
                Ok(LoggedModel {
                    experiment_id: int(r, "experiment_id")?,
                    name: text(r, "name")?,
                    artifact_uri: text(r, "artifact_location")?,
                    // MLflow's LoggedModelStatus numbers.
                    status: match int(r, "status")? {
                        0 => LoggedModelStatus::Unspecified,
                        1 => LoggedModelStatus::Pending,
                        2 => LoggedModelStatus::Ready,
                        3 => LoggedModelStatus::Failed,
                        other => {
                            return Err(Invalid::ImportSource {
                                source_uri: format!("logged model {id}"),
                                reason: format!("status {other} is not one MLflow writes (0 to 3)"),
                            }
                            .into())
                        }
                    }
                    .as_str()
                    .to_string(),
                    creation_time: int(r, "created")?,
                    last_updated_time: int(r, "updated")?,
                    source_run_id: opt_text(r, "source_run_id")?,
                    model_type: opt_text(r, "model_type")?,
                    lifecycle_stage: stage(r)?,
                    tags: tags.remove(&id).unwrap_or_default(),
                    params: params.remove(&id).unwrap_or_default(),
                    id,
                })
            })
            .collect()
    }

    /// Registered models (of the default workspace), each with its versions, tags and aliases.
    pub async fn registered_models(&self) -> Result<Vec<RegisteredModel>, StoreError> {
        let filter = self.in_default("");
        let fetch = async |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await
        };
        let models = fetch(format!("SELECT name, CAST(creation_time AS BIGINT) AS creation_time, CAST(last_updated_time AS BIGINT) AS last_updated_time, description FROM registered_models WHERE 1 = 1{filter} ORDER BY name")).await?;
        let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for r in &fetch(format!(
            "SELECT name, key, value FROM registered_model_tags WHERE 1 = 1{filter}"
        ))
        .await?
        {
            tags.entry(text(r, "name")?)
                .or_default()
                .push(pair(r, "key", "value")?);
        }
        let mut version_tags: HashMap<(String, i64), Vec<KeyValue>> = HashMap::new();
        for r in &fetch(format!("SELECT name, CAST(version AS BIGINT) AS version, key, value FROM model_version_tags WHERE 1 = 1{filter}")).await? {
            version_tags.entry((text(r, "name")?, int(r, "version")?)).or_default().push(pair(r, "key", "value")?);
        }
        let mut aliases: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        if self.aliases {
            for r in &fetch(format!("SELECT name, alias, CAST(version AS BIGINT) AS version FROM registered_model_aliases WHERE 1 = 1{filter} ORDER BY alias")).await? {
                aliases.entry(text(r, "name")?).or_default().push((text(r, "alias")?, int(r, "version")?));
            }
        }
        let mut versions: HashMap<String, Vec<ModelVersion>> = HashMap::new();
        for r in &fetch(format!("SELECT name, CAST(version AS BIGINT) AS version, CAST(creation_time AS BIGINT) AS creation_time, CAST(last_updated_time AS BIGINT) AS last_updated_time, description, user_id, current_stage, source, run_id, run_link, status FROM model_versions WHERE 1 = 1{filter} ORDER BY name, version")).await? {
            let name = text(r, "name")?;
            let version = int(r, "version")?;
            let source = opt_text(r, "source")?.unwrap_or_default();
            versions.entry(name.clone()).or_default().push(ModelVersion {
                version,
                creation_time: opt_int(r, "creation_time")?.unwrap_or(0),
                last_updated_time: opt_int(r, "last_updated_time")?.unwrap_or(0),
                description: opt_text(r, "description")?.unwrap_or_default(),
                user_id: opt_text(r, "user_id")?.unwrap_or_default(),
                current_stage: opt_text(r, "current_stage")?.unwrap_or_else(|| "None".into()),
                model_id: logged_model_of(&source).unwrap_or_default().to_string(),
                source,
                run_id: opt_text(r, "run_id")?.unwrap_or_default(),
                run_link: opt_text(r, "run_link")?.unwrap_or_default(),
                status: opt_text(r, "status")?.unwrap_or_else(|| "READY".into()),
                tags: version_tags.remove(&(name, version)).unwrap_or_default(),
            });
        }
        models
            .iter()
            .map(|r| {
                let name = text(r, "name")?;
                Ok(RegisteredModel {
                    creation_time: opt_int(r, "creation_time")?.unwrap_or(0),
                    last_updated_time: opt_int(r, "last_updated_time")?.unwrap_or(0),
                    description: opt_text(r, "description")?.unwrap_or_default(),
                    tags: tags.remove(&name).unwrap_or_default(),
                    versions: versions.remove(&name).unwrap_or_default(),
                    aliases: aliases.remove(&name).unwrap_or_default(),
                    name,
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// (run, key, value, timestamp, step).
type MetricRow = (String, String, f64, i64, i64);

fn native_metric_rows(db: &Mutex<Db>, ids: &[String]) -> Result<Vec<MetricRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let db = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
    let mut stmt = Stmt::prepare(
        &db,
        &format!(
            "SELECT run_uuid, key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid IN ({})",
            marks.join(", ")
        ),
    )?;
    for (i, id) in ids.iter().enumerate() {
        stmt.bind_text(i as std::ffi::c_int + 1, id)?;
    }
    let mut out = Vec::new();
    while stmt.step()? {
        let value = if stmt.column_i64(5) != 0 {
            f64::NAN
        } else {
            stmt.column_f64(2)
        };
        out.push((
            stmt.column_text(0),
            stmt.column_text(1),
            value,
            stmt.column_i64(3),
            stmt.column_i64(4),
        ));
    }
    Ok(out)
}

/// The logged model a version was registered from: `models:/m-…` names one.
pub(crate) fn logged_model_of(source: &str) -> Option<&str> {
    source
        .strip_prefix("models:/")
        .filter(|id| id.starts_with("m-") && !id.contains('/'))
}

fn pair(row: &AnyRow, key: &str, value: &str) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: text(row, key)?,
        value: opt_text(row, value)?.unwrap_or_default(),
    })
}

fn stage(row: &AnyRow) -> Result<String, StoreError> {
    Ok(opt_text(row, "lifecycle_stage")?.unwrap_or_else(|| "active".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls() {
        assert!(source_url("sqlite:///").is_err());
        assert!(source_url("mysql://x/y").is_err());
        assert_eq!(
            source_url("postgresql+psycopg2://u:p@h/db").unwrap(),
            "postgresql://u:p@h/db"
        );
        assert_eq!(
            source_url("postgresql://h/db").unwrap(),
            "postgresql://h/db"
        );
        assert!(source_url("postgresqlx://h/db").is_err());
        assert!(source_url("sqlite:////no/such/mlflow.db").is_err());
    }

    #[test]
    fn versions_name_their_logged_model() {
        assert_eq!(logged_model_of("models:/m-abc"), Some("m-abc"));
        assert_eq!(logged_model_of("models:/name/3"), None);
        assert_eq!(logged_model_of("runs:/r/model"), None);
    }
}
