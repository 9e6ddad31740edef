//! The agent's life: connect, say hello, run what it is assigned, report, reconnect, stop.
//!
//! One [`Agent`] owns the attempts in flight and the [`Outbox`]; both outlive any single
//! connection, and the outbox (on disk) outlives the process. Attempts run as tokio tasks that
//! report back through one channel, so a result that ends while the link is down is kept and
//! sent after the next `welcome`.
//!
//! Stopping hands the work back: new assignments are rejected (`agent_stopping`), every running
//! attempt is stopped and reported `failed` with code `agent_stopping` (so the orchestrator may
//! run it elsewhere), and the agent waits up to `stop_grace` for those results to be
//! acknowledged before it closes the connection. Whatever is not acknowledged by then stays in
//! the outbox for the next start.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_protocol::{
    Action, AgentMsg, AttemptId, ErrorInfo, FileRef, InputFile, MAX_FRAME_BYTES, PROTOCOL_VERSION,
    ServerMsg, TaskOutput,
};

use crate::backoff::Backoff;
use crate::exec::{self, Ctx, ExecEvent, Outcome, Toolbox, Work};
use crate::outbox::Outbox;
use crate::tls::ServerUrl;
use crate::{Config, Error};

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn crate::tls::Io>>;

/// Refusal codes after which reconnecting cannot help: the owner must act (see
/// [`Error::Refused`] for what the agent tells them).
const FATAL_REFUSALS: [&str; 4] = [
    "bad_token",
    "unsupported_version",
    "token_rotated",
    "device_removed",
];

/// The error code of attempts handed back because the agent is stopping, and of assignments
/// refused while it stops.
const AGENT_STOPPING: &str = "agent_stopping";

/// How long stopped attempts may take to end (dropping an executor is immediate; a shell
/// run's process group is killed when it is dropped).
const ATTEMPTS_STOP_LIMIT: Duration = Duration::from_secs(5);

/// What running attempts tell the agent.
#[derive(Debug)]
enum Report {
    Progress {
        attempt: AttemptId,
        message: String,
        turns_used: Option<u32>,
    },
    /// The attempt asks for more turns; `reply` gets the number granted.
    Extend {
        attempt: AttemptId,
        turns: u32,
        reply: tokio::sync::oneshot::Sender<u32>,
    },
    Done {
        attempt: AttemptId,
        outcome: Outcome,
        /// The outputs it sent (a success that declared outputs).
        files: Vec<FileRef>,
    },
}

/// How a session ended.
enum End {
    /// The stop token was cancelled.
    Stopped,
    /// The link failed; `welcomed` says whether it had worked (then backoff starts over).
    Lost { reason: String, welcomed: bool },
}

#[derive(Debug)]
pub struct Agent {
    config: Config,
    /// The executors it has and the policy allows: what it advertises.
    capabilities: Vec<String>,
    /// The tool programs found at start (Termux:API, adb).
    tools: std::sync::Arc<Toolbox>,
    tool_specs: Vec<weft_protocol::ToolSpec>,
    os_version: Option<String>,
    policy: std::sync::Arc<crate::policy::Policy>,
    http: reqwest::Client,
    /// Moves files to and from the orchestrator (inputs before a run, outputs after): the
    /// server the connection was made to.
    files: crate::files::link::Link,
    /// Which of `config.servers()` to try first (modulo their number): the one that welcomed
    /// this agent, or the next after its connection was lost; and (`linked`) the one `files`
    /// goes to.
    server: usize,
    linked: usize,
    /// The last connect found a standby replica (a `307`, or `503` while no replica leads): a
    /// leader is there within a lease, so the reconnect delay is capped at [`STANDBY_RETRY`].
    standby_seen: bool,
    /// Attempts in flight, with the token that stops each.
    running: HashMap<AttemptId, CancellationToken>,
    /// Attempts the orchestrator no longer wants: their results are dropped.
    forgotten: HashSet<AttemptId>,
    /// Requests for more turns waiting for the orchestrator's `turns` answer. A request that
    /// is lost with the connection is answered 0 by being dropped.
    turn_requests: HashMap<AttemptId, tokio::sync::oneshot::Sender<u32>>,
    outbox: Outbox,
    /// Cancelled when the agent stops (a child of the caller's stop token); every attempt
    /// watches it.
    halt: CancellationToken,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    tracker: TaskTracker,
}

/// The longest reconnect delay while a standby replica answers: a takeover ends within a
/// lease (5 s by default), and the agent should not be tens of seconds behind it. One try
/// per second per agent, each a `307` from a standby.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// Why one server did not welcome this agent.
enum Failed {
    /// A standby sent it to the leader (`Location`).
    Redirect(String),
    /// Anything else, worth retrying.
    Reason(String),
}

impl Agent {
    /// Validates `config` and loads the outbox left by an earlier run. The agent stops when
    /// `stop` is cancelled.
    pub fn new(config: Config, stop: &CancellationToken) -> Result<Self, Error> {
        config.validate()?;
        let outbox = Outbox::open(&config.state_dir).map_err(|e| {
            Error::Config(format!(
                "cannot open the outbox in the state dir {}: {e}",
                config.state_dir.display()
            ))
        })?;
        if !outbox.is_empty() {
            tracing::info!(results = outbox.len(), dir = %outbox.dir().display(),
                "results from an earlier run are waiting for the orchestrator");
        }
        let http = exec::http::client(&config.policy, config.http_timeout)
            .map_err(|e| Error::Config(format!("cannot set up the HTTP client: {e}")))?;
        let (server, pin) = config.endpoint()?;
        let files =
            crate::files::link::Link::new(&server, pin, &config.token, config.policy.files.clone())
                .map_err(Error::Config)?;
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let tools = Toolbox::discover(&config);
        Ok(Self {
            server: 0,
            linked: 0,
            standby_seen: false,
            capabilities: exec::capabilities(&config, &tools),
            tool_specs: exec::tool_specs(&config, &tools),
            tools: std::sync::Arc::new(tools),
            os_version: crate::profile::os_version(),
            policy: std::sync::Arc::new(config.policy.clone()),
            config,
            http,
            files,
            running: HashMap::new(),
            forgotten: HashSet::new(),
            turn_requests: HashMap::new(),
            outbox,
            halt: stop.child_token(),
            reports_tx,
            reports,
            tracker: TaskTracker::new(),
        })
    }

    /// Runs until the stop token is cancelled (`Ok`) or the orchestrator refuses this device
    /// for good.
    pub async fn run(mut self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.config.workdir).map_err(|e| {
            Error::Config(format!(
                "cannot create the workdir {}: {e}",
                self.config.workdir.display()
            ))
        })?;
        // No attempt runs yet: inputs in the workdir are a killed run's.
        if let Err(e) = crate::files::link::remove_stale_inputs(&self.config.workdir) {
            tracing::warn!(workdir = %self.config.workdir.display(), error = %e,
                "cannot remove the inputs an earlier run left");
        }
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        let result = loop {
            match self.session().await {
                Ok(End::Stopped) => break Ok(()),
                Ok(End::Lost { reason, welcomed }) => {
                    if welcomed {
                        backoff.reset();
                        // With replicas, the server just lost may be paused (it would hold a
                        // connect for the whole connect timeout): ask the next one first. If
                        // the lost one still leads, that costs one redirect.
                        self.server += 1;
                    }
                    let mut delay = backoff.next_delay();
                    if std::mem::take(&mut self.standby_seen) {
                        delay = delay.min(STANDBY_RETRY);
                    }
                    tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64,
                        running = self.running.len(), unacked = self.outbox.len(),
                        "connection to the orchestrator lost");
                    if !self.pause(delay).await {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.shutdown().await;
        result
    }

    /// Waits out a reconnect delay, putting the results of attempts that end meanwhile in the
    /// outbox. Returns `false` if the agent was stopped.
    async fn pause(&mut self, delay: Duration) -> bool {
        let wake = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.halt.cancelled() => return false,
                _ = tokio::time::sleep_until(wake) => return true,
                Some(report) = self.reports.recv() => self.offline(report),
            }
        }
    }

    /// Stops every running attempt (each reports `agent_stopping`), waits (bounded) for them
    /// to end, and keeps their results in the outbox for the next start.
    async fn shutdown(&mut self) {
        self.halt.cancel();
        self.tracker.close();
        if tokio::time::timeout(ATTEMPTS_STOP_LIMIT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some attempts did not stop within {} s",
                ATTEMPTS_STOP_LIMIT.as_secs()
            );
        }
        self.absorb_reports();
        if !self.outbox.is_empty() {
            tracing::info!(unacked = self.outbox.len(), dir = %self.outbox.dir().display(),
                "results kept in the outbox for the next start");
        }
    }

    /// Applies reports that arrived while no connection could take them.
    fn absorb_reports(&mut self) {
        while let Ok(r) = self.reports.try_recv() {
            self.offline(r);
        }
    }

    /// Applies a report while no connection can take it: a result goes to the outbox.
    fn offline(&mut self, report: Report) {
        if let Report::Done {
            attempt,
            outcome,
            files,
        } = report
        {
            self.finished(attempt, outcome, files);
        }
    }

    /// Moves a finished attempt into the outbox (unless it was forgotten). Returns the result
    /// frame to send, if any.
    fn finished(
        &mut self,
        attempt: AttemptId,
        outcome: Outcome,
        files: Vec<FileRef>,
    ) -> Option<AgentMsg> {
        self.running.remove(&attempt);
        if self.forgotten.remove(&attempt) {
            return None;
        }
        let msg = fit_frame(AgentMsg::Result {
            attempt_id: attempt.clone(),
            status: outcome.status,
            output: outcome.output,
            error: outcome.error,
            files,
        });
        if let Err(e) = self.outbox.put(msg.clone()) {
            tracing::error!(attempt = %attempt, error = %e, dir = %self.outbox.dir().display(),
                "cannot write a result to the outbox; sending it anyway, but it will not survive a restart");
        }
        Some(msg)
    }

    fn hello(&self) -> AgentMsg {
        let mut held: Vec<AttemptId> = self.running.keys().cloned().collect();
        held.extend(self.outbox.attempts().cloned());
        held.sort();
        held.dedup();
        AgentMsg::Hello {
            protocol_version: PROTOCOL_VERSION,
            device: self.config.name.clone(),
            token: self.config.token.clone(),
            kind: self.config.kind.clone(),
            platform: platform(),
            capabilities: self.capabilities.clone(),
            max_concurrency: self.config.max_concurrency,
            held_attempts: held,
            os_version: self.os_version.clone(),
            tools: self.tool_specs.clone(),
        }
    }

    /// Connects to the leader among `config.servers()` and says hello: the server after the
    /// one whose connection was lost first, then the others in turn; a standby's `307` is followed at
    /// once, once, and only to one of those servers (the device token goes nowhere else).
    /// `Ok(Err(reason))` is a failure worth retrying after a backoff.
    async fn open(&mut self) -> Result<Result<(Ws, Duration), String>, Error> {
        let servers: Vec<String> = self
            .config
            .servers()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut at = self.server % servers.len();
        let mut reasons = Vec::new();
        let mut followed = false;
        // Each server once, and the one redirect followed on top.
        let mut left = servers.len();
        while left > 0 {
            let failed = match self.open_at(&servers[at]).await? {
                Ok(opened) => {
                    self.server = at;
                    if self.linked != at {
                        let (server, pin) = self.config.endpoint_of(&servers[at])?;
                        self.files = crate::files::link::Link::new(
                            &server,
                            pin,
                            &self.config.token,
                            self.config.policy.files.clone(),
                        )
                        .map_err(Error::Config)?;
                        self.linked = at;
                    }
                    return Ok(Ok(opened));
                }
                Err(failed) => failed,
            };
            match failed {
                Failed::Redirect(location) => {
                    self.standby_seen = true;
                    let to = location
                        .trim_end_matches('/')
                        .strip_suffix(weft_protocol::AGENT_WS_PATH)
                        .and_then(|base| ServerUrl::parse(base).ok());
                    let listed = to.as_ref().and_then(|to| {
                        servers
                            .iter()
                            .position(|s| ServerUrl::parse(s).ok().as_ref() == Some(to))
                    });
                    match listed {
                        Some(leader) if !followed => {
                            tracing::info!(standby = %servers[at], leader = %servers[leader],
                                "a standby sent this agent to the leader");
                            followed = true;
                            at = leader;
                            continue;
                        }
                        Some(_) => reasons.push(format!(
                            "{}: sent to {location} (tried already)",
                            servers[at]
                        )),
                        None => {
                            tracing::warn!(standby = %servers[at], %location,
                                "a standby sent this agent to a server it was not given; not following");
                            reasons.push(format!(
                                "{}: sent to {location}, which is not one of this agent's servers",
                                servers[at]
                            ));
                        }
                    }
                }
                Failed::Reason(reason) => reasons.push(if servers.len() > 1 {
                    format!("{}: {reason}", servers[at])
                } else {
                    reason
                }),
            }
            at = (at + 1) % servers.len();
            left -= 1;
        }
        self.server = at;
        Ok(Err(reasons.join("; ")))
    }

    /// Connects to `base` and says hello.
    async fn open_at(&mut self, base: &str) -> Result<Result<(Ws, Duration), Failed>, Error> {
        let (server, pin) = self.config.endpoint_of(base)?;
        let url = server.ws_url();
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(4 * MAX_FRAME_BYTES))
            .max_frame_size(Some(4 * MAX_FRAME_BYTES));
        let mut speaks_tls = false;
        let mut redirect = None;
        let mut no_leader = false;
        let handshake = async {
            let stream = crate::tls::connect(&server, pin)
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?;
            let (mut ws, _) =
                tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(ws_config))
                    .await
                    .map_err(|e| {
                        if let tokio_tungstenite::tungstenite::Error::Http(resp) = &e {
                            if resp
                                .body()
                                .as_deref()
                                .is_some_and(|b| String::from_utf8_lossy(b).contains("TLS only"))
                            {
                                speaks_tls = true;
                            }
                            if resp.status() == 503 {
                                // A standby while no replica leads (a takeover under way).
                                no_leader = true;
                            }
                            if resp.status() == 307 {
                                redirect = resp
                                    .headers()
                                    .get("location")
                                    .and_then(|l| l.to_str().ok())
                                    .map(str::to_owned);
                            }
                        }
                        format!("cannot connect to {url}: {e}")
                    })?;
            send(&mut ws, &self.hello())
                .await
                .map_err(|e| format!("cannot send hello: {e}"))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Ok((ws, serde_json::from_str::<ServerMsg>(t.as_str())));
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return Err("the orchestrator closed the connection".to_owned());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("connection failed: {e}")),
                }
            }
        };
        let (ws, first) = match tokio::time::timeout(self.config.connect_timeout, handshake).await {
            Err(_) => return Ok(Err(Failed::Reason("no welcome in time".into()))),
            Ok(Err(_)) if speaks_tls => {
                return Err(Error::Config(format!(
                    "server `{base}`: the server speaks TLS only; use https://{}:{}{} (with the \
                     server_fingerprint that `weft device add` printed)",
                    server.host, server.port, server.prefix
                )));
            }
            Ok(Err(reason)) => {
                self.standby_seen |= no_leader;
                return Ok(Err(match redirect {
                    Some(location) => Failed::Redirect(location),
                    None => Failed::Reason(reason),
                }));
            }
            Ok(Ok(v)) => v,
        };
        match first {
            Ok(ServerMsg::Welcome {
                heartbeat_interval_ms,
                reattached,
                ..
            }) => {
                self.reconcile(&reattached);
                let hb = Duration::from_millis(heartbeat_interval_ms.clamp(100, 3_600_000));
                Ok(Ok((ws, hb)))
            }
            Ok(ServerMsg::Refused { error }) => {
                if FATAL_REFUSALS.contains(&error.code.as_str()) {
                    Err(Error::Refused(error))
                } else {
                    Ok(Err(Failed::Reason(format!(
                        "refused: {}: {}",
                        error.code, error.message
                    ))))
                }
            }
            Ok(other) => Ok(Err(Failed::Reason(format!(
                "expected welcome, got {other:?}"
            )))),
            Err(e) => Ok(Err(Failed::Reason(format!(
                "the orchestrator sent a frame this agent cannot read: {e}"
            )))),
        }
    }

    /// After a welcome: keeps what the orchestrator still wants, forgets the rest.
    fn reconcile(&mut self, reattached: &[AttemptId]) {
        let keep: HashSet<&AttemptId> = reattached.iter().collect();
        for (id, cancel) in &self.running {
            if !keep.contains(id) {
                tracing::info!(attempt = %id, "the orchestrator no longer wants this attempt; stopping it");
                cancel.cancel();
                self.forgotten.insert(id.clone());
            }
        }
        // A result the orchestrator does not reattach was recorded already (a leader that
        // committed it died before its ack) or is no longer wanted (its attempt was given up).
        self.outbox.retain(|a| {
            let wanted = keep.contains(a);
            if !wanted {
                tracing::debug!(attempt = %a, "result no longer wanted; dropped");
            }
            wanted
        });
    }

    /// One connection, from connect to loss or stop.
    async fn session(&mut self) -> Result<End, Error> {
        let halt = self.halt.clone();
        // Requests for turns sent on a connection that is gone will not be answered.
        self.turn_requests.clear();
        self.absorb_reports();
        let opened = tokio::select! {
            _ = halt.cancelled() => return Ok(End::Stopped),
            o = self.open() => o?,
        };
        let (mut ws, heartbeat) = match opened {
            Ok(v) => v,
            Err(reason) => {
                return Ok(End::Lost {
                    reason,
                    welcomed: false,
                });
            }
        };
        tracing::info!(device = %self.config.name, resend = self.outbox.len(),
            reattached = self.running.len(), "connected to the orchestrator");
        for msg in self.outbox.pending() {
            if let Err(e) = send(&mut ws, msg).await {
                return Ok(End::Lost {
                    reason: format!("cannot re-send results: {e}"),
                    welcomed: true,
                });
            }
        }
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Set when the agent starts stopping: the end of the wait for acknowledgements.
        let mut grace_until: Option<Instant> = None;
        loop {
            let stopping = grace_until.is_some();
            if stopping && self.running.is_empty() && self.outbox.is_empty() {
                tracing::info!("every result acknowledged; closing the connection");
                close(ws).await;
                return Ok(End::Stopped);
            }
            // Once stopping, a lost link ends the session for good: every result is on disk.
            let lost = move |reason: String| {
                if stopping {
                    tracing::warn!(%reason, "connection lost while stopping");
                    Ok(End::Stopped)
                } else {
                    Ok(End::Lost {
                        reason,
                        welcomed: true,
                    })
                }
            };
            tokio::select! {
                _ = halt.cancelled(), if !stopping => {
                    // Running attempts watch `halt` too, and report `agent_stopping`.
                    tracing::info!(running = self.running.len(), unacked = self.outbox.len(),
                        "stopping: handing running attempts back to the orchestrator");
                    grace_until = Some(Instant::now() + self.config.stop_grace);
                }
                _ = tokio::time::sleep_until(grace_until.unwrap_or_else(Instant::now)), if stopping => {
                    tracing::warn!(running = self.running.len(), unacked = self.outbox.len(),
                        "stop grace over; unacknowledged results stay in the outbox for the next start");
                    close(ws).await;
                    return Ok(End::Stopped);
                }
                Some(report) = self.reports.recv() => {
                    let frame = match report {
                        Report::Progress { attempt, message, turns_used } => self
                            .running
                            .contains_key(&attempt)
                            .then_some(AgentMsg::Progress { attempt_id: attempt, message, turns_used }),
                        Report::Extend { attempt, turns, reply } => {
                            self.turn_requests.insert(attempt.clone(), reply);
                            Some(AgentMsg::ExtendTurns { attempt_id: attempt, turns })
                        }
                        Report::Done {
                            attempt,
                            outcome,
                            files,
                        } => self.finished(attempt, outcome, files),
                    };
                    if let Some(frame) = frame
                        && let Err(e) = send(&mut ws, &frame).await {
                            return lost(format!("send failed: {e}"));
                        }
                }
                frame = ws.next() => {
                    last_heard = Instant::now();
                    let msg = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None => return lost("the orchestrator closed the connection".into()),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return lost(format!("connection failed: {e}")),
                    };
                    let reply = match serde_json::from_str::<ServerMsg>(msg.as_str()) {
                        // The device was removed or its token rotated: the orchestrator closes
                        // the connection after this frame.
                        Ok(ServerMsg::Refused { error }) => {
                            close(ws).await;
                            if FATAL_REFUSALS.contains(&error.code.as_str()) {
                                return Err(Error::Refused(error));
                            }
                            return lost(format!("refused: {}: {}", error.code, error.message));
                        }
                        Ok(m) => self.on_message(m),
                        Err(e) => unreadable(msg.as_str(), &e),
                    };
                    if let Some(reply) = reply
                        && let Err(e) = send(&mut ws, &reply).await {
                            return lost(format!("send failed: {e}"));
                        }
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() > heartbeat * 3 {
                        return lost("no frame from the orchestrator for 3 heartbeat intervals".into());
                    }
                    if let Err(e) = send(&mut ws, &AgentMsg::Heartbeat {}).await {
                        return lost(format!("send failed: {e}"));
                    }
                }
            }
        }
    }

    /// Handles one frame from the orchestrator; returns the frame to answer with, if any.
    fn on_message(&mut self, msg: ServerMsg) -> Option<AgentMsg> {
        match msg {
            ServerMsg::Heartbeat {} => None,
            ServerMsg::Assign {
                attempt_id,
                task_id,
                instruction,
                action,
                inputs,
                deadline_ms,
                max_turns,
                files,
                outputs,
                ..
            } => {
                if self.running.contains_key(&attempt_id) {
                    return None; // a repeated assignment: it is already running
                }
                if let Err(error) = self.admit(action.as_ref()) {
                    tracing::info!(attempt = %attempt_id, task = %task_id, code = %error.code, "rejected an assignment");
                    return Some(AgentMsg::Reject { attempt_id, error });
                }
                let work = match action {
                    Some(action) => {
                        tracing::info!(attempt = %attempt_id, task = %task_id, kind = action.capability(), "running");
                        Work::Action(action)
                    }
                    None => {
                        tracing::info!(attempt = %attempt_id, task = %task_id, kind = "llm", max_turns, "running");
                        Work::Instruction {
                            instruction,
                            inputs,
                        }
                    }
                };
                let transfers = Transfers {
                    inputs: files,
                    outputs,
                };
                self.start(attempt_id.clone(), work, transfers, deadline_ms, max_turns);
                Some(AgentMsg::Accept { attempt_id })
            }
            ServerMsg::Cancel { attempt_id, reason } => {
                if let Some(cancel) = self.running.get(&attempt_id) {
                    tracing::info!(attempt = %attempt_id, %reason, "cancelling");
                    cancel.cancel();
                }
                None
            }
            ServerMsg::Ack { attempt_id } => {
                tracing::debug!(attempt = %attempt_id, "result acknowledged");
                self.outbox.ack(&attempt_id);
                None
            }
            ServerMsg::Turns {
                attempt_id,
                granted,
                max_turns,
            } => {
                tracing::info!(attempt = %attempt_id, granted, max_turns, "turns answered");
                if let Some(reply) = self.turn_requests.remove(&attempt_id) {
                    let _ = reply.send(granted);
                }
                None
            }
            ServerMsg::Error { error } => {
                tracing::warn!(code = %error.code, message = %error.message, "the orchestrator refused a frame");
                None
            }
            ServerMsg::Welcome { .. } | ServerMsg::Refused { .. } => {
                // (A refusal mid-session ends the session before it gets here.)
                tracing::warn!("unexpected handshake frame mid-session; ignored");
                None
            }
        }
    }

    /// Whether this agent will take an assignment.
    fn admit(&self, action: Option<&Action>) -> Result<(), ErrorInfo> {
        if self.halt.is_cancelled() {
            return Err(ErrorInfo::new(
                AGENT_STOPPING,
                "this agent is stopping and takes no new work",
            ));
        }
        if self.running.len() >= self.config.max_concurrency as usize {
            return Err(ErrorInfo::new(
                "busy",
                format!("already running {} attempts", self.running.len()),
            ));
        }
        // The owner's policy and the action's own checks, before anything runs.
        let (progress, _) = mpsc::unbounded_channel();
        let ctx = Ctx {
            workdir: &self.config.workdir,
            policy: &self.policy,
            tools: &self.tools,
            max_output_bytes: self.policy.max_output_bytes,
            http: &self.http,
            http_timeout: self.config.http_timeout,
            progress,
            max_turns: 1,
        };
        match action {
            Some(action) => exec::vet(action, &self.capabilities, &ctx),
            // No action: the LLM executor, if this device has one (else `no_executor`).
            None => exec::llm::vet(&self.capabilities, &ctx),
        }
    }

    /// Starts an attempt as its own task; it reports through `reports`. Its input files are
    /// fetched before the work runs, its outputs sent after it succeeds and before its result
    /// is reported; all of it inside the attempt's deadline, and stopped by a cancel.
    fn start(
        &mut self,
        attempt: AttemptId,
        work: Work,
        transfers: Transfers,
        deadline_ms: u64,
        max_turns: u32,
    ) {
        let cancel = CancellationToken::new();
        self.running.insert(attempt.clone(), cancel.clone());
        let reports = self.reports_tx.clone();
        let workdir = self.config.workdir.clone();
        let http = self.http.clone();
        let policy = self.policy.clone();
        let tools = self.tools.clone();
        let capabilities = self.capabilities.clone();
        let http_timeout = self.config.http_timeout;
        let halt = self.halt.clone();
        let link = self.files.clone();
        let until_deadline = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        // The owner's run-time limit, if it ends the attempt before the orchestrator would.
        let limited = policy.max_run.filter(|max| *max < until_deadline);
        let left = limited.unwrap_or(until_deadline);
        self.tracker.spawn(async move {
            let (progress, mut progress_rx) = mpsc::unbounded_channel();
            let ctx = Ctx {
                workdir: &workdir,
                policy: &policy,
                tools: &tools,
                max_output_bytes: policy.max_output_bytes,
                http: &http,
                http_timeout: http_timeout.min(left),
                progress,
                max_turns,
            };
            let run = async {
                if let Err(e) = link.fetch_inputs(&workdir, &attempt, &transfers.inputs).await {
                    return (Outcome::failed(&e.code, e.message), Vec::new());
                }
                let outcome = exec::run_work(&work, &capabilities, &ctx).await;
                if outcome.status != weft_protocol::wire::ResultStatus::Succeeded {
                    return (outcome, Vec::new());
                }
                match link.send_outputs(&workdir, &attempt, &transfers.outputs).await {
                    Ok(files) => (outcome, files),
                    Err(e) => (
                        Outcome::failed_with(&e.code, e.message, outcome.output),
                        Vec::new(),
                    ),
                }
            };
            let forward = async {
                while let Some(ev) = progress_rx.recv().await {
                    let _ = reports.send(report(&attempt, ev));
                }
                std::future::pending::<()>().await;
            };
            let stopped = |o: Outcome| (o, Vec::new());
            let (outcome, files) = tokio::select! {
                o = run => o,
                _ = cancel.cancelled() => stopped(Outcome::cancelled("cancelled by the orchestrator")),
                _ = halt.cancelled() => stopped(Outcome::failed(
                    AGENT_STOPPING,
                    "the agent stopped before the attempt ended; it was stopped and handed back",
                )),
                _ = tokio::time::sleep(left) => stopped(match limited {
                    Some(max) => Outcome::failed(
                        crate::policy::POLICY_DENIED,
                        format!(
                            "refused by policy.max_run_secs: stopped after {} s, the longest \
                             an attempt may run on this device",
                            max.as_secs()
                        ),
                    ),
                    None => Outcome::failed(
                        "timeout",
                        "the attempt passed its deadline and was stopped",
                    ),
                }),
                _ = forward => unreachable!("forward never ends"),
            };
            // Progress the executor sent just before it ended goes out before the result.
            while let Ok(ev) = progress_rx.try_recv() {
                let _ = reports.send(report(&attempt, ev));
            }
            // The inputs were for this attempt only.
            let inputs = crate::files::link::inputs_path(&workdir, &attempt);
            if let Err(e) = tokio::fs::remove_dir_all(&inputs).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %inputs.display(), error = %e, "cannot remove an attempt's inputs");
            }
            let _ = reports.send(Report::Done {
                attempt,
                outcome,
                files,
            });
        });
    }
}

/// The files an attempt moves: the inputs to fetch before it runs, the outputs (declared
/// names and globs) to send after it succeeds.
#[derive(Debug, Default)]
struct Transfers {
    inputs: Vec<InputFile>,
    outputs: Vec<String>,
}

/// What the agent makes of an executor's event.
fn report(attempt: &AttemptId, ev: ExecEvent) -> Report {
    let attempt = attempt.clone();
    match ev {
        ExecEvent::Note(message) => Report::Progress {
            attempt,
            message,
            turns_used: None,
        },
        ExecEvent::Turn { used, note } => Report::Progress {
            attempt,
            message: note,
            turns_used: Some(used),
        },
        ExecEvent::Extend { turns, reply } => Report::Extend {
            attempt,
            turns,
            reply,
        },
    }
}

/// Closes the connection normally and waits (briefly) for the orchestrator's close reply.
async fn close(mut ws: Ws) {
    let polite = async {
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "agent stopping".into(),
        }))
        .await?;
        while let Some(Ok(_)) = ws.next().await {}
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), polite).await;
}

async fn send(ws: &mut Ws, msg: &AgentMsg) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let text = serde_json::to_string(msg).unwrap_or_default();
    ws.send(Message::Text(text.into())).await
}

/// Makes sure a result frame fits the protocol's frame limit: if it does not, its output is
/// replaced by a note saying so (the summary is kept, shortened).
fn fit_frame(msg: AgentMsg) -> AgentMsg {
    let len = serde_json::to_vec(&msg)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len <= MAX_FRAME_BYTES - 1024 {
        return msg;
    }
    match msg {
        AgentMsg::Result {
            attempt_id,
            status,
            output,
            error,
            files,
        } => AgentMsg::Result {
            attempt_id,
            status,
            output: TaskOutput {
                summary: output.summary.chars().take(1000).collect(),
                data: serde_json::json!({
                    "truncated": true,
                    "note": format!("the output ({len} bytes as JSON) was above the frame limit and was dropped"),
                }),
            },
            error,
            files,
        },
        other => other,
    }
}

/// `os-arch`, e.g. `linux-x86_64`.
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The answer to a frame this agent cannot read: a `reject` (`unreadable_assign`) when it is an
/// assignment whose attempt id can be read — from an orchestrator newer than this agent, with
/// an action it does not know — so that the task goes to another device at once instead of
/// waiting for an answer; nothing otherwise.
fn unreadable(text: &str, e: &serde_json::Error) -> Option<AgentMsg> {
    let Some(attempt_id) = assignment_id(text) else {
        tracing::warn!(error = %e, "unreadable frame from the orchestrator; ignored");
        return None;
    };
    tracing::warn!(attempt = %attempt_id, error = %e, "unreadable assignment; rejecting it");
    Some(AgentMsg::Reject {
        attempt_id,
        error: ErrorInfo::new(
            "unreadable_assign",
            format!(
                "this agent (weft {}) cannot read the assignment: {e}; an agent as new as the \
                 orchestrator can",
                env!("CARGO_PKG_VERSION")
            ),
        ),
    })
}

/// The attempt id of a frame that is an `assign`, read as loosely as JSON allows.
fn assignment_id(text: &str) -> Option<AttemptId> {
    let frame: serde_json::Value = serde_json::from_str(text).ok()?;
    if frame.get("type")?.as_str()? != "assign" {
        return None;
    }
    Some(AttemptId(frame.get("attempt_id")?.as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_protocol::wire::ResultStatus;

    #[test]
    fn oversized_results_are_cut_to_fit_a_frame() {
        let big = AgentMsg::Result {
            attempt_id: "a".into(),
            status: ResultStatus::Succeeded,
            output: TaskOutput {
                summary: "s".into(),
                data: serde_json::json!({"stdout": "\u{1}".repeat(400_000)}),
            },
            error: None,
            files: vec![],
        };
        let fitted = fit_frame(big);
        assert!(serde_json::to_vec(&fitted).unwrap().len() < MAX_FRAME_BYTES);
        let AgentMsg::Result { output, .. } = fitted else {
            panic!()
        };
        assert_eq!(output.data["truncated"], true);
        assert_eq!(output.summary, "s");
    }

    /// An agent with its state dir and workdir in `dir`, and the token that stops it.
    fn agent(max: u32, dir: &std::path::Path) -> (Agent, CancellationToken) {
        let mut c = Config::new("http://127.0.0.1:1", "laptop", "t");
        c.max_concurrency = max;
        c.workdir = dir.join("work");
        c.state_dir = dir.join("state");
        let stop = CancellationToken::new();
        (Agent::new(c, &stop).unwrap(), stop)
    }

    fn assign(id: &str, action: Option<Action>) -> ServerMsg {
        ServerMsg::Assign {
            attempt_id: id.into(),
            request_id: "r".into(),
            task_id: "t1".into(),
            title: "x".into(),
            instruction: "x".into(),
            action,
            inputs: Default::default(),
            deadline_ms: now_ms() + 60_000,
            max_turns: 1,
            files: vec![],
            outputs: vec![],
        }
    }

    fn shell(command: &str) -> Option<Action> {
        Some(Action::Shell {
            command: command.into(),
        })
    }

    async fn next_done(a: &mut Agent) -> (AttemptId, Outcome) {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), a.reports.recv())
                .await
                .expect("no report in time")
            {
                Some(Report::Done {
                    attempt, outcome, ..
                }) => return (attempt, outcome),
                Some(Report::Progress { .. } | Report::Extend { .. }) => {}
                None => panic!("report channel closed"),
            }
        }
    }

    /// An assignment this agent cannot read (an action from a newer orchestrator) is rejected
    /// by its attempt id, so that it goes elsewhere at once; other unreadable frames get no
    /// answer.
    #[test]
    fn an_unreadable_assignment_is_rejected_and_other_unreadable_frames_ignored() {
        let mut frame = serde_json::to_value(assign("a7", shell("true"))).unwrap();
        frame["action"] = serde_json::json!({"kind": "teleport", "to": "mars"});
        let text = frame.to_string();
        let e = serde_json::from_str::<ServerMsg>(&text).unwrap_err();
        match unreadable(&text, &e) {
            Some(AgentMsg::Reject { attempt_id, error }) => {
                assert_eq!(attempt_id.as_str(), "a7");
                assert_eq!(error.code, "unreadable_assign");
                assert!(error.message.contains("teleport"), "{}", error.message);
            }
            other => panic!("expected a reject, got {other:?}"),
        }
        for text in [
            r#"{"type": "teleport", "attempt_id": "a7"}"#,
            r#"{"type": "assign"}"#,
            r#"{"type": "assign", "attempt_id": 7}"#,
            "not json",
        ] {
            let e = serde_json::from_str::<ServerMsg>(text).unwrap_err();
            assert_eq!(unreadable(text, &e), None, "{text}");
        }
    }

    #[tokio::test]
    async fn assignments_beyond_capacity_or_without_an_action_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, _stop) = agent(1, dir.path());
        let sleep = shell("sleep 5");
        match a.on_message(assign("a1", None)) {
            Some(AgentMsg::Reject { attempt_id, error }) => {
                assert_eq!(attempt_id.as_str(), "a1");
                assert_eq!(error.code, "no_executor");
            }
            other => panic!("expected no_executor, got {other:?}"),
        }
        assert_eq!(
            a.on_message(assign("a2", sleep.clone())),
            Some(AgentMsg::Accept {
                attempt_id: "a2".into()
            })
        );
        // The same assignment again is not run twice.
        assert_eq!(a.on_message(assign("a2", sleep.clone())), None);
        match a.on_message(assign("a3", sleep)) {
            Some(AgentMsg::Reject { error, .. }) => assert_eq!(error.code, "busy"),
            other => panic!("expected busy, got {other:?}"),
        }
        // Cancel stops it and the cancelled result lands in the outbox, on disk.
        a.on_message(ServerMsg::Cancel {
            attempt_id: "a2".into(),
            reason: "test".into(),
        });
        let (attempt, outcome) = next_done(&mut a).await;
        assert_eq!(outcome.status, ResultStatus::Cancelled);
        assert!(a.finished(attempt.clone(), outcome, vec![]).is_some());
        assert_eq!(a.outbox.len(), 1);
        let file = dir.path().join("state/outbox/a2.json");
        assert!(file.is_file());
        a.on_message(ServerMsg::Ack {
            attempt_id: attempt,
        });
        assert_eq!(a.outbox.len(), 0);
        assert!(!file.exists());
        assert!(a.running.is_empty());
    }

    #[tokio::test]
    async fn the_owners_policy_refuses_before_anything_runs_and_limits_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::new("http://127.0.0.1:1", "laptop", "t");
        c.workdir = dir.path().join("work");
        c.state_dir = dir.path().join("state");
        c.policy.shell.deny = vec![crate::policy::Glob::new("touch *")];
        c.policy.executors = Some(vec!["shell".into(), "fs".into()]);
        c.policy.max_run = Some(Duration::from_millis(300));
        let stop = CancellationToken::new();
        let mut a = Agent::new(c, &stop).unwrap();
        let AgentMsg::Hello { capabilities, .. } = a.hello() else {
            panic!("not a hello")
        };
        assert_eq!(capabilities, ["shell", "fs"]);
        // Refused at assignment, with the rule named; nothing ran.
        match a.on_message(assign("a1", shell("touch pwned"))) {
            Some(AgentMsg::Reject { error, .. }) => {
                assert_eq!(error.code, "policy_denied");
                assert!(error.message.contains("policy.shell.deny[0]"), "{error:?}");
            }
            other => panic!("expected policy_denied, got {other:?}"),
        }
        match a.on_message(assign(
            "a2",
            Some(Action::HttpGet {
                url: "https://example.com".into(),
            }),
        )) {
            Some(AgentMsg::Reject { error, .. }) => {
                assert_eq!(error.code, "policy_denied");
                assert!(error.message.contains("policy.executors"), "{error:?}");
            }
            other => panic!("expected policy_denied, got {other:?}"),
        }
        assert!(!dir.path().join("work/pwned").exists());
        // The device's run-time limit ends an attempt before the orchestrator's deadline.
        assert!(matches!(
            a.on_message(assign("a3", shell("sleep 30"))),
            Some(AgentMsg::Accept { .. })
        ));
        let (_, outcome) = next_done(&mut a).await;
        let error = outcome.error.unwrap();
        assert_eq!(error.code, "policy_denied");
        assert!(error.message.contains("policy.max_run_secs"), "{error:?}");
    }

    #[tokio::test]
    async fn results_from_an_earlier_run_are_held_in_the_hello_then_reconciled() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Outbox::open(&dir.path().join("state")).unwrap();
            for id in ["old-1", "old-2"] {
                o.put(AgentMsg::Result {
                    attempt_id: id.into(),
                    status: ResultStatus::Succeeded,
                    output: TaskOutput::default(),
                    error: None,
                    files: vec![],
                })
                .unwrap();
            }
        }
        let (mut a, _stop) = agent(1, dir.path());
        let AgentMsg::Hello { held_attempts, .. } = a.hello() else {
            panic!("not a hello")
        };
        assert_eq!(held_attempts, ["old-1".into(), "old-2".into()]);
        a.reconcile(&["old-2".into()]);
        assert_eq!(a.outbox.attempts().collect::<Vec<_>>(), [&"old-2".into()]);
        assert!(!dir.path().join("state/outbox/old-1.json").exists());
        assert!(dir.path().join("state/outbox/old-2.json").exists());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn stopping_hands_running_attempts_back_and_keeps_their_results() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, stop) = agent(2, dir.path());
        assert!(matches!(
            a.on_message(assign("a1", shell("echo $$ > pid; exec sleep 30"))),
            Some(AgentMsg::Accept { .. })
        ));
        let pid_file = dir.path().join("work/pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Ok(p) = std::fs::read_to_string(&pid_file)
                && let Ok(p) = p.trim().parse::<i32>()
            {
                break p;
            }
            assert!(Instant::now() < deadline, "the command did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };

        stop.cancel();
        // No new work once stopping.
        match a.on_message(assign("a2", shell("echo late"))) {
            Some(AgentMsg::Reject { error, .. }) => assert_eq!(error.code, AGENT_STOPPING),
            other => panic!("expected agent_stopping, got {other:?}"),
        }
        // What the agent does when stopped without a connection.
        a.shutdown().await;
        // The group was killed when the run was dropped; allow for the zombie to be reaped.
        let group = nix::unistd::Pid::from_raw(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while nix::sys::signal::killpg(group, None).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the process group outlived the agent"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(a);
        // Another test's child process, between its fork and its exec, may briefly hold a copy
        // of the state dir's lock: wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let kept = loop {
            match Outbox::open(&dir.path().join("state")) {
                Ok(o) => break o,
                Err(e) if Instant::now() < deadline => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let results: Vec<&AgentMsg> = kept.pending().collect();
        match results.as_slice() {
            [
                AgentMsg::Result {
                    attempt_id,
                    status: ResultStatus::Failed,
                    error: Some(error),
                    ..
                },
            ] => {
                assert_eq!(attempt_id.as_str(), "a1");
                assert_eq!(error.code, AGENT_STOPPING);
            }
            other => panic!("expected one agent_stopping result, got {other:?}"),
        }
    }
}
