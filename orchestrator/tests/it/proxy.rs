//! Behind a real reverse proxy: Debian's nginx, run with the very configuration README gives,
//! terminating TLS on a free loopback port and passing `/weft/` to a plain-HTTP `weft serve`.
//! A device is enrolled through it, requests run through it (REST, the agent's WebSocket, the
//! CLI's event stream), and nginx is restarted while a task runs: the agent reconnects and its
//! result is applied once, with no attempt lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use weft_agent::tls::Fingerprint;
use weft_protocol::rest::{DeviceStatus, DeviceView, RequestView};
use weft_protocol::{AttemptStatus, RequestStatus};

use crate::harness::Harness;
use crate::pg::is_root;
use crate::tls::{pinned, weft};

/// The nginx binary: on PATH or where Debian puts it.
fn nginx_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file());
    let bin = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        bin.is_file(),
        "nginx is not installed: README's test command (.ci/test) installs Debian's `nginx`"
    );
    bin
}

/// README's nginx snippet (the fenced block after its `<!-- nginx: tested by … -->` line).
fn readme_snippet() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let from = readme
        .find("<!-- nginx: tested by orchestrator/tests/it/proxy.rs -->")
        .expect("README's nginx snippet is marked");
    let block = &readme[from..];
    let start = block.find("```nginx\n").unwrap() + "```nginx\n".len();
    let end = block[start..].find("```").unwrap();
    block[start..start + end].to_owned()
}

/// A running nginx in its own directory, stopped when dropped.
struct Nginx {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Writes the configuration: README's server block for `127.0.0.1:port` with the test's
    /// certificate, in front of `upstream`.
    async fn start(dir: &Path, upstream: std::net::SocketAddr) -> (Self, Fingerprint) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let fp = Fingerprint::of(made.cert.der());
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = readme_snippet()
            .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
            .replace("/etc/ssl/weft.example.com.pem", &cert.display().to_string())
            .replace("/etc/ssl/weft.example.com.key", &key.display().to_string())
            .replace("127.0.0.1:7600", &upstream.to_string())
            .replace("weft.example.com", "127.0.0.1");
        let tmp = dir.join("tmp").display().to_string();
        // As root, nginx's workers would run as `nobody` and could not enter the temp dir.
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}\ndaemon off;\nworker_processes 1;\npid {pid};\nerror_log {log} info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n \
             proxy_temp_path {tmp}/proxy;\n fastcgi_temp_path {tmp}/fastcgi;\n \
             uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n{server}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            log = dir.join("error.log").display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut n = Self {
            dir: dir.to_owned(),
            port,
            child: None,
        };
        n.spawn().await;
        (n, fp)
    }

    /// Starts nginx and waits until its port accepts connections.
    async fn spawn(&mut self) {
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start nginx");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nginx exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops nginx (SIGTERM: fast shutdown, every connection closed) and waits for it.
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let ended = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            if ended.is_err() {
                child.kill().await.unwrap();
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}/weft", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

/// REST through the proxy; `None` for any failure (the proxy may be down).
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: String) -> Option<T> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    async fn wait_online(&self, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let devices: Option<Vec<DeviceView>> = self.get("/v1/devices".into()).await;
            if devices.is_some_and(|d| d.iter().any(|d| d.status == DeviceStatus::Online)) {
                return;
            }
            assert!(Instant::now() < deadline, "{why}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_and_the_cli_work_through_nginx_and_survive_its_restart() {
    let h = Harness::start_with(|o| o.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let (mut nginx, fp) = Nginx::start(&h.dir.path().join("nginx"), h.addr).await;
    let base = nginx.base();
    let env = [
        ("WEFT_API_TOKEN", h.token.as_str()),
        ("WEFT_SERVER_FINGERPRINT", &fp.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();

    // Enrolment through the proxy: the line names the proxy's URL, prefix included.
    let (code, out, err) = weft(
        &[
            "device", "add", "laptop", "--kind", "laptop", "--server", &base,
        ],
        &env,
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}\nnginx: {}", nginx.log());
    assert!(out.contains(&format!("--server {base} ")), "{out}");
    let token = out
        .split("WEFT_DEVICE_TOKEN=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();

    let mut agent = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("agent")
        .args(["--server", &base, "--server-fingerprint", &fp.to_string()])
        .args(["--name", "laptop", "--kind", "laptop"])
        .arg("--workdir")
        .arg(h.dir.path().join("w"))
        .arg("--state-dir")
        .arg(h.dir.path().join("s"))
        .env("WEFT_DEVICE_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let client = pinned(fp);
    let api = Api {
        client: client.clone(),
        base: base.clone(),
        token: h.token.clone(),
    };
    api.wait_online("the agent did not come online through nginx")
        .await;

    // A request submitted through the proxy, its task running when nginx goes away.
    let resp = client
        .post(format!("{base}/v1/requests"))
        .bearer_auth(&h.token)
        .json(&json!({"text": r#"on laptop run "sleep 3; echo through nginx""#}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let id = resp.json::<RequestView>().await.unwrap().id.to_string();
    let view = || api.get::<RequestView>(format!("/v1/requests/{id}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = view().await;
        if v.as_ref().is_some_and(|v| {
            v.tasks[0]
                .attempts
                .iter()
                .any(|a| a.status == AttemptStatus::Running)
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "the task never ran: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nginx.stop().await;
    // While the proxy is down the server is unreachable through it.
    assert!(view().await.is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    nginx.spawn().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        if let Some(v) = view().await
            && v.status.is_terminal()
        {
            break v;
        }
        assert!(Instant::now() < deadline, "the request did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.status, RequestStatus::Succeeded, "{done:?}");
    let task = &done.tasks[0];
    // The agent reconnected in time: the one attempt finished; none was lost or run again.
    assert_eq!(task.attempts.len(), 1, "{:?}", task.attempts);
    assert_eq!(task.attempts[0].status, AttemptStatus::Succeeded);
    let output = serde_json::to_string(&task.output).unwrap();
    assert!(output.contains("through nginx"), "{output}");
    api.wait_online("the agent did not come back after nginx restarted")
        .await;

    // The CLI through the proxy: submit and follow the event stream to the end.
    let (code, out, err) = weft(
        &[
            "submit",
            "--watch",
            "--server",
            &base,
            r#"on laptop run "echo streamed through nginx""#,
        ],
        &env,
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}\nnginx: {}", nginx.log());
    assert!(out.contains("streamed through nginx"), "{out}");

    agent.kill().await.unwrap();
    nginx.stop().await;
}
