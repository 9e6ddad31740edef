//! The `weft` command line: `serve`, the client commands for people, `agent`, and `demo`.

mod client;
mod demo;
mod enroll;
mod llm_args;
mod open;
pub mod render;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use weft_protocol::RequestStatus;

pub use client::Client;
pub use demo::DemoArgs;

use crate::config::default_data_dir;
use crate::listen::tls::{CertSource, FINGERPRINT_FILE, ServerTls};
use crate::{ServeOptions, server, token};

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: run one request across your laptops, phones and servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the orchestrator (REST API + agent WebSocket endpoint).
    Serve(ServeArgs),
    /// Submit a request.
    Submit {
        /// What to do, e.g. `on laptop run "echo hi" then on server run "uname -a"`.
        text: String,
        /// Follow the request live until it ends.
        #[arg(long)]
        watch: bool,
        /// Wait until the request ends without printing its progress, then print its id and
        /// its final view; exit 0 if it succeeded, else 1 (one `POST /v1/requests?wait=`; a
        /// request running longer than the server's longest wait, 300 s, is followed on its
        /// event stream).
        #[arg(long, conflicts_with = "watch")]
        wait: bool,
        /// With --watch or --wait: give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show a request's graph, statuses and outputs.
    Status {
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Cancel a request (or, with --task, one of its tasks).
    Cancel {
        id: String,
        /// Cancel only this task.
        #[arg(long)]
        task: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Edit a running request's graph with a JSON batch `{"expected_version": N, "ops": [...]}`
    /// read from FILE (`-` for standard input). See docs/graph.md.
    Edit {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List registered devices.
    Devices {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Run a device agent (the same program as `weft-agent`).
    Agent(weft_agent::cli::Args),
    /// Run the whole loop on this machine: orchestrator, three agents, one request.
    Demo(DemoArgs),
    /// Print a one-time login link to the web view, and open it in a browser when possible.
    Open {
        /// Only print the link.
        #[arg(long)]
        no_browser: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Register a device and print the one command that enrolls it (for phones also as a QR
    /// code).
    Add {
        name: String,
        /// laptop, phone, server, or another plain word.
        #[arg(long)]
        kind: String,
        /// Print the command as a QR code too (the default for `--kind phone`).
        #[arg(long)]
        qr: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Stop giving a device new work; what it is running finishes.
    Drain {
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Give a drained device work again.
    Resume {
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Remove a device: its token stops working at once, its connection is closed, and what
    /// it was running is placed on other devices.
    Remove {
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Give a device a new token and print the line that enrolls it with it; the old token
    /// stops working at once (a connected agent is told so and stops).
    Rotate {
        name: String,
        /// Print the command as a QR code too (the default for phones).
        #[arg(long)]
        qr: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// How the client commands reach the server.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// The orchestrator's base URL. Repeat it (or comma-separate) for replicas on one
    /// Postgres: calls go to whichever leads (docs/replicas.md).
    #[arg(
        long,
        env = "WEFT_SERVER",
        default_value = "http://127.0.0.1:7600",
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// The API token; by default read from the data directory's `api-token` file.
    #[arg(long, env = "WEFT_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Where `weft serve` keeps its API token (and its certificate's fingerprint).
    #[arg(long, env = "WEFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The SHA-256 fingerprint of the server's TLS certificate (`sha256:…`): only that
    /// certificate is accepted [default: the data directory's `server-fingerprint`, which
    /// `weft serve` writes; without one, a certificate signed by a public authority].
    #[arg(long, env = "WEFT_SERVER_FINGERPRINT")]
    pub server_fingerprint: Option<String>,
    /// Allow a plain http:// server that is not on this machine (the API token then crosses
    /// the network unencrypted).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

impl ConnArgs {
    /// The certificate fingerprint to pin: the flag's, else the one `weft serve` wrote beside
    /// the API token (for an https:// server).
    fn pin(&self) -> anyhow::Result<Option<weft_agent::tls::Fingerprint>> {
        if let Some(f) = &self.server_fingerprint {
            return f
                .parse()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("--server-fingerprint: {e}"));
        }
        let url = weft_agent::tls::ServerUrl::parse(self.first_server())
            .map_err(|e| anyhow::anyhow!("--server: {e}"))?;
        if !url.tls {
            return Ok(None);
        }
        let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let path = dir.join(FINGERPRINT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(_) => Ok(None),
        }
    }

    fn client(&self) -> anyhow::Result<Client> {
        let token = match &self.api_token {
            Some(t) => t.clone(),
            None => {
                let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
                token::read_api_token(&dir).with_context(|| {
                    format!(
                        "no API token: pass --api-token or WEFT_API_TOKEN, or run on the server's \
                         machine where `weft serve` wrote {}",
                        dir.join(token::API_TOKEN_FILE).display()
                    )
                })?
            }
        };
        let pin = self.pin()?;
        for server in &self.server {
            let url = weft_agent::tls::ServerUrl::parse(server)
                .map_err(|e| anyhow::anyhow!("--server {server}: {e}"))?;
            url.check(pin.is_some(), self.insecure_plaintext)
                .map_err(|e| anyhow::anyhow!("--server {server}: {e}"))?;
        }
        Client::replicas(&self.server, &token, pin)
    }

    fn first_server(&self) -> &str {
        self.server
            .first()
            .map_or("http://127.0.0.1:7600", String::as_str)
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. The default is loopback only.
    #[arg(long, env = "WEFT_LISTEN", default_value = "127.0.0.1:7600")]
    pub listen: SocketAddr,
    /// Database: a SQLite file path or URL, or `sqlite::memory:`.
    #[arg(long, env = "WEFT_DB", default_value = "weft.db")]
    pub db: String,
    /// Where the API token file lives (default: $XDG_DATA_HOME/weft or ~/.local/share/weft).
    #[arg(long, env = "WEFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this API token instead of the one in the data directory.
    #[arg(long, env = "WEFT_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Other `Host` values to answer to, e.g. `weft.lan:7600` (repeat or comma-separate).
    #[arg(
        long = "allowed-host",
        env = "WEFT_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Heartbeat interval in milliseconds (both directions).
    #[arg(long, env = "WEFT_HEARTBEAT_MS", default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// Longest one attempt may run, in seconds.
    #[arg(long, env = "WEFT_ATTEMPT_TIMEOUT_SECS", default_value_t = 300)]
    pub attempt_timeout_secs: u64,
    /// Longest a ready task waits for a capable device, in seconds.
    #[arg(long, env = "WEFT_QUEUE_TIMEOUT_SECS", default_value_t = 300)]
    pub queue_timeout_secs: u64,
    /// Longest a task may take over all its attempts, in seconds.
    #[arg(long, env = "WEFT_TASK_TIMEOUT_SECS", default_value_t = 3600)]
    pub task_timeout_secs: u64,
    /// How long the running attempts of a device whose connection closed wait for it to come
    /// back before they are tried elsewhere, in milliseconds [default: 2 heartbeat intervals].
    /// A device that goes silent for 2 heartbeat intervals loses its attempts at once.
    #[arg(long, env = "WEFT_LOST_GRACE_MS")]
    pub lost_grace_ms: Option<u64>,
    /// Attempts per task (1 = no retries).
    #[arg(long, env = "WEFT_RETRY_MAX_ATTEMPTS", default_value_t = 3)]
    pub retry_max_attempts: u32,
    /// Delay before the second attempt, in milliseconds; it doubles for each further attempt.
    #[arg(long, env = "WEFT_RETRY_INITIAL_BACKOFF_MS", default_value_t = 1000)]
    pub retry_initial_backoff_ms: u64,
    /// Longest delay between attempts, in milliseconds.
    #[arg(long, env = "WEFT_RETRY_MAX_BACKOFF_MS", default_value_t = 60_000)]
    pub retry_max_backoff_ms: u64,
    /// Turns a request may use in all unless it sets its own `turn_budget`.
    #[arg(long, env = "WEFT_TURN_BUDGET", default_value_t = 200)]
    pub turn_budget: u32,
    /// Turn limit of each attempt of a turn-based task unless the task sets `max_turns`.
    #[arg(long, env = "WEFT_MAX_TURNS", default_value_t = 20)]
    pub max_turns: u32,
    /// On SIGTERM, how long running attempts may take to finish before the server exits
    /// (they resume after a restart), in seconds.
    #[arg(long, env = "WEFT_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    pub shutdown_grace_secs: u64,
    /// The largest file a device may send as a task's output, in bytes (each device's owner
    /// sets a limit of their own too: policy.files.max_upload_bytes).
    #[arg(long, env = "WEFT_MAX_UPLOAD_BYTES", default_value_t = crate::config::DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,
    /// How long the files tasks produce are kept after the last request that refers to them
    /// ended, e.g. `7d`, `12h`, `30m`, `90s` (units d, h, m, s, ms); then a sweep deletes them.
    #[arg(long, env = "WEFT_ARTIFACT_RETENTION", default_value = "7d",
        value_parser = crate::retention::parse_duration)]
    pub artifact_retention: Duration,
    /// How long a client has to send a request's headers, and an agent its hello after the
    /// WebSocket upgrade, in seconds.
    #[arg(long, env = "WEFT_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Open connections in all; beyond it new connections are closed at once. A quarter is
    /// kept for established agents [default: the open-file limit less what the server needs
    /// for itself].
    #[arg(long, env = "WEFT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections from one address, welcomed agents not counted [default: a quarter of
    /// --max-connections, at most 256].
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Serve TLS (https://, wss://). On by default when --listen is not a loopback address;
    /// without --tls-cert/--tls-key a self-signed certificate is made in the data directory
    /// on first start, for the --allowed-host names and the listen address.
    #[arg(long, env = "WEFT_TLS")]
    pub tls: bool,
    /// Serve plain text on a non-loopback address: API and device tokens then cross the
    /// network unencrypted (e.g. behind a TLS-terminating proxy on the same private network).
    #[arg(long, env = "WEFT_INSECURE_PLAINTEXT", conflicts_with_all = ["tls", "tls_cert", "tls_key"])]
    pub insecure_plaintext: bool,
    /// The certificate chain (PEM) to serve instead of a generated one; read again on SIGHUP.
    #[arg(long, env = "WEFT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; read again on SIGHUP.
    #[arg(long, env = "WEFT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Replicas on one Postgres (docs/replicas.md): how long the leader's lease lasts
    /// without being renewed, in milliseconds. A standby takes over at most this long (and
    /// one --lease-renew-ms) after the leader stopped renewing.
    #[arg(long, env = "WEFT_LEASE_TTL_MS", default_value_t = 5000)]
    pub lease_ttl_ms: u64,
    /// How often the leader renews its lease and a standby tries to take it, in milliseconds
    /// (at most half of --lease-ttl-ms).
    #[arg(long, env = "WEFT_LEASE_RENEW_MS", default_value_t = 1000)]
    pub lease_renew_ms: u64,
    /// The URL standbys send clients and agents to while this replica leads [default: the
    /// listen address, http:// or https://]. Needed when listening on 0.0.0.0 or behind a
    /// proxy.
    #[arg(long, env = "WEFT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The planner (`--planner rules|llm`) and the LLM's settings.
    #[command(flatten)]
    pub llm: llm_args::LlmArgs,
}

impl ServeArgs {
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        if self.heartbeat_ms < 100 {
            bail!("--heartbeat-ms must be at least 100");
        }
        if self.attempt_timeout_secs == 0 || self.queue_timeout_secs == 0 {
            bail!("timeouts must be at least 1 second");
        }
        let mut o = ServeOptions::new(
            self.db.clone(),
            self.data_dir.clone().unwrap_or_else(default_data_dir),
        );
        o.api_token.clone_from(&self.api_token);
        o.allowed_hosts = self
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        o.heartbeat_interval = Duration::from_millis(self.heartbeat_ms);
        o.attempt_timeout = Duration::from_secs(self.attempt_timeout_secs);
        o.queue_timeout = Duration::from_secs(self.queue_timeout_secs);
        o.task_timeout = Duration::from_secs(self.task_timeout_secs.max(1));
        o.lost_grace = Duration::from_millis(
            self.lost_grace_ms
                .unwrap_or(self.heartbeat_ms.saturating_mul(2)),
        );
        o.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        o.replica = crate::replica::Options {
            ttl: Duration::from_millis(self.lease_ttl_ms),
            renew_every: Duration::from_millis(self.lease_renew_ms),
            advertise_url: self.advertise_url.clone(),
        };
        o.replica
            .validate()
            .map_err(|e| anyhow::anyhow!("--lease-renew-ms, --lease-ttl-ms: {e}"))?;
        if let Some(u) = &self.advertise_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("--advertise-url {u}: give an http:// or https:// URL");
        }
        o.max_upload_bytes = self.max_upload_bytes;
        o.retention = crate::retention::Options::new(self.artifact_retention);
        o.turn_budget = self.turn_budget;
        o.max_turns = self.max_turns.max(1);
        o.retry.max_attempts = self.retry_max_attempts;
        o.retry.initial_backoff_ms = self.retry_initial_backoff_ms;
        o.retry.max_backoff_ms = self.retry_max_backoff_ms;
        o.retry
            .validate()
            .map_err(|e| anyhow::anyhow!("retry settings: {e}"))?;
        if self.header_timeout_secs == 0 {
            bail!("--header-timeout-secs must be at least 1");
        }
        o.header_timeout = Duration::from_secs(self.header_timeout_secs);
        o.hello_timeout = o.header_timeout;
        if self.max_connections.is_some_and(|n| n < 8) {
            bail!("--max-connections must be at least 8");
        }
        if self.max_connections_per_address == Some(0) {
            bail!("--max-connections-per-address must be at least 1");
        }
        o.max_connections = self.max_connections;
        o.max_connections_per_address = self.max_connections_per_address;
        let loopback = self.listen.ip().is_loopback();
        let files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let tls = self.tls || files.is_some() || (!loopback && !self.insecure_plaintext);
        o.tls = tls.then(|| {
            files.unwrap_or_else(|| CertSource::Generated {
                dir: o.data_dir.clone(),
                names: crate::listen::tls::certificate_names(self.listen, &o.allowed_hosts),
            })
        });
        o.insecure_plaintext = !tls && !loopback;
        o.planner = self.llm.choice()?;
        Ok(o)
    }
}

/// Says the certificate's fingerprint, and keeps it beside the API token for the CLI.
fn note_fingerprint(data_dir: &std::path::Path, fp: weft_agent::tls::Fingerprint) {
    eprintln!("weft: TLS certificate {fp} (devices enroll with this fingerprint)");
    let path = data_dir.join(FINGERPRINT_FILE);
    if let Err(e) = std::fs::write(&path, format!("{fp}\n")) {
        eprintln!("weft: cannot write {}: {e}", path.display());
    }
}

/// Reads the certificate and key again on SIGHUP; connections already open keep theirs.
fn reload_on_sighup(tls: std::sync::Arc<ServerTls>, data_dir: PathBuf) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(fp) => note_fingerprint(&data_dir, fp),
                Err(e) => eprintln!("weft: SIGHUP: kept the old certificate: {e}"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (tls, data_dir);
}

/// A token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// `weft submit --wait`: submits `text` with a wait and prints the request's id and final
/// view, following its event stream if it runs longer than the server waits; gives up after
/// `timeout`. Exit code 0 if the request succeeded, else 1.
async fn submit_waiting(client: &Client, text: &str, timeout: Duration) -> anyhow::Result<i32> {
    let started = tokio::time::Instant::now();
    let mut view = client.submit_waiting(text, timeout).await?;
    println!("{}", view.id);
    if !view.status.is_terminal() {
        let id = view.id.to_string();
        let left = timeout.saturating_sub(started.elapsed());
        tokio::time::timeout(left, client.follow(&id, |_| {}))
            .await
            .context("gave up waiting: --timeout-secs passed")??;
        view = client.request(&id).await?;
    }
    println!("\n{}", render::request(&view));
    Ok(if view.status == RequestStatus::Succeeded {
        0
    } else {
        1
    })
}

/// Runs a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Cmd::Serve(args) => {
            let opts = args.options()?;
            // A certificate that cannot be used stops the server before it listens.
            if let Some(source) = &opts.tls {
                ServerTls::load(source.clone())?;
            }
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let shutdown = shutdown_on_signal();
            let running = server::start(listener, opts.clone(), shutdown).await?;
            let scheme = if running.tls.is_some() {
                "https"
            } else {
                "http"
            };
            eprintln!("weft: listening on {scheme}://{}", running.addr);
            if opts.api_token.is_none() {
                eprintln!(
                    "weft: API token in {}",
                    opts.data_dir.join(token::API_TOKEN_FILE).display()
                );
            }
            if let Some(tls) = &running.tls {
                note_fingerprint(&opts.data_dir, tls.fingerprint());
                reload_on_sighup(tls.clone(), opts.data_dir.clone());
            } else {
                // A fingerprint left by an earlier start with TLS would pin a certificate this
                // server no longer presents.
                let _ = std::fs::remove_file(opts.data_dir.join(FINGERPRINT_FILE));
            }
            if opts.insecure_plaintext {
                eprintln!(
                    "weft: WARNING: --insecure-plaintext: API and device tokens cross the network \
                     in plain text"
                );
            }
            running.join.await.context("server task failed")??;
            Ok(0)
        }
        Cmd::Submit {
            text,
            watch,
            wait,
            timeout_secs,
            conn,
        } => {
            let client = conn.client()?;
            if wait {
                return submit_waiting(&client, &text, Duration::from_secs(timeout_secs)).await;
            }
            let view = client.submit(&text).await?;
            println!("{}", view.id);
            if !watch {
                return Ok(0);
            }
            let start = view.created_at_ms;
            let follow = client.follow(view.id.as_str(), |ev| {
                if let Some(line) = render::event_line(ev, start) {
                    println!("{line}");
                }
            });
            tokio::time::timeout(Duration::from_secs(timeout_secs), follow)
                .await
                .context("gave up watching: --timeout-secs passed")??;
            let view = client.request(view.id.as_str()).await?;
            println!("\n{}", render::request(&view));
            Ok(if view.status == RequestStatus::Succeeded {
                0
            } else {
                1
            })
        }
        Cmd::Status { id, conn } => {
            let view = conn.client()?.request(&id).await?;
            print!("{}", render::request(&view));
            Ok(0)
        }
        Cmd::Cancel { id, task, conn } => {
            let view = conn.client()?.cancel(&id, task.as_deref()).await?;
            match task {
                Some(t) => println!("cancelling task {t} of {}", view.id),
                None => println!("cancelling request {}", view.id),
            }
            Ok(0)
        }
        Cmd::Edit { id, file, conn } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let batch: serde_json::Value =
                serde_json::from_str(&text).context("the edit batch is not valid JSON")?;
            let view = conn.client()?.edit(&id, &batch).await?;
            println!("graph of {} is now at version {}", view.id, view.version);
            print!("{}", render::request(&view));
            Ok(0)
        }
        Cmd::Devices { conn } => {
            let devices = conn.client()?.devices().await?;
            if devices.is_empty() {
                println!("no devices registered; add one with `weft device add NAME --kind KIND`");
            }
            for d in devices {
                println!(
                    "{:<16} {:<8} {:<8} running {}/{}  {}  [{}]",
                    d.name.as_str(),
                    d.kind,
                    format!("{:?}", d.status).to_lowercase(),
                    d.running,
                    d.max_concurrency,
                    d.platform.as_deref().unwrap_or("-"),
                    d.capabilities.join(", ")
                );
            }
            Ok(0)
        }
        Cmd::Device(DeviceCmd::Add {
            name,
            kind,
            qr,
            conn,
        }) => {
            let client = conn.client()?;
            let created = client.add_device(&name, &kind).await?;
            println!(
                "registered {} ({}). Its token is shown only now.",
                created.name, created.kind
            );
            let enrollment = enroll::Enrollment::new(&conn.server, &created, client.pin());
            print!("{}", enrollment.print(qr)?);
            Ok(0)
        }
        Cmd::Device(DeviceCmd::Remove { name, conn }) => {
            let r = conn.client()?.remove_device(&name).await?;
            let how = if r.was_connected {
                "its connection was closed; "
            } else {
                ""
            };
            println!(
                "removed {}: its token no longer works; {how}{} running attempt(s) placed again",
                r.name, r.attempts_lost
            );
            Ok(0)
        }
        Cmd::Device(DeviceCmd::Rotate { name, qr, conn }) => {
            let client = conn.client()?;
            let rotated = client.rotate_token(&name).await?;
            println!(
                "new token for {}: the old one no longer works (an agent connected with it is \
                 told so and stops). The new token is shown only now.",
                rotated.name
            );
            let enrollment =
                enroll::Enrollment::new(&conn.server, &rotated, client.pin()).new_token();
            print!("{}", enrollment.print(qr)?);
            Ok(0)
        }
        Cmd::Device(DeviceCmd::Drain { name, conn }) => {
            let d = conn.client()?.set_draining(&name, true).await?;
            println!(
                "{} is draining: no new work; {} attempt(s) still running",
                d.name, d.running
            );
            Ok(0)
        }
        Cmd::Device(DeviceCmd::Resume { name, conn }) => {
            let d = conn.client()?.set_draining(&name, false).await?;
            println!("{} takes work again", d.name);
            Ok(0)
        }
        Cmd::Agent(args) => weft_agent::cli::run(args).await,
        Cmd::Demo(args) => Ok(if demo::run(args).await? { 0 } else { 1 }),
        Cmd::Open { no_browser, conn } => open::run(&conn.client()?, no_browser).await,
    }
}
