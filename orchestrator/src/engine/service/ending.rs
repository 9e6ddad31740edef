//! How an attempt ends: once, freeing its device's slot and returning unused turns; after a
//! failure, another attempt or the end of the task, as `retry::decide` says.

use weft_protocol::{AttemptId, AttemptStatus, ErrorInfo, TaskOutput, TaskStatus};

use super::attempts::Live;
use super::retry::{self, Retry};
use super::status::Move;
use super::{Ending, Engine, millis};
use crate::metrics::Metrics;
use crate::store::{Batch, Op};

impl Engine {
    /// Ends a live attempt: updates its row, frees its device slot, gives back the turns it
    /// held but did not use, forgets it. `None` if it was not live.
    pub(super) fn end_attempt(
        &mut self,
        b: &mut Batch,
        id: &AttemptId,
        status: AttemptStatus,
        error: Option<ErrorInfo>,
    ) -> Option<Live> {
        let now = self.now();
        let live = self.attempts.remove(id)?;
        self.devices.release(&live.device, id);
        if live.uses_turns
            && let Some(req) = self.requests.get_mut(&live.request)
        {
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
            ended_at_ms: Some(now),
            error,
        });
        Some(live)
    }

    /// An attempt failed: ends it, then either queues the task for another attempt after its
    /// backoff or, when the error is not retryable or the attempts or the time are used up,
    /// fails the task. A task whose cancel was asked for ends `cancelled`.
    pub(super) fn attempt_failed(
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
        let now = self.now();
        let Some(task) = self
            .requests
            .get(&live.request)
            .and_then(|r| r.graph.task(&live.task))
        else {
            return;
        };
        let attempt = Some((id.clone(), live.device.clone()));
        if task.sched.cancel_requested {
            let error = ErrorInfo::new(
                "cancelled",
                format!("cancelled; the attempt ended with {}", error.code),
            );
            let end = Ending {
                status: TaskStatus::Cancelled,
                output,
                error: Some(error),
                attempt,
                files: vec![],
            };
            self.task_ended(b, &live.request, &live.task, end);
            return;
        }
        let tried = retry::Tried {
            used: task.attempts_used,
            first_ready_ms: task.sched.first_ready_ms,
        };
        let limits = retry::Limits {
            policy: &task.retry,
            task_timeout_ms: millis(self.opts.task_timeout),
            jitter: rand::random::<f64>(),
        };
        match retry::decide(tried, &error, limits, now) {
            Retry::Fail { error } => {
                let end = Ending {
                    status: TaskStatus::Failed,
                    output,
                    error: Some(error),
                    attempt,
                    files: vec![],
                };
                self.task_ended(b, &live.request, &live.task, end);
            }
            Retry::Retry { at, avoid } => self.retry_later(b, id, &live, error, at, avoid),
        }
    }

    /// The task of a failed attempt waits for another attempt, not before `at`, elsewhere
    /// than the failed attempt's device if `avoid` and another device can take it.
    fn retry_later(
        &mut self,
        b: &mut Batch,
        id: &AttemptId,
        live: &Live,
        error: ErrorInfo,
        at: u64,
        avoid: bool,
    ) {
        let now = self.now();
        let Some(req) = self.requests.get_mut(&live.request) else {
            return;
        };
        let Some(task) = req.graph.task_mut(&live.task) else {
            return;
        };
        let used = task.attempts_used;
        task.sched.not_before_ms = at;
        task.sched.avoid = avoid.then(|| live.device.clone());
        task.ready_since_ms = at;
        let m = Move {
            retrying: Some((id.clone(), used, at)),
            ..Move::to(TaskStatus::Ready)
                .error(error.clone())
                .with_sched()
        };
        if req.move_task(b, &live.request, &live.task, m).is_err() {
            return;
        }
        Metrics::inc(&self.metrics.attempts_retried_total);
        tracing::info!(request = %live.request, task = %live.task, attempt = %id, code = %error.code,
            attempts = used, retry_in_ms = at.saturating_sub(now), "attempt failed; will retry");
    }
}
