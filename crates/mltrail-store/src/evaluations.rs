//! Model version evaluations in the audit trail: one event per evaluation (`mltrail evaluate`),
//! on entity `evaluation:NAME/VERSION`, whose digest is that of the evaluation's canonical JSON.
//! The JSON itself is kept in the artifact store under that digest, so the event pins it.

use crate::{MetaStore, StoreError};

/// The entity type of evaluation events; their id is `NAME/VERSION`.
pub const EVALUATION_KIND: &str = "evaluation";
/// The action of an evaluation event.
pub const EVALUATE_ACTION: &str = "model_version.evaluate";

/// Where an evaluation's JSON is kept: `evaluations/<name>/<version>/<digest>.json`.
pub fn artifact_path(name: &str, version: i64, digest: &str) -> String {
    format!("evaluations/{name}/{version}/{digest}.json")
}

/// Records an evaluation of `name`/`version` whose canonical JSON digests to `digest`.
pub async fn record(
    store: &MetaStore,
    actor: &str,
    name: &str,
    version: i64,
    digest: String,
) -> Result<(), StoreError> {
    let id = format!("{name}/{version}");
    store
        .transaction(actor, async move |tx, audit| {
            audit
                .record_external(tx, EVALUATE_ACTION, EVALUATION_KIND, &id, Some(digest))
                .await
        })
        .await
}

/// The newest evaluation event of `name`/`version`.
pub async fn latest(
    store: &MetaStore,
    name: &str,
    version: i64,
) -> Result<Option<crate::audit::LoggedEvent>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM audit_log WHERE entity_type = $1 AND entity_id = $2 ORDER BY seq DESC LIMIT 1",
    )
    .bind(EVALUATION_KIND)
    .bind(format!("{name}/{version}"))
    .fetch_optional(store.readers())
    .await?;
    row.as_ref().map(crate::audited::logged_event).transpose()
}
