//! A scripted OpenAI-compatible server for tests: real HTTP on `127.0.0.1:0`, answering every
//! `POST` with the next queued [`Reply`] (or the fallback once the queue is empty) and recording
//! every request it got.
//!
//! Enabled by the crate feature `test-support` (for other crates' tests) and in this crate's own
//! tests.
//!
//! ```no_run
//! # async fn demo() {
//! use weft_planner::llm::testing::{Reply, ScriptedLlm};
//! let llm = ScriptedLlm::start().await;
//! llm.push(Reply::status(429, "slow down").header("retry-after", "0"));
//! llm.push(Reply::json(&serde_json::json!({"tasks": [], "edges": []})));
//! // point a client at llm.base_url() ...
//! assert_eq!(llm.received().len(), 0);
//! llm.stop().await;
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    delay: Duration,
}

#[derive(Debug, Clone)]
enum Body {
    /// A chat completion with this assistant message.
    Completion {
        message: Value,
        prompt_tokens: u64,
        completion_tokens: u64,
        finish_reason: &'static str,
    },
    Raw(String),
}

impl Reply {
    /// A `200` chat completion whose assistant message is `text` (usage: 100 prompt and 20
    /// completion tokens).
    pub fn content(text: impl Into<String>) -> Self {
        Self::message(json!({"role": "assistant", "content": text.into()}))
    }

    /// A `200` chat completion whose text is `value` as JSON.
    pub fn json(value: &Value) -> Self {
        Self::content(value.to_string())
    }

    /// A `200` chat completion that calls tools: `(name, arguments)` pairs, with ids
    /// `call_1`, `call_2`, ….
    pub fn tool_calls(calls: &[(&str, Value)]) -> Self {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"id": format!("call_{}", i + 1), "type": "function",
                       "function": {"name": name, "arguments": args.to_string()}})
            })
            .collect();
        Self::message(json!({"role": "assistant", "content": null, "tool_calls": calls}))
    }

    fn message(message: Value) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Body::Completion {
                message,
                prompt_tokens: 100,
                completion_tokens: 20,
                finish_reason: "stop",
            },
            delay: Duration::ZERO,
        }
    }

    /// An error answer in OpenAI's shape: `{"error": {"message": ..., "type": ...}}`.
    pub fn status(status: u16, message: &str) -> Self {
        Self::raw(
            status,
            json!({"error": {"message": message, "type": "scripted"}}).to_string(),
        )
    }

    /// Any status and body.
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Raw(body.into()),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the token counts of a completion.
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        if let Body::Completion {
            prompt_tokens,
            completion_tokens,
            ..
        } = &mut self.body
        {
            *prompt_tokens = prompt;
            *completion_tokens = completion;
        }
        self
    }

    /// Sets a completion's `finish_reason` (`"stop"` unless set; `"length"`: cut off at
    /// `max_tokens`).
    pub fn finish(mut self, reason: &'static str) -> Self {
        if let Body::Completion { finish_reason, .. } = &mut self.body {
            *finish_reason = reason;
        }
        self
    }

    /// Answers only after `d`.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    fn body_text(&self) -> String {
        match &self.body {
            Body::Raw(s) => s.clone(),
            Body::Completion {
                message,
                prompt_tokens,
                completion_tokens,
                finish_reason,
            } => json!({
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 0,
                "model": "scripted",
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            })
            .to_string(),
        }
    }
}

/// A request the server got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The body (a JSON string holding the raw text if it was not JSON).
    pub body: Value,
}

impl Received {
    /// Every message's content, joined: handy for "the prompt mentions X".
    pub fn prompt(&self) -> String {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The content of the last message.
    pub fn last_message(&self) -> String {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Debug, Default)]
struct Script {
    queue: VecDeque<Reply>,
    fallback: Option<Reply>,
    received: Vec<Received>,
}

/// The scripted server. Stops when [`ScriptedLlm::stop`] is awaited or it is dropped.
#[derive(Debug)]
pub struct ScriptedLlm {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl ScriptedLlm {
    /// Binds `127.0.0.1:0` and starts answering.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(answer).with_state(script.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            script,
            stop: Some(stop),
            join: Some(join),
        }
    }

    /// The base URL to configure: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply.
    pub fn push(&self, reply: Reply) {
        self.lock().queue.push_back(reply);
    }

    /// The reply once the queue is empty. Without one, the server answers `410` with
    /// "the scripted LLM server has no reply queued".
    pub fn set_fallback(&self, reply: Reply) {
        self.lock().fallback = Some(reply);
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Replies still queued.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Stops listening and closes every connection.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let reply = {
        let mut s = script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.received.push(Received {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        });
        s.queue.pop_front().or_else(|| s.fallback.clone())
    };
    let reply =
        reply.unwrap_or_else(|| Reply::status(410, "the scripted LLM server has no reply queued"));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut out = HeaderMap::new();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in &reply.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            out.insert(k, v);
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, out, reply.body_text()).into_response()
}
