//! Executors: the code that actually does an action on this device.
//!
//! Each executor turns one [`Action`] into an [`Outcome`]. Executors never panic on input and
//! bound everything they keep (output sizes) and everything they wait for (the caller drops the
//! future at the attempt's deadline or on cancel; dropping a shell run kills its process group).
//!
//! Every action passes [`vet`] (the owner's [`Policy`], then the action's own arguments)
//! before any executor runs: [`run`] is the one way in.

pub(crate) mod adb;
pub(crate) mod fs;
pub(crate) mod http;
pub(crate) mod llm;
pub mod seeded;
pub(crate) mod shell;
pub mod sim;
mod steps;
pub(crate) mod termux;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{Action, ErrorInfo, TaskOutput, ToolSpec};

use crate::Config;
use crate::policy::{FsOp, Policy};

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
    pub policy: &'a Policy,
    pub tools: &'a Toolbox,
    /// The policy's output cap.
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

/// The programs this machine has for the tool executors, found once at start.
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    /// Termux:API tools found on the tool path (only for kind `phone`).
    pub phone: termux::Termux,
    /// adb and the device it drives, if configured and adb was found.
    pub adb: Option<adb::Adb>,
    /// The simulated apps of a benchmark device profile, if configured (`[sim]`).
    pub sim: Option<sim::Sim>,
    /// The device's own model (the `llm` executor), if the config has `[llm]` settings.
    pub llm: Option<std::sync::Arc<llm::Llm>>,
}

impl Toolbox {
    /// Looks for the tools `config` asks for on its tool path (default `$PATH`).
    pub fn discover(config: &Config) -> Self {
        let path = config
            .tool_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        let phone = if config.kind == "phone" {
            termux::Termux::discover(&path)
        } else {
            termux::Termux::default()
        };
        let adb = config.adb.as_ref().and_then(|a| {
            let found = find_program(&a.program, &path);
            if found.is_none() {
                tracing::warn!(program = %a.program.display(),
                    "adb is configured but the program was not found; the adb executor is off");
            }
            found.map(|program| adb::Adb {
                program,
                serial: a.serial.clone(),
            })
        });
        let llm = config.llm.as_ref().and_then(|c| match llm::Llm::new(c) {
            Ok(l) => Some(std::sync::Arc::new(l)),
            Err(e) => {
                tracing::warn!(error = %e, "the LLM settings cannot work; the llm executor is off");
                None
            }
        });
        let sim = config.sim.as_ref().and_then(|s| {
            sim::Sim::new(s.clone(), &config.state_dir)
                .inspect_err(|e| tracing::warn!(error = %e, "the sim executor is off"))
                .ok()
        });
        Self {
            phone,
            adb,
            llm,
            sim,
        }
    }
}

/// `program` itself if it is a path to a file, else the first `program` in `search_path`.
pub fn find_program(program: &Path, search_path: &OsStr) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(search_path).find_map(|dir| {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Some(candidate);
        }
        let exe = candidate.with_extension(std::env::consts::EXE_EXTENSION);
        (!std::env::consts::EXE_EXTENSION.is_empty() && exe.is_file()).then_some(exe)
    })
}

/// The executors this agent has on this machine and the policy allows; `steps` only with test
/// executors on. This is what the device advertises.
pub fn capabilities(config: &Config, tools: &Toolbox) -> Vec<String> {
    let mut caps = Vec::new();
    if shell::available() {
        caps.push("shell");
    }
    caps.extend(["fs", "http"]);
    if !tools.phone.is_empty() {
        caps.push("phone");
    }
    if tools.adb.is_some() {
        caps.push("adb");
    }
    if tools.llm.is_some() {
        caps.push(llm::CAPABILITY);
    }
    if config.test_executors {
        caps.push("steps");
    }
    if tools.sim.is_some() {
        caps.push("sim");
    }
    caps.into_iter()
        .filter(|c| config.policy.check_executor(c).is_ok())
        .map(str::to_owned)
        .collect()
}

/// The tools the device offers, with their argument schemas: those its tool executors have
/// and the policy allows.
pub fn tool_specs(config: &Config, tools: &Toolbox) -> Vec<ToolSpec> {
    let policy = &config.policy;
    let mut specs = Vec::new();
    if policy.check_executor("phone").is_ok() {
        specs.extend(
            tools
                .phone
                .specs()
                .into_iter()
                .filter(|s| policy.check_tool("phone", &s.name).is_ok()),
        );
    }
    if let Some(sim) = &tools.sim
        && policy.check_executor("sim").is_ok()
    {
        specs.extend(sim::specs(sim.profile()));
    }
    if tools.adb.is_some() && policy.check_executor("adb").is_ok() {
        specs.extend(
            adb::specs()
                .into_iter()
                .filter(|s| policy.check_tool("adb", &s.name).is_ok()),
        );
    }
    specs
}

/// Whether this device will run `action`: the owner's policy first (`policy_denied`, naming
/// the rule), then whether it has the executor and the tool (`unsupported_action`), then the
/// action's arguments (`invalid_action`, `invalid_url`, `path_outside_workdir`). Only checks
/// that need no I/O; the executors check symlinks, DNS answers and redirects as they run.
pub fn vet(action: &Action, capabilities: &[String], ctx: &Ctx<'_>) -> Result<(), ErrorInfo> {
    let policy = ctx.policy;
    let cap = action.capability();
    policy.check_executor(cap).map_err(|d| d.error())?;
    if !capabilities.iter().any(|c| c == cap) {
        return Err(ErrorInfo::new(
            "unsupported_action",
            format!("this device has no `{cap}` executor"),
        ));
    }
    match action {
        Action::Shell { command } => policy
            .check_shell(command, ctx.workdir)
            .map_err(|d| d.error()),
        Action::WriteFile { path, .. } => policy
            .check_path(FsOp::Write, path, ctx.workdir)
            .map(drop)
            .map_err(|r| r.error()),
        Action::ReadFile { path } => policy
            .check_path(FsOp::Read, path, ctx.workdir)
            .map(drop)
            .map_err(|r| r.error()),
        Action::CopyFile { from, to } => {
            policy
                .check_path(FsOp::Read, from, ctx.workdir)
                .map_err(|r| r.error())?;
            policy
                .check_path(FsOp::Write, to, ctx.workdir)
                .map(drop)
                .map_err(|r| r.error())
        }
        Action::HttpGet { url } => {
            let parsed = http::parse_url(url).map_err(|o| {
                o.error
                    .unwrap_or_else(|| ErrorInfo::new("invalid_url", url.clone()))
            })?;
            policy.check_url(&parsed).map_err(|d| d.error())
        }
        Action::Phone { tool, args } => {
            policy.check_tool("phone", tool).map_err(|d| d.error())?;
            ctx.tools.phone.vet(tool, args).map(drop)
        }
        Action::Adb { tool, args } => {
            policy.check_tool("adb", tool).map_err(|d| d.error())?;
            adb::vet(tool, args, ctx).map(drop)
        }
        Action::Steps { .. } => Ok(()),
        Action::Sim { op, args } => match &ctx.tools.sim {
            Some(sim) => sim.vet(op, args, ctx),
            None => Err(ErrorInfo::new(
                "unsupported_action",
                "this device has no simulated profile",
            )),
        },
    }
}

/// Vets and runs one action to its end.
pub async fn run(action: &Action, capabilities: &[String], ctx: &Ctx<'_>) -> Outcome {
    if let Err(e) = vet(action, capabilities, ctx) {
        return Outcome::failed(&e.code, e.message);
    }
    match action {
        Action::Shell { command } => shell::run(command, ctx).await,
        Action::HttpGet { url } => http::get(url, ctx).await,
        Action::WriteFile { path, content } => fs::write(path, content, ctx).await,
        Action::ReadFile { path } => fs::read(path, ctx).await,
        Action::CopyFile { from, to } => fs::copy(from, to, ctx).await,
        Action::Steps { steps, step_ms } => steps::run(*steps, *step_ms, ctx).await,
        Action::Phone { tool, args } => termux::run(tool, args, ctx).await,
        Action::Adb { tool, args } => adb::run(tool, args, ctx).await,
        Action::Sim { op, args } => sim::run(op, args, ctx).await,
    }
}

/// What an attempt runs: an explicit action, or (a task with no action) its instruction,
/// carried out by the LLM executor, whose tool calls go through [`run`] like any action.
#[derive(Debug, Clone)]
pub enum Work {
    Action(Action),
    Instruction {
        instruction: String,
        inputs: std::collections::BTreeMap<weft_protocol::TaskId, TaskOutput>,
    },
}

/// Runs an attempt's work to its end: [`run`] for an action, [`llm::run`] for an instruction.
pub async fn run_work(work: &Work, capabilities: &[String], ctx: &Ctx<'_>) -> Outcome {
    match work {
        Work::Action(action) => run(action, capabilities, ctx).await,
        Work::Instruction {
            instruction,
            inputs,
        } => llm::run(instruction, inputs, capabilities, ctx).await,
    }
}

/// What a finished program left.
#[derive(Debug)]
pub struct ProgramOutput {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond the cap was discarded.
    pub truncated: bool,
}

/// Runs `program args…` in `cwd` to its end (it is killed if the future is dropped), feeding
/// it `stdin` and keeping at most `max` bytes of each output stream.
pub async fn run_program(
    program: &Path,
    args: &[OsString],
    stdin: Option<&[u8]>,
    cwd: &Path,
    max: usize,
) -> std::io::Result<ProgramOutput> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that does not read its input is not an error.
        let _ = pipe.write_all(bytes).await;
        drop(pipe);
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (a, b) = tokio::join!(
        read_capped(stdout, &mut out, max),
        read_capped(stderr, &mut err, max)
    );
    let status = child.wait().await?;
    Ok(ProgramOutput {
        code: status.code(),
        stdout: out,
        stderr: err,
        truncated: a || b,
    })
}

/// Reads `r` to its end into `buf`, keeping at most `max` bytes. Returns whether bytes were
/// discarded.
pub async fn read_capped(r: Option<impl AsyncRead + Unpin>, buf: &mut Vec<u8>, max: usize) -> bool {
    let Some(mut r) = r else { return false };
    let mut chunk = [0u8; 8192];
    let mut cut = false;
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return cut,
            Ok(n) => {
                let room = max.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
}

/// An [`Outcome`] for an error.
pub fn failed(e: ErrorInfo) -> Outcome {
    Outcome::failed(&e.code, e.message)
}

/// Test helpers: a policy, a toolbox and an HTTP client to build a [`Ctx`] from.
#[cfg(test)]
pub(crate) struct TestEnv {
    pub policy: Policy,
    pub tools: Toolbox,
    pub http: reqwest::Client,
}

#[cfg(test)]
impl TestEnv {
    pub fn new() -> Self {
        Self::with_policy(Policy::default())
    }

    pub fn with_policy(policy: Policy) -> Self {
        let http = http::client(&policy, std::time::Duration::from_secs(5)).unwrap();
        Self {
            policy,
            tools: Toolbox::default(),
            http,
        }
    }

    pub fn ctx<'a>(&'a self, workdir: &'a Path) -> Ctx<'a> {
        Ctx {
            workdir,
            policy: &self.policy,
            tools: &self.tools,
            max_output_bytes: self.policy.max_output_bytes,
            http: &self.http,
            http_timeout: std::time::Duration::from_secs(5),
            progress: mpsc::unbounded_channel().0,
            max_turns: 1,
        }
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

#[cfg(all(test, unix))]
#[path = "tests.rs"]
mod executor_tests;
