//! Grace windows: the attempts of a device whose connection closed wait for it; back in time,
//! it keeps them; gone longer, they are lost and placed elsewhere at once (no backoff), and a
//! result it sends for them later is recorded, not applied. A device that went silent loses
//! its attempts at once. After a restart, attempts in flight wait for their devices as if they
//! had just disconnected.

use weft_protocol::wire::ResultStatus;

use super::{Rig, T1_RUNNING_ON_D1, shell};

#[tokio::test(start_paused = true)]
async fn a_device_back_within_the_grace_window_keeps_its_attempt() {
    let (rig, [mut d1]) = Rig::with_shells(["d1"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    d1.close().await;
    rig.advance(1500).await;
    assert_eq!(d1.connect(&["t1"]).await, "welcome, reattached t1#1");
    // Past the end of the window it would have had: nothing is lost.
    rig.advance(1000).await;
    d1.check("");
    rig.check(&r, T1_RUNNING_ON_D1).await;

    d1.succeed("t1").await;
    d1.check("ack t1#1");
    rig.check(
        &r,
        "
        succeeded
        t1 succeeded
          #1 d1 succeeded +0..+2500
    ",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_device_gone_past_the_grace_window_loses_its_attempt_to_another() {
    let (rig, [mut d1, mut d2]) = Rig::with_shells(["d1", "d2"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    rig.advance(500).await;
    d1.close().await;
    // The window is 2 s from the close, and ends on time, not on the next tick.
    rig.advance(1950).await;
    d2.check("");
    rig.check(&r, T1_RUNNING_ON_D1).await;
    rig.advance(50).await;
    d2.check("assign t1#2");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 lost +0..+2500 device_lost
          #2 d2 dispatched +2500
    ",
    )
    .await;

    // d1 comes back still holding its attempt: not wanted any more, and its result is late.
    rig.advance(500).await;
    assert_eq!(d1.connect(&["t1"]).await, "welcome");
    d1.result("t1#1", ResultStatus::Succeeded, None).await;
    assert_eq!(rig.frames_for(&mut d1).await, "ack t1#1");
    d2.accept("t1").await;
    d2.succeed("t1").await;
    d2.check("ack t1#2");
    rig.check(
        &r,
        "
        succeeded
        t1 succeeded
          #1 d1 lost +0..+2500 device_lost (late Succeeded at +3000)
          #2 d2 succeeded +2500..+3000
    ",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_loses_its_attempts_at_once() {
    let (rig, [mut d1, mut d2]) = Rig::with_shells(["d1", "d2"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    rig.advance(700).await;
    d1.go_silent().await;
    d2.check("assign t1#2");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 lost +0..+700 device_lost
          #2 d2 dispatched +700
    ",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_attempts_in_flight_wait_a_grace_window_for_their_devices() {
    let (mut rig, [mut d1, mut d2]) = Rig::with_shells(["d1", "d2"]).await;
    let r = rig
        .submit(vec![shell("t1"), shell("t2")], vec![], None)
        .await;
    d1.check("assign t1#1");
    d2.check("assign t2#1");
    d1.accept("t1").await;
    d2.accept("t2").await;

    // Both still run when the 5 s shutdown grace is over; the new engine starts at +5000.
    rig.restart().await;
    rig.check(
        &r,
        "
        running
        t1 running
          #1 d1 running +0
        t2 running
          #1 d2 running +0
    ",
    )
    .await;

    // d2 is back within the 2 s window and keeps t2; d1 is not.
    rig.advance(1000).await;
    assert_eq!(
        d2.reconnect_to(&rig, &["t2"]).await,
        "welcome, reattached t2#1"
    );
    rig.advance(900).await;
    d2.check("");
    rig.advance(100).await;
    rig.check(
        &r,
        "
        running
        t1 ready device_lost: device `d1` was gone longer than the 2 s grace window
          #1 d1 lost +0..+7000 device_lost
        t2 running
          #1 d2 running +0
    ",
    )
    .await;

    // t1 goes to d2 once its slot is free.
    d2.succeed("t2").await;
    d2.check(
        "
        ack t2#1
        assign t1#2
    ",
    );
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 lost +0..+7000 device_lost
          #2 d2 dispatched +7000
        t2 succeeded
          #1 d2 succeeded +0..+7000
    ",
    )
    .await;
}

/// An accept and its result handled in one group: the journal skips the `running` no one saw
/// (`dispatched` → `succeeded`, gapless numbering), `Graph::replay` rebuilds the live graph from
/// it, and an engine started again on the store shows the same request (issue 16 part 4).
#[tokio::test(start_paused = true)]
async fn a_running_superseded_in_its_group_is_not_journaled_and_a_restart_sees_the_same() {
    use weft_protocol::rest::EventKind;
    use weft_protocol::{AgentMsg, TaskOutput};

    let (mut rig, [mut d1]) = Rig::with_shells(["d1"]).await;
    let r = rig.submit(vec![super::shell("t1")], vec![], None).await;
    d1.check("assign t1#1");
    let attempt_id = d1.attempt("t1");
    // Both frames queued before the engine runs: one group.
    let h = &rig.handle;
    h.agent_msg(
        "d1".into(),
        d1.conn,
        AgentMsg::Accept {
            attempt_id: attempt_id.clone(),
        },
    )
    .await
    .unwrap();
    h.agent_msg(
        "d1".into(),
        d1.conn,
        AgentMsg::Result {
            attempt_id,
            status: ResultStatus::Succeeded,
            output: TaskOutput {
                summary: "t1 done".into(),
                data: serde_json::Value::Null,
            },
            error: None,
            files: vec![],
        },
    )
    .await
    .unwrap();
    rig.settled().await;
    d1.check("ack t1#1");
    let done = "
        succeeded
        t1 succeeded
          #1 d1 succeeded +0..+0
    ";
    rig.check(&r, done).await;

    let events = rig.store.events_after(&r, 0).await.unwrap();
    let statuses: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStatus { status, .. } => Some(status.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, ["ready", "dispatched", "succeeded"]);
    let all = rig.store.events_since(0, 1000).await.unwrap();
    for pair in all.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "a gap in the journal");
    }
    let graph = crate::engine::Graph::replay(
        events.iter().map(|e| &e.kind),
        &crate::engine::TaskDefaults {
            retry: weft_protocol::RetryPolicy::default(),
            max_turns: 1,
        },
    )
    .unwrap();
    let rebuilt: Vec<String> = graph
        .tasks()
        .map(|t| format!("{} {}", t.id, t.status().as_str()))
        .collect();
    assert_eq!(rebuilt, ["t1 succeeded"]);

    // Nothing runs, so the engine stops at once (Rig::restart waits out a grace).
    rig.shutdown.cancel();
    (&mut rig.join).await.unwrap().unwrap();
    rig.shutdown = tokio_util::sync::CancellationToken::new();
    (rig.handle, rig.join) = crate::engine::Engine::start(
        rig.store.clone(),
        rig.opts.clone(),
        rig.clock,
        rig.shutdown.clone(),
    )
    .await
    .unwrap();
    rig.check(&r, done).await;
}
