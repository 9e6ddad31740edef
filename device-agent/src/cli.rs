//! The `weft-agent` command line (also `weft agent`).

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::Config;

/// Run a weft device agent: connect to an orchestrator and run the tasks it assigns.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The orchestrator's base URL; the WebSocket URL is derived from it.
    #[arg(long, env = "WEFT_SERVER", default_value = "http://127.0.0.1:7600")]
    pub server: String,
    /// This device's registered name (`weft device add NAME`).
    #[arg(long, env = "WEFT_DEVICE_NAME")]
    pub name: String,
    /// The device token. Prefer the environment variable or --token-file: a command line is
    /// visible to every user of the machine.
    #[arg(long, env = "WEFT_DEVICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the device token.
    #[arg(long, env = "WEFT_DEVICE_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// laptop, phone, server, …
    #[arg(long, env = "WEFT_DEVICE_KIND", default_value = "laptop")]
    pub kind: String,
    /// Where shell commands run; `fs` actions cannot leave it.
    #[arg(long, env = "WEFT_WORKDIR", default_value = "weft-work")]
    pub workdir: PathBuf,
    /// Where unacknowledged results are kept across restarts; must be outside the workdir.
    #[arg(long, env = "WEFT_STATE_DIR", default_value = "weft-state")]
    pub state_dir: PathBuf,
    /// Most attempts this device runs at once.
    #[arg(long, env = "WEFT_MAX_CONCURRENCY", default_value_t = 4)]
    pub max_concurrency: u32,
    /// Also offer the test executors (`steps`, which works in turns like an LLM loop).
    #[arg(long, env = "WEFT_TEST_EXECUTORS")]
    pub test_executors: bool,
}

impl Args {
    pub fn config(&self) -> anyhow::Result<Config> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.trim().to_owned(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_owned(),
            (None, None) => anyhow::bail!(
                "no device token: set WEFT_DEVICE_TOKEN or pass --token-file (the token was \
                 printed by `weft device add`)"
            ),
        };
        let mut c = Config::new(&self.server, &self.name, &token);
        c.kind.clone_from(&self.kind);
        c.workdir.clone_from(&self.workdir);
        c.state_dir.clone_from(&self.state_dir);
        c.max_concurrency = self.max_concurrency;
        c.test_executors = self.test_executors;
        c.validate()?;
        Ok(c)
    }
}

/// A token cancelled on SIGINT or SIGTERM.
fn stop_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
        t.cancel();
    });
    token
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    tracing::info!(server = %config.server, device = %config.name, workdir = %config.workdir.display(),
        state_dir = %config.state_dir.display(), "weft-agent starting");
    crate::run(config, stop_on_signal()).await?;
    Ok(())
}
