//! The orchestrator under test: a `weft serve` child process (the default, so its memory and CPU
//! are its own), or one that is already running (external, or in-process).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::client::Api;

/// Where the orchestrator runs, as the report states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A `weft serve` process started by the load generator.
    Spawned,
    /// A server that was already running.
    External,
    /// Inside the load generator's own process: its RSS/CPU include the generator's.
    InProcess,
}

/// How to reach the orchestrator and which process to read figures from.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub api_token: String,
    /// The process whose `/proc` figures are reported, if known.
    pub pid: Option<u32>,
    pub kind: TargetKind,
}

/// How to start `weft serve`.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The `weft` binary.
    pub bin: PathBuf,
    /// `--db`; `None` means a fresh `weft.db` file in a temporary directory (durable journal).
    pub db: Option<String>,
    /// `--heartbeat-ms`; `None` leaves the server's default (5000).
    pub heartbeat_ms: Option<u64>,
    /// `--lost-grace-ms`; `None` leaves the server's default.
    pub lost_grace_ms: Option<u64>,
    /// `RUST_LOG` for the server; `None` leaves its default (`info`).
    pub rust_log: Option<String>,
}

impl SpawnOptions {
    /// `weft` next to the running executable (`target/release/weft` beside
    /// `target/release/weft-load`).
    pub fn default_bin() -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("weft")))
            .unwrap_or_else(|| PathBuf::from("weft"))
    }
}

/// The server's cap on open connections from one address (`weft serve
/// --max-connections-per-address`).
const PER_ADDRESS_ENV: &str = "WEFT_MAX_CONNECTIONS_PER_ADDRESS";
/// A per-address cap no run reaches: the server's own total (`--max-connections`, below the
/// open-file limit) is the one that applies.
const NO_PER_ADDRESS_CAP: &str = "1048576";

/// A running `weft serve` child; stop it with [`Spawned::stop`] (it is killed if dropped).
#[derive(Debug)]
pub struct Spawned {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    target: Target,
}

impl Spawned {
    /// Starts `weft serve` on a free loopback port with a fresh data directory and database, and
    /// waits until `/healthz` answers.
    pub async fn start(opts: &SpawnOptions) -> anyhow::Result<Self> {
        if !opts.bin.exists() {
            bail!(
                "{} does not exist: build it with `cargo build --release -p weft-orchestrator \
                 --bin weft`, or pass --weft-bin",
                opts.bin.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("weft-load-").tempdir()?;
        // A free port: bind, read it, release it. Another process could take it in between; the
        // health check below would then fail loudly.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let token = format!(
            "bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let db = opts
            .db
            .clone()
            .unwrap_or_else(|| dir.path().join("weft.db").display().to_string());
        let log = std::fs::File::create(dir.path().join("serve.log"))?;
        let mut cmd = tokio::process::Command::new(&opts.bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("WEFT_API_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        // All of the load comes from one address (this process), which the server caps at 256
        // open connections by default: a run with more requests in flight would measure the
        // refusals. Unless the user chose a cap, only the server's total applies.
        if std::env::var_os(PER_ADDRESS_ENV).is_none() {
            cmd.env(PER_ADDRESS_ENV, NO_PER_ADDRESS_CAP);
        }
        if let Some(ms) = opts.heartbeat_ms {
            cmd.arg("--heartbeat-ms").arg(ms.to_string());
        }
        if let Some(ms) = opts.lost_grace_ms {
            cmd.arg("--lost-grace-ms").arg(ms.to_string());
        }
        match &opts.rust_log {
            Some(l) => {
                cmd.env("RUST_LOG", l);
            }
            None => {
                cmd.env_remove("RUST_LOG");
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", opts.bin.display()))?;
        let pid = child.id();
        let target = Target {
            base: format!("http://127.0.0.1:{port}"),
            api_token: token,
            pid,
            kind: TargetKind::Spawned,
        };
        let mut me = Self { child, dir, target };
        let api = Api::new(&me.target, 4)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if api.health().await.is_ok() {
                break;
            }
            if let Some(status) = me.child.try_wait()? {
                bail!(
                    "`weft serve` exited with {status} before answering; its log:\n{}",
                    me.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "`weft serve` did not answer /healthz within 15 s; its log:\n{}",
                    me.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(me)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Asks the server to stop (SIGTERM) and waits for it; kills it after 10 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}
