//! Typed, validated server configuration. Parsed and checked before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weft_protocol::RetryPolicy;

/// Everything `weft serve` needs. Build it with [`ServeOptions::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Database URL or file path (`weft.db`, `sqlite:///var/lib/weft.db`, `sqlite::memory:`).
    pub db: String,
    /// Where the API token file lives.
    pub data_dir: PathBuf,
    /// The API token; when `None`, it is read from (or created in) `data_dir`.
    pub api_token: Option<String>,
    /// Extra `Host` header values accepted besides the listen address (e.g. `weft.lan:7600`).
    pub allowed_hosts: Vec<String>,
    /// Interval of heartbeats in both directions. A device silent for 2 intervals is
    /// disconnected and its running attempts are placed elsewhere at once.
    pub heartbeat_interval: Duration,
    /// Longest an attempt may run before it is stopped and failed with `timeout`.
    pub attempt_timeout: Duration,
    /// Longest a ready task may wait for a capable device before it fails with `no_device`.
    pub queue_timeout: Duration,
    /// Longest a task may take over all its attempts before it fails with `task_timeout`.
    pub task_timeout: Duration,
    /// The retry policy given to every new task.
    pub retry: RetryPolicy,
    /// Turns (LLM agent steps) a request may use in all, unless it asks for another budget.
    pub turn_budget: u32,
    /// Turn limit of each attempt of a turn-based task, unless the task sets its own.
    pub max_turns: u32,
    /// How long the attempts of a device whose connection closed wait for it to come back (and
    /// reattach them) before they are declared lost and tried again elsewhere, without a
    /// backoff. 2 heartbeat intervals by default; set it again after changing the interval.
    pub lost_grace: Duration,
    /// How often the engine checks deadlines, backoffs and grace windows.
    pub tick: Duration,
    /// How long an agent has to send its `hello` after the WebSocket upgrade (not restarted by
    /// pings or other frames).
    pub hello_timeout: Duration,
    /// How long a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Open connections in all (`None`: sized from the open-file limit). A quarter of them is
    /// kept for established agents.
    pub max_connections: Option<usize>,
    /// Open connections from one address, agents once welcomed not counted (`None`: a quarter
    /// of `max_connections`, at most 256).
    pub max_connections_per_address: Option<usize>,
    /// How failed authentications are limited per address.
    pub auth_limit: crate::listen::AuthLimit,
    /// TLS on the listener, and where its certificate comes from (`None`: plain text).
    pub tls: Option<crate::listen::tls::CertSource>,
    /// Plain text on a non-loopback address was asked for (`--insecure-plaintext`): said in
    /// a warning at start and in `/healthz`.
    pub insecure_plaintext: bool,
    /// Grace period for in-flight work at shutdown.
    pub shutdown_grace: Duration,
    /// The largest file a device may upload (`PUT /v1/attempts/{attempt}/files/{name}`).
    pub max_upload_bytes: u64,
    /// How long files are kept after the last request that refers to them ended, and how
    /// often that is swept (`--artifact-retention`; `crate::retention`).
    pub retention: crate::retention::Options,
    /// Which planner turns request texts into graphs (rules by default).
    pub planner: PlannerChoice,
    /// The lease replicas on one Postgres share the lead by (docs/replicas.md); unused on
    /// SQLite, which serves one process.
    pub replica: crate::replica::Options,
}

/// Which planner the server uses.
#[derive(Debug, Clone, Default)]
pub enum PlannerChoice {
    /// The offline rules planner (docs/rules-planner.md).
    #[default]
    Rules,
    /// The LLM planner, which also revises running graphs after results.
    Llm(Box<LlmOptions>),
}

/// Settings of the LLM planner. The API key inside is redacted in `Debug` and never stored.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    pub planner: weft_planner::llm::LlmPlannerConfig,
    /// Revision rounds per request (0: never revise).
    pub revise_rounds: u32,
}

impl LlmOptions {
    /// Defaults for `base_url` and `model`: 2 repair rounds, 2000 bytes of output per task,
    /// 3 revision rounds per request.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            planner: weft_planner::llm::LlmPlannerConfig::new(
                weft_planner::llm::ClientConfig::new(base_url, model),
            ),
            revise_rounds: 3,
        }
    }
}

impl PlannerChoice {
    /// Revision rounds per request (0 for planners that do not revise).
    pub fn revise_rounds(&self) -> u32 {
        match self {
            PlannerChoice::Rules => 0,
            PlannerChoice::Llm(o) => o.revise_rounds,
        }
    }

    /// Builds the planner (in replay mode this loads the cassette, so a missing file fails
    /// here, before anything listens).
    pub fn build(&self) -> Result<std::sync::Arc<dyn weft_planner::Planner>, crate::Error> {
        Ok(match self {
            PlannerChoice::Rules => std::sync::Arc::new(weft_planner::RulesPlanner::new()),
            PlannerChoice::Llm(o) => std::sync::Arc::new(
                weft_planner::llm::LlmPlanner::new(o.planner.clone())
                    .map_err(|e| crate::Error::Config(e.to_string()))?,
            ),
        })
    }
}

/// The largest file a device may upload unless `--max-upload-bytes` says: 4 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 4 << 30;

impl ServeOptions {
    pub fn new(db: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            db: db.into(),
            data_dir: data_dir.into(),
            api_token: None,
            allowed_hosts: Vec::new(),
            heartbeat_interval: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(300),
            queue_timeout: Duration::from_secs(300),
            task_timeout: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            turn_budget: 200,
            max_turns: 20,
            // 2 heartbeat intervals.
            lost_grace: Duration::from_secs(10),
            tick: Duration::from_millis(100),
            hello_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: None,
            max_connections_per_address: None,
            auth_limit: crate::listen::AuthLimit::default(),
            tls: None,
            insecure_plaintext: false,
            shutdown_grace: Duration::from_secs(5),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            retention: crate::retention::Options::new(crate::retention::DEFAULT_RETENTION),
            planner: PlannerChoice::Rules,
            replica: crate::replica::Options::default(),
        }
    }

    /// The `Host` header values this server answers to when bound to `addr`.
    pub fn host_allowlist(&self, addr: SocketAddr) -> Vec<String> {
        let port = addr.port();
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        hosts.extend(self.allowed_hosts.iter().cloned());
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// The default data directory: `$WEFT_DATA_DIR`, else `$XDG_DATA_HOME/weft`, else
/// `~/.local/share/weft`, else `./.weft`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("weft");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/weft");
    }
    PathBuf::from(".weft")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_allows_its_names() {
        let o = ServeOptions::new("x", "/tmp");
        let hosts = o.host_allowlist("127.0.0.1:7600".parse().unwrap());
        assert!(hosts.contains(&"localhost:7600".to_string()));
        assert!(hosts.contains(&"127.0.0.1:7600".to_string()));
        assert!(!hosts.contains(&"evil.example:7600".to_string()));
        let o = ServeOptions {
            allowed_hosts: vec!["weft.lan:7600".into()],
            ..o
        };
        let hosts = o.host_allowlist("10.0.0.2:7600".parse().unwrap());
        assert_eq!(hosts, vec!["10.0.0.2:7600", "weft.lan:7600"]);
    }
}
