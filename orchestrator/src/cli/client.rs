//! A small REST client for the CLI and the demo.

use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use weft_agent::tls::{Fingerprint, client_config};
use weft_protocol::rest::{
    CreateDevice, DeviceCreated, DeviceRemoved, DeviceView, ErrorBody, Event, RequestView,
    SubmitRequest,
};

/// How long `submit` waits: planning with an LLM can take minutes on a local model.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    stream_http: reqwest::Client,
    pin: Option<Fingerprint>,
}

impl Client {
    /// A client of the server at `base`; over https:// it accepts exactly the certificate
    /// `pin` when given, else one that chains to the webpki roots.
    pub fn new(base: &str, token: &str, pin: Option<Fingerprint>) -> anyhow::Result<Self> {
        let tls = || (*client_config(pin)).clone();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls())
            .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        // Event streams stay open; they are bounded by a read timeout instead (the server
        // sends a keep-alive comment every 15 s).
        let stream_http = reqwest::Client::builder()
            .use_preconfigured_tls(tls())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
            stream_http,
            pin,
        })
    }

    /// The certificate fingerprint this client pins, if any.
    pub fn pin(&self) -> Option<Fingerprint> {
        self.pin
    }

    async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).context("the server sent an unexpected answer");
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(anyhow!(
                "{} ({}): {}",
                b.error.code,
                status.as_u16(),
                b.error.message
            )),
            Err(_) => Err(anyhow!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send_err(&self, e: reqwest::Error) -> anyhow::Error {
        // The TLS refusal (e.g. another certificate than the pinned one) is deep in the chain.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        anyhow!("cannot reach the weft server at {}: {cause}", self.base)
    }

    pub async fn submit(&self, text: &str) -> anyhow::Result<RequestView> {
        let resp = self
            .http
            .post(self.url("/v1/requests"))
            .bearer_auth(&self.token)
            // Planning may wait on an LLM (the server's own timeout and retries bound it).
            .timeout(SUBMIT_TIMEOUT)
            .json(&SubmitRequest {
                text: text.to_owned(),
                turn_budget: None,
                graph: None,
            })
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        Self::decode(resp).await
    }

    pub async fn request(&self, id: &str) -> anyhow::Result<RequestView> {
        self.call(reqwest::Method::GET, &format!("/v1/requests/{id}"))
            .await
    }

    pub async fn devices(&self) -> anyhow::Result<Vec<DeviceView>> {
        self.call(reqwest::Method::GET, "/v1/devices").await
    }

    pub async fn add_device(&self, name: &str, kind: &str) -> anyhow::Result<DeviceCreated> {
        let resp = self
            .http
            .post(self.url("/v1/devices"))
            .bearer_auth(&self.token)
            .json(&CreateDevice {
                name: name.into(),
                kind: kind.to_owned(),
            })
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        Self::decode(resp).await
    }

    /// Cancels a request, or one task of it.
    pub async fn cancel(&self, id: &str, task: Option<&str>) -> anyhow::Result<RequestView> {
        let path = match task {
            Some(t) => format!("/v1/requests/{id}/tasks/{t}/cancel"),
            None => format!("/v1/requests/{id}/cancel"),
        };
        self.call(reqwest::Method::POST, &path).await
    }

    /// Applies an edit batch (JSON `{"expected_version", "ops"}`) to a request's graph.
    pub async fn edit(&self, id: &str, batch: &serde_json::Value) -> anyhow::Result<RequestView> {
        let resp = self
            .http
            .post(self.url(&format!("/v1/requests/{id}/edits")))
            .bearer_auth(&self.token)
            .json(batch)
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        Self::decode(resp).await
    }

    /// Drains a device (`true`) or takes it back into service (`false`).
    pub async fn set_draining(&self, name: &str, draining: bool) -> anyhow::Result<DeviceView> {
        let verb = if draining { "drain" } else { "resume" };
        self.call(reqwest::Method::POST, &format!("/v1/devices/{name}/{verb}"))
            .await
    }

    /// Removes a device (`DELETE /v1/devices/{name}`).
    pub async fn remove_device(&self, name: &str) -> anyhow::Result<DeviceRemoved> {
        self.call(reqwest::Method::DELETE, &format!("/v1/devices/{name}"))
            .await
    }

    /// Gives a device a new token (`POST /v1/devices/{name}/rotate`).
    pub async fn rotate_token(&self, name: &str) -> anyhow::Result<DeviceCreated> {
        self.call(reqwest::Method::POST, &format!("/v1/devices/{name}/rotate"))
            .await
    }

    /// A call without a body, answered with JSON.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<T> {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        Self::decode(resp).await
    }

    /// A one-time login link to the web view (`POST /v1/ui/login-links`).
    pub async fn login_link(&self) -> anyhow::Result<crate::web::LoginLink> {
        self.call(reqwest::Method::POST, "/v1/ui/login-links").await
    }

    /// Follows a request's event stream, calling `on_event` for each event, until the stream
    /// ends (after the request's final status).
    pub async fn follow(&self, id: &str, mut on_event: impl FnMut(&Event)) -> anyhow::Result<()> {
        let resp = self
            .stream_http
            .get(self.url(&format!("/v1/requests/{id}/events")))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        if !resp.status().is_success() {
            return Self::decode::<serde_json::Value>(resp).await.map(|_| ());
        }
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the event stream broke")?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let ev: Event = serde_json::from_str(&data.join("\n"))
                    .context("the server sent an event this CLI does not understand")?;
                on_event(&ev);
            }
        }
        Ok(())
    }
}
