//! What follows a failed attempt: another attempt (when) or the end of the task (with which
//! error). Pure: no clock, no randomness of its own, no engine state.

use weft_protocol::{ErrorInfo, RetryPolicy};

/// What is known of the task whose attempt failed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tried {
    /// Attempts made so far, the failed one included.
    pub used: u32,
    /// When the task first became ready: its overall timeout counts from here.
    pub first_ready_ms: Option<u64>,
}

/// The limits a retry must stay within.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits<'a> {
    pub policy: &'a RetryPolicy,
    pub task_timeout_ms: u64,
    /// A number in `[0, 1)` that spreads the backoff (random in production).
    pub jitter: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Retry {
    /// Another attempt, not before `at` (ms since the epoch); `avoid` the failed attempt's
    /// device if any other can take it.
    Retry { at: u64, avoid: bool },
    /// The task fails with this error.
    Fail { error: ErrorInfo },
}

/// Decides what follows an attempt that failed with `error` at `now`.
pub(super) fn decide(tried: Tried, error: &ErrorInfo, limits: Limits<'_>, now: u64) -> Retry {
    let Tried {
        used,
        first_ready_ms,
    } = tried;
    let policy = limits.policy;
    // The device failed, not the task: the next attempt goes elsewhere without waiting.
    let delay = if retry_at_once(&error.code) {
        0
    } else {
        policy.backoff_ms(used, limits.jitter)
    };
    let at = now + delay;
    let may_retry = policy.may_retry(&error.code, used);
    let out_of_time = first_ready_ms.is_some_and(|t| at >= t + limits.task_timeout_ms);
    if may_retry && !out_of_time {
        return Retry::Retry {
            at,
            avoid: device_related(&error.code),
        };
    }
    let error = if may_retry {
        ErrorInfo::new(
            "task_timeout",
            format!(
                "no time left for another attempt; the last failed: {}",
                error.message
            ),
        )
    } else if used > 1 && !policy.non_retryable.contains(&error.code) {
        ErrorInfo::new(
            error.code.clone(),
            format!("{} (after {used} attempts)", error.message),
        )
    } else {
        error.clone()
    };
    Retry::Fail { error }
}

/// Failures where the device stopped, not the task: retried without a backoff.
fn retry_at_once(code: &str) -> bool {
    matches!(
        code,
        "device_lost" | "agent_stopping" | "assign_unanswered" | "unreadable_assign"
    )
}

/// Failures that say more about the device than the task: the next attempt should go
/// elsewhere if it can.
fn device_related(code: &str) -> bool {
    matches!(
        code,
        "device_lost"
            | "timeout"
            | "agent_stopping"
            | "spawn_failed"
            | "workdir_unavailable"
            | "assign_unanswered"
            | "unreadable_assign"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    /// Decides for a failure with `code` after `used` attempts of a task first ready at
    /// `first_ready` (the policy: 3 attempts, 1 s doubling, no jitter; task timeout 10 s) and
    /// writes the decision as text: `retry +DELAY[ avoid]` or `fail CODE: MESSAGE`.
    fn check(code: &str, used: u32, first_ready: Option<u64>, expect: &str) {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let limits = Limits {
            policy: &policy,
            task_timeout_ms: 10_000,
            jitter: 0.5,
        };
        let tried = Tried {
            used,
            first_ready_ms: first_ready,
        };
        let got = match decide(tried, &ErrorInfo::new(code, "boom"), limits, NOW) {
            Retry::Retry { at, avoid } => {
                format!("retry +{}{}", at - NOW, if avoid { " avoid" } else { "" })
            }
            Retry::Fail { error } => format!("fail {}: {}", error.code, error.message),
        };
        assert_eq!(got, expect, "{code} after {used}");
    }

    #[test]
    fn decisions() {
        check("exit_nonzero", 1, Some(NOW), "retry +1000");
        check("exit_nonzero", 2, Some(NOW), "retry +2000");
        check(
            "exit_nonzero",
            3,
            Some(NOW),
            "fail exit_nonzero: boom (after 3 attempts)",
        );
        // The device failed: at once, and elsewhere if possible.
        check("device_lost", 1, Some(NOW), "retry +0 avoid");
        check("agent_stopping", 2, None, "retry +0 avoid");
        check("timeout", 1, None, "retry +1000 avoid");
        // The device did not answer the assignment, or could not read it.
        check("assign_unanswered", 1, Some(NOW), "retry +0 avoid");
        check("unreadable_assign", 2, Some(NOW), "retry +0 avoid");
        // Never retried, whatever is left.
        check("policy_denied", 1, Some(NOW), "fail policy_denied: boom");
        check("policy_denied", 2, Some(NOW), "fail policy_denied: boom");
        check("exit_nonzero", 1, None, "retry +1000");
        // The backoff would pass the task's timeout.
        check(
            "exit_nonzero",
            1,
            Some(NOW - 9_500),
            "fail task_timeout: no time left for another attempt; the last failed: boom",
        );
        check("device_lost", 1, Some(NOW - 9_999), "retry +0 avoid");
        check("exit_nonzero", 1, Some(NOW - 8_999), "retry +1000");
    }
}
