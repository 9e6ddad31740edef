//! Lightweight agents that speak the real protocol over real WebSockets, many per process.
//!
//! Each agent is one tokio task holding one connection. It sends `hello`, waits for `welcome`,
//! then answers every `assign` at once with `accept` and a `result` (succeeded, summary `ok`,
//! data `null`): a no-op executor. It sends a `heartbeat` every interval the `welcome` names and
//! counts what the orchestrator sends (`ack`, `heartbeat`, `cancel`, `error`).
//!
//! A [`LosingFleet`] is the variant behind `weft-load lost`: the agent that receives a task's
//! first attempt accepts it, holds the result back and goes lost (see [`Loss`]); later attempts
//! of the task are answered at once, and a lost agent comes back when told to.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{
    AgentMsg, AttemptId, PROTOCOL_VERSION, RequestId, ServerMsg, TaskId, TaskOutput,
};

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

impl Profile {
    fn of(opts: &FleetOptions) -> Self {
        Self {
            kind: opts.kind.clone(),
            capabilities: opts.capabilities.clone(),
            max_concurrency: opts.max_concurrency,
        }
    }
}

impl Fleet {
    /// Connects one agent per credential and returns once every one has been welcomed.
    pub async fn connect(
        api: &Api,
        creds: Vec<Credentials>,
        opts: &FleetOptions,
    ) -> anyhow::Result<Fleet> {
        let url = Arc::<str>::from(api.agent_url());
        let profile = Arc::new(Profile::of(opts));
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
        let heartbeat_interval = await_welcomes(&mut set, welcomes).await?;
        Ok(Fleet {
            set,
            counters,
            heartbeat_interval,
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

/// Waits for every agent's welcome; returns the heartbeat interval the orchestrator named. On a
/// failure every agent is stopped.
async fn await_welcomes(
    set: &mut JoinSet<()>,
    welcomes: Vec<(String, oneshot::Receiver<anyhow::Result<u64>>)>,
) -> anyhow::Result<Duration> {
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
    Ok(Duration::from_millis(heartbeat_ms))
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
        ServerMsg::Refused { error } => Err(HelloRefused {
            code: error.code,
            message: error.message,
        }
        .into()),
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// The orchestrator answered a `hello` with `refused`.
#[derive(Debug)]
pub struct HelloRefused {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for HelloRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {} ({})", self.code, self.message)
    }
}

impl std::error::Error for HelloRefused {}

fn result_frame(attempt_id: AttemptId, status: ResultStatus) -> anyhow::Result<Message> {
    let msg = AgentMsg::Result {
        attempt_id,
        status,
        output: TaskOutput {
            summary: "ok".into(),
            data: serde_json::Value::Null,
        },
        error: None,
        files: vec![],
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
                        answer(&mut ws, attempt_id, counters).await?;
                    }
                    other => on_other_frame(&mut ws, other, counters).await?,
                }
            }
        }
    }
}

/// Accepts an attempt and sends its result (succeeded) at once.
async fn answer(ws: &mut Ws, attempt_id: AttemptId, counters: &Counters) -> anyhow::Result<()> {
    let accept = AgentMsg::Accept {
        attempt_id: attempt_id.clone(),
    };
    ws.feed(Message::text(serde_json::to_string(&accept)?))
        .await?;
    ws.feed(result_frame(attempt_id, ResultStatus::Succeeded)?)
        .await?;
    ws.flush().await?;
    bump(&counters.results);
    Ok(())
}

/// Every frame but `assign`: counted; a `cancel` is answered with a cancelled result.
async fn on_other_frame(ws: &mut Ws, msg: ServerMsg, counters: &Counters) -> anyhow::Result<()> {
    match msg {
        ServerMsg::Ack { .. } => bump(&counters.acks),
        ServerMsg::Heartbeat {} => bump(&counters.heartbeats_received),
        ServerMsg::Cancel { attempt_id, .. } => {
            bump(&counters.cancels);
            ws.send(result_frame(attempt_id, ResultStatus::Cancelled)?)
                .await?;
        }
        ServerMsg::Error { error } => {
            bump(&counters.errors);
            counters.problem(format!("error frame: {} ({})", error.code, error.message));
        }
        // Turn grants matter only to executors that work in turns.
        ServerMsg::Turns { .. } => {}
        other @ (ServerMsg::Assign { .. }
        | ServerMsg::Welcome { .. }
        | ServerMsg::Refused { .. }) => {
            counters.problem(format!("unexpected frame: {other:?}"));
        }
    }
    Ok(())
}

// ---- agents that go lost ---------------------------------------------------------------------

/// How an agent is made lost while it holds an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// The TCP connection is dropped without a close frame, as when the agent's process is killed.
    Close,
    /// Nothing more is sent or read (no heartbeats, no frames) but the socket stays open, as in a
    /// network partition.
    Silent,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loss::Close => "close",
            Loss::Silent => "silent",
        })
    }
}

/// What an agent of a [`LosingFleet`] reports.
#[derive(Debug)]
pub enum LossEvent {
    /// The first attempt of a task arrived at `agent`, which accepted it and then went lost.
    WentLost {
        agent: usize,
        request_id: RequestId,
        task_id: TaskId,
        /// When the `assign` frame was read.
        assigned: Instant,
        /// When the connection was dropped or went silent.
        lost: Instant,
    },
    /// A later attempt of a task (its `assign` read at `at`) arrived at `agent`, which answered
    /// it at once.
    Reassigned {
        agent: usize,
        request_id: RequestId,
        task_id: TaskId,
        at: Instant,
    },
    /// `agent` is connected again after going lost; the orchestrator refused `refused` hellos
    /// with `already_connected` first.
    Reconnected { agent: usize, refused: u32 },
    /// `agent`'s connection ended when it should not have, or it could not reconnect.
    Failed { agent: usize, error: String },
}

/// What the agents of a [`LosingFleet`] share.
#[derive(Debug, Default)]
struct LossState {
    /// How an agent that receives the first attempt of a task goes lost; `None`: it answers.
    loss: Mutex<Option<Loss>>,
    /// Tasks whose first attempt some agent has received.
    seen: Mutex<HashSet<(RequestId, TaskId)>>,
    counters: Counters,
}

/// Agents that go lost on the first attempt of a task, and answer every later attempt at once.
///
/// While [`LosingFleet::set_loss`] names a [`Loss`], the agent that receives a task's first
/// `assign` sends `accept`, holds the result back and goes lost that way ([`LossEvent::WentLost`]).
/// Any agent that receives a later attempt of the same task answers it at once with `accept` and
/// a result ([`LossEvent::Reassigned`]). A lost agent stays away until [`LosingFleet::reconnect`].
/// Dropping the fleet (or [`LosingFleet::stop`]) closes every connection.
#[derive(Debug)]
pub struct LosingFleet {
    set: JoinSet<()>,
    state: Arc<LossState>,
    /// One per agent: a reconnect request and its time limit.
    reconnect: Vec<mpsc::UnboundedSender<Duration>>,
    events: mpsc::UnboundedReceiver<LossEvent>,
    /// The heartbeat interval the orchestrator named in its `welcome`.
    pub heartbeat_interval: Duration,
}

/// How often a hello refused with `already_connected` is tried again.
const REJOIN_RETRY: Duration = Duration::from_millis(100);

impl LosingFleet {
    /// Connects one agent per credential (agent `i` is `creds[i]`) and returns once every one
    /// has been welcomed.
    pub async fn connect(
        api: &Api,
        creds: Vec<Credentials>,
        opts: &FleetOptions,
    ) -> anyhow::Result<LosingFleet> {
        let url = Arc::<str>::from(api.agent_url());
        let profile = Arc::new(Profile::of(opts));
        let state = Arc::new(LossState::default());
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut set = JoinSet::new();
        let mut welcomes = Vec::with_capacity(creds.len());
        let mut reconnect = Vec::with_capacity(creds.len());
        for (i, cred) in creds.into_iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            welcomes.push((cred.name.clone(), rx));
            let (rejoin_tx, rejoin_rx) = mpsc::unbounded_channel();
            reconnect.push(rejoin_tx);
            set.spawn(losing_agent(
                i,
                Link {
                    url: url.clone(),
                    cred,
                    profile: profile.clone(),
                },
                state.clone(),
                rejoin_rx,
                events_tx.clone(),
                tx,
            ));
        }
        let heartbeat_interval = await_welcomes(&mut set, welcomes).await?;
        Ok(LosingFleet {
            set,
            state,
            reconnect,
            events,
            heartbeat_interval,
        })
    }

    /// How the agent that receives the next task's first attempt goes lost (`None`: it answers).
    pub fn set_loss(&self, loss: Option<Loss>) {
        *self
            .state
            .loss
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loss;
    }

    /// The next event, or `None` if none came by `deadline` (or every agent has stopped).
    pub async fn next_event(&mut self, deadline: Instant) -> Option<LossEvent> {
        tokio::time::timeout_at(deadline.into(), self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Asks lost `agent` to connect again within `timeout` (a fresh connection, `hello` with no
    /// held attempts); it answers with [`LossEvent::Reconnected`] or [`LossEvent::Failed`].
    pub fn reconnect(&self, agent: usize, timeout: Duration) {
        if let Some(tx) = self.reconnect.get(agent) {
            let _ = tx.send(timeout);
        }
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.state.counters.snapshot()
    }

    /// Closes every connection (the tasks are aborted).
    pub async fn stop(mut self) {
        self.set.shutdown().await;
    }
}

/// Where and as whom an agent connects.
struct Link {
    url: Arc<str>,
    cred: Credentials,
    profile: Arc<Profile>,
}

/// How [`serve_losing`] ended.
enum Served {
    /// The orchestrator closed the connection.
    Closed,
    /// The agent went lost; for [`Loss::Silent`] this is its still-open socket.
    Lost(Option<Box<Ws>>),
}

async fn losing_agent(
    agent: usize,
    link: Link,
    state: Arc<LossState>,
    mut reconnect: mpsc::UnboundedReceiver<Duration>,
    events: mpsc::UnboundedSender<LossEvent>,
    ready: oneshot::Sender<anyhow::Result<u64>>,
) {
    let (mut ws, heartbeat_ms) = match handshake(&link.url, &link.cred, &link.profile).await {
        Ok(ok) => ok,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(heartbeat_ms));
    let heartbeat = Duration::from_millis(heartbeat_ms.max(1));
    let fail = |error: String| {
        bump(&state.counters.disconnects);
        state
            .counters
            .problem(format!("{}: {error}", link.cred.name));
        let _ = events.send(LossEvent::Failed { agent, error });
    };
    loop {
        let parked = match serve_losing(agent, ws, heartbeat, &state, &events).await {
            Ok(Served::Lost(parked)) => parked,
            Ok(Served::Closed) => return fail("the orchestrator closed the connection".into()),
            Err(e) => return fail(format!("{e:#}")),
        };
        let Some(timeout) = reconnect.recv().await else {
            return;
        };
        // A silent agent's socket closes only now, when the agent comes back.
        drop(parked);
        match rejoin(&link, timeout).await {
            Ok((next, refused)) => {
                ws = next;
                let _ = events.send(LossEvent::Reconnected { agent, refused });
            }
            Err(e) => return fail(format!("reconnecting: {e:#}")),
        }
    }
}

/// Connects again with a fresh `hello` that holds no attempts. While the orchestrator has not
/// yet noticed the old connection is gone it refuses with `already_connected`; the hello is then
/// tried again every [`REJOIN_RETRY`] until `timeout`. Returns the connection and the number of
/// such refusals.
async fn rejoin(link: &Link, timeout: Duration) -> anyhow::Result<(Ws, u32)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut refused = 0;
    loop {
        let res =
            tokio::time::timeout_at(deadline, handshake(&link.url, &link.cred, &link.profile))
                .await
                .with_context(|| {
                    format!("no welcome within {timeout:?} ({refused} hellos refused)")
                })?;
        match res {
            Ok((ws, _)) => return Ok((ws, refused)),
            Err(e)
                if e.downcast_ref::<HelloRefused>()
                    .is_some_and(|r| r.code == "already_connected") =>
            {
                refused += 1;
                if tokio::time::Instant::now() + REJOIN_RETRY >= deadline {
                    return Err(e.context(format!("still refused after {refused} hellos")));
                }
                tokio::time::sleep(REJOIN_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn serve_losing(
    agent: usize,
    mut ws: Ws,
    heartbeat: Duration,
    state: &LossState,
    events: &mpsc::UnboundedSender<LossEvent>,
) -> anyhow::Result<Served> {
    let counters = &state.counters;
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
                let at = Instant::now();
                let text = match frame {
                    None | Some(Ok(Message::Close(_))) => return Ok(Served::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                };
                let (attempt_id, request_id, task_id) =
                    match serde_json::from_str::<ServerMsg>(text.as_str())? {
                        ServerMsg::Assign { attempt_id, request_id, task_id, .. } => {
                            (attempt_id, request_id, task_id)
                        }
                        other => {
                            on_other_frame(&mut ws, other, counters).await?;
                            continue;
                        }
                    };
                bump(&counters.assigns);
                let first = state
                    .seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((request_id.clone(), task_id.clone()));
                let loss = if first {
                    *state.loss.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
                } else {
                    None
                };
                let Some(loss) = loss else {
                    answer(&mut ws, attempt_id, counters).await?;
                    if !first {
                        let _ = events.send(LossEvent::Reassigned { agent, request_id, task_id, at });
                    }
                    continue;
                };
                // The attempt "runs": accepted, its result held back, and then the agent is gone.
                let accept = AgentMsg::Accept { attempt_id };
                ws.send(Message::text(serde_json::to_string(&accept)?)).await?;
                let parked = match loss {
                    // Dropping the stream closes the socket with no close frame, as the kernel
                    // does for a killed process.
                    Loss::Close => {
                        drop(ws);
                        None
                    }
                    Loss::Silent => Some(Box::new(ws)),
                };
                let lost = Instant::now();
                let _ = events.send(LossEvent::WentLost { agent, request_id, task_id, assigned: at, lost });
                return Ok(Served::Lost(parked));
            }
        }
    }
}
