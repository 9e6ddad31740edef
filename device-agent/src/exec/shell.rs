//! `shell`: a real child process (`sh -c COMMAND`) in the agent's workdir.
//!
//! The command runs in its own process group. When the run ends — normally, at its deadline,
//! or on cancel (the future is dropped) — the whole group is killed, so no background process
//! outlives its attempt. stdout and stderr are each kept up to the output cap; the rest is read
//! and discarded so that a chatty command never blocks on a full pipe.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Ctx, Outcome, capped_text, summary_of};

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

fn command(line: &str) -> tokio::process::Command {
    #[cfg(windows)]
    {
        let mut c = tokio::process::Command::new("cmd");
        c.arg("/C").arg(line);
        c
    }
    #[cfg(not(windows))]
    {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(line);
        c.process_group(0);
        c
    }
}

/// Kills a process group when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            use nix::sys::signal::{Signal, killpg};
            let _ = killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Reads `r` to its end into `buf`, keeping at most `max` bytes. Returns whether bytes were
/// discarded.
async fn read_capped(r: Option<impl AsyncRead + Unpin>, buf: &mut Vec<u8>, max: usize) -> bool {
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
    let guard = GroupGuard(child.id());
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
                        drop(GroupGuard(guard.0));
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use weft_protocol::wire::ResultStatus;

    async fn sh(line: &str, max: usize) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Ctx {
            workdir: dir.path(),
            max_output_bytes: max,
            http: &http,
            http_timeout: Duration::from_secs(1),
            progress: tx,
            max_turns: 1,
        };
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
        let http = reqwest::Client::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Ctx {
            workdir: dir.path(),
            max_output_bytes: 1024,
            http: &http,
            http_timeout: Duration::from_secs(1),
            progress: tx,
            max_turns: 1,
        };
        let marker = dir.path().join("alive");
        let line = format!("(sleep 1; touch {}) & sleep 60", marker.display());
        let res = tokio::time::timeout(Duration::from_millis(300), run(&line, &ctx)).await;
        assert!(res.is_err(), "should still be running");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a grandchild survived the cancel");
    }
}
