//! The crate's errors: [`Error`] for failures inside the orchestrator, [`ApiError`] for answers
//! to clients (a stable code, a human message and an HTTP status).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weft_protocol::ErrorInfo;
use weft_protocol::rest::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the engine has stopped")]
    EngineGone,
}

/// An error answer to a client. 4xx answers carry their code and message; 5xx answers carry a
/// generic message and the cause is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn info(&self) -> ErrorInfo {
        ErrorInfo::new(self.code, self.message.clone())
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        tracing::error!(error = %e, "internal error");
        let (status, code) = match e {
            Error::EngineGone => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, "internal error; see the server log")
    }
}

impl From<crate::engine::Error> for ApiError {
    /// The one mapping of the engine's refusals to HTTP: the status is the code's, from
    /// [`crate::codes`].
    fn from(e: crate::engine::Error) -> Self {
        let code = e.code();
        let status = StatusCode::from_u16(crate::codes::http_status(code))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInfo::new(self.code, self.message),
        };
        (self.status, axum::Json(body)).into_response()
    }
}
