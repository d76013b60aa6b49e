//! The native SQLite connection the writer keeps for its hottest writes: opened and driven
//! through SQLite's C API, so a group's statements are direct calls rather than a round trip
//! each to sqlx's worker thread. This module owns the connection primitives only: opening with
//! the writer's durability settings, prepared statements ([`Stmt`]), transactions, and the bound
//! on the WAL. Which statements run on it (metric logs, run creations) is the domain's, prepared
//! through [`Native::open`]'s `prepare` and run in [`Native::transaction`].
//!
//! All `unsafe` in the crate is here: FFI calls on a connection this module alone owns.

use super::chain::{self, AuditCtx, PendingEvent};
use crate::error::DatabaseError;
use crate::StoreError;
use libsqlite3_sys as ffi;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::{self, NonNull};

/// The native connection with the statements prepared on it.
pub(crate) struct Native<S> {
    // Declared before `db`: statements are finalized before the connection closes.
    statements: S,
    audit_rows: Stmt,
    head: Stmt,
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

/// An open SQLite connection owned by this module alone, closed on drop.
pub(crate) struct Db(NonNull<ffi::sqlite3>);

// SAFETY: SQLite connections may move between threads (the bundled library is built
// thread-safe). A `Db` and the statements prepared on it live together in one `Native`, which
// is moved once onto the writer thread and used by it alone.
unsafe impl Send for Db {}
// SAFETY: as for `Db`: a statement is used only with its connection, by the thread owning both.
unsafe impl Send for Stmt {}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: we own the handle; every statement was finalized first (field order).
        unsafe {
            ffi::sqlite3_close(self.0.as_ptr());
        }
    }
}

/// What a native group works with: the domain's statements, and the audit chain.
pub(crate) struct NativeGroup<'a, S> {
    pub statements: &'a mut S,
    pub chain: NativeChain<'a>,
}

/// The audit chain during a native group: events are inserted with the connection's own
/// prepared statement.
pub(crate) struct NativeChain<'a> {
    audit: &'a mut AuditCtx,
    audit_rows: &'a mut Stmt,
}

impl NativeChain<'_> {
    /// Chains events and inserts them, in order.
    pub(crate) fn append(&mut self, events: Vec<PendingEvent>) -> Result<(), StoreError> {
        let rows = self.audit.chain(events);
        chain::insert_native(self.audit_rows, &rows)
    }
}

impl<S> Native<S> {
    /// Opens a second connection to the writer's database file, with the same durability
    /// settings, and prepares the domain's statements on it. The connection is opened here
    /// rather than through sqlx: sqlx runs every call on a worker thread of its own, and
    /// handing each group there and back cost more than the group's statements.
    pub(crate) fn open(
        file: &str,
        prepare: impl FnOnce(&Db) -> Result<S, StoreError>,
    ) -> Result<Self, StoreError> {
        let db = Db::open_with(file, ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX)?;
        for pragma in [
            "PRAGMA journal_mode = WAL",
            // FULL: a commit is fsynced before it is acknowledged (durable across power loss).
            "PRAGMA synchronous = FULL",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA wal_autocheckpoint = 0",
        ] {
            db.exec(pragma)?;
        }
        let statements = prepare(&db)?;
        let audit_rows = Stmt::prepare(&db, chain::INSERT_NATIVE)?;
        let head = Stmt::prepare(&db, chain::SELECT_HEAD)?;
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
        Ok(Native {
            statements,
            audit_rows,
            head,
            db,
            wal_frames,
            wal_bound_frames: WAL_BOUND_FRAMES,
        })
    }

    /// Runs `apply` in one transaction of its own (BEGIN IMMEDIATE … COMMIT). Nothing of it
    /// survives a failure: the transaction rolls back and the chain head is restored. It blocks
    /// for the commit's fsync, which is why the writer has a thread of its own.
    ///
    /// Once the write lock is held, the stored head is compared with the remembered one: another
    /// process (`mltrail users create`, `mltrail tokens revoke` beside a running server) may
    /// have appended events. `apply` is told whether it did (`true`), so cached state is
    /// dropped.
    pub(crate) fn transaction<T>(
        &mut self,
        audit: &mut AuditCtx,
        apply: impl FnOnce(&mut NativeGroup<'_, S>, bool) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // The head to return to if the group fails: the stored one once it has been read.
        let mut before = audit.head_snapshot();
        let result = self.db.exec("BEGIN IMMEDIATE").and_then(|()| {
            let stored = chain::read_head_native(&mut self.head)?;
            let foreign = stored != before;
            if foreign {
                audit.restore(stored);
                before = stored;
            }
            let mut group = NativeGroup {
                statements: &mut self.statements,
                chain: NativeChain {
                    audit: &mut *audit,
                    audit_rows: &mut self.audit_rows,
                },
            };
            let out = apply(&mut group, foreign)?;
            self.db.exec("COMMIT")?;
            Ok(out)
        });
        if result.is_err() {
            let _ = self.db.exec("ROLLBACK");
            audit.restore(before);
        }
        result
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
        match self.db.exec(mode) {
            Ok(()) => self.wal_frames.set(0),
            Err(e) => tracing::warn!(error = %e, frames, "WAL checkpoint by the writer failed"),
        }
    }
}

impl Db {
    /// Opens `file` read-only, as it is (an import's source): no pragmas, nothing written.
    pub(crate) fn open_read_only(file: &str) -> Result<Db, StoreError> {
        let db = Db::open_with(file, ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX)?;
        db.exec("PRAGMA busy_timeout = 10000")?;
        Ok(db)
    }

    fn open_with(file: &str, flags: c_int) -> Result<Db, StoreError> {
        let path = CString::new(file).map_err(nul)?;
        let mut raw = ptr::null_mut();
        // SAFETY: NUL-terminated path; `raw` receives a handle we own (closed by `Db`'s drop,
        // even when opening failed, as SQLite requires).
        let rc = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut raw, flags, ptr::null()) };
        let db = Db(NonNull::new(raw).ok_or_else(|| DatabaseError::OutOfMemory(file.to_string()))?);
        if rc != ffi::SQLITE_OK {
            return Err(error(&db, "open"));
        }
        Ok(db)
    }

    /// Runs SQL that returns no rows.
    pub(crate) fn exec(&self, sql: &str) -> Result<(), StoreError> {
        let sql = CString::new(sql).map_err(nul)?;
        // SAFETY: valid handle, NUL-terminated SQL, no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.0.as_ptr(),
                sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(self, "exec"));
        }
        Ok(())
    }
}

fn error(db: &Db, context: &'static str) -> StoreError {
    error_of(db.0, context)
}

fn error_of(db: NonNull<ffi::sqlite3>, context: &'static str) -> StoreError {
    // SAFETY: the handle is valid; sqlite3_errmsg returns a NUL-terminated string owned by
    // SQLite, copied before any further call.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above.
    let code = unsafe { ffi::sqlite3_errcode(db.as_ptr()) };
    DatabaseError::Sqlite {
        context,
        code,
        message,
    }
    .into()
}

fn nul(err: std::ffi::NulError) -> StoreError {
    DatabaseError::Nul(std::sync::Arc::new(err)).into()
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

/// A prepared statement, finalized on drop (before its connection closes: see [`Native`]).
pub(crate) struct Stmt {
    db: NonNull<ffi::sqlite3>,
    raw: *mut ffi::sqlite3_stmt,
}

impl Stmt {
    pub(crate) fn prepare(db: &Db, sql: &str) -> Result<Self, StoreError> {
        let sql = CString::new(sql).map_err(nul)?;
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

    fn check(&self, rc: c_int, what: &'static str) -> Result<(), StoreError> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error_of(self.db, what))
        }
    }

    pub(crate) fn bind_text(&mut self, index: c_int, value: &str) -> Result<(), StoreError> {
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

    pub(crate) fn bind_blob(&mut self, index: c_int, value: &[u8]) -> Result<(), StoreError> {
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

    pub(crate) fn bind_opt_text(
        &mut self,
        index: c_int,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        match value {
            Some(v) => self.bind_text(index, v),
            // SAFETY: valid statement and index.
            None => self.check(
                unsafe { ffi::sqlite3_bind_null(self.raw, index) },
                "bind null",
            ),
        }
    }

    pub(crate) fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), StoreError> {
        // SAFETY: valid statement and index.
        self.check(
            unsafe { ffi::sqlite3_bind_int64(self.raw, index, value) },
            "bind int",
        )
    }

    pub(crate) fn bind_opt_i64(
        &mut self,
        index: c_int,
        value: Option<i64>,
    ) -> Result<(), StoreError> {
        match value {
            Some(v) => self.bind_i64(index, v),
            // SAFETY: valid statement and index.
            None => self.check(
                unsafe { ffi::sqlite3_bind_null(self.raw, index) },
                "bind null",
            ),
        }
    }

    pub(crate) fn bind_opt_f64(
        &mut self,
        index: c_int,
        value: Option<f64>,
    ) -> Result<(), StoreError> {
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
    pub(crate) fn step(&mut self) -> Result<bool, StoreError> {
        // SAFETY: valid statement.
        match unsafe { ffi::sqlite3_step(self.raw) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(error_of(self.db, "step")),
        }
    }

    /// Steps a statement that returns no rows, then resets it for the next use.
    pub(crate) fn step_done(&mut self) -> Result<(), StoreError> {
        let stepped = self.step();
        self.reset();
        stepped.map(|_| ())
    }

    pub(crate) fn column_text(&self, index: c_int) -> String {
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

    pub(crate) fn column_f64(&self, index: c_int) -> f64 {
        // SAFETY: called after step() returned a row.
        unsafe { ffi::sqlite3_column_double(self.raw, index) }
    }

    pub(crate) fn column_i64(&self, index: c_int) -> i64 {
        // SAFETY: called after step() returned a row.
        unsafe { ffi::sqlite3_column_int64(self.raw, index) }
    }

    pub(crate) fn reset(&mut self) {
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
    fn commit_pages(writer: &Native<()>, pages: usize) {
        writer.db.exec("BEGIN IMMEDIATE").expect("begin");
        for _ in 0..pages {
            writer
                .db
                .exec("INSERT INTO filler (bytes) VALUES (randomblob(4000))")
                .expect("insert");
        }
        writer.db.exec("COMMIT").expect("commit");
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
        crate::schema::migrate(&mut conn, crate::sql::Backend::Sqlite)
            .await
            .expect("schema");
        let mut writer = Native::open(file, |_| Ok(())).expect("open");
        writer
            .db
            .exec("CREATE TABLE filler (bytes BLOB)")
            .expect("table");
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
