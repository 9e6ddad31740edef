//! What the engine is started with: its timeouts, the defaults of new requests and tasks, and
//! its pacing. Nothing of the listener, HTTP or credentials; `server.rs` builds it from the
//! server's options.

use std::time::Duration;

use weft_protocol::RetryPolicy;

/// The engine's settings. Every field is read by the engine alone.
#[derive(Debug, Clone)]
pub struct Options {
    /// Interval of heartbeats in both directions (told to each agent in its `welcome`); a
    /// device silent for 2 intervals is disconnected and its running attempts are placed
    /// elsewhere at once.
    pub heartbeat_interval: Duration,
    /// Longest an attempt may run before it is stopped and failed with `timeout`.
    pub attempt_timeout: Duration,
    /// Longest a ready task may wait for a capable device before it fails with `no_device`.
    pub queue_timeout: Duration,
    /// Longest a task may take over all its attempts before it fails with `task_timeout`.
    pub task_timeout: Duration,
    /// The retry policy given to every new task that sets none.
    pub retry: RetryPolicy,
    /// Turns a request may use in all, unless it asks for another budget.
    pub turn_budget: u32,
    /// Turn limit of each attempt of a turn-based task, unless the task sets its own.
    pub max_turns: u32,
    /// How long the attempts of a device whose connection closed wait for it to come back
    /// before they are declared lost and placed again.
    pub lost_grace: Duration,
    /// How often the engine checks deadlines, backoffs and grace windows.
    pub tick: Duration,
    /// How long running attempts may still deliver their results once shutdown began.
    pub shutdown_grace: Duration,
}

impl Options {
    /// How long a connected device may take to answer an `assign` (`accept` or `reject`; an
    /// agent answers at once) before the attempt is placed again: 3 heartbeat intervals, and
    /// never less than 30 s — on a slow link an `assign` may wait behind other large frames,
    /// and the device is not silent (that is found after 2 intervals, and ends its attempts
    /// anyway).
    pub fn answer_timeout(&self) -> Duration {
        (self.heartbeat_interval * 3).max(Duration::from_secs(30))
    }
}
