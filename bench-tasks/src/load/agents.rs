//! Lightweight agents that speak the real protocol over real WebSockets, many per process.
//!
//! Each agent is one tokio task holding one connection. It sends `hello`, waits for `welcome`,
//! then answers every `assign` at once with `accept` and a `result` (succeeded, summary `ok`,
//! data `null`): a no-op executor. It sends a `heartbeat` every interval the `welcome` names and
//! counts what the orchestrator sends (`ack`, `heartbeat`, `cancel`, `error`).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{AgentMsg, AttemptId, PROTOCOL_VERSION, ServerMsg, TaskOutput};

use super::client::Api;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How many agents and what they claim to be.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub count: usize,
    /// Device names are `{prefix}{i}`.
    pub name_prefix: String,
    pub kind: String,
    pub capabilities: Vec<String>,
    /// The `max_concurrency` each agent advertises.
    pub max_concurrency: u32,
    /// How many registrations / connection handshakes run at once.
    pub parallelism: usize,
}

impl FleetOptions {
    pub fn new(count: usize) -> Self {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0);
        Self {
            count,
            name_prefix: format!("load-{stamp}-"),
            kind: "server".into(),
            capabilities: vec!["shell".into(), "fs".into(), "http".into()],
            max_concurrency: 16,
            parallelism: 32,
        }
    }
}

/// A device name and its token.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub name: String,
    pub token: String,
}

/// What the agents did, all together.
#[derive(Debug, Default)]
pub struct Counters {
    assigns: AtomicU64,
    results: AtomicU64,
    acks: AtomicU64,
    cancels: AtomicU64,
    errors: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeats_received: AtomicU64,
    disconnects: AtomicU64,
    first_problem: Mutex<Option<String>>,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CounterSnapshot {
    pub assigns: u64,
    pub results: u64,
    pub acks: u64,
    pub cancels: u64,
    pub errors: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    pub disconnects: u64,
    /// The first `error` frame or connection failure seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_problem: Option<String>,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            assigns: g(&self.assigns),
            results: g(&self.results),
            acks: g(&self.acks),
            cancels: g(&self.cancels),
            errors: g(&self.errors),
            heartbeats_sent: g(&self.heartbeats_sent),
            heartbeats_received: g(&self.heartbeats_received),
            disconnects: g(&self.disconnects),
            first_problem: self.first_problem.lock().ok().and_then(|p| p.clone()),
        }
    }

    fn problem(&self, what: String) {
        if let Ok(mut p) = self.first_problem.lock()
            && p.is_none()
        {
            *p = Some(what);
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Registers `opts.count` devices through `POST /v1/devices`.
pub async fn register(api: &Api, opts: &FleetOptions) -> anyhow::Result<Vec<Credentials>> {
    let results: Vec<anyhow::Result<Credentials>> = futures_util::stream::iter(0..opts.count)
        .map(|i| {
            let name = format!("{}{i}", opts.name_prefix);
            async move {
                let token = api.add_device(&name, &opts.kind).await?;
                Ok(Credentials { name, token })
            }
        })
        .buffered(opts.parallelism.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Connected agents. Dropping the fleet (or [`Fleet::stop`]) closes every connection.
#[derive(Debug)]
pub struct Fleet {
    set: JoinSet<()>,
    counters: Arc<Counters>,
    /// The heartbeat interval the orchestrator named in its `welcome`.
    pub heartbeat_interval: Duration,
}

#[derive(Debug)]
struct Profile {
    kind: String,
    capabilities: Vec<String>,
    max_concurrency: u32,
}

impl Fleet {
    /// Connects one agent per credential and returns once every one has been welcomed.
    pub async fn connect(
        api: &Api,
        creds: Vec<Credentials>,
        opts: &FleetOptions,
    ) -> anyhow::Result<Fleet> {
        let url = Arc::<str>::from(api.agent_url());
        let profile = Arc::new(Profile {
            kind: opts.kind.clone(),
            capabilities: opts.capabilities.clone(),
            max_concurrency: opts.max_concurrency,
        });
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Semaphore::new(opts.parallelism.max(1)));
        let mut set = JoinSet::new();
        let mut welcomes = Vec::with_capacity(creds.len());
        for cred in creds {
            let (tx, rx) = oneshot::channel();
            welcomes.push((cred.name.clone(), rx));
            set.spawn(agent(
                url.clone(),
                cred,
                profile.clone(),
                counters.clone(),
                gate.clone(),
                tx,
            ));
        }
        let mut heartbeat_ms = 0;
        for (name, rx) in welcomes {
            match rx.await {
                Ok(Ok(ms)) => heartbeat_ms = ms,
                Ok(Err(e)) => {
                    set.shutdown().await;
                    return Err(e.context(format!("agent {name} could not connect")));
                }
                Err(_) => {
                    set.shutdown().await;
                    bail!("agent {name} stopped before its welcome");
                }
            }
        }
        Ok(Fleet {
            set,
            counters,
            heartbeat_interval: Duration::from_millis(heartbeat_ms),
        })
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Closes every connection (the tasks are aborted; the server sees the sockets close).
    pub async fn stop(mut self) {
        self.set.shutdown().await;
    }
}

async fn agent(
    url: Arc<str>,
    cred: Credentials,
    profile: Arc<Profile>,
    counters: Arc<Counters>,
    gate: Arc<Semaphore>,
    ready: oneshot::Sender<anyhow::Result<u64>>,
) {
    let permit = gate.acquire_owned().await;
    let (ws, heartbeat_ms) = match handshake(&url, &cred, &profile).await {
        Ok(ok) => ok,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(permit);
    let _ = ready.send(Ok(heartbeat_ms));
    if let Err(e) = serve(ws, Duration::from_millis(heartbeat_ms.max(1)), &counters).await {
        counters.problem(format!("{}: {e}", cred.name));
    }
    bump(&counters.disconnects);
}

async fn handshake(url: &str, cred: &Credentials, profile: &Profile) -> anyhow::Result<(Ws, u64)> {
    // A small read buffer keeps thousands of agents in one process cheap (the default is 128 KiB
    // per connection). This shapes only the generator's memory, not the orchestrator's.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .context("WebSocket connect")?;
    // Written as JSON rather than as `AgentMsg::Hello` so that the optional profile fields that
    // newer protocol revisions add (and that a no-op agent leaves out) never break this build.
    let hello = serde_json::json!({
        "type": "hello",
        "protocol_version": PROTOCOL_VERSION,
        "device": cred.name,
        "token": cred.token,
        "kind": profile.kind,
        "platform": format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        "capabilities": profile.capabilities,
        "max_concurrency": profile.max_concurrency,
        "held_attempts": [],
    });
    ws.send(Message::text(hello.to_string())).await?;
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t),
                Some(Ok(Message::Close(c))) => bail!("closed before welcome: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before welcome"),
            }
        }
    })
    .await
    .context("no welcome within 60 s")??;
    match serde_json::from_str::<ServerMsg>(first.as_str())? {
        ServerMsg::Welcome {
            heartbeat_interval_ms,
            ..
        } => Ok((ws, heartbeat_interval_ms)),
        ServerMsg::Refused { error } => bail!("refused: {} ({})", error.code, error.message),
        other => bail!("expected welcome, got {other:?}"),
    }
}

fn result_frame(attempt_id: AttemptId, status: ResultStatus) -> anyhow::Result<Message> {
    let msg = AgentMsg::Result {
        attempt_id,
        status,
        output: TaskOutput {
            summary: "ok".into(),
            data: serde_json::Value::Null,
        },
        error: None,
    };
    Ok(Message::text(serde_json::to_string(&msg)?))
}

async fn serve(mut ws: Ws, heartbeat: Duration, counters: &Counters) -> anyhow::Result<()> {
    let beat = serde_json::to_string(&AgentMsg::Heartbeat {})?;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                ws.send(Message::text(beat.clone())).await?;
                bump(&counters.heartbeats_sent);
            }
            frame = ws.next() => {
                let text = match frame {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_str::<ServerMsg>(text.as_str())? {
                    ServerMsg::Assign { attempt_id, .. } => {
                        bump(&counters.assigns);
                        let accept = AgentMsg::Accept { attempt_id: attempt_id.clone() };
                        ws.feed(Message::text(serde_json::to_string(&accept)?)).await?;
                        ws.feed(result_frame(attempt_id, ResultStatus::Succeeded)?).await?;
                        ws.flush().await?;
                        bump(&counters.results);
                    }
                    ServerMsg::Ack { .. } => bump(&counters.acks),
                    ServerMsg::Heartbeat {} => bump(&counters.heartbeats_received),
                    ServerMsg::Cancel { attempt_id, .. } => {
                        bump(&counters.cancels);
                        ws.send(result_frame(attempt_id, ResultStatus::Cancelled)?).await?;
                    }
                    ServerMsg::Error { error } => {
                        bump(&counters.errors);
                        counters.problem(format!("error frame: {} ({})", error.code, error.message));
                    }
                    // Turn grants matter only to executors that work in turns.
                    ServerMsg::Turns { .. } => {}
                    other @ (ServerMsg::Welcome { .. } | ServerMsg::Refused { .. }) => {
                        counters.problem(format!("unexpected frame: {other:?}"));
                    }
                }
            }
        }
    }
}
