//! The records the engine persists and resumes from, owned here: the store reads and writes
//! them at its boundary, the engine never sees a database row.

use weft_protocol::rest::{EdgeView, TurnsView};
use weft_protocol::{AttemptId, AttemptStatus, DeviceName, RequestId, TaskId};

use super::TaskRecord;

/// A registered device as the engine keeps it (and the store persists it).
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub name: DeviceName,
    pub kind: String,
    pub token_hash: String,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub capabilities: Vec<String>,
    pub tools: Vec<weft_protocol::ToolSpec>,
    pub max_concurrency: u32,
    pub created_at_ms: u64,
    pub last_seen_ms: Option<u64>,
    pub draining: bool,
    /// The hash of the token the last rotation replaced (refused `token_rotated`).
    pub retired_token_hash: Option<String>,
    /// Set once the device was removed: the row is kept as a tombstone so that its last
    /// token is refused `device_removed`.
    pub removed_at_ms: Option<u64>,
}

/// An attempt that was in flight when the store was last written.
#[derive(Debug, Clone)]
pub struct LiveAttempt {
    pub id: AttemptId,
    pub task_id: TaskId,
    pub device: DeviceName,
    pub status: AttemptStatus,
    pub deadline_ms: u64,
    pub max_turns: u32,
    pub turns_used: u32,
}

/// An unfinished request, as needed to resume it.
#[derive(Debug, Clone)]
pub struct LiveRequest {
    pub id: RequestId,
    pub version: u64,
    pub turns: TurnsView,
    pub cancel_requested: bool,
    pub tasks: Vec<TaskRecord>,
    pub edges: Vec<EdgeView>,
    pub in_flight: Vec<LiveAttempt>,
    /// Attempts made so far, per task.
    pub attempts_used: std::collections::HashMap<TaskId, u32>,
}
