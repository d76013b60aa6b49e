//! The audit chain as the writer extends it: the head (last sequence number and hash), carried
//! across groups and restored when a group rolls back, and the appending of events to
//! `audit_log` inside the group's transaction, through sqlx or through the native connection.
//!
//! What an event says about an entity (its state digest) is the audit module's and the domain
//! modules' business; here an event is only actor, action, entity type, id and digest.

use super::native::Stmt;
use super::Tx;
use crate::error::DatabaseError;
use crate::sql::{int, text, values_rows};
use crate::StoreError;
use mltrail_core::{AuditEvent, ChainHash, GENESIS_HASH};

/// Rows per multi-row INSERT; keeps bound parameters far below SQLite's limit.
const ROWS_PER_INSERT: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuditHead {
    pub seq: i64,
    pub hash: ChainHash,
}

/// The last event's sequence number and hash.
pub(crate) const SELECT_HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// The head as stored, read with the native connection's prepared [`SELECT_HEAD`].
pub(crate) fn read_head_native(stmt: &mut super::native::Stmt) -> Result<AuditHead, StoreError> {
    let row = match stmt.step() {
        Ok(row) => row,
        Err(e) => {
            stmt.reset();
            return Err(e);
        }
    };
    let head = if row {
        let hash = ChainHash::from_hex(&stmt.column_text(1))
            .ok_or(StoreError::Database(DatabaseError::MalformedHead));
        hash.map(|hash| AuditHead {
            seq: stmt.column_i64(0),
            hash,
        })
    } else {
        Ok(AuditHead {
            seq: 0,
            hash: GENESIS_HASH,
        })
    };
    stmt.reset();
    head
}

/// The head of the chain as stored: genesis for an empty log.
pub(crate) async fn load_head(conn: &mut Tx) -> Result<AuditHead, StoreError> {
    let row = sqlx::query(SELECT_HEAD).fetch_optional(&mut *conn).await?;
    match row {
        None => Ok(AuditHead {
            seq: 0,
            hash: GENESIS_HASH,
        }),
        Some(row) => {
            let hash = ChainHash::from_hex(&text(&row, "hash")?)
                .ok_or(StoreError::Database(DatabaseError::MalformedHead))?;
            Ok(AuditHead {
                seq: int(&row, "seq")?,
                hash,
            })
        }
    }
}

/// An event not yet chained.
pub(crate) struct PendingEvent {
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub state_digest: Option<String>,
}

/// Appends audit events for the job being run; the chain head carries across a group.
pub struct AuditCtx {
    actor: String,
    head: AuditHead,
}

impl AuditCtx {
    pub(crate) fn new(head: AuditHead) -> Self {
        AuditCtx {
            actor: String::new(),
            head,
        }
    }

    pub(crate) fn set_actor(&mut self, actor: String) {
        self.actor = actor;
    }

    /// Appends an event with a digest the caller computed: for state that lives outside the
    /// database (an artifact's content digest), or state the caller knows without reading it
    /// back (a run it just created).
    pub async fn record_external(
        &mut self,
        tx: &mut Tx,
        action: &str,
        kind: &str,
        id: &str,
        digest: Option<String>,
    ) -> Result<(), StoreError> {
        let event = PendingEvent {
            actor: self.actor.clone(),
            action: action.to_string(),
            entity_type: kind.to_string(),
            entity_id: id.to_string(),
            state_digest: digest,
        };
        self.append(tx, vec![event]).await
    }

    pub(crate) fn head_snapshot(&self) -> AuditHead {
        self.head
    }

    pub(crate) fn restore(&mut self, head: AuditHead) {
        self.head = head;
    }

    /// Gives pending events their sequence numbers and chain hashes, advancing the head.
    /// The caller inserts the rows; if that fails, the whole group rolls back and the writer
    /// restores the head it had before the group.
    pub(crate) fn chain(&mut self, events: Vec<PendingEvent>) -> Vec<(AuditEvent, String)> {
        let time = mltrail_core::now_millis();
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            let event = AuditEvent {
                seq: self.head.seq + 1,
                time,
                actor: e.actor,
                action: e.action,
                entity_type: e.entity_type,
                entity_id: e.entity_id,
                state_digest: e.state_digest,
            };
            let hash = self.head.hash.next(&event);
            self.head = AuditHead {
                seq: event.seq,
                hash,
            };
            rows.push((event, hash.to_hex()));
        }
        rows
    }

    /// Chains and inserts events in order, through sqlx.
    pub(crate) async fn append(
        &mut self,
        tx: &mut Tx,
        events: Vec<PendingEvent>,
    ) -> Result<(), StoreError> {
        let before = self.head;
        let rows = self.chain(events);
        let inserted = insert_rows(tx, &rows).await;
        if inserted.is_err() {
            self.head = before;
        }
        inserted
    }
}

async fn insert_rows(tx: &mut Tx, rows: &[(AuditEvent, String)]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values = values_rows(tx, chunk.len(), 8);
        let sql = format!("INSERT INTO audit_log (seq, time, actor, action, entity_type, entity_id, state_digest, hash) VALUES {values}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (e, hash) in chunk {
            query = query
                .bind(e.seq)
                .bind(e.time)
                .bind(e.actor.clone())
                .bind(e.action.clone())
                .bind(e.entity_type.clone())
                .bind(e.entity_id.clone())
                .bind(e.state_digest.clone())
                .bind(hash.clone());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The native path's audit-row INSERT, prepared once with the connection.
pub(crate) const INSERT_NATIVE: &str = "INSERT INTO audit_log (seq, time, actor, action, entity_type, entity_id, state_digest, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Inserts chained events with the native path's prepared statement.
pub(crate) fn insert_native(
    insert: &mut Stmt,
    events: &[(AuditEvent, String)],
) -> Result<(), StoreError> {
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
