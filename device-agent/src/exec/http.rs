//! `http`: GET a URL with a timeout and a size cap on the body, inside the owner's policy.
//!
//! The URL's scheme and host are checked before the request ([`crate::exec::vet`]). The client
//! resolves names itself ([`PolicyResolver`]) and refuses a name if *any* address it resolves
//! to is loopback, private, link-local or otherwise non-public (unless
//! `policy.http.allow_networks` includes it); the connection then goes only to the addresses
//! checked, so a name cannot be re-pointed between check and use. Every redirect is checked the
//! same way before it is followed (at most 10). No proxy is used: a proxy would resolve names
//! where the policy cannot see them.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::{Ctx, Outcome, capped_text};
use crate::policy::{Denied, Policy};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

/// Parses an http(s) URL (`invalid_url` otherwise).
pub fn parse_url(url: &str) -> Result<reqwest::Url, Outcome> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        _ => Err(Outcome::failed(
            "invalid_url",
            format!("`{url}` is not an http(s) URL"),
        )),
    }
}

/// Resolves names for the HTTP client and refuses those the policy does not allow.
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<Policy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            policy.check_host(&host)?;
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                policy.check_ip(&host, a.ip())?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of an agent with `policy`.
pub fn client(policy: &Policy, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let policy = Arc::new(policy.clone());
    let redirects = policy.clone();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .no_proxy()
        .dns_resolver(Arc::new(PolicyResolver { policy }))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match redirects.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(denied) => attempt.error(denied),
            }
        }))
        .build()
}

/// The policy refusal somewhere in an error's chain of causes.
fn denied_in(e: &(dyn StdError + 'static)) -> Option<Denied> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<Denied>() {
            return Some(d.clone());
        }
        if let Some(d) = err.downcast_ref::<Box<Denied>>() {
            return Some((**d).clone());
        }
        cur = err.source();
    }
    None
}

/// The outcome of a failed request: `policy_denied` if the policy refused an address or a
/// redirect, else `http_unreachable`.
fn request_failed(url: &str, e: &reqwest::Error) -> Outcome {
    match denied_in(e) {
        Some(d) => super::failed(d.error()),
        None => Outcome::failed("http_unreachable", format!("GET {url}: {e}")),
    }
}

/// `url` with its host and port replaced as `policy.http.connect_to` says, if it names one of
/// its hosts.
fn connect_to(mut url: reqwest::Url, policy: &Policy) -> reqwest::Url {
    let target = url
        .host_str()
        .and_then(|h| policy.http.connect_to.get(&h.to_ascii_lowercase()))
        .copied();
    if let Some(addr) = target
        && url.set_ip_host(addr.ip()).is_ok()
    {
        let _ = url.set_port(Some(addr.port()));
    }
    url
}

pub async fn get(url: &str, ctx: &Ctx<'_>) -> Outcome {
    let parsed = match parse_url(url) {
        Ok(u) => connect_to(u, ctx.policy),
        Err(o) => return o,
    };
    if let Err(d) = ctx.policy.check_url(&parsed) {
        return super::failed(d.error());
    }
    let fetch = async {
        let resp = ctx
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| request_failed(url, &e))?;
        let status = resp.status();
        let final_url = resp.url().to_string();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut cut = false;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| request_failed(url, &e))?;
            let room = ctx.max_output_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                // Stop downloading: everything further would be thrown away.
                cut = true;
                break;
            }
        }
        let (text, cut_utf8) = capped_text(&body, ctx.max_output_bytes);
        let mut data = json!({
            "status": status.as_u16(),
            "content_type": content_type,
            "body": text,
            "truncated": cut || cut_utf8,
        });
        if final_url != url {
            data["url"] = json!(final_url);
        }
        let summary = format!(
            "HTTP {} from {url} ({} bytes{})",
            status.as_u16(),
            body.len(),
            if cut { ", truncated" } else { "" }
        );
        if status.is_success() {
            Ok(Outcome::succeeded(summary, data))
        } else {
            Err(Outcome::failed_with(
                "http_status",
                format!("GET {url} answered {status}"),
                weft_protocol::TaskOutput { summary, data },
            ))
        }
    };
    match tokio::time::timeout(ctx.http_timeout, fetch).await {
        Ok(Ok(o) | Err(o)) => o,
        Err(_) => Outcome::failed(
            "timeout",
            format!(
                "GET {url} took longer than {} s",
                ctx.http_timeout.as_secs_f64()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::TestEnv;
    use weft_protocol::wire::ResultStatus;

    /// A local server: `/ok` answers, `/away?to=URL` redirects.
    async fn server() -> String {
        use axum::extract::Query;
        use axum::response::Redirect;
        use axum::routing::get;
        #[derive(serde::Deserialize)]
        struct To {
            to: String,
        }
        let app = axum::Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/away",
                get(|Query(q): Query<To>| async move { Redirect::temporary(&q.to) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn code(o: &Outcome) -> &str {
        o.error.as_ref().map(|e| e.code.as_str()).unwrap_or("ok")
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed_and_names_resolve_through_the_policy() {
        let base = server().await;
        let dir = tempfile::tempdir().unwrap();
        let env = TestEnv::new();
        let c = env.ctx(dir.path());
        let o = get(&format!("{base}/ok"), &c).await;
        assert_eq!(code(&o), "policy_denied", "{o:?}");
        assert!(
            o.error
                .unwrap()
                .message
                .contains("policy.http.allow_networks")
        );
        // A name that resolves to loopback is refused by the resolver, after DNS.
        let port = base.rsplit(':').next().unwrap();
        let o = get(&format!("http://localhost:{port}/ok"), &c).await;
        assert_eq!(code(&o), "policy_denied", "{o:?}");
        assert!(o.error.unwrap().message.contains("localhost"));

        let mut policy = Policy::default();
        policy.allow_loopback_http();
        let env = TestEnv::with_policy(policy);
        let c = env.ctx(dir.path());
        let o = get(&format!("{base}/ok"), &c).await;
        assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
        assert_eq!(o.output.data["body"], "fine");
        let o = get(&format!("http://localhost:{port}/ok"), &c).await;
        assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
    }

    #[tokio::test]
    async fn redirects_to_denied_places_are_not_followed() {
        let base = server().await;
        let dir = tempfile::tempdir().unwrap();
        let mut policy = Policy::default();
        policy.allow_loopback_http();
        let env = TestEnv::with_policy(policy);
        let c = env.ctx(dir.path());
        // Allowed: a redirect within loopback.
        let o = get(&format!("{base}/away?to={base}/ok"), &c).await;
        assert_eq!(o.output.data["body"], "fine", "{o:?}");
        // Refused: a redirect to the cloud metadata address, to a private address.
        for to in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
        ] {
            let o = get(&format!("{base}/away?to={to}"), &c).await;
            assert_eq!(code(&o), "policy_denied", "{to}: {o:?}");
            assert!(
                o.error
                    .unwrap()
                    .message
                    .contains("policy.http.allow_networks")
            );
        }
        // A redirect to another scheme is never followed (the 307 is the answer).
        let o = get(&format!("{base}/away?to=file:///etc/passwd"), &c).await;
        assert_eq!(code(&o), "http_status", "{o:?}");
        assert_eq!(o.output.data["status"], 307);
    }

    #[tokio::test]
    async fn connect_to_sends_a_name_to_another_address_still_checked() {
        let base = server().await;
        let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut policy = Policy::default();
        policy.http.connect_to.insert("web.test".into(), addr);
        // The target is loopback, which this policy does not allow.
        let env = TestEnv::with_policy(policy.clone());
        let o = get("http://WEB.test/ok", &env.ctx(dir.path())).await;
        assert_eq!(code(&o), "policy_denied", "{o:?}");
        policy.allow_loopback_http();
        let env = TestEnv::with_policy(policy);
        let o = get("http://web.test/ok", &env.ctx(dir.path())).await;
        assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
        assert_eq!(o.output.data["body"], "fine");
    }
}
