//! A consistent copy of a SQLite store while the server runs (`mltrail backup`).

use crate::{resolve_uri, sqlite_file, Backend, Invalid, StoreError};
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Writes a transactionally consistent copy of the SQLite database `uri` names to `to` (which
/// must not exist), without stopping writers: SQLite's `VACUUM INTO` reads one snapshot and
/// writes a compact file that opens as a store of its own. The source is opened read-only, so
/// a mistyped path is an error rather than a new empty store, and nothing is migrated.
/// PostgreSQL stores are refused before anything is touched; their tools do this.
///
/// While the copy runs, the server's WAL cannot be checkpointed past its snapshot, so the WAL
/// grows by what is written meanwhile and shrinks at the next checkpoint after.
pub async fn snapshot(uri: &str, to: &Path) -> Result<(), StoreError> {
    let (backend, url) = resolve_uri(uri)?;
    if backend == Backend::Postgres {
        return Err(Invalid::BackupOfPostgres.into());
    }
    let source = sqlite_file(&url)
        .filter(|file| Path::new(file).is_file())
        .ok_or_else(|| Invalid::BackupSourceMissing(uri.to_string()))?;
    if to.exists() {
        return Err(Invalid::BackupExists(to.to_path_buf()).into());
    }
    let target = to
        .to_str()
        .ok_or_else(|| Invalid::BackupPathNotUtf8(PathBuf::from(to)))?;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{source}"))?
        .read_only(true)
        .connect()
        .await?;
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(&mut conn)
        .await;
    conn.close().await?;
    copied?;
    Ok(())
}
