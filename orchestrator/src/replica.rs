//! Replicas on one Postgres (issue 16 part 2; docs/replicas.md): several `weft serve`
//! processes, one leader at a time, the others standbys that take over.
//!
//! - **Lease and fence**: the leader holds the lease row (`store/lease.rs`), renewed every
//!   [`Options::renew_every`] for [`Options::ttl`] in the database's clock. Every commit checks
//!   its epoch inside the transaction, so a deposed leader's commit is refused; it then stops
//!   (fail-stop: the process exits, nothing it held in memory is applied) and, started again,
//!   rejoins as a standby. The loops that take, renew and give up the lease are in
//!   `server.rs`, which owns what a takeover starts.
//! - **Standbys** answer reads from the store ([`serves_on_standby`]: request views, the
//!   request list, device views, event streams, `/healthz`, `/metrics`, the OpenAPI
//!   document) and send every other call to the leader with a `307` and its URL ([`gate`]);
//!   the agent WebSocket included. Device views are read from what the leader writes of its
//!   connections (`Store::device_views`). Event streams follow the journal: [`follow_journal`] reads what each commit
//!   added when the leader's `NOTIFY` arrives (or every second, in case one was missed) and
//!   publishes it to the standby's own hub, where the SSE handler finds it as on a leader.
//! - **Takeover** is a restart's resume: the standby that takes the lease fences its store,
//!   starts the engine (which rebuilds every unfinished request from the store, in-flight
//!   attempts as if their device had just disconnected) and swaps its router for a leader's.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::ApiError;
use crate::engine::Hub;
use crate::http::AppState;
use crate::store::Store;

/// How replicas share the lead (`weft serve --lease-ttl-ms --lease-renew-ms --advertise-url`).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a lease lasts without being renewed: a leader that stops renewing (killed,
    /// paused, cut off) is replaced this long after its last renewal, at most one
    /// [`Options::renew_every`] later.
    pub ttl: Duration,
    /// How often the leader renews its lease, and a standby tries to take it.
    pub renew_every: Duration,
    /// The URL standbys send clients and agents to while this replica leads (default: the
    /// listener's address, `http://` or `https://`).
    pub advertise_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
            advertise_url: None,
        }
    }
}

impl Options {
    /// Checks the two durations against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_every.is_zero() || self.renew_every * 2 > self.ttl {
            return Err(format!(
                "the lease is renewed every {} ms and lasts {} ms: renew at least twice per lease",
                self.renew_every.as_millis(),
                self.ttl.as_millis()
            ));
        }
        Ok(())
    }
}

/// What this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It runs the engine (on SQLite, always).
    Leader,
    /// It answers reads and sends the rest to the leader.
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// What a standby knows of the leader: its URL while its lease is live, as last read from
/// the store (every [`Options::renew_every`]).
#[derive(Debug, Clone, Default)]
pub struct LeaderUrl(Arc<RwLock<Option<String>>>);

impl LeaderUrl {
    pub fn get(&self) -> Option<String> {
        self.0.read().map(|u| u.clone()).unwrap_or(None)
    }

    pub fn set(&self, url: Option<String>) {
        if let Ok(mut u) = self.0.write() {
            *u = url;
        }
    }
}

/// Whether a standby answers this call itself: reads that the store answers alone.
pub fn serves_on_standby(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    match path {
        "/healthz" | "/metrics" | "/openapi.json" | "/v1/requests" | "/v1/devices" => true,
        _ => path.strip_prefix("/v1/requests/").is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('/').collect();
            matches!(parts.as_slice(), [id] | [id, "events"] if !id.is_empty())
        }),
    }
}

/// A standby's outermost layer: reads it serves go on; everything else is sent to the leader
/// (`307`, the same method and body to `Location`), or refused `503 no_leader` while no
/// replica holds a live lease (a takeover under way).
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if serves_on_standby(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match state.leader.get() {
        Some(url) => {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let location = format!("{}{path}", url.trim_end_matches('/'));
            match HeaderValue::from_str(&location) {
                Ok(v) => (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, v)],
                    axum::Json(serde_json::json!({ "leader": url })),
                )
                    .into_response(),
                Err(_) => no_leader(),
            }
        }
        None => no_leader(),
    }
}

fn no_leader() -> Response {
    let mut resp = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_leader",
        "this replica is a standby and no replica holds the lead right now (a takeover is \
         under way); try again in a second",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// How often a standby reads the journal even without a notification (one lost while the
/// listening connection was re-made).
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Events read from the journal per query.
const FOLLOW_BATCH: u32 = 1000;

/// Follows the journal on a standby: publishes every event committed from now on to `hub`,
/// in order, each once, until `shutdown`. Woken by the leader's `NOTIFY` after each commit
/// that journaled events, and every [`FOLLOW_POLL`] in case one was missed.
pub async fn follow_journal(store: Store, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut last = loop {
        match store.last_seq().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the journal; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(FOLLOW_POLL) => {}
                }
            }
        }
    };
    let mut listener = None;
    loop {
        if listener.is_none() {
            listener = match store.listen_events().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for the leader's commits; polling");
                    None
                }
            };
        }
        let woken = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()).map_err(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = woken => if r.is_err() { listener = None; },
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        // Everything committed since the last read, in journal order.
        loop {
            match store.events_since(last, FOLLOW_BATCH).await {
                Ok(events) => {
                    let full = events.len() == FOLLOW_BATCH as usize;
                    if let Some(ev) = events.last() {
                        last = ev.seq;
                    }
                    hub.publish(events);
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the journal; trying again");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_serves_reads_of_the_store_only() {
        let get = Method::GET;
        for path in [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/requests",
            "/v1/requests/r1",
            "/v1/requests/r1/events",
            "/v1/devices",
        ] {
            assert!(serves_on_standby(&get, path), "{path}");
            assert!(serves_on_standby(&Method::HEAD, path), "{path}");
        }
        for path in [
            "/v1/agent",
            "/v1/devices/events",
            "/",
            "/v1/requests/",
            "/v1/requests/r1/files",
            "/v1/requests/r1/files/abc",
            "/v1/blobs/abc",
        ] {
            assert!(!serves_on_standby(&get, path), "{path}");
        }
        for m in [Method::POST, Method::PUT, Method::DELETE] {
            assert!(!serves_on_standby(&m, "/v1/requests"), "{m}");
            assert!(!serves_on_standby(&m, "/v1/requests/r1"), "{m}");
        }
    }

    #[test]
    fn a_lease_is_renewed_at_least_twice_per_ttl() {
        let mut o = Options::default();
        assert!(o.validate().is_ok());
        o.renew_every = Duration::from_secs(3);
        let e = o.validate().unwrap_err();
        assert!(e.contains("renew at least twice"), "{e}");
        o.renew_every = Duration::ZERO;
        assert!(o.validate().is_err());
    }
}
