//! One request's task graph: pure data and rules, no I/O.
//!
//! Architecture invariant: [`Graph::transition`] is the only function that changes a task's
//! status, and it refuses illegal transitions. Edge kinds (and conditions) live on the graph's
//! edges, the same representation that is persisted and journaled.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use weft_planner::Plan;
use weft_protocol::rest::{EdgeView, TaskSpec};
use weft_protocol::{
    Action, AttemptId, Condition, DeviceName, EdgeKind, RequestStatus, RetryPolicy, TaskId,
    TaskOutput, TaskStatus,
};

pub use task::{Target, TaskFiles, TaskRecord, TaskSched};

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub position: u32,
    pub title: String,
    pub instruction: String,
    pub action: Option<Action>,
    pub target: Target,
    pub capabilities: Vec<String>,
    /// Changed only by [`Graph::transition`].
    status: TaskStatus,
    pub output: Option<TaskOutput>,
    pub retry: RetryPolicy,
    pub sched: TaskSched,
    /// Turn limit of each attempt, for executors that work in turns.
    pub max_turns: u32,
    /// Attempts made so far (a `busy` refusal does not count).
    pub attempts_used: u32,
    /// The attempt in flight, if any.
    pub attempt: Option<AttemptId>,
    /// When the task last became ready (for the queue timeout).
    pub ready_since_ms: u64,
    /// The files it declares (`outputs`, `inputs`).
    pub files: TaskFiles,
    /// The files its succeeding attempt produced (empty until it succeeds).
    pub produced: Vec<weft_protocol::FileRef>,
}

impl Task {
    fn from_record(t: TaskRecord, now_ms: u64) -> Self {
        Self {
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
            max_turns: t.max_turns,
            attempts_used: 0,
            attempt: None,
            ready_since_ms: now_ms,
            files: t.files,
            produced: t.produced,
        }
    }

    pub fn status(&self) -> TaskStatus {
        self.status
    }

    /// Whether the task's executor works in turns drawn from the request's pool: an LLM
    /// executor (no explicit action) or a turn-based action.
    pub fn uses_turns(&self) -> bool {
        self.action.as_ref().is_none_or(Action::uses_turns)
    }

    /// A new, pending task from its spec.
    pub fn from_spec(spec: &TaskSpec, position: u32, defaults: &TaskDefaults) -> Self {
        let mut capabilities = spec.capabilities.clone();
        // An explicit action needs its executor; an instruction alone needs a device model.
        let cap = spec
            .action
            .as_ref()
            .map_or("llm", Action::capability)
            .to_owned();
        if !capabilities.contains(&cap) {
            capabilities.push(cap);
        }
        let title = if spec.title.trim().is_empty() {
            default_title(&spec.instruction)
        } else {
            spec.title.clone()
        };
        Self {
            id: spec.id.clone(),
            position,
            title,
            instruction: spec.instruction.clone(),
            action: spec.action.clone(),
            target: match (&spec.device, &spec.device_kind) {
                (Some(d), _) => Target::Device(d.clone()),
                (None, Some(k)) => Target::Kind(k.clone()),
                (None, None) => Target::Any,
            },
            capabilities,
            status: TaskStatus::Pending,
            output: None,
            retry: spec.retry.clone().unwrap_or_else(|| defaults.retry.clone()),
            sched: TaskSched::default(),
            max_turns: spec.max_turns.unwrap_or(defaults.max_turns).max(1),
            attempts_used: 0,
            attempt: None,
            ready_since_ms: 0,
            files: TaskFiles::of_spec(spec),
            produced: Vec::new(),
        }
    }

    /// The task as the journal records it.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec {
            id: self.id.clone(),
            title: self.title.clone(),
            instruction: self.instruction.clone(),
            action: self.action.clone(),
            device: self.bound_device().cloned(),
            device_kind: match &self.target {
                Target::Kind(k) => Some(k.clone()),
                _ => None,
            },
            capabilities: self.capabilities.clone(),
            retry: Some(self.retry.clone()),
            max_turns: Some(self.max_turns),
            outputs: files_spec(&self.files.outputs),
            inputs: files_spec(&self.files.inputs),
        }
    }

    /// What the store keeps of the task.
    pub fn record(&self) -> TaskRecord {
        TaskRecord {
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
            max_turns: self.max_turns,
            output: self.output.clone(),
            files: self.files.clone(),
            produced: self.produced.clone(),
        }
    }

    /// The device named by the plan, if any.
    pub fn bound_device(&self) -> Option<&DeviceName> {
        match &self.target {
            Target::Device(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the task may still be edited or removed: it has not started.
    pub fn editable(&self) -> bool {
        matches!(self.status, TaskStatus::Pending | TaskStatus::Ready)
    }
}

/// A declared files list as a spec writes it: absent when empty.
fn files_spec(files: &[String]) -> Option<weft_protocol::FilesSpec> {
    (!files.is_empty()).then(|| weft_protocol::FilesSpec {
        files: files.to_vec(),
    })
}

fn default_title(instruction: &str) -> String {
    let flat: String = instruction
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() > 80 {
        format!("{}…", flat.chars().take(80).collect::<String>())
    } else {
        flat.to_owned()
    }
}

/// What a task gets when its plan or spec does not say.
#[derive(Debug, Clone)]
pub struct TaskDefaults {
    pub retry: RetryPolicy,
    pub max_turns: u32,
}

/// A dependency edge: its kind, and its condition when the kind is `condition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub kind: EdgeKind,
    pub condition: Option<Condition>,
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
            // A ready task goes back to waiting when an edit gives it an unfinished upstream.
            | (Ready, Pending | Dispatched | Failed | Skipped | Cancelled)
            | (Dispatched, Running | Ready | Succeeded | Failed | Cancelled)
            | (Running, Ready | Succeeded | Failed | Cancelled)
    )
}

/// Whether a waiting task can run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Some upstream task has not ended.
    Waiting,
    /// Every edge is satisfied.
    Ready,
    /// Some edge can never be satisfied: the task will be skipped.
    Unsatisfiable,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub(super) g: StableDiGraph<Task, Edge>,
    pub(super) by_id: HashMap<TaskId, NodeIndex>,
    /// Nodes in task order (by `position`).
    pub(super) order: Vec<NodeIndex>,
    pub(super) next_position: u32,
    /// The `ready` tasks, by position: kept by [`Graph::insert`], [`Graph::transition`] and
    /// task removal, so that scheduling never walks the whole graph.
    ready: BTreeSet<(u32, NodeIndex)>,
}

impl Graph {
    /// Builds the graph of a validated plan; tasks without upstream edges start `ready`.
    pub fn from_plan(plan: &Plan, defaults: &TaskDefaults, now_ms: u64) -> Result<Self, String> {
        let tasks = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskRecord {
                id: t.id.clone(),
                position: u32::try_from(i).unwrap_or(u32::MAX),
                title: t.title.clone(),
                instruction: t.instruction.clone(),
                action: t.action.clone(),
                target: Target::from(&t.target),
                capabilities: t.capabilities.clone(),
                status: TaskStatus::Pending,
                retry: defaults.retry.clone(),
                sched: TaskSched::default(),
                max_turns: t.max_turns.unwrap_or(defaults.max_turns).max(1),
                output: None,
                files: TaskFiles {
                    outputs: t.outputs.clone(),
                    inputs: t.inputs.clone(),
                },
                produced: Vec::new(),
            })
            .collect();
        let edges: Vec<EdgeView> = plan
            .edges
            .iter()
            .map(|e| EdgeView {
                from: e.from.clone(),
                to: e.to.clone(),
                kind: e.kind,
                condition: e.condition.clone(),
            })
            .collect();
        let mut graph = Self::from_records(tasks, &edges, now_ms)?;
        graph.settle_all(now_ms);
        Ok(graph)
    }

    /// Rebuilds a graph from stored tasks, statuses as they are.
    pub fn from_records(
        tasks: Vec<TaskRecord>,
        edges: &[EdgeView],
        now_ms: u64,
    ) -> Result<Self, String> {
        let mut graph = Self {
            g: StableDiGraph::new(),
            by_id: HashMap::new(),
            order: Vec::new(),
            next_position: 0,
            ready: BTreeSet::new(),
        };
        for task in tasks {
            graph.insert(Task::from_record(task, now_ms))?;
        }
        for e in edges {
            graph.insert_edge(e)?;
        }
        if petgraph::algo::is_cyclic_directed(&graph.g) {
            return Err("the graph has a cycle".into());
        }
        Ok(graph)
    }

    /// Adds a task node. Errors on a duplicate id.
    pub(super) fn insert(&mut self, task: Task) -> Result<(), String> {
        if self.by_id.contains_key(&task.id) {
            return Err(format!("duplicate task id {}", task.id));
        }
        self.next_position = self.next_position.max(task.position.saturating_add(1));
        let id = task.id.clone();
        let position = task.position;
        let ready = task.status == TaskStatus::Ready;
        let node = self.g.add_node(task);
        if ready {
            self.ready.insert((position, node));
        }
        self.by_id.insert(id, node);
        let at = self
            .order
            .partition_point(|&n| self.g[n].position <= position);
        self.order.insert(at, node);
        Ok(())
    }

    /// Adds an edge between existing tasks (no cycle check).
    pub(super) fn insert_edge(&mut self, e: &EdgeView) -> Result<(), String> {
        let (Some(&a), Some(&b)) = (self.by_id.get(&e.from), self.by_id.get(&e.to)) else {
            return Err(format!("edge {} -> {} names a missing task", e.from, e.to));
        };
        self.g.add_edge(
            a,
            b,
            Edge {
                kind: e.kind,
                condition: e.condition.clone(),
            },
        );
        Ok(())
    }

    /// Tasks in order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> + '_ {
        self.order.iter().map(|&n| &self.g[n])
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.by_id.get(id).map(|&n| &self.g[n])
    }

    pub fn task_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        self.by_id.get(id).map(|&n| &mut self.g[n])
    }

    pub fn edges(&self) -> Vec<EdgeView> {
        let mut edges: Vec<EdgeView> = self
            .g
            .edge_references()
            .map(|e| EdgeView {
                from: self.g[e.source()].id.clone(),
                to: self.g[e.target()].id.clone(),
                kind: e.weight().kind,
                condition: e.weight().condition.clone(),
            })
            .collect();
        // A stable order: by the positions of the endpoints.
        edges.sort_by_key(|e| (self.position(&e.to), self.position(&e.from)));
        edges
    }

    fn position(&self, id: &TaskId) -> u32 {
        self.task(id).map(|t| t.position).unwrap_or(u32::MAX)
    }

    /// Upstream task ids of `id` (the tasks whose outputs it receives as inputs).
    pub fn upstream_ids(&self, id: &TaskId) -> Vec<TaskId> {
        match self.by_id.get(id) {
            Some(&n) => self
                .g
                .neighbors_directed(n, Direction::Incoming)
                .map(|u| self.g[u].id.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    /// The one place a task's status changes.
    pub fn transition(&mut self, id: &TaskId, to: TaskStatus) -> Result<(), IllegalTransition> {
        let Some(&n) = self.by_id.get(id) else {
            return Err(IllegalTransition {
                task: id.clone(),
                from: to,
                to,
            });
        };
        let from = self.g[n].status;
        if !legal(from, to) {
            return Err(IllegalTransition {
                task: id.clone(),
                from,
                to,
            });
        }
        self.g[n].status = to;
        let key = (self.g[n].position, n);
        if from == TaskStatus::Ready {
            self.ready.remove(&key);
        }
        if to == TaskStatus::Ready {
            self.ready.insert(key);
        }
        Ok(())
    }

    /// Removes a task and its edges.
    pub(super) fn remove(&mut self, n: NodeIndex) {
        self.ready.remove(&(self.g[n].position, n));
        self.by_id.remove(&self.g[n].id);
        self.order.retain(|&o| o != n);
        self.g.remove_node(n);
    }

    /// Whether a `success` edge into `id` comes from a task that ended without succeeding
    /// (looks at `id`'s incoming edges only).
    pub fn success_upstream_failed(&self, id: &TaskId) -> bool {
        let Some(&n) = self.by_id.get(id) else {
            return false;
        };
        self.g.edges_directed(n, Direction::Incoming).any(|e| {
            let up = self.g[e.source()].status;
            e.weight().kind == EdgeKind::Success && up.is_terminal() && up != TaskStatus::Succeeded
        })
    }

    /// The tasks that are `ready`, in task order.
    pub fn ready(&self) -> impl Iterator<Item = &Task> + '_ {
        self.ready.iter().map(|&(_, n)| &self.g[n])
    }

    /// Whether the task at `n` can run, from its incoming edges and their upstream tasks.
    pub(super) fn readiness(&self, n: NodeIndex) -> Readiness {
        let mut waiting = false;
        for e in self.g.edges_directed(n, Direction::Incoming) {
            let up = &self.g[e.source()];
            if !up.status.is_terminal() {
                waiting = true;
                continue;
            }
            let ok = match e.weight().kind {
                EdgeKind::Success => up.status == TaskStatus::Succeeded,
                EdgeKind::Completion => true,
                EdgeKind::Condition => e.weight().condition.as_ref().is_some_and(|c| {
                    weft_planner::condition::evaluate(c, up.status, up.output.as_ref())
                }),
            };
            if !ok {
                return Readiness::Unsatisfiable;
            }
        }
        if waiting {
            Readiness::Waiting
        } else {
            Readiness::Ready
        }
    }

    /// Moves the waiting task at `n` to what its edges say. Returns the new status if it
    /// changed.
    fn settle(&mut self, n: NodeIndex, now_ms: u64) -> Option<TaskStatus> {
        let status = self.g[n].status;
        let to = match (status, self.readiness(n)) {
            (TaskStatus::Pending, Readiness::Ready) => TaskStatus::Ready,
            (TaskStatus::Ready, Readiness::Waiting) => TaskStatus::Pending,
            (TaskStatus::Pending | TaskStatus::Ready, Readiness::Unsatisfiable) => {
                TaskStatus::Skipped
            }
            _ => return None,
        };
        let id = self.g[n].id.clone();
        self.transition(&id, to).ok()?;
        if to == TaskStatus::Ready {
            let t = &mut self.g[n];
            t.ready_since_ms = now_ms;
            t.sched.first_ready_ms.get_or_insert(now_ms);
        }
        Some(to)
    }

    /// After `id` ended, decides its waiting downstream tasks: those whose edges are all
    /// satisfied become `ready`; those that can no longer be satisfied become `skipped`, and the
    /// skip propagates. Returns every task whose status changed, in order.
    pub fn settle_downstream(&mut self, id: &TaskId, now_ms: u64) -> Vec<TaskId> {
        let mut changed = Vec::new();
        let Some(&start) = self.by_id.get(id) else {
            return changed;
        };
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            let mut down: Vec<NodeIndex> =
                self.g.neighbors_directed(n, Direction::Outgoing).collect();
            down.sort_by_key(|&d| self.g[d].position);
            for d in down {
                if self.g[d].status != TaskStatus::Pending {
                    continue;
                }
                if let Some(to) = self.settle(d, now_ms) {
                    if to == TaskStatus::Skipped {
                        stack.push(d);
                    }
                    changed.push(self.g[d].id.clone());
                }
            }
        }
        changed
    }

    /// Settles every waiting task, upstream first (after a graph is built or edited). Returns
    /// every task whose status changed, in order.
    pub fn settle_all(&mut self, now_ms: u64) -> Vec<TaskId> {
        let order = petgraph::algo::toposort(&self.g, None).unwrap_or_default();
        let mut changed = Vec::new();
        for n in order {
            if self.settle(n, now_ms).is_some() {
                changed.push(self.g[n].id.clone());
            }
        }
        changed
    }

    /// `Some(final status)` once every task has ended: `failed` if any task failed,
    /// `cancelled` if any was cancelled, else `succeeded` (tasks skipped because a condition did
    /// not hold are a normal outcome).
    pub fn outcome(&self) -> Option<RequestStatus> {
        if !self.tasks().all(|t| t.status.is_terminal()) {
            return None;
        }
        Some(if self.tasks().any(|t| t.status == TaskStatus::Failed) {
            RequestStatus::Failed
        } else if self.tasks().any(|t| t.status == TaskStatus::Cancelled) {
            RequestStatus::Cancelled
        } else {
            RequestStatus::Succeeded
        })
    }
}

mod replay;
mod task;

#[cfg(test)]
pub(crate) mod tests;
