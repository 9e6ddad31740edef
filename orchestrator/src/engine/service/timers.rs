//! Deadlines, checked on every tick: attempts past their deadline, attempts of devices gone
//! longer than the grace window, attempts a connected device did not answer in time, tasks
//! past their overall timeout, ready tasks no device took in time.

use weft_protocol::{
    AttemptId, AttemptStatus, DeviceName, ErrorInfo, RequestId, ServerMsg, TaskId, TaskStatus,
};

use super::attempts::Waits;
use super::{Ending, Engine, millis};
use crate::engine::graph::Target;
use crate::engine::graph::Task;
use crate::metrics::Metrics;
use crate::store::Batch;

/// A task that ran out of time: the attempt it has in flight, if any, and why it fails.
type Expired = (RequestId, TaskId, Option<AttemptId>, ErrorInfo);

impl Engine {
    pub(super) fn on_tick(&mut self) {
        let now = self.now();
        let mut b = Batch::default();
        self.expire_attempts(&mut b, now);
        for expired in self.expired_tasks(now) {
            self.expire_task(&mut b, expired);
        }
        self.stage(b);
    }

    /// Attempts past their deadline, and those a connected device did not answer in time, are
    /// stopped on their device and failed; attempts whose device did not come back within the
    /// grace window are lost.
    fn expire_attempts(&mut self, b: &mut Batch, now: u64) {
        let waits = Waits {
            grace_ms: millis(self.opts.lost_grace),
            answer_ms: millis(self.opts.answer_timeout()),
        };
        let due = self.attempts.due(now, waits);
        for id in due.overdue {
            let Some(device) = self.attempts.get(&id).map(|l| l.device.clone()) else {
                continue;
            };
            tracing::warn!(attempt = %id, device = %device, "attempt timed out; telling the device to stop");
            let err = ErrorInfo::new(
                "timeout",
                format!(
                    "the attempt did not finish within {} s",
                    self.opts.attempt_timeout.as_secs_f64()
                ),
            );
            self.time_out(b, &id, &device, "the attempt passed its deadline", err);
        }
        for id in due.lost {
            let Some(device) = self.attempts.get(&id).map(|l| l.device.clone()) else {
                continue;
            };
            tracing::warn!(attempt = %id, device = %device, "device did not come back in time; attempt lost");
            Metrics::inc(&self.metrics.attempts_lost_total);
            let err = ErrorInfo::new(
                "device_lost",
                format!(
                    "device `{device}` was gone longer than the {} s grace window",
                    self.opts.lost_grace.as_secs_f64()
                ),
            );
            self.attempt_failed(b, &id, AttemptStatus::Lost, err, None);
        }
        for id in due.unanswered {
            let Some(device) = self.attempts.get(&id).map(|l| l.device.clone()) else {
                continue;
            };
            tracing::warn!(attempt = %id, device = %device, "device did not answer the assignment; placing it again");
            let err = ErrorInfo::new(
                "assign_unanswered",
                format!(
                    "device `{device}` neither accepted nor rejected the assignment within {} s \
                     (an agent older than this orchestrator may not read it)",
                    self.opts.answer_timeout().as_secs_f64()
                ),
            );
            // Should it be running it after all, it stops.
            let reason = "the assignment was not answered in time";
            self.time_out(b, &id, &device, reason, err);
        }
        // The next of them ends on time, not on a later tick.
        if let Some(at) = due.next_ms {
            self.wake_at(at);
        }
    }

    /// Tells `device` to stop attempt `id` (`reason`) and fails the attempt `timed_out`.
    fn time_out(
        &mut self,
        b: &mut Batch,
        id: &AttemptId,
        device: &DeviceName,
        reason: &str,
        err: ErrorInfo,
    ) {
        Metrics::inc(&self.metrics.attempts_timed_out_total);
        let cancel = ServerMsg::Cancel {
            attempt_id: id.clone(),
            reason: reason.into(),
        };
        self.send(device, cancel);
        self.attempt_failed(b, id, AttemptStatus::TimedOut, err, None);
    }

    /// Unfinished tasks past their overall timeout, and ready tasks that waited for a device
    /// longer than the queue timeout.
    fn expired_tasks(&self, now: u64) -> Vec<Expired> {
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
                            describe_target(t),
                            self.opts.queue_timeout.as_secs_f64()
                        ),
                    );
                    expired.push((rid.clone(), t.id.clone(), None, err));
                }
            }
        }
        expired
    }

    /// Fails a task that ran out of time, stopping its attempt on the device.
    fn expire_task(&mut self, b: &mut Batch, (rid, tid, attempt, err): Expired) {
        let mut ended_by = None;
        if let Some(id) = attempt
            && let Some(live) =
                self.end_attempt(b, &id, AttemptStatus::Cancelled, Some(err.clone()))
        {
            let cancel = ServerMsg::Cancel {
                attempt_id: id.clone(),
                reason: "the task passed its overall timeout".into(),
            };
            self.send(&live.device, cancel);
            ended_by = Some((id, live.device));
        }
        let end = Ending {
            status: TaskStatus::Failed,
            output: None,
            error: Some(err),
            attempt: ended_by,
            files: vec![],
        };
        self.task_ended(b, &rid, &tid, end);
    }
}

/// Which devices could have taken the task, in words.
fn describe_target(t: &Task) -> String {
    let who = match &t.target {
        Target::Device(d) => format!("is `{d}`"),
        Target::Kind(k) => format!("is a {k}"),
        Target::Any => "exists".to_owned(),
    };
    if t.capabilities.is_empty() {
        who
    } else {
        format!("{who} with capabilities [{}]", t.capabilities.join(", "))
    }
}
