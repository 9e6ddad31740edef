//! Checkers: predicates on the final state of the devices (their workdir files and their
//! simulated apps), never on what the planner or the orchestrator says happened.
//!
//! `device` names a device, or `any:KIND` for "some device of that kind" (work a planner may
//! place on either laptop). Text comparisons: `equals` ignores trailing whitespace (a shell
//! command's final newline), `contains` lists texts that must all appear.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use weft_agent::sim::State;

use super::devices;

/// What a device holds at the end of a task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceState {
    /// Every file under the workdir: relative path (with `/`) → content (lossy UTF-8).
    pub files: BTreeMap<String, String>,
    pub sim: State,
}

impl DeviceState {
    /// Reads a device's workdir and its sim state file.
    pub fn read(workdir: &Path, state_file: &Path) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
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
                    files.insert(rel, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        let sim = match weft_agent::sim::read_state(state_file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => bail!("{}: {e}", state_file.display()),
        };
        Ok(Self { files, sim })
    }
}

/// One checker. In TOML: `[[checks]]` with `check = "file"` and the fields of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A file exists (with this content / containing these texts).
    File {
        device: String,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
    },
    /// No file at `path`.
    NoFile { device: String, path: String },
    /// A mail was sent to `to` (with a subject containing…, a body containing…, an attachment).
    Mail {
        device: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_contains: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<String>,
    },
    /// No mail was sent from the device.
    NoMail { device: String },
    /// A text message was sent to `to` containing every text.
    Message {
        device: String,
        to: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
    },
    /// A notification (title or body) contains every text.
    Notification {
        device: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
    },
    /// No notification was shown on the device.
    NoNotification { device: String },
    /// A note with this title whose body contains every text.
    Note {
        device: String,
        title: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
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
    /// A reminder due at `due` whose text contains every text.
    Reminder {
        device: String,
        due: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
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

fn all_in(text: &str, wanted: &[String]) -> bool {
    wanted.iter().all(|w| text.contains(w.as_str()))
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
            | Check::Kv { device, .. } => device,
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

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.candidates().is_empty() {
            bail!(
                "device `{}`: name one of {} or write any:KIND",
                self.device(),
                devices::names().join(", ")
            );
        }
        Ok(())
    }

    /// A one-line description: `file backup/a.md on linux-server`.
    pub fn describe(&self) -> String {
        let d = self.device();
        match self {
            Check::File { path, .. } => format!("file {path} on {d}"),
            Check::NoFile { path, .. } => format!("no file {path} on {d}"),
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
        }
    }

    /// Evaluates the checker on the devices' final states.
    pub fn evaluate(&self, states: &BTreeMap<String, DeviceState>) -> Verdict {
        let mut details = Vec::new();
        let mut passed = false;
        for name in self.candidates() {
            let Some(s) = states.get(name) else {
                details.push(format!("{name}: state not read"));
                continue;
            };
            match self.on(s) {
                Ok(()) => {
                    passed = true;
                    break;
                }
                Err(why) => details.push(format!("{name}: {why}")),
            }
        }
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

    /// `Ok` if the checker holds on one device's state, else what was found instead.
    fn on(&self, s: &DeviceState) -> Result<(), String> {
        let sim = &s.sim;
        match self {
            Check::File {
                path,
                equals,
                contains,
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
                if !all_in(content, contains) {
                    return Err(format!(
                        "{path} lacks one of {contains:?}: `{}`",
                        short(content)
                    ));
                }
                Ok(())
            }
            Check::NoFile { path, .. } => match s.files.contains_key(path) {
                true => Err(format!("{path} exists")),
                false => Ok(()),
            },
            Check::Mail {
                to,
                subject_contains,
                contains,
                attachment,
                ..
            } => {
                let ok = sim.outbox.iter().any(|m| {
                    m.to.iter().any(|t| t.eq_ignore_ascii_case(to))
                        && subject_contains
                            .as_ref()
                            .is_none_or(|c| m.subject.contains(c.as_str()))
                        && all_in(&m.body, contains)
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
            Check::Message { to, contains, .. } => {
                if sim
                    .messages
                    .iter()
                    .any(|m| m.to.eq_ignore_ascii_case(to) && all_in(&m.text, contains))
                {
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
            Check::Notification { contains, .. } => {
                if sim
                    .notifications
                    .iter()
                    .any(|n| all_in(&format!("{}\n{}", n.title, n.body), contains))
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
                title, contains, ..
            } => match sim.notes.iter().find(|n| &n.title == title) {
                Some(n) if all_in(&n.body, contains) => Ok(()),
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
                    e.title.contains(title.as_str())
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
                match sim
                    .calendar
                    .iter()
                    .find(|e| e.title.contains(title.as_str()))
                {
                    Some(e) => Err(format!("event `{}` at {}", e.title, e.start)),
                    None => Ok(()),
                }
            }
            Check::Reminder { due, contains, .. } => {
                if sim
                    .reminders
                    .iter()
                    .any(|r| &r.due == due && all_in(&r.text, contains))
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
                if eq && all_in(c, contains) {
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
        }
    }
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
        BTreeMap::from([
            ("linux-server".into(), server),
            ("android-phone".into(), phone),
            ("mac-laptop".into(), mac),
            ("windows-laptop".into(), DeviceState::default()),
        ])
    }

    /// Parses a checker from TOML and evaluates it: `pass` or `fail: DETAIL`.
    fn check(toml_text: &str) -> String {
        let c: Check = toml::from_str(toml_text).unwrap();
        c.validate().unwrap();
        let v = c.evaluate(&states());
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
        ];
        for (text, expect) in cases {
            assert_eq!(check(text), expect, "{text}");
        }
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
        assert_eq!(d.sim.clipboard, "clip");
    }
}
