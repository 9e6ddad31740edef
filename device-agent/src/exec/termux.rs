//! `phone`: the phone's own tools, through Termux:API on Android.
//!
//! An agent of kind `phone` looks for the Termux:API programs (`termux-notification`,
//! `termux-clipboard-set`, …; they come with `pkg install termux-api` plus the Termux:API app)
//! on its tool path when it starts, and offers the tools it found as the `phone` executor, each
//! with a JSON Schema for its arguments. An action is `{"kind": "phone", "tool": NAME,
//! "args": {...}}`. `location` is off unless the owner names it in `policy.phone.tools`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use weft_protocol::{ErrorInfo, ToolSpec};

use super::{Ctx, Outcome, capped_text, find_program, summary_of};

/// One Termux:API tool: its name in actions, the program, what it does, its args schema.
struct ToolDef {
    name: &'static str,
    program: &'static str,
    description: &'static str,
    schema: fn() -> Value,
}

const TOOLS: [ToolDef; 6] = [
    ToolDef {
        name: "notification",
        program: "termux-notification",
        description: "Show a notification on the phone.",
        schema: || {
            json!({"type": "object", "additionalProperties": false,
                   "properties": {"title": {"type": "string"}, "content": {"type": "string"}},
                   "required": ["content"]})
        },
    },
    ToolDef {
        name: "clipboard_set",
        program: "termux-clipboard-set",
        description: "Put text on the phone's clipboard.",
        schema: || {
            json!({"type": "object", "additionalProperties": false,
                   "properties": {"text": {"type": "string"}}, "required": ["text"]})
        },
    },
    ToolDef {
        name: "clipboard_get",
        program: "termux-clipboard-get",
        description: "Read the text on the phone's clipboard.",
        schema: || json!({"type": "object", "additionalProperties": false, "properties": {}}),
    },
    ToolDef {
        name: "open_url",
        program: "termux-open-url",
        description: "Open an http(s) URL on the phone (browser or the app that handles it).",
        schema: || {
            json!({"type": "object", "additionalProperties": false,
                   "properties": {"url": {"type": "string", "format": "uri"}},
                   "required": ["url"]})
        },
    },
    ToolDef {
        name: "battery_status",
        program: "termux-battery-status",
        description: "The battery's level, status, health and temperature (JSON).",
        schema: || json!({"type": "object", "additionalProperties": false, "properties": {}}),
    },
    ToolDef {
        name: "location",
        program: "termux-location",
        description: "The phone's location (JSON); needs the location permission.",
        schema: || {
            json!({"type": "object", "additionalProperties": false,
                   "properties": {
                       "provider": {"type": "string", "enum": ["gps", "network", "passive"]},
                       "request": {"type": "string", "enum": ["once", "last"]}}})
        },
    },
];

/// The tools found on this phone, by name, with their programs.
#[derive(Debug, Clone, Default)]
pub struct Termux {
    found: Vec<(&'static str, PathBuf)>,
}

impl Termux {
    /// Looks for each tool's program on `search_path`.
    pub fn discover(search_path: &OsStr) -> Self {
        let found = TOOLS
            .iter()
            .filter_map(|t| find_program(Path::new(t.program), search_path).map(|p| (t.name, p)))
            .collect::<Vec<_>>();
        if !found.is_empty() {
            tracing::info!(tools = ?found.iter().map(|f| f.0).collect::<Vec<_>>(),
                "Termux:API tools found");
        }
        Self { found }
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The found tools as the planner sees them.
    pub fn specs(&self) -> Vec<ToolSpec> {
        TOOLS
            .iter()
            .filter(|t| self.found.iter().any(|(n, _)| *n == t.name))
            .map(|t| ToolSpec {
                executor: "phone".into(),
                name: t.name.into(),
                description: t.description.into(),
                args: (t.schema)(),
            })
            .collect()
    }

    /// Checks the tool exists here and its args are well-formed; returns the program and call.
    pub fn vet(&self, tool: &str, args: &Value) -> Result<(PathBuf, Call), ErrorInfo> {
        let call = parse(tool, args)?;
        let program = self
            .found
            .iter()
            .find(|(n, _)| *n == tool)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                ErrorInfo::new(
                    "unsupported_action",
                    format!(
                        "this phone has no `{tool}` tool (is the Termux:API package installed?)"
                    ),
                )
            })?;
        Ok((program, call))
    }
}

/// A checked call of one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Notification { title: String, content: String },
    ClipboardSet { text: String },
    ClipboardGet,
    OpenUrl { url: String },
    BatteryStatus,
    Location { provider: String, request: String },
}

fn args_of<T: DeserializeOwned>(tool: &str, args: &Value) -> Result<T, ErrorInfo> {
    let args = if args.is_null() {
        json!({})
    } else {
        args.clone()
    };
    serde_json::from_value(args)
        .map_err(|e| ErrorInfo::new("invalid_action", format!("the `{tool}` tool's args: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// Parses a tool's args (`invalid_action` if they do not fit its schema).
pub fn parse(tool: &str, args: &Value) -> Result<Call, ErrorInfo> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Notification {
        #[serde(default)]
        title: String,
        content: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Text {
        text: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Url {
        url: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Location {
        #[serde(default)]
        provider: Option<String>,
        #[serde(default)]
        request: Option<String>,
    }
    Ok(match tool {
        "notification" => {
            let a: Notification = args_of(tool, args)?;
            Call::Notification {
                title: if a.title.is_empty() {
                    "weft".into()
                } else {
                    a.title
                },
                content: a.content,
            }
        }
        "clipboard_set" => Call::ClipboardSet {
            text: args_of::<Text>(tool, args)?.text,
        },
        "clipboard_get" => {
            args_of::<NoArgs>(tool, args)?;
            Call::ClipboardGet
        }
        "open_url" => {
            let url = args_of::<Url>(tool, args)?.url;
            super::http::parse_url(&url)
                .map_err(|o| o.error.unwrap_or_else(|| ErrorInfo::new("invalid_url", "")))?;
            Call::OpenUrl { url }
        }
        "battery_status" => {
            args_of::<NoArgs>(tool, args)?;
            Call::BatteryStatus
        }
        "location" => {
            let a: Location = args_of(tool, args)?;
            let provider = a.provider.unwrap_or_else(|| "network".into());
            let request = a.request.unwrap_or_else(|| "once".into());
            if !["gps", "network", "passive"].contains(&provider.as_str())
                || !["once", "last"].contains(&request.as_str())
            {
                return Err(ErrorInfo::new(
                    "invalid_action",
                    "location: provider is gps, network or passive; request is once or last",
                ));
            }
            Call::Location { provider, request }
        }
        other => {
            return Err(ErrorInfo::new(
                "unsupported_action",
                format!(
                    "no phone tool `{other}` (known: {})",
                    TOOLS.map(|t| t.name).join(", ")
                ),
            ));
        }
    })
}

/// The arguments and standard input of the program for `call`. Pure, for tests.
pub fn invocation(call: &Call) -> (Vec<OsString>, Option<Vec<u8>>) {
    let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
    match call {
        Call::Notification { title, content } => {
            (os(&["--title", title, "--content", content]), None)
        }
        // Through standard input, so the text is never parsed as an option.
        Call::ClipboardSet { text } => (vec![], Some(text.clone().into_bytes())),
        Call::ClipboardGet | Call::BatteryStatus => (vec![], None),
        Call::OpenUrl { url } => (os(&[url]), None),
        Call::Location { provider, request } => (os(&["-p", provider, "-r", request]), None),
    }
}

pub async fn run(tool: &str, args: &Value, ctx: &Ctx<'_>) -> Outcome {
    let (program, call) = match ctx.tools.phone.vet(tool, args) {
        Ok(v) => v,
        Err(e) => return super::failed(e),
    };
    let (argv, stdin) = invocation(&call);
    if let Err(e) = tokio::fs::create_dir_all(ctx.workdir).await {
        return Outcome::failed("workdir_unavailable", format!("the workdir: {e}"));
    }
    let out = match super::run_program(
        &program,
        &argv,
        stdin.as_deref(),
        ctx.workdir,
        ctx.max_output_bytes,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            return Outcome::failed(
                "spawn_failed",
                format!("cannot run {}: {e}", program.display()),
            );
        }
    };
    let (stdout, cut) = capped_text(&out.stdout, ctx.max_output_bytes);
    let (stderr, _) = capped_text(&out.stderr, ctx.max_output_bytes);
    let mut data = json!({
        "tool": tool,
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": out.code,
        "truncated": out.truncated || cut,
    });
    // Tools that answer JSON (battery, location) also give it parsed.
    if let Ok(v) = serde_json::from_str::<Value>(&stdout)
        && v.is_object()
    {
        data["result"] = v;
    }
    if matches!(call, Call::ClipboardGet) {
        data["text"] = json!(stdout);
    }
    let summary = match &call {
        Call::Notification { .. } => "notification shown".to_owned(),
        Call::ClipboardSet { text } => format!("clipboard set ({} bytes)", text.len()),
        Call::OpenUrl { url } => format!("opened {url}"),
        Call::BatteryStatus => match data["result"]["percentage"].as_i64() {
            Some(p) => format!("battery {p}%"),
            None => summary_of(&stdout),
        },
        _ => summary_of(&stdout),
    };
    let output = weft_protocol::TaskOutput { summary, data };
    match out.code {
        Some(0) => Outcome {
            status: weft_protocol::wire::ResultStatus::Succeeded,
            output,
            error: None,
        },
        code => Outcome::failed_with(
            "exit_status",
            format!(
                "{} exited with {}: {}",
                program.display(),
                code.map_or("a signal".to_owned(), |c| c.to_string()),
                summary_of(&stderr)
            ),
            output,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_become_program_arguments() {
        let call = |tool: &str, args: Value| parse(tool, &args).map(|c| invocation(&c));
        let strs = |v: Vec<OsString>| {
            v.into_iter()
                .map(|s| s.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        let (a, i) = call("notification", json!({"title": "T", "content": "-c x"})).unwrap();
        assert_eq!(strs(a), ["--title", "T", "--content", "-c x"]);
        assert_eq!(i, None);
        let (a, i) = call("clipboard_set", json!({"text": "--help"})).unwrap();
        assert!(a.is_empty());
        assert_eq!(i.unwrap(), b"--help");
        let (a, _) = call("location", Value::Null).unwrap();
        assert_eq!(strs(a), ["-p", "network", "-r", "once"]);
        let (a, _) = call("open_url", json!({"url": "https://example.com/x"})).unwrap();
        assert_eq!(strs(a), ["https://example.com/x"]);

        let code = |tool: &str, args: Value| parse(tool, &args).unwrap_err().code;
        assert_eq!(code("notification", json!({})), "invalid_action");
        assert_eq!(code("battery_status", json!({"x": 1})), "invalid_action");
        assert_eq!(
            code("location", json!({"provider": "wifi"})),
            "invalid_action"
        );
        assert_eq!(
            code("open_url", json!({"url": "javascript:alert(1)"})),
            "invalid_url"
        );
        assert_eq!(code("teleport", json!({})), "unsupported_action");
    }

    #[test]
    fn tools_found_on_the_path_are_offered_with_schemas() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["termux-battery-status", "termux-clipboard-set"] {
            std::fs::write(dir.path().join(p), "").unwrap();
        }
        let t = Termux::discover(&std::env::join_paths([dir.path()]).unwrap());
        let specs = t.specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["clipboard_set", "battery_status"]);
        assert_eq!(specs[0].args["required"], json!(["text"]));
        assert_eq!(
            t.vet("notification", &json!({"content": "x"}))
                .unwrap_err()
                .code,
            "unsupported_action"
        );
        assert!(t.vet("battery_status", &Value::Null).is_ok());
        assert!(Termux::discover(OsStr::new("")).is_empty());
    }
}
