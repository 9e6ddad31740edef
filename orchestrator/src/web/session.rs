//! Browser sessions for the web view: one-time login links, the session cookie, and the
//! cross-site checks on state-changing calls made with that cookie.
//!
//! Everything is held in memory: a restart logs every browser out (run `weft open` again).
//! Only SHA-256 hashes of link tokens and session ids are kept, like every other secret here.
//!
//! Architecture invariant: a session is created only by redeeming a login link, and a login
//! link only by a caller holding the API token (`POST /v1/ui/login-links`). A link works once,
//! for [`LINK_TTL`].
//!
//! Architecture invariant: a request authenticated by the session cookie may change state
//! (any method but GET/HEAD) only if it carries the session's CSRF token in [`CSRF_HEADER`]
//! and an `Origin` equal to the server's own origin (and `Sec-Fetch-Site`, when sent, is
//! `same-origin`). The cookie is `HttpOnly; SameSite=Strict; Path=/`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, header};

use crate::{ApiError, now_ms, token};

/// The session cookie's name.
pub const COOKIE: &str = "weft_session";

/// The header in which the page sends its session's CSRF token.
pub const CSRF_HEADER: &str = "x-weft-csrf";

/// How long a login link can be redeemed.
pub const LINK_TTL: Duration = Duration::from_secs(120);

/// How long a session lasts (from login; there is no renewal).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// At most this many unredeemed links and live sessions are kept; the oldest go first.
const MAX_LINKS: usize = 64;
const MAX_SESSIONS: usize = 256;

/// How a request to an authenticated route was authenticated (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <api token>`.
    ApiToken,
    /// The web view's session cookie (CSRF-checked for state-changing methods).
    Session,
}

/// A session just created from a login link.
#[derive(Debug)]
pub struct NewSession {
    /// The cookie value (the only copy; the server keeps its hash).
    pub id: String,
}

#[derive(Debug)]
struct Session {
    csrf: String,
    expires_at_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Link token hash → expiry.
    links: HashMap<String, u64>,
    /// Session id hash → session.
    sessions: HashMap<String, Session>,
}

/// The server's login links and sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
    /// Served over TLS: the cookie is `Secure` and the page's origin is `https://`.
    secure: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Sessions {
    /// Sessions of a server that is served over TLS (`secure`) or not.
    pub fn new(secure: bool) -> Self {
        Self {
            inner: Mutex::default(),
            secure,
        }
    }

    /// The `Set-Cookie` value that stores a session in the browser.
    pub fn set_cookie(&self, session_id: &str) -> String {
        set_cookie(session_id, self.secure)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        clear_cookie(self.secure)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new one-time login link token and when it expires.
    pub fn create_link(&self, now: u64) -> (String, u64) {
        let tok = token::generate();
        let expires = now + millis(LINK_TTL);
        let mut inner = self.lock();
        inner.links.retain(|_, exp| *exp > now);
        if inner.links.len() >= MAX_LINKS
            && let Some(oldest) = inner
                .links
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(k, _)| k.clone())
        {
            inner.links.remove(&oldest);
        }
        inner.links.insert(token::hash(&tok), expires);
        (tok, expires)
    }

    /// Redeems a login link: the link is used up (valid or not), and a valid one yields a new
    /// session.
    pub fn redeem(&self, link: &str, now: u64) -> Option<NewSession> {
        let mut inner = self.lock();
        let expires = inner.links.remove(&token::hash(link))?;
        if expires <= now {
            return None;
        }
        inner.sessions.retain(|_, s| s.expires_at_ms > now);
        if inner.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = inner
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_at_ms)
                .map(|(k, _)| k.clone())
        {
            inner.sessions.remove(&oldest);
        }
        let id = token::generate();
        inner.sessions.insert(
            token::hash(&id),
            Session {
                csrf: token::generate(),
                expires_at_ms: now + millis(SESSION_TTL),
            },
        );
        Some(NewSession { id })
    }

    /// The CSRF token of a live session.
    pub fn csrf(&self, session_id: &str, now: u64) -> Option<String> {
        let inner = self.lock();
        inner
            .sessions
            .get(&token::hash(session_id))
            .filter(|s| s.expires_at_ms > now)
            .map(|s| s.csrf.clone())
    }

    /// Ends a session (log out).
    pub fn end(&self, session_id: &str) {
        self.lock().sessions.remove(&token::hash(session_id));
    }

    /// Authenticates a request by its session cookie. `None`: the request has no session
    /// cookie (the caller answers as for a missing API token).
    pub fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Result<Auth, ApiError>> {
        let id = session_cookie(headers)?;
        let Some(csrf) = self.csrf(id, now_ms()) else {
            return Some(Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the web session has expired or the server restarted; run `weft open` for a new login link",
            )));
        };
        if method == Method::GET || method == Method::HEAD {
            return Some(Ok(Auth::Session));
        }
        Some(check_same_origin(headers, &csrf, self.secure).map(|()| Auth::Session))
    }
}

/// The session id from the request's `Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that stores a session in the browser (`Secure` under TLS).
fn set_cookie(session_id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

fn forbidden(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// The cross-site checks for a state-changing call authenticated by the cookie: the request
/// comes from a page of this very origin (scheme included: `https` when `secure`), which could
/// read the CSRF token.
fn check_same_origin(headers: &HeaderMap, csrf: &str, secure: bool) -> Result<(), ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // The Host header was already checked against the server's own names.
    let host = text(header::HOST.as_str()).unwrap_or_default();
    let scheme = if secure { "https://" } else { "http://" };
    let same = text(header::ORIGIN.as_str()).is_some_and(|origin| {
        origin
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && !host.is_empty()
            && origin[scheme.len()..].eq_ignore_ascii_case(host)
    });
    if !same {
        return Err(forbidden(
            "cross_site_request",
            "a state-changing call with the session cookie must come from this server's own page (Origin)",
        ));
    }
    if text("sec-fetch-site").is_some_and(|s| s != "same-origin") {
        return Err(forbidden(
            "cross_site_request",
            "a state-changing call with the session cookie must come from this server's own page (Sec-Fetch-Site)",
        ));
    }
    match text(CSRF_HEADER) {
        Some(t) if constant_time_eq(t.as_bytes(), csrf.as_bytes()) => Ok(()),
        Some(_) => Err(forbidden("bad_csrf_token", "wrong CSRF token")),
        None => Err(forbidden(
            "missing_csrf_token",
            "a state-changing call with the session cookie must send the page's CSRF token",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_link_works_once_and_only_before_it_expires() {
        let s = Sessions::default();
        let (link, expires) = s.create_link(1_000);
        assert_eq!(expires, 1_000 + millis(LINK_TTL));
        assert!(s.redeem("not-a-link", 1_001).is_none());
        let session = s.redeem(&link, 1_001).expect("a fresh link works");
        assert!(s.redeem(&link, 1_002).is_none(), "a link works only once");
        assert!(s.csrf(&session.id, 1_003).is_some());
        assert!(s.csrf(&session.id, 1_001 + millis(SESSION_TTL)).is_none());

        let (late, expires) = s.create_link(5_000);
        assert!(
            s.redeem(&late, expires).is_none(),
            "expired links do not work"
        );
        assert!(
            s.redeem(&late, 5_001).is_none(),
            "and are used up by the attempt"
        );
    }

    #[test]
    fn links_and_sessions_are_bounded() {
        let s = Sessions::default();
        let links: Vec<String> = (0..MAX_LINKS + 5)
            .map(|i| s.create_link(1_000 + i as u64).0)
            .collect();
        assert!(s.lock().links.len() <= MAX_LINKS);
        assert!(
            s.redeem(&links[0], 2_000).is_none(),
            "the oldest link was dropped"
        );
        assert!(s.redeem(&links[MAX_LINKS + 4], 2_000).is_some());
        for i in 0..MAX_SESSIONS + 5 {
            let (l, _) = s.create_link(3_000);
            s.redeem(&l, 3_000 + i as u64).unwrap();
        }
        assert!(s.lock().sessions.len() <= MAX_SESSIONS);
    }

    #[test]
    fn only_hashes_are_kept() {
        let s = Sessions::default();
        let (link, _) = s.create_link(1);
        assert!(!s.lock().links.contains_key(&link));
        let session = s.redeem(&link, 2).unwrap();
        assert!(!s.lock().sessions.contains_key(&session.id));
        s.end(&session.id);
        assert!(s.csrf(&session.id, 3).is_none());
    }

    #[test]
    fn cookie_parsing() {
        let h = headers(&[("cookie", "a=b; weft_session=abc ; c=d")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        let h = headers(&[("cookie", "a=b"), ("cookie", "weft_session=xyz")]);
        assert_eq!(session_cookie(&h), Some("xyz"));
        let h = headers(&[("cookie", "xweft_session=abc; weft_session=")]);
        assert_eq!(session_cookie(&h), None);
        assert!(set_cookie("abc", false).contains("HttpOnly; SameSite=Strict; Path=/"));
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie(true).ends_with("; Secure"));
    }

    #[test]
    fn state_changing_calls_need_origin_and_csrf() {
        let ok = [
            ("host", "127.0.0.1:7600"),
            ("origin", "http://127.0.0.1:7600"),
            ("sec-fetch-site", "same-origin"),
            ("x-weft-csrf", "tok"),
        ];
        assert!(check_same_origin(&headers(&ok), "tok", false).is_ok());
        // Under TLS the page's origin is https://: the same host over http is another origin.
        assert_eq!(
            check_same_origin(&headers(&ok), "tok", true)
                .unwrap_err()
                .code,
            "cross_site_request"
        );
        let tls = [ok[0], ("origin", "https://127.0.0.1:7600"), ok[2], ok[3]];
        assert!(check_same_origin(&headers(&tls), "tok", true).is_ok());
        assert!(check_same_origin(&headers(&tls), "tok", false).is_err());
        let code = |pairs: &[(&'static str, &str)]| {
            check_same_origin(&headers(pairs), "tok", false)
                .unwrap_err()
                .code
        };
        assert_eq!(code(&ok[..0]), "cross_site_request");
        assert_eq!(
            code(&[ok[0], ("origin", "http://evil.example"), ok[2], ok[3]]),
            "cross_site_request"
        );
        assert_eq!(
            code(&[ok[0], ("origin", "null"), ok[3]]),
            "cross_site_request"
        );
        assert_eq!(
            code(&[ok[0], ok[1], ("sec-fetch-site", "cross-site"), ok[3]]),
            "cross_site_request"
        );
        assert_eq!(code(&ok[..3]), "missing_csrf_token");
        assert_eq!(
            code(&[ok[0], ok[1], ok[2], ("x-weft-csrf", "tok2")]),
            "bad_csrf_token"
        );
    }
}
