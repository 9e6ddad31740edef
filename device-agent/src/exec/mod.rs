//! Executors: the code that actually does an action on this device.
//!
//! Each executor turns one [`Action`] into an [`Outcome`]. Executors never panic on input and
//! bound everything they keep (output sizes) and everything they wait for (the caller drops the
//! future at the attempt's deadline or on cancel; dropping a shell run kills its process group).

mod fs;
mod http;
mod shell;
mod steps;

use std::path::Path;

use tokio::sync::{mpsc, oneshot};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{Action, ErrorInfo, TaskOutput};

/// How an attempt ended, ready to become a `result` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ResultStatus,
    pub output: TaskOutput,
    pub error: Option<ErrorInfo>,
}

impl Outcome {
    pub fn succeeded(summary: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            status: ResultStatus::Succeeded,
            output: TaskOutput {
                summary: summary.into(),
                data,
            },
            error: None,
        }
    }

    pub fn failed(code: &str, message: impl Into<String>) -> Self {
        Self::failed_with(code, message, TaskOutput::default())
    }

    pub fn failed_with(code: &str, message: impl Into<String>, output: TaskOutput) -> Self {
        Self {
            status: ResultStatus::Failed,
            output,
            error: Some(ErrorInfo::new(code, message)),
        }
    }

    pub fn cancelled(reason: &str) -> Self {
        Self {
            status: ResultStatus::Cancelled,
            output: TaskOutput::default(),
            error: Some(ErrorInfo::new("cancelled", reason)),
        }
    }
}

/// What an executor may use.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub workdir: &'a Path,
    pub max_output_bytes: usize,
    pub http: &'a reqwest::Client,
    pub http_timeout: std::time::Duration,
    /// Progress for the orchestrator (best effort), and requests for more turns.
    pub progress: mpsc::UnboundedSender<ExecEvent>,
    /// The attempt's turn limit (for executors that work in turns).
    pub max_turns: u32,
}

/// What a running executor tells the agent.
#[derive(Debug)]
pub enum ExecEvent {
    /// A progress line.
    Note(String),
    /// A turn ended; `used` turns so far.
    Turn { used: u32, note: String },
    /// Ask the orchestrator for `turns` more; the answer is how many were granted (0: none).
    Extend {
        turns: u32,
        reply: oneshot::Sender<u32>,
    },
}

/// The capabilities this agent has on this machine; `steps` only with test executors on.
pub fn capabilities(test_executors: bool) -> Vec<String> {
    let mut caps = Vec::new();
    if shell::available() {
        caps.push("shell".to_owned());
    }
    caps.push("fs".to_owned());
    caps.push("http".to_owned());
    if test_executors {
        caps.push("steps".to_owned());
    }
    caps
}

/// Runs one action to its end.
pub async fn run(action: &Action, ctx: &Ctx<'_>) -> Outcome {
    match action {
        Action::Shell { command } => shell::run(command, ctx).await,
        Action::HttpGet { url } => http::get(url, ctx).await,
        Action::WriteFile { path, content } => fs::write(path, content, ctx).await,
        Action::ReadFile { path } => fs::read(path, ctx).await,
        Action::Steps { steps, step_ms } => steps::run(*steps, *step_ms, ctx).await,
    }
}

/// Keeps at most `max` bytes of `bytes` (cut at a character boundary) as text.
/// Returns the text and whether anything was cut.
pub fn capped_text(bytes: &[u8], max: usize) -> (String, bool) {
    let cut = bytes.len() > max;
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if cut {
        // A multi-byte character split by the cap becomes U+FFFD; drop it.
        if text.ends_with('\u{FFFD}') {
            text.pop();
        }
    }
    (text, cut)
}

/// A short one-line summary of some text: its last non-empty line, at most 200 characters.
pub fn summary_of(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_text_cuts_at_the_limit() {
        assert_eq!(capped_text(b"hello", 10), ("hello".into(), false));
        assert_eq!(capped_text(b"hello", 3), ("hel".into(), true));
        // "é" is two bytes; a cap through its middle drops it.
        assert_eq!(capped_text("aé".as_bytes(), 2), ("a".into(), true));
    }

    #[test]
    fn summary_is_the_last_line() {
        assert_eq!(summary_of("one\ntwo\n\n"), "two");
        assert_eq!(summary_of(""), "");
        assert_eq!(summary_of(&"x".repeat(300)).chars().count(), 201);
    }
}
