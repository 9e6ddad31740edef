//! `weft-load`: load generator for the weft orchestrator. See BENCHMARKS.md.
//!
//! ```text
//! weft-load --tiny                                   # smoke: 3 agents, 20 mixed requests
//! weft-load --agents 100 --requests 5000 --concurrency 64 --runs 3
//! weft-load --shape chain:256 --requests 20 --agents 10
//! weft-load idle --agents 1000 --window-secs 30
//! weft-load lost --agents 4 --trials 10 --heartbeat-ms 1000
//! weft-load files --runs 3                           # 1 GiB phone -> orchestrator -> laptop
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use weft_bench::load::{
    FilesOptions, FilesReport, IdleOptions, IdleReport, LoadOptions, LoadReport, Loss, LostOptions,
    LostReport, Shape, SpawnOptions, Spawned, SubmitMode, Summary, Target, TargetKind, WaitMode,
    render_summary, run_files, run_idle, run_load, run_lost,
};

#[derive(Debug, Parser)]
#[command(
    name = "weft-load",
    about = "Load generator for the weft orchestrator: N protocol-speaking no-op agents, REST \
             requests to completion, latency/throughput and the orchestrator's RSS/CPU",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Connect N agents that only heartbeat; report the orchestrator's RSS per agent and CPU.
    Idle(IdleArgs),
    /// Make the agent holding a task go lost (socket dropped, or silent); time how long until
    /// the task is assigned to another agent.
    Lost(LostArgs),
    /// Move one large file from a phone agent through the orchestrator to a laptop agent (two
    /// `weft agent` processes); report throughput per leg and end to end against `cp`, and the
    /// orchestrator's RSS above idle.
    Files(FilesArgs),
}

#[derive(Debug, Clone, Args)]
struct TargetArgs {
    /// The `weft` binary to spawn as `weft serve` (default: `weft` next to this executable).
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    /// Use an orchestrator that is already running at this base URL instead of spawning one.
    #[arg(long, requires = "api_token")]
    server: Option<String>,
    /// API token of `--server`.
    #[arg(long, env = "WEFT_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Process id of `--server`, to read its RSS and CPU from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Run the orchestrator inside this process (its /proc figures then include the generator).
    #[cfg(feature = "in-process")]
    #[arg(long, conflicts_with = "server")]
    in_process: bool,
    /// `--db` for the spawned server (default: a fresh weft.db file in a temporary directory).
    #[arg(long)]
    db: Option<String>,
    /// `--heartbeat-ms` for the spawned server (default: the server's, 5000; `lost`: 1000).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// `--lost-grace-ms` for the spawned server (default: the server's).
    #[arg(long)]
    lost_grace_ms: Option<u64>,
    /// RUST_LOG for the spawned server (default: its own default, `info`).
    #[arg(long)]
    server_log: Option<String>,
    /// Repeat the whole run (fresh server each time when spawning) and report the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Wait {
    /// Follow `GET /v1/requests/{id}/events` to the final `request_status`.
    Sse,
    /// Poll `GET /v1/requests/{id}` every `--poll-ms`.
    Poll,
    /// `POST /v1/requests?wait=S` (S = --timeout-secs, at most 300): the answer is the final
    /// view; no second call (SSE only if the wait runs out first).
    Post,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Submit {
    /// Rules-planner text (at most 256 tasks, 16 KiB).
    Text,
    /// The graph itself, in `POST /v1/requests` `graph` (needed for dag:K and > 256 tasks).
    Graph,
}

#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Smoke run: 3 agents, 20 requests of mixed shapes, concurrency 4 (other flags override).
    #[arg(long)]
    tiny: bool,
    /// Connected agents [default: 100].
    #[arg(long)]
    agents: Option<usize>,
    /// single, chain:K, fanout:K, diamond[:K], dag:K (graph only) or mix [default: single].
    #[arg(long)]
    shape: Option<Shape>,
    /// How to submit: rules text, or the graph itself [default: text; graph for dag:K].
    #[arg(long, value_enum)]
    submit: Option<Submit>,
    /// Measured requests [default: 1000].
    #[arg(long)]
    requests: Option<usize>,
    /// Unmeasured requests first [default: requests/10, at most 100].
    #[arg(long)]
    warmup: Option<usize>,
    /// Requests in flight at most [default: 1].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Open loop: requests started per second (default: closed loop, as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// How to see a request finish.
    #[arg(long, value_enum, default_value_t = Wait::Sse)]
    wait: Wait,
    /// Poll interval for `--wait poll`.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// max_concurrency each agent advertises [default: 16].
    #[arg(long)]
    agent_concurrency: Option<u32>,
    /// Longest one request may take, seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Connected agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Seconds to wait after the last welcome before the CPU window.
    #[arg(long, default_value_t = 5.0)]
    settle_secs: f64,
    /// Length of the CPU window, seconds.
    #[arg(long, default_value_t = 30.0)]
    window_secs: f64,
    /// Registrations / handshakes at once.
    #[arg(long, default_value_t = 32)]
    parallelism: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum How {
    /// Drop the TCP connection without a close frame, as a killed agent process would.
    Close,
    /// Send and read nothing more but keep the socket open, as in a network partition.
    Silent,
}

#[derive(Debug, Args)]
struct LostArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Connected agents (at least 2).
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// One-task requests, one at a time, per way of losing the agent.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// How the agent holding the task is lost [default: both, close then silent].
    #[arg(long, value_enum)]
    how: Option<How>,
    /// Longest one trial may take (re-placement, the request's end, the reconnect), seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct FilesArgs {
    /// The `weft` binary: `weft serve` and `weft agent` (default: `weft` next to this
    /// executable).
    #[arg(long)]
    weft_bin: Option<PathBuf>,
    /// Bytes of the file (at most 1 GiB, the agent's default upload limit).
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// RUST_LOG for the spawned server (default: its own default, `info`).
    #[arg(long)]
    server_log: Option<String>,
    /// Repeat the whole run (a fresh server and agents each time) and report the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Longest one transfer may take, seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    fn options(&self) -> anyhow::Result<LoadOptions> {
        let base = if self.tiny {
            LoadOptions::tiny()
        } else {
            LoadOptions {
                agents: 100,
                shape: Shape::Single,
                submit: SubmitMode::Text,
                requests: 1000,
                warmup: 0,
                concurrency: 1,
                rate: None,
                wait: WaitMode::Sse,
                agent_concurrency: 16,
                timeout: Duration::from_secs(60),
            }
        };
        let requests = self.requests.unwrap_or(base.requests);
        let shape = self.shape.unwrap_or(base.shape);
        let o = LoadOptions {
            agents: self.agents.unwrap_or(base.agents),
            shape,
            submit: match self.submit {
                Some(Submit::Text) => SubmitMode::Text,
                Some(Submit::Graph) => SubmitMode::Graph,
                None if !shape.has_text() => SubmitMode::Graph,
                None => base.submit,
            },
            requests,
            warmup: self.warmup.unwrap_or(if self.tiny {
                0
            } else {
                (requests / 10).min(100)
            }),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            rate: self.rate,
            wait: match self.wait {
                Wait::Sse => WaitMode::Sse,
                Wait::Poll => WaitMode::Poll { ms: self.poll_ms },
                Wait::Post => WaitMode::Post,
            },
            agent_concurrency: self.agent_concurrency.unwrap_or(base.agent_concurrency),
            timeout: Duration::from_secs(self.timeout_secs),
        };
        if o.agents == 0 || o.requests == 0 || o.concurrency == 0 {
            bail!("--agents, --requests and --concurrency must be at least 1");
        }
        if o.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            bail!("--rate must be positive");
        }
        Ok(o)
    }
}

/// A started orchestrator, stopped with [`Running::stop`].
enum Running {
    Spawned(Box<Spawned>),
    External(Target),
    #[cfg(feature = "in-process")]
    InProcess(
        Target,
        tokio_util::sync::CancellationToken,
        tempfile::TempDir,
    ),
}

impl Running {
    fn target(&self) -> &Target {
        match self {
            Running::Spawned(s) => s.target(),
            Running::External(t) => t,
            #[cfg(feature = "in-process")]
            Running::InProcess(t, _, _) => t,
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Running::Spawned(s) => (*s).stop().await,
            Running::External(_) => Ok(()),
            #[cfg(feature = "in-process")]
            Running::InProcess(_, shutdown, _dir) => {
                shutdown.cancel();
                Ok(())
            }
        }
    }

    fn log_tail(&self) -> Option<String> {
        match self {
            Running::Spawned(s) => Some(s.log_tail()),
            _ => None,
        }
    }
}

impl TargetArgs {
    /// Runs `once` `--runs` times, each against a freshly started server, printing each report
    /// (unless `--json`); on failure shows the end of the server's log.
    async fn repeat<R>(
        &self,
        once: impl AsyncFn(&Target) -> anyhow::Result<R>,
        render: impl Fn(&R) -> String,
    ) -> anyhow::Result<Vec<R>> {
        let mut reports = Vec::new();
        for run in 0..self.runs.max(1) {
            let running = self.start().await?;
            let res = once(running.target()).await;
            let tail = running.log_tail();
            running.stop().await?;
            let report = match res {
                Ok(r) => r,
                Err(e) => {
                    if let Some(tail) = tail {
                        eprintln!("weft-load: the server's log ends with:\n{tail}");
                    }
                    return Err(e).with_context(|| format!("run {}", run + 1));
                }
            };
            if !self.json {
                if self.runs > 1 {
                    println!("run {}/{}:", run + 1, self.runs);
                }
                print!("{}", render(&report));
            }
            reports.push(report);
        }
        Ok(reports)
    }

    async fn start(&self) -> anyhow::Result<Running> {
        if let Some(server) = &self.server {
            return Ok(Running::External(Target {
                base: server.clone(),
                api_token: self.api_token.clone().unwrap_or_default(),
                pid: self.pid,
                kind: TargetKind::External,
            }));
        }
        #[cfg(feature = "in-process")]
        if self.in_process {
            return self.start_in_process().await;
        }
        let spawned = Spawned::start(&SpawnOptions {
            bin: self
                .weft_bin
                .clone()
                .unwrap_or_else(SpawnOptions::default_bin),
            db: self.db.clone(),
            heartbeat_ms: self.heartbeat_ms,
            lost_grace_ms: self.lost_grace_ms,
            rust_log: self.server_log.clone(),
        })
        .await?;
        Ok(Running::Spawned(Box::new(spawned)))
    }

    #[cfg(feature = "in-process")]
    async fn start_in_process(&self) -> anyhow::Result<Running> {
        use weft_orchestrator::{ServeOptions, server};
        let dir = tempfile::Builder::new().prefix("weft-load-").tempdir()?;
        let db = self
            .db
            .clone()
            .unwrap_or_else(|| dir.path().join("weft.db").display().to_string());
        let mut opts = ServeOptions::new(db, dir.path().join("data"));
        opts.api_token = Some("bench-in-process".into());
        if let Some(ms) = self.heartbeat_ms {
            opts.heartbeat_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = self.lost_grace_ms {
            opts.lost_grace = Duration::from_millis(ms);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = server::start(listener, opts, shutdown.clone()).await?;
        let target = Target {
            base: format!("http://{}", running.addr),
            api_token: running.api_token,
            pid: Some(std::process::id()),
            kind: TargetKind::InProcess,
        };
        Ok(Running::InProcess(target, shutdown, dir))
    }
}

/// Warns when the open-file limit cannot hold `agents` connections (both ends share it when the
/// server runs in this process; a spawned server inherits it).
fn check_fd_limit(agents: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && agents + 64 > soft
    {
        eprintln!(
            "weft-load: warning: {agents} agents need more than the open-file limit ({soft}); \
             raise it first, e.g. `ulimit -n 20000`"
        );
    }
}

fn print_json<T: serde::Serialize>(runs: &[T], summary: &Summary) -> anyhow::Result<()> {
    let summary: serde_json::Map<String, serde_json::Value> = summary
        .iter()
        .map(|(k, v)| Ok(((*k).to_owned(), serde_json::to_value(v)?)))
        .collect::<anyhow::Result<_>>()?;
    let out = serde_json::json!({ "runs": runs, "summary": summary });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn load(args: &LoadArgs) -> anyhow::Result<bool> {
    let opts = args.options()?;
    let t = &args.target;
    check_fd_limit(opts.agents);
    let reports = t
        .repeat(
            async |target: &Target| run_load(target, &opts).await,
            LoadReport::render,
        )
        .await?;
    let summary = LoadReport::summary(&reports);
    if t.json {
        print_json(&reports, &summary)?;
    } else if reports.len() > 1 {
        print!("{}", render_summary(reports.len(), &summary));
    }
    let ok = reports
        .iter()
        .all(|r| r.failed == 0 && r.succeeded == r.requests as u64);
    if !ok {
        eprintln!("weft-load: some requests did not succeed");
    }
    Ok(ok)
}

async fn idle(args: &IdleArgs) -> anyhow::Result<bool> {
    let t = &args.target;
    check_fd_limit(args.agents);
    let opts = IdleOptions {
        agents: args.agents,
        settle: Duration::from_secs_f64(args.settle_secs.max(0.0)),
        window: Duration::from_secs_f64(args.window_secs.max(0.1)),
        parallelism: args.parallelism.max(1),
    };
    let reports = t
        .repeat(
            async |target: &Target| run_idle(target, &opts).await,
            IdleReport::render,
        )
        .await?;
    let summary = IdleReport::summary(&reports);
    if t.json {
        print_json(&reports, &summary)?;
    } else if reports.len() > 1 {
        print!("{}", render_summary(reports.len(), &summary));
    }
    let ok = reports.iter().all(|r| r.agent_counters.disconnects == 0);
    if !ok {
        eprintln!("weft-load: some agents were disconnected during the run");
    }
    Ok(ok)
}

async fn lost(args: &LostArgs) -> anyhow::Result<bool> {
    if args.agents < 2 {
        bail!("--agents must be at least 2: the lost agent's task needs another agent to go to");
    }
    let mut t = args.target.clone();
    t.heartbeat_ms.get_or_insert(1000);
    let opts = LostOptions {
        agents: args.agents,
        trials: args.trials.max(1),
        modes: match args.how {
            Some(How::Close) => vec![Loss::Close],
            Some(How::Silent) => vec![Loss::Silent],
            None => vec![Loss::Close, Loss::Silent],
        },
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        lost_grace_ms: if t.server.is_some() {
            None
        } else {
            t.lost_grace_ms
        },
    };
    let reports = t
        .repeat(
            async |target: &Target| run_lost(target, &opts).await,
            LostReport::render,
        )
        .await?;
    let summary = LostReport::summary(&reports);
    if t.json {
        print_json(&reports, &summary)?;
    } else if reports.len() > 1 {
        print!("{}", render_summary(reports.len(), &summary));
    }
    let ok = reports.iter().all(LostReport::ok);
    if !ok {
        eprintln!(
            "weft-load: some trials failed (not re-placed on another agent in time, or the \
             request did not succeed)"
        );
    }
    Ok(ok)
}

async fn files(args: &FilesArgs) -> anyhow::Result<bool> {
    let bin = args
        .weft_bin
        .clone()
        .unwrap_or_else(SpawnOptions::default_bin);
    let opts = FilesOptions {
        bytes: args.bytes,
        bin: bin.clone(),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let mut reports = Vec::new();
    for run in 0..args.runs.max(1) {
        let server = Spawned::start(&SpawnOptions {
            bin: bin.clone(),
            db: None,
            heartbeat_ms: None,
            lost_grace_ms: None,
            rust_log: args.server_log.clone(),
        })
        .await?;
        let res = run_files(&server, &opts).await;
        let tail = server.log_tail();
        server.stop().await?;
        let report = res.map_err(|e| {
            eprintln!("weft-load: the server's log ends with:\n{tail}");
            e.context(format!("run {}", run + 1))
        })?;
        if !args.json {
            if args.runs > 1 {
                println!("run {}/{}:", run + 1, args.runs);
            }
            print!("{}", report.render());
        }
        reports.push(report);
    }
    let summary = FilesReport::summary(&reports);
    if args.json {
        print_json(&reports, &summary)?;
    } else if reports.len() > 1 {
        print!("{}", render_summary(reports.len(), &summary));
    }
    Ok(true)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let res = match &cli.cmd {
        Some(Cmd::Idle(a)) => idle(a).await,
        Some(Cmd::Lost(a)) => lost(a).await,
        Some(Cmd::Files(a)) => files(a).await,
        None => load(&cli.load).await,
    };
    match res {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("weft-load: {e:#}");
            std::process::exit(2);
        }
    }
}
