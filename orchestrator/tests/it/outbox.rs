//! The agent's durable outbox and graceful stop, against a real server: a result written to
//! the outbox by an earlier run is delivered by the next one, and a stopped agent hands its
//! running work back.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use weft_agent::outbox::Outbox;
use weft_protocol::wire::ResultStatus;
use weft_protocol::{AgentMsg, AttemptStatus, RequestStatus, ServerMsg, TaskOutput, TaskStatus};

use crate::harness::{Harness, WAIT};
use crate::raw::{connect_as, recv, send};

/// The result files in an outbox directory.
fn result_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

/// Polls until `dir` holds no result file.
async fn wait_outbox_empty(dir: &Path) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = result_files(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the outbox: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_in_the_outbox_survive_an_agent_restart() {
    let mut h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;

    // An "earlier run" of the agent: it takes the attempt, then its process goes away.
    let mut raw = connect_as(&h, "laptop", &token).await;
    let v = h.submit(r#"on laptop run "echo x""#).await;
    let Some(ServerMsg::Assign { attempt_id, .. }) = recv(&mut raw).await else {
        panic!("no assignment");
    };
    send(
        &mut raw,
        &AgentMsg::Accept {
            attempt_id: attempt_id.clone(),
        },
    )
    .await;
    h.wait_for(v.id.as_str(), "running", |v| {
        v.tasks[0].status == TaskStatus::Running
    })
    .await;
    drop(raw);
    h.wait_offline("laptop").await;

    // What it left in its outbox before it died.
    let config = h.agent_config("laptop", "laptop", &token);
    let mut outbox = Outbox::open(&config.state_dir).unwrap();
    outbox
        .put(AgentMsg::Result {
            attempt_id: attempt_id.clone(),
            status: ResultStatus::Succeeded,
            output: TaskOutput {
                summary: "from the outbox".into(),
                data: json!({"stdout": "from the outbox\n"}),
            },
            error: None,
            files: vec![],
        })
        .unwrap();
    let outbox_dir = outbox.dir().to_path_buf();
    drop(outbox);
    assert_eq!(result_files(&outbox_dir).len(), 1);

    // The next run holds it in its hello, gets it reattached, and delivers it.
    h.start_agent_with(config);
    let done = h.wait_done(v.id.as_str()).await;
    assert_eq!(done.status, RequestStatus::Succeeded, "{done:#?}");
    let task = &done.tasks[0];
    let output = task.output.as_ref().unwrap();
    assert_eq!(output.summary, "from the outbox");
    assert_eq!(output.data["stdout"], "from the outbox\n");
    assert_eq!(task.attempts.len(), 1, "{task:#?}");
    assert_eq!(task.attempts[0].id, attempt_id);
    assert_eq!(task.attempts[0].status, AttemptStatus::Succeeded);
    // The ack deleted the file.
    wait_outbox_empty(&outbox_dir).await;
    h.stop().await;
}

#[cfg(unix)]
/// Whether a process with this pid exists (`kill -0`).
fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_agent_hands_its_running_work_back() {
    let mut h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    let config = h.agent_config("laptop", "laptop", &token);
    let pid_file = config.workdir.join("pid");
    let outbox_dir = config.state_dir.join("outbox");
    let agent = h.start_agent_with(config);
    h.wait_online(1).await;

    let v = h
        .submit(r#"on laptop run "echo $$ > pid; exec sleep 30""#)
        .await;
    h.wait_for(v.id.as_str(), "running", |v| {
        v.tasks[0].status == TaskStatus::Running
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(&pid_file)
            && p.trim().parse::<u32>().is_ok()
        {
            break p.trim().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command wrote no pid"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(alive(&pid));

    // Stop it as SIGTERM would: it returns quickly, having handed the attempt back.
    let started = tokio::time::Instant::now();
    h.stop_agent(agent).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        started.elapsed()
    );
    let now = h
        .wait_for(v.id.as_str(), "with an ended attempt", |v| {
            v.tasks[0]
                .attempts
                .first()
                .is_some_and(|a| a.ended_at_ms.is_some())
        })
        .await;
    let attempt = &now.tasks[0].attempts[0];
    assert_eq!(attempt.status, AttemptStatus::Failed, "{now:#?}");
    assert_eq!(attempt.error.as_ref().unwrap().code, "agent_stopping");
    // The orchestrator acknowledged the result before the agent closed: nothing is left over.
    assert!(result_files(&outbox_dir).is_empty());

    // The shell's process is gone (allowing a moment for the killed child to be reaped).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while alive(&pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} outlived its agent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}
