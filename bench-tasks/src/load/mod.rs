//! The load generator behind `weft-load`.
//!
//! [`run_load`] connects N [`agents`], submits requests of a [`Shape`] through the REST API
//! (closed loop with a concurrency limit, or open loop at a fixed rate), follows each to its final
//! status and reports latency percentiles (HDR histograms), throughput and the orchestrator's
//! memory and CPU read from `/proc`. [`run_idle`] connects N agents that only heartbeat and reports
//! the orchestrator's memory per agent and its CPU over a window. [`run_lost`] makes the agent
//! holding a task go lost (socket dropped, or silent) and times the task's re-placement.
//! [`run_files`] moves one large file between two real agents through the orchestrator.
//!
//! The orchestrator is a [`Target`]: usually a `weft serve` child ([`Spawned`]) so that `/proc`
//! shows its own figures, or any running server (external, or in-process in tests).

pub mod agents;
pub mod client;
mod files;
mod lost;
pub mod procfs;
mod report;
mod run;
pub mod server;
pub mod shape;

pub use agents::{CounterSnapshot, FleetOptions, Loss};
pub use client::{Api, Refused, SubmitMode, WaitMode};
pub use files::{FilesOptions, FilesReport, run_files};
pub use lost::{LostOptions, run_lost};
pub use procfs::ProcSample;
pub use report::{
    IdleReport, IdleServer, LoadReport, LoadServer, LostMode, LostReport, LostTrial, Percentiles,
    Spread, Summary, render_summary,
};
pub use run::{IdleOptions, LoadOptions, run_idle, run_load};
pub use server::{SpawnOptions, Spawned, Target, TargetKind};
pub use shape::Shape;
