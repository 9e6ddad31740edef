//! CI runs the load generator once at a tiny size, in-process, against an in-process
//! orchestrator (real HTTP, real WebSockets, a real SQLite file), to keep it compiling and
//! working. None of this is a timed test.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_bench::load::{
    IdleOptions, LoadOptions, Shape, SubmitMode, Target, TargetKind, run_idle, run_load,
};
use weft_orchestrator::{ServeOptions, server};
use weft_planner::{DeviceInfo, RulesPlanner};

struct Server {
    target: Target,
    shutdown: CancellationToken,
    join: tokio::task::JoinHandle<Result<(), weft_orchestrator::Error>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(heartbeat: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = ServeOptions::new(
            dir.path().join("weft.db").display().to_string(),
            dir.path().join("data"),
        );
        opts.api_token = Some("tiny-bench".into());
        opts.heartbeat_interval = heartbeat;
        opts.shutdown_grace = Duration::from_secs(1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let running = server::start(listener, opts, shutdown.clone())
            .await
            .unwrap();
        Self {
            target: Target {
                base: format!("http://{}", running.addr),
                api_token: running.api_token,
                pid: Some(std::process::id()),
                kind: TargetKind::InProcess,
            },
            shutdown,
            join: running.join,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.join).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_load_run_completes_every_request() {
    let server = Server::start(Duration::from_secs(5)).await;
    let opts = LoadOptions::tiny();
    let report = run_load(&server.target, &opts).await.unwrap();
    server.stop().await;

    let text = report.render();
    assert_eq!(report.succeeded, 20, "{text}");
    assert_eq!(report.failed, 0, "{text}");
    assert!(report.errors.is_empty(), "{text}");
    assert_eq!(report.latency.count, 20, "{text}");
    // mix cycles single (1), chain:3 (3), fanout:3 (3), diamond:2 (4): 5 × 11 tasks.
    assert_eq!(report.subtasks, 55, "{text}");
    let c = &report.agent_counters;
    assert_eq!((c.assigns, c.results, c.acks), (55, 55, 55), "{text}");
    assert_eq!((c.errors, c.disconnects), (0, 0), "{text}");
    assert!(report.latency.p50_ms > 0.0 && report.latency.max_ms >= report.latency.p99_ms);
    let sv = report.server.as_ref().expect("own pid is readable");
    assert!(sv.after_load.rss_kib > 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_submission_runs_random_dags_and_long_chains() {
    let server = Server::start(Duration::from_secs(5)).await;
    let dag = LoadOptions {
        shape: Shape::Dag(20),
        submit: SubmitMode::Graph,
        requests: 5,
        ..LoadOptions::tiny()
    };
    let report = run_load(&server.target, &dag).await.unwrap();
    assert_eq!(
        (report.succeeded, report.subtasks),
        (5, 100),
        "{}",
        report.render()
    );
    // Longer than the rules planner allows (256 tasks).
    let chain = LoadOptions {
        shape: Shape::Chain(300),
        submit: SubmitMode::Graph,
        requests: 1,
        concurrency: 1,
        ..LoadOptions::tiny()
    };
    let report = run_load(&server.target, &chain).await.unwrap();
    server.stop().await;
    assert_eq!(
        (report.succeeded, report.subtasks),
        (1, 300),
        "{}",
        report.render()
    );
    assert_eq!(report.agent_counters.acks, 300, "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_agents_heartbeat_and_stay_connected() {
    let server = Server::start(Duration::from_millis(200)).await;
    let opts = IdleOptions {
        agents: 3,
        settle: Duration::ZERO,
        window: Duration::from_millis(900),
        parallelism: 3,
    };
    let report = run_idle(&server.target, &opts).await.unwrap();
    server.stop().await;

    let text = report.render();
    assert_eq!(report.heartbeat_interval_ms, 200, "{text}");
    assert!(report.heartbeats_sent_in_window >= 3, "{text}");
    assert!(report.heartbeats_received_in_window >= 3, "{text}");
    assert_eq!(report.agent_counters.disconnects, 0, "{text}");
    assert_eq!(report.agent_counters.errors, 0, "{text}");
    assert!(report.server.is_some(), "{text}");
}

/// Every shape's text is plannable by the rules planner into the graph the load generator
/// counts on; the longest chain the planner accepts is what BENCHMARKS.md measures.
#[test]
fn shapes_plan_to_the_expected_graphs() {
    let devices = [DeviceInfo {
        name: "a0".into(),
        kind: "server".into(),
        capabilities: vec!["shell".into(), "fs".into(), "http".into()],
        online: true,
    }];
    let planner = RulesPlanner::new();
    for s in [
        "single",
        "chain:2",
        "chain:256",
        "fanout:5",
        "diamond",
        "diamond:8",
    ] {
        let shape: Shape = s.parse().unwrap();
        let plan = planner.plan_sync(&shape.text(0), &devices).unwrap();
        assert_eq!(plan.tasks.len(), shape.tasks(0), "{s}");
        assert_eq!(plan.edges.len(), shape.edges(0), "{s}");
    }
    for i in 0..4 {
        let plan = planner.plan_sync(&Shape::Mix.text(i), &devices).unwrap();
        assert_eq!(plan.tasks.len(), Shape::Mix.tasks(i));
    }
    let too_long = Shape::Chain(257).text(0);
    assert!(matches!(
        planner.plan_sync(&too_long, &devices),
        Err(weft_planner::Error::TooLarge { .. })
    ));
}
