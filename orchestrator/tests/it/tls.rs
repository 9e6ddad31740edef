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

/// Runs `weft` with `args` (and `env`) to its end, at most 20 s: (exit code, stdout, stderr).
pub async fn weft(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(args).env("RUST_LOG", "warn").kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("weft did not finish in time")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An agent process that should not get in: what it says on stderr within `wait`.
async fn refused_agent(args: &[&str], token: &str, wait: Duration) -> (Option<i32>, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("agent")
        .args(args)
        .env("WEFT_DEVICE_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let code = match tokio::time::timeout(wait, child.wait()).await {
        Ok(status) => status.unwrap().code(),
        Err(_) => {
            child.kill().await.unwrap();
            None
        }
    };
    let mut err = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    (code, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enrolled_with_the_fingerprint_accept_exactly_that_certificate() {
    let h = tls_harness().await;
    let fp = fingerprint_of(&h);
    let https = format!("https://{}", h.addr);
    // `weft device add` over https, pinned: the enrollment line carries the fingerprint.
    let (code, out, err) = weft(
        &[
            "device", "add", "laptop", "--kind", "laptop", "--server", &https,
        ],
        &[
            ("WEFT_API_TOKEN", &h.token),
            ("WEFT_SERVER_FINGERPRINT", &fp.to_string()),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("--server {https} --server-fingerprint {fp} ")),
        "{out}"
    );
    let token = out
        .split("WEFT_DEVICE_TOKEN=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The CLI refuses another certificate, naming both fingerprints.
    let other = Fingerprint::of(b"not the server's");
    let (code, _, err) = weft(
        &["devices", "--server", &https],
        &[
            ("WEFT_API_TOKEN", &h.token),
            ("WEFT_SERVER_FINGERPRINT", &other.to_string()),
        ],
    )
    .await;
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&fp.to_string()) && err.contains(&other.to_string()),
        "{err}"
    );

    let dirs = |name: &str| {
        vec![
            "--workdir".to_owned(),
            h.dir.path().join("w").join(name).display().to_string(),
            "--state-dir".to_owned(),
            h.dir.path().join("s").join(name).display().to_string(),
        ]
    };
    let mut args: Vec<String> = ["--server", &https, "--name", "laptop", "--kind", "laptop"]
        .map(str::to_owned)
        .to_vec();
    args.extend(dirs("laptop"));
    // A wrong fingerprint: never connects, says which certificate it saw.
    let mut wrong = args.clone();
    wrong.extend(["--server-fingerprint".to_owned(), other.to_string()]);
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let (_, err) = refused_agent(&wrong, &token, Duration::from_secs(2)).await;
    assert!(
        err.contains(&fp.to_string()) && err.contains(&other.to_string()),
        "{err}"
    );
    let client = pinned(fp);
    let online = || async {
        let devices: Vec<weft_protocol::rest::DeviceView> = client
            .get(format!("{https}/v1/devices"))
            .bearer_auth(&h.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        devices
            .iter()
            .any(|d| d.status == weft_protocol::rest::DeviceStatus::Online)
    };
    assert!(!online().await);
    // Plain http:// to the TLS server: a configuration error, the process ends.
    let mut plain = args.clone();
    plain[1] = format!("http://{}", h.addr);
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    let (code, err) = refused_agent(&plain, &token, Duration::from_secs(10)).await;
    assert!(code.is_some_and(|c| c != 0), "{code:?} {err}");
    assert!(
        err.contains("TLS only") && err.contains("https://"),
        "{err}"
    );
    // A malformed fingerprint: refused before connecting, naming the setting.
    let mut bad = args.clone();
    bad.extend(["--server-fingerprint".to_owned(), "sha256:123".to_owned()]);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (code, err) = refused_agent(&bad, &token, Duration::from_secs(10)).await;
    assert!(code.is_some_and(|c| c != 0), "{code:?} {err}");
    assert!(err.contains("server_fingerprint"), "{err}");

    // The right fingerprint: the agent connects over wss:// and runs a request.
    let mut good = args.clone();
    good.extend(["--server-fingerprint".to_owned(), fp.to_string()]);
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("agent")
        .args(&good)
        .env("WEFT_DEVICE_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !online().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent did not come online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, out, err) = weft(
        &[
            "submit",
            "--watch",
            "--server",
            &https,
            r#"on laptop run "echo over tls""#,
        ],
        &[
            ("WEFT_API_TOKEN", &h.token),
            ("WEFT_SERVER_FINGERPRINT", &fp.to_string()),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("over tls"), "{out}");
    agent.kill().await.unwrap();
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_weft_serve_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let missing = dir.path().join("missing.pem").display().to_string();
    let data = dir.path().display().to_string();
    let db = dir.path().join("weft.db").display().to_string();
    let (code, _, err) = weft(
        &[
            "serve",
            "--listen",
            &listen,
            "--db",
            &db,
            "--data-dir",
            &data,
            "--tls-cert",
            &missing,
            "--tls-key",
            &missing,
        ],
        &[],
    )
    .await;
    assert!(code.is_some_and(|c| c != 0), "{err}");
    assert!(
        err.contains("--tls-cert") && err.contains("missing.pem"),
        "{err}"
    );
    assert!(std::net::TcpStream::connect(&listen).is_err());
    let (code, _, err) = weft(&["serve", "--listen", &listen, "--tls-cert", &missing], &[]).await;
    assert!(
        code.is_some_and(|c| c != 0) && err.contains("--tls-key"),
        "{err}"
    );
}
