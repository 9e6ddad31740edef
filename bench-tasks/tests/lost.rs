//! CI runs `weft-load lost` once at a tiny size against an in-process orchestrator (real HTTP,
//! WebSockets and SQLite file): the agent holding a task is lost both ways, the task must go to
//! the other agent and the request must succeed. Nothing here is timed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_bench::load::{Loss, LostOptions, Target, TargetKind, run_lost};
use weft_orchestrator::{ServeOptions, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_agents_work_is_placed_on_the_other_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(
        dir.path().join("weft.db").display().to_string(),
        dir.path().join("data"),
    );
    opts.api_token = Some("lost-bench".into());
    // Short windows keep the test quick; the run itself does not depend on them.
    opts.heartbeat_interval = Duration::from_millis(200);
    opts.lost_grace = Duration::from_millis(200);
    opts.retry.initial_backoff_ms = 50;
    opts.shutdown_grace = Duration::from_secs(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let running = server::start(listener, opts, shutdown.clone())
        .await
        .unwrap();
    let target = Target {
        base: format!("http://{}", running.addr),
        api_token: running.api_token,
        pid: Some(std::process::id()),
        kind: TargetKind::InProcess,
    };

    let report = run_lost(
        &target,
        &LostOptions {
            agents: 2,
            trials: 1,
            modes: vec![Loss::Close, Loss::Silent],
            timeout: Duration::from_secs(30),
            lost_grace_ms: Some(200),
        },
    )
    .await
    .unwrap();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running.join).await;

    let text = report.render();
    assert!(report.ok(), "{text}\n{report:#?}");
    assert_eq!(report.heartbeat_interval_ms, 200, "{text}");
    assert_eq!(report.trials.len(), 2, "{text}");
    for (t, how) in report.trials.iter().zip([Loss::Close, Loss::Silent]) {
        assert_eq!(t.how, how, "{text}");
        assert_eq!(t.error, None, "{text}");
        assert_eq!(t.final_status.as_deref(), Some("succeeded"), "{text}");
        let (lost, other) = (t.lost_agent.unwrap(), t.replaced_on.unwrap());
        assert!(lost < 2 && other < 2 && lost != other, "{text}");
        assert!(
            t.replace_ms.is_some() && t.lost_to_done_ms.is_some(),
            "{text}"
        );
    }
    for m in &report.modes {
        assert_eq!((m.trials, m.ok), (1, 1), "{text}");
    }
    // Two first attempts held, two re-placed attempts answered; every result acked.
    let c = &report.agent_counters;
    assert_eq!((c.assigns, c.results), (4, 2), "{text}");
    assert_eq!(c.acks, 2, "{text}");
    assert_eq!(c.disconnects, 0, "{text}");
}
