//! Turn budgets: each attempt of a turn-based task reserves its limit from the request's pool
//! (what is left, if less), extensions come only from what is left, unused turns go back when
//! an attempt ends, and a task that finds the pool spent fails `budget_exhausted` before it
//! starts.

use super::{Rig, edge, steps};

#[tokio::test(start_paused = true)]
async fn turns_come_from_the_request_s_budget_and_unused_ones_go_back() {
    let rig = Rig::start(|_| {}).await;
    let mut d1 = rig.device_with("d1", &["steps"], 2).await;
    let tasks = vec![steps("t1", 20), steps("t2", 20), steps("t3", 20)];
    let r = rig.submit(tasks, vec![edge("t2", "t3")], Some(30)).await;
    // t2 gets what t1 left of the 30.
    d1.check(
        "
        assign t1#1 (20 turns)
        assign t2#1 (10 turns)
    ",
    );
    d1.accept("t1").await;
    d1.accept("t2").await;
    rig.check(
        &r,
        "
        running [turns used 0, reserved 30 of 30]
        t1 running
          #1 d1 running +0
        t2 running
          #1 d1 running +0
        t3 pending
    ",
    )
    .await;

    // Nothing left to extend with.
    d1.extend("t1", 5).await;
    d1.check("turns t1#1 +0 = 20");

    // t1 used 12 of its 20: the other 8 go back to the pool, and t2 may have them.
    rig.advance(1000).await;
    d1.turns_used("t1", 12).await;
    d1.succeed("t1").await;
    d1.check("ack t1#1");
    d1.extend("t2", 10).await;
    d1.check("turns t2#1 +8 = 18");
    rig.check(
        &r,
        "
        running [turns used 12, reserved 30 of 30, +8 granted, 1 refused]
        t1 succeeded (12 turns)
          #1 d1 succeeded +0..+1000
        t2 running
          #1 d1 running +0
        t3 pending
    ",
    )
    .await;

    // t2 uses all 18; t3 finds the pool spent and never starts.
    rig.advance(1000).await;
    d1.turns_used("t2", 18).await;
    d1.succeed("t2").await;
    d1.check("ack t2#1");
    rig.check(
        &r,
        "
        failed tasks_failed [turns used 30, reserved 30 of 30, +8 granted, 1 refused]
        t1 succeeded (12 turns)
          #1 d1 succeeded +0..+1000
        t2 succeeded (18 turns)
          #1 d1 succeeded +0..+2000
        t3 failed budget_exhausted: the request's turn budget of 30 is spent
    ",
    )
    .await;
}
