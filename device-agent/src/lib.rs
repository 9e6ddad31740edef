//! The weft device agent.
//!
//! An agent keeps one WebSocket open to its orchestrator, states who it is and what it can do,
//! runs the attempts it is assigned with its local executors (`shell`, `fs`, `http`, and
//! `phone` / `adb` where the machine has them; `llm` for tasks with no action, when it has
//! `[llm]` settings: the device's own model calling those executors as tools) inside the
//! owner's [`policy`], and sends their results back, keeping each in a durable [`outbox`]
//! (files in its state dir) until the orchestrator acknowledges it, across reconnects and
//! restarts. When the link drops it reconnects with jittered exponential backoff, for as long as
//! it runs. When stopped it hands its running attempts back (`failed`, code `agent_stopping`)
//! before it closes the connection.
//!
//! Architecture invariant: the agent makes no scheduling decisions. It runs what it is
//! assigned, up to its own `max_concurrency`, inside its own workdir.
//!
//! Architecture invariant: the owner's policy is enforced on the device before any executor
//! runs (`exec::vet`, called when an assignment arrives and again by `exec::run`), whatever the
//! orchestrator asks; what only run time can tell (symlinks, DNS answers, redirects) is checked
//! by the executors against the same policy.

mod agent;
mod backoff;
pub mod cli;
mod config;
mod exec;
pub mod files;
pub mod outbox;
pub mod policy;
pub mod profile;
pub mod service;
pub mod settings;
pub mod tls;

pub use agent::platform;
pub use backoff::Backoff;
pub use config::{AdbConfig, Config};
pub use exec::llm::LlmConfig;
/// Seeded file bytes: the photos `photo.take` writes and the files a benchmark places.
pub use exec::seeded;
/// The `sim` executor: profiles, the state file and its types (for benchmark runners).
pub use exec::sim;
pub use policy::{DEFAULT_MAX_OUTPUT_BYTES, Policy};
use tokio_util::sync::CancellationToken;
use weft_protocol::ErrorInfo;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("the orchestrator refused this device: {}: {}{}", .0.code, .0.message, what_to_do(&.0.code))]
    Refused(ErrorInfo),
}

/// What the device's owner can do about a refusal, for the ones that need them.
fn what_to_do(code: &str) -> &'static str {
    match code {
        "token_rotated" => {
            ". This device's token was replaced on the orchestrator (`weft device rotate`), so \
             this agent stops instead of retrying. Get the new enrollment line that command \
             printed and run it on this device (`WEFT_DEVICE_TOKEN=… weft-agent init \
             --new-token …`: it replaces the token file and keeps the config and its policy); \
             then start the agent again"
        }
        "device_removed" => {
            ". This device was removed from the orchestrator (`weft device remove`), so this \
             agent stops instead of retrying. To use it again, register it anew there (`weft \
             device add NAME`) and run the line that prints on this device"
        }
        _ => "",
    }
}

/// Runs an agent until `stop` is cancelled. Returns an error only for bad configuration (or a
/// state dir that cannot be opened) or a refusal that reconnecting cannot fix (wrong token,
/// unsupported protocol version).
pub async fn run(config: Config, stop: CancellationToken) -> Result<(), Error> {
    agent::Agent::new(config, &stop)?.run().await
}
