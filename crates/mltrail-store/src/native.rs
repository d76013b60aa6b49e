//! The SQLite fast path for the hottest writes: metric logs and run creations. The writer keeps
//! its own SQLite connection, opened and driven through the C API, and runs a whole group of
//! them as direct calls: BEGIN, the new runs with their tags, run lookups, the block INSERTs,
//! the latest-value upserts, the audit rows, COMMIT, with statements prepared once. Same schema, same SQL, same audit chain as the portable path in
//! `writer.rs`; only the driver calls differ. (Through sqlx every statement is a round trip to
//! the connection's worker thread.)
//!
//! All `unsafe` in the crate is here: FFI calls on a connection this module alone owns.

use crate::records::Run;
use crate::writer::{
    latest_per_key, plan_metric_logs, stored_value, uncached_runs, AuditCtx, MetricLog, RunCreate,
};
use crate::StoreError;
use libsqlite3_sys as ffi;
use mltrail_core::AuditEvent;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::{self, NonNull};

pub(crate) struct NativeWriter {
    // Declared before `db`: statements are finalized before the connection closes.
    statements: Statements,
    db: Db,
    // Declared after `db`: SQLite's WAL hook points here until the connection closes.
    wal_frames: Box<Cell<c_int>>,
    wal_bound_frames: c_int,
}

/// WAL frames (pages) past which the writer checkpoints itself: 16,384 frames of 4 KiB, 64 MiB.
///
/// The checkpoint task copies the WAL into the database every 200 ms, but only a writer can
/// start the WAL over from its beginning, and only when everything in it has been copied as its
/// transaction begins. Under steady load a new commit always lands first, so the WAL grew
/// without bound (495 MB after five seconds of 64 writers) and the checkpoint task's RESTART
/// never got the write lock from the busy writer.
const WAL_BOUND_FRAMES: c_int = 16_384;

/// The group's statements, prepared once for the connection's life.
struct Statements {
    experiment: Stmt,
    insert_run: Stmt,
    insert_tag: Stmt,
    lookup: Stmt,
    insert_block: Stmt,
    upsert_latest: Stmt,
    insert_audit: Stmt,
}

/// An open SQLite connection owned by this module alone, closed on drop.
struct Db(NonNull<ffi::sqlite3>);

// SAFETY: SQLite connections may move between threads (the bundled library is built
// thread-safe); `NativeWriter` is moved once onto the writer thread, which alone uses it.
unsafe impl Send for NativeWriter {}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: we own the handle; every statement was finalized first (field order).
        unsafe {
            ffi::sqlite3_close(self.0.as_ptr());
        }
    }
}

impl NativeWriter {
    /// Opens a second connection to the writer's database file, with the same durability
    /// settings. The connection is opened here rather than through sqlx: sqlx runs every call
    /// on a worker thread of its own, and handing each group there and back cost more than
    /// the group's statements.
    pub(crate) fn open(file: &str) -> Result<Self, StoreError> {
        let path = CString::new(file).map_err(|e| StoreError::Database(e.to_string()))?;
        let mut raw = ptr::null_mut();
        // SAFETY: NUL-terminated path; `raw` receives a handle we own (closed by `Db`'s drop,
        // even when opening failed, as SQLite requires).
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                path.as_ptr(),
                &mut raw,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX,
                ptr::null(),
            )
        };
        let db = Db(NonNull::new(raw)
            .ok_or_else(|| StoreError::Database(format!("cannot open {file}: out of memory")))?);
        if rc != ffi::SQLITE_OK {
            return Err(error(&db, "open"));
        }
        for pragma in [
            "PRAGMA journal_mode = WAL",
            // FULL: a commit is fsynced before it is acknowledged (durable across power loss).
            "PRAGMA synchronous = FULL",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA wal_autocheckpoint = 0",
        ] {
            exec(&db, pragma)?;
        }
        let statements = Statements {
            experiment: Stmt::prepare(
                &db,
                "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = ?1",
            )?,
            insert_run: Stmt::prepare(&db, crate::tracking::INSERT_RUN)?,
            insert_tag: Stmt::prepare(
                &db,
                "INSERT INTO tags (run_uuid, key, value) VALUES (?1, ?2, ?3)",
            )?,
            lookup: Stmt::prepare(&db, "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?1")?,
            insert_block: Stmt::prepare(
                &db,
                "INSERT INTO metric_blocks (run_uuid, key, model_id, batch_id, point_count, points) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            upsert_latest: Stmt::prepare(
                &db,
                "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step \
                 WHERE excluded.step > latest_metrics.step \
                    OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
                    OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp AND COALESCE(excluded.value, 0) > COALESCE(latest_metrics.value, 0))",
            )?,
            insert_audit: Stmt::prepare(
                &db,
                "INSERT INTO audit_log (seq, time, actor, action, entity_type, entity_id, state_digest, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
        };
        let wal_frames = Box::new(Cell::new(0));
        // SAFETY: valid handle; the hook's argument is the boxed cell, which outlives the
        // connection (field order) and is only touched from the thread that owns both.
        unsafe {
            ffi::sqlite3_wal_hook(
                db.0.as_ptr(),
                Some(note_wal_frames),
                ptr::from_ref::<Cell<c_int>>(&wal_frames).cast_mut().cast(),
            );
        }
        Ok(NativeWriter {
            statements,
            db,
            wal_frames,
            wal_bound_frames: WAL_BOUND_FRAMES,
        })
    }

    /// Keeps the WAL bounded (see [`WAL_BOUND_FRAMES`]); run between groups. A passive
    /// checkpoint here has little left to copy after the checkpoint task's, and once it has
    /// copied everything the next transaction starts the WAL over. If readers keep it from
    /// finishing, the WAL grows to twice the bound before a RESTART checkpoint waits for them.
    pub(crate) fn bound_wal(&mut self) {
        let frames = self.wal_frames.get();
        if frames <= self.wal_bound_frames {
            return;
        }
        let mode = if frames > 2 * self.wal_bound_frames {
            "PRAGMA wal_checkpoint(RESTART)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        match exec(&self.db, mode) {
            Ok(()) => self.wal_frames.set(0),
            Err(e) => tracing::warn!(error = %e, frames, "WAL checkpoint by the writer failed"),
        }
    }

    /// Applies a group of metric logs in its own transaction; returns each log's own result.
    /// It blocks for the commit's fsync, which is why the writer has a thread of its own.
    pub(crate) fn apply(
        &mut self,
        audit: &mut AuditCtx,
        creates: &[RunCreate],
        logs: &[MetricLog],
        stages: &mut HashMap<String, String>,
    ) -> Result<GroupResults, StoreError> {
        let before = audit.head_snapshot();
        let result = run_group(&self.db, &mut self.statements, audit, creates, logs, stages);
        if result.is_err() {
            // Nothing of the group may survive a failed statement.
            let _ = exec(&self.db, "ROLLBACK");
            audit.restore(before);
            stages.clear();
        }
        result
    }
}

/// Each run creation's answer, and each metric log's result, in arrival order.
pub(crate) type GroupResults = (Vec<Result<Run, StoreError>>, Vec<Result<(), StoreError>>);

fn run_group(
    db: &Db,
    st: &mut Statements,
    audit: &mut AuditCtx,
    creates: &[RunCreate],
    logs: &[MetricLog],
    stages: &mut HashMap<String, String>,
) -> Result<GroupResults, StoreError> {
    exec(db, "BEGIN IMMEDIATE")?;
    let created = creates
        .iter()
        .map(|create| create_run(st, audit, create, stages))
        .collect::<Result<Vec<_>, _>>()?;
    let missing: Vec<String> = uncached_runs(logs, stages)
        .into_iter()
        .map(str::to_string)
        .collect();
    for id in missing {
        st.lookup.bind_text(1, &id)?;
        let found = st.lookup.step();
        if let Ok(true) = found {
            stages.insert(id, st.lookup.column_text(0));
        }
        st.lookup.reset();
        found?;
    }
    let plan = plan_metric_logs(logs, stages);
    if !plan.accepted.is_empty() {
        let insert = &mut st.insert_block;
        for block in plan.blocks(logs) {
            insert.bind_text(1, block.run_id)?;
            insert.bind_text(2, block.key)?;
            insert.bind_opt_text(3, block.model_id)?;
            insert.bind_text(4, block.batch_id)?;
            insert.bind_i64(5, block.count)?;
            insert.bind_blob(6, &block.points)?;
            insert.step_done()?;
        }
        let upsert = &mut st.upsert_latest;
        for ((run_id, key), m) in latest_per_key(&plan.rows(logs)) {
            let (value, nan) = stored_value(m.value);
            upsert.bind_text(1, run_id)?;
            upsert.bind_text(2, key)?;
            upsert.bind_opt_f64(3, value)?;
            upsert.bind_i64(4, nan)?;
            upsert.bind_i64(5, m.timestamp)?;
            upsert.bind_i64(6, m.step)?;
            upsert.step_done()?;
        }
        let events = audit.chain(plan.events(logs));
        insert_audit(&mut st.insert_audit, &events)?;
    }
    exec(db, "COMMIT")?;
    Ok((created, plan.results))
}

/// Inserts one run with its tags and its audit event. The outer `Err` is a failed statement
/// (the group rolls back); the inner one is this request's own answer (unknown or deleted
/// experiment).
fn create_run(
    st: &mut Statements,
    audit: &mut AuditCtx,
    create: &RunCreate,
    stages: &mut HashMap<String, String>,
) -> Result<Result<Run, StoreError>, StoreError> {
    let draft = &create.draft;
    st.experiment.bind_i64(1, draft.experiment_id)?;
    let found = st.experiment.step();
    let experiment = match found {
        Ok(true) => Some((st.experiment.column_text(0), st.experiment.column_text(1))),
        _ => None,
    };
    st.experiment.reset();
    found?;
    let (record, digest) = match draft.complete(experiment) {
        Ok(completed) => completed,
        Err(refused) => return Ok(Err(refused)),
    };
    let insert = &mut st.insert_run;
    insert.bind_text(1, &draft.id)?;
    insert.bind_i64(2, record.experiment_id)?;
    insert.bind_text(3, &record.run_name)?;
    insert.bind_text(4, &record.user_id)?;
    insert.bind_text(5, &record.status)?;
    insert.bind_opt_i64(6, record.start_time)?;
    insert.bind_text(7, &record.artifact_uri)?;
    insert.bind_text(8, &record.lifecycle_stage)?;
    insert.step_done()?;
    for (key, value) in &draft.tags {
        st.insert_tag.bind_text(1, &draft.id)?;
        st.insert_tag.bind_text(2, key)?;
        st.insert_tag.bind_text(3, value)?;
        st.insert_tag.step_done()?;
    }
    let events = audit.chain(vec![(
        create.actor.clone(),
        "run.create".to_string(),
        "run".to_string(),
        draft.id.clone(),
        Some(digest),
    )]);
    insert_audit(&mut st.insert_audit, &events)?;
    stages.insert(draft.id.clone(), record.lifecycle_stage.clone());
    Ok(Ok(draft.answer(record)))
}

fn insert_audit(insert: &mut Stmt, events: &[(AuditEvent, String)]) -> Result<(), StoreError> {
    for (e, hash) in events {
        insert.bind_i64(1, e.seq)?;
        insert.bind_i64(2, e.time)?;
        insert.bind_text(3, &e.actor)?;
        insert.bind_text(4, &e.action)?;
        insert.bind_text(5, &e.entity_type)?;
        insert.bind_text(6, &e.entity_id)?;
        insert.bind_opt_text(7, e.state_digest.as_deref())?;
        insert.bind_text(8, hash)?;
        insert.step_done()?;
    }
    Ok(())
}

fn error(db: &Db, context: &str) -> StoreError {
    error_of(db.0, context)
}

fn error_of(db: NonNull<ffi::sqlite3>, context: &str) -> StoreError {
    // SAFETY: the handle is valid; sqlite3_errmsg returns a NUL-terminated string owned by
    // SQLite, copied before any further call.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    StoreError::Database(format!("{context}: {message}"))
}

/// SQLite's WAL hook: called after each commit with the number of frames now in the WAL.
unsafe extern "C" fn note_wal_frames(
    frames_cell: *mut c_void,
    _db: *mut ffi::sqlite3,
    _schema: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: registered in `open` with a pointer to the writer's boxed cell, which lives as
    // long as the connection; SQLite calls this on the thread running the commit.
    unsafe { (*frames_cell.cast::<Cell<c_int>>()).set(frames) };
    ffi::SQLITE_OK
}

fn exec(db: &Db, sql: &str) -> Result<(), StoreError> {
    let sql = CString::new(sql).map_err(|e| StoreError::Database(e.to_string()))?;
    // SAFETY: valid handle, NUL-terminated SQL, no callback.
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

/// A prepared statement, finalized on drop (before its connection closes: see `NativeWriter`).
struct Stmt {
    db: NonNull<ffi::sqlite3>,
    raw: *mut ffi::sqlite3_stmt,
}

impl Stmt {
    fn prepare(db: &Db, sql: &str) -> Result<Self, StoreError> {
        let sql = CString::new(sql).map_err(|e| StoreError::Database(e.to_string()))?;
        let mut raw = ptr::null_mut();
        // SAFETY: valid handle; `raw` receives a statement we own and finalize on drop.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(db.0.as_ptr(), sql.as_ptr(), -1, &mut raw, ptr::null_mut())
        };
        if rc != ffi::SQLITE_OK || raw.is_null() {
            return Err(error(db, "prepare"));
        }
        Ok(Stmt { db: db.0, raw })
    }

    fn check(&self, rc: c_int, what: &str) -> Result<(), StoreError> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error_of(self.db, what))
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

    fn bind_opt_i64(&mut self, index: c_int, value: Option<i64>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.bind_i64(index, v),
            // SAFETY: valid statement and index.
            None => self.check(
                unsafe { ffi::sqlite3_bind_null(self.raw, index) },
                "bind null",
            ),
        }
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
            _ => Err(error_of(self.db, "step")),
        }
    }

    /// Steps a statement that returns no rows, then resets it for the next use.
    fn step_done(&mut self) -> Result<(), StoreError> {
        let stepped = self.step();
        self.reset();
        stepped.map(|_| ())
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

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: we own the statement; finalizing a null or already-reset statement is fine.
        unsafe {
            ffi::sqlite3_finalize(self.raw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits one transaction of `pages` fresh 4 KiB pages.
    fn commit_pages(writer: &NativeWriter, pages: usize) {
        exec(&writer.db, "BEGIN IMMEDIATE").expect("begin");
        for _ in 0..pages {
            exec(
                &writer.db,
                "INSERT INTO filler (bytes) VALUES (randomblob(4000))",
            )
            .expect("insert");
        }
        exec(&writer.db, "COMMIT").expect("commit");
    }

    #[tokio::test]
    async fn the_writer_starts_the_wal_over_once_it_passes_its_bound() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("w.db");
        let file = file.to_str().expect("utf-8 path");
        // As in the server: sqlx creates the database and its schema, then the writer opens it.
        let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{file}?mode=rwc"))
            .await
            .expect("connect");
        crate::schema::migrate(&mut conn, crate::Backend::Sqlite)
            .await
            .expect("schema");
        let mut writer = NativeWriter::open(file).expect("open");
        exec(&writer.db, "CREATE TABLE filler (bytes BLOB)").expect("table");
        writer.wal_bound_frames = 200;

        // Without the bound the WAL only grows: nothing else here starts it over.
        for _ in 0..30 {
            commit_pages(&writer, 10);
        }
        assert!(
            writer.wal_frames.get() > 300,
            "frames: {}",
            writer.wal_frames.get()
        );

        let wal = std::path::PathBuf::from(format!("{file}-wal"));
        let grown = std::fs::metadata(&wal).expect("wal").len();
        for _ in 0..300 {
            writer.bound_wal();
            commit_pages(&writer, 10);
            assert!(
                writer.wal_frames.get() <= 2 * 200 + 20,
                "frames: {}",
                writer.wal_frames.get()
            );
        }
        // 3,000 more pages went through a WAL that kept its size instead of growing by 12 MB.
        assert_eq!(std::fs::metadata(&wal).expect("wal").len(), grown);
        let mut count = Stmt::prepare(&writer.db, "SELECT COUNT(*) FROM filler").expect("count");
        assert!(count.step().expect("step"));
        assert_eq!(count.column_text(0), "3300");
    }
}
