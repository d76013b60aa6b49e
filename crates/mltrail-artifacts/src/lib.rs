//! mltrail-artifacts owns artifact bytes: a local folder (the default) or S3-compatible object
//! storage, both through the `object_store` crate. Every call takes an [`ArtifactPath`], which
//! was confined when it was parsed, so nothing here can be steered outside the store's root.
//! This crate knows nothing of HTTP or of the metadata store.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mltrail_core::ArtifactPath;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

/// Which bytes of a file a ranged read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteSpan {
    /// `start..end`, `end` exclusive and cut at the file's size.
    From { start: u64, end: u64 },
    /// The last this many bytes (all of a shorter file).
    Last(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact {0} does not exist")]
    NotFound(String),
    #[error("invalid artifact destination {uri:?}: {reason}")]
    InvalidDestination { uri: String, reason: String },
    #[error("artifact storage error: {0}")]
    Storage(String),
    /// The object store could not be reached (connection refused, reset or timed out): the
    /// request may succeed later.
    #[error("artifact storage is unreachable: {0}")]
    Unreachable(String),
    /// A path this store cannot hold: a file where a directory is or beneath a file (local
    /// folders; object stores have no directories), or a name longer than the file system
    /// takes. The request is at fault, not the store.
    #[error("the artifact path cannot be stored here: {0}")]
    UnstorablePath(String),
    /// The destination's disk is full: the request may succeed once space returns.
    #[error("artifact storage is full: {0}")]
    Full(String),
    /// A byte range that starts at or past the file's end.
    #[error("the byte range starts at or past the end of the {size} byte file")]
    RangeNotSatisfiable { size: u64 },
}

impl From<object_store::Error> for ArtifactError {
    fn from(err: object_store::Error) -> Self {
        use std::io::ErrorKind;
        if let object_store::Error::NotFound { path, .. } = err {
            return ArtifactError::NotFound(path);
        }
        let kinds = io_kinds(&err);
        let message = err.to_string();
        let any = |wanted: &[ErrorKind]| kinds.iter().any(|k| wanted.contains(k));
        if any(&[
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::NotConnected,
            ErrorKind::TimedOut,
            ErrorKind::BrokenPipe,
        ]) {
            ArtifactError::Unreachable(message)
        } else if any(&[ErrorKind::StorageFull, ErrorKind::QuotaExceeded]) {
            ArtifactError::Full(message)
        } else if any(&[
            ErrorKind::IsADirectory,
            ErrorKind::NotADirectory,
            ErrorKind::InvalidFilename,
        ]) {
            // Reading a path no file can have (beneath a file, or too long a name): not there.
            ArtifactError::NotFound(message)
        } else {
            ArtifactError::Storage(message)
        }
    }
}

/// Writing `path` failed: a path the store cannot hold is the request's fault (400); anything
/// else is what reading would have said.
fn put_error(err: object_store::Error) -> ArtifactError {
    use std::io::ErrorKind;
    let unstorable = io_kinds(&err).iter().any(|k| {
        matches!(
            k,
            ErrorKind::IsADirectory
                | ErrorKind::NotADirectory
                | ErrorKind::AlreadyExists
                | ErrorKind::InvalidFilename
        )
    });
    if unstorable {
        ArtifactError::UnstorablePath(err.to_string())
    } else {
        err.into()
    }
}

/// The kinds of every I/O error down an error's chain of sources (object_store wraps its HTTP
/// client's and the file system's, sometimes inside other I/O errors).
fn io_kinds(err: &(dyn std::error::Error + 'static)) -> Vec<std::io::ErrorKind> {
    let mut kinds = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            kinds.push(io.kind());
        }
        current = e.source();
    }
    kinds
}

/// One entry of a directory listing, with its path relative to the listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: Option<u64>,
}

#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// Prefix inside the bucket (S3) under which everything lives.
    prefix: Option<StorePath>,
    uri: String,
}

impl ArtifactStore {
    /// Opens `./folder`, `/abs/folder`, `file:///abs/folder` or `s3://bucket[/prefix]`.
    /// S3 takes the usual AWS_* variables; `AWS_ENDPOINT_URL` (or `MLFLOW_S3_ENDPOINT_URL`)
    /// points it at any S3-compatible server.
    pub fn open(uri: &str) -> Result<Self, ArtifactError> {
        let invalid = |reason: String| ArtifactError::InvalidDestination {
            uri: uri.to_string(),
            reason,
        };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name".into()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("MLFLOW_S3_ENDPOINT_URL"))
                .ok();
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_endpoint(&endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| invalid(e.to_string()))?;
            let prefix = ArtifactPath::parse(prefix).map_err(|e| invalid(e.to_string()))?;
            let prefix = (!prefix.is_root()).then(|| StorePath::from(prefix.as_str()));
            return Ok(ArtifactStore {
                inner: Arc::new(store),
                prefix,
                uri: uri.trim_end_matches('/').to_string(),
            });
        }
        if uri.contains("://") && !uri.starts_with("file://") {
            return Err(invalid(
                "supported destinations are a local folder and s3://bucket/prefix".into(),
            ));
        }
        let folder = uri.strip_prefix("file://").unwrap_or(uri);
        std::fs::create_dir_all(folder).map_err(|e| invalid(e.to_string()))?;
        let root = std::fs::canonicalize(folder).map_err(|e| invalid(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| invalid(e.to_string()))?;
        Ok(ArtifactStore {
            inner: Arc::new(store.with_automatic_cleanup(true)),
            prefix: None,
            uri: uri.to_string(),
        })
    }

    /// The destination as configured; model-version sources may point under it.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn location(&self, path: &ArtifactPath) -> StorePath {
        match (&self.prefix, path.is_root()) {
            (None, _) => StorePath::from(path.as_str()),
            (Some(prefix), true) => prefix.clone(),
            (Some(prefix), false) => StorePath::from(format!("{prefix}/{path}")),
        }
    }

    pub async fn put(&self, path: &ArtifactPath, data: Bytes) -> Result<(), ArtifactError> {
        if path.is_root() {
            return Err(ArtifactError::Storage(
                "cannot write to the store root".into(),
            ));
        }
        self.inner
            .put(&self.location(path), PutPayload::from(data))
            .await
            .map_err(put_error)?;
        Ok(())
    }

    /// Writes a file from a stream of chunks, never holding it whole: parts of 8 MiB through the
    /// store's multipart upload (a local file is staged and renamed into place once complete,
    /// so a failed copy leaves no partial file). `each` sees every chunk, in order (a digest
    /// being computed). Returns the bytes written.
    pub async fn put_stream(
        &self,
        path: &ArtifactPath,
        mut chunks: BoxStream<'static, Result<Bytes, ArtifactError>>,
        mut each: impl FnMut(&[u8]) + Send,
    ) -> Result<u64, ArtifactError> {
        if path.is_root() {
            return Err(ArtifactError::Storage(
                "cannot write to the store root".into(),
            ));
        }
        const PART: usize = 8 << 20;
        let upload = self
            .inner
            .put_multipart(&self.location(path))
            .await
            .map_err(put_error)?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut written = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    writer.abort().await.ok();
                    return Err(e);
                }
            };
            each(&chunk);
            written += chunk.len() as u64;
            // At most two parts in flight: memory stays a few parts whatever the file's size.
            if let Err(e) = writer.wait_for_capacity(2).await {
                writer.abort().await.ok();
                return Err(put_error(e));
            }
            writer.put(chunk);
        }
        writer.finish().await.map_err(put_error)?;
        Ok(written)
    }

    pub async fn get(&self, path: &ArtifactPath) -> Result<Bytes, ArtifactError> {
        Ok(self.inner.get(&self.location(path)).await?.bytes().await?)
    }

    /// The bytes `range` of a file, and the file's size; a range past the end is cut at it
    /// (an empty range starting at or past the end is [`ArtifactError::RangeNotSatisfiable`]).
    pub async fn get_range(
        &self,
        path: &ArtifactPath,
        range: std::ops::Range<u64>,
    ) -> Result<(Bytes, u64), ArtifactError> {
        let location = self.location(path);
        let size = self.inner.head(&location).await?.size;
        let end = range.end.min(size);
        if range.start >= end {
            return Err(ArtifactError::RangeNotSatisfiable { size });
        }
        let bytes = self.inner.get_range(&location, range.start..end).await?;
        Ok((bytes, size))
    }

    /// Streams the bytes `span` names of a file: the exact range sent, the file's size, and the
    /// bytes, never held whole in memory. An empty span (past the end, or of an empty file) is
    /// [`ArtifactError::RangeNotSatisfiable`].
    pub async fn get_span_stream(
        &self,
        path: &ArtifactPath,
        span: ByteSpan,
    ) -> Result<
        (
            std::ops::Range<u64>,
            u64,
            BoxStream<'static, Result<Bytes, ArtifactError>>,
        ),
        ArtifactError,
    > {
        let location = self.location(path);
        let size = self.inner.head(&location).await?.size;
        let range = match span {
            ByteSpan::From { start, end } => start..end.min(size),
            ByteSpan::Last(len) => size.saturating_sub(len)..size,
        };
        if range.start >= range.end {
            return Err(ArtifactError::RangeNotSatisfiable { size });
        }
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let result = self.inner.get_opts(&location, options).await?;
        Ok((
            range,
            size,
            result.into_stream().map_err(ArtifactError::from).boxed(),
        ))
    }

    /// The last `len` bytes of a file (all of it when shorter) and the file's size: for formats
    /// whose index is at their end (Parquet's footer), without reading the rest.
    pub async fn get_tail(
        &self,
        path: &ArtifactPath,
        len: u64,
    ) -> Result<(Bytes, u64), ArtifactError> {
        let location = self.location(path);
        let size = self.inner.head(&location).await?.size;
        if size == 0 {
            return Ok((Bytes::new(), 0));
        }
        let tail = self
            .inner
            .get_range(&location, size.saturating_sub(len)..size)
            .await?;
        Ok((tail, size))
    }

    /// Streams a file's bytes, so large artifacts never sit whole in memory.
    pub async fn get_stream(
        &self,
        path: &ArtifactPath,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, ArtifactError>>), ArtifactError> {
        let result = self.inner.get(&self.location(path)).await?;
        let size = result.meta.size;
        Ok((
            size,
            result.into_stream().map_err(ArtifactError::from).boxed(),
        ))
    }

    /// Lists a directory's immediate children. A path naming a file lists nothing, as in MLflow.
    pub async fn list(&self, dir: &ArtifactPath) -> Result<Vec<FileInfo>, ArtifactError> {
        let location = self.location(dir);
        let listing = self.inner.list_with_delimiter(Some(&location)).await?;
        let base = location.as_ref().to_string();
        let relative = |p: &StorePath| -> String {
            let full = p.as_ref();
            full.strip_prefix(&base)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        };
        let mut out: Vec<FileInfo> = listing
            .common_prefixes
            .iter()
            .map(|p| FileInfo {
                path: relative(p),
                is_dir: true,
                file_size: None,
            })
            .chain(listing.objects.iter().map(|o| FileInfo {
                path: relative(&o.location),
                is_dir: false,
                file_size: Some(o.size),
            }))
            .filter(|f| !f.path.is_empty())
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Every file in the store with its size, in no particular order (for backups); a stored
    /// name that is not an artifact path is an error.
    pub async fn files(&self) -> Result<Vec<(ArtifactPath, u64)>, ArtifactError> {
        let (files, refused) = self.files_and_refused().await?;
        match refused.into_iter().next() {
            Some(reason) => Err(ArtifactError::Storage(reason)),
            None => Ok(files),
        }
    }

    /// Every file in the store with its size, and, apart, why each stored name that is not an
    /// artifact path was left out (an import copies what it can and says what it could not).
    pub async fn files_and_refused(
        &self,
    ) -> Result<(Vec<(ArtifactPath, u64)>, Vec<String>), ArtifactError> {
        let skip = self.prefix.as_ref().map_or(0, |p| p.parts().count());
        let metas: Vec<object_store::ObjectMeta> =
            self.inner.list(self.prefix.as_ref()).try_collect().await?;
        let mut files = Vec::with_capacity(metas.len());
        let mut refused = Vec::new();
        for meta in metas {
            // Listed names come back escaped as the store keeps them (`[` as `%5B`); the
            // artifact's own name is the unescaped one.
            let parts: Result<Vec<String>, _> = meta
                .location
                .parts()
                .skip(skip)
                .map(|part| {
                    percent_encoding::percent_decode_str(part.as_ref())
                        .decode_utf8()
                        .map(|name| name.into_owned())
                })
                .collect();
            let parsed = parts
                .map_err(|e| e.to_string())
                .and_then(|parts| ArtifactPath::parse(&parts.join("/")).map_err(|e| e.to_string()));
            match parsed {
                Ok(path) => files.push((path, meta.size)),
                Err(e) => refused.push(format!("stored name {}: {e}", meta.location)),
            }
        }
        Ok((files, refused))
    }

    /// Deletes a file, or every file under a directory.
    pub async fn delete(&self, path: &ArtifactPath) -> Result<(), ArtifactError> {
        let location = self.location(path);
        let files: Vec<StorePath> = self
            .inner
            .list(Some(&location))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        if files.is_empty() {
            return match self.inner.delete(&location).await {
                Ok(()) => Ok(()),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(ArtifactError::NotFound(path.to_string()))
                }
                Err(e) => Err(e.into()),
            };
        }
        for file in files {
            self.inner.delete(&file).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_out_of_reach_is_unreachable_not_a_storage_error() {
        let refused = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert!(matches!(
            ArtifactError::from(refused),
            ArtifactError::Unreachable(_)
        ));
        let denied = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert!(matches!(
            ArtifactError::from(denied),
            ArtifactError::Storage(_)
        ));
    }

    #[tokio::test]
    async fn a_streamed_file_of_several_parts_arrives_whole_and_a_failed_one_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        // 20 MiB in 1 MiB chunks: three 8 MiB parts, the last one short.
        let bytes: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<Result<Bytes, ArtifactError>> = bytes
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut seen = blake3::Hasher::new();
        let written = store
            .put_stream(
                &p("1/r/artifacts/big.bin"),
                futures::stream::iter(chunks).boxed(),
                |c| {
                    seen.update(c);
                },
            )
            .await
            .unwrap();
        assert_eq!(written, bytes.len() as u64);
        assert_eq!(seen.finalize(), blake3::hash(&bytes));
        assert_eq!(store.get(&p("1/r/artifacts/big.bin")).await.unwrap(), bytes);

        let failing: Vec<Result<Bytes, ArtifactError>> = vec![
            Ok(Bytes::from(vec![1u8; 9 << 20])),
            Err(ArtifactError::Storage("the source went away".into())),
        ];
        let failed = store
            .put_stream(
                &p("1/r/artifacts/cut.bin"),
                futures::stream::iter(failing).boxed(),
                |_| {},
            )
            .await;
        assert!(
            matches!(failed, Err(ArtifactError::Storage(_))),
            "{failed:?}"
        );
        assert!(matches!(
            store.get(&p("1/r/artifacts/cut.bin")).await,
            Err(ArtifactError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_file_where_a_directory_is_under_a_file_or_with_a_too_long_name_is_unstorable() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        store
            .put(&p("0/bc/x.txt"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        let onto_directory = store.put(&p("0/bc"), Bytes::from_static(b"y")).await;
        assert!(
            matches!(onto_directory, Err(ArtifactError::UnstorablePath(_))),
            "{onto_directory:?}"
        );
        let under_file = store
            .put(&p("0/bc/x.txt/z"), Bytes::from_static(b"z"))
            .await;
        assert!(
            matches!(under_file, Err(ArtifactError::UnstorablePath(_))),
            "{under_file:?}"
        );
        assert_eq!(
            store.get(&p("0/bc/x.txt")).await.unwrap(),
            Bytes::from_static(b"x")
        );
        // 100 `^` become 300 bytes once escaped for the file system: over its 255 per name.
        let long = p(&format!("0/{}", "^".repeat(100)));
        let too_long = store.put(&long, Bytes::from_static(b"z")).await;
        assert!(
            matches!(too_long, Err(ArtifactError::UnstorablePath(_))),
            "{too_long:?}"
        );
        // Reading such a path is "not there", not the client's fault.
        let read = store.get(&long).await;
        assert!(matches!(read, Err(ArtifactError::NotFound(_))), "{read:?}");
        let beneath = store.get(&p("0/bc/x.txt/z")).await;
        assert!(
            matches!(beneath, Err(ArtifactError::NotFound(_))),
            "{beneath:?}"
        );
    }

    fn p(s: &str) -> ArtifactPath {
        ArtifactPath::parse(s).unwrap()
    }

    #[tokio::test]
    async fn local_folder_round_trip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        store
            .put(&p("1/run/artifacts/a.txt"), Bytes::from_static(b"hello"))
            .await
            .unwrap();
        store
            .put(
                &p("1/run/artifacts/model/MLmodel"),
                Bytes::from_static(b"flavors: {}"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get(&p("1/run/artifacts/a.txt")).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        let listing = store.list(&p("1/run/artifacts")).await.unwrap();
        assert_eq!(
            listing,
            vec![
                FileInfo {
                    path: "a.txt".into(),
                    is_dir: false,
                    file_size: Some(5)
                },
                FileInfo {
                    path: "model".into(),
                    is_dir: true,
                    file_size: None
                },
            ]
        );
        assert!(store
            .list(&p("1/run/artifacts/a.txt"))
            .await
            .unwrap()
            .is_empty());
        store.delete(&p("1/run/artifacts/model")).await.unwrap();
        assert_eq!(store.list(&p("1/run/artifacts")).await.unwrap().len(), 1);
        assert!(matches!(
            store.get(&p("1/run/artifacts/missing")).await,
            Err(ArtifactError::NotFound(_))
        ));
        // Nothing was written outside the root.
        assert!(dir.path().join("1/run/artifacts/a.txt").exists());
    }
}
