//! weft-bench: benchmarks for weft.
//!
//! - [`load`] is the engine of the `weft-load` binary: it opens many lightweight,
//!   protocol-speaking agents over real WebSockets (a no-op executor), submits requests through
//!   the REST API, follows them to completion and reports latency percentiles, throughput and the
//!   orchestrator's memory and CPU as read from `/proc`. See BENCHMARKS.md at the repository root.
//! - `benches/hot_paths.rs` holds micro-benchmarks (divan) of frame encode/decode and planning.
//!
//! The cross-device benchmark suite (task data files, simulated devices, checkers) will live in
//! this crate too; it arrives with its own issue.

pub mod load;
