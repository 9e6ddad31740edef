//! The REST API and the agent WebSocket route, on one axum router.
//!
//! Every route checks the `Host` header against the server's own addresses (DNS rebinding);
//! every route except `/healthz`, the agent endpoint (which authenticates with its device
//! token in the `hello`) and the web view's page routes (`crate::web`) needs
//! `Authorization: Bearer <api token>`, or the web view's session cookie (with CSRF checks on
//! state-changing calls, see `crate::web::session`).

mod devices;
mod extract;
mod openapi;
mod requests;

use std::sync::Arc;

use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use weft_planner::Planner;

pub use extract::{ApiJson, ApiQuery};
pub use openapi::ApiDoc;

use crate::engine::Handle;
use crate::listen::limits::retry_after_secs;
use crate::listen::{AuthLimiter, ConnLimiter, Peer};
use crate::store::Store;
use crate::ws::{self, ConnSettings};
use crate::{ApiError, token};

/// Largest accepted REST body, in bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Shared state of every handler. Holds handles only; the engine owns the live state.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Handle,
    pub store: Store,
    pub planner: Arc<dyn Planner>,
    pub api_token_hash: Arc<str>,
    pub allowed_hosts: Arc<[String]>,
    pub conn: ConnSettings,
    pub shutdown: CancellationToken,
    /// The web view's sessions and layout cache.
    pub web: crate::web::Web,
    /// Failed authentications per address.
    pub auth_limiter: Arc<AuthLimiter>,
    /// Open connections (for `/metrics`).
    pub conns: Arc<ConnLimiter>,
    /// The listener's TLS, if on.
    pub tls: Option<Arc<crate::listen::tls::ServerTls>>,
    /// Plain text on a non-loopback address (`--insecure-plaintext`).
    pub insecure_plaintext: bool,
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/requests", get(requests::list).post(requests::submit))
        .route("/v1/requests/{id}", get(requests::get_one))
        .route("/v1/requests/{id}/events", get(requests::events))
        .route("/v1/requests/{id}/edits", post(requests::edit))
        .route("/v1/requests/{id}/cancel", post(requests::cancel))
        .route(
            "/v1/requests/{id}/tasks/{task_id}/cancel",
            post(requests::cancel_task),
        )
        .route(
            "/v1/requests/{id}/tasks/{task_id}",
            delete(requests::delete_task),
        )
        .route("/v1/devices", get(devices::list).post(devices::add))
        .route("/v1/devices/{name}/drain", post(devices::drain))
        .route("/v1/devices/{name}/resume", post(devices::resume))
        .route("/v1/devices/{name}", delete(devices::remove))
        .route("/v1/devices/{name}/rotate", post(devices::rotate))
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

/// The answer to an address that failed to authenticate too often.
pub(crate) fn rate_limited(wait: std::time::Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many failed authentications from this address; try again in {secs} s"),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    resp
}

/// The answer to `GET /healthz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
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
    Json(Health {
        status: "ok",
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

/// Refuses requests whose `Host` is not one of this server's addresses (DNS rebinding).
async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h)
            if state
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h)) =>
        {
            next.run(req).await
        }
        other => {
            tracing::warn!(host = ?other, "refused request for a host this server is not");
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "host_not_allowed",
                format!(
                    "this server answers to {}; add other names with --allowed-host",
                    state.allowed_hosts.join(", ")
                ),
            )
            .into_response()
        }
    }
}

async fn require_api_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let ip = req.extensions().get::<Peer>().map(|p| p.addr.ip());
    if presented.is_some()
        && let Some(ip) = ip
        && let Err(wait) = state.auth_limiter.check(ip)
    {
        return rate_limited(wait);
    }
    let auth = match presented {
        Some(t) if token::matches(t.trim(), &state.api_token_hash) => {
            Some(Ok(crate::web::Auth::ApiToken))
        }
        Some(_) => {
            if let Some(ip) = ip {
                state.auth_limiter.failed(ip);
            }
            Some(Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_api_token",
                "wrong API token",
            )))
        }
        None => state.web.sessions.authenticate(req.method(), req.headers()),
    };
    match auth {
        Some(Ok(auth)) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Some(Err(e)) => e.into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_token",
            "send `Authorization: Bearer <api token>`; `weft serve` wrote the token to its data directory",
        )
        .into_response(),
    }
}
