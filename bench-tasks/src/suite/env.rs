//! The world a suite runs in: an orchestrator (in-process, SQLite in a temp dir), the five
//! simulated devices as real agent processes, each behind a TCP proxy that can cut its link,
//! and a small web server for the pages tasks fetch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weft_agent::seeded;
use weft_orchestrator::config::PlannerChoice;
use weft_orchestrator::{ServeOptions, server};
use weft_protocol::RetryPolicy;
use weft_protocol::rest::DeviceStatus;

use super::api::Api;
use super::check::DeviceState;
use super::devices::{self, AgentSetup, Device};
use super::task::{DeviceSetup, TaskFile};

/// How to set up the world.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    pub planner: PlannerChoice,
    pub seed: u64,
    pub latency_scale: f64,
    /// `sim.fail_rate` of every device.
    pub fail_rate: f64,
    /// The program that runs an agent as `PROGRAM agent --config FILE` (`weft` or
    /// `weft-bench`).
    pub agent_bin: PathBuf,
    /// How long a ready task waits for a capable device before it fails `no_device`.
    pub queue_timeout: Duration,
    /// Where to keep the orchestrator's database, agent configs, workdirs and logs; a
    /// temporary directory (removed at the end) when `None`.
    pub keep_dir: Option<PathBuf>,
}

/// A TCP proxy in front of the orchestrator for one agent: [`Proxy::cut`] drops its open
/// connections and refuses new ones for a while.
#[derive(Debug)]
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    down_until: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (cut, rx) = tokio::sync::watch::channel(0u64);
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let down = down_until.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let is_down = down
                    .lock()
                    .map(|d| d.is_some_and(|until| Instant::now() < until))
                    .unwrap_or(false);
                if is_down {
                    drop(inbound);
                    continue;
                }
                let mut rx = rx.clone();
                rx.borrow_and_update();
                conns.spawn(async move {
                    let _ = inbound.set_nodelay(true);
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = up.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut up) => {}
                        _ = rx.changed() => {} // dropping both sockets cuts the link
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            cut,
            down_until,
            task,
        }
    }

    /// Cuts the link and refuses reconnects for `down`.
    fn cut(&self, down: Duration) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = Some(Instant::now() + down);
        }
        self.cut.send_modify(|n| *n += 1);
    }
}

/// The pages the web server answers with, by path without the leading `/`.
type Pages = Arc<Mutex<BTreeMap<String, String>>>;

/// A minimal HTTP/1.1 server: `GET /PATH` answers the page's text or 404.
async fn serve_web(listener: TcpListener, pages: Pages) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 2048];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_owned();
            let page = pages.lock().ok().and_then(|p| p.get(&path).cloned());
            let (status, body) = match page {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", format!("no page /{path}\n")),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// One agent: where its files are, and its process while it runs.
#[derive(Debug)]
struct Agent {
    device: &'static Device,
    config: PathBuf,
    workdir: PathBuf,
    state_dir: PathBuf,
    /// Its HOME, outside the workdir (so not part of the device's scored state).
    home: PathBuf,
    log: PathBuf,
    /// The process while it runs (taken out to kill or stop it).
    child: Mutex<Option<tokio::process::Child>>,
}

/// The host name of the runner's web server in every request, plan and page
/// (`http://web.bench/…`): the same in every run, so that a planner's prompt never holds an
/// ephemeral port and a recorded cassette replays. The agents connect to the server's real
/// address for it (`policy.http.connect_to`).
pub const WEB_HOST: &str = "web.bench";

/// The running world.
#[derive(Debug)]
pub struct Env {
    _tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub api: Api,
    /// `http://web.bench`: what `${WEB}` stands for in the tasks.
    pub web_base: String,
    /// The run's seed: the bytes of the tasks' seeded files.
    seed: u64,
    pages: Pages,
    proxies: BTreeMap<&'static str, Proxy>,
    agents: BTreeMap<&'static str, Agent>,
    agent_bin: PathBuf,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<Result<(), weft_orchestrator::Error>>>,
    web_task: tokio::task::JoinHandle<()>,
}

/// The process environment an agent starts with: nothing of ours (no WEFT_* variable may
/// override its config file), a C locale so shell tools sort the same everywhere, and `home`
/// (a directory of its own beside its workdir) as its HOME: a shell task's `~` is the
/// simulated device's, never the home of whoever runs the suite.
fn agent_env(cmd: &mut tokio::process::Command, home: &Path) {
    cmd.env_clear();
    for key in ["PATH", "TMPDIR", "SYSTEMROOT"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("HOME", home);
    cmd.env("LC_ALL", "C");
    cmd.env(
        "RUST_LOG",
        std::env::var("WEFT_BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
    );
}

impl Env {
    /// Starts the orchestrator, the proxies, the web server and the five agents, and waits
    /// until every device is online.
    pub async fn start(opts: &EnvOptions) -> anyhow::Result<Self> {
        let (tmp, dir) = match &opts.keep_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("weft-bench-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let orch_addr = listener.local_addr()?;
        let mut proxy_listeners = Vec::new();
        for d in devices::all() {
            proxy_listeners.push((d.name, TcpListener::bind("127.0.0.1:0").await?));
        }
        let mut serve =
            ServeOptions::new(dir.join("weft.db").display().to_string(), dir.join("data"));
        let api_token = format!("bench-{:016x}", opts.seed ^ 0x7765_6674);
        serve.api_token = Some(api_token.clone());
        for (_, l) in &proxy_listeners {
            serve.allowed_hosts.push(l.local_addr()?.to_string());
        }
        serve.heartbeat_interval = Duration::from_secs(1);
        serve.lost_grace = Duration::from_secs(2);
        serve.queue_timeout = opts.queue_timeout;
        serve.attempt_timeout = Duration::from_secs(60);
        serve.task_timeout = Duration::from_secs(180);
        serve.shutdown_grace = Duration::from_secs(2);
        serve.retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 200,
            multiplier: 2.0,
            max_backoff_ms: 2000,
            ..RetryPolicy::default()
        };
        serve.planner = opts.planner.clone();
        let shutdown = CancellationToken::new();
        let running = server::start(listener, serve, shutdown.clone())
            .await
            .context("starting the orchestrator")?;
        let api = Api::new(&format!("http://{orch_addr}"), &running.api_token)?;

        let mut proxies = BTreeMap::new();
        for (name, l) in proxy_listeners {
            proxies.insert(name, Proxy::start(l, orch_addr));
        }
        let web = TcpListener::bind("127.0.0.1:0").await?;
        let web_addr = web.local_addr()?;
        let web_base = format!("http://{WEB_HOST}");
        let pages: Pages = Arc::default();
        let web_task = tokio::spawn(serve_web(web, pages.clone()));

        let mut agents = BTreeMap::new();
        for d in devices::all() {
            let token = api.add_device(d.name, d.kind).await?;
            let base = dir.join("devices").join(d.name);
            let workdir = base.join("work");
            let state_dir = base.join("state");
            let home = base.join("home");
            std::fs::create_dir_all(&workdir)?;
            std::fs::create_dir_all(&home)?;
            let token_file = base.join("token");
            std::fs::write(&token_file, format!("{token}\n"))?;
            let server = format!("http://{}", proxies[d.name].addr);
            let config = base.join("agent.toml");
            std::fs::write(
                &config,
                d.config_toml(&AgentSetup {
                    server: &server,
                    token_file: &token_file,
                    workdir: &workdir,
                    state_dir: &state_dir,
                    seed: opts.seed,
                    latency_scale: opts.latency_scale,
                    fail_rate: opts.fail_rate,
                    web: web_addr,
                }),
            )?;
            agents.insert(
                d.name,
                Agent {
                    device: d,
                    config,
                    workdir,
                    state_dir,
                    home,
                    log: base.join("agent.log"),
                    child: Mutex::new(None),
                },
            );
        }
        let mut env = Self {
            _tmp: tmp,
            dir,
            api,
            web_base,
            seed: opts.seed,
            pages,
            proxies,
            agents,
            agent_bin: opts.agent_bin.clone(),
            shutdown,
            server: Some(running.join),
            web_task,
        };
        for name in devices::names() {
            env.spawn_agent(name)?;
        }
        env.wait_online(&devices::names(), Duration::from_secs(30))
            .await?;
        Ok(env)
    }

    fn spawn_agent(&mut self, name: &str) -> anyhow::Result<()> {
        let agent_bin = self.agent_bin.clone();
        let Some(a) = self.agents.get_mut(name) else {
            bail!("no device {name}");
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&a.log)?;
        let mut cmd = tokio::process::Command::new(&agent_bin);
        cmd.arg("agent").arg("--config").arg(&a.config);
        agent_env(&mut cmd, &a.home);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start the agent program {} (build it, or pass --agent-bin)",
                agent_bin.display()
            )
        })?;
        if let Ok(mut slot) = a.child.lock() {
            *slot = Some(child);
        }
        Ok(())
    }

    /// Waits until each named device is online with the `sim` capability.
    pub async fn wait_online(&self, names: &[&str], within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            let devices = self.api.devices().await?;
            let online = |n: &&str| {
                devices.iter().any(|d| {
                    d.name.as_str() == *n
                        && d.status == DeviceStatus::Online
                        && d.capabilities.iter().any(|c| c == "sim")
                })
            };
            if names.iter().all(online) {
                return Ok(());
            }
            if Instant::now() > until {
                let missing: Vec<&&str> = names.iter().filter(|n| !online(n)).collect();
                bail!(
                    "devices {missing:?} did not come online within {within:?} (agent logs in {})",
                    self.dir.join("devices").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no attempt runs on any device (bounded).
    pub async fn wait_idle(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            let devices = self.api.devices().await?;
            if devices.iter().all(|d| d.running == 0) || Instant::now() > until {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts every device in the state `task` starts from: its workdir emptied and filled with
    /// the task's files (and its seeded files: the bytes of the run's seed, the device, the
    /// path and the size), its sim state written; and the web server's pages set.
    pub fn reset(&self, task: &TaskFile) -> anyhow::Result<()> {
        for (name, a) in &self.agents {
            let setup = task.devices.get(*name).cloned().unwrap_or_default();
            for entry in std::fs::read_dir(&a.workdir)? {
                let p = entry?.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
            fill_workdir(&a.workdir, a.device.name, &setup, self.seed)?;
            let state = setup.state(a.device.name);
            weft_agent::sim::write_state(&self.state_file(a), &state)?;
        }
        if let Ok(mut p) = self.pages.lock() {
            p.clone_from(&task.web);
        }
        Ok(())
    }

    fn state_file(&self, a: &Agent) -> PathBuf {
        a.state_dir.join(weft_agent::sim::STATE_FILE)
    }

    /// Every device's final state.
    pub fn states(&self) -> anyhow::Result<BTreeMap<String, DeviceState>> {
        self.agents
            .iter()
            .map(|(name, a)| {
                Ok((
                    (*name).to_owned(),
                    DeviceState::read(&a.workdir, &self.state_file(a))?,
                ))
            })
            .collect()
    }

    /// Cuts a device's link for `down`.
    pub fn cut(&self, name: &str, down: Duration) {
        if let Some(p) = self.proxies.get(name) {
            p.cut(down);
        }
    }

    /// Kills a device's agent (SIGKILL); it is not started again.
    pub async fn kill(&self, name: &str) {
        let child = self
            .agents
            .get(name)
            .and_then(|a| a.child.lock().ok().and_then(|mut c| c.take()));
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }

    /// Whether a device's agent process runs.
    pub fn alive(&self, name: &str) -> bool {
        self.agents
            .get(name)
            .is_some_and(|a| a.child.lock().is_ok_and(|c| c.is_some()))
    }

    /// The status the orchestrator shows for a device.
    pub async fn status(&self, name: &str) -> anyhow::Result<Option<DeviceStatus>> {
        Ok(self
            .api
            .devices()
            .await?
            .into_iter()
            .find(|d| d.name.as_str() == name)
            .map(|d| d.status))
    }

    /// Where a device's files are.
    pub fn device_dir(&self, name: &str) -> Option<&Path> {
        self.agents.get(name).map(|a| a.workdir.as_path())
    }

    /// Stops the agents (SIGTERM, then SIGKILL after a grace), then the orchestrator.
    pub async fn stop(mut self) {
        for a in self.agents.values_mut() {
            let child = a.child.get_mut().ok().and_then(Option::take);
            if let Some(mut child) = child {
                terminate(&mut child).await;
            }
        }
        self.shutdown.cancel();
        if let Some(join) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), join).await;
        }
        for p in self.proxies.values() {
            p.task.abort();
        }
        self.web_task.abort();
    }
}

/// Writes a device's files into its (empty) workdir: the text files as they are, and the
/// seeded ones as the bytes of (`seed`, `device`, the path, the size), streamed.
fn fill_workdir(
    workdir: &Path,
    device: &str,
    setup: &DeviceSetup,
    seed: u64,
) -> anyhow::Result<()> {
    let create = |path: &str| -> anyhow::Result<std::fs::File> {
        let p = workdir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))
    };
    for (path, content) in &setup.files {
        std::io::Write::write_all(&mut create(path)?, content.as_bytes())?;
    }
    for (path, size) in &setup.seeded_files {
        let mut bytes = seeded::Bytes::new(seed, device, path, *size);
        std::io::copy(&mut bytes, &mut create(path)?)
            .with_context(|| format!("writing {path} on {device}"))?;
    }
    Ok(())
}

/// SIGTERM (the agent hands its work back and closes), SIGKILL if it is still there after 3 s.
async fn terminate(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_writes_text_files_and_the_seeded_bytes_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let setup: DeviceSetup = toml::from_str(
            "files = { \"docs/a.txt\" = \"hello\\n\" }\n\
             seeded_files = { \"docs/budget.xlsx\" = 300000, \"b.bin\" = 5 }\n",
        )
        .unwrap();
        fill_workdir(dir.path(), "mac-laptop", &setup, 3).unwrap();
        let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
        assert_eq!(read("docs/a.txt"), b"hello\n");
        let xlsx = read("docs/budget.xlsx");
        assert_eq!(
            xlsx,
            seeded::Bytes::new(3, "mac-laptop", "docs/budget.xlsx", 300_000).to_vec()
        );
        assert!(xlsx.starts_with(b"PK\x03\x04"));
        assert_eq!(read("b.bin").len(), 5);
        // Another seed, other bytes; the same size.
        let other = tempfile::tempdir().unwrap();
        fill_workdir(other.path(), "mac-laptop", &setup, 4).unwrap();
        let again = std::fs::read(other.path().join("docs/budget.xlsx")).unwrap();
        assert_eq!(again.len(), xlsx.len());
        assert_ne!(again, xlsx);
    }
}
