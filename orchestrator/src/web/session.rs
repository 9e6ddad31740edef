//! Browser sessions for the web view: one-time login links, the session cookie, and the
//! cross-site checks on state-changing calls made with that cookie.
//!
//! Links and sessions are stored (`store/web_sessions.rs`): a restart or a takeover keeps
//! every browser logged in, and a link made through the leader works on a standby. Only
//! SHA-256 hashes of link tokens and session ids are kept, like every other secret here.
//!
//! Architecture invariant: a session is created only by redeeming a login link, and a login
//! link only by a caller holding the API token (`POST /v1/ui/login-links`). A link works once,
//! for [`LINK_TTL`].
//!
//! Architecture invariant: a request authenticated by the session cookie may change state
//! (any method but GET/HEAD) only if it carries the session's CSRF token in [`CSRF_HEADER`]
//! and an `Origin` equal to the server's own origin (and `Sec-Fetch-Site`, when sent, is
//! `same-origin`). The cookie is `HttpOnly; SameSite=Strict; Path=/`.

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, header};

use crate::store::Store;
use crate::{ApiError, Error, now_ms, token};

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
    /// The cookie value (the only copy; the store keeps its hash).
    pub id: String,
}

/// The server's login links and sessions, kept in its store.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    /// Served over TLS: the cookie is `Secure` and the page's origin is `https://`.
    secure: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Sessions {
    /// The sessions in `store` of a server that is served over TLS (`secure`) or not.
    pub fn new(store: Store, secure: bool) -> Self {
        Self { store, secure }
    }

    /// The `Set-Cookie` value that stores a session in the browser.
    pub fn set_cookie(&self, session_id: &str) -> String {
        set_cookie(session_id, self.secure)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        clear_cookie(self.secure)
    }

    /// A new one-time login link token and when it expires.
    pub async fn create_link(&self, now: u64) -> Result<(String, u64), Error> {
        let tok = token::generate();
        let expires = now + millis(LINK_TTL);
        self.store
            .add_login_link(&token::hash(&tok), expires, now, MAX_LINKS)
            .await?;
        Ok((tok, expires))
    }

    /// Redeems a login link: the link is used up (valid or not), and a valid one yields a new
    /// session.
    pub async fn redeem(&self, link: &str, now: u64) -> Result<Option<NewSession>, Error> {
        if !self.store.take_login_link(&token::hash(link), now).await? {
            return Ok(None);
        }
        let id = token::generate();
        self.store
            .add_web_session(
                &token::hash(&id),
                &token::generate(),
                now + millis(SESSION_TTL),
                now,
                MAX_SESSIONS,
            )
            .await?;
        Ok(Some(NewSession { id }))
    }

    /// The CSRF token of a live session.
    pub async fn csrf(&self, session_id: &str, now: u64) -> Result<Option<String>, Error> {
        self.store
            .web_session_csrf(&token::hash(session_id), now)
            .await
    }

    /// Ends a session (log out).
    pub async fn end(&self, session_id: &str) -> Result<(), Error> {
        self.store.end_web_session(&token::hash(session_id)).await
    }

    /// Authenticates a request by its session cookie. `None`: the request has no session
    /// cookie (the caller answers as for a missing API token).
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Result<Auth, ApiError>> {
        let id = session_cookie(headers)?;
        let csrf = match self.csrf(id, now_ms()).await {
            Ok(Some(csrf)) => csrf,
            Ok(None) => {
                return Some(Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_expired",
                    "the web session has expired or ended; run `weft open` for a new login link",
                )));
            }
            Err(e) => return Some(Err(e.into())),
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

    async fn sessions() -> Sessions {
        Sessions::new(Store::open("sqlite::memory:").await.unwrap(), false)
    }

    #[tokio::test]
    async fn a_link_works_once_and_only_before_it_expires() {
        let s = sessions().await;
        let (link, expires) = s.create_link(1_000).await.unwrap();
        assert_eq!(expires, 1_000 + millis(LINK_TTL));
        assert!(s.redeem("not-a-link", 1_001).await.unwrap().is_none());
        let session = s
            .redeem(&link, 1_001)
            .await
            .unwrap()
            .expect("a fresh link works");
        assert!(
            s.redeem(&link, 1_002).await.unwrap().is_none(),
            "a link works only once"
        );
        assert!(s.csrf(&session.id, 1_003).await.unwrap().is_some());
        assert!(
            s.csrf(&session.id, 1_001 + millis(SESSION_TTL))
                .await
                .unwrap()
                .is_none()
        );

        let (late, expires) = s.create_link(5_000).await.unwrap();
        assert!(
            s.redeem(&late, expires).await.unwrap().is_none(),
            "expired links do not work"
        );
        assert!(
            s.redeem(&late, 5_001).await.unwrap().is_none(),
            "and are used up by the attempt"
        );
    }

    #[tokio::test]
    async fn links_and_sessions_are_bounded() {
        let s = sessions().await;
        let mut links = Vec::new();
        for i in 0..MAX_LINKS + 5 {
            links.push(s.create_link(1_000 + i as u64).await.unwrap().0);
        }
        assert_eq!(s.store.web_counts().await.0, MAX_LINKS as i64);
        assert!(
            s.redeem(&links[0], 2_000).await.unwrap().is_none(),
            "the oldest link was dropped"
        );
        assert!(
            s.redeem(&links[MAX_LINKS + 4], 2_000)
                .await
                .unwrap()
                .is_some()
        );
        for i in 0..MAX_SESSIONS + 5 {
            let (l, _) = s.create_link(3_000).await.unwrap();
            s.redeem(&l, 3_000 + i as u64).await.unwrap().unwrap();
        }
        assert_eq!(s.store.web_counts().await.1, MAX_SESSIONS as i64);
    }

    #[tokio::test]
    async fn only_hashes_are_stored_and_a_session_outlives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weft.db");
        let s = Sessions::new(Store::open(db.to_str().unwrap()).await.unwrap(), false);
        let (link, _) = s.create_link(1).await.unwrap();
        let session = s.redeem(&link, 2).await.unwrap().unwrap();
        let csrf = s.csrf(&session.id, 3).await.unwrap().unwrap();
        s.store.close().await;
        // The database and whatever WAL or journal is beside it.
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let raw = std::fs::read(file.unwrap().path()).unwrap();
            for secret in [&link, &session.id] {
                assert!(
                    !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a token is stored in the clear"
                );
            }
        }
        // As after a restart: another store on the same file knows the session.
        let s = Sessions::new(Store::open(db.to_str().unwrap()).await.unwrap(), false);
        assert_eq!(s.csrf(&session.id, 4).await.unwrap(), Some(csrf));
        s.end(&session.id).await.unwrap();
        assert!(s.csrf(&session.id, 5).await.unwrap().is_none());
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
