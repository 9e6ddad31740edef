//! Devices come and go: `weft device remove` and `weft device rotate` against real agent
//! processes, and what survives a restart of the server.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};
use weft_protocol::rest::{DeviceStatus, RequestView};
use weft_protocol::{AttemptStatus, RequestStatus, ServerMsg};

use crate::enroll::{Machine, WEFT};
use crate::harness::{Harness, WAIT};
use crate::raw;
use crate::web::{follow, read_events};

/// `weft agent` as a child process, its standard error kept for the test to read.
fn spawn_agent(h: &Harness, name: &str, token: &str) -> Child {
    Command::new(WEFT)
        .args([
            "agent", "--server", &h.base, "--name", name, "--kind", "laptop",
        ])
        .arg("--workdir")
        .arg(h.dir.path().join("procs").join(name))
        .arg("--state-dir")
        .arg(h.dir.path().join("procs-state").join(name))
        .env("WEFT_DEVICE_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits for an agent process to stop on its own; its exit code and standard error.
async fn exits(child: Child) -> (Option<i32>, String) {
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the agent kept running after it was refused")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `weft` CLI against the test server; its standard output.
async fn weft(h: &Harness, args: &[&str]) -> String {
    let out = Command::new(WEFT)
        .args(args)
        .args(["--server", &h.base, "--api-token", &h.token])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "weft {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The enrollment line in what `weft device add` or `rotate` printed.
fn enrollment_line(printed: &str) -> String {
    printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("WEFT_DEVICE_TOKEN="))
        .unwrap_or_else(|| panic!("no enrollment line in:\n{printed}"))
        .to_owned()
}

/// The code a hello with this name and token is refused with (`None`: welcomed).
async fn hello_refusal(h: &Harness, name: &str, token: &str) -> Option<String> {
    let mut ws = raw::open(h).await;
    raw::send(&mut ws, &raw::hello(name, token)).await;
    match raw::recv(&mut ws).await {
        Some(ServerMsg::Refused { error }) => Some(error.code),
        Some(ServerMsg::Welcome { .. }) => None,
        other => panic!("expected welcome or refused, got {other:?}"),
    }
}

async fn names(h: &Harness) -> Vec<String> {
    h.devices()
        .await
        .into_iter()
        .map(|d| d.name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_cut_off_and_its_work_runs_elsewhere() {
    let mut h = Harness::start().await;
    let token_a = h.add_device("a", "laptop").await;
    let token_b = h.add_device("b", "laptop").await;
    let a = spawn_agent(&h, "a", &token_a);
    let mut b = spawn_agent(&h, "b", &token_b);
    h.wait_online(2).await;

    // One task any laptop may run: `a` gets it (equal load, first by name).
    let task = json!({"id": "t1", "instruction": "wait, then answer", "device_kind": "laptop",
        "action": {"kind": "shell", "command": "sleep 2; echo finished"}});
    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": "one task", "graph": {"tasks": [task]}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let running_on_a = |v: &RequestView| {
        v.tasks[0]
            .attempts
            .iter()
            .any(|at| at.device.as_str() == "a" && at.status == AttemptStatus::Running)
    };
    h.wait_for(&id, "running on a", running_on_a).await;

    let said = weft(&h, &["device", "remove", "a"]).await;
    assert!(
        said.contains("removed a") && said.contains("1 running attempt(s) placed again"),
        "{said}"
    );
    // The agent is told, its connection closed, and it stops for good with a message for its
    // owner.
    let (code, stderr) = exits(a).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("device_removed") && stderr.contains("weft device add"),
        "{stderr}"
    );
    // The attempt was lost and the task ran again on `b`.
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let tried: Vec<(String, AttemptStatus, Option<String>)> = v.tasks[0]
        .attempts
        .iter()
        .map(|at| {
            let code = at.error.as_ref().map(|e| e.code.clone());
            (at.device.to_string(), at.status, code)
        })
        .collect();
    assert_eq!(
        tried,
        [
            ("a".into(), AttemptStatus::Lost, Some("device_lost".into())),
            ("b".into(), AttemptStatus::Succeeded, None),
        ]
    );
    assert_eq!(names(&h).await, ["b"]);

    // Its token is refused by name; REST knows the device no more.
    assert_eq!(
        hello_refusal(&h, "a", &token_a).await.as_deref(),
        Some("device_removed")
    );
    for (status, body) in [
        h.delete("/v1/devices/a").await,
        h.post("/v1/devices/a/rotate", &json!({})).await,
    ] {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "device_not_found");
    }

    // A connection cut while idle gets the refusal, then the close; the live device view
    // (the web view's) is told the device is gone.
    let token_c = h.add_device("c", "laptop").await;
    let mut c = raw::connect_as(&h, "c", &token_c).await;
    let mut live = follow(&h, "/v1/devices/events").await;
    let mut buf = String::new();
    read_events(&mut live, &mut buf, |name, _| name == "devices").await;
    let (status, body) = h.delete("/v1/devices/c").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"name": "c", "was_connected": true, "attempts_lost": 0})
    );
    match raw::recv(&mut c).await {
        Some(ServerMsg::Refused { error }) => assert_eq!(error.code, "device_removed"),
        other => panic!("expected refused, got {other:?}"),
    }
    assert_eq!(raw::recv(&mut c).await, None, "the connection is closed");
    read_events(&mut live, &mut buf, |_, d| {
        d["name"] == "c" && d["status"] == "removed"
    })
    .await;
    drop(live);

    // After a restart: still removed, still refused; `b` comes back on its own.
    h.restart().await;
    h.wait_online(1).await;
    assert_eq!(names(&h).await, ["b"]);
    assert_eq!(
        hello_refusal(&h, "a", &token_a).await.as_deref(),
        Some("device_removed")
    );
    // The name can be registered again, with a new token; the removed one stays refused.
    let again = h.add_device("a", "laptop").await;
    assert_eq!(
        hello_refusal(&h, "a", &token_a).await.as_deref(),
        Some("bad_token")
    );
    assert_eq!(hello_refusal(&h, "a", &again).await, None);
    b.start_kill().unwrap();
    let _ = b.wait().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_stops_the_agent_until_its_owner_enrolls_it_again() {
    let mut h = Harness::start().await;
    let m = Machine::new(&h.dir.path().join("machine"));
    let line = enrollment_line(&weft(&h, &["device", "add", "mbp", "--kind", "laptop"]).await);
    let (init, _) = line.split_once(" && ").unwrap();
    m.sh(init).await;
    // The owner's own policy, which enrolling again must keep.
    let config = m.config_home().join("weft/agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("deny = []", r#"deny = ["rm *"]"#);
    assert!(text.contains(r#"deny = ["rm *"]"#));
    std::fs::write(&config, text).unwrap();
    let start = || {
        m.command(WEFT)
            .arg("agent")
            .arg("--config")
            .arg(&config)
            .current_dir(h.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let agent = start();
    h.wait_online(1).await;
    let old = line.split([' ', '=']).nth(1).unwrap().to_owned();

    let printed = weft(&h, &["device", "rotate", "mbp"]).await;
    let line = enrollment_line(&printed);
    assert!(
        line.contains(" weft-agent init --new-token --server ")
            && line.ends_with(" --name mbp --kind laptop && weft-agent install-service"),
        "{printed}"
    );
    let new = line.split([' ', '=']).nth(1).unwrap().to_owned();
    assert_ne!(new, old);

    // The connected agent is told, stops retrying and says what to do.
    let (code, stderr) = exits(agent).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("token_rotated") && stderr.contains("weft-agent init --new-token"),
        "{stderr}"
    );
    assert_eq!(h.devices().await[0].status, DeviceStatus::Offline);
    assert_eq!(
        hello_refusal(&h, "mbp", &old).await.as_deref(),
        Some("token_rotated")
    );

    // The owner runs the new line: the token file is replaced, the config and its policy kept.
    let (init, _) = line.split_once(" && ").unwrap();
    let out = m.sh(init).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("policy unchanged"),
        "{out:?}"
    );
    let kept = std::fs::read_to_string(&config).unwrap();
    assert!(kept.contains(r#"deny = ["rm *"]"#), "{kept}");
    let mut agent = start();
    h.wait_online(1).await;
    let v = h.submit(r#"on mbp run "echo rotated""#).await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");

    // After a restart of the server the new token still works and the old one is still refused.
    h.restart().await;
    h.wait_online(1).await;
    assert_eq!(
        hello_refusal(&h, "mbp", &old).await.as_deref(),
        Some("token_rotated")
    );
    let v = h.submit(r#"on mbp run "echo again""#).await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    agent.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
    h.stop().await;
}

#[tokio::test]
async fn remove_and_rotate_are_documented_and_need_the_api_token() {
    let h = Harness::start().await;
    let token = h.add_device("d", "phone").await;
    let (_, doc) = h.get("/openapi.json").await;
    for (path, method) in [
        ("/v1/devices/{name}", "delete"),
        ("/v1/devices/{name}/rotate", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op["responses"]["404"].is_object(), "{path} {method}: {op}");
        assert!(op["security"].is_array(), "{path} {method}: {op}");
    }
    assert!(doc["components"]["schemas"]["DeviceRemoved"].is_object());
    for req in [
        h.http.delete(format!("{}/v1/devices/d", h.base)),
        h.http.post(format!("{}/v1/devices/d/rotate", h.base)),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "missing_api_token");
    }
    // Nothing changed: the device is there and its token works.
    assert_eq!(names(&h).await, ["d"]);
    assert_eq!(hello_refusal(&h, "d", &token).await, None);
    h.stop().await;
}
