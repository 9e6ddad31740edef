//! Micro-benchmarks of hot paths outside the engine: agent frame encode/decode (serde_json with
//! the weft-protocol types) and rules planning.
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
