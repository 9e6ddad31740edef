//! `POST /v1/requests?wait=S`: the answer comes when the request has ended (`201`, its final
//! view, as `GET /v1/requests/{id}` shows it) or when the wait runs out (`202`, the view as it
//! is then, still running), with a real `weft agent` process; on either store.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Child;
use weft_protocol::rest::RequestView;
use weft_protocol::{RequestStatus, TaskStatus};

use crate::faults::spawn_agent;
use crate::harness::Harness;

/// A server with one agent process, `l1` (a laptop), online.
async fn with_agent() -> (Harness, Child) {
    let h = Harness::start().await;
    let token = h.add_device("l1", "laptop").await;
    let agent = spawn_agent(&h.base, "l1", &token, h.dir.path());
    h.wait_online(1).await;
    (h, agent)
}

/// `POST /v1/requests?{query}` with `text`: the answer's status, body, and how long it took.
async fn submit(h: &Harness, query: &str, text: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (status, body) = h
        .post(&format!("/v1/requests?{query}"), &json!({"text": text}))
        .await;
    (status, body, started.elapsed())
}

/// The id of the newest request, once there is one.
async fn newest(h: &Harness) -> String {
    let deadline = Instant::now() + crate::harness::WAIT;
    loop {
        let (_, list) = h.get("/v1/requests").await;
        if let Some(id) = list[0]["id"].as_str() {
            return id.to_owned();
        }
        assert!(Instant::now() < deadline, "no request was created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn view(body: Value) -> RequestView {
    serde_json::from_value(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_request_is_answered_with_its_final_view() {
    let (h, _agent) = with_agent().await;
    let (status, body, _) = submit(&h, "wait=20", r#"on laptop run "echo waited""#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = view(body.clone());
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let t = &v.tasks[0];
    assert_eq!(t.status, TaskStatus::Succeeded);
    assert_eq!(t.output.as_ref().unwrap().data["stdout"], "waited\n");
    assert_eq!(t.device.as_ref().unwrap().as_str(), "l1");
    assert_eq!(t.attempts.len(), 1);
    assert!(t.attempts[0].ended_at_ms.is_some());
    // The same view a GET answers.
    let (_, got) = h.get(&format!("/v1/requests/{}", v.id)).await;
    assert_eq!(got, body);
    // The longest wait is taken too.
    let (status, body, _) = submit(&h, "wait=300", r#"on laptop run "echo again""#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(view(body).status, RequestStatus::Succeeded);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_wait_is_answered_running_and_ends_later() {
    let (h, _agent) = with_agent().await;
    let (status, body, took) = submit(&h, "wait=1", r#"on laptop run "sleep 3; echo late""#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let v = view(body);
    assert_eq!(v.status, RequestStatus::Running, "{v:#?}");
    assert!(!v.tasks[0].status.is_terminal(), "{v:#?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2_500),
        "answered after {took:?}"
    );
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(v.tasks[0].output.as_ref().unwrap().data["stdout"], "late\n");
    // `wait=0` answers at once, by the view's status.
    let (status, body, _) = submit(&h, "wait=0", r#"on laptop run "sleep 1""#).await;
    let v = view(body);
    let expected = if v.status.is_terminal() {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    assert_eq!(status, expected, "{v:#?}");
    h.wait_done(v.id.as_str()).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_wait_is_refused_and_creates_nothing() {
    let (h, _agent) = with_agent().await;
    for query in [
        "wait=301",
        "wait=86400",
        "wait=-1",
        "wait=1.5",
        "wait=abc",
        "wait=",
        "wiat=5",
    ] {
        let (status, body, _) = submit(&h, query, r#"on laptop run "echo no""#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}: {body}");
    }
    let (status, body, _) = submit(&h, "wait=301", r#"on laptop run "echo no""#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("from 0 to 300"), "{message}");
    let (_, list) = h.get("/v1/requests").await;
    assert_eq!(list, json!([]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_is_answered_with_its_failed_view() {
    let (h, _agent) = with_agent().await;
    let (status, body, _) = submit(
        &h,
        "wait=20",
        r#"on laptop run "echo oops >&2; exit 3" then on laptop run "echo never""#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = view(body);
    assert_eq!(v.status, RequestStatus::Failed, "{v:#?}");
    assert_eq!(v.error.as_ref().unwrap().code, "tasks_failed");
    assert_eq!(v.tasks[0].status, TaskStatus::Failed);
    assert_eq!(v.tasks[0].error.as_ref().unwrap().code, "exit_status");
    assert_eq!(v.tasks[0].output.as_ref().unwrap().data["exit_code"], 3);
    assert_eq!(v.tasks[1].status, TaskStatus::Skipped);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_during_the_wait_is_answered_cancelled() {
    let (h, _agent) = with_agent().await;
    let (base, token) = (h.base.clone(), h.token.clone());
    let waiting = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{base}/v1/requests?wait=30"))
            .bearer_auth(token)
            .json(&json!({"text": r#"on laptop run "sleep 30""#}))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    let id = newest(&h).await;
    h.wait_for(&id, "running", |v| v.tasks[0].status == TaskStatus::Running)
        .await;
    let (status, _) = h
        .post(&format!("/v1/requests/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waited submit was not answered after the cancel")
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v = view(body);
    assert_eq!(v.id.as_str(), id);
    assert_eq!(v.status, RequestStatus::Cancelled, "{v:#?}");
    assert_eq!(v.tasks[0].status, TaskStatus::Cancelled);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_leaves_the_request_running() {
    let (h, _agent) = with_agent().await;
    let gone = reqwest::Client::new()
        .post(format!("{}/v1/requests?wait=60", h.base))
        .bearer_auth(&h.token)
        .json(&json!({"text": r#"on laptop run "sleep 1; echo on its own""#}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.unwrap_err().is_timeout());
    let id = newest(&h).await;
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(
        v.tasks[0].output.as_ref().unwrap().data["stdout"],
        "on its own\n"
    );
    // The server goes on answering waited submits.
    let (status, body, _) = submit(&h, "wait=20", r#"on laptop run "echo next""#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.stop().await;
}

/// `weft submit --wait TEXT` against `h`: its exit code and stdout.
async fn weft_submit_wait(h: &Harness, text: &str) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["submit", "--wait", text])
            .args(["--server", &h.base, "--api-token", &h.token])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("weft submit --wait did not finish in time")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_submit_wait_prints_the_final_view_and_exits_by_its_status() {
    let (h, _agent) = with_agent().await;
    let (code, out) = weft_submit_wait(&h, r#"on laptop run "echo from the cli""#).await;
    assert_eq!(code, Some(0), "{out}");
    let id = out.lines().next().unwrap();
    assert_eq!(h.request(id).await.status, RequestStatus::Succeeded);
    assert!(out.contains("from the cli"), "{out}");
    let (code, out) = weft_submit_wait(&h, r#"on laptop run "exit 3""#).await;
    assert_eq!(code, Some(1), "{out}");
    let id = out.lines().next().unwrap();
    assert_eq!(h.request(id).await.status, RequestStatus::Failed);
    h.stop().await;
}
