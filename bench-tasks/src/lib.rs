//! weft-bench: the cross-device benchmark suite.
//!
//! Placeholder. The suite (task data files, simulated devices, runner, checkers and report) is
//! built by its own issue; this crate exists so the workspace has its final shape.
