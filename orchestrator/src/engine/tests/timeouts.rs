//! Timeouts: an attempt past its deadline is stopped and retried; a ready task no device takes
//! within the queue timeout fails `no_device`; a task past its overall timeout fails
//! `task_timeout`, its attempt in flight stopped; a running attempt told to cancel has 10 s to
//! confirm before it is given up on.

use std::time::Duration;

use weft_protocol::DeviceName;
use weft_protocol::wire::ResultStatus;

use super::{Rig, T1_RUNNING_ON_D1, shell};

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_deadline_is_stopped_and_tried_again() {
    let rig = Rig::start(|o| o.attempt_timeout = Duration::from_secs(5)).await;
    let mut d1 = rig.device("d1", &["shell"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    rig.advance(4900).await;
    d1.check("");
    rig.advance(100).await;
    d1.check("cancel t1#1: the attempt passed its deadline");
    rig.check(
        &r,
        "
        running
        t1 ready timeout: the attempt did not finish within 5 s
          #1 d1 timed_out +0..+5000 timeout
    ",
    )
    .await;

    // After the backoff, on the same device: there is no other.
    rig.advance(1000).await;
    d1.check("assign t1#2");

    // The first attempt's result comes after all: recorded, acknowledged, not applied.
    d1.result("t1#1", ResultStatus::Succeeded, None).await;
    assert_eq!(rig.frames_for(&mut d1).await, "ack t1#1");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 timed_out +0..+5000 timeout (late Succeeded at +6000)
          #2 d1 dispatched +6000
    ",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_task_no_device_takes_fails_after_the_queue_timeout() {
    let rig = Rig::start(|o| o.queue_timeout = Duration::from_secs(3)).await;
    // d2 has a shell but is offline; d1 is online but not the device the task names.
    let d2 = rig.device("d2", &["shell"]).await;
    d2.close().await;
    let mut d1 = rig.device("d1", &["shell"]).await;
    let mut task = shell("t1");
    task.device = Some(DeviceName::from("d2"));
    let r = rig.submit(vec![task], vec![], None).await;

    rig.advance(2900).await;
    rig.check(
        &r,
        "
        running
        t1 ready
    ",
    )
    .await;
    rig.advance(100).await;
    rig.check(&r, "
        failed tasks_failed
        t1 failed no_device: no online device that is `d2` with capabilities [shell] had a free slot within 3 s
    ").await;
    d1.check("");
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_overall_timeout_fails_and_its_attempt_is_stopped() {
    let rig = Rig::start(|o| {
        o.attempt_timeout = Duration::from_secs(5);
        o.task_timeout = Duration::from_secs(8);
    })
    .await;
    let mut d1 = rig.device("d1", &["shell"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    // The first attempt times out at 5 s; 1 s of backoff still leaves time for another.
    rig.advance(5000).await;
    d1.check("cancel t1#1: the attempt passed its deadline");
    rig.advance(1000).await;
    d1.check("assign t1#2");
    d1.accept("t1").await;
    rig.check(
        &r,
        "
        running
        t1 running
          #1 d1 timed_out +0..+5000 timeout
          #2 d1 running +6000
    ",
    )
    .await;

    // 8 s after the task first became ready, it is over.
    rig.advance(1900).await;
    d1.check("");
    rig.advance(100).await;
    d1.check("cancel t1#2: the task passed its overall timeout");
    rig.check(
        &r,
        "
        failed tasks_failed
        t1 failed task_timeout: the task did not finish within 8 s over 2 attempt(s)
          #1 d1 timed_out +0..+5000 timeout
          #2 d1 cancelled +6000..+8000 task_timeout
    ",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_cancel_the_device_never_confirms_is_given_up_on_after_10_s() {
    let (rig, [mut d1]) = Rig::with_shells(["d1"]).await;
    let r = rig.t1_accepted_by(&mut d1).await;

    rig.advance(1000).await;
    rig.handle.cancel(r.clone(), None).await.unwrap();
    rig.settled().await;
    d1.check("cancel t1#1: cancelled by a user");
    rig.check(&r, T1_RUNNING_ON_D1).await;

    // The attempt's deadline is now 10 s after the cancel.
    rig.advance(9900).await;
    d1.check("");
    rig.advance(100).await;
    d1.check("cancel t1#1: the attempt passed its deadline");
    rig.check(
        &r,
        "
        cancelled cancelled
        t1 cancelled cancelled: cancelled; the attempt ended with timeout
          #1 d1 timed_out +0..+11000 timeout
    ",
    )
    .await;
}

/// A device that stays connected but never answers an `assign` (an agent too old to read it
/// ignores the frame) does not hold the task until the attempt's deadline: after the answer
/// timeout (30 s at the rig's 1 s heartbeat) the attempt fails `assign_unanswered`, the device
/// is told to stop it, and the task goes at once to another device. An answer in time keeps
/// it.
#[tokio::test(start_paused = true)]
async fn an_assignment_left_unanswered_goes_to_another_device() {
    let (rig, [mut d1, mut d2]) = Rig::with_shells(["d1", "d2"]).await;
    let r = rig.submit(vec![shell("t1")], vec![], None).await;
    d1.check("assign t1#1");

    // Both stay connected (in the rig no device goes silent unless a test says so).
    rig.advance(29_990).await;
    d1.check("");
    d2.check("");
    rig.advance(10).await;
    d1.check("cancel t1#1: the assignment was not answered in time");
    d2.check("assign t1#2");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 timed_out +0..+30000 assign_unanswered
          #2 d2 dispatched +30000
    ",
    )
    .await;

    // d2 answers in time: nothing happens when the answer timeout would have passed.
    d2.accept("t1").await;
    rig.advance(5000).await;
    d1.check("");
    d2.check("");
    d2.result("t1#2", weft_protocol::wire::ResultStatus::Succeeded, None)
        .await;
    assert_eq!(rig.frames_for(&mut d2).await, "ack t1#2");
    rig.check(
        &r,
        "
        succeeded
        t1 succeeded
          #1 d1 timed_out +0..+30000 assign_unanswered
          #2 d2 succeeded +30000..+35000
    ",
    )
    .await;
}
