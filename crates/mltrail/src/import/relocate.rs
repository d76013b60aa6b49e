//! Where an imported entity's artifacts go. MLflow records a location per experiment, run,
//! logged model and model version source: `mlflow-artifacts:/1/…` behind a server's artifact
//! proxy, or a path (`/data/mlruns/1/…`, `file:///…`, `s3://bucket/mlflow/1/…`) when clients
//! wrote to storage themselves. mltrail serves every artifact through its proxy, so a location
//! under the source's artifacts root becomes `mlflow-artifacts:/<the part under the root>` and
//! its files are copied to that path of mltrail's artifact store. A location outside the root
//! is kept as it was and its files are not copied (the import says how many).

use std::path::{Path, PathBuf};

const PROXY: &str = "mlflow-artifacts:";

/// The source's artifacts root as given (`--artifacts-root`).
#[derive(Debug, Clone)]
pub enum Root {
    /// A local folder, absolute (and, where it exists, canonical).
    Local(PathBuf),
    /// `s3://bucket[/prefix]`, without a trailing slash.
    S3(String),
}

impl Root {
    pub fn parse(root: &str) -> Root {
        if root.starts_with("s3://") {
            return Root::S3(root.trim_end_matches('/').to_string());
        }
        let path = Path::new(root.strip_prefix("file://").unwrap_or(root));
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Root::Local(std::fs::canonicalize(&absolute).unwrap_or(absolute))
    }

    /// The form `ArtifactStore::open` takes.
    pub fn uri(&self) -> String {
        match self {
            Root::Local(path) => path.display().to_string(),
            Root::S3(uri) => uri.clone(),
        }
    }
}

/// Maps source locations to mltrail's.
#[derive(Debug, Clone)]
pub struct Relocation {
    root: Option<Root>,
}

impl Relocation {
    pub fn new(root: Option<Root>) -> Self {
        Relocation { root }
    }

    pub fn root(&self) -> Option<&Root> {
        self.root.as_ref()
    }

    /// The path under the artifacts root that `location` names ("" for the root itself), or
    /// `None` when it is outside the root (or names no artifact location, as `runs:/…`).
    pub fn path_of(&self, location: &str) -> Option<String> {
        if let Some(rest) = location.strip_prefix(PROXY) {
            // `mlflow-artifacts:/1/x`, or with an authority: `mlflow-artifacts://host:5000/1/x`.
            let rest = match rest.strip_prefix("//") {
                Some(authority_and_path) => authority_and_path
                    .split_once('/')
                    .map_or("", |(_, path)| path),
                None => rest,
            };
            return Some(rest.trim_matches('/').to_string());
        }
        match self.root.as_ref()? {
            Root::S3(root) => {
                let rest = location.strip_prefix(root.as_str())?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| rest.trim_matches('/').to_string())
            }
            Root::Local(root) => {
                // MLflow writes `file:` URIs with `Path.as_uri()`: a space is `%20` there.
                let decoded;
                let path = match location.strip_prefix("file://") {
                    Some(encoded) => {
                        decoded = percent_encoding::percent_decode_str(encoded)
                            .decode_utf8_lossy()
                            .into_owned();
                        decoded.as_str()
                    }
                    None => location,
                };
                if !path.starts_with('/') {
                    return None;
                }
                let path = Path::new(path);
                let under = path
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .ok()
                    .or_else(|| {
                        // The location may spell the root through a link the canonical root resolved.
                        let canonical = std::fs::canonicalize(path).ok()?;
                        canonical.strip_prefix(root).ok().map(Path::to_path_buf)
                    });
                under.map(|p| p.to_string_lossy().trim_matches('/').to_string())
            }
        }
    }

    /// Rewrites `location` as mltrail records it, through the proxy, when it is under the
    /// root, and gives the path under the root; `None` (and `location` as it was) otherwise.
    pub fn relocate(&self, location: &mut String) -> Option<String> {
        let path = self.path_of(location)?;
        *location = format!("{PROXY}/{path}");
        Some(path)
    }
}

/// Whether a model version's source names an entity (`runs:/…`, `models:/…`), which stays as
/// it is, rather than a location.
pub fn names_an_entity(source: &str) -> bool {
    source.starts_with("runs:/") || source.starts_with("models:/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `location` as the import records it.
    fn moved(r: &Relocation, location: &str) -> String {
        let mut location = location.to_string();
        r.relocate(&mut location);
        location
    }

    #[test]
    fn proxied_locations_keep_their_path() {
        let r = Relocation::new(None);
        assert_eq!(
            r.path_of("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            r.path_of("mlflow-artifacts://host:5000/2/x").as_deref(),
            Some("2/x")
        );
        assert_eq!(moved(&r, "mlflow-artifacts:/3"), "mlflow-artifacts:/3");
        assert_eq!(r.path_of("/data/mlruns/1"), None);
        assert!(names_an_entity("runs:/abc/model") && !names_an_entity("/data/mlruns/1"));
    }

    #[test]
    fn local_and_s3_locations_move_under_the_proxy() {
        let r = Relocation::new(Some(Root::Local(PathBuf::from("/data/mlruns"))));
        assert_eq!(
            moved(&r, "/data/mlruns/1/r/artifacts"),
            "mlflow-artifacts:/1/r/artifacts"
        );
        assert_eq!(moved(&r, "file:///data/mlruns/0"), "mlflow-artifacts:/0");
        let spaced = Relocation::new(Some(Root::Local(PathBuf::from("/data/My Runs"))));
        assert_eq!(
            moved(&spaced, "file:///data/My%20Runs/2/r"),
            "mlflow-artifacts:/2/r"
        );
        // A sibling folder sharing the prefix is not under the root.
        assert_eq!(moved(&r, "/data/mlruns2/1"), "/data/mlruns2/1");
        assert_eq!(moved(&r, "s3://elsewhere/1"), "s3://elsewhere/1");
        let s3 = Relocation::new(Some(Root::parse("s3://bucket/mlflow/")));
        assert_eq!(
            moved(&s3, "s3://bucket/mlflow/4/r/artifacts"),
            "mlflow-artifacts:/4/r/artifacts"
        );
        assert_eq!(moved(&s3, "s3://bucket/mlflowx/4"), "s3://bucket/mlflowx/4");
        assert!(names_an_entity("models:/m-1"));
    }
}
