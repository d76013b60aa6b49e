//! The monitors `mltrail server` runs: [`config`] (what a monitor is told), [`reference`] (the
//! dataset versions it compares with), [`scoring`] (the served model's predictions on them) and
//! [`engine`] (the loop over due windows, results, alerts).

mod cache;
mod config;
mod engine;
mod reference;
mod scoring;

pub use config::{
    window_start, BadReference, ConfigError, MonitorConfig, NewMonitor, RankingSettings,
    ReferenceSpec, SeasonalSettings, DEFAULT_ALERT, DEFAULT_DELAY_MS, DEFAULT_METRIC_ALERT,
    DEFAULT_RANKING_ALERT,
};
pub use engine::{AlertSink, Engine};
pub use mltrail_core::time::parse_duration_ms;
pub use scoring::MAX_SCORED_REFERENCE_ROWS;

use mltrail_artifacts::ArtifactError;
use mltrail_core::PathError;
use mltrail_serving::archive::ArchiveError;
use mltrail_serving::deployment::SourceError;
use mltrail_serving::request::RequestError;
use mltrail_serving::runtime::RuntimeError;
use mltrail_store::StoreError;

use crate::compare::CompareError;

/// Why a reference cannot be compared with.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Spec(#[from] BadReference),
    #[error("model version {model}/{version} records no training data; register it with --training-data NAME@VERSION or give the monitor a dataset version as reference")]
    NoTrainingData { model: String, version: String },
    #[error("{why}")]
    BadTrainingData { value: String, why: String },
    #[error("dataset version {version} was logged by mlflow.log_input, so its rows are not stored; add the file with `mltrail data add` and use that version (register the model with --training-data, or give it as the monitor's reference)")]
    NotStored { version: String },
    #[error("the window was not compared with a reference")]
    NotCompared,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("artifact store: {0}")]
    Artifacts(#[from] ArtifactError),
    #[error("artifact store: {0}")]
    Path(#[from] PathError),
    #[error("{file}: {source}")]
    Archive {
        file: String,
        #[source]
        source: ArchiveError,
    },
    /// The keys that open a window's sealed inputs could not be had.
    #[error(transparent)]
    Keys(#[from] mltrail_serving::privacy::KeyError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("monitor config: {0}")]
    Config(#[source] serde_json::Error),
    #[error(transparent)]
    Rule(#[from] ConfigError),
    #[error(transparent)]
    Table(#[from] mltrail_data::table::DataError),
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error(transparent)]
    Model(SourceError),
    #[error("scoring the reference: {0}")]
    ScoringInput(#[source] RequestError),
    #[error("scoring the reference: {0}")]
    ScoringRun(#[source] RuntimeError),
    #[error("the reference has no column `{0}`, which the model reads")]
    MissingColumn(String),
    #[error("the model has no outputs")]
    NoOutputs,
    #[error("no prediction names its model")]
    NoModel,
    #[error("reading the reference: {0}")]
    Io(#[from] std::io::Error),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<SourceError> for MonitorError {
    fn from(err: SourceError) -> Self {
        match err {
            // The store's own answer keeps its kind (404, 500, …).
            SourceError::Store(e) => MonitorError::Store(e),
            other => MonitorError::Model(other),
        }
    }
}

impl MonitorError {
    /// Whether the failure is the storage's (the request itself may be fine).
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            MonitorError::Artifacts(_)
                | MonitorError::Path(_)
                | MonitorError::Archive { .. }
                | MonitorError::Io(_)
                | MonitorError::Task(_)
                | MonitorError::Model(SourceError::Unavailable { .. })
        )
    }
}
