//! A raw protocol client: a test speaks the agent side of the WebSocket protocol frame by frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use weft_protocol::{AgentMsg, PROTOCOL_VERSION, ServerMsg};

use crate::harness::Harness;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn open(h: &Harness) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(h.ws_url()).await.unwrap();
    ws
}

pub fn hello(name: &str, token: &str) -> AgentMsg {
    AgentMsg::Hello {
        protocol_version: PROTOCOL_VERSION,
        device: name.into(),
        token: token.into(),
        kind: "laptop".into(),
        platform: "test".into(),
        capabilities: vec!["shell".into(), "fs".into(), "http".into()],
        max_concurrency: 2,
        held_attempts: vec![],
        os_version: None,
        tools: vec![],
    }
}

pub async fn send(ws: &mut Ws, msg: &AgentMsg) {
    ws.send(Message::Text(serde_json::to_string(msg).unwrap().into()))
        .await
        .unwrap();
}

/// The next protocol message, skipping heartbeats. `None` when the server closed.
pub async fn recv(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame from the server in time");
        match next {
            Some(Ok(Message::Text(t))) => {
                let m: ServerMsg = serde_json::from_str(t.as_str()).unwrap();
                if m != (ServerMsg::Heartbeat {}) {
                    return Some(m);
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

pub async fn connect_as(h: &Harness, name: &str, token: &str) -> Ws {
    let mut ws = open(h).await;
    send(&mut ws, &hello(name, token)).await;
    match recv(&mut ws).await {
        Some(ServerMsg::Welcome { device, .. }) => assert_eq!(device.as_str(), name),
        other => panic!("expected welcome, got {other:?}"),
    }
    ws
}
