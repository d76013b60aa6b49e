//! The SQLite fast path for metric logs. sqlx runs each statement of a SQLite connection on that
//! connection's worker thread, so every statement costs a thread handoff. For the hottest write
//! (metric values) the writer locks its own dedicated SQLite connection out of sqlx and runs the
//! whole group in one blocking call: BEGIN, run lookups, one prepared INSERT reused per row,
//! the latest-value upserts, the audit rows, COMMIT. Same schema, same SQL, same audit chain as
//! the portable path in `writer.rs`; only the driver calls differ.
//!
//! All `unsafe` in the crate is here: FFI calls on a handle that `lock_handle` has taken from
//! sqlx's worker, so nothing else touches it while we do.

use crate::writer::{
    latest_per_key, plan_metric_logs, stored_value, uncached_runs, AuditCtx, MetricLog,
};
use crate::StoreError;
use libsqlite3_sys as ffi;
use mltrail_core::AuditEvent;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::collections::HashMap;
use std::ffi::{c_int, CStr, CString};
use std::ptr::{self, NonNull};
use std::str::FromStr;

pub(crate) struct NativeWriter {
    conn: SqliteConnection,
}

/// The locked handle, movable into a blocking section. Sound because the `LockedSqliteHandle`
/// guard outlives every use (see `NativeWriter::apply`).
struct Db(NonNull<ffi::sqlite3>);
unsafe impl Send for Db {}

impl NativeWriter {
    /// Opens a second connection to the writer's database, with the same durability settings.
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?.disable_statement_logging();
        let mut conn = SqliteConnection::connect_with(&options).await?;
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA wal_autocheckpoint = 0",
        ] {
            sqlx::query(pragma).execute(&mut conn).await?;
        }
        Ok(NativeWriter { conn })
    }

    /// Applies a group of metric logs in its own transaction; returns each log's own result.
    pub(crate) async fn apply(
        &mut self,
        audit: &mut AuditCtx,
        logs: &[MetricLog],
        stages: &mut HashMap<String, String>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut locked = self.conn.lock_handle().await?;
        let db = Db(locked.as_raw_handle());
        let before = audit.head_snapshot();
        let result = blocking(|| {
            let db = db;
            let outcome = run_group(&db, audit, logs, stages);
            if outcome.is_err() {
                // Nothing of the group may survive a failed statement.
                let _ = exec(&db, "ROLLBACK");
            }
            outcome
        });
        drop(locked);
        if result.is_err() {
            audit.restore(before);
            stages.clear();
        }
        result
    }
}

/// Runs `f` where blocking is allowed: `block_in_place` on a multi-threaded runtime (the
/// server's), inline otherwise.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn run_group(
    db: &Db,
    audit: &mut AuditCtx,
    logs: &[MetricLog],
    stages: &mut HashMap<String, String>,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    exec(db, "BEGIN IMMEDIATE")?;
    let missing: Vec<String> = uncached_runs(logs, stages)
        .into_iter()
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        let mut lookup = Stmt::prepare(db, "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?1")?;
        for id in missing {
            lookup.bind_text(1, &id)?;
            if lookup.step()? {
                stages.insert(id, lookup.column_text(0));
            }
            lookup.reset();
        }
    }
    let plan = plan_metric_logs(logs, stages);
    if !plan.accepted.is_empty() {
        let mut insert = Stmt::prepare(
            db,
            "INSERT INTO metric_blocks (run_uuid, key, model_id, batch_id, point_count, points) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for block in plan.blocks(logs) {
            insert.bind_text(1, block.run_id)?;
            insert.bind_text(2, block.key)?;
            insert.bind_opt_text(3, block.model_id)?;
            insert.bind_text(4, block.batch_id)?;
            insert.bind_i64(5, block.count)?;
            insert.bind_blob(6, &block.points)?;
            insert.step()?;
            insert.reset();
        }
        let rows = plan.rows(logs);
        let mut upsert = Stmt::prepare(
            db,
            "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step \
             WHERE excluded.step > latest_metrics.step \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp AND COALESCE(excluded.value, 0) > COALESCE(latest_metrics.value, 0))",
        )?;
        for ((run_id, key), m) in latest_per_key(&rows) {
            let (value, nan) = stored_value(m.value);
            upsert.bind_text(1, run_id)?;
            upsert.bind_text(2, key)?;
            upsert.bind_opt_f64(3, value)?;
            upsert.bind_i64(4, nan)?;
            upsert.bind_i64(5, m.timestamp)?;
            upsert.bind_i64(6, m.step)?;
            upsert.step()?;
            upsert.reset();
        }
        let events = audit.chain(plan.events(logs));
        insert_audit(db, &events)?;
    }
    exec(db, "COMMIT")?;
    Ok(plan.results)
}

fn insert_audit(db: &Db, events: &[(AuditEvent, String)]) -> Result<(), StoreError> {
    let mut insert = Stmt::prepare(
        db,
        "INSERT INTO audit_log (seq, time, actor, action, entity_type, entity_id, state_digest, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (e, hash) in events {
        insert.bind_i64(1, e.seq)?;
        insert.bind_i64(2, e.time)?;
        insert.bind_text(3, &e.actor)?;
        insert.bind_text(4, &e.action)?;
        insert.bind_text(5, &e.entity_type)?;
        insert.bind_text(6, &e.entity_id)?;
        insert.bind_opt_text(7, e.state_digest.as_deref())?;
        insert.bind_text(8, hash)?;
        insert.step()?;
        insert.reset();
    }
    Ok(())
}

fn error(db: &Db, context: &str) -> StoreError {
    // SAFETY: the handle is valid and locked; sqlite3_errmsg returns a NUL-terminated string
    // owned by SQLite, copied before any further call.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.0.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    StoreError::Database(format!("{context}: {message}"))
}

fn exec(db: &Db, sql: &str) -> Result<(), StoreError> {
    let sql = CString::new(sql).map_err(|e| StoreError::Database(e.to_string()))?;
    // SAFETY: valid locked handle, NUL-terminated SQL, no callback.
    let rc = unsafe {
        ffi::sqlite3_exec(
            db.0.as_ptr(),
            sql.as_ptr(),
            None,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(error(db, "exec"));
    }
    Ok(())
}

/// A prepared statement, finalized on drop.
struct Stmt<'db> {
    db: &'db Db,
    raw: *mut ffi::sqlite3_stmt,
}

impl<'db> Stmt<'db> {
    fn prepare(db: &'db Db, sql: &str) -> Result<Self, StoreError> {
        let sql = CString::new(sql).map_err(|e| StoreError::Database(e.to_string()))?;
        let mut raw = ptr::null_mut();
        // SAFETY: valid locked handle; `raw` receives a statement we own and finalize on drop.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(db.0.as_ptr(), sql.as_ptr(), -1, &mut raw, ptr::null_mut())
        };
        if rc != ffi::SQLITE_OK || raw.is_null() {
            return Err(error(db, "prepare"));
        }
        Ok(Stmt { db, raw })
    }

    fn check(&self, rc: c_int, what: &str) -> Result<(), StoreError> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(self.db, what))
        }
    }

    fn bind_text(&mut self, index: c_int, value: &str) -> Result<(), StoreError> {
        // SAFETY: SQLITE_TRANSIENT makes SQLite copy the bytes before returning.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.raw,
                index,
                value.as_ptr().cast(),
                value.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc, "bind text")
    }

    fn bind_blob(&mut self, index: c_int, value: &[u8]) -> Result<(), StoreError> {
        // SAFETY: SQLITE_TRANSIENT makes SQLite copy the bytes before returning.
        let rc = unsafe {
            ffi::sqlite3_bind_blob(
                self.raw,
                index,
                value.as_ptr().cast(),
                value.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc, "bind blob")
    }

    fn bind_opt_text(&mut self, index: c_int, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.bind_text(index, v),
            // SAFETY: valid statement and index.
            None => self.check(
                unsafe { ffi::sqlite3_bind_null(self.raw, index) },
                "bind null",
            ),
        }
    }

    fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), StoreError> {
        // SAFETY: valid statement and index.
        self.check(
            unsafe { ffi::sqlite3_bind_int64(self.raw, index, value) },
            "bind int",
        )
    }

    fn bind_opt_f64(&mut self, index: c_int, value: Option<f64>) -> Result<(), StoreError> {
        // SAFETY: valid statement and index.
        let rc = unsafe {
            match value {
                Some(v) => ffi::sqlite3_bind_double(self.raw, index, v),
                None => ffi::sqlite3_bind_null(self.raw, index),
            }
        };
        self.check(rc, "bind double")
    }

    /// Steps once; true when a row is available.
    fn step(&mut self) -> Result<bool, StoreError> {
        // SAFETY: valid statement.
        match unsafe { ffi::sqlite3_step(self.raw) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(error(self.db, "step")),
        }
    }

    fn column_text(&self, index: c_int) -> String {
        // SAFETY: called after step() returned a row; the text is copied immediately.
        unsafe {
            let ptr = ffi::sqlite3_column_text(self.raw, index);
            if ptr.is_null() {
                return String::new();
            }
            let len = ffi::sqlite3_column_bytes(self.raw, index) as usize;
            String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned()
        }
    }

    fn reset(&mut self) {
        // SAFETY: valid statement. Errors of the last step were already reported by step().
        unsafe {
            ffi::sqlite3_reset(self.raw);
            ffi::sqlite3_clear_bindings(self.raw);
        }
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the statement; finalizing a null or already-reset statement is fine.
        unsafe {
            ffi::sqlite3_finalize(self.raw);
        }
    }
}
