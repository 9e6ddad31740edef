//! Cassettes: LLM exchanges saved to a file, and answered from it later without any network.
//!
//! The file is JSON Lines, one exchange per line:
//!
//! ```json
//! {"key": "3f1c…", "request": {"model": "…", "messages": […]}, "status": 200, "response": {…}}
//! ```
//!
//! `key` is the SHA-256 (hex) of the request body in canonical JSON (object keys sorted, no
//! whitespace), so the same request always finds the same answer whatever order its fields were
//! written in. `response` is the answer's body as JSON (`response_text` holds it as a string
//! when it is not JSON). Only bodies are saved: headers, and so the API key, never are.
//!
//! Recording appends to the file (delete it to start over). Replaying answers each request with
//! the exchanges recorded for its key, in recorded order, repeating the last one when they run
//! out; a request that was never recorded is an error ([`Error::CassetteMiss`]), never a
//! network call. Transient failures (`429`, `5xx`) are not recorded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::Error;

/// Whether and how a client uses a cassette.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CassetteMode {
    #[default]
    Off,
    /// Call the endpoint and append every exchange to this file.
    Record(PathBuf),
    /// Answer only from this file; never touch the network.
    Replay(PathBuf),
}

/// One saved answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub status: u16,
    pub body: String,
}

#[derive(Debug)]
struct Tape {
    answers: Vec<Recorded>,
    next: usize,
}

#[derive(Debug)]
pub(crate) struct Cassette {
    path: PathBuf,
    replay: Option<Mutex<HashMap<String, Tape>>>,
    record: Option<Mutex<std::fs::File>>,
}

impl Cassette {
    /// Opens the file for `mode`; `None` for [`CassetteMode::Off`].
    pub(crate) fn open(mode: &CassetteMode) -> Result<Option<Self>, Error> {
        match mode {
            CassetteMode::Off => Ok(None),
            CassetteMode::Record(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| io_error(path, &e))?;
                Ok(Some(Self {
                    path: path.clone(),
                    replay: None,
                    record: Some(Mutex::new(file)),
                }))
            }
            CassetteMode::Replay(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
                let mut tapes: HashMap<String, Tape> = HashMap::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let (key, answer) = parse_line(line).map_err(|reason| Error::Cassette {
                        path: path.display().to_string(),
                        reason: format!("line {}: {reason}", i + 1),
                    })?;
                    tapes
                        .entry(key)
                        .or_insert_with(|| Tape {
                            answers: Vec::new(),
                            next: 0,
                        })
                        .answers
                        .push(answer);
                }
                Ok(Some(Self {
                    path: path.clone(),
                    replay: Some(Mutex::new(tapes)),
                    record: None,
                }))
            }
        }
    }

    pub(crate) fn is_replay(&self) -> bool {
        self.replay.is_some()
    }

    /// The recorded answer to `request`.
    pub(crate) fn replay(&self, request: &Value) -> Result<Recorded, Error> {
        let key = key(request);
        let miss = || Error::CassetteMiss {
            path: self.path.display().to_string(),
            key: key.clone(),
        };
        let Some(tapes) = &self.replay else {
            return Err(miss());
        };
        let mut tapes = tapes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tape = tapes.get_mut(&key).ok_or_else(miss)?;
        let i = tape.next.min(tape.answers.len().saturating_sub(1));
        tape.next += 1;
        tape.answers.get(i).cloned().ok_or_else(miss)
    }

    /// Appends one exchange (record mode; a no-op otherwise).
    pub(crate) fn record(&self, request: &Value, answer: &Recorded) -> Result<(), Error> {
        let Some(file) = &self.record else {
            return Ok(());
        };
        let mut line = json!({"key": key(request), "request": request, "status": answer.status});
        match serde_json::from_str::<Value>(&answer.body) {
            Ok(v) => line["response"] = v,
            Err(_) => line["response_text"] = Value::String(answer.body.clone()),
        }
        let mut text = line.to_string();
        text.push('\n');
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| io_error(&self.path, &e))
    }
}

fn parse_line(line: &str) -> Result<(String, Recorded), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let request = v.get("request").ok_or("no `request`")?;
    let status = v
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or("no `status`")?;
    let body = match (v.get("response"), v.get("response_text")) {
        (Some(r), _) => r.to_string(),
        (None, Some(Value::String(t))) => t.clone(),
        _ => return Err("no `response`".into()),
    };
    // The key is recomputed from the request, so a hand-edited request is found by its content.
    Ok((key(request), Recorded { status, body }))
}

fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Cassette {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The match key of a request body: SHA-256 (hex) of its canonical JSON.
pub fn key(request: &Value) -> String {
    let mut text = String::new();
    canonical(request, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compact JSON with object keys sorted (byte order), whatever order the map keeps them in.
pub fn canonical(v: &Value, out: &mut String) {
    match v {
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
                if let Some(v) = map.get(k) {
                    canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
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
    use super::*;

    #[test]
    fn key_ignores_field_order_and_whitespace() {
        let a: Value = serde_json::from_str(
            r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"messages":[{"content":"hi","role":"user"}],"model":"m"}"#)
                .unwrap();
        assert_eq!(key(&a), key(&b));
        let c = json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}]});
        assert_ne!(key(&a), key(&c));
        let mut text = String::new();
        canonical(&b, &mut text);
        assert_eq!(
            text,
            r#"{"messages":[{"content":"hi","role":"user"}],"model":"m"}"#
        );
    }

    #[test]
    fn record_then_replay_in_order_then_repeat_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let req = json!({"model": "m", "messages": []});
        let other = json!({"model": "m", "messages": [1]});
        {
            let c = Cassette::open(&CassetteMode::Record(path.clone()))
                .unwrap()
                .unwrap();
            for body in [r#"{"n":1}"#, r#"{"n":2}"#] {
                c.record(
                    &req,
                    &Recorded {
                        status: 200,
                        body: body.into(),
                    },
                )
                .unwrap();
            }
            c.record(
                &other,
                &Recorded {
                    status: 400,
                    body: "plain text".into(),
                },
            )
            .unwrap();
        }
        let c = Cassette::open(&CassetteMode::Replay(path.clone()))
            .unwrap()
            .unwrap();
        let bodies: Vec<String> = (0..3).map(|_| c.replay(&req).unwrap().body).collect();
        assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":2}"#]);
        let r = c.replay(&other).unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "plain text"));
        let miss = c.replay(&json!({"model": "x"})).unwrap_err();
        assert_eq!(miss.code(), "llm_cassette_miss");
        assert!(miss.to_string().contains("c.jsonl"), "{miss}");
    }

    #[test]
    fn a_missing_or_broken_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Cassette::open(&CassetteMode::Replay(dir.path().join("nope"))).unwrap_err();
        assert_eq!(missing.code(), "llm_cassette_error");
        let broken = dir.path().join("broken.jsonl");
        std::fs::write(&broken, "{\"key\": 1}\n").unwrap();
        let e = Cassette::open(&CassetteMode::Replay(broken)).unwrap_err();
        assert!(e.to_string().contains("line 1: no `request`"), "{e}");
    }
}
