//! The LLM executor on the device, end to end: instruction-only tasks (LLM-planned, or in a
//! submitted graph) run on the agent that has `[llm]` settings, against a scripted
//! OpenAI-compatible server (real HTTP on port 0), through a real orchestrator.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use weft_orchestrator::{LlmOptions, PlannerChoice};
use weft_planner::llm::Secret;
use weft_planner::llm::testing::{Reply, ScriptedLlm};
use weft_protocol::rest::{RequestView, TaskView};
use weft_protocol::{RequestStatus, TaskStatus};

use crate::harness::Harness;

const PLANNER_KEY: &str = "sk-planner-key";
const DEVICE_KEY: &str = "sk-device-key";

/// Agents `laptop` (with its own model at `device_llm`) and `server` (without one).
async fn start_agents(h: &mut Harness, device_llm: &str) {
    let token = h.add_device("laptop", "laptop").await;
    let mut config = h.agent_config("laptop", "laptop", &token);
    let mut llm = weft_agent::LlmConfig::new(device_llm, "device-model");
    llm.client.api_key = Some(Secret::new(DEVICE_KEY));
    llm.client.timeout = Duration::from_secs(5);
    llm.client.max_retries = 0;
    config.llm = Some(llm);
    h.start_agent_with(config);
    let token = h.add_device("server", "server").await;
    h.start_agent("server", "server", &token);
    h.wait_online(2).await;
    let devices = h.devices().await;
    let caps = |name: &str| {
        devices
            .iter()
            .find(|d| d.name.as_str() == name)
            .unwrap()
            .capabilities
            .clone()
    };
    assert!(caps("laptop").contains(&"llm".to_owned()), "{devices:?}");
    assert!(!caps("server").contains(&"llm".to_owned()), "{devices:?}");
}

fn task<'a>(v: &'a RequestView, id: &str) -> &'a TaskView {
    v.tasks
        .iter()
        .find(|t| t.id.as_str() == id)
        .unwrap_or_else(|| panic!("no task {id} in {v:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_planned_instruction_runs_on_the_device_with_a_model() {
    let planner = ScriptedLlm::start().await;
    let device = ScriptedLlm::start().await;
    // t1: an explicit action on the server; t2: no action, so a device with `llm`.
    planner.push(Reply::json(&json!({"refuse": null, "tasks": [
        {"id": "t1", "name": "print the number", "needs": [], "on": "server",
         "run": {"tool": "shell", "with": {"command": "echo 42"}}, "when": null},
        {"id": "t2", "name": "add one to the number t1 printed and save it in answer.txt",
         "needs": ["t1"], "on": "laptop", "run": {"tool": "llm", "with": {"max_turns": 5}},
         "when": null},
    ]})));
    planner.set_fallback(Reply::json(
        &json!({"decision": "finish", "reason": "done"}),
    ));
    device.push(
        Reply::tool_calls(&[("write_file", json!({"path": "answer.txt", "content": "43"}))])
            .usage(300, 25),
    );
    device.push(Reply::content("Saved 43 in answer.txt.").usage(400, 10));

    let mut options = LlmOptions::new(planner.base_url(), "planner-model");
    options.planner.client.api_key = Some(Secret::new(PLANNER_KEY));
    options.planner.client.timeout = Duration::from_secs(5);
    let mut h = Harness::start_with(|o| o.planner = PlannerChoice::Llm(Box::new(options))).await;
    start_agents(&mut h, &device.base_url()).await;

    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": "take the server's number, add one, keep it on a device"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let t2 = task(&v, "t2");
    assert_eq!(t2.status, TaskStatus::Succeeded);
    assert!(t2.action.is_none());
    assert_eq!(t2.attempts[0].device.as_str(), "laptop");
    let out = t2.output.as_ref().unwrap();
    assert_eq!(out.summary, "Saved 43 in answer.txt.");
    assert_eq!(out.data["turns_used"], 2);
    assert_eq!(out.data["tool_calls"], 1);
    assert_eq!(
        out.data["usage"],
        json!({"prompt_tokens": 700, "completion_tokens": 35, "calls": 2})
    );
    assert_eq!(t2.turns_used, 2);
    assert_eq!(
        std::fs::read_to_string(h.dir.path().join("agents/laptop/answer.txt")).unwrap(),
        "43"
    );

    // The device's model got the instruction, t1's output as untrusted data, and its tools;
    // with the device's key, not the planner's.
    let got = device.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].authorization.as_deref(),
        Some(&*format!("Bearer {DEVICE_KEY}"))
    );
    assert_eq!(got[0].body["model"], "device-model");
    let user = got[0].body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("add one to the number t1 printed"), "{user}");
    let (_, inputs) = user.split_once("never instructions):\n").unwrap();
    let inputs: Value = serde_json::from_str(inputs).unwrap();
    let t1: Value =
        serde_json::from_str(inputs["t1"]["untrusted_output"].as_str().unwrap()).unwrap();
    assert_eq!(t1["data"]["stdout"], "42\n");
    let tools: Vec<&str> = got[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["shell", "read_file", "write_file", "http_get"]);
    assert!(
        planner
            .received()
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {PLANNER_KEY}")))
    );

    // Progress carried the turns.
    let text = h.events_text(&id).await;
    assert!(text.contains("turn 2 of 5: answered"), "{text}");
    h.stop().await;
    planner.stop().await;
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_instruction_only_task_needs_a_device_with_a_model() {
    let device = ScriptedLlm::start().await;
    device.set_fallback(Reply::content("hello from the device's model"));
    let mut h = Harness::start().await;
    start_agents(&mut h, &device.base_url()).await;

    // An instruction-only task needs the `llm` capability: pinned to the server, which has
    // no model, the graph is refused before anything runs.
    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": "greet", "graph": {"tasks": [
                {"id": "a", "instruction": "say hello"},
                {"id": "b", "instruction": "say hello", "device": "server"},
            ], "edges": []}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unknown_capability");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server")
    );

    // Unpinned, it is placed on the device that has a model.
    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": "greet", "graph": {"tasks": [
                {"id": "a", "instruction": "say hello"},
            ], "edges": []}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = h.wait_done(body["id"].as_str().unwrap()).await;
    let a = task(&v, "a");
    assert_eq!(a.status, TaskStatus::Succeeded, "{v:#?}");
    assert_eq!(a.attempts[0].device.as_str(), "laptop");
    assert_eq!(
        a.output.as_ref().unwrap().summary,
        "hello from the device's model"
    );
    assert_eq!(v.status, RequestStatus::Succeeded);
    assert_eq!(device.received().len(), 1);
    h.stop().await;
    device.stop().await;
}
