//! A server no stranger can stall: deadlines for request headers and the agent hello, caps on
//! open connections, failed authentications limited per address, and the checks on bodies and
//! answers. Strangers connect from other loopback addresses (127.0.0.2, …) than the tests' own
//! clients (127.0.0.1), as they would from another host.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use weft_orchestrator::listen::AuthLimit;
use weft_protocol::{RequestStatus, ServerMsg};

use crate::harness::Harness;
use crate::raw::{connect_as, hello, open, recv, send};

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    sock.connect(to).await.unwrap()
}

/// How long until the server closes `tcp` (reads until EOF or an error), at most `limit`.
async fn closed_after(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let end = tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the server kept the connection open for {limit:?}"
    );
    start.elapsed()
}

/// Whether a fresh connection from `from` is closed by the server at once (refused).
async fn refused_at_once(from: &str, to: SocketAddr) -> bool {
    let mut tcp = connect_from(from, to).await;
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("weft_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

async fn metrics(h: &Harness) -> String {
    h.http
        .get(format!("{}/metrics", h.base))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_headers_in_time_are_closed() {
    let h = Harness::start_with(|o| o.header_timeout = Duration::from_secs(1)).await;
    // Sends nothing.
    let mut idle = connect_from("127.0.0.2", h.addr).await;
    // Sends a byte of a request now and then, never the whole header.
    let mut slow = connect_from("127.0.0.2", h.addr).await;
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x" {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_after(&mut slow, Duration::from_secs(5)).await
    });
    // Makes one request, then keeps the connection without another.
    let mut kept = connect_from("127.0.0.2", h.addr).await;
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", h.addr).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let idle_for = closed_after(&mut idle, Duration::from_secs(5)).await;
    let kept_for = closed_after(&mut kept, Duration::from_secs(5)).await;
    let slow_for = tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap()
        .unwrap();
    for (what, t) in [("idle", idle_for), ("kept-alive", kept_for)] {
        assert!(t < Duration::from_secs(3), "{what} closed after {t:?}");
    }
    // The trickle started 1 s ago at most when the other two were closed; it must not outlive
    // its own deadline by more than the checks' slack.
    assert!(
        slow_for < Duration::from_secs(3),
        "trickle closed after {slow_for:?}"
    );
    let m = metrics(&h).await;
    assert!(metric(&m, "connections_timed_out_total") >= 3, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_do_not_restart_the_hello_deadline() {
    let h = Harness::start_with(|o| o.hello_timeout = Duration::from_secs(1)).await;
    let mut ws = open(&h).await;
    let start = Instant::now();
    let mut closed = None;
    let mut error = None;
    while closed.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still open after 5 s"
        );
        ws.send(Message::Ping(vec![1].into())).await.ok();
        match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(ServerMsg::Error { error: e }) = serde_json::from_str(t.as_str()) {
                    error = Some(e.code);
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                closed = Some(start.elapsed());
            }
            Ok(Some(Ok(_))) | Err(_) => {}
        }
    }
    assert_eq!(error.as_deref(), Some("hello_timeout"));
    let t = closed.unwrap();
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_millis(2000),
        "closed after {t:?} of pings every 100 ms; the deadline is 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_closes_the_connection() {
    let h = Harness::start().await;
    let token = h.add_device("laptop", "laptop").await;
    let mut ws = connect_as(&h, "laptop", &token).await;
    send(&mut ws, &hello("laptop", &token)).await;
    match recv(&mut ws).await {
        Some(ServerMsg::Error { error }) => assert_eq!(error.code, "bad_frame"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(recv(&mut ws).await, None, "the connection should be closed");
    h.wait_offline("laptop").await;
}

/// One HTTP/1.1 connection kept open by hand. While the caps are full the test's client must
/// not need a new connection, which a pooled client may open at any request (hyper races a new
/// connection against the idle one's return to the pool; the new one is then refused).
struct KeptAlive {
    tcp: TcpStream,
    host: SocketAddr,
    token: String,
}

impl KeptAlive {
    async fn open(h: &Harness) -> KeptAlive {
        KeptAlive {
            tcp: connect_from("127.0.0.1", h.addr).await,
            host: h.addr,
            token: h.token.clone(),
        }
    }

    /// Sends one request and reads its answer (headers, then `content-length` bytes of body).
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, String) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            self.token,
            body.len()
        );
        let exchange = async {
            self.tcp.write_all(head.as_bytes()).await.unwrap();
            self.tcp.write_all(body.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = self.tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the server closed the kept-alive connection");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no content-length in:\n{head}"));
            while buf.len() < end + len {
                let n = self.tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the server closed the kept-alive connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            (
                status,
                String::from_utf8_lossy(&buf[end..end + len]).to_string(),
            )
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("no answer in 10 s")
    }

    async fn metrics(&mut self) -> String {
        let (status, text) = self.call("GET", "/metrics", None).await;
        assert_eq!(status, 200, "{text}");
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_caps_new_connections_are_refused_and_established_ones_keep_working() {
    let mut h = Harness::start_with(|o| {
        // 16 in all, 4 of them kept for agents; 8 per address.
        o.max_connections = Some(16);
        o.max_connections_per_address = Some(8);
    })
    .await;
    let token = h.add_device("laptop", "laptop").await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;
    // The test's client is one connection of its own from now on: the pooled client's are
    // closed (a new client, the old one's pool dropped) until the server counts only this one
    // besides the agent's, which counts as an agent's once its welcome is sent.
    h.http = reqwest::Client::new();
    let mut client = KeptAlive::open(&h).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = client.metrics().await;
        if metric(&m, "agent_connections_open") == 1 && metric(&m, "connections_open") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not one client and one agent connection:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One address may hold 8.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from("127.0.0.2", h.addr).await);
    }
    assert!(
        refused_at_once("127.0.0.2", h.addr).await,
        "a 9th from one address"
    );
    // Others fill what is left besides the agents' reserve: 16 - 4 - 8 - 1 (the client).
    for _ in 0..3 {
        held.push(connect_from("127.0.0.3", h.addr).await);
    }
    assert!(refused_at_once("127.0.0.4", h.addr).await, "beyond the cap");

    // The established connections keep working: the agent runs a request submitted over the
    // client's kept-alive connection.
    let (status, body) = client
        .call(
            "POST",
            "/v1/requests",
            Some(&json!({"text": r#"on laptop run "echo under siege""#})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let (code, body) = client
            .call("GET", &format!("/v1/requests/{id}"), None)
            .await;
        assert_eq!(code, 200, "{body}");
        let v: weft_protocol::rest::RequestView = serde_json::from_str(&body).unwrap();
        if v.status.is_terminal() {
            break v.status;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} still {:?}",
            v.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, RequestStatus::Succeeded);
    let m = client.metrics().await;
    assert!(metric(&m, "connections_refused_total") >= 2, "{m}");

    // Once the strangers leave, new connections are taken again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused_at_once("127.0.0.4", h.addr).await {
        assert!(
            Instant::now() < deadline,
            "still refused after the others left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

/// Checks a `429 rate_limited` answer; returns its `Retry-After` in seconds.
async fn rate_limited(resp: reqwest::Response) -> u64 {
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    retry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_address_with_backoff() {
    let h = Harness::start_with(|o| {
        o.auth_limit = AuthLimit {
            free_failures: 3,
            first_wait: Duration::from_secs(2),
            ..AuthLimit::default()
        }
    })
    .await;
    let device_token = h.add_device("laptop", "laptop").await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
            .local_address(ip.parse::<IpAddr>().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let stranger = from("127.0.0.2");
    let get = |c: &reqwest::Client, token: &str| {
        c.get(format!("{}/v1/devices", h.base))
            .bearer_auth(token)
            .send()
    };
    // A wrong API token, a wrong device token, a wrong login link: three free failures.
    assert_eq!(
        get(&stranger, "wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let resp = stranger
        .get(format!("{}/login?token=bad", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (addr, ws_url) = (h.addr, h.ws_url());
    let ws_from = |ip: &'static str| {
        let ws_url = ws_url.clone();
        async move {
            let tcp = connect_from(ip, addr).await;
            let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
            let (ws, _) = tokio_tungstenite::client_async(ws_url, tcp).await.unwrap();
            ws
        }
    };
    let mut ws = ws_from("127.0.0.2").await;
    send(&mut ws, &hello("laptop", "wrong")).await;
    match recv(&mut ws).await {
        Some(ServerMsg::Refused { error }) => assert_eq!(error.code, "bad_token"),
        other => panic!("expected refused, got {other:?}"),
    }
    // The fourth failure makes the address wait 2 s...
    assert_eq!(
        get(&stranger, "wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // ...during which even the right token is refused, on every way in.
    let retry = rate_limited(get(&stranger, &h.token).await.unwrap()).await;
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let mut ws = ws_from("127.0.0.2").await;
    send(&mut ws, &hello("laptop", &device_token)).await;
    match recv(&mut ws).await {
        Some(ServerMsg::Refused { error }) => assert_eq!(error.code, "rate_limited"),
        other => panic!("expected refused rate_limited, got {other:?}"),
    }
    let resp = stranger
        .get(format!("{}/login?token=bad", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other addresses are not affected.
    let resp = get(&from("127.0.0.3"), &h.token).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut ws = ws_from("127.0.0.3").await;
    send(&mut ws, &hello("laptop", &device_token)).await;
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerMsg::Welcome { .. })
    ));
    drop(ws);

    let m = metrics(&h).await;
    assert_eq!(metric(&m, "auth_failures_total"), 4, "{m}");
    assert_eq!(metric(&m, "auth_rate_limited_total"), 3, "{m}");

    // After the wait, the right token works again; the next failure waits twice as long.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        get(&stranger, &h.token).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&stranger, "wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let retry = rate_limited(get(&stranger, &h.token).await.unwrap()).await;
    assert!((3..=4).contains(&retry), "Retry-After: {retry}");
}

#[tokio::test]
async fn json_bodies_need_their_content_type_and_every_answer_says_nosniff() {
    let h = Harness::start().await;
    let post = |ct: Option<&'static str>| {
        let mut r = h
            .http
            .post(format!("{}/v1/devices", h.base))
            .bearer_auth(&h.token)
            .body(json!({"name": "x", "kind": "laptop"}).to_string());
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let resp = post(ct).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    assert!(h.devices().await.is_empty());
    let resp = post(Some("Application/JSON; charset=utf-8")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let bare = reqwest::Client::new();
    let answers = [
        bare.get(format!("{}/healthz", h.base))
            .send()
            .await
            .unwrap(),
        bare.get(format!("{}/v1/devices", h.base))
            .send()
            .await
            .unwrap(),
        h.http
            .get(format!("{}/v1/devices", h.base))
            .bearer_auth(&h.token)
            .send()
            .await
            .unwrap(),
        bare.get(format!("{}/nowhere", h.base))
            .send()
            .await
            .unwrap(),
        bare.get(format!("{}/healthz", h.base))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap(),
        bare.get(format!("{}/", h.base)).send().await.unwrap(),
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 401, 200, 404, 421, 401]);
    for r in &answers {
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{} {}",
            r.url(),
            r.status()
        );
    }
}
