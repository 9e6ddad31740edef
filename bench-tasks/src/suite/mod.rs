//! The cross-device benchmark suite behind `weft-bench` (docs/bench.md).
//!
//! - [`task`]: the task files (`bench-tasks/tasks/CATEGORY/ID.toml`) and the suite;
//! - [`devices`]: the five simulated devices, each a real agent process with a `sim` profile;
//! - [`check`]: checkers, predicates on the devices' final state;
//! - [`env`]: the world a suite runs in (orchestrator in-process, agents, link proxies, web);
//! - [`run`]: the runner; [`measure`]: figures from a finished request;
//! - [`external`]: planners outside weft (HTTP, a child process, a directory of plans);
//! - [`report`]: `report.json`, `report.md`, `chart.svg`; [`compare`]: several runs side by
//!   side, and the mean and spread over seeds;
//! - [`generate`]: the program that writes the task files;
//! - [`guard`]: the shell commands the runner will not submit to devices on its own machine.
//!
//! Nothing here is needed by the product at run time.

pub mod api;
pub mod check;
pub mod compare;
pub mod devices;
pub mod env;
pub mod external;
pub mod generate;
pub mod guard;
pub mod measure;
pub mod progress;
pub mod report;
pub mod run;
pub mod task;

pub use report::Report;
pub use run::{Faults, LlmSettings, Mode, PlannerKind, RunOptions, run};
pub use task::{Suite, TaskFile};
