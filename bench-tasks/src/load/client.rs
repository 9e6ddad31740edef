//! The REST side: registering devices, submitting requests and following them to the end.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use weft_protocol::RequestStatus;
use weft_protocol::rest::{DeviceCreated, ErrorBody};

use super::server::Target;

/// How a request is followed to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// `GET /v1/requests/{id}/events` (Server-Sent Events); done at the final `request_status`.
    Sse,
    /// `GET /v1/requests/{id}` every `ms` milliseconds until the status is final.
    Poll { ms: u64 },
    /// `POST /v1/requests?wait=S` (S: the request's timeout, at most 300 s): the answer is the
    /// final view (`201`), with no second call; a request still running when the wait runs
    /// out (`202`) is followed with SSE.
    Post,
}

impl std::fmt::Display for WaitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitMode::Sse => f.write_str("sse"),
            WaitMode::Poll { ms } => write!(f, "poll:{ms}ms"),
            WaitMode::Post => f.write_str("post"),
        }
    }
}

/// How requests are submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitMode {
    /// Rules-planner text (`{"text": ...}`): at most 256 tasks and 16 KiB.
    Text,
    /// The graph itself (`{"text": ..., "graph": {"tasks", "edges"}}`), planned by nobody.
    Graph,
}

impl std::fmt::Display for SubmitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubmitMode::Text => "text",
            SubmitMode::Graph => "graph",
        })
    }
}

/// A submission the server refused (4xx/5xx), with its stable error code.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for Refused {}

/// A REST client for one orchestrator.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

#[derive(Deserialize)]
struct StatusOnly {
    status: RequestStatus,
}

/// The part of a `RequestView` the load generator needs. Reading only this keeps `weft-load`
/// working against older and newer servers alike (before/after comparisons).
#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    pub id: String,
    pub status: RequestStatus,
    pub tasks: Vec<serde::de::IgnoredAny>,
}

impl Api {
    /// `pool`: how many idle keep-alive connections to keep (about the concurrency).
    pub fn new(target: &Target, pool: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool.max(4))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base: target.base.trim_end_matches('/').to_owned(),
            token: target.api_token.clone(),
        })
    }

    /// The agent WebSocket URL.
    pub fn agent_url(&self) -> String {
        let rest = self
            .base
            .strip_prefix("http://")
            .map(|r| format!("ws://{r}"))
            .or_else(|| {
                self.base
                    .strip_prefix("https://")
                    .map(|r| format!("wss://{r}"))
            })
            .unwrap_or_else(|| self.base.clone());
        format!("{rest}{}", weft_protocol::AGENT_WS_PATH)
    }

    pub async fn health(&self) -> anyhow::Result<()> {
        let r = self
            .http
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("/healthz answered {}", r.status());
        }
        Ok(())
    }

    async fn refused(resp: reqwest::Response) -> Refused {
        let status = resp.status().as_u16();
        match resp.json::<ErrorBody>().await {
            Ok(b) => Refused {
                status,
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => Refused {
                status,
                code: "unknown".into(),
                message: "no error body".into(),
            },
        }
    }

    /// `POST /v1/devices`; returns the device token.
    pub async fn add_device(&self, name: &str, kind: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .post(format!("{}/v1/devices", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"name": name, "kind": kind}))
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await)
                .with_context(|| format!("registering device {name}"));
        }
        Ok(resp.json::<DeviceCreated>().await?.token)
    }

    /// `POST /v1/requests` with `body` (see [`super::Shape::text_body`] and
    /// [`super::Shape::graph_body`]). A refusal is an error holding [`Refused`].
    pub async fn submit(
        &self,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<Submitted> {
        self.post_request("/v1/requests", body, timeout).await
    }

    /// `POST /v1/requests?wait=S` with `body`: answered when the request has ended (`201`, its
    /// final view) or after `wait` (`202`, still running). `wait` is cut to the server's
    /// largest, 300 s. A refusal is an error holding [`Refused`].
    pub async fn submit_waiting(
        &self,
        body: &serde_json::Value,
        wait: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Submitted> {
        let secs = wait
            .as_secs()
            .min(weft_protocol::rest::MAX_SUBMIT_WAIT_SECS);
        self.post_request(&format!("/v1/requests?wait={secs}"), body, timeout)
            .await
    }

    async fn post_request(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<Submitted> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .timeout(timeout)
            .send()
            .await?;
        if !matches!(resp.status().as_u16(), 201 | 202) {
            return Err(Self::refused(resp).await.into());
        }
        Ok(resp.json().await?)
    }

    /// `GET /v1/requests/{id}` (only its id, status and task count are read).
    pub async fn request(&self, id: &str, timeout: Duration) -> anyhow::Result<Submitted> {
        self.get(&format!("/v1/requests/{id}"), timeout).await
    }

    /// `GET /v1/requests/{id}`, the whole view as JSON.
    pub async fn request_json(
        &self,
        id: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        self.get(&format!("/v1/requests/{id}"), timeout).await
    }

    /// How many devices `GET /v1/devices` shows online.
    pub async fn online_devices(&self) -> anyhow::Result<usize> {
        let devices: Vec<serde_json::Value> =
            self.get("/v1/devices", Duration::from_secs(10)).await?;
        Ok(devices.iter().filter(|d| d["status"] == "online").count())
    }

    /// `GET path` with the API token; the answer's JSON body, or the refusal as the error.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await.into());
        }
        Ok(resp.json().await?)
    }

    /// Follows request `id` until its status is final; returns that status.
    pub async fn wait(
        &self,
        id: &str,
        mode: WaitMode,
        timeout: Duration,
    ) -> anyhow::Result<RequestStatus> {
        let fut = async {
            match mode {
                // A waited submit that came back still running goes on as SSE.
                WaitMode::Sse | WaitMode::Post => self.wait_sse(id).await,
                WaitMode::Poll { ms } => {
                    self.wait_poll(id, Duration::from_millis(ms), timeout).await
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow::anyhow!("timeout"))?
    }

    async fn wait_sse(&self, id: &str) -> anyhow::Result<RequestStatus> {
        let resp = self
            .http
            .get(format!("{}/v1/requests/{id}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await.into());
        }
        let mut body = resp.bytes_stream();
        let mut sse = SseParser::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if let Some(status) = sse.feed(&chunk)? {
                return Ok(status);
            }
        }
        bail!("the event stream ended before a final request_status")
    }

    async fn wait_poll(
        &self,
        id: &str,
        every: Duration,
        timeout: Duration,
    ) -> anyhow::Result<RequestStatus> {
        loop {
            let view = self.request(id, timeout).await?;
            if view.status.is_terminal() {
                return Ok(view.status);
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Reads a Server-Sent Events byte stream and spots the request's final status.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Adds bytes; returns the final status once a `request_status` event with one has arrived.
    pub fn feed(&mut self, bytes: &[u8]) -> anyhow::Result<Option<RequestStatus>> {
        self.buf.extend_from_slice(bytes);
        while let Some(end) = find_blank_line(&self.buf) {
            let block: Vec<u8> = self.buf.drain(..end.1).collect();
            let block = String::from_utf8_lossy(&block[..end.0]);
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                let line = line.trim_end_matches('\r');
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim_start();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if event == "request_status" {
                let s: StatusOnly = serde_json::from_str(&data)
                    .with_context(|| format!("bad request_status event: {data}"))?;
                if s.status.is_terminal() {
                    return Ok(Some(s.status));
                }
            }
        }
        Ok(None)
    }
}

/// `(end of the block, end of the blank line)` of the first complete event block.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_final_status_across_chunks() {
        let mut p = SseParser::default();
        let stream = "id: 1\nevent: request_status\ndata: {\"seq\":1,\"request_id\":\"r\",\"at_ms\":1,\"type\":\"request_status\",\"status\":\"running\"}\n\n\
                      : keep-alive\n\n\
                      id: 2\nevent: task_status\ndata: {\"status\":\"succeeded\"}\n\n\
                      id: 3\nevent: request_status\ndata: {\"seq\":3,\"request_id\":\"r\",\"at_ms\":2,\"type\":\"request_status\",\"status\":\"succeeded\"}\n\n";
        let bytes = stream.as_bytes();
        let mut got = None;
        for chunk in bytes.chunks(7) {
            if let Some(s) = p.feed(chunk).unwrap() {
                got = Some(s);
                break;
            }
        }
        assert_eq!(got, Some(RequestStatus::Succeeded));
    }
}
