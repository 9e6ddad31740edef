//! The graph's rules: readiness, skipping, conditions, transitions.

use super::*;
use serde_json::json;
use weft_planner::{PlannedEdge, PlannedTask};
use weft_protocol::{ConditionOp, ConditionSource};

fn plan(n: usize, edges: &[(usize, usize, EdgeKind)]) -> Plan {
    Plan {
        tasks: (1..=n)
            .map(|i| PlannedTask {
                id: TaskId(format!("t{i}")),
                title: format!("t{i}"),
                instruction: String::new(),
                action: None,
                target: weft_planner::Target::Any,
                capabilities: vec![],
                max_turns: None,
                outputs: vec![],
                inputs: vec![],
            })
            .collect(),
        edges: edges
            .iter()
            .map(|&(a, b, kind)| PlannedEdge {
                from: TaskId(format!("t{a}")),
                to: TaskId(format!("t{b}")),
                kind,
                condition: (kind == EdgeKind::Condition).then(|| exit_code_is(0)),
            })
            .collect(),
    }
}

fn exit_code_is(code: i64) -> Condition {
    Condition {
        on: ConditionSource::Data,
        path: "/exit_code".into(),
        op: ConditionOp::Equals,
        value: Some(json!(code)),
    }
}

pub(crate) fn defaults() -> TaskDefaults {
    TaskDefaults {
        retry: RetryPolicy::default(),
        max_turns: 5,
    }
}

pub(crate) fn build(n: usize, edges: &[(usize, usize, EdgeKind)]) -> Graph {
    Graph::from_plan(&plan(n, edges), &defaults(), 0).unwrap()
}

fn statuses(g: &Graph) -> Vec<&'static str> {
    g.tasks().map(|t| t.status.as_str()).collect()
}

fn finish_with(g: &mut Graph, id: &str, to: TaskStatus, output: Option<TaskOutput>) -> Vec<TaskId> {
    let id = TaskId::from(id);
    g.transition(&id, TaskStatus::Dispatched).unwrap();
    g.transition(&id, TaskStatus::Running).unwrap();
    g.transition(&id, to).unwrap();
    g.task_mut(&id).unwrap().output = output;
    g.settle_downstream(&id, 0)
}

fn finish(g: &mut Graph, id: &str, to: TaskStatus) -> Vec<TaskId> {
    finish_with(g, id, to, None)
}

#[test]
fn roots_start_ready() {
    let g = build(3, &[(1, 3, EdgeKind::Success)]);
    assert_eq!(statuses(&g), ["ready", "ready", "pending"]);
}

#[test]
fn fan_in_waits_for_all() {
    use EdgeKind::Success as S;
    let mut g = build(3, &[(1, 3, S), (2, 3, S)]);
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
    let mut g = build(4, &[(1, 2, S), (2, 3, S)]);
    let changed = finish(&mut g, "t1", TaskStatus::Failed);
    assert_eq!(changed, vec![TaskId::from("t2"), TaskId::from("t3")]);
    assert_eq!(statuses(&g), ["failed", "skipped", "skipped", "ready"]);
    assert_eq!(g.outcome(), None);
    finish(&mut g, "t4", TaskStatus::Succeeded);
    assert_eq!(g.outcome(), Some(RequestStatus::Failed));
}

#[test]
fn completion_edge_runs_after_failure() {
    let mut g = build(2, &[(1, 2, EdgeKind::Completion)]);
    finish(&mut g, "t1", TaskStatus::Failed);
    assert_eq!(statuses(&g), ["failed", "ready"]);
}

fn shell_output(code: i64) -> Option<TaskOutput> {
    Some(TaskOutput {
        summary: String::new(),
        data: json!({"exit_code": code}),
    })
}

#[test]
fn condition_edges_choose_a_branch_and_the_request_still_succeeds() {
    // t1 then t2 if exit code 0 (condition), t3 completion; t4 after t2 (success).
    use EdgeKind::{Completion, Condition as If, Success};
    let mut g = build(4, &[(1, 2, If), (1, 3, Completion), (2, 4, Success)]);
    finish_with(&mut g, "t1", TaskStatus::Failed, shell_output(1));
    assert_eq!(statuses(&g), ["failed", "skipped", "ready", "skipped"]);

    let mut g = build(4, &[(1, 2, If), (1, 3, Completion), (2, 4, Success)]);
    finish_with(&mut g, "t1", TaskStatus::Succeeded, shell_output(0));
    assert_eq!(statuses(&g), ["succeeded", "ready", "ready", "pending"]);
    finish(&mut g, "t2", TaskStatus::Succeeded);
    finish(&mut g, "t3", TaskStatus::Succeeded);
    finish(&mut g, "t4", TaskStatus::Succeeded);
    assert_eq!(g.outcome(), Some(RequestStatus::Succeeded));

    // A false condition on a succeeded upstream skips its branch; the request succeeds.
    let mut g = build(2, &[(1, 2, If)]);
    finish_with(&mut g, "t1", TaskStatus::Succeeded, shell_output(3));
    assert_eq!(statuses(&g), ["succeeded", "skipped"]);
    assert_eq!(g.outcome(), Some(RequestStatus::Succeeded));
}

#[test]
fn illegal_transitions_are_refused() {
    let mut g = build(2, &[(1, 2, EdgeKind::Success)]);
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
    let d = defaults();
    assert!(Graph::from_plan(&plan(2, &[(1, 2, S), (2, 1, S)]), &d, 0).is_err());
    assert!(Graph::from_plan(&plan(1, &[(1, 5, S)]), &d, 0).is_err());
}
