//! Replicas on one Postgres (issue 16 parts 2 and 3; docs/replicas.md): `weft serve` child
//! processes on the test's own database, one leader and standbys; `weft agent` processes given
//! every replica's URL. A standby serves reads (an event stream follows the journal), sends
//! writes and agents to the leader, and takes over when the leader is killed (`kill -9`) or
//! paused past its lease (`SIGSTOP`): the deposed leader's next commit or renewal is refused
//! and it stops without applying what it held.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::time::Instant;
use weft_protocol::RequestStatus;
use weft_protocol::rest::{Event, EventKind, RequestView};

use crate::faults::{
    ServerProc, agent_command, free_port, sigkill, signal, spawn_agent, spawn_server_on,
};
use crate::harness::{WAIT, assert_each_result_applied_once};
use crate::pg;

/// The lease, its renewal and the heartbeat, in ms: short, so that takeovers are quick;
/// `WEFT_TEST_LEASE_MS=5000,1000,5000` measures with `weft serve`'s defaults (BENCHMARKS.md).
fn lease() -> [u64; 3] {
    let given = std::env::var("WEFT_TEST_LEASE_MS").unwrap_or_default();
    let ms: Vec<u64> = given
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    match ms[..] {
        [ttl, renew, heartbeat] => [ttl, renew, heartbeat],
        _ => [1000, 200, 200],
    }
}

/// A client of the replicas that finds the leader as the CLI and agents do: it follows a
/// `307` only to one of the replicas it was given, and tries the next replica when one does
/// not answer or has no leader to send it to (`503 no_leader`).
struct Replicas {
    http: reqwest::Client,
    bases: Vec<String>,
}

impl Replicas {
    fn new(bases: &[&str]) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            bases: bases.iter().map(|b| b.to_string()).collect(),
        }
    }

    /// One call to one replica, as it answers (no redirect followed).
    async fn call_one(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth("test-token");
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await
    }

    /// The leader's answer to a call (its status and text), found within [`WAIT`] however many
    /// replicas are down.
    async fn call_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, String) {
        let deadline = Instant::now() + WAIT;
        let mut at = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "no replica answered {method} {path}"
            );
            match self
                .call_one(&self.bases[at], method.clone(), path, body)
                .await
            {
                Ok(resp) if resp.status() == StatusCode::TEMPORARY_REDIRECT => {
                    let location = resp.headers()["location"].to_str().unwrap().to_owned();
                    match self
                        .bases
                        .iter()
                        .position(|b| location == format!("{b}{path}"))
                    {
                        Some(leader) => {
                            at = leader;
                            continue;
                        }
                        None => panic!("sent to {location}, not one of {:?}", self.bases),
                    }
                }
                Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {}
                Ok(resp) => {
                    let status = resp.status();
                    return (status, resp.text().await.unwrap_or_default());
                }
                Err(_) => {}
            }
            at = (at + 1) % self.bases.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Replicas::call_text`], its answer read as JSON (`null` if it is not).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let (status, text) = self.call_text(method, path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.call(reqwest::Method::POST, path, Some(&body)).await;
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn request(&self, id: &str) -> RequestView {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("/v1/requests/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn wait_for(
        &self,
        id: &str,
        what: &str,
        until: impl Fn(&RequestView) -> bool,
    ) -> RequestView {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.request(id).await;
            if until(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "request {id}: never {what}: {v:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request's whole journal, as one replica's event stream gives it.
    async fn events(&self, base: &str, id: &str) -> Vec<Event> {
        let text = self
            .call_one(
                base,
                reqwest::Method::GET,
                &format!("/v1/requests/{id}/events"),
                None,
            )
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sse_events(&text)
    }
}

fn sse_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// `/healthz` of one replica, if it answers.
async fn health(base: &str) -> Option<Value> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// Waits until the replica at `base` says what `until` wants; returns when, and what it said.
async fn wait_health(base: &str, what: &str, until: impl Fn(&Value) -> bool) -> (Instant, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(h) = health(base).await
            && until(&h)
        {
            return (Instant::now(), h);
        }
        assert!(
            Instant::now() < deadline,
            "{base} never {what}: {:?}",
            health(base).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn role(h: &Value) -> &str {
    h["role"].as_str().unwrap_or("")
}

/// A replica of the test's database, logging into `dir/<port>.log`.
async fn replica(db: &str, dir: &std::path::Path, port: u16) -> ServerProc {
    let log = dir.join(format!("{port}.log"));
    let [ttl, renew, heartbeat] = lease().map(|v| v.to_string());
    let args = [
        "--lease-ttl-ms",
        &ttl,
        "--lease-renew-ms",
        &renew,
        "--heartbeat-ms",
        &heartbeat,
    ];
    spawn_server_on(db, dir, port, &args, Some(&log)).await
}

fn log_of(dir: &std::path::Path, port: u16) -> String {
    std::fs::read_to_string(dir.join(format!("{port}.log"))).unwrap_or_default()
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A `weft agent` process given `servers`, logging into `dir/agent-<name>.log` every result
/// the leader acknowledged ([`acknowledged`] reads them).
async fn agent(rest: &Replicas, name: &str, servers: &[&str], dir: &std::path::Path) -> Child {
    let created = rest
        .post("/v1/devices", json!({"name": name, "kind": "laptop"}))
        .await;
    let log = std::fs::File::create(dir.join(format!("agent-{name}.log"))).unwrap();
    agent_command(
        &servers.join(","),
        name,
        created["token"].as_str().unwrap(),
        dir,
    )
    .env("RUST_LOG", "warn,weft_agent::agent=debug")
    .env("NO_COLOR", "1")
    .stderr(log)
    .spawn()
    .unwrap()
}

/// The attempts of the lines of the logs of the agents of [`agent`] in `dir` that say `what`
/// (`result acknowledged`, `result no longer wanted`).
fn logged(dir: &std::path::Path, what: &str) -> Vec<String> {
    let mut acked = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("agent-") && n.ends_with(".log"));
        if !is_log {
            continue;
        }
        let text = strip_ansi(&std::fs::read_to_string(&path).unwrap());
        for line in text.lines().filter(|l| l.contains(what)) {
            let id = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("attempt="))
                .unwrap_or_else(|| panic!("no attempt in {line}"));
            acked.push(id.to_owned());
        }
    }
    acked
}

/// `text` without ANSI colour sequences (`ESC [ … m`), whatever the log's colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn wait_online(rest: &Replicas, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = rest.call(reqwest::Method::GET, "/v1/devices", None).await;
        let online = body
            .as_array()
            .map_or(0, |d| d.iter().filter(|d| d["status"] == "online").count());
        if online >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{online} of {n} devices online: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_serves_reads_sends_writes_to_the_leader_and_takes_over_when_it_is_killed() {
    let db = pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&db.url, dir.path(), free_port().await).await;
    let (_, h) = wait_health(&a.base, "leads", |h| role(h) == "leader").await;
    let first_epoch = h["epoch"].as_u64().unwrap();
    let b = replica(&db.url, dir.path(), free_port().await).await;
    let (_, h) = wait_health(&b.base, "knows the leader", |h| !h["leader"].is_null()).await;
    assert_eq!(role(&h), "standby", "{h}");
    assert_eq!(h["leader"], a.base.as_str(), "{h}");

    // The standby sends writes (and what only the leader knows) to the leader's URL.
    let rest = Replicas::new(&[&b.base, &a.base]);
    for (method, path) in [
        (reqwest::Method::POST, "/v1/requests"),
        // A waited submit too, its wait kept: the leader waits.
        (reqwest::Method::POST, "/v1/requests?wait=30"),
        (reqwest::Method::POST, "/v1/devices"),
        (reqwest::Method::GET, "/v1/agent"),
    ] {
        let resp = rest
            .call_one(&b.base, method.clone(), path, Some(&json!({"text": "x"})))
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::TEMPORARY_REDIRECT,
            "{method} {path}"
        );
        assert_eq!(
            resp.headers()["location"],
            format!("{}{path}", a.base).as_str()
        );
    }
    for (base, leads) in [(&a.base, 1), (&b.base, 0)] {
        let text = rest
            .call_one(base, reqwest::Method::GET, "/metrics", None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(&format!("\nweft_leader {leads}\n")), "{text}");
    }
    // The API document says which routes a standby sends on (it serves the document itself).
    let doc: Value = rest
        .call_one(&b.base, reqwest::Method::GET, "/openapi.json", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answers = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
    assert!(answers("/v1/requests", "post")["307"].is_object());
    assert!(answers("/v1/requests", "post")["503"].is_object());
    assert!(answers("/v1/devices", "post")["307"].is_object());
    assert!(answers("/v1/devices", "get")["307"].is_null());
    assert!(answers("/v1/requests/{id}", "get")["307"].is_null());
    assert!(answers("/v1/requests/{id}/events", "get")["307"].is_null());
    // The agent is given the standby first: it is sent on to the leader.
    let mut l1 = agent(&rest, "l1", &[&b.base, &a.base], dir.path()).await;
    wait_online(&rest, 1).await;
    let v = rest
        .post(
            "/v1/requests",
            json!({"text": r#"on laptop run "sleep 1.5; echo survived""#}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    // The standby answers reads itself, from the store.
    let resp = rest
        .call_one(
            &b.base,
            reqwest::Method::GET,
            &format!("/v1/requests/{id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Its event stream follows the journal (the leader's NOTIFY), across the takeover.
    let stream = tokio::spawn({
        let url = format!("{}/v1/requests/{id}/events", b.base);
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth("test-token")
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.text().await.unwrap()
        }
    });
    rest.wait_for(&id, "running", |v| {
        v.tasks[0].status == weft_protocol::TaskStatus::Running
    })
    .await;
    // The standby shows the device as the leader wrote it: connected, running the attempt.
    let resp = rest
        .call_one(&b.base, reqwest::Method::GET, "/v1/devices", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let devices: Value = resp.json().await.unwrap();
    assert_eq!(devices[0]["name"], "l1", "{devices}");
    assert_eq!(devices[0]["status"], "online", "{devices}");
    assert_eq!(devices[0]["running"], 1, "{devices}");

    // The web view is the leader's, but its sessions are stored: a session started there
    // authenticates the standby's reads too, and outlives the takeover below.
    let link: Value = rest
        .call_one(&a.base, reqwest::Method::POST, "/v1/ui/login-links", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let login = browser()
        .get(format!("{}{}", a.base, link["path"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status(),
        StatusCode::SEE_OTHER,
        "redeemed at the leader"
    );
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |base: String| {
        let cookie = cookie.clone();
        async move {
            browser()
                .get(format!("{base}/v1/devices"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(with_cookie(a.base.clone()).await, StatusCode::OK);
    assert_eq!(with_cookie(b.base.clone()).await, StatusCode::OK);

    // kill -9 the leader while the task runs: the standby takes over, resumes the request
    // from the store, the agent finds it and the task's one result is applied once.
    let mut a = a;
    let killed = Instant::now();
    sigkill(&a.child);
    let _ = a.child.wait().await;
    let (led, h) = wait_health(&b.base, "takes over", |h| role(h) == "leader").await;
    assert!(h["epoch"].as_u64().unwrap() > first_epoch, "{h}");
    let takeover = led - killed;
    eprintln!("takeover after kill -9: {} ms", takeover.as_millis());
    assert!(
        takeover <= Duration::from_millis(3 * lease()[0]),
        "takeover took {takeover:?}"
    );
    let rest = Replicas::new(&[&b.base]);
    let v = rest
        .wait_for(&id, "finished", |v| v.status.is_terminal())
        .await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(
        v.tasks[0].output.as_ref().unwrap().data["stdout"],
        "survived\n"
    );
    let journal = rest.events(&b.base, &id).await;
    assert_each_result_applied_once(&v, &journal);
    assert_eq!(
        with_cookie(b.base.clone()).await,
        StatusCode::OK,
        "the browser session outlives the takeover"
    );

    // The stream opened on the standby saw the same journal, in order, to its end.
    let streamed = sse_events(&tokio::time::timeout(WAIT, stream).await.unwrap().unwrap());
    let seqs = |evs: &[Event]| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&streamed), seqs(&journal));
    assert!(matches!(
        streamed.last().map(|e| &e.kind),
        Some(EventKind::RequestStatus {
            status: RequestStatus::Succeeded,
            ..
        })
    ));
    let _ = l1.kill().await;
    let _ = b;
    assert!(
        !log_of(dir.path(), port_of(&a.base)).contains("panicked"),
        "{}",
        log_of(dir.path(), port_of(&a.base))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("weft.db");
    let db = db.to_str().unwrap();
    let first = spawn_server_on(db, dir.path(), free_port().await, &[], None).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
            "--api-token",
            "t",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data2"))
        .env("RUST_LOG", "warn")
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let pid = first.child.id().unwrap();
    assert!(
        stderr.contains(&format!("is in use by another `weft serve` (pid {pid})"))
            && stderr.contains("run replicas on Postgres"),
        "{stderr}"
    );
}

/// Split brain: the leader is paused (SIGSTOP) past its lease while it holds a request it
/// received; a standby takes over; the old leader, continued (SIGCONT), finds itself deposed
/// — its renewal or its commit is refused by the epoch — and stops without applying anything
/// it held: the request sent to it during the pause is nowhere in the store, the one that
/// was running ends once, under the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_continued_after_a_takeover_is_deposed_and_applies_nothing() {
    let db = pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&db.url, dir.path(), free_port().await).await;
    let (_, h) = wait_health(&a.base, "leads", |h| role(h) == "leader").await;
    let old_epoch = h["epoch"].as_u64().unwrap();
    let b = replica(&db.url, dir.path(), free_port().await).await;
    wait_health(&b.base, "knows the leader", |h| !h["leader"].is_null()).await;
    let rest = Replicas::new(&[&a.base, &b.base]);
    let mut l1 = agent(&rest, "l1", &[&a.base, &b.base], dir.path()).await;
    wait_online(&rest, 1).await;
    let v = rest
        .post(
            "/v1/requests",
            json!({"text": r#"on laptop run "sleep 1; echo once""#}),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    rest.wait_for(&id, "running", |v| {
        v.tasks[0].status == weft_protocol::TaskStatus::Running
    })
    .await;

    let mut a = a;
    signal(&a.child, "-STOP");
    let (_, h) = wait_health(&b.base, "takes over", |h| role(h) == "leader").await;
    let new_epoch = h["epoch"].as_u64().unwrap();
    assert!(new_epoch > old_epoch, "{h}");
    // A request sent to the paused leader: its kernel takes the connection and the bytes; the
    // process reads them only once continued, deposed.
    let to_old = tokio::spawn({
        let rest = Replicas::new(&[&a.base]);
        let base = a.base.clone();
        async move {
            rest.call_one(
                &base,
                reqwest::Method::POST,
                "/v1/requests",
                Some(&json!({"text": r#"run "echo held by the deposed leader""#})),
            )
            .await
            .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&a.child, "-CONT");
    let status = tokio::time::timeout(WAIT, a.child.wait())
        .await
        .expect("the deposed leader kept running")
        .unwrap();
    let log = log_of(dir.path(), port_of(&a.base));
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "weft: deposed: another replica leads now (epoch {new_epoch}; this one held {old_epoch})"
        )),
        "{log}"
    );
    eprintln!(
        "the deposed leader stopped on its {}",
        if log.contains("fail-stop") {
            "refused commit"
        } else {
            "refused renewal"
        }
    );
    let answered = tokio::time::timeout(WAIT, to_old).await.unwrap().unwrap();
    assert!(
        !matches!(answered, Ok(s) if s.is_success()),
        "the deposed leader acknowledged a request: {answered:?}"
    );

    // The new leader finishes the running request, its result applied once; the request sent
    // to the deposed leader was never stored.
    let rest = Replicas::new(&[&b.base]);
    let v = rest
        .wait_for(&id, "finished", |v| v.status.is_terminal())
        .await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_each_result_applied_once(&v, &rest.events(&b.base, &id).await);
    let (_, list) = rest.call(reqwest::Method::GET, "/v1/requests", None).await;
    let texts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("deposed")), "{texts:?}");
    let _ = l1.kill().await;
}

/// The acceptance run of issue 16 part 3: 3 replicas, 10 agents, a steady stream of requests
/// (two chained tasks each), and the leader killed with `kill -9` 20 times at random moments
/// (then started again, as a standby). Every request acknowledged ends, succeeded; every
/// task's result is applied once. Takeover times (last commit of the old leader to the first
/// of the new, from the journal's times; and kill to `/healthz` saying `leader`) are printed:
/// BENCHMARKS.md has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_twenty_times_under_load_loses_nothing() {
    const REPLICAS: usize = 3;
    const AGENTS: usize = 10;
    const KILLS: usize = 20;
    let db = pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        let port = free_port().await;
        servers.push(Some(replica(&db.url, dir.path(), port).await));
        ports.push(port);
    }
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let base_refs: Vec<&str> = bases.iter().map(String::as_str).collect();
    let rest = std::sync::Arc::new(Replicas::new(&base_refs));
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        // Each agent lists the replicas in another order.
        let mut order = base_refs.clone();
        order.rotate_left(i % REPLICAS);
        agents.push(agent(&rest, &format!("d{i}"), &order, dir.path()).await);
    }
    wait_online(&rest, AGENTS).await;

    // A steady stream of requests, through whichever replica leads.
    let stop = tokio_util::sync::CancellationToken::new();
    let submitter = submit_stream(rest.clone(), stop.clone());

    let mut kills = Vec::new();
    let mut observed = Vec::new();
    let mut back = Vec::new();
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 2000)).await;
        let leader = loop {
            let mut found = None;
            for (i, base) in bases.iter().enumerate() {
                if let Some(h) = health(base).await
                    && role(&h) == "leader"
                {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut server = servers[leader].take().unwrap();
        let killed = Instant::now();
        kills.push(weft_orchestrator::now_ms());
        sigkill(&server.child);
        let _ = server.child.wait().await;
        // Another replica takes over.
        let deadline = Instant::now() + WAIT;
        'takeover: loop {
            for (i, base) in bases.iter().enumerate() {
                if i != leader
                    && let Some(h) = health(base).await
                    && role(&h) == "leader"
                {
                    observed.push(killed.elapsed());
                    break 'takeover;
                }
            }
            assert!(Instant::now() < deadline, "kill {k}: no replica took over");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Every agent finds the new leader.
        wait_online(&rest, AGENTS).await;
        back.push(killed.elapsed());
        // The killed one comes back, as a standby.
        servers[leader] = Some(replica(&db.url, dir.path(), ports[leader]).await);
    }
    stop.cancel();
    let ids = tokio::time::timeout(WAIT, submitter)
        .await
        .unwrap()
        .unwrap();
    assert!(ids.len() > 100, "only {} requests acknowledged", ids.len());
    each_succeeded_once(&rest, &ids).await;
    every_ack_stored(dir.path(), &db.url, ids.len()).await;

    // Takeover: the old leader's last commit to the new one's first, from the journal.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let times: Vec<i64> = sqlx::query_scalar("SELECT at_ms FROM events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut gaps: Vec<u64> = kills
        .iter()
        .filter_map(|&k| {
            let k = i64::try_from(k).unwrap();
            let before = times.iter().filter(|&&t| t <= k).max()?;
            let after = times.iter().filter(|&&t| t > k).min()?;
            Some(u64::try_from(after - before).unwrap())
        })
        .collect();
    gaps.sort_unstable();
    let sorted_ms = |ds: &[Duration]| {
        let mut ms: Vec<u64> = ds
            .iter()
            .map(|d| u64::try_from(d.as_millis()).unwrap())
            .collect();
        ms.sort_unstable();
        ms
    };
    let seen = sorted_ms(&observed);
    let back = sorted_ms(&back);
    eprintln!(
        "{KILLS} kills, {} requests acknowledged: takeover (last commit -> first commit) p50 \
         {} ms, max {} ms; kill -> /healthz leader p50 {} ms, max {} ms; kill -> all {AGENTS} \
         agents online again p50 {} ms, max {} ms (lease, renewal, heartbeat in ms: {:?})",
        ids.len(),
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1],
        seen[seen.len() / 2],
        seen[seen.len() - 1],
        back[back.len() / 2],
        back[back.len() - 1],
        lease(),
    );
    assert_eq!(gaps.len(), KILLS);
    assert!(
        gaps[gaps.len() - 1] <= 3 * lease()[0],
        "takeovers (ms): {gaps:?}"
    );
    for mut a in agents {
        let _ = a.kill().await;
    }
}

/// The fence itself, on two stores of one database: a leader's commit after another replica
/// took the lease is refused inside its transaction and writes nothing; its renewal finds the
/// lease taken; a live lease cannot be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_superseded_epoch_is_refused_and_writes_nothing() {
    use weft_orchestrator::Error;
    use weft_orchestrator::store::{Renewal, Store};

    let db = pg::database().await;
    let old = Store::open(&db.url).await.unwrap();
    let new = Store::open(&db.url).await.unwrap();
    let event = |seq: u64| Event {
        seq,
        request_id: weft_protocol::RequestId("r1".into()),
        at_ms: seq,
        kind: EventKind::GraphEdited {
            version: seq,
            ops: vec![],
        },
    };
    let short = Duration::from_millis(300);
    let held = old
        .try_lead("old", "http://old", short)
        .await
        .unwrap()
        .unwrap();
    old.fence(held);
    assert_eq!(
        new.try_lead("new", "http://new", short).await.unwrap(),
        None
    );
    old.commit(&[], &[event(1)]).await.unwrap();
    assert_eq!(old.renew(held, short).await.unwrap(), Renewal::Renewed);

    // The old leader stops renewing (paused): its lease runs out and the other takes over.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let current = new
        .try_lead("new", "http://new", short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current, held + 1);
    new.fence(current);
    let refused = old.commit(&[], &[event(2)]).await.unwrap_err();
    assert!(
        matches!(refused, Error::Deposed { held: h, current: c } if h == held && c == current),
        "{refused}"
    );
    assert_eq!(
        new.last_seq().await.unwrap(),
        1,
        "the refused commit wrote nothing"
    );
    assert_eq!(
        old.renew(held, short).await.unwrap(),
        Renewal::Taken { current }
    );
    new.commit(&[], &[event(2)]).await.unwrap();
    assert_eq!(old.last_seq().await.unwrap(), 2);
    let row = old.leader().await.unwrap().unwrap();
    assert_eq!((row.epoch, row.url.as_str()), (current, "http://new"));
    old.close().await;
    new.close().await;
}

/// Submits a request (two chained tasks) every 100 ms through whichever replica leads, until
/// `stop`; returns the number and id of each one acknowledged (`201`).
fn submit_stream(
    rest: std::sync::Arc<Replicas>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<(usize, String)>> {
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut i = 0;
        while !stop.is_cancelled() {
            let text = format!(r#"run "sleep 0.2; echo {i}a" then run "echo {i}b""#);
            let (status, body) = rest
                .call(
                    reqwest::Method::POST,
                    "/v1/requests",
                    Some(&json!({"text": text})),
                )
                .await;
            if status == StatusCode::CREATED {
                ids.push((i, body["id"].as_str().unwrap().to_owned()));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids
    })
}

/// Every acknowledged request of [`submit_stream`] ends, succeeded, with each task's result
/// applied once (in its journal, as the leader's event stream gives it).
async fn each_succeeded_once(rest: &Replicas, ids: &[(usize, String)]) {
    for (i, id) in ids {
        let v = rest
            .wait_for(id, "finished", |v| v.status.is_terminal())
            .await;
        assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
        assert_eq!(
            v.tasks[1].output.as_ref().unwrap().data["stdout"],
            format!("{i}b\n")
        );
        let (status, text) = rest
            .call_text(
                reqwest::Method::GET,
                &format!("/v1/requests/{id}/events"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_each_result_applied_once(&v, &sse_events(&text));
    }
}

/// Postgres killed (`pg_ctl stop -m immediate`) and started again under a steady stream of
/// requests, with two replicas: the leader stops (fail-stop: its commit fails, or its lease
/// runs out unrenewed) and exits non-zero; once the database is back a replica takes the lead
/// and resumes; the stopped one, started again as a supervisor would, rejoins. Every
/// acknowledged request succeeds, each result applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_and_restarted_under_load_stops_the_leader_and_loses_nothing() {
    if !pg::installed() {
        eprintln!("skipped: Postgres is not installed here (the test kills its own cluster)");
        return;
    }
    let cluster = tokio::task::spawn_blocking(pg::Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let db = cluster.admin_url();
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&db, dir.path(), free_port().await).await;
    wait_health(&a.base, "leads", |h| role(h) == "leader").await;
    let b = replica(&db, dir.path(), free_port().await).await;
    wait_health(&b.base, "knows the leader", |h| !h["leader"].is_null()).await;
    let rest = std::sync::Arc::new(Replicas::new(&[&a.base, &b.base]));
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(agent(&rest, &format!("d{i}"), &[&a.base, &b.base], dir.path()).await);
    }
    wait_online(&rest, 3).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let submitter = submit_stream(rest.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap();
    let mut a = a;
    let status = tokio::time::timeout(WAIT, a.child.wait())
        .await
        .expect("the leader kept running without its database")
        .unwrap();
    let log = log_of(dir.path(), port_of(&a.base));
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("weft: stopped because a store write failed (fail-stop")
            || log.contains("weft: the leader's lease ran out without being renewed"),
        "{log}"
    );
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap();
    // The supervisor starts the stopped replica again; one of the two leads.
    let a = replica(&db, dir.path(), port_of(&a.base)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut roles = Vec::new();
        for base in [&a.base, &b.base] {
            roles.push(health(base).await.map(|h| role(&h).to_owned()));
        }
        if roles
            .iter()
            .filter(|r| r.as_deref() == Some("leader"))
            .count()
            == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no leader after the restart: {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let ids = tokio::time::timeout(WAIT, submitter)
        .await
        .unwrap()
        .unwrap();
    assert!(ids.len() > 20, "only {} requests acknowledged", ids.len());
    each_succeeded_once(&rest, &ids).await;
    every_ack_stored(dir.path(), &db, ids.len()).await;
    for mut agent in agents {
        let _ = agent.kill().await;
    }
    drop((a, b));
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// Runs the `weft` CLI with the test's API token; its exit code, standard output and error.
async fn weft(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_API_TOKEN", "test-token")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("weft did not finish")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI given every replica: a standby's redirect takes its calls to the leader (and only
/// to a server it was given), the enrollment line lists every replica, and once the leader is
/// killed its calls reach the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_given_every_replica_reaches_whichever_leads() {
    let db = pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&db.url, dir.path(), free_port().await).await;
    wait_health(&a.base, "leads", |h| role(h) == "leader").await;
    let b = replica(&db.url, dir.path(), free_port().await).await;
    wait_health(&b.base, "knows the leader", |h| !h["leader"].is_null()).await;
    let both = format!("{},{}", b.base, a.base);

    let (code, out, err) =
        weft(&["device", "add", "d1", "--kind", "laptop", "--server", &both]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("--server {} --server {} ", b.base, a.base)),
        "{out}"
    );
    let token = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("WEFT_DEVICE_TOKEN="))
        .unwrap()
        .to_owned();
    let mut d1 = spawn_agent(&both, "d1", &token, dir.path());
    let (code, out, err) = weft(&[
        "submit",
        "--watch",
        "--timeout-secs",
        "50",
        "--server",
        &both,
        r#"run "echo through the standby""#,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("through the standby"), "{out}");

    // A standby answers reads itself; its redirect of a write to a server the CLI was not
    // given is not followed.
    let (code, out, err) = weft(&["devices", "--server", &b.base]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("d1"), "{out}");
    let (code, _, err) = weft(&[
        "device", "add", "d2", "--kind", "laptop", "--server", &b.base,
    ])
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("which is not one of the servers given"),
        "{err}"
    );

    let mut a = a;
    sigkill(&a.child);
    let _ = a.child.wait().await;
    let (code, out, err) = weft(&["devices", "--server", &format!("{},{}", a.base, b.base)]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("d1"), "{out}");
    let (_, h) = wait_health(&b.base, "leads", |h| role(h) == "leader").await;
    assert_eq!(role(&h), "leader");
    let _ = d1.kill().await;
}

/// Bad replica settings stop `weft serve` before it serves, saying what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replica_settings_are_refused_at_start() {
    let db = pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let serve = |extra: &'static [&'static str], listen: &'static str| {
        let db = db.url.clone();
        let data = data.to_owned();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
                .args([
                    "serve",
                    "--listen",
                    listen,
                    "--db",
                    &db,
                    "--data-dir",
                    &data,
                ])
                .args(["--api-token", "t"])
                .args(extra)
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    // Clients could not be sent to 0.0.0.0.
    let (code, err) = serve(&["--insecure-plaintext"], "0.0.0.0:0").await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("give --advertise-url"), "{err}");
    let (code, err) = serve(
        &["--lease-ttl-ms", "1000", "--lease-renew-ms", "600"],
        "127.0.0.1:0",
    )
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("renew at least twice per lease"), "{err}");
    let (code, err) = serve(&["--advertise-url", "weft.lan:7600"], "127.0.0.1:0").await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("give an http:// or https:// URL"), "{err}");
}

/// No acknowledged result was lost: every result an agent of [`agent`] in `dir` saw
/// acknowledged is in the store at `db`, applied (its attempt succeeded) or, if its attempt had
/// ended before it came, recorded as late. Each of the `requests` had two tasks, so at least
/// two results were sent for each: acknowledged, or committed by a leader killed before its ack
/// (the agent drops those when the next leader does not reattach them).
async fn every_ack_stored(dir: &std::path::Path, db: &str, requests: usize) {
    let acked = logged(dir, "result acknowledged");
    let dropped = logged(dir, "result no longer wanted");
    assert!(
        acked.len() + dropped.len() >= 2 * requests,
        "{} acks and {} dropped for {requests} requests of two tasks",
        acked.len(),
        dropped.len()
    );
    let pool = sqlx::PgPool::connect(db).await.unwrap();
    let stored: std::collections::HashMap<String, (String, bool)> =
        sqlx::query_as::<_, (String, String, bool)>(
            "SELECT id, status, late_result IS NOT NULL FROM attempts",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, status, late)| (id, (status, late)))
        .collect();
    pool.close().await;
    let late = acked
        .iter()
        .filter(|a| stored.get(*a).is_some_and(|s| s.1))
        .count();
    for a in &acked {
        let found = stored.get(a);
        assert!(
            found.is_some_and(|(status, late)| status == "succeeded" || *late),
            "attempt {a}: acknowledged, stored as {found:?}"
        );
    }
    eprintln!(
        "{} results acknowledged, every one in the store ({late} late); {} dropped unacknowledged",
        acked.len(),
        dropped.len()
    );
}
