//! A small REST client for the CLI and the demo.

use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use weft_agent::tls::{Fingerprint, client_config};
use weft_protocol::rest::{
    CreateDevice, DeviceCreated, DeviceRemoved, DeviceView, ErrorBody, Event, MAX_SUBMIT_WAIT_SECS,
    RequestView, SubmitRequest,
};

/// How long `submit` waits: planning with an LLM can take minutes on a local model.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(600);

/// A client of one server, or of replicas on one Postgres (docs/replicas.md): each call goes
/// to the server that answered the last one, and a standby's `307` is followed only to another
/// of the servers it was given (the API token goes nowhere else); a server that cannot be
/// reached, or a standby with no leader yet (`503 no_leader`), sends the call on to the next.
#[derive(Debug, Clone)]
pub struct Client {
    bases: Vec<String>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: String,
    http: reqwest::Client,
    stream_http: reqwest::Client,
    pin: Option<Fingerprint>,
}

/// How long a call waits for a leader while a takeover is under way (standbys answering
/// `503 no_leader`).
const NO_LEADER_WAIT: Duration = Duration::from_secs(15);

impl Client {
    /// A client of the server at `base`; over https:// it accepts exactly the certificate
    /// `pin` when given, else one that chains to the webpki roots.
    pub fn new(base: &str, token: &str, pin: Option<Fingerprint>) -> anyhow::Result<Self> {
        Self::replicas(&[base.to_owned()], token, pin)
    }

    /// A client of the replicas at `bases` (at least one), tried in this order at first.
    pub fn replicas(
        bases: &[String],
        token: &str,
        pin: Option<Fingerprint>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!bases.is_empty(), "no server given");
        let tls = || (*client_config(pin)).clone();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls())
            // Redirects are followed by `send`, to the servers given only.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        // Event streams stay open; they are bounded by a read timeout instead (the server
        // sends a keep-alive comment every 15 s).
        let stream_http = reqwest::Client::builder()
            .use_preconfigured_tls(tls())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            bases: bases
                .iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            current: Default::default(),
            token: token.to_owned(),
            http,
            stream_http,
            pin,
        })
    }

    /// The server that answered the last call (the leader, with replicas).
    pub fn base(&self) -> &str {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
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

    /// Sends a call to the leader: to the server that answered last, then on as the servers
    /// say (a standby's `307` to another of the servers given) or fail (one that cannot be
    /// reached, or has no leader yet: the next one), for at most [`NO_LEADER_WAIT`] — a
    /// takeover. `build` adds the body and options; it is applied again for each server tried.
    /// Only calls that never reached a server, or that a standby refused without acting, are
    /// sent again. With one server, a failure is the answer.
    async fn send(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        use std::sync::atomic::Ordering;
        let n = self.bases.len();
        let mut at = self.current.load(Ordering::Relaxed) % n;
        let since = tokio::time::Instant::now();
        let again = || n > 1 && since.elapsed() < NO_LEADER_WAIT;
        loop {
            let base = &self.bases[at];
            let req = http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(&self.token);
            match build(req).send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::TEMPORARY_REDIRECT => {
                    let location = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let leader = self.bases.iter().position(|b| {
                        location
                            .strip_prefix(b.as_str())
                            .is_some_and(|rest| rest == path)
                    });
                    match leader {
                        Some(leader) if leader != at && since.elapsed() < NO_LEADER_WAIT => {
                            at = leader;
                        }
                        Some(_) => {
                            return Err(anyhow!(
                                "the server at {base} sent this call to {location}, and no leader \
                                 answered within {} s",
                                NO_LEADER_WAIT.as_secs()
                            ));
                        }
                        None => {
                            return Err(anyhow!(
                                "the server at {base} sent this call to {location}, which is not \
                                 one of the servers given (--server); not following it, so that \
                                 the API token goes to those only"
                            ));
                        }
                    }
                }
                // A standby with no leader (a takeover under way): the next one, soon.
                Ok(resp)
                    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && again() =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    at = (at + 1) % n;
                }
                Ok(resp) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(resp);
                }
                // Down (a killed leader, which a standby may still name until its lease runs
                // out): the next one.
                Err(e) if e.is_connect() && again() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    at = (at + 1) % n;
                }
                Err(e) => return Err(self.send_err(base, e)),
            }
        }
    }

    fn send_err(&self, base: &str, e: reqwest::Error) -> anyhow::Error {
        // The TLS refusal (e.g. another certificate than the pinned one) is deep in the chain.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        anyhow!("cannot reach the weft server at {base}: {cause}")
    }

    pub async fn submit(&self, text: &str) -> anyhow::Result<RequestView> {
        let body = SubmitRequest {
            text: text.to_owned(),
            turn_budget: None,
            graph: None,
        };
        let resp = self
            .send(&self.http, reqwest::Method::POST, "/v1/requests", |r| {
                // Planning may wait on an LLM (the server's own timeout and retries bound it).
                r.timeout(SUBMIT_TIMEOUT).json(&body)
            })
            .await?;
        Self::decode(resp).await
    }

    /// `POST /v1/requests?wait=S` (S: `wait`, at most the server's 300 s): answered when the
    /// request has ended, with its final view, or when the wait runs out, with its view still
    /// running.
    pub async fn submit_waiting(&self, text: &str, wait: Duration) -> anyhow::Result<RequestView> {
        let body = SubmitRequest {
            text: text.to_owned(),
            turn_budget: None,
            graph: None,
        };
        let secs = wait.as_secs().min(MAX_SUBMIT_WAIT_SECS);
        let path = format!("/v1/requests?wait={secs}");
        let resp = self
            .send(&self.http, reqwest::Method::POST, &path, |r| {
                r.timeout(SUBMIT_TIMEOUT + Duration::from_secs(secs))
                    .json(&body)
            })
            .await?;
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
        let body = CreateDevice {
            name: name.into(),
            kind: kind.to_owned(),
        };
        let resp = self
            .send(&self.http, reqwest::Method::POST, "/v1/devices", |r| {
                r.json(&body)
            })
            .await?;
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
        let path = format!("/v1/requests/{id}/edits");
        let resp = self
            .send(&self.http, reqwest::Method::POST, &path, |r| r.json(batch))
            .await?;
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
        let resp = self.send(&self.http, method, path, |r| r).await?;
        Self::decode(resp).await
    }

    /// A one-time login link to the web view (`POST /v1/ui/login-links`).
    pub async fn login_link(&self) -> anyhow::Result<crate::web::LoginLink> {
        self.call(reqwest::Method::POST, "/v1/ui/login-links").await
    }

    /// Follows a request's event stream, calling `on_event` for each event, until the stream
    /// ends (after the request's final status).
    pub async fn follow(&self, id: &str, mut on_event: impl FnMut(&Event)) -> anyhow::Result<()> {
        let path = format!("/v1/requests/{id}/events");
        let resp = self
            .send(&self.stream_http, reqwest::Method::GET, &path, |r| r)
            .await?;
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
