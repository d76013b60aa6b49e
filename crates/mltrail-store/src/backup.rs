//! A consistent copy of a SQLite store while the server runs (`mltrail backup`).

use crate::{Backend, Invalid, MetaStore, StoreError};
use std::path::Path;

/// Writes a transactionally consistent copy of the database to `to` (which must not exist),
/// without stopping writers: SQLite's `VACUUM INTO` reads one snapshot and writes a compact
/// file that opens as a store of its own. PostgreSQL stores are refused; their tools do this.
pub async fn snapshot(store: &MetaStore, to: &Path) -> Result<(), StoreError> {
    if store.backend() == Backend::Postgres {
        return Err(Invalid::BackupOfPostgres.into());
    }
    if to.exists() {
        return Err(Invalid::BackupExists(to.display().to_string()).into());
    }
    sqlx::query("VACUUM INTO $1")
        .bind(to.display().to_string())
        .execute(store.readers())
        .await?;
    Ok(())
}
