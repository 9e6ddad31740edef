//! The reviser: after a task of a request planned by a revising planner (the LLM planner) ends,
//! asks the planner whether the graph should change, and submits its ops through the engine's
//! one edit path ([`Handle::edit`]), exactly like a REST edit.
//!
//! Shape: one task subscribed to the committed events, holding a queue of "task ended"
//! triggers per request; each revision runs in a task of its own, at most one per request at a
//! time, in order. Neither the engine loop nor this loop ever waits for the model.
//!
//! Each revision is shown the graph as the journal had it right after the triggering event
//! (`Graph::replay` up to that event), not as it is by the time the model is asked, so the same
//! run gives the same prompts (which is what cassettes need). The edit is made against that
//! snapshot's version; on a version conflict (someone edited since) the same ops are tried
//! once more against the current version. If the engine refuses the ops
//! (`engine::Error::Refused`), the planner is asked once more, shown the refusal, in a further
//! round. Rounds per request are
//! capped ([`ReviserOptions::max_rounds`]) and counted in the LLM log, so the cap holds across
//! restarts. A failed revision is logged and changes nothing: the graph runs on as planned.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weft_planner::{CallLog, GraphState, Planner, Refusal, ReviseInput, Revision, TaskState};
use weft_protocol::rest::{EditBatch, EditOp, Event, EventKind};
use weft_protocol::{RequestId, TaskId, TaskStatus};

use crate::Error;
use crate::engine::{self, Graph, Handle, TaskDefaults};
use crate::store::Store;

/// How the reviser works.
#[derive(Debug, Clone)]
pub struct ReviserOptions {
    /// Revision rounds per request; 0 turns revisions off.
    pub max_rounds: u32,
    /// Task defaults, for rebuilding graphs from the journal.
    pub defaults: TaskDefaults,
}

/// Starts the reviser if `planner` revises and rounds are allowed; it stops when `shutdown` is
/// cancelled, abandoning revisions in flight.
pub fn spawn(
    engine: Handle,
    store: Store,
    planner: Arc<dyn Planner>,
    opts: ReviserOptions,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !planner.revises() || opts.max_rounds == 0 {
        return None;
    }
    let events = engine.subscribe();
    let reviser = Reviser {
        ctx: Arc::new(Ctx {
            engine,
            store,
            planner,
            opts,
        }),
        queues: HashMap::new(),
        busy: HashSet::new(),
        ours: HashMap::new(),
        jobs: JoinSet::new(),
        job_requests: HashMap::new(),
    };
    Some(tokio::spawn(reviser.run(events, shutdown)))
}

#[derive(Debug)]
struct Ctx {
    engine: Handle,
    store: Store,
    planner: Arc<dyn Planner>,
    opts: ReviserOptions,
}

/// A task that ended: the event's position in the journal and the task.
#[derive(Debug, Clone)]
struct Trigger {
    seq: u64,
    task: TaskId,
}

#[derive(Debug)]
struct Reviser {
    ctx: Arc<Ctx>,
    /// Triggers not yet handled, per request, in order.
    queues: HashMap<RequestId, VecDeque<Trigger>>,
    /// Requests with a revision in flight.
    busy: HashSet<RequestId>,
    /// Whether a live request was planned by this planner (cached).
    ours: HashMap<RequestId, bool>,
    jobs: JoinSet<()>,
    job_requests: HashMap<tokio::task::Id, RequestId>,
}

impl Reviser {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<Arc<Event>>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(ev) => self.on_event(ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(
                        missed = n,
                        "the reviser fell behind the event stream; some task endings will not be revised"
                    ),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(done) = self.jobs.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "a revision task failed");
                            e.id()
                        }
                    };
                    if let Some(request) = self.job_requests.remove(&id) {
                        self.busy.remove(&request);
                        self.start_next(&request);
                    }
                }
            }
        }
        self.jobs.shutdown().await;
    }

    async fn on_event(&mut self, ev: Arc<Event>) {
        match &ev.kind {
            EventKind::TaskStatus {
                task_id,
                status: TaskStatus::Succeeded | TaskStatus::Failed,
                ..
            } => {
                if !self.is_ours(&ev.request_id).await {
                    return;
                }
                self.queues
                    .entry(ev.request_id.clone())
                    .or_default()
                    .push_back(Trigger {
                        seq: ev.seq,
                        task: task_id.clone(),
                    });
                self.start_next(&ev.request_id);
            }
            EventKind::RequestStatus { status, .. } if status.is_terminal() => {
                self.queues.remove(&ev.request_id);
                self.ours.remove(&ev.request_id);
            }
            _ => {}
        }
    }

    /// Whether `request` was planned by this reviser's planner.
    async fn is_ours(&mut self, request: &RequestId) -> bool {
        if let Some(&ours) = self.ours.get(request) {
            return ours;
        }
        let ours = match self.ctx.store.planner_of(request).await {
            Ok(p) => p.as_deref() == Some(self.ctx.planner.name()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the request's planner");
                return false;
            }
        };
        self.ours.insert(request.clone(), ours);
        ours
    }

    /// Starts the request's next revision unless one is in flight.
    fn start_next(&mut self, request: &RequestId) {
        if self.busy.contains(request) {
            return;
        }
        let Some(queue) = self.queues.get_mut(request) else {
            return;
        };
        let Some(trigger) = queue.pop_front() else {
            self.queues.remove(request);
            return;
        };
        let ctx = self.ctx.clone();
        let id = request.clone();
        let handle = self.jobs.spawn(async move {
            if let Err(e) = revise(&ctx, &id, &trigger).await {
                tracing::warn!(request = %id, error = %e, "revision failed");
            }
        });
        self.job_requests.insert(handle.id(), request.clone());
        self.busy.insert(request.clone());
    }
}

/// One revision: snapshot, ask, apply (with one correction round if the engine refuses).
async fn revise(ctx: &Ctx, id: &RequestId, trigger: &Trigger) -> Result<(), Error> {
    let max_rounds = ctx.opts.max_rounds;
    let used = ctx.store.revision_rounds_used(id).await?;
    if used >= max_rounds {
        tracing::debug!(request = %id, used, "revision rounds used up");
        return Ok(());
    }
    let events = ctx.store.events_after(id, 0).await?;
    if finished(&events) {
        return Ok(());
    }
    let Some((text, mut graph)) = snapshot(&events, trigger.seq, &ctx.opts.defaults) else {
        return Ok(());
    };
    if graph.tasks.iter().all(|t| t.status.is_terminal()) {
        // The request ended with that task: there is nothing left to change.
        return Ok(());
    }
    let devices = ctx.engine.planner_devices().await?;
    let mut round = used + 1;
    let mut refused: Option<Refusal> = None;
    loop {
        let calls = CallLog::default();
        let input = ReviseInput {
            text: &text,
            graph: &graph,
            ended: &trigger.task,
            devices: &devices,
            round,
            max_rounds,
            refused: refused.as_ref(),
            calls: &calls,
        };
        let answer = ctx.planner.revise(input).await;
        ctx.store.record_llm_calls(Some(id), calls.take()).await;
        let (ops, reason, answer) = match answer {
            Ok(Revision::Finish { reason }) => {
                tracing::info!(request = %id, round, reason, "revision: no change");
                return Ok(());
            }
            Ok(Revision::Edit {
                ops,
                reason,
                answer,
            }) => (ops, reason, answer),
            Err(e) => {
                tracing::warn!(request = %id, round, code = e.code(), error = %e, "the planner could not revise");
                return Ok(());
            }
        };
        match apply(ctx, id, graph.version, ops).await {
            Ok(version) => {
                tracing::info!(request = %id, round, version, reason, "graph revised");
                return Ok(());
            }
            Err(engine::Error::Refused(e)) if refused.is_none() && round < max_rounds => {
                tracing::info!(request = %id, round, code = e.code, message = %e.message, "revision refused; asking for a correction");
                refused = Some(Refusal {
                    answer,
                    code: e.code.to_owned(),
                    message: e.message,
                });
                round += 1;
                let events = ctx.store.events_after(id, 0).await?;
                if finished(&events) {
                    return Ok(());
                }
                match snapshot(&events, u64::MAX, &ctx.opts.defaults) {
                    Some((_, now)) => graph = now,
                    None => return Ok(()),
                }
            }
            Err(e) => {
                tracing::info!(request = %id, round, code = e.code(), message = %e, "revision not applied");
                return Ok(());
            }
        }
    }
}

/// Submits `ops` made against `version`; on a version conflict, once more against the current
/// version.
async fn apply(
    ctx: &Ctx,
    id: &RequestId,
    version: u64,
    ops: Vec<EditOp>,
) -> Result<u64, engine::Error> {
    let first = ctx
        .engine
        .edit(
            id.clone(),
            EditBatch {
                expected_version: version,
                ops: ops.clone(),
            },
        )
        .await;
    match first {
        Err(engine::Error::VersionConflict { current, .. }) => {
            ctx.engine
                .edit(
                    id.clone(),
                    EditBatch {
                        expected_version: current,
                        ops,
                    },
                )
                .await
        }
        other => other,
    }
}

fn finished(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::RequestStatus { status, .. } if status.is_terminal()))
}

/// The request's text and graph as of journal position `upto` (inclusive).
fn snapshot(events: &[Event], upto: u64, defaults: &TaskDefaults) -> Option<(String, GraphState)> {
    let events: Vec<&Event> = events.iter().filter(|e| e.seq <= upto).collect();
    let text = events.iter().find_map(|e| match &e.kind {
        EventKind::RequestCreated { text, .. } => Some(text.clone()),
        _ => None,
    })?;
    let graph = match Graph::replay(events.iter().map(|e| &e.kind), defaults) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot rebuild the graph from its journal");
            return None;
        }
    };
    let mut version = 1;
    let mut errors = HashMap::new();
    let mut ran_on = HashMap::new();
    for e in &events {
        match &e.kind {
            EventKind::GraphEdited { version: v, .. } => version = *v,
            EventKind::TaskStatus {
                task_id,
                error,
                device,
                ..
            } => {
                errors.insert(task_id.clone(), error.clone());
                if let Some(d) = device {
                    ran_on.insert(task_id.clone(), d.clone());
                }
            }
            _ => {}
        }
    }
    let tasks = graph
        .tasks()
        .map(|t| TaskState {
            spec: t.spec(),
            status: t.status(),
            device: ran_on.get(&t.id).cloned(),
            output: t.output.clone(),
            error: errors.get(&t.id).cloned().flatten(),
        })
        .collect();
    Some((
        text,
        GraphState {
            version,
            tasks,
            edges: graph.edges(),
        },
    ))
}
