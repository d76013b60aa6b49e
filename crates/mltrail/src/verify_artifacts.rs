//! `audit verify` for artifact bytes. The metadata store cannot see inside the artifact store,
//! so the CLI, which can open both, re-hashes every artifact the trail says exists and checks
//! that every artifact the trail says was deleted is gone.

use anyhow::Result;
use mltrail_artifacts::{ArtifactError, ArtifactStore};
use mltrail_core::ArtifactPath;
use mltrail_store::audit::{list_events, BrokenLink, VerifyReport, ARTIFACT_KIND};
use mltrail_store::MetaStore;
use std::collections::HashMap;

struct ArtifactReport {
    pub checked: usize,
    pub broken: Option<BrokenLink>,
}

/// The whole check `audit verify` makes (and `mltrail backup` makes on its copy): the chain and
/// every entity's stored state, then, when those hold and an artifact store is given, every
/// artifact's bytes. Returns the report and how many artifacts were re-hashed.
pub async fn verify_store(
    store: &MetaStore,
    artifacts: Option<&ArtifactStore>,
) -> Result<(VerifyReport, Option<usize>)> {
    let mut report = mltrail_store::audit::verify(store).await?;
    let mut checked = None;
    if let (None, Some(artifacts)) = (&report.broken, artifacts) {
        let found = verify(store, artifacts).await?;
        checked = Some(found.checked);
        report.broken = found.broken;
    }
    Ok((report, checked))
}

async fn verify(store: &MetaStore, artifacts: &ArtifactStore) -> Result<ArtifactReport> {
    let mut latest: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for e in list_events(store, Some(ARTIFACT_KIND), None, i64::MAX).await? {
        latest.insert(e.event.entity_id, (e.event.seq, e.event.state_digest));
    }
    let mut ordered: Vec<_> = latest.into_iter().collect();
    ordered.sort_by_key(|(_, (seq, _))| *seq);
    let mut checked = 0;
    let bar = crate::progress::items(ordered.len() as u64, "re-hashing artifacts");
    for (path, (seq, recorded)) in ordered {
        bar.inc(1);
        let broken = |reason: String| BrokenLink {
            seq,
            entity_type: ARTIFACT_KIND.into(),
            entity_id: path.clone(),
            reason,
        };
        let parsed = ArtifactPath::parse(&path)?;
        let actual = match artifacts.get(&parsed).await {
            Ok(bytes) => Some(blake3::hash(&bytes).to_hex().to_string()),
            Err(ArtifactError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        checked += 1;
        let reason = match (&recorded, &actual) {
            (Some(r), Some(a)) if r == a => continue,
            (None, None) => continue,
            (Some(_), Some(_)) => "the artifact's bytes differ from the digest this event recorded: the file was modified",
            (Some(_), None) => "the artifact was removed from storage after this event recorded it",
            (None, Some(_)) => "the artifact exists although this event recorded its deletion",
        };
        bar.finish_and_clear();
        return Ok(ArtifactReport {
            checked,
            broken: Some(broken(reason.into())),
        });
    }
    bar.finish_and_clear();
    Ok(ArtifactReport {
        checked,
        broken: None,
    })
}
