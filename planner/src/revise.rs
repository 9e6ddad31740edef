//! Revising a running graph: what a planner is shown after results arrive, and what it answers.

use std::future::Future;
use std::pin::Pin;

use weft_protocol::rest::{EdgeView, EditOp, TaskSpec};
use weft_protocol::{DeviceName, ErrorInfo, TaskId, TaskOutput, TaskStatus};

use crate::llm::CallLog;
use crate::{DeviceProfile, Error};

/// One task of a running graph, as a planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    /// The task's definition (as the journal records it).
    pub spec: TaskSpec,
    pub status: TaskStatus,
    /// The device its last attempt ran on.
    pub device: Option<DeviceName>,
    /// What it produced. Untrusted: written by a device.
    pub output: Option<TaskOutput>,
    /// Why it failed or was skipped. Its message may quote device output: untrusted too.
    pub error: Option<ErrorInfo>,
}

/// A running graph at one moment: its version, tasks in order, and edges.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphState {
    pub version: u64,
    pub tasks: Vec<TaskState>,
    pub edges: Vec<EdgeView>,
}

/// The engine refused the planner's previous edit: its answer and the refusal, so that the
/// planner can correct it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The planner's previous answer, as the model wrote it.
    pub answer: String,
    /// The refusal's stable code (`task_not_editable`, `cycle`, …).
    pub code: String,
    /// The refusal's message, which names the op.
    pub message: String,
}

/// What a planner revises.
#[derive(Debug, Clone, Copy)]
pub struct ReviseInput<'a> {
    /// The request's text.
    pub text: &'a str,
    /// The graph as of the moment `ended` ended.
    pub graph: &'a GraphState,
    /// The task whose end prompted this revision.
    pub ended: &'a TaskId,
    /// Every registered device, online or not.
    pub devices: &'a [DeviceProfile],
    /// This revision's number for the request (1-based) and the most allowed.
    pub round: u32,
    pub max_rounds: u32,
    /// Set when the engine refused this round's previous answer.
    pub refused: Option<&'a Refusal>,
    /// Where an LLM planner leaves its calls to the model.
    pub calls: &'a CallLog,
}

/// A planner's decision after results.
#[derive(Debug, Clone, PartialEq)]
pub enum Revision {
    /// No change: the graph runs on as it is.
    Finish { reason: String },
    /// Apply these ops, atomically, through the engine's edit path.
    Edit {
        ops: Vec<EditOp>,
        reason: String,
        /// The answer as the model wrote it, to show it back if the engine refuses the ops.
        answer: String,
    },
}

/// The future returned by [`crate::Planner::revise`].
pub type ReviseFuture<'a> = Pin<Box<dyn Future<Output = Result<Revision, Error>> + Send + 'a>>;
