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

/// One action the model may write.
#[derive(Debug, Clone)]
struct Offer {
    /// An example of the action as the model writes it (its `kind`, its op or tool, and each
    /// argument with a placeholder), for the prompt.
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
    /// Per device (sorted by name): the short names of what it runs (`shell`, `sim:mail.send`).
    by_device: Vec<(String, Vec<String>)>,
}

/// The built-in actions: (capability, kind, description, args).
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
        "HTTP GET of a URL given in the request; output: the body",
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
        &["path", "content"],
    ),
];

impl Catalog {
    /// The actions of `devices` (the online ones, sorted by name).
    pub(crate) fn new(devices: &[&DeviceProfile]) -> Self {
        let mut offers = Vec::new();
        let has = |cap: &str| {
            devices
                .iter()
                .any(|d| d.info.capabilities.iter().any(|c| c == cap))
        };
        for (cap, kind, description, args) in BUILT_IN {
            if !has(cap) {
                continue;
            }
            let mut props = Map::new();
            props.insert("kind".into(), json!({"const": kind}));
            let mut example = format!(r#"{{"kind":"{kind}""#);
            for a in args {
                props.insert((*a).into(), json!({"type": "string"}));
                example.push_str(&format!(r#","{a}":"…""#));
            }
            example.push('}');
            let mut required = vec!["kind"];
            required.extend_from_slice(args);
            offers.push(Offer {
                example,
                description: description.to_owned(),
                schema: json!({"type": "object", "additionalProperties": false,
                               "required": required, "properties": props}),
            });
        }
        // Tools: one offer per (executor, name), the first device's schema (by name).
        let mut tools: BTreeMap<(String, String), &weft_protocol::ToolSpec> = BTreeMap::new();
        for d in devices {
            for t in &d.tools {
                if d.info.capabilities.iter().any(|c| *c == t.executor) {
                    tools
                        .entry((t.executor.clone(), t.name.clone()))
                        .or_insert(t);
                }
            }
        }
        for ((executor, name), t) in &tools {
            let field = name_field(executor);
            let mut example = format!(r#"{{"kind":"{executor}","{field}":"{name}","args":{{"#);
            example.push_str(&args_example(&t.args));
            example.push_str("}}");
            offers.push(Offer {
                example,
                description: t.description.clone(),
                schema: json!({
                    "type": "object", "additionalProperties": false,
                    "required": ["kind", field, "args"],
                    "properties": {
                        "kind": {"const": executor},
                        field: {"const": name},
                        "args": t.args,
                    }
                }),
            });
        }
        if has("llm") {
            offers.push(Offer {
                example: r#"{"kind":"llm","max_turns":5}"#.to_owned(),
                description: format!(
                    "the device's own AI agent carries out the task's title as an instruction, \
                     in at most max_turns steps (1-{MAX_AGENT_TURNS})"
                ),
                schema: json!({
                    "type": "object", "additionalProperties": false,
                    "required": ["kind", "max_turns"],
                    "properties": {
                        "kind": {"const": "llm"},
                        "max_turns": {"type": "integer", "minimum": 1, "maximum": MAX_AGENT_TURNS},
                    }
                }),
            });
        }
        let by_device = devices
            .iter()
            .map(|d| {
                let mut runs: Vec<String> = BUILT_IN
                    .iter()
                    .filter(|(cap, ..)| d.info.capabilities.iter().any(|c| c == cap))
                    .map(|(_, kind, ..)| (*kind).to_owned())
                    .collect();
                let mut by_exec: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for t in &d.tools {
                    if d.info.capabilities.iter().any(|c| *c == t.executor) {
                        by_exec.entry(&t.executor).or_default().push(&t.name);
                    }
                }
                for (exec, mut names) in by_exec {
                    names.sort_unstable();
                    runs.push(format!("{exec} ({})", names.join(" ")));
                }
                if d.info.capabilities.iter().any(|c| c == "llm") {
                    runs.push("llm".into());
                }
                (d.info.name.to_string(), runs)
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

    /// The devices, one per line, with what each runs.
    pub(crate) fn devices_prompt(&self, devices: &[&DeviceProfile]) -> String {
        devices
            .iter()
            .zip(&self.by_device)
            .map(|(d, (_, runs))| {
                let platform = d.platform.as_deref().unwrap_or("unknown platform");
                format!(
                    "- {} ({}, {platform}): {}",
                    d.info.name,
                    d.info.kind,
                    runs.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The field that names the tool: `op` for `sim`, `tool` for the others.
fn name_field(executor: &str) -> &'static str {
    if executor == "sim" { "op" } else { "tool" }
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

/// Reads the model's action (`{"kind": ..., ...}`) into an [`Action`], or into the turn limit
/// of a task for the device's own agent (`kind: "llm"`).
pub(crate) fn read(v: &Value) -> Result<Option<Action>, String> {
    match v.get("kind").and_then(Value::as_str) {
        Some("llm") => Ok(None),
        Some(_) => serde_json::from_value::<Action>(v.clone())
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Err("the action has no `kind`".into()),
    }
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
        let c = Catalog::new(&[&phone, &server]);
        assert_eq!(
            c.prompt(),
            "- {\"kind\":\"shell\",\"command\":\"…\"}: run a command with sh -c in the device's \
             work directory; output: its stdout\n\
             - {\"kind\":\"read_file\",\"path\":\"…\"}: read a text file (path inside the work \
             directory); output: its content\n\
             - {\"kind\":\"write_file\",\"path\":\"…\",\"content\":\"…\"}: write a text file \
             (path inside the work directory)\n\
             - {\"kind\":\"sim\",\"op\":\"notify\",\"args\":{\"body\":\"…\",\"title\":\"…\",\
             \"urgent\":false (optional)}}: show a notification"
        );
        assert_eq!(
            c.devices_prompt(&[&phone, &server]),
            "- phone (phone, linux): read_file, write_file, sim (notify)\n\
             - server (server, linux): shell"
        );
        let schema = c.schema();
        let variants = schema["anyOf"].as_array().unwrap();
        assert_eq!(variants.len(), 4);
        assert_eq!(variants[3]["properties"]["op"], json!({"const": "notify"}));
        assert_eq!(variants[3]["required"], json!(["kind", "op", "args"]));
    }

    #[test]
    fn the_device_agent_is_an_action_with_a_bounded_turn_limit() {
        let d = device("laptop", "laptop", &["llm"], vec![]);
        let c = Catalog::new(&[&d]);
        let s = c.schema();
        assert_eq!(
            s["anyOf"][0]["properties"]["max_turns"]["maximum"],
            MAX_AGENT_TURNS
        );
        assert_eq!(read(&json!({"kind": "llm", "max_turns": 3})), Ok(None));
        assert_eq!(
            read(&json!({"kind": "sim", "op": "notify", "args": {"title": "a"}})),
            Ok(Some(Action::Sim {
                op: "notify".into(),
                args: json!({"title": "a"})
            }))
        );
        assert!(read(&json!({"kind": "teleport"})).is_err());
    }
}
