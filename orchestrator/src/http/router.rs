//! The whole router: the REST API's routes, the web view's and the server's own (`/healthz`,
//! `/metrics`, `/openapi.json`, the agent WebSocket, and the agents' file routes, which take
//! the device token), behind the layers of [`super::auth`].

use axum::extract::{State, WebSocketUpgrade};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::auth::{check_host, require_api_token};
use super::{AppState, BODY_LIMIT, openapi};
use crate::ApiError;
use crate::listen::Peer;
use crate::ws;

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .merge(crate::api::routes())
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics))
        .merge(crate::web::api_routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route(weft_protocol::AGENT_WS_PATH, get(agent_ws))
        .merge(crate::api::device_routes())
        .merge(authed)
        .merge(crate::web::page_routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        // Outermost, so that every answer has it, the Host check's refusals included.
        .layer(middleware::map_response(nosniff))
        .with_state(state)
}

/// No browser may guess a content type other than the one sent.
async fn nosniff(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The answer to `GET /healthz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
    /// `leader` (runs the engine; on SQLite, always) or `standby` (answers reads, sends the
    /// rest to the leader; docs/replicas.md).
    role: &'static str,
    /// The leader's fencing epoch, on a leader that shares a Postgres with replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    /// On a standby: the leader's URL, while a replica holds the lead.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<String>,
    /// The server's version.
    version: &'static str,
    /// The listener's TLS; `null` without TLS.
    tls: Option<HealthTls>,
    /// Present when the server runs without TLS on a non-loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct HealthTls {
    /// The SHA-256 of the server's certificate: `sha256:` and 64 hex digits.
    fingerprint: String,
}

/// Liveness: the server answers. Needs no API token.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let standby = state.role == crate::replica::Role::Standby;
    let epoch = state.store.fenced();
    Json(Health {
        status: "ok",
        role: state.role.as_str(),
        epoch: (!standby && epoch > 0).then_some(epoch),
        leader: if standby { state.leader.get() } else { None },
        version: env!("CARGO_PKG_VERSION"),
        tls: state.tls.as_ref().map(|t| HealthTls {
            fingerprint: t.fingerprint().to_string(),
        }),
        warning: state.insecure_plaintext.then_some(
            "insecure plain text (--insecure-plaintext): API and device tokens cross the network unencrypted",
        ),
    })
}

/// Prometheus text exposition of the orchestrator's counters.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)),
    security(("bearer" = [])))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.engine.metrics.render();
    let (general, agents) = state.conns.open();
    let caps = state.conns.caps();
    for (name, help, value) in [
        (
            "connections_open",
            "Open connections that are not established agents.",
            general,
        ),
        (
            "agent_connections_open",
            "Open connections of welcomed agents.",
            agents,
        ),
        (
            "connections_max",
            "The cap on open connections (--max-connections).",
            caps.max,
        ),
        (
            "leader",
            "1 while this process leads (runs the engine), 0 on a standby replica.",
            usize::from(state.role == crate::replica::Role::Leader),
        ),
    ] {
        use std::fmt::Write;
        let _ = write!(
            text,
            "# HELP weft_{name} {help}\n# TYPE weft_{name} gauge\nweft_{name} {value}\n"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

async fn agent_ws(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    ws: WebSocketUpgrade,
) -> Response {
    let engine = state.engine.clone();
    let settings = state.conn.clone();
    let peer = peer.map(|p| p.0);
    let limiter = state.auth_limiter.clone();
    // Agent frames are small and a connection is mostly idle: a 4 KiB read buffer (it grows
    // for a large frame) instead of tungstenite's 128 KiB default, allocated and zeroed up
    // front per connection, was ~150 KiB of memory per idle agent (BENCHMARKS.md).
    ws.read_buffer_size(4096)
        .max_message_size(ws::HARD_FRAME_LIMIT)
        .max_frame_size(ws::HARD_FRAME_LIMIT)
        .on_upgrade(move |socket| ws::serve(socket, engine, settings, peer, limiter))
}
