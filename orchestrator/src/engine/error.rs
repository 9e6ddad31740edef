//! Why the engine refused a command: a closed set, each with a stable code. The engine knows
//! nothing of HTTP; the HTTP layer maps each code to a status (`crate::codes`).

use weft_protocol::{AttemptId, DeviceName, RequestId, TaskId, TaskStatus};

use super::EditError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the orchestrator is shutting down; submit again after it restarts")]
    ShuttingDown,
    /// The engine has stopped (the server is going down).
    #[error("the engine has stopped")]
    Gone,
    #[error("no request with id {0}")]
    RequestNotFound(RequestId),
    #[error("request {0} has finished and can no longer change")]
    RequestFinished(RequestId),
    #[error("the request is being cancelled")]
    RequestCancelling(RequestId),
    #[error(
        "the graph is at version {current}, the edit was made against version {expected}; read it again and retry"
    )]
    VersionConflict { current: u64, expected: u64 },
    /// A submitted graph or an edit batch was refused: which op (if one), why, and its code.
    #[error("{0}")]
    Refused(EditError),
    #[error("request {request} has no task {task}")]
    TaskNotFound { request: RequestId, task: TaskId },
    #[error("task {task} is already {}", .status.as_str())]
    TaskFinished { task: TaskId, status: TaskStatus },
    #[error("device names are 1-64 letters, digits, '-' or '_', starting with a letter or digit")]
    InvalidDeviceName,
    #[error("a device kind is a plain lowercase word such as laptop, phone or server")]
    InvalidDeviceKind,
    #[error("a device named `{0}` is already registered")]
    DeviceExists(DeviceName),
    #[error("no device named `{0}`")]
    DeviceNotFound(DeviceName),
    #[error("send `Authorization: Bearer <device token>` with the token of a registered device")]
    BadDeviceToken,
    #[error("attempt {0} is not running: it ended, or never was")]
    AttemptNotLive(AttemptId),
    #[error("attempt {attempt} is not held by device `{device}`")]
    NotYourAttempt {
        attempt: AttemptId,
        device: DeviceName,
    },
    #[error("no attempt device `{device}` runs takes blob {sha256} as input")]
    BlobNotAssigned { sha256: String, device: DeviceName },
}

impl Error {
    /// The stable code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ShuttingDown | Self::Gone => "shutting_down",
            Self::RequestNotFound(_) => "request_not_found",
            Self::RequestFinished(_) => "request_finished",
            Self::RequestCancelling(_) => "request_cancelling",
            Self::VersionConflict { .. } => "version_conflict",
            Self::Refused(e) => e.code,
            Self::TaskNotFound { .. } => "task_not_found",
            Self::TaskFinished { .. } => "task_finished",
            Self::InvalidDeviceName => "invalid_device_name",
            Self::InvalidDeviceKind => "invalid_device_kind",
            Self::DeviceExists(_) => "device_exists",
            Self::DeviceNotFound(_) => "device_not_found",
            Self::BadDeviceToken => "bad_device_token",
            Self::AttemptNotLive(_) => "attempt_not_live",
            Self::NotYourAttempt { .. } => "not_your_attempt",
            Self::BlobNotAssigned { .. } => "blob_not_assigned",
        }
    }

    /// A refusal of the whole graph or batch, not of one op.
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused(EditError {
            op: None,
            code,
            message: message.into(),
        })
    }
}

impl From<crate::Error> for Error {
    /// Only `EngineGone` reaches callers of the engine; store failures stop the engine.
    fn from(e: crate::Error) -> Self {
        tracing::error!(error = %e, "engine call failed");
        Self::Gone
    }
}
