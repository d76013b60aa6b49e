//! The keys of the people predictions are about (crypto-shredding, `mltrail_core::privacy`):
//! one data key per subject, made on first use, stored wrapped by the master key under the
//! subject's keyed hash, and erased for good on request.
//!
//! Making a key is not an audit event (it happens on a prediction, not by anyone's decision);
//! an erasure is, of kind `subject`, whose state is the erasure row (reason, time, how many
//! keys were destroyed) and never the raw subject id.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audited::{text_key, Audited};
use crate::error::{Conflict, Invalid};
use crate::sql::{fetch_ids, int, placeholders_for, text};
use crate::{MetaStore, StoreError};
use mltrail_core::now_millis;
use mltrail_core::privacy::{DataKey, MasterKey, SubjectHash};
use std::collections::{BTreeSet, HashMap};

/// The most subjects one call takes: a request of a hundred rows asks for at most a hundred.
pub const MAX_SUBJECTS: usize = 1000;

/// A subject's data key, with the hash it is stored under.
#[derive(Debug)]
pub struct SubjectKey {
    pub subject: SubjectHash,
    pub key: DataKey,
}

/// What an erasure did, as `mltrail privacy erase` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub subject_hash: String,
    pub reason: String,
    pub erased_time: i64,
    /// 1 when the subject had a key, 0 when nothing was stored about them (the request is
    /// recorded all the same).
    pub keys_destroyed: i64,
}

/// Wrapped keys by subject hash (hex), for those of `hashes` that have one.
async fn wrapped(
    conn: &mut AnyConnection,
    hashes: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT subject_hash, wrapped_key FROM privacy_subject_keys WHERE subject_hash IN ({})",
        placeholders_for(conn, 1, hashes.len())
    );
    fetch_ids(conn, &sql, hashes)
        .await?
        .iter()
        .map(|r| Ok((text(r, "subject_hash")?, text(r, "wrapped_key")?)))
        .collect()
}

fn unwrap_key(
    master: &MasterKey,
    subject: &SubjectHash,
    wrapped: &str,
) -> Result<DataKey, StoreError> {
    master
        .unwrap(subject, wrapped)
        .map_err(|_| Conflict::SubjectKey(subject.to_hex()).into())
}

fn check_count(n: usize) -> Result<(), StoreError> {
    if n > MAX_SUBJECTS {
        return Err(Invalid::TooManySubjects { got: n }.into());
    }
    Ok(())
}

/// Binds the database to `given` (a master key's fingerprint) if it is bound to none, and
/// refuses another: keys are made under one master key only, whichever server makes them.
async fn bind_master(conn: &mut AnyConnection, given: &str) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT fingerprint FROM privacy_master WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row.as_ref().map(|r| text(r, "fingerprint")).transpose()? {
        None => {
            sqlx::query("INSERT INTO privacy_master (id, fingerprint) VALUES (1, $1)")
                .bind(given.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        Some(stored) if stored != given => Err(Conflict::MasterKey {
            given: given.to_string(),
            stored,
        }
        .into()),
        Some(_) => Ok(()),
    }
}

/// The data keys of `subjects` (raw ids, in order; repeats allowed), made for those who have
/// none yet. Safe against another server making the same subject's key at once: the first
/// stored key wins and both answer with it.
pub async fn subject_keys(
    store: &MetaStore,
    master: &MasterKey,
    subjects: &[String],
) -> Result<Vec<SubjectKey>, StoreError> {
    check_count(subjects.len())?;
    let hashes: Vec<SubjectHash> = subjects.iter().map(|s| master.subject_hash(s)).collect();
    let distinct: BTreeSet<SubjectHash> = hashes.iter().copied().collect();
    let texts: Vec<String> = distinct.iter().map(SubjectHash::to_hex).collect();
    let mut conn = store.readers().acquire().await?;
    let mut found = wrapped(&mut conn, &texts).await?;
    drop(conn);
    if found.len() < texts.len() {
        let mut missing = Vec::new();
        for (hash, hex) in distinct.iter().zip(&texts) {
            if !found.contains_key(hex) {
                let fail = || Conflict::SubjectKey(hex.clone());
                let key = DataKey::generate().map_err(|_| fail())?;
                missing.push((hex.clone(), master.wrap(hash, &key).map_err(|_| fail())?));
            }
        }
        let given = master.fingerprint();
        found = store
            .transaction("system:privacy", async move |tx, _audit| {
                bind_master(tx, &given).await?;
                let time = now_millis();
                for (hash, wrapped) in missing {
                    sqlx::query("INSERT INTO privacy_subject_keys (subject_hash, wrapped_key, created_time) VALUES ($1, $2, $3) ON CONFLICT (subject_hash) DO NOTHING")
                        .bind(hash)
                        .bind(wrapped)
                        .bind(time)
                        .execute(&mut *tx)
                        .await?;
                }
                wrapped(tx, &texts).await
            })
            .await?;
    }
    hashes
        .into_iter()
        .map(|subject| {
            let hex = subject.to_hex();
            let wrapped = found
                .get(&hex)
                .ok_or_else(|| Conflict::SubjectKey(hex.clone()))?;
            Ok(SubjectKey {
                key: unwrap_key(master, &subject, wrapped)?,
                subject,
            })
        })
        .collect()
}

/// The data keys stored under `hashes`, in order: `None` for a subject erased (or never seen).
pub async fn keys_by_hash(
    store: &MetaStore,
    master: &MasterKey,
    hashes: &[SubjectHash],
) -> Result<Vec<Option<DataKey>>, StoreError> {
    check_count(hashes.len())?;
    let texts: Vec<String> = hashes.iter().map(SubjectHash::to_hex).collect();
    let mut conn = store.readers().acquire().await?;
    let found = wrapped(&mut conn, &texts).await?;
    hashes
        .iter()
        .zip(&texts)
        .map(|(hash, hex)| {
            found
                .get(hex)
                .map(|w| unwrap_key(master, hash, w))
                .transpose()
        })
        .collect()
}

/// The fingerprint of the master key this database's subject keys are made with, when it holds
/// any (a database without subject keys takes any key).
pub async fn master_fingerprint(store: &MetaStore) -> Result<Option<String>, StoreError> {
    let mut conn = store.readers().acquire().await?;
    bound_fingerprint(&mut conn).await
}

async fn bound_fingerprint(conn: &mut AnyConnection) -> Result<Option<String>, StoreError> {
    let keys = sqlx::query("SELECT subject_hash FROM privacy_subject_keys LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    if keys.is_none() {
        return Ok(None);
    }
    let row = sqlx::query("SELECT fingerprint FROM privacy_master WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(|r| text(r, "fingerprint")).transpose()
}

/// Records `master` as this database's key, and refuses another one once subject keys exist:
/// a server started with the wrong key file would hash every subject anew, so exports would
/// find nothing and erasures would destroy nothing. (Without subject keys any key is taken:
/// nothing was sealed with the old one.)
pub async fn adopt_master(store: &MetaStore, master: &MasterKey) -> Result<(), StoreError> {
    let given = master.fingerprint();
    store
        .transaction("system:privacy", async move |tx, _audit| {
            if bound_fingerprint(tx).await?.is_none() {
                sqlx::query("DELETE FROM privacy_master WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
            }
            bind_master(tx, &given).await
        })
        .await
}

/// An erasure as the audit trail records it: the erasure row, under the subject's hash.
pub(crate) struct ErasureRef(pub String);

fn erasure_from_row(row: &AnyRow) -> Result<Erasure, StoreError> {
    Ok(Erasure {
        subject_hash: text(row, "subject_hash")?,
        reason: text(row, "reason")?,
        erased_time: int(row, "erased_time")?,
        keys_destroyed: int(row, "keys_destroyed")?,
    })
}

async fn find_erasure(conn: &mut AnyConnection, hash: &str) -> Result<Option<Erasure>, StoreError> {
    sqlx::query("SELECT * FROM privacy_erasures WHERE subject_hash = $1")
        .bind(hash.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(erasure_from_row)
        .transpose()
}

impl Audited for ErasureRef {
    const KIND: &'static str = "subject";
    const LIST_IDS: &'static str = "SELECT subject_hash AS id FROM privacy_erasures";

    text_key!(ErasureRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(find_erasure(conn, &self.0)
            .await?
            .map(|e| serde_json::json!(e)))
    }
}

/// Destroys the subject's data key (every value sealed with it becomes unreadable) and records
/// who erased it, when and why, under the subject's hash (the raw id is stored nowhere; it is
/// also what an erasure listed in the trail is repeated with, after restoring a database backup
/// taken before it). Erasing again (after new predictions made a new key) destroys that key too
/// and records the new reason.
pub async fn erase(
    store: &MetaStore,
    actor: &str,
    subject: SubjectHash,
    reason: &str,
) -> Result<Erasure, StoreError> {
    if reason.trim().is_empty() || reason.chars().count() > 1000 {
        return Err(Invalid::ErasureReason.into());
    }
    let hash = subject.to_hex();
    let reason = reason.to_string();
    store
        .audited(
            actor,
            "subject.erase",
            ErasureRef(hash.clone()),
            async move |tx| {
                let destroyed = sqlx::query("DELETE FROM privacy_subject_keys WHERE subject_hash = $1")
                    .bind(hash.clone())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let destroyed = i64::try_from(destroyed).unwrap_or(i64::MAX);
                sqlx::query("DELETE FROM privacy_erasures WHERE subject_hash = $1")
                    .bind(hash.clone())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO privacy_erasures (subject_hash, reason, erased_time, keys_destroyed) VALUES ($1, $2, $3, $4)")
                    .bind(hash.clone())
                    .bind(reason)
                    .bind(now_millis())
                    .bind(destroyed)
                    .execute(&mut *tx)
                    .await?;
                find_erasure(tx, &hash)
                    .await?
                    .ok_or_else(|| Conflict::SubjectKey(hash.clone()).into())
            },
        )
        .await
}

/// Every erasure, oldest first.
pub async fn erasures(store: &MetaStore) -> Result<Vec<Erasure>, StoreError> {
    let rows = sqlx::query("SELECT * FROM privacy_erasures ORDER BY erased_time, subject_hash")
        .fetch_all(store.readers())
        .await?;
    rows.iter().map(erasure_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetaStore, StoreConfig};

    async fn store() -> (MetaStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite:///{}", dir.path().join("m.db").display());
        (MetaStore::open(&StoreConfig::new(uri)).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn a_subject_keeps_one_key_until_erased() {
        let (store, _dir) = store().await;
        let master = MasterKey::from_text(&"11".repeat(32)).unwrap();
        let subjects = vec!["C-1".to_string(), "C-2".to_string(), "C-1".to_string()];
        let first = subject_keys(&store, &master, &subjects).await.unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].subject, first[2].subject);
        assert_eq!(first[0].key.to_base64(), first[2].key.to_base64());
        assert_ne!(first[0].key.to_base64(), first[1].key.to_base64());
        let again = subject_keys(&store, &master, &subjects[..1]).await.unwrap();
        assert_eq!(again[0].key.to_base64(), first[0].key.to_base64());
        let by_hash = keys_by_hash(&store, &master, &[first[1].subject])
            .await
            .unwrap();
        assert_eq!(
            by_hash[0].as_ref().unwrap().to_base64(),
            first[1].key.to_base64()
        );

        assert!(erase(&store, "user:dpo", master.subject_hash("C-1"), " ")
            .await
            .is_err());
        let erased = erase(&store, "user:dpo", master.subject_hash("C-1"), "ticket 42")
            .await
            .unwrap();
        assert_eq!(erased.keys_destroyed, 1);
        assert_eq!(erased.subject_hash, first[0].subject.to_hex());
        assert!(keys_by_hash(&store, &master, &[first[0].subject])
            .await
            .unwrap()[0]
            .is_none());
        // Nothing about the subject is stored in the clear, the trail included.
        let events = crate::audit::list_events(&store, Some("subject"), None, 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.actor, "user:dpo");
        assert_eq!(events[0].event.entity_id, erased.subject_hash);
        // A new prediction about them later gets a new key: old values stay unreadable.
        let fresh = subject_keys(&store, &master, &subjects[..1]).await.unwrap();
        assert_ne!(fresh[0].key.to_base64(), first[0].key.to_base64());
        let report = crate::audit::verify(&store).await.unwrap();
        assert!(report.broken.is_none(), "{report:?}");
        // A key file that is not the one the keys were made with is named as the cause.
        let other = MasterKey::from_text(&"22".repeat(32)).unwrap();
        let wrong = keys_by_hash(&store, &other, &[first[1].subject]).await;
        assert!(
            matches!(
                wrong,
                Err(StoreError::InvalidState(Conflict::SubjectKey(_)))
            ),
            "{wrong:?}"
        );
        assert_eq!(erasures(&store).await.unwrap().len(), 1);
        // The same erasure again by its hash (as after restoring an older backup).
        let again = erase(&store, "user:dpo", first[0].subject, "restored backup")
            .await
            .unwrap();
        assert_eq!(
            again.keys_destroyed, 1,
            "the key made after the first erasure"
        );
        // The database takes one master key.
        adopt_master(&store, &master).await.unwrap();
        adopt_master(&store, &master).await.unwrap();
        assert!(matches!(
            adopt_master(&store, &other).await,
            Err(StoreError::InvalidState(Conflict::MasterKey { .. }))
        ));
        assert_eq!(
            master_fingerprint(&store).await.unwrap(),
            Some(master.fingerprint())
        );
    }
}
