//! Starts a real orchestrator and real agents for a test.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_orchestrator::{ServeOptions, server};
use weft_protocol::rest::{DeviceView, RequestView};

pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Harness {
    pub addr: SocketAddr,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The server's `--db`: `weft.db` in `dir`, or a Postgres database of this test's own
    /// with `WEFT_TEST_STORE=postgres`.
    pub db: String,
    /// Keeps that Postgres database until the harness is dropped.
    pg: Option<crate::pg::TestDb>,
    shutdown: CancellationToken,
    join: Option<tokio::task::JoinHandle<Result<(), weft_orchestrator::Error>>>,
    agents: Vec<RunningAgent>,
    tls: Option<std::sync::Arc<weft_orchestrator::listen::tls::ServerTls>>,
}

/// An in-process agent: the token that stops it and its task (taken once it has been awaited).
#[derive(Debug)]
struct RunningAgent {
    stop: CancellationToken,
    join: Option<tokio::task::JoinHandle<Result<(), weft_agent::Error>>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The options every test server starts with: database `db`, data directory in `dir`.
    fn options(dir: &std::path::Path, db: &str) -> ServeOptions {
        let mut opts = ServeOptions::new(db.to_owned(), dir.join("data"));
        opts.heartbeat_interval = Duration::from_millis(500);
        opts.hello_timeout = Duration::from_secs(2);
        opts.shutdown_grace = Duration::from_secs(1);
        opts
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pg = if postgres() {
            Some(crate::pg::database().await)
        } else {
            None
        };
        let db = pg.as_ref().map_or_else(
            || dir.path().join("weft.db").display().to_string(),
            |pg| pg.url.clone(),
        );
        let mut opts = Self::options(dir.path(), &db);
        tweak(&mut opts);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let running = server::start(listener, opts, shutdown.clone())
            .await
            .unwrap();
        Self {
            addr: running.addr,
            base: format!("http://{}", running.addr),
            token: running.api_token,
            http: reqwest::Client::builder()
                .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            dir,
            db,
            pg,
            shutdown,
            join: Some(running.join),
            agents: Vec::new(),
            tls: running.tls,
        }
    }

    /// Reads the server's certificate and key again (as SIGHUP does); the new fingerprint.
    pub fn reload_tls(&self) -> weft_agent::tls::Fingerprint {
        self.tls.as_ref().expect("TLS is off").reload().unwrap()
    }

    /// A server with in-process agents `laptop`, `server` and `phone` connected.
    pub async fn with_three_agents() -> Self {
        let mut h = Self::start().await;
        for (name, kind) in [
            ("laptop", "laptop"),
            ("server", "server"),
            ("phone", "phone"),
        ] {
            let token = h.add_device(name, kind).await;
            h.start_agent(name, kind, &token);
        }
        h.wait_online(3).await;
        h
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Sends a call with the API token; its status and JSON body (`null` without one).
    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.bearer_auth(&self.token).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.send(req).await
    }

    pub async fn add_device(&self, name: &str, kind: &str) -> String {
        let (status, body) = self
            .post("/v1/devices", &json!({"name": name, "kind": kind}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub fn agent_config(&self, name: &str, kind: &str, token: &str) -> weft_agent::Config {
        let mut c = weft_agent::Config::new(&self.base, name, token);
        c.kind = kind.to_owned();
        c.workdir = self.dir.path().join("agents").join(name);
        // Outside the workdir, which the agent refuses.
        c.state_dir = self.dir.path().join("agent-state").join(name);
        c.max_concurrency = 4;
        // The tests fetch the orchestrator's own URLs on 127.0.0.1, which the default policy
        // refuses.
        c.policy.allow_loopback_http();
        c
    }

    /// Starts an in-process agent (the real agent code, its own WebSocket connection).
    pub fn start_agent(&mut self, name: &str, kind: &str, token: &str) -> usize {
        let config = self.agent_config(name, kind, token);
        self.start_agent_with(config)
    }

    /// Starts an in-process agent with this configuration; returns its index for
    /// [`Harness::stop_agent`].
    pub fn start_agent_with(&mut self, config: weft_agent::Config) -> usize {
        let stop = CancellationToken::new();
        let join = tokio::spawn(weft_agent::run(config, stop.clone()));
        self.agents.push(RunningAgent {
            stop,
            join: Some(join),
        });
        self.agents.len() - 1
    }

    /// Stops one in-process agent (as SIGTERM would) and waits for it to exit; returns what
    /// its run returned.
    pub async fn stop_agent(&mut self, index: usize) -> Result<(), weft_agent::Error> {
        let agent = &mut self.agents[index];
        agent.stop.cancel();
        let join = agent.join.take().expect("agent already stopped");
        tokio::time::timeout(WAIT, join)
            .await
            .expect("the agent did not stop in time")
            .expect("the agent task panicked")
    }

    pub async fn devices(&self) -> Vec<DeviceView> {
        let (status, body) = self.get("/v1/devices").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_value(body).unwrap()
    }

    pub async fn wait_online(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let online = self
                .devices()
                .await
                .iter()
                .filter(|d| d.status == weft_protocol::rest::DeviceStatus::Online)
                .count();
            if online >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {online} of {n} devices came online"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn submit(&self, text: &str) -> RequestView {
        let (status, body) = self.post("/v1/requests", &json!({"text": text})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn request(&self, id: &str) -> RequestView {
        let (status, body) = self.get(&format!("/v1/requests/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// Polls until `done` holds for the request; `what` names the wait in the failure message.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&RequestView) -> bool,
    ) -> RequestView {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.request(id).await;
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id}: still not {what}: {v:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until device `name` is offline.
    pub async fn wait_offline(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.devices().await.iter().any(|d| {
            d.name.as_str() == name && d.status == weft_protocol::rest::DeviceStatus::Online
        }) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "device {name} still online"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the request has a final status.
    pub async fn wait_done(&self, id: &str) -> RequestView {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.request(id).await;
            if v.status.is_terminal() {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} still {:?}: {v:#?}",
                v.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The whole SSE body of a request's event stream (it ends after the final status).
    pub async fn events_text(&self, id: &str) -> String {
        let resp = self
            .http
            .get(format!("{}/v1/requests/{id}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tokio::time::timeout(Duration::from_secs(10), resp.text())
            .await
            .expect("the event stream did not end")
            .unwrap()
    }

    /// A request's journal, parsed from its event stream.
    pub async fn events(&self, id: &str) -> Vec<weft_protocol::rest::Event> {
        self.events_text(id)
            .await
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/agent", self.addr)
    }

    /// Whether the server began to shut down (asked to, or on its own after a store failure).
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// Waits for a server that stopped on its own after a failed commit; its error.
    pub async fn stopped_by_failure(mut self) -> weft_orchestrator::Error {
        for agent in &self.agents {
            agent.stop.cancel();
        }
        let join = self.join.take().expect("the server was stopped already");
        match tokio::time::timeout(WAIT, join).await {
            Ok(Ok(Err(e))) => e,
            Ok(Ok(Ok(()))) => panic!("the server stopped without an error"),
            Ok(Err(e)) => panic!("the server task failed: {e}"),
            Err(_) => panic!("the server did not stop"),
        }
    }

    /// Whether this test runs on Postgres.
    pub fn on_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// Runs `sql` on the server's database through a connection of its own.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection;
        if self.on_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.db).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let url = format!("sqlite://{}", self.db);
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }

    /// The number of rows in `table`, read through a connection of its own.
    pub async fn count_rows(&self, table: &str) -> i64 {
        use sqlx::Connection;
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.on_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.db).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let url = format!("sqlite://{}", self.db);
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
        }
    }

    /// Stops the server (and the in-process agents) and starts it again, with the default
    /// options, on the same database, data directory and address.
    pub async fn restart(&mut self) {
        self.stop_in_place().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let shutdown = CancellationToken::new();
        let opts = Self::options(self.dir.path(), &self.db);
        let running = server::start(listener, opts, shutdown.clone())
            .await
            .unwrap();
        assert_eq!(running.api_token, self.token, "the API token is kept");
        self.shutdown = shutdown;
        self.join = Some(running.join);
        self.tls = running.tls;
    }

    /// Stops agents and server but keeps the temp dir (and the database in it).
    pub async fn stop_in_place(&mut self) {
        for agent in &self.agents {
            agent.stop.cancel();
        }
        for agent in self.agents.drain(..) {
            if let Some(join) = agent.join {
                let _ = tokio::time::timeout(Duration::from_secs(10), join).await;
            }
        }
        self.shutdown.cancel();
        if let Some(j) = self.join.take() {
            tokio::time::timeout(Duration::from_secs(10), j)
                .await
                .expect("server did not stop in time")
                .unwrap()
                .unwrap();
        }
    }
}

/// Whether the integration tests run on Postgres (`WEFT_TEST_STORE=postgres`; docs/postgres.md)
/// rather than on a SQLite file per test.
pub fn postgres() -> bool {
    std::env::var("WEFT_TEST_STORE").is_ok_and(|v| v == "postgres")
}

impl Drop for Harness {
    fn drop(&mut self) {
        for agent in &self.agents {
            agent.stop.cancel();
        }
        self.shutdown.cancel();
    }
}

/// Whether a process with this pid (as text, e.g. read from a pid file) is alive.
pub fn pid_alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Checks that each task of a finished request has exactly one succeeded attempt and that its
/// journal applied exactly one result to each task, that attempt's.
pub fn assert_each_result_applied_once(
    v: &weft_protocol::rest::RequestView,
    journal: &[weft_protocol::rest::Event],
) {
    use weft_protocol::rest::EventKind;
    use weft_protocol::{AttemptStatus, TaskStatus};

    let mut applied: std::collections::HashMap<String, Vec<_>> = Default::default();
    for e in journal {
        if let EventKind::TaskStatus {
            task_id,
            status: TaskStatus::Succeeded,
            attempt_id,
            ..
        } = &e.kind
        {
            applied
                .entry(task_id.to_string())
                .or_default()
                .push(attempt_id.clone());
        }
    }
    for t in v.tasks.iter().filter(|t| t.status == TaskStatus::Succeeded) {
        let ok: Vec<_> = t
            .attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Succeeded)
            .map(|a| Some(a.id.clone()))
            .collect();
        assert_eq!(ok.len(), 1, "task {} of {}: {:?}", t.id, v.id, t.attempts);
        let journaled = applied.remove(t.id.as_str()).unwrap_or_default();
        assert_eq!(journaled, ok, "task {} of {}: results applied", t.id, v.id);
    }
    assert!(
        applied.is_empty(),
        "results applied to unfinished tasks: {applied:?}"
    );
}
