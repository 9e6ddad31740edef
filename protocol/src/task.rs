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
    /// Copy a file inside the agent's workdir, byte for byte, whatever it holds: `from` is
    /// usually a file fetched from an upstream task (`{{t1.files.NAME}}`), `to` where it goes
    /// (its directories are made). The copy appears under `to` whole or not at all.
    CopyFile { from: String, to: String },
    /// A test executor that works in turns like an LLM agent: it takes `steps` turns of
    /// `step_ms` each, reports every turn, and asks for more turns when it reaches its limit.
    /// Agents offer it (capability `steps`) only when started with `--test-executors`.
    Steps {
        #[serde(deserialize_with = "crate::whole::int")]
        steps: u32,
        #[serde(default, deserialize_with = "crate::whole::int")]
        step_ms: u64,
    },
    /// Use one of the phone's own tools (Termux:API on Android: `notification`,
    /// `clipboard_set`, `battery_status`, …). The device lists the tools it has, with a JSON
    /// Schema for each one's `args`, in its hello (`tools`).
    Phone {
        tool: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        #[schema(value_type = Object)]
        args: serde_json::Value,
    },
    /// Drive an Android device attached to the agent's machine over adb (`tap`, `type_text`,
    /// `screenshot`, …); tools and their argument schemas as for `phone`.
    Adb {
        tool: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        #[schema(value_type = Object)]
        args: serde_json::Value,
    },
    /// An operation on the device's simulated apps (files, notes, mail, calendar, clipboard,
    /// apps, key-value data, …), used by the benchmark suite. Agents offer it (capability
    /// `sim`) only when started with a simulated device profile (`--sim-profile`). The ops and
    /// their `args` are listed in docs/sim.md; string values in `args` may hold references.
    Sim {
        op: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        #[schema(value_type = Object)]
        args: serde_json::Value,
    },
}

impl Action {
    /// The capability a device must advertise to run this action.
    pub fn capability(&self) -> &'static str {
        match self {
            Action::Shell { .. } => "shell",
            Action::HttpGet { .. } => "http",
            Action::WriteFile { .. } | Action::ReadFile { .. } | Action::CopyFile { .. } => "fs",
            Action::Steps { .. } => "steps",
            Action::Phone { .. } => "phone",
            Action::Adb { .. } => "adb",
            Action::Sim { .. } => "sim",
        }
    }

    /// Whether the executor works in turns drawn from the request's turn budget.
    pub fn uses_turns(&self) -> bool {
        matches!(self, Action::Steps { .. })
    }
}

/// A tool a device offers through a tool executor (`phone`, `adb`), as the planner sees it:
/// an action `{"kind": executor, "tool": name, "args": {...}}` whose `args` match the JSON
/// Schema `args`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The executor (and capability) that runs it: `phone` or `adb`.
    pub executor: String,
    pub name: String,
    pub description: String,
    /// A JSON Schema (draft 2020-12 subset: `type`, `properties`, `required`, `enum`) for `args`.
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
}

/// The typed output of a task: a human summary and structured data.
///
/// For `shell`, `data` is `{"stdout": "...", "stderr": "...", "exit_code": 0}`; for `http_get`,
/// `{"status": 200, "body": "...", "truncated": false}`; for `read_file`, `{"path", "content"}`;
/// for `write_file`, `{"path", "bytes"}`; for `copy_file`, `{"from", "to", "bytes"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskOutput {
    pub summary: String,
    /// Any JSON value: `null` when there is none (a cancelled task's output).
    #[serde(default)]
    #[schema(value_type = Value)]
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

/// When and how often a failed task is tried again (after Temporal's retry policy).
///
/// Attempt `n` (1-based) that fails with a retryable error is followed, after a delay of
/// `initial_backoff_ms * multiplier^(n-1)` capped at `max_backoff_ms` and spread by ±`jitter`
/// (a fraction), by attempt `n + 1`, up to `max_attempts` in all. Errors whose code is in
/// `non_retryable` end the task at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(deserialize_with = "crate::whole::int")]
    pub max_attempts: u32,
    #[serde(deserialize_with = "crate::whole::int")]
    pub initial_backoff_ms: u64,
    pub multiplier: f64,
    #[serde(deserialize_with = "crate::whole::int")]
    pub max_backoff_ms: u64,
    pub jitter: f64,
    pub non_retryable: Vec<String>,
}

/// Error codes that retrying cannot fix: the same action would fail the same way.
pub const NON_RETRYABLE_CODES: [&str; 11] = [
    "policy_denied",
    "budget_exhausted",
    "invalid_action",
    "unsupported_action",
    "no_executor",
    "path_outside_workdir",
    "content_too_large",
    "invalid_url",
    "cancelled",
    "task_timeout",
    "no_device",
];

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 1000,
            multiplier: 2.0,
            max_backoff_ms: 60_000,
            jitter: 0.2,
            non_retryable: NON_RETRYABLE_CODES
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        }
    }
}

impl RetryPolicy {
    /// Whether an attempt that failed with `code` may be followed by another after `used`
    /// attempts.
    pub fn may_retry(&self, code: &str, used: u32) -> bool {
        used < self.max_attempts && !self.non_retryable.iter().any(|c| c == code)
    }

    /// The delay before the attempt after `used` attempts, before jitter, in milliseconds.
    pub fn base_backoff_ms(&self, used: u32) -> u64 {
        let exp = used.saturating_sub(1).min(64) as i32;
        let mult = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let ms = self.initial_backoff_ms as f64 * mult.powi(exp);
        if ms.is_finite() {
            (ms as u64).min(self.max_backoff_ms)
        } else {
            self.max_backoff_ms
        }
    }

    /// The delay with jitter applied; `unit` is a number in `[0, 1)` (random in production).
    pub fn backoff_ms(&self, used: u32, unit: f64) -> u64 {
        let base = self.base_backoff_ms(used) as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        (base * factor).max(0.0) as u64
    }

    /// Checks the numbers; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err("max_attempts must be 1..=100".into());
        }
        if !(self.multiplier.is_finite() && (1.0..=10.0).contains(&self.multiplier)) {
            return Err("multiplier must be between 1 and 10".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err("jitter must be between 0 and 1".into());
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err("max_backoff_ms must be at least initial_backoff_ms".into());
        }
        Ok(())
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

/// A predicate on how an upstream task ended, carried by a `condition` edge.
///
/// `on` picks what is tested: `data` (the value at the JSON pointer `path` in the output's
/// structured data, e.g. `/exit_code` or `/status`), `summary` (the output's summary text), or
/// `status` (the upstream task's final status: `succeeded`, `failed`, `skipped`, `cancelled`).
/// `op` is `equals` / `not_equals` (JSON equality with `value`; a string also equals its text),
/// `contains` (a string contains `value`'s text, or an array contains `value`), `exists` /
/// `not_exists` (the pointer resolves / does not; no `value`).
///
/// ```json
/// {"on": "data", "path": "/exit_code", "op": "equals", "value": 0}
/// {"on": "summary", "op": "contains", "value": "ERROR"}
/// {"on": "status", "op": "equals", "value": "failed"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub on: ConditionSource,
    /// A JSON pointer (RFC 6901) into the output data; `""` is the whole data. Only for
    /// `on: data`.
    #[serde(default)]
    pub path: String,
    pub op: ConditionOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub value: Option<serde_json::Value>,
}

/// What a [`Condition`] tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionSource {
    #[default]
    Data,
    Summary,
    Status,
}

/// How a [`Condition`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    Equals,
    NotEquals,
    Contains,
    Exists,
    NotExists,
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
    /// Run the downstream task once the upstream task has ended and its [`Condition`] holds on
    /// the upstream outcome; otherwise the downstream task is skipped.
    Condition,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Success => "success",
            EdgeKind::Completion => "completion",
            EdgeKind::Condition => "condition",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(EdgeKind::Success),
            "completion" => Some(EdgeKind::Completion),
            "condition" => Some(EdgeKind::Condition),
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
    fn tool_actions_round_trip() {
        let check = |a: Action, v: serde_json::Value| {
            assert_eq!(serde_json::to_value(&a).unwrap(), v);
            assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);
        };
        check(
            Action::Phone {
                tool: "notification".into(),
                args: json!({"title": "weft", "content": "done"}),
            },
            json!({"kind": "phone", "tool": "notification",
                   "args": {"title": "weft", "content": "done"}}),
        );
        // `args` may be left out (a tool without arguments).
        check(
            Action::Phone {
                tool: "battery_status".into(),
                args: serde_json::Value::Null,
            },
            json!({"kind": "phone", "tool": "battery_status"}),
        );
        let tap = Action::Adb {
            tool: "tap".into(),
            args: json!({"x": 10, "y": 20}),
        };
        assert_eq!(tap.capability(), "adb");
        check(
            tap,
            json!({"kind": "adb", "tool": "tap", "args": {"x": 10, "y": 20}}),
        );
        assert!(
            serde_json::from_value::<Action>(json!({"kind": "adb", "tool": "tap", "x": 1}))
                .is_err()
        );
        let spec = ToolSpec {
            executor: "phone".into(),
            name: "battery_status".into(),
            description: "battery level".into(),
            args: json!({"type": "object", "properties": {}}),
        };
        let v = json!({"executor": "phone", "name": "battery_status",
                       "description": "battery level",
                       "args": {"type": "object", "properties": {}}});
        assert_eq!(serde_json::to_value(&spec).unwrap(), v);
        assert_eq!(serde_json::from_value::<ToolSpec>(v).unwrap(), spec);
    }

    #[test]
    fn sim_action_round_trips() {
        let a = Action::Sim {
            op: "mail.send".into(),
            args: json!({"to": "ana@example.com", "subject": "hi", "body": "{{t1.output}}"}),
        };
        let v = json!({"kind": "sim", "op": "mail.send",
                       "args": {"to": "ana@example.com", "subject": "hi", "body": "{{t1.output}}"}});
        assert_eq!(serde_json::to_value(&a).unwrap(), v);
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);
        assert_eq!(a.capability(), "sim");
        assert!(!a.uses_turns());
        // `args` may be left out.
        let bare = json!({"kind": "sim", "op": "clipboard.get"});
        assert_eq!(
            serde_json::from_value::<Action>(bare.clone()).unwrap(),
            Action::Sim {
                op: "clipboard.get".into(),
                args: serde_json::Value::Null
            }
        );
        assert_eq!(
            serde_json::to_value(Action::Sim {
                op: "clipboard.get".into(),
                args: serde_json::Value::Null
            })
            .unwrap(),
            bare
        );
        assert!(
            serde_json::from_value::<Action>(json!({"kind": "sim", "op": "x", "tool": "y"}))
                .is_err()
        );
    }

    #[test]
    fn retry_backoff_grows_caps_and_jitters() {
        let p = RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 350,
            ..RetryPolicy::default()
        };
        let base: Vec<u64> = (1..=4).map(|n| p.base_backoff_ms(n)).collect();
        assert_eq!(base, [100, 200, 350, 350]);
        assert_eq!(p.backoff_ms(1, 0.0), 80);
        assert_eq!(p.backoff_ms(1, 0.5), 100);
        assert!(p.backoff_ms(1, 0.999) <= 120);
        assert!(p.may_retry("exit_status", 2));
        assert!(!p.may_retry("exit_status", 3));
        assert!(!p.may_retry("policy_denied", 1));
        assert!(p.validate().is_ok());
        assert!(
            RetryPolicy {
                max_attempts: 0,
                ..p.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            RetryPolicy {
                multiplier: f64::NAN,
                ..p
            }
            .validate()
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
        for k in [EdgeKind::Success, EdgeKind::Completion, EdgeKind::Condition] {
            assert_eq!(EdgeKind::parse(k.as_str()), Some(k));
        }
    }
}
