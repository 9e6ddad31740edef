//! Bad REST input: each case gets a clear error with a stable code, and nothing is lost.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Harness;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn malformed_bodies() {
    let h = Harness::start().await;
    let cases: &[(&[u8], &str)] = &[
        (b"{not json", "invalid_json"),
        (
            br#"{"text": "on laptop run \"x\"", "extra": 1}"#,
            "invalid_json",
        ),
        (br#"{"txt": "hi"}"#, "invalid_json"),
        (br#"{"text": 5}"#, "invalid_json"),
        (b"", "invalid_json"),
    ];
    for (body, want) in cases {
        let (status, resp) = h.post_raw("/v1/requests", body.to_vec()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(code(&resp), *want);
        assert!(!resp["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, resp) = h
        .post_raw("/v1/requests", br#"{"text": "x", "extra": 1}"#.to_vec())
        .await;
    assert!(resp["error"]["message"].as_str().unwrap().contains("extra"));
    // Nothing was created by any of them.
    let (_, list) = h.get("/v1/requests").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn empty_and_oversized_text() {
    let h = Harness::start().await;
    let (status, resp) = h.post("/v1/requests", &json!({"text": "   "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&resp), "empty_request");

    let big = format!("on laptop run \"{}\"", "x".repeat(20_000));
    let (status, resp) = h.post("/v1/requests", &json!({"text": big})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&resp), "request_too_large");

    let huge = "x".repeat(1024 * 1024);
    let (status, resp) = h.post("/v1/requests", &json!({"text": huge})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&resp), "body_too_large");
}

#[tokio::test]
async fn unknown_request_and_route() {
    let h = Harness::start().await;
    let (status, resp) = h.get("/v1/requests/no-such-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&resp), "request_not_found");
    let (status, resp) = h.get("/v1/requests/no-such-id/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&resp), "request_not_found");
    let (status, resp) = h.get("/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&resp), "not_found");
}

#[tokio::test]
async fn unknown_device_is_named() {
    let h = Harness::start().await;
    h.add_device("laptop", "laptop").await;
    let (status, resp) = h
        .post(
            "/v1/requests",
            &json!({"text": "on toaster run \"echo hi\""}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&resp), "unknown_device");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("toaster")
    );
}

#[tokio::test]
async fn unplannable_text_says_what_was_understood() {
    let h = Harness::start().await;
    h.add_device("laptop", "laptop").await;
    let (status, resp) = h
        .post(
            "/v1/requests",
            &json!({"text": "on laptop run \"echo a\" then make me a sandwich"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&resp), "unplannable");
    let msg = resp["error"]["message"].as_str().unwrap();
    assert!(msg.contains("sandwich"), "{msg}");
    assert!(msg.to_lowercase().contains("llm"), "{msg}");
}

#[tokio::test]
async fn device_registration_errors() {
    let h = Harness::start().await;
    h.add_device("laptop", "laptop").await;
    let (status, resp) = h
        .post("/v1/devices", &json!({"name": "laptop", "kind": "laptop"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&resp), "device_exists");
    let (status, resp) = h
        .post("/v1/devices", &json!({"name": "../etc", "kind": "laptop"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&resp), "invalid_device_name");
    let (status, resp) = h
        .post("/v1/devices", &json!({"name": "x", "kind": "Lap Top"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&resp), "invalid_device_kind");
    // The token is shown once and is not part of the device list.
    let (_, list) = h.get("/v1/devices").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none());
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let h = Harness::start().await;
    let (status, doc) = h.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/requests/{id}/events",
        "/v1/devices",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    let delete_task = &doc["paths"]["/v1/requests/{id}/tasks/{task_id}"]["delete"];
    assert_eq!(delete_task["operationId"], "delete_task");
    // The answers of the layers around the handlers are on every route they apply to.
    let submit = &doc["paths"]["/v1/requests"]["post"]["responses"];
    for status in ["400", "401", "413", "415", "421", "422", "429"] {
        assert!(submit.get(status).is_some(), "submit lacks {status}");
    }
    let health = &doc["paths"]["/healthz"]["get"]["responses"];
    assert!(health.get("401").is_none() && health.get("421").is_some());
    // Operation ids are unique, and a created request links to what can be done with it.
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "repeated operation ids: {ids:?}");
    let cancel = &doc["paths"]["/v1/requests"]["post"]["responses"]["201"]["links"]["cancel"];
    assert_eq!(
        *cancel,
        json!({"operationId": "cancel", "parameters": {"id": "$response.body#/id"}})
    );
    assert!(doc["components"]["schemas"].get("RequestView").is_some());
}

#[tokio::test]
async fn list_limit_out_of_range_is_refused_in_the_api_format() {
    let h = Harness::start().await;
    for query in ["limit=0", "limit=501", "limit=-1", "limit=x", "other=1"] {
        let (status, resp) = h.get(&format!("/v1/requests?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(code(&resp), "invalid_query", "{query}");
    }
    for query in ["limit=1", "limit=500", ""] {
        let (status, _) = h.get(&format!("/v1/requests?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}");
    }
}

/// An answer sent before the request's body was read to its end (too large, not JSON, no
/// token) says `Connection: close`: the rest of the body is still on the connection, which
/// the server closes after the answer. A client that reused it got an incomplete message
/// instead of an answer; told to close, it opens another. A refusal after the whole body was
/// read keeps the connection.
#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_closes_the_connection() {
    let h = Harness::start().await;
    // One connection at a time, so the next request would go on the refused one.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
        .build()
        .unwrap();
    let url = format!("{}/v1/requests", h.base);
    let over = vec![b' '; 4 << 20];
    let some = vec![b' '; 256 << 10];
    let cases = [
        (
            http.post(&url)
                .bearer_auth(&h.token)
                .header("content-type", "application/json")
                .body(over.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            http.post(&url)
                .bearer_auth(&h.token)
                .header("content-type", "text/plain")
                .body(some.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            http.post(&url)
                .header("content-type", "application/json")
                .body(some),
            StatusCode::UNAUTHORIZED,
            "missing_api_token",
        ),
    ];
    for (req, status, want) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{want}");
        assert_eq!(
            resp.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "{want}: {:?}",
            resp.headers()
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), want);
        // The same client's next request gets its answer, on a new connection.
        for _ in 0..3 {
            let health = http.get(format!("{}/healthz", h.base)).send().await;
            assert_eq!(health.unwrap().status(), StatusCode::OK, "after {want}");
        }
    }
    // Read to its end, then refused: the connection stays open.
    let resp = http
        .post(&url)
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body(over[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers().get("connection"), None);
}
