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
    /// A commit failed, so the server stopped rather than run on state that is not durable;
    /// a restart resumes from what was committed.
    #[error("stopped because a store write failed (fail-stop; restart to resume): {0}")]
    FailStop(Box<Error>),
    /// This replica led, and another took over (its fencing epoch is higher): a commit of this
    /// one was refused inside its transaction, or renewing the lease found it taken. The
    /// process stops without applying anything it held in memory (docs/replicas.md).
    #[error(
        "deposed: another replica leads now (epoch {current}; this one held {held}); stopping \
         without applying what was not committed (start it again to rejoin as a standby)"
    )]
    Deposed { held: u64, current: u64 },
    /// This replica led and could not renew its lease before it ran out (the database
    /// unreachable for a whole lease): another may have taken over, so it stops leading.
    #[error(
        "the leader's lease ran out without being renewed ({0}); stopping (start it again to \
         rejoin)"
    )]
    LeaseLost(String),
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

impl ApiError {
    /// An error answer with `code`'s status from the one table, [`crate::codes`].
    fn coded(code: &'static str, message: String) -> Self {
        let status = StatusCode::from_u16(crate::codes::http_status(code))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, code, message)
    }
}

impl From<crate::engine::Error> for ApiError {
    /// The one mapping of the engine's refusals to HTTP: the status is the code's, from
    /// [`crate::codes`].
    fn from(e: crate::engine::Error) -> Self {
        Self::coded(e.code(), e.to_string())
    }
}

impl From<weft_planner::Error> for ApiError {
    /// Why a request could not be planned, with its code's status from [`crate::codes`]: the
    /// planner's endpoint failing (`llm_*`, with the credential-free reason) is a `502` or
    /// `504` and is logged; the rest are the request's fault.
    fn from(e: weft_planner::Error) -> Self {
        let answer = Self::coded(e.code(), e.to_string());
        if answer.status.is_server_error() {
            tracing::warn!(code = e.code(), error = %e, "planning failed");
        }
        answer
    }
}

impl From<crate::blobs::Error> for ApiError {
    /// A blob store's refusal with its code's status; a server-side failure (`internal`,
    /// `blob_corrupt`, `disk_full`) is logged.
    fn from(e: crate::blobs::Error) -> Self {
        let answer = Self::coded(e.code(), e.to_string());
        if answer.status.is_server_error() {
            tracing::error!(code = e.code(), error = %e, "blob store");
        }
        answer
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_errors_take_their_codes_status() {
        use weft_planner::Error as E;
        let llm = |code| E::Llm {
            code,
            message: "m".into(),
        };
        let too_large = E::TooLarge {
            what: "tasks",
            count: 300,
            limit: 256,
        };
        let unplannable = E::Unplannable {
            understood: vec![],
            not_understood: vec!["x".into()],
        };
        let unknown_device = E::UnknownDevice {
            name: "d".into(),
            known: vec![],
        };
        let plan_invalid = E::PlanInvalid {
            attempts: 3,
            errors: vec![],
        };
        let refused = E::Refused { reason: "r".into() };
        let check = |e: E, status: u16| {
            let code = e.code();
            assert_eq!(ApiError::from(e).status.as_u16(), status, "{code}");
        };
        check(E::Empty, 400);
        check(too_large, 413);
        check(unplannable, 422);
        check(unknown_device, 422);
        check(E::InvalidPlan("cycle".into()), 422);
        check(E::NoOnlineDevice, 422);
        check(plan_invalid, 422);
        check(refused, 422);
        check(llm("llm_timeout"), 504);
        for code in [
            "llm_unreachable",
            "llm_http_error",
            "llm_bad_response",
            "llm_cassette_miss",
            "llm_cassette_error",
            "llm_config",
        ] {
            check(llm(code), 502);
        }
    }
}
