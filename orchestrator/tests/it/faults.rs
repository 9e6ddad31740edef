//! Fault injection: flaky and hung executors, killed agents, cut connections, drained devices,
//! and the orchestrator itself killed with SIGKILL and restarted on the same database.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use weft_protocol::rest::{DeviceStatus, RequestView};
use weft_protocol::{AttemptStatus, RequestStatus, RetryPolicy, TaskStatus};

use crate::harness::{Harness, WAIT, assert_each_result_applied_once, pid_alive};

/// Retries fast enough for tests, without jitter so the gaps can be checked.
fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 100,
        multiplier: 2.0,
        max_backoff_ms: 1000,
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

fn codes(v: &RequestView, task: usize) -> Vec<String> {
    v.tasks[task]
        .attempts
        .iter()
        .map(|a| {
            a.error
                .as_ref()
                .map(|e| e.code.clone())
                .unwrap_or_else(|| "ok".into())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_command_is_retried_with_backoff_until_it_succeeds() {
    let mut h = Harness::start_with(|o| o.retry = quick_retry(3)).await;
    let token = h.add_device("laptop", "laptop").await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;
    // Fails on its first two runs, succeeds on the third.
    let v = h
        .submit(
            r#"on laptop run "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo run $n; [ $n -ge 3 ]""#,
        )
        .await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(codes(&v, 0), ["exit_status", "exit_status", "ok"]);
    let a = &v.tasks[0].attempts;
    assert_eq!(a[2].status, AttemptStatus::Succeeded);
    assert_eq!(v.tasks[0].output.as_ref().unwrap().summary, "run 3");
    // Backoff: 100 ms, then 200 ms.
    let gap1 = a[1].started_at_ms - a[0].ended_at_ms.unwrap();
    let gap2 = a[2].started_at_ms - a[1].ended_at_ms.unwrap();
    assert!(gap1 >= 100, "first backoff {gap1} ms");
    assert!(gap2 >= 200, "second backoff {gap2} ms");
    // Each retry is announced in the journal.
    let text = h.events_text(v.id.as_str()).await;
    assert_eq!(text.matches("event: task_retrying").count(), 2, "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_when_used_up_and_never_happen_for_non_retryable_errors() {
    let mut h = Harness::start_with(|o| o.retry = quick_retry(2)).await;
    let token = h.add_device("laptop", "laptop").await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;
    let v = h
        .submit(r#"on laptop run "exit 1" and on laptop write "x" to ../outside.txt"#)
        .await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Failed);
    assert_eq!(codes(&v, 0), ["exit_status", "exit_status"]);
    let err = v.tasks[0].error.as_ref().unwrap();
    assert!(err.message.contains("after 2 attempts"), "{err:?}");
    assert_eq!(codes(&v, 1), ["path_outside_workdir"]);
    assert_eq!(v.tasks[1].status, TaskStatus::Failed);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_attempt_times_out_is_stopped_on_the_device_and_retried() {
    let mut h = Harness::start_with(|o| {
        o.retry = quick_retry(2);
        o.attempt_timeout = Duration::from_secs(1);
    })
    .await;
    let token = h.add_device("laptop", "laptop").await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;
    let v = h
        .submit(
            r#"on laptop run "if [ -f hung ]; then echo second; else touch hung; echo $$ > pid; exec sleep 60; fi""#,
        )
        .await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    // Whichever side noticed the deadline first (the agent's own timer or the orchestrator's),
    // the first attempt ended as a timeout.
    let a = &v.tasks[0].attempts;
    assert!(
        matches!(a[0].status, AttemptStatus::TimedOut | AttemptStatus::Failed),
        "{a:?}"
    );
    assert_eq!(codes(&v, 0), ["timeout", "ok"]);
    // The hung command was killed on the device, not left running.
    let pid = std::fs::read_to_string(h.dir.path().join("agents/laptop/pid")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pid_alive(&pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid {pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_device_gets_no_new_work() {
    let mut h = Harness::start().await;
    for name in ["l1", "l2"] {
        let token = h.add_device(name, "laptop").await;
        h.start_agent(name, "laptop", &token);
    }
    h.wait_online(2).await;
    let (status, body) = h.post("/v1/devices/l1/drain", &json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "draining");
    let v = h
        .submit(r#"on laptop run "echo a", on laptop run "echo b" and on laptop run "echo c""#)
        .await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded);
    assert!(
        v.tasks
            .iter()
            .all(|t| t.device.as_ref().unwrap().as_str() == "l2")
    );
    let (status, body) = h.post("/v1/devices/l1/resume", &json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "online");
    let (status, body) = h.post("/v1/devices/nope/drain", &json!(null)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "device_not_found");
    h.stop().await;
}

/// Starts `weft agent` as a child process.
pub(crate) fn spawn_agent(base: &str, name: &str, token: &str, dir: &std::path::Path) -> Child {
    agent_command(base, name, token, dir).spawn().unwrap()
}

/// The `weft agent` child process of [`spawn_agent`], not started yet.
pub(crate) fn agent_command(base: &str, name: &str, token: &str, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args([
        "agent", "--server", base, "--name", name, "--kind", "laptop",
    ])
    .arg("--workdir")
    .arg(dir.join("work").join(name))
    .arg("--state-dir")
    .arg(dir.join("state").join(name))
    .env("WEFT_DEVICE_TOKEN", token)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .kill_on_drop(true);
    cmd
}

pub(crate) fn sigkill(child: &Child) {
    signal(child, "-KILL");
}

/// Sends `sig` (`-KILL`, `-STOP`, `-CONT`, …) to a child process.
pub(crate) fn signal(child: &Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_killed_agent_finishes_on_another_device() {
    let h = Harness::start_with(|o| {
        o.retry = quick_retry(3);
        o.lost_grace = Duration::from_millis(300);
    })
    .await;
    let t1 = h.add_device("l1", "laptop").await;
    let t2 = h.add_device("l2", "laptop").await;
    let mut a1 = spawn_agent(&h.base, "l1", &t1, h.dir.path());
    h.wait_online(1).await;
    let v = h.submit(r#"on laptop run "sleep 1; echo finished""#).await;
    h.wait_for(v.id.as_str(), "running on l1", |v| {
        v.tasks[0].status == TaskStatus::Running
    })
    .await;
    let mut a2 = spawn_agent(&h.base, "l2", &t2, h.dir.path());
    h.wait_online(2).await;
    sigkill(&a1);
    let _ = a1.wait().await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let a = &v.tasks[0].attempts;
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].device.as_str(), a[0].status),
        ("l1", AttemptStatus::Lost)
    );
    assert_eq!(
        (a[1].device.as_str(), a[1].status),
        ("l2", AttemptStatus::Succeeded)
    );
    let _ = a2.kill().await;
    h.stop().await;
}

/// A TCP proxy whose connections can be cut, to break an agent's link without killing it.
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = rx.clone();
                rx.borrow_and_update();
                conns.spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx.changed() => {} // dropping both sockets cuts the link
                    }
                });
            }
        });
        Self {
            addr,
            cut,
            _task: task,
        }
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_restored_without_losing_or_doubling_a_result() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let mut h = Harness::start_with(|o| {
        o.allowed_hosts.push(proxy_addr.to_string());
        o.lost_grace = Duration::from_secs(10);
    })
    .await;
    let proxy = Proxy::start(listener, h.addr).await;
    let token = h.add_device("laptop", "laptop").await;
    let mut config = h.agent_config("laptop", "laptop", &token);
    config.server = format!("http://{}", proxy.addr);
    config.reconnect_min = Duration::from_millis(50);
    h.start_agent_with(config);
    h.wait_online(1).await;
    let v = h.submit(r#"on laptop run "sleep 1; echo survived""#).await;
    h.wait_for(v.id.as_str(), "running", |v| {
        v.tasks[0].status == TaskStatus::Running
    })
    .await;
    proxy.cut();
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(
        v.tasks[0].attempts.len(),
        1,
        "the attempt was reattached, not redone"
    );
    assert_eq!(
        v.tasks[0].output.as_ref().unwrap().data["stdout"],
        "survived\n"
    );
    h.stop().await;
}

/// The database of a test's `weft serve` child processes: `dir/weft.db`, or with
/// `WEFT_TEST_STORE=postgres` a fresh database of the test's Postgres, kept until this is
/// dropped. On Postgres a restarted server is a replica that finds the killed one's lease
/// (docs/replicas.md): [`ChildDb::args`] makes it short, so that it takes the lead within a
/// second.
pub(crate) struct ChildDb {
    pub(crate) url: String,
    /// Dropped with this: the database goes.
    pg: Option<crate::pg::TestDb>,
}

impl ChildDb {
    pub(crate) async fn new(dir: &std::path::Path) -> Self {
        if crate::harness::postgres() {
            let db = crate::pg::database().await;
            Self {
                url: db.url.clone(),
                pg: Some(db),
            }
        } else {
            Self {
                url: dir.join("weft.db").to_str().unwrap().to_owned(),
                pg: None,
            }
        }
    }

    /// `extra` and, on Postgres, a 1 s lease renewed every 200 ms.
    pub(crate) fn args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = extra.to_vec();
        if self.pg.is_some() {
            args.extend(["--lease-ttl-ms", "1000", "--lease-renew-ms", "200"]);
        }
        args
    }
}

/// `weft serve` as a child process, so that it can be killed with SIGKILL.
pub(crate) struct ServerProc {
    pub(crate) child: Child,
    pub(crate) base: String,
}

/// `weft serve` on the database `db` (a SQLite path or a `postgres://` URL, see [`ChildDb`]) in
/// `dir`, on `port`, its log (stderr) into `log` when given.
pub(crate) async fn spawn_server_on(
    db: &str,
    dir: &std::path::Path,
    port: u16,
    extra: &[&str],
    log: Option<&std::path::Path>,
) -> ServerProc {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::inherit(),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--db", db])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--api-token", "test-token"])
        // Quick defaults for tests, unless `extra` sets them.
        .args(
            [
                ["--heartbeat-ms", "200"],
                ["--lost-grace-ms", "3000"],
                ["--retry-initial-backoff-ms", "100"],
            ]
            .into_iter()
            .filter(|[flag, _]| !extra.contains(flag))
            .flatten(),
        )
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    ServerProc { child, base }
}

pub(crate) async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small REST client for a child server.
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: base.to_owned(),
        }
    }

    pub(crate) async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth("test-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub(crate) async fn request(&self, id: &str) -> Option<RequestView> {
        let resp = self
            .http
            .get(format!("{}/v1/requests/{id}", self.base))
            .bearer_auth("test-token")
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    async fn events(&self, id: &str) -> Vec<weft_protocol::rest::Event> {
        let text = self
            .http
            .get(format!("{}/v1/requests/{id}/events", self.base))
            .bearer_auth("test-token")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    pub(crate) async fn wait_done(&self, id: &str) -> RequestView {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.request(id).await
                && v.status.is_terminal()
            {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_run_resumes_every_request_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let db = ChildDb::new(dir.path()).await;
    let server = spawn_server_on(&db.url, dir.path(), port, &db.args(&[]), None).await;
    let rest = Rest::new(&server.base);
    let mut agents = Vec::new();
    for name in ["l1", "l2"] {
        let created = rest
            .post("/v1/devices", json!({"name": name, "kind": "laptop"}))
            .await;
        agents.push(spawn_agent(
            &server.base,
            name,
            created["token"].as_str().unwrap(),
            dir.path(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let v = rest
            .post(
                "/v1/requests",
                json!({"text": format!(
                    r#"run "sleep 0.3; echo {i}a" then run "sleep 0.3; echo {i}b" then run "echo {i}c""#
                )}),
            )
            .await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // Kill it while attempts are in flight, then start it again on the same database.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let mut server = server;
    sigkill(&server.child);
    let _ = server.child.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // On Postgres it stands by until the killed one's lease runs out, then leads.
    let server = spawn_server_on(&db.url, dir.path(), port, &db.args(&[]), None).await;
    let rest = Rest::new(&server.base);
    for (i, id) in ids.iter().enumerate() {
        let v = rest.wait_done(id).await;
        assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
        assert_eq!(
            v.tasks[2].output.as_ref().unwrap().data["stdout"],
            format!("{i}c\n")
        );
        // Each task's result was applied exactly once.
        assert_each_result_applied_once(&v, &rest.events(id).await);
    }
    for mut a in agents {
        let _ = a.kill().await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_attempts_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let db = ChildDb::new(dir.path()).await;
    let args = db.args(&["--shutdown-grace-secs", "10"]);
    let mut server = spawn_server_on(&db.url, dir.path(), port, &args, None).await;
    let rest = Rest::new(&server.base);
    let created = rest
        .post("/v1/devices", json!({"name": "l1", "kind": "laptop"}))
        .await;
    let mut agent = spawn_agent(
        &server.base,
        "l1",
        created["token"].as_str().unwrap(),
        dir.path(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = rest
        .post(
            "/v1/requests",
            json!({"text": r#"run "sleep 1; echo drained""#}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = rest.request(&id).await.unwrap();
        if v.tasks[0].status == TaskStatus::Running {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = server.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // New requests are refused once it drains. One that arrives before the server has noticed
    // the signal may still be taken (201), never anything but that or 503.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = rest
            .http
            .post(format!("{}/v1/requests", rest.base))
            .bearer_auth("test-token")
            .json(&json!({"text": r#"run "echo late""#}))
            .send()
            .await;
        // Gone already: it drained and exited before a refusal could be seen.
        let Ok(resp) = resp else { break };
        if resp.status() == 503 {
            break;
        }
        assert_eq!(resp.status(), 201);
        assert!(
            tokio::time::Instant::now() < deadline,
            "still taking new requests 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .expect("server did not exit")
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = agent.kill().await;
    // The attempt finished and was stored before the server exited.
    let store = weft_orchestrator::store::Store::open(&db.url)
        .await
        .unwrap();
    let v = store
        .request_view(&weft_protocol::RequestId(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(
        v.tasks[0].output.as_ref().unwrap().data["stdout"],
        "drained\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_show_offline_when_their_agent_dies() {
    let h = Harness::start().await;
    let t = h.add_device("l1", "laptop").await;
    let mut a = spawn_agent(&h.base, "l1", &t, h.dir.path());
    h.wait_online(1).await;
    sigkill(&a);
    let _ = a.wait().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.devices().await[0].status != DeviceStatus::Offline {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_result_is_recorded_but_not_applied() {
    use weft_protocol::wire::ResultStatus;
    use weft_protocol::{AgentMsg, ServerMsg, TaskOutput};

    use crate::raw;

    let mut h = Harness::start_with(|o| {
        o.retry = quick_retry(3);
        o.lost_grace = Duration::from_millis(200);
    })
    .await;
    let t1 = h.add_device("l1", "laptop").await;
    let t2 = h.add_device("l2", "laptop").await;
    // l1 is a raw protocol client: it takes the attempt, then vanishes.
    let mut ws = raw::connect_as(&h, "l1", &t1).await;
    let v = h.submit(r#"on laptop run "echo real""#).await;
    let Some(ServerMsg::Assign { attempt_id, .. }) = raw::recv(&mut ws).await else {
        panic!("no assignment");
    };
    raw::send(
        &mut ws,
        &AgentMsg::Accept {
            attempt_id: attempt_id.clone(),
        },
    )
    .await;
    drop(ws);
    // After the grace window the attempt is lost and a real agent on l2 does the task.
    h.start_agent("l2", "laptop", &t2);
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(v.tasks[0].output.as_ref().unwrap().summary, "real");
    // l1 comes back and delivers its result for the lost attempt: acknowledged, recorded on
    // the attempt, not applied.
    let mut ws = raw::open(&h).await;
    let mut hello = raw::hello("l1", &t1);
    if let AgentMsg::Hello { held_attempts, .. } = &mut hello {
        held_attempts.push(attempt_id.clone());
    }
    raw::send(&mut ws, &hello).await;
    match raw::recv(&mut ws).await {
        Some(ServerMsg::Welcome { reattached, .. }) => assert!(reattached.is_empty()),
        other => panic!("expected welcome, got {other:?}"),
    }
    raw::send(
        &mut ws,
        &AgentMsg::Result {
            attempt_id: attempt_id.clone(),
            status: ResultStatus::Succeeded,
            output: TaskOutput {
                summary: "late".into(),
                data: json!({}),
            },
            error: None,
            files: vec![],
        },
    )
    .await;
    assert_eq!(
        raw::recv(&mut ws).await,
        Some(ServerMsg::Ack {
            attempt_id: attempt_id.clone()
        })
    );
    let v = h.request(v.id.as_str()).await;
    assert_eq!(v.tasks[0].output.as_ref().unwrap().summary, "real");
    let first = &v.tasks[0].attempts[0];
    assert_eq!(
        (first.id.clone(), first.status),
        (attempt_id, AttemptStatus::Lost)
    );
    assert_eq!(first.late_result.as_ref().unwrap().output.summary, "late");
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weft_attempts_lost_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_results_duplicate_total 1\n"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_heartbeating_is_disconnected() {
    use weft_protocol::ServerMsg;

    use crate::raw;

    let h = Harness::start_with(|o| o.heartbeat_interval = Duration::from_millis(200)).await;
    let token = h.add_device("l1", "laptop").await;
    // A raw client that says hello and then never sends another frame, though its socket
    // stays open.
    let mut ws = raw::connect_as(&h, "l1", &token).await;
    let start = tokio::time::Instant::now();
    match raw::recv(&mut ws).await {
        Some(ServerMsg::Error { error }) => assert_eq!(error.code, "heartbeat_timeout"),
        other => panic!("expected heartbeat_timeout, got {other:?}"),
    }
    // Silent for 2 heartbeat intervals (400 ms).
    assert!(start.elapsed() >= Duration::from_millis(350));
    assert_eq!(raw::recv(&mut ws).await, None);
    h.wait_offline("l1").await;
    h.stop().await;
}

/// A retry policy whose backoff no test may wait for (it would time out).
fn no_waiting_for_backoff() -> RetryPolicy {
    RetryPolicy {
        initial_backoff_ms: 600_000,
        max_backoff_ms: 600_000,
        ..quick_retry(2)
    }
}

/// Devices `l1` (a raw protocol client) and `l2`; a task is assigned to `l1`, which accepts
/// it and then goes lost the way `lose` says; a real agent starts on `l2`. Returns the
/// request once it ended.
async fn lose_l1_while_it_runs(
    h: &mut Harness,
    lose: impl FnOnce(crate::raw::Ws) -> Option<crate::raw::Ws>,
) -> RequestView {
    use weft_protocol::{AgentMsg, ServerMsg};

    use crate::raw;

    let t1 = h.add_device("l1", "laptop").await;
    let t2 = h.add_device("l2", "laptop").await;
    let mut ws = raw::connect_as(h, "l1", &t1).await;
    let v = h.submit(r#"on laptop run "echo done""#).await;
    let Some(ServerMsg::Assign { attempt_id, .. }) = raw::recv(&mut ws).await else {
        panic!("no assignment");
    };
    raw::send(&mut ws, &AgentMsg::Accept { attempt_id }).await;
    let kept = lose(ws);
    h.start_agent("l2", "laptop", &t2);
    let v = h.wait_done(v.id.as_str()).await;
    drop(kept);
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let a = &v.tasks[0].attempts;
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(
        (a[0].device.as_str(), a[0].status),
        ("l1", AttemptStatus::Lost)
    );
    assert_eq!(
        (a[1].device.as_str(), a[1].status),
        ("l2", AttemptStatus::Succeeded)
    );
    v
}

/// A device that goes silent while it runs an attempt loses it at once — without waiting out
/// the grace window kept for closed connections, and without a retry backoff — and the task
/// finishes on another device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_loses_its_attempt_at_once_and_another_device_finishes_it() {
    let mut h = Harness::start_with(|o| {
        o.heartbeat_interval = Duration::from_millis(200);
        // Not to be waited for: the test would time out.
        o.lost_grace = Duration::from_secs(600);
        o.retry = no_waiting_for_backoff();
    })
    .await;
    // l1 says nothing more, its socket open.
    let v = lose_l1_while_it_runs(&mut h, Some).await;
    let err = v.tasks[0].attempts[0].error.as_ref().unwrap();
    assert_eq!(err.code, "device_lost");
    assert!(err.message.contains("2 heartbeat intervals"), "{err:?}");
    h.stop().await;
}

/// A device whose connection closed has the grace window to come back; then its attempt is
/// tried elsewhere at once, without the retry backoff (the device failed, not the task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_device_s_attempt_moves_when_the_grace_window_ends_without_backoff() {
    let mut h = Harness::start_with(|o| {
        o.lost_grace = Duration::from_millis(300);
        o.retry = no_waiting_for_backoff();
    })
    .await;
    let v = lose_l1_while_it_runs(&mut h, |ws| {
        drop(ws);
        None
    })
    .await;
    let err = v.tasks[0].attempts[0].error.as_ref().unwrap();
    assert!(err.message.contains("grace window"), "{err:?}");
    h.stop().await;
}

/// A commit the store refuses is never acknowledged: the submit that needed it gets an error,
/// not `201`, nothing of it is in the store, and the server stops rather than run on state
/// that is not durable (fail-stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_is_never_acknowledged_and_the_server_stops() {
    let h = Harness::start().await;
    // A trigger makes every new request row fail.
    h.execute(if h.on_postgres() {
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON requests \
         FOR EACH ROW EXECUTE FUNCTION refuse()"
    } else {
        "CREATE TRIGGER refuse BEFORE INSERT ON requests \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    })
    .await;
    let (status, body) = h
        .post("/v1/requests", &json!({"text": r#"run "true""#}))
        .await;
    // The reply waited for the commit; the commit failed; the engine stopped without answering.
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    assert_eq!(h.count_rows("requests").await, 0);
    assert_eq!(h.count_rows("events").await, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !h.shutting_down() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server kept running after a failed commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It stops with the error, so that `weft serve` exits non-zero saying why.
    let e = h.stopped_by_failure().await.to_string();
    assert!(
        e.contains("fail-stop") && e.contains("injected failure"),
        "{e}"
    );
}
