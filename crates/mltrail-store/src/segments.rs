//! Archived prediction-log segments in the audit trail: one event per archived file, its
//! digest that of the segment's summary (record count, id range and the Merkle root of its
//! records; mltrail-serving's `segment_tree` makes it). The summary's content lives in the
//! archive, so here it is events only, like deployments.

use crate::error::AlreadyExists;
use crate::{MetaStore, StoreError};

/// The entity type of archived-segment events; their id is the file's artifact path.
pub const SEGMENT_KIND: &str = "prediction_segment";
/// The action of an archived-segment event.
pub const ARCHIVE_ACTION: &str = "predictions.archive";

/// Records that the file at `artifact` was archived with the summary whose digest is `digest`.
/// Recording it again with the same digest (a serving process retrying after a lost answer)
/// adds nothing and returns `false`; with another digest it is refused.
pub async fn record_archived(
    store: &MetaStore,
    actor: &str,
    artifact: &str,
    digest: String,
) -> Result<bool, StoreError> {
    let artifact = artifact.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let before: Option<Option<String>> = sqlx::query_scalar(
                "SELECT state_digest FROM audit_log WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq LIMIT 1",
            )
            .bind(SEGMENT_KIND)
            .bind(artifact.clone())
            .fetch_optional(&mut *tx)
            .await?;
            match before {
                Some(Some(recorded)) if recorded == digest => Ok(false),
                Some(_) => Err(AlreadyExists::ArchivedSegment(artifact).into()),
                None => {
                    audit
                        .record_external(tx, ARCHIVE_ACTION, SEGMENT_KIND, &artifact, Some(digest))
                        .await?;
                    Ok(true)
                }
            }
        })
        .await
}

/// The event that recorded the file at `artifact`, if any.
pub async fn archived_event(
    store: &MetaStore,
    artifact: &str,
) -> Result<Option<crate::audit::LoggedEvent>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM audit_log WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq LIMIT 1",
    )
    .bind(SEGMENT_KIND)
    .bind(artifact)
    .fetch_optional(store.readers())
    .await?;
    row.as_ref().map(crate::audited::logged_event).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    #[tokio::test]
    async fn a_segment_is_recorded_once_and_never_with_another_digest() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite:///{}", dir.path().join("m.db").display());
        let store = MetaStore::open(&StoreConfig::new(uri)).await.unwrap();
        let path = "predictions/d/2026-12-04/r-000000000001.parquet";
        assert!(
            record_archived(&store, "token:serve", path, "aa".repeat(32))
                .await
                .unwrap()
        );
        assert!(
            !record_archived(&store, "token:serve", path, "aa".repeat(32))
                .await
                .unwrap()
        );
        let err = record_archived(&store, "token:serve", path, "bb".repeat(32))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::StoreErrorKind::AlreadyExists);
        let event = archived_event(&store, path).await.unwrap().unwrap();
        assert_eq!(event.event.action, ARCHIVE_ACTION);
        assert_eq!(event.event.actor, "token:serve");
        assert_eq!(event.event.state_digest, Some("aa".repeat(32)));
        let all = crate::audit::list_events(&store, Some(SEGMENT_KIND), None, 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        assert!(crate::audit::verify(&store).await.unwrap().broken.is_none());
    }
}
