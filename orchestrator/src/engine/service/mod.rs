//! The engine's state and event loop.
//!
//! The state is kept in rooms, each the one owner of what it holds:
//! - `devices.rs` — the device registry (connections, running attempts, free slots, planners'
//!   view);
//! - `attempts.rs` — the table of live attempts;
//! - `Engine::requests` — the live requests' graphs, changed only through `status.rs`
//!   (status) and `requests.rs` (lifecycle, edits, cancels);
//! - `outbox.rs` — the current group of changes and what waits for its commit.
//!
//! The work is kept by kind of input: `conns.rs` (hello, disconnects, device commands),
//! `revoke.rs` (devices removed or given a new token),
//! `agent.rs` (one handler per agent message), `timers.rs` (deadlines), `schedule.rs`
//! (placement and dispatch), `ending.rs` (how an attempt ends, with `retry.rs` deciding
//! what follows a failure), `resume.rs` (rebuilding after a restart).

mod agent;
mod attempts;
mod committer;
mod conns;
mod devices;
mod ending;
pub(crate) mod files;
mod outbox;
mod requests;
mod resume;
mod retry;
mod revoke;
mod schedule;
mod status;
mod timers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use weft_protocol::rest::{EventKind, TurnsView};
use weft_protocol::{
    AttemptId, DeviceName, ErrorInfo, RequestId, ServerMsg, TaskId, TaskOutput, TaskStatus,
};

use super::graph::Graph;
use super::{Command, CreateReply, Handle};
use crate::Error;
use crate::engine;
use crate::engine::Clock;
use crate::metrics::Metrics;
use crate::store::{Batch, Store};
use attempts::Attempts;
use devices::Devices;
use outbox::Outbox;

/// Most inputs handled before their changes are committed together (group commit).
const MAX_GROUP: usize = 512;

#[derive(Debug)]
struct Request {
    graph: Graph,
    /// The graph's version: 1 when created, +1 per accepted edit batch.
    version: u64,
    /// The user cancelled the request: it ends `cancelled` once its tasks have stopped.
    cancelling: bool,
    /// The request's turn pool.
    turns: TurnsView,
}

/// How a task ended: what [`Engine::task_ended`] records.
#[derive(Debug)]
struct Ending {
    status: TaskStatus,
    output: Option<TaskOutput>,
    error: Option<ErrorInfo>,
    /// The files the attempt produced (a success).
    files: Vec<weft_protocol::FileRef>,
    /// The attempt that ended it and its device, if an attempt did.
    attempt: Option<(AttemptId, DeviceName)>,
}

/// The engine service. Build with [`Engine::start`].
#[derive(Debug)]
pub struct Engine {
    store: Store,
    opts: engine::Options,
    /// Where every "now" the engine reads comes from.
    clock: Clock,
    devices: Devices,
    /// Live (unfinished) requests; UUIDv7 ids iterate in creation order.
    requests: BTreeMap<RequestId, Request>,
    attempts: Attempts,
    out: Outbox,
    /// Where the committer publishes committed events; the engine only subscribes those who
    /// follow a request they create ([`CreateReply::Followed`]).
    hub: Arc<engine::Hub>,
    /// The engine's own command channel, for work it hands to a task of its own (weak: the
    /// engine's loop ends when every `Handle` is gone).
    inbox: mpsc::WeakSender<Command>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    /// Set once shutdown began: no new requests or dispatches; in-flight results are still
    /// taken until then.
    drain_until: Option<u64>,
    /// When the engine must check deadlines before its next regular tick (a grace window
    /// ends), so that lost work is re-placed on time rather than on the tick.
    wake: Option<u64>,
}

impl Engine {
    /// Loads the device registry from `store` and starts the event loop on the current runtime,
    /// reading the time from `clock`. The loop ends when `shutdown` is cancelled or every
    /// handle is dropped; it cancels `shutdown` itself if the store fails (fail-stop).
    pub async fn start(
        store: Store,
        opts: engine::Options,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Result<(Handle, tokio::task::JoinHandle<Result<(), Error>>), Error> {
        Self::start_with(store, opts, clock, Arc::default(), shutdown).await
    }

    /// [`Engine::start`], counting into `metrics` (the server's, which its listener counts
    /// into too, even when the engine starts later: a standby that takes over).
    pub async fn start_with(
        store: Store,
        opts: engine::Options,
        clock: Clock,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<(Handle, tokio::task::JoinHandle<Result<(), Error>>), Error> {
        let rows = store.load_devices().await?;
        let last_seq = store.last_seq().await?;
        let (tx, rx) = mpsc::channel(1024);
        let events = Arc::new(super::Hub::default());
        let (device_events, _) = broadcast::channel(256);
        let (committer, groups) = mpsc::channel(committer::QUEUED_GROUPS);
        let committer_join = tokio::spawn(committer::run(
            committer::Outlets {
                store: store.clone(),
                hub: events.clone(),
                device_events: device_events.clone(),
                engine: tx.downgrade(),
                shutdown: shutdown.clone(),
            },
            groups,
        ));
        let mut engine = Engine {
            store,
            opts,
            clock,
            devices: Devices::new(rows, device_events.clone()),
            requests: BTreeMap::new(),
            attempts: Attempts::default(),
            out: Outbox::new(committer, last_seq),
            hub: events.clone(),
            inbox: tx.downgrade(),
            shutdown,
            drain_until: None,
            metrics,
            wake: None,
        };
        let metrics = engine.metrics.clone();
        engine.resume().await?;
        let join = tokio::spawn(async move {
            let mut devices = engine.run(rx).await;
            // What was handed over is committed (and released) before the engine is done;
            // then closing every outbound queue ends the connection tasks.
            let committed = committer_join.await.unwrap_or(Ok(()));
            devices.close_all();
            tracing::debug!("engine stopped");
            committed.map_err(|e| Error::FailStop(Box::new(e)))
        });
        Ok((
            Handle {
                tx,
                events,
                device_events,
                metrics,
                clock,
            },
            join,
        ))
    }

    /// The event loop. Once it stops, everything but the device registry is dropped, which
    /// closes the committer's channel; the registry is returned.
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) -> Devices {
        let mut tick = tokio::time::interval(self.opts.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shutdown.clone();
        loop {
            // One input, then whatever else is already waiting (up to MAX_GROUP), then one
            // scheduling pass and one commit for all of it.
            let res = tokio::select! {
                _ = shutdown.cancelled(), if self.drain_until.is_none() => {
                    let until = self.now() + millis(self.opts.shutdown_grace);
                    tracing::info!(in_flight = self.attempts.len(), "draining: no new work; waiting for running attempts");
                    self.drain_until = Some(until);
                    Ok(())
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle_group(cmd, &mut rx).await,
                    None => break,
                },
                _ = tick.tick() => {
                    self.on_tick();
                    Ok(())
                }
                _ = self.clock.sleep_until_ms(self.wake.unwrap_or(0)), if self.wake.is_some() => {
                    self.wake = None;
                    self.on_tick();
                    Ok(())
                }
            };
            let res = match res {
                Ok(()) => {
                    self.schedule();
                    self.flush().await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "store write failed; stopping the engine (fail-stop)");
                self.shutdown.cancel();
                break;
            }
            if self.drained() {
                break;
            }
        }
        let Engine { devices, .. } = self;
        devices
    }

    /// While shutting down: whether nothing runs any more or the grace period is over.
    fn drained(&self) -> bool {
        let Some(until) = self.drain_until else {
            return false;
        };
        let running = self.attempts.running();
        if running > 0 && self.now() < until {
            return false;
        }
        if running > 0 {
            tracing::warn!(
                running,
                "grace period over; in-flight attempts resume after restart"
            );
        }
        true
    }

    /// Handles `first` and the commands already queued behind it, without committing.
    async fn handle_group(
        &mut self,
        first: Command,
        rx: &mut mpsc::Receiver<Command>,
    ) -> Result<(), Error> {
        self.handle(first).await?;
        let mut n = 1;
        while n < MAX_GROUP {
            let Ok(cmd) = rx.try_recv() else { break };
            self.handle(cmd).await?;
            n += 1;
        }
        Metrics::inc(&self.metrics.engine_groups_total);
        self.metrics
            .engine_inputs_total
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn handle(&mut self, cmd: Command) -> Result<(), Error> {
        match cmd {
            Command::Create {
                text,
                planner,
                plan,
                turn_budget,
                reply,
            } => {
                let res = if self.drain_until.is_some() {
                    Err(engine::Error::ShuttingDown)
                } else {
                    self.create(text, planner, plan, turn_budget)
                };
                match reply {
                    CreateReply::View(reply) => self.out.reply(reply, res),
                    // Subscribed now, before this group goes to the committer: the request's
                    // events are published only after their commit, so none is missed.
                    CreateReply::Followed(reply) => {
                        let res = res.map(|view| {
                            let events = self.hub.subscribe(&view.id);
                            (view, events)
                        });
                        self.out.reply(reply, res);
                    }
                }
            }
            Command::Edit {
                request,
                batch,
                reply,
            } => {
                let res = self.edit(request, batch).await?;
                self.out.reply(reply, res);
            }
            Command::Cancel {
                request,
                task,
                reply,
            } => {
                let res = self.cancel(request, task).await?;
                self.out.reply(reply, res);
            }
            // Reads of the registry: answered at once rather than after the commit.
            Command::Devices { reply } => {
                let _ = reply.send(self.devices.views());
            }
            Command::PlannerDevices { reply } => {
                let _ = reply.send(self.devices.profiles());
            }
            Command::FileAccess { token, want, reply } => {
                let _ = reply.send(self.file_access(&token, &want));
            }
            Command::FilesDeleted { blobs, reply } => {
                let journaled = self.files_deleted(blobs);
                self.out.reply(reply, journaled);
            }
            Command::AddDevice { name, kind, reply } => {
                let res = self.add_device(name, kind);
                self.out.reply(reply, res);
            }
            Command::SetDraining {
                name,
                draining,
                reply,
            } => {
                let res = self.set_draining(name, draining);
                self.out.reply(reply, res);
            }
            Command::RemoveDevice { name, reply } => {
                let res = self.remove_device(name);
                self.out.reply(reply, res);
            }
            Command::RotateToken { name, reply } => {
                let res = self.rotate_token(name);
                self.out.reply(reply, res);
            }
            Command::Connect {
                hello,
                outbound,
                seen,
                reply,
            } => {
                let res = self.connect(hello, outbound, seen);
                self.out.reply(reply, res);
            }
            Command::FromAgent { device, conn, msg } => self.on_agent_msg(device, conn, msg),
            Command::StrayResult {
                device,
                attempt_id,
                result,
                owned,
            } => self.on_stray_result_checked(&device, attempt_id, result, owned),
            // A connection that cannot keep up is dropped like one that closed: its writer
            // ends once the last queued frame is gone, and the agent reconnects.
            Command::Disconnected {
                device,
                conn,
                silent,
            } => self.disconnected(&device, conn, silent),
            Command::Overflow { device, conn } => self.disconnected(&device, conn, false),
            #[cfg(test)]
            Command::Barrier { reply } => self.out.reply(reply, ()),
        }
        Ok(())
    }

    /// The time, in ms since the epoch.
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Makes the engine check its deadlines at `at_ms` (besides its regular tick).
    fn wake_at(&mut self, at_ms: u64) {
        self.wake = Some(self.wake.map_or(at_ms, |w| w.min(at_ms)));
    }

    /// Adds `batch` to the current group's changes, numbering its events.
    fn stage(&mut self, batch: Batch) {
        let now = self.now();
        self.out.stage(batch, now);
    }

    /// Sends a frame to a device's current connection once the current group is committed.
    /// A connection whose queue is full is dropped (its writer ends, the socket closes, the
    /// agent reconnects).
    fn send(&mut self, device: &DeviceName, msg: ServerMsg) {
        if let Some(conn) = self.devices.conn(device) {
            self.out.frame(device, conn, msg);
        }
    }

    /// Hands the current group, with the views of the devices it changed, to the committer.
    /// The engine goes on meanwhile.
    async fn flush(&mut self) -> Result<(), Error> {
        self.out.device_views(self.devices.take_changed());
        self.out.flush().await
    }

    /// Waits until everything staged so far is committed: before the engine reads the store.
    async fn settle(&mut self) -> Result<(), Error> {
        self.out.device_views(self.devices.take_changed());
        self.out.settle().await
    }
}

fn task_event(task: &TaskId, status: TaskStatus) -> EventKind {
    EventKind::TaskStatus {
        task_id: task.clone(),
        status,
        attempt_id: None,
        device: None,
        output: None,
        error: None,
        files: vec![],
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
