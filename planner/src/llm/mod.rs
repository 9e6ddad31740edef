//! The LLM planner and the chat-completions client it uses.
//!
//! - [`client`]: an OpenAI-compatible chat-completions client (timeouts, retries, `Retry-After`,
//!   `response_format` with a fallback, stable error codes). It has no weft types in it, so the
//!   device agent's LLM executor can use it as it is.
//! - [`cassette`]: record exchanges to a file, or answer from one with no network.
//! - [`LlmPlanner`]: plans a request into a graph, and revises the graph after results, by asking
//!   the model for JSON and checking every answer (schema, devices and capabilities, acyclic,
//!   references upstream). A refused answer goes back to the model with the specific errors, at
//!   most [`LlmPlannerConfig::repair_rounds`] times.
//! - `testing` (feature `test-support`): a scripted OpenAI-compatible server for tests.
//!
//! What is sent to the model: the request text; the online devices' name, kind, platform and
//! capabilities; when revising, the graph (tasks, statuses, edges) and each ended task's output
//! and error, cut to [`LlmPlannerConfig::output_limit`] bytes and marked as untrusted data.
//! Nothing else: no tokens, ids of attempts, times or file contents beyond those outputs.

mod actions;
pub mod cassette;
pub mod client;
mod mend;
mod parse;
mod planner;
mod prompt;
mod refuse;
mod review;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod transfer;

use std::sync::Mutex;

use serde_json::Value;

pub use self::cassette::CassetteMode;
pub use self::client::{ChatRequest, Client, ClientConfig, Completion, ResponseFormat, Secret};
pub use self::planner::{LlmPlanner, LlmPlannerConfig};
pub use self::refuse::before_planning as refusal_before_planning;

/// Why a planner called the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Turning a request into its first graph.
    Plan,
    /// Changing a running graph after results.
    Revise,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Plan => "plan",
            Purpose::Revise => "revise",
        }
    }
}

/// One call to the model, as a planner made it: what was asked, what came back, what it cost.
/// Holds no API key (request bodies never do).
#[derive(Debug, Clone)]
pub struct LlmCall {
    pub purpose: Purpose,
    /// The revision round (1-based); 0 when planning.
    pub round: u32,
    /// 1 for the first question, 2… for repairs after a refused answer.
    pub attempt: u32,
    pub model: String,
    /// The request body sent (or, if the call failed before one was built, the messages).
    pub request: Value,
    /// The response body received, when there was one.
    pub response: Option<Value>,
    /// Why the call failed, or why its answer was refused (`code`, `message`).
    pub error: Option<(String, String)>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub latency_ms: u64,
    /// Milliseconds since the Unix epoch when the call started.
    pub at_ms: u64,
}

/// Where a planner leaves the [`LlmCall`]s it makes during one `plan` or `revise`, so that the
/// caller can store them (whether the planning succeeded or not).
#[derive(Debug, Default)]
pub struct CallLog(Mutex<Vec<LlmCall>>);

impl CallLog {
    pub fn push(&self, call: LlmCall) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    /// The calls recorded so far, leaving the log empty.
    pub fn take(&self) -> Vec<LlmCall> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Marks the last call's answer as refused (the answer parsed, but was not acceptable).
    pub(crate) fn refuse_last(&self, code: &str, message: String) {
        let mut calls = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = calls.last_mut()
            && c.error.is_none()
        {
            c.error = Some((code.to_owned(), message));
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
