//! The web view over plain HTTP: login links, the session cookie, CSRF and Origin checks, the
//! Host check, the graph layout and the live device stream. (The page itself is tested in a
//! real browser: `tests/browser/`.)

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::harness::{Harness, WAIT};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Follows a fresh login link; returns the session cookie (`weft_session=…`).
async fn log_in(h: &Harness) -> String {
    let (status, link) = h.post("/v1/ui/login-links", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let path = link["path"].as_str().unwrap();
    assert!(path.starts_with("/login?token="), "{path}");
    let resp = no_redirects()
        .get(format!("{}{path}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/");
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    set.split(';').next().unwrap().to_owned()
}

/// The CSRF token the page gets, read from the page.
async fn csrf_of(h: &Harness, cookie: &str) -> String {
    let page = h
        .http
        .get(format!("{}/", h.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page
        .find(r#"name="weft-csrf" content=""#)
        .expect("no CSRF meta tag")
        + r#"name="weft-csrf" content=""#.len();
    page[start..start + 64].to_owned()
}

/// A POST with the session cookie (and no API token) and the given extra headers.
async fn cookie_post(
    h: &Harness,
    cookie: &str,
    path: &str,
    body: &Value,
    headers: &[(&'static str, &str)],
) -> (StatusCode, Value) {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    let resp = h
        .http
        .post(format!("{}{path}", h.base))
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .headers(map)
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_login_link_makes_one_session_and_the_page_needs_it() {
    let h = Harness::start().await;
    // Without a session the page says how to get one.
    let resp = h.http.get(format!("{}/", h.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("weft open"));

    let (status, link) = h.post("/v1/ui/login-links", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let url = format!("{}{}", h.base, link["path"].as_str().unwrap());
    let first = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let again = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a link works once"
    );
    assert!(again.headers().get("set-cookie").is_none());
    let wrong = no_redirects()
        .get(format!("{}/login?token=0000", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let page = h
        .http
        .get(format!("{}/", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.text().await.unwrap().contains("/assets/app.js"));

    // The cookie authenticates reads of the API.
    let resp = h
        .http
        .get(format!("{}/v1/devices", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // An unknown session is told to log in again, not treated as a missing token.
    let resp = h
        .http
        .get(format!("{}/v1/devices", h.base))
        .header("cookie", "weft_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_expired");

    // Assets need no session and carry no data.
    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let resp = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
    }
    h.stop().await;
}

/// The status of `GET /v1/devices` with the session cookie.
async fn devices(h: &Harness, cookie: &str) -> StatusCode {
    h.http
        .get(format!("{}/v1/devices", h.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

/// Sessions and links are stored: a restart keeps the browser logged in (same CSRF token), an
/// unredeemed link still works once after it, and a logout ends the session for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_and_a_link_outlive_a_restart_and_a_logout_ends_the_session() {
    let mut h = Harness::start().await;
    let cookie = log_in(&h).await;
    let csrf = csrf_of(&h, &cookie).await;
    let (status, link) = h.post("/v1/ui/login-links", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let link = format!("{}{}", h.base, link["path"].as_str().unwrap());
    h.restart().await;

    assert_eq!(csrf_of(&h, &cookie).await, csrf, "the same session");
    assert_eq!(devices(&h, &cookie).await, StatusCode::OK);
    let redeemed = no_redirects().get(&link).send().await.unwrap();
    assert_eq!(
        redeemed.status(),
        StatusCode::SEE_OTHER,
        "the link made before"
    );
    let again = no_redirects().get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "still only once");

    let out = h
        .http
        .post(format!("{}/v1/ui/logout", h.base))
        .header("cookie", &cookie)
        .header("origin", &h.base)
        .header("x-weft-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    h.restart().await;
    assert_eq!(devices(&h, &cookie).await, StatusCode::UNAUTHORIZED);
    h.stop().await;
}

#[tokio::test]
async fn state_changing_calls_with_the_cookie_need_the_csrf_token_and_this_origin() {
    let h = Harness::with_three_agents().await;
    let cookie = log_in(&h).await;
    let csrf = csrf_of(&h, &cookie).await;
    let origin = h.base.clone();
    let body = json!({"text": r#"on laptop run "echo hi""#});
    let cases: [(&[(&'static str, &str)], &str); 6] = [
        // A cross-site form or fetch: the browser sends the cookie and the other origin.
        (&[("origin", "http://evil.example")], "cross_site_request"),
        (
            &[("origin", "http://evil.example"), ("x-weft-csrf", &csrf)],
            "cross_site_request",
        ),
        // No Origin at all.
        (&[("x-weft-csrf", &csrf)], "cross_site_request"),
        (
            &[
                ("origin", &origin),
                ("sec-fetch-site", "same-site"),
                ("x-weft-csrf", &csrf),
            ],
            "cross_site_request",
        ),
        (&[("origin", &origin)], "missing_csrf_token"),
        (
            &[("origin", &origin), ("x-weft-csrf", "0123")],
            "bad_csrf_token",
        ),
    ];
    for (headers, code) in cases {
        let (status, resp) = cookie_post(&h, &cookie, "/v1/requests", &body, headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {resp}");
        assert_eq!(resp["error"]["code"], code, "{headers:?}");
    }
    let (status, list) = h.get("/v1/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]), "a refused call created a request");

    // From the page itself: accepted.
    let (status, created) = cookie_post(
        &h,
        &cookie,
        "/v1/requests",
        &body,
        &[
            ("origin", &origin),
            ("sec-fetch-site", "same-origin"),
            ("x-weft-csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // The API token keeps working without any of this.
    let (status, _) = h.post("/v1/requests", &body).await;
    assert_eq!(status, StatusCode::CREATED);

    // A session cannot mint login links, even from the page.
    let (status, resp) = cookie_post(
        &h,
        &cookie,
        "/v1/ui/login-links",
        &json!({}),
        &[("origin", &origin), ("x-weft-csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(resp["error"]["code"], "api_token_required");
    // Nor can anyone without credentials.
    let resp = h
        .http
        .post(format!("{}/v1/ui/login-links", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Logging out ends the session.
    let (status, _) = cookie_post(
        &h,
        &cookie,
        "/v1/ui/logout",
        &json!({}),
        &[("origin", &origin), ("x-weft-csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let resp = h
        .http
        .get(format!("{}/", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    h.stop().await;
}

#[tokio::test]
async fn the_host_check_covers_the_web_view() {
    let h = Harness::start().await;
    let cookie = log_in(&h).await;
    for path in [
        "/",
        "/login?token=x",
        "/assets/app.js",
        "/v1/devices/events",
    ] {
        let resp = h
            .http
            .get(format!("{}{path}", h.base))
            .header("host", "evil.example")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn the_layout_places_every_task_and_edge() {
    let h = Harness::with_three_agents().await;
    let v = h
        .submit(r#"on laptop run "echo a" and on server run "echo b" then on phone run "echo c""#)
        .await;
    let (status, layout) = h.get(&format!("/v1/requests/{}/layout", v.id)).await;
    assert_eq!(status, StatusCode::OK, "{layout}");
    assert_eq!(layout["drawn"], true);
    assert_eq!(layout["version"], 1);
    let ids: Vec<&str> = layout["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t1", "t2", "t3"]);
    assert_eq!(layout["edges"].as_array().unwrap().len(), 2);
    let x = |i: usize| layout["nodes"][i]["x"].as_f64().unwrap();
    assert!(x(0) < x(2) && x(1) < x(2), "left to right: {layout}");
    let (status, _) = h.get("/v1/requests/nope/layout").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.stop().await;
}

/// Follows an SSE stream (`/v1/devices/events`, `/v1/events`).
pub async fn follow(h: &Harness, path: &str) -> reqwest::Response {
    let resp = h
        .http
        .get(format!("{}{path}", h.base))
        .bearer_auth(&h.token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

/// Reads SSE events (`event` name, `data` JSON) from a streaming response until `done` holds.
pub async fn read_events(
    resp: &mut reqwest::Response,
    buf: &mut String,
    mut done: impl FnMut(&str, &Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if done(name, &serde_json::from_str(data).unwrap()) {
                return;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("timed out waiting for an event")
            .unwrap()
            .expect("the stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn device_changes_stream_live() {
    let mut h = Harness::with_three_agents().await;
    let mut resp = follow(&h, "/v1/devices/events").await;
    let mut buf = String::new();
    read_events(&mut resp, &mut buf, |name, data| {
        assert_eq!(name, "devices");
        assert_eq!(data.as_array().unwrap().len(), 3);
        true
    })
    .await;

    // Running work shows in the device's view, and so does the agent going away.
    let v = h.submit(r#"on phone run "echo hi""#).await;
    h.wait_done(v.id.as_str()).await;
    let mut saw_running = false;
    read_events(&mut resp, &mut buf, |name, d| {
        assert_eq!(name, "device");
        if d["name"] == "phone" && d["running"] == 1 {
            saw_running = true;
        }
        saw_running && d["name"] == "phone" && d["running"] == 0
    })
    .await;
    h.stop_agent(2).await.unwrap(); // phone
    read_events(&mut resp, &mut buf, |_, d| {
        d["name"] == "phone" && d["status"] == "offline"
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn every_request_s_events_stream_live() {
    let h = Harness::with_three_agents().await;
    let mut resp = follow(&h, "/v1/events").await;
    let mut buf = String::new();
    let a = h.submit(r#"on laptop run "echo a""#).await;
    let b = h.submit(r#"on server run "echo b""#).await;
    let mut ended = Vec::new();
    read_events(&mut resp, &mut buf, |name, ev| {
        if name == "request_status" && ev["status"] == "succeeded" {
            ended.push(ev["request_id"].as_str().unwrap().to_owned());
        }
        ended.len() == 2
    })
    .await;
    ended.sort();
    let mut want = vec![a.id.to_string(), b.id.to_string()];
    want.sort();
    assert_eq!(ended, want);
    h.stop().await;
}

#[tokio::test]
async fn openapi_lists_the_web_view_routes() {
    let h = Harness::start().await;
    let (status, doc) = h.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/ui/login-links",
        "/v1/requests/{id}/layout",
        "/v1/devices/events",
        "/v1/events",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    h.stop().await;
}

#[tokio::test]
async fn weft_open_prints_a_link_that_logs_in() {
    let h = Harness::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["open", "--no-browser", "--server", &h.base])
        .env("WEFT_API_TOKEN", &h.token)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("{}/login?token=", h.base)),
        "{url}"
    );
    let resp = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers().get("set-cookie").is_some());

    // Without the API token there is no link.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["open", "--no-browser", "--server", &h.base])
        .env("WEFT_API_TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad_api_token"),
        "{out:?}"
    );
    h.stop().await;
}
