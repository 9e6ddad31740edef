//! The engine's request lifecycle: create, settle after a task ends, finish, edit, cancel.

use weft_protocol::rest::{EditBatch, EditOp, EventKind, RequestView, TaskView, TurnsView};
use weft_protocol::{
    AttemptId, ErrorInfo, RequestId, RequestStatus, ServerMsg, TaskId, TaskStatus,
};

use super::status::Move;
use super::{Ending, Engine, Request, task_event};
use crate::engine::Planned;
use crate::engine::edit::EditCtx;
use crate::engine::graph::{Graph, TaskDefaults};
use crate::metrics::Metrics;
use crate::store::{Batch, Op};
use crate::{Error, engine};

/// How long a running attempt has to confirm a cancel before it is given up on.
const CANCEL_GRACE_MS: u64 = 10_000;

impl Engine {
    /// Creates a request (committed with the rest of the current group).
    pub(super) fn create(
        &mut self,
        text: String,
        planner: &'static str,
        planned: Planned,
        turn_budget: Option<u32>,
    ) -> Result<RequestView, engine::Error> {
        let now = self.now();
        let turns = TurnsView {
            budget: turn_budget.unwrap_or(self.opts.turn_budget),
            ..TurnsView::default()
        };
        let graph = self.planned_graph(planned, now)?;
        let id = RequestId(uuid::Uuid::now_v7().to_string());
        let b = created_batch(&id, &text, planner, &graph, turns, now);
        self.stage(b);
        let view = created_view(&id, text, now, &graph, turns);
        tracing::info!(request = %id, tasks = graph.len(), "request created");
        Metrics::inc(&self.metrics.requests_created_total);
        self.requests.insert(
            id.clone(),
            Request {
                graph,
                version: 1,
                cancelling: false,
                turns,
            },
        );
        Ok(view)
    }

    /// The graph of a new request, checked against the registered devices.
    fn planned_graph(&self, planned: Planned, now: u64) -> Result<Graph, engine::Error> {
        match planned {
            Planned::Plan(plan) => {
                for t in &plan.tasks {
                    if let weft_planner::Target::Device(d) = &t.target
                        && !self.devices.contains(d)
                    {
                        return Err(engine::Error::refused(
                            "unknown_device",
                            format!("task {} names device `{d}`, which is not registered", t.id),
                        ));
                    }
                }
                Graph::from_plan(&plan, &self.defaults(), now)
                    .map_err(|e| engine::Error::refused("invalid_plan", e))
            }
            Planned::Given(spec) => {
                let ctx = self.edit_ctx(now);
                Graph::from_given(&spec, &ctx)
                    .map(|applied| applied.graph)
                    .map_err(engine::Error::Refused)
            }
        }
    }

    /// Records that `task` ended and settles what follows from it: downstream tasks become
    /// ready or skipped, and the request ends when every task has.
    pub(super) fn task_ended(
        &mut self,
        b: &mut Batch,
        request: &RequestId,
        task: &TaskId,
        end: Ending,
    ) {
        self.end_task(b, request, task, end);
        self.finish_if_done(b, request);
    }

    /// [`Engine::task_ended`] without ending the request: for a caller that ends many tasks
    /// and checks the request once (checking is linear in the graph's size).
    fn end_task(&mut self, b: &mut Batch, request: &RequestId, task: &TaskId, end: Ending) {
        let Ending {
            status,
            output,
            error,
            files,
            attempt,
        } = end;
        let now = self.now();
        let Some(req) = self.requests.get_mut(request) else {
            return;
        };
        let m = Move {
            to: status,
            on: attempt,
            output,
            error,
            files,
            sched: false,
            retrying: None,
        };
        if let Err(e) = req.move_task(b, request, task, m) {
            tracing::warn!(error = %e, "refused transition");
            return;
        }
        let changed = req.graph.settle_downstream(task, now);
        req.record(b, request, &changed);
    }

    /// Ends the request once every task has ended.
    fn finish_if_done(&mut self, b: &mut Batch, request: &RequestId) {
        let Some(req) = self.requests.get(request) else {
            return;
        };
        let Some(outcome) = req.graph.outcome() else {
            return;
        };
        let (outcome, error) = if req.cancelling {
            (
                RequestStatus::Cancelled,
                Some(ErrorInfo::new("cancelled", "the request was cancelled")),
            )
        } else {
            let failed: Vec<String> = req
                .graph
                .tasks()
                .filter(|t| t.status() == TaskStatus::Failed)
                .map(|t| t.id.to_string())
                .collect();
            let error = match outcome {
                RequestStatus::Succeeded => None,
                RequestStatus::Cancelled => Some(ErrorInfo::new(
                    "tasks_cancelled",
                    "some tasks were cancelled",
                )),
                _ => Some(ErrorInfo::new(
                    "tasks_failed",
                    format!("failed tasks: {}", failed.join(", ")),
                )),
            };
            (outcome, error)
        };
        b.op(Op::UpdateRequest {
            id: request.clone(),
            status: outcome,
            error: error.clone(),
            at_ms: self.now(),
        });
        b.event(
            request,
            EventKind::RequestStatus {
                status: outcome,
                error,
            },
        );
        tracing::info!(request = %request, status = outcome.as_str(), "request finished");
        Metrics::inc(&self.metrics.requests_finished_total);
        self.requests.remove(request);
    }

    /// What edits (and submitted graphs) are checked against: the registered devices.
    fn edit_ctx(&self, now: u64) -> EditCtx {
        EditCtx {
            devices: self.devices.capabilities(),
            check_targets: true,
            defaults: self.defaults(),
            now_ms: now,
        }
    }

    /// What tasks get when their plan or spec does not say.
    pub(super) fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            retry: self.opts.retry.clone(),
            max_turns: self.opts.max_turns,
        }
    }

    /// Why a request that is not live cannot be changed: it finished, or it never existed.
    async fn not_live(&mut self, request: &RequestId) -> Result<engine::Error, Error> {
        // The store is read only after what the engine changed is in it.
        self.settle().await?;
        Ok(if self.store.request_exists(request).await? {
            engine::Error::RequestFinished(request.clone())
        } else {
            engine::Error::RequestNotFound(request.clone())
        })
    }

    /// Applies an edit batch atomically; returns the new version.
    pub(super) async fn edit(
        &mut self,
        request: RequestId,
        batch: EditBatch,
    ) -> Result<Result<u64, engine::Error>, Error> {
        let Some(req) = self.requests.get(&request) else {
            return Ok(Err(self.not_live(&request).await?));
        };
        if batch.expected_version != req.version {
            return Ok(Err(engine::Error::VersionConflict {
                current: req.version,
                expected: batch.expected_version,
            }));
        }
        if req.cancelling {
            return Ok(Err(engine::Error::RequestCancelling(request)));
        }
        let ctx = self.edit_ctx(self.now());
        let applied = match req.graph.apply(&batch.ops, &ctx) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(request = %request, code = e.code, op = ?e.op, "edit refused");
                return Ok(Err(engine::Error::Refused(e)));
            }
        };
        let version = req.version + 1;
        let mut b = Batch::default();
        for op in &batch.ops {
            edit_rows(&mut b, &request, &applied.graph, op);
        }
        b.op(Op::SetVersion {
            id: request.clone(),
            version,
        });
        b.event(
            &request,
            EventKind::GraphEdited {
                version,
                ops: batch.ops,
            },
        );
        if let Some(req) = self.requests.get_mut(&request) {
            req.graph = applied.graph;
            req.version = version;
        }
        if let Some(req) = self.requests.get(&request) {
            req.record(&mut b, &request, &applied.changed);
        }
        self.finish_if_done(&mut b, &request);
        self.stage(b);
        tracing::info!(request = %request, version, "graph edited");
        Ok(Ok(version))
    }

    /// Cancels a request (`task: None`) or one of its tasks. Tasks that have not started end
    /// `cancelled` at once; running attempts are told to stop, and their tasks end `cancelled`
    /// when the device confirms (or after a grace period).
    pub(super) async fn cancel(
        &mut self,
        request: RequestId,
        task: Option<TaskId>,
    ) -> Result<Result<(), engine::Error>, Error> {
        let Some(req) = self.requests.get_mut(&request) else {
            return Ok(Err(self.not_live(&request).await?));
        };
        let mut b = Batch::default();
        let targets = match cancel_targets(&mut b, &request, req, task.as_ref()) {
            Ok(targets) => targets,
            Err(e) => return Ok(Err(e)),
        };
        tracing::info!(request = %request, task = ?task, "cancel requested");
        let mut stop = Vec::new();
        for id in targets {
            stop.extend(self.cancel_task(&mut b, &request, &id));
        }
        let now = self.now();
        self.stop_attempts(stop, now);
        self.finish_if_done(&mut b, &request);
        self.stage(b);
        Ok(Ok(()))
    }

    /// Cancels one task: at once if it has not started; otherwise its cancel is recorded and
    /// its attempt in flight, returned, must be stopped.
    fn cancel_task(
        &mut self,
        b: &mut Batch,
        request: &RequestId,
        id: &TaskId,
    ) -> Option<AttemptId> {
        let req = self.requests.get_mut(request)?;
        let t = req.graph.task_mut(id)?;
        match t.status() {
            TaskStatus::Pending | TaskStatus::Ready => {
                let end = Ending {
                    status: TaskStatus::Cancelled,
                    output: None,
                    error: Some(ErrorInfo::new("cancelled", "cancelled before it started")),
                    attempt: None,
                    files: vec![],
                };
                // The request is checked once, after every task of the cancel.
                self.end_task(b, request, id, end);
                None
            }
            TaskStatus::Dispatched | TaskStatus::Running => {
                t.sched.cancel_requested = true;
                b.op(Op::UpdateTaskSched {
                    request_id: request.clone(),
                    task_id: id.clone(),
                    sched: t.sched.clone(),
                });
                t.attempt.clone()
            }
            _ => None,
        }
    }

    /// Tells the devices running these attempts to stop; each has a grace period to confirm.
    fn stop_attempts(&mut self, stop: Vec<AttemptId>, now: u64) {
        for attempt in stop {
            let Some(live) = self.attempts.get_mut(&attempt) else {
                continue;
            };
            live.deadline_ms = live.deadline_ms.min(now + CANCEL_GRACE_MS);
            let device = live.device.clone();
            let cancel = ServerMsg::Cancel {
                attempt_id: attempt,
                reason: "cancelled by a user".into(),
            };
            self.send(&device, cancel);
        }
    }
}

/// The tasks a cancel concerns: the one named (refused if unknown or finished), or every
/// task of the request, which is then marked as being cancelled.
fn cancel_targets(
    b: &mut Batch,
    request: &RequestId,
    req: &mut Request,
    task: Option<&TaskId>,
) -> Result<Vec<TaskId>, engine::Error> {
    let Some(id) = task else {
        req.cancelling = true;
        b.op(Op::CancelRequested {
            id: request.clone(),
        });
        return Ok(req.graph.tasks().map(|t| t.id.clone()).collect());
    };
    let Some(t) = req.graph.task(id) else {
        return Err(engine::Error::TaskNotFound {
            request: request.clone(),
            task: id.clone(),
        });
    };
    if t.status().is_terminal() {
        return Err(engine::Error::TaskFinished {
            task: id.clone(),
            status: t.status(),
        });
    }
    Ok(vec![id.clone()])
}

/// The rows and events of a new request: the request, its tasks and edges, `request_created`
/// (every task's spec), `request_status`, and the tasks that start ready.
fn created_batch(
    id: &RequestId,
    text: &str,
    planner: &str,
    graph: &Graph,
    turns: TurnsView,
    now: u64,
) -> Batch {
    let mut b = Batch::default();
    b.op(Op::InsertRequest {
        id: id.clone(),
        text: text.to_owned(),
        planner: planner.to_owned(),
        status: RequestStatus::Running,
        turns,
        at_ms: now,
    });
    for t in graph.tasks() {
        b.op(Op::InsertTask {
            request_id: id.clone(),
            task: t.record(),
        });
    }
    let edges = graph.edges();
    for e in &edges {
        b.op(Op::InsertEdge {
            request_id: id.clone(),
            edge: e.clone(),
        });
    }
    let created = EventKind::RequestCreated {
        text: text.to_owned(),
        tasks: graph.tasks().map(|t| t.spec()).collect(),
        edges,
    };
    b.event(id, created);
    let running = EventKind::RequestStatus {
        status: RequestStatus::Running,
        error: None,
    };
    b.event(id, running);
    // The tasks that start ready are inserted so; their events complete the journal.
    for t in graph.tasks().filter(|t| t.status() == TaskStatus::Ready) {
        b.event(id, task_event(&t.id, TaskStatus::Ready));
    }
    b
}

/// A request as it is created: what `Store::request_view` reads back once it is committed and
/// before anything else happened to it.
fn created_view(
    id: &RequestId,
    text: String,
    now: u64,
    graph: &Graph,
    turns: TurnsView,
) -> RequestView {
    RequestView {
        id: id.clone(),
        text,
        status: RequestStatus::Running,
        version: 1,
        created_at_ms: now,
        updated_at_ms: now,
        error: None,
        tasks: graph
            .tasks()
            .map(|t| TaskView {
                id: t.id.clone(),
                title: t.title.clone(),
                instruction: t.instruction.clone(),
                action: t.action.clone(),
                device: None,
                status: t.status(),
                attempts: Vec::new(),
                output: None,
                error: None,
                retry: t.retry.clone(),
                max_turns: t.max_turns,
                turns_used: 0,
                files: Vec::new(),
            })
            .collect(),
        edges: graph.edges(),
        turns,
        llm: None,
    }
}

/// The row changes one accepted edit op makes, written from the graph after the whole batch.
fn edit_rows(b: &mut Batch, request: &RequestId, graph: &Graph, op: &EditOp) {
    match op {
        EditOp::AddTask { task } => {
            if let Some(t) = graph.task(&task.id) {
                b.op(Op::InsertTask {
                    request_id: request.clone(),
                    task: t.record(),
                });
            }
        }
        EditOp::RemoveTask { task_id } => b.op(Op::DeleteTask {
            request_id: request.clone(),
            task_id: task_id.clone(),
        }),
        EditOp::UpdateTask { task_id, .. } => {
            if let Some(t) = graph.task(task_id) {
                b.op(Op::UpdateTaskDef {
                    request_id: request.clone(),
                    task: t.record(),
                });
            }
        }
        EditOp::AddEdge { from, to, .. } => {
            if let Some(e) = graph
                .edges()
                .into_iter()
                .find(|e| &e.from == from && &e.to == to)
            {
                b.op(Op::InsertEdge {
                    request_id: request.clone(),
                    edge: e,
                });
            }
        }
        EditOp::RemoveEdge { from, to } => b.op(Op::DeleteEdge {
            request_id: request.clone(),
            from: from.clone(),
            to: to.clone(),
        }),
    }
}
