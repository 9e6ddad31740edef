//! The engine's own types for what a task keeps between inputs: where it may run
//! ([`Target`]), its scheduling state ([`TaskSched`]), and the durable part of a task
//! ([`TaskRecord`]) that the engine hands the store and resumes from. The store converts its
//! rows to and from these; nothing here knows how they are stored.

use weft_protocol::{Action, DeviceName, FileRef, RetryPolicy, TaskId, TaskOutput, TaskStatus};

/// Where a task may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Exactly this device.
    Device(DeviceName),
    /// Any device of this kind.
    Kind(String),
    /// Any device with the task's capabilities.
    Any,
}

impl From<&weft_planner::Target> for Target {
    fn from(t: &weft_planner::Target) -> Self {
        match t {
            weft_planner::Target::Device(d) => Target::Device(d.clone()),
            weft_planner::Target::Kind(k) => Target::Kind(k.clone()),
            weft_planner::Target::Any => Target::Any,
        }
    }
}

/// A task's scheduling state besides its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSched {
    /// The next attempt may not start before this time (retry backoff).
    pub not_before_ms: u64,
    /// When the task first became ready; its overall timeout counts from here.
    pub first_ready_ms: Option<u64>,
    /// Prefer any other device for the next attempt (after a device-related failure).
    pub avoid: Option<DeviceName>,
    /// A cancel was asked for while the task ran: it ends `cancelled`.
    pub cancel_requested: bool,
}

/// What of a task outlives the engine: written with every change of the task, read back to
/// resume its request after a restart.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: TaskId,
    pub position: u32,
    pub title: String,
    pub instruction: String,
    pub action: Option<Action>,
    pub target: Target,
    pub capabilities: Vec<String>,
    pub status: TaskStatus,
    pub retry: RetryPolicy,
    pub sched: TaskSched,
    /// Turn limit of each attempt, for executors that work in turns.
    pub max_turns: u32,
    /// Only read back on reload; written by `UpdateTask`.
    pub output: Option<TaskOutput>,
    /// The files it declares (`outputs`, `inputs`).
    pub files: TaskFiles,
    /// The files its succeeding attempt produced; only read back on reload (the `files`
    /// table, written by `InsertFiles`).
    pub produced: Vec<FileRef>,
}

/// The files a task declares: the outputs it produces (names, or globs in their last part,
/// relative to its workdir) and the inputs it takes beyond those its instruction and action
/// refer to (each entry one `{{t1.files…}}` reference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFiles {
    pub outputs: Vec<String>,
    pub inputs: Vec<String>,
}

impl TaskFiles {
    /// From a task spec's `outputs` and `inputs`.
    pub fn of_spec(spec: &weft_protocol::rest::TaskSpec) -> Self {
        let files = |f: &Option<weft_protocol::FilesSpec>| {
            f.as_ref().map(|f| f.files.clone()).unwrap_or_default()
        };
        Self {
            outputs: files(&spec.outputs),
            inputs: files(&spec.inputs),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty() && self.inputs.is_empty()
    }
}
