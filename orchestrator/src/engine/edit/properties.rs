//! Random sequences of edit batches and task results: the invariants hold after every step,
//! and the journal alone rebuilds the live graph.

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
                    inputs: None,
                    outputs: None,
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
            outputs: None,
            inputs: None,
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
            files: vec![],
        });
    }
}

/// Takes a step that is not an edit, journaling it as the engine does.
fn take(g: &mut Graph, step: Step, journal: &mut Vec<EventKind>) {
    match step {
        Step::Edit(_) => {}
        Step::Start(n) => {
            let Some(id) = nth(g, n, |s| s == TaskStatus::Ready) else {
                return;
            };
            walk(
                g,
                &id,
                &[TaskStatus::Dispatched, TaskStatus::Running],
                journal,
            );
        }
        Step::Retry(n) => {
            let Some(id) = nth(g, n, |s| s == TaskStatus::Running) else {
                return;
            };
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
            let Some(id) = nth(g, n, |s| !s.is_terminal()) else {
                return;
            };
            walk(g, &id, &[TaskStatus::Cancelled], journal);
            let changed = g.settle_downstream(&id, 0);
            status_events(g, &changed, journal);
        }
        Step::Finish(n, ok, code) => {
            let startable = |s| matches!(s, TaskStatus::Ready | TaskStatus::Running);
            let Some(id) = nth(g, n, startable) else {
                return;
            };
            let to = if ok {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Failed
            };
            let output = TaskOutput {
                summary: "s".into(),
                data: json!({"exit_code": code}),
            };
            if g.task(&id).unwrap().status() == TaskStatus::Ready {
                walk(
                    g,
                    &id,
                    &[TaskStatus::Dispatched, TaskStatus::Running],
                    journal,
                );
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
                files: vec![],
            });
            let changed = g.settle_downstream(&id, 0);
            status_events(g, &changed, journal);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn edits_and_results_keep_the_invariants(steps in prop::collection::vec(step(), 1..25)) {
        let mut g = Graph::from_records(Vec::new(), &[], 0).unwrap();
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
                other => take(&mut g, other, &mut journal),
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
