//! The agent's integration tests: one binary, a module per concern.

#[cfg(target_os = "linux")]
mod shell_policy;
