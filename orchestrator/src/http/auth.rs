//! The layers in front of the handlers: the `Host` check (every route) and the API-token
//! middleware (every protected route: the API token, or a web view session with its CSRF
//! checks), with its limit on failed authentications per address.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::listen::Peer;
use crate::listen::limits::retry_after_secs;
use crate::web::Auth;
use crate::{ApiError, token};

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

/// Refuses requests whose `Host` is not one of this server's addresses (DNS rebinding).
pub(super) async fn check_host(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
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

/// Lets a request through with the API token or a web view session (an [`Auth`] extension
/// tells the handler which); refuses it otherwise.
pub(super) async fn require_api_token(
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
        Some(t) if token::matches(t.trim(), &state.api_token_hash) => Some(Ok(Auth::ApiToken)),
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
        None => {
            state
                .web
                .sessions
                .authenticate(req.method(), req.headers())
                .await
        }
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
