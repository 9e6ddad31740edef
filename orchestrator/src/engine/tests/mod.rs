//! The engine under paused time. Each test drives the engine's [`Handle`] as the HTTP handlers
//! and the connection tasks do — fake agents ([`Agent`]) stand in for WebSocket connections,
//! the store is a real SQLite file in a temporary directory — moves time on with
//! `tokio::time::advance`, and after each step compares the request view (what
//! `GET /v1/requests/{id}` reads from the store) and the frames each device got with the text
//! it expects. Nothing sleeps: time moves only when a test moves it.

mod grace;
mod retries;
mod revoke;
mod scale;
mod timeouts;
mod turns;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_protocol::rest::{AttemptView, EdgeView, GraphSpec, RequestView, TaskSpec};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{
    Action, AgentMsg, AttemptId, DeviceName, EdgeKind, ErrorInfo, PROTOCOL_VERSION, RequestId,
    RetryPolicy, ServerMsg, TaskId, TaskOutput,
};

use super::{Clock, ConnId, Engine, Handle, Hello, LastSeen, OUTBOUND_CAPACITY, Planned};
use crate::engine::Options;
use crate::store::Store;

/// What the clock reads when a test starts; snapshots count time from here (`+1000` is one
/// second in).
const T0: u64 = 1_750_000_000_000;

/// The view of a request whose one task `t1` runs on `d1` since the start: where several tests
/// check that nothing changed (yet).
const T1_RUNNING_ON_D1: &str = "
    running
    t1 running
      #1 d1 running +0
";

/// A running engine on a fresh store, its clock stopped at [`T0`].
struct Rig {
    handle: Handle,
    store: Store,
    labels: Labels,
    /// What the engine was started with, to start it again.
    opts: Options,
    clock: Clock,
    shutdown: CancellationToken,
    join: tokio::task::JoinHandle<Result<(), crate::Error>>,
    _dir: tempfile::TempDir,
    /// The Postgres database under `WEFT_TEST_STORE=postgres`, dropped after the store.
    _pg: Option<crate::store::testing::pg::TestDb>,
    _still: StillTime,
}

/// The options every test starts from: 100 ms ticks, 3 attempts 1 s apart and doubling (no
/// jitter), timeouts long enough not to matter unless a test shortens them, a 2 s grace window.
fn options() -> Options {
    Options {
        heartbeat_interval: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(60),
        queue_timeout: Duration::from_secs(60),
        task_timeout: Duration::from_secs(600),
        retry: RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        turn_budget: 200,
        max_turns: 20,
        lost_grace: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
    }
}

impl Rig {
    /// Starts the engine with [`options`] changed by `tune`. Call from a test running under
    /// `#[tokio::test(start_paused = true)]`.
    async fn start(tune: impl FnOnce(&mut Options)) -> Rig {
        let still = StillTime::hold();
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options();
        tune(&mut opts);
        let db = dir.path().join("weft.db");
        let (store, pg) = crate::store::testing::store(&db.to_string_lossy()).await;
        let clock = Clock::tokio(T0);
        let shutdown = CancellationToken::new();
        let (handle, join) = Engine::start(store.clone(), opts.clone(), clock, shutdown.clone())
            .await
            .unwrap();
        Rig {
            handle,
            store,
            labels: Labels::default(),
            opts,
            clock,
            shutdown,
            join,
            _dir: dir,
            _pg: pg,
            _still: still,
        }
    }

    /// Stops the engine as a SIGTERM does (no new work; running attempts get the shutdown
    /// grace, which passes) and starts another on the same store, as after a restart.
    async fn restart(&mut self) {
        self.shutdown.cancel();
        // The engine notes the cancel (and when the grace ends) before the second barrier.
        self.settled().await;
        self.settled().await;
        tokio::time::advance(self.opts.shutdown_grace).await;
        (&mut self.join).await.unwrap().unwrap();
        self.shutdown = CancellationToken::new();
        let (handle, join) = Engine::start(
            self.store.clone(),
            self.opts.clone(),
            self.clock,
            self.shutdown.clone(),
        )
        .await
        .unwrap();
        (self.handle, self.join) = (handle, join);
    }

    /// Lets the engine finish what it handed to tasks of its own (a result for an attempt that
    /// is no longer live is looked up in the store off the loop) until `agent` got a frame;
    /// returns its frames.
    async fn frames_for(&self, agent: &mut Agent) -> String {
        for _ in 0..1000 {
            let frames = agent.frames();
            if !frames.is_empty() {
                return frames;
            }
            tokio::task::yield_now().await;
            self.settled().await;
        }
        panic!("{} got no frame", agent.name);
    }

    /// A rig with the default options and these devices connected, each with a shell and one
    /// slot.
    async fn with_shells<const N: usize>(names: [&str; N]) -> (Rig, [Agent; N]) {
        let rig = Rig::start(|_| {}).await;
        let mut agents = Vec::new();
        for name in names {
            agents.push(rig.device(name, &["shell"]).await);
        }
        let Ok(agents) = agents.try_into() else {
            unreachable!("one agent per name")
        };
        (rig, agents)
    }

    /// Registers `name` with `capabilities` and connects it (one slot).
    async fn device(&self, name: &str, capabilities: &[&str]) -> Agent {
        self.device_with(name, capabilities, 1).await
    }

    /// Registers `name` and connects it with `slots` attempts at a time.
    async fn device_with(&self, name: &str, capabilities: &[&str], slots: u32) -> Agent {
        let created = self
            .handle
            .add_device(DeviceName::from(name), "laptop".into())
            .await
            .unwrap();
        let mut agent = Agent {
            name: created.name,
            token: created.token,
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            slots,
            conn: ConnId(0),
            rx: mpsc::channel(1).1,
            seen: Arc::default(),
            handle: self.handle.clone(),
            labels: self.labels.clone(),
            held: HashMap::new(),
        };
        let welcome = agent.connect(&[]).await;
        assert_eq!(welcome, "welcome");
        agent
    }

    /// Submits a graph as a client would; returns the new request's id.
    async fn submit(
        &self,
        tasks: Vec<TaskSpec>,
        edges: Vec<EdgeView>,
        turns: Option<u32>,
    ) -> RequestId {
        let spec = GraphSpec { tasks, edges };
        let view = self
            .handle
            .create("test".into(), "given", Planned::Given(spec), turns)
            .await
            .unwrap();
        self.settled().await;
        view.id
    }

    /// Submits one shell task, `t1`, sees it assigned to `agent` (the first device by name
    /// with a free slot) and has `agent` accept it.
    async fn t1_accepted_by(&self, agent: &mut Agent) -> RequestId {
        let r = self.submit(vec![shell("t1")], vec![], None).await;
        agent.check("assign t1#1");
        agent.accept("t1").await;
        r
    }

    /// Moves time on by `ms` and returns once the engine has handled what fell due and
    /// committed it.
    async fn advance(&self, ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
        // The timers that fell due woke the engine before this task runs again, but the engine
        // may take the first barrier before its timer: the second comes after both.
        self.settled().await;
        self.settled().await;
    }

    /// Returns once everything the engine did so far is committed and released.
    async fn settled(&self) {
        self.handle.barrier().await.unwrap();
    }

    /// The request as `GET /v1/requests/{id}` shows it, in short: its status, turns when it
    /// used any, then each task and its attempts with times since [`T0`].
    async fn view(&self, id: &RequestId) -> String {
        let view = self.store.request_view(id).await.unwrap().unwrap();
        render(&view)
    }

    /// Checks the request view against `expect` (indentation and blank lines around it do not
    /// matter).
    async fn check(&self, id: &RequestId, expect: &str) {
        let got = self.view(id).await;
        assert_eq!(got, dedent(expect), "request view:\n{got}");
    }
}

/// Keeps tokio from moving paused time on its own. Under paused time tokio jumps to the next
/// timer whenever every task waits; but here tasks wait for SQLite, whose work runs on threads
/// tokio does not see, so time would race ahead during every commit. A blocking task holds
/// that off until this is dropped: tokio does not auto-advance while one runs (its
/// `time::pause` documents this under "Preventing auto-advance"). Without it, `Store::open`
/// already fails: its pool's 10 s acquire timeout passes at once.
struct StillTime(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

impl StillTime {
    fn hold() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        StillTime(tx)
    }
}

/// Names attempts as tests see them: `t1#2` is task `t1`'s second attempt, in the order their
/// `assign` frames arrived (the order the view lists them in).
#[derive(Debug, Clone, Default)]
struct Labels(Arc<Mutex<HashMap<AttemptId, String>>>);

impl Labels {
    fn name(&self, attempt: &AttemptId, task: &TaskId) -> String {
        let mut labels = self.0.lock().unwrap();
        let seen = labels
            .values()
            .filter(|l| l.split('#').next() == Some(task.as_str()))
            .count();
        labels
            .entry(attempt.clone())
            .or_insert_with(|| format!("{task}#{}", seen + 1))
            .clone()
    }

    fn find(&self, label: &str) -> AttemptId {
        let labels = self.0.lock().unwrap();
        labels
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .map(|(a, _)| a.clone())
            .unwrap_or_else(|| panic!("no attempt {label} was assigned"))
    }

    fn get(&self, attempt: &AttemptId) -> String {
        let labels = self.0.lock().unwrap();
        labels
            .get(attempt)
            .cloned()
            .unwrap_or_else(|| "an attempt never assigned".into())
    }
}

/// A device's connection as `ws.rs` makes it: the hello through [`Handle::connect`], every
/// frame from the device noted in `seen` and forwarded as a typed message (heartbeats are only
/// noted), its end reported through [`Handle::disconnected`]. What the engine sends waits in
/// `rx` until [`Agent::frames`] takes it.
struct Agent {
    name: DeviceName,
    token: String,
    capabilities: Vec<String>,
    slots: u32,
    conn: ConnId,
    rx: mpsc::Receiver<ServerMsg>,
    seen: LastSeen,
    handle: Handle,
    labels: Labels,
    /// The attempt of each task this device was last assigned.
    held: HashMap<TaskId, AttemptId>,
}

impl Agent {
    /// Says hello holding the attempts of `tasks`; returns the answer in short (`welcome`,
    /// `welcome, reattached t1#1`, or the refusal's code).
    async fn connect(&mut self, tasks: &[&str]) -> String {
        let held_attempts: Vec<AttemptId> = tasks.iter().map(|t| self.attempt(t)).collect();
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            device: self.name.clone(),
            token: self.token.clone(),
            kind: "laptop".into(),
            platform: "linux".into(),
            capabilities: self.capabilities.clone(),
            max_concurrency: self.slots,
            held_attempts,
            os_version: None,
            tools: Vec::new(),
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let seen: LastSeen = Arc::new(AtomicU64::new(self.handle.clock().now_ms()));
        let answer = self.handle.connect(hello, tx, seen.clone()).await.unwrap();
        let (conn, welcome) = match answer {
            Ok(ok) => ok,
            Err(e) => return e.code,
        };
        (self.conn, self.rx, self.seen) = (conn, rx, seen);
        let ServerMsg::Welcome { reattached, .. } = welcome else {
            panic!("not a welcome: {welcome:?}");
        };
        let mut out = "welcome".to_owned();
        if !reattached.is_empty() {
            let names: Vec<String> = reattached.iter().map(|a| self.labels.get(a)).collect();
            out += &format!(", reattached {}", names.join(" "));
        }
        out
    }

    /// Says hello to the engine `rig` runs now (after [`Rig::restart`]).
    async fn reconnect_to(&mut self, rig: &Rig, tasks: &[&str]) -> String {
        self.handle = rig.handle.clone();
        self.connect(tasks).await
    }

    /// The attempt `which` names: `t1#2` (task `t1`'s second), or `t1` (the attempt of `t1`
    /// this device was assigned last).
    fn attempt(&self, which: &str) -> AttemptId {
        if which.contains('#') {
            return self.labels.find(which);
        }
        self.held
            .get(&TaskId::from(which))
            .unwrap_or_else(|| panic!("{} holds no attempt of {which}", self.name))
            .clone()
    }

    /// Sends a frame as the connection's reader would, and waits until the engine has
    /// committed what it did about it.
    async fn send(&self, msg: AgentMsg) {
        self.seen
            .store(self.handle.clock().now_ms(), Ordering::Relaxed);
        if !matches!(msg, AgentMsg::Heartbeat {}) {
            self.handle
                .agent_msg(self.name.clone(), self.conn, msg)
                .await
                .unwrap();
        }
        self.handle.barrier().await.unwrap();
    }

    async fn accept(&self, task: &str) {
        let attempt_id = self.attempt(task);
        self.send(AgentMsg::Accept { attempt_id }).await;
    }

    async fn succeed(&self, task: &str) {
        self.result(task, ResultStatus::Succeeded, None).await;
    }

    async fn fail(&self, task: &str, code: &str) {
        let error = ErrorInfo::new(code, "boom");
        self.result(task, ResultStatus::Failed, Some(error)).await;
    }

    async fn result(&self, task: &str, status: ResultStatus, error: Option<ErrorInfo>) {
        let msg = AgentMsg::Result {
            attempt_id: self.attempt(task),
            status,
            output: TaskOutput {
                summary: format!("{task} done"),
                data: serde_json::Value::Null,
            },
            error,
            files: vec![],
        };
        self.send(msg).await;
    }

    /// Reports `used` turns of the attempt of `task`.
    async fn turns_used(&self, task: &str, used: u32) {
        let msg = AgentMsg::Progress {
            attempt_id: self.attempt(task),
            message: format!("turn {used}"),
            turns_used: Some(used),
        };
        self.send(msg).await;
    }

    /// Asks for `turns` more turns for the attempt of `task`.
    async fn extend(&self, task: &str, turns: u32) {
        let attempt_id = self.attempt(task);
        self.send(AgentMsg::ExtendTurns { attempt_id, turns }).await;
    }

    /// The connection closed (the device may come back within the grace window).
    async fn close(&self) {
        self.handle
            .disconnected(self.name.clone(), self.conn, false)
            .await;
        self.handle.barrier().await.unwrap();
    }

    /// The connection was closed because the device sent nothing for 2 heartbeat intervals.
    async fn go_silent(&self) {
        self.handle
            .disconnected(self.name.clone(), self.conn, true)
            .await;
        self.handle.barrier().await.unwrap();
    }

    /// The frames the engine sent since the last call, one per line in short: `assign t1#2`,
    /// `ack t1#2`, `cancel t1#2: <reason>`, `turns t1#1 +5 = 25`, `error <code>`,
    /// `refused <code>`.
    fn frames(&mut self) -> String {
        let mut lines = Vec::new();
        while let Ok(msg) = self.rx.try_recv() {
            lines.push(self.frame(msg));
        }
        lines.join("\n")
    }

    fn frame(&mut self, msg: ServerMsg) -> String {
        match msg {
            ServerMsg::Assign {
                attempt_id,
                task_id,
                max_turns,
                ..
            } => {
                let name = self.labels.name(&attempt_id, &task_id);
                self.held.insert(task_id, attempt_id);
                if max_turns > 1 {
                    format!("assign {name} ({max_turns} turns)")
                } else {
                    format!("assign {name}")
                }
            }
            ServerMsg::Ack { attempt_id } => format!("ack {}", self.labels.get(&attempt_id)),
            ServerMsg::Cancel { attempt_id, reason } => {
                format!("cancel {}: {reason}", self.labels.get(&attempt_id))
            }
            ServerMsg::Turns {
                attempt_id,
                granted,
                max_turns,
            } => format!(
                "turns {} +{granted} = {max_turns}",
                self.labels.get(&attempt_id)
            ),
            ServerMsg::Error { error } => format!("error {}", error.code),
            ServerMsg::Refused { error } => format!("refused {}", error.code),
            other => format!("{other:?}"),
        }
    }

    /// Checks the frames sent since the last check against `expect`.
    #[track_caller]
    fn check(&mut self, expect: &str) {
        let got = self.frames();
        assert_eq!(got, dedent(expect), "frames to {}:\n{got}", self.name);
    }
}

/// A task running `command` in a shell on any device that has one.
fn shell(id: &str) -> TaskSpec {
    TaskSpec {
        id: TaskId::from(id),
        title: String::new(),
        instruction: format!("run {id}"),
        action: Some(Action::Shell {
            command: format!("echo {id}"),
        }),
        device: None,
        device_kind: None,
        capabilities: Vec::new(),
        retry: None,
        max_turns: None,
        inputs: None,
        outputs: None,
    }
}

/// A task that works in turns (up to `max_turns` per attempt).
fn steps(id: &str, max_turns: u32) -> TaskSpec {
    TaskSpec {
        action: Some(Action::Steps {
            steps: max_turns,
            step_ms: 0,
        }),
        max_turns: Some(max_turns),
        ..shell(id)
    }
}

/// `to` runs after `from` succeeded.
fn edge(from: &str, to: &str) -> EdgeView {
    EdgeView {
        from: TaskId::from(from),
        to: TaskId::from(to),
        kind: EdgeKind::Success,
        condition: None,
    }
}

/// A request view in short:
///
/// ```text
/// failed tasks_failed [turns used 12, reserved 22 of 30, +8 granted, 1 refused]
/// t1 failed exit_nonzero: boom (after 3 attempts)
///   #1 d1 failed +0..+0 exit_nonzero
/// ```
fn render(view: &RequestView) -> String {
    let mut out = view.status.as_str().to_owned();
    if let Some(e) = &view.error {
        out += &format!(" {}", e.code);
    }
    let t = view.turns;
    if t.reserved > 0 || t.used > 0 {
        out += &format!(
            " [turns used {}, reserved {} of {}",
            t.used, t.reserved, t.budget
        );
        if t.extensions_granted > 0 {
            out += &format!(", +{} granted", t.extensions_granted);
        }
        if t.extensions_refused > 0 {
            out += &format!(", {} refused", t.extensions_refused);
        }
        out += "]";
    }
    for task in &view.tasks {
        out += &format!("\n{} {}", task.id, task.status.as_str());
        if task.turns_used > 0 {
            out += &format!(" ({} turns)", task.turns_used);
        }
        if let Some(e) = &task.error {
            out += &format!(" {}: {}", e.code, e.message);
        }
        for (n, a) in task.attempts.iter().enumerate() {
            out += &format!("\n  #{} {}", n + 1, attempt(a));
        }
    }
    out
}

fn attempt(a: &AttemptView) -> String {
    let mut out = format!(
        "{} {} +{}",
        a.device,
        a.status.as_str(),
        a.started_at_ms - T0
    );
    if let Some(end) = a.ended_at_ms {
        out += &format!("..+{}", end - T0);
    }
    if let Some(e) = &a.error {
        out += &format!(" {}", e.code);
    }
    if let Some(late) = &a.late_result {
        out += &format!(" (late {:?} at +{})", late.status, late.at_ms - T0);
    }
    out
}

/// `text` without the blank lines around it and the indentation its lines share.
fn dedent(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}
