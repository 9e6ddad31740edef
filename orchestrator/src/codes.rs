//! Every stable error code a client or an agent can see, in one table: where it is seen (an
//! HTTP answer with its status, a WebSocket frame, a task, attempt or request), and what it
//! means. `docs/errors.md` is this table written out; a test keeps the two equal and checks
//! that every code the orchestrator's source uses is here.

/// Where a code is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// In the answer to a REST call, with this HTTP status.
    Http(u16),
    /// In an `error` frame on the agent WebSocket, or as the reason a hello was refused.
    Frame,
    /// On a task, an attempt or a request (views and events), set by the orchestrator.
    Task,
    /// Reported by an agent for an attempt (weft's agent; others may report more).
    Agent,
}

#[derive(Debug, Clone, Copy)]
pub struct Code {
    pub code: &'static str,
    pub seen: &'static [Seen],
    pub meaning: &'static str,
}

use Seen::{Agent, Frame, Http, Task};

const fn code(code: &'static str, seen: &'static [Seen], meaning: &'static str) -> Code {
    Code {
        code,
        seen,
        meaning,
    }
}

/// The table, by place and then by code.
pub const CODES: &[Code] = &[
    // Requests, devices and edits (REST).
    code(
        "invalid_json",
        &[Http(400)],
        "the body is not the JSON the route takes",
    ),
    code("invalid_body", &[Http(400)], "the body could not be read"),
    code(
        "invalid_query",
        &[Http(400)],
        "a query string the route does not take (an unknown parameter, a value out of range)",
    ),
    code("empty_request", &[Http(400)], "a request with no text"),
    code(
        "invalid_device_name",
        &[Http(400)],
        "a device name that is not 1-64 letters, digits, `-` or `_`",
    ),
    code(
        "invalid_device_kind",
        &[Http(400)],
        "a device kind that is not a plain lowercase word",
    ),
    code(
        "missing_api_token",
        &[Http(401)],
        "no API token (or session cookie) with a protected call",
    ),
    code("bad_api_token", &[Http(401)], "a wrong API token"),
    code(
        "session_expired",
        &[Http(401)],
        "a browser session that ended",
    ),
    code(
        "api_token_required",
        &[Http(403)],
        "a call only the API token may make (not a browser session)",
    ),
    code(
        "cross_site_request",
        &[Http(403)],
        "a state-changing browser call from another origin",
    ),
    code(
        "missing_csrf_token",
        &[Http(403)],
        "a state-changing browser call without the CSRF token",
    ),
    code(
        "bad_csrf_token",
        &[Http(403)],
        "a state-changing browser call with a wrong CSRF token",
    ),
    code(
        "not_found",
        &[Http(404), Agent],
        "no such route (an agent: a simulated app has no such item)",
    ),
    code("request_not_found", &[Http(404)], "no request with that id"),
    code(
        "task_not_found",
        &[Http(404)],
        "the request has no task with that id",
    ),
    code("device_not_found", &[Http(404)], "no device with that name"),
    code(
        "body_timeout",
        &[Http(408)],
        "the body did not arrive in time",
    ),
    code(
        "version_conflict",
        &[Http(409)],
        "an edit made against an older version of the graph: read it again, then retry",
    ),
    code(
        "request_finished",
        &[Http(409)],
        "the request has ended and can no longer change",
    ),
    code(
        "request_cancelling",
        &[Http(409)],
        "the request is being cancelled",
    ),
    code("task_finished", &[Http(409)], "the task has already ended"),
    code(
        "device_exists",
        &[Http(409)],
        "a device with that name is already registered",
    ),
    code(
        "body_too_large",
        &[Http(413)],
        "the body is larger than the route takes",
    ),
    code(
        "request_too_large",
        &[Http(413)],
        "a request text longer than allowed",
    ),
    code(
        "plan_too_large",
        &[Http(413)],
        "a planner's plan with more tasks or edges than a plan may have",
    ),
    code(
        "unsupported_media_type",
        &[Http(415)],
        "a JSON body without `content-type: application/json`",
    ),
    code(
        "host_not_allowed",
        &[Http(421)],
        "a `Host` the server does not answer to",
    ),
    code("invalid_plan", &[Http(422)], "the plan breaks a graph rule"),
    code(
        "plan_invalid",
        &[Http(422)],
        "the model's plan stayed invalid after its repair rounds",
    ),
    code(
        "plan_refused",
        &[Http(422)],
        "the plan breaks a rule of the request (the review)",
    ),
    code(
        "unplannable",
        &[Http(422)],
        "the rules planner did not understand the text",
    ),
    code(
        "no_online_device",
        &[Http(422)],
        "no device is online to plan for",
    ),
    code(
        "revision_invalid",
        &[Http(422)],
        "the model's revision stayed invalid",
    ),
    code(
        "unknown_device",
        &[Http(422)],
        "a task names a device that is not registered",
    ),
    code(
        "unknown_capability",
        &[Http(422)],
        "no (named) device advertises a capability a task needs",
    ),
    code(
        "empty_graph",
        &[Http(422)],
        "a submitted graph with no tasks",
    ),
    code(
        "invalid_graph",
        &[Http(422)],
        "a submitted graph that is not well formed",
    ),
    code("empty_edit", &[Http(422)], "an edit batch with no ops"),
    code(
        "too_many_ops",
        &[Http(422)],
        "an edit batch with more ops than allowed",
    ),
    code(
        "too_many_tasks",
        &[Http(422)],
        "a graph with more tasks than allowed",
    ),
    code(
        "invalid_task_id",
        &[Http(422)],
        "a task id that is not 1-64 letters, digits, `-` or `_`",
    ),
    code(
        "invalid_task",
        &[Http(422)],
        "a task with neither an instruction nor an action, or with declared files that are not names",
    ),
    code("duplicate_task", &[Http(422)], "a task id used twice"),
    code(
        "unknown_task",
        &[Http(422)],
        "an op or edge names a task that does not exist",
    ),
    code(
        "unknown_edge",
        &[Http(422)],
        "an op names an edge that does not exist",
    ),
    code(
        "task_not_editable",
        &[Http(422)],
        "the task has started or ended",
    ),
    code(
        "edge_into_started_task",
        &[Http(422)],
        "a new edge into a task that has started",
    ),
    code("edge_exists", &[Http(422)], "the edge already exists"),
    code("self_edge", &[Http(422)], "an edge from a task to itself"),
    code(
        "cycle",
        &[Http(422)],
        "the graph would no longer be acyclic",
    ),
    code(
        "invalid_condition",
        &[Http(422)],
        "a condition edge without a valid condition, or a condition on another kind",
    ),
    code(
        "bad_reference",
        &[Http(422), Task],
        "a reference to a task that is not upstream, or a malformed one; at dispatch, one that cannot be filled in",
    ),
    // Files between devices (issue 17; the blob store, `blobs/`).
    code(
        "invalid_blob_name",
        &[Http(400)],
        "a file's name in the blob store (its SHA-256) that is not 64 lowercase hex digits",
    ),
    code(
        "blob_not_found",
        &[Http(404)],
        "no stored file with that SHA-256",
    ),
    code(
        "blob_too_large",
        &[Http(413)],
        "an uploaded file larger than the orchestrator takes; nothing was stored",
    ),
    code(
        "blob_mismatch",
        &[Http(422)],
        "an uploaded file that is not the size or SHA-256 its sender declared; nothing was stored",
    ),
    code(
        "blob_corrupt",
        &[Http(500)],
        "a stored file whose bytes no longer match its SHA-256: it is not served (upload it again)",
    ),
    code(
        "invalid_file_name",
        &[Http(400)],
        "a file name that is not relative to a workdir (empty, absolute, `..`, `\\`, NUL, a glob)",
    ),
    code(
        "bad_device_token",
        &[Http(401)],
        "a file route without the device token of a registered device",
    ),
    code(
        "attempt_not_live",
        &[Http(409)],
        "an upload for an attempt that is not running (it ended, or never was)",
    ),
    code(
        "blob_not_assigned",
        &[Http(403)],
        "a download of a blob that no live attempt of the asking device takes as input",
    ),
    code(
        "file_not_found",
        &[Http(404)],
        "no file with that SHA-256 among the request's files",
    ),
    code(
        "disk_full",
        &[Http(507)],
        "the orchestrator's disk is full: the file was not stored",
    ),
    code(
        "rate_limited",
        &[Http(429), Frame],
        "too many failed authentications from this address: wait `Retry-After`",
    ),
    code(
        "internal",
        &[Http(500)],
        "the server failed; the cause is in its log",
    ),
    code(
        "llm_bad_response",
        &[Http(502)],
        "the planner's model answered something unusable",
    ),
    code(
        "llm_http_error",
        &[Http(502)],
        "the planner's model endpoint answered with an error",
    ),
    code(
        "llm_unreachable",
        &[Http(502)],
        "the planner's model endpoint could not be reached",
    ),
    code(
        "llm_config",
        &[Http(502)],
        "the LLM planner is not configured correctly",
    ),
    code(
        "llm_cassette_miss",
        &[Http(502)],
        "replaying a cassette that has no answer for this call",
    ),
    code(
        "llm_cassette_error",
        &[Http(502)],
        "the cassette file could not be read or written",
    ),
    code(
        "shutting_down",
        &[Http(503), Frame],
        "the orchestrator is shutting down",
    ),
    code(
        "no_leader",
        &[Http(503)],
        "a standby replica was asked for a write (or the agent endpoint) while no replica holds the lead (a takeover under way; `Retry-After: 1`); with a leader it answers `307` to the leader's URL instead (docs/replicas.md)",
    ),
    code(
        "llm_timeout",
        &[Http(504)],
        "the planner's model did not answer in time",
    ),
    // The agent WebSocket.
    code(
        "bad_token",
        &[Frame],
        "unknown device or wrong device token",
    ),
    code(
        "token_rotated",
        &[Frame],
        "the device token was replaced (`weft device rotate`): the connection made with it is \
         closed and it is refused from then on; enroll the device again with the new line",
    ),
    code(
        "device_removed",
        &[Frame],
        "the device was removed (`weft device remove`): its connection is closed and its token \
         refused from then on",
    ),
    code(
        "unsupported_version",
        &[Frame],
        "the agent speaks another protocol version",
    ),
    code(
        "already_connected",
        &[Frame],
        "the device already has a live connection",
    ),
    code(
        "expected_hello",
        &[Frame],
        "the first frame was not a hello",
    ),
    code("hello_timeout", &[Frame], "no hello in time"),
    code(
        "bad_frame",
        &[Frame],
        "a frame that is not a valid message here",
    ),
    code("frame_too_large", &[Frame], "a frame larger than allowed"),
    code(
        "heartbeat_timeout",
        &[Frame],
        "the agent sent nothing for 2 heartbeat intervals",
    ),
    code(
        "not_your_attempt",
        &[Http(403), Frame],
        "a frame about an attempt this device does not hold, or an upload for one",
    ),
    // Tasks, attempts and requests.
    code(
        "cancelled",
        &[Task, Agent],
        "cancelled by a user (the agent: the attempt was stopped)",
    ),
    code(
        "device_lost",
        &[Task],
        "the device was gone longer than the grace window, went silent, or came back without the attempt",
    ),
    code(
        "assign_unanswered",
        &[Task],
        "the device stayed connected but neither accepted nor rejected the assignment within 3 heartbeat intervals and at least 30 s (an agent too old to read it): placed again at once, elsewhere if possible",
    ),
    code("timeout", &[Task, Agent], "the attempt passed its deadline"),
    code("killed", &[Agent], "the command was killed by a signal"),
    code(
        "task_timeout",
        &[Task],
        "the task ran out of its overall time",
    ),
    code(
        "no_device",
        &[Task],
        "no device that could run the task had a free slot in time",
    ),
    code(
        "budget_exhausted",
        &[Task, Agent],
        "the request's turn budget is spent",
    ),
    code(
        "upstream_failed",
        &[Task],
        "skipped: an upstream task did not succeed",
    ),
    code(
        "condition_false",
        &[Task],
        "skipped: a condition on an upstream task did not hold",
    ),
    code(
        "failed",
        &[Task],
        "the device reported a failure without a code",
    ),
    code(
        "tasks_failed",
        &[Task],
        "the request ended with failed tasks",
    ),
    code(
        "tasks_cancelled",
        &[Task],
        "the request ended with cancelled tasks",
    ),
    // Reported by agents.
    code(
        "busy",
        &[Agent],
        "the device is full: the task is placed again and it does not count as an attempt",
    ),
    code(
        "agent_stopping",
        &[Agent],
        "the agent is stopping: retried at once elsewhere",
    ),
    code(
        "unreadable_assign",
        &[Agent],
        "the agent could not read the assignment (an action newer than the agent): placed again at once, elsewhere if possible",
    ),
    code(
        "policy_denied",
        &[Agent],
        "the device owner's policy refuses the action",
    ),
    code(
        "exit_status",
        &[Agent],
        "the command exited with a non-zero status",
    ),
    code(
        "http_status",
        &[Agent],
        "the HTTP GET answered with an error status",
    ),
    code(
        "http_unreachable",
        &[Agent],
        "the HTTP GET could not reach its host",
    ),
    code("spawn_failed", &[Agent], "the command could not be started"),
    code(
        "wait_failed",
        &[Agent],
        "the command could not be waited for",
    ),
    code(
        "workdir_unavailable",
        &[Agent],
        "the agent's workdir cannot be used",
    ),
    code(
        "path_outside_workdir",
        &[Agent],
        "a path that leaves the workdir",
    ),
    code(
        "content_too_large",
        &[Agent],
        "content larger than the policy allows",
    ),
    code(
        "invalid_action",
        &[Agent],
        "an action the executor cannot run as given",
    ),
    code(
        "unsupported_action",
        &[Agent],
        "an action this device does not run",
    ),
    code(
        "no_executor",
        &[Agent],
        "no executor for this action on this device",
    ),
    code(
        "invalid_url",
        &[Agent],
        "a URL that is not allowed or not valid",
    ),
    code("io_error", &[Agent], "a file could not be read or written"),
    code(
        "output_missing",
        &[Agent],
        "a file the task declared in its outputs is not in its workdir",
    ),
    code(
        "file_not_produced",
        &[Task],
        "a reference to a file (`{{t1.files.NAME}}`) that the upstream task did not produce",
    ),
    code(
        "upload_failed",
        &[Agent],
        "an output file could not be sent to the orchestrator (retried)",
    ),
    code(
        "download_failed",
        &[Agent],
        "an input file could not be fetched from the orchestrator (retried)",
    ),
    code(
        "download_corrupt",
        &[Agent],
        "an input file did not arrive with its size and SHA-256; it was deleted (retried)",
    ),
    code(
        "adb_failed",
        &[Agent],
        "the attached Android device refused or failed",
    ),
    code(
        "sim_state_corrupt",
        &[Agent],
        "a simulated device's state file is damaged",
    ),
];

/// The table entry of `code`.
pub fn find(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// The HTTP status of a code answered to REST calls; 500 for a code the table does not give
/// one (a test keeps every code the server answers with in the table).
pub fn http_status(code: &str) -> u16 {
    find(code)
        .and_then(|c| {
            c.seen.iter().find_map(|s| match s {
                Http(status) => Some(*status),
                _ => None,
            })
        })
        .unwrap_or(500)
}

/// The table as `docs/errors.md` shows it.
pub fn markdown() -> String {
    let mut out = String::from("| code | seen | meaning |\n|---|---|---|\n");
    for c in CODES {
        let seen: Vec<String> = c
            .seen
            .iter()
            .map(|s| match s {
                Http(status) => format!("HTTP {status}"),
                Frame => "frame".to_owned(),
                Task => "task".to_owned(),
                Agent => "agent".to_owned(),
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            c.code,
            seen.join(", "),
            c.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::engine;

    const BEGIN: &str = "<!-- the table: generated from orchestrator/src/codes.rs -->\n";
    const END: &str = "<!-- end of the table -->";

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn docs_errors_md_is_the_table() {
        let path = root().join("docs/errors.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("docs/errors.md lacks the table's markers");
        };
        let written = &doc[b + BEGIN.len()..e];
        if written != markdown() && std::env::var_os("WEFT_BLESS").is_some() {
            let new = format!("{}{}{}", &doc[..b + BEGIN.len()], markdown(), &doc[e..]);
            std::fs::write(&path, new).unwrap();
            return;
        }
        assert_eq!(
            written,
            markdown(),
            "docs/errors.md: rerun with WEFT_BLESS=1"
        );
    }

    #[test]
    fn each_code_is_listed_once_with_at_most_one_status() {
        for (i, c) in CODES.iter().enumerate() {
            assert!(
                !CODES[..i].iter().any(|d| d.code == c.code),
                "{} twice",
                c.code
            );
            let statuses = c.seen.iter().filter(|s| matches!(s, Http(_))).count();
            assert!(statuses <= 1, "{}", c.code);
            assert!(!c.seen.is_empty(), "{}", c.code);
        }
    }

    /// Every variant, once (the match makes a new variant a compile error here).
    fn every_refusal() -> Vec<engine::Error> {
        use engine::Error as E;
        let all = vec![
            E::ShuttingDown,
            E::Gone,
            E::RequestNotFound("r".into()),
            E::RequestFinished("r".into()),
            E::RequestCancelling("r".into()),
            E::VersionConflict {
                current: 2,
                expected: 1,
            },
            E::refused("cycle", "x"),
            E::TaskNotFound {
                request: "r".into(),
                task: "t".into(),
            },
            E::TaskFinished {
                task: "t".into(),
                status: weft_protocol::TaskStatus::Failed,
            },
            E::InvalidDeviceName,
            E::InvalidDeviceKind,
            E::DeviceExists("d".into()),
            E::DeviceNotFound("d".into()),
            E::BadDeviceToken,
            E::AttemptNotLive("a".into()),
            E::NotYourAttempt {
                attempt: "a".into(),
                device: "d".into(),
            },
            E::BlobNotAssigned {
                sha256: "0".repeat(64),
                device: "d".into(),
            },
        ];
        for e in &all {
            match e {
                E::ShuttingDown
                | E::Gone
                | E::RequestNotFound(_)
                | E::RequestFinished(_)
                | E::RequestCancelling(_)
                | E::VersionConflict { .. }
                | E::Refused(_)
                | E::TaskNotFound { .. }
                | E::TaskFinished { .. }
                | E::InvalidDeviceName
                | E::InvalidDeviceKind
                | E::DeviceExists(_)
                | E::DeviceNotFound(_)
                | E::BadDeviceToken
                | E::AttemptNotLive(_)
                | E::NotYourAttempt { .. }
                | E::BlobNotAssigned { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_engine_refusal_has_an_http_status() {
        let answered: Vec<String> = every_refusal()
            .into_iter()
            .map(|e| {
                let api = crate::ApiError::from(e);
                format!("{} {}", api.status.as_u16(), api.code)
            })
            .collect();
        assert_eq!(
            answered,
            [
                "503 shutting_down",
                "503 shutting_down",
                "404 request_not_found",
                "409 request_finished",
                "409 request_cancelling",
                "409 version_conflict",
                "422 cycle",
                "404 task_not_found",
                "409 task_finished",
                "400 invalid_device_name",
                "400 invalid_device_kind",
                "409 device_exists",
                "404 device_not_found",
                "401 bad_device_token",
                "409 attempt_not_live",
                "403 not_your_attempt",
                "403 blob_not_assigned",
            ]
        );
    }

    /// The codes written in `dir`'s sources after one of `calls` (the first string literal
    /// within the call), with the HTTP status the call gives when it names one. Test code is
    /// left out.
    fn codes_in(dir: &Path, calls: &[(&str, Option<u16>)]) -> Vec<(String, Option<u16>, String)> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !name.ends_with(".rs") || name.contains("tests") || name == "properties.rs" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                // One space for any run of whitespace: calls look the same however wrapped.
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                for (call, status) in calls {
                    for (at, _) in text.match_indices(call) {
                        let rest = &text[at + call.len()..];
                        let window = &rest[..rest.len().min(120)];
                        let status = status.or_else(|| named_status(window));
                        // The code is the call's first argument (after a status, if the
                        // call names one), written as a literal.
                        let arg = if call.ends_with('"') {
                            window
                        } else {
                            let mut arg = window.trim_start();
                            if arg.starts_with("StatusCode::") {
                                arg = arg.split_once(',').map_or("", |(_, rest)| rest);
                            }
                            match arg.trim_start().strip_prefix('"') {
                                Some(arg) => arg,
                                None => continue,
                            }
                        };
                        let lit: String = arg.chars().take_while(|c| *c != '"').collect();
                        if !lit.is_empty()
                            && lit.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        {
                            found.push((lit, status, path.display().to_string()));
                        }
                    }
                }
            }
        }
        found
    }

    /// `StatusCode::X` at the start of a call's arguments, as a number.
    fn named_status(args: &str) -> Option<u16> {
        let name = args.trim_start().strip_prefix("StatusCode::")?;
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        let known = [
            ("BAD_REQUEST", 400),
            ("UNAUTHORIZED", 401),
            ("FORBIDDEN", 403),
            ("NOT_FOUND", 404),
            ("REQUEST_TIMEOUT", 408),
            ("CONFLICT", 409),
            ("PAYLOAD_TOO_LARGE", 413),
            ("UNSUPPORTED_MEDIA_TYPE", 415),
            ("MISDIRECTED_REQUEST", 421),
            ("UNPROCESSABLE_ENTITY", 422),
            ("TOO_MANY_REQUESTS", 429),
            ("INTERNAL_SERVER_ERROR", 500),
            ("SERVICE_UNAVAILABLE", 503),
        ];
        known.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    fn check_listed(found: &[(String, Option<u16>, String)]) {
        assert!(found.len() > 20, "the scan found almost nothing: {found:?}");
        let mut wrong = Vec::new();
        for (code, status, file) in found {
            match (find(code), status) {
                (None, _) => wrong.push(format!("`{code}` ({file}) is not in codes::CODES")),
                (Some(c), Some(status)) if !c.seen.contains(&Http(*status)) => wrong.push(format!(
                    "`{code}` ({file}) is answered with {status}, the table says {:?}",
                    c.seen
                )),
                _ => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_code_the_orchestrator_writes_is_in_the_table() {
        let calls = [
            ("ApiError::new(", None),
            ("ApiError::bad_request(", Some(400)),
            ("ApiError::not_found(", Some(404)),
            ("ApiError::conflict(", Some(409)),
            ("ApiError::unprocessable(", Some(422)),
            ("forbidden(", Some(403)),
            ("ErrorInfo::new(", None),
            ("err(i, ", Some(422)),
            ("err( i, ", Some(422)),
            ("Error::refused(", Some(422)),
            ("code: \"", None),
        ];
        check_listed(&codes_in(&root().join("orchestrator/src"), &calls));
    }

    #[test]
    fn every_code_weft_s_agent_reports_is_in_the_table() {
        let calls = [
            ("Outcome::failed(", None),
            ("Outcome::failed_with(", None),
            ("ErrorInfo::new(", None),
        ];
        check_listed(&codes_in(&root().join("device-agent/src"), &calls));
    }
}
