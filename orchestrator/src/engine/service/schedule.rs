//! Scheduling: ready tasks to devices with a free slot, each dispatch an attempt.

use std::collections::BTreeMap;

use weft_protocol::{
    Action, AttemptId, AttemptStatus, DeviceName, ErrorInfo, InputFile, RequestId, ServerMsg,
    TaskId, TaskOutput, TaskStatus,
};

use super::attempts::Live;
use super::files;
use super::status::Move;
use super::{Ending, Engine, Request, millis};
use crate::metrics::Metrics;
use crate::store::{Batch, Op};

impl Engine {
    /// Dispatches every ready task whose backoff has passed and that has a capable device with
    /// a free slot; all dispatches of one pass are committed together, then sent.
    pub(super) fn schedule(&mut self) {
        // Draining, or no device can take work: nothing to place.
        if self.drain_until.is_some() || !self.devices.any_free() {
            return;
        }
        let now = self.now();
        // Only the tasks that may find a device are named (their ids cloned) and looked up
        // again: the pass stays cheap when many ready tasks wait for a device that is full,
        // draining or away.
        let mut wanted = Vec::new();
        for (rid, req) in &self.requests {
            for t in req.graph.ready() {
                if t.sched.not_before_ms <= now && self.devices.may_place(t) {
                    wanted.push((rid.clone(), t.id.clone()));
                }
            }
        }
        let mut b = Batch::default();
        let mut sends = Vec::new();
        for (rid, tid) in wanted {
            if !self.devices.any_free() {
                break;
            }
            let Some(task) = self.requests.get(&rid).and_then(|r| r.graph.task(&tid)) else {
                continue;
            };
            let Some(device) = self.devices.place(task) else {
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

    /// Records a new attempt of `tid` on `device` in `b`; returns the `assign` to send once
    /// `b` is committed. A task whose references cannot be filled in, or that needs turns the
    /// request no longer has, fails instead.
    fn dispatch(
        &mut self,
        b: &mut Batch,
        rid: &RequestId,
        tid: &TaskId,
        device: &DeviceName,
        now: u64,
    ) -> Option<ServerMsg> {
        let req = self.requests.get_mut(rid)?;
        let attempt_id = AttemptId(uuid::Uuid::now_v7().to_string());
        let filled = filled_in(req, tid, &attempt_id)?;
        let turns = filled.and_then(|work| reserve_turns(b, rid, req, tid).map(|t| (work, t)));
        let ((instruction, action, files), max_turns) = match turns {
            Ok(v) => v,
            Err(error) => {
                let end = Ending {
                    status: TaskStatus::Failed,
                    output: None,
                    error: Some(error),
                    attempt: None,
                    files: vec![],
                };
                self.task_ended(b, rid, tid, end);
                return None;
            }
        };
        let inputs = upstream_outputs(&req.graph, tid);
        let deadline_ms = now + millis(self.opts.attempt_timeout);
        let m = Move::to(TaskStatus::Dispatched).on(attempt_id.clone(), device.clone());
        req.move_task(b, rid, tid, m).ok()?;
        let task = req.graph.task_mut(tid)?;
        task.attempt = Some(attempt_id.clone());
        task.attempts_used += 1;
        let uses_turns = task.uses_turns();
        let outputs = task.files.outputs.clone();
        let inputs_taken = files.iter().map(|f| f.file.clone()).collect();
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
            files,
            outputs,
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
        let live = Live {
            request: rid.clone(),
            task: tid.clone(),
            device: device.clone(),
            status: AttemptStatus::Dispatched,
            deadline_ms,
            lost_since: None,
            awaiting_answer_since: Some(now),
            uses_turns,
            max_turns,
            turns_used: 0,
            inputs: inputs_taken,
        };
        self.attempts.insert(attempt_id.clone(), live);
        self.devices.occupy(device, &attempt_id);
        Metrics::inc(&self.metrics.attempts_dispatched_total);
        tracing::debug!(request = %rid, task = %tid, device = %device, attempt = %attempt_id, "dispatched");
        Some(assign)
    }
}

/// What an attempt is sent: its instruction and action with their references filled in, and
/// the upstream files it takes.
type Filled = (String, Option<Action>, Vec<InputFile>);

/// The task's instruction and action with its references to upstream outputs and files filled
/// in (the device gets plain values and the local paths attempt `attempt` will find the files
/// at; a task may refer to any task it depends on, directly or not), and the files it takes;
/// or why they cannot be. `None` if there is no such task.
fn filled_in(
    req: &Request,
    tid: &TaskId,
    attempt: &AttemptId,
) -> Option<Result<Filled, ErrorInfo>> {
    let task = req.graph.task(tid)?;
    let inputs = match files::inputs(&req.graph, tid, attempt) {
        Ok(i) => i,
        Err(e) => return Some(Err(e)),
    };
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
    Some(
        weft_planner::refs::substitute_with_files(
            &task.instruction,
            task.action.as_ref(),
            &outputs,
            &inputs.paths,
        )
        .map(|(instruction, action)| (instruction, action, inputs.files))
        .map_err(|e| ErrorInfo::new("bad_reference", e)),
    )
}

/// Reserves the turns an attempt of `tid` may use from the request's pool (1 for a task that
/// does not work in turns); refused when the pool is spent.
fn reserve_turns(
    b: &mut Batch,
    rid: &RequestId,
    req: &mut Request,
    tid: &TaskId,
) -> Result<u32, ErrorInfo> {
    let Some(task) = req.graph.task(tid) else {
        return Ok(1);
    };
    if !task.uses_turns() {
        return Ok(1);
    }
    let left = req.turns.budget.saturating_sub(req.turns.reserved);
    if left == 0 {
        let budget = req.turns.budget;
        return Err(ErrorInfo::new(
            "budget_exhausted",
            format!("the request's turn budget of {budget} is spent"),
        ));
    }
    let reserved = task.max_turns.min(left);
    req.turns.reserved += reserved;
    b.op(Op::UpdateTurns {
        id: rid.clone(),
        turns: req.turns,
    });
    Ok(reserved)
}

/// The outputs of the tasks directly upstream of `tid` (an attempt's inputs).
fn upstream_outputs(
    graph: &crate::engine::graph::Graph,
    tid: &TaskId,
) -> BTreeMap<TaskId, TaskOutput> {
    graph
        .upstream_ids(tid)
        .into_iter()
        .filter_map(|u| {
            let output = graph.task(&u)?.output.clone()?;
            Some((u, output))
        })
        .collect()
}
