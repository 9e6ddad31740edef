//! The web view: a live page served by the orchestrator itself at `/`.
//!
//! - [`page_routes`]: the page (`/`), its static assets (embedded in the binary with
//!   `include_str!`: plain JS and CSS, no build step) and `/login`, which turns a one-time
//!   link into a session cookie ([`session`]).
//! - [`api_routes`]: what the page needs beyond the REST API, mounted behind the same auth
//!   middleware (API token, or the session cookie with CSRF checks): login links for
//!   `weft open`, the graph's layout ([`layout`], computed with layout-rs), and two live
//!   streams (SSE): device changes and every request's events.
//!
//! The page renders device output with `textContent` only, never as HTML, and is served with a
//! Content-Security-Policy that allows scripts from this origin only.

pub mod layout;
mod live;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use weft_protocol::RequestId;
use weft_protocol::rest::ErrorBody;

pub use layout::GraphLayout;
pub use session::{Auth, Sessions};

use crate::http::AppState;
use crate::{ApiError, now_ms};

const INDEX_HTML: &str = include_str!("assets/index.html");
const MESSAGE_HTML: &str = include_str!("assets/message.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Laid-out graphs kept, by request and graph version.
const LAYOUT_CACHE: usize = 64;

/// The web view's server-side state: sessions and a cache of graph layouts.
#[derive(Debug, Clone)]
pub struct Web {
    pub sessions: Arc<Sessions>,
    layouts: Arc<LayoutCache>,
    /// One layout computation at a time: it is CPU work on a blocking thread.
    layout_slot: Arc<Semaphore>,
}

impl Web {
    /// The web view of a server served over TLS (`secure`) or not, its sessions in `store`.
    pub fn new(store: crate::store::Store, secure: bool) -> Self {
        Self {
            sessions: Arc::new(Sessions::new(store, secure)),
            layouts: Arc::default(),
            layout_slot: Arc::new(Semaphore::new(1)),
        }
    }
}

/// Laid-out graphs by request and graph version (a version's layout never changes).
#[derive(Debug, Default)]
struct LayoutCache(Mutex<HashMap<(RequestId, u64), Arc<GraphLayout>>>);

impl LayoutCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RequestId, u64), Arc<GraphLayout>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &(RequestId, u64)) -> Option<Arc<GraphLayout>> {
        self.lock().get(key).cloned()
    }

    fn insert(&self, key: (RequestId, u64), layout: Arc<GraphLayout>) {
        let mut cache = self.lock();
        if cache.len() >= LAYOUT_CACHE {
            cache.clear();
        }
        cache.insert(key, layout);
    }
}

/// The answer to `POST /v1/ui/login-links`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLink {
    /// Path and query of the link, e.g. `/login?token=…`; prefix it with the server's URL.
    pub path: String,
    /// When the link stops working (milliseconds since the Unix epoch). It works once.
    pub expires_at_ms: u64,
}

/// The page, its assets and `/login`. Not behind the API-token middleware: the page itself
/// needs a session (without one it says how to get one), the assets hold no data.
pub fn page_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// API routes of the web view; the caller mounts them behind the auth middleware.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ui/login-links", post(create_login_link))
        .route("/v1/ui/logout", post(logout))
        .route("/v1/requests/{id}/layout", get(graph_layout))
        .route("/v1/devices/events", get(live::device_events))
        .route("/v1/events", get(live::all_events))
}

/// The OpenAPI description of [`api_routes`], merged into `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_login_link,
        logout,
        graph_layout,
        live::device_events,
        live::all_events
    ),
    components(schemas(LoginLink))
)]
#[derive(Debug)]
pub struct WebApiDoc;

/// Headers every HTML answer carries.
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A small page with a title and a message, both plain text.
fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(
        status,
        MESSAGE_HTML
            .replace("{{TITLE}}", &escape_html(title))
            .replace("{{MESSAGE}}", &escape_html(text)),
    )
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

const LOG_IN_AGAIN: &str = "Run `weft open` on the orchestrator's machine (or anywhere with its \
     API token) and open the link it prints. Links work once, for two minutes.";

async fn index(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let csrf = match session::session_cookie(&headers) {
        Some(id) => match state.web.sessions.csrf(id, now_ms()).await {
            Ok(csrf) => csrf,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    match csrf {
        // The token is 64 hex characters: nothing to escape.
        Some(csrf) => html(StatusCode::OK, INDEX_HTML.replace("{{CSRF}}", &csrf)),
        None => message(StatusCode::UNAUTHORIZED, "Log in to weft", LOG_IN_AGAIN),
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// Redeems a one-time login link: sets the session cookie and sends the browser to `/`.
async fn login(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    peer: Option<axum::Extension<crate::listen::Peer>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let ip = peer.map(|p| p.addr.ip());
    if let Some(ip) = ip
        && let Err(wait) = state.auth_limiter.check(ip)
    {
        let secs = crate::listen::limits::retry_after_secs(wait);
        let mut resp = message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins",
            &format!(
                "Too many login links that did not work came from this address. Try again in {secs} s."
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let new = match q.token.as_deref() {
        Some(t) => match state.web.sessions.redeem(t, now_ms()).await {
            Ok(new) => new,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    if new.is_none()
        && let Some(ip) = ip
    {
        state.auth_limiter.failed(ip);
    }
    let Some(new) = new else {
        return message(
            StatusCode::UNAUTHORIZED,
            "This login link does not work",
            &format!("It was used already or has expired. {LOG_IN_AGAIN}"),
        );
    };
    if let Some(old) = session::session_cookie(&headers)
        && let Err(e) = state.web.sessions.end(old).await
    {
        // The new session works; the old one expires on its own.
        tracing::warn!(error = %e, "cannot end the session a login replaced");
    }
    tracing::info!("web session started from a login link");
    let mut resp = html(StatusCode::SEE_OTHER, String::new());
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(v) = HeaderValue::from_str(&state.web.sessions.set_cookie(&new.id)) {
        h.insert(header::SET_COOKIE, v);
    }
    resp
}

/// Create a one-time login link for the web view (what `weft open` prints). Needs the API
/// token itself: a browser session cannot make more sessions.
#[utoipa::path(post, path = "/v1/ui/login-links",
    responses((status = 201, body = LoginLink),
              (status = 403, description = "`api_token_required`: called with a session cookie", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_login_link(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
) -> Result<(StatusCode, Json<LoginLink>), ApiError> {
    if auth != Auth::ApiToken {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api_token_required",
            "login links are made with the API token (`weft open`), not from a browser session",
        ));
    }
    let (token, expires_at_ms) = state.web.sessions.create_link(now_ms()).await?;
    Ok((
        StatusCode::CREATED,
        Json(LoginLink {
            path: format!("/login?token={token}"),
            expires_at_ms,
        }),
    ))
}

/// End the browser session whose cookie came with the call.
#[utoipa::path(post, path = "/v1/ui/logout", responses((status = 204)),
    security(("bearer" = [])))]
async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = session::session_cookie(&headers)
        && let Err(e) = state.web.sessions.end(id).await
    {
        return ApiError::from(e).into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&state.web.sessions.clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Where the web view draws each task and edge of a request's graph (computed with
/// layout-rs; `drawn: false` with a `reason` for graphs too large to draw).
#[utoipa::path(get, path = "/v1/requests/{id}/layout",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "The layout for the graph's current version"),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn graph_layout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = RequestId(id);
    let view = state.store.request_view(&id).await?.ok_or_else(|| {
        ApiError::not_found("request_not_found", format!("no request with id {id}"))
    })?;
    let key = (id, view.version);
    if let Some(l) = state.web.layouts.get(&key) {
        return Ok(Json(l).into_response());
    }
    let _slot = state
        .web
        .layout_slot
        .acquire()
        .await
        .map_err(|_| ApiError::from(crate::Error::EngineGone))?;
    // Someone may have laid it out while this call waited for the slot.
    if let Some(l) = state.web.layouts.get(&key) {
        return Ok(Json(l).into_response());
    }
    let version = view.version;
    let laid_out = match tokio::task::spawn_blocking(move || layout::layout(&view)).await {
        Ok(l) => l,
        Err(e) => {
            // layout-rs asserts on inputs it cannot handle; the page then lists the tasks.
            tracing::error!(error = %e, request = %key.0, "graph layout failed");
            layout::not_drawn(version, "the layout library failed on this graph".into())
        }
    };
    let laid_out = Arc::new(laid_out);
    state.web.layouts.insert(key, laid_out.clone());
    Ok(Json(laid_out).into_response())
}
