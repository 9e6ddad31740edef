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
use weft_protocol::rest::{EdgeView, EditOp, GraphSpec};
use weft_protocol::{DeviceName, EdgeKind, TaskId};

use super::graph::{Graph, Task, TaskDefaults};
use crate::store::TargetRow;

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
        let mut g = Graph::from_rows(Vec::new(), &[], ctx.now_ms).map_err(|m| EditError {
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
            EditOp::AddTask { task } => {
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
                let new = Task::from_spec(task, self.next_position, &ctx.defaults);
                Self::check_target(i, new.bound_device(), &new.capabilities, ctx)?;
                self.insert(new).map_err(|m| err(i, "duplicate_task", m))?;
            }
            EditOp::RemoveTask { task_id } => {
                self.editable(i, task_id)?;
                let Some(&n) = self.by_id.get(task_id) else {
                    return Ok(());
                };
                self.remove(n);
            }
            EditOp::UpdateTask {
                task_id,
                title,
                instruction,
                action,
                device,
                capabilities,
            } => {
                let current = self.editable(i, task_id)?.clone();
                let mut t = current;
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
                    t.target = TargetRow::Device(d.clone());
                }
                Self::check_target(i, t.bound_device(), &t.capabilities, ctx)?;
                if let Some(slot) = self.task_mut(task_id) {
                    *slot = t;
                }
            }
            EditOp::AddEdge {
                from,
                to,
                kind,
                condition,
            } => {
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
                match (kind, condition) {
                    (EdgeKind::Condition, Some(c)) => {
                        weft_planner::condition::validate(c).map_err(|m| {
                            err(i, "invalid_condition", format!("edge {from} -> {to}: {m}"))
                        })?;
                    }
                    (EdgeKind::Condition, None) => {
                        return Err(err(
                            i,
                            "invalid_condition",
                            format!("edge {from} -> {to} is a condition edge without a condition"),
                        ));
                    }
                    (_, Some(_)) => {
                        return Err(err(
                            i,
                            "invalid_condition",
                            format!(
                                "edge {from} -> {to} has a condition but is not a condition edge"
                            ),
                        ));
                    }
                    (_, None) => {}
                }
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
                self.insert_edge(&EdgeView {
                    from: from.clone(),
                    to: to.clone(),
                    kind: *kind,
                    condition: condition.clone(),
                })
                .map_err(|m| err(i, "unknown_task", m))?;
            }
            EditOp::RemoveEdge { from, to } => {
                let (Some(&a), Some(&b)) = (self.by_id.get(from), self.by_id.get(to)) else {
                    return Err(err(
                        i,
                        "unknown_edge",
                        format!("there is no edge {from} -> {to}"),
                    ));
                };
                let Some(e) = self.g.find_edge(a, b) else {
                    return Err(err(
                        i,
                        "unknown_edge",
                        format!("there is no edge {from} -> {to}"),
                    ));
                };
                self.editable(i, to)?;
                self.g.remove_edge(e);
            }
        }
        Ok(())
    }

    /// The first reference from a task that has not started to a task that is not upstream of
    /// it, described; `None` when every reference points upstream.
    fn check_references(&self) -> Option<String> {
        for t in self.tasks().filter(|t| t.editable()) {
            let refs = match weft_planner::refs::task_references(&t.instruction, t.action.as_ref())
            {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_protocol::TaskStatus;

    fn ctx() -> EditCtx {
        let mut devices = HashMap::new();
        devices.insert(
            DeviceName::from("laptop"),
            vec!["shell".to_owned(), "fs".to_owned()],
        );
        EditCtx {
            devices,
            check_targets: true,
            defaults: crate::engine::graph::tests::defaults(),
            now_ms: 0,
        }
    }

    fn ops(v: serde_json::Value) -> Vec<EditOp> {
        serde_json::from_value(v).unwrap()
    }

    fn two_in_a_row() -> Graph {
        let rows = vec![];
        let mut g = Graph::from_rows(rows, &[], 0).unwrap();
        let applied = g
            .apply(
                &ops(json!([
                    {"op": "add_task", "task": {"id": "t1", "instruction": "a", "action": {"kind": "shell", "command": "echo a"}}},
                    {"op": "add_task", "task": {"id": "t2", "instruction": "b", "action": {"kind": "shell", "command": "echo b"}}},
                    {"op": "add_edge", "from": "t1", "to": "t2"},
                ])),
                &ctx(),
            )
            .unwrap();
        g = applied.graph;
        g
    }

    fn statuses(g: &Graph) -> Vec<(String, &'static str)> {
        g.tasks()
            .map(|t| (t.id.to_string(), t.status().as_str()))
            .collect()
    }

    /// Applies `batch` and returns the error code, or "ok".
    fn check(g: &Graph, batch: serde_json::Value) -> String {
        match g.apply(&ops(batch), &ctx()) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{} @{:?}", e.code, e.op),
        }
    }

    #[test]
    fn new_tasks_settle() {
        let g = two_in_a_row();
        assert_eq!(
            statuses(&g),
            [("t1".into(), "ready"), ("t2".into(), "pending")]
        );
    }

    #[test]
    fn invalid_ops_are_named_and_nothing_applies() {
        let g = two_in_a_row();
        let before = format!("{:?}", statuses(&g));
        let cases = [
            (
                json!([{"op": "add_edge", "from": "t2", "to": "t1"}]),
                "cycle @Some(0)",
            ),
            (
                json!([{"op": "add_edge", "from": "t1", "to": "t1"}]),
                "self_edge @Some(0)",
            ),
            (
                json!([{"op": "add_edge", "from": "t1", "to": "t2"}]),
                "edge_exists @Some(0)",
            ),
            (
                json!([{"op": "remove_edge", "from": "t2", "to": "t1"}]),
                "unknown_edge @Some(0)",
            ),
            (
                json!([{"op": "remove_task", "task_id": "t9"}]),
                "unknown_task @Some(0)",
            ),
            (
                json!([{"op": "add_task", "task": {"id": "t1", "instruction": "x"}}]),
                "duplicate_task @Some(0)",
            ),
            (
                json!([{"op": "add_task", "task": {"id": "../x", "instruction": "x"}}]),
                "invalid_task_id @Some(0)",
            ),
            (
                json!([{"op": "add_task", "task": {"id": "t3", "instruction": "x", "device": "toaster"}}]),
                "unknown_device @Some(0)",
            ),
            (
                json!([{"op": "add_task", "task": {"id": "t3", "instruction": "x", "action": {"kind": "http_get", "url": "http://x"}}}]),
                "unknown_capability @Some(0)",
            ),
            (
                json!([{"op": "add_edge", "from": "t1", "to": "t2", "kind": "condition"}]),
                "invalid_condition @Some(0)",
            ),
            // The last op is the bad one: the first two must not stick.
            (
                json!([
                    {"op": "add_task", "task": {"id": "t3", "instruction": "c", "action": {"kind": "shell", "command": "echo c"}}},
                    {"op": "add_edge", "from": "t2", "to": "t3"},
                    {"op": "add_edge", "from": "t3", "to": "t1"},
                ]),
                "cycle @Some(2)",
            ),
            (
                json!([
                    {"op": "add_task", "task": {"id": "t3", "instruction": "c", "action": {"kind": "write_file", "path": "x", "content": "{{t2.output}}"}}},
                ]),
                "bad_reference @None",
            ),
            (json!([]), "empty_edit @None"),
        ];
        for (batch, want) in cases {
            assert_eq!(check(&g, batch.clone()), want, "{batch}");
            assert_eq!(format!("{:?}", statuses(&g)), before);
        }
    }

    #[test]
    fn a_missing_capability_names_who_lacks_it() {
        let g = two_in_a_row();
        let refusal = |device: Option<&str>| {
            let mut task = json!({"id": "t3", "instruction": "fetch",
                "action": {"kind": "http_get", "url": "http://x"}});
            if let Some(d) = device {
                task["device"] = json!(d);
            }
            let e = g
                .apply(&ops(json!([{"op": "add_task", "task": task}])), &ctx())
                .unwrap_err();
            (e.code, e.message)
        };
        assert_eq!(
            refusal(Some("laptop")),
            (
                "unknown_capability",
                "op 0: device `laptop` does not have the capability `http`".to_owned()
            )
        );
        assert_eq!(
            refusal(None),
            (
                "unknown_capability",
                "op 0: no registered device has the capability `http`".to_owned()
            )
        );
    }

    #[test]
    fn started_tasks_are_frozen() {
        let mut g = two_in_a_row();
        let t1 = TaskId::from("t1");
        g.transition(&t1, TaskStatus::Dispatched).unwrap();
        for (batch, want) in [
            (
                json!([{"op": "remove_task", "task_id": "t1"}]),
                "task_not_editable @Some(0)",
            ),
            (
                json!([{"op": "update_task", "task_id": "t1", "title": "x"}]),
                "task_not_editable @Some(0)",
            ),
            (
                json!([
                    {"op": "add_task", "task": {"id": "t0", "instruction": "x", "action": {"kind": "shell", "command": "true"}}},
                    {"op": "add_edge", "from": "t0", "to": "t1"},
                ]),
                "edge_into_started_task @Some(1)",
            ),
            (
                json!([{"op": "remove_edge", "from": "t1", "to": "t2"}]),
                "ok",
            ),
        ] {
            assert_eq!(check(&g, batch.clone()), want, "{batch}");
        }
    }

    #[test]
    fn removing_an_edge_can_make_a_task_ready_and_adding_one_makes_it_wait() {
        let g = two_in_a_row();
        let a = g
            .apply(
                &ops(json!([{"op": "remove_edge", "from": "t1", "to": "t2"}])),
                &ctx(),
            )
            .unwrap();
        assert_eq!(a.changed, vec![TaskId::from("t2")]);
        assert_eq!(
            a.graph.task(&"t2".into()).unwrap().status(),
            TaskStatus::Ready
        );
        let b = a
            .graph
            .apply(
                &ops(json!([{"op": "add_edge", "from": "t1", "to": "t2", "kind": "completion"}])),
                &ctx(),
            )
            .unwrap();
        assert_eq!(
            b.graph.task(&"t2".into()).unwrap().status(),
            TaskStatus::Pending
        );
    }

    #[test]
    fn references_must_point_upstream_even_transitively() {
        let g = two_in_a_row();
        let spec = |content: &str| {
            json!({"op": "add_task", "task": {"id": "t3", "instruction": "w",
                "action": {"kind": "write_file", "path": "out.txt", "content": content}}})
        };
        // t1 is upstream of t3 through t2.
        assert_eq!(
            check(
                &g,
                json!([spec("{{t1.output.stdout}}"), {"op": "add_edge", "from": "t2", "to": "t3"}])
            ),
            "ok"
        );
        assert_eq!(
            check(&g, json!([spec("{{t1.output}}")])),
            "bad_reference @None"
        );
    }
}

/// Random sequences of edit batches and task results: the invariants hold after every step,
/// and the journal alone rebuilds the live graph.
#[cfg(test)]
mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use serde_json::json;
    use weft_protocol::rest::{EditOp, EventKind, TaskSpec};
    use weft_protocol::{
        Action, Condition, ConditionOp, ConditionSource, DeviceName, EdgeKind, TaskId, TaskOutput,
        TaskStatus,
    };

    use super::EditCtx;
    use crate::engine::graph::Graph;

    const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

    #[derive(Debug, Clone)]
    enum Step {
        Edit(Vec<EditOp>),
        /// Dispatch the n-th ready task and let it run.
        Start(usize),
        /// Finish the n-th ready or running task with this status and exit code.
        Finish(usize, bool, i64),
        /// The n-th running task's attempt fails and the task waits for another.
        Retry(usize),
        /// Cancel the n-th unfinished task.
        Cancel(usize),
    }

    /// The n-th task (wrapping) of those `keep` selects.
    fn nth(g: &Graph, n: usize, keep: impl Fn(TaskStatus) -> bool) -> Option<TaskId> {
        let ids: Vec<TaskId> = g
            .tasks()
            .filter(|t| keep(t.status()))
            .map(|t| t.id.clone())
            .collect();
        ids.get(n % ids.len().max(1)).cloned()
    }

    /// Moves `id` through `steps`, journaling each as the engine does.
    fn walk(g: &mut Graph, id: &TaskId, steps: &[TaskStatus], journal: &mut Vec<EventKind>) {
        for &step in steps {
            g.transition(id, step).unwrap();
            status_events(g, std::slice::from_ref(id), journal);
        }
    }

    fn id() -> impl Strategy<Value = TaskId> {
        prop::sample::select(IDS.to_vec()).prop_map(TaskId::from)
    }

    fn op() -> impl Strategy<Value = EditOp> {
        let kind = prop_oneof![
            Just((EdgeKind::Success, None)),
            Just((EdgeKind::Completion, None)),
            (0i64..2).prop_map(|v| (
                EdgeKind::Condition,
                Some(Condition {
                    on: ConditionSource::Data,
                    path: "/exit_code".into(),
                    op: ConditionOp::Equals,
                    value: Some(json!(v)),
                })
            )),
            // A condition edge without a condition: always refused.
            Just((EdgeKind::Condition, None)),
        ];
        prop_oneof![
            (id(), prop::option::of(id())).prop_map(|(id, refer)| {
                let content = refer.map_or("x".to_owned(), |r| format!("{{{{{r}.output}}}}"));
                EditOp::AddTask {
                    task: TaskSpec {
                        id,
                        title: String::new(),
                        instruction: "w".into(),
                        action: Some(Action::WriteFile {
                            path: "f".into(),
                            content,
                        }),
                        device: None,
                        device_kind: None,
                        capabilities: vec![],
                        retry: None,
                        max_turns: None,
                    },
                }
            }),
            id().prop_map(|task_id| EditOp::RemoveTask { task_id }),
            (id(), "[a-z]{1,5}").prop_map(|(task_id, t)| EditOp::UpdateTask {
                task_id,
                title: Some(t),
                instruction: None,
                action: None,
                device: None,
                capabilities: None,
            }),
            (id(), id(), kind).prop_map(|(from, to, (kind, condition))| EditOp::AddEdge {
                from,
                to,
                kind,
                condition,
            }),
            (id(), id()).prop_map(|(from, to)| EditOp::RemoveEdge { from, to }),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            prop::collection::vec(op(), 1..5).prop_map(Step::Edit),
            (0usize..4, any::<bool>(), 0i64..2).prop_map(|(n, ok, code)| Step::Finish(n, ok, code)),
            (0usize..4).prop_map(Step::Start),
            (0usize..4).prop_map(Step::Retry),
            (0usize..6).prop_map(Step::Cancel),
        ]
    }

    fn ctx() -> EditCtx {
        let mut devices = HashMap::new();
        devices.insert(DeviceName::from("d"), vec!["fs".to_owned()]);
        EditCtx {
            devices,
            check_targets: true,
            defaults: crate::engine::graph::tests::defaults(),
            now_ms: 0,
        }
    }

    fn status_events(g: &Graph, changed: &[TaskId], journal: &mut Vec<EventKind>) {
        for id in changed {
            journal.push(EventKind::TaskStatus {
                task_id: id.clone(),
                status: g.task(id).unwrap().status(),
                attempt_id: None,
                device: None,
                output: None,
                error: None,
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn edits_and_results_keep_the_invariants(steps in prop::collection::vec(step(), 1..25)) {
            let mut g = Graph::from_rows(Vec::new(), &[], 0).unwrap();
            let mut journal = vec![EventKind::RequestCreated {
                text: String::new(),
                tasks: vec![],
                edges: vec![],
            }];
            let mut version = 1u64;
            for step in steps {
                let before = g.snapshot();
                let started: Vec<_> = g
                    .tasks()
                    .filter(|t| !t.editable())
                    .map(|t| (t.id.clone(), t.clone()))
                    .collect();
                match step {
                    Step::Edit(ops) => match g.apply(&ops, &ctx()) {
                        Ok(applied) => {
                            version += 1;
                            journal.push(EventKind::GraphEdited { version, ops });
                            g = applied.graph;
                            status_events(&g, &applied.changed, &mut journal);
                        }
                        // Refused: nothing changed.
                        Err(_) => prop_assert_eq!(&g.snapshot(), &before),
                    },
                    Step::Start(n) => {
                        let Some(id) = nth(&g, n, |s| s == TaskStatus::Ready) else { continue };
                        walk(&mut g, &id, &[TaskStatus::Dispatched, TaskStatus::Running], &mut journal);
                    }
                    Step::Retry(n) => {
                        let Some(id) = nth(&g, n, |s| s == TaskStatus::Running) else { continue };
                        g.transition(&id, TaskStatus::Ready).unwrap();
                        journal.push(EventKind::TaskRetrying {
                            task_id: id,
                            attempt_id: "a".into(),
                            attempts: 1,
                            retry_at_ms: 0,
                            error: weft_protocol::ErrorInfo::new("failed", "x"),
                        });
                    }
                    Step::Cancel(n) => {
                        let Some(id) = nth(&g, n, |s| !s.is_terminal()) else { continue };
                        walk(&mut g, &id, &[TaskStatus::Cancelled], &mut journal);
                        let changed = g.settle_downstream(&id, 0);
                        status_events(&g, &changed, &mut journal);
                    }
                    Step::Finish(n, ok, code) => {
                        let startable = |s| matches!(s, TaskStatus::Ready | TaskStatus::Running);
                        let Some(id) = nth(&g, n, startable) else { continue };
                        let to = if ok { TaskStatus::Succeeded } else { TaskStatus::Failed };
                        let output = TaskOutput { summary: "s".into(), data: json!({"exit_code": code}) };
                        if g.task(&id).unwrap().status() == TaskStatus::Ready {
                            walk(&mut g, &id, &[TaskStatus::Dispatched, TaskStatus::Running], &mut journal);
                        }
                        g.transition(&id, to).unwrap();
                        g.task_mut(&id).unwrap().output = Some(output.clone());
                        journal.push(EventKind::TaskStatus {
                            task_id: id.clone(),
                            status: to,
                            attempt_id: None,
                            device: None,
                            output: Some(output),
                            error: None,
                        });
                        let changed = g.settle_downstream(&id, 0);
                        status_events(&g, &changed, &mut journal);
                    }
                }
                // Acyclic, always.
                prop_assert!(petgraph::algo::toposort(&g.g, None).is_ok());
                // Tasks that had started are untouched by anything but their own results.
                for (id, t) in &started {
                    if let Some(now) = g.task(id) {
                        prop_assert_eq!(&now.title, &t.title);
                        prop_assert_eq!(&now.action, &t.action);
                        if t.status().is_terminal() {
                            prop_assert_eq!(now.status(), t.status());
                        }
                    } else {
                        prop_assert!(false, "started task {} was removed", id);
                    }
                }
                // No waiting task is stuck: its status agrees with its edges.
                for t in g.tasks() {
                    let n = g.by_id[&t.id];
                    let r = g.readiness(n);
                    match t.status() {
                        TaskStatus::Pending => prop_assert_eq!(r, super::super::graph::Readiness::Waiting),
                        TaskStatus::Ready => prop_assert_eq!(r, super::super::graph::Readiness::Ready),
                        _ => {}
                    }
                }
                // The ready index holds exactly the ready tasks, in task order.
                let indexed: Vec<&TaskId> = g.ready().map(|t| &t.id).collect();
                let ready: Vec<&TaskId> = g
                    .tasks()
                    .filter(|t| t.status() == TaskStatus::Ready)
                    .map(|t| &t.id)
                    .collect();
                prop_assert_eq!(indexed, ready);
                // The journal rebuilds the live graph, its ready index included.
                let replayed =
                    Graph::replay(&journal, &crate::engine::graph::tests::defaults()).unwrap();
                prop_assert_eq!(replayed.snapshot(), g.snapshot());
                let replayed_ready: Vec<&TaskId> = replayed.ready().map(|t| &t.id).collect();
                let live_ready: Vec<&TaskId> = g.ready().map(|t| &t.id).collect();
                prop_assert_eq!(replayed_ready, live_ready);
            }
        }
    }
}
