//! Bodies of the REST API (`/v1/...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AttemptId, DeviceName, RequestId, TaskId};
use crate::task::{
    Action, AttemptStatus, Condition, EdgeKind, ErrorInfo, RequestStatus, RetryPolicy, TaskOutput,
    TaskStatus,
};
use crate::wire::ResultStatus;

/// Largest accepted request text, in bytes.
pub const MAX_REQUEST_TEXT_BYTES: usize = 16 * 1024;

/// Longest a submit may wait for its request to end (`POST /v1/requests?wait=S`), in seconds.
pub const MAX_SUBMIT_WAIT_SECS: u64 = 300;

/// `POST /v1/requests`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// What to do, in the planner's language (see the README for the rules planner grammar).
    /// Not blank; at most 16 KiB (`MAX_REQUEST_TEXT_BYTES`) once trimmed, else `413`.
    #[schema(min_length = 1, pattern = r"\S")]
    pub text: String,
    /// Turns (LLM agent steps) the whole request may use; the server's default when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt_int"
    )]
    pub turn_budget: Option<u32>,
    /// A graph to run as given, instead of planning `text` (which then only describes it).
    /// Checked like an edit batch: devices and capabilities exist, acyclic, references point
    /// upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphSpec>,
}

/// A whole graph, as submitted with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    pub tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub edges: Vec<EdgeView>,
}

/// A request with its graph: the answer to `GET /v1/requests/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: RequestId,
    pub text: String,
    pub status: RequestStatus,
    /// Graph version; increases with every accepted change to the graph.
    pub version: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub tasks: Vec<TaskView>,
    pub edges: Vec<EdgeView>,
    pub turns: TurnsView,
    /// Calls to an LLM made for this request (planning and revisions) and their tokens; absent
    /// when none were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmUsageView>,
}

/// What a request's calls to an LLM cost, as counted by the LLM server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct LlmUsageView {
    pub calls: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A request's turn budget: the pool its turn-based tasks draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct TurnsView {
    pub budget: u32,
    /// Turns held by running attempts or used by ended ones.
    pub reserved: u32,
    /// Turns actually used.
    pub used: u32,
    /// Extra turns granted to tasks that asked.
    pub extensions_granted: u32,
    /// Extension requests refused because the pool was spent.
    pub extensions_refused: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: TaskId,
    pub title: String,
    pub instruction: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The device the task is bound to (named in the plan) or ran on (last attempt).
    pub device: Option<DeviceName>,
    pub status: TaskStatus,
    pub attempts: Vec<AttemptView>,
    pub output: Option<TaskOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub retry: RetryPolicy,
    /// Turn limit of each attempt (before extensions).
    pub max_turns: u32,
    /// Turns used over all attempts.
    pub turns_used: u32,
    /// The files the task produced (its succeeding attempt's outputs), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::files::TaskFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub id: AttemptId,
    pub device: DeviceName,
    pub status: AttemptStatus,
    pub started_at_ms: u64,
    pub ended_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// A result the device sent after this attempt had already ended (timed out, lost, or told
    /// to cancel): recorded, never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_result: Option<LateResult>,
}

/// A result that arrived for an attempt that had already ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LateResult {
    pub status: ResultStatus,
    pub output: TaskOutput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    pub from: TaskId,
    pub to: TaskId,
    /// `success` when absent (in a submitted graph; views always carry it).
    #[serde(default)]
    #[schema(default = "success")]
    pub kind: EdgeKind,
    /// Present exactly when `kind` is `condition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// A task as written by a planner or an `add_task` edit: what to do and where. Also how the
/// journal records each task, so that a graph can be rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    pub id: TaskId,
    #[serde(default)]
    pub title: String,
    pub instruction: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Run on this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceName>,
    /// Run on a device of this kind (ignored when `device` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_kind: Option<String>,
    /// Capabilities the device must have (the action's own is added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Retry policy; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Turn limit of each attempt, for executors that work in turns.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt_int"
    )]
    pub max_turns: Option<u32>,
    /// Files the task produces, relative to its workdir (names, or globs in their last part):
    /// sent to the orchestrator after the attempt succeeds, before its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<crate::FilesSpec>,
    /// Files of upstream tasks this task takes besides those its instruction or action refer
    /// to: each entry one reference, `{{t1.files}}` or `{{t1.files.NAME}}`. Fetched into the
    /// attempt's inputs directory before it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<crate::FilesSpec>,
}

/// One operation of a graph edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum EditOp {
    AddTask {
        task: TaskSpec,
    },
    /// Removes a task that has not started, with its edges.
    RemoveTask {
        task_id: TaskId,
    },
    /// Changes fields of a task that has not started; absent fields stay as they are.
    UpdateTask {
        task_id: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instruction: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<Action>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<Vec<String>>,
        /// Replaces the files the task declares it produces (`{"files": []}` clears them);
        /// checked as at submit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outputs: Option<crate::FilesSpec>,
        /// Replaces the files it fetches beyond those its instruction and action refer to;
        /// each entry one `{{t1.files…}}` reference to a task upstream of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<crate::FilesSpec>,
    },
    AddEdge {
        from: TaskId,
        to: TaskId,
        /// `success` when absent.
        #[serde(default)]
        #[schema(default = "success")]
        kind: EdgeKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        condition: Option<Condition>,
    },
    RemoveEdge {
        from: TaskId,
        to: TaskId,
    },
}

impl EditOp {
    /// The op's name as written in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            EditOp::AddTask { .. } => "add_task",
            EditOp::RemoveTask { .. } => "remove_task",
            EditOp::UpdateTask { .. } => "update_task",
            EditOp::AddEdge { .. } => "add_edge",
            EditOp::RemoveEdge { .. } => "remove_edge",
        }
    }
}

/// `POST /v1/requests/{id}/edits`: a batch applied atomically, or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBatch {
    /// The graph version the edit was made against; a different current version is a 409.
    #[serde(deserialize_with = "crate::whole::int")]
    pub expected_version: u64,
    pub ops: Vec<EditOp>,
}

/// Status of a device's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Online,
    Offline,
    /// Connected, but takes no new work (`weft device drain`); running work finishes.
    Draining,
    /// Removed (`weft device remove`): only in the last view published for the device on
    /// `GET /v1/devices/events`; the device is listed no more.
    Removed,
}

/// `GET /v1/devices` element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub name: DeviceName,
    pub kind: String,
    pub status: DeviceStatus,
    pub platform: Option<String>,
    /// The OS version the agent stated in its last hello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub capabilities: Vec<String>,
    /// The tools of its tool executors (`phone`, `adb`), each with a JSON Schema for its args.
    #[serde(default)]
    pub tools: Vec<crate::task::ToolSpec>,
    pub max_concurrency: u32,
    /// Attempts running on the device now.
    pub running: u32,
    pub last_seen_ms: Option<u64>,
}

/// `POST /v1/devices`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// 1-64 letters, digits, `-` or `_`, starting with a letter or digit.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    pub name: DeviceName,
    /// `laptop`, `phone`, `server`, or another plain word (lowercase letters, digits, `-`).
    #[schema(pattern = "^[a-z0-9-]{1,32}$")]
    pub kind: String,
}

/// Answer to `POST /v1/devices` and to `POST /v1/devices/{name}/rotate`. The token is shown
/// only here; the server keeps only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceCreated {
    pub name: DeviceName,
    pub kind: String,
    pub token: String,
}

/// Answer to `DELETE /v1/devices/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceRemoved {
    pub name: DeviceName,
    /// The device had a live connection, which was closed (after `refused: device_removed`).
    pub was_connected: bool,
    /// Attempts the device held: they ended `lost` (`device_lost`) and their tasks are placed
    /// again or fail as their retry policy says.
    pub attempts_lost: u32,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// One journaled state change, as streamed by `GET /v1/requests/{id}/events` (SSE; the event's
/// `id` is `seq`, its `event` name is the `type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Position in the journal; increases across all requests.
    pub seq: u64,
    pub request_id: RequestId,
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The request was accepted and planned into a graph (version 1).
    RequestCreated {
        text: String,
        tasks: Vec<TaskSpec>,
        edges: Vec<EdgeView>,
    },
    /// An edit batch was applied; the graph is now at `version`.
    GraphEdited { version: u64, ops: Vec<EditOp> },
    /// A task changed status.
    TaskStatus {
        task_id: TaskId,
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt_id: Option<AttemptId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<TaskOutput>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorInfo>,
        /// The files the attempt produced (on `succeeded`, when it declared outputs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<crate::FileRef>,
    },
    /// An attempt failed and the task will be tried again at `retry_at_ms`.
    TaskRetrying {
        task_id: TaskId,
        attempt_id: AttemptId,
        /// Attempts used so far.
        attempts: u32,
        retry_at_ms: u64,
        error: ErrorInfo,
    },
    /// Progress reported by the device running a task.
    TaskProgress {
        task_id: TaskId,
        attempt_id: AttemptId,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turns_used: Option<u32>,
    },
    /// A task asked for more turns; `granted` of `asked` came from the request's pool
    /// (0: refused).
    TurnsExtended {
        task_id: TaskId,
        attempt_id: AttemptId,
        asked: u32,
        granted: u32,
        max_turns: u32,
        pool_left: u32,
    },
    /// The request changed status.
    RequestStatus {
        status: RequestStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorInfo>,
    },
    /// Retention deleted the bytes of these files of the (ended) request: they are still
    /// listed, no longer downloadable.
    FilesDeleted {
        files: Vec<crate::files::StoredFile>,
    },
}

impl EventKind {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RequestCreated { .. } => "request_created",
            EventKind::GraphEdited { .. } => "graph_edited",
            EventKind::TaskStatus { .. } => "task_status",
            EventKind::TaskRetrying { .. } => "task_retrying",
            EventKind::TaskProgress { .. } => "task_progress",
            EventKind::TurnsExtended { .. } => "turns_extended",
            EventKind::RequestStatus { .. } => "request_status",
            EventKind::FilesDeleted { .. } => "files_deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn submit_refuses_unknown_fields() {
        assert!(serde_json::from_value::<SubmitRequest>(json!({"text": "x"})).is_ok());
        assert!(serde_json::from_value::<SubmitRequest>(json!({"text": "x", "y": 1})).is_err());
    }

    #[test]
    fn event_format() {
        let ev = Event {
            seq: 7,
            request_id: "r-1".into(),
            at_ms: 1000,
            kind: EventKind::TaskStatus {
                task_id: "t1".into(),
                status: TaskStatus::Running,
                attempt_id: Some("a-1".into()),
                device: Some("laptop".into()),
                output: None,
                error: None,
                files: vec![],
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"seq": 7, "request_id": "r-1", "at_ms": 1000, "type": "task_status",
                   "task_id": "t1", "status": "running", "attempt_id": "a-1", "device": "laptop"})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), ev);
        assert_eq!(ev.kind.name(), "task_status");
    }

    #[test]
    fn files_deleted_format() {
        let sha = "ab".repeat(32);
        let ev = Event {
            seq: 9,
            request_id: "r-1".into(),
            at_ms: 2000,
            kind: EventKind::FilesDeleted {
                files: vec![crate::files::StoredFile {
                    task_id: "t1".into(),
                    attempt_id: "a-1".into(),
                    name: "out.txt".into(),
                    size: 14,
                    sha256: sha.clone(),
                }],
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({"seq": 9, "request_id": "r-1", "at_ms": 2000, "type": "files_deleted",
                   "files": [{"task_id": "t1", "attempt_id": "a-1", "name": "out.txt",
                              "size": 14, "sha256": sha}]})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), ev);
        assert_eq!(ev.kind.name(), "files_deleted");
    }

    #[test]
    fn llm_usage_format() {
        let u = LlmUsageView {
            calls: 2,
            prompt_tokens: 900,
            completion_tokens: 120,
        };
        assert_eq!(
            serde_json::to_value(u).unwrap(),
            json!({"calls": 2, "prompt_tokens": 900, "completion_tokens": 120})
        );
    }

    #[test]
    fn error_body_format() {
        let b = ErrorBody {
            error: ErrorInfo::new("request_not_found", "no request r-9"),
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"error": {"code": "request_not_found", "message": "no request r-9"}})
        );
    }
}
