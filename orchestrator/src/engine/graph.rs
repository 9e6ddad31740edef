//! One request's task graph: pure data and rules, no I/O.
//!
//! Architecture invariant: [`Graph::transition`] is the only function that changes a task's
//! status, and it refuses illegal transitions. Edge kinds live on the graph's edges, the same
//! representation that is persisted.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use weft_planner::{Plan, Target};
use weft_protocol::rest::EdgeView;
use weft_protocol::{
    Action, AttemptId, DeviceName, EdgeKind, RequestStatus, RetryPolicy, TaskId, TaskOutput,
    TaskStatus,
};

use crate::store::{TargetRow, TaskRow, TaskSched};

#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    pub position: u32,
    pub title: String,
    pub instruction: String,
    pub action: Option<Action>,
    pub target: TargetRow,
    pub capabilities: Vec<String>,
    pub status: TaskStatus,
    pub output: Option<TaskOutput>,
    pub retry: RetryPolicy,
    pub sched: TaskSched,
    /// Attempts made so far (a `busy` refusal does not count).
    pub attempts_used: u32,
    /// The attempt in flight, if any.
    pub attempt: Option<AttemptId>,
    /// When the task last became ready (for the queue timeout).
    pub ready_since_ms: u64,
    node: NodeIndex,
}

impl Task {
    pub fn row(&self) -> TaskRow {
        TaskRow {
            id: self.id.clone(),
            position: self.position,
            title: self.title.clone(),
            instruction: self.instruction.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            capabilities: self.capabilities.clone(),
            status: self.status,
            retry: self.retry.clone(),
            sched: self.sched.clone(),
            output: self.output.clone(),
        }
    }

    /// The device named by the plan, if any.
    pub fn bound_device(&self) -> Option<&DeviceName> {
        match &self.target {
            TargetRow::Device(d) => Some(d),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("task {task}: illegal transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub task: TaskId,
    pub from: TaskStatus,
    pub to: TaskStatus,
}

/// Whether `from → to` is a legal task transition.
pub fn legal(from: TaskStatus, to: TaskStatus) -> bool {
    use TaskStatus::*;
    matches!(
        (from, to),
        (Pending, Ready | Skipped | Cancelled)
            | (Ready, Dispatched | Failed | Skipped | Cancelled)
            | (Dispatched, Running | Ready | Succeeded | Failed | Cancelled)
            | (Running, Ready | Succeeded | Failed | Cancelled)
    )
}

#[derive(Debug)]
pub struct Graph {
    g: StableDiGraph<TaskId, EdgeKind>,
    tasks: Vec<Task>,
    by_id: HashMap<TaskId, usize>,
}

impl Graph {
    /// Builds the graph of a validated plan; tasks without upstream edges start `ready`.
    pub fn from_plan(plan: &Plan, retry: &RetryPolicy, now_ms: u64) -> Result<Self, String> {
        let rows = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskRow {
                id: t.id.clone(),
                position: u32::try_from(i).unwrap_or(u32::MAX),
                title: t.title.clone(),
                instruction: t.instruction.clone(),
                action: t.action.clone(),
                target: match &t.target {
                    Target::Device(d) => TargetRow::Device(d.clone()),
                    Target::Kind(k) => TargetRow::Kind(k.clone()),
                    Target::Any => TargetRow::Any,
                },
                capabilities: t.capabilities.clone(),
                status: TaskStatus::Pending,
                retry: retry.clone(),
                sched: TaskSched::default(),
                output: None,
            })
            .collect();
        let edges: Vec<EdgeView> = plan
            .edges
            .iter()
            .map(|e| EdgeView {
                from: e.from.clone(),
                to: e.to.clone(),
                kind: e.kind,
            })
            .collect();
        let mut graph = Self::from_rows(rows, &edges, now_ms)?;
        for i in 0..graph.tasks.len() {
            if graph.upstream(i).next().is_none() {
                graph.tasks[i].status = TaskStatus::Ready;
                graph.tasks[i].sched.first_ready_ms = Some(now_ms);
            }
        }
        Ok(graph)
    }

    /// Rebuilds a graph from stored rows, statuses as they are.
    pub fn from_rows(rows: Vec<TaskRow>, edges: &[EdgeView], now_ms: u64) -> Result<Self, String> {
        let mut g = StableDiGraph::new();
        let mut tasks = Vec::with_capacity(rows.len());
        let mut by_id = HashMap::new();
        for (i, t) in rows.into_iter().enumerate() {
            if by_id.contains_key(&t.id) {
                return Err(format!("duplicate task id {}", t.id));
            }
            let node = g.add_node(t.id.clone());
            by_id.insert(t.id.clone(), i);
            tasks.push(Task {
                id: t.id,
                position: t.position,
                title: t.title,
                instruction: t.instruction,
                action: t.action,
                target: t.target,
                capabilities: t.capabilities,
                status: t.status,
                output: t.output,
                retry: t.retry,
                sched: t.sched,
                attempts_used: 0,
                attempt: None,
                ready_since_ms: now_ms,
                node,
            });
        }
        for e in edges {
            let (Some(&a), Some(&b)) = (by_id.get(&e.from), by_id.get(&e.to)) else {
                return Err(format!("edge {} -> {} names a missing task", e.from, e.to));
            };
            g.add_edge(tasks[a].node, tasks[b].node, e.kind);
        }
        if petgraph::algo::is_cyclic_directed(&g) {
            return Err("the graph has a cycle".into());
        }
        Ok(Self { g, tasks, by_id })
    }

    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.by_id.get(id).map(|&i| &self.tasks[i])
    }

    pub fn task_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        self.by_id.get(id).map(|&i| &mut self.tasks[i])
    }

    pub fn edges(&self) -> Vec<EdgeView> {
        self.g
            .edge_references()
            .map(|e| EdgeView {
                from: self.g[e.source()].clone(),
                to: self.g[e.target()].clone(),
                kind: *e.weight(),
            })
            .collect()
    }

    fn index_of(&self, node: NodeIndex) -> usize {
        self.by_id[&self.g[node]]
    }

    fn upstream(&self, i: usize) -> impl Iterator<Item = (usize, EdgeKind)> + '_ {
        self.g
            .edges_directed(self.tasks[i].node, Direction::Incoming)
            .map(|e| (self.index_of(e.source()), *e.weight()))
    }

    fn downstream(&self, i: usize) -> Vec<usize> {
        self.g
            .neighbors_directed(self.tasks[i].node, Direction::Outgoing)
            .map(|n| self.index_of(n))
            .collect()
    }

    /// Upstream task ids of `id` (the tasks whose outputs it receives as inputs).
    pub fn upstream_ids(&self, id: &TaskId) -> Vec<TaskId> {
        match self.by_id.get(id) {
            Some(&i) => self
                .upstream(i)
                .map(|(u, _)| self.tasks[u].id.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The one place a task's status changes.
    pub fn transition(&mut self, id: &TaskId, to: TaskStatus) -> Result<(), IllegalTransition> {
        let Some(&i) = self.by_id.get(id) else {
            return Err(IllegalTransition {
                task: id.clone(),
                from: to,
                to,
            });
        };
        let from = self.tasks[i].status;
        if !legal(from, to) {
            return Err(IllegalTransition {
                task: id.clone(),
                from,
                to,
            });
        }
        self.tasks[i].status = to;
        Ok(())
    }

    /// After `id` ended, decides its pending downstream tasks: those whose edges are all
    /// satisfied become `ready`; those that can no longer be satisfied become `skipped`, and the
    /// skip propagates. Returns every task whose status changed, in order.
    pub fn settle_downstream(&mut self, id: &TaskId, now_ms: u64) -> Vec<TaskId> {
        let mut changed = Vec::new();
        let Some(&start) = self.by_id.get(id) else {
            return changed;
        };
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for d in self.downstream(i) {
                if self.tasks[d].status != TaskStatus::Pending {
                    continue;
                }
                let mut all_ended = true;
                let mut unsatisfiable = false;
                for (u, kind) in self.upstream(d) {
                    let s = self.tasks[u].status;
                    if !s.is_terminal() {
                        all_ended = false;
                    } else if kind == EdgeKind::Success && s != TaskStatus::Succeeded {
                        unsatisfiable = true;
                    }
                }
                let to = if unsatisfiable {
                    TaskStatus::Skipped
                } else if all_ended {
                    TaskStatus::Ready
                } else {
                    continue;
                };
                let did = self.tasks[d].id.clone();
                if self.transition(&did, to).is_ok() {
                    if to == TaskStatus::Ready {
                        self.tasks[d].ready_since_ms = now_ms;
                        self.tasks[d].sched.first_ready_ms = Some(now_ms);
                    } else {
                        stack.push(d);
                    }
                    changed.push(did);
                }
            }
        }
        changed
    }

    /// `Some(final status)` once every task has ended.
    pub fn outcome(&self) -> Option<RequestStatus> {
        if !self.tasks.iter().all(|t| t.status.is_terminal()) {
            return None;
        }
        Some(
            if self.tasks.iter().all(|t| t.status == TaskStatus::Succeeded) {
                RequestStatus::Succeeded
            } else if self.tasks.iter().any(|t| t.status == TaskStatus::Failed) {
                RequestStatus::Failed
            } else if self.tasks.iter().any(|t| t.status == TaskStatus::Cancelled) {
                RequestStatus::Cancelled
            } else {
                RequestStatus::Failed
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_planner::{PlannedEdge, PlannedTask};

    fn plan(n: usize, edges: &[(usize, usize, EdgeKind)]) -> Plan {
        Plan {
            tasks: (1..=n)
                .map(|i| PlannedTask {
                    id: TaskId(format!("t{i}")),
                    title: format!("t{i}"),
                    instruction: String::new(),
                    action: None,
                    target: Target::Any,
                    capabilities: vec![],
                })
                .collect(),
            edges: edges
                .iter()
                .map(|&(a, b, kind)| PlannedEdge {
                    from: TaskId(format!("t{a}")),
                    to: TaskId(format!("t{b}")),
                    kind,
                })
                .collect(),
        }
    }

    fn statuses(g: &Graph) -> Vec<&'static str> {
        g.tasks().iter().map(|t| t.status.as_str()).collect()
    }

    fn finish(g: &mut Graph, id: &str, to: TaskStatus) -> Vec<TaskId> {
        let id = TaskId::from(id);
        g.transition(&id, TaskStatus::Dispatched).unwrap();
        g.transition(&id, TaskStatus::Running).unwrap();
        g.transition(&id, to).unwrap();
        g.settle_downstream(&id, 0)
    }

    #[test]
    fn roots_start_ready() {
        let g = Graph::from_plan(
            &plan(3, &[(1, 3, EdgeKind::Success)]),
            &RetryPolicy::default(),
            0,
        )
        .unwrap();
        assert_eq!(statuses(&g), ["ready", "ready", "pending"]);
    }

    #[test]
    fn fan_in_waits_for_all() {
        use EdgeKind::Success as S;
        let mut g = Graph::from_plan(
            &plan(3, &[(1, 3, S), (2, 3, S)]),
            &RetryPolicy::default(),
            0,
        )
        .unwrap();
        assert!(finish(&mut g, "t1", TaskStatus::Succeeded).is_empty());
        assert_eq!(
            finish(&mut g, "t2", TaskStatus::Succeeded),
            vec![TaskId::from("t3")]
        );
        assert_eq!(statuses(&g), ["succeeded", "succeeded", "ready"]);
    }

    #[test]
    fn failure_skips_transitively_and_request_fails() {
        use EdgeKind::Success as S;
        let mut g = Graph::from_plan(
            &plan(4, &[(1, 2, S), (2, 3, S)]),
            &RetryPolicy::default(),
            0,
        )
        .unwrap();
        let changed = finish(&mut g, "t1", TaskStatus::Failed);
        assert_eq!(changed, vec![TaskId::from("t2"), TaskId::from("t3")]);
        assert_eq!(statuses(&g), ["failed", "skipped", "skipped", "ready"]);
        assert_eq!(g.outcome(), None);
        finish(&mut g, "t4", TaskStatus::Succeeded);
        assert_eq!(g.outcome(), Some(RequestStatus::Failed));
    }

    #[test]
    fn completion_edge_runs_after_failure() {
        let mut g = Graph::from_plan(
            &plan(2, &[(1, 2, EdgeKind::Completion)]),
            &RetryPolicy::default(),
            0,
        )
        .unwrap();
        finish(&mut g, "t1", TaskStatus::Failed);
        assert_eq!(statuses(&g), ["failed", "ready"]);
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let mut g = Graph::from_plan(
            &plan(2, &[(1, 2, EdgeKind::Success)]),
            &RetryPolicy::default(),
            0,
        )
        .unwrap();
        let t2 = TaskId::from("t2");
        assert!(g.transition(&t2, TaskStatus::Running).is_err());
        finish(&mut g, "t1", TaskStatus::Succeeded);
        let t1 = TaskId::from("t1");
        for to in TaskStatus::ALL {
            assert!(g.transition(&t1, to).is_err(), "succeeded -> {to:?}");
        }
    }

    #[test]
    fn cycles_and_dangling_edges_are_refused() {
        use EdgeKind::Success as S;
        assert!(
            Graph::from_plan(
                &plan(2, &[(1, 2, S), (2, 1, S)]),
                &RetryPolicy::default(),
                0
            )
            .is_err()
        );
        assert!(Graph::from_plan(&plan(1, &[(1, 5, S)]), &RetryPolicy::default(), 0).is_err());
    }
}
