//! Dataset versions: immutable, content-addressed snapshots of the data a model is trained or
//! monitored on. Adding the same content under the same name again returns the existing version.

use crate::error::{Conflict, Invalid, NotFound};
use serde::Serialize;
use sqlx::any::AnyRow;

use crate::audited::{name_version_key, Audited};
use crate::sql::{int, opt_text, text};
use crate::writer::{AuditCtx, Tx};
use crate::{MetaStore, StoreError};
use mltrail_core::{now_millis, ArtifactPath};

/// What a version holds: the file and what was learned from it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DatasetFile {
    /// BLAKE3 of the file's bytes.
    pub digest: String,
    /// Where the file is in the artifact store.
    pub source: String,
    pub file_name: String,
    pub rows: i64,
    pub target: Option<String>,
    /// Column names, types, nullability and PII tags (JSON).
    pub schema: serde_json::Value,
    /// Per-column profile (JSON): the monitoring reference.
    pub profile: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    #[serde(flatten)]
    pub file: DatasetFile,
    pub created_time: i64,
    pub created_by: String,
}

/// A dataset version named as `NAME@VERSION` (the form monitors, registrations and reports use).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionRef {
    pub name: String,
    pub version: i64,
}

impl std::str::FromStr for VersionRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.rsplit_once('@') {
            Some((name, v)) if validate_name(name).is_ok() => match v.parse::<i64>() {
                Ok(version) if version > 0 => Ok(VersionRef {
                    name: name.to_string(),
                    version,
                }),
                _ => Err(format!("`{text}` is not a dataset version NAME@VERSION")),
            },
            _ => Err(format!("`{text}` is not a dataset version NAME@VERSION")),
        }
    }
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A dataset version, as the audit trail records it (its id is `NAME/VERSION`).
impl Audited for VersionRef {
    const KIND: &'static str = "dataset_version";
    const LIST_IDS: &'static str =
        "SELECT name || '/' || CAST(version AS TEXT) AS id FROM dataset_versions";

    name_version_key!(VersionRef);

    /// Its file, creation time and creator.
    async fn state(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(row) =
            sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 AND version = $2")
                .bind(self.name.clone())
                .bind(self.version)
                .fetch_optional(&mut *conn)
                .await?
        else {
            return Ok(None);
        };
        let v = from_row(&row)?;
        Ok(Some(
            serde_json::json!({"file": v.file, "created_time": v.created_time, "created_by": v.created_by}),
        ))
    }
}

pub struct NewDatasetVersion {
    pub name: String,
    pub file: DatasetFile,
}

pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || crate::names::chars(name) > 256
        || name.contains(['/', '@', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(Invalid::DatasetName(name.to_string()).into());
    }
    Ok(())
}

fn parse_json(row: &AnyRow, col: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&text(row, col)?).map_err(|e| {
        StoreError::from(Conflict::StoredJson {
            column: col.to_string(),
            source: std::sync::Arc::new(e),
        })
    })
}

pub(crate) fn from_row(row: &AnyRow) -> Result<DatasetVersion, StoreError> {
    Ok(DatasetVersion {
        name: text(row, "name")?,
        version: int(row, "version")?,
        file: DatasetFile {
            digest: text(row, "digest")?,
            source: text(row, "source")?,
            file_name: text(row, "file_name")?,
            rows: int(row, "row_count")?,
            target: opt_text(row, "target")?,
            schema: parse_json(row, "schema_json")?,
            profile: parse_json(row, "profile_json")?,
        },
        created_time: int(row, "created_time")?,
        created_by: text(row, "created_by")?,
    })
}

/// Stores a new version, or returns the version that already holds this content (`false`).
/// The file of a version of dataset `name` kept at `source`, when it is in the dataset's own
/// folder (`datasets/<name>/…`): the only place a version's file is read from or recorded at.
pub fn file_path(name: &str, source: &str) -> Option<ArtifactPath> {
    let path = ArtifactPath::parse(source).ok()?;
    let inside = path
        .as_str()
        .strip_prefix("datasets/")
        .and_then(|rest| rest.strip_prefix(name))
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
    inside.then_some(path)
}

impl DatasetVersion {
    /// Where this version's file is; a version recorded elsewhere (before the rule) is refused
    /// rather than read.
    pub fn file_path(&self) -> Result<ArtifactPath, StoreError> {
        file_path(&self.name, &self.file.source).ok_or_else(|| {
            Conflict::StoredValue {
                what: "dataset version source",
                value: self.file.source.clone(),
                expected: "a path under datasets/<name>/",
            }
            .into()
        })
    }
}

pub async fn add_version(
    store: &MetaStore,
    actor: &str,
    new: NewDatasetVersion,
) -> Result<(DatasetVersion, bool), StoreError> {
    validate_name(&new.name)?;
    if file_path(&new.name, &new.file.source).is_none() {
        return Err(Invalid::DatasetSource {
            name: new.name,
            path: new.file.source,
        }
        .into());
    }
    if new.file.digest.len() != 64 || !new.file.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Invalid::Digest(new.file.digest).into());
    }
    let user = actor.to_string();
    // The version is numbered inside the transaction, and content already stored records nothing.
    store
        .transaction(actor, async move |tx, audit| {
            if let Some(row) = sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 AND digest = $2")
                .bind(new.name.clone())
                .bind(new.file.digest.clone())
                .fetch_optional(&mut *tx)
                .await?
            {
                return Ok((from_row(&row)?, false));
            }
            let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM dataset_versions WHERE name = $1")
                .bind(new.name.clone())
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO dataset_versions (name, version, digest, source, file_name, row_count, target, schema_json, profile_json, created_time, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                .bind(new.name.clone())
                .bind(version)
                .bind(new.file.digest.clone())
                .bind(new.file.source.clone())
                .bind(new.file.file_name.clone())
                .bind(new.file.rows)
                .bind(new.file.target.clone())
                .bind(new.file.schema.to_string())
                .bind(new.file.profile.to_string())
                .bind(now_millis())
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let created = VersionRef {
                name: new.name.clone(),
                version,
            };
            audit.record(tx, "dataset_version.create", &created).await?;
            let row = sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 AND version = $2")
                .bind(new.name.clone())
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            Ok((from_row(&row)?, true))
        })
        .await
}

/// Versions of one dataset (or of all), newest first.
pub async fn list_versions(
    store: &MetaStore,
    name: Option<&str>,
) -> Result<Vec<DatasetVersion>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM dataset_versions WHERE ($1 = '' OR name = $1) ORDER BY name, version DESC",
    )
    .bind(name.unwrap_or_default().to_string())
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(from_row).collect()
}

/// One version.
pub async fn get_version(
    store: &MetaStore,
    version: &VersionRef,
) -> Result<DatasetVersion, StoreError> {
    let row = sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 AND version = $2")
        .bind(version.name.clone())
        .bind(version.version)
        .fetch_optional(store.readers())
        .await?
        .ok_or_else(|| NotFound::DatasetVersion {
            name: version.name.clone(),
            version: version.version,
        })?;
    from_row(&row)
}

/// The newest version of a dataset.
pub async fn latest_version(store: &MetaStore, name: &str) -> Result<DatasetVersion, StoreError> {
    let row =
        sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 ORDER BY version DESC LIMIT 1")
            .bind(name.to_string())
            .fetch_optional(store.readers())
            .await?
            .ok_or_else(|| NotFound::Dataset(name.to_string()))?;
    from_row(&row)
}

/// Where versions recorded from `mlflow.log_input` point: the client describes a dataset but
/// never uploads it, so these versions have a schema and a row count but no stored file.
pub const LOGGED_SOURCE_PREFIX: &str = "mlflow-dataset:";

impl DatasetFile {
    /// Whether the rows are stored (added with `mltrail data add`), so drift can read them.
    pub fn has_rows(&self) -> bool {
        !self.source.starts_with(LOGGED_SOURCE_PREFIX)
    }
}

/// MLflow's column types (`mlflow_colspec`) as dataset-schema types.
fn schema_from_mlflow(schema: Option<&str>) -> serde_json::Value {
    let parsed: serde_json::Value = schema
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let columns = parsed["mlflow_colspec"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    serde_json::Value::Array(
        columns
            .iter()
            .filter_map(|c| {
                let kind = match c["type"].as_str()? {
                    "double" | "float" | "long" | "integer" => "numeric",
                    "string" | "boolean" => "categorical",
                    "datetime" => "datetime",
                    _ => "text",
                };
                Some(serde_json::json!({"name": c["name"].as_str()?, "type": kind, "nullable": !c["required"].as_bool().unwrap_or(false), "pii": false}))
            })
            .collect(),
    )
}

/// Records a dataset the MLflow client logged as a run input (`log-inputs`) as a dataset
/// version, unless one with that name and digest exists; inside the caller's transaction. The run
/// links to it through its inputs (name and digest).
pub(crate) async fn record_logged_input(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    actor: &str,
    dataset: &serde_json::Value,
) -> Result<(), StoreError> {
    record_input_as(tx, audit, actor, dataset, "dataset_version.create").await
}

/// [`record_logged_input`] recorded as `action` (an import's `dataset_version.import from …`).
pub(crate) async fn record_input_as(
    tx: &mut Tx,
    audit: &mut AuditCtx,
    actor: &str,
    dataset: &serde_json::Value,
    action: &str,
) -> Result<(), StoreError> {
    let (Some(name), Some(digest)) = (dataset["name"].as_str(), dataset["digest"].as_str()) else {
        return Ok(());
    };
    if validate_name(name).is_err() {
        // Still a valid MLflow input; it just cannot be addressed as NAME@VERSION.
        return Ok(());
    }
    let exists =
        sqlx::query("SELECT version FROM dataset_versions WHERE name = $1 AND digest = $2")
            .bind(name.to_string())
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
    if exists {
        return Ok(());
    }
    let profile: serde_json::Value = dataset["profile"]
        .as_str()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let rows = profile["num_rows"].as_i64().unwrap_or(0);
    let source = format!(
        "{LOGGED_SOURCE_PREFIX}{}:{}",
        dataset["source_type"].as_str().unwrap_or("unknown"),
        dataset["source"].as_str().unwrap_or("")
    );
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM dataset_versions WHERE name = $1",
    )
    .bind(name.to_string())
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO dataset_versions (name, version, digest, source, file_name, row_count, target, schema_json, profile_json, created_time, created_by) VALUES ($1, $2, $3, $4, '', $5, NULL, $6, $7, $8, $9)")
        .bind(name.to_string())
        .bind(version)
        .bind(digest.to_string())
        .bind(source)
        .bind(rows)
        .bind(schema_from_mlflow(dataset["schema"].as_str()).to_string())
        .bind(serde_json::json!({"rows": rows, "mlflow": profile}).to_string())
        .bind(now_millis())
        .bind(actor.to_string())
        .execute(&mut *tx)
        .await?;
    audit
        .record(
            tx,
            action,
            &VersionRef {
                name: name.to_string(),
                version,
            },
        )
        .await
}

/// The dataset version a run trained on: its input tagged `mlflow.data.context = training`, or
/// its only input. `None` when there is no such input or it was never recorded as a version.
pub(crate) async fn training_input_of_run(
    tx: &mut Tx,
    run_id: &str,
) -> Result<Option<DatasetVersion>, StoreError> {
    let inputs = sqlx::query("SELECT dataset_name, dataset_digest, tags_json FROM run_inputs WHERE run_uuid = $1 ORDER BY dataset_name")
        .bind(run_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let is_training = |row: &AnyRow| -> bool {
        text(row, "tags_json")
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|tags| {
                tags.as_array().map(|tags| {
                    tags.iter()
                        .any(|t| t["key"] == "mlflow.data.context" && t["value"] == "training")
                })
            })
            .unwrap_or(false)
    };
    let chosen = match inputs.iter().find(|r| is_training(r)) {
        Some(row) => row,
        None if inputs.len() == 1 => &inputs[0],
        None => return Ok(None),
    };
    let row = sqlx::query("SELECT * FROM dataset_versions WHERE name = $1 AND digest = $2")
        .bind(text(chosen, "dataset_name")?)
        .bind(text(chosen, "dataset_digest")?)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Runs that logged this version as an input (through `mlflow.log_input`), oldest first.
pub async fn runs_using(
    store: &MetaStore,
    version: &DatasetVersion,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT i.run_uuid FROM run_inputs i JOIN runs r ON r.run_uuid = i.run_uuid WHERE i.dataset_name = $1 AND i.dataset_digest = $2 ORDER BY r.start_time, i.run_uuid",
    )
    .bind(version.name.clone())
    .bind(version.file.digest.clone())
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(|r| text(r, "run_uuid")).collect()
}
