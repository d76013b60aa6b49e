//! The one place domain errors become HTTP: MLflow's `{"error_code", "message"}` body and status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mltrail_artifacts::ArtifactError;
use mltrail_core::PathError;
use mltrail_serving::deployment::{ExplanationError, FeedbackError, LookupError, ScoreError};
use mltrail_store::{StoreError, StoreErrorKind};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field or column at fault, when one is (scoring and feedback name it).
    pub column: Option<String>,
    /// The request row at fault, when one is.
    pub row: Option<usize>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            column: None,
            row: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }

    /// Subject keys that could not be had: the store's own error when that is the cause (a
    /// request over the size limit is the caller's), else unavailable.
    pub fn from_keys(err: mltrail_serving::privacy::KeyError) -> Self {
        match err.0.downcast::<StoreError>() {
            Ok(store) => ApiError::from(*store),
            Err(other) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                other.to_string(),
            ),
        }
    }

    /// A scoring request that cannot be served as sent (the scoring server's code, as
    /// `mlflow models serve` answers).
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            error.to_string(),
        )
    }

    /// A body axum could not take: over the size limit (413, `RESOURCE_LIMIT_EXCEEDED`), or
    /// unreadable (its own status, `other_code`).
    pub fn body_rejected(
        rejection: axum::extract::rejection::BytesRejection,
        other_code: &'static str,
    ) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "RESOURCE_LIMIT_EXCEEDED"
        } else {
            other_code
        };
        ApiError::new(status, code, rejection.body_text())
    }

    pub fn at_column(mut self, column: Option<&str>, row: Option<usize>) -> Self {
        self.column = column.map(str::to_string);
        self.row = row;
        self
    }

    pub fn missing(field: &str) -> Self {
        ApiError::invalid(format!("Missing value for required parameter '{field}'."))
    }
}

/// Every error's body, on the MLflow API and the native one alike (the native API's OpenAPI
/// documents name it for every 4xx and 5xx).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// MLflow's error code: `INVALID_PARAMETER_VALUE`, `RESOURCE_DOES_NOT_EXIST`,
    /// `PERMISSION_DENIED`, …
    pub error_code: &'static str,
    /// What was wrong, naming the field when a field was.
    pub message: String,
    /// The field at fault: a request body's field by its path (`points[2].value`), or the input
    /// column a scoring request failed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub column: Option<String>,
    /// The scoring request's row at fault, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub row: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error_code: self.code,
            message: self.message,
            column: self.column,
            row: self.row,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the oversized body is still on the connection, unread: say that the
            // connection ends here, so a keep-alive client opens a new one for its next request.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
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
            StoreErrorKind::Closed | StoreErrorKind::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE")
            }
            // Artifact failures answer as the artifact store's own errors do.
            StoreErrorKind::Artifacts => {
                if let StoreError::Artifacts(e) = &err {
                    return artifact_error(e);
                }
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        };
        ApiError::new(status, code, err.to_string())
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
        ArtifactError::UnstorablePath(_) => ApiError::invalid(err.to_string()),
        ArtifactError::Unreachable(_) | ArtifactError::Full(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            err.to_string(),
        ),
        ArtifactError::RangeNotSatisfiable { .. } => ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "INVALID_PARAMETER_VALUE",
            err.to_string(),
        ),
        other => ApiError::internal(other),
    }
}

impl From<mltrail_monitor::runner::MonitorError> for ApiError {
    fn from(err: mltrail_monitor::runner::MonitorError) -> Self {
        use mltrail_monitor::runner::MonitorError;
        match err {
            MonitorError::Store(e) => e.into(),
            storage if storage.is_storage() => ApiError::internal(storage),
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

/// A route that exists, asked with a method it does not take: 405 with the same JSON body as
/// every other error, naming the method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "BAD_REQUEST",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

pub async fn not_found_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ENDPOINT_NOT_FOUND",
        format!("No endpoint at {}", uri.path()),
    )
}

impl From<ScoreError> for ApiError {
    fn from(err: ScoreError) -> Self {
        let (status, code) = match &err {
            // The served version's outputs cannot rank: the deployment's fault, not the caller's.
            ScoreError::Ranking(mltrail_serving::ranking::RankingError::Score(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
            ScoreError::Json(_)
            | ScoreError::Request(_)
            | ScoreError::Model(_)
            | ScoreError::Ranking(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            // An unrecorded prediction is never returned: the caller may retry.
            ScoreError::Log(_) | ScoreError::Seal(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE")
            }
        };
        let (column, row) = (err.column().map(str::to_string), err.row());
        ApiError {
            column,
            row,
            ..ApiError::new(status, code, err.to_string())
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(err: LookupError) -> Self {
        ApiError::internal(err)
    }
}

impl From<ExplanationError> for ApiError {
    fn from(err: ExplanationError) -> Self {
        let (status, code) = match &err {
            ExplanationError::Off
            | ExplanationError::OtherModel { .. }
            | ExplanationError::Unavailable(_)
            | ExplanationError::Inputs(_) => (StatusCode::CONFLICT, "INVALID_STATE"),
            ExplanationError::Log(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE")
            }
            ExplanationError::Failed(_) | ExplanationError::Lookup(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
            ExplanationError::Request { field, .. } => {
                return ApiError::invalid(err.to_string()).at_column(Some(field), None)
            }
        };
        ApiError::new(status, code, err.to_string())
    }
}

impl From<FeedbackError> for ApiError {
    fn from(err: FeedbackError) -> Self {
        let (status, code) = match &err {
            FeedbackError::Unknown { .. } => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            FeedbackError::Lookup(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
            FeedbackError::Log(_) => (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE"),
            _ => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        };
        let column = err.field().map(str::to_string);
        ApiError {
            column,
            ..ApiError::new(status, code, err.to_string())
        }
    }
}
