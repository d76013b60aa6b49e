//! Artifact bytes and the audit events that record them, written together: a write puts the
//! bytes in the [`ArtifactStore`] and then records `artifact.put` with the BLAKE3 digest of
//! exactly those bytes; a delete removes them and records `artifact.delete`. The metadata
//! store cannot see inside the artifact store, so `audit verify` checks these events' links
//! only, and `mltrail audit verify --artifacts-destination` re-hashes the bytes.

use crate::{MetaStore, StoreError};
use bytes::Bytes;
use mltrail_artifacts::ArtifactStore;
use mltrail_core::ArtifactPath;

/// The entity type of artifact events; their id is the artifact's path.
pub const ARTIFACT_KIND: &str = "artifact";

/// Writes `bytes` at `path` and records the write with their digest.
pub async fn put(
    store: &MetaStore,
    artifacts: &ArtifactStore,
    actor: &str,
    path: &ArtifactPath,
    bytes: Bytes,
) -> Result<(), StoreError> {
    put_as(store, artifacts, actor, "artifact.put", path, bytes).await
}

/// [`put`] recorded as `action` (an import's `artifact.import from …`).
pub async fn put_as(
    store: &MetaStore,
    artifacts: &ArtifactStore,
    actor: &str,
    action: &str,
    path: &ArtifactPath,
    bytes: Bytes,
) -> Result<(), StoreError> {
    let digest = blake3::hash(&bytes).to_hex().to_string();
    artifacts.put(path, bytes).await?;
    record_put(store, actor, action, path, digest).await
}

/// The event of bytes written at `path`, with their digest.
async fn record_put(
    store: &MetaStore,
    actor: &str,
    action: &str,
    path: &ArtifactPath,
    digest: String,
) -> Result<(), StoreError> {
    let id = path.to_string();
    let action = action.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            audit
                .record_external(tx, &action, ARTIFACT_KIND, &id, Some(digest))
                .await
        })
        .await
}

/// Copies a file from a stream of its bytes to `path`, never holding it whole, and records the
/// write as `action` with the BLAKE3 digest of exactly the bytes written (an import's copy).
pub async fn put_stream_as(
    store: &MetaStore,
    artifacts: &ArtifactStore,
    actor: &str,
    action: &str,
    path: &ArtifactPath,
    chunks: futures::stream::BoxStream<'static, Result<Bytes, mltrail_artifacts::ArtifactError>>,
) -> Result<u64, StoreError> {
    let mut hasher = blake3::Hasher::new();
    let written = artifacts
        .put_stream(path, chunks, |chunk| {
            hasher.update(chunk);
        })
        .await?;
    let digest = hasher.finalize().to_hex().to_string();
    record_put(store, actor, action, path, digest).await?;
    Ok(written)
}

/// Deletes the file (or every file under the directory) at `path` and records the deletion.
pub async fn delete(
    store: &MetaStore,
    artifacts: &ArtifactStore,
    actor: &str,
    path: &ArtifactPath,
) -> Result<(), StoreError> {
    artifacts.delete(path).await?;
    let id = path.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            audit
                .record_external(tx, "artifact.delete", ARTIFACT_KIND, &id, None)
                .await
        })
        .await
}
