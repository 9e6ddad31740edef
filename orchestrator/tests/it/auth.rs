//! API token and Host checks.

use reqwest::StatusCode;

use crate::harness::Harness;

#[tokio::test]
async fn every_route_but_healthz_needs_the_api_token() {
    let h = Harness::start().await;
    let resp = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for path in [
        "/v1/requests",
        "/v1/devices",
        "/openapi.json",
        "/v1/requests/x",
    ] {
        let resp = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "missing_api_token");
        let resp = h
            .http
            .get(format!("{}{path}", h.base))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let resp = h
        .http
        .post(format!("{}/v1/devices", h.base))
        .json(&serde_json::json!({"name": "x", "kind": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(h.devices().await.is_empty());
}

#[tokio::test]
async fn foreign_host_header_is_refused() {
    let h = Harness::start().await;
    for host in ["evil.example", "evil.example:80", "127.0.0.1:1"] {
        let resp = h
            .http
            .get(format!("{}/v1/devices", h.base))
            .bearer_auth(&h.token)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "host_not_allowed");
    }
    let resp = h
        .http
        .get(format!("http://localhost:{}/healthz", h.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_token_file_is_created_in_the_data_dir() {
    let h = Harness::start().await;
    let on_disk = weft_orchestrator::token::read_api_token(&h.dir.path().join("data")).unwrap();
    assert_eq!(on_disk, h.token);
}

#[tokio::test]
async fn configured_api_token_is_used() {
    let h = Harness::start_with(|o| o.api_token = Some("s3cret-token".into())).await;
    assert_eq!(h.token, "s3cret-token");
    let (status, _) = h.get("/v1/devices").await;
    assert_eq!(status, StatusCode::OK);
}
