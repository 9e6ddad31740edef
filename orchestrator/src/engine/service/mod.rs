//! The engine's state and event loop.

mod committer;
mod requests;
mod status;

use status::Move;

use committer::{Effect, Group};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weft_protocol::rest::{
    DeviceCreated, DeviceStatus, DeviceView, Event, EventKind, LateResult, TurnsView,
};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{
    AgentMsg, AttemptId, AttemptStatus, DeviceName, ErrorInfo, PROTOCOL_VERSION, RequestId,
    ServerMsg, TaskId, TaskOutput, TaskStatus,
};

use super::graph::Graph;
use super::{Command, ConnId, Handle, Hello, Outbound};
use crate::metrics::Metrics;
use crate::store::{Batch, DeviceRow, Op, Store, TargetRow};
use crate::{ApiError, Error, ServeOptions, now_ms, token};

/// How long a task refused as `busy` waits before it is placed again.
const BUSY_BACKOFF_MS: u64 = 200;

/// Largest `max_concurrency` a device may claim.
const MAX_DEVICE_CONCURRENCY: u32 = 1024;

/// Most inputs handled before their changes are committed together (group commit).
const MAX_GROUP: usize = 512;

#[derive(Debug)]
struct Device {
    row: DeviceRow,
    conn: Option<(ConnId, Outbound)>,
    /// While connected: when the connection last received a frame (heartbeats included).
    seen: Option<super::LastSeen>,
    running: BTreeSet<AttemptId>,
}

impl Device {
    fn online(&self) -> bool {
        self.conn.is_some()
    }

    /// What planners see of the device.
    fn profile(&self) -> weft_planner::DeviceProfile {
        weft_planner::DeviceProfile {
            info: weft_planner::DeviceInfo {
                name: self.row.name.clone(),
                kind: self.row.kind.clone(),
                capabilities: self.row.capabilities.clone(),
                online: self.online() && !self.row.draining,
            },
            platform: self.row.platform.clone(),
            tools: self.row.tools.clone(),
        }
    }

    fn view(&self) -> DeviceView {
        DeviceView {
            name: self.row.name.clone(),
            kind: self.row.kind.clone(),
            status: match (self.online(), self.row.draining) {
                (false, _) => DeviceStatus::Offline,
                (true, false) => DeviceStatus::Online,
                (true, true) => DeviceStatus::Draining,
            },
            platform: self.row.platform.clone(),
            os_version: self.row.os_version.clone(),
            capabilities: self.row.capabilities.clone(),
            tools: self.row.tools.clone(),
            max_concurrency: self.row.max_concurrency,
            running: u32::try_from(self.running.len()).unwrap_or(u32::MAX),
            last_seen_ms: self.last_seen_ms(),
        }
    }

    fn last_seen_ms(&self) -> Option<u64> {
        let live = self
            .seen
            .as_ref()
            .map(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        live.max(self.row.last_seen_ms)
    }
}

/// An attempt in flight.
#[derive(Debug, Clone)]
struct Live {
    request: RequestId,
    task: TaskId,
    device: DeviceName,
    status: AttemptStatus,
    deadline_ms: u64,
    /// When the device's connection dropped with this attempt in flight; after the grace
    /// window the attempt is lost.
    lost_since: Option<u64>,
    /// Whether the attempt draws turns from the request's pool, its limit (extensions
    /// included) and what it reported using.
    uses_turns: bool,
    max_turns: u32,
    turns_used: u32,
}

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
    /// The attempt that ended it and its device, if an attempt did.
    attempt: Option<(AttemptId, DeviceName)>,
}

/// The engine service. Build with [`Engine::start`].
#[derive(Debug)]
pub struct Engine {
    store: Store,
    opts: ServeOptions,
    devices: BTreeMap<DeviceName, Device>,
    /// Live (unfinished) requests; UUIDv7 ids iterate in creation order.
    requests: BTreeMap<RequestId, Request>,
    attempts: HashMap<AttemptId, Live>,
    /// Devices whose view changed during the current input; published once it is handled.
    changed_devices: BTreeSet<DeviceName>,
    device_events: broadcast::Sender<DeviceView>,
    next_conn: u64,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    /// Set once shutdown began: no new requests or dispatches; in-flight results are still
    /// taken until `drain_until`.
    drain_until: Option<u64>,
    /// Changes of the current group, not yet handed to the committer.
    pending: Group,
    /// Where groups go to be committed, in order.
    committer: mpsc::Sender<Group>,
    committer_join: Option<tokio::task::JoinHandle<()>>,
    /// Journal position of the last event staged.
    last_seq: u64,
    /// The devices that can take work now, least loaded first.
    free: super::FreeSlots,
    /// What planners see of the devices, built on demand; dropped when a device is registered,
    /// connects, disconnects, is drained or resumed (not when its load changes).
    planner_devices: Option<Arc<Vec<weft_planner::DeviceProfile>>>,
    /// When the engine must check deadlines before its next regular tick (a grace window
    /// ends), so that lost work is re-placed on time rather than on the tick.
    wake: Option<u64>,
}

impl Engine {
    /// Loads the device registry from `store` and starts the event loop on the current runtime.
    /// The loop ends when `shutdown` is cancelled or every handle is dropped; it cancels
    /// `shutdown` itself if the store fails (fail-stop).
    pub async fn start(
        store: Store,
        opts: ServeOptions,
        shutdown: CancellationToken,
    ) -> Result<(Handle, tokio::task::JoinHandle<()>), Error> {
        let mut devices = BTreeMap::new();
        for row in store.load_devices().await? {
            devices.insert(
                row.name.clone(),
                Device {
                    row,
                    conn: None,
                    seen: None,
                    running: BTreeSet::new(),
                },
            );
        }
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
            devices,
            requests: BTreeMap::new(),
            attempts: HashMap::new(),
            changed_devices: BTreeSet::new(),
            device_events: device_events.clone(),
            next_conn: 0,
            shutdown,
            drain_until: None,
            metrics: Arc::new(Metrics::default()),
            pending: Group::default(),
            committer,
            committer_join: Some(committer_join),
            last_seq,
            wake: None,
            planner_devices: None,
            free: super::FreeSlots::default(),
        };
        let metrics = engine.metrics.clone();
        engine.resume().await?;
        let join = tokio::spawn(engine.run(rx));
        Ok((
            Handle {
                tx,
                events,
                device_events,
                metrics,
            },
            join,
        ))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.opts.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shutdown.clone();
        loop {
            // One input, then whatever else is already waiting (up to MAX_GROUP), then one
            // scheduling pass and one commit for all of it.
            let res = tokio::select! {
                _ = shutdown.cancelled(), if self.drain_until.is_none() => {
                    let until = now_ms() + millis(self.opts.shutdown_grace);
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
                _ = sleep_until_ms(self.wake.unwrap_or(0)), if self.wake.is_some() => {
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
            if let Some(until) = self.drain_until {
                let running = self
                    .attempts
                    .values()
                    .filter(|l| l.lost_since.is_none())
                    .count();
                if running == 0 || now_ms() >= until {
                    if running > 0 {
                        tracing::warn!(
                            running,
                            "grace period over; in-flight attempts resume after restart"
                        );
                    }
                    break;
                }
            }
        }
        // What was handed over is committed (and released) before the engine is done.
        let Engine {
            committer,
            committer_join,
            mut devices,
            ..
        } = self;
        drop(committer);
        if let Some(join) = committer_join {
            let _ = join.await;
        }
        // Closing every outbound queue ends the connection tasks.
        for d in devices.values_mut() {
            d.conn = None;
        }
        tracing::debug!("engine stopped");
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
                    Err(ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        "the orchestrator is shutting down; submit again after it restarts",
                    ))
                } else {
                    self.create(text, planner, plan, turn_budget)
                };
                self.reply(reply, res);
            }
            Command::Edit {
                request,
                batch,
                reply,
            } => {
                let res = self.edit(request, batch).await?;
                self.reply(reply, res);
            }
            Command::Cancel {
                request,
                task,
                reply,
            } => {
                let res = self.cancel(request, task).await?;
                self.reply(reply, res);
            }
            Command::Devices { reply } => {
                // A read of the registry: answered at once rather than after the commit.
                let _ = reply.send(self.devices.values().map(Device::view).collect());
            }
            Command::PlannerDevices { reply } => {
                let devices = self.planner_devices.get_or_insert_with(|| {
                    Arc::new(self.devices.values().map(Device::profile).collect())
                });
                let _ = reply.send(devices.clone());
            }
            Command::AddDevice { name, kind, reply } => {
                let res = self.add_device(name, kind);
                self.reply(reply, res);
            }
            Command::SetDraining {
                name,
                draining,
                reply,
            } => {
                self.planner_devices = None;
                let res = match self.devices.get_mut(&name) {
                    None => Err(ApiError::not_found(
                        "device_not_found",
                        format!("no device named `{name}`"),
                    )),
                    Some(d) => {
                        d.row.draining = draining;
                        tracing::info!(device = %name, draining, "device drain changed");
                        let view = d.view();
                        self.pending.ops.push(Op::SetDraining {
                            name: name.clone(),
                            draining,
                        });
                        self.device_changed(&name);
                        Ok(view)
                    }
                };
                self.reply(reply, res);
            }
            Command::Connect {
                hello,
                outbound,
                seen,
                reply,
            } => {
                let res = self.connect(hello, outbound, seen);
                self.reply(reply, res);
            }
            Command::FromAgent { device, conn, msg } => {
                self.on_agent_msg(device, conn, msg).await?;
            }
            // A connection that cannot keep up is dropped like one that closed: its writer
            // ends once the last queued frame is gone, and the agent reconnects.
            Command::Disconnected {
                device,
                conn,
                silent,
            } => self.disconnected(&device, conn, silent),
            Command::Overflow { device, conn } => self.disconnected(&device, conn, false),
        }
        Ok(())
    }

    /// A device's connection ended. Its attempts wait out the grace window for it to come back
    /// and reattach them — unless it went `silent`, which took 2 heartbeat intervals already:
    /// then they are lost at once and placed elsewhere.
    fn disconnected(&mut self, device: &DeviceName, conn: ConnId, silent: bool) {
        self.planner_devices = None;
        let Some(d) = self.devices.get_mut(device) else {
            return;
        };
        if !d.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
            return;
        }
        let now = now_ms();
        d.conn = None;
        d.seen = None;
        d.row.last_seen_ms = Some(now);
        tracing::info!(device = %device, in_flight = d.running.len(), silent, "device disconnected");
        let running: Vec<AttemptId> = d.running.iter().cloned().collect();
        self.pending.ops.push(Op::TouchDevice {
            name: device.clone(),
            at_ms: now,
        });
        self.device_changed(device);
        if silent {
            let mut b = Batch::default();
            for id in running {
                Metrics::inc(&self.metrics.attempts_lost_total);
                let err = ErrorInfo::new(
                    "device_lost",
                    format!(
                        "device `{device}` sent nothing for 2 heartbeat intervals ({} s)",
                        2.0 * self.opts.heartbeat_interval.as_secs_f64()
                    ),
                );
                self.attempt_failed(&mut b, &id, AttemptStatus::Lost, err, None);
            }
            self.stage(b);
            return;
        }
        for id in &running {
            if let Some(live) = self.attempts.get_mut(id) {
                live.lost_since.get_or_insert(now);
            }
        }
        if !running.is_empty() {
            self.wake_at(now + millis(self.opts.lost_grace));
        }
    }

    /// Makes the engine check its deadlines at `at_ms` (besides its regular tick).
    fn wake_at(&mut self, at_ms: u64) {
        self.wake = Some(self.wake.map_or(at_ms, |w| w.min(at_ms)));
    }

    /// Notes that a device's view changed; it is broadcast once the current input is handled
    /// (and so after its changes are stored).
    fn device_changed(&mut self, name: &DeviceName) {
        if let Some(d) = self.devices.get(name) {
            self.free.set(
                name,
                d.online() && !d.row.draining,
                d.running.len(),
                d.row.max_concurrency,
            );
        }
        if self.device_events.receiver_count() > 0 {
            self.changed_devices.insert(name.clone());
        }
    }

    /// Adds the views of the devices that changed to the current group.
    fn stage_device_changes(&mut self) {
        for name in std::mem::take(&mut self.changed_devices) {
            if let Some(d) = self.devices.get(&name) {
                self.pending
                    .effects
                    .push(Effect::Device(Box::new(d.view())));
            }
        }
    }

    /// Adds `batch` to the current group's changes, numbering its events.
    fn stage(&mut self, batch: Batch) {
        let at_ms = now_ms();
        self.pending.ops.extend(batch.ops);
        for (request_id, kind) in batch.events {
            self.last_seq += 1;
            self.pending.events.push(Event {
                seq: self.last_seq,
                request_id,
                at_ms,
                kind,
            });
        }
    }

    /// Answers a caller once the current group is committed.
    fn reply<T: Send + 'static>(&mut self, to: oneshot::Sender<T>, value: T) {
        self.pending.effects.push(Effect::Reply(Box::new(move || {
            let _ = to.send(value);
        })));
    }

    /// Hands the current group to the committer, which commits it and then broadcasts its
    /// events and releases its replies and frames, in order. The engine goes on meanwhile.
    async fn flush(&mut self) -> Result<(), Error> {
        self.stage_device_changes();
        if self.pending.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.pending);
        self.committer
            .send(group)
            .await
            .map_err(|_| Error::EngineGone)
    }

    /// Waits until everything staged so far is committed: before the engine reads the store.
    async fn settle(&mut self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.pending.barrier = Some(tx);
        self.flush().await?;
        rx.await.map_err(|_| Error::EngineGone)
    }

    /// Ends a live attempt: updates its row, frees its device slot, forgets it.
    fn end_attempt(
        &mut self,
        b: &mut Batch,
        id: &AttemptId,
        status: AttemptStatus,
        error: Option<ErrorInfo>,
    ) -> Option<Live> {
        let live = self.attempts.remove(id)?;
        if let Some(d) = self.devices.get_mut(&live.device) {
            d.running.remove(id);
        }
        self.device_changed(&live.device);
        if live.uses_turns
            && let Some(req) = self.requests.get_mut(&live.request)
        {
            // Turns the attempt held but did not use go back to the pool.
            let used = live.turns_used.min(live.max_turns);
            req.turns.reserved = req.turns.reserved.saturating_sub(live.max_turns - used);
            req.turns.used += used;
            b.op(Op::UpdateTurns {
                id: live.request.clone(),
                turns: req.turns,
            });
        }
        b.op(Op::UpdateAttempt {
            id: id.clone(),
            status,
            ended_at_ms: Some(now_ms()),
            error,
        });
        Some(live)
    }

    /// An attempt failed: ends it, then either queues the task for another attempt after its
    /// backoff or, when the error is not retryable or the attempts are used up, fails the task.
    fn attempt_failed(
        &mut self,
        b: &mut Batch,
        id: &AttemptId,
        status: AttemptStatus,
        error: ErrorInfo,
        output: Option<TaskOutput>,
    ) {
        let Some(live) = self.end_attempt(b, id, status, Some(error.clone())) else {
            return;
        };
        let now = now_ms();
        let task_timeout = millis(self.opts.task_timeout);
        let Some(task) = self
            .requests
            .get(&live.request)
            .and_then(|r| r.graph.task(&live.task))
        else {
            return;
        };
        if task.sched.cancel_requested {
            self.task_ended(
                b,
                &live.request,
                &live.task,
                Ending {
                    status: TaskStatus::Cancelled,
                    output,
                    error: Some(ErrorInfo::new(
                        "cancelled",
                        format!("cancelled; the attempt ended with {}", error.code),
                    )),
                    attempt: Some((id.clone(), live.device)),
                },
            );
            return;
        }
        let used = task.attempts_used;
        // The device failed, not the task: the next attempt goes elsewhere without waiting.
        let delay = if retry_at_once(&error.code) {
            0
        } else {
            task.retry.backoff_ms(used, rand::random::<f64>())
        };
        let retry_at = now + delay;
        let out_of_time = task
            .sched
            .first_ready_ms
            .is_some_and(|t| retry_at >= t + task_timeout);
        if !task.retry.may_retry(&error.code, used) || out_of_time {
            let error = if task.retry.may_retry(&error.code, used) {
                ErrorInfo::new(
                    "task_timeout",
                    format!(
                        "no time left for another attempt; the last failed: {}",
                        error.message
                    ),
                )
            } else if used > 1 && !task.retry.non_retryable.contains(&error.code) {
                ErrorInfo::new(
                    error.code,
                    format!("{} (after {used} attempts)", error.message),
                )
            } else {
                error
            };
            self.task_ended(
                b,
                &live.request,
                &live.task,
                Ending {
                    status: TaskStatus::Failed,
                    output,
                    error: Some(error),
                    attempt: Some((id.clone(), live.device)),
                },
            );
            return;
        }
        let Some(req) = self.requests.get_mut(&live.request) else {
            return;
        };
        let Some(task) = req.graph.task_mut(&live.task) else {
            return;
        };
        task.sched.not_before_ms = retry_at;
        task.sched.avoid = device_related(&error.code).then(|| live.device.clone());
        task.ready_since_ms = retry_at;
        let m = Move {
            retrying: Some((id.clone(), used, retry_at)),
            ..Move::to(TaskStatus::Ready)
                .error(error.clone())
                .with_sched()
        };
        if req.move_task(b, &live.request, &live.task, m).is_err() {
            return;
        }
        Metrics::inc(&self.metrics.attempts_retried_total);
        tracing::info!(request = %live.request, task = %live.task, attempt = %id, code = %error.code,
            attempts = used, retry_in_ms = delay, "attempt failed; will retry");
    }

    // ---- scheduling ----------------------------------------------------------------------

    /// Dispatches every ready task whose backoff has passed and that has a capable device with
    /// a free slot; all dispatches of one pass are committed together, then sent.
    fn schedule(&mut self) {
        // Draining, or no device can take work: nothing to place.
        if self.drain_until.is_some() || self.free.is_empty() {
            return;
        }
        let now = now_ms();
        let mut wanted = Vec::new();
        for (rid, req) in &self.requests {
            for t in req.graph.ready() {
                if t.sched.not_before_ms <= now {
                    wanted.push((rid.clone(), t.id.clone()));
                }
            }
        }
        let mut b = Batch::default();
        let mut sends = Vec::new();
        for (rid, tid) in wanted {
            let Some(device) = self.place(&rid, &tid) else {
                continue;
            };
            if let Some(assign) = self.dispatch(&mut b, &rid, &tid, &device, now) {
                sends.push((device, assign));
            }
        }
        self.stage(b);
        for (device, assign) in sends {
            self.send(&device, assign);
        }
    }

    /// Picks the device for a task: online, not draining, with a free slot, matching the
    /// task's target and capabilities; a device to avoid (after a device-related failure) only
    /// if there is no other; then the least loaded.
    fn place(&self, rid: &RequestId, tid: &TaskId) -> Option<DeviceName> {
        let task = self.requests.get(rid)?.graph.task(tid)?;
        let capable = |d: &Device| {
            task.capabilities
                .iter()
                .all(|c| d.row.capabilities.contains(c))
        };
        if let TargetRow::Device(name) = &task.target {
            let d = self.devices.get(name)?;
            return (self.free.contains(name) && capable(d)).then(|| name.clone());
        }
        let mut avoided = None;
        for name in self.free.iter() {
            let Some(d) = self.devices.get(name) else {
                continue;
            };
            if let TargetRow::Kind(k) = &task.target
                && &d.row.kind != k
            {
                continue;
            }
            if !capable(d) {
                continue;
            }
            if task.sched.avoid.as_ref() == Some(name) {
                avoided = Some(name);
                continue;
            }
            return Some(name.clone());
        }
        avoided.cloned()
    }

    /// Records a new attempt of `tid` on `device` in `b`; returns the `assign` to send once
    /// `b` is committed.
    fn dispatch(
        &mut self,
        b: &mut Batch,
        rid: &RequestId,
        tid: &TaskId,
        device: &DeviceName,
        now: u64,
    ) -> Option<ServerMsg> {
        let req = self.requests.get(rid)?;
        let task = req.graph.task(tid)?;
        // References to upstream outputs are filled in now; the device gets plain values. A
        // task may refer to any task it depends on, directly or not.
        let refers = !weft_planner::refs::task_references(&task.instruction, task.action.as_ref())
            .is_ok_and(|r| r.is_empty());
        let outputs: BTreeMap<TaskId, TaskOutput> = if refers {
            req.graph
                .ancestors(tid)
                .iter()
                .filter_map(|a| Some((a.clone(), req.graph.task(a)?.output.clone()?)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let (instruction, action) =
            match weft_planner::refs::substitute(&task.instruction, task.action.as_ref(), &outputs)
            {
                Ok(v) => v,
                Err(e) => {
                    self.task_ended(
                        b,
                        rid,
                        tid,
                        Ending {
                            status: TaskStatus::Failed,
                            output: None,
                            error: Some(ErrorInfo::new("bad_reference", e)),
                            attempt: None,
                        },
                    );
                    return None;
                }
            };
        let inputs: BTreeMap<TaskId, TaskOutput> = req
            .graph
            .upstream_ids(tid)
            .into_iter()
            .filter_map(|u| {
                let output = req.graph.task(&u)?.output.clone()?;
                Some((u, output))
            })
            .collect();
        let req = self.requests.get_mut(rid)?;
        let uses_turns = req.graph.task(tid)?.uses_turns();
        let max_turns = if uses_turns {
            let left = req.turns.budget.saturating_sub(req.turns.reserved);
            if left == 0 {
                let budget = req.turns.budget;
                self.task_ended(
                    b,
                    rid,
                    tid,
                    Ending {
                        status: TaskStatus::Failed,
                        output: None,
                        error: Some(ErrorInfo::new(
                            "budget_exhausted",
                            format!("the request's turn budget of {budget} is spent"),
                        )),
                        attempt: None,
                    },
                );
                return None;
            }
            let r = req.graph.task(tid)?.max_turns.min(left);
            req.turns.reserved += r;
            b.op(Op::UpdateTurns {
                id: rid.clone(),
                turns: req.turns,
            });
            r
        } else {
            1
        };
        let deadline_ms = now + millis(self.opts.attempt_timeout);
        let attempt_id = AttemptId(uuid::Uuid::now_v7().to_string());
        let m = Move::to(TaskStatus::Dispatched).on(attempt_id.clone(), device.clone());
        req.move_task(b, rid, tid, m).ok()?;
        let task = req.graph.task_mut(tid)?;
        task.attempt = Some(attempt_id.clone());
        task.attempts_used += 1;
        let assign = ServerMsg::Assign {
            attempt_id: attempt_id.clone(),
            request_id: rid.clone(),
            task_id: tid.clone(),
            title: task.title.clone(),
            instruction,
            action,
            inputs,
            deadline_ms,
            max_turns,
        };
        b.op(Op::InsertAttempt {
            id: attempt_id.clone(),
            request_id: rid.clone(),
            task_id: tid.clone(),
            device: device.clone(),
            at_ms: now,
            deadline_ms,
            max_turns,
        });
        self.attempts.insert(
            attempt_id.clone(),
            Live {
                request: rid.clone(),
                task: tid.clone(),
                device: device.clone(),
                status: AttemptStatus::Dispatched,
                deadline_ms,
                lost_since: None,
                uses_turns,
                max_turns,
                turns_used: 0,
            },
        );
        if let Some(d) = self.devices.get_mut(device) {
            d.running.insert(attempt_id.clone());
        }
        self.device_changed(device);
        Metrics::inc(&self.metrics.attempts_dispatched_total);
        tracing::debug!(request = %rid, task = %tid, device = %device, attempt = %attempt_id, "dispatched");
        Some(assign)
    }

    /// Sends a frame to a device's current connection once the current group is committed.
    /// A connection whose queue is full is dropped (its writer ends, the socket closes, the
    /// agent reconnects).
    fn send(&mut self, device: &DeviceName, msg: ServerMsg) {
        let Some((conn, tx)) = self.devices.get(device).and_then(|d| d.conn.as_ref()) else {
            return;
        };
        self.pending.effects.push(Effect::Frame {
            device: device.clone(),
            conn: *conn,
            tx: tx.clone(),
            msg: Box::new(msg),
        });
    }

    // ---- devices -------------------------------------------------------------------------

    fn add_device(&mut self, name: DeviceName, kind: String) -> Result<DeviceCreated, ApiError> {
        self.planner_devices = None;
        if !weft_protocol::ids::valid_device_name(name.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_device_name",
                "device names are 1-64 letters, digits, '-' or '_', starting with a letter or digit",
            ));
        }
        if kind.is_empty()
            || kind.len() > 32
            || !kind
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            return Err(ApiError::bad_request(
                "invalid_device_kind",
                "a device kind is a plain lowercase word such as laptop, phone or server",
            ));
        }
        if self.devices.contains_key(&name) {
            return Err(ApiError::conflict(
                "device_exists",
                format!("a device named `{name}` is already registered"),
            ));
        }
        let tok = token::generate();
        let row = DeviceRow {
            name: name.clone(),
            kind: kind.clone(),
            token_hash: token::hash(&tok),
            platform: None,
            os_version: None,
            capabilities: Vec::new(),
            tools: Vec::new(),
            max_concurrency: 1,
            created_at_ms: now_ms(),
            last_seen_ms: None,
            draining: false,
        };
        self.pending.ops.push(Op::InsertDevice(row.clone()));
        tracing::info!(device = %name, kind = %kind, "device registered");
        self.device_changed(&name);
        self.devices.insert(
            name.clone(),
            Device {
                row,
                conn: None,
                seen: None,
                running: BTreeSet::new(),
            },
        );
        Ok(DeviceCreated {
            name,
            kind,
            token: tok,
        })
    }

    fn connect(
        &mut self,
        hello: Hello,
        outbound: Outbound,
        seen: super::LastSeen,
    ) -> Result<(ConnId, ServerMsg), ErrorInfo> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(ErrorInfo::new(
                "unsupported_version",
                format!(
                    "this orchestrator speaks protocol version {PROTOCOL_VERSION}, the agent sent {}",
                    hello.protocol_version
                ),
            ));
        }
        let Some(dev) = self.devices.get_mut(&hello.device) else {
            tracing::warn!(device = %hello.device, "hello for an unknown device");
            return Err(bad_token());
        };
        if !token::matches(&hello.token, &dev.row.token_hash) {
            tracing::warn!(device = %hello.device, "hello with a wrong token");
            return Err(bad_token());
        }
        if dev.conn.is_some() {
            return Err(ErrorInfo::new(
                "already_connected",
                format!("device `{}` already has a live connection", hello.device),
            ));
        }
        if hello.kind != dev.row.kind {
            tracing::info!(device = %hello.device, registered = %dev.row.kind, stated = %hello.kind,
                "agent states a different kind than registered; keeping the registered kind");
        }
        self.planner_devices = None;
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let now = now_ms();
        dev.row.platform = Some(hello.platform.clone());
        dev.row.capabilities = hello.capabilities.clone();
        dev.row.os_version.clone_from(&hello.os_version);
        dev.row.tools.clone_from(&hello.tools);
        dev.row.max_concurrency = hello.max_concurrency.clamp(1, MAX_DEVICE_CONCURRENCY);
        dev.row.last_seen_ms = Some(now);
        dev.conn = Some((conn, outbound));
        dev.seen = Some(seen);
        self.pending
            .ops
            .push(Op::UpdateDeviceProfile(dev.row.clone()));

        // Reconcile attempts this device held before: reattach the ones it still has; the rest
        // are lost and tried again.
        let held: BTreeSet<&AttemptId> = hello.held_attempts.iter().collect();
        let (reattached, lost): (Vec<AttemptId>, Vec<AttemptId>) = dev
            .running
            .iter()
            .cloned()
            .partition(|id| held.contains(id));
        for id in &reattached {
            if let Some(live) = self.attempts.get_mut(id) {
                live.lost_since = None;
                Metrics::inc(&self.metrics.attempts_reattached_total);
            }
        }

        let mut b = Batch::default();
        for id in lost {
            tracing::warn!(attempt = %id, device = %hello.device, "device came back without the attempt");
            Metrics::inc(&self.metrics.attempts_lost_total);
            let err = ErrorInfo::new(
                "device_lost",
                format!("device `{}` reconnected without this attempt", hello.device),
            );
            self.attempt_failed(&mut b, &id, AttemptStatus::Lost, err, None);
        }
        self.stage(b);
        self.device_changed(&hello.device);
        tracing::info!(device = %hello.device, platform = %hello.platform,
            capabilities = ?hello.capabilities, reattached = reattached.len(), "device connected");
        Ok((
            conn,
            ServerMsg::Welcome {
                protocol_version: PROTOCOL_VERSION,
                device: hello.device,
                heartbeat_interval_ms: millis(self.opts.heartbeat_interval),
                reattached,
            },
        ))
    }

    // ---- agent messages ------------------------------------------------------------------

    async fn on_agent_msg(
        &mut self,
        device: DeviceName,
        conn: ConnId,
        msg: AgentMsg,
    ) -> Result<(), Error> {
        let Some(d) = self.devices.get_mut(&device) else {
            return Ok(());
        };
        if !d.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
            // A message from a connection that has since been replaced or dropped.
            return Ok(());
        }
        d.row.last_seen_ms = Some(now_ms());
        match msg {
            AgentMsg::Heartbeat {} => {}
            AgentMsg::Hello { .. } => {
                self.send(
                    &device,
                    ServerMsg::Error {
                        error: ErrorInfo::new(
                            "bad_frame",
                            "hello is only valid as the first frame",
                        ),
                    },
                );
            }
            AgentMsg::Accept { attempt_id } => {
                let Some(live) = self.owned(&device, &attempt_id) else {
                    return self.refuse_foreign(&device, &attempt_id, "accept").await;
                };
                if live.status != AttemptStatus::Dispatched {
                    return Ok(());
                }
                if let Some(l) = self.attempts.get_mut(&attempt_id) {
                    l.status = AttemptStatus::Running;
                }
                let Some(req) = self.requests.get_mut(&live.request) else {
                    return Ok(());
                };
                let mut b = Batch::default();
                let m = Move::to(TaskStatus::Running).on(attempt_id.clone(), device.clone());
                if req.move_task(&mut b, &live.request, &live.task, m).is_ok() {
                    b.op(Op::UpdateAttempt {
                        id: attempt_id.clone(),
                        status: AttemptStatus::Running,
                        ended_at_ms: None,
                        error: None,
                    });
                    self.stage(b);
                }
            }
            AgentMsg::Reject { attempt_id, error } => {
                let Some(live) = self.owned(&device, &attempt_id) else {
                    return self.refuse_foreign(&device, &attempt_id, "reject").await;
                };
                let mut b = Batch::default();
                if error.code == "busy" && !self.cancel_requested(&live) {
                    // The device is full after all: the task goes back to the queue, briefly
                    // held back, and the refusal does not count as an attempt.
                    if let Some(live) =
                        self.end_attempt(&mut b, &attempt_id, AttemptStatus::Rejected, Some(error))
                        && let Some(r) = self.requests.get_mut(&live.request)
                        && let Some(t) = r.graph.task_mut(&live.task)
                    {
                        t.attempts_used = t.attempts_used.saturating_sub(1);
                        t.sched.not_before_ms = now_ms() + BUSY_BACKOFF_MS;
                        let m = Move::to(TaskStatus::Ready).with_sched();
                        let _ = r.move_task(&mut b, &live.request, &live.task, m);
                    }
                } else {
                    self.attempt_failed(&mut b, &attempt_id, AttemptStatus::Rejected, error, None);
                }
                self.stage(b);
            }
            AgentMsg::Progress {
                attempt_id,
                message,
                turns_used,
            } => {
                let Some(live) = self.owned(&device, &attempt_id) else {
                    return self.refuse_foreign(&device, &attempt_id, "progress").await;
                };
                let mut b = Batch::default();
                if let Some(used) = turns_used
                    && let Some(l) = self.attempts.get_mut(&attempt_id)
                {
                    l.turns_used = l.turns_used.max(used);
                    b.op(Op::UpdateAttemptTurns {
                        id: attempt_id.clone(),
                        max_turns: l.max_turns,
                        turns_used: l.turns_used,
                    });
                }
                b.event(
                    &live.request,
                    EventKind::TaskProgress {
                        task_id: live.task.clone(),
                        attempt_id,
                        message: truncate(message, 4096),
                        turns_used,
                    },
                );
                self.stage(b);
            }
            AgentMsg::ExtendTurns { attempt_id, turns } => {
                if self.owned(&device, &attempt_id).is_none() {
                    return self
                        .refuse_foreign(&device, &attempt_id, "extend_turns")
                        .await;
                }
                let mut b = Batch::default();
                let reply = self.extend_turns(&mut b, &attempt_id, turns);
                self.stage(b);
                if let Some(reply) = reply {
                    self.send(&device, reply);
                }
            }
            AgentMsg::Result {
                attempt_id,
                status,
                output,
                error,
            } => {
                let Some(live) = self.owned(&device, &attempt_id) else {
                    // Not live: a second copy of a result already applied, or a late result of
                    // an attempt that timed out or was lost (recorded, not applied; acked so
                    // the agent's outbox drains), or a frame about someone else's attempt.
                    // The store is read only after what the engine changed is in it.
                    self.settle().await?;
                    return match self.store.attempt_device(&attempt_id).await? {
                        Some(owner) if owner == device => {
                            tracing::info!(attempt = %attempt_id, "duplicate or late result; recorded, not applied");
                            Metrics::inc(&self.metrics.results_duplicate_total);
                            let mut b = Batch::default();
                            b.op(Op::RecordLateResult {
                                id: attempt_id.clone(),
                                result: LateResult {
                                    status,
                                    output,
                                    error,
                                    at_ms: now_ms(),
                                },
                            });
                            self.stage(b);
                            self.send(&device, ServerMsg::Ack { attempt_id });
                            Ok(())
                        }
                        _ => self.refuse_foreign(&device, &attempt_id, "result").await,
                    };
                };
                if status != ResultStatus::Cancelled && self.cancel_requested(&live) {
                    // The cancel was committed first, and a cancel wins: the result is recorded
                    // on the attempt as late, never applied.
                    let mut b = Batch::default();
                    let late = LateResult {
                        status,
                        output,
                        error,
                        at_ms: now_ms(),
                    };
                    self.cancel_won(&mut b, &attempt_id, late);
                    self.stage(b);
                    self.send(&device, ServerMsg::Ack { attempt_id });
                    return Ok(());
                }
                let error = match (status, error) {
                    (ResultStatus::Succeeded, _) => None,
                    (_, Some(e)) => Some(e),
                    (_, None) => Some(ErrorInfo::new("failed", "the device reported failure")),
                };
                let mut b = Batch::default();
                match status {
                    ResultStatus::Failed => self.attempt_failed(
                        &mut b,
                        &attempt_id,
                        AttemptStatus::Failed,
                        error.unwrap_or_else(|| ErrorInfo::new("failed", "failed")),
                        Some(output),
                    ),
                    ResultStatus::Succeeded | ResultStatus::Cancelled => {
                        let (attempt_status, task_status) = if status == ResultStatus::Succeeded {
                            (AttemptStatus::Succeeded, TaskStatus::Succeeded)
                        } else {
                            (AttemptStatus::Cancelled, TaskStatus::Cancelled)
                        };
                        self.end_attempt(&mut b, &attempt_id, attempt_status, error.clone());
                        self.task_ended(
                            &mut b,
                            &live.request,
                            &live.task,
                            Ending {
                                status: task_status,
                                output: Some(output),
                                error,
                                attempt: Some((attempt_id.clone(), device.clone())),
                            },
                        );
                    }
                }
                self.stage(b);
                self.send(&device, ServerMsg::Ack { attempt_id });
            }
        }
        Ok(())
    }

    /// Whether a cancel of the attempt's task has been asked for (and so is committed before
    /// anything the engine does next).
    fn cancel_requested(&self, live: &Live) -> bool {
        self.requests
            .get(&live.request)
            .and_then(|r| r.graph.task(&live.task))
            .is_some_and(|t| t.sched.cancel_requested)
    }

    /// A result that came after its task's cancel: the attempt ends `cancelled` with the
    /// result recorded as late, and the task ends `cancelled` without its output.
    fn cancel_won(&mut self, b: &mut Batch, id: &AttemptId, late: LateResult) {
        let error = ErrorInfo::new(
            "cancelled",
            "cancelled; the device's result came after the cancel and was not applied",
        );
        let Some(live) = self.end_attempt(b, id, AttemptStatus::Cancelled, Some(error.clone()))
        else {
            return;
        };
        b.op(Op::RecordLateResult {
            id: id.clone(),
            result: late,
        });
        self.task_ended(
            b,
            &live.request,
            &live.task,
            Ending {
                status: TaskStatus::Cancelled,
                output: None,
                error: Some(error),
                attempt: Some((id.clone(), live.device)),
            },
        );
    }

    /// The live attempt `id` if `device` holds it.
    fn owned(&self, device: &DeviceName, id: &AttemptId) -> Option<Live> {
        self.attempts
            .get(id)
            .filter(|l| &l.device == device)
            .cloned()
    }

    async fn refuse_foreign(
        &mut self,
        device: &DeviceName,
        id: &AttemptId,
        what: &str,
    ) -> Result<(), Error> {
        Metrics::inc(&self.metrics.frames_refused_total);
        tracing::warn!(device = %device, attempt = %id, frame = what,
            "refused a frame about an attempt this device does not hold");
        self.send(
            device,
            ServerMsg::Error {
                error: ErrorInfo::new(
                    "not_your_attempt",
                    format!("attempt {id} is not held by device `{device}`"),
                ),
            },
        );
        Ok(())
    }

    // ---- timers --------------------------------------------------------------------------

    /// Deadlines: attempts past their deadline, attempts of devices gone longer than the grace
    /// window, tasks past their overall timeout, ready tasks no device took in time.
    fn on_tick(&mut self) {
        let now = now_ms();
        let mut b = Batch::default();
        let grace = millis(self.opts.lost_grace);
        let mut overdue = Vec::new();
        let mut lost = Vec::new();
        for (id, l) in &self.attempts {
            if l.deadline_ms <= now {
                overdue.push(id.clone());
            } else if l.lost_since.is_some_and(|t| t + grace <= now) {
                lost.push(id.clone());
            }
        }
        for id in overdue {
            let Some(live) = self.attempts.get(&id) else {
                continue;
            };
            tracing::warn!(attempt = %id, device = %live.device, "attempt timed out; telling the device to stop");
            Metrics::inc(&self.metrics.attempts_timed_out_total);
            let device = live.device.clone();
            self.send(
                &device,
                ServerMsg::Cancel {
                    attempt_id: id.clone(),
                    reason: "the attempt passed its deadline".into(),
                },
            );
            let err = ErrorInfo::new(
                "timeout",
                format!(
                    "the attempt did not finish within {} s",
                    self.opts.attempt_timeout.as_secs_f64()
                ),
            );
            self.attempt_failed(&mut b, &id, AttemptStatus::TimedOut, err, None);
        }
        for id in lost {
            let Some(live) = self.attempts.get(&id) else {
                continue;
            };
            tracing::warn!(attempt = %id, device = %live.device, "device did not come back in time; attempt lost");
            Metrics::inc(&self.metrics.attempts_lost_total);
            let err = ErrorInfo::new(
                "device_lost",
                format!(
                    "device `{}` was gone longer than the {} s grace window",
                    live.device,
                    self.opts.lost_grace.as_secs_f64()
                ),
            );
            self.attempt_failed(&mut b, &id, AttemptStatus::Lost, err, None);
        }

        let task_ms = millis(self.opts.task_timeout);
        let queue_ms = millis(self.opts.queue_timeout);
        let mut expired = Vec::new();
        for (rid, req) in &self.requests {
            for t in req.graph.tasks() {
                if t.status().is_terminal() {
                    continue;
                }
                if t.sched.first_ready_ms.is_some_and(|f| f + task_ms <= now) {
                    let err = ErrorInfo::new(
                        "task_timeout",
                        format!(
                            "the task did not finish within {} s over {} attempt(s)",
                            self.opts.task_timeout.as_secs_f64(),
                            t.attempts_used
                        ),
                    );
                    expired.push((rid.clone(), t.id.clone(), t.attempt.clone(), err));
                } else if t.status() == TaskStatus::Ready
                    && t.sched.not_before_ms <= now
                    && now.saturating_sub(t.ready_since_ms) >= queue_ms
                {
                    let err = ErrorInfo::new(
                        "no_device",
                        format!(
                            "no online device that {} had a free slot within {} s",
                            describe_target(&t.target, &t.capabilities),
                            self.opts.queue_timeout.as_secs_f64()
                        ),
                    );
                    expired.push((rid.clone(), t.id.clone(), None, err));
                }
            }
        }
        for (rid, tid, attempt, err) in expired {
            let mut device = None;
            if let Some(id) = attempt
                && let Some(live) =
                    self.end_attempt(&mut b, &id, AttemptStatus::Cancelled, Some(err.clone()))
            {
                self.send(
                    &live.device,
                    ServerMsg::Cancel {
                        attempt_id: id.clone(),
                        reason: "the task passed its overall timeout".into(),
                    },
                );
                device = Some((id, live.device));
            }
            self.task_ended(
                &mut b,
                &rid,
                &tid,
                Ending {
                    status: TaskStatus::Failed,
                    output: None,
                    error: Some(err),
                    attempt: device,
                },
            );
        }
        self.stage(b);
    }

    /// A request for more turns: grants what the request's pool still has, up to `asked`.
    /// Returns the `turns` answer to send once `b` is committed.
    fn extend_turns(&mut self, b: &mut Batch, id: &AttemptId, asked: u32) -> Option<ServerMsg> {
        let live = self.attempts.get_mut(id)?;
        let req = self.requests.get_mut(&live.request)?;
        let left = req.turns.budget.saturating_sub(req.turns.reserved);
        let granted = if live.uses_turns { asked.min(left) } else { 0 };
        if granted == 0 {
            req.turns.extensions_refused += 1;
        } else {
            req.turns.reserved += granted;
            req.turns.extensions_granted += granted;
            live.max_turns += granted;
        }
        tracing::info!(attempt = %id, asked, granted, pool_left = left - granted, "turn extension");
        b.op(Op::UpdateTurns {
            id: live.request.clone(),
            turns: req.turns,
        });
        b.op(Op::UpdateAttemptTurns {
            id: id.clone(),
            max_turns: live.max_turns,
            turns_used: live.turns_used,
        });
        b.event(
            &live.request,
            EventKind::TurnsExtended {
                task_id: live.task.clone(),
                attempt_id: id.clone(),
                asked,
                granted,
                max_turns: live.max_turns,
                pool_left: left - granted,
            },
        );
        Some(ServerMsg::Turns {
            attempt_id: id.clone(),
            granted,
            max_turns: live.max_turns,
        })
    }

    // ---- recovery ------------------------------------------------------------------------

    /// Rebuilds every unfinished request from the store after a restart. Attempts that were in
    /// flight wait for their device as if it had just disconnected: reattached if it comes
    /// back holding them within the grace window, tried again otherwise.
    async fn resume(&mut self) -> Result<(), Error> {
        let now = now_ms();
        let live = self.store.load_live().await?;
        let mut b = Batch::default();
        let (mut requests, mut attempts) = (0, 0);
        for row in live {
            let mut graph = Graph::from_rows(row.tasks, &row.edges, now)
                .map_err(|e| Error::Corrupt(format!("request {}: {e}", row.id)))?;
            for (task, used) in &row.attempts_used {
                if let Some(t) = graph.task_mut(task) {
                    t.attempts_used = *used;
                }
            }
            for a in row.in_flight {
                let known = graph.task(&a.task_id).is_some_and(|t| {
                    matches!(t.status(), TaskStatus::Dispatched | TaskStatus::Running)
                }) && self.devices.contains_key(&a.device);
                if !known {
                    return Err(Error::Corrupt(format!(
                        "attempt {} is in flight for task {} which is not",
                        a.id, a.task_id
                    )));
                }
                if let Some(t) = graph.task_mut(&a.task_id) {
                    t.attempt = Some(a.id.clone());
                }
                if let Some(d) = self.devices.get_mut(&a.device) {
                    d.running.insert(a.id.clone());
                }
                let uses_turns = graph.task(&a.task_id).is_some_and(|t| t.uses_turns());
                self.attempts.insert(
                    a.id,
                    Live {
                        request: row.id.clone(),
                        task: a.task_id,
                        device: a.device,
                        status: a.status,
                        deadline_ms: a.deadline_ms,
                        lost_since: Some(now),
                        uses_turns,
                        max_turns: a.max_turns,
                        turns_used: a.turns_used,
                    },
                );
                attempts += 1;
            }
            requests += 1;
            self.requests.insert(
                row.id.clone(),
                Request {
                    graph,
                    version: row.version,
                    cancelling: row.cancel_requested,
                    turns: row.turns,
                },
            );
            // A request whose every task ended but that was not closed cannot occur (both are
            // written in one transaction); settle it anyway rather than leave it running.
            if let Some(outcome) = self.requests[&row.id].graph.outcome() {
                self.requests.remove(&row.id);
                b.op(Op::UpdateRequest {
                    id: row.id.clone(),
                    status: outcome,
                    error: None,
                    at_ms: now,
                });
                b.event(
                    &row.id,
                    EventKind::RequestStatus {
                        status: outcome,
                        error: None,
                    },
                );
            }
        }
        self.stage(b);
        self.flush().await?;
        if attempts > 0 {
            self.wake_at(now + millis(self.opts.lost_grace));
        }
        if requests > 0 {
            tracing::info!(
                requests,
                in_flight = attempts,
                "resumed unfinished requests"
            );
        }
        Ok(())
    }
}

fn bad_token() -> ErrorInfo {
    ErrorInfo::new("bad_token", "unknown device or wrong token")
}

fn task_event(task: &TaskId, status: TaskStatus) -> EventKind {
    EventKind::TaskStatus {
        task_id: task.clone(),
        status,
        attempt_id: None,
        device: None,
        output: None,
        error: None,
    }
}

/// Failures where the device stopped, not the task: retried without a backoff.
fn retry_at_once(code: &str) -> bool {
    matches!(code, "device_lost" | "agent_stopping")
}

/// Failures that say more about the device than the task: the next attempt should go
/// elsewhere if it can.
fn device_related(code: &str) -> bool {
    matches!(
        code,
        "device_lost" | "timeout" | "agent_stopping" | "spawn_failed" | "workdir_unavailable"
    )
}

fn describe_target(target: &TargetRow, caps: &[String]) -> String {
    let who = match target {
        TargetRow::Device(d) => format!("is `{d}`"),
        TargetRow::Kind(k) => format!("is a {k}"),
        TargetRow::Any => "exists".to_owned(),
    };
    if caps.is_empty() {
        who
    } else {
        format!("{who} with capabilities [{}]", caps.join(", "))
    }
}

async fn sleep_until_ms(at_ms: u64) {
    tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
