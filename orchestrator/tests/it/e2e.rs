//! The three requests from the issue, end to end, plus outputs, edges and failure handling.

use std::time::Duration;

use weft_protocol::rest::{EventKind, RequestView};
use weft_protocol::{EdgeKind, RequestStatus, TaskStatus};

use crate::harness::Harness;

fn edges(v: &RequestView) -> Vec<(String, String)> {
    let mut e: Vec<_> = v
        .edges
        .iter()
        .map(|e| {
            assert_eq!(e.kind, EdgeKind::Success);
            (e.from.to_string(), e.to.to_string())
        })
        .collect();
    e.sort();
    e
}

fn stdout(v: &RequestView, task: &str) -> String {
    let t = v.tasks.iter().find(|t| t.id.as_str() == task).unwrap();
    t.output.as_ref().unwrap().data["stdout"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn device(v: &RequestView, task: &str) -> String {
    let t = v.tasks.iter().find(|t| t.id.as_str() == task).unwrap();
    t.device.as_ref().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parallel_tasks_on_two_devices() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(r#"on laptop run "echo alpha" and on server run "echo beta""#)
        .await;
    assert_eq!(v.tasks.len(), 2);
    assert!(v.edges.is_empty());
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(stdout(&v, "t1"), "alpha\n");
    assert_eq!(stdout(&v, "t2"), "beta\n");
    assert_eq!(device(&v, "t1"), "laptop");
    assert_eq!(device(&v, "t2"), "server");
    for t in &v.tasks {
        assert_eq!(t.attempts.len(), 1);
        assert_eq!(t.output.as_ref().unwrap().data["exit_code"], 0);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_runs_in_order() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(r#"on laptop run "echo one" then on server run "echo two""#)
        .await;
    assert_eq!(edges(&v), vec![("t1".into(), "t2".into())]);
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(stdout(&v, "t1"), "one\n");
    assert_eq!(stdout(&v, "t2"), "two\n");
    // t2 started only after t1 ended.
    let t1_end = v.tasks[0].attempts[0].ended_at_ms.unwrap();
    let t2_start = v.tasks[1].attempts[0].started_at_ms;
    assert!(
        t2_start >= t1_end,
        "t2 started at {t2_start}, before t1 ended at {t1_end}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_waits_for_three_devices() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(
            r#"on server run "echo x", on laptop run "echo y" and on phone run "echo z" then on laptop run "echo done""#,
        )
        .await;
    assert_eq!(v.tasks.len(), 4);
    assert_eq!(
        edges(&v),
        vec![
            ("t1".into(), "t4".into()),
            ("t2".into(), "t4".into()),
            ("t3".into(), "t4".into())
        ]
    );
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(
        [
            device(&v, "t1"),
            device(&v, "t2"),
            device(&v, "t3"),
            device(&v, "t4")
        ],
        ["server", "laptop", "phone", "laptop"]
    );
    assert_eq!(stdout(&v, "t4"), "done\n");
    let t4_start = v.tasks[3].attempts[0].started_at_ms;
    for t in &v.tasks[..3] {
        assert!(t.attempts[0].ended_at_ms.unwrap() <= t4_start);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_skips_downstream_and_fails_the_request() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(r#"on laptop run "echo oops >&2; exit 3" then on server run "echo never""#)
        .await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Failed);
    assert_eq!(v.tasks[0].status, TaskStatus::Failed);
    let err = v.tasks[0].error.as_ref().unwrap();
    assert_eq!(err.code, "exit_status");
    assert_eq!(v.tasks[0].output.as_ref().unwrap().data["exit_code"], 3);
    assert_eq!(v.tasks[1].status, TaskStatus::Skipped);
    assert!(v.tasks[1].attempts.is_empty());
    assert_eq!(v.error.as_ref().unwrap().code, "tasks_failed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_http_across_devices() {
    let h = Harness::with_three_agents().await;
    let text = format!(
        r#"on laptop write "hello file" to notes/a.txt and on phone fetch {}/healthz then on laptop read notes/a.txt"#,
        h.base
    );
    let v = h.submit(&text).await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let read = v.tasks[2].output.as_ref().unwrap();
    assert_eq!(read.data["content"], "hello file");
    let fetched = v.tasks[1].output.as_ref().unwrap();
    assert_eq!(fetched.data["status"], 200);
    assert!(fetched.data["body"].as_str().unwrap().contains("\"ok\""));
    // The file is really on the laptop agent's disk.
    let on_disk = std::fs::read_to_string(h.dir.path().join("agents/laptop/notes/a.txt")).unwrap();
    assert_eq!(on_disk, "hello file");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_replays_from_the_start_and_ends() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(r#"on laptop run "echo one" then on server run "echo two""#)
        .await;
    h.wait_done(v.id.as_str()).await;
    // A late subscriber still gets everything, in order, and the stream ends by itself.
    let resp = h
        .http
        .get(format!("{}/v1/requests/{}/events", h.base, v.id))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("stream did not end")
        .unwrap();
    let events: Vec<weft_protocol::rest::Event> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(matches!(events[0].kind, EventKind::RequestCreated { .. }));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let succeeded: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStatus {
                task_id,
                status: TaskStatus::Succeeded,
                ..
            } => Some(task_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(succeeded, ["t1", "t2"]);
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::RequestStatus {
            status: RequestStatus::Succeeded,
            ..
        }
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_in_the_sqlite_file() {
    let mut h = Harness::with_three_agents().await;
    let v = h.submit(r#"on laptop run "echo persisted""#).await;
    h.wait_done(v.id.as_str()).await;
    let id = v.id.clone();
    h.stop_in_place().await;
    // Reopen the database with a fresh store: the request, its task output and journal are
    // there.
    let store = weft_orchestrator::store::Store::open(&h.db).await.unwrap();
    let v = store.request_view(&id).await.unwrap().unwrap();
    assert_eq!(v.status, RequestStatus::Succeeded);
    assert_eq!(
        v.tasks[0].output.as_ref().unwrap().data["stdout"],
        "persisted\n"
    );
    assert!(store.events_after(&id, 0).await.unwrap().len() >= 5);
    assert_eq!(store.load_devices().await.unwrap().len(), 3);
}
