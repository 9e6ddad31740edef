//! `weft demo`: the whole loop on this machine. An orchestrator on a SQLite file in a temp
//! dir, three real agent processes (laptop, server, phone), one multi-device request watched
//! live, and the final graph with outputs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use weft_protocol::RequestStatus;
use weft_protocol::rest::DeviceStatus;

use super::client::Client;
use super::render;
use crate::{ServeOptions, server};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the temp dir (database, agent workdirs) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Give up if the request has not finished after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

const DEVICES: [(&str, &str); 3] = [
    ("laptop", "laptop"),
    ("server", "server"),
    ("phone", "phone"),
];

/// How to start an agent: the `weft-agent` binary next to this one if it was built, otherwise
/// this binary's own `weft agent` subcommand (the same code).
fn agent_command() -> anyhow::Result<(PathBuf, Vec<String>)> {
    let me = std::env::current_exe().context("cannot find the weft executable")?;
    let sibling = me.with_file_name(format!("weft-agent{}", std::env::consts::EXE_SUFFIX));
    if sibling.is_file() {
        Ok((sibling, Vec::new()))
    } else {
        Ok((me, vec!["agent".to_owned()]))
    }
}

fn spawn_agent(
    base: &str,
    name: &str,
    kind: &str,
    token: &str,
    workdir: &Path,
    state_dir: &Path,
) -> anyhow::Result<Child> {
    let (exe, prefix) = agent_command()?;
    // The phone fetches the orchestrator's own /healthz on 127.0.0.1, which the default policy
    // refuses (loopback): the demo's agents allow loopback explicitly, in their config file.
    let config = state_dir.with_extension("toml");
    if let Some(dir) = config.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &config,
        "[policy.http]\nallow_networks = [\"127.0.0.0/8\", \"::1\"]\n",
    )?;
    Command::new(&exe)
        .args(prefix)
        .arg("--config")
        .arg(&config)
        .args(["--server", base, "--name", name, "--kind", kind])
        .arg("--workdir")
        .arg(workdir)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--max-concurrency", "2"])
        // The token goes through the environment, never the command line.
        .env("WEFT_DEVICE_TOKEN", token)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the agent {}", exe.display()))
}

async fn stop_agents(children: &mut [Child]) {
    for c in children.iter() {
        if let Some(pid) = c.id() {
            // SIGTERM lets the agent close its connection politely.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for c in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
}

/// Runs the demo; `Ok(true)` if the request succeeded.
pub async fn run(args: DemoArgs) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("weft-demo-").tempdir()?;
    let db = dir.path().join("weft.db");
    let mut opts = ServeOptions::new(db.display().to_string(), dir.path());
    opts.heartbeat_interval = Duration::from_secs(2);
    opts.shutdown_grace = Duration::from_secs(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = CancellationToken::new();
    let running = server::start(listener, opts, shutdown.clone()).await?;
    let base = format!("http://{}", running.addr);
    let client = Client::new(&base, &running.api_token, None)?;
    println!("weft demo");
    println!("  orchestrator  {base}");
    println!("  database      {}", db.display());

    let mut children = Vec::new();
    let result = async {
        for (name, kind) in DEVICES {
            let created = client.add_device(name, kind).await?;
            let workdir = dir.path().join("agents").join(name);
            let state_dir = dir.path().join("agent-state").join(name);
            children.push(spawn_agent(&base, name, kind, &created.token, &workdir, &state_dir)?);
            println!("  agent         {name} ({kind}), pid {}", children.last().and_then(Child::id).unwrap_or(0));
        }
        wait_online(&client).await?;

        let text = format!(
            "on server run \"uname -sr\", on laptop run \"echo hello from the laptop\" and on phone \
             fetch {base}/healthz then on laptop write \"three devices answered\" to report.txt \
             then on laptop read report.txt"
        );
        println!("\nsubmitting: {text}\n");
        let view = client.submit(&text).await?;
        let start = view.created_at_ms;
        let follow = client.follow(view.id.as_str(), |ev| {
            if let Some(line) = render::event_line(ev, start) {
                println!("{line}");
            }
        });
        tokio::time::timeout(Duration::from_secs(args.timeout_secs), follow)
            .await
            .context("the request did not finish in time")??;
        let view = client.request(view.id.as_str()).await?;
        println!("\n{}", render::request(&view));
        anyhow::Ok(view.status == RequestStatus::Succeeded)
    }
    .await;

    stop_agents(&mut children).await;
    shutdown.cancel();
    let _ = running.join.await;
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    result
}

async fn wait_online(client: &Client) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let devices = client.devices().await?;
        let online = devices
            .iter()
            .filter(|d| d.status == DeviceStatus::Online)
            .count();
        if online == DEVICES.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "only {online} of {} agents connected within 30 s",
                DEVICES.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
