//! The one place domain errors become HTTP: MLflow's `{"error_code", "message"}` body and status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mltrail_artifacts::ArtifactError;
use mltrail_core::PathError;
use mltrail_store::{StoreError, StoreErrorKind};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            message: message.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        ApiError::invalid(format!("Missing value for required parameter '{field}'."))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = serde_json::json!({"error_code": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let (status, code) = match err.kind() {
            StoreErrorKind::NotFound => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            StoreErrorKind::AlreadyExists => (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
            StoreErrorKind::InvalidParameter => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            StoreErrorKind::InvalidState => (StatusCode::BAD_REQUEST, "INVALID_STATE"),
            StoreErrorKind::Database => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
            StoreErrorKind::Closed => (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE"),
            // Artifact failures answer as the artifact store's own errors do.
            StoreErrorKind::Artifacts => {
                if let StoreError::Artifacts(e) = &err {
                    return artifact_error(e);
                }
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        };
        ApiError {
            status,
            code,
            message: err.to_string(),
        }
    }
}

impl From<ArtifactError> for ApiError {
    fn from(err: ArtifactError) -> Self {
        artifact_error(&err)
    }
}

fn artifact_error(err: &ArtifactError) -> ApiError {
    match err {
        ArtifactError::NotFound(path) => {
            ApiError::not_found(format!("Artifact {path} does not exist"))
        }
        other => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: other.to_string(),
        },
    }
}

impl From<mltrail_monitor::runner::MonitorError> for ApiError {
    fn from(err: mltrail_monitor::runner::MonitorError) -> Self {
        use mltrail_monitor::runner::MonitorError;
        match err {
            MonitorError::Store(e) => e.into(),
            MonitorError::Artifacts(message) => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "INTERNAL_ERROR",
                message,
            },
            other => ApiError::invalid(other.to_string()),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(err: PathError) -> Self {
        ApiError::invalid(err.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub async fn not_found_route(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "ENDPOINT_NOT_FOUND",
        message: format!("No endpoint at {}", uri.path()),
    }
}
