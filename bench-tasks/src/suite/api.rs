//! The few REST calls the runner makes.

use std::time::Duration;

use anyhow::{Context, bail};
use weft_protocol::rest::{
    CreateDevice, DeviceCreated, DeviceView, ErrorBody, RequestView, SubmitRequest,
};

/// How long `POST /v1/requests` may take by default: the orchestrator plans inside that call,
/// and a local model can take minutes (the planner's own timeouts bound it).
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long every other call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A REST client for one orchestrator. Every call has a timeout: [`CALL_TIMEOUT`], and
/// `submit_timeout` (default [`SUBMIT_TIMEOUT`]) for submissions.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    submit_timeout: Duration,
}

/// How a submission was answered.
#[derive(Debug)]
pub enum Submitted {
    Accepted(Box<RequestView>),
    /// The planner or the graph check refused it (4xx): its code and message.
    Refused {
        code: String,
        message: String,
    },
}

impl Api {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
                .connect_timeout(Duration::from_secs(10))
                .timeout(CALL_TIMEOUT)
                .build()?,
            submit_timeout: SUBMIT_TIMEOUT,
        })
    }

    /// The same client with another timeout for submissions.
    pub fn with_submit_timeout(mut self, timeout: Duration) -> Self {
        self.submit_timeout = timeout;
        self
    }

    pub fn submit_timeout(&self) -> Duration {
        self.submit_timeout
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn error(resp: reqwest::Response) -> anyhow::Error {
        let status = resp.status();
        match resp.json::<ErrorBody>().await {
            Ok(b) => anyhow::anyhow!("{status}: {}: {}", b.error.code, b.error.message),
            Err(_) => anyhow::anyhow!("{status}"),
        }
    }

    pub async fn add_device(&self, name: &str, kind: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .post(format!("{}/v1/devices", self.base))
            .bearer_auth(&self.token)
            .json(&CreateDevice {
                name: name.into(),
                kind: kind.into(),
            })
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await).context(format!("registering {name}"));
        }
        Ok(resp.json::<DeviceCreated>().await?.token)
    }

    pub async fn devices(&self) -> anyhow::Result<Vec<DeviceView>> {
        let resp = self
            .http
            .get(format!("{}/v1/devices", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await);
        }
        Ok(resp.json().await?)
    }

    pub async fn submit(&self, body: &SubmitRequest) -> anyhow::Result<Submitted> {
        let resp = self
            .http
            .post(format!("{}/v1/requests", self.base))
            .bearer_auth(&self.token)
            .timeout(self.submit_timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| describe(e, self.submit_timeout))?;
        let status = resp.status();
        if status.is_success() {
            let view = resp
                .json()
                .await
                .map_err(|e| describe(e, self.submit_timeout))?;
            return Ok(Submitted::Accepted(Box::new(view)));
        }
        if status.is_client_error() {
            let b: ErrorBody = resp
                .json()
                .await
                .with_context(|| format!("a {status} without an error body"))?;
            return Ok(Submitted::Refused {
                code: b.error.code,
                message: b.error.message,
            });
        }
        Err(Self::error(resp).await)
    }

    pub async fn request(&self, id: &str) -> anyhow::Result<RequestView> {
        let resp = self
            .http
            .get(format!("{}/v1/requests/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp).await);
        }
        Ok(resp.json().await?)
    }

    pub async fn cancel(&self, id: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/v1/requests/{id}/cancel", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("cancel {id}: {}", Self::error(resp).await);
        }
        Ok(())
    }

    /// `GET /metrics` as name → value.
    pub async fn metrics(&self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect())
    }
}

/// A transport error, saying which timeout ran out when one did.
fn describe(e: reqwest::Error, timeout: Duration) -> anyhow::Error {
    if e.is_timeout() {
        anyhow::anyhow!("no answer within {} s: {e}", timeout.as_secs())
    } else {
        anyhow::Error::new(e)
    }
}
