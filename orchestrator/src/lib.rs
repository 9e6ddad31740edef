//! The weft orchestrator: REST API and agent WebSocket endpoint on one listener, the graph
//! engine that owns every live request, and the SQLite store. Also the `weft` CLI.
//!
//! See ARCHITECTURE.md at the repository root for the code map and invariants.

// The store's unit tests share the integration tests' Postgres (`store::testing`), which names
// this crate as they do.
#[cfg(test)]
extern crate self as weft_orchestrator;

pub mod api;
pub mod blobs;
pub mod cli;
pub mod codes;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod replica;
pub mod retention;
pub mod reviser;
pub mod server;
pub mod store;
pub mod token;
pub mod web;
pub mod ws;

pub use config::{LlmOptions, PlannerChoice, ServeOptions};
pub use error::{ApiError, Error};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
