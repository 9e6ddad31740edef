//! `adb`: drive an Android device attached to this machine (USB or adb-over-network) with the
//! `adb` program, always as `adb -s SERIAL …` for the serial in the config file (`[adb]`).
//!
//! Tools: `launch_app`, `tap`, `swipe`, `type_text`, `key_event`, `screenshot` (PNG to a file),
//! `list_packages`, `push`, `pull`. Files on this machine (`screenshot`, `push`, `pull`) follow
//! the `fs` rules: inside the workdir or a root the policy allows. Everything sent through the
//! device's shell is checked (names, numbers) or quoted, so task text cannot inject commands.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use weft_protocol::{ErrorInfo, ToolSpec};

use super::{Ctx, Outcome, capped_text, summary_of};
use crate::policy::FsOp;

/// Largest screenshot or pulled file kept, in bytes.
const MAX_SCREENSHOT_BYTES: usize = 32 * 1024 * 1024;

/// The adb program found and the device it drives.
#[derive(Debug, Clone)]
pub struct Adb {
    pub program: PathBuf,
    pub serial: String,
}

/// A checked call of one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    LaunchApp {
        package: String,
        activity: Option<String>,
    },
    Tap {
        x: u32,
        y: u32,
    },
    Swipe {
        x1: u32,
        y1: u32,
        x2: u32,
        y2: u32,
        duration_ms: Option<u32>,
    },
    TypeText {
        text: String,
    },
    KeyEvent {
        key: String,
    },
    Screenshot {
        path: String,
    },
    ListPackages,
    Push {
        local: String,
        remote: String,
    },
    Pull {
        remote: String,
        local: String,
    },
}

const TOOL_NAMES: [&str; 9] = [
    "launch_app",
    "tap",
    "swipe",
    "type_text",
    "key_event",
    "screenshot",
    "list_packages",
    "push",
    "pull",
];

/// Every adb tool as the planner sees it.
pub fn specs() -> Vec<ToolSpec> {
    let obj = |props: Value, required: &[&str]| {
        json!({"type": "object", "additionalProperties": false, "properties": props,
               "required": required})
    };
    let int = json!({"type": "integer", "minimum": 0});
    let s = json!({"type": "string"});
    let spec = |name: &str, description: &str, args: Value| ToolSpec {
        executor: "adb".into(),
        name: name.into(),
        description: description.into(),
        args,
    };
    vec![
        spec(
            "launch_app",
            "Start an app by package (its launcher activity, or `activity`).",
            obj(json!({"package": s, "activity": s}), &["package"]),
        ),
        spec(
            "tap",
            "Tap the screen at (x, y) pixels.",
            obj(json!({"x": int, "y": int}), &["x", "y"]),
        ),
        spec(
            "swipe",
            "Swipe from (x1, y1) to (x2, y2), optionally over duration_ms.",
            obj(
                json!({"x1": int, "y1": int, "x2": int, "y2": int, "duration_ms": int}),
                &["x1", "y1", "x2", "y2"],
            ),
        ),
        spec(
            "type_text",
            "Type text into the focused field.",
            obj(json!({"text": s}), &["text"]),
        ),
        spec(
            "key_event",
            "Press a key: HOME, BACK, ENTER, … (KEYCODE_ names or numbers).",
            obj(json!({"key": s}), &["key"]),
        ),
        spec(
            "screenshot",
            "Save a PNG screenshot to `path` on the agent's machine (inside its workdir).",
            obj(json!({"path": s}), &["path"]),
        ),
        spec(
            "list_packages",
            "List the installed packages.",
            obj(json!({}), &[]),
        ),
        spec(
            "push",
            "Copy the file `local` (inside the workdir) to `remote` on the device.",
            obj(json!({"local": s, "remote": s}), &["local", "remote"]),
        ),
        spec(
            "pull",
            "Copy the file `remote` on the device to `local` (inside the workdir).",
            obj(json!({"remote": s, "local": s}), &["remote", "local"]),
        ),
    ]
}

fn invalid(msg: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("invalid_action", msg)
}

fn args_of<T: DeserializeOwned>(tool: &str, args: &Value) -> Result<T, ErrorInfo> {
    let args = if args.is_null() {
        json!({})
    } else {
        args.clone()
    };
    serde_json::from_value(args).map_err(|e| invalid(format!("the `{tool}` tool's args: {e}")))
}

/// A Java-style name: letters, digits, `.`, `_` (and `$`, `/` for activities).
fn java_name(what: &str, s: &str, extra: &[char]) -> Result<(), ErrorInfo> {
    if !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || extra.contains(&c))
    {
        Ok(())
    } else {
        Err(invalid(format!("{what} `{s}` is not a valid name")))
    }
}

fn remote_path(s: &str) -> Result<(), ErrorInfo> {
    if s.starts_with('/') && !s.contains(['\0', '\n', '\r']) {
        Ok(())
    } else {
        Err(invalid(format!(
            "remote path `{s}` must be an absolute path on the device"
        )))
    }
}

/// Parses a tool's args (`invalid_action` if they do not fit its schema).
pub fn parse(tool: &str, args: &Value) -> Result<Call, ErrorInfo> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Launch {
        package: String,
        activity: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tap {
        x: u32,
        y: u32,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Swipe {
        x1: u32,
        y1: u32,
        x2: u32,
        y2: u32,
        duration_ms: Option<u32>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Text {
        text: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Key {
        key: Value,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PathArg {
        path: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Files {
        local: String,
        remote: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoArgs {}
    Ok(match tool {
        "launch_app" => {
            let a: Launch = args_of(tool, args)?;
            java_name("package", &a.package, &[])?;
            if let Some(act) = &a.activity {
                java_name("activity", act, &['$', '/'])?;
            }
            Call::LaunchApp {
                package: a.package,
                activity: a.activity,
            }
        }
        "tap" => {
            let a: Tap = args_of(tool, args)?;
            Call::Tap { x: a.x, y: a.y }
        }
        "swipe" => {
            let a: Swipe = args_of(tool, args)?;
            Call::Swipe {
                x1: a.x1,
                y1: a.y1,
                x2: a.x2,
                y2: a.y2,
                duration_ms: a.duration_ms,
            }
        }
        "type_text" => {
            let a: Text = args_of(tool, args)?;
            if a.text.is_empty() || a.text.contains(['\0', '\n', '\r']) {
                return Err(invalid("type_text: one non-empty line of text"));
            }
            Call::TypeText { text: a.text }
        }
        "key_event" => {
            let a: Key = args_of(tool, args)?;
            let key = match a.key {
                Value::Number(n) if n.is_u64() => n.to_string(),
                Value::String(s) => s.trim().to_ascii_uppercase(),
                _ => return Err(invalid("key_event: key is a name or a number")),
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(format!("key_event: `{key}` is not a key name")));
            }
            let key = if key.chars().all(|c| c.is_ascii_digit()) || key.starts_with("KEYCODE_") {
                key
            } else {
                format!("KEYCODE_{key}")
            };
            Call::KeyEvent { key }
        }
        "screenshot" => Call::Screenshot {
            path: args_of::<PathArg>(tool, args)?.path,
        },
        "list_packages" => {
            args_of::<NoArgs>(tool, args)?;
            Call::ListPackages
        }
        "push" => {
            let a: Files = args_of(tool, args)?;
            remote_path(&a.remote)?;
            Call::Push {
                local: a.local,
                remote: a.remote,
            }
        }
        "pull" => {
            let a: Files = args_of(tool, args)?;
            remote_path(&a.remote)?;
            Call::Pull {
                remote: a.remote,
                local: a.local,
            }
        }
        other => {
            return Err(ErrorInfo::new(
                "unsupported_action",
                format!("no adb tool `{other}` (known: {})", TOOL_NAMES.join(", ")),
            ));
        }
    })
}

/// `text` for `input text`: spaces as `%s` (how `input` reads a space), the whole in single
/// quotes for the device's shell, which `adb shell` hands its arguments to.
pub fn input_text_arg(text: &str) -> String {
    format!("'{}'", text.replace(' ', "%s").replace('\'', r"'\''"))
}

/// The adb arguments for `call` on the device `serial`; `local` is the checked path on this
/// machine for the tools that use one. Pure, for tests.
pub fn adb_args(serial: &str, call: &Call, local: Option<&std::path::Path>) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["-s".into(), serial.into()];
    let mut push = |items: &[&str]| v.extend(items.iter().map(OsString::from));
    match call {
        Call::LaunchApp {
            package,
            activity: Some(activity),
        } => push(&[
            "shell",
            "am",
            "start",
            "-n",
            &format!("{package}/{activity}"),
        ]),
        Call::LaunchApp {
            package,
            activity: None,
        } => push(&[
            "shell",
            "monkey",
            "-p",
            package,
            "-c",
            "android.intent.category.LAUNCHER",
            "1",
        ]),
        Call::Tap { x, y } => push(&["shell", "input", "tap", &x.to_string(), &y.to_string()]),
        Call::Swipe {
            x1,
            y1,
            x2,
            y2,
            duration_ms,
        } => {
            let mut a = vec![
                "shell".to_owned(),
                "input".into(),
                "swipe".into(),
                x1.to_string(),
                y1.to_string(),
                x2.to_string(),
                y2.to_string(),
            ];
            if let Some(d) = duration_ms {
                a.push(d.to_string());
            }
            push(&a.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Call::TypeText { text } => push(&["shell", "input", "text", &input_text_arg(text)]),
        Call::KeyEvent { key } => push(&["shell", "input", "keyevent", key]),
        Call::Screenshot { .. } => push(&["exec-out", "screencap", "-p"]),
        Call::ListPackages => push(&["shell", "pm", "list", "packages"]),
        Call::Push { remote, .. } => {
            push(&["push"]);
            v.extend(local.map(|l| l.as_os_str().to_owned()));
            v.push(remote.into());
        }
        Call::Pull { remote, .. } => {
            push(&["pull", remote]);
            v.extend(local.map(|l| l.as_os_str().to_owned()));
        }
    }
    v
}

/// The static checks: the tool exists, its args are well-formed, its local path (if any)
/// passes the policy's lexical check.
pub fn vet(tool: &str, args: &Value, ctx: &Ctx<'_>) -> Result<Call, ErrorInfo> {
    let call = parse(tool, args)?;
    let local = match &call {
        Call::Screenshot { path } | Call::Pull { local: path, .. } => Some((FsOp::Write, path)),
        Call::Push { local, .. } => Some((FsOp::Read, local)),
        _ => None,
    };
    if let Some((op, path)) = local {
        ctx.policy
            .check_path(op, path, ctx.workdir)
            .map_err(|r| r.error())?;
    }
    Ok(call)
}

pub async fn run(tool: &str, args: &Value, ctx: &Ctx<'_>) -> Outcome {
    match try_run(tool, args, ctx).await {
        Ok(o) | Err(o) => o,
    }
}

async fn try_run(tool: &str, args: &Value, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    let Some(adb) = &ctx.tools.adb else {
        return Err(Outcome::failed(
            "unsupported_action",
            "this agent drives no device over adb (set [adb] serial in its config file)",
        ));
    };
    let call = vet(tool, args, ctx).map_err(super::failed)?;
    let local = match &call {
        Call::Screenshot { path } | Call::Pull { local: path, .. } => {
            Some(super::fs::resolve_write(path, ctx).await?)
        }
        Call::Push { local, .. } => Some(super::fs::resolve_read(local, ctx).await?),
        _ => None,
    };
    tokio::fs::create_dir_all(ctx.workdir)
        .await
        .map_err(|e| Outcome::failed("workdir_unavailable", format!("the workdir: {e}")))?;
    let argv = adb_args(&adb.serial, &call, local.as_deref());
    let max = if matches!(call, Call::Screenshot { .. }) {
        MAX_SCREENSHOT_BYTES
    } else {
        ctx.max_output_bytes
    };
    let out = super::run_program(&adb.program, &argv, None, ctx.workdir, max)
        .await
        .map_err(|e| {
            Outcome::failed(
                "spawn_failed",
                format!("cannot run {}: {e}", adb.program.display()),
            )
        })?;
    let (stderr, _) = capped_text(&out.stderr, ctx.max_output_bytes);
    if out.code != Some(0) {
        return Err(Outcome::failed_with(
            "exit_status",
            format!(
                "adb {tool} exited with {}: {}",
                out.code.map_or("a signal".to_owned(), |c| c.to_string()),
                summary_of(&stderr)
            ),
            weft_protocol::TaskOutput {
                summary: summary_of(&stderr),
                data: json!({"tool": tool, "stderr": stderr, "exit_code": out.code}),
            },
        ));
    }
    let (stdout, cut) = capped_text(&out.stdout, ctx.max_output_bytes);
    let (summary, data) = match &call {
        Call::Screenshot { path } => {
            if out.truncated || !out.stdout.starts_with(b"\x89PNG") {
                return Err(Outcome::failed(
                    "adb_failed",
                    "adb screencap gave no PNG image (is the device unlocked and authorized?)",
                ));
            }
            let target = local.as_deref().unwrap_or(ctx.workdir);
            tokio::fs::write(target, &out.stdout)
                .await
                .map_err(|e| Outcome::failed("io_error", format!("cannot write `{path}`: {e}")))?;
            (
                format!("screenshot saved to {path} ({} bytes)", out.stdout.len()),
                json!({"tool": tool, "path": path, "bytes": out.stdout.len()}),
            )
        }
        Call::ListPackages => {
            let packages: Vec<&str> = stdout
                .lines()
                .filter_map(|l| l.trim().strip_prefix("package:"))
                .collect();
            (
                format!("{} packages", packages.len()),
                json!({"tool": tool, "packages": packages, "truncated": cut}),
            )
        }
        _ => (
            if stdout.trim().is_empty() {
                format!("adb {tool} done")
            } else {
                summary_of(&stdout)
            },
            json!({"tool": tool, "stdout": stdout, "stderr": stderr, "truncated": cut}),
        ),
    };
    Ok(Outcome::succeeded(summary, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(call: &Call) -> Vec<String> {
        adb_args("SER1", call, Some(std::path::Path::new("/w/f")))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn call(tool: &str, args: Value) -> Vec<String> {
        argv(&parse(tool, &args).unwrap())
    }

    #[test]
    fn each_tool_becomes_one_adb_command() {
        assert_eq!(
            call("tap", json!({"x": 10, "y": 20})),
            ["-s", "SER1", "shell", "input", "tap", "10", "20"]
        );
        assert_eq!(
            call(
                "swipe",
                json!({"x1": 1, "y1": 2, "x2": 3, "y2": 4, "duration_ms": 300})
            ),
            [
                "-s", "SER1", "shell", "input", "swipe", "1", "2", "3", "4", "300"
            ]
        );
        assert_eq!(
            call("launch_app", json!({"package": "com.android.chrome"})),
            [
                "-s",
                "SER1",
                "shell",
                "monkey",
                "-p",
                "com.android.chrome",
                "-c",
                "android.intent.category.LAUNCHER",
                "1"
            ]
        );
        assert_eq!(
            call(
                "launch_app",
                json!({"package": "org.a", "activity": ".Main"})
            ),
            ["-s", "SER1", "shell", "am", "start", "-n", "org.a/.Main"]
        );
        assert_eq!(
            call("type_text", json!({"text": "it's a; test"})),
            [
                "-s",
                "SER1",
                "shell",
                "input",
                "text",
                r"'it'\''s%sa;%stest'"
            ]
        );
        assert_eq!(
            call("key_event", json!({"key": "home"})),
            ["-s", "SER1", "shell", "input", "keyevent", "KEYCODE_HOME"]
        );
        assert_eq!(call("key_event", json!({"key": 4}))[5], "4");
        assert_eq!(
            call("screenshot", json!({"path": "s.png"})),
            ["-s", "SER1", "exec-out", "screencap", "-p"]
        );
        assert_eq!(
            call("list_packages", Value::Null),
            ["-s", "SER1", "shell", "pm", "list", "packages"]
        );
        assert_eq!(
            call("push", json!({"local": "f", "remote": "/sdcard/f"})),
            ["-s", "SER1", "push", "/w/f", "/sdcard/f"]
        );
        assert_eq!(
            call("pull", json!({"remote": "/sdcard/f", "local": "f"})),
            ["-s", "SER1", "pull", "/sdcard/f", "/w/f"]
        );
    }

    #[test]
    fn bad_args_are_refused_before_adb_runs() {
        let code = |tool: &str, args: Value| parse(tool, &args).unwrap_err().code;
        for (tool, args) in [
            ("tap", json!({"x": -1, "y": 2})),
            ("tap", json!({"x": 1})),
            ("launch_app", json!({"package": "a; reboot"})),
            ("launch_app", json!({"package": "a", "activity": "x y"})),
            ("key_event", json!({"key": "HOME; reboot"})),
            ("type_text", json!({"text": "two\nlines"})),
            ("push", json!({"local": "f", "remote": "relative"})),
            ("list_packages", json!({"all": true})),
        ] {
            assert_eq!(code(tool, args.clone()), "invalid_action", "{tool} {args}");
        }
        assert_eq!(code("reboot", json!({})), "unsupported_action");
        assert_eq!(specs().len(), TOOL_NAMES.len());
        for (s, n) in specs().iter().zip(TOOL_NAMES) {
            assert_eq!(s.name, n);
        }
    }
}
