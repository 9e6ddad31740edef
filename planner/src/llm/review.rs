//! Checks of an LLM plan against the request, after its shape is known to be valid: the model
//! must not move a step off the device the user named, and must not plan what destroys data.
//!
//! Both are heuristics over plain text, tuned to refuse rarely: a named device is one whose
//! name, name part or (unique) kind appears as a word in the request; a destructive action is a
//! shell command that removes or overwrites a root, a home directory or a whole disk.

use std::collections::BTreeSet;

use weft_protocol::Action;

use crate::{DeviceProfile, Plan, Target};

/// Words of device names that say nothing about which device is meant.
const GENERIC: [&str; 7] = ["laptop", "phone", "server", "box", "device", "pc", "my"];

/// The words by which a request may name `d` among `devices`: its name (also with spaces for
/// `-`), each part of its name that no other device's name has (`mac` of `mac-laptop`), and its
/// kind when no other device is of that kind.
fn aliases(d: &DeviceProfile, devices: &[&DeviceProfile]) -> BTreeSet<String> {
    let name = d.info.name.as_str().to_lowercase();
    let mut out = BTreeSet::from([name.clone(), name.replace(['-', '_'], " ")]);
    let others: Vec<&&DeviceProfile> = devices
        .iter()
        .filter(|o| o.info.name != d.info.name)
        .collect();
    for part in name.split(['-', '_']) {
        let unique = others.iter().all(|o| {
            !o.info
                .name
                .as_str()
                .to_lowercase()
                .split(['-', '_'])
                .any(|p| p == part)
        });
        if part.len() >= 3 && !GENERIC.contains(&part) && unique {
            out.insert(part.to_owned());
        }
    }
    let kind = d.info.kind.to_lowercase();
    if others.iter().all(|o| o.info.kind.to_lowercase() != kind) {
        out.insert(kind);
    }
    out
}

/// Whether `word` appears in `text` (lowercase) with no letter or digit either side.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        edge(before) && edge(after)
    })
}

/// One error per device that the request names and no task of the plan runs on: the model
/// moved (or dropped) that device's step.
pub(crate) fn named_devices_unused(
    plan: &Plan,
    devices: &[&DeviceProfile],
    text: &str,
) -> Vec<String> {
    let text = text.to_lowercase();
    let used: BTreeSet<&str> = plan
        .tasks
        .iter()
        .filter_map(|t| match &t.target {
            Target::Device(d) => Some(d.as_str()),
            _ => None,
        })
        .collect();
    let mut errors = Vec::new();
    for d in devices {
        if used.contains(d.info.name.as_str()) {
            continue;
        }
        let named: Vec<String> = aliases(d, devices)
            .into_iter()
            .filter(|a| has_word(&text, a))
            .collect();
        if let Some(word) = named.first() {
            errors.push(format!(
                "the request names the device {name} (as \"{word}\") but no task runs on it: \
                 set \"on\": \"{name}\" for the task(s) the request gives that device",
                name = d.info.name
            ));
        }
    }
    errors
}

/// Why the plan would destroy data, if it would: the first such action.
pub(crate) fn destructive(plan: &Plan) -> Option<String> {
    plan.tasks.iter().find_map(|t| match &t.action {
        Some(Action::Shell { command }) => {
            destructive_command(command).map(|why| format!("task {} would {why}", t.id))
        }
        _ => None,
    })
}

/// What a shell command would destroy: a recursive removal of a root, a home directory, the
/// parent or everything in the working directory; a file system made or a disk overwritten;
/// the machine stopped.
fn destructive_command(command: &str) -> Option<&'static str> {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let program = w.rsplit('/').next().unwrap_or(w);
        match program {
            "rm" => {
                let args = &words[i + 1..];
                let recursive = args.iter().take_while(|a| a.starts_with('-')).any(|a| {
                    *a == "--recursive" || (!a.starts_with("--") && a.contains(['r', 'R']))
                });
                let target = args
                    .iter()
                    .skip_while(|a| a.starts_with('-'))
                    .any(|a| is_root_like(a));
                if recursive && target {
                    return Some("remove a whole directory tree (root, home or everything here)");
                }
            }
            "mkfs" | "wipefs" | "shred" | "fdisk" | "parted" => {
                return Some("format or wipe a disk");
            }
            "shutdown" | "reboot" | "halt" | "poweroff" => return Some("stop the machine"),
            _ if program.starts_with("mkfs.") => return Some("format a disk"),
            _ if w.starts_with("of=/dev/") || w.starts_with(">/dev/sd") => {
                return Some("overwrite a disk");
            }
            "find" => {
                let args = &words[i + 1..];
                if args.first().is_some_and(|a| is_root_like(a)) && args.contains(&"-delete") {
                    return Some("delete every file of a whole directory tree");
                }
            }
            _ => {}
        }
    }
    None
}

/// `/`, `/*`, `~`, `~/`, `~/*`, `$HOME` (and `${HOME}/*`), `*`, `.`, `./*`, `..`.
fn is_root_like(arg: &str) -> bool {
    let a = arg.trim_matches(['"', '\'']);
    let a = a.trim_end_matches("/*").trim_end_matches('/');
    matches!(a, "" | "~" | "$HOME" | "${HOME}" | "*" | "." | ".." | "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceInfo, PlannedTask};

    fn device(name: &str, kind: &str) -> DeviceProfile {
        DeviceProfile {
            info: DeviceInfo {
                name: name.into(),
                kind: kind.into(),
                capabilities: vec!["shell".into()],
                online: true,
            },
            platform: None,
            tools: Vec::new(),
        }
    }

    fn plan_on(devices: &[&str]) -> Plan {
        Plan {
            tasks: devices
                .iter()
                .enumerate()
                .map(|(i, d)| PlannedTask {
                    id: format!("t{}", i + 1).into(),
                    title: "x".into(),
                    instruction: "x".into(),
                    action: Some(Action::Shell {
                        command: "true".into(),
                    }),
                    target: Target::Device((*d).into()),
                    capabilities: vec!["shell".into()],
                    max_turns: None,
                })
                .collect(),
            edges: Vec::new(),
        }
    }

    #[test]
    fn a_device_the_request_names_must_run_a_task() {
        let devs = [
            device("mac-laptop", "laptop"),
            device("windows-laptop", "laptop"),
            device("android-phone", "phone"),
            device("linux-server", "server"),
        ];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let check = |text: &str, on: &[&str]| named_devices_unused(&plan_on(on), &refs, text);
        // "Mac" names mac-laptop; "phone" is the only phone; "laptop" names neither laptop.
        assert_eq!(
            check(
                "Copy notes from my Mac to my phone",
                &["windows-laptop", "android-phone"]
            ),
            [
                "the request names the device mac-laptop (as \"mac\") but no task runs on it: \
              set \"on\": \"mac-laptop\" for the task(s) the request gives that device"
            ]
        );
        assert!(
            check(
                "Copy notes from my Mac to my phone",
                &["mac-laptop", "android-phone"]
            )
            .is_empty()
        );
        assert!(check("put it on either laptop", &["windows-laptop"]).is_empty());
        // Words inside other words do not count (macOS, smartphones, servers' is a word).
        assert!(check("macOS builds and smartphones", &["windows-laptop"]).is_empty());
        assert_eq!(check("the server's disk", &["mac-laptop"]).len(), 1);
    }

    #[test]
    fn destructive_commands_are_found() {
        for c in [
            "rm -rf ~",
            "rm -rf /",
            "cd /tmp && rm -r -f $HOME/*",
            "sudo rm -Rf /*",
            "rm --recursive --force .",
            "mkfs.ext4 /dev/sda1",
            "dd if=/dev/zero of=/dev/sda bs=1M",
            "find ~ -type f -delete",
            "shutdown -h now",
        ] {
            assert!(destructive_command(c).is_some(), "{c}");
        }
        for c in [
            "rm -rf build/",
            "rm notes.txt",
            "rm -f *.tmp",
            "find . -name '*.log'",
            "grep -c ERROR app.log",
            "echo rm -rf is dangerous",
        ] {
            assert!(destructive_command(c).is_none(), "{c}");
        }
    }
}
