//! The served model version's predictions on a monitor's reference, for prediction drift and
//! for the reference's own quality: the version is loaded through mltrail-serving's
//! [`ModelSource`] (the same files, signature and kernels `mltrail serve` uses) and the reference
//! columns go straight into its input tensors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mltrail_explain::evaluation::{label_value, score_table, ScoreTableError};
use mltrail_serving::deployment::{load, LoadedModel, ModelRef, ModelSource, StoreSource};

use super::cache::Lru;
use super::reference::Reference;
use super::MonitorError;
use crate::compare::{prepare, CompareOptions, PreparedReference};
use crate::performance::{self, Labelled, Outcome};
use crate::window::{prediction_table, OutputNames};

/// Reference rows scored for prediction drift (the first rows of a bigger reference).
pub const MAX_SCORED_REFERENCE_ROWS: usize = 100_000;

/// A model version as a monitor needs it: how to read its outputs, and what it predicts on the
/// reference (with its quality there when the reference has a target).
pub(crate) struct ScoredReference {
    pub names: OutputNames,
    /// The model's predictions on the reference, prepared for comparison.
    pub predictions: Arc<PreparedReference>,
    pub performance: Option<BTreeMap<String, f64>>,
}

/// (model, version, reference dataset version).
type ScoredKey = (String, String, String);

/// Scored references, kept per (model version, reference); `None` when the model cannot score
/// the reference (the reason is logged once).
pub(crate) struct Scorer {
    models: StoreSource,
    scored: Mutex<Lru<ScoredKey, Option<Arc<ScoredReference>>>>,
}

impl Scorer {
    /// Keeps the `capacity` most recently used scored references.
    pub fn new(models: StoreSource, capacity: usize) -> Self {
        Scorer {
            models,
            scored: Mutex::new(Lru::new(capacity)),
        }
    }

    /// The served model version's predictions on the reference, computed once per pair. A
    /// model that cannot be loaded or scored leaves prediction drift and performance out.
    pub async fn scored(
        &self,
        model: &str,
        version: &str,
        reference: &Arc<Reference>,
    ) -> Option<Arc<ScoredReference>> {
        let key = (
            model.to_string(),
            version.to_string(),
            reference.label.clone(),
        );
        if let Some(hit) = self.scored.lock().ok().and_then(|mut m| m.get(&key)) {
            return hit;
        }
        let scored = match self.score(model, version, reference.clone()).await {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(model, version, reference = %reference.label, error = %e, "prediction drift and performance are off for this model version");
                None
            }
        };
        let dropped = self
            .scored
            .lock()
            .map(|mut m| m.insert(key, scored.clone()))
            .unwrap_or_default();
        drop(dropped); // freed outside the lock
        scored
    }

    async fn score(
        &self,
        model: &str,
        version: &str,
        reference: Arc<Reference>,
    ) -> Result<ScoredReference, MonitorError> {
        let number = mltrail_store::registry::parse_version(version)?;
        let named = ModelRef::Version {
            name: model.to_string(),
            version: number,
        };
        let served = self.models.version(&named).await?;
        let loaded = load(&self.models, &served).await?;
        tokio::task::spawn_blocking(move || score(&loaded, &reference)).await?
    }
}

/// Runs the model on the reference rows (the serving path's tensors and kernels).
fn score(loaded: &LoadedModel, reference: &Reference) -> Result<ScoredReference, MonitorError> {
    let names =
        OutputNames::from_model_outputs(&loaded.output_names).ok_or(MonitorError::NoOutputs)?;
    let outputs_per_row = score_table(loaded, &reference.table, MAX_SCORED_REFERENCE_ROWS)
        .map_err(|e| match e {
            ScoreTableError::MissingColumn(c) => MonitorError::MissingColumn(c),
            ScoreTableError::Input(e) => MonitorError::ScoringInput(e),
            ScoreTableError::Run(e) => MonitorError::ScoringRun(e),
        })?;
    let predictions = prepare(
        prediction_table(outputs_per_row.iter().map(|o| names.prediction(o))),
        &CompareOptions::default(),
    )?;
    let performance = reference
        .target
        .as_ref()
        .and_then(|t| reference.table.column(t))
        .map(|target| {
            let labelled: Vec<Labelled> = outputs_per_row
                .iter()
                .enumerate()
                .filter_map(|(r, o)| {
                    Some(Labelled {
                        predicted: Outcome::from_json(&names.prediction(o)?)?,
                        score: names.score(o),
                        actual: Outcome::from_json(&label_value(&target.values, r))?,
                    })
                })
                .collect();
            performance::metrics(&labelled)
        });
    Ok(ScoredReference {
        names,
        predictions: Arc::new(predictions),
        performance,
    })
}
