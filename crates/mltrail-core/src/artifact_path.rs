//! Artifact paths are parsed once, at the edge, into [`ArtifactPath`]; nothing below the parser
//! ever sees a raw string. MLflow's artifact CVEs (CVE-2023-1177, -2356, -2780, -6730, -6831,
//! CVE-2024-1560) all came from validating a path in one place and decoding it again in another,
//! so the parser refuses anything that would change meaning under a further decode.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("artifact path {0:?} is absolute; paths are relative to the artifact store")]
    Absolute(String),
    #[error("artifact path {0:?} contains a '..' or '.' segment")]
    Traversal(String),
    #[error("artifact path {0:?} contains a backslash")]
    Backslash(String),
    #[error("artifact path {0:?} contains a percent-encoded sequence; send it decoded")]
    Encoded(String),
    #[error("artifact path {0:?} contains a control character")]
    Control(String),
    #[error("artifact path {0:?} names a drive or URI scheme")]
    Scheme(String),
    #[error("model version source {0:?} is outside the artifact store (allowed: mlflow-artifacts:/, runs:/, models:/, or a path under the store's own URI)")]
    SourceOutsideStore(String),
}

/// A relative, normalised path inside an artifact store: '/'-separated, no empty, '.' or '..'
/// segments. The empty path is the store root (used for listing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let err = |f: fn(String) -> PathError| Err(f(raw.to_string()));
        if raw.chars().any(|c| c.is_control()) {
            return err(PathError::Control);
        }
        if raw.contains('\\') {
            return err(PathError::Backslash);
        }
        if contains_percent_escape(raw) {
            return err(PathError::Encoded);
        }
        if raw.starts_with('/') || raw.starts_with('~') {
            return err(PathError::Absolute);
        }
        let mut segments = Vec::new();
        for segment in raw.split('/') {
            match segment {
                "" => continue,
                "." | ".." => return err(PathError::Traversal),
                s if s.contains(':') && segments.is_empty() => return err(PathError::Scheme),
                s => segments.push(s),
            }
        }
        Ok(ArtifactPath(segments.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when `raw` holds `%XY` with two hex digits: the path was (at least) double-encoded,
/// or a client is trying to smuggle a separator past a decoder.
fn contains_percent_escape(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// The scheme the server hands out in artifact URIs (`mlflow-artifacts:/1/<run>/artifacts`).
pub const PROXY_SCHEME: &str = "mlflow-artifacts:";

/// Parses an `mlflow-artifacts:` URI (with or without host) into the confined path it names.
pub fn parse_proxy_uri(uri: &str) -> Option<Result<ArtifactPath, PathError>> {
    let rest = uri.strip_prefix(PROXY_SCHEME)?;
    // mlflow-artifacts://host:port/path and mlflow-artifacts:/path are both legal.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest.trim_start_matches('/'),
    };
    Some(ArtifactPath::parse(path))
}

/// Checks a model-version `source`: it must name something inside our artifact store, never a
/// local file or foreign URL (CVE-2026-2614 loaded `file:///etc/...` through a version's source).
/// `store_uri` is the artifact destination as configured (e.g. `s3://bucket/prefix`).
/// The place in the artifact store a model source names: an `mlflow-artifacts:` URI, or a
/// location under the store's own remote URI; `None` for `runs:/` and `models:/` sources (they
/// name a run or a model, not a place) and for what [`validate_model_source`] refuses.
pub fn source_artifact_path(source: &str, store_uri: &str) -> Option<ArtifactPath> {
    if let Some(parsed) = parse_proxy_uri(source) {
        return parsed.ok();
    }
    let store = store_uri.trim_end_matches('/');
    if !store.contains("://") || store.starts_with("file:") {
        return None;
    }
    match source.strip_prefix(store)? {
        "" => ArtifactPath::parse("").ok(),
        rest => ArtifactPath::parse(rest.strip_prefix('/')?).ok(),
    }
}

pub fn validate_model_source(source: &str, store_uri: &str) -> Result<(), PathError> {
    let outside = || Err(PathError::SourceOutsideStore(source.to_string()));
    if let Some(parsed) = parse_proxy_uri(source) {
        return parsed.map(|_| ());
    }
    for scheme in ["runs:/", "models:/"] {
        if let Some(rest) = source.strip_prefix(scheme) {
            return ArtifactPath::parse(rest.trim_start_matches('/')).map(|_| ());
        }
    }
    let store = store_uri.trim_end_matches('/');
    let is_remote_store = store.contains("://") && !store.starts_with("file:");
    if is_remote_store {
        if let Some(rest) = source.strip_prefix(store) {
            if rest.is_empty() {
                return Ok(());
            }
            if let Some(inner) = rest.strip_prefix('/') {
                return ArtifactPath::parse(inner).map(|_| ());
            }
        }
    }
    outside()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_plain_paths() {
        assert_eq!(
            ArtifactPath::parse("a//b/c.txt").unwrap().as_str(),
            "a/b/c.txt"
        );
        assert!(ArtifactPath::parse("").unwrap().is_root());
        assert_eq!(ArtifactPath::parse("dir/").unwrap().as_str(), "dir");
    }

    #[test]
    fn refuses_every_traversal_shape() {
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "/etc/passwd",
            "a\\..\\b",
            "..%2fetc",
            "%2e%2e/secret",
            "%252e%252e%252fsecret",
            "a/%2E%2E/b",
            "C:/windows",
            "file:/etc/passwd",
            "a/./b",
            "a\0b",
            "~/x",
        ] {
            assert!(ArtifactPath::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn model_sources_must_stay_in_the_store() {
        let store = "s3://bucket/prefix";
        assert!(validate_model_source("mlflow-artifacts:/2/models/m-1/artifacts", store).is_ok());
        assert!(validate_model_source("runs:/abc/model", store).is_ok());
        assert!(validate_model_source("models:/m-123", store).is_ok());
        assert!(validate_model_source("s3://bucket/prefix/1/x", store).is_ok());
        for bad in [
            "file:///etc/passwd",
            "/etc/passwd",
            "s3://other-bucket/x",
            "s3://bucket/prefix-evil/x",
            "mlflow-artifacts:/../../etc",
            "runs:/abc/../../../etc",
            "http://169.254.169.254/latest",
            "./mltrail-data/artifacts/1",
        ] {
            assert!(
                validate_model_source(bad, store).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(
            validate_model_source("./mltrail-data/artifacts/x", "./mltrail-data/artifacts")
                .is_err()
        );
    }
}
