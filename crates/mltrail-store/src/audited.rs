//! The audit trail's storage side, in terms of no entity in particular: what an audited entity
//! provides ([`Audited`]: its kind, its id as events spell it, and the state its events digest),
//! recording an event for one, `verify`, which re-derives the chain and asks each entity kind
//! for its current state, and listing events.
//!
//! Each domain module implements [`Audited`] for the entities it owns; the list of kinds
//! `verify` checks is wired at the top of the crate (`lib.rs`). The chain itself (sequence
//! numbers, hashes, the rows) is the writer's (`writer/chain.rs`).

use crate::sql::{int, opt_text, text};
use crate::{AuditCtx, StoreError, Tx};
use futures::future::BoxFuture;
use futures::TryStreamExt;
use mltrail_core::audit::state_digest;
use mltrail_core::{AuditEvent, GENESIS_HASH};
use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, AnyPool};
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;

/// An entity the audit trail records state for, as its owning module names it: a value of the
/// implementing type is a reference to one entity (its id).
pub(crate) trait Audited: Send + Sync + Sized + 'static {
    /// The `entity_type` of its events.
    const KIND: &'static str;
    /// SQL listing the id (column `id`) of every stored entity of the kind, spelled as events
    /// spell it: `verify` reports a row no event recorded.
    const LIST_IDS: &'static str;

    /// The entity an event's id names; `None` when the id cannot name one of this kind.
    fn parse(id: &str) -> Option<Self>;

    /// The id its events carry.
    fn id(&self) -> String;

    /// The entity's current state, whose digest its events record; `None` when it does not
    /// exist. The writer digests it when recording and `verify` when checking, so both read the
    /// same rows the same way.
    fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;
}

/// `parse` and `id` of an entity named by one text key (a run id, a model name, a monitor id):
/// the key is the event's id as it stands. Used inside `impl Audited for $name`.
macro_rules! text_key {
    ($name:ident) => {
        fn parse(id: &str) -> Option<Self> {
            Some($name(id.to_string()))
        }

        fn id(&self) -> String {
            self.0.clone()
        }
    };
}
pub(crate) use text_key;

/// `parse` and `id` of an entity named by one integer key (an experiment id, a role id): the
/// event's id is the integer in decimal. Used inside `impl Audited for $name`.
macro_rules! int_key {
    ($name:ident) => {
        fn parse(id: &str) -> Option<Self> {
            Some($name(id.parse().ok()?))
        }

        fn id(&self) -> String {
            self.0.to_string()
        }
    };
}
pub(crate) use int_key;

/// `parse` and `id` of a versioned entity (`name` and an integer `version`, a model version or
/// a dataset version): its event id is `NAME/VERSION`, split at the last `/` because names may
/// hold one. Used inside `impl Audited for $name`.
macro_rules! name_version_key {
    ($name:ident) => {
        fn parse(id: &str) -> Option<Self> {
            let (name, version) = id.rsplit_once('/')?;
            Some($name {
                name: name.into(),
                version: version.parse().ok()?,
            })
        }

        fn id(&self) -> String {
            format!("{}/{}", self.name, self.version)
        }
    };
}
pub(crate) use name_version_key;

/// An entity kind as `verify` sees it: ids are the text events carry.
pub(crate) trait AuditedKind: Sync {
    fn kind(&self) -> &'static str;

    fn list_ids_sql(&self) -> &'static str;

    /// The state of the entity `id` names; `None` (no future) when `id` cannot name one.
    fn state<'c>(
        &self,
        conn: &'c mut AnyConnection,
        id: &str,
    ) -> Option<BoxFuture<'c, Result<Option<Value>, StoreError>>>;
}

/// The [`AuditedKind`] of the entities `E` refers to.
pub(crate) struct Kind<E>(PhantomData<fn() -> E>);

impl<E> Kind<E> {
    pub(crate) const fn new() -> Self {
        Kind(PhantomData)
    }
}

impl<E: Audited> AuditedKind for Kind<E> {
    fn kind(&self) -> &'static str {
        E::KIND
    }

    fn list_ids_sql(&self) -> &'static str {
        E::LIST_IDS
    }

    fn state<'c>(
        &self,
        conn: &'c mut AnyConnection,
        id: &str,
    ) -> Option<BoxFuture<'c, Result<Option<Value>, StoreError>>> {
        let entity = E::parse(id)?;
        Some(Box::pin(async move { entity.state(conn).await }))
    }
}

impl AuditCtx {
    /// Appends one event for `entity`, whose state digest is read back from the transaction,
    /// so the digest describes exactly what is being committed.
    pub(crate) async fn record<E: Audited>(
        &mut self,
        tx: &mut Tx,
        action: &str,
        entity: &E,
    ) -> Result<(), StoreError> {
        let digest = entity.state(tx).await?.map(|s| state_digest(&s));
        self.record_external(tx, action, E::KIND, &entity.id(), digest)
            .await
    }
}

/// (entity type, entity id) → (seq, digest) of its latest event.
type LatestByEntity = HashMap<(String, String), (i64, Option<String>)>;

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// The event at which the chain or the state stops matching (0 when a row has no event).
    pub seq: i64,
    pub entity_type: String,
    pub entity_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub events: i64,
    pub entities_checked: usize,
    pub broken: Option<BrokenLink>,
}

/// Recomputes the chain from the genesis hash, then checks that every entity's current state
/// digests to what its latest event recorded, and that no audited row exists without an event.
/// `kinds` are the entity kinds with state in the database, in the order rows without an event
/// are looked for; events of other kinds (artifacts, deployments) have their links checked only.
pub(crate) async fn verify(
    conn: &mut AnyConnection,
    kinds: &[&dyn AuditedKind],
) -> Result<VerifyReport, StoreError> {
    let mut latest: LatestByEntity = HashMap::new();
    let mut prev = GENESIS_HASH;
    let mut expected_seq = 1;
    let mut events = 0;
    let mut broken: Option<BrokenLink> = None;
    {
        let mut rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq").fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let event = AuditEvent {
                seq: int(&row, "seq")?,
                time: int(&row, "time")?,
                actor: text(&row, "actor")?,
                action: text(&row, "action")?,
                entity_type: text(&row, "entity_type")?,
                entity_id: text(&row, "entity_id")?,
                state_digest: opt_text(&row, "state_digest")?,
            };
            let link = |reason: String| BrokenLink {
                seq: event.seq,
                entity_type: event.entity_type.clone(),
                entity_id: event.entity_id.clone(),
                reason,
            };
            if event.seq != expected_seq {
                broken = Some(link(format!(
                    "expected event {expected_seq}, found {}: events are missing",
                    event.seq
                )));
                break;
            }
            let recomputed = prev.next(&event);
            if recomputed.to_hex() != text(&row, "hash")? {
                broken = Some(link("the event's hash does not match its content and the previous link: the event was edited".into()));
                break;
            }
            prev = recomputed;
            expected_seq += 1;
            events += 1;
            latest.insert(
                (event.entity_type.clone(), event.entity_id.clone()),
                (event.seq, event.state_digest.clone()),
            );
        }
    }
    if broken.is_some() {
        return Ok(VerifyReport {
            events,
            entities_checked: 0,
            broken,
        });
    }
    let by_kind: HashMap<&str, &dyn AuditedKind> = kinds.iter().map(|k| (k.kind(), *k)).collect();
    let mut ordered: Vec<_> = latest.iter().collect();
    ordered.sort_by_key(|(_, (seq, _))| *seq);
    let mut checked = 0;
    for ((kind, id), (seq, recorded)) in ordered {
        let Some(state) = by_kind
            .get(kind.as_str())
            .and_then(|k| k.state(&mut *conn, id))
        else {
            continue;
        };
        let actual = state.await?.map(|s| state_digest(&s));
        checked += 1;
        if &actual != recorded {
            let reason = match (&actual, recorded) {
                (None, Some(_)) => "the row was deleted after this event recorded it".to_string(),
                (Some(_), None) => "the row exists although this event recorded its deletion".to_string(),
                _ => "the stored state differs from the digest this event recorded: the row was edited".to_string(),
            };
            return Ok(VerifyReport {
                events,
                entities_checked: checked,
                broken: Some(BrokenLink {
                    seq: *seq,
                    entity_type: kind.clone(),
                    entity_id: id.clone(),
                    reason,
                }),
            });
        }
    }
    if let Some(orphan) = find_unrecorded_row(conn, kinds, &latest).await? {
        return Ok(VerifyReport {
            events,
            entities_checked: checked,
            broken: Some(orphan),
        });
    }
    Ok(VerifyReport {
        events,
        entities_checked: checked,
        broken: None,
    })
}

async fn find_unrecorded_row(
    conn: &mut AnyConnection,
    kinds: &[&dyn AuditedKind],
    latest: &LatestByEntity,
) -> Result<Option<BrokenLink>, StoreError> {
    for kind in kinds {
        let mut rows = sqlx::query(kind.list_ids_sql()).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let id = text(&row, "id")?;
            if !latest.contains_key(&(kind.kind().to_string(), id.clone())) {
                return Ok(Some(BrokenLink {
                    seq: 0,
                    entity_type: kind.kind().into(),
                    entity_id: id,
                    reason: "this row has no audit event: it was inserted behind the server's back"
                        .into(),
                }));
            }
        }
    }
    Ok(None)
}

/// An audit event with its hash in the chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoggedEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    /// BLAKE3 of the previous event's hash and this event's canonical JSON.
    pub hash: String,
}

/// Events in sequence order, optionally only those of one entity (`run:<id>`, `experiment:<id>`,
/// or just a type such as `registered_model`).
pub(crate) async fn list_events(
    readers: &AnyPool,
    entity: Option<&str>,
    actor: Option<&str>,
    limit: i64,
) -> Result<Vec<LoggedEvent>, StoreError> {
    let (kind, id) = match entity {
        None => (None, None),
        Some(spec) => match spec.split_once(':') {
            Some((k, i)) => (Some(k.to_string()), Some(i.to_string())),
            None => (Some(spec.to_string()), None),
        },
    };
    // An actor matches by its whole spelling (`token:ci`) or by its name under any kind of
    // principal; the spellings are mltrail_core's.
    let spellings = actor
        .map(mltrail_core::Principal::spellings)
        .unwrap_or_default();
    let mut query = sqlx::query(
        "SELECT * FROM audit_log WHERE ($1 = '' OR entity_type = $1) AND ($2 = '' OR entity_id = $2) \
         AND ($4 = '' OR actor IN ($4, $5, $6, $7, $8)) ORDER BY seq LIMIT $3",
    )
    .bind(kind.unwrap_or_default())
    .bind(id.unwrap_or_default())
    .bind(limit);
    for spelling in spellings {
        query = query.bind(spelling);
    }
    let rows = query.fetch_all(readers).await?;
    rows.iter().map(logged_event).collect()
}

/// What a page of the trail is filtered by; an empty field does not filter.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// `kind`, `kind:id`, or `kind:prefix*` for every id of that kind starting with the prefix.
    pub entity: String,
    /// A principal's spelling or its name.
    pub actor: String,
    /// An action (`run.create`), or its start (`run.` for every action on runs).
    pub action: String,
    /// Only events at or after this time (epoch ms).
    pub since: Option<i64>,
    /// Only events before this time (epoch ms).
    pub until: Option<i64>,
    /// Only events before this sequence number: the next page of a newest-first listing.
    pub before_seq: Option<i64>,
}

/// Events newest first, filtered, at most `limit` (a page; the next starts before the last
/// one's `seq`). Walks the chain's key backwards, so a page costs the same deep in the trail.
pub(crate) async fn search_events(
    readers: &AnyPool,
    q: &EventQuery,
    limit: i64,
) -> Result<Vec<LoggedEvent>, StoreError> {
    let (kind, id) = match q.entity.split_once(':') {
        Some((k, i)) => (k.to_string(), i.to_string()),
        None => (q.entity.clone(), String::new()),
    };
    // `kind:prefix*`: every entity of that kind whose id starts with the prefix (a deployment's
    // events are `deployment:<name>:<model>/<version>`).
    let (id, id_prefix) = match id.strip_suffix('*') {
        Some(prefix) => (prefix.to_string(), "1"),
        None => (id, ""),
    };
    let spellings = if q.actor.is_empty() {
        Default::default()
    } else {
        mltrail_core::Principal::spellings(&q.actor)
    };
    // `run.` or `run.*` matches every action on runs: a prefix compared with `substr`, not
    // LIKE, so `_` and `%` in it mean themselves (and no collation decides).
    let (action, prefix) = match q.action.strip_suffix('*') {
        Some(prefix) => (prefix.to_string(), "1"),
        None if q.action.ends_with('.') => (q.action.clone(), "1"),
        None => (q.action.clone(), ""),
    };
    let mut query = sqlx::query(
        "SELECT * FROM audit_log WHERE ($1 = '' OR entity_type = $1) \
         AND ($2 = '' OR ($14 = '' AND entity_id = $2) OR ($14 <> '' AND substr(entity_id, 1, length($2)) = $2)) \
         AND ($3 = '' OR actor IN ($3, $4, $5, $6, $7)) \
         AND ($8 = '' OR ($9 = '' AND action = $8) OR ($9 <> '' AND substr(action, 1, length($8)) = $8)) \
         AND time >= $10 AND time < $11 AND seq < $12 ORDER BY seq DESC LIMIT $13",
    )
    .bind(kind)
    .bind(id);
    for spelling in spellings {
        query = query.bind(spelling);
    }
    let rows = query
        .bind(action)
        .bind(prefix)
        .bind(q.since.unwrap_or(i64::MIN))
        .bind(q.until.unwrap_or(i64::MAX))
        .bind(q.before_seq.unwrap_or(i64::MAX))
        .bind(limit)
        .bind(id_prefix)
        .fetch_all(readers)
        .await?;
    rows.iter().map(logged_event).collect()
}

pub(crate) fn logged_event(row: &sqlx::any::AnyRow) -> Result<LoggedEvent, StoreError> {
    Ok(LoggedEvent {
        event: AuditEvent {
            seq: int(row, "seq")?,
            time: int(row, "time")?,
            actor: text(row, "actor")?,
            action: text(row, "action")?,
            entity_type: text(row, "entity_type")?,
            entity_id: text(row, "entity_id")?,
            state_digest: opt_text(row, "state_digest")?,
        },
        hash: text(row, "hash")?,
    })
}

/// One event, by its sequence number.
pub(crate) async fn event(readers: &AnyPool, seq: i64) -> Result<Option<LoggedEvent>, StoreError> {
    let row = sqlx::query("SELECT * FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_optional(readers)
        .await?;
    row.as_ref().map(logged_event).transpose()
}
