//! The plan a planner produces, and the structural rules every plan must follow.

use std::collections::{HashMap, HashSet};

use weft_protocol::{Action, DeviceName, EdgeKind, TaskId};

use crate::{Error, condition, refs};

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
    /// Turn limit of each attempt, for executors that work in turns; the server's default when
    /// `None`.
    pub max_turns: Option<u32>,
    /// The files the task produces (its spec's `outputs.files`: names relative to its workdir,
    /// the last part may be a glob); sent to the orchestrator after it succeeds.
    pub outputs: Vec<String>,
    /// Upstream files to fetch although nothing refers to them (its spec's `inputs.files`:
    /// `{{t1.files}}` or `{{t1.files.NAME}}` each).
    pub inputs: Vec<String>,
}

/// A dependency: `to` waits for `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEdge {
    pub from: TaskId,
    pub to: TaskId,
    pub kind: EdgeKind,
    /// Present exactly when `kind` is [`EdgeKind::Condition`].
    pub condition: Option<weft_protocol::Condition>,
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
    /// once; a valid condition on every `condition` edge and on no other; no cycle; every
    /// reference (`{{t1.output}}`, see [`crate::refs`]) well-formed and naming a task upstream of
    /// the task that makes it. Every other failure is [`Error::InvalidPlan`].
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_size("tasks", self.tasks.len(), limits.max_tasks)?;
        check_size("edges", self.edges.len(), limits.max_edges)?;
        if self.tasks.is_empty() {
            return Err(invalid("the plan has no tasks".into()));
        }
        let index = self.index_tasks()?;
        let adjacency = self.adjacency(&index)?;
        self.check_acyclic(&adjacency)?;
        self.check_references()
    }

    /// The tasks upstream of `task`: those it reaches by following edges backwards, however
    /// many. Excludes `task` itself unless it sits on a cycle; empty for an unknown task.
    pub fn ancestors(&self, task: &TaskId) -> HashSet<TaskId> {
        let upstream = self.upstream_map();
        ancestors_in(&upstream, task.as_str())
            .into_iter()
            .map(TaskId::new)
            .collect()
    }

    /// For each task id, the ids of the tasks it has a direct edge from.
    fn upstream_map(&self) -> HashMap<&str, Vec<&str>> {
        let mut upstream: HashMap<&str, Vec<&str>> = HashMap::new();
        for edge in &self.edges {
            upstream
                .entry(edge.to.as_str())
                .or_default()
                .push(edge.from.as_str());
        }
        upstream
    }

    /// Refuses malformed references and references to anything but an ancestor.
    fn check_references(&self) -> Result<(), Error> {
        let upstream = self.upstream_map();
        let known: HashSet<&str> = self.tasks.iter().map(|t| t.id.as_str()).collect();
        for task in &self.tasks {
            let id = task.id.as_str();
            let mut references = refs::task_references(&task.instruction, task.action.as_ref())
                .map_err(|e| invalid(format!("task {id}: {e}")))?;
            references.extend(
                refs::input_references(&task.inputs)
                    .map_err(|e| invalid(format!("task {id}: inputs: {e}")))?,
            );
            check_outputs(id, &task.outputs)?;
            if references.is_empty() {
                continue;
            }
            let ancestors = ancestors_in(&upstream, id);
            for r in &references {
                let other = r.task.as_str();
                if other == id {
                    return Err(invalid(format!(
                        "task {id} refers to {other} ({r}), its own output; a task can only use \
                         the outputs of tasks upstream of it"
                    )));
                }
                if !known.contains(other) {
                    return Err(invalid(format!(
                        "task {id} refers to {other} ({r}), which is not in the plan"
                    )));
                }
                if !ancestors.contains(other) {
                    return Err(invalid(format!(
                        "task {id} refers to {other} ({r}), which is not upstream of it"
                    )));
                }
            }
        }
        Ok(())
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
            check_condition(edge)?;
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

/// A `condition` edge carries a valid condition; other kinds carry none.
fn check_condition(edge: &PlannedEdge) -> Result<(), Error> {
    let (from, to) = (&edge.from, &edge.to);
    match (edge.kind, &edge.condition) {
        (EdgeKind::Condition, None) => Err(invalid(format!(
            "edge {from} -> {to} is a condition edge without a condition"
        ))),
        (EdgeKind::Condition, Some(c)) => condition::validate(c)
            .map_err(|e| invalid(format!("edge {from} -> {to} has an invalid condition: {e}"))),
        (kind, Some(_)) => Err(invalid(format!(
            "edge {from} -> {to} is a {} edge but has a condition; only condition edges carry one",
            kind.as_str()
        ))),
        (_, None) => Ok(()),
    }
}

/// Every task reachable from `task` by following `upstream` links, however many.
fn ancestors_in<'p>(upstream: &HashMap<&'p str, Vec<&'p str>>, task: &str) -> HashSet<&'p str> {
    let mut seen = HashSet::new();
    let mut stack: Vec<&str> = upstream.get(task).cloned().unwrap_or_default();
    while let Some(t) = stack.pop() {
        if seen.insert(t) {
            stack.extend(upstream.get(t).into_iter().flatten().copied());
        }
    }
    seen
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

/// A task's declared outputs, checked as a task spec's `outputs.files` is.
fn check_outputs(id: &str, outputs: &[String]) -> Result<(), Error> {
    if outputs.len() > weft_protocol::files::MAX_FILES_PER_SPEC {
        return Err(invalid(format!(
            "task {id} declares {} outputs; at most {}",
            outputs.len(),
            weft_protocol::files::MAX_FILES_PER_SPEC
        )));
    }
    for o in outputs {
        weft_protocol::files::check_file_pattern(o)
            .map_err(|e| invalid(format!("task {id}: output `{o}`: {e}")))?;
    }
    Ok(())
}

fn invalid(message: String) -> Error {
    Error::InvalidPlan(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a plan from a compact description: `"t1 t2 t3 | t1>t2 t2>t3"`.
    ///
    /// A task may carry an instruction without spaces: `t2=echo_{{t1.output}}`. An edge may
    /// carry a kind and a condition (JSON without spaces): `t1>t2:completion`,
    /// `t1>t2:condition={"op":"exists"}`, `t1>t2:condition` (no condition).
    fn plan(spec: &str) -> Plan {
        let (tasks, edges) = spec.split_once('|').unwrap_or((spec, ""));
        Plan {
            tasks: tasks
                .split_whitespace()
                .map(|t| {
                    let (id, instruction) = t.split_once('=').unwrap_or((t, ""));
                    PlannedTask {
                        id: TaskId::new(id),
                        title: id.to_owned(),
                        instruction: instruction.to_owned(),
                        action: None,
                        target: Target::Any,
                        capabilities: vec![],
                        max_turns: None,
                        outputs: vec![],
                        inputs: vec![],
                    }
                })
                .collect(),
            edges: edges.split_whitespace().map(edge).collect(),
        }
    }

    /// One edge of [`plan`]'s description.
    fn edge(spec: &str) -> PlannedEdge {
        let (ends, kind) = spec.split_once(':').unwrap_or((spec, "success"));
        let (a, b) = ends.split_once('>').expect("edge spec");
        let (kind, condition) = match kind.split_once('=') {
            Some((kind, json)) => (kind, Some(serde_json::from_str(json).expect("condition"))),
            None => (kind, None),
        };
        PlannedEdge {
            from: TaskId::new(a),
            to: TaskId::new(b),
            kind: EdgeKind::parse(kind).expect("edge kind"),
            condition,
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

    #[test]
    fn edge_kinds_and_conditions() {
        check("t1 t2 | t1>t2:completion", "ok");
        check(
            r#"t1 t2 | t1>t2:condition={"path":"/exit_code","op":"equals","value":0}"#,
            "ok",
        );
        check(
            r#"t1 t2 | t1>t2:condition={"on":"status","op":"equals","value":"failed"}"#,
            "ok",
        );
        check(
            "t1 t2 | t1>t2:condition",
            "invalid_plan: invalid plan: edge t1 -> t2 is a condition edge without a condition",
        );
        check(
            r#"t1 t2 | t1>t2:success={"op":"exists"}"#,
            "invalid_plan: invalid plan: edge t1 -> t2 is a success edge but has a condition; \
             only condition edges carry one",
        );
        check(
            r#"t1 t2 | t1>t2:completion={"op":"exists"}"#,
            "invalid_plan: invalid plan: edge t1 -> t2 is a completion edge but has a condition; \
             only condition edges carry one",
        );
        check(
            r#"t1 t2 | t1>t2:condition={"path":"/x","op":"equals"}"#,
            "invalid_plan: invalid plan: edge t1 -> t2 has an invalid condition: \
             `equals` needs a `value`",
        );
        check(
            r#"t1 t2 | t1>t2:condition={"on":"status","op":"equals","value":"ok"}"#,
            "invalid_plan: invalid plan: edge t1 -> t2 has an invalid condition: \
             `on: status` with `equals` needs a final status as `value`: \
             \"succeeded\", \"failed\", \"skipped\" or \"cancelled\"",
        );
    }

    #[test]
    fn references_must_point_upstream() {
        check("t1 t2={{t1.output}} | t1>t2", "ok");
        check("t1 t2={{t1.output}} | t1>t2:completion", "ok");
        check(
            r#"t1 t2={{t1.output.exit_code}} | t1>t2:condition={"on":"status","op":"equals","value":"failed"}"#,
            "ok",
        );
        check(
            "t1 t2 t3 t4=cat_{{t1.output.stdout}}_{{t3.output}} | t1>t2 t2>t3 t3>t4",
            "ok",
        );
        check("a b c d={{a.output}} | a>b a>c b>d c>d", "ok");
        check(
            "t1 t2={{t3.output}} t3 | t1>t2 t1>t3",
            "invalid_plan: invalid plan: task t2 refers to t3 ({{t3.output}}), which is not \
             upstream of it",
        );
        check(
            "t1={{t2.output}} t2 | t1>t2",
            "invalid_plan: invalid plan: task t1 refers to t2 ({{t2.output}}), which is not \
             upstream of it",
        );
        check(
            "t1={{t1.output.stdout}}",
            "invalid_plan: invalid plan: task t1 refers to t1 ({{t1.output.stdout}}), its own \
             output; a task can only use the outputs of tasks upstream of it",
        );
        check(
            "t1 t2={{t9.output}} | t1>t2",
            "invalid_plan: invalid plan: task t2 refers to t9 ({{t9.output}}), which is not in \
             the plan",
        );
        check(
            "t1 t2=echo_{{t1}} | t1>t2",
            "invalid_plan: invalid plan: task t2: in the instruction: `{{t1}}` is not a \
             reference (expected `.output` after the task id); a reference looks like \
             {{t1.output}}, {{t1.output.summary}} or {{t1.output.stdout}}, and `{{` always \
             starts one",
        );
    }

    #[test]
    fn references_in_actions_are_checked() {
        let mut p = plan("t1 t2 t3 | t1>t2");
        p.tasks[2].action = Some(Action::WriteFile {
            path: "out.txt".into(),
            content: "{{t1.output}}".into(),
        });
        assert_eq!(
            p.validate(&Limits::default()),
            Err(invalid(
                "task t3 refers to t1 ({{t1.output}}), which is not upstream of it".into()
            ))
        );
        p.edges.push(edge("t2>t3"));
        assert_eq!(p.validate(&Limits::default()), Ok(()));
        p.tasks[2].action = Some(Action::Shell {
            command: "echo {{t1.output".into(),
        });
        assert!(matches!(
            p.validate(&Limits::default()),
            Err(Error::InvalidPlan(m)) if m.starts_with("task t3: in the action's `command`: `{{t1.output` has no closing `}}`")
        ));
    }

    #[test]
    fn ancestors() {
        let check = |spec: &str, task: &str, expect: &str| {
            let mut got: Vec<String> = plan(spec)
                .ancestors(&TaskId::new(task))
                .into_iter()
                .map(|t| t.0)
                .collect();
            got.sort();
            assert_eq!(got.join(" "), expect, "{spec} {task}");
        };
        check("t1 t2 t3 t4 | t1>t2 t2>t3 t3>t4", "t4", "t1 t2 t3");
        check("t1 t2 t3 t4 | t1>t2 t2>t3 t3>t4", "t2", "t1");
        check("t1 t2 t3 t4 | t1>t2 t2>t3 t3>t4", "t1", "");
        check("a b c d e | a>b a>c b>d c>d e>a", "d", "a b c e");
        check("a b c | a>b b>c c>a", "b", "a b c");
        check("a", "zzz", "");
    }
}
