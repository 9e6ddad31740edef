//! TLS on the one listener: a generated certificate pinned by its fingerprint, plain-text
//! clients told what to use, the session cookie `Secure`, the certificate read again without
//! dropping connections.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use weft_agent::tls::{Fingerprint, client_config};
use weft_orchestrator::listen::tls::{CERT_FILE, CertSource};

use crate::harness::Harness;

/// A server with TLS on, its certificate generated into its data directory.
pub async fn tls_harness() -> Harness {
    Harness::start_with(|o| {
        o.tls = Some(CertSource::Generated {
            dir: o.data_dir.clone(),
            names: vec!["localhost".into(), "127.0.0.1".into()],
        })
    })
    .await
}

/// An HTTPS client that accepts exactly the certificate `pin`.
pub fn pinned(pin: Fingerprint) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls((*client_config(Some(pin))).clone())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The fingerprint of the certificate the server made.
pub fn fingerprint_of(h: &Harness) -> Fingerprint {
    let pem = std::fs::read(h.dir.path().join("data").join(CERT_FILE)).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    Fingerprint::of(&der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_the_web_view_are_served_over_tls_to_a_pinned_client() {
    let h = tls_harness().await;
    let fp = fingerprint_of(&h);
    let https = format!("https://{}", h.addr);
    let client = pinned(fp);
    let health: serde_json::Value = client
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["tls"]["fingerprint"], fp.to_string());
    let resp = client
        .post(format!("{https}/v1/devices"))
        .bearer_auth(&h.token)
        .json(&json!({"name": "laptop", "kind": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Under TLS the session cookie is Secure.
    let link: serde_json::Value = client
        .post(format!("{https}/v1/ui/login-links"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let no_redirect = reqwest::Client::builder()
        .use_preconfigured_tls((*client_config(Some(fp))).clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirect
        .get(format!("{https}{}", link["path"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );

    // Another certificate's fingerprint: refused, naming both; nothing falls back to http.
    let other = Fingerprint::of(b"another certificate");
    let err = pinned(other)
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains(&fp.to_string()) && text.contains(&other.to_string()),
        "{text}"
    );
    // Without a pin the self-signed certificate is not trusted.
    let unpinned = reqwest::Client::builder()
        .use_preconfigured_tls((*client_config(None)).clone())
        .build()
        .unwrap();
    assert!(
        unpinned
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err()
    );

    // A plain-text client is told to use https://, and nothing else happens.
    let resp = h
        .http
        .get(format!("{}/v1/devices", h.base))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("https://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_is_taken_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), c.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), c.signing_key.serialize_pem()).unwrap();
        Fingerprint::of(c.cert.der())
    };
    let first = make("one");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let h = Harness::start_with(|o| {
        o.tls = Some(CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
    })
    .await;
    let https = format!("https://{}", h.addr);
    // A kept-alive connection made with the first certificate.
    let old = pinned(first);
    assert!(old.get(format!("{https}/healthz")).send().await.is_ok());
    let second = make("two");
    // The server reads them again (what SIGHUP does in `weft serve`).
    assert_eq!(h.reload_tls(), second);
    let new = pinned(second);
    let health: serde_json::Value = new
        .get(format!("{https}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["tls"]["fingerprint"], second.to_string());
    // The old connection still works; a new one pinned to the old certificate does not.
    let resp = old.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh_old = pinned(first);
    assert!(
        fresh_old
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err()
    );
}
