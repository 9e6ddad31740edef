//! External planners: a program outside weft plans each task's request, and the runner submits
//! the graph it answers (docs/bench.md, "External planners").
//!
//! - `http://HOST:PORT/PATH`: the runner POSTs a [`PlanInput`] as JSON and reads the answer;
//! - `exec:CMD`: `sh -c CMD` gets the same JSON on stdin and writes the answer on stdout;
//! - a plans directory: `DIR/ID.json` holds the answer for task `ID`, made beforehand.
//!
//! The answer is a graph in the shape of `POST /v1/requests`'s `graph`
//! (`{"tasks": [...], "edges": [...]}`), or `{"refuse": "reason"}`. Every call has a timeout; a
//! child process that overruns it is killed with its process group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use weft_protocol::ToolSpec;
use weft_protocol::rest::{DeviceView, GraphSpec};

/// How long one planning call may take by default.
pub const PLAN_TIMEOUT: Duration = Duration::from_secs(600);

/// What an external planner is given: the request and the devices, as `GET /v1/devices`
/// describes them (without their live load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInput {
    /// The task's natural-language request.
    pub request: String,
    pub devices: Vec<PlannerDevice>,
}

/// One device as a planner sees it. Not its OS version: the simulated devices all run on the
/// runner's machine, and a planner's input must not depend on which machine that is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerDevice {
    pub name: String,
    pub kind: String,
    /// As the agent reports it (the runner's machine, for the simulated devices).
    pub platform: Option<String>,
    pub capabilities: Vec<String>,
    /// Each tool with its executor (`sim`, `phone`, `adb`) and a JSON Schema for its `args`.
    pub tools: Vec<ToolSpec>,
    pub max_concurrency: u32,
    /// `online`, `offline`, …
    pub status: String,
}

impl From<DeviceView> for PlannerDevice {
    fn from(d: DeviceView) -> Self {
        Self {
            name: d.name.as_str().to_owned(),
            kind: d.kind,
            platform: d.platform,
            capabilities: d.capabilities,
            tools: d.tools,
            max_concurrency: d.max_concurrency,
            status: serde_json::to_value(d.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        }
    }
}

/// A planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Graph(GraphSpec),
    /// The planner declined the request, saying why.
    Refuse(String),
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A plans directory has no file for the task.
    NoPlan(String),
    /// The call failed, timed out, or its answer is not a graph.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoPlan(m) | Failure::Error(m) => f.write_str(m),
        }
    }
}

/// Where the plans come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Http(String),
    Exec(String),
    Plans(PathBuf),
}

impl Source {
    /// `http://…` / `https://…` or `exec:CMD`; `None` for anything else.
    pub fn parse(spec: &str) -> Option<Self> {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            Some(Source::Http(spec.to_owned()))
        } else {
            let cmd = spec.strip_prefix("exec:")?.trim();
            (!cmd.is_empty()).then(|| Source::Exec(cmd.to_owned()))
        }
    }

    /// As given on the command line (`plans:DIR` for a plans directory).
    pub fn label(&self) -> String {
        match self {
            Source::Http(u) => u.clone(),
            Source::Exec(c) => format!("exec:{c}"),
            Source::Plans(d) => format!("plans:{}", d.display()),
        }
    }
}

/// An external planner and its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    pub source: Source,
    /// Longest one planning call may take (HTTP request or child process).
    pub timeout: Duration,
}

impl External {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            timeout: PLAN_TIMEOUT,
        }
    }

    /// Plans task `id` (its request in `input`).
    pub async fn plan(&self, id: &str, input: &PlanInput) -> Result<Answer, Failure> {
        let text = match &self.source {
            Source::Http(url) => post(url, input, self.timeout).await?,
            Source::Exec(cmd) => exec(cmd, input, self.timeout).await?,
            Source::Plans(dir) => read_plan(dir, id)?,
        };
        parse_answer(&text)
    }
}

/// Reads an answer: a graph, or `{"refuse": "reason"}`.
pub fn parse_answer(text: &str) -> Result<Answer, Failure> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Failure::Error(format!("invalid plan: not JSON ({e}): {}", cut(text))))?;
    if let Some(r) = v.get("refuse") {
        let why = r.as_str().map_or_else(|| r.to_string(), str::to_owned);
        return Ok(Answer::Refuse(why));
    }
    serde_json::from_value::<GraphSpec>(v)
        .map(Answer::Graph)
        .map_err(|e| Failure::Error(format!("invalid plan: {e}")))
}

fn read_plan(dir: &Path, id: &str) -> Result<String, Failure> {
    let path = dir.join(format!("{id}.json"));
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::NoPlan(format!(
            "no plan: {} does not exist",
            path.display()
        ))),
        Err(e) => Err(Failure::Error(format!("reading {}: {e}", path.display()))),
    }
}

async fn post(url: &str, input: &PlanInput, timeout: Duration) -> Result<String, Failure> {
    let err = |e: reqwest::Error| {
        Failure::Error(if e.is_timeout() {
            format!("planner timed out after {} s: {url}", timeout.as_secs())
        } else {
            format!("planner at {url}: {e}")
        })
    };
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(err)?;
    let resp = http.post(url).json(input).send().await.map_err(err)?;
    let status = resp.status();
    let body = resp.text().await.map_err(err)?;
    if !status.is_success() {
        return Err(Failure::Error(format!(
            "planner answered {status}: {}",
            cut(&body)
        )));
    }
    Ok(body)
}

/// Runs `sh -c CMD` in a process group of its own with `input` on stdin; its stdout is the
/// answer. Past `timeout` the group is killed.
async fn exec(cmd: &str, input: &PlanInput, timeout: Duration) -> Result<String, Failure> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    c.process_group(0);
    let mut child = c
        .spawn()
        .map_err(|e| Failure::Error(format!("cannot start `{cmd}`: {e}")))?;
    let pid = child.id();
    let body = serde_json::to_vec(input).map_err(|e| Failure::Error(e.to_string()))?;
    let mut stdin = child.stdin.take();
    let run = async move {
        if let Some(mut s) = stdin.take() {
            // A planner that exits without reading its input is answered by its exit status.
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
        }
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(Failure::Error(format!("`{cmd}`: {e}"))),
        Err(_) => {
            kill_group(pid);
            return Err(Failure::Error(format!(
                "planner timed out after {} s (killed): `{cmd}`",
                timeout.as_secs()
            )));
        }
    };
    if !out.status.success() {
        return Err(Failure::Error(format!(
            "`{cmd}` exited with {}: {}",
            out.status,
            cut(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| Failure::Error(format!("`{cmd}` wrote something other than UTF-8")))
}

/// Kills the process group led by `pid` (the child and whatever it started).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        use nix::sys::signal::{Signal, killpg};
        let _ = killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// At most 300 characters of `s`, on one line.
fn cut(s: &str) -> String {
    let one_line = s.trim().replace('\n', " ");
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_graphs_or_refusals() {
        let g = parse_answer(
            r#"{"tasks": [{"id": "t1", "instruction": "x", "action": {"kind": "read_file", "path": "a"}}], "edges": []}"#,
        )
        .unwrap();
        assert!(
            matches!(g, Answer::Graph(ref g) if g.tasks.len() == 1),
            "{g:?}"
        );
        assert_eq!(
            parse_answer(r#"{"refuse": "no device can"}"#).unwrap(),
            Answer::Refuse("no device can".into())
        );
        let e = parse_answer(r#"{"tasks": "x"}"#).unwrap_err();
        assert!(e.to_string().starts_with("invalid plan"), "{e}");
        let e = parse_answer("plan: none").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn planner_specs() {
        assert_eq!(
            Source::parse("http://127.0.0.1:9/plan"),
            Some(Source::Http("http://127.0.0.1:9/plan".into()))
        );
        assert_eq!(
            Source::parse("exec: python3 p.py --stdio"),
            Some(Source::Exec("python3 p.py --stdio".into()))
        );
        assert_eq!(Source::parse("exec:"), None);
        assert_eq!(Source::parse("rules"), None);
    }

    #[tokio::test]
    async fn a_slow_child_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("late");
        let ext = External {
            source: Source::Exec(format!("sleep 3; touch {}", marker.display())),
            timeout: Duration::from_millis(300),
        };
        let input = PlanInput {
            request: "x".into(),
            devices: vec![],
        };
        let started = std::time::Instant::now();
        let e = ext.plan("t", &input).await.unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "the child's group was killed");
    }

    #[tokio::test]
    async fn a_missing_plan_file_is_no_plan() {
        let dir = tempfile::tempdir().unwrap();
        let ext = External::new(Source::Plans(dir.path().to_owned()));
        let input = PlanInput {
            request: "x".into(),
            devices: vec![],
        };
        assert!(matches!(
            ext.plan("sync-01", &input).await,
            Err(Failure::NoPlan(_))
        ));
        std::fs::write(dir.path().join("sync-01.json"), r#"{"refuse": "later"}"#).unwrap();
        assert_eq!(
            ext.plan("sync-01", &input).await,
            Ok(Answer::Refuse("later".into()))
        );
    }
}
