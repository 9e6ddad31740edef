//! A real headless Chromium, driven over WebDriver (chromedriver + fantoccini).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them
//! every browser test fails and says so: they are never skipped silently.
//! `WEFT_CHROMIUM` and `WEFT_CHROMEDRIVER` point at other binaries.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use crate::harness::WAIT;

/// Browser tests run one at a time: each Chromium wants most of a core.
static ONE_BROWSER: Mutex<()> = Mutex::const_new(());

fn binary(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Where screenshots go: `target/tmp/web-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots")
}

#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium session (its own empty profile).
    pub async fn start() -> Self {
        let turn = ONE_BROWSER.lock().await;
        let chromium = binary("WEFT_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("WEFT_CHROMEDRIVER", "/usr/bin/chromedriver");
        for bin in [&chromium, &chromedriver] {
            assert!(
                bin.exists(),
                "the browser tests need Chromium and ChromeDriver, and {} is missing: install \
                 Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium \
                 chromium-driver`; `.ci/run` does this), or set WEFT_CHROMIUM / WEFT_CHROMEDRIVER",
                bin.display()
            );
        }
        let profile = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group, so that Drop can stop Chromium with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while http
            .get(format!("{url}/status"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start; see {}",
                profile.path().join("chromedriver.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    "--disable-dev-shm-usage",
                    "--window-size=1440,1000",
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        Self {
            client,
            driver,
            _profile: profile,
            _turn: turn,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns true. On timeout, saves a screenshot and fails with the
    /// page's text.
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.js(script, args.clone()).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let shot = self.screenshot(&format!("timeout-{}", slug(what))).await;
                let text = self.js("return document.body.innerText;", vec![]).await;
                panic!(
                    "timed out waiting for {what}; screenshot {}; page text:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element matching `css` (found again if the page replaced it meanwhile).
    pub async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..10 {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => match e.click().await {
                    Ok(()) => return,
                    Err(err) => last = err.to_string(),
                },
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot click {css}: {last}");
    }

    /// The text content of the first element matching `css` (`None` if there is none).
    pub async fn text_of(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Saves a PNG of the window under [`screenshot_dir`]; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (Chromium exits), then chromedriver (in `Drop`).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Stop chromedriver's whole process group: Chromium too, even after a failed test.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}
