//! `shell`: a real child process in the agent's workdir: `sh -c COMMAND` on Unix (Android
//! included), PowerShell (`pwsh`, else Windows PowerShell) or, without it, `cmd /C` on Windows.
//!
//! The command runs in its own process group (Unix) or job object (Windows). When the run
//! ends — normally, at its deadline, or on cancel (the future is dropped) — the whole group or
//! job is killed, so no background process outlives its attempt. stdout and stderr are each
//! kept up to the output cap; the rest is read and discarded so that a chatty command never
//! blocks on a full pipe.

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use super::{Ctx, Outcome, capped_text, find_program, read_capped, summary_of};

/// How long the pipes may stay open after the command itself exited (background children
/// holding them) before the group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(1);

pub fn available() -> bool {
    if cfg!(windows) {
        return true;
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("sh").is_file()))
        .unwrap_or(false)
        || std::path::Path::new("/bin/sh").is_file()
}

/// How a command line is run: a program, its arguments, and whether the line is passed as
/// one raw argument (Windows `cmd /C`, which does not follow the usual quoting rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub program: String,
    pub args: Vec<String>,
    /// Windows only: append the line unquoted (`raw_arg`), as `cmd` expects.
    pub raw_line: Option<String>,
}

/// The shells this platform could use, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpreter {
    /// `sh -c LINE`.
    Sh,
    /// `pwsh` / `powershell.exe -NoProfile -NonInteractive -Command LINE`.
    PowerShell { core: bool },
    /// `cmd.exe /D /S /C LINE`.
    Cmd,
}

/// The command that runs `line` with `shell`. Pure, so every platform's form is tested here.
pub fn shell_command(shell: Interpreter, line: &str) -> ShellCommand {
    match shell {
        Interpreter::Sh => ShellCommand {
            program: "sh".into(),
            args: vec!["-c".into(), line.into()],
            raw_line: None,
        },
        Interpreter::PowerShell { core } => ShellCommand {
            program: if core { "pwsh.exe" } else { "powershell.exe" }.into(),
            args: [
                "-NoLogo",
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-Command",
                line,
            ]
            .map(str::to_owned)
            .to_vec(),
            raw_line: None,
        },
        Interpreter::Cmd => ShellCommand {
            program: "cmd.exe".into(),
            args: ["/D", "/S", "/C"].map(str::to_owned).to_vec(),
            // `/S /C "LINE"`: cmd strips the outer quotes and runs the rest as typed.
            raw_line: Some(format!("\"{line}\"")),
        },
    }
}

/// Which shell to use on Windows given the programs on `path`: PowerShell 7, else Windows
/// PowerShell, else cmd.
pub fn windows_shell(path: &OsStr) -> Interpreter {
    let has = |p: &str| find_program(std::path::Path::new(p), path).is_some();
    if has("pwsh.exe") {
        Interpreter::PowerShell { core: true }
    } else if has("powershell.exe") {
        Interpreter::PowerShell { core: false }
    } else {
        Interpreter::Cmd
    }
}

fn command(line: &str) -> tokio::process::Command {
    let shell = if cfg!(windows) {
        windows_shell(&std::env::var_os("PATH").unwrap_or_default())
    } else {
        Interpreter::Sh
    };
    let spec = shell_command(shell, line);
    let mut c = tokio::process::Command::new(&spec.program);
    c.args(&spec.args);
    #[cfg(windows)]
    if let Some(raw) = &spec.raw_line {
        c.raw_arg(raw);
    }
    #[cfg(unix)]
    c.process_group(0);
    c
}

/// Kills a process group (Unix) or the job object holding the process tree (Windows) when
/// dropped.
struct GroupGuard {
    pid: Option<u32>,
    #[cfg(windows)]
    _job: Option<win32job::Job>,
}

impl GroupGuard {
    fn new(child: &tokio::process::Child) -> Self {
        Self {
            pid: child.id(),
            #[cfg(windows)]
            _job: windows_job(child),
        }
    }

    /// Kills the group now (and again when dropped).
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            use nix::sys::signal::{Signal, killpg};
            let _ = killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        #[cfg(windows)]
        if let Some(job) = &self._job {
            // Every process in the job; the job itself is closed (and kills) on drop too.
            if let Ok(pids) = job.query_process_id_list() {
                for pid in pids {
                    let _ = std::process::Command::new("taskkill")
                        .args(["/F", "/PID", &pid.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A job object that kills every process in it when closed, with the child in it. Children the
/// command starts join the job too. (The child runs briefly before it is assigned; a process it
/// starts in that instant escapes the job.)
#[cfg(windows)]
fn windows_job(child: &tokio::process::Child) -> Option<win32job::Job> {
    let mut info = win32job::ExtendedLimitInfo::new();
    info.limit_kill_on_job_close();
    let job = win32job::Job::create_with_limit_info(&info).ok()?;
    let handle = child.raw_handle()? as isize;
    job.assign_process(handle).ok()?;
    Some(job)
}

pub async fn run(line: &str, ctx: &Ctx<'_>) -> Outcome {
    if let Err(e) = tokio::fs::create_dir_all(ctx.workdir).await {
        return Outcome::failed(
            "workdir_unavailable",
            format!("cannot create the workdir: {e}"),
        );
    }
    let mut cmd = command(line);
    cmd.current_dir(ctx.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::failed("spawn_failed", format!("cannot start the shell: {e}")),
    };
    let guard = GroupGuard::new(&child);
    if let Some(pid) = child.id() {
        let _ = ctx
            .progress
            .send(super::ExecEvent::Note(format!("started (pid {pid})")));
    }
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let max = ctx.max_output_bytes;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, cut) = {
        let reads = async {
            let (a, b) = tokio::join!(
                read_capped(stdout, &mut out, max),
                read_capped(stderr, &mut err, max)
            );
            a || b
        };
        let mut reads = std::pin::pin!(reads);
        tokio::select! {
            cut = &mut reads => (child.wait().await, cut),
            status = child.wait() => {
                let cut = match tokio::time::timeout(PIPE_GRACE, &mut reads).await {
                    Ok(cut) => cut,
                    Err(_) => {
                        // Background processes still hold the pipes: end them.
                        guard.kill();
                        tokio::time::timeout(PIPE_GRACE, &mut reads).await.unwrap_or(true)
                    }
                };
                (status, cut)
            }
        }
    };
    drop(guard);
    let status = match status {
        Ok(s) => s,
        Err(e) => return Outcome::failed("wait_failed", format!("lost track of the command: {e}")),
    };
    let (stdout, cut_out) = capped_text(&out, max);
    let (stderr, cut_err) = capped_text(&err, max);
    let data = json!({
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": status.code(),
        "truncated": cut || cut_out || cut_err,
    });
    let output = weft_protocol::TaskOutput {
        summary: summary_of(if stdout.trim().is_empty() {
            &stderr
        } else {
            &stdout
        }),
        data,
    };
    match status.code() {
        Some(0) => Outcome {
            status: weft_protocol::wire::ResultStatus::Succeeded,
            output,
            error: None,
        },
        Some(code) => {
            let tail = summary_of(&stderr);
            let mut msg = format!("the command exited with status {code}");
            if !tail.is_empty() {
                msg.push_str(": ");
                msg.push_str(&tail);
            }
            Outcome::failed_with("exit_status", msg, output)
        }
        None => Outcome::failed_with("killed", "the command was killed by a signal", output),
    }
}

#[cfg(test)]
mod construction_tests {
    use super::*;

    #[test]
    fn each_platform_builds_its_shell_command() {
        let sh = shell_command(Interpreter::Sh, "echo 'a b' | wc -c");
        assert_eq!(sh.program, "sh");
        assert_eq!(sh.args, ["-c", "echo 'a b' | wc -c"]);
        assert_eq!(sh.raw_line, None);

        let ps = shell_command(
            Interpreter::PowerShell { core: true },
            "Get-ChildItem | Measure",
        );
        assert_eq!(ps.program, "pwsh.exe");
        assert_eq!(ps.args.last().unwrap(), "Get-ChildItem | Measure");
        assert!(ps.args.contains(&"-NonInteractive".to_owned()));
        assert!(ps.args.contains(&"-NoProfile".to_owned()));
        let ps = shell_command(Interpreter::PowerShell { core: false }, "dir");
        assert_eq!(ps.program, "powershell.exe");

        let cmd = shell_command(Interpreter::Cmd, r#"echo "x" & dir"#);
        assert_eq!(cmd.program, "cmd.exe");
        assert_eq!(cmd.args, ["/D", "/S", "/C"]);
        assert_eq!(cmd.raw_line.as_deref(), Some(r#""echo "x" & dir""#));
    }

    #[test]
    fn windows_prefers_powershell_7_then_windows_powershell_then_cmd() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(windows_shell(&path), Interpreter::Cmd);
        std::fs::write(dir.path().join("powershell.exe"), "").unwrap();
        assert_eq!(
            windows_shell(&path),
            Interpreter::PowerShell { core: false }
        );
        std::fs::write(dir.path().join("pwsh.exe"), "").unwrap();
        assert_eq!(windows_shell(&path), Interpreter::PowerShell { core: true });
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use weft_protocol::wire::ResultStatus;

    async fn sh(line: &str, max: usize) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let env = crate::exec::TestEnv::new();
        let mut ctx = env.ctx(dir.path());
        ctx.max_output_bytes = max;
        run(line, &ctx).await
    }

    #[tokio::test]
    async fn captures_stdout_stderr_and_exit_code() {
        let o = sh("echo out; echo err >&2", 1024).await;
        assert_eq!(o.status, ResultStatus::Succeeded);
        assert_eq!(o.output.data["stdout"], "out\n");
        assert_eq!(o.output.data["stderr"], "err\n");
        assert_eq!(o.output.data["exit_code"], 0);
        assert_eq!(o.output.summary, "out");

        let o = sh("echo bad >&2; exit 3", 1024).await;
        assert_eq!(o.status, ResultStatus::Failed);
        assert_eq!(o.error.as_ref().unwrap().code, "exit_status");
        assert!(o.error.unwrap().message.contains("bad"));
        assert_eq!(o.output.data["exit_code"], 3);
    }

    #[tokio::test]
    async fn output_is_capped_but_fully_drained() {
        let o = sh("head -c 200000 /dev/zero | tr '\\0' x", 1000).await;
        assert_eq!(o.status, ResultStatus::Succeeded);
        assert_eq!(o.output.data["stdout"].as_str().unwrap().len(), 1000);
        assert_eq!(o.output.data["truncated"], true);
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_result() {
        let start = std::time::Instant::now();
        let o = sh("sleep 30 & echo quick", 1024).await;
        assert_eq!(o.status, ResultStatus::Succeeded);
        assert_eq!(o.output.data["stdout"], "quick\n");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let env = crate::exec::TestEnv::new();
        let ctx = env.ctx(dir.path());
        let marker = dir.path().join("alive");
        let line = format!("(sleep 1; touch {}) & sleep 60", marker.display());
        let res = tokio::time::timeout(Duration::from_millis(300), run(&line, &ctx)).await;
        assert!(res.is_err(), "should still be running");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a grandchild survived the cancel");
    }
}
