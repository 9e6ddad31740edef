//! A living graph, end to end: condition and completion edges, data passed across devices,
//! atomic edit batches with version checks, and cancellation that kills process trees.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use weft_protocol::rest::RequestView;
use weft_protocol::{RequestStatus, TaskStatus};

use crate::harness::{Harness, pid_alive};

fn task<'a>(v: &'a RequestView, id: &str) -> &'a weft_protocol::rest::TaskView {
    v.tasks
        .iter()
        .find(|t| t.id.as_str() == id)
        .unwrap_or_else(|| panic!("no task {id} in {v:#?}"))
}

async fn edit(h: &Harness, id: &str, body: Value) -> (StatusCode, Value) {
    h.post(&format!("/v1/requests/{id}/edits"), &body).await
}

fn shell(id: &str, command: &str) -> Value {
    json!({"op": "add_task", "task": {"id": id, "instruction": command, "device": "laptop",
        "action": {"kind": "shell", "command": command}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flows_from_one_device_to_another() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(
            r#"on laptop run "echo alpha; echo beta" then on phone write the result to out.txt"#,
        )
        .await;
    assert_eq!(v.edges.len(), 1);
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let written = std::fs::read_to_string(h.dir.path().join("agents/phone/out.txt")).unwrap();
    assert_eq!(written, "alpha\nbeta\n");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_edges_pick_a_branch_and_references_carry_outputs() {
    let h = Harness::with_three_agents().await;
    // t1 runs for a moment; meanwhile the graph grows two branches on its output.
    let v = h
        .submit(r#"on laptop run "sleep 0.5; echo status=ok""#)
        .await;
    let id = v.id.to_string();
    let (status, body) = edit(
        &h,
        &id,
        json!({"expected_version": 1, "ops": [
            {"op": "add_task", "task": {"id": "ok", "instruction": "record success", "device": "phone",
                "action": {"kind": "write_file", "path": "ok.txt", "content": "saw {{t1.output.stdout}}"}}},
            {"op": "add_task", "task": {"id": "alarm", "instruction": "raise the alarm", "device": "server",
                "action": {"kind": "shell", "command": "echo alarm"}}},
            {"op": "add_edge", "from": "t1", "to": "ok", "kind": "condition",
                "condition": {"on": "data", "path": "/stdout", "op": "contains", "value": "status=ok"}},
            {"op": "add_edge", "from": "t1", "to": "alarm", "kind": "condition",
                "condition": {"on": "data", "path": "/exit_code", "op": "not_equals", "value": 0}},
            shell("always", "echo cleanup"),
            {"op": "add_edge", "from": "alarm", "to": "always", "kind": "completion"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(task(&v, "ok").status, TaskStatus::Succeeded);
    assert_eq!(task(&v, "alarm").status, TaskStatus::Skipped);
    assert_eq!(
        task(&v, "alarm").error.as_ref().unwrap().code,
        "condition_false"
    );
    assert!(task(&v, "alarm").attempts.is_empty());
    // A completion edge runs after a skipped upstream too.
    assert_eq!(task(&v, "always").status, TaskStatus::Succeeded);
    let written = std::fs::read_to_string(h.dir.path().join("agents/phone/ok.txt")).unwrap();
    assert_eq!(written, "saw status=ok\n");
    // Kinds and conditions are kept with the edges.
    let kinds: Vec<String> = v
        .edges
        .iter()
        .map(|e| format!("{}->{}:{}", e.from, e.to, e.kind.as_str()))
        .collect();
    assert!(kinds.contains(&"t1->ok:condition".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"alarm->always:completion".to_string()),
        "{kinds:?}"
    );
    assert_journal_rebuilds(&h, &v).await;
    h.stop().await;
}

/// The request's journal alone rebuilds its graph: every task's status and output, and every
/// edge with its kind and condition.
async fn assert_journal_rebuilds(h: &Harness, v: &RequestView) {
    let events = h.events(v.id.as_str()).await;
    let graph = weft_orchestrator::engine::Graph::replay(
        events.iter().map(|e| &e.kind),
        &weft_orchestrator::engine::TaskDefaults {
            retry: weft_protocol::RetryPolicy::default(),
            max_turns: 1,
        },
    )
    .unwrap();
    let rebuilt: Vec<_> = graph
        .tasks()
        .map(|t| (t.id.clone(), t.status(), t.output.clone()))
        .collect();
    let live: Vec<_> = v
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.status, t.output.clone()))
        .collect();
    assert_eq!(rebuilt, live);
    assert_eq!(graph.edges(), v.edges);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_batch_applies_whole_or_not_at_all() {
    let h = Harness::with_three_agents().await;
    let v = h.submit(r#"on laptop run "sleep 1; echo one""#).await;
    let id = v.id.to_string();
    // The last op is invalid (a cycle): nothing of the batch may stick.
    let (status, body) = edit(
        &h,
        &id,
        json!({"expected_version": 1, "ops": [
            shell("a", "echo a"),
            shell("b", "echo b"),
            {"op": "add_edge", "from": "a", "to": "b"},
            {"op": "add_edge", "from": "b", "to": "a"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "cycle");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("op 3:")
    );
    let now = h.request(&id).await;
    assert_eq!(now.version, 1);
    assert_eq!(now.tasks.len(), 1);
    assert!(now.edges.is_empty());

    // Two clients edit the same version at once: exactly one wins, the other gets 409.
    let one = edit(
        &h,
        &id,
        json!({"expected_version": 1, "ops": [shell("x", "echo x")]}),
    );
    let two = edit(
        &h,
        &id,
        json!({"expected_version": 1, "ops": [shell("y", "echo y")]}),
    );
    let ((s1, b1), (s2, b2)) = tokio::join!(one, two);
    let mut statuses = [s1.as_u16(), s2.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{b1} {b2}");
    let loser = if s1 == StatusCode::CONFLICT { b1 } else { b2 };
    assert_eq!(loser["error"]["code"], "version_conflict");
    let now = h.request(&id).await;
    assert_eq!(now.version, 2);
    assert_eq!(now.tasks.len(), 2);

    // A task that has started cannot be changed.
    let (status, body) = edit(
        &h,
        &id,
        json!({"expected_version": 2, "ops": [{"op": "update_task", "task_id": "t1", "title": "renamed"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "task_not_editable");

    let done = h.wait_done(&id).await;
    assert_eq!(done.status, RequestStatus::Succeeded, "{done:#?}");
    // Edits after the end are refused.
    let (status, body) = edit(
        &h,
        &id,
        json!({"expected_version": 2, "ops": [shell("z", "true")]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "request_finished");
    let (status, body) = edit(&h, "nope", json!({"expected_version": 1, "ops": []})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The journal records the accepted batch, in order, with its version.
    let text = h.events_text(&id).await;
    assert_eq!(text.matches("event: graph_edited").count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_request_kills_the_process_tree_and_cancels_what_is_left() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(
            r#"on laptop run "sleep 60 & echo $! > child; echo $$ > parent; wait" then on server run "echo never""#,
        )
        .await;
    let id = v.id.to_string();
    h.wait_for(&id, "running", |v| v.tasks[0].status == TaskStatus::Running)
        .await;
    let workdir = h.dir.path().join("agents/laptop");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !workdir.join("parent").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child = std::fs::read_to_string(workdir.join("child")).unwrap();
    let parent = std::fs::read_to_string(workdir.join("parent")).unwrap();
    assert!(pid_alive(&child) && pid_alive(&parent));

    let (status, body) = h
        .post(&format!("/v1/requests/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Cancelled, "{v:#?}");
    assert_eq!(v.tasks[0].status, TaskStatus::Cancelled);
    assert_eq!(v.tasks[1].status, TaskStatus::Cancelled);
    assert!(v.tasks[1].attempts.is_empty());
    // The agent confirmed: the attempt ended cancelled, and the whole tree is gone.
    assert_eq!(
        v.tasks[0].attempts[0].status,
        weft_protocol::AttemptStatus::Cancelled
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pid_alive(&child) || pid_alive(&parent) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes survived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Cancelling again is refused: it has finished.
    let (status, body) = h
        .post(&format!("/v1/requests/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "request_finished");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_waiting_task_skips_what_needed_it() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(
            r#"on laptop run "sleep 0.5; echo one" then on server run "echo two" then on phone run "echo three""#,
        )
        .await;
    let id = v.id.to_string();
    let resp = h
        .http
        .delete(format!("{}/v1/requests/{id}/tasks/t2", h.base))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v = h.wait_done(&id).await;
    assert_eq!(task(&v, "t1").status, TaskStatus::Succeeded);
    assert_eq!(task(&v, "t2").status, TaskStatus::Cancelled);
    assert_eq!(task(&v, "t3").status, TaskStatus::Skipped);
    assert_eq!(v.status, RequestStatus::Cancelled);
    let (status, body) = h
        .post(&format!("/v1/requests/{id}/tasks/t9/cancel"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_can_be_submitted_whole_and_is_checked_like_an_edit() {
    let h = Harness::with_three_agents().await;
    let n = 60;
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("s{i}"), "instruction": "step",
                "action": {"kind": "shell", "command": format!("echo {i}")}})
        })
        .collect();
    let edges: Vec<Value> = (1..n)
        .map(|i| json!({"from": format!("s{}", i - 1), "to": format!("s{i}"), "kind": "success"}))
        .collect();
    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": "a 60-step chain", "graph": {"tasks": tasks, "edges": edges}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = h.wait_done(body["id"].as_str().unwrap()).await;
    assert_eq!(v.status, RequestStatus::Succeeded);
    assert_eq!(v.tasks.len(), n);
    assert_eq!(
        v.tasks[n - 1].output.as_ref().unwrap().data["stdout"],
        format!("{}\n", n - 1)
    );
    // Starts never overlap along the chain.
    for w in v.tasks.windows(2) {
        assert!(w[1].attempts[0].started_at_ms >= w[0].attempts[0].ended_at_ms.unwrap());
    }

    for (graph, code) in [
        (
            json!({"tasks": [{"id": "a", "instruction": "x", "device": "toaster",
                "action": {"kind": "shell", "command": "true"}}]}),
            "unknown_device",
        ),
        (
            json!({"tasks": [
                {"id": "a", "instruction": "x", "action": {"kind": "shell", "command": "true"}},
                {"id": "b", "instruction": "x", "action": {"kind": "shell", "command": "true"}}],
              "edges": [{"from": "a", "to": "b", "kind": "success"}, {"from": "b", "to": "a", "kind": "success"}]}),
            "cycle",
        ),
        (json!({"tasks": []}), "empty_graph"),
    ] {
        let (status, body) = h
            .post("/v1/requests", &json!({"text": "bad", "graph": graph}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], code);
    }
    h.stop().await;
}

/// What a scripted agent sees and answers in one race: it takes t1, is told to cancel it,
/// and answers `succeeded` anyway. `cancel_path` cancels the task or the whole request.
async fn cancel_races_a_result(h: &Harness, ws: &mut crate::raw::Ws, cancel_path: &str) {
    use weft_protocol::wire::ResultStatus;
    use weft_protocol::{AgentMsg, AttemptStatus, ServerMsg, TaskOutput};

    use crate::raw;

    let v = h
        .submit(r#"on laptop run "echo one" then on laptop run "echo two""#)
        .await;
    let id = v.id.to_string();
    let Some(ServerMsg::Assign {
        attempt_id,
        task_id,
        ..
    }) = raw::recv(ws).await
    else {
        panic!("no assignment");
    };
    assert_eq!(task_id.as_str(), "t1");
    let accept = AgentMsg::Accept {
        attempt_id: attempt_id.clone(),
    };
    raw::send(ws, &accept).await;
    // The answer comes once the cancel is committed.
    let path = cancel_path.replace("{id}", &id);
    let (status, body) = h.post(&path, &json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    match raw::recv(ws).await {
        Some(ServerMsg::Cancel { attempt_id: a, .. }) => assert_eq!(a, attempt_id),
        other => panic!("expected cancel, got {other:?}"),
    }
    // The agent finished anyway and says so.
    let result = AgentMsg::Result {
        attempt_id: attempt_id.clone(),
        status: ResultStatus::Succeeded,
        output: TaskOutput {
            summary: "done anyway".into(),
            data: json!({"stdout": "one\n"}),
        },
        error: None,
        files: vec![],
    };
    raw::send(ws, &result).await;
    // Acknowledged (the outbox drains), and nothing else is sent: t2 is never assigned.
    assert_eq!(
        raw::recv(ws).await,
        Some(ServerMsg::Ack {
            attempt_id: attempt_id.clone()
        })
    );
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Cancelled, "{cancel_path}: {v:#?}");
    let t1 = task(&v, "t1");
    assert_eq!(t1.status, TaskStatus::Cancelled, "{cancel_path}: {v:#?}");
    assert!(
        t1.output
            .as_ref()
            .is_none_or(|o| o.summary != "done anyway"),
        "{cancel_path}: the racing result was applied: {v:#?}"
    );
    let attempt = &t1.attempts[0];
    assert_eq!(attempt.status, AttemptStatus::Cancelled, "{cancel_path}");
    let late = attempt
        .late_result
        .as_ref()
        .expect("the result is recorded");
    assert_eq!(
        (late.status, late.output.summary.as_str()),
        (ResultStatus::Succeeded, "done anyway")
    );
    let t2 = task(&v, "t2");
    assert!(
        matches!(t2.status, TaskStatus::Skipped | TaskStatus::Cancelled),
        "{cancel_path}: {v:#?}"
    );
    assert!(t2.attempts.is_empty(), "{cancel_path}: t2 ran: {v:#?}");
    // The journal never says t1 succeeded.
    let events = h.events(&id).await;
    assert!(
        !events.iter().any(|e| matches!(&e.kind,
            weft_protocol::rest::EventKind::TaskStatus { task_id, status: TaskStatus::Succeeded, .. }
                if task_id.as_str() == "t1")),
        "{cancel_path}: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_cancel_wins_over_a_racing_result() {
    let h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    let mut ws = crate::raw::connect_as(&h, "laptop", &token).await;
    cancel_races_a_result(&h, &mut ws, "/v1/requests/{id}/tasks/t1/cancel").await;
    cancel_races_a_result(&h, &mut ws, "/v1/requests/{id}/cancel").await;
    h.stop().await;
}
