//! Small helpers for reading rows through the `Any` driver, and which backend a store is on.

use crate::StoreError;
use sqlx::any::AnyRow;
use sqlx::Row;

/// The database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

// PostgreSQL advisory locks. Any number of `mltrail server` processes may share one database:
// servers starting together take turns migrating it, and the audit chain stays one line
// because each write group holds the chain lock, then continues from the head as stored, not
// from what this process last wrote. Keys: "mltrail" (0x6d6c7472_61696c) and the next one.
// Selected through count(*): the lock functions return `void`, a type sqlx cannot read.

/// Held by a write group until it commits (`writer::begin_group`).
pub(crate) const TAKE_CHAIN_LOCK: &str =
    "SELECT count(*) AS locked FROM (SELECT pg_advisory_xact_lock(30800019852454252)) AS chain_lock";
/// Held while the schema is migrated (`schema::migrate`).
pub(crate) const TAKE_MIGRATION_LOCK: &str =
    "SELECT count(*) AS locked FROM (SELECT pg_advisory_lock(30800019852454253)) AS migration_lock";
pub(crate) const RELEASE_MIGRATION_LOCK: &str = "SELECT pg_advisory_unlock(30800019852454253)";

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, StoreError> {
    Ok(row.try_get::<String, _>(col)?)
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, StoreError> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub(crate) fn blob(row: &AnyRow, col: &str) -> Result<Vec<u8>, StoreError> {
    Ok(row.try_get::<Vec<u8>, _>(col)?)
}

pub(crate) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

/// Metric values: NaN cannot be stored in SQLite (it becomes NULL), so a flag column keeps it.
pub(crate) fn metric_value(
    row: &AnyRow,
    value_col: &str,
    nan_col: &str,
) -> Result<f64, StoreError> {
    if int(row, nan_col)? != 0 {
        return Ok(f64::NAN);
    }
    Ok(row
        .try_get::<Option<f64>, _>(value_col)?
        .unwrap_or(f64::NAN))
}

/// `$start, $start+1, …` placeholders for an IN list of `n` values.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql`, whose placeholders are for `ids` in order (an `IN` list), with `ids` bound.
pub(crate) async fn fetch_ids(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    // Only placeholders are formatted into `sql`; every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for id in ids {
        query = query.bind(id.clone());
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// Placeholders for a generated multi-row statement. On SQLite, `$N` parameters are resolved
/// by name, which costs a scan of every parameter per bind (quadratic in a 800-parameter
/// INSERT); anonymous `?` parameters bind by position. PostgreSQL only knows `$N`.
pub(crate) fn placeholders_for(conn: &sqlx::AnyConnection, start: usize, n: usize) -> String {
    if conn.backend_name() == "SQLite" {
        vec!["?"; n].join(", ")
    } else {
        placeholders(start, n)
    }
}

/// The `VALUES` list of a multi-row INSERT: `rows` groups of `width` placeholders, numbered
/// from 1 on PostgreSQL.
pub(crate) fn values_rows(conn: &sqlx::AnyConnection, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|i| format!("({})", placeholders_for(conn, 1 + i * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `key, value` row (every tag and param table has these two columns).
pub(crate) fn key_value(row: &AnyRow) -> Result<crate::KeyValue, StoreError> {
    Ok(crate::KeyValue {
        key: text(row, "key")?,
        value: text(row, "value")?,
    })
}

pub(crate) fn key_values(rows: &[AnyRow]) -> Result<Vec<crate::KeyValue>, StoreError> {
    rows.iter().map(key_value).collect()
}

/// `key, value` rows as a JSON object, the form audited state uses (key order is irrelevant:
/// canonical JSON sorts it).
pub(crate) fn key_value_object(rows: &[AnyRow]) -> Result<serde_json::Value, StoreError> {
    let mut out = serde_json::Map::new();
    for row in rows {
        out.insert(
            text(row, "key")?,
            serde_json::Value::String(text(row, "value")?),
        );
    }
    Ok(serde_json::Value::Object(out))
}

/// [`key_value_object`] of the rows `sql` (one `$1` placeholder for `id`) returns.
pub(crate) async fn key_value_object_of(
    conn: &mut sqlx::AnyConnection,
    sql: &'static str,
    id: &str,
) -> Result<serde_json::Value, StoreError> {
    let rows = sqlx::query(sql)
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    key_value_object(&rows)
}
