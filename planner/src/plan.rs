//! The plan a planner produces, and the structural rules every plan must follow.

use std::collections::{HashMap, HashSet};

use weft_protocol::{Action, DeviceName, EdgeKind, TaskId};

use crate::Error;

/// Where a task may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Exactly this registered device.
    Device(DeviceName),
    /// Any device of this kind (`laptop`, `phone`, …).
    Kind(String),
    /// Any device that has the task's capabilities.
    Any,
}

/// One task of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    /// Unique within the plan: 1–64 ASCII letters, digits, `-` or `_` (`t1`, `t2`, …).
    pub id: TaskId,
    /// A short human title (`` run `echo hi` ``).
    pub title: String,
    /// The part of the request this task came from, as written.
    pub instruction: String,
    /// What to execute; `None` is reserved for tasks a future executor interprets itself.
    pub action: Option<Action>,
    pub target: Target,
    /// The capabilities a device needs to run this task.
    pub capabilities: Vec<String>,
}

/// A dependency: `to` waits for `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEdge {
    pub from: TaskId,
    pub to: TaskId,
    pub kind: EdgeKind,
}

/// A task graph: tasks in order of appearance, and the edges between them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub tasks: Vec<PlannedTask>,
    pub edges: Vec<PlannedEdge>,
}

/// Size limits a plan must respect.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_tasks: usize,
    pub max_edges: usize,
}

impl Default for Limits {
    /// 256 tasks, 4096 edges.
    fn default() -> Self {
        Self {
            max_tasks: 256,
            max_edges: 4096,
        }
    }
}

/// The longest task id [`Plan::validate`] accepts.
const MAX_TASK_ID_LEN: usize = 64;

impl Plan {
    /// Checks the structural rules: within `limits` ([`Error::TooLarge`]); at least one task;
    /// unique, well-formed task ids; edges between existing, distinct tasks, each pair at most
    /// once; no cycle. Every other failure is [`Error::InvalidPlan`].
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_size("tasks", self.tasks.len(), limits.max_tasks)?;
        check_size("edges", self.edges.len(), limits.max_edges)?;
        if self.tasks.is_empty() {
            return Err(invalid("the plan has no tasks".into()));
        }
        let index = self.index_tasks()?;
        let adjacency = self.adjacency(&index)?;
        self.check_acyclic(&adjacency)
    }

    /// Maps each task id to its position, refusing malformed and duplicate ids.
    fn index_tasks(&self) -> Result<HashMap<&str, usize>, Error> {
        let mut index = HashMap::with_capacity(self.tasks.len());
        for (i, task) in self.tasks.iter().enumerate() {
            let id = task.id.as_str();
            if !valid_task_id(id) {
                return Err(invalid(format!(
                    "task id `{id}` is not 1-{MAX_TASK_ID_LEN} letters, digits, `-` or `_`"
                )));
            }
            if index.insert(id, i).is_some() {
                return Err(invalid(format!("task id `{id}` is used twice")));
            }
        }
        Ok(index)
    }

    /// The downstream tasks of each task, refusing dangling, self- and duplicate edges.
    fn adjacency(&self, index: &HashMap<&str, usize>) -> Result<Vec<Vec<usize>>, Error> {
        let mut adjacency = vec![Vec::new(); self.tasks.len()];
        let mut seen = HashSet::with_capacity(self.edges.len());
        for edge in &self.edges {
            let (from, to) = (edge.from.as_str(), edge.to.as_str());
            let (Some(&a), Some(&b)) = (index.get(from), index.get(to)) else {
                return Err(invalid(format!(
                    "edge {from} -> {to} names a task that is not in the plan"
                )));
            };
            if a == b {
                return Err(invalid(format!("task {from} depends on itself")));
            }
            if !seen.insert((a, b)) {
                return Err(invalid(format!("edge {from} -> {to} appears twice")));
            }
            if let Some(downstream) = adjacency.get_mut(a) {
                downstream.push(b);
            }
        }
        Ok(adjacency)
    }

    /// Kahn's algorithm: repeatedly remove tasks with no remaining upstream; whatever is left
    /// sits on or behind a cycle.
    fn check_acyclic(&self, adjacency: &[Vec<usize>]) -> Result<(), Error> {
        let mut indegree = vec![0usize; adjacency.len()];
        for &b in adjacency.iter().flatten() {
            if let Some(d) = indegree.get_mut(b) {
                *d += 1;
            }
        }
        let mut ready: Vec<usize> = indegree
            .iter()
            .enumerate()
            .filter(|&(_, &d)| d == 0)
            .map(|(i, _)| i)
            .collect();
        let mut removed = 0;
        while let Some(a) = ready.pop() {
            removed += 1;
            for &b in adjacency.get(a).into_iter().flatten() {
                if let Some(d) = indegree.get_mut(b) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(b);
                    }
                }
            }
        }
        if removed == self.tasks.len() {
            return Ok(());
        }
        let stuck: Vec<&str> = self
            .tasks
            .iter()
            .zip(&indegree)
            .filter(|&(_, &d)| d > 0)
            .map(|(t, _)| t.id.as_str())
            .collect();
        Err(invalid(format!(
            "the task graph has a cycle (involving {})",
            stuck.join(", ")
        )))
    }
}

fn check_size(what: &'static str, count: usize, limit: usize) -> Result<(), Error> {
    if count > limit {
        return Err(Error::TooLarge { what, count, limit });
    }
    Ok(())
}

fn valid_task_id(id: &str) -> bool {
    (1..=MAX_TASK_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid(message: String) -> Error {
    Error::InvalidPlan(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a plan from a compact description: `"t1 t2 t3 | t1>t2 t2>t3"`.
    fn plan(spec: &str) -> Plan {
        let (tasks, edges) = spec.split_once('|').unwrap_or((spec, ""));
        Plan {
            tasks: tasks
                .split_whitespace()
                .map(|id| PlannedTask {
                    id: TaskId::new(id),
                    title: id.to_owned(),
                    instruction: String::new(),
                    action: None,
                    target: Target::Any,
                    capabilities: vec![],
                })
                .collect(),
            edges: edges
                .split_whitespace()
                .map(|e| {
                    let (a, b) = e.split_once('>').expect("edge spec");
                    PlannedEdge {
                        from: TaskId::new(a),
                        to: TaskId::new(b),
                        kind: EdgeKind::Success,
                    }
                })
                .collect(),
        }
    }

    /// Validates `spec` with `limits` and renders the outcome as `ok` or `CODE: MESSAGE`.
    fn check_with(limits: &Limits, spec: &str, expect: &str) {
        let got = match plan(spec).validate(limits) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("{}: {e}", e.code()),
        };
        assert_eq!(got, expect, "plan {spec:?}");
    }

    fn check(spec: &str, expect: &str) {
        check_with(&Limits::default(), spec, expect);
    }

    #[test]
    fn valid_plans() {
        check("t1", "ok");
        check("t1 t2 t3 t4 | t1>t4 t2>t4 t3>t4", "ok");
        check("a b c d | a>b a>c b>d c>d", "ok");
        check("x_1 Y-2 | Y-2>x_1", "ok");
    }

    #[test]
    fn structural_errors() {
        check("", "invalid_plan: invalid plan: the plan has no tasks");
        check(
            "t1 t2 t1",
            "invalid_plan: invalid plan: task id `t1` is used twice",
        );
        check(
            "t1 a/b",
            "invalid_plan: invalid plan: task id `a/b` is not 1-64 letters, digits, `-` or `_`",
        );
        check(
            &"x".repeat(65),
            "invalid_plan: invalid plan: task id `xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx` \
             is not 1-64 letters, digits, `-` or `_`",
        );
        check(
            "t1 t2 | t1>t3",
            "invalid_plan: invalid plan: edge t1 -> t3 names a task that is not in the plan",
        );
        check(
            "t1 t2 | t2>t2",
            "invalid_plan: invalid plan: task t2 depends on itself",
        );
        check(
            "t1 t2 | t1>t2 t1>t2",
            "invalid_plan: invalid plan: edge t1 -> t2 appears twice",
        );
    }

    #[test]
    fn cycles() {
        check(
            "t1 t2 | t1>t2 t2>t1",
            "invalid_plan: invalid plan: the task graph has a cycle (involving t1, t2)",
        );
        check(
            "t1 t2 t3 t4 | t1>t2 t2>t3 t3>t2 t3>t4",
            "invalid_plan: invalid plan: the task graph has a cycle (involving t2, t3, t4)",
        );
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_tasks: 2,
            max_edges: 1,
        };
        check_with(&small, "t1 t2 | t1>t2", "ok");
        check_with(
            &small,
            "t1 t2 t3",
            "plan_too_large: the plan has 3 tasks; the limit is 2",
        );
        check_with(
            &small,
            "t1 t2 | t1>t2 t2>t1",
            "plan_too_large: the plan has 2 edges; the limit is 1",
        );
        let many = (1..=257).map(|i| format!("t{i} ")).collect::<String>();
        check(
            &many,
            "plan_too_large: the plan has 257 tasks; the limit is 256",
        );
        let defaults = Limits::default();
        assert_eq!((defaults.max_tasks, defaults.max_edges), (256, 4096));
    }
}
