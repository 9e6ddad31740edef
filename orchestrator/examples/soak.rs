//! Soak test (not run in CI): kills the orchestrator with SIGKILL N times while a stream of
//! requests runs, restarts it on the same database each time, and counts what was lost and
//! what was applied twice.
//!
//! ```sh
//! cargo build --release --bin weft --example soak
//! ./target/release/examples/soak --weft ./target/release/weft --kills 20
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use weft_protocol::rest::{Event, EventKind, RequestView};
use weft_protocol::{AttemptStatus, TaskStatus};

#[derive(Debug, Parser)]
struct Args {
    /// The `weft` binary to test.
    #[arg(long, default_value = "target/release/weft")]
    weft: PathBuf,
    /// How many times to kill and restart the orchestrator.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Requests submitted between two kills.
    #[arg(long, default_value_t = 5)]
    per_round: u32,
    /// Agents (devices of kind laptop).
    #[arg(long, default_value_t = 3)]
    agents: u32,
}

const TOKEN: &str = "soak-token";

struct Weft {
    exe: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Weft {
    fn serve(&self) -> anyhow::Result<Child> {
        Command::new(&self.exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--db")
            .arg(self.dir.join("weft.db"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args([
                "--api-token",
                TOKEN,
                "--heartbeat-ms",
                "500",
                "--lost-grace-ms",
                "3000",
            ])
            .args([
                "--retry-initial-backoff-ms",
                "200",
                "--retry-max-attempts",
                "5",
            ])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start weft serve")
    }

    fn agent(&self, name: &str, token: &str) -> anyhow::Result<Child> {
        Command::new(&self.exe)
            .args([
                "agent",
                "--server",
                &self.base(),
                "--name",
                name,
                "--kind",
                "laptop",
            ])
            .arg("--workdir")
            .arg(self.dir.join("work").join(name))
            .arg("--state-dir")
            .arg(self.dir.join("state").join(name))
            .env("WEFT_DEVICE_TOKEN", token)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start weft agent")
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the orchestrator did not come up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn kill9(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("{path}: {}", resp.status());
    }
    Ok(resp.json().await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?
        .port();
    let weft = Weft {
        exe: args.weft.clone(),
        dir: dir.path().to_path_buf(),
        port,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = weft.base();
    let mut server = weft.serve()?;
    wait_healthy(&http, &base).await?;
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let name = format!("l{i}");
        let created = post(
            &http,
            &base,
            "/v1/devices",
            json!({"name": name, "kind": "laptop"}),
        )
        .await?;
        agents.push(weft.agent(&name, created["token"].as_str().unwrap_or_default())?);
    }
    let mut submitted: Vec<String> = Vec::new();
    let mut refused = 0u32;
    let started = Instant::now();
    for round in 0..args.kills {
        for i in 0..args.per_round {
            let text = format!(
                r#"run "sleep 0.2; echo {round}-{i}-a" then run "sleep 0.1; echo {round}-{i}-b", run "echo {round}-{i}-c" then run "echo {round}-{i}-d""#
            );
            match post(&http, &base, "/v1/requests", json!({"text": text})).await {
                Ok(v) => submitted.push(v["id"].as_str().unwrap_or_default().to_owned()),
                Err(_) => refused += 1,
            }
        }
        // Kill at a varying point of the work.
        tokio::time::sleep(Duration::from_millis(100 + u64::from(round % 5) * 80)).await;
        kill9(&server);
        let _ = server.wait().await;
        server = weft.serve()?;
        wait_healthy(&http, &base).await?;
        eprintln!("kill {}/{} done", round + 1, args.kills);
    }
    // Let everything finish.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut views: HashMap<String, RequestView> = HashMap::new();
    while views.len() < submitted.len() && Instant::now() < deadline {
        for id in &submitted {
            if views.contains_key(id) {
                continue;
            }
            let v: RequestView = http
                .get(format!("{base}/v1/requests/{id}"))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await?;
            if v.status.is_terminal() {
                views.insert(id.clone(), v);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut succeeded = 0;
    let mut doubled = 0;
    let mut tasks = 0;
    for (id, v) in &views {
        if v.status == weft_protocol::RequestStatus::Succeeded {
            succeeded += 1;
        }
        let text = http
            .get(format!("{base}/v1/requests/{id}/events"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .text()
            .await?;
        let mut applied: HashMap<String, u32> = HashMap::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let ev: Event = serde_json::from_str(line)?;
            if let EventKind::TaskStatus {
                task_id,
                status: TaskStatus::Succeeded | TaskStatus::Failed,
                ..
            } = ev.kind
            {
                *applied.entry(task_id.to_string()).or_default() += 1;
            }
        }
        for t in &v.tasks {
            tasks += 1;
            let ok = t
                .attempts
                .iter()
                .filter(|a| a.status == AttemptStatus::Succeeded)
                .count();
            if ok > 1 || applied.get(t.id.as_str()).copied().unwrap_or(0) > 1 {
                doubled += 1;
            }
        }
    }
    let lost = submitted.len() - views.len();
    println!("kills:                 {}", args.kills);
    println!("requests submitted:    {}", submitted.len());
    println!(
        "submissions refused:   {refused} (server down or draining; the client saw an error, nothing was accepted)"
    );
    println!(
        "requests completed:    {} ({} succeeded)",
        views.len(),
        succeeded
    );
    println!("requests lost:         {lost}");
    println!("tasks checked:         {tasks}");
    println!("results applied twice: {doubled}");
    println!(
        "wall time:             {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for mut a in agents {
        let _ = a.kill().await;
    }
    let _ = server.kill().await;
    if lost > 0 || doubled > 0 {
        std::process::exit(1);
    }
    Ok(())
}
