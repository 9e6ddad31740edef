//! The one path for a task's status change inside the engine: the graph's transition, the
//! task's row and its journal event, staged together in one [`Batch`].
//!
//! Every change the engine makes goes through [`Request::move_task`]; the changes the graph
//! makes by itself while settling (tasks becoming ready, waiting again, or skipped) are staged
//! by [`Request::record`]. Nothing else writes a `task_status` row or event.

use weft_protocol::rest::EventKind;
use weft_protocol::{
    AttemptId, DeviceName, ErrorInfo, FileRef, RequestId, TaskId, TaskOutput, TaskStatus,
};

use super::Request;
use crate::engine::graph::{IllegalTransition, Task};
use crate::store::{Batch, Op};

/// A status change and what its row and journal event say with it.
#[derive(Debug)]
pub(super) struct Move {
    pub to: TaskStatus,
    /// The attempt and device the change concerns: the event names both, the row keeps the
    /// device.
    pub on: Option<(AttemptId, DeviceName)>,
    /// Kept on the task and its row (absent: the earlier output stays).
    pub output: Option<TaskOutput>,
    pub error: Option<ErrorInfo>,
    /// The files the attempt produced (a success): kept on the task, written to the `files`
    /// table and named in the journal event, all in the same batch.
    pub files: Vec<FileRef>,
    /// Also write the task's scheduling state (backoff, device to avoid, first ready time).
    pub sched: bool,
    /// Journaled as `task_retrying` (this attempt, attempts used so far, when) instead of
    /// `task_status`.
    pub retrying: Option<(AttemptId, u32, u64)>,
}

impl Move {
    /// A plain change to `to`, concerning no attempt.
    pub fn to(to: TaskStatus) -> Self {
        Self {
            to,
            on: None,
            output: None,
            error: None,
            files: Vec::new(),
            sched: false,
            retrying: None,
        }
    }

    pub fn on(mut self, attempt: AttemptId, device: DeviceName) -> Self {
        self.on = Some((attempt, device));
        self
    }

    pub fn error(mut self, error: ErrorInfo) -> Self {
        self.error = Some(error);
        self
    }

    pub fn with_sched(mut self) -> Self {
        self.sched = true;
        self
    }
}

impl Request {
    /// Moves task `id` to `m.to` (refused if illegal, and then nothing is staged) and stages
    /// its row and journal event in `b`. A task holds an attempt only while it is dispatched
    /// or running.
    pub(super) fn move_task(
        &mut self,
        b: &mut Batch,
        request: &RequestId,
        id: &TaskId,
        m: Move,
    ) -> Result<(), IllegalTransition> {
        self.graph.transition(id, m.to)?;
        let Some(t) = self.graph.task_mut(id) else {
            return Ok(());
        };
        if !matches!(m.to, TaskStatus::Dispatched | TaskStatus::Running) {
            t.attempt = None;
        }
        if m.output.is_some() {
            t.output.clone_from(&m.output);
        }
        if !m.files.is_empty() {
            t.produced.clone_from(&m.files);
        }
        record(b, request, t, m);
        Ok(())
    }

    /// Stages the rows and events of status changes the graph made by itself while settling:
    /// tasks that became ready (with their first ready time), waiting again, or skipped (with
    /// the reason).
    pub(super) fn record(&self, b: &mut Batch, request: &RequestId, changed: &[TaskId]) {
        for id in changed {
            let Some(t) = self.graph.task(id) else {
                continue;
            };
            let mut m = Move::to(t.status());
            if m.to == TaskStatus::Skipped {
                m.error = Some(skip_reason(&self.graph, id));
            }
            m.sched = m.to == TaskStatus::Ready;
            record(b, request, t, m);
        }
    }
}

/// The row and the journal event of a change `t` has just made.
fn record(b: &mut Batch, request: &RequestId, t: &Task, m: Move) {
    let (attempt, device) = m.on.unzip();
    b.op(Op::UpdateTask {
        request_id: request.clone(),
        task_id: t.id.clone(),
        status: m.to,
        device: device.clone(),
        output: m.output.clone(),
        error: m.error.clone(),
    });
    if !m.files.is_empty()
        && let Some(attempt_id) = &attempt
    {
        b.op(Op::InsertFiles {
            request_id: request.clone(),
            task_id: t.id.clone(),
            attempt_id: attempt_id.clone(),
            files: m.files.clone(),
        });
    }
    if m.sched {
        b.op(Op::UpdateTaskSched {
            request_id: request.clone(),
            task_id: t.id.clone(),
            sched: t.sched.clone(),
        });
    }
    let event = match m.retrying {
        Some((attempt_id, attempts, retry_at_ms)) => EventKind::TaskRetrying {
            task_id: t.id.clone(),
            attempt_id,
            attempts,
            retry_at_ms,
            error: m
                .error
                .unwrap_or_else(|| ErrorInfo::new("failed", "the attempt failed")),
        },
        None => EventKind::TaskStatus {
            task_id: t.id.clone(),
            status: m.to,
            attempt_id: attempt,
            device,
            output: m.output,
            error: m.error,
            files: m.files,
        },
    };
    b.event(request, event);
}

/// Why a task was skipped: a condition that did not hold, or an upstream task that did not
/// succeed.
fn skip_reason(graph: &crate::engine::graph::Graph, id: &TaskId) -> ErrorInfo {
    if graph.success_upstream_failed(id) {
        ErrorInfo::new("upstream_failed", "an upstream task did not succeed")
    } else {
        ErrorInfo::new(
            "condition_false",
            "a condition on an upstream task's outcome did not hold",
        )
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::EdgeKind;
    use weft_protocol::rest::{EventKind, TurnsView};

    use super::*;
    use crate::engine::graph::Graph;
    use crate::engine::graph::tests::{build, defaults};

    /// A request t1 -> t2 (success) -> t3 (completion) and its journal as `create` starts it;
    /// the live graph is built from that journal, as a restart would.
    fn request() -> (Request, Vec<EventKind>) {
        let planned = build(
            3,
            &[(1, 2, EdgeKind::Success), (2, 3, EdgeKind::Completion)],
        );
        let mut journal = vec![EventKind::RequestCreated {
            text: String::new(),
            tasks: planned.tasks().map(Task::spec).collect(),
            edges: planned.edges(),
        }];
        for t in planned.tasks().filter(|t| t.status() == TaskStatus::Ready) {
            journal.push(EventKind::TaskStatus {
                task_id: t.id.clone(),
                status: TaskStatus::Ready,
                attempt_id: None,
                device: None,
                output: None,
                error: None,
                files: vec![],
            });
        }
        let req = Request {
            graph: Graph::replay(&journal, &defaults()).unwrap(),
            version: 1,
            cancelling: false,
            turns: TurnsView::default(),
        };
        (req, journal)
    }

    fn statuses(b: &Batch) -> Vec<(String, &'static str)> {
        b.ops
            .iter()
            .filter_map(|op| match op {
                Op::UpdateTask {
                    task_id, status, ..
                } => Some((task_id.to_string(), status.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_move_stages_its_row_and_event_and_the_journal_replays_to_the_live_graph() {
        let rid = RequestId::from("r");
        let (mut req, mut journal) = request();
        let mut b = Batch::default();
        let t1 = TaskId::from("t1");
        let on = (AttemptId::from("a1"), DeviceName::from("d"));
        for to in [TaskStatus::Dispatched, TaskStatus::Running] {
            let m = Move::to(to).on(on.0.clone(), on.1.clone());
            req.move_task(&mut b, &rid, &t1, m).unwrap();
        }
        // The attempt fails and the task waits for another one.
        let m = Move {
            retrying: Some((on.0.clone(), 1, 5)),
            ..Move::to(TaskStatus::Ready)
                .error(ErrorInfo::new("timeout", "slow"))
                .with_sched()
        };
        req.move_task(&mut b, &rid, &t1, m).unwrap();
        assert_eq!(
            req.graph.ready().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["t1"]
        );
        for to in [TaskStatus::Dispatched, TaskStatus::Failed] {
            req.move_task(&mut b, &rid, &t1, Move::to(to)).unwrap();
        }
        let changed = req.graph.settle_downstream(&t1, 0);
        req.record(&mut b, &rid, &changed);
        assert_eq!(
            statuses(&b),
            [
                ("t1".into(), "dispatched"),
                ("t1".into(), "running"),
                ("t1".into(), "ready"),
                ("t1".into(), "dispatched"),
                ("t1".into(), "failed"),
                ("t2".into(), "skipped"),
                ("t3".into(), "ready"),
            ]
        );
        // One event per change, the retry journaled as such.
        assert_eq!(b.events.len(), 7);
        assert!(matches!(
            b.events[2].1,
            EventKind::TaskRetrying { attempts: 1, .. }
        ));
        let Some((_, EventKind::TaskStatus { error: Some(e), .. })) = b.events.get(5) else {
            panic!("{:?}", b.events[5]);
        };
        assert_eq!(e.code, "upstream_failed");

        journal.extend(b.events.into_iter().map(|(_, e)| e));
        let replayed = Graph::replay(&journal, &defaults()).unwrap();
        assert_eq!(replayed.snapshot(), req.graph.snapshot());
        let ready = |g: &Graph| g.ready().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ready(&replayed), ready(&req.graph));
    }

    #[test]
    fn a_refused_move_stages_nothing() {
        let rid = RequestId::from("r");
        let (mut req, _) = request();
        let mut b = Batch::default();
        let t2 = TaskId::from("t2");
        assert!(
            req.move_task(&mut b, &rid, &t2, Move::to(TaskStatus::Running))
                .is_err()
        );
        assert!(b.ops.is_empty() && b.events.is_empty());
        assert_eq!(req.graph.task(&t2).unwrap().status(), TaskStatus::Pending);
    }
}
