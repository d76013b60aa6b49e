//! What monitors compare with: dataset versions whose rows are stored, loaded once and kept
//! (each prepared once per set of column options), and `training` resolved to the dataset
//! version the served model version was trained on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mltrail_artifacts::ArtifactStore;
use mltrail_data::schema::DatasetSchema;
use mltrail_data::table::{self, Table};
use mltrail_serving::deployment::{ModelRef, ModelSource, StoreSource};
use mltrail_store::datasets::{self, VersionRef};
use mltrail_store::MetaStore;

use super::cache::Lru;
use super::config::ReferenceSpec;
use super::{MonitorError, ReferenceError};
use crate::compare::{prepare, CompareOptions, PreparedReference};

/// A dataset version loaded for comparison.
pub(crate) struct Reference {
    pub label: String,
    pub table: Table,
    pub target: Option<String>,
    pub schema: DatasetSchema,
    /// The table prepared (typed and sorted) once per set of column options.
    prepared: Mutex<HashMap<String, Arc<PreparedReference>>>,
}

impl Reference {
    /// The reference prepared for `options`, computed on first use.
    pub async fn prepared(
        self: &Arc<Self>,
        options: &CompareOptions,
    ) -> Result<Arc<PreparedReference>, MonitorError> {
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}",
            options.columns, options.exclude, options.categorical, options.numerical
        );
        if let Some(hit) = self.prepared.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(hit);
        }
        let (this, opts) = (self.clone(), options.clone());
        let prepared =
            tokio::task::spawn_blocking(move || prepare(this.table.clone(), &opts)).await??;
        let prepared = Arc::new(prepared);
        if let Ok(mut m) = self.prepared.lock() {
            m.insert(key, prepared.clone());
        }
        Ok(prepared)
    }
}

/// The loaded references, by dataset version: the most recently used few (`capacity`), so a
/// server whose monitors have seen many references does not keep them all.
pub(crate) struct References {
    store: MetaStore,
    artifacts: ArtifactStore,
    models: StoreSource,
    loaded: Mutex<Lru<VersionRef, Arc<Reference>>>,
}

impl References {
    pub fn new(
        store: MetaStore,
        artifacts: ArtifactStore,
        models: StoreSource,
        capacity: usize,
    ) -> Self {
        References {
            store,
            artifacts,
            models,
            loaded: Mutex::new(Lru::new(capacity)),
        }
    }

    /// How many references are loaded now.
    pub fn loaded(&self) -> usize {
        self.loaded.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The dataset version a window is compared with: `training` becomes the one the served
    /// model version was trained on.
    pub async fn resolve(
        &self,
        spec: &ReferenceSpec,
        model: &str,
        version: &str,
    ) -> Result<VersionRef, MonitorError> {
        if let ReferenceSpec::Dataset(v) = spec {
            return Ok(v.clone());
        }
        let number = mltrail_store::registry::parse_version(version)?;
        let named = ModelRef::Version {
            name: model.to_string(),
            version: number,
        };
        let served = self.models.version(&named).await?;
        let training = served
            .training_data()
            .ok_or_else(|| ReferenceError::NoTrainingData {
                model: model.to_string(),
                version: version.to_string(),
            })?;
        training
            .parse()
            .map_err(|why| ReferenceError::BadTrainingData {
                value: training.to_string(),
                why,
            })
            .map_err(MonitorError::from)
    }

    /// Checks that a monitor's reference can be compared with, as far as can be known now: a
    /// dataset version must exist with its rows stored; `training` is checked against the model
    /// version the deployment serves, when it serves one already.
    pub async fn check(
        &self,
        spec: &ReferenceSpec,
        served: Option<(&str, &str)>,
    ) -> Result<(), MonitorError> {
        let version = match (spec, served) {
            (ReferenceSpec::Dataset(v), _) => v.clone(),
            (ReferenceSpec::Training, Some((model, version))) => {
                self.resolve(spec, model, version).await?
            }
            (ReferenceSpec::Training, None) => return Ok(()),
        };
        self.stored_rows(&version).await.map(|_| ())
    }

    /// A dataset version whose rows are stored (versions logged by `mlflow.log_input` have none).
    async fn stored_rows(
        &self,
        version: &VersionRef,
    ) -> Result<datasets::DatasetVersion, MonitorError> {
        let dv = datasets::get_version(&self.store, version).await?;
        if !dv.file.has_rows() {
            return Err(ReferenceError::NotStored {
                version: version.to_string(),
            }
            .into());
        }
        Ok(dv)
    }

    /// The reference of a dataset version, loaded on first use.
    pub async fn get(&self, version: &VersionRef) -> Result<Arc<Reference>, MonitorError> {
        if let Some(r) = self.loaded.lock().ok().and_then(|mut m| m.get(version)) {
            return Ok(r);
        }
        let dv = self.stored_rows(version).await?;
        let path = dv.file_path()?;
        let bytes = self.artifacts.get(&path).await?;
        let file_name = dv.file.file_name.clone();
        let table = tokio::task::spawn_blocking(move || -> Result<Table, MonitorError> {
            Ok(table::read_bytes(&file_name, &bytes)?)
        })
        .await??;
        let reference = Arc::new(Reference {
            label: version.to_string(),
            table,
            target: dv.file.target.clone(),
            schema: DatasetSchema::from_json(&dv.file.schema),
            prepared: Mutex::new(HashMap::new()),
        });
        let dropped = self
            .loaded
            .lock()
            .map(|mut m| m.insert(version.clone(), reference.clone()))
            .unwrap_or_default();
        drop(dropped); // freed outside the lock
        Ok(reference)
    }
}
