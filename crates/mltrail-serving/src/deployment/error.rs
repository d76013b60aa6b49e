//! What can go wrong serving a deployment, by kind: the caller's request, the model, the log,
//! or the archive. The HTTP edge maps each to a status in one place.

use crate::archive::ArchiveError;
use crate::deployment::BoxError;
use crate::predlog::LogError;
use crate::request::RequestError;
use crate::runtime::RuntimeError;

use super::metrics::FailureKind;

/// Why a scoring request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the model could not score this input: {0}")]
    Model(#[source] RuntimeError),
    /// The rows could not be logged; an unrecorded prediction is never returned.
    #[error("the prediction could not be recorded, so it is not returned: {0}")]
    Log(#[source] LogError),
    /// The rows hold personal data and their subjects' keys could not be had (or sealing
    /// failed): nothing is stored unsealed, so nothing is answered.
    #[error("the prediction could not be recorded sealed, so it is not returned: {0}")]
    Seal(#[source] BoxError),
    /// A ranking deployment's request whose items, or whose model's outputs, cannot be ranked.
    #[error(transparent)]
    Ranking(#[from] crate::ranking::RankingError),
}

impl ScoreError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ScoreError::Json(_) | ScoreError::Request(_) => FailureKind::bad_request,
            ScoreError::Model(_) => FailureKind::model,
            ScoreError::Log(_) | ScoreError::Seal(_) => FailureKind::log,
            ScoreError::Ranking(crate::ranking::RankingError::Score(_)) => FailureKind::model,
            ScoreError::Ranking(_) => FailureKind::bad_request,
        }
    }

    /// The request column at fault, when there is one.
    pub fn column(&self) -> Option<&str> {
        match self {
            ScoreError::Request(e) => e.column(),
            ScoreError::Ranking(e) => e.column(),
            _ => None,
        }
    }

    /// The request row at fault, when there is one.
    pub fn row(&self) -> Option<usize> {
        match self {
            ScoreError::Request(e) => e.row(),
            ScoreError::Ranking(e) => e.row(),
            _ => None,
        }
    }
}

/// Why a stored prediction could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The prediction is sealed and its subject's key could not be had.
    #[error(transparent)]
    Keys(#[from] crate::privacy::KeyError),
}

/// Why feedback was refused or not recorded.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("`prediction_id` (a string) is required")]
    MissingId,
    #[error("`{0}` is not a prediction id")]
    BadId(String),
    #[error("`reward` must be a number")]
    BadReward,
    #[error("`{field}` {why}")]
    BadItems { field: &'static str, why: String },
    #[error("feedback needs at least one of `label`, `reward`, `displayed`, `clicked`")]
    Empty,
    #[error("prediction {id} was not served by deployment `{deployment}`")]
    Unknown { id: uuid::Uuid, deployment: String },
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{0}")]
    Log(#[source] LogError),
    /// A reward the deployment's learning policy cannot take.
    #[error(transparent)]
    Reward(crate::routing::PolicyError),
}

impl FeedbackError {
    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            FeedbackError::MissingId | FeedbackError::BadId(_) | FeedbackError::Unknown { .. } => {
                Some("prediction_id")
            }
            FeedbackError::BadReward => Some("reward"),
            FeedbackError::BadItems { field, .. } => Some(field),
            FeedbackError::Reward(e) if e.field == "label" => Some("label"),
            FeedbackError::Reward(_) => Some("reward"),
            _ => None,
        }
    }
}

/// Why a prediction's explanation could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ExplanationError {
    #[error("explanations are off for this deployment (start `mltrail serve` with --explain on_request or always)")]
    Off,
    #[error(
        "prediction {id} was answered by {model} version {version} (digest {digest}), which \
         this deployment no longer serves and cannot load again (is the version, or its \
         file, gone from the registry?)"
    )]
    OtherModel {
        id: uuid::Uuid,
        model: String,
        version: String,
        digest: String,
    },
    /// The version's explainer could not be made (no training data, a model it cannot read).
    #[error("this model version cannot be explained: {0}")]
    Unavailable(String),
    /// The stored inputs are not numbers the model takes.
    #[error("the prediction's stored inputs cannot be explained: {0}")]
    Inputs(String),
    #[error("explaining the prediction failed: {0}")]
    Failed(#[source] BoxError),
    /// A counterfactual asked of features or ranges that do not fit this prediction.
    #[error("{message}")]
    Request {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("the explanation could not be kept: {0}")]
    Log(#[source] LogError),
}
