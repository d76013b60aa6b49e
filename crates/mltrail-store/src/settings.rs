//! Settings the tracking server holds for every service, by name (`log`: the log filter and
//! format every `mltrail serve` follows). Setting and deleting one are audit events on entity
//! `setting:<name>` whose state is the value.

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::audited::{text_key, Audited};
use crate::error::NotFound;
use crate::sql::{int, text};
use crate::{MetaStore, StoreError};

/// A setting in force.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Setting {
    pub name: String,
    #[schema(value_type = Object)]
    pub value: Value,
    pub updated_time: i64,
    pub actor: String,
}

async fn find(conn: &mut AnyConnection, name: &str) -> Result<Option<Setting>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM settings WHERE name = $1")
        .bind(name.to_string())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let value = serde_json::from_str(&text(&row, "value")?).map_err(|e| {
        StoreError::from(crate::error::Conflict::StoredJson {
            column: "value".into(),
            source: std::sync::Arc::new(e),
        })
    })?;
    Ok(Some(Setting {
        name: text(&row, "name")?,
        value,
        updated_time: int(&row, "updated_time")?,
        actor: text(&row, "actor")?,
    }))
}

/// A setting as the audit trail records it: its value.
pub(crate) struct SettingRef(pub String);

impl Audited for SettingRef {
    const KIND: &'static str = "setting";
    const LIST_IDS: &'static str = "SELECT name AS id FROM settings";

    text_key!(SettingRef);

    async fn state(&self, conn: &mut AnyConnection) -> Result<Option<Value>, StoreError> {
        Ok(find(conn, &self.0).await?.map(|s| s.value))
    }
}

/// The setting `name`, when one is set.
pub async fn get(store: &MetaStore, name: &str) -> Result<Option<Setting>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    find(&mut conn, name).await
}

/// Sets `name` to `value` (the caller checked it); setting the value in force records nothing.
pub async fn set(
    store: &MetaStore,
    actor: &str,
    name: &str,
    value: Value,
) -> Result<Setting, StoreError> {
    if let Some(current) = get(store, name).await? {
        if current.value == value {
            return Ok(current);
        }
    }
    let (name, who) = (name.to_string(), actor.to_string());
    store
        .audited(
            actor,
            "settings.set",
            SettingRef(name.clone()),
            async move |tx| {
                sqlx::query("DELETE FROM settings WHERE name = $1")
                    .bind(name.clone())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO settings (name, value, updated_time, actor) VALUES ($1, $2, $3, $4)",
                )
                .bind(name.clone())
                .bind(value.to_string())
                .bind(mltrail_core::now_millis())
                .bind(who)
                .execute(&mut *tx)
                .await?;
                find(tx, &name)
                    .await?
                    .ok_or_else(|| NotFound::Setting(name.clone()).into())
            },
        )
        .await
}

/// Removes `name`: services go back to their own configuration.
pub async fn delete(store: &MetaStore, actor: &str, name: &str) -> Result<(), StoreError> {
    let name = name.to_string();
    store
        .audited(
            actor,
            "settings.delete",
            SettingRef(name.clone()),
            async move |tx| {
                let gone = sqlx::query("DELETE FROM settings WHERE name = $1")
                    .bind(name.clone())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(NotFound::Setting(name.clone()).into());
                }
                Ok(())
            },
        )
        .await
}
