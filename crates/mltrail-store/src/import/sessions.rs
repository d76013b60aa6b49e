//! Each `mltrail import` as a record of its own (migration V16): where it read from, when it
//! started and finished, and what it wrote. The web UI's Server page lists them, so an import
//! that never finished (stopped or failed) shows as such. Audited as kind `import`.

use crate::audited::{text_key, Audited};
use crate::sql::{int, opt_int, text};
use crate::{MetaStore, StoreError};
use serde_json::{json, Value};
use sqlx::AnyConnection;

/// One import, as the audit trail records it: its row.
pub(crate) struct ImportRef(pub String);

impl Audited for ImportRef {
    const KIND: &'static str = "import";
    const LIST_IDS: &'static str = "SELECT import_id AS id FROM imports";

    text_key!(ImportRef);

    async fn state(&self, conn: &mut AnyConnection) -> Result<Option<Value>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM imports WHERE import_id = $1")
            .bind(self.0.clone())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(json!({
            "origin": text(&row, "origin")?,
            "started_time": int(&row, "started_time")?,
            "finished_time": opt_int(&row, "finished_time")?,
            "summary": text(&row, "summary")?,
        })))
    }
}

/// An import as the Server page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportSession {
    pub import_id: String,
    /// `mlflow sqlite:////data/mlflow.db`, credentials masked.
    pub origin: String,
    pub started_time: i64,
    /// `None` while it runs, or when it stopped before its end.
    pub finished_time: Option<i64>,
    /// What it wrote and found, as the command printed it with `--json` (`{}` until it ends).
    pub summary: Value,
}

/// Records an import starting from `origin`; its id.
pub async fn begin(store: &MetaStore, actor: &str, origin: &str) -> Result<String, StoreError> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let origin = origin.to_string();
    let entity = ImportRef(id.clone());
    let inserted = id.clone();
    store
        .audited(actor, "import.start", entity, async move |tx| {
            sqlx::query("INSERT INTO imports (import_id, origin, started_time, finished_time, summary) VALUES ($1, $2, $3, NULL, '{}')")
                .bind(inserted)
                .bind(origin)
                .bind(mltrail_core::now_millis())
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await?;
    Ok(id)
}

/// Records the end of import `id` with what it did (or the error that stopped it).
pub async fn finish(
    store: &MetaStore,
    actor: &str,
    id: &str,
    summary: &Value,
) -> Result<(), StoreError> {
    let (id, summary) = (id.to_string(), summary.to_string());
    store
        .audited(
            actor,
            "import.finish",
            ImportRef(id.clone()),
            async move |tx| {
                sqlx::query(
                    "UPDATE imports SET finished_time = $1, summary = $2 WHERE import_id = $3",
                )
                .bind(mltrail_core::now_millis())
                .bind(summary)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Ok(())
            },
        )
        .await
}

/// The newest `limit` imports, newest first.
pub async fn list(store: &MetaStore, limit: i64) -> Result<Vec<ImportSession>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    let rows =
        sqlx::query("SELECT * FROM imports ORDER BY started_time DESC, import_id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(ImportSession {
                import_id: text(r, "import_id")?,
                origin: text(r, "origin")?,
                started_time: int(r, "started_time")?,
                finished_time: opt_int(r, "finished_time")?,
                // Written by `finish` from a JSON value; anything else is shown as text.
                summary: serde_json::from_str(&text(r, "summary")?)
                    .unwrap_or_else(|_| Value::String(text(r, "summary").unwrap_or_default())),
            })
        })
        .collect()
}
