//! Retries: a failed attempt is followed by another after the task's backoff, until the
//! attempts run out; a device that says it is busy gets the task back shortly, and that does
//! not count as an attempt.

use super::{Rig, shell};

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_after_its_backoff_until_the_attempts_run_out() {
    let (rig, [mut d1]) = Rig::with_shells(["d1"]).await;
    let r = rig.submit(vec![shell("t1")], vec![], None).await;
    d1.check("assign t1#1");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 dispatched +0
    ",
    )
    .await;

    d1.accept("t1").await;
    d1.fail("t1", "exit_nonzero").await;
    d1.check("ack t1#1");
    rig.check(
        &r,
        "
        running
        t1 ready exit_nonzero: boom
          #1 d1 failed +0..+0 exit_nonzero
    ",
    )
    .await;

    // The first backoff is 1 s: nothing before it.
    rig.advance(900).await;
    d1.check("");
    rig.advance(100).await;
    d1.check("assign t1#2");
    rig.check(
        &r,
        "
        running
        t1 dispatched
          #1 d1 failed +0..+0 exit_nonzero
          #2 d1 dispatched +1000
    ",
    )
    .await;

    // The second doubles to 2 s.
    d1.accept("t1").await;
    d1.fail("t1", "exit_nonzero").await;
    d1.check("ack t1#2");
    rig.advance(1900).await;
    d1.check("");
    rig.advance(100).await;
    d1.check("assign t1#3");

    // The third attempt was the last.
    d1.accept("t1").await;
    rig.advance(500).await;
    d1.fail("t1", "exit_nonzero").await;
    d1.check("ack t1#3");
    rig.check(
        &r,
        "
        failed tasks_failed
        t1 failed exit_nonzero: boom (after 3 attempts)
          #1 d1 failed +0..+0 exit_nonzero
          #2 d1 failed +1000..+1000 exit_nonzero
          #3 d1 failed +3000..+3500 exit_nonzero
    ",
    )
    .await;
    rig.advance(10_000).await;
    d1.check("");
}

#[tokio::test(start_paused = true)]
async fn a_busy_device_gets_the_task_back_shortly_without_using_an_attempt() {
    let rig = Rig::start(|o| o.retry.max_attempts = 1).await;
    let mut d1 = rig.device("d1", &["shell"]).await;
    let r = rig.submit(vec![shell("t1")], vec![], None).await;
    d1.check("assign t1#1");

    let busy = weft_protocol::ErrorInfo::new("busy", "no free slot");
    let attempt_id = d1.attempt("t1");
    d1.send(weft_protocol::AgentMsg::Reject {
        attempt_id,
        error: busy,
    })
    .await;
    rig.check(
        &r,
        "
        running
        t1 ready
          #1 d1 rejected +0..+0 busy
    ",
    )
    .await;

    // Held back 200 ms, then placed again; one attempt was allowed and none is used up.
    rig.advance(100).await;
    d1.check("");
    rig.advance(100).await;
    d1.check("assign t1#2");
    d1.accept("t1").await;
    d1.succeed("t1").await;
    d1.check("ack t1#2");
    rig.check(
        &r,
        "
        succeeded
        t1 succeeded
          #1 d1 rejected +0..+0 busy
          #2 d1 succeeded +200..+200
    ",
    )
    .await;
}
