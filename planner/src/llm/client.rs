//! A client for the OpenAI-compatible chat-completions API (`POST {base}/chat/completions`).
//!
//! Vendor-neutral: it speaks only that one endpoint, which OpenAI, Azure OpenAI, Ollama, vLLM
//! and llama.cpp all serve. It knows nothing of weft's graphs, so the device agent's LLM
//! executor can use it as it is (tool definitions and tool calls are supported).
//!
//! What it does for every call:
//! - one HTTP exchange is bounded by [`ClientConfig::timeout`];
//! - connection failures, `429` and `5xx` answers are tried again, up to
//!   [`ClientConfig::max_retries`] times, after a jittered exponential backoff or the server's
//!   `Retry-After` (seconds, capped by [`ClientConfig::max_retry_after`]);
//! - a JSON Schema for the answer goes out as `response_format: json_schema` or, when the server
//!   does not support that (a `400` naming `response_format`, remembered for later calls), as
//!   plain instructions in the system prompt ([`ResponseFormat`]);
//! - every failure is an [`Error`] with a stable [`Error::code`].
//!
//! The API key goes only into the `Authorization` header: it is never logged, never part of a
//! [`Completion`] or an [`Error`], and [`Secret`]'s `Debug` prints `[redacted]`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cassette::{Cassette, CassetteMode, Recorded};

/// A secret string (an API key). `Debug` never shows it; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How a JSON Schema for the answer is conveyed to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// `response_format: json_schema` first; after a `400` that names `response_format` (or
    /// `json_schema`), plain instructions for this call and every later one.
    #[default]
    Auto,
    /// Always `response_format: json_schema`, never a fallback.
    JsonSchema,
    /// Never `response_format`: the schema goes into the system prompt as instructions.
    Prompt,
}

impl ResponseFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "json_schema" => Some(Self::JsonSchema),
            "prompt" => Some(Self::Prompt),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::JsonSchema => "json_schema",
            Self::Prompt => "prompt",
        }
    }
}

/// Where the endpoint is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`; requests
    /// go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when present.
    pub api_key: Option<Secret>,
    /// The `model` field of every request.
    pub model: String,
    /// Longest one HTTP exchange may take (sending, waiting, reading the answer).
    pub timeout: Duration,
    /// Longest the TCP (and TLS) connection may take to open.
    pub connect_timeout: Duration,
    /// Further tries after a connection failure, a `429` or a `5xx`.
    pub max_retries: u32,
    /// Delay before the first retry; doubles for each further one, ±20 % jitter.
    pub initial_backoff: Duration,
    /// Longest delay between tries (without `Retry-After`).
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
    pub response_format: ResponseFormat,
    /// Record exchanges to a file, or answer from one without any network.
    pub cassette: CassetteMode,
}

impl ClientConfig {
    /// Defaults: 120 s per exchange (local models are slow), 10 s to connect, 3 retries from
    /// 500 ms up to 8 s, `Retry-After` up to 60 s, [`ResponseFormat::Auto`], no cassette.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            response_format: ResponseFormat::Auto,
            cassette: CassetteMode::Off,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One chat message, as the API writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text; absent on an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tools the assistant asks to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(Role::Assistant, content)
    }

    /// The result of the tool call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::text(Role::Tool, content)
        }
    }
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function a [`ToolCall`] names, with its arguments as a JSON text (as the API sends it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// A JSON Schema the answer must follow.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchema {
    /// `^[a-zA-Z0-9_-]{1,64}$`, e.g. `weft_plan`.
    pub name: String,
    pub schema: Value,
    /// Ask the server to enforce the schema exactly (OpenAI's `strict`; the schema must then
    /// list every property as required and forbid others).
    pub strict: bool,
}

/// What to ask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// The answer's shape, when it must be JSON.
    pub json_schema: Option<JsonSchema>,
    /// OpenAI tool definitions (`{"type": "function", "function": {...}}`).
    pub tools: Vec<Value>,
    /// The most tokens the answer may have (`max_tokens`); an answer cut there comes back with
    /// `finish_reason: "length"` ([`Completion::cut_off`]). `None`: the server's default, which
    /// for a local server can be "until the context is full".
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None`: the server's default.
    pub temperature: Option<f32>,
}

/// Tokens counted by the server (`usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The assistant's message (text and/or tool calls).
    pub message: Message,
    pub finish_reason: Option<String>,
    /// `None` when the server did not count tokens.
    pub usage: Option<Usage>,
    /// The exact body sent (no headers, so no API key).
    pub request: Value,
    /// The body received, parsed.
    pub response: Value,
    /// From the first try to the answer, retries and fallbacks included.
    pub latency: Duration,
    /// HTTP exchanges made (1 without retries).
    pub tries: u32,
    /// Whether the schema went out as `response_format` (else as instructions, or none).
    pub used_response_format: bool,
    /// Answered from a cassette, not the network.
    pub replayed: bool,
}

impl Completion {
    /// The assistant's text, or `""` when it only called tools.
    pub fn text(&self) -> &str {
        self.message.content.as_deref().unwrap_or("")
    }

    /// Whether the answer stopped at the token limit instead of ending by itself.
    pub fn cut_off(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
    }
}

/// Why a call failed. [`Error::code`] is stable; the `Display` text never holds the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No connection could be made (refused, DNS, TLS), after every retry.
    #[error("cannot reach the LLM endpoint {url} ({tries} tries): {reason}")]
    Unreachable {
        url: String,
        tries: u32,
        reason: String,
    },
    /// No (complete) answer within [`ClientConfig::timeout`].
    #[error("the LLM endpoint {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    /// The server answered with an error status (after every retry for `429` and `5xx`).
    #[error("the LLM endpoint {url} answered HTTP {status} ({tries} tries): {message}")]
    Http {
        url: String,
        status: u16,
        tries: u32,
        message: String,
    },
    /// A `2xx` answer that is not a usable chat completion.
    #[error("the LLM endpoint {url} answered something that is not a chat completion: {reason}")]
    BadResponse { url: String, reason: String },
    /// Replay mode, and the cassette has no answer for this request.
    #[error(
        "the LLM cassette {path} has no recorded answer for this request (key {key}); \
         record it again with --llm-record"
    )]
    CassetteMiss { path: String, key: String },
    /// The cassette file cannot be read or written.
    #[error("LLM cassette {path}: {reason}")]
    Cassette { path: String, reason: String },
    /// The configuration cannot work (no model, a base URL that is not http(s)).
    #[error("LLM configuration: {0}")]
    Config(String),
}

impl Error {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unreachable { .. } => "llm_unreachable",
            Error::Timeout { .. } => "llm_timeout",
            Error::Http { .. } => "llm_http_error",
            Error::BadResponse { .. } => "llm_bad_response",
            Error::CassetteMiss { .. } => "llm_cassette_miss",
            Error::Cassette { .. } => "llm_cassette_error",
            Error::Config(_) => "llm_config",
        }
    }
}

/// An answer before it is read: status and body.
#[derive(Debug, Clone)]
struct Raw {
    status: u16,
    body: String,
    tries: u32,
}

/// The chat-completions client. Cheap to share (`Arc`); one per endpoint.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    endpoint: String,
    /// `endpoint` without any user:password, for messages.
    shown: String,
    /// The server refused `response_format` once (auto mode): use instructions from now on.
    no_response_format: AtomicBool,
    cassette: Option<Cassette>,
}

impl Client {
    /// Checks the configuration and, in replay mode, loads the cassette.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.model.trim().is_empty() {
            return Err(Error::Config("no model is set".into()));
        }
        let replay = matches!(config.cassette, CassetteMode::Replay(_));
        let base = config.base_url.trim().trim_end_matches('/');
        let (endpoint, shown) = match reqwest::Url::parse(base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                let mut redacted = url.clone();
                let _ = redacted.set_password(None);
                let _ = redacted.set_username("");
                let shown = format!(
                    "{}/chat/completions",
                    redacted.as_str().trim_end_matches('/')
                );
                (format!("{base}/chat/completions"), shown)
            }
            _ if replay => (String::new(), "(replay)".to_owned()),
            _ => {
                return Err(Error::Config(format!(
                    "the base URL `{base}` is not an http:// or https:// URL \
                     (e.g. http://localhost:11434/v1)"
                )));
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let cassette = Cassette::open(&config.cassette)?;
        Ok(Self {
            http,
            config,
            endpoint,
            shown,
            no_response_format: AtomicBool::new(false),
            cassette,
        })
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// Asks for one completion.
    pub async fn complete(&self, req: &ChatRequest) -> Result<Completion, Error> {
        let started = Instant::now();
        let mut use_format = req.json_schema.is_some()
            && match self.config.response_format {
                ResponseFormat::Auto => !self.no_response_format.load(Ordering::Relaxed),
                ResponseFormat::JsonSchema => true,
                ResponseFormat::Prompt => false,
            };
        let mut tries = 0;
        loop {
            let body = self.body(req, use_format);
            let (raw, replayed) = self.exchange(&body).await?;
            tries += raw.tries;
            if (200..300).contains(&raw.status) {
                return self.read(raw, body, started, tries, use_format, replayed);
            }
            if use_format
                && self.config.response_format == ResponseFormat::Auto
                && refuses_response_format(&raw)
            {
                tracing::warn!(
                    endpoint = %self.shown,
                    "the LLM endpoint does not support response_format; \
                     sending the JSON Schema as instructions from now on"
                );
                self.no_response_format.store(true, Ordering::Relaxed);
                use_format = false;
                continue;
            }
            return Err(Error::Http {
                url: self.shown.clone(),
                status: raw.status,
                tries,
                message: error_message(&raw.body),
            });
        }
    }

    /// The request body: model, messages, tools, and the schema as `response_format` or as
    /// instructions appended to the first system message.
    fn body(&self, req: &ChatRequest, use_format: bool) -> Value {
        let mut messages = req.messages.clone();
        let mut body = json!({"model": self.config.model});
        if let Some(schema) = &req.json_schema {
            if use_format {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": schema.name,
                        "schema": schema.schema,
                        "strict": schema.strict,
                    }
                });
            } else {
                let instructions = format!(
                    "Answer with one JSON object and nothing else (no prose, no code fence). \
                     It must follow this JSON Schema:\n{}",
                    schema.schema
                );
                match messages.iter_mut().find(|m| m.role == Role::System) {
                    Some(m) => {
                        let text = m.content.get_or_insert_with(String::new);
                        text.push_str("\n\n");
                        text.push_str(&instructions);
                    }
                    None => messages.insert(0, Message::system(instructions)),
                }
            }
        }
        body["messages"] = serde_json::to_value(&messages).unwrap_or(Value::Null);
        if !req.tools.is_empty() {
            body["tools"] = Value::Array(req.tools.clone());
        }
        if let Some(n) = req.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(t) = req.temperature {
            // Through f64 from its shortest decimal text, so 0.2 goes out as 0.2, not
            // 0.20000000298023224 (the body is also a cassette's key).
            body["temperature"] = json!(t.to_string().parse::<f64>().unwrap_or(0.0));
        }
        body
    }

    /// One answer for `body`: from the cassette when it holds one (always, in replay mode),
    /// else over HTTP with retries (and recorded in record mode). Returns whether it was
    /// replayed.
    async fn exchange(&self, body: &Value) -> Result<(Raw, bool), Error> {
        if let Some(r) = self
            .cassette
            .as_ref()
            .map(|c| c.answer(body))
            .transpose()?
            .flatten()
        {
            return Ok((
                Raw {
                    status: r.status,
                    body: r.body,
                    tries: 1,
                },
                true,
            ));
        }
        let raw = self.send_with_retries(body).await?;
        // Transient failures (429, 5xx) are not worth replaying.
        if let Some(c) = &self.cassette
            && raw.status != 429
            && raw.status < 500
        {
            c.record(
                body,
                &Recorded {
                    status: raw.status,
                    body: raw.body.clone(),
                },
            )?;
        }
        Ok((raw, false))
    }

    async fn send_with_retries(&self, body: &Value) -> Result<Raw, Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            let may_retry = tries <= self.config.max_retries;
            let mut rb = self
                .http
                .post(&self.endpoint)
                .timeout(self.config.timeout)
                .json(body);
            if let Some(key) = &self.config.api_key {
                rb = rb.bearer_auth(key.expose());
            }
            let resp = match rb.send().await {
                Ok(resp) => resp,
                Err(e) if e.is_timeout() && !e.is_connect() => return Err(self.timeout()),
                Err(e) => {
                    if may_retry {
                        tracing::debug!(tries, error = %e.without_url(), "LLM endpoint unreachable; retrying");
                        tokio::time::sleep(self.backoff(tries)).await;
                        continue;
                    }
                    return Err(Error::Unreachable {
                        url: self.shown.clone(),
                        tries,
                        reason: reason(&e),
                    });
                }
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s).min(self.config.max_retry_after));
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) if e.is_timeout() => return Err(self.timeout()),
                Err(e) => {
                    if may_retry {
                        tokio::time::sleep(self.backoff(tries)).await;
                        continue;
                    }
                    return Err(Error::Unreachable {
                        url: self.shown.clone(),
                        tries,
                        reason: format!("the answer was cut off: {}", reason(&e)),
                    });
                }
            };
            if (status == 429 || status >= 500) && may_retry {
                let wait = retry_after.unwrap_or_else(|| self.backoff(tries));
                tracing::info!(
                    status,
                    tries,
                    wait_ms = wait.as_millis() as u64,
                    "LLM endpoint busy or failing; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(Raw {
                status,
                body: text,
                tries,
            });
        }
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            url: self.shown.clone(),
            secs: self.config.timeout.as_secs().max(1),
        }
    }

    /// The delay before try `tries + 1`: doubling from `initial_backoff`, capped, ±20 %.
    fn backoff(&self, tries: u32) -> Duration {
        let exp = tries.saturating_sub(1).min(20);
        let base = self
            .config
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.config.max_backoff);
        base.mul_f64(0.8 + 0.4 * rand::random::<f64>())
    }

    /// Reads a `2xx` answer.
    fn read(
        &self,
        raw: Raw,
        request: Value,
        started: Instant,
        tries: u32,
        used_response_format: bool,
        replayed: bool,
    ) -> Result<Completion, Error> {
        let bad = |reason: String| Error::BadResponse {
            url: self.shown.clone(),
            reason,
        };
        let response: Value = serde_json::from_str(&raw.body)
            .map_err(|e| bad(format!("not JSON ({e}): {}", excerpt(&raw.body))))?;
        if let Some(err) = response.get("error").filter(|e| !e.is_null()) {
            return Err(bad(format!(
                "an error object: {}",
                excerpt(&err.to_string())
            )));
        }
        let choice = response
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .ok_or_else(|| bad(format!("no `choices`: {}", excerpt(&raw.body))))?;
        let msg = choice
            .get("message")
            .ok_or_else(|| bad("the first choice has no `message`".into()))?;
        let content = match msg.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // Some servers send content parts: [{"type": "text", "text": "..."}].
            Some(Value::Array(parts)) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<String>(),
            ),
            Some(other) => return Err(bad(format!("`content` is {other}"))),
        };
        let tool_calls: Vec<ToolCall> = match msg.get("tool_calls") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("unreadable `tool_calls`: {e}")))?,
        };
        if content.as_deref().is_none_or(|c| c.trim().is_empty()) && tool_calls.is_empty() {
            return Err(bad("an empty answer (no text, no tool call)".into()));
        }
        let usage = response.get("usage").filter(|u| u.is_object()).map(|u| {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            Usage {
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
            }
        });
        Ok(Completion {
            message: Message {
                role: Role::Assistant,
                content,
                tool_calls,
                tool_call_id: None,
            },
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            usage,
            request,
            response,
            latency: started.elapsed(),
            tries,
            used_response_format,
            replayed,
        })
    }
}

/// A `400`/`422` that blames `response_format` (or `json_schema`).
fn refuses_response_format(raw: &Raw) -> bool {
    if raw.status != 400 && raw.status != 422 {
        return false;
    }
    let body = raw.body.to_ascii_lowercase();
    body.contains("response_format") || body.contains("json_schema")
}

/// The most useful part of an error body: OpenAI's `error.message`, Ollama's `error`, or the
/// start of the text.
fn error_message(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let from_json = v.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())
            .map(str::to_owned)
    });
    match from_json {
        Some(m) => excerpt(&m),
        None if body.trim().is_empty() => "(empty body)".to_owned(),
        None => excerpt(body),
    }
}

/// At most 300 characters of `s`, on one line.
fn excerpt(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out: String = one_line.chars().take(300).collect();
    if one_line.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The innermost cause of a transport error, without the URL (which may carry credentials).
fn reason(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if e.is_connect() && !text.to_ascii_lowercase().contains("connect") {
        format!("connection failed: {text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
