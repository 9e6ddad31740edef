//! Micro-benchmarks of hot paths: agent frame encode/decode (serde_json with the weft-protocol
//! types), rules planning, and in the engine the graph update after a result, placement among
//! many devices and the journal commit of a group.
//!
//! `cargo bench -p weft-bench --bench hot_paths`. Figures are recorded in BENCHMARKS.md.

use std::collections::BTreeMap;

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use weft_planner::{DeviceInfo, RulesPlanner};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{Action, AgentMsg, ServerMsg, TaskOutput};

fn main() {
    divan::main();
}

/// An `assign` as the orchestrator sends it for a no-op task with one upstream input (~300 bytes,
/// the size the issue's transport figures use).
fn assign() -> ServerMsg {
    let mut inputs = BTreeMap::new();
    inputs.insert(
        "t1".into(),
        TaskOutput {
            summary: "ok".into(),
            data: serde_json::Value::Null,
        },
    );
    ServerMsg::Assign {
        attempt_id: "0199a0b4-6f1e-7c2a-9d3e-5b8f0a1c2d3e".into(),
        request_id: "0199a0b4-6f1d-7b11-8c2d-4a7e9f0b1c2d".into(),
        task_id: "t2".into(),
        title: "run `true`".into(),
        instruction: "run \"true\"".into(),
        action: Some(Action::Shell {
            command: "true".into(),
        }),
        inputs,
        deadline_ms: 1_764_000_000_000,
        max_turns: 1,
        files: vec![],
        outputs: vec![],
    }
}

/// The no-op executor's `result`.
fn result() -> AgentMsg {
    AgentMsg::Result {
        attempt_id: "0199a0b4-6f1e-7c2a-9d3e-5b8f0a1c2d3e".into(),
        status: ResultStatus::Succeeded,
        output: TaskOutput {
            summary: "ok".into(),
            data: serde_json::json!({"stdout": "", "stderr": "", "exit_code": 0}),
        },
        error: None,
        files: vec![],
    }
}

mod frames {
    use super::*;

    #[divan::bench]
    fn encode_assign(b: Bencher) {
        let m = assign();
        let len = serde_json::to_string(&m).unwrap().len();
        b.counter(BytesCount::new(len))
            .bench(|| serde_json::to_string(black_box(&m)).unwrap());
    }

    #[divan::bench]
    fn decode_assign(b: Bencher) {
        let s = serde_json::to_string(&assign()).unwrap();
        b.counter(BytesCount::of_str(&s))
            .bench(|| serde_json::from_str::<ServerMsg>(black_box(&s)).unwrap());
    }

    #[divan::bench]
    fn encode_result(b: Bencher) {
        let m = result();
        let len = serde_json::to_string(&m).unwrap().len();
        b.counter(BytesCount::new(len))
            .bench(|| serde_json::to_string(black_box(&m)).unwrap());
    }

    #[divan::bench]
    fn decode_result(b: Bencher) {
        let s = serde_json::to_string(&result()).unwrap();
        b.counter(BytesCount::of_str(&s))
            .bench(|| serde_json::from_str::<AgentMsg>(black_box(&s)).unwrap());
    }
}

mod planner {
    use super::*;

    fn devices() -> Vec<DeviceInfo> {
        ["laptop", "server", "phone"]
            .into_iter()
            .map(|n| DeviceInfo {
                name: n.into(),
                kind: n.into(),
                capabilities: vec!["shell".into(), "fs".into(), "http".into()],
                online: true,
            })
            .collect()
    }

    /// 100 clauses over all four actions and three devices, in steps of four parallel tasks.
    fn hundred_clauses() -> String {
        let mut text = String::new();
        for i in 0..100 {
            if i > 0 {
                text.push_str(if i % 4 == 0 { " then " } else { " and " });
            }
            let clause = match i % 4 {
                0 => format!("on laptop run \"echo {i}\""),
                1 => format!("on server run \"echo {i}\""),
                2 => format!("on phone fetch https://example.com/{i}"),
                _ => format!("write \"x{i}\" to f{i}.txt"),
            };
            text.push_str(&clause);
        }
        text
    }

    #[divan::bench]
    fn plan_3_clauses(b: Bencher) {
        let devices = devices();
        let text = r#"on laptop run "make test" and on server run "df -h /" then on phone fetch https://example.com/status"#;
        let planner = RulesPlanner::new();
        assert_eq!(planner.plan_sync(text, &devices).unwrap().tasks.len(), 3);
        b.bench(|| planner.plan_sync(black_box(text), &devices).unwrap());
    }

    #[divan::bench]
    fn plan_100_clauses(b: Bencher) {
        let devices = devices();
        let text = hundred_clauses();
        let planner = RulesPlanner::new();
        assert_eq!(planner.plan_sync(&text, &devices).unwrap().tasks.len(), 100);
        b.bench(|| planner.plan_sync(black_box(&text), &devices).unwrap());
    }
}

/// The engine's hot paths: the graph after a result, placement, the journal commit.
mod engine {
    use std::cell::Cell;

    use weft_orchestrator::engine::{FreeSlots, Graph, TaskDefaults};
    use weft_orchestrator::store::{Op, Store};
    use weft_planner::{Plan, PlannedEdge, PlannedTask, Target};
    use weft_protocol::rest::{Event, EventKind};
    use weft_protocol::{
        AttemptId, AttemptStatus, DeviceName, EdgeKind, RequestId, RetryPolicy, TaskId, TaskStatus,
    };

    use super::*;

    fn plan(n: usize, edges: impl Fn(usize) -> Vec<(usize, usize)>) -> Plan {
        let tasks = (0..n)
            .map(|i| PlannedTask {
                id: TaskId(format!("t{i}")),
                title: format!("t{i}"),
                instruction: "run \"true\"".into(),
                action: Some(Action::Shell {
                    command: "true".into(),
                }),
                target: Target::Any,
                capabilities: vec![],
                max_turns: None,
                outputs: vec![],
                inputs: vec![],
            })
            .collect();
        let edges = edges(n)
            .into_iter()
            .map(|(a, b)| PlannedEdge {
                from: TaskId(format!("t{a}")),
                to: TaskId(format!("t{b}")),
                kind: EdgeKind::Success,
                condition: None,
            })
            .collect();
        Plan { tasks, edges }
    }

    fn graph(plan: &Plan) -> Graph {
        let defaults = TaskDefaults {
            retry: RetryPolicy::default(),
            max_turns: 1,
        };
        Graph::from_plan(plan, &defaults, 0).unwrap()
    }

    /// A result for `id`: the task runs and succeeds, and its downstream tasks are settled.
    fn finish(g: &mut Graph, id: &TaskId) -> usize {
        for to in [
            TaskStatus::Dispatched,
            TaskStatus::Running,
            TaskStatus::Succeeded,
        ] {
            g.transition(id, to).unwrap();
        }
        g.settle_downstream(id, 1).len()
    }

    /// The first task of a chain of `n` ends: the second becomes ready.
    #[divan::bench(args = [10, 1_000, 10_000])]
    fn result_in_a_chain(b: Bencher, n: usize) {
        let g = graph(&plan(n, |n| (1..n).map(|i| (i - 1, i)).collect()));
        let first = TaskId("t0".into());
        b.with_inputs(|| g.clone())
            .bench_local_refs(|g| assert_eq!(finish(g, &first), 1));
    }

    /// The last of `n` upstream tasks ends: the task waiting for all of them becomes ready.
    #[divan::bench(args = [10, 100, 1_000])]
    fn last_result_of_a_fan_in(b: Bencher, n: usize) {
        let mut g = graph(&plan(n + 1, |n| (0..n - 1).map(|i| (i, n - 1)).collect()));
        for i in 1..n {
            finish(&mut g, &TaskId(format!("t{i}")));
        }
        let last = TaskId("t0".into());
        b.with_inputs(|| g.clone())
            .bench_local_refs(|g| assert_eq!(finish(g, &last), 1));
    }

    /// One placement among `n` devices with free slots, and the update of the chosen device's
    /// load that follows a dispatch.
    #[divan::bench(args = [10, 1_000, 10_000])]
    fn place_among_devices(b: Bencher, n: usize) {
        let names: Vec<DeviceName> = (0..n).map(|i| DeviceName(format!("d{i:05}"))).collect();
        let mut free = FreeSlots::default();
        for (i, name) in names.iter().enumerate() {
            free.set(name, true, i % 16, 16);
        }
        b.bench_local(|| {
            let name = free.iter().next().unwrap().clone();
            free.set(&name, true, 1, 16);
            free.set(&name, true, 0, 16);
            name
        });
    }

    /// The journal commit of one group of `n` task results: per result an attempt row and a
    /// task row updated and two journal events (task succeeded, request succeeded), into a
    /// SQLite file in WAL mode, as the committer writes it.
    #[divan::bench(args = [1, 16, 64], sample_count = 50)]
    fn commit_results(b: Bencher, n: usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = rt
            .block_on(Store::open(dir.path().join("bench.db").to_str().unwrap()))
            .unwrap();
        let seq = Cell::new(0u64);
        b.with_inputs(|| {
            let mut ops = Vec::new();
            let mut events = Vec::new();
            for _ in 0..n {
                let s = seq.get();
                seq.set(s + 2);
                let request = RequestId(format!("r{s}"));
                let task = TaskId("t1".into());
                ops.push(Op::UpdateAttempt {
                    id: AttemptId(format!("a{s}")),
                    status: AttemptStatus::Succeeded,
                    ended_at_ms: Some(s),
                    error: None,
                });
                ops.push(Op::UpdateTask {
                    request_id: request.clone(),
                    task_id: task.clone(),
                    status: TaskStatus::Succeeded,
                    device: Some(DeviceName("d1".into())),
                    output: Some(TaskOutput {
                        summary: "ok".into(),
                        data: serde_json::Value::Null,
                    }),
                    error: None,
                });
                for (k, kind) in [
                    EventKind::TaskStatus {
                        task_id: task.clone(),
                        status: TaskStatus::Succeeded,
                        attempt_id: None,
                        device: None,
                        output: None,
                        error: None,
                        files: vec![],
                    },
                    EventKind::RequestStatus {
                        status: weft_protocol::RequestStatus::Succeeded,
                        error: None,
                    },
                ]
                .into_iter()
                .enumerate()
                {
                    events.push(Event {
                        seq: s + 1 + k as u64,
                        request_id: request.clone(),
                        at_ms: s,
                        kind,
                    });
                }
            }
            (ops, events)
        })
        .bench_local_refs(|(ops, events)| rt.block_on(store.commit(ops, events)).unwrap());
        rt.block_on(store.close());
    }
}
