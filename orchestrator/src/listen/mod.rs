//! The one listener. It accepts TCP connections within the connection caps (refusing the rest
//! at once) and serves HTTP/1.1 on each — REST, SSE, the web view and the agent WebSocket
//! upgrade — with a deadline for every request's headers, so a connection that sends nothing,
//! or a byte now and then, is closed instead of held.
//!
//! Each request carries the connection's [`Peer`] (its address and its place in the caps) as an
//! extension: the auth checks limit failures by address, and the agent endpoint moves a
//! welcomed agent's connection to the agents' share.
//!
//! An answer sent before its request's body was read to the end says `Connection: close`
//! ([`unread`]), so that no client sends another request on a connection the server closes.

pub mod limits;
pub mod tls;
pub mod unread;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use limits::{AuthLimit, AuthLimiter, ConnCaps, ConnLimiter, Slot};

use crate::metrics::Metrics;

/// Who is on the other end of the connection a request came over.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The connection's place in the caps; kept alive by whoever serves the connection.
    pub slot: Arc<Slot>,
}

/// What the listener needs besides the router.
#[derive(Debug, Clone)]
pub struct Listen {
    pub conns: Arc<ConnLimiter>,
    /// How long a client has to send a request's headers (from the connection's start, or from
    /// the end of the previous response on a kept-alive connection).
    pub header_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// TLS on every connection (REST, SSE, the web view and the agent WebSocket alike).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `app` on `listener` until `stop` is cancelled, then asks every connection to finish
/// its request in progress and returns once all have closed. Upgraded connections (agent
/// WebSockets) are not waited for: the engine closes them.
pub async fn serve(listener: TcpListener, app: Router, listen: Listen, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (or another transient failure): the caps keep the
                // server below its limit, but other processes' files may not. Try again soon
                // rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match listen.conns.admit(addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(%addr, ?why, "connection refused");
                drop(tcp);
                continue;
            }
        };
        let peer = Peer { addr, slot };
        tracker.spawn(connection(
            tcp,
            peer,
            app.clone(),
            listen.clone(),
            stop.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    tcp: TcpStream,
    peer: Peer,
    app: Router,
    listen: Listen,
    stop: CancellationToken,
) {
    // The first request's headers (and, under TLS, the handshake before them) are due by this.
    let deadline = Instant::now() + listen.header_timeout;
    // Small frames (assign, ack) must not wait behind Nagle + delayed ACK (~40 ms each).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    // A connection that sends nothing costs no buffers: HTTP starts with its first byte.
    if tokio::time::timeout_at(deadline, tcp.readable())
        .await
        .is_err()
    {
        Metrics::inc(&listen.metrics.connections_timed_out_total);
        tracing::debug!(addr = %peer.addr, "nothing sent in time; connection closed");
        return;
    }
    let Some(acceptor) = listen.tls.clone().map(tokio_rustls::TlsAcceptor::from) else {
        serve_http(tcp, peer, app, listen, deadline, stop).await;
        return;
    };
    // A TLS connection starts with a handshake record (22). Anything else is a plain-text
    // client, told in plain text what to use instead (it sent no secret: a token would come
    // only after the headers, or in the agent's hello).
    let mut first = [0u8; 1];
    if !matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == 22) {
        refuse_plain_text(tcp).await;
        return;
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => serve_http(tls, peer, app, listen, deadline, stop).await,
        Ok(Err(e)) => tracing::debug!(addr = %peer.addr, error = %e, "TLS handshake failed"),
        Err(_) => {
            Metrics::inc(&listen.metrics.connections_timed_out_total);
            tracing::debug!(addr = %peer.addr, "no TLS handshake in time; connection closed");
        }
    }
}

/// The answer to a plain-text request on the TLS listener.
async fn refuse_plain_text(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = "this weft server speaks TLS only: use https:// (wss:// for agents) \
                        instead of http://\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         x-content-type-options: nosniff\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // Read what was sent, so that closing does not reset the connection before the answer.
    let mut buf = [0u8; 4096];
    let _ = tcp.try_read(&mut buf);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Serves HTTP/1.1 (with upgrades) on one connection. The first request's headers must be in
/// by `deadline`; each later one's within the header timeout of the previous answer.
async fn serve_http<I>(
    io: I,
    peer: Peer,
    app: Router,
    listen: Listen,
    deadline: Instant,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let first_request = Arc::new(Notify::new());
    let started = first_request.clone();
    let service = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
        started.notify_one();
        req.extensions_mut().insert(peer.clone());
        let (req, body_read) = unread::track(req.map(Body::new));
        let answer = app.clone().oneshot(req);
        async move { answer.await.map(|resp| body_read.close_if_unread(resp)) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(listen.header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = first_request.notified() => tokio::select! {
            r = conn.as_mut() => r,
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        },
        () = tokio::time::sleep_until(deadline) => {
            Metrics::inc(&listen.metrics.connections_timed_out_total);
            tracing::debug!(%addr, "no request headers in time; connection closed");
            return;
        }
        _ = stop.cancelled() => return,
    };
    if let Err(e) = result {
        if e.is_timeout() {
            Metrics::inc(&listen.metrics.connections_timed_out_total);
            tracing::debug!(%addr, "no request headers in time; connection closed");
        } else {
            tracing::debug!(%addr, error = %e, "connection ended with an error");
        }
    }
}
