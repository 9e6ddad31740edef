//! The one canonical JSON writer: compact, object keys sorted in byte order whatever order the
//! map keeps them in, so that the same value always gives the same text (cassette keys, the
//! repair rounds' repeated-answer check, the simulated devices' seeded choices).

use std::fmt::Write;

use serde_json::Value;

/// `value` as canonical JSON.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", Value::String(k.clone()));
                out.push(':');
                write(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        leaf => {
            let _ = write!(out, "{leaf}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_sorted_no_spaces() {
        let check = |v: Value, expect: &str| assert_eq!(canonical_json(&v), expect);
        check(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            r#"{"messages":[{"content":"hi","role":"user"}],"model":"m"}"#,
        );
        check(
            json!({"b": 1, "a": [true, null, 2.5]}),
            r#"{"a":[true,null,2.5],"b":1}"#,
        );
        check(
            json!({"é": "\"q\"\n", "Z": {}}),
            r#"{"Z":{},"é":"\"q\"\n"}"#,
        );
        check(json!("x"), r#""x""#);
    }
}
