//! Task-level data shared by the wire messages and the REST views.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An explicit action a device executes. The `kind` names the executor capability it needs
/// (`shell`, `http`, `fs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Run a command with `sh -c` in the agent's workdir.
    Shell { command: String },
    /// HTTP GET a URL; the body (capped) becomes the output.
    HttpGet { url: String },
    /// Write text to a file inside the agent's workdir.
    WriteFile { path: String, content: String },
    /// Read a text file inside the agent's workdir.
    ReadFile { path: String },
}

impl Action {
    /// The capability a device must advertise to run this action.
    pub fn capability(&self) -> &'static str {
        match self {
            Action::Shell { .. } => "shell",
            Action::HttpGet { .. } => "http",
            Action::WriteFile { .. } | Action::ReadFile { .. } => "fs",
        }
    }
}

/// The typed output of a task: a human summary and structured data.
///
/// For `shell`, `data` is `{"stdout": "...", "stderr": "...", "exit_code": 0}`; for `http_get`,
/// `{"status": 200, "body": "...", "truncated": false}`; for `read_file`, `{"path", "content"}`;
/// for `write_file`, `{"path", "bytes"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskOutput {
    pub summary: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A machine-readable error: a stable `code` and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

impl ErrorInfo {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Status of a task in its request's graph.
///
/// `pending` (waiting on edges) → `ready` → `dispatched` (sent, not yet accepted) → `running` →
/// `succeeded` | `failed` | `skipped` (an upstream made it unreachable) | `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Ready,
    Dispatched,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Pending,
        TaskStatus::Ready,
        TaskStatus::Dispatched,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded
                | TaskStatus::Failed
                | TaskStatus::Skipped
                | TaskStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Ready => "ready",
            TaskStatus::Dispatched => "dispatched",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Status of one attempt (one dispatch of a task to one device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Sent to the device, not yet accepted.
    Dispatched,
    /// Accepted by the device.
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The device refused the assignment.
    Rejected,
    /// The attempt passed its deadline.
    TimedOut,
    /// The device came back without it.
    Lost,
}

impl AttemptStatus {
    pub const ALL: [AttemptStatus; 8] = [
        AttemptStatus::Dispatched,
        AttemptStatus::Running,
        AttemptStatus::Succeeded,
        AttemptStatus::Failed,
        AttemptStatus::Cancelled,
        AttemptStatus::Rejected,
        AttemptStatus::TimedOut,
        AttemptStatus::Lost,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, AttemptStatus::Dispatched | AttemptStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Dispatched => "dispatched",
            AttemptStatus::Running => "running",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Cancelled => "cancelled",
            AttemptStatus::Rejected => "rejected",
            AttemptStatus::TimedOut => "timed_out",
            AttemptStatus::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Status of a request as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Planning,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Planning,
        RequestStatus::Running,
        RequestStatus::Succeeded,
        RequestStatus::Failed,
        RequestStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestStatus::Succeeded | RequestStatus::Failed | RequestStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Planning => "planning",
            RequestStatus::Running => "running",
            RequestStatus::Succeeded => "succeeded",
            RequestStatus::Failed => "failed",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The kind of a dependency edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Run the downstream task only if the upstream task succeeded.
    #[default]
    Success,
    /// Run the downstream task once the upstream task has ended, however it ended.
    Completion,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Success => "success",
            EdgeKind::Completion => "completion",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(EdgeKind::Success),
            "completion" => Some(EdgeKind::Completion),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn action_format() {
        let a = Action::Shell {
            command: "echo hi".into(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"kind": "shell", "command": "echo hi"})
        );
        let w: Action =
            serde_json::from_value(json!({"kind": "write_file", "path": "a.txt", "content": "x"}))
                .unwrap();
        assert_eq!(w.capability(), "fs");
        assert!(
            serde_json::from_value::<Action>(json!({"kind": "shell", "command": "x", "extra": 1}))
                .is_err()
        );
    }

    #[test]
    fn status_strings_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for s in AttemptStatus::ALL {
            assert_eq!(AttemptStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for k in [EdgeKind::Success, EdgeKind::Completion] {
            assert_eq!(EdgeKind::parse(k.as_str()), Some(k));
        }
    }
}
