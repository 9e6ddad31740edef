//! Live edits of a graph: a batch of ops applied atomically, or not at all. Pure.
//!
//! Architecture invariant: every rule about what may change in a running graph is enforced
//! here, each with its own error code: the graph stays acyclic; tasks that have started or
//! ended (dispatched, running, succeeded, failed, skipped, cancelled) are never changed or
//! removed, and gain no new incoming edges; named devices and required capabilities exist;
//! references point upstream; sizes are bounded.

use std::collections::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::visit::EdgeRef;
use weft_protocol::rest::{EdgeView, EditOp, GraphSpec, TaskSpec};
use weft_protocol::{DeviceName, EdgeKind, TaskId};

use super::graph::{Graph, Target, Task, TaskDefaults};

/// Most ops in one batch.
pub const MAX_OPS_PER_BATCH: usize = 100;
/// Most tasks in one graph.
pub const MAX_TASKS_PER_GRAPH: usize = 10_000;

/// What an edit is checked against.
#[derive(Debug, Clone)]
pub struct EditCtx {
    /// Registered devices and the capabilities each advertised.
    pub devices: HashMap<DeviceName, Vec<String>>,
    /// Whether named devices and capabilities must exist (off when replaying a journal:
    /// what was valid then stays valid).
    pub check_targets: bool,
    pub defaults: TaskDefaults,
    pub now_ms: u64,
}

/// Why a batch was refused: which op (if one) and why, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EditError {
    pub op: Option<usize>,
    pub code: &'static str,
    pub message: String,
}

/// A task's declared files, as `add_task` and `update_task` take them: outputs valid names or
/// globs, at most [`weft_protocol::files::MAX_FILES_PER_SPEC`] inputs (what each input refers
/// to is checked with the graph's other references).
fn check_files(
    i: usize,
    task: &TaskId,
    outputs: Option<&weft_protocol::FilesSpec>,
    inputs: Option<&weft_protocol::FilesSpec>,
) -> Result<(), EditError> {
    if let Some(outputs) = outputs
        && let Err(e) = outputs.validate()
    {
        return Err(err(i, "invalid_task", format!("task {task}: outputs: {e}")));
    }
    if let Some(inputs) = inputs
        && inputs.files.len() > weft_protocol::files::MAX_FILES_PER_SPEC
    {
        return Err(err(
            i,
            "invalid_task",
            format!(
                "task {task}: inputs: at most {} entries",
                weft_protocol::files::MAX_FILES_PER_SPEC
            ),
        ));
    }
    Ok(())
}

fn err(op: usize, code: &'static str, message: String) -> EditError {
    EditError {
        op: Some(op),
        code,
        message: format!("op {op}: {message}"),
    }
}

/// A batch that applied: the new graph and the tasks whose status changed because of it.
#[derive(Debug)]
pub struct Applied {
    pub graph: Graph,
    pub changed: Vec<TaskId>,
}

impl Graph {
    /// Applies `ops` to a copy of this graph. On success returns the new graph; on the first
    /// invalid op returns why, and this graph is untouched.
    pub fn apply(&self, ops: &[EditOp], ctx: &EditCtx) -> Result<Applied, EditError> {
        if ops.is_empty() {
            return Err(EditError {
                op: None,
                code: "empty_edit",
                message: "the batch has no ops".into(),
            });
        }
        if ops.len() > MAX_OPS_PER_BATCH {
            return Err(EditError {
                op: None,
                code: "too_many_ops",
                message: format!(
                    "{} ops in one batch; the limit is {MAX_OPS_PER_BATCH}",
                    ops.len()
                ),
            });
        }
        let mut g = self.clone();
        g.apply_ops(ops, ctx)?;
        if let Some(bad) = g.check_references() {
            return Err(EditError {
                op: None,
                code: "bad_reference",
                message: bad,
            });
        }
        let changed = g.settle_all(ctx.now_ms);
        Ok(Applied { graph: g, changed })
    }

    /// A graph submitted whole (`POST /v1/requests` with `graph`), checked exactly like an edit
    /// that adds every task and edge to an empty graph, without the per-batch op limit.
    pub fn from_given(spec: &GraphSpec, ctx: &EditCtx) -> Result<Applied, EditError> {
        if spec.tasks.is_empty() {
            return Err(EditError {
                op: None,
                code: "empty_graph",
                message: "the graph has no tasks".into(),
            });
        }
        let ops: Vec<EditOp> = spec
            .tasks
            .iter()
            .map(|t| EditOp::AddTask { task: t.clone() })
            .chain(spec.edges.iter().map(|e| EditOp::AddEdge {
                from: e.from.clone(),
                to: e.to.clone(),
                kind: e.kind,
                condition: e.condition.clone(),
            }))
            .collect();
        let mut g = Graph::from_records(Vec::new(), &[], ctx.now_ms).map_err(|m| EditError {
            op: None,
            code: "invalid_graph",
            message: m,
        })?;
        g.apply_ops(&ops, ctx)?;
        if let Some(bad) = g.check_references() {
            return Err(EditError {
                op: None,
                code: "bad_reference",
                message: bad,
            });
        }
        let changed = g.settle_all(ctx.now_ms);
        Ok(Applied { graph: g, changed })
    }

    /// Applies each op in order, without settling statuses (the journal replays those).
    pub(super) fn apply_ops(&mut self, ops: &[EditOp], ctx: &EditCtx) -> Result<(), EditError> {
        for (i, op) in ops.iter().enumerate() {
            self.apply_op(i, op, ctx)?;
        }
        Ok(())
    }

    fn editable(&self, i: usize, id: &TaskId) -> Result<&Task, EditError> {
        let t = self
            .task(id)
            .ok_or_else(|| err(i, "unknown_task", format!("there is no task {id}")))?;
        if !t.editable() {
            return Err(err(
                i,
                "task_not_editable",
                format!(
                    "task {id} is {} and can no longer be changed",
                    t.status().as_str()
                ),
            ));
        }
        Ok(t)
    }

    fn check_target(
        i: usize,
        device: Option<&DeviceName>,
        caps: &[String],
        ctx: &EditCtx,
    ) -> Result<(), EditError> {
        if !ctx.check_targets {
            return Ok(());
        }
        if let Some(d) = device
            && !ctx.devices.contains_key(d)
        {
            return Err(err(
                i,
                "unknown_device",
                format!("no device named `{d}` is registered"),
            ));
        }
        for c in caps {
            let somewhere = match device {
                Some(d) => ctx.devices.get(d).is_some_and(|cs| cs.contains(c)),
                None => ctx.devices.values().any(|cs| cs.contains(c)),
            };
            if !somewhere {
                let message = match device {
                    Some(d) => format!("device `{d}` does not have the capability `{c}`"),
                    None => format!("no registered device has the capability `{c}`"),
                };
                return Err(err(i, "unknown_capability", message));
            }
        }
        Ok(())
    }

    fn apply_op(&mut self, i: usize, op: &EditOp, ctx: &EditCtx) -> Result<(), EditError> {
        match op {
            EditOp::AddTask { task } => self.add_task(i, task, ctx),
            EditOp::RemoveTask { task_id } => {
                self.editable(i, task_id)?;
                if let Some(&n) = self.by_id.get(task_id) {
                    self.remove(n);
                }
                Ok(())
            }
            EditOp::UpdateTask { task_id, .. } => self.update_task(i, task_id, op, ctx),
            EditOp::AddEdge {
                from,
                to,
                kind,
                condition,
            } => {
                let edge = EdgeView {
                    from: from.clone(),
                    to: to.clone(),
                    kind: *kind,
                    condition: condition.clone(),
                };
                self.add_edge(i, edge)
            }
            EditOp::RemoveEdge { from, to } => self.remove_edge(i, from, to),
        }
    }

    fn add_task(&mut self, i: usize, task: &TaskSpec, ctx: &EditCtx) -> Result<(), EditError> {
        if !weft_protocol::ids::valid_device_name(task.id.as_str()) {
            return Err(err(
                i,
                "invalid_task_id",
                format!(
                    "task id `{}`: use 1-64 letters, digits, '-' or '_'",
                    task.id
                ),
            ));
        }
        if self.task(&task.id).is_some() {
            return Err(err(
                i,
                "duplicate_task",
                format!("a task {} already exists", task.id),
            ));
        }
        if self.len() >= MAX_TASKS_PER_GRAPH {
            return Err(err(
                i,
                "too_many_tasks",
                format!("a graph holds at most {MAX_TASKS_PER_GRAPH} tasks"),
            ));
        }
        if task.instruction.trim().is_empty() && task.action.is_none() {
            return Err(err(
                i,
                "invalid_task",
                format!("task {} has neither an instruction nor an action", task.id),
            ));
        }
        check_files(i, &task.id, task.outputs.as_ref(), task.inputs.as_ref())?;
        let new = Task::from_spec(task, self.next_position, &ctx.defaults);
        Self::check_target(i, new.bound_device(), &new.capabilities, ctx)?;
        self.insert(new).map_err(|m| err(i, "duplicate_task", m))
    }

    /// Applies an `update_task` op: absent fields stay; an action brings its capability;
    /// `outputs` and `inputs` replace the task's lists, checked as at submit (their references
    /// are checked with the others once the batch is applied).
    fn update_task(
        &mut self,
        i: usize,
        task_id: &TaskId,
        op: &EditOp,
        ctx: &EditCtx,
    ) -> Result<(), EditError> {
        let EditOp::UpdateTask {
            title,
            instruction,
            action,
            device,
            capabilities,
            outputs,
            inputs,
            ..
        } = op
        else {
            return Ok(());
        };
        let mut t = self.editable(i, task_id)?.clone();
        check_files(i, task_id, outputs.as_ref(), inputs.as_ref())?;
        if let Some(v) = outputs {
            t.files.outputs.clone_from(&v.files);
        }
        if let Some(v) = inputs {
            t.files.inputs.clone_from(&v.files);
        }
        if let Some(v) = title {
            t.title.clone_from(v);
        }
        if let Some(v) = instruction {
            t.instruction.clone_from(v);
        }
        if let Some(v) = capabilities {
            t.capabilities.clone_from(v);
        }
        if let Some(a) = action {
            t.action = Some(a.clone());
        }
        if let Some(a) = &t.action {
            let cap = a.capability().to_owned();
            if !t.capabilities.contains(&cap) {
                t.capabilities.push(cap);
            }
        }
        if let Some(d) = device {
            t.target = Target::Device(d.clone());
        }
        Self::check_target(i, t.bound_device(), &t.capabilities, ctx)?;
        if let Some(slot) = self.task_mut(task_id) {
            *slot = t;
        }
        Ok(())
    }

    fn add_edge(&mut self, i: usize, e: EdgeView) -> Result<(), EditError> {
        let (from, to) = (&e.from, &e.to);
        if from == to {
            return Err(err(
                i,
                "self_edge",
                format!("{from} cannot depend on itself"),
            ));
        }
        if self.task(from).is_none() {
            return Err(err(i, "unknown_task", format!("there is no task {from}")));
        }
        let target = self
            .task(to)
            .ok_or_else(|| err(i, "unknown_task", format!("there is no task {to}")))?;
        if !target.editable() {
            return Err(err(
                i,
                "edge_into_started_task",
                format!(
                    "task {to} is {}; edges into a task that has started cannot be added",
                    target.status().as_str()
                ),
            ));
        }
        check_condition(i, &e)?;
        let (a, b) = (self.by_id[from], self.by_id[to]);
        if self.g.find_edge(a, b).is_some() {
            return Err(err(
                i,
                "edge_exists",
                format!("the edge {from} -> {to} already exists"),
            ));
        }
        if petgraph::algo::has_path_connecting(&self.g, b, a, None) {
            return Err(err(
                i,
                "cycle",
                format!("the edge {from} -> {to} would make a cycle"),
            ));
        }
        self.insert_edge(&e).map_err(|m| err(i, "unknown_task", m))
    }

    fn remove_edge(&mut self, i: usize, from: &TaskId, to: &TaskId) -> Result<(), EditError> {
        let no_edge = || {
            err(
                i,
                "unknown_edge",
                format!("there is no edge {from} -> {to}"),
            )
        };
        let (Some(&a), Some(&b)) = (self.by_id.get(from), self.by_id.get(to)) else {
            return Err(no_edge());
        };
        let Some(e) = self.g.find_edge(a, b) else {
            return Err(no_edge());
        };
        self.editable(i, to)?;
        self.g.remove_edge(e);
        Ok(())
    }

    /// The first reference from a task that has not started to a task that is not upstream of
    /// it, described; `None` when every reference points upstream.
    fn check_references(&self) -> Option<String> {
        for t in self.tasks().filter(|t| t.editable()) {
            let refs = weft_planner::refs::task_references(&t.instruction, t.action.as_ref())
                .and_then(|mut r| {
                    r.extend(weft_planner::refs::input_references(&t.files.inputs)?);
                    Ok(r)
                });
            let refs = match refs {
                Ok(r) => r,
                Err(e) => return Some(format!("task {}: {e}", t.id)),
            };
            if refs.is_empty() {
                continue;
            }
            let ancestors = self.ancestors(&t.id);
            for r in refs {
                if !ancestors.contains(&r.task) {
                    return Some(format!(
                        "task {} refers to {}, which is not upstream of it",
                        t.id, r.task
                    ));
                }
            }
        }
        None
    }

    /// Every task `id` depends on, directly or not.
    pub fn ancestors(&self, id: &TaskId) -> HashSet<TaskId> {
        let mut seen = HashSet::new();
        let Some(&start) = self.by_id.get(id) else {
            return seen;
        };
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for e in self.g.edges_directed(n, Direction::Incoming) {
                let u = e.source();
                if seen.insert(self.g[u].id.clone()) {
                    stack.push(u);
                }
            }
        }
        seen
    }
}

/// A condition edge carries exactly one valid condition; no other kind carries one.
fn check_condition(i: usize, e: &EdgeView) -> Result<(), EditError> {
    let (from, to) = (&e.from, &e.to);
    match (e.kind, &e.condition) {
        (EdgeKind::Condition, Some(c)) => weft_planner::condition::validate(c)
            .map_err(|m| err(i, "invalid_condition", format!("edge {from} -> {to}: {m}"))),
        (EdgeKind::Condition, None) => Err(err(
            i,
            "invalid_condition",
            format!("edge {from} -> {to} is a condition edge without a condition"),
        )),
        (_, Some(_)) => Err(err(
            i,
            "invalid_condition",
            format!("edge {from} -> {to} has a condition but is not a condition edge"),
        )),
        (_, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
