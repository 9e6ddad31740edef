//! Files and crashes (issue 17, "Reliability and speed"): `kill -9` of the producing agent
//! half-way through its upload, of the orchestrator half-way through an upload and half-way
//! through a download, and of the consuming agent half-way through its download. In each case
//! the request still ends succeeded with the consumer holding verified bytes, no partial file
//! is ever seen under a final name (in the blob store or in the consumer's inputs), nothing
//! partial is left behind (the store's `tmp/`, the consumer's `inputs/`), and the blob the
//! request refers to is still stored at the end.
//!
//! Everything is a real process: `weft serve` and two `weft agent`s. The agents reach the
//! server through a throttling TCP proxy in the test, so that a transfer of a few MiB takes
//! about a second and "half-way" can be seen on disk (a `.part` file growing) before the kill.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;
use weft_protocol::rest::{DeviceStatus, DeviceView, RequestView};
use weft_protocol::{AttemptStatus, RequestStatus};

use crate::faults::{ChildDb, Rest, ServerProc, free_port, sigkill, spawn_agent, spawn_server_on};
use crate::files::{blobs_in, files_in, first_word, sha256_hex};
use crate::harness::WAIT;

/// Bytes of the file t1 hands to t2.
const FILE_BYTES: usize = 6 * 1024 * 1024 + 13;

/// What the proxy carries per connection and direction: the file takes about 1.5 s.
const RATE: f64 = 4.0 * 1024.0 * 1024.0;

/// The file's bytes: generated, the same every time (so a re-run producer sends them again).
fn file_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..FILE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A TCP proxy on a free loopback port to `127.0.0.1:upstream` that carries at most [`RATE`]
/// bytes a second each way on each connection; a connection closed on one side is closed on
/// the other. It outlives the server behind it (each connection dials the port anew).
fn throttle(listener: TcpListener, upstream: u16) {
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let (down_r, down_w) = down.into_split();
                let (up_r, up_w) = up.into_split();
                tokio::select! {
                    () = pump(down_r, up_w) => {}
                    () = pump(up_r, down_w) => {}
                }
            });
        }
    });
}

/// Copies `from` to `to` at [`RATE`] until either ends.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        // Pacing, not synchronisation: the bytes of this piece at RATE.
        tokio::time::sleep(Duration::from_secs_f64(n as f64 / RATE)).await;
    }
}

/// Polls `seen` every 5 ms until it holds; fails after [`WAIT`].
async fn wait_until(what: &str, seen: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen() {
        assert!(tokio::time::Instant::now() < deadline, "never saw: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `seen` every 20 ms until it holds; fails after [`WAIT`].
async fn wait_until_async(what: &str, seen: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen().await {
        assert!(tokio::time::Instant::now() < deadline, "never saw: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The regular files under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in files_in(dir) {
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Whether `p` is a file being written (`….part`) with some but not all of the file's bytes.
fn half_written(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".part") && (1..FILE_BYTES as u64).contains(&len(p))
}

/// Which transfer a test catches half-way.
#[derive(Debug, Clone, Copy)]
enum Leg {
    /// Phone → orchestrator.
    Upload,
    /// Orchestrator → laptop.
    Download,
}

/// A server, a throttling proxy in front of it, a producing agent (`phone`) and a consuming
/// one (`laptop`), each a process; and a watcher that notes every file under a final name
/// (a blob, or the consumer's copy of the input) that does not have all of the file's bytes.
struct Rig {
    dir: tempfile::TempDir,
    port: u16,
    db: ChildDb,
    server: ServerProc,
    proxy: String,
    tokens: [String; 2],
    agents: [Child; 2],
    watched: Arc<Mutex<Watched>>,
    stop_watching: CancellationToken,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The producer's output is there before it runs: every attempt of t1 sends the same.
        let phone_work = dir.path().join("work/phone");
        std::fs::create_dir_all(&phone_work).unwrap();
        std::fs::write(phone_work.join("data.bin"), file_bytes()).unwrap();
        let port = free_port().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The server answers to the proxy's address as its own.
        let proxy_host = listener.local_addr().unwrap().to_string();
        let db = ChildDb::new(dir.path()).await;
        let server = spawn_server_on(
            &db.url,
            dir.path(),
            port,
            &db.args(&server_args(&proxy_host)),
            None,
        )
        .await;
        throttle(listener, port);
        let proxy = format!("http://{proxy_host}");
        let rest = Rest::new(&server.base);
        let mut tokens = Vec::new();
        for name in ["phone", "laptop"] {
            let created = rest
                .post("/v1/devices", json!({"name": name, "kind": "laptop"}))
                .await;
            tokens.push(created["token"].as_str().unwrap().to_owned());
        }
        let tokens: [String; 2] = tokens.try_into().unwrap();
        let agents = [
            spawn_agent(&proxy, "phone", &tokens[0], dir.path()),
            spawn_agent(&proxy, "laptop", &tokens[1], dir.path()),
        ];
        let http = reqwest::Client::new();
        wait_until_async("both agents online", async || {
            let Ok(r) = http
                .get(format!("{}/v1/devices", server.base))
                .bearer_auth("test-token")
                .send()
                .await
            else {
                return false;
            };
            let devices: Vec<DeviceView> = r.json().await.unwrap_or_default();
            devices
                .iter()
                .filter(|d| d.status == DeviceStatus::Online)
                .count()
                == 2
        })
        .await;
        let watched = Arc::new(Mutex::new(Watched::default()));
        let stop_watching = CancellationToken::new();
        tokio::spawn(watch(
            dir.path().to_path_buf(),
            Arc::clone(&watched),
            stop_watching.clone(),
        ));
        Self {
            dir,
            port,
            db,
            server,
            proxy,
            tokens,
            agents,
            watched,
            stop_watching,
        }
    }

    fn rest(&self) -> Rest {
        Rest::new(&self.server.base)
    }

    fn blobs(&self) -> PathBuf {
        self.dir.path().join("data/blobs")
    }

    /// The consumer's inputs directory (`inputs/<attempt>/t1/…`).
    fn laptop_inputs(&self) -> PathBuf {
        self.dir.path().join("work/laptop/inputs")
    }

    /// Submits t1 on the phone (sends `data.bin`) then t2 on the laptop (hashes it).
    async fn submit(&self) -> String {
        let retry = json!({"max_attempts": 4, "initial_backoff_ms": 100, "multiplier": 1.0,
                           "max_backoff_ms": 100, "jitter": 0.0, "non_retryable": []});
        let graph = json!({
            "tasks": [
                {"id": "t1", "instruction": "send the data", "device": "phone", "retry": retry,
                 "action": {"kind": "shell", "command": "test -s data.bin"},
                 "outputs": {"files": ["data.bin"]}},
                {"id": "t2", "instruction": "hash the data", "device": "laptop", "retry": retry,
                 "action": {"kind": "shell", "command": "sha256sum {{t1.files.data.bin}}"}},
            ],
            "edges": [{"from": "t1", "to": "t2"}],
        });
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/requests", self.server.base))
            .bearer_auth("test-token")
            .json(&json!({"text": "files", "graph": graph}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// Waits until a transfer of `leg` is half-way: a `.part` file with some but not all of
    /// the bytes in the blob store's `tmp/` (upload) or in the laptop's inputs (download).
    async fn half_way(&self, leg: Leg) {
        let (what, dir) = match leg {
            Leg::Upload => ("an upload half-way", self.blobs().join("tmp")),
            Leg::Download => ("a download half-way", self.laptop_inputs()),
        };
        wait_until(what, || files_under(&dir).iter().any(|p| half_written(p))).await;
    }

    /// Makes the stored blob look stored two hours ago (as if an older request had sent the
    /// same bytes), so that retention's sweep, past its slack for fresh blobs, weighs it: only
    /// the live request that refers to it keeps it. Only once the result that names it is
    /// committed (the sweep takes a blob no result names yet, stored before the oldest live
    /// attempt began, for an orphan).
    fn age_blob(&self) {
        let then = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
        for b in blobs_in(&self.blobs()) {
            let f = std::fs::File::options().write(true).open(&b).unwrap();
            f.set_modified(then).unwrap();
        }
    }

    async fn kill_agent(&mut self, i: usize) {
        sigkill(&self.agents[i]);
        let _ = self.agents[i].wait().await;
    }

    fn restart_agent(&mut self, i: usize, name: &str) {
        self.agents[i] = spawn_agent(&self.proxy, name, &self.tokens[i], self.dir.path());
    }

    async fn kill_server(&mut self) {
        sigkill(&self.server.child);
        let _ = self.server.child.wait().await;
    }

    async fn restart_server(&mut self) {
        let proxy_host = self.proxy.trim_start_matches("http://");
        let args = self.db.args(&server_args(proxy_host));
        self.server = spawn_server_on(&self.db.url, self.dir.path(), self.port, &args, None).await;
    }

    /// Waits for the request to end and checks what every case must hold: it succeeded, t2
    /// hashed the very bytes t1 had, the blob is stored whole under its name (and nothing
    /// else is, nor left in `tmp/`), the consumer's inputs are gone, and no file under a final
    /// name was ever seen partial.
    async fn finish(&mut self, id: &str) -> RequestView {
        // The last moment the request was seen live: no blob may go before it.
        let rest = self.rest();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut live_at = Instant::now();
        let v = loop {
            let asked = Instant::now();
            if let Some(v) = rest.request(id).await {
                if v.status.is_terminal() {
                    break v;
                }
                live_at = asked;
            }
            assert!(Instant::now() < deadline, "request {id} did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.stop_watching.cancel();
        assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
        eprintln!(
            "attempts: t1 {:?}, t2 {:?}",
            attempt_codes(&v, 0),
            attempt_codes(&v, 1)
        );
        let sha = sha256_hex(&file_bytes());
        assert_eq!(first_word(&v, 1), sha, "t2 hashed other bytes: {v:#?}");
        let watched = self.watched.lock().unwrap().clone();
        assert!(
            watched.blob_gone.iter().all(|t| *t > live_at),
            "the blob was deleted while the request was live"
        );
        // Stored whole under its name, unless the sweep removed it since the request ended.
        let blobs = blobs_in(&self.blobs());
        assert!(blobs.len() <= 1, "{blobs:?}");
        for b in &blobs {
            assert!(b.ends_with(format!("{}/{}", &sha[..2], &sha[2..])), "{b:?}");
            assert_eq!(sha256_hex(&std::fs::read(b).unwrap()), sha);
        }
        assert_eq!(files_in(&self.blobs().join("tmp")), Vec::<PathBuf>::new());
        assert_eq!(files_under(&self.laptop_inputs()), Vec::<PathBuf>::new());
        assert!(
            watched.partial.is_empty(),
            "partial files under final names: {:?}",
            watched.partial
        );
        for a in &mut self.agents {
            let _ = a.kill().await;
        }
        v
    }
}

/// What the watcher saw.
#[derive(Debug, Clone, Default)]
struct Watched {
    /// Files under a final name without all of the file's bytes.
    partial: Vec<String>,
    /// When the stored blob was seen gone.
    blob_gone: Vec<Instant>,
}

/// Until `stop`, notes every file under a final name — a blob (`data/blobs/ab/cdef…`) or the
/// consumer's copy (`work/laptop/inputs/<attempt>/t1/data.bin`) — that has not all of the
/// file's bytes, and when a stored blob went away.
async fn watch(dir: PathBuf, watched: Arc<Mutex<Watched>>, stop: CancellationToken) {
    let inputs = dir.join("work/laptop/inputs");
    let blobs = dir.join("data/blobs");
    let mut had_blob = false;
    while !stop.is_cancelled() {
        let stored = blobs_in(&blobs);
        if had_blob && stored.is_empty() {
            watched.lock().unwrap().blob_gone.push(Instant::now());
        }
        had_blob = !stored.is_empty();
        let finals = stored.into_iter().chain(
            files_under(&inputs)
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n == "data.bin")),
        );
        for p in finals {
            let n = len(&p);
            // A file removed between listing and stat reads as 0: only a present one counts.
            if n != FILE_BYTES as u64 && p.exists() {
                let seen = format!("{} ({n} bytes)", p.display());
                watched.lock().unwrap().partial.push(seen);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `weft serve`'s options beyond `spawn_server_on`'s: it answers to the proxy's address, and
/// keeps files for 1 ms after the last request that refers to them ended, so its retention
/// sweep (every second) runs during each test and would delete an aged blob (`age_blob`)
/// that the live request did not keep.
fn server_args(proxy_host: &str) -> [&str; 4] {
    ["--allowed-host", proxy_host, "--artifact-retention", "1ms"]
}

fn attempt_codes(v: &RequestView, task: usize) -> Vec<(AttemptStatus, String)> {
    v.tasks[task]
        .attempts
        .iter()
        .map(|a| {
            let code = a.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
            (a.status, code)
        })
        .collect()
}

/// Checks that `task` of `v` (0: t1, 1: t2) took more than one attempt, the last succeeded.
fn assert_retried(v: &RequestView, task: usize) {
    let attempts = attempt_codes(v, task);
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_ne!(attempts[0].0, AttemptStatus::Succeeded, "{attempts:?}");
    assert_eq!(
        attempts.last().unwrap().0,
        AttemptStatus::Succeeded,
        "{attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_killed_mid_upload_sends_its_file_again_after_a_restart() {
    let mut rig = Rig::start().await;
    let id = rig.submit().await;
    rig.half_way(Leg::Upload).await;
    rig.kill_agent(0).await;
    assert!(
        blobs_in(&rig.blobs()).is_empty(),
        "stored before it all came"
    );
    // The orchestrator drops the broken upload's temporary file.
    let tmp = rig.blobs().join("tmp");
    wait_until("the partial upload removed", || files_in(&tmp).is_empty()).await;
    rig.restart_agent(0, "phone");
    assert_retried(&rig.finish(&id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_upload_gets_the_file_again_after_a_restart() {
    let mut rig = Rig::start().await;
    let id = rig.submit().await;
    rig.half_way(Leg::Upload).await;
    rig.kill_server().await;
    // The crash left its partial file in `tmp/` and nothing under a final name.
    let left: Vec<PathBuf> = files_in(&rig.blobs().join("tmp"))
        .into_iter()
        .filter(|p| half_written(p))
        .collect();
    assert!(!left.is_empty());
    assert!(
        blobs_in(&rig.blobs()).is_empty(),
        "stored before it all came"
    );
    rig.restart_server().await;
    // The restarted store removed what the crash left (a retry's own upload may be under way).
    assert!(left.iter().all(|p| !p.exists()), "{left:?}");
    assert_retried(&rig.finish(&id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_download_serves_the_file_again_after_a_restart() {
    let mut rig = Rig::start().await;
    let id = rig.submit().await;
    rig.half_way(Leg::Download).await;
    rig.age_blob();
    rig.kill_server().await;
    // The blob the request refers to is whole, and stays so across the restart (`finish`).
    assert_eq!(blobs_in(&rig.blobs()).len(), 1);
    rig.restart_server().await;
    assert_retried(&rig.finish(&id).await, 1);
    // The sweep did run in these servers: once the request ended, the blob goes.
    wait_until("the blob swept after the request", || {
        blobs_in(&rig.blobs()).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_killed_mid_download_fetches_the_file_again_and_leaves_nothing_behind() {
    let mut rig = Rig::start().await;
    let id = rig.submit().await;
    rig.half_way(Leg::Download).await;
    rig.age_blob();
    rig.kill_agent(1).await;
    rig.restart_agent(1, "laptop");
    // `finish` checks that the killed attempt's partial download is gone too.
    assert_retried(&rig.finish(&id).await, 1);
    // The sweep did run in these servers: once the request ended, the blob goes.
    wait_until("the blob swept after the request", || {
        blobs_in(&rig.blobs()).is_empty()
    })
    .await;
}
