/// What can go wrong in the metadata store. The server maps each variant to one MLflow error
/// code and HTTP status; the CLI maps them to exit codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("the store is shutting down")]
    Closed,
    /// Writing or deleting artifact bytes failed (`artifacts`).
    #[error("{0}")]
    Artifacts(std::sync::Arc<mltrail_artifacts::ArtifactError>),
}

impl From<mltrail_artifacts::ArtifactError> for StoreError {
    fn from(err: mltrail_artifacts::ArtifactError) -> Self {
        StoreError::Artifacts(std::sync::Arc::new(err))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(err.to_string())
    }
}

impl From<mltrail_core::filter::FilterError> for StoreError {
    fn from(err: mltrail_core::filter::FilterError) -> Self {
        StoreError::InvalidParameter(err.0)
    }
}
