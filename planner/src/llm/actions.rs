//! What the LLM planner may ask devices to do: the actions the online devices offer, each shown
//! to the model as one line of the prompt and as one variant of the answer's JSON Schema, so
//! that a constrained model can only write actions that some online device runs.
//!
//! Built-in executors by capability (`shell`, `http`, `fs`), every tool a device advertised
//! (`sim` ops, `phone` and `adb` tools, with the JSON Schema of their args), and `llm` (the
//! device's own agent, with a bounded turn limit).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weft_protocol::Action;

use crate::DeviceProfile;

/// The most turns the model may give a task for a device's own agent.
pub(crate) const MAX_AGENT_TURNS: u32 = 30;

/// One action the model may write: `{"tool": NAME, "with": {ARGS}}`.
///
/// Property names are chosen so that their alphabetical order (the order in which a schema's
/// properties reach the server, and so the order a constrained model writes them in) is the
/// order in which the model should decide: the tool before its arguments.
#[derive(Debug, Clone)]
struct Offer {
    /// An example of the action as the model writes it, for the prompt.
    example: String,
    description: String,
    /// The JSON Schema of the action object.
    schema: Value,
}

/// The actions the online devices offer, in a fixed order (built-ins, then tools by executor
/// and name), and which device offers which.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    offers: Vec<Offer>,
    /// Per device (sorted by name): the tool names it runs.
    by_device: Vec<Vec<String>>,
}

/// The built-in actions: (capability, tool, description, args).
const BUILT_IN: [(&str, &str, &str, &[&str]); 4] = [
    (
        "shell",
        "shell",
        "run a command with sh -c in the device's work directory; output: its stdout",
        &["command"],
    ),
    (
        "http",
        "http_get",
        "HTTP GET of a URL the request gives (or of {{tN.output}}); output: the body",
        &["url"],
    ),
    (
        "fs",
        "read_file",
        "read a text file (path inside the work directory); output: its content",
        &["path"],
    ),
    (
        "fs",
        "write_file",
        "write a text file (path inside the work directory)",
        &["content", "path"],
    ),
];

/// A whole reference to an upstream task's output, as a URL may be given.
const REFERENCE_PATTERN: &str = r"^\{\{t[1-9][0-9]?\.output[A-Za-z0-9_.]*\}\}$";

/// The name the model writes for a tool of an executor: the op itself for `sim`, else
/// `EXECUTOR:NAME` (`phone:clipboard_set`).
fn tool_name(executor: &str, name: &str) -> String {
    if executor == "sim" {
        name.to_owned()
    } else {
        format!("{executor}:{name}")
    }
}

/// The http(s) URLs written in `text`, in order, without repeats (trailing punctuation cut).
pub(crate) fn urls_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in text.match_indices("http") {
        let rest = &text[i..];
        if !(rest.starts_with("http://") || rest.starts_with("https://")) {
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || "\"'<>()[]{}`".contains(c))
            .unwrap_or(rest.len());
        let url = rest[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if url.len() > "https://".len() && !out.iter().any(|u| u == url) {
            out.push(url.to_owned());
        }
    }
    out
}

impl Catalog {
    /// The actions of `devices` (the online ones, sorted by name) for the request `text`: an
    /// `http_get` may fetch only a URL the request gives, or one an upstream task produced.
    pub(crate) fn new(devices: &[&DeviceProfile], text: &str) -> Self {
        let mut offers = Vec::new();
        let has = |cap: &str| {
            devices
                .iter()
                .any(|d| d.info.capabilities.iter().any(|c| c == cap))
        };
        let urls = urls_in(text);
        for (cap, tool, description, args) in BUILT_IN {
            if !has(cap) {
                continue;
            }
            let mut props = Map::new();
            let mut shown = Vec::new();
            for a in args {
                let schema = if *a == "url" {
                    let mut any = vec![json!({"type": "string", "pattern": REFERENCE_PATTERN})];
                    if !urls.is_empty() {
                        any.insert(0, json!({"enum": urls}));
                    }
                    json!({"anyOf": any})
                } else {
                    json!({"type": "string"})
                };
                props.insert((*a).into(), schema);
                shown.push(format!(r#""{a}":"…""#));
            }
            offers.push(Offer {
                example: format!(r#"{{"tool":"{tool}","with":{{{}}}}}"#, shown.join(",")),
                description: description.to_owned(),
                schema: with_schema(
                    tool,
                    json!({"type": "object", "additionalProperties": false,
                           "required": args, "properties": props}),
                ),
            });
        }
        // Tools: one offer per (executor, name), the first device's schema (by name).
        let mut tools: BTreeMap<(String, String), &weft_protocol::ToolSpec> = BTreeMap::new();
        for d in devices {
            for t in &d.tools {
                if d.info.capabilities.contains(&t.executor) {
                    tools
                        .entry((t.executor.clone(), t.name.clone()))
                        .or_insert(t);
                }
            }
        }
        for ((executor, name), t) in &tools {
            let tool = tool_name(executor, name);
            offers.push(Offer {
                example: format!(
                    r#"{{"tool":"{tool}","with":{{{}}}}}"#,
                    args_example(&t.args)
                ),
                description: t.description.clone(),
                schema: with_schema(&tool, t.args.clone()),
            });
        }
        if has("llm") {
            offers.push(Offer {
                example: r#"{"tool":"llm","with":{"max_turns":5}}"#.to_owned(),
                description: format!(
                    "the device's own AI agent carries out the task's name as an instruction, \
                     in at most max_turns steps (1-{MAX_AGENT_TURNS})"
                ),
                schema: with_schema(
                    "llm",
                    json!({
                        "type": "object", "additionalProperties": false,
                        "required": ["max_turns"],
                        "properties": {
                            "max_turns": {"type": "integer", "minimum": 1,
                                          "maximum": MAX_AGENT_TURNS},
                        }
                    }),
                ),
            });
        }
        let by_device = devices
            .iter()
            .map(|d| {
                let has = |cap: &str| d.info.capabilities.iter().any(|c| c == cap);
                let mut runs: Vec<String> = BUILT_IN
                    .iter()
                    .filter(|(cap, ..)| has(cap))
                    .map(|(_, tool, ..)| (*tool).to_owned())
                    .collect();
                let mut own: Vec<String> = d
                    .tools
                    .iter()
                    .filter(|t| has(&t.executor))
                    .map(|t| tool_name(&t.executor, &t.name))
                    .collect();
                own.sort_unstable();
                runs.extend(own);
                if has("llm") {
                    runs.push("llm".into());
                }
                runs
            })
            .collect();
        Self { offers, by_device }
    }

    /// The JSON Schema of an action: one of the offers.
    pub(crate) fn schema(&self) -> Value {
        json!({"anyOf": self.offers.iter().map(|o| o.schema.clone()).collect::<Vec<_>>()})
    }

    /// The actions, one per line: `- EXAMPLE: what it does`.
    pub(crate) fn prompt(&self) -> String {
        self.offers
            .iter()
            .map(|o| format!("- {}: {}", o.example, o.description))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The devices, one per line, with the tools each runs. With several devices, the tools
    /// that every one runs come first, once, and each device's line lists only the others:
    /// what sets the devices apart is what a planner must see.
    pub(crate) fn devices_prompt(&self, devices: &[&DeviceProfile]) -> String {
        let common: Vec<&String> = match self.by_device.split_first() {
            Some((first, rest)) if !rest.is_empty() => first
                .iter()
                .filter(|t| rest.iter().all(|runs| runs.contains(t)))
                .collect(),
            _ => Vec::new(),
        };
        let mut lines = Vec::with_capacity(devices.len() + 1);
        if !common.is_empty() {
            let names: Vec<&str> = common.iter().map(|t| t.as_str()).collect();
            lines.push(format!("Every device runs: {}.", names.join(", ")));
        }
        for (d, runs) in devices.iter().zip(&self.by_device) {
            let platform = d.platform.as_deref().unwrap_or("unknown platform");
            let own: Vec<&str> = runs
                .iter()
                .filter(|t| !common.contains(t))
                .map(String::as_str)
                .collect();
            let tools = match (common.is_empty(), own.is_empty()) {
                (true, _) => own.join(", "),
                (false, true) => "nothing more".to_owned(),
                (false, false) => format!("also {}", own.join(", ")),
            };
            lines.push(format!(
                "- {} ({}, {platform}): {tools}",
                d.info.name, d.info.kind
            ));
        }
        lines.join("\n")
    }
}

/// `{"tool": TOOL, "with": ARGS}` as a schema.
fn with_schema(tool: &str, args: Value) -> Value {
    json!({
        "type": "object", "additionalProperties": false,
        "required": ["tool", "with"],
        "properties": {"tool": {"const": tool}, "with": args},
    })
}

/// `"path":"…","append":false` for an args schema; optional ones marked `(optional)`.
fn args_example(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    props
        .iter()
        .map(|(name, s)| {
            let placeholder = placeholder(s);
            let optional = if required.contains(&name.as_str()) {
                ""
            } else {
                " (optional)"
            };
            format!(r#""{name}":{placeholder}{optional}"#)
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn placeholder(schema: &Value) -> &'static str {
    let ty = schema.get("type");
    let is = |t: &str| match ty {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.first().and_then(Value::as_str) == Some(t),
        _ => false,
    };
    if is("number") || is("integer") {
        "0"
    } else if is("boolean") {
        "false"
    } else if is("array") || schema.get("anyOf").is_some() {
        r#"["…"]"#
    } else if is("string") {
        r#""…""#
    } else {
        "…"
    }
}

/// Reads the model's action (`{"tool": ..., "with": {...}}`) into an [`Action`], or into the
/// turn limit of a task for the device's own agent (`tool: "llm"`: `Ok((None, Some(n)))`).
pub(crate) fn read(v: &Value) -> Result<(Option<Action>, Option<u32>), String> {
    if v.get("tool").is_none() && v.get("kind").is_some() {
        // The wire format (`{"kind": "shell", "command": ...}`), as a model that read the API
        // docs might write it.
        return serde_json::from_value::<Action>(v.clone())
            .map(|a| (Some(a), None))
            .map_err(|e| e.to_string());
    }
    let tool = v
        .get("tool")
        .and_then(Value::as_str)
        .ok_or("the action needs a `tool`")?;
    let with = match v.get("with") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(w @ Value::Object(_)) => w.clone(),
        Some(_) => return Err("`with` must be an object of arguments".into()),
    };
    if tool == "llm" {
        let n = with
            .get("max_turns")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_AGENT_TURNS).contains(n))
            .ok_or(format!(
                "the llm tool needs max_turns from 1 to {MAX_AGENT_TURNS}"
            ))?;
        return Ok((None, Some(n)));
    }
    let wire = if BUILT_IN.iter().any(|(_, t, ..)| *t == tool) {
        let mut o = with.as_object().cloned().unwrap_or_default();
        o.insert("kind".into(), Value::from(tool));
        Value::Object(o)
    } else if let Some((executor, name)) = tool.split_once(':') {
        json!({"kind": executor, "tool": name, "args": with})
    } else {
        json!({"kind": "sim", "op": tool, "args": with})
    };
    serde_json::from_value::<Action>(wire)
        .map(|a| (Some(a), None))
        .map_err(|e| format!("tool `{tool}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceInfo;
    use weft_protocol::ToolSpec;

    fn device(name: &str, kind: &str, caps: &[&str], tools: Vec<ToolSpec>) -> DeviceProfile {
        DeviceProfile {
            info: DeviceInfo {
                name: name.into(),
                kind: kind.into(),
                capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
                online: true,
            },
            platform: Some("linux".into()),
            tools,
        }
    }

    fn notify() -> ToolSpec {
        ToolSpec {
            executor: "sim".into(),
            name: "notify".into(),
            description: "show a notification".into(),
            args: json!({"type": "object", "additionalProperties": false,
                         "required": ["title", "body"],
                         "properties": {"body": {"type": "string"}, "title": {"type": "string"},
                                        "urgent": {"type": "boolean"}}}),
        }
    }

    #[test]
    fn offers_follow_the_devices() {
        let phone = device("phone", "phone", &["fs", "sim"], vec![notify()]);
        // A tool whose executor the device does not offer (the policy took it away) is left out.
        let server = device("server", "server", &["shell"], vec![notify()]);
        let c = Catalog::new(&[&phone, &server], "no urls here");
        assert_eq!(
            c.prompt(),
            "- {\"tool\":\"shell\",\"with\":{\"command\":\"…\"}}: run a command with sh -c in the \
             device's work directory; output: its stdout\n\
             - {\"tool\":\"read_file\",\"with\":{\"path\":\"…\"}}: read a text file (path inside \
             the work directory); output: its content\n\
             - {\"tool\":\"write_file\",\"with\":{\"content\":\"…\",\"path\":\"…\"}}: write a text \
             file (path inside the work directory)\n\
             - {\"tool\":\"notify\",\"with\":{\"body\":\"…\",\"title\":\"…\",\"urgent\":false \
             (optional)}}: show a notification"
        );
        assert_eq!(
            c.devices_prompt(&[&phone, &server]),
            "- phone (phone, linux): read_file, write_file, notify\n\
             - server (server, linux): shell"
        );
        let schema = c.schema();
        let variants = schema["anyOf"].as_array().unwrap();
        assert_eq!(variants.len(), 4);
        assert_eq!(
            variants[3]["properties"]["tool"],
            json!({"const": "notify"})
        );
        assert_eq!(variants[3]["required"], json!(["tool", "with"]));
    }

    #[test]
    fn tools_every_device_runs_are_listed_once() {
        let phone = device("phone", "phone", &["fs", "sim"], vec![notify()]);
        let laptop = device("laptop", "laptop", &["fs"], vec![]);
        let c = Catalog::new(&[&laptop, &phone], "");
        assert_eq!(
            c.devices_prompt(&[&laptop, &phone]),
            "Every device runs: read_file, write_file.\n\
             - laptop (laptop, linux): nothing more\n\
             - phone (phone, linux): also notify"
        );
    }

    #[test]
    fn urls_come_only_from_the_request_or_upstream() {
        let d = device("laptop", "laptop", &["http"], vec![]);
        let text =
            "fetch https://a.example/x.csv, then (http://b.example/y) and https://a.example/x.csv.";
        assert_eq!(
            urls_in(text),
            ["https://a.example/x.csv", "http://b.example/y"]
        );
        let c = Catalog::new(&[&d], text);
        let url = &c.schema()["anyOf"][0]["properties"]["with"]["properties"]["url"];
        assert_eq!(
            url["anyOf"][0],
            json!({"enum": ["https://a.example/x.csv", "http://b.example/y"]})
        );
        assert_eq!(url["anyOf"][1]["pattern"], REFERENCE_PATTERN);
        let c = Catalog::new(&[&d], "no address given");
        let url = &c.schema()["anyOf"][0]["properties"]["with"]["properties"]["url"];
        assert_eq!(url["anyOf"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn actions_read_back_into_wire_actions() {
        let d = device("laptop", "laptop", &["llm"], vec![]);
        let c = Catalog::new(&[&d], "");
        let s = c.schema();
        assert_eq!(
            s["anyOf"][0]["properties"]["with"]["properties"]["max_turns"]["maximum"],
            MAX_AGENT_TURNS
        );
        assert_eq!(
            read(&json!({"tool": "llm", "with": {"max_turns": 3}})),
            Ok((None, Some(3)))
        );
        assert_eq!(
            read(&json!({"tool": "notify", "with": {"title": "a"}})),
            Ok((
                Some(Action::Sim {
                    op: "notify".into(),
                    args: json!({"title": "a"})
                }),
                None
            ))
        );
        assert_eq!(
            read(&json!({"tool": "phone:clipboard_set", "with": {"text": "a"}})),
            Ok((
                Some(Action::Phone {
                    tool: "clipboard_set".into(),
                    args: json!({"text": "a"})
                }),
                None
            ))
        );
        assert_eq!(
            read(&json!({"tool": "shell", "with": {"command": "ls"}})),
            Ok((
                Some(Action::Shell {
                    command: "ls".into()
                }),
                None
            ))
        );
        assert!(read(&json!({"tool": "shell", "with": {"cmd": "ls"}})).is_err());
        assert!(read(&json!({"tool": "llm", "with": {"max_turns": 99}})).is_err());
    }
}
