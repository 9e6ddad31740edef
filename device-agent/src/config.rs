//! The agent's typed configuration, validated before any connection is made.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use weft_protocol::DeviceName;

use crate::Error;
use crate::policy::{MAX_OUTPUT_BYTES_LIMIT, Policy};
use crate::tls::{Fingerprint, ServerUrl};

/// An Android device driven over adb by the `adb` executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdbConfig {
    /// The device's serial (`adb devices`), passed as `adb -s SERIAL`.
    pub serial: String,
    /// The adb program: a path, or a name looked up on the tool path.
    pub program: PathBuf,
}

/// Everything an agent needs. Build it with [`Config::new`], adjust fields, then [`crate::run`].
#[derive(Clone)]
pub struct Config {
    /// The orchestrator's base URL (`https://host:7600`, `https://host/prefix`, or `http://`
    /// on this machine); the WebSocket URL is derived from it.
    pub server: String,
    /// Further base URLs of the same orchestrator: replicas on one Postgres, of which one
    /// leads (docs/replicas.md). The agent tries `server` and these in turn, and follows a
    /// standby's `307` to the leader only to one of them.
    pub replicas: Vec<String>,
    /// The server certificate's fingerprint (`sha256:…`): with it only that certificate is
    /// accepted; without it the certificate must chain to the webpki roots.
    pub server_fingerprint: Option<String>,
    /// Allow a plain `http://` server that is not on this machine.
    pub insecure_plaintext: bool,
    /// This device's registered name.
    pub name: DeviceName,
    /// This device's token (from `weft device add`).
    pub token: String,
    /// `laptop`, `phone`, `server`, …; the orchestrator keeps the kind it registered.
    pub kind: String,
    /// Where shell commands run and the only tree `fs` actions may touch.
    pub workdir: PathBuf,
    /// Where the agent keeps what must outlive it: the outbox of unacknowledged results
    /// (`STATE_DIR/outbox/`). Created with mode 0700; must not lie inside the workdir, where
    /// tasks could forge or delete its files.
    pub state_dir: PathBuf,
    /// Most attempts run at once; further assignments are rejected as `busy`.
    pub max_concurrency: u32,
    /// The owner's policy: executors, shell patterns, file roots, HTTP hosts and networks,
    /// output and run-time limits. Enforced here, whatever the orchestrator asks.
    pub policy: Policy,
    /// The `adb` executor's device, if this agent drives one.
    pub adb: Option<AdbConfig>,
    /// Where to look for adb and the Termux:API tools (a PATH-style list); `None`: `$PATH`.
    pub tool_path: Option<std::ffi::OsString>,
    /// Longest an HTTP fetch may take (also bounded by the attempt's deadline).
    pub http_timeout: Duration,
    /// Reconnect backoff: first delay and cap.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long connecting plus the hello/welcome exchange may take.
    pub connect_timeout: Duration,
    /// On stop, how long to wait for the orchestrator to acknowledge the results of the
    /// attempts handed back before closing the connection (unacknowledged ones stay in the
    /// outbox for the next start).
    pub stop_grace: Duration,
    /// Offer the test executors (`steps`), for exercising turn budgets.
    pub test_executors: bool,
    /// The device's own model (`[llm]`): with it the device offers the `llm` executor and runs
    /// tasks that have an instruction and no action; without it, it rejects them
    /// (`no_executor`).
    pub llm: Option<crate::LlmConfig>,
    /// Offer the `sim` executor with this simulated device profile (`[sim]`, `--sim-profile`).
    pub sim: Option<crate::sim::SimConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("replicas", &self.replicas)
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("kind", &self.kind)
            .field("workdir", &self.workdir)
            .field("state_dir", &self.state_dir)
            .field("max_concurrency", &self.max_concurrency)
            .field("policy", &self.policy)
            .field("adb", &self.adb)
            // The API key inside is a `Secret`, printed `[redacted]`.
            .field("llm", &self.llm)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(server: &str, name: &str, token: &str) -> Self {
        Self {
            server: server.to_owned(),
            replicas: Vec::new(),
            server_fingerprint: None,
            insecure_plaintext: false,
            name: DeviceName::from(name),
            token: token.to_owned(),
            kind: "laptop".to_owned(),
            workdir: PathBuf::from("weft-work"),
            state_dir: PathBuf::from("weft-state"),
            max_concurrency: 4,
            policy: Policy::default(),
            adb: None,
            tool_path: None,
            http_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(5),
            test_executors: false,
            llm: None,
            sim: None,
        }
    }

    /// Checks every field; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), Error> {
        if !weft_protocol::ids::valid_device_name(self.name.as_str()) {
            return Err(Error::Config(format!(
                "device name `{}`: use 1-64 letters, digits, '-' or '_'",
                self.name
            )));
        }
        if self.token.trim().is_empty() {
            return Err(Error::Config(
                "no device token: set WEFT_DEVICE_TOKEN or --token-file (from `weft device add`)"
                    .into(),
            ));
        }
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            return Err(Error::Config("max concurrency must be 1..=1024".into()));
        }
        let max = self.policy.max_output_bytes;
        if max == 0 || max > MAX_OUTPUT_BYTES_LIMIT {
            return Err(Error::Config(format!(
                "policy.max_output_bytes: {max} is not in 1..={MAX_OUTPUT_BYTES_LIMIT} (results \
                 must fit one 1 MiB frame)"
            )));
        }
        if let Some(adb) = &self.adb
            && (adb.serial.trim().is_empty() || adb.serial.starts_with('-'))
        {
            return Err(Error::Config(format!(
                "adb.serial `{}`: give the serial `adb devices` lists",
                adb.serial
            )));
        }
        if let Some(llm) = &self.llm {
            llm.check().map_err(Error::Config)?;
        }
        if let Some(sim) = &self.sim {
            sim.validate().map_err(Error::Config)?;
        }
        self.check_state_dir()?;
        for server in self.servers() {
            self.endpoint_of(server)?;
        }
        Ok(())
    }

    /// The state dir must not be reachable by tasks: not the workdir, not inside it, and the
    /// workdir not inside its outbox. Paths are compared absolute and lexically normalized.
    fn check_state_dir(&self) -> Result<(), Error> {
        let state = normalized(&self.state_dir, "state dir")?;
        let work = normalized(&self.workdir, "workdir")?;
        if state.starts_with(&work) {
            return Err(Error::Config(format!(
                "state dir {}: must not be the workdir ({}) or inside it, where tasks could \
                 forge or delete queued results",
                self.state_dir.display(),
                self.workdir.display()
            )));
        }
        if work.starts_with(state.join(crate::outbox::OUTBOX_DIR)) {
            return Err(Error::Config(format!(
                "workdir {}: must not be inside the state dir's outbox ({})",
                self.workdir.display(),
                state.join(crate::outbox::OUTBOX_DIR).display()
            )));
        }
        Ok(())
    }

    /// The WebSocket URL of the agent endpoint, derived from the base URL.
    pub fn ws_url(&self) -> Result<String, Error> {
        Ok(self.endpoint()?.0.ws_url())
    }

    /// The server's URL and the certificate fingerprint to pin, checked: no plain text to
    /// another machine unless `insecure_plaintext`, a fingerprint only with `https://`.
    pub fn endpoint(&self) -> Result<(ServerUrl, Option<Fingerprint>), Error> {
        self.endpoint_of(&self.server)
    }

    /// `server`, then every replica: the URLs the agent may connect to, in order.
    pub fn servers(&self) -> Vec<&str> {
        std::iter::once(self.server.as_str())
            .chain(self.replicas.iter().map(String::as_str))
            .collect()
    }

    /// [`Config::endpoint`] of one of [`Config::servers`].
    pub fn endpoint_of(&self, server: &str) -> Result<(ServerUrl, Option<Fingerprint>), Error> {
        let url = ServerUrl::parse(server).map_err(Error::Config)?;
        let pin = self
            .server_fingerprint
            .as_deref()
            .map(|f| f.parse::<Fingerprint>())
            .transpose()
            .map_err(|e| Error::Config(format!("server_fingerprint: {e}")))?;
        url.check(pin.is_some(), self.insecure_plaintext)
            .map_err(Error::Config)?;
        Ok((url, pin))
    }
}

/// `path` made absolute (against the current directory) with `.` and `..` resolved lexically.
fn normalized(path: &Path, what: &str) -> Result<PathBuf, Error> {
    let abs = std::path::absolute(path)
        .map_err(|e| Error::Config(format!("{what} `{}`: {e}", path.display())))?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(server: &str) -> Result<String, Error> {
        Config::new(server, "laptop", "t").ws_url()
    }

    #[test]
    fn ws_url_is_derived_from_the_base_url() {
        assert_eq!(
            url("http://127.0.0.1:7600").unwrap(),
            "ws://127.0.0.1:7600/v1/agent"
        );
        assert_eq!(
            url("http://localhost:1/").unwrap(),
            "ws://localhost:1/v1/agent"
        );
        assert_eq!(
            url("http://localhost:1/weft").unwrap(),
            "ws://localhost:1/weft/v1/agent"
        );
        assert_eq!(
            url("ws://[::1]:1/v1/agent").unwrap(),
            "ws://[::1]:1/v1/agent"
        );
        assert_eq!(url("https://h").unwrap(), "wss://h:443/v1/agent");
        assert_eq!(
            url("https://weft.example.com/weft/").unwrap(),
            "wss://weft.example.com:443/weft/v1/agent"
        );
        // Plain text only to this machine, unless asked for.
        let e = url("http://weft.lan:7600").unwrap_err().to_string();
        assert!(e.contains("plain text") && e.contains("https://"), "{e}");
        let mut c = Config::new("http://weft.lan:7600", "laptop", "t");
        c.insecure_plaintext = true;
        assert!(c.ws_url().is_ok());
        // A fingerprint pins a TLS certificate: not with http://, and well-formed.
        let mut c = Config::new("http://127.0.0.1:7600", "laptop", "t");
        c.server_fingerprint = Some(format!("sha256:{}", "ab".repeat(32)));
        let e = c.ws_url().unwrap_err().to_string();
        assert!(
            e.contains("server_fingerprint") && e.contains("https://"),
            "{e}"
        );
        c.server = "https://127.0.0.1:7600".into();
        assert!(c.ws_url().is_ok());
        c.server_fingerprint = Some("sha256:abc".into());
        let e = c.ws_url().unwrap_err().to_string();
        assert!(
            e.contains("server_fingerprint") && e.contains("64 hex"),
            "{e}"
        );
        assert!(url("h:1").is_err());
        assert!(url("http://").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = Config::new("https://h:1", "laptop", "tok");
        assert!(c.validate().is_ok());
        c.token = " ".into();
        assert!(c.validate().unwrap_err().to_string().contains("token"));
        let mut c = Config::new("https://h:1", "../x", "tok");
        assert!(c.validate().unwrap_err().to_string().contains("name"));
        c.name = "ok".into();
        c.max_concurrency = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("concurrency")
        );
    }

    #[test]
    fn the_state_dir_must_stay_out_of_the_workdir() {
        let check = |work: &str, state: &str| {
            let mut c = Config::new("https://h:1", "laptop", "tok");
            c.workdir = work.into();
            c.state_dir = state.into();
            c.validate().map_err(|e| e.to_string())
        };
        assert!(check("weft-work", "weft-state").is_ok());
        assert!(check("/srv/weft/work", "/srv/weft/state").is_ok());
        // The workdir inside the state dir is fine, as long as it is not in the outbox.
        assert!(check("/srv/weft/work", "/srv/weft").is_ok());
        for (work, state) in [
            ("/srv/work", "/srv/work"),
            ("/srv/work", "/srv/work/"),
            ("/srv/work", "/srv/work/state"),
            ("/srv/work", "/srv/./work/.state"),
            ("/srv/work", "/srv/other/../work/state"),
            ("/srv/./work/", "/srv/work/a/b/.."),
            ("work", "work/state"),
            ("a/../work", "./work"),
        ] {
            let err = check(work, state).expect_err(state);
            assert!(err.contains("state dir"), "{err}");
        }
        let err = check("/srv/state/outbox/x", "/srv/state").unwrap_err();
        assert!(err.contains("outbox"), "{err}");
        // Lexical only: a name that merely starts the same is another directory.
        assert!(check("/srv/work", "/srv/work-state").is_ok());
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Config::new("https://h:1", "laptop", "sekrit");
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
