//! weft-bench: benchmarks for weft.
//!
//! - [`load`] is the engine of the `weft-load` binary: it opens many lightweight,
//!   protocol-speaking agents over real WebSockets (a no-op executor), submits requests through
//!   the REST API, follows them to completion and reports latency percentiles, throughput and the
//!   orchestrator's memory and CPU as read from `/proc`. See BENCHMARKS.md at the repository root.
//! - `benches/hot_paths.rs` holds micro-benchmarks (divan) of frame encode/decode and planning.
//!
//! - [`suite`] is the engine of the `weft-bench` binary: the cross-device task suite
//!   (`tasks/`), five simulated devices run as real agent processes, checkers on their final
//!   state, and the report. See docs/bench.md.

pub mod load;
pub mod suite;
