//! The acceptance load of "a server no stranger can stall" (issue 15), with real processes: a
//! `weft serve` started with a soft limit of 1,024 open files, a real `weft agent` process, and
//! from another address (127.0.0.2) strangers that hold as many connections as they can —
//! idle, or sending a header byte every 5 s — plus WebSockets that ping and never say hello,
//! each reconnecting a second after the server closes it. Meanwhile the agent completes
//! one-task requests and `/healthz` (a new connection each time) must stay fast; afterwards
//! the server's open files and memory must come back to where they were.
//!
//! The load stops by itself. `WEFT_SIEGE_CONNECTIONS`, `WEFT_SIEGE_WEBSOCKETS`,
//! `WEFT_SIEGE_SECS` and `WEFT_SIEGE_ROUNDS` scale it (defaults: 1,000, 50, 15 s, 1 round, so
//! that it stays light beside the other tests; the issue's figures are 5,000 and 200, with
//! which BENCHMARKS.md reports it).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use weft_protocol::RequestStatus;
use weft_protocol::rest::RequestView;

const TOKEN: &str = "siege-token";
const STRANGER: &str = "127.0.0.2";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Open files and resident memory (KiB) of a process.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Connects from the stranger's address; `None` if even that failed.
async fn stranger_tcp(to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let sock = TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::new(STRANGER.parse().ok()?, 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
        .await
        .ok()?
        .ok()
}

#[derive(Debug, Default)]
struct Tally {
    /// Connections made (each later closed by the server, or at the end).
    connections: AtomicU64,
    /// Of them, closed within 100 ms: refused at once.
    refused: AtomicU64,
}

/// One stranger: connects, holds the connection (idle, or a header byte every 5 s) until the
/// server closes it, waits a second, and again, until `end`.
async fn holder(to: SocketAddr, trickle: bool, end: Instant, tally: Arc<Tally>) {
    while Instant::now() < end {
        let Some(mut tcp) = stranger_tcp(to).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        let mut buf = [0u8; 256];
        let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut sent = 0;
        loop {
            let wait = tokio::time::timeout_at(
                (Instant::now() + Duration::from_secs(5)).min(end),
                tcp.read(&mut buf),
            );
            match wait.await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) if Instant::now() >= end => return,
                Err(_) if trickle => {
                    let b = header.get(sent).copied().unwrap_or(b'a');
                    sent += 1;
                    if tcp.write_all(&[b]).await.is_err() {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        if opened.elapsed() < Duration::from_millis(100) {
            tally.refused.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A stranger's WebSocket: pings every 3 s and never sends a hello.
async fn pinger(to: SocketAddr, end: Instant, tally: Arc<Tally>) {
    while Instant::now() < end {
        let Some(tcp) = stranger_tcp(to).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let opened = Instant::now();
        let url = format!("ws://{to}/v1/agent");
        let upgrade = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
        );
        if let Ok(Ok((mut ws, _))) = upgrade.await {
            tally.connections.fetch_add(1, Ordering::Relaxed);
            loop {
                if ws.send(Message::Ping(vec![0].into())).await.is_err() {
                    break;
                }
                let read = tokio::time::timeout_at(
                    (Instant::now() + Duration::from_secs(3)).min(end),
                    ws.next(),
                );
                match read.await {
                    Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => break,
                    Ok(Some(Ok(_))) => {}
                    Err(_) if Instant::now() >= end => return,
                    Err(_) => {}
                }
            }
        } else if opened.elapsed() < Duration::from_millis(100) {
            tally.refused.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Latencies of `GET /healthz`, each over a new connection, every 50 ms until `end`; a probe
/// that fails counts as 10 s.
async fn probe_healthz(base: String, end: Instant) -> Vec<Duration> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut out = Vec::new();
    while Instant::now() < end {
        let start = Instant::now();
        let ok = matches!(
            http.get(format!("{base}/healthz")).send().await,
            Ok(r) if r.status().is_success()
        );
        out.push(if ok {
            start.elapsed()
        } else {
            Duration::from_secs(10)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

/// One-task requests, one after another, until `end`: (succeeded, not succeeded).
async fn run_requests(base: String, end: Instant) -> (u32, u32) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut ok, mut bad) = (0, 0);
    while Instant::now() < end {
        let resp = http
            .post(format!("{base}/v1/requests"))
            .bearer_auth(TOKEN)
            .json(&json!({"text": format!(r#"on laptop run "echo {ok}""#)}))
            .send()
            .await;
        let Ok(resp) = resp else {
            bad += 1;
            continue;
        };
        let Ok(view) = resp.json::<RequestView>().await else {
            bad += 1;
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let done = loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let v = http
                .get(format!("{base}/v1/requests/{}", view.id))
                .bearer_auth(TOKEN)
                .send()
                .await;
            if let Ok(r) = v
                && let Ok(v) = r.json::<RequestView>().await
                && v.status.is_terminal()
            {
                break v.status == RequestStatus::Succeeded;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        if done {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    (ok, bad)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
}

/// What one round of the siege measured; `failed` says which check did not hold.
struct Round {
    after: (usize, u64),
    report: String,
    failed: Option<String>,
}

async fn siege_round(
    addr: SocketAddr,
    base: &str,
    connections: u64,
    websockets: u64,
    secs: u64,
    pid: u32,
    before: (usize, u64),
) -> Round {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let tally = Arc::new(Tally::default());
    let mut load = tokio::task::JoinSet::new();
    for i in 0..connections {
        load.spawn(holder(addr, i % 2 == 1, end, tally.clone()));
    }
    for _ in 0..websockets {
        load.spawn(pinger(addr, end, tally.clone()));
    }
    // Let the strangers take what they can, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probes = tokio::spawn(probe_healthz(base.to_owned(), end));
    let (ok, bad) = run_requests(base.to_owned(), end).await;
    let during = usage(pid);
    let mut latencies = probes.await.unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while load.join_next().await.is_some() {}
    })
    .await;
    assert!(drained.is_ok(), "the load did not stop by itself");

    // The server closes what the strangers left (header and hello deadlines: 10 s), and the
    // allocator gives back what they used.
    let settle = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = usage(pid);
        let back = now.0 as f64 <= before.0 as f64 * 1.1 && now.1 as f64 <= before.1 as f64 * 1.1;
        if back || Instant::now() > settle {
            break now;
        }
        // The server goes on serving meanwhile (the allocator returns memory as it works).
        run_requests(base.to_owned(), Instant::now() + Duration::from_millis(500)).await;
    };
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("weft_{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        *latencies.last().unwrap(),
    );
    let report = format!(
        "{connections} holders + {websockets} pingers from {STRANGER} for {secs} s: \
         {} connections made, {} refused at once; server refused {}, timed out {} (totals); \
         requests completed {ok} (failed {bad}); /healthz n={} p50 {p50:?} p99 {p99:?} max {max:?}; \
         fds {} -> {} (during) -> {}; RSS {} KiB -> {} KiB -> {} KiB",
        tally.connections.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        metric("connections_refused_total"),
        metric("connections_timed_out_total"),
        latencies.len(),
        before.0,
        during.0,
        after.0,
        before.1,
        during.1,
        after.1,
    );
    let failed = if !(ok >= 10 && bad == 0) {
        Some("the agent did not complete the requests")
    } else if p99 >= Duration::from_millis(100) {
        Some("/healthz p99 is 100 ms or more")
    } else if metric("connections_refused_total") == 0 || metric("connections_timed_out_total") == 0
    {
        Some("the load never reached the caps or the deadlines")
    } else if after.0 as f64 > before.0 as f64 * 1.1 {
        Some("open files did not come back within 10 %")
    } else if after.1 as f64 > before.1 as f64 * 1.1 {
        Some("memory did not come back within 10 %")
    } else {
        None
    };
    Round {
        after,
        report,
        failed: failed.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_stall_the_server() {
    let connections = env_or("WEFT_SIEGE_CONNECTIONS", 1000);
    let websockets = env_or("WEFT_SIEGE_WEBSOCKETS", 50);
    let secs = env_or("WEFT_SIEGE_SECS", 15);
    let rounds = env_or("WEFT_SIEGE_ROUNDS", 1).max(1);
    let dir = tempfile::tempdir().unwrap();
    let db = crate::faults::ChildDb::new(dir.path()).await;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let base = format!("http://{addr}");
    let weft = env!("CARGO_BIN_EXE_weft");
    let mut server = Command::new("sh")
        .args(["-c", r#"ulimit -n 1024 && exec "$0" "$@""#, weft, "serve"])
        .args(["--listen", &addr.to_string(), "--api-token", TOKEN])
        .args(["--db", &db.url])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = server.id().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let up = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < up, "weft serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("1024")),
        "{limits}"
    );
    let created: serde_json::Value = http
        .post(format!("{base}/v1/devices"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "laptop", "kind": "laptop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut agent = Command::new(weft)
        .args([
            "agent", "--server", &base, "--name", "laptop", "--kind", "laptop",
        ])
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("WEFT_DEVICE_TOKEN", created["token"].as_str().unwrap())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Warm up: the agent connects and runs a few requests.
    let (ok, bad) = run_requests(base.clone(), Instant::now() + Duration::from_secs(2)).await;
    assert!(
        ok >= 1 && bad == 0,
        "warm-up: {ok} succeeded, {bad} did not"
    );
    let before = usage(pid);

    let mut rounds_after = Vec::new();
    let mut reports = Vec::new();
    for round in 1..=rounds {
        let r = siege_round(addr, &base, connections, websockets, secs, pid, before).await;
        reports.push(format!("round {round}: {}", r.report));
        let failed = r.failed.clone();
        rounds_after.push(r.after);
        if let Some(why) = failed {
            stop(&mut agent).await;
            stop(&mut server).await;
            panic!("{why}\n{}", reports.join("\n"));
        }
    }
    let report = reports.join("\n");
    eprintln!("{report}");
    stop(&mut agent).await;
    stop(&mut server).await;

    let last = *rounds_after.last().unwrap();
    if rounds > 1 {
        assert!(
            last.1 as f64 <= rounds_after[0].1 as f64 * 1.03,
            "grew between rounds: {report}"
        );
    }
}
