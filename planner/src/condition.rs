//! Conditions carried by `condition` edges: checking their shape ([`validate`]) and deciding
//! whether one holds for how an upstream task ended ([`evaluate`]).
//!
//! A [`Condition`] picks a **target** from the upstream outcome and compares it with its `value`:
//!
//! | `on` | target |
//! |---|---|
//! | `data` | the value at the JSON pointer `path` in the output's `data` (`""`: all of it); missing when the task produced no output or the pointer does not resolve |
//! | `summary` | the output's summary, as a string; missing when the task produced no output |
//! | `status` | the task's final status as a string: `"succeeded"`, `"failed"`, `"skipped"`, `"cancelled"` |
//!
//! | `op` | holds when |
//! |---|---|
//! | `equals` | the target equals `value` (see below) |
//! | `not_equals` | it does not; a missing target is not equal to anything |
//! | `contains` | the target is a string containing `value`'s text (a string value as is, anything else as compact JSON), or an array with an element that equals `value` |
//! | `exists` | the target is present and not `null` |
//! | `not_exists` | the target is missing or `null` |
//!
//! Equality is JSON equality, with numbers compared by value (`1` equals `1.0`), plus one
//! convenience: a string equals a non-string whose compact JSON text is exactly that string, so
//! the string `"0"` equals the number `0`, but `"0\n"` (what `echo 0` prints) does not, and
//! neither does `" 0"`. There is no trimming: compare shell output with `contains`, or with the
//! exact text including its newline.
//!
//! The engine evaluates a condition once its upstream task has ended, however it ended.

use serde_json::Value;
use weft_protocol::{Condition, ConditionOp, ConditionSource, TaskOutput, TaskStatus};

/// Checks a condition's shape; the error says what is wrong, naming the field.
///
/// - `path` is `""` or a JSON pointer (RFC 6901) starting with `/`, in which `~` is always
///   followed by `0` or `1`. It is only meaningful for `on: data` and must be `""` otherwise.
/// - `equals`, `not_equals` and `contains` need a `value`; `exists` and `not_exists` must not
///   have one. (In JSON, `"value": null` reads as no value: test for null with `exists` /
///   `not_exists`.)
/// - `on: status` with `equals` / `not_equals` compares with a final status, so its `value` is
///   one of the strings `"succeeded"`, `"failed"`, `"skipped"`, `"cancelled"`.
pub fn validate(c: &Condition) -> Result<(), String> {
    if c.on == ConditionSource::Data {
        check_pointer(&c.path)?;
    } else if !c.path.is_empty() {
        return Err(format!(
            "`path` is only for `on: data`; `on: {}` takes none",
            source_name(c.on)
        ));
    }
    let op = op_name(c.op);
    match (c.op, &c.value) {
        (ConditionOp::Equals | ConditionOp::NotEquals | ConditionOp::Contains, None) => {
            return Err(format!("`{op}` needs a `value`"));
        }
        (ConditionOp::Exists | ConditionOp::NotExists, Some(_)) => {
            return Err(format!("`{op}` takes no `value`"));
        }
        _ => {}
    }
    if c.on == ConditionSource::Status
        && matches!(c.op, ConditionOp::Equals | ConditionOp::NotEquals)
    {
        let final_status = match &c.value {
            Some(Value::String(s)) => TaskStatus::parse(s).is_some_and(TaskStatus::is_terminal),
            _ => false,
        };
        if !final_status {
            return Err(format!(
                "`on: status` with `{op}` needs a final status as `value`: \
                 \"succeeded\", \"failed\", \"skipped\" or \"cancelled\""
            ));
        }
    }
    Ok(())
}

/// Whether `c` holds for an upstream task that ended with `status` and `output` (`None` when it
/// produced none, e.g. it was skipped). The semantics are in the module docs.
///
/// Meant for conditions that passed [`validate`]; for one that did not, a missing `value`
/// counts as `null`.
pub fn evaluate(c: &Condition, status: TaskStatus, output: Option<&TaskOutput>) -> bool {
    let target: Option<Value> = match c.on {
        ConditionSource::Data => output.and_then(|o| o.data.pointer(&c.path)).cloned(),
        ConditionSource::Summary => output.map(|o| Value::String(o.summary.clone())),
        ConditionSource::Status => Some(Value::String(status.as_str().to_owned())),
    };
    let null = Value::Null;
    let value = c.value.as_ref().unwrap_or(&null);
    match c.op {
        ConditionOp::Equals => target.is_some_and(|t| equals(&t, value)),
        ConditionOp::NotEquals => !target.is_some_and(|t| equals(&t, value)),
        ConditionOp::Contains => target.is_some_and(|t| contains(&t, value)),
        ConditionOp::Exists => target.is_some_and(|t| !t.is_null()),
        ConditionOp::NotExists => target.is_none_or(|t| t.is_null()),
    }
}

/// Refuses a `path` that is neither `""` nor a well-formed JSON pointer.
fn check_pointer(path: &str) -> Result<(), String> {
    if !(path.is_empty() || path.starts_with('/')) {
        return Err(format!(
            "`path` must be \"\" or a JSON pointer starting with `/` (e.g. \"/exit_code\"), \
             not {path:?}"
        ));
    }
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`path` {path:?} has a `~` that is not `~0` or `~1` (JSON pointer escapes)"
            ));
        }
    }
    Ok(())
}

/// `target == value`, where a string and a non-string are equal when the string is exactly the
/// non-string's compact JSON text.
fn equals(target: &Value, value: &Value) -> bool {
    match (target, value) {
        (Value::String(_), Value::String(_)) => target == value,
        (Value::String(s), other) | (other, Value::String(s)) => {
            serde_json::to_string(other).is_ok_and(|text| text == *s)
        }
        _ => json_eq(target, value),
    }
}

/// JSON equality with numbers compared by value, so `1` equals `1.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// A string containing `value`'s text, or an array with an element that [`equals`] `value`.
fn contains(target: &Value, value: &Value) -> bool {
    match target {
        Value::String(s) => match value {
            Value::String(v) => s.contains(v.as_str()),
            other => s.contains(&other.to_string()),
        },
        Value::Array(items) => items.iter().any(|item| equals(item, value)),
        _ => false,
    }
}

fn source_name(source: ConditionSource) -> &'static str {
    match source {
        ConditionSource::Data => "data",
        ConditionSource::Summary => "summary",
        ConditionSource::Status => "status",
    }
}

fn op_name(op: ConditionOp) -> &'static str {
    match op {
        ConditionOp::Equals => "equals",
        ConditionOp::NotEquals => "not_equals",
        ConditionOp::Contains => "contains",
        ConditionOp::Exists => "exists",
        ConditionOp::NotExists => "not_exists",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Parses a condition from its JSON form.
    fn cond(json: &str) -> Condition {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test condition {json}: {e}"))
    }

    /// Validates the condition `json` and renders the outcome as `ok` or the error.
    fn check_valid(json: &str, expect: &str) {
        let got = match validate(&cond(json)) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e,
        };
        assert_eq!(got, expect, "condition {json}");
    }

    #[test]
    fn valid_conditions() {
        for json in [
            r#"{"on": "data", "path": "/exit_code", "op": "equals", "value": 0}"#,
            r#"{"path": "", "op": "exists"}"#,
            r#"{"path": "/a~1b/c~0d/0", "op": "not_exists"}"#,
            r#"{"path": "/stdout", "op": "contains", "value": "ok"}"#,
            r#"{"path": "/tags", "op": "contains", "value": {"a": 1}}"#,
            r#"{"on": "summary", "op": "contains", "value": "ERROR"}"#,
            r#"{"on": "summary", "op": "equals", "value": "done"}"#,
            r#"{"on": "summary", "op": "exists"}"#,
            r#"{"on": "status", "op": "equals", "value": "failed"}"#,
            r#"{"on": "status", "op": "not_equals", "value": "succeeded"}"#,
            r#"{"on": "status", "op": "equals", "value": "skipped"}"#,
            r#"{"on": "status", "op": "equals", "value": "cancelled"}"#,
            r#"{"on": "status", "op": "contains", "value": "ed"}"#,
            r#"{"on": "status", "op": "exists"}"#,
        ] {
            check_valid(json, "ok");
        }
    }

    #[test]
    fn invalid_conditions() {
        check_valid(
            r#"{"path": "exit_code", "op": "exists"}"#,
            r#"`path` must be "" or a JSON pointer starting with `/` (e.g. "/exit_code"), not "exit_code""#,
        );
        check_valid(
            r#"{"path": "/a~2", "op": "exists"}"#,
            r#"`path` "/a~2" has a `~` that is not `~0` or `~1` (JSON pointer escapes)"#,
        );
        check_valid(
            r#"{"path": "/a~", "op": "exists"}"#,
            r#"`path` "/a~" has a `~` that is not `~0` or `~1` (JSON pointer escapes)"#,
        );
        check_valid(
            r#"{"on": "summary", "path": "/x", "op": "exists"}"#,
            "`path` is only for `on: data`; `on: summary` takes none",
        );
        check_valid(
            r#"{"on": "status", "path": "/", "op": "equals", "value": "failed"}"#,
            "`path` is only for `on: data`; `on: status` takes none",
        );
        for op in ["equals", "not_equals", "contains"] {
            check_valid(
                &format!(r#"{{"path": "/x", "op": "{op}"}}"#),
                &format!("`{op}` needs a `value`"),
            );
        }
        for op in ["exists", "not_exists"] {
            check_valid(
                &format!(r#"{{"path": "/x", "op": "{op}", "value": 1}}"#),
                &format!("`{op}` takes no `value`"),
            );
        }
        for value in [r#""running""#, r#""done""#, "0", r#"["failed"]"#] {
            check_valid(
                &format!(r#"{{"on": "status", "op": "not_equals", "value": {value}}}"#),
                "`on: status` with `not_equals` needs a final status as `value`: \
                 \"succeeded\", \"failed\", \"skipped\" or \"cancelled\"",
            );
        }
    }

    /// A finished upstream task as the engine sees it.
    struct Upstream {
        status: TaskStatus,
        output: Option<TaskOutput>,
    }

    fn ran(status: TaskStatus, summary: &str, data: Value) -> Upstream {
        Upstream {
            status,
            output: Some(TaskOutput {
                summary: summary.to_owned(),
                data,
            }),
        }
    }

    /// A shell task that printed `ok` and exited 0, with some extra fields to test against.
    fn shell_ok() -> Upstream {
        ran(
            TaskStatus::Succeeded,
            "exit 0: ok",
            json!({
                "stdout": "ok\n",
                "stderr": "",
                "exit_code": 0,
                "ratio": 0.5,
                "nothing": null,
                "tags": ["a", "b", 3, "4"],
                "nested": {"a/b": {"x~y": true}},
                "text_zero": "0",
            }),
        )
    }

    fn shell_failed() -> Upstream {
        ran(
            TaskStatus::Failed,
            "exit 2: ERROR: disk full",
            json!({"stdout": "", "stderr": "ERROR: disk full\n", "exit_code": 2}),
        )
    }

    fn skipped() -> Upstream {
        Upstream {
            status: TaskStatus::Skipped,
            output: None,
        }
    }

    /// Evaluates each condition (JSON) on `upstream` and compares with `expect` (`true`/`false`).
    fn check_eval(upstream: &Upstream, cases: &[(&str, bool)]) {
        for &(json, expect) in cases {
            let c = cond(json);
            assert_eq!(validate(&c), Ok(()), "test condition {json} is valid");
            let got = evaluate(&c, upstream.status, upstream.output.as_ref());
            assert_eq!(got, expect, "condition {json}");
        }
    }

    #[test]
    fn data_equals_and_not_equals() {
        check_eval(
            &shell_ok(),
            &[
                (
                    r#"{"path": "/exit_code", "op": "equals", "value": 0}"#,
                    true,
                ),
                (
                    r#"{"path": "/exit_code", "op": "equals", "value": 0.0}"#,
                    true,
                ),
                (
                    r#"{"path": "/exit_code", "op": "equals", "value": 1}"#,
                    false,
                ),
                (
                    r#"{"path": "/exit_code", "op": "equals", "value": "0"}"#,
                    true,
                ),
                (
                    r#"{"path": "/exit_code", "op": "not_equals", "value": 0}"#,
                    false,
                ),
                (
                    r#"{"path": "/exit_code", "op": "not_equals", "value": 1}"#,
                    true,
                ),
                (r#"{"path": "/ratio", "op": "equals", "value": 0.5}"#, true),
                (
                    r#"{"path": "/stdout", "op": "equals", "value": "ok\n"}"#,
                    true,
                ),
                (
                    r#"{"path": "/stdout", "op": "equals", "value": "ok"}"#,
                    false,
                ),
                (
                    r#"{"path": "/text_zero", "op": "equals", "value": 0}"#,
                    true,
                ),
                (
                    r#"{"path": "/text_zero", "op": "equals", "value": "0"}"#,
                    true,
                ),
                (
                    r#"{"path": "/text_zero", "op": "equals", "value": 0.0}"#,
                    false,
                ),
                (
                    r#"{"path": "/missing", "op": "not_equals", "value": 0}"#,
                    true,
                ),
                (
                    r#"{"path": "/tags", "op": "equals", "value": ["a", "b", 3, "4"]}"#,
                    true,
                ),
                (
                    r#"{"path": "/tags", "op": "equals", "value": ["a", "b", 3, 4]}"#,
                    false,
                ),
                (r#"{"path": "/tags/2", "op": "equals", "value": 3.0}"#, true),
                (
                    r#"{"path": "/nested/a~1b/x~0y", "op": "equals", "value": true}"#,
                    true,
                ),
                (
                    r#"{"path": "/nested/a~1b/x~0y", "op": "equals", "value": "true"}"#,
                    true,
                ),
                (
                    r#"{"path": "/nested", "op": "equals", "value": {"a/b": {"x~y": true}}}"#,
                    true,
                ),
            ],
        );
        check_eval(
            &ran(TaskStatus::Succeeded, "", json!({"stdout": "0\n"})),
            &[
                (r#"{"path": "/stdout", "op": "equals", "value": 0}"#, false),
                (
                    r#"{"path": "/stdout", "op": "equals", "value": "0\n"}"#,
                    true,
                ),
                (r#"{"path": "/stdout", "op": "contains", "value": 0}"#, true),
            ],
        );
    }

    #[test]
    fn data_contains() {
        check_eval(
            &shell_ok(),
            &[
                (
                    r#"{"path": "/stdout", "op": "contains", "value": "ok"}"#,
                    true,
                ),
                (
                    r#"{"path": "/stdout", "op": "contains", "value": "OK"}"#,
                    false,
                ),
                (
                    r#"{"path": "/stdout", "op": "contains", "value": ""}"#,
                    true,
                ),
                (r#"{"path": "/tags", "op": "contains", "value": "b"}"#, true),
                (r#"{"path": "/tags", "op": "contains", "value": 3}"#, true),
                (r#"{"path": "/tags", "op": "contains", "value": 4}"#, true),
                (
                    r#"{"path": "/tags", "op": "contains", "value": "c"}"#,
                    false,
                ),
                (
                    r#"{"path": "/exit_code", "op": "contains", "value": 0}"#,
                    false,
                ),
                (
                    r#"{"path": "/nested", "op": "contains", "value": "a/b"}"#,
                    false,
                ),
                (
                    r#"{"path": "/nothing", "op": "contains", "value": "null"}"#,
                    false,
                ),
                (
                    r#"{"path": "/missing", "op": "contains", "value": ""}"#,
                    false,
                ),
            ],
        );
    }

    #[test]
    fn data_exists() {
        check_eval(
            &shell_ok(),
            &[
                (r#"{"path": "/stderr", "op": "exists"}"#, true),
                (r#"{"path": "/nothing", "op": "exists"}"#, false),
                (r#"{"path": "/nothing", "op": "not_exists"}"#, true),
                (r#"{"path": "/missing", "op": "exists"}"#, false),
                (r#"{"path": "/missing", "op": "not_exists"}"#, true),
                (r#"{"path": "/tags/9", "op": "not_exists"}"#, true),
                (r#"{"path": "/stdout/x", "op": "not_exists"}"#, true),
                (r#"{"path": "", "op": "exists"}"#, true),
            ],
        );
        check_eval(
            &ran(TaskStatus::Succeeded, "", Value::Null),
            &[
                (r#"{"path": "", "op": "exists"}"#, false),
                (r#"{"path": "/x", "op": "not_exists"}"#, true),
            ],
        );
    }

    #[test]
    fn summary() {
        check_eval(
            &shell_failed(),
            &[
                (
                    r#"{"on": "summary", "op": "contains", "value": "ERROR"}"#,
                    true,
                ),
                (r#"{"on": "summary", "op": "contains", "value": 2}"#, true),
                (
                    r#"{"on": "summary", "op": "equals", "value": "exit 2: ERROR: disk full"}"#,
                    true,
                ),
                (
                    r#"{"on": "summary", "op": "equals", "value": "exit 2"}"#,
                    false,
                ),
                (
                    r#"{"on": "summary", "op": "not_equals", "value": "exit 2"}"#,
                    true,
                ),
                (r#"{"on": "summary", "op": "exists"}"#, true),
                (r#"{"on": "summary", "op": "not_exists"}"#, false),
            ],
        );
    }

    #[test]
    fn status() {
        check_eval(
            &shell_failed(),
            &[
                (
                    r#"{"on": "status", "op": "equals", "value": "failed"}"#,
                    true,
                ),
                (
                    r#"{"on": "status", "op": "equals", "value": "succeeded"}"#,
                    false,
                ),
                (
                    r#"{"on": "status", "op": "not_equals", "value": "succeeded"}"#,
                    true,
                ),
                (
                    r#"{"on": "status", "op": "contains", "value": "fail"}"#,
                    true,
                ),
                (r#"{"on": "status", "op": "exists"}"#, true),
                (r#"{"on": "status", "op": "not_exists"}"#, false),
                (
                    r#"{"path": "/exit_code", "op": "equals", "value": 2}"#,
                    true,
                ),
            ],
        );
        check_eval(
            &shell_ok(),
            &[
                (
                    r#"{"on": "status", "op": "equals", "value": "succeeded"}"#,
                    true,
                ),
                (
                    r#"{"on": "status", "op": "equals", "value": "failed"}"#,
                    false,
                ),
            ],
        );
    }

    #[test]
    fn no_output() {
        check_eval(
            &skipped(),
            &[
                (
                    r#"{"on": "status", "op": "equals", "value": "skipped"}"#,
                    true,
                ),
                (
                    r#"{"on": "status", "op": "not_equals", "value": "succeeded"}"#,
                    true,
                ),
                (r#"{"path": "", "op": "exists"}"#, false),
                (r#"{"path": "", "op": "not_exists"}"#, true),
                (
                    r#"{"path": "/exit_code", "op": "equals", "value": 0}"#,
                    false,
                ),
                (
                    r#"{"path": "/exit_code", "op": "not_equals", "value": 0}"#,
                    true,
                ),
                (
                    r#"{"path": "/stdout", "op": "contains", "value": ""}"#,
                    false,
                ),
                (r#"{"on": "summary", "op": "exists"}"#, false),
                (r#"{"on": "summary", "op": "not_exists"}"#, true),
                (r#"{"on": "summary", "op": "equals", "value": ""}"#, false),
                (r#"{"on": "summary", "op": "contains", "value": ""}"#, false),
            ],
        );
    }

    #[test]
    fn null_values() {
        // On the wire, `"value": null` reads as no value at all.
        check_valid(
            r#"{"path": "/x", "op": "equals", "value": null}"#,
            "`equals` needs a `value`",
        );
        // Built in Rust, a null value compares as JSON null.
        let up = shell_ok();
        let check = |path: &str, op: ConditionOp, expect: bool| {
            let c = Condition {
                on: ConditionSource::Data,
                path: path.into(),
                op,
                value: Some(Value::Null),
            };
            assert_eq!(validate(&c), Ok(()));
            let got = evaluate(&c, up.status, up.output.as_ref());
            assert_eq!(got, expect, "{path} {op:?} null");
        };
        check("/nothing", ConditionOp::Equals, true);
        check("/nothing", ConditionOp::NotEquals, false);
        check("/missing", ConditionOp::Equals, false);
        check("/missing", ConditionOp::NotEquals, true);
        check("/exit_code", ConditionOp::Equals, false);
        check("/tags", ConditionOp::Contains, false);
    }

    #[test]
    fn a_missing_value_counts_as_null() {
        let c = Condition {
            on: ConditionSource::Data,
            path: "/nothing".into(),
            op: ConditionOp::Equals,
            value: None,
        };
        assert!(validate(&c).is_err());
        let up = shell_ok();
        assert!(evaluate(&c, up.status, up.output.as_ref()));
    }
}
