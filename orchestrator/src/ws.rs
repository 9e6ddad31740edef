//! The agent WebSocket endpoint (`/v1/agent`).
//!
//! A connection task decodes frames and forwards typed messages to the engine; it makes no
//! scheduling decision. It is split into a reader (this function's loop) and a writer task that
//! stop each other. The first frame must be a `hello`; the engine authenticates it and binds the
//! connection to that device for its lifetime.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_protocol::{AgentMsg, ErrorInfo, MAX_FRAME_BYTES, ServerMsg};

use crate::engine::{Handle, Hello, OUTBOUND_CAPACITY};
use crate::listen::{AuthLimiter, Peer};
use crate::metrics::Metrics;

/// Frames above this size are cut off by the WebSocket layer itself; frames between
/// [`MAX_FRAME_BYTES`] and this get a clean `frame_too_large` error first.
pub const HARD_FRAME_LIMIT: usize = 4 * MAX_FRAME_BYTES;

#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub hello_timeout: Duration,
    pub heartbeat_interval: Duration,
}

enum Ctrl {
    Frame(Box<ServerMsg>),
    Close(&'static str),
}

fn decode(msg: &Message) -> Result<Option<AgentMsg>, ErrorInfo> {
    match msg {
        Message::Text(t) => {
            if t.len() > MAX_FRAME_BYTES {
                return Err(ErrorInfo::new(
                    "frame_too_large",
                    format!(
                        "frames are limited to {MAX_FRAME_BYTES} bytes, got {}",
                        t.len()
                    ),
                ));
            }
            serde_json::from_str(t.as_str()).map(Some).map_err(|e| {
                ErrorInfo::new("bad_frame", format!("not a valid protocol message: {e}"))
            })
        }
        Message::Binary(_) => Err(ErrorInfo::new(
            "bad_frame",
            "binary frames are not part of the protocol; send JSON text frames",
        )),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Ok(None),
    }
}

fn text(msg: &ServerMsg) -> Message {
    // Serializing our own enum cannot fail.
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(msg).unwrap_or_default(),
    ))
}

/// Sends `msg` and a close frame; a peer that does not read gets 2 s for both.
async fn close_with(socket: &mut WebSocket, msg: ServerMsg, reason: &'static str) {
    let send = async {
        socket.send(text(&msg)).await?;
        socket
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), send).await;
}

/// Serves one agent connection until it closes. `peer` is the connection's address and place
/// in the connection caps (absent only when the router is driven without the listener);
/// failed hellos count against its address in `auth`.
pub async fn serve(
    mut socket: WebSocket,
    engine: Handle,
    settings: ConnSettings,
    peer: Option<Peer>,
    auth: Arc<AuthLimiter>,
) {
    // 1. The hello, within `hello_timeout` of the upgrade however many other frames come.
    let deadline = tokio::time::Instant::now() + settings.hello_timeout;
    let hello = loop {
        let next = tokio::time::timeout_at(deadline, socket.recv()).await;
        let msg = match next {
            Err(_) => {
                Metrics::inc(&engine.metrics.connections_timed_out_total);
                let e = ErrorInfo::new("hello_timeout", "no hello within the time allowed");
                close_with(&mut socket, ServerMsg::Error { error: e }, "hello timeout").await;
                return;
            }
            Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(m))) => m,
        };
        match decode(&msg) {
            Ok(None) => {
                if matches!(msg, Message::Close(_)) {
                    return;
                }
            }
            Ok(Some(AgentMsg::Hello {
                protocol_version,
                device,
                token,
                kind,
                platform,
                capabilities,
                max_concurrency,
                held_attempts,
                os_version,
                tools,
            })) => {
                break Hello {
                    protocol_version,
                    device,
                    token,
                    kind,
                    platform,
                    capabilities,
                    max_concurrency,
                    held_attempts,
                    os_version,
                    tools,
                };
            }
            Ok(Some(_)) => {
                let e = ErrorInfo::new("expected_hello", "the first frame must be a hello");
                close_with(&mut socket, ServerMsg::Error { error: e }, "expected hello").await;
                return;
            }
            Err(e) => {
                Metrics::inc(&engine.metrics.bad_frames_total);
                close_with(&mut socket, ServerMsg::Error { error: e }, "bad frame").await;
                return;
            }
        }
    };

    // 2. Authentication and binding.
    let ip = peer.as_ref().map(|p| p.addr.ip());
    if let Some(ip) = ip
        && let Err(wait) = auth.check(ip)
    {
        let secs = crate::listen::limits::retry_after_secs(wait);
        let e = ErrorInfo::new(
            "rate_limited",
            format!("too many failed authentications from this address; try again in {secs} s"),
        );
        close_with(&mut socket, ServerMsg::Refused { error: e }, "rate limited").await;
        return;
    }
    let device = hello.device.clone();
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let seen: crate::engine::LastSeen = Arc::new(AtomicU64::new(engine.clock().now_ms()));
    let (conn, welcome) = match engine.connect(hello, out_tx, seen.clone()).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(error)) => {
            tracing::info!(device = %device, code = %error.code, "agent refused");
            if error.code == "bad_token"
                && let Some(ip) = ip
            {
                auth.failed(ip);
            }
            close_with(&mut socket, ServerMsg::Refused { error }, "refused").await;
            return;
        }
        Err(_) => {
            let e = ErrorInfo::new("shutting_down", "the orchestrator is shutting down");
            close_with(
                &mut socket,
                ServerMsg::Refused { error: e },
                "shutting down",
            )
            .await;
            return;
        }
    };
    if socket.send(text(&welcome)).await.is_err() {
        engine.disconnected(device, conn, false).await;
        return;
    }
    // An established agent: it no longer counts against its address, and it may use the
    // share of connections kept for agents.
    if let Some(p) = &peer {
        p.slot.promote();
    }

    // 3. Reader and writer.
    let (sink, mut stream) = socket.split();
    let stop = CancellationToken::new();
    let (ctrl_tx, ctrl_rx) = mpsc::channel(8);
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        ctrl_rx,
        settings.heartbeat_interval,
        stop.clone(),
    ));
    // A device silent for 2 intervals has missed a whole heartbeat: it is gone, and its work
    // is placed elsewhere at once (it may still come back; its attempts are not its any more).
    let silence = settings.heartbeat_interval * 2;
    let mut graceful = false;
    let mut silent = false;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            n = tokio::time::timeout(silence, stream.next()) => n,
        };
        let msg = match next {
            Err(_) => {
                tracing::warn!(device = %device, "no frame for 2 heartbeat intervals; closing");
                let e = ErrorInfo::new("heartbeat_timeout", "no heartbeat received in time");
                error_then_close(&ctrl_tx, e, "heartbeat timeout").await;
                graceful = true;
                silent = true;
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        seen.store(engine.clock().now_ms(), Ordering::Relaxed);
        match decode(&msg).and_then(not_hello) {
            // A heartbeat only says the device is there: noted above, not sent to the engine.
            Ok(Some(AgentMsg::Heartbeat {})) => {}
            Ok(Some(m)) => {
                if engine.agent_msg(device.clone(), conn, m).await.is_err() {
                    break;
                }
            }
            Ok(None) => {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
            Err(e) => {
                Metrics::inc(&engine.metrics.bad_frames_total);
                tracing::warn!(device = %device, code = %e.code, "bad frame from agent; closing");
                error_then_close(&ctrl_tx, e, "bad frame").await;
                graceful = true;
                break;
            }
        }
    }
    if graceful {
        // Let the writer flush the error and the close frame before the engine drops this
        // connection's queue (which would end the writer at once).
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        engine.disconnected(device, conn, silent).await;
    } else {
        engine.disconnected(device, conn, false).await;
        stop.cancel();
        let _ = writer.await;
    }
}

/// After the welcome a hello is a bad frame (the connection is bound to its device already).
fn not_hello(msg: Option<AgentMsg>) -> Result<Option<AgentMsg>, ErrorInfo> {
    match msg {
        Some(AgentMsg::Hello { .. }) => Err(ErrorInfo::new(
            "bad_frame",
            "hello is only valid as the first frame",
        )),
        other => Ok(other),
    }
}

/// Has the writer send `error`, then close the connection.
async fn error_then_close(ctrl: &mpsc::Sender<Ctrl>, error: ErrorInfo, reason: &'static str) {
    let _ = ctrl
        .send(Ctrl::Frame(Box::new(ServerMsg::Error { error })))
        .await;
    let _ = ctrl.send(Ctrl::Close(reason)).await;
}

/// Most queued frames written to the socket at once.
const MAX_FRAMES_PER_WRITE: usize = 64;

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<ServerMsg>,
    mut ctrl: mpsc::Receiver<Ctrl>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut close_reason = "closing";
    // A peer that stops reading would block a write forever; it gets as long as it may stay
    // silent.
    let patience = heartbeat * 2;
    loop {
        let frames = tokio::select! {
            // Control frames (an error, then close) go before anything else queued.
            biased;
            _ = stop.cancelled() => break,
            c = ctrl.recv() => match c {
                Some(Ctrl::Frame(m)) => vec![*m],
                Some(Ctrl::Close(reason)) => {
                    close_reason = reason;
                    break;
                }
                None => break,
            },
            m = out.recv() => match m {
                Some(m) => {
                    // Whatever else is queued goes out in the same write.
                    let mut frames = vec![m];
                    while frames.len() < MAX_FRAMES_PER_WRITE {
                        let Ok(m) = out.try_recv() else { break };
                        frames.push(m);
                    }
                    frames
                }
                // The engine dropped this connection (shutdown, replaced, or too slow).
                None => break,
            },
            _ = tick.tick() => vec![ServerMsg::Heartbeat {}],
        };
        let write = async {
            for m in &frames {
                sink.feed(text(m)).await?;
            }
            sink.flush().await
        };
        if !matches!(tokio::time::timeout(patience, write).await, Ok(Ok(()))) {
            break;
        }
        // The device was removed or its token rotated: nothing follows the refusal.
        if frames
            .iter()
            .any(|m| matches!(m, ServerMsg::Refused { .. }))
        {
            close_reason = "refused";
            break;
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(CloseFrame {
            // 1000: normal closure; 1008: policy violation (bad frame, silence, refused).
            code: if close_reason == "closing" {
                1000
            } else {
                1008
            },
            reason: Utf8Bytes::from_static(close_reason),
        }))),
    )
    .await;
    stop.cancel();
}
