//! Wire types for weft.
//!
//! This crate holds only data: the messages an agent and the orchestrator exchange over the
//! WebSocket (`/v1/agent`), the bodies of the REST API, and the identifiers both use. It does
//! no I/O. Every type here is part of a public format; `tests` at the bottom of each module pin
//! the exact JSON so that a change to the wire is always a deliberate one.
//!
//! See `docs/protocol.md` for every message with an example frame.

pub mod files;
pub mod ids;
pub mod rest;
pub mod task;
pub mod whole;
pub mod wire;

pub use files::{FileRef, FilesSpec, InputFile};
pub use ids::{AttemptId, DeviceName, RequestId, TaskId};
pub use task::{
    Action, AttemptStatus, Condition, ConditionOp, ConditionSource, EdgeKind, ErrorInfo,
    NON_RETRYABLE_CODES, RequestStatus, RetryPolicy, TaskOutput, TaskStatus, ToolSpec,
};
pub use wire::{AgentMsg, ServerMsg};

/// Version of the agent⇄orchestrator protocol. An agent states the version it speaks in its
/// `hello`; the orchestrator refuses a version it does not speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest WebSocket frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// How long an HTTP client of the orchestrator keeps an idle pooled connection: less than the
/// orchestrator's header timeout (10 s by default), which also closes a keep-alive connection
/// that sends no next request. A client that kept its connection longer could send on one the
/// server is closing at that moment, and fail with an incomplete message instead of
/// reconnecting (seen in CI under load).
pub const HTTP_POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Path of the agent WebSocket endpoint on the orchestrator's listener.
pub const AGENT_WS_PATH: &str = "/v1/agent";
