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
//! Recording appends to the file, and answers a request the file already holds from the file,
//! as a replay would: an interrupted run, or one whose prompts changed in part, calls the
//! endpoint only for what is new (delete the file to start over). Replaying answers each request with
//! the exchanges recorded for its key, in recorded order, repeating the last one when they run
//! out; a request that was never recorded is an error ([`Error::CassetteMiss`]), never a
//! network call. Transient failures (`429`, `5xx`) are not recorded.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::Error;
use crate::canonical::canonical_json;

/// Whether and how a client uses a cassette.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CassetteMode {
    #[default]
    Off,
    /// Answer what this file holds from it; call the endpoint for the rest and append those
    /// exchanges to it.
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
    tapes: Mutex<HashMap<String, Tape>>,
    /// The file, open for appending, in record mode; `None` in replay mode.
    record: Option<Mutex<std::fs::File>>,
}

impl Cassette {
    /// Opens the file for `mode`; `None` for [`CassetteMode::Off`].
    pub(crate) fn open(mode: &CassetteMode) -> Result<Option<Self>, Error> {
        match mode {
            CassetteMode::Off => Ok(None),
            CassetteMode::Record(path) => {
                let tapes = match std::fs::read_to_string(path) {
                    Ok(text) => tapes(path, &text)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
                    Err(e) => return Err(io_error(path, &e)),
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| io_error(path, &e))?;
                Ok(Some(Self {
                    path: path.clone(),
                    tapes: Mutex::new(tapes),
                    record: Some(Mutex::new(file)),
                }))
            }
            CassetteMode::Replay(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
                Ok(Some(Self {
                    path: path.clone(),
                    tapes: Mutex::new(tapes(path, &text)?),
                    record: None,
                }))
            }
        }
    }

    /// The recorded answer to `request`: in replay mode, a request never recorded is
    /// [`Error::CassetteMiss`]; in record mode it is `None` (ask the endpoint, then
    /// [`Self::record`] the answer).
    pub(crate) fn answer(&self, request: &Value) -> Result<Option<Recorded>, Error> {
        let key = key(request);
        let mut tapes = self
            .tapes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = tapes.get_mut(&key).and_then(|tape| {
            let i = tape.next.min(tape.answers.len().saturating_sub(1));
            tape.next += 1;
            tape.answers.get(i).cloned()
        });
        match found {
            None if self.record.is_none() => Err(Error::CassetteMiss {
                path: self.path.display().to_string(),
                key,
            }),
            found => Ok(found),
        }
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

/// The exchanges of a cassette file's `text`, by key, in recorded order.
fn tapes(path: &Path, text: &str) -> Result<HashMap<String, Tape>, Error> {
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
    Ok(tapes)
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
    hex::encode(Sha256::digest(canonical_json(request).as_bytes()))
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
        assert_eq!(
            canonical_json(&b),
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
        let answer = |c: &Cassette, req: &Value| c.answer(req).unwrap().unwrap();
        let bodies: Vec<String> = (0..3).map(|_| answer(&c, &req).body).collect();
        assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":2}"#]);
        let r = answer(&c, &other);
        assert_eq!((r.status, r.body.as_str()), (400, "plain text"));
        let miss = c.answer(&json!({"model": "x"})).unwrap_err();
        assert_eq!(miss.code(), "llm_cassette_miss");
        assert!(miss.to_string().contains("c.jsonl"), "{miss}");

        // Recording again answers what the file holds, and only what is new is left to ask.
        let c = Cassette::open(&CassetteMode::Record(path.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(answer(&c, &req).body, r#"{"n":1}"#);
        assert_eq!(c.answer(&json!({"model": "new"})).unwrap(), None);
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
