//! A [`ModelSource`] over the metadata store and the artifact store, for code running inside
//! `mltrail server` (the monitors score their reference with the served model version).

use mltrail_artifacts::ArtifactStore;
use mltrail_core::artifact_path::{parse_proxy_uri, ArtifactPath};
use mltrail_store::{datasets, registry, MetaStore};

use super::source::{
    BoxFuture, Listed, ModelRef, ModelSource, SourceError, SourceVersion, StoredDataset,
};

#[derive(Clone)]
pub struct StoreSource {
    store: MetaStore,
    artifacts: ArtifactStore,
}

impl StoreSource {
    pub fn new(store: MetaStore, artifacts: ArtifactStore) -> Self {
        StoreSource { store, artifacts }
    }
}

fn path(raw: &str) -> Result<ArtifactPath, SourceError> {
    ArtifactPath::parse(raw).map_err(|e| SourceError::unavailable(format!("artifact {raw}"), e))
}

impl ModelSource for StoreSource {
    fn version<'a>(
        &'a self,
        model: &'a ModelRef,
    ) -> BoxFuture<'a, Result<SourceVersion, SourceError>> {
        Box::pin(async move {
            let found = match model {
                ModelRef::Alias { name, alias } => {
                    registry::get_version_by_alias(&self.store, name, alias).await
                }
                ModelRef::Version { name, version } => {
                    registry::get_model_version(&self.store, name, *version).await
                }
            }?;
            Ok(SourceVersion {
                name: found.name,
                version: found.version,
                source: found.source,
                tags: found.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            })
        })
    }

    fn root<'a>(
        &'a self,
        version: &'a SourceVersion,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move {
            let uri = registry::resolve_source(&self.store, &version.source).await?;
            let root = parse_proxy_uri(&uri)
                .ok_or_else(|| SourceError::OutsideStore {
                    version: version.to_string(),
                    uri: uri.clone(),
                })?
                .map_err(|e| SourceError::unavailable(format!("the files of {version}"), e))?;
            Ok(root.as_str().to_string())
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, SourceError>> {
        Box::pin(async move {
            let listing = self
                .artifacts
                .list(&path(dir)?)
                .await
                .map_err(|e| SourceError::unavailable(format!("list {dir}"), e))?;
            Ok(listing
                .into_iter()
                .map(|f| Listed {
                    name: f.path,
                    is_dir: f.is_dir,
                })
                .collect())
        })
    }

    fn dataset<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<StoredDataset, SourceError>> {
        Box::pin(async move {
            let found = match version.strip_suffix("@latest") {
                Some(name) => datasets::latest_version(&self.store, name).await,
                None => {
                    let wanted: datasets::VersionRef = version
                        .parse()
                        .map_err(|e| SourceError::unavailable(format!("dataset {version}"), e))?;
                    datasets::get_version(&self.store, &wanted).await
                }
            };
            let dv =
                found.map_err(|e| SourceError::unavailable(format!("dataset {version}"), e))?;
            if !dv.file.has_rows() {
                return Err(SourceError::unavailable(
                    format!("dataset {version}"),
                    "its rows are not stored (add them with `mltrail data add`)",
                ));
            }
            Ok(StoredDataset {
                path: dv.file.source,
                file_name: dv.file.file_name,
                version: dv.version,
            })
        })
    }

    fn read<'a>(&'a self, raw: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            self.artifacts
                .get(&path(raw)?)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| SourceError::unavailable(format!("read {raw}"), e))
        })
    }
}
