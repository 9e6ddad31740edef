//! The agent WebSocket endpoint with a raw protocol client: bad frames, bad tokens, a device
//! reporting on an attempt it does not hold, and one that never answers an assignment.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use weft_protocol::wire::ResultStatus;
use weft_protocol::{AgentMsg, RequestStatus, ServerMsg, TaskOutput, TaskStatus};

use crate::harness::Harness;
use crate::raw::{Ws, connect_as, hello, open, recv, send};

async fn expect_error_then_close(ws: &mut Ws, want: &str) {
    match recv(ws).await {
        Some(ServerMsg::Error { error }) | Some(ServerMsg::Refused { error }) => {
            assert_eq!(error.code, want, "{error:?}")
        }
        other => panic!("expected error {want}, got {other:?}"),
    }
    assert_eq!(recv(ws).await, None, "connection should be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_an_error_then_close_and_others_keep_working() {
    let mut h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;

    let mut ws = open(&h).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    expect_error_then_close(&mut ws, "bad_frame").await;

    let mut ws = open(&h).await;
    ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    expect_error_then_close(&mut ws, "bad_frame").await;

    let mut ws = open(&h).await;
    send(&mut ws, &AgentMsg::Heartbeat {}).await;
    expect_error_then_close(&mut ws, "expected_hello").await;

    let mut ws = open(&h).await;
    let big = json!({"type": "heartbeat", "pad": "x".repeat(weft_protocol::MAX_FRAME_BYTES)});
    ws.send(Message::Text(big.to_string().into()))
        .await
        .unwrap();
    expect_error_then_close(&mut ws, "frame_too_large").await;

    // After a good hello, an invalid frame also ends that connection...
    let mut ws = connect_as(&h, "laptop", &token).await;
    ws.send(Message::Text(r#"{"type":"result"}"#.into()))
        .await
        .unwrap();
    expect_error_then_close(&mut ws, "bad_frame").await;

    // ...and the server still serves everyone: a real agent connects and runs work.
    h.wait_online(0).await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;
    let v = h.submit(r#"on laptop run "echo still here""#).await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded);
    h.stop().await;
}

#[tokio::test]
async fn silence_before_hello_times_out() {
    let h = Harness::start().await;
    let mut ws = open(&h).await;
    expect_error_then_close(&mut ws, "hello_timeout").await;
}

#[tokio::test]
async fn wrong_or_missing_tokens_are_refused() {
    let h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    for (name, tok) in [
        ("laptop", "wrong"),
        ("laptop", ""),
        ("ghost", token.as_str()),
    ] {
        let mut ws = open(&h).await;
        send(&mut ws, &hello(name, tok)).await;
        expect_error_then_close(&mut ws, "bad_token").await;
    }
    let mut ws = open(&h).await;
    let mut old = hello("laptop", &token);
    if let AgentMsg::Hello {
        protocol_version, ..
    } = &mut old
    {
        *protocol_version = 999;
    }
    send(&mut ws, &old).await;
    expect_error_then_close(&mut ws, "unsupported_version").await;
    assert!(
        h.devices()
            .await
            .iter()
            .all(|d| d.status == weft_protocol::rest::DeviceStatus::Offline)
    );
}

#[tokio::test]
async fn a_second_connection_for_a_device_is_refused() {
    let h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    let _first = connect_as(&h, "laptop", &token).await;
    let mut second = open(&h).await;
    send(&mut second, &hello("laptop", &token)).await;
    expect_error_then_close(&mut second, "already_connected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_report_on_an_attempt_it_does_not_hold() {
    let h = Harness::start().await;
    let laptop_token = h.add_device("laptop", "laptop").await;
    let server_token = h.add_device("server", "server").await;
    let mut laptop = connect_as(&h, "laptop", &laptop_token).await;
    let mut server = connect_as(&h, "server", &server_token).await;

    let v = h.submit(r#"on server run "echo real""#).await;
    let Some(ServerMsg::Assign { attempt_id, .. }) = recv(&mut server).await else {
        panic!("server got no assignment");
    };

    // The laptop forges a result for the server's attempt, and for one that does not exist.
    for forged in [attempt_id.clone(), "a-made-up".into()] {
        send(
            &mut laptop,
            &AgentMsg::Result {
                attempt_id: forged,
                status: ResultStatus::Succeeded,
                output: TaskOutput {
                    summary: "forged".into(),
                    data: json!({}),
                },
                error: None,
                files: vec![],
            },
        )
        .await;
        match recv(&mut laptop).await {
            Some(ServerMsg::Error { error }) => assert_eq!(error.code, "not_your_attempt"),
            other => panic!("expected not_your_attempt, got {other:?}"),
        }
    }
    let now = h.request(v.id.as_str()).await;
    assert_eq!(now.status, RequestStatus::Running);
    assert_eq!(now.tasks[0].status, TaskStatus::Dispatched);
    assert!(now.tasks[0].output.is_none());

    // The real holder finishes it; a second copy of its result is acknowledged, not applied.
    send(
        &mut server,
        &AgentMsg::Accept {
            attempt_id: attempt_id.clone(),
        },
    )
    .await;
    let result = AgentMsg::Result {
        attempt_id: attempt_id.clone(),
        status: ResultStatus::Succeeded,
        output: TaskOutput {
            summary: "real".into(),
            data: json!({"stdout": "real\n"}),
        },
        error: None,
        files: vec![],
    };
    send(&mut server, &result).await;
    assert_eq!(
        recv(&mut server).await,
        Some(ServerMsg::Ack {
            attempt_id: attempt_id.clone()
        })
    );
    send(&mut server, &result).await;
    assert_eq!(recv(&mut server).await, Some(ServerMsg::Ack { attempt_id }));
    let done = h.wait_done(v.id.as_str()).await;
    assert_eq!(done.status, RequestStatus::Succeeded);
    assert_eq!(done.tasks[0].output.as_ref().unwrap().summary, "real");
    assert_eq!(done.tasks[0].attempts.len(), 1);
    // The journal holds exactly one success for the task.
    let (_, body) = h.get(&format!("/v1/requests/{}", v.id)).await;
    assert_eq!(body["tasks"][0]["status"], "succeeded");
}

/// Heartbeats never reach the engine, yet a device's `last_seen_ms` follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_device_s_last_seen_current() {
    let h = Harness::start().await;
    let token = h.add_device("l1", "laptop").await;
    let mut ws = connect_as(&h, "l1", &token).await;
    let seen = |devices: Vec<weft_protocol::rest::DeviceView>| devices[0].last_seen_ms.unwrap();
    let first = seen(h.devices().await);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    send(&mut ws, &AgentMsg::Heartbeat {}).await;
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    while seen(h.devices().await) <= first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "last_seen_ms never moved past {first}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.stop().await;
}

/// A device that stays connected and heartbeats but never answers an `assign` — as an agent
/// older than the orchestrator ignores an action it cannot read — loses the attempt after the
/// answer timeout (30 s at the harness's 500 ms heartbeat): it is sent a `cancel`, the attempt
/// ends `assign_unanswered`, and the task runs on a real agent of the same kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_a_connected_device_never_answers_runs_elsewhere() {
    let mut h = Harness::start().await;
    let deaf_token = h.add_device("deaf-mac", "laptop").await;
    let mut deaf = connect_as(&h, "deaf-mac", &deaf_token).await;
    let v = h.submit(r#"on laptop run "echo elsewhere""#).await;
    let Some(ServerMsg::Assign { attempt_id, .. }) = recv(&mut deaf).await else {
        panic!("expected an assign");
    };
    let started = std::time::Instant::now();
    // Only now a real agent of the same kind: the first attempt was the deaf device's.
    let token = h.add_device("real-mac", "laptop").await;
    h.start_agent("real-mac", "laptop", &token);

    // The deaf device heartbeats (it is not silent) and answers nothing, until its cancel.
    let mut beat = tokio::time::interval(std::time::Duration::from_millis(200));
    let reason = tokio::time::timeout(std::time::Duration::from_secs(45), async {
        loop {
            tokio::select! {
                _ = beat.tick() => send(&mut deaf, &AgentMsg::Heartbeat {}).await,
                frame = futures_util::StreamExt::next(&mut deaf) => match frame {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(ServerMsg::Cancel { attempt_id: a, reason }) =
                            serde_json::from_str(t.as_str())
                        {
                            assert_eq!(a, attempt_id);
                            return reason;
                        }
                    }
                    other => panic!("the deaf device's connection ended: {other:?}"),
                },
            }
        }
    })
    .await
    .expect("no cancel for the unanswered assignment");
    let waited = started.elapsed();
    assert_eq!(reason, "the assignment was not answered in time");
    assert!(
        waited >= std::time::Duration::from_secs(29),
        "given up after {waited:?}, before the 30 s answer timeout"
    );

    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let t = &v.tasks[0];
    assert_eq!(t.output.as_ref().unwrap().summary.trim(), "elsewhere");
    let codes: Vec<(&str, &str)> = t
        .attempts
        .iter()
        .map(|a| {
            (
                a.device.as_str(),
                a.error.as_ref().map_or("", |e| e.code.as_str()),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [("deaf-mac", "assign_unanswered"), ("real-mac", "")],
        "{t:#?}"
    );
    h.stop().await;
}
