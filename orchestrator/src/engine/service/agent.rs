//! What the engine does with each message an agent sends, one handler per message type. A
//! message about an attempt is taken only from the device that holds it.

use weft_protocol::rest::{EventKind, LateResult};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{
    AgentMsg, AttemptId, AttemptStatus, DeviceName, ErrorInfo, FileRef, ServerMsg, TaskOutput,
    TaskStatus,
};

use super::attempts::Live;
use super::status::Move;
use super::{Ending, Engine};
use crate::engine::{Command, ConnId};
use crate::metrics::Metrics;
use crate::store::{Batch, Op};

/// How long a task refused as `busy` waits before it is placed again.
const BUSY_BACKOFF_MS: u64 = 200;

/// Longest progress message kept (bytes).
const MAX_PROGRESS: usize = 4096;

/// A result as the agent reports it.
struct Reported {
    attempt_id: AttemptId,
    status: ResultStatus,
    output: TaskOutput,
    error: Option<ErrorInfo>,
    files: Vec<FileRef>,
}

impl Reported {
    /// The result recorded as late, at `at_ms`.
    fn late(self, at_ms: u64) -> LateResult {
        LateResult {
            status: self.status,
            output: self.output,
            error: self.error,
            at_ms,
        }
    }
}

impl Engine {
    pub(super) fn on_agent_msg(&mut self, device: DeviceName, conn: ConnId, msg: AgentMsg) {
        let now = self.now();
        if !self.devices.current(&device, conn, now) {
            // Unknown, or a connection that has since been replaced or dropped.
            return;
        }
        match msg {
            AgentMsg::Heartbeat {} => {}
            AgentMsg::Hello { .. } => {
                let error = ErrorInfo::new("bad_frame", "hello is only valid as the first frame");
                self.send(&device, ServerMsg::Error { error });
            }
            AgentMsg::Accept { attempt_id } => self.on_accept(&device, attempt_id),
            AgentMsg::Reject { attempt_id, error } => self.on_reject(&device, attempt_id, error),
            AgentMsg::Progress {
                attempt_id,
                message,
                turns_used,
            } => self.on_progress(&device, attempt_id, message, turns_used),
            AgentMsg::ExtendTurns { attempt_id, turns } => {
                self.on_extend_turns(&device, attempt_id, turns);
            }
            AgentMsg::Result {
                attempt_id,
                status,
                output,
                error,
                files,
            } => {
                let reported = Reported {
                    attempt_id,
                    status,
                    output,
                    error,
                    files,
                };
                self.on_result(&device, reported);
            }
        }
    }

    /// The live attempt `id` if `device` holds it; otherwise the frame is refused.
    fn held(&mut self, device: &DeviceName, id: &AttemptId, frame: &str) -> Option<Live> {
        let live = self.attempts.owned(device, id);
        if live.is_none() {
            self.refuse_foreign(device, id, frame);
        }
        live
    }

    fn on_accept(&mut self, device: &DeviceName, attempt_id: AttemptId) {
        let Some(live) = self.held(device, &attempt_id, "accept") else {
            return;
        };
        if live.status != AttemptStatus::Dispatched {
            return;
        }
        if let Some(l) = self.attempts.get_mut(&attempt_id) {
            l.status = AttemptStatus::Running;
            l.awaiting_answer_since = None;
        }
        let Some(req) = self.requests.get_mut(&live.request) else {
            return;
        };
        let mut b = Batch::default();
        let m = Move::to(TaskStatus::Running).on(attempt_id.clone(), device.clone());
        if req.move_task(&mut b, &live.request, &live.task, m).is_ok() {
            b.op(Op::UpdateAttempt {
                id: attempt_id,
                status: AttemptStatus::Running,
                ended_at_ms: None,
                error: None,
            });
            self.stage(b);
        }
    }

    fn on_reject(&mut self, device: &DeviceName, attempt_id: AttemptId, error: ErrorInfo) {
        let Some(live) = self.held(device, &attempt_id, "reject") else {
            return;
        };
        let mut b = Batch::default();
        let now = self.now();
        if error.code == "busy" && !self.cancel_requested(&live) {
            // The device is full after all: the task goes back to the queue, briefly held
            // back, and the refusal does not count as an attempt.
            if let Some(live) =
                self.end_attempt(&mut b, &attempt_id, AttemptStatus::Rejected, Some(error))
                && let Some(r) = self.requests.get_mut(&live.request)
                && let Some(t) = r.graph.task_mut(&live.task)
            {
                t.attempts_used = t.attempts_used.saturating_sub(1);
                t.sched.not_before_ms = now + BUSY_BACKOFF_MS;
                let m = Move::to(TaskStatus::Ready).with_sched();
                let _ = r.move_task(&mut b, &live.request, &live.task, m);
            }
        } else {
            self.attempt_failed(&mut b, &attempt_id, AttemptStatus::Rejected, error, None);
        }
        self.stage(b);
    }

    fn on_progress(
        &mut self,
        device: &DeviceName,
        attempt_id: AttemptId,
        mut message: String,
        turns_used: Option<u32>,
    ) {
        let Some(live) = self.held(device, &attempt_id, "progress") else {
            return;
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
        message.truncate(weft_planner::text::cut(&message, MAX_PROGRESS).len());
        let progress = EventKind::TaskProgress {
            task_id: live.task.clone(),
            attempt_id,
            message,
            turns_used,
        };
        b.event(&live.request, progress);
        self.stage(b);
    }

    /// A request for more turns: grants what the request's pool still has, up to `asked`.
    fn on_extend_turns(&mut self, device: &DeviceName, attempt_id: AttemptId, asked: u32) {
        let Some(live) = self.held(device, &attempt_id, "extend_turns") else {
            return;
        };
        let Some(req) = self.requests.get_mut(&live.request) else {
            return;
        };
        let Some(l) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        let left = req.turns.budget.saturating_sub(req.turns.reserved);
        let granted = if l.uses_turns { asked.min(left) } else { 0 };
        if granted == 0 {
            req.turns.extensions_refused += 1;
        } else {
            req.turns.reserved += granted;
            req.turns.extensions_granted += granted;
            l.max_turns += granted;
        }
        let max_turns = l.max_turns;
        tracing::info!(attempt = %attempt_id, asked, granted, pool_left = left - granted, "turn extension");
        let mut b = Batch::default();
        b.op(Op::UpdateTurns {
            id: live.request.clone(),
            turns: req.turns,
        });
        b.op(Op::UpdateAttemptTurns {
            id: attempt_id.clone(),
            max_turns,
            turns_used: l.turns_used,
        });
        let extended = EventKind::TurnsExtended {
            task_id: live.task.clone(),
            attempt_id: attempt_id.clone(),
            asked,
            granted,
            max_turns,
            pool_left: left - granted,
        };
        b.event(&live.request, extended);
        self.stage(b);
        let answer = ServerMsg::Turns {
            attempt_id,
            granted,
            max_turns,
        };
        self.send(device, answer);
    }

    /// A result: applied once to its live attempt (unless a committed cancel came first),
    /// and acknowledged.
    fn on_result(&mut self, device: &DeviceName, r: Reported) {
        let Some(live) = self.attempts.owned(device, &r.attempt_id) else {
            self.on_stray_result(device, r);
            return;
        };
        let attempt_id = r.attempt_id.clone();
        let mut b = Batch::default();
        if r.status != ResultStatus::Cancelled && self.cancel_requested(&live) {
            // The cancel was committed first, and a cancel wins: the result is recorded on
            // the attempt as late, never applied.
            let late = r.late(self.now());
            self.cancel_won(&mut b, &attempt_id, late);
        } else {
            self.apply_result(&mut b, device, &live, r);
        }
        self.stage(b);
        self.send(device, ServerMsg::Ack { attempt_id });
    }

    fn apply_result(&mut self, b: &mut Batch, device: &DeviceName, live: &Live, r: Reported) {
        let Reported {
            attempt_id,
            status,
            output,
            error,
            files,
        } = r;
        let (attempt_status, task_status, error) = match (status, error) {
            (ResultStatus::Failed, error) => {
                let error = error
                    .unwrap_or_else(|| ErrorInfo::new("failed", "the device reported failure"));
                let id = &attempt_id;
                self.attempt_failed(b, id, AttemptStatus::Failed, error, Some(output));
                return;
            }
            (ResultStatus::Succeeded, _) => (AttemptStatus::Succeeded, TaskStatus::Succeeded, None),
            (ResultStatus::Cancelled, error) => (
                AttemptStatus::Cancelled,
                TaskStatus::Cancelled,
                Some(
                    error
                        .unwrap_or_else(|| ErrorInfo::new("failed", "the device reported failure")),
                ),
            ),
        };
        self.end_attempt(b, &attempt_id, attempt_status, error.clone());
        let files = if task_status == TaskStatus::Succeeded {
            files
        } else {
            Vec::new()
        };
        let end = Ending {
            status: task_status,
            output: Some(output),
            error,
            files,
            attempt: Some((attempt_id, device.clone())),
        };
        self.task_ended(b, &live.request, &live.task, end);
    }

    /// A result for an attempt that is not live: a second copy of a result already applied,
    /// or a late result of an attempt that timed out or was lost (recorded, not applied;
    /// acked so the agent's outbox drains), or a frame about someone else's attempt. Only the
    /// store knows which, and it is read only after what the engine changed is in it: a task
    /// of its own waits for that and asks, so the loop never waits for the store; the answer
    /// comes back as a `StrayResult` command.
    fn on_stray_result(&mut self, device: &DeviceName, r: Reported) {
        let committed = self.out.committed();
        let store = self.store.clone();
        let inbox = self.inbox.clone();
        let clock = self.clock;
        let device = device.clone();
        tokio::spawn(async move {
            if committed.await.is_err() {
                // The commit failed: the engine is stopping.
                return;
            }
            let owned = match store.attempt_device(&r.attempt_id).await {
                Ok(owner) => owner.as_ref() == Some(&device),
                Err(e) => {
                    tracing::warn!(error = %e, attempt = %r.attempt_id,
                        "could not look up a result's attempt; not acknowledged, the agent sends it again");
                    return;
                }
            };
            let attempt_id = r.attempt_id.clone();
            let result = r.late(clock.now_ms());
            if let Some(tx) = inbox.upgrade() {
                let checked = Command::StrayResult {
                    device,
                    attempt_id,
                    result,
                    owned,
                };
                let _ = tx.send(checked).await;
            }
        });
    }

    /// A result for an attempt that was not live, once the store said whose it was.
    pub(super) fn on_stray_result_checked(
        &mut self,
        device: &DeviceName,
        attempt_id: AttemptId,
        result: LateResult,
        owned: bool,
    ) {
        if !owned {
            self.refuse_foreign(device, &attempt_id, "result");
            return;
        }
        tracing::info!(attempt = %attempt_id, "duplicate or late result; recorded, not applied");
        Metrics::inc(&self.metrics.results_duplicate_total);
        let mut b = Batch::default();
        b.op(Op::RecordLateResult {
            id: attempt_id.clone(),
            result,
        });
        self.stage(b);
        self.send(device, ServerMsg::Ack { attempt_id });
    }

    /// Whether a cancel of the attempt's task has been asked for (and so is committed before
    /// anything the engine does next).
    pub(super) fn cancel_requested(&self, live: &Live) -> bool {
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
        let end = Ending {
            status: TaskStatus::Cancelled,
            output: None,
            error: Some(error),
            attempt: Some((id.clone(), live.device)),
            files: vec![],
        };
        self.task_ended(b, &live.request, &live.task, end);
    }

    fn refuse_foreign(&mut self, device: &DeviceName, id: &AttemptId, frame: &str) {
        Metrics::inc(&self.metrics.frames_refused_total);
        tracing::warn!(device = %device, attempt = %id, frame,
            "refused a frame about an attempt this device does not hold");
        let error = ErrorInfo::new(
            "not_your_attempt",
            format!("attempt {id} is not held by device `{device}`"),
        );
        self.send(device, ServerMsg::Error { error });
    }
}
