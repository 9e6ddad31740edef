//! Agent⇄orchestrator WebSocket messages.
//!
//! Every frame is one JSON text frame holding one value of [`AgentMsg`] (agent → orchestrator) or
//! [`ServerMsg`] (orchestrator → agent), tagged by `"type"`. Unknown fields are refused, so a
//! typo on either side is an error rather than silently ignored data.
//!
//! A session: the agent connects to `/v1/agent` and sends `hello` first; the orchestrator answers
//! `welcome` (the connection is now bound to that device for its lifetime) or `refused` and closes.
//! Then the orchestrator sends `assign`; the agent answers `accept` or `reject`, may send
//! `progress`, and ends with `result`, which the orchestrator answers with `ack`. `heartbeat` flows
//! both ways; `cancel` asks the agent to stop an attempt; `error` reports a frame the receiver
//! refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::files::{FileRef, InputFile};
use crate::ids::{AttemptId, DeviceName, RequestId, TaskId};
use crate::task::{Action, ErrorInfo, TaskOutput, ToolSpec};

/// Messages from an agent to the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMsg {
    /// First frame of every connection: who the device is and what it can do.
    Hello {
        protocol_version: u32,
        device: DeviceName,
        token: String,
        kind: String,
        platform: String,
        capabilities: Vec<String>,
        max_concurrency: u32,
        /// Attempts this agent is still running (or holding an unacknowledged result for),
        /// from before a reconnect.
        #[serde(default)]
        held_attempts: Vec<AttemptId>,
        /// The operating system's version (`Debian GNU/Linux 13 (trixie); kernel 6.12.0`,
        /// `macOS 15.1`, `Android 14`), when the agent can tell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        os_version: Option<String>,
        /// The tools of its tool executors (`phone`, `adb`) with a JSON Schema for each one's
        /// arguments: what the planner may ask of this device beyond `shell`, `fs` and `http`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<ToolSpec>,
    },
    Heartbeat {},
    /// The agent has started the attempt.
    Accept {
        attempt_id: AttemptId,
    },
    /// The agent will not run the attempt.
    Reject {
        attempt_id: AttemptId,
        error: ErrorInfo,
    },
    Progress {
        attempt_id: AttemptId,
        message: String,
        /// For executors that work in turns (LLM steps): turns used so far by this attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turns_used: Option<u32>,
    },
    /// The attempt is near its turn limit and asks for `turns` more. Answered by `turns`.
    ExtendTurns {
        attempt_id: AttemptId,
        turns: u32,
    },
    /// The attempt ended. Kept in the agent's outbox until acknowledged.
    Result {
        attempt_id: AttemptId,
        status: ResultStatus,
        output: TaskOutput,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorInfo>,
        /// The files of the task's declared outputs, each already stored by the orchestrator
        /// (`PUT /v1/attempts/{attempt}/files/{name}`); only on `succeeded`. Absent from older
        /// agents, which then produce no files.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<FileRef>,
    },
}

/// How an attempt ended, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    Succeeded,
    Failed,
    Cancelled,
}

/// Messages from the orchestrator to an agent.
// `assign` is much the largest; frames are made one at a time and sent at once, so boxing it
// would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// The hello was accepted; the connection is bound to `device`.
    Welcome {
        protocol_version: u32,
        device: DeviceName,
        heartbeat_interval_ms: u64,
        /// Which of the hello's `held_attempts` the orchestrator still wants (the rest should
        /// be stopped and forgotten, their results are no longer needed).
        #[serde(default)]
        reattached: Vec<AttemptId>,
    },
    /// The hello was refused, or (`token_rotated`, `device_removed`) the device was cut off
    /// mid-session; the orchestrator closes the connection after this frame.
    Refused {
        error: ErrorInfo,
    },
    Heartbeat {},
    /// Run one attempt of a task.
    Assign {
        attempt_id: AttemptId,
        request_id: RequestId,
        task_id: TaskId,
        title: String,
        instruction: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<Action>,
        /// Outputs of the upstream tasks, by task id.
        #[serde(default)]
        inputs: BTreeMap<TaskId, TaskOutput>,
        /// Wall-clock deadline, milliseconds since the Unix epoch.
        deadline_ms: u64,
        max_turns: u32,
        /// The files of upstream tasks this attempt takes: fetch each into its
        /// `InputFile::local_path` before running (references to them were filled in with that
        /// path).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<InputFile>,
        /// The task's declared outputs (names, or globs in their last part): after the attempt
        /// succeeds, send each file before the result.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outputs: Vec<String>,
    },
    /// The answer to `extend_turns`: `granted` more turns (0 = refused, the request's pool is
    /// spent); `max_turns` is the attempt's limit now.
    Turns {
        attempt_id: AttemptId,
        granted: u32,
        max_turns: u32,
    },
    /// The result of this attempt is stored; the agent may drop it from its outbox.
    Ack {
        attempt_id: AttemptId,
    },
    /// Stop this attempt (kill its process group) and report it `cancelled`.
    Cancel {
        attempt_id: AttemptId,
        reason: String,
    },
    /// A frame the orchestrator refused. Fatal errors are followed by a close.
    Error {
        error: ErrorInfo,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Checks that `msg` serializes to exactly `frame` and that `frame` parses back to `msg`.
    fn check<T>(msg: T, frame: serde_json::Value)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_value(&msg).unwrap(), frame);
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), msg);
    }

    #[test]
    fn hello() {
        check(
            AgentMsg::Hello {
                protocol_version: 1,
                device: "laptop".into(),
                token: "tok".into(),
                kind: "laptop".into(),
                platform: "linux-x86_64".into(),
                capabilities: vec!["shell".into(), "fs".into()],
                max_concurrency: 4,
                held_attempts: vec!["a-1".into()],
                os_version: None,
                tools: vec![],
            },
            json!({"type": "hello", "protocol_version": 1, "device": "laptop", "token": "tok",
                   "kind": "laptop", "platform": "linux-x86_64", "capabilities": ["shell", "fs"],
                   "max_concurrency": 4, "held_attempts": ["a-1"]}),
        );
        // A phone's profile: its OS version and the tools it has, each with an argument schema.
        check(
            AgentMsg::Hello {
                protocol_version: 1,
                device: "pixel".into(),
                token: "tok".into(),
                kind: "phone".into(),
                platform: "android-aarch64".into(),
                capabilities: vec!["shell".into(), "phone".into()],
                max_concurrency: 2,
                held_attempts: vec![],
                os_version: Some("Android 14".into()),
                tools: vec![ToolSpec {
                    executor: "phone".into(),
                    name: "clipboard_set".into(),
                    description: "set the clipboard".into(),
                    args: json!({"type": "object", "properties": {"text": {"type": "string"}},
                                 "required": ["text"]}),
                }],
            },
            json!({"type": "hello", "protocol_version": 1, "device": "pixel", "token": "tok",
                   "kind": "phone", "platform": "android-aarch64",
                   "capabilities": ["shell", "phone"], "max_concurrency": 2,
                   "held_attempts": [], "os_version": "Android 14",
                   "tools": [{"executor": "phone", "name": "clipboard_set",
                              "description": "set the clipboard",
                              "args": {"type": "object",
                                       "properties": {"text": {"type": "string"}},
                                       "required": ["text"]}}]}),
        );
    }

    #[test]
    fn agent_messages() {
        check(AgentMsg::Heartbeat {}, json!({"type": "heartbeat"}));
        check(
            AgentMsg::Accept {
                attempt_id: "a-1".into(),
            },
            json!({"type": "accept", "attempt_id": "a-1"}),
        );
        check(
            AgentMsg::Reject {
                attempt_id: "a-1".into(),
                error: ErrorInfo::new("busy", "at capacity"),
            },
            json!({"type": "reject", "attempt_id": "a-1",
                   "error": {"code": "busy", "message": "at capacity"}}),
        );
        check(
            AgentMsg::Progress {
                attempt_id: "a-1".into(),
                message: "started".into(),
                turns_used: None,
            },
            json!({"type": "progress", "attempt_id": "a-1", "message": "started"}),
        );
        check(
            AgentMsg::Progress {
                attempt_id: "a-1".into(),
                message: "step 3".into(),
                turns_used: Some(3),
            },
            json!({"type": "progress", "attempt_id": "a-1", "message": "step 3", "turns_used": 3}),
        );
        check(
            AgentMsg::ExtendTurns {
                attempt_id: "a-1".into(),
                turns: 4,
            },
            json!({"type": "extend_turns", "attempt_id": "a-1", "turns": 4}),
        );
        check(
            AgentMsg::Result {
                attempt_id: "a-1".into(),
                status: ResultStatus::Succeeded,
                output: TaskOutput {
                    summary: "alpha".into(),
                    data: json!({"stdout": "alpha\n", "stderr": "", "exit_code": 0}),
                },
                error: None,
                files: vec![],
            },
            json!({"type": "result", "attempt_id": "a-1", "status": "succeeded",
                   "output": {"summary": "alpha",
                              "data": {"stdout": "alpha\n", "stderr": "", "exit_code": 0}}}),
        );
        check(
            AgentMsg::Result {
                attempt_id: "a-2".into(),
                status: ResultStatus::Failed,
                output: TaskOutput::default(),
                error: Some(ErrorInfo::new("exit_status", "exited with 1")),
                files: vec![],
            },
            json!({"type": "result", "attempt_id": "a-2", "status": "failed",
                   "output": {"summary": "", "data": null},
                   "error": {"code": "exit_status", "message": "exited with 1"}}),
        );
    }

    #[test]
    fn server_messages() {
        check(
            ServerMsg::Welcome {
                protocol_version: 1,
                device: "laptop".into(),
                heartbeat_interval_ms: 5000,
                reattached: vec![],
            },
            json!({"type": "welcome", "protocol_version": 1, "device": "laptop",
                   "heartbeat_interval_ms": 5000, "reattached": []}),
        );
        check(
            ServerMsg::Refused {
                error: ErrorInfo::new("bad_token", "unknown device or wrong token"),
            },
            json!({"type": "refused",
                   "error": {"code": "bad_token", "message": "unknown device or wrong token"}}),
        );
        // Mid-session, to the connection of a device whose token was rotated.
        check(
            ServerMsg::Refused {
                error: ErrorInfo::new(
                    "token_rotated",
                    "the token of device `pixel` was replaced (`weft device rotate`); this one no longer works",
                ),
            },
            json!({"type": "refused", "error": {"code": "token_rotated",
                   "message": "the token of device `pixel` was replaced (`weft device rotate`); this one no longer works"}}),
        );
        check(ServerMsg::Heartbeat {}, json!({"type": "heartbeat"}));
        let mut inputs = BTreeMap::new();
        inputs.insert(
            TaskId::from("t1"),
            TaskOutput {
                summary: "one".into(),
                data: json!({"stdout": "one\n"}),
            },
        );
        check(
            ServerMsg::Assign {
                attempt_id: "a-1".into(),
                request_id: "r-1".into(),
                task_id: "t2".into(),
                title: "run `echo two`".into(),
                instruction: "run \"echo two\"".into(),
                action: Some(Action::Shell {
                    command: "echo two".into(),
                }),
                inputs,
                deadline_ms: 1_700_000_000_000,
                max_turns: 1,
                files: vec![],
                outputs: vec![],
            },
            json!({"type": "assign", "attempt_id": "a-1", "request_id": "r-1", "task_id": "t2",
                   "title": "run `echo two`", "instruction": "run \"echo two\"",
                   "action": {"kind": "shell", "command": "echo two"},
                   "inputs": {"t1": {"summary": "one", "data": {"stdout": "one\n"}}},
                   "deadline_ms": 1_700_000_000_000u64, "max_turns": 1}),
        );
        check(
            ServerMsg::Turns {
                attempt_id: "a-1".into(),
                granted: 4,
                max_turns: 9,
            },
            json!({"type": "turns", "attempt_id": "a-1", "granted": 4, "max_turns": 9}),
        );
        check(
            ServerMsg::Ack {
                attempt_id: "a-1".into(),
            },
            json!({"type": "ack", "attempt_id": "a-1"}),
        );
        check(
            ServerMsg::Cancel {
                attempt_id: "a-1".into(),
                reason: "request cancelled".into(),
            },
            json!({"type": "cancel", "attempt_id": "a-1", "reason": "request cancelled"}),
        );
        check(
            ServerMsg::Error {
                error: ErrorInfo::new("bad_frame", "expected hello"),
            },
            json!({"type": "error", "error": {"code": "bad_frame", "message": "expected hello"}}),
        );
    }

    /// Files between devices (docs/artifacts.md): the `assign` of a task that takes a file of
    /// t1 and declares outputs, and the `result` that lists the files it sent.
    #[test]
    fn files_in_assign_and_result() {
        let photo = FileRef {
            name: "photo.jpg".into(),
            size: 5_242_880,
            sha256: HASH.into(),
        };
        check(
            ServerMsg::Assign {
                attempt_id: "a-2".into(),
                request_id: "r-1".into(),
                task_id: "t2".into(),
                title: "shrink the photo".into(),
                instruction: "shrink the photo".into(),
                action: Some(Action::Shell {
                    command: "convert 'inputs/a-2/t1/photo.jpg' -resize 50% small.jpg".into(),
                }),
                inputs: BTreeMap::new(),
                deadline_ms: 1_700_000_000_000,
                max_turns: 1,
                files: vec![InputFile {
                    task: "t1".into(),
                    file: photo.clone(),
                }],
                outputs: vec!["small.jpg".into()],
            },
            json!({"type": "assign", "attempt_id": "a-2", "request_id": "r-1", "task_id": "t2",
                   "title": "shrink the photo", "instruction": "shrink the photo",
                   "action": {"kind": "shell",
                              "command": "convert 'inputs/a-2/t1/photo.jpg' -resize 50% small.jpg"},
                   "inputs": {}, "deadline_ms": 1_700_000_000_000u64, "max_turns": 1,
                   "files": [{"task": "t1",
                              "file": {"name": "photo.jpg", "size": 5_242_880, "sha256": HASH}}],
                   "outputs": ["small.jpg"]}),
        );
        check(
            AgentMsg::Result {
                attempt_id: "a-1".into(),
                status: ResultStatus::Succeeded,
                output: TaskOutput::default(),
                error: None,
                files: vec![photo],
            },
            json!({"type": "result", "attempt_id": "a-1", "status": "succeeded",
                   "output": {"summary": "", "data": null},
                   "files": [{"name": "photo.jpg", "size": 5_242_880, "sha256": HASH}]}),
        );
        // An older agent's result, without `files`, is still read (as no files).
        let old = json!({"type": "result", "attempt_id": "a-1", "status": "succeeded",
                         "output": {"summary": "", "data": null}});
        let AgentMsg::Result { files, .. } = serde_json::from_value(old).unwrap() else {
            panic!("not a result");
        };
        assert!(files.is_empty());
        // A file name that leaves the workdir is refused when read.
        let bad = json!({"type": "result", "attempt_id": "a-1", "status": "succeeded",
                         "output": {"summary": "", "data": null},
                         "files": [{"name": "../x", "size": 1, "sha256": HASH}]});
        assert!(serde_json::from_value::<AgentMsg>(bad).is_err());
        let input = InputFile {
            task: "t1".into(),
            file: FileRef {
                name: "build/app.apk".into(),
                size: 1,
                sha256: HASH.into(),
            },
        };
        assert_eq!(
            input.local_path(&"a-2".into()),
            "inputs/a-2/t1/build/app.apk"
        );
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// An instruction-only task (docs/protocol.md): no `action`, run by the device's LLM
    /// executor.
    #[test]
    fn instruction_only_assign() {
        let inputs = BTreeMap::from([(
            TaskId::from("t2"),
            TaskOutput {
                summary: "200".into(),
                data: json!({"status": 200, "body": "...", "truncated": false}),
            },
        )]);
        check(
            ServerMsg::Assign {
                attempt_id: "a-2".into(),
                request_id: "r-1".into(),
                task_id: "t3".into(),
                title: "summarise the logs".into(),
                instruction: "summarise the errors in the logs t2 fetched".into(),
                action: None,
                inputs,
                deadline_ms: 1_700_000_000_000,
                max_turns: 20,
                files: vec![],
                outputs: vec![],
            },
            json!({"type": "assign", "attempt_id": "a-2", "request_id": "r-1", "task_id": "t3",
                   "title": "summarise the logs",
                   "instruction": "summarise the errors in the logs t2 fetched",
                   "inputs": {"t2": {"summary": "200",
                                     "data": {"status": 200, "body": "...", "truncated": false}}},
                   "deadline_ms": 1_700_000_000_000u64, "max_turns": 20}),
        );
    }

    #[test]
    fn refuses_unknown_fields_and_types() {
        assert!(serde_json::from_str::<AgentMsg>(r#"{"type":"heartbeat","x":1}"#).is_err());
        assert!(serde_json::from_str::<AgentMsg>(r#"{"type":"launch"}"#).is_err());
        assert!(serde_json::from_str::<AgentMsg>(r#"{"attempt_id":"a"}"#).is_err());
    }
}
