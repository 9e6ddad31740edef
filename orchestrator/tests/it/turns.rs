//! Turn budgets: a task that needs more turns asks; the request's pool grants what it has,
//! then refuses, and the task ends `budget_exhausted` without being retried.

use reqwest::StatusCode;
use serde_json::json;
use weft_protocol::{RequestStatus, TaskStatus};

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_are_granted_from_the_pool_then_refused() {
    let mut h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    let mut config = h.agent_config("laptop", "laptop", &token);
    config.test_executors = true;
    h.start_agent_with(config);
    h.wait_online(1).await;
    assert!(
        h.devices().await[0]
            .capabilities
            .contains(&"steps".to_string())
    );

    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": r#"on laptop run "sleep 0.3""#, "turn_budget": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let steps = |id: &str, steps: u32, max_turns: u32| {
        json!({"op": "add_task", "task": {"id": id, "instruction": "count", "device": "laptop",
            "max_turns": max_turns, "action": {"kind": "steps", "steps": steps, "step_ms": 5}}})
    };
    let (status, body) = h
        .post(
            &format!("/v1/requests/{id}/edits"),
            &json!({"expected_version": 1, "ops": [
                // Needs 8 turns with a limit of 5: asks for 3, the pool (10) has them.
                steps("long", 8, 5),
                // Then needs 6 with a limit of 4, but only 2 are left: refused.
                steps("greedy", 6, 4),
                {"op": "add_edge", "from": "long", "to": "greedy"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = h.wait_done(&id).await;
    let task = |name: &str| v.tasks.iter().find(|t| t.id.as_str() == name).unwrap();
    assert_eq!(task("long").status, TaskStatus::Succeeded, "{v:#?}");
    assert_eq!(task("long").turns_used, 8);
    assert_eq!(task("long").max_turns, 5);
    let greedy = task("greedy");
    assert_eq!(greedy.status, TaskStatus::Failed);
    assert_eq!(greedy.error.as_ref().unwrap().code, "budget_exhausted");
    assert_eq!(greedy.attempts.len(), 1, "budget exhaustion is not retried");
    assert_eq!(greedy.turns_used, 2);
    assert_eq!(v.status, RequestStatus::Failed);
    assert_eq!(v.turns.budget, 10);
    assert_eq!(v.turns.used, 10);
    assert_eq!(v.turns.extensions_granted, 3);
    assert_eq!(v.turns.extensions_refused, 1);
    assert_eq!(v.turns.reserved, 10);

    let text = h.events_text(&id).await;
    assert_eq!(text.matches("event: turns_extended").count(), 2);
    assert!(text.contains(r#""granted":3"#), "{text}");
    assert!(text.contains(r#""granted":0"#), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_pool_fails_turn_based_tasks_before_they_start() {
    let mut h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    let mut config = h.agent_config("laptop", "laptop", &token);
    config.test_executors = true;
    h.start_agent_with(config);
    h.wait_online(1).await;
    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": r#"on laptop run "sleep 0.3""#, "turn_budget": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = h
        .post(
            &format!("/v1/requests/{id}/edits"),
            &json!({"expected_version": 1, "ops": [
                {"op": "add_task", "task": {"id": "a", "instruction": "count", "device": "laptop",
                    "max_turns": 3, "action": {"kind": "steps", "steps": 3}}},
                {"op": "add_task", "task": {"id": "b", "instruction": "count", "device": "laptop",
                    "max_turns": 3, "action": {"kind": "steps", "steps": 1}}},
                {"op": "add_edge", "from": "a", "to": "b"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = h.wait_done(&id).await;
    let b = v.tasks.iter().find(|t| t.id.as_str() == "b").unwrap();
    assert_eq!(b.status, TaskStatus::Failed);
    assert_eq!(b.error.as_ref().unwrap().code, "budget_exhausted");
    assert!(b.attempts.is_empty());
    h.stop().await;
}
