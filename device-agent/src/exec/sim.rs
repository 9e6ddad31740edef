//! `sim`: the simulated apps of a benchmark device (docs/sim.md).
//!
//! An agent started with a simulated device profile (`--sim-profile NAME`, or `[sim]` in its
//! config file) offers the capability `sim`: actions `{"kind": "sim", "op": "mail.send",
//! "args": {...}}` that act on a per-device virtual state — notes, a mail inbox and outbox,
//! messages, notifications, a calendar, reminders, the clipboard, installed apps, key-value app
//! data and metrics — kept as one JSON file in the agent's state dir ([`STATE_FILE`]), so that
//! it survives a restart of the agent and a benchmark runner can set it up and inspect it.
//! Files are the device's real files: `file.*`, `log.*`, `photo.take` and `build.run` work in
//! the agent's workdir under the same rules as the `fs` executor, so `write_file` / `read_file`
//! tasks and `sim` tasks see the same files. A photo is a seeded binary file of a few MiB
//! ([`super::seeded`]); `file.read` answers what a file that is not text is (its size and
//! SHA-256), and `file.copy` copies bytes.
//!
//! Every op takes a modelled time that depends only on the profile, the op, its arguments and
//! the seed — never on the attempt or the clock — so replays take the same modelled time.
//! With `fail_rate` above 0, an attempt fails with the retryable code `sim_transient` when a
//! seeded draw over (seed, op, args, how many times this device has run them) says so: the same
//! seed fails the same attempts.
//!
//! The state is the device's, not the orchestrator's: nothing here is sent anywhere but in the
//! op's own output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_planner::canonical::canonical_json;
use weft_protocol::{ErrorInfo, ToolSpec};

use super::{Ctx, Outcome, capped_text, seeded, summary_of};
use crate::policy::FsOp;

/// The simulated device profiles.
pub const PROFILES: [&str; 5] = [
    "windows-laptop",
    "mac-laptop",
    "linux-server",
    "android-phone",
    "edge-box",
];

/// Where the virtual state lives, relative to the agent's state dir.
pub const STATE_FILE: &str = "sim/state.json";

/// The error code of a simulated transient failure (retried by the orchestrator).
pub const TRANSIENT: &str = "sim_transient";

/// Apps that need hardware only some profiles have.
const HARDWARE_APPS: [&str; 1] = ["camera"];

/// One simulated device: its kind, how fast it is and what it has installed at first.
#[derive(Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// The device kind it is registered as.
    pub kind: &'static str,
    /// The operating system it stands for (documentation only).
    pub os: &'static str,
    /// Multiplies every op's modelled time (1.0: a mid-range laptop).
    pub speed: f64,
    /// Apps installed in a fresh state.
    pub apps: &'static [&'static str],
    /// Hardware apps (`camera`) it can have.
    pub hardware: &'static [&'static str],
}

const ALL_PROFILES: [Profile; 5] = [
    Profile {
        name: "windows-laptop",
        kind: "laptop",
        os: "Windows 11",
        speed: 1.0,
        apps: &[
            "mail",
            "calendar",
            "notes",
            "notifications",
            "office",
            "browser",
            "toolchain",
        ],
        hardware: &[],
    },
    Profile {
        name: "mac-laptop",
        kind: "laptop",
        os: "macOS 15",
        speed: 0.8,
        apps: &[
            "mail",
            "calendar",
            "notes",
            "notifications",
            "messages",
            "photos",
            "browser",
            "toolchain",
        ],
        hardware: &[],
    },
    Profile {
        name: "linux-server",
        kind: "server",
        os: "Debian 13",
        speed: 0.5,
        apps: &["toolchain", "monitoring"],
        hardware: &[],
    },
    Profile {
        name: "android-phone",
        kind: "phone",
        os: "Android 15",
        speed: 1.3,
        apps: &[
            "mail",
            "calendar",
            "notes",
            "notifications",
            "messages",
            "camera",
            "browser",
        ],
        hardware: &["camera"],
    },
    Profile {
        name: "edge-box",
        kind: "edge",
        os: "Linux (arm64)",
        speed: 1.8,
        apps: &["monitoring"],
        hardware: &[],
    },
];

/// The profile called `name`.
pub fn profile(name: &str) -> Option<&'static Profile> {
    ALL_PROFILES.iter().find(|p| p.name == name)
}

impl Profile {
    /// The state of a fresh device of this profile: its default apps, nothing else.
    pub fn initial_state(&self) -> State {
        State {
            apps: self.apps.iter().map(|a| (*a).to_owned()).collect(),
            ..State::default()
        }
    }
}

/// How the `sim` executor is set up (`[sim]` in the agent's config file).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// One of [`PROFILES`].
    pub profile: String,
    /// Seeds the modelled times, the transient failures and the photos' bytes.
    pub seed: u64,
    /// Multiplies every modelled time (0: no waiting at all).
    pub latency_scale: f64,
    /// Fraction of attempts that fail with `sim_transient` (0 to 1).
    pub fail_rate: f64,
}

impl SimConfig {
    pub fn new(profile: &str) -> Self {
        Self {
            profile: profile.to_owned(),
            seed: 0,
            latency_scale: 1.0,
            fail_rate: 0.0,
        }
    }

    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if profile(&self.profile).is_none() {
            return Err(format!(
                "sim.profile: unknown profile `{}` (known: {})",
                self.profile,
                PROFILES.join(", ")
            ));
        }
        if !(self.latency_scale.is_finite() && (0.0..=100.0).contains(&self.latency_scale)) {
            return Err(format!(
                "sim.latency_scale: {} is not between 0 and 100",
                self.latency_scale
            ));
        }
        if !(self.fail_rate.is_finite() && (0.0..=1.0).contains(&self.fail_rate)) {
            return Err(format!(
                "sim.fail_rate: {} is not between 0 and 1",
                self.fail_rate
            ));
        }
        Ok(())
    }
}

/// A note (`note.create`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Note {
    pub title: String,
    pub body: String,
    pub folder: String,
}

/// A mail in the inbox or the outbox (`mail.send`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
}

/// A file attached to a sent mail, as it was when sent; a file that is not UTF-8 text as
/// `PATH: binary, N bytes, sha256 HEX`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attachment {
    pub path: String,
    pub content: String,
}

/// A text message (`message.send`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Message {
    pub to: String,
    pub text: String,
}

/// A notification shown on the device (`notify`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notification {
    pub title: String,
    pub body: String,
}

/// A calendar event (`calendar.add`). Times are local, `YYYY-MM-DDTHH:MM`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Event {
    pub title: String,
    pub start: String,
    pub end: String,
    pub attendees: Vec<String>,
    pub location: String,
}

/// A reminder (`reminder.add`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reminder {
    pub text: String,
    pub due: String,
}

/// A device's virtual state: the JSON file [`STATE_FILE`]. Every field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct State {
    /// Installed apps.
    pub apps: Vec<String>,
    /// Apps opened (`app.open`), in order.
    pub opened: Vec<String>,
    pub notes: Vec<Note>,
    /// Mail received (set up by whoever prepares the device).
    pub inbox: Vec<Mail>,
    /// Mail sent.
    pub outbox: Vec<Mail>,
    pub messages: Vec<Message>,
    pub notifications: Vec<Notification>,
    pub calendar: Vec<Event>,
    pub reminders: Vec<Reminder>,
    pub clipboard: String,
    /// Key-value app data.
    pub kv: BTreeMap<String, Value>,
    /// Readings for `metric.read` / `metric.check` (set up by whoever prepares the device).
    pub metrics: BTreeMap<String, f64>,
    /// Photos taken so far.
    pub photos_taken: u32,
    /// How many times each (op, args) has been run here: the transient-failure draws.
    pub runs: BTreeMap<String, u32>,
}

/// The `sim` executor of one agent.
#[derive(Debug, Clone)]
pub struct Sim {
    config: SimConfig,
    profile: &'static Profile,
    state_path: PathBuf,
    /// One op changes the state file at a time.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Sim {
    /// The executor for `config`, keeping its state under `state_dir`.
    pub fn new(config: SimConfig, state_dir: &Path) -> Result<Self, String> {
        config.validate()?;
        let profile = profile(&config.profile).ok_or("unknown profile")?;
        Ok(Self {
            config,
            profile,
            state_path: state_dir.join(STATE_FILE),
            lock: Arc::default(),
        })
    }

    pub fn profile(&self) -> &'static Profile {
        self.profile
    }

    /// The state file's path.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// Checks an op and its args without running it: `unsupported_action` for an unknown op,
    /// `invalid_action` for args that do not fit, the policy's refusal for a path outside the
    /// workdir.
    pub fn vet(&self, op: &str, args: &Value, ctx: &Ctx<'_>) -> Result<(), ErrorInfo> {
        let parsed = parse(op, args)?;
        for (fs_op, path) in parsed.paths() {
            ctx.policy
                .check_path(fs_op, path, ctx.workdir)
                .map_err(|r| r.error())?;
        }
        Ok(())
    }

    /// The modelled time of `op` with `args` on this device.
    pub fn latency(&self, op: &str, args: &Value) -> Duration {
        let spec = spec(op).map(|s| s.base_ms).unwrap_or(50) as f64;
        let canonical = canonical_json(args);
        let size_ms = (canonical.len() / 1024) as f64 * 2.0;
        let key = task_key(op, &canonical);
        let u = unit(self.config.seed ^ fnv(self.profile.name.as_bytes()), key, 0);
        let ms =
            (spec + size_ms) * self.profile.speed * (0.75 + 0.5 * u) * self.config.latency_scale;
        Duration::from_micros((ms * 1000.0) as u64)
    }

    fn load(&self) -> Result<State, ErrorInfo> {
        match std::fs::read(&self.state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ErrorInfo::new(
                    "sim_state_corrupt",
                    format!("{}: {e}", self.state_path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self.profile.initial_state()),
            Err(e) => Err(ErrorInfo::new(
                "io_error",
                format!("cannot read {}: {e}", self.state_path.display()),
            )),
        }
    }

    fn save(&self, state: &State) -> Result<(), ErrorInfo> {
        write_state(&self.state_path, state)
            .map_err(|e| ErrorInfo::new("io_error", format!("cannot save the sim state: {e}")))
    }

    /// Counts one more run of `key` and returns the count.
    async fn count_run(&self, key: u64) -> Result<u32, ErrorInfo> {
        let _held = self.lock.lock().await;
        let mut state = self.load()?;
        let n = state.runs.entry(format!("{key:016x}")).or_insert(0);
        *n += 1;
        let n = *n;
        self.save(&state)?;
        Ok(n)
    }
}

/// Writes `state` to `path` (a temporary file renamed over it, so readers never see half).
pub fn write_state(path: &Path, state: &State) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Reads the state file at `path`.
pub fn read_state(path: &Path) -> std::io::Result<State> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

/// What the tables below say about an op.
#[derive(Debug)]
struct OpSpec {
    name: &'static str,
    description: &'static str,
    /// The app that must be installed, if any.
    app: Option<&'static str>,
    /// Modelled time before the profile's speed and the jitter, in milliseconds.
    base_ms: u64,
    /// `(name, JSON type, required)`.
    args: &'static [(&'static str, &'static str, bool)],
}

const OPS: &[OpSpec] = &[
    OpSpec {
        name: "file.write",
        description: "write a text file (append: add to its end)",
        app: None,
        base_ms: 40,
        args: &[
            ("path", "string", true),
            ("content", "string", true),
            ("append", "boolean", false),
        ],
    },
    OpSpec {
        name: "file.read",
        description: "read a text file; output content",
        app: None,
        base_ms: 40,
        args: &[("path", "string", true)],
    },
    OpSpec {
        name: "file.copy",
        description: "copy a file on this device",
        app: None,
        base_ms: 60,
        args: &[("from", "string", true), ("to", "string", true)],
    },
    OpSpec {
        name: "file.list",
        description: "list the files under a directory; output files and content (one per line)",
        app: None,
        base_ms: 30,
        args: &[("dir", "string", true)],
    },
    OpSpec {
        name: "file.delete",
        description: "delete a file",
        app: None,
        base_ms: 30,
        args: &[("path", "string", true)],
    },
    OpSpec {
        name: "log.append",
        description: "append one line to a log file",
        app: None,
        base_ms: 30,
        args: &[("path", "string", true), ("line", "string", true)],
    },
    OpSpec {
        name: "log.collect",
        description: "the lines of every file under a directory (sorted by path), optionally only those containing a text; output content",
        app: None,
        base_ms: 60,
        args: &[("dir", "string", true), ("contains", "string", false)],
    },
    OpSpec {
        name: "photo.take",
        description: "take a photo into DCIM/NAME.jpg; output path and content",
        app: Some("camera"),
        base_ms: 500,
        args: &[("name", "string", false)],
    },
    OpSpec {
        name: "build.run",
        description: "build a project and run its tests (PROJECT/tests.txt); writes PROJECT/build.log; output status passed|failed, passed, failed, content",
        app: Some("toolchain"),
        base_ms: 2000,
        args: &[("project", "string", true)],
    },
    OpSpec {
        name: "data.filter",
        description: "the lines of a text that contain a text; output content, lines",
        app: None,
        base_ms: 30,
        args: &[("text", "string", true), ("contains", "string", true)],
    },
    OpSpec {
        name: "data.sort",
        description: "the lines of a text sorted (unique: without repeats); output content",
        app: None,
        base_ms: 30,
        args: &[("text", "string", true), ("unique", "boolean", false)],
    },
    OpSpec {
        name: "data.count",
        description: "how many non-empty lines of a text (containing a text, if given); output count",
        app: None,
        base_ms: 30,
        args: &[("text", "string", true), ("contains", "string", false)],
    },
    OpSpec {
        name: "data.sum_csv",
        description: "the sum of a column of a CSV text with a header row; output sum, rows",
        app: None,
        base_ms: 40,
        args: &[("text", "string", true), ("column", "string", true)],
    },
    OpSpec {
        name: "metric.read",
        description: "read a metric; output value",
        app: None,
        base_ms: 30,
        args: &[("name", "string", true)],
    },
    OpSpec {
        name: "metric.check",
        description: "compare a metric with a maximum; output value, max, breach (value > max)",
        app: None,
        base_ms: 30,
        args: &[("name", "string", true), ("max", "number", true)],
    },
    OpSpec {
        name: "note.create",
        description: "create a note (or replace the note with that title)",
        app: Some("notes"),
        base_ms: 80,
        args: &[
            ("title", "string", true),
            ("body", "string", true),
            ("folder", "string", false),
        ],
    },
    OpSpec {
        name: "note.read",
        description: "read a note; output content",
        app: Some("notes"),
        base_ms: 60,
        args: &[("title", "string", true)],
    },
    OpSpec {
        name: "mail.send",
        description: "send a mail (attachments: paths of files on this device)",
        app: Some("mail"),
        base_ms: 250,
        args: &[
            ("to", "string|array", true),
            ("subject", "string", true),
            ("body", "string", true),
            ("attachments", "array", false),
        ],
    },
    OpSpec {
        name: "mail.search",
        description: "the inbox mails whose subject or body contains a text; output content, count",
        app: Some("mail"),
        base_ms: 150,
        args: &[("query", "string", true)],
    },
    OpSpec {
        name: "message.send",
        description: "send a text message",
        app: Some("messages"),
        base_ms: 180,
        args: &[("to", "string", true), ("text", "string", true)],
    },
    OpSpec {
        name: "notify",
        description: "show a notification",
        app: Some("notifications"),
        base_ms: 120,
        args: &[("title", "string", true), ("body", "string", true)],
    },
    OpSpec {
        name: "calendar.add",
        description: "add a calendar event; start and end are YYYY-MM-DDTHH:MM",
        app: Some("calendar"),
        base_ms: 100,
        args: &[
            ("title", "string", true),
            ("start", "string", true),
            ("end", "string", false),
            ("attendees", "array", false),
            ("location", "string", false),
        ],
    },
    OpSpec {
        name: "calendar.list",
        description: "the events (on a date YYYY-MM-DD, if given), by start; output content, count",
        app: Some("calendar"),
        base_ms: 80,
        args: &[("date", "string", false)],
    },
    OpSpec {
        name: "reminder.add",
        description: "add a reminder due at YYYY-MM-DDTHH:MM",
        app: Some("calendar"),
        base_ms: 80,
        args: &[("text", "string", true), ("due", "string", true)],
    },
    OpSpec {
        name: "clipboard.set",
        description: "put text on the clipboard",
        app: None,
        base_ms: 40,
        args: &[("text", "string", true)],
    },
    OpSpec {
        name: "clipboard.get",
        description: "the clipboard's text; output content",
        app: None,
        base_ms: 40,
        args: &[],
    },
    OpSpec {
        name: "app.install",
        description: "install an app",
        app: None,
        base_ms: 900,
        args: &[("app", "string", true)],
    },
    OpSpec {
        name: "app.open",
        description: "open an installed app",
        app: None,
        base_ms: 300,
        args: &[("app", "string", true)],
    },
    OpSpec {
        name: "app.list",
        description: "the installed apps; output apps, content",
        app: None,
        base_ms: 40,
        args: &[],
    },
    OpSpec {
        name: "kv.set",
        description: "set a key of the app data to a value (any JSON)",
        app: None,
        base_ms: 50,
        args: &[("key", "string", true), ("value", "any", true)],
    },
    OpSpec {
        name: "kv.get",
        description: "a key of the app data; output value, content",
        app: None,
        base_ms: 50,
        args: &[("key", "string", true)],
    },
    OpSpec {
        name: "sim.inspect",
        description: "the whole simulated state of this device; output state",
        app: None,
        base_ms: 0,
        args: &[],
    },
];

fn spec(op: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|s| s.name == op)
}

/// Every op's name, in the documented order.
pub fn op_names() -> Vec<&'static str> {
    OPS.iter().map(|s| s.name).collect()
}

/// The tools a `sim` device of `profile` advertises in its hello: one per op, with the JSON
/// Schema of its args — the ops that need no app, and those whose app the profile has installed
/// at first (a planner should not send mail from a server that has no mail app; `app.install`
/// is always offered, and an app installed later runs its ops whether advertised or not).
pub fn specs(profile: &Profile) -> Vec<ToolSpec> {
    OPS.iter()
        .filter(|s| s.app.is_none_or(|app| profile.apps.contains(&app)))
        .map(|s| {
            let mut props = serde_json::Map::new();
            for (name, ty, _) in s.args {
                let schema = match *ty {
                    "string|array" => {
                        json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
                    }
                    "array" => json!({"type": "array", "items": {"type": "string"}}),
                    "any" => json!({}),
                    "number" => json!({"type": ["number", "string"]}),
                    t => json!({"type": t}),
                };
                props.insert((*name).to_owned(), schema);
            }
            let required: Vec<&str> = s
                .args
                .iter()
                .filter(|(_, _, r)| *r)
                .map(|(n, _, _)| *n)
                .collect();
            ToolSpec {
                executor: "sim".into(),
                name: s.name.into(),
                description: match s.app {
                    Some(app) => format!("{} (needs the `{app}` app)", s.description),
                    None => s.description.to_owned(),
                },
                args: json!({"type": "object", "properties": props, "required": required,
                             "additionalProperties": false}),
            }
        })
        .collect()
}

/// A number, or a string holding one (references always give strings).
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("not a number")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a number"))),
        other => Err(serde::de::Error::custom(format!("{other} is not a number"))),
    }
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => vec![s],
        Either::Many(v) => v,
    })
}

/// An op with its args, checked.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", content = "args", deny_unknown_fields)]
enum Op {
    #[serde(rename = "file.write")]
    FileWrite {
        path: String,
        content: String,
        #[serde(default)]
        append: bool,
    },
    #[serde(rename = "file.read")]
    FileRead { path: String },
    #[serde(rename = "file.copy")]
    FileCopy { from: String, to: String },
    #[serde(rename = "file.list")]
    FileList { dir: String },
    #[serde(rename = "file.delete")]
    FileDelete { path: String },
    #[serde(rename = "log.append")]
    LogAppend { path: String, line: String },
    #[serde(rename = "log.collect")]
    LogCollect {
        dir: String,
        #[serde(default)]
        contains: Option<String>,
    },
    #[serde(rename = "photo.take")]
    PhotoTake {
        #[serde(default)]
        name: Option<String>,
    },
    #[serde(rename = "build.run")]
    BuildRun { project: String },
    #[serde(rename = "data.filter")]
    DataFilter { text: String, contains: String },
    #[serde(rename = "data.sort")]
    DataSort {
        text: String,
        #[serde(default)]
        unique: bool,
    },
    #[serde(rename = "data.count")]
    DataCount {
        text: String,
        #[serde(default)]
        contains: Option<String>,
    },
    #[serde(rename = "data.sum_csv")]
    DataSumCsv { text: String, column: String },
    #[serde(rename = "metric.read")]
    MetricRead { name: String },
    #[serde(rename = "metric.check")]
    MetricCheck {
        name: String,
        #[serde(deserialize_with = "number")]
        max: f64,
    },
    #[serde(rename = "note.create")]
    NoteCreate {
        title: String,
        body: String,
        #[serde(default)]
        folder: String,
    },
    #[serde(rename = "note.read")]
    NoteRead { title: String },
    #[serde(rename = "mail.send")]
    MailSend {
        #[serde(deserialize_with = "one_or_many")]
        to: Vec<String>,
        subject: String,
        body: String,
        #[serde(default)]
        attachments: Vec<String>,
    },
    #[serde(rename = "mail.search")]
    MailSearch { query: String },
    #[serde(rename = "message.send")]
    MessageSend { to: String, text: String },
    #[serde(rename = "notify")]
    Notify { title: String, body: String },
    #[serde(rename = "calendar.add")]
    CalendarAdd {
        title: String,
        start: String,
        #[serde(default)]
        end: String,
        #[serde(default)]
        attendees: Vec<String>,
        #[serde(default)]
        location: String,
    },
    #[serde(rename = "calendar.list")]
    CalendarList {
        #[serde(default)]
        date: Option<String>,
    },
    #[serde(rename = "reminder.add")]
    ReminderAdd { text: String, due: String },
    #[serde(rename = "clipboard.set")]
    ClipboardSet { text: String },
    #[serde(rename = "clipboard.get")]
    ClipboardGet {},
    #[serde(rename = "app.install")]
    AppInstall { app: String },
    #[serde(rename = "app.open")]
    AppOpen { app: String },
    #[serde(rename = "app.list")]
    AppList {},
    #[serde(rename = "kv.set")]
    KvSet { key: String, value: Value },
    #[serde(rename = "kv.get")]
    KvGet { key: String },
    #[serde(rename = "sim.inspect")]
    Inspect {},
}

impl Op {
    /// The file paths the op reads or writes.
    fn paths(&self) -> Vec<(FsOp, &str)> {
        match self {
            Op::FileWrite { path, .. } | Op::LogAppend { path, .. } | Op::FileDelete { path } => {
                vec![(FsOp::Write, path)]
            }
            Op::FileRead { path } => vec![(FsOp::Read, path)],
            Op::FileCopy { from, to } => vec![(FsOp::Read, from), (FsOp::Write, to)],
            Op::FileList { dir } | Op::LogCollect { dir, .. } => vec![(FsOp::Read, dir)],
            Op::BuildRun { project } => vec![(FsOp::Write, project)],
            Op::MailSend { attachments, .. } => attachments
                .iter()
                .map(|a| (FsOp::Read, a.as_str()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses an op and its args (`null` args are `{}`).
fn parse(op: &str, args: &Value) -> Result<Op, ErrorInfo> {
    if spec(op).is_none() {
        return Err(ErrorInfo::new(
            "unsupported_action",
            format!(
                "the sim executor has no op `{op}` (ops: {})",
                op_names().join(", ")
            ),
        ));
    }
    let args = match args {
        Value::Null => json!({}),
        a @ Value::Object(_) => a.clone(),
        other => {
            return Err(ErrorInfo::new(
                "invalid_action",
                format!("the args of `{op}` must be an object, not {other}"),
            ));
        }
    };
    serde_json::from_value(json!({"op": op, "args": args}))
        .map_err(|e| ErrorInfo::new("invalid_action", format!("args of `{op}`: {e}")))
}

/// Vets and runs one sim op.
pub async fn run(op: &str, args: &Value, ctx: &Ctx<'_>) -> Outcome {
    let Some(sim) = ctx.tools.sim.as_ref() else {
        return Outcome::failed(
            "unsupported_action",
            "this device has no simulated profile (start the agent with --sim-profile)",
        );
    };
    let parsed = match parse(op, args) {
        Ok(p) => p,
        Err(e) => return super::failed(e),
    };
    let latency = sim.latency(op, args);
    if sim.config.fail_rate > 0.0 {
        let key = task_key(op, &canonical_json(args));
        let n = match sim.count_run(key).await {
            Ok(n) => n,
            Err(e) => return super::failed(e),
        };
        let draw = unit(sim.config.seed ^ 0x5eed_fa11, key, u64::from(n));
        if draw < sim.config.fail_rate {
            tokio::time::sleep(latency / 2).await;
            return Outcome::failed(
                TRANSIENT,
                format!(
                    "simulated transient failure of `{op}` (run {n} here; fail_rate {})",
                    sim.config.fail_rate
                ),
            );
        }
    }
    tokio::time::sleep(latency).await;
    if let Some(app) = spec(op).and_then(|s| s.app) {
        // Read without the lock: apps change only through app.install.
        match sim.load() {
            Ok(state) if state.apps.iter().any(|a| a == app) => {}
            Ok(_) => {
                return Outcome::failed(
                    "unsupported_action",
                    format!(
                        "`{op}` needs the `{app}` app, which is not installed on this {} \
                         (app.install it first)",
                        sim.profile.name
                    ),
                );
            }
            Err(e) => return super::failed(e),
        }
    }
    let _held = sim.lock.lock().await;
    let mut state = match sim.load() {
        Ok(s) => s,
        Err(e) => return super::failed(e),
    };
    let before = state.clone();
    let outcome = match apply(parsed, &mut state, sim, ctx).await {
        Ok(o) | Err(o) => o,
    };
    if state != before
        && let Err(e) = sim.save(&state)
    {
        return super::failed(e);
    }
    outcome
}

/// `content` capped to the policy's output limit.
fn cap(content: &str, ctx: &Ctx<'_>) -> (String, bool) {
    capped_text(content.as_bytes(), ctx.max_output_bytes)
}

fn text_outcome(op: &str, content: &str, mut data: Value, ctx: &Ctx<'_>) -> Outcome {
    let (content, truncated) = cap(content, ctx);
    let summary = match summary_of(&content) {
        s if s.is_empty() => format!("{op}: (empty)"),
        s => s,
    };
    data["op"] = json!(op);
    data["content"] = json!(content);
    data["truncated"] = json!(truncated);
    Outcome::succeeded(summary, data)
}

fn done(op: &str, summary: String, mut data: Value) -> Outcome {
    data["op"] = json!(op);
    Outcome::succeeded(summary, data)
}

fn not_found(what: String) -> Outcome {
    Outcome::failed("not_found", what)
}

fn valid_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 16
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// A project's path and its tests: `PROJECT/tests.txt`, or for a bare name that is not a
/// directory of the workdir, `projects/NAME/tests.txt` (the workspace's projects folder), as a
/// person says "build checkout" without its path.
async fn find_project(project: &str, ctx: &Ctx<'_>) -> Result<(String, String), Outcome> {
    let project = project.trim_end_matches('/');
    let tests = read_text(&format!("{project}/tests.txt"), ctx).await;
    match tests {
        Err(missing) if !project.contains('/') && !project.is_empty() => {
            let named = format!("projects/{project}");
            match read_text(&format!("{named}/tests.txt"), ctx).await {
                Ok(t) => Ok((named, t)),
                Err(_) => Err(missing),
            }
        }
        other => other.map(|t| (project.to_owned(), t)),
    }
}

async fn read_bytes(path: &str, ctx: &Ctx<'_>) -> Result<Vec<u8>, Outcome> {
    let real = super::fs::resolve_read(path, ctx).await?;
    tokio::fs::read(&real).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            not_found(format!("no file `{path}`"))
        } else {
            Outcome::failed("io_error", format!("cannot read `{path}`: {e}"))
        }
    })
}

async fn read_text(path: &str, ctx: &Ctx<'_>) -> Result<String, Outcome> {
    let bytes = read_bytes(path, ctx).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What stands for a file that is not text: `PATH: binary, N bytes, sha256 HEX`.
fn binary_text(path: &str, bytes: &[u8]) -> String {
    format!(
        "{path}: binary, {} bytes, sha256 {}",
        bytes.len(),
        sha256_hex(bytes)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` as they are (a photo, a copy).
async fn write_bytes(path: &str, bytes: &[u8], ctx: &Ctx<'_>) -> Result<(), Outcome> {
    let target = super::fs::resolve_write(path, ctx).await?;
    tokio::fs::write(&target, bytes)
        .await
        .map_err(|e| Outcome::failed("io_error", format!("cannot write `{path}`: {e}")))
}

async fn write_text(
    path: &str,
    content: &str,
    append: bool,
    ctx: &Ctx<'_>,
) -> Result<usize, Outcome> {
    let target = super::fs::resolve_write(path, ctx).await?;
    let mut text = String::new();
    if append {
        match tokio::fs::read(&target).await {
            Ok(b) => text = String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Outcome::failed(
                    "io_error",
                    format!("cannot read `{path}`: {e}"),
                ));
            }
        }
    }
    text.push_str(content);
    if text.len() > ctx.max_output_bytes {
        return Err(Outcome::failed(
            "content_too_large",
            format!(
                "{} bytes is above this agent's limit of {} (policy.max_output_bytes)",
                text.len(),
                ctx.max_output_bytes
            ),
        ));
    }
    tokio::fs::write(&target, &text)
        .await
        .map_err(|e| Outcome::failed("io_error", format!("cannot write `{path}`: {e}")))?;
    Ok(text.len())
}

/// The files under `dir` (relative to the workdir, sorted), symlinks left out.
async fn walk(dir: &str, ctx: &Ctx<'_>) -> Result<Vec<String>, Outcome> {
    let root = super::fs::resolve_read(dir, ctx).await?;
    let mut found = Vec::new();
    let mut pending = vec![(root, dir.trim_end_matches('/').to_owned())];
    while let Some((real, shown)) = pending.pop() {
        let mut entries = tokio::fs::read_dir(&real)
            .await
            .map_err(|e| Outcome::failed("io_error", format!("cannot list `{shown}`: {e}")))?;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{shown}/{name}");
            if kind.is_dir() {
                pending.push((entry.path(), path));
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn lines_text(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    if !lines.is_empty() {
        s.push('\n');
    }
    s
}

fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

async fn apply(op: Op, state: &mut State, sim: &Sim, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    Ok(match op {
        Op::FileWrite {
            path,
            content,
            append,
        } => {
            let bytes = write_text(&path, &content, append, ctx).await?;
            done(
                "file.write",
                format!("wrote {path} ({bytes} bytes)"),
                json!({"path": path, "bytes": bytes}),
            )
        }
        Op::FileRead { path } => {
            let bytes = read_bytes(&path, ctx).await?;
            match String::from_utf8(bytes) {
                Ok(content) => text_outcome(
                    "file.read",
                    &content,
                    json!({"path": path, "bytes": content.len()}),
                    ctx,
                ),
                // Not text: what it is, not its bytes.
                Err(e) => {
                    let bytes = e.into_bytes();
                    text_outcome(
                        "file.read",
                        &binary_text(&path, &bytes),
                        json!({"path": path, "bytes": bytes.len(), "sha256": sha256_hex(&bytes),
                               "binary": true}),
                        ctx,
                    )
                }
            }
        }
        Op::FileCopy { from, to } => {
            // Byte for byte, text or not.
            let content = read_bytes(&from, ctx).await?;
            write_bytes(&to, &content, ctx).await?;
            let bytes = content.len();
            done(
                "file.copy",
                format!("copied {from} to {to}"),
                json!({"from": from, "to": to, "bytes": bytes}),
            )
        }
        Op::FileList { dir } => {
            let files = walk(&dir, ctx).await?;
            let refs: Vec<&str> = files.iter().map(String::as_str).collect();
            let content = lines_text(&refs);
            text_outcome(
                "file.list",
                &content,
                json!({"dir": dir, "files": files, "count": files.len()}),
                ctx,
            )
        }
        Op::FileDelete { path } => {
            let target = super::fs::resolve_write(&path, ctx).await?;
            match tokio::fs::remove_file(&target).await {
                Ok(()) => done(
                    "file.delete",
                    format!("deleted {path}"),
                    json!({"path": path}),
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(not_found(format!("no file `{path}`")));
                }
                Err(e) => {
                    return Err(Outcome::failed(
                        "io_error",
                        format!("cannot delete `{path}`: {e}"),
                    ));
                }
            }
        }
        Op::LogAppend { path, line } => {
            let line = format!("{}\n", line.trim_end_matches('\n'));
            let bytes = write_text(&path, &line, true, ctx).await?;
            done(
                "log.append",
                format!("appended to {path}"),
                json!({"path": path, "bytes": bytes}),
            )
        }
        Op::LogCollect { dir, contains } => {
            let files = walk(&dir, ctx).await?;
            let mut lines = Vec::new();
            // A file that is not text (a crash dump, a zipped log) has no lines: its bytes
            // read as text would put noise among them.
            let mut binary = 0;
            for f in &files {
                let Ok(text) = String::from_utf8(read_bytes(f, ctx).await?) else {
                    binary += 1;
                    continue;
                };
                lines.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .filter(|l| contains.as_deref().is_none_or(|c| l.contains(c)))
                        .map(str::to_owned),
                );
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            text_outcome(
                "log.collect",
                &lines_text(&refs),
                json!({"dir": dir, "files": files.len(), "lines": lines.len(),
                       "binary_files": binary}),
                ctx,
            )
        }
        Op::PhotoTake { name } => {
            state.photos_taken += 1;
            let n = state.photos_taken;
            let name = name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("IMG_{n:04}"));
            let path = format!("DCIM/{name}.jpg");
            // The same photo whenever it is taken: the seed, this device and the path give its
            // bytes (2 to 4 MiB, a JPEG's frame around noise), so replays give the same bytes
            // and a checker knows their hash.
            let photo = seeded::Bytes::photo(sim.config.seed, sim.profile.name, &path).to_vec();
            write_bytes(&path, &photo, ctx).await?;
            let sha256 = sha256_hex(&photo);
            text_outcome(
                "photo.take",
                &format!("{path}: {} bytes, sha256 {sha256}", photo.len()),
                json!({"path": path, "bytes": photo.len(), "sha256": sha256}),
                ctx,
            )
        }
        Op::BuildRun { project } => {
            let (project, tests) = find_project(&project, ctx).await?;
            let (mut passed, mut failed) = (Vec::new(), Vec::new());
            for l in tests.lines().filter(|l| !l.trim().is_empty()) {
                let (name, result) = l.split_once(':').unwrap_or((l, "pass"));
                if result.trim() == "fail" {
                    failed.push(name.trim().to_owned());
                } else {
                    passed.push(name.trim().to_owned());
                }
            }
            let status = if failed.is_empty() {
                "passed"
            } else {
                "failed"
            };
            let mut report = format!("build {project}: {status}\n");
            for p in &passed {
                report.push_str(&format!("ok   {p}\n"));
            }
            for f in &failed {
                report.push_str(&format!("FAIL {f}\n"));
            }
            report.push_str(&format!(
                "{} passed, {} failed\n",
                passed.len(),
                failed.len()
            ));
            let log = format!("{}/build.log", project.trim_end_matches('/'));
            write_text(&log, &report, false, ctx).await?;
            text_outcome(
                "build.run",
                &report,
                json!({"project": project, "status": status, "passed": passed.len(),
                       "failed": failed.len(), "total": passed.len() + failed.len(),
                       "failures": failed, "log": log}),
                ctx,
            )
        }
        Op::DataFilter { text, contains } => {
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(&contains)).collect();
            text_outcome(
                "data.filter",
                &lines_text(&lines),
                json!({"lines": lines.len()}),
                ctx,
            )
        }
        Op::DataSort { text, unique } => {
            let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            lines.sort_unstable();
            if unique {
                lines.dedup();
            }
            text_outcome(
                "data.sort",
                &lines_text(&lines),
                json!({"lines": lines.len()}),
                ctx,
            )
        }
        Op::DataCount { text, contains } => {
            let n = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| contains.as_deref().is_none_or(|c| l.contains(c)))
                .count();
            text_outcome("data.count", &n.to_string(), json!({"count": n}), ctx)
        }
        Op::DataSumCsv { text, column } => {
            let mut rows = text.lines().filter(|l| !l.trim().is_empty());
            let header = rows.next().unwrap_or_default();
            let Some(col) = header.split(',').position(|h| h.trim() == column) else {
                return Err(Outcome::failed(
                    "invalid_action",
                    format!("the CSV has no column `{column}` (header: {header})"),
                ));
            };
            let (mut sum, mut n) = (0.0, 0usize);
            for row in rows {
                let cell = row.split(',').nth(col).unwrap_or("").trim();
                let v: f64 = cell.parse().map_err(|_| {
                    Outcome::failed(
                        "invalid_action",
                        format!("`{cell}` in column `{column}` is not a number"),
                    )
                })?;
                sum += v;
                n += 1;
            }
            let sum = (sum * 100.0).round() / 100.0;
            text_outcome(
                "data.sum_csv",
                &number_text(sum),
                json!({"column": column, "sum": sum, "rows": n}),
                ctx,
            )
        }
        Op::MetricRead { name } => {
            let Some(v) = state.metrics.get(&name).copied() else {
                return Err(not_found(format!("no metric `{name}` on this device")));
            };
            text_outcome(
                "metric.read",
                &number_text(v),
                json!({"name": name, "value": v}),
                ctx,
            )
        }
        Op::MetricCheck { name, max } => {
            let Some(v) = state.metrics.get(&name).copied() else {
                return Err(not_found(format!("no metric `{name}` on this device")));
            };
            let breach = v > max;
            let text = format!(
                "{name}={} (max {}): {}",
                number_text(v),
                number_text(max),
                if breach { "BREACH" } else { "ok" }
            );
            text_outcome(
                "metric.check",
                &text,
                json!({"name": name, "value": v, "max": max, "breach": breach}),
                ctx,
            )
        }
        Op::NoteCreate {
            title,
            body,
            folder,
        } => {
            state.notes.retain(|n| n.title != title);
            state.notes.push(Note {
                title: title.clone(),
                body,
                folder,
            });
            done(
                "note.create",
                format!("note `{title}`"),
                json!({"title": title}),
            )
        }
        Op::NoteRead { title } => {
            let Some(n) = state.notes.iter().find(|n| n.title == title) else {
                return Err(not_found(format!("no note `{title}`")));
            };
            text_outcome("note.read", &n.body.clone(), json!({"title": title}), ctx)
        }
        Op::MailSend {
            to,
            subject,
            body,
            attachments,
        } => {
            if to.iter().all(|t| t.trim().is_empty()) {
                return Err(Outcome::failed("invalid_action", "mail.send: no recipient"));
            }
            let mut files = Vec::new();
            for path in attachments {
                let bytes = read_bytes(&path, ctx).await?;
                // A file that is not text is recorded by what it is, not by its bytes.
                let content = match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) => binary_text(&path, e.as_bytes()),
                };
                files.push(Attachment { path, content });
            }
            state.outbox.push(Mail {
                from: sim.profile.name.to_owned(),
                to: to.clone(),
                subject: subject.clone(),
                body,
                attachments: files,
            });
            let id = state.outbox.len();
            done(
                "mail.send",
                format!("mail to {} sent: {subject}", to.join(", ")),
                json!({"id": id, "to": to}),
            )
        }
        Op::MailSearch { query } => {
            let q = query.to_lowercase();
            let hits: Vec<&Mail> = state
                .inbox
                .iter()
                .filter(|m| {
                    m.subject.to_lowercase().contains(&q) || m.body.to_lowercase().contains(&q)
                })
                .collect();
            let content: String = hits
                .iter()
                .map(|m| format!("From: {}\nSubject: {}\n\n{}\n", m.from, m.subject, m.body))
                .collect::<Vec<_>>()
                .join("---\n");
            text_outcome(
                "mail.search",
                &content,
                json!({"query": query, "count": hits.len()}),
                ctx,
            )
        }
        Op::MessageSend { to, text } => {
            state.messages.push(Message {
                to: to.clone(),
                text,
            });
            done(
                "message.send",
                format!("message to {to} sent"),
                json!({"id": state.messages.len(), "to": to}),
            )
        }
        Op::Notify { title, body } => {
            state.notifications.push(Notification {
                title: title.clone(),
                body,
            });
            done(
                "notify",
                format!("notified: {title}"),
                json!({"id": state.notifications.len()}),
            )
        }
        Op::CalendarAdd {
            title,
            start,
            end,
            attendees,
            location,
        } => {
            for (name, t) in [("start", &start), ("end", &end)] {
                let left_out = name == "end" && t.is_empty();
                if !left_out && !valid_time(t) {
                    return Err(Outcome::failed(
                        "invalid_action",
                        format!("calendar.add: {name} `{t}` is not YYYY-MM-DDTHH:MM"),
                    ));
                }
            }
            state.calendar.push(Event {
                title: title.clone(),
                start: start.clone(),
                end,
                attendees,
                location,
            });
            done(
                "calendar.add",
                format!("event `{title}` at {start}"),
                json!({"id": state.calendar.len(), "start": start}),
            )
        }
        Op::CalendarList { date } => {
            let mut events: Vec<&Event> = state
                .calendar
                .iter()
                .filter(|e| date.as_deref().is_none_or(|d| e.start.starts_with(d)))
                .collect();
            events.sort_by(|a, b| (&a.start, &a.title).cmp(&(&b.start, &b.title)));
            let lines: Vec<String> = events
                .iter()
                .map(|e| format!("{} {}", e.start, e.title))
                .collect();
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            text_outcome(
                "calendar.list",
                &lines_text(&refs),
                json!({"count": events.len()}),
                ctx,
            )
        }
        Op::ReminderAdd { text, due } => {
            if !valid_time(&due) {
                return Err(Outcome::failed(
                    "invalid_action",
                    format!("reminder.add: due `{due}` is not YYYY-MM-DDTHH:MM"),
                ));
            }
            state.reminders.push(Reminder {
                text: text.clone(),
                due: due.clone(),
            });
            done(
                "reminder.add",
                format!("reminder at {due}: {text}"),
                json!({"id": state.reminders.len()}),
            )
        }
        Op::ClipboardSet { text } => {
            state.clipboard = text;
            done(
                "clipboard.set",
                "clipboard set".into(),
                json!({"bytes": state.clipboard.len()}),
            )
        }
        Op::ClipboardGet {} => {
            let text = state.clipboard.clone();
            text_outcome("clipboard.get", &text, json!({}), ctx)
        }
        Op::AppInstall { app } => {
            if HARDWARE_APPS.contains(&app.as_str())
                && !sim.profile.hardware.contains(&app.as_str())
            {
                return Err(Outcome::failed(
                    "unsupported_action",
                    format!("a {} has no hardware for `{app}`", sim.profile.name),
                ));
            }
            if !state.apps.contains(&app) {
                state.apps.push(app.clone());
            }
            done(
                "app.install",
                format!("{app} installed"),
                json!({"app": app}),
            )
        }
        Op::AppOpen { app } => {
            if !state.apps.contains(&app) {
                return Err(Outcome::failed(
                    "unsupported_action",
                    format!("`{app}` is not installed on this {}", sim.profile.name),
                ));
            }
            state.opened.push(app.clone());
            done("app.open", format!("{app} opened"), json!({"app": app}))
        }
        Op::AppList {} => {
            let mut apps = state.apps.clone();
            apps.sort();
            let refs: Vec<&str> = apps.iter().map(String::as_str).collect();
            let content = lines_text(&refs);
            text_outcome("app.list", &content, json!({"apps": apps}), ctx)
        }
        Op::KvSet { key, value } => {
            state.kv.insert(key.clone(), value);
            done("kv.set", format!("{key} set"), json!({"key": key}))
        }
        Op::KvGet { key } => {
            let Some(v) = state.kv.get(&key).cloned() else {
                return Err(not_found(format!("no key `{key}` in the app data")));
            };
            let text = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            text_outcome("kv.get", &text, json!({"key": key, "value": v}), ctx)
        }
        Op::Inspect {} => {
            let mut shown = state.clone();
            shown.runs.clear();
            done(
                "sim.inspect",
                format!("{} state", sim.profile.name),
                json!({"profile": sim.profile.name, "state": shown}),
            )
        }
    })
}

/// FNV-1a, 64 bits: a hash that is the same on every machine and Rust version.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What identifies a task's work whatever the attempt: the op and its canonical args.
fn task_key(op: &str, canonical_args: &str) -> u64 {
    fnv(format!("{op}\n{canonical_args}").as_bytes())
}

/// A number in `[0, 1)` drawn from `(seed, key, n)` (SplitMix64's finaliser).
fn unit(seed: u64, key: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_add(key.rotate_left(17))
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use weft_protocol::wire::ResultStatus;

    use super::*;
    use crate::exec::TestEnv;

    struct Dev {
        env: TestEnv,
        dir: tempfile::TempDir,
    }

    impl Dev {
        fn new(profile: &str, fail_rate: f64) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("work")).unwrap();
            let mut env = TestEnv::new();
            let mut config = SimConfig::new(profile);
            config.latency_scale = 0.0;
            config.fail_rate = fail_rate;
            config.seed = 7;
            env.tools.sim = Some(Sim::new(config, &dir.path().join("state")).unwrap());
            Self { env, dir }
        }

        fn workdir(&self) -> PathBuf {
            self.dir.path().join("work")
        }

        async fn run(&self, op: &str, args: Value) -> Outcome {
            let workdir = self.workdir();
            let ctx = self.env.ctx(&workdir);
            run(op, &args, &ctx).await
        }

        async fn ok(&self, op: &str, args: Value) -> Value {
            let o = self.run(op, args).await;
            assert_eq!(o.status, ResultStatus::Succeeded, "{op}: {o:?}");
            o.output.data
        }

        fn state(&self) -> State {
            read_state(&self.dir.path().join("state").join(STATE_FILE)).unwrap()
        }

        fn code(o: &Outcome) -> String {
            o.error.as_ref().map(|e| e.code.clone()).unwrap_or_default()
        }
    }

    #[tokio::test]
    async fn apps_change_the_state_file() {
        let d = Dev::new("android-phone", 0.0);
        d.ok(
            "mail.send",
            json!({"to": "ana@example.com", "subject": "Hi", "body": "x"}),
        )
        .await;
        d.ok("notify", json!({"title": "done", "body": "all good"}))
            .await;
        d.ok(
            "calendar.add",
            json!({"title": "Dentist", "start": "2026-03-02T09:30"}),
        )
        .await;
        d.ok("kv.set", json!({"key": "theme", "value": {"dark": true}}))
            .await;
        d.ok("clipboard.set", json!({"text": "copied"})).await;
        d.ok("note.create", json!({"title": "groceries", "body": "milk"}))
            .await;
        d.ok("note.create", json!({"title": "groceries", "body": "eggs"}))
            .await;
        let s = d.state();
        assert_eq!(s.outbox[0].to, ["ana@example.com"]);
        assert_eq!(s.outbox[0].from, "android-phone");
        assert_eq!(s.notifications[0].body, "all good");
        assert_eq!(s.calendar[0].start, "2026-03-02T09:30");
        assert_eq!(s.kv["theme"], json!({"dark": true}));
        assert_eq!(s.clipboard, "copied");
        assert_eq!(s.notes.len(), 1, "a note with the same title is replaced");
        assert_eq!(s.notes[0].body, "eggs");
        let got = d.ok("clipboard.get", json!(null)).await;
        assert_eq!(got["content"], "copied");
        let got = d.ok("kv.get", json!({"key": "theme"})).await;
        assert_eq!(got["value"], json!({"dark": true}));
        let got = d.ok("sim.inspect", json!({})).await;
        assert_eq!(got["state"]["clipboard"], "copied");
    }

    #[tokio::test]
    async fn the_state_survives_a_new_executor_as_after_a_restart() {
        let d = Dev::new("mac-laptop", 0.0);
        d.ok("note.create", json!({"title": "a", "body": "b"}))
            .await;
        // A new executor on the same state dir (the agent restarted) sees the note.
        let mut config = SimConfig::new("mac-laptop");
        config.latency_scale = 0.0;
        let again = Sim::new(config, &d.dir.path().join("state")).unwrap();
        assert_eq!(again.load().unwrap().notes[0].body, "b");
    }

    #[tokio::test]
    async fn files_are_the_workdirs_files() {
        let d = Dev::new("linux-server", 0.0);
        d.ok(
            "file.write",
            json!({"path": "logs/a.log", "content": "10:01 boot\n"}),
        )
        .await;
        d.ok(
            "log.append",
            json!({"path": "logs/a.log", "line": "10:05 ERROR disk"}),
        )
        .await;
        d.ok(
            "log.append",
            json!({"path": "logs/b/c.log", "line": "10:03 ERROR net"}),
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(d.workdir().join("logs/a.log")).unwrap(),
            "10:01 boot\n10:05 ERROR disk\n"
        );
        // A binary file among the logs adds no lines, and is counted.
        std::fs::write(
            d.workdir().join("logs/core.dump"),
            b"ERROR\xff\xfe\x00ERROR",
        )
        .unwrap();
        let got = d
            .ok("log.collect", json!({"dir": "logs", "contains": "ERROR"}))
            .await;
        assert_eq!(got["content"], "10:05 ERROR disk\n10:03 ERROR net\n");
        assert_eq!(got["binary_files"], 1);
        std::fs::remove_file(d.workdir().join("logs/core.dump")).unwrap();
        let got = d.ok("data.sort", json!({"text": got["content"]})).await;
        assert_eq!(got["content"], "10:03 ERROR net\n10:05 ERROR disk\n");
        let got = d.ok("file.list", json!({"dir": "logs"})).await;
        assert_eq!(got["files"], json!(["logs/a.log", "logs/b/c.log"]));
        d.ok(
            "file.copy",
            json!({"from": "logs/a.log", "to": "backup/a.log"}),
        )
        .await;
        let got = d.ok("file.read", json!({"path": "backup/a.log"})).await;
        assert_eq!(got["content"], "10:01 boot\n10:05 ERROR disk\n");
        let o = d.run("file.read", json!({"path": "../escape"})).await;
        assert_eq!(Dev::code(&o), "path_outside_workdir");
        let o = d.run("file.read", json!({"path": "nope.txt"})).await;
        assert_eq!(Dev::code(&o), "not_found");
        // build.run reads PROJECT/tests.txt and writes PROJECT/build.log.
        d.ok(
            "file.write",
            json!({"path": "app/tests.txt", "content": "login: pass\nupload: fail\n"}),
        )
        .await;
        let got = d.ok("build.run", json!({"project": "app"})).await;
        assert_eq!(
            (got["status"].as_str(), got["failed"].as_u64()),
            (Some("failed"), Some(1))
        );
        assert!(d.workdir().join("app/build.log").is_file());
        // A bare name is found under projects/ when it is not a folder of its own.
        d.ok(
            "file.write",
            json!({"path": "projects/shop/tests.txt", "content": "cart: pass\n"}),
        )
        .await;
        let got = d.ok("build.run", json!({"project": "shop"})).await;
        assert_eq!(
            (got["project"].as_str(), got["status"].as_str()),
            (Some("projects/shop"), Some("passed"))
        );
        assert!(d.workdir().join("projects/shop/build.log").is_file());
        let o = d.run("build.run", json!({"project": "nowhere"})).await;
        assert_eq!(Dev::code(&o), "not_found");
    }

    #[tokio::test]
    async fn data_and_metrics() {
        let d = Dev::new("edge-box", 0.0);
        let mut s = profile("edge-box").unwrap().initial_state();
        s.metrics.insert("temp_c".into(), 71.5);
        write_state(&d.dir.path().join("state").join(STATE_FILE), &s).unwrap();
        let got = d
            .ok("metric.check", json!({"name": "temp_c", "max": "70"}))
            .await;
        assert_eq!(got["breach"], true);
        assert_eq!(got["content"], "temp_c=71.5 (max 70): BREACH");
        let got = d
            .ok(
                "data.sum_csv",
                json!({"text": "item,qty\na,2\nb,3.5\n", "column": "qty"}),
            )
            .await;
        assert_eq!(
            (got["sum"].as_f64(), got["content"].as_str()),
            (Some(5.5), Some("5.5"))
        );
        let got = d
            .ok(
                "data.count",
                json!({"text": "a\nb x\n\nc x\n", "contains": "x"}),
            )
            .await;
        assert_eq!(got["count"], 2);
        let o = d.run("metric.read", json!({"name": "nope"})).await;
        assert_eq!(Dev::code(&o), "not_found");
    }

    #[tokio::test]
    async fn ops_need_their_apps_and_hardware() {
        let d = Dev::new("linux-server", 0.0);
        let o = d.run("notify", json!({"title": "t", "body": "b"})).await;
        assert_eq!(Dev::code(&o), "unsupported_action");
        assert!(o.error.unwrap().message.contains("`notifications` app"));
        let o = d.run("app.install", json!({"app": "camera"})).await;
        assert_eq!(Dev::code(&o), "unsupported_action");
        d.ok("app.install", json!({"app": "notifications"})).await;
        d.ok("notify", json!({"title": "t", "body": "b"})).await;
        let phone = Dev::new("android-phone", 0.0);
        let got = phone.ok("photo.take", json!({"name": "receipt"})).await;
        assert_eq!(got["path"], "DCIM/receipt.jpg");
    }

    #[tokio::test]
    async fn a_photo_is_the_seeded_jpeg_of_its_device_and_path() {
        let phone = Dev::new("android-phone", 0.0);
        let got = phone.ok("photo.take", json!({"name": "receipt"})).await;
        let want = seeded::Bytes::photo(7, "android-phone", "DCIM/receipt.jpg").to_vec();
        let on_disk = std::fs::read(phone.workdir().join("DCIM/receipt.jpg")).unwrap();
        assert_eq!(
            on_disk, want,
            "the seed, the device and the path give the bytes"
        );
        assert!(on_disk.starts_with(&[0xFF, 0xD8, 0xFF]) && on_disk.ends_with(&[0xFF, 0xD9]));
        assert!((seeded::PHOTO_MIN..=seeded::PHOTO_MAX).contains(&(on_disk.len() as u64)));
        let hash = seeded::photo_sha256_hex(7, "android-phone", "DCIM/receipt.jpg");
        assert_eq!(
            (&got["path"], &got["bytes"], &got["sha256"]),
            (&json!("DCIM/receipt.jpg"), &json!(want.len()), &json!(hash))
        );
        assert_eq!(
            got["content"],
            format!("DCIM/receipt.jpg: {} bytes, sha256 {hash}", want.len())
        );
        // Taken again: the same bytes. Without a name: IMG_NNNN, another photo.
        phone.ok("photo.take", json!({"name": "receipt"})).await;
        let again = std::fs::read(phone.workdir().join("DCIM/receipt.jpg")).unwrap();
        assert!(again == want);
        let got = phone.ok("photo.take", json!({})).await;
        assert_eq!(got["path"], "DCIM/IMG_0003.jpg");
        assert_ne!(got["sha256"], json!(hash));
        assert_eq!(phone.state().photos_taken, 3);
    }

    #[tokio::test]
    async fn binary_files_are_read_as_what_they_are_and_copied_byte_for_byte() {
        let phone = Dev::new("android-phone", 0.0);
        let got = phone.ok("photo.take", json!({"name": "shelf"})).await;
        let (size, hash) = (got["bytes"].clone(), got["sha256"].clone());
        let photo = std::fs::read(phone.workdir().join("DCIM/shelf.jpg")).unwrap();
        // A read of a file that is not text does not fail: it says what the file is.
        let got = phone
            .ok("file.read", json!({"path": "DCIM/shelf.jpg"}))
            .await;
        assert_eq!(
            (&got["bytes"], &got["sha256"], &got["binary"]),
            (&size, &hash, &json!(true))
        );
        assert_eq!(
            got["content"],
            format!(
                "DCIM/shelf.jpg: binary, {size} bytes, sha256 {}",
                hash.as_str().unwrap()
            )
        );
        // A text file reads as before, without `binary`.
        phone
            .ok("file.write", json!({"path": "a.txt", "content": "héllo\n"}))
            .await;
        let got = phone.ok("file.read", json!({"path": "a.txt"})).await;
        assert_eq!(
            (&got["content"], &got["bytes"]),
            (&json!("héllo\n"), &json!(7))
        );
        assert!(got.get("binary").is_none() && got.get("sha256").is_none());
        // A copy is byte for byte, text or not (a lossy copy would change the photo).
        let got = phone
            .ok(
                "file.copy",
                json!({"from": "DCIM/shelf.jpg", "to": "Desktop/shelf.jpg"}),
            )
            .await;
        assert_eq!(got["bytes"], size);
        assert!(std::fs::read(phone.workdir().join("Desktop/shelf.jpg")).unwrap() == photo);
        phone
            .ok("file.copy", json!({"from": "a.txt", "to": "b/a.txt"}))
            .await;
        assert_eq!(
            std::fs::read_to_string(phone.workdir().join("b/a.txt")).unwrap(),
            "héllo\n"
        );
        // Writing the photo's output text is not a transfer: the file holds that text.
        let text = phone
            .ok("file.read", json!({"path": "DCIM/shelf.jpg"}))
            .await;
        phone
            .ok(
                "file.write",
                json!({"path": "Desktop/wrong.jpg", "content": text["content"]}),
            )
            .await;
        let wrong = std::fs::read(phone.workdir().join("Desktop/wrong.jpg")).unwrap();
        assert!(wrong != photo && wrong.starts_with(b"DCIM/shelf.jpg: binary"));
        // A binary attachment is recorded by what it is, not by its bytes.
        phone
            .ok(
                "mail.send",
                json!({"to": "ana@example.com", "subject": "shelf", "body": "see attached",
                       "attachments": ["DCIM/shelf.jpg", "a.txt"]}),
            )
            .await;
        let sent = &phone.state().outbox[0];
        assert_eq!(
            sent.attachments[0].content,
            text["content"].as_str().unwrap()
        );
        assert_eq!(sent.attachments[1].content, "héllo\n");
    }

    #[tokio::test]
    async fn bad_ops_and_args_are_refused_before_running() {
        let d = Dev::new("mac-laptop", 0.0);
        for (op, args, code) in [
            ("teleport", json!({}), "unsupported_action"),
            ("mail.send", json!({"to": "a"}), "invalid_action"),
            (
                "mail.send",
                json!({"to": "a", "subject": "s", "body": "b", "cc": "x"}),
                "invalid_action",
            ),
            ("file.read", json!("x"), "invalid_action"),
            (
                "calendar.add",
                json!({"title": "x", "start": "tomorrow"}),
                "invalid_action",
            ),
            (
                "metric.check",
                json!({"name": "x", "max": "high"}),
                "invalid_action",
            ),
        ] {
            let o = d.run(op, args.clone()).await;
            assert_eq!(Dev::code(&o), code, "{op} {args}");
        }
        let workdir = d.workdir();
        let ctx = d.env.ctx(&workdir);
        let sim = ctx.tools.sim.as_ref().unwrap();
        assert!(
            sim.vet("file.write", &json!({"path": "a", "content": "b"}), &ctx)
                .is_ok()
        );
        let e = sim
            .vet(
                "file.write",
                &json!({"path": "/etc/x", "content": "b"}),
                &ctx,
            )
            .unwrap_err();
        assert_eq!(e.code, "policy_denied");
    }

    #[test]
    fn latency_is_seeded_and_attempt_independent() {
        let dir = tempfile::tempdir().unwrap();
        let make = |profile: &str, seed: u64| {
            let mut c = SimConfig::new(profile);
            c.seed = seed;
            Sim::new(c, dir.path()).unwrap()
        };
        let args = json!({"to": "a", "subject": "s", "body": "b"});
        let reordered = json!({"body": "b", "subject": "s", "to": "a"});
        let phone = make("android-phone", 1);
        let l = phone.latency("mail.send", &args);
        assert_eq!(l, make("android-phone", 1).latency("mail.send", &reordered));
        assert_ne!(l, make("android-phone", 2).latency("mail.send", &args));
        // 250 ms × speed 1.3 × jitter in [0.75, 1.25).
        assert!(
            l >= Duration::from_millis(243) && l < Duration::from_millis(407),
            "{l:?}"
        );
        let server = make("linux-server", 1);
        assert!(server.latency("mail.send", &args) < l);
        assert!(SimConfig::new("toaster").validate().is_err());
    }

    #[tokio::test]
    async fn transient_failures_follow_the_seed() {
        let outcomes = |d: Dev| async move {
            let mut codes = Vec::new();
            for _ in 0..12 {
                let o = d.run("kv.set", json!({"key": "k", "value": 1})).await;
                codes.push(Dev::code(&o));
            }
            codes
        };
        let a = outcomes(Dev::new("mac-laptop", 0.5)).await;
        let b = outcomes(Dev::new("mac-laptop", 0.5)).await;
        assert_eq!(a, b, "the same seed fails the same attempts");
        assert!(
            a.iter().any(|c| c == TRANSIENT) && a.iter().any(String::is_empty),
            "{a:?}"
        );
    }

    #[test]
    fn the_config_file_and_flags_set_the_profile() {
        use crate::settings::{Loaded, Overrides, config_without_token};
        let text =
            "[sim]\nprofile = \"edge-box\"\nseed = 9\nlatency_scale = 0.5\nfail_rate = 0.1\n";
        let l = Loaded::parse(Path::new("/cfg/agent.toml"), text).unwrap();
        let c = config_without_token(&Overrides::default(), Some(&l));
        let sim = c.sim.unwrap();
        assert_eq!(
            (
                sim.profile.as_str(),
                sim.seed,
                sim.latency_scale,
                sim.fail_rate
            ),
            ("edge-box", 9, 0.5, 0.1)
        );
        // A flag names another profile; the file's other keys stay.
        let o = Overrides {
            sim_profile: Some("android-phone".into()),
            ..Overrides::default()
        };
        let sim = config_without_token(&o, Some(&l)).sim.unwrap();
        assert_eq!((sim.profile.as_str(), sim.seed), ("android-phone", 9));
        assert!(
            config_without_token(&Overrides::default(), None)
                .sim
                .is_none()
        );
        let e = Loaded::parse(
            Path::new("/cfg/agent.toml"),
            "[sim]\nprofile = \"toaster\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/cfg/agent.toml") && e.contains("sim.profile"),
            "{e}"
        );
        let e = Loaded::parse(
            Path::new("/cfg/agent.toml"),
            "[sim]\nprofile = \"edge-box\"\nfail_rate = 2.0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sim.fail_rate"), "{e}");
    }

    #[test]
    fn only_a_sim_profile_offers_the_capability() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::new("http://127.0.0.1:1", "box", "t");
        config.state_dir = dir.path().join("state");
        let tools = crate::exec::Toolbox::discover(&config);
        assert!(!crate::exec::capabilities(&config, &tools).contains(&"sim".to_owned()));
        config.sim = Some(SimConfig::new("edge-box"));
        let tools = crate::exec::Toolbox::discover(&config);
        assert!(crate::exec::capabilities(&config, &tools).contains(&"sim".to_owned()));
        let specs = crate::exec::tool_specs(&config, &tools);
        let offers = |op: &str| specs.iter().any(|t| t.executor == "sim" && t.name == op);
        // The edge box has the monitoring app, not mail.
        assert!(offers("metric.check") && !offers("mail.send"));
        // The owner's policy can leave it out.
        config.policy.executors = Some(vec!["fs".into()]);
        assert!(!crate::exec::capabilities(&config, &tools).contains(&"sim".to_owned()));
        assert!(crate::exec::tool_specs(&config, &tools).is_empty());
    }

    #[test]
    fn docs_list_every_op() {
        let doc = include_str!("../../../docs/sim.md");
        for op in op_names() {
            assert!(
                doc.contains(&format!("| `{op}` |")),
                "docs/sim.md lacks {op}"
            );
        }
        for p in PROFILES {
            assert!(doc.contains(&format!("| `{p}` |")), "docs/sim.md lacks {p}");
        }
    }

    #[test]
    fn every_op_has_a_tool_spec_and_parses_its_example() {
        // The phone has every app but `office` and `toolchain`, the server few of them.
        let phone = specs(profile("android-phone").unwrap());
        let names = |specs: &[ToolSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert!(names(&phone).contains(&"photo.take".to_owned()));
        assert!(!names(&phone).contains(&"build.run".to_owned()));
        let server = names(&specs(profile("linux-server").unwrap()));
        assert!(server.contains(&"build.run".to_owned()));
        assert!(server.contains(&"app.install".to_owned()));
        assert!(!server.contains(&"mail.send".to_owned()));
        let with_app = |name: &str| spec(name).unwrap().app;
        assert!(
            server
                .iter()
                .all(|n| with_app(n).is_none_or(|a| ["toolchain", "monitoring"].contains(&a)))
        );
        let all_apps = Profile {
            apps: &[
                "mail",
                "calendar",
                "notes",
                "notifications",
                "messages",
                "camera",
                "photos",
                "office",
                "browser",
                "toolchain",
                "monitoring",
            ],
            ..*profile("mac-laptop").unwrap()
        };
        let specs = specs(&all_apps);
        assert_eq!(specs.len(), OPS.len());
        assert!(specs.iter().all(|s| s.executor == "sim"));
        for s in OPS {
            let mut args = serde_json::Map::new();
            for (name, ty, required) in s.args {
                if *required {
                    let v = match *ty {
                        "number" => json!(1),
                        "array" => json!([]),
                        "boolean" => json!(true),
                        _ => json!("x"),
                    };
                    args.insert((*name).into(), v);
                }
            }
            parse(s.name, &Value::Object(args)).unwrap_or_else(|e| panic!("{}: {e:?}", s.name));
        }
    }
}
