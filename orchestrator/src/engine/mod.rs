//! The graph engine: the one owner of every live request's graph and of the device registry.
//!
//! Shape (the engine's part of ARCHITECTURE.md's code map): [`Engine`] owns its state and runs
//! one event loop over a closed set of inputs (its command channel and its timers); [`Handle`]
//! is cheap to clone and is all that HTTP handlers and WebSocket connection tasks hold.
//! Request/reply goes through a `oneshot` inside the command. The engine reads the time only
//! from its [`Clock`], so tests can stop it.
//!
//! Architecture invariant: every state change is committed to the store (with its journal
//! events) before it is acknowledged to anyone or broadcast. If the store refuses a write the
//! engine stops (fail-stop) rather than run on state that is not durable.

mod clock;
mod edit;
mod error;
mod graph;
mod hub;
mod options;
mod placement;
mod records;
mod service;
#[cfg(test)]
mod tests;

pub use clock::Clock;
pub use edit::{EditCtx, EditError, MAX_OPS_PER_BATCH, MAX_TASKS_PER_GRAPH};
pub use error::Error;
pub use graph::{
    Graph, IllegalTransition, Target, TaskDefaults, TaskFiles, TaskRecord, TaskSched, legal,
};
pub use hub::{Hub, RequestEvents};
pub use options::Options;
pub use placement::FreeSlots;
pub use records::{DeviceRecord, LiveAttempt, LiveRequest};
pub use service::Engine;
pub use service::files::{FileGrant, FileWant};

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};
use weft_planner::Plan;
use weft_protocol::rest::{
    DeviceCreated, DeviceRemoved, DeviceView, EditBatch, Event, RequestView,
};
use weft_protocol::{AgentMsg, AttemptId, DeviceName, ErrorInfo, RequestId, ServerMsg, TaskId};

use crate::metrics::Metrics;

/// Identifies one WebSocket connection, so that a stale connection's messages are never taken
/// for a newer one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// What an agent states in its `hello`.
#[derive(Debug, Clone)]
pub struct Hello {
    pub protocol_version: u32,
    pub device: DeviceName,
    pub token: String,
    pub kind: String,
    pub platform: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub held_attempts: Vec<AttemptId>,
    pub os_version: Option<String>,
    pub tools: Vec<weft_protocol::ToolSpec>,
}

/// A new request's graph: planned from its text, or given whole by the client.
#[derive(Debug)]
pub enum Planned {
    Plan(Plan),
    Given(weft_protocol::rest::GraphSpec),
}

/// Where the engine answers a [`Command::Create`].
#[derive(Debug)]
pub(crate) enum CreateReply {
    /// The view as created.
    View(oneshot::Sender<Result<RequestView, Error>>),
    /// The view as created and the request's events from its first on, subscribed before the
    /// creating group goes to the committer (events are published only after their commit,
    /// so none is missed).
    Followed(oneshot::Sender<Result<(RequestView, RequestEvents), Error>>),
}

/// Frames the engine sends to one connection. Bounded; a connection that cannot keep up is
/// dropped rather than allowed to grow memory without bound.
pub type Outbound = mpsc::Sender<ServerMsg>;

/// When a connection last received a frame (ms since the epoch, by the engine's [`Clock`]);
/// written by its connection task, read by the engine for the device's `last_seen_ms`.
pub type LastSeen = Arc<std::sync::atomic::AtomicU64>;

/// Capacity of each connection's outbound queue.
pub const OUTBOUND_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) enum Command {
    Create {
        text: String,
        planner: &'static str,
        plan: Planned,
        turn_budget: Option<u32>,
        reply: CreateReply,
    },
    Edit {
        request: RequestId,
        batch: EditBatch,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    Cancel {
        request: RequestId,
        task: Option<TaskId>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Devices {
        reply: oneshot::Sender<Vec<DeviceView>>,
    },
    PlannerDevices {
        reply: oneshot::Sender<Arc<Vec<weft_planner::DeviceProfile>>>,
    },
    AddDevice {
        name: DeviceName,
        kind: String,
        reply: oneshot::Sender<Result<DeviceCreated, Error>>,
    },
    SetDraining {
        name: DeviceName,
        draining: bool,
        reply: oneshot::Sender<Result<DeviceView, Error>>,
    },
    RemoveDevice {
        name: DeviceName,
        reply: oneshot::Sender<Result<DeviceRemoved, Error>>,
    },
    RotateToken {
        name: DeviceName,
        reply: oneshot::Sender<Result<DeviceCreated, Error>>,
    },
    Connect {
        hello: Hello,
        outbound: Outbound,
        seen: LastSeen,
        reply: oneshot::Sender<Result<(ConnId, ServerMsg), ErrorInfo>>,
    },
    FromAgent {
        device: DeviceName,
        conn: ConnId,
        msg: AgentMsg,
    },
    Disconnected {
        device: DeviceName,
        conn: ConnId,
        /// The device went silent (no frame for 2 heartbeat intervals): its attempts are lost
        /// at once instead of waiting out the grace window.
        silent: bool,
    },
    /// A connection's outbound queue was full: it is dropped (the agent reconnects).
    Overflow { device: DeviceName, conn: ConnId },
    /// Answered once everything the engine did before it is committed (tests step the engine
    /// with it).
    #[cfg(test)]
    Barrier { reply: oneshot::Sender<()> },
    /// May the device with this token move this file? Answered at once, from memory.
    FileAccess {
        token: String,
        want: FileWant,
        reply: oneshot::Sender<Result<FileGrant, Error>>,
    },
    /// Retention is about to delete these blobs, each with the files of ended requests that
    /// refer to it: journal it. Answered, after the commit, with the blobs journaled (none a
    /// live request refers to).
    FilesDeleted {
        blobs:
            std::collections::BTreeMap<String, Vec<(RequestId, weft_protocol::files::StoredFile)>>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// A result for an attempt that was not live, back from the store lookup the engine
    /// started for it: `owned` if the device that sent it ran that attempt.
    StrayResult {
        device: DeviceName,
        attempt_id: AttemptId,
        result: weft_protocol::rest::LateResult,
        owned: bool,
    },
}

/// A cheap, cloneable handle to the engine.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    events: Arc<Hub>,
    /// A device's view after it connected, disconnected, was drained or resumed, was
    /// registered, or started or ended an attempt.
    device_events: broadcast::Sender<DeviceView>,
    /// Counters the engine and the connection tasks update.
    pub metrics: Arc<Metrics>,
    /// The engine's clock, for the times connection tasks hand it ([`LastSeen`]).
    clock: Clock,
}

impl Handle {
    /// A handle with no engine behind it, for a standby replica (docs/replicas.md): every
    /// command answers [`crate::Error::EngineGone`]; its hub, returned beside it, carries
    /// what the standby's journal follower publishes, so event streams work as on a leader.
    pub fn detached(clock: Clock, metrics: Arc<Metrics>) -> (Self, Arc<Hub>) {
        let (tx, _) = mpsc::channel(1);
        let events = Arc::new(Hub::default());
        let handle = Self {
            tx,
            events: events.clone(),
            device_events: broadcast::channel(1).0,
            metrics,
            clock,
        };
        (handle, events)
    }

    /// The engine's clock: what "now" is to the engine.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, crate::Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| crate::Error::EngineGone)?;
        rx.await.map_err(|_| crate::Error::EngineGone)
    }

    /// Creates a request from a validated plan and starts running it. Returns the request as
    /// it was created (once that is committed): its tasks waiting or ready, no attempts yet.
    pub async fn create(
        &self,
        text: String,
        planner: &'static str,
        plan: Planned,
        turn_budget: Option<u32>,
    ) -> Result<RequestView, Error> {
        self.call(|reply| Command::Create {
            text,
            planner,
            plan,
            turn_budget,
            reply: CreateReply::View(reply),
        })
        .await?
    }

    /// [`Handle::create`], and the new request's committed events from its first on
    /// (`request_created`): what a caller waits on to learn that the request ended, with
    /// nothing missed between the creation and the subscription. Dropping the subscription
    /// only stops following; the request goes on.
    pub async fn create_followed(
        &self,
        text: String,
        planner: &'static str,
        plan: Planned,
        turn_budget: Option<u32>,
    ) -> Result<(RequestView, RequestEvents), Error> {
        self.call(|reply| Command::Create {
            text,
            planner,
            plan,
            turn_budget,
            reply: CreateReply::Followed(reply),
        })
        .await?
    }

    /// Applies an edit batch atomically; returns the graph's new version.
    pub async fn edit(&self, request: RequestId, batch: EditBatch) -> Result<u64, Error> {
        self.call(|reply| Command::Edit {
            request,
            batch,
            reply,
        })
        .await?
    }

    /// Cancels a whole request (`task: None`) or one task of it.
    pub async fn cancel(&self, request: RequestId, task: Option<TaskId>) -> Result<(), Error> {
        self.call(|reply| Command::Cancel {
            request,
            task,
            reply,
        })
        .await?
    }

    /// Whether the device whose token is `token` may do `want` with a file (docs/artifacts.md):
    /// upload an output of an attempt it holds, or download a blob one of its live attempts
    /// takes as input. Answered at once, from the engine's memory.
    pub async fn file_access(&self, token: String, want: FileWant) -> Result<FileGrant, Error> {
        self.call(|reply| Command::FileAccess { token, want, reply })
            .await?
    }

    /// Journals that retention deletes `blobs` (each with the files of ended requests that
    /// refer to it: one `files_deleted` event per request). Answers the blobs journaled, once
    /// committed; a blob a live request refers to is left out and must not be deleted.
    pub async fn files_deleted(
        &self,
        blobs: std::collections::BTreeMap<
            String,
            Vec<(RequestId, weft_protocol::files::StoredFile)>,
        >,
    ) -> Result<Vec<String>, crate::Error> {
        self.call(|reply| Command::FilesDeleted { blobs, reply })
            .await
    }

    /// Every registered device as the engine sees it now (answered at once, without waiting
    /// for the changes the engine is about to commit).
    pub async fn devices(&self) -> Result<Vec<DeviceView>, crate::Error> {
        self.call(|reply| Command::Devices { reply }).await
    }

    /// The devices as planners see them (name, kind, capabilities, platform, online = connected
    /// and not draining). Shared and cached: rebuilt only after a device was registered,
    /// connected, disconnected, drained or resumed.
    pub async fn planner_devices(
        &self,
    ) -> Result<Arc<Vec<weft_planner::DeviceProfile>>, crate::Error> {
        self.call(|reply| Command::PlannerDevices { reply }).await
    }

    pub async fn add_device(&self, name: DeviceName, kind: String) -> Result<DeviceCreated, Error> {
        self.call(|reply| Command::AddDevice { name, kind, reply })
            .await?
    }

    /// Drains a device (no new work; running work finishes) or takes it back into service.
    pub async fn set_draining(
        &self,
        name: DeviceName,
        draining: bool,
    ) -> Result<DeviceView, Error> {
        self.call(|reply| Command::SetDraining {
            name,
            draining,
            reply,
        })
        .await?
    }

    /// Removes a device: its token is refused from now on, its connection is closed (after a
    /// `refused: device_removed` frame) and the attempts it held are placed again.
    pub async fn remove_device(&self, name: DeviceName) -> Result<DeviceRemoved, Error> {
        self.call(|reply| Command::RemoveDevice { name, reply })
            .await?
    }

    /// Gives a device a new token (in the answer, shown once): the old one is refused from
    /// now on, a connection made with it is closed (after a `refused: token_rotated` frame)
    /// and the attempts the device held are placed again.
    pub async fn rotate_token(&self, name: DeviceName) -> Result<DeviceCreated, Error> {
        self.call(|reply| Command::RotateToken { name, reply })
            .await?
    }

    /// Authenticates a hello and binds `outbound` to the device. Returns the welcome to send.
    /// `seen` is when the connection last received a frame (ms since the epoch), kept by the
    /// connection task: heartbeats only update it and never reach the engine.
    pub async fn connect(
        &self,
        hello: Hello,
        outbound: Outbound,
        seen: LastSeen,
    ) -> Result<Result<(ConnId, ServerMsg), ErrorInfo>, crate::Error> {
        self.call(|reply| Command::Connect {
            hello,
            outbound,
            seen,
            reply,
        })
        .await
    }

    /// Forwards a decoded frame from a bound connection.
    pub async fn agent_msg(
        &self,
        device: DeviceName,
        conn: ConnId,
        msg: AgentMsg,
    ) -> Result<(), crate::Error> {
        self.tx
            .send(Command::FromAgent { device, conn, msg })
            .await
            .map_err(|_| crate::Error::EngineGone)
    }

    /// A connection ended; `silent` if it was closed because the device stopped sending.
    pub async fn disconnected(&self, device: DeviceName, conn: ConnId, silent: bool) {
        let _ = self
            .tx
            .send(Command::Disconnected {
                device,
                conn,
                silent,
            })
            .await;
    }

    /// Returns once everything the engine did before this call is committed (and what waited
    /// for it released: replies, frames, events).
    #[cfg(test)]
    pub(crate) async fn barrier(&self) -> Result<(), crate::Error> {
        self.call(|reply| Command::Barrier { reply }).await
    }

    /// Every request's live events, as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe_all()
    }

    /// One request's live events, as they are committed. Subscribe before reading the journal
    /// so that nothing falls between the two.
    pub fn subscribe_request(&self, request: &RequestId) -> RequestEvents {
        self.events.subscribe(request)
    }

    /// Device views as they change (after the change is stored). Subscribe before reading
    /// [`Handle::devices`] so that nothing falls between the two.
    pub fn subscribe_devices(&self) -> broadcast::Receiver<DeviceView> {
        self.device_events.subscribe()
    }
}
