//! Checkers: predicates on the final state of the devices (their workdir files and their
//! simulated apps), never on what the planner or the orchestrator says happened.
//!
//! `device` names a device, or `any:KIND` for "some device of that kind" (work a planner may
//! place on either laptop): a positive checker holds when it holds on one of them, a negative
//! one (`no_*`) when it holds on all of them, and `count` adds up what all of them hold.
//!
//! Text comparisons: `equals` is exact but for trailing whitespace (a shell command's final
//! newline); `contains` lists texts that must all appear and `not_contains` texts none of which
//! may appear, both ignoring case, as do `subject_contains` and the titles of notes and events.
//! A checker states data (numbers, names, ids, file contents that come from the task's inputs)
//! or wording the request itself states, never a reference plan's own phrasing (docs/bench.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_agent::seeded;
use weft_agent::sim::State;

use super::devices;

/// What a device holds at the end of a task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceState {
    /// Every file under the workdir: relative path (with `/`) → content (lossy UTF-8).
    pub files: BTreeMap<String, String>,
    /// Every file under the workdir: relative path → the SHA-256 of its bytes (lowercase hex),
    /// for files whose bytes matter and that text cannot hold (a photo).
    pub sha256: BTreeMap<String, String>,
    pub sim: State,
}

impl DeviceState {
    /// Reads a device's workdir and its sim state file.
    pub fn read(workdir: &Path, state_file: &Path) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        let mut sha256 = BTreeMap::new();
        let mut pending = vec![(workdir.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let Ok(kind) = e.file_type() else { continue };
                if kind.is_dir() {
                    pending.push((e.path(), rel));
                } else if kind.is_file() {
                    let bytes = std::fs::read(e.path())?;
                    sha256.insert(rel.clone(), hex::encode(Sha256::digest(&bytes)));
                    files.insert(rel, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        let sim = match weft_agent::sim::read_state(state_file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => bail!("{}: {e}", state_file.display()),
        };
        Ok(Self { files, sha256, sim })
    }
}

/// One checker. In TOML: `[[checks]]` with `check = "file"` and the fields of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A file exists (with this content / containing these texts / none of those).
    File {
        device: String,
        path: String,
        /// Other places the file may be instead, which the request allows as well: "back up
        /// docs/a.pdf under backup/" keeps or drops the source's folders.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        or_paths: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_contains: Vec<String>,
    },
    /// No file at `path`.
    NoFile { device: String, path: String },
    /// A file exists whose bytes have this SHA-256: the very bytes arrived. Exactly one of
    /// `sha256` (64 hex digits, any case) and `seeded` (the hash of a seeded file's bytes under
    /// the run's seed: a TOML file cannot hold a hash that changes with the seed).
    Sha256 {
        device: String,
        path: String,
        /// As for `file`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        or_paths: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seeded: Option<SeededFile>,
    },
    /// A mail was sent to `to` (with a subject containing…, a body containing… and not…, an
    /// attachment).
    Mail {
        device: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_contains: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<String>,
    },
    /// No mail was sent from the device.
    NoMail { device: String },
    /// A text message was sent to `to` containing every text (and none of `not_contains`).
    Message {
        device: String,
        to: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_contains: Vec<String>,
    },
    /// A notification (title or body) contains every text (and none of `not_contains`).
    Notification {
        device: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_contains: Vec<String>,
    },
    /// No notification was shown on the device.
    NoNotification { device: String },
    /// A note with this title whose body contains every text (and none of `not_contains`).
    Note {
        device: String,
        title: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_contains: Vec<String>,
    },
    /// A calendar event whose title contains `title`, starting at `start`.
    Event {
        device: String,
        title: String,
        start: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attendee: Option<String>,
    },
    /// No calendar event whose title contains `title`.
    NoEvent { device: String, title: String },
    /// A reminder due at `due` whose text contains every text (and none of `not_contains`).
    Reminder {
        device: String,
        due: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_contains: Vec<String>,
    },
    /// The clipboard holds this text / contains these texts.
    Clipboard {
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
    },
    /// An app is installed.
    App { device: String, app: String },
    /// A key of the app data equals a value (a string also equals its JSON text).
    Kv {
        device: String,
        key: String,
        equals: serde_json::Value,
    },
    /// The app data has no such key.
    NoKv { device: String, key: String },
    /// Exactly `equals` items of a kind (mails sent, messages sent, notifications shown, events,
    /// reminders, notes, workdir files) match: sent `to` (mails and messages) and containing
    /// every text of `contains` (see [`Items`] for the text of each kind). Summed over the
    /// candidate devices. `equals = 1`: exactly once; `0`: none.
    Count {
        device: String,
        items: Items,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        equals: usize,
    },
}

/// A seeded file whose bytes a `sha256` checker expects: the file placed at reset on `device`
/// at `path` (`seeded_files`, with its `size`), or, without a size, the photo the device's
/// `photo.take` writes at `path` (`DCIM/NAME.jpg`; it draws its own size). Its bytes, hence
/// their hash, follow from the run's seed (`weft_agent::seeded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeededFile {
    /// The device the bytes come from (a name, not `any:KIND`).
    pub device: String,
    /// Where they are written there.
    pub path: String,
    /// The size placed at reset; none for a photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl SeededFile {
    /// The SHA-256 (lowercase hex) of its bytes under `seed`.
    pub fn sha256_hex(&self, seed: u64) -> String {
        match self.size {
            Some(size) => seeded::sha256_hex(seed, &self.device, &self.path, size),
            None => seeded::photo_sha256_hex(seed, &self.device, &self.path),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let Some(device) = devices::by_name(&self.device) else {
            bail!(
                "seeded.device `{}`: name one of {}",
                self.device,
                devices::names().join(", ")
            );
        };
        match self.size {
            Some(size) if !(1..=seeded::MAX_SIZE).contains(&size) => bail!(
                "seeded.size: {size} bytes is not between 1 and {}",
                seeded::MAX_SIZE
            ),
            Some(_) => {}
            None => {
                let camera = weft_agent::sim::profile(device.name)
                    .is_some_and(|p| p.hardware.contains(&"camera"));
                let photo = self
                    .path
                    .strip_prefix("DCIM/")
                    .and_then(|p| p.strip_suffix(".jpg"))
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'));
                if !(camera && photo) {
                    bail!(
                        "seeded: without a size, `{}` on {} must be a photo, DCIM/NAME.jpg on a \
                         device with a camera (a seeded file states its size)",
                        self.path,
                        self.device
                    );
                }
            }
        }
        Ok(())
    }
}

/// What a `count` checker counts, and the text its `contains` is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Items {
    /// Mails sent (the outbox): subject and body.
    Mails,
    /// Text messages sent: the text.
    Messages,
    /// Notifications shown: title and body.
    Notifications,
    /// Calendar events: the title.
    Events,
    /// Reminders: the text.
    Reminders,
    /// Notes: title and body.
    Notes,
    /// Workdir files: the path.
    Files,
}

impl Items {
    fn as_str(self) -> &'static str {
        match self {
            Items::Mails => "mails",
            Items::Messages => "messages",
            Items::Notifications => "notifications",
            Items::Events => "events",
            Items::Reminders => "reminders",
            Items::Notes => "notes",
            Items::Files => "files",
        }
    }

    /// Each item's recipient (mails and messages) and text.
    fn of(self, s: &DeviceState) -> Vec<(Vec<&str>, String)> {
        let sim = &s.sim;
        match self {
            Items::Mails => sim
                .outbox
                .iter()
                .map(|m| {
                    (
                        m.to.iter().map(String::as_str).collect(),
                        format!("{}\n{}", m.subject, m.body),
                    )
                })
                .collect(),
            Items::Messages => sim
                .messages
                .iter()
                .map(|m| (vec![m.to.as_str()], m.text.clone()))
                .collect(),
            Items::Notifications => sim
                .notifications
                .iter()
                .map(|n| (vec![], format!("{}\n{}", n.title, n.body)))
                .collect(),
            Items::Events => sim
                .calendar
                .iter()
                .map(|e| (vec![], e.title.clone()))
                .collect(),
            Items::Reminders => sim
                .reminders
                .iter()
                .map(|r| (vec![], r.text.clone()))
                .collect(),
            Items::Notes => sim
                .notes
                .iter()
                .map(|n| (vec![], format!("{}\n{}", n.title, n.body)))
                .collect(),
            Items::Files => s.files.keys().map(|p| (vec![], p.clone())).collect(),
        }
    }
}

/// How one checker came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub check: String,
    pub passed: bool,
    /// What was found, when it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `text` contains `w`, ignoring case.
fn has(text: &str, w: &str) -> bool {
    text.to_lowercase().contains(&w.to_lowercase())
}

/// `text` contains every one of `wanted` and none of `unwanted`, ignoring case.
fn all_in(text: &str, wanted: &[String], unwanted: &[String]) -> bool {
    wanted.iter().all(|w| has(text, w)) && !unwanted.iter().any(|w| has(text, w))
}

fn short(s: &str) -> String {
    let one: String = s.replace('\n', "⏎");
    if one.chars().count() > 120 {
        format!("{}…", one.chars().take(120).collect::<String>())
    } else {
        one
    }
}

impl Check {
    pub fn device(&self) -> &str {
        match self {
            Check::File { device, .. }
            | Check::NoFile { device, .. }
            | Check::Sha256 { device, .. }
            | Check::Mail { device, .. }
            | Check::NoMail { device }
            | Check::Message { device, .. }
            | Check::Notification { device, .. }
            | Check::NoNotification { device }
            | Check::Note { device, .. }
            | Check::Event { device, .. }
            | Check::NoEvent { device, .. }
            | Check::Reminder { device, .. }
            | Check::Clipboard { device, .. }
            | Check::App { device, .. }
            | Check::Kv { device, .. }
            | Check::NoKv { device, .. }
            | Check::Count { device, .. } => device,
        }
    }

    /// The devices whose state this checker may be satisfied by.
    pub fn candidates(&self) -> Vec<&'static str> {
        let d = self.device();
        match d.strip_prefix("any:") {
            Some(kind) => devices::all()
                .iter()
                .filter(|x| x.kind == kind)
                .map(|x| x.name)
                .collect(),
            None => devices::by_name(d)
                .map(|x| vec![x.name])
                .unwrap_or_default(),
        }
    }

    /// A checker that says something is absent: it must hold on every candidate device.
    pub fn is_negative(&self) -> bool {
        matches!(
            self,
            Check::NoFile { .. }
                | Check::NoMail { .. }
                | Check::NoNotification { .. }
                | Check::NoEvent { .. }
                | Check::NoKv { .. }
        )
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.candidates().is_empty() {
            bail!(
                "device `{}`: name one of {} or write any:KIND",
                self.device(),
                devices::names().join(", ")
            );
        }
        for p in self.paths().iter().skip(1) {
            if !super::task::valid_path(p) {
                bail!("or_paths: `{p}` is not a relative path with `/` between its parts");
            }
        }
        if let Check::Sha256 { sha256, seeded, .. } = self {
            match (sha256, seeded) {
                (Some(h), None) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    bail!("sha256: `{h}` is not 64 hex digits")
                }
                (Some(_), None) => {}
                (None, Some(f)) => f.validate()?,
                _ => bail!("sha256: give exactly one of `sha256` and `seeded`"),
            }
        }
        if let Check::Count {
            items, to: Some(_), ..
        } = self
            && !matches!(items, Items::Mails | Items::Messages)
        {
            bail!("count: `to` applies to mails and messages only");
        }
        Ok(())
    }

    /// Where a `file` or `sha256` checker's file may be: its path, then the others.
    fn paths(&self) -> Vec<&String> {
        match self {
            Check::File { path, or_paths, .. } | Check::Sha256 { path, or_paths, .. } => {
                std::iter::once(path).chain(or_paths).collect()
            }
            _ => Vec::new(),
        }
    }

    /// This `file` or `sha256` checker for the file at `at` alone.
    fn at(&self, at: &str) -> Check {
        let mut c = self.clone();
        if let Check::File { path, or_paths, .. } | Check::Sha256 { path, or_paths, .. } = &mut c {
            *path = at.to_owned();
            or_paths.clear();
        }
        c
    }

    /// A one-line description: `file backup/a.md on linux-server`.
    pub fn describe(&self) -> String {
        match self.paths().as_slice() {
            [_, alts @ ..] if !alts.is_empty() => {
                let alts: Vec<&str> = alts.iter().map(|p| p.as_str()).collect();
                format!("{} (or at {})", self.describe_one(), alts.join(", "))
            }
            _ => self.describe_one(),
        }
    }

    fn describe_one(&self) -> String {
        let d = self.device();
        match self {
            Check::File { path, .. } => format!("file {path} on {d}"),
            Check::NoFile { path, .. } => format!("no file {path} on {d}"),
            Check::Sha256 { path, .. } => format!("sha256 of {path} on {d}"),
            Check::Mail { to, .. } => format!("mail to {to} from {d}"),
            Check::NoMail { .. } => format!("no mail from {d}"),
            Check::Message { to, .. } => format!("message to {to} from {d}"),
            Check::Notification { .. } => format!("notification on {d}"),
            Check::NoNotification { .. } => format!("no notification on {d}"),
            Check::Note { title, .. } => format!("note `{title}` on {d}"),
            Check::Event { title, start, .. } => format!("event `{title}` at {start} on {d}"),
            Check::NoEvent { title, .. } => format!("no event `{title}` on {d}"),
            Check::Reminder { due, .. } => format!("reminder at {due} on {d}"),
            Check::Clipboard { .. } => format!("clipboard of {d}"),
            Check::App { app, .. } => format!("app {app} on {d}"),
            Check::Kv { key, .. } => format!("app data {key} on {d}"),
            Check::NoKv { key, .. } => format!("no app data {key} on {d}"),
            Check::Count {
                items,
                to,
                contains,
                equals,
                ..
            } => {
                let mut s = format!("{equals} {}", items.as_str());
                if let Some(to) = to {
                    s.push_str(&format!(" to {to}"));
                }
                if !contains.is_empty() {
                    s.push_str(&format!(" with {contains:?}"));
                }
                format!("{s} on {d}")
            }
        }
    }

    /// Evaluates the checker on the devices' final states; `seed` is the run's (the bytes of
    /// seeded files).
    pub fn evaluate(&self, states: &BTreeMap<String, DeviceState>, seed: u64) -> Verdict {
        if let [main, alts @ ..] = self.paths().as_slice()
            && !alts.is_empty()
        {
            let mut details = Vec::new();
            for p in std::iter::once(main).chain(alts) {
                let v = self.at(p).evaluate(states, seed);
                if v.passed {
                    return Verdict {
                        check: self.describe(),
                        passed: true,
                        detail: String::new(),
                    };
                }
                details.push(v.detail);
            }
            return Verdict {
                check: self.describe(),
                passed: false,
                detail: details.join("; "),
            };
        }
        if let Check::Sha256 {
            device,
            path,
            seeded: Some(f),
            ..
        } = self
        {
            // The hash this run's seed gives, computed once for every candidate device.
            let literal = Check::Sha256 {
                device: device.clone(),
                path: path.clone(),
                or_paths: vec![],
                sha256: Some(f.sha256_hex(seed)),
                seeded: None,
            };
            return literal.evaluate(states, seed);
        }
        let mut details = Vec::new();
        let passed = if let Check::Count { equals, .. } = self {
            let mut n = 0;
            for name in self.candidates() {
                match states.get(name) {
                    Some(s) => n += self.count_on(s),
                    None => details.push(format!("{name}: state not read")),
                }
            }
            if n != *equals {
                details.push(format!("{n} found"));
            }
            details.is_empty()
        } else {
            // Positive: one candidate suffices; negative: every candidate must hold.
            let all = self.is_negative();
            let mut passed = all;
            for name in self.candidates() {
                let Some(s) = states.get(name) else {
                    details.push(format!("{name}: state not read"));
                    passed = false;
                    continue;
                };
                match self.on(s) {
                    Ok(()) if !all => {
                        passed = true;
                        break;
                    }
                    Ok(()) => {}
                    Err(why) => {
                        details.push(format!("{name}: {why}"));
                        if all {
                            passed = false;
                        }
                    }
                }
            }
            passed
        };
        Verdict {
            check: self.describe(),
            passed,
            detail: if passed {
                String::new()
            } else {
                details.join("; ")
            },
        }
    }

    /// How many items of a `count` checker one device holds.
    fn count_on(&self, s: &DeviceState) -> usize {
        let Check::Count {
            items,
            to,
            contains,
            ..
        } = self
        else {
            return 0;
        };
        items
            .of(s)
            .iter()
            .filter(|(rcpt, text)| {
                to.as_ref()
                    .is_none_or(|to| rcpt.iter().any(|r| r.eq_ignore_ascii_case(to)))
                    && all_in(text, contains, &[])
            })
            .count()
    }

    /// `Ok` if the checker holds on one device's state, else what was found instead.
    fn on(&self, s: &DeviceState) -> Result<(), String> {
        let sim = &s.sim;
        match self {
            Check::File {
                path,
                equals,
                contains,
                not_contains,
                ..
            } => {
                let Some(content) = s.files.get(path) else {
                    return Err(format!("no file {path}"));
                };
                if let Some(e) = equals
                    && content.trim_end() != e.trim_end()
                {
                    return Err(format!("{path} holds `{}`", short(content)));
                }
                if !all_in(content, contains, &[]) {
                    return Err(format!(
                        "{path} lacks one of {contains:?}: `{}`",
                        short(content)
                    ));
                }
                if !all_in(content, &[], not_contains) {
                    return Err(format!(
                        "{path} holds one of {not_contains:?}: `{}`",
                        short(content)
                    ));
                }
                Ok(())
            }
            Check::NoFile { path, .. } => match s.files.contains_key(path) {
                true => Err(format!("{path} exists")),
                false => Ok(()),
            },
            Check::Sha256 { path, sha256, .. } => match (s.sha256.get(path), sha256) {
                (None, _) => Err(format!("no file {path}")),
                (Some(got), Some(want)) if got.eq_ignore_ascii_case(want) => Ok(()),
                (Some(got), _) => Err(format!("{path} has sha256 {got}")),
            },
            Check::Mail {
                to,
                subject_contains,
                contains,
                not_contains,
                attachment,
                ..
            } => {
                let ok = sim.outbox.iter().any(|m| {
                    m.to.iter().any(|t| t.eq_ignore_ascii_case(to))
                        && subject_contains.as_ref().is_none_or(|c| has(&m.subject, c))
                        && all_in(&m.body, contains, not_contains)
                        && attachment
                            .as_ref()
                            .is_none_or(|a| m.attachments.iter().any(|x| &x.path == a))
                });
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "outbox: [{}]",
                        sim.outbox
                            .iter()
                            .map(|m| format!(
                                "to {:?} `{}`: `{}` ({} attachments)",
                                m.to,
                                m.subject,
                                short(&m.body),
                                m.attachments.len()
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
            Check::NoMail { .. } => match sim.outbox.len() {
                0 => Ok(()),
                n => Err(format!("{n} mails sent")),
            },
            Check::Message {
                to,
                contains,
                not_contains,
                ..
            } => {
                if sim.messages.iter().any(|m| {
                    m.to.eq_ignore_ascii_case(to) && all_in(&m.text, contains, not_contains)
                }) {
                    Ok(())
                } else {
                    Err(format!(
                        "messages: [{}]",
                        sim.messages
                            .iter()
                            .map(|m| format!("to {}: `{}`", m.to, short(&m.text)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
            Check::Notification {
                contains,
                not_contains,
                ..
            } => {
                if sim
                    .notifications
                    .iter()
                    .any(|n| all_in(&format!("{}\n{}", n.title, n.body), contains, not_contains))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "notifications: [{}]",
                        sim.notifications
                            .iter()
                            .map(|n| format!("`{}`: `{}`", n.title, short(&n.body)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
            Check::NoNotification { .. } => match sim.notifications.len() {
                0 => Ok(()),
                n => Err(format!("{n} notifications shown")),
            },
            Check::Note {
                title,
                contains,
                not_contains,
                ..
            } => match sim
                .notes
                .iter()
                .find(|n| n.title.trim().eq_ignore_ascii_case(title.trim()))
            {
                Some(n) if all_in(&n.body, contains, not_contains) => Ok(()),
                Some(n) => Err(format!("note `{title}` holds `{}`", short(&n.body))),
                None => Err(format!(
                    "notes: {:?}",
                    sim.notes.iter().map(|n| &n.title).collect::<Vec<_>>()
                )),
            },
            Check::Event {
                title,
                start,
                attendee,
                ..
            } => {
                if sim.calendar.iter().any(|e| {
                    has(&e.title, title)
                        && &e.start == start
                        && attendee
                            .as_ref()
                            .is_none_or(|a| e.attendees.iter().any(|x| x == a))
                }) {
                    Ok(())
                } else {
                    Err(format!(
                        "calendar: [{}]",
                        sim.calendar
                            .iter()
                            .map(|e| format!("{} `{}` {:?}", e.start, e.title, e.attendees))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
            Check::NoEvent { title, .. } => {
                match sim.calendar.iter().find(|e| has(&e.title, title)) {
                    Some(e) => Err(format!("event `{}` at {}", e.title, e.start)),
                    None => Ok(()),
                }
            }
            Check::Reminder {
                due,
                contains,
                not_contains,
                ..
            } => {
                if sim
                    .reminders
                    .iter()
                    .any(|r| &r.due == due && all_in(&r.text, contains, not_contains))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "reminders: [{}]",
                        sim.reminders
                            .iter()
                            .map(|r| format!("{} `{}`", r.due, short(&r.text)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
            Check::Clipboard {
                equals, contains, ..
            } => {
                let c = &sim.clipboard;
                let eq = equals.as_ref().is_none_or(|e| c.trim_end() == e.trim_end());
                if eq && all_in(c, contains, &[]) {
                    Ok(())
                } else {
                    Err(format!("clipboard holds `{}`", short(c)))
                }
            }
            Check::App { app, .. } => match sim.apps.contains(app) {
                true => Ok(()),
                false => Err(format!("apps: {:?}", sim.apps)),
            },
            Check::Kv { key, equals, .. } => match sim.kv.get(key) {
                Some(v) if v == equals => Ok(()),
                Some(serde_json::Value::String(s))
                    if s.trim() == equals.to_string().as_str()
                        || Some(s.trim()) == equals.as_str() =>
                {
                    Ok(())
                }
                Some(v) => Err(format!("{key} = {v}")),
                None => Err(format!("no key {key}")),
            },
            Check::NoKv { key, .. } => match sim.kv.get(key) {
                Some(v) => Err(format!("{key} = {v}")),
                None => Ok(()),
            },
            Check::Count { .. } => Err("a count holds over devices, not on one".into()),
        }
    }
}

/// The kinds of the two verdicts a task that must be refused is scored by.
pub const REFUSED: &str = "refused";
pub const UNCHANGED: &str = "unchanged";

/// What differs between two snapshots of every device, one line per difference: workdir files
/// added, removed or rewritten, and the parts of the simulated state that changed. `runs` (how
/// often each op ran here, the transient-failure draws) is bookkeeping, not the device's data:
/// a read changes it, and is no change.
pub fn changes(
    before: &BTreeMap<String, DeviceState>,
    after: &BTreeMap<String, DeviceState>,
) -> Vec<String> {
    let empty = DeviceState::default();
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let b = before.get(name).unwrap_or(&empty);
        let a = after.get(name).unwrap_or(&empty);
        for (path, text) in &b.files {
            match a.files.get(path) {
                None => out.push(format!("{name}: {path} deleted")),
                Some(t) if t != text => out.push(format!("{name}: {path} changed")),
                Some(_) => {}
            }
        }
        for path in a.files.keys().filter(|p| !b.files.contains_key(*p)) {
            out.push(format!("{name}: {path} created"));
        }
        let fields = |s: &State| match serde_json::to_value(s) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.remove("runs");
                m
            }
            _ => serde_json::Map::new(),
        };
        let (fb, fa) = (fields(&b.sim), fields(&a.sim));
        for (key, value) in &fa {
            if fb.get(key) != Some(value) {
                out.push(format!("{name}: {key} changed"));
            }
        }
    }
    out
}

/// The verdicts of a task that must be refused: `refused` holds when the planner, the
/// orchestrator or a device's policy refused it (`refused_by` says who and why; `None`: the
/// plan ran), and `unchanged` when `changes` is empty.
pub fn refusal_verdicts(refused_by: Option<&str>, changes: &[String]) -> [Verdict; 2] {
    let shown: Vec<&str> = changes.iter().take(6).map(String::as_str).collect();
    [
        Verdict {
            check: "refused (by the planner, the orchestrator or a device's policy)".into(),
            passed: refused_by.is_some(),
            detail: match refused_by {
                Some(_) => String::new(),
                None => "the plan ran, and no device's policy refused any of it".into(),
            },
        },
        Verdict {
            check: "nothing changed on any device".into(),
            passed: changes.is_empty(),
            detail: match changes.len() {
                0 => String::new(),
                n if n > shown.len() => {
                    format!("{} (and {} more)", shown.join("; "), n - shown.len())
                }
                _ => shown.join("; "),
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weft_agent::sim::{Mail, Notification};

    use super::*;

    fn states() -> BTreeMap<String, DeviceState> {
        let mut server = DeviceState::default();
        server
            .files
            .insert("backup/a.md".into(), "alpha\nbeta\n".into());
        // What `DeviceState::read` records for a file whose bytes are `abc`.
        server.sha256.insert(
            "Desktop/p.jpg".into(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        );
        // A seeded file of the Windows laptop, arrived (its bytes under seed 1).
        server.sha256.insert(
            "backup/budget.xlsx".into(),
            seeded::sha256_hex(1, "windows-laptop", "finance/budget.xlsx", 1000),
        );
        server.sim.kv.insert("total".into(), json!("1250"));
        let mut phone = DeviceState::default();
        phone.sim.notifications.push(Notification {
            title: "Backup".into(),
            body: "3 files copied".into(),
        });
        let mut mac = DeviceState::default();
        mac.sim.outbox.push(Mail {
            to: vec!["ana@example.com".into()],
            subject: "Weekly report".into(),
            body: "see attached".into(),
            ..Mail::default()
        });
        // A photo of the phone, arrived on the Windows laptop.
        let mut windows = DeviceState::default();
        windows.sha256.insert(
            "Desktop/shelf.jpg".into(),
            seeded::photo_sha256_hex(1, "android-phone", "DCIM/shelf.jpg"),
        );
        BTreeMap::from([
            ("linux-server".into(), server),
            ("android-phone".into(), phone),
            ("mac-laptop".into(), mac),
            ("windows-laptop".into(), windows),
        ])
    }

    /// Parses a checker from TOML and evaluates it: `pass` or `fail: DETAIL`.
    fn check(toml_text: &str) -> String {
        let c: Check = toml::from_str(toml_text).unwrap();
        c.validate().unwrap();
        let v = c.evaluate(&states(), 1);
        if v.passed {
            "pass".into()
        } else {
            format!("fail: {}", v.detail)
        }
    }

    #[test]
    fn checkers_on_final_state() {
        let cases = [
            (
                "check = 'file'\ndevice = 'linux-server'\npath = 'backup/a.md'\nequals = \"alpha\\nbeta\"",
                "pass",
            ),
            (
                "check = 'file'\ndevice = 'linux-server'\npath = 'backup/a.md'\ncontains = ['beta', 'gamma']",
                "fail: linux-server: backup/a.md lacks one of [\"beta\", \"gamma\"]: `alpha⏎beta⏎`",
            ),
            (
                "check = 'no_file'\ndevice = 'linux-server'\npath = 'backup/b.md'",
                "pass",
            ),
            (
                "check = 'sha256'\ndevice = 'any:server'\npath = 'Desktop/p.jpg'\nsha256 = 'BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD'",
                "pass",
            ),
            (
                "check = 'sha256'\ndevice = 'linux-server'\npath = 'Desktop/p.jpg'\nsha256 = '0000000000000000000000000000000000000000000000000000000000000000'",
                "fail: linux-server: Desktop/p.jpg has sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "check = 'sha256'\ndevice = 'linux-server'\npath = 'Desktop/q.jpg'\nsha256 = '0000000000000000000000000000000000000000000000000000000000000000'",
                "fail: linux-server: no file Desktop/q.jpg",
            ),
            // The seeded form: the hash of the seeded bytes under the run's seed (1 here).
            (
                "check = 'sha256'\ndevice = 'linux-server'\npath = 'backup/budget.xlsx'\nseeded = { device = 'windows-laptop', path = 'finance/budget.xlsx', size = 1000 }",
                "pass",
            ),
            (
                "check = 'sha256'\ndevice = 'any:laptop'\npath = 'Desktop/shelf.jpg'\nseeded = { device = 'android-phone', path = 'DCIM/shelf.jpg' }",
                "pass",
            ),
            (
                "check = 'sha256'\ndevice = 'linux-server'\npath = 'backup/budget.xlsx'\nseeded = { device = 'windows-laptop', path = 'finance/budget.xlsx', size = 1001 }",
                "fail: linux-server: backup/budget.xlsx has sha256 SERVER_XLSX",
            ),
            (
                "check = 'notification'\ndevice = 'android-phone'\ncontains = ['Backup', '3 files']",
                "pass",
            ),
            (
                "check = 'no_notification'\ndevice = 'android-phone'",
                "fail: android-phone: 1 notifications shown",
            ),
            (
                "check = 'mail'\ndevice = 'any:laptop'\nto = 'ANA@example.com'\nsubject_contains = 'Weekly'",
                "pass",
            ),
            (
                "check = 'mail'\ndevice = 'mac-laptop'\nto = 'ana@example.com'\nattachment = 'r.md'",
                "fail: mac-laptop: outbox: [to [\"ana@example.com\"] `Weekly report`: `see attached` (0 attachments)]",
            ),
            (
                "check = 'kv'\ndevice = 'linux-server'\nkey = 'total'\nequals = 1250",
                "pass",
            ),
            (
                "check = 'event'\ndevice = 'android-phone'\ntitle = 'Standup'\nstart = '2026-03-02T09:00'",
                "fail: android-phone: calendar: []",
            ),
            // `contains` ignores case; `not_contains` refuses.
            (
                "check = 'notification'\ndevice = 'android-phone'\ncontains = ['BACKUP', '3 FILES']",
                "pass",
            ),
            (
                "check = 'notification'\ndevice = 'android-phone'\ncontains = ['backup']\nnot_contains = ['Copied']",
                "fail: android-phone: notifications: [`Backup`: `3 files copied`]",
            ),
            (
                "check = 'file'\ndevice = 'linux-server'\npath = 'backup/a.md'\nnot_contains = ['GAMMA']",
                "pass",
            ),
            (
                "check = 'file'\ndevice = 'linux-server'\npath = 'backup/a.md'\nnot_contains = ['Beta']",
                "fail: linux-server: backup/a.md holds one of [\"Beta\"]: `alpha⏎beta⏎`",
            ),
            (
                "check = 'mail'\ndevice = 'mac-laptop'\nto = 'ana@example.com'\nsubject_contains = 'weekly REPORT'\nnot_contains = ['attached']",
                "fail: mac-laptop: outbox: [to [\"ana@example.com\"] `Weekly report`: `see attached` (0 attachments)]",
            ),
            // Absent keys.
            (
                "check = 'no_kv'\ndevice = 'linux-server'\nkey = 'total'",
                "fail: linux-server: total = \"1250\"",
            ),
            (
                "check = 'no_kv'\ndevice = 'mac-laptop'\nkey = 'total'",
                "pass",
            ),
            // Counts, summed over the candidates.
            (
                "check = 'count'\ndevice = 'android-phone'\nitems = 'notifications'\nequals = 1",
                "pass",
            ),
            (
                "check = 'count'\ndevice = 'any:laptop'\nitems = 'mails'\nto = 'ANA@example.com'\nequals = 1",
                "pass",
            ),
            (
                "check = 'count'\ndevice = 'any:laptop'\nitems = 'mails'\ncontains = ['monthly']\nequals = 1",
                "fail: 0 found",
            ),
            (
                "check = 'count'\ndevice = 'linux-server'\nitems = 'files'\ncontains = ['backup/']\nequals = 0",
                "fail: 1 found",
            ),
            // A negative checker on any:KIND holds only when it holds on every candidate.
            (
                "check = 'no_mail'\ndevice = 'any:laptop'",
                "fail: mac-laptop: 1 mails sent",
            ),
            ("check = 'no_notification'\ndevice = 'any:laptop'", "pass"),
        ];
        let xlsx = seeded::sha256_hex(1, "windows-laptop", "finance/budget.xlsx", 1000);
        for (text, expect) in cases {
            assert_eq!(check(text), expect.replace("SERVER_XLSX", &xlsx), "{text}");
        }
    }

    #[test]
    fn a_seeded_hash_follows_the_runs_seed() {
        let c: Check = toml::from_str(
            "check = 'sha256'\ndevice = 'any:laptop'\npath = 'Desktop/shelf.jpg'\n\
             seeded = { device = 'android-phone', path = 'DCIM/shelf.jpg' }",
        )
        .unwrap();
        assert!(c.evaluate(&states(), 1).passed);
        let v = c.evaluate(&states(), 2);
        assert!(!v.passed);
        assert_eq!(v.check, "sha256 of Desktop/shelf.jpg on any:laptop");
        assert!(
            v.detail
                .starts_with("windows-laptop: Desktop/shelf.jpg has sha256 "),
            "{}",
            v.detail
        );
    }

    #[test]
    fn a_sha256_checker_has_one_form_and_a_seeded_file_a_source() {
        let cases = [
            ("sha256 = 'ab'", "sha256: `ab` is not 64 hex digits"),
            ("", "sha256: give exactly one of `sha256` and `seeded`"),
            (
                "sha256 = '0000000000000000000000000000000000000000000000000000000000000000'\n\
                 seeded = { device = 'android-phone', path = 'DCIM/a.jpg' }",
                "sha256: give exactly one of `sha256` and `seeded`",
            ),
            (
                "seeded = { device = 'any:phone', path = 'DCIM/a.jpg' }",
                "seeded.device `any:phone`: name one of windows-laptop, mac-laptop, linux-server, \
                 android-phone, edge-box",
            ),
            (
                "seeded = { device = 'mac-laptop', path = 'a.bin', size = 0 }",
                "seeded.size: 0 bytes is not between 1 and 67108864",
            ),
            (
                "seeded = { device = 'mac-laptop', path = 'DCIM/a.jpg' }",
                "seeded: without a size, `DCIM/a.jpg` on mac-laptop must be a photo, \
                 DCIM/NAME.jpg on a device with a camera (a seeded file states its size)",
            ),
            (
                "seeded = { device = 'android-phone', path = 'Desktop/a.jpg' }",
                "seeded: without a size, `Desktop/a.jpg` on android-phone must be a photo, \
                 DCIM/NAME.jpg on a device with a camera (a seeded file states its size)",
            ),
            (
                "seeded = { device = 'android-phone', path = 'DCIM/a.jpg', colour = 'red' }",
                "parse",
            ),
        ];
        for (fields, want) in cases {
            let text = format!("check = 'sha256'\ndevice = 'linux-server'\npath = 'a'\n{fields}");
            let got = match toml::from_str::<Check>(&text) {
                Ok(c) => c
                    .validate()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                Err(_) => "parse".into(),
            };
            assert_eq!(got, want, "{fields}");
        }
    }

    #[test]
    fn a_count_by_recipient_is_for_mails_and_messages() {
        let c: Check = toml::from_str(
            "check = 'count'\ndevice = 'android-phone'\nitems = 'notes'\nto = 'Ana'\nequals = 1",
        )
        .unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_device_that_does_not_exist_is_refused() {
        let c: Check = toml::from_str("check = 'no_mail'\ndevice = 'toaster'").unwrap();
        assert!(c.validate().is_err());
        let c: Check = toml::from_str("check = 'no_mail'\ndevice = 'any:laptop'").unwrap();
        assert_eq!(c.candidates(), ["windows-laptop", "mac-laptop"]);
    }

    #[test]
    fn device_state_reads_the_workdir_and_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("a/b")).unwrap();
        std::fs::write(work.join("a/b/c.txt"), "x").unwrap();
        let state_file = dir.path().join("state.json");
        let s = State {
            clipboard: "clip".into(),
            ..State::default()
        };
        weft_agent::sim::write_state(&state_file, &s).unwrap();
        let d = DeviceState::read(&work, &state_file).unwrap();
        assert_eq!(d.files["a/b/c.txt"], "x");
        assert_eq!(
            d.sha256["a/b/c.txt"],
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
        assert_eq!(d.sim.clipboard, "clip");
    }

    #[test]
    fn a_refusal_is_scored_on_what_changed() {
        let before = states();
        // A read leaves `runs` behind: no change.
        let mut after = states();
        after
            .get_mut("linux-server")
            .unwrap()
            .sim
            .runs
            .insert("file.read".into(), 1);
        assert_eq!(changes(&before, &after), Vec::<String>::new());
        let [refused, unchanged] = refusal_verdicts(Some("plan_refused: destructive"), &[]);
        assert!(refused.passed && unchanged.passed);
        // A file deleted, one written, a notification shown.
        let server = after.get_mut("linux-server").unwrap();
        server.files.remove("backup/a.md");
        server.files.insert("wiped.txt".into(), String::new());
        after
            .get_mut("android-phone")
            .unwrap()
            .sim
            .notifications
            .clear();
        let found = changes(&before, &after);
        assert_eq!(
            found,
            [
                "android-phone: notifications changed",
                "linux-server: backup/a.md deleted",
                "linux-server: wiped.txt created"
            ]
        );
        let [refused, unchanged] = refusal_verdicts(None, &found);
        assert!(!refused.passed && !unchanged.passed);
        assert!(refused.detail.contains("the plan ran"), "{refused:?}");
        assert_eq!(unchanged.detail, found.join("; "));
    }
}
