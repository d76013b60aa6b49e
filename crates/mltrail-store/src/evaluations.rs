//! Assessments of model versions in the audit trail: evaluations (`mltrail evaluate`),
//! robustness reports (`mltrail robustness`) and model cards (`mltrail models card`). One event
//! per assessment, on entity `evaluation:NAME/VERSION`, `robustness:NAME/VERSION` or
//! `model_card:NAME/VERSION`, whose digest is that of the
//! assessment's canonical JSON. The JSON itself is kept in the artifact store under that
//! digest, so the event pins it.

use crate::{MetaStore, StoreError};

/// What was assessed about a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    Evaluation,
    Robustness,
    /// A model card built from the trail (`mltrail models card`).
    Card,
}

impl Assessment {
    /// The entity type of its events; their id is `NAME/VERSION`.
    pub fn kind(self) -> &'static str {
        match self {
            Assessment::Evaluation => EVALUATION_KIND,
            Assessment::Robustness => "robustness",
            Assessment::Card => "model_card",
        }
    }

    /// The action of its events.
    pub fn action(self) -> &'static str {
        match self {
            Assessment::Evaluation => EVALUATE_ACTION,
            Assessment::Robustness => "model_version.robustness",
            Assessment::Card => "model_version.card",
        }
    }

    /// Where its JSON is kept: `<folder>/<name>/<version>/<digest>.json`.
    pub fn artifact_path(self, name: &str, version: i64, digest: &str) -> String {
        let folder = match self {
            Assessment::Evaluation => "evaluations",
            Assessment::Robustness => "robustness",
            Assessment::Card => "cards",
        };
        format!("{folder}/{name}/{version}/{digest}.json")
    }
}

/// The entity type of evaluation events; their id is `NAME/VERSION`.
pub const EVALUATION_KIND: &str = "evaluation";
/// The action of an evaluation event.
pub const EVALUATE_ACTION: &str = "model_version.evaluate";

/// Records an assessment of `name`/`version` whose canonical JSON digests to `digest`.
pub async fn record_assessment(
    store: &MetaStore,
    actor: &str,
    what: Assessment,
    name: &str,
    version: i64,
    digest: String,
) -> Result<(), StoreError> {
    let id = format!("{name}/{version}");
    store
        .transaction(actor, async move |tx, audit| {
            audit
                .record_external(tx, what.action(), what.kind(), &id, Some(digest))
                .await
        })
        .await
}

/// The newest assessment event of `name`/`version` recorded at or after `since` (the
/// version's creation: an older event was about an earlier version with that number, since
/// deleted).
pub async fn latest_assessment(
    store: &MetaStore,
    what: Assessment,
    name: &str,
    version: i64,
    since: i64,
) -> Result<Option<crate::audit::LoggedEvent>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM audit_log WHERE entity_type = $1 AND entity_id = $2 AND time >= $3 ORDER BY seq DESC LIMIT 1",
    )
    .bind(what.kind())
    .bind(format!("{name}/{version}"))
    .bind(since)
    .fetch_optional(store.readers())
    .await?;
    row.as_ref().map(crate::audited::logged_event).transpose()
}
