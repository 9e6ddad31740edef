//! Measurements of the engine alone, run by hand (they print figures and assert only that the
//! work was done; BENCHMARKS.md records what they printed):
//! `cargo test --release -p weft-orchestrator --lib scale -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use weft_protocol::DeviceName;

use super::{Rig, shell};

/// One-task requests on a free device while a request of `WEFT_SCALE_TASKS` (default 10,000)
/// ready tasks waits for a drained one: each of them goes through three scheduling passes
/// (created, accepted, result), which must not walk the waiting tasks.
#[tokio::test(start_paused = true)]
#[ignore = "a measurement: run it in release with --nocapture"]
async fn one_task_requests_beside_a_large_request_waiting_on_a_drained_device() {
    let rig = Rig::start(|o| o.queue_timeout = Duration::from_secs(36_000)).await;
    let mut free = rig.device("free", &["shell"]).await;
    let _drained = rig.device("drained", &["shell"]).await;
    rig.handle
        .set_draining(DeviceName::from("drained"), true)
        .await
        .unwrap();
    let n: usize = std::env::var("WEFT_SCALE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let waiting: Vec<_> = (0..n)
        .map(|i| {
            let mut t = shell(&format!("w{i}"));
            t.device = Some(DeviceName::from("drained"));
            t
        })
        .collect();
    let started = Instant::now();
    rig.submit(waiting, vec![], None).await;
    eprintln!("a request of {n} tasks created in {:?}", started.elapsed());
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let r = rig.submit(vec![shell("t1")], vec![], None).await;
        let frames = free.frames();
        assert!(
            frames.lines().any(|l| l.starts_with("assign t1")),
            "{frames}"
        );
        free.accept("t1").await;
        free.succeed("t1").await;
        times.push(started.elapsed());
        assert!(
            rig.view(&r).await.starts_with("succeeded"),
            "{}",
            rig.view(&r).await
        );
    }
    times.sort();
    eprintln!(
        "one-task request (created, accepted, result): p50 {:?}, p90 {:?}, max {:?}",
        times[25], times[45], times[49]
    );
}
