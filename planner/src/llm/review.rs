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
pub(crate) fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        edge(before) && edge(after)
    })
}

/// Whether task `t` is bound to device `d`.
pub(crate) fn on_device(t: &crate::PlannedTask, d: &DeviceProfile) -> bool {
    matches!(&t.target, Target::Device(n) if n == &d.info.name)
}

/// Whether some task of `plan` is bound to device `d`.
pub(crate) fn runs_on(plan: &Plan, d: &DeviceProfile) -> bool {
    plan.tasks.iter().any(|t| on_device(t, d))
}

/// The word by which the request `text` (lowercase) names `d`, if it does.
pub(crate) fn named_as(
    d: &DeviceProfile,
    devices: &[&DeviceProfile],
    text: &str,
) -> Option<String> {
    aliases(d, devices).into_iter().find(|a| has_word(text, a))
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
        if let Some(word) = named_as(d, devices, &text) {
            let said = clause(&text, &word);
            errors.push(format!(
                "the request names the device {name} (as \"{word}\" in \"{said}\") but no task \
                 runs on it: add a task with \"on\": \"{name}\" for that step and keep the \
                 tasks that are right (to move data between devices, read it on one and write \
                 it on the other)",
                name = d.info.name
            ));
        }
    }
    errors
}

/// The clause of `text` (between `.`, `;`, `,` or `:`) in which `word` first appears as a
/// word, trimmed: the step the request places on that device.
fn clause<'a>(text: &'a str, word: &str) -> &'a str {
    let mut start = 0;
    for part in text.split_inclusive(['.', ';', ',', ':']) {
        let body = part.trim_end_matches(['.', ';', ',', ':']);
        if has_word(body, word) {
            return text[start..start + body.len()].trim();
        }
        start += part.len();
    }
    text.trim()
}

/// For each device the request names and no task runs on: when exactly one task's title names
/// that device (the model's own words: "publish to the phone's app data") while the task runs
/// elsewhere, and the device can run it, moves the task there. The model said where the step
/// belongs and then wrote another device; this mends that one slip, and nothing else. A task
/// is never moved off a device the request also names when it is that device's only task:
/// that would trade one unused named device for another, and the repair message would blame
/// the model for a device its own answer does use.
pub(crate) fn move_to_named_devices(plan: &mut Plan, devices: &[&DeviceProfile], text: &str) {
    let text = text.to_lowercase();
    for d in devices {
        if runs_on(plan, d) || named_as(d, devices, &text).is_none() {
            continue;
        }
        let words = aliases(d, devices);
        let titled: Vec<usize> = plan
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                let title = t.title.to_lowercase();
                words.iter().any(|w| has_word(&title, w)) && can_run(d, t)
            })
            .filter(|(i, t)| !named_and_alone(plan, *i, &t.target, devices, &text))
            .map(|(i, _)| i)
            .collect();
        if let [i] = titled[..] {
            tracing::debug!(
                task = %plan.tasks[i].id, to = %d.info.name,
                "moved a task to the device its title names"
            );
            plan.tasks[i].target = Target::Device(d.info.name.clone());
        }
    }
}

/// For each device the request names and no task runs on: in each step of the request (see
/// [`steps`]) that names that device and no other, when exactly one task's arguments quote a
/// path, URL or address written in that step ("fetch https://…/a.txt on the server", "my steps
/// from the phone (health/steps.txt)"), and the device can run it, moves that task there. The
/// request says where the step that uses that literal belongs; a literal two tasks quote leaves
/// the choice to the model. Like [`move_to_named_devices`], never moves a device's only task off
/// a device the request also names.
pub(crate) fn move_by_quoted_literals(plan: &mut Plan, devices: &[&DeviceProfile], text: &str) {
    let text = text.to_lowercase();
    let steps = steps(&text);
    for d in devices {
        if named_as(d, devices, &text).is_none() {
            continue;
        }
        for step in &steps {
            if runs_on(plan, d) {
                break;
            }
            let names_other = devices
                .iter()
                .any(|o| o.info.name != d.info.name && named_as(o, devices, step).is_some());
            if named_as(d, devices, step).is_none() || names_other {
                continue;
            }
            let quoting: Vec<usize> = plan
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| quotes(t, step) && can_run(d, t))
                .filter(|(i, t)| !named_and_alone(plan, *i, &t.target, devices, &text))
                .map(|(i, _)| i)
                .collect();
            if let [i] = quoting[..] {
                tracing::debug!(
                    task = %plan.tasks[i].id, to = %d.info.name,
                    "moved a task to the device named where the request quotes its argument"
                );
                plan.tasks[i].target = Target::Device(d.info.name.clone());
            }
        }
    }
}

/// What a request says to mean "one device of this kind, any": `either laptop`.
const EITHER: [&str; 3] = ["either", "any", "one of my"];

/// When the request puts a result "on either laptop" (or "any laptop", "one of my laptops")
/// and no task runs on a device of that kind: the plan's last writes — tasks that write or copy
/// a file and that no task waits for — move to the first device of that kind (by name) that
/// can run them. A small model puts such a step on the server however the request says it, and
/// the result belongs on a laptop; which laptop the request leaves open. Never moves a
/// device's only task off a device the request also names.
pub(crate) fn move_to_either_kind(plan: &mut Plan, devices: &[&DeviceProfile], text: &str) {
    let text = text.to_lowercase();
    let mut kinds: Vec<String> = devices.iter().map(|d| d.info.kind.to_lowercase()).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let asked = EITHER.iter().any(|e| {
            has_word(&text, &format!("{e} {kind}")) || has_word(&text, &format!("{e} {kind}s"))
        });
        let of_kind: Vec<&&DeviceProfile> = devices
            .iter()
            .filter(|d| d.info.kind.to_lowercase() == kind)
            .collect();
        if !asked || of_kind.iter().any(|d| runs_on(plan, d)) {
            continue;
        }
        let last_writes: Vec<usize> = (0..plan.tasks.len())
            .filter(|&i| {
                let t = &plan.tasks[i];
                writes_file(t)
                    && !plan.edges.iter().any(|e| e.from == t.id)
                    && !named_and_alone(plan, i, &t.target, devices, &text)
            })
            .collect();
        for i in last_writes {
            if let Some(d) = of_kind.iter().find(|d| can_run(d, &plan.tasks[i])) {
                tracing::debug!(
                    task = %plan.tasks[i].id, to = %d.info.name,
                    "moved a last write to a device of the kind the request says \"either\" of"
                );
                plan.tasks[i].target = Target::Device(d.info.name.clone());
            }
        }
    }
}

/// The simulated ops that deliver a result as a file.
const WRITES: [&str; 3] = ["file.write", "file.copy", "log.append"];

/// Whether a task writes a file (a simulated write, copy or append, or `write_file`).
fn writes_file(t: &crate::PlannedTask) -> bool {
    match &t.action {
        Some(Action::Sim { op, .. }) => WRITES.contains(&op.as_str()),
        Some(Action::WriteFile { .. }) => true,
        _ => false,
    }
}

/// The path a task that writes a file writes, if literal.
fn written_path(t: &crate::PlannedTask) -> Option<&str> {
    if !writes_file(t) {
        return None;
    }
    let p = match &t.action {
        Some(Action::Sim { args, .. }) => args
            .get("path")
            .or_else(|| args.get("to"))
            .and_then(serde_json::Value::as_str)?,
        Some(Action::WriteFile { path, .. }) => path,
        _ => return None,
    };
    (p.contains('/') && !p.contains("{{")).then_some(p)
}

/// A write to a path that the request writes in a step naming one device and no other ("copy
/// the build log to my Mac as builds/billing.log", "to reports/x.txt on the Windows laptop")
/// moves to that device when it runs elsewhere and the device can run it: the file belongs
/// where the request says. Never moves a device's only task off a device the request also
/// names.
pub(crate) fn move_writes_where_named(plan: &mut Plan, devices: &[&DeviceProfile], text: &str) {
    let text = text.to_lowercase();
    let steps = steps(&text);
    for i in 0..plan.tasks.len() {
        let Some(path) = written_path(&plan.tasks[i]).map(str::to_lowercase) else {
            continue;
        };
        let mut wanted: Vec<&DeviceProfile> = Vec::new();
        for step in steps.iter().filter(|s| has_literal(s, &path)) {
            let named: Vec<&DeviceProfile> = devices
                .iter()
                .copied()
                .filter(|d| named_as(d, devices, step).is_some())
                .collect();
            if let [d] = named[..] {
                wanted.push(d);
            }
        }
        wanted.dedup_by(|a, b| a.info.name == b.info.name);
        let [d] = wanted[..] else {
            continue;
        };
        let t = &plan.tasks[i];
        if on_device(t, d) || !can_run(d, t) || named_and_alone(plan, i, &t.target, devices, &text)
        {
            continue;
        }
        tracing::debug!(
            task = %t.id, to = %d.info.name,
            "moved a write to the device the request names where it writes the path"
        );
        plan.tasks[i].target = Target::Device(d.info.name.clone());
    }
}

/// The steps of a request (lowercase): its pieces between `,` `;` `:` `.` followed by a space
/// (or at the end; so URLs, file names and numbers stay whole), and between the words `and`
/// and `then`.
fn steps(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ends = matches!(b, b',' | b';' | b':' | b'.')
            && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace());
        if ends {
            out.push(&text[start..i]);
            start = i + 1;
        }
    }
    out.push(&text[start..]);
    out.iter()
        .flat_map(|piece| piece.split(" and "))
        .flat_map(|piece| piece.split(" then "))
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .collect()
}

/// Whether one of `t`'s arguments holds a path, URL or address (a word of 4 or more characters
/// with `/`, `@` or an inner `.`) that `step` (lowercase) contains as a whole word.
fn quotes(t: &crate::PlannedTask, step: &str) -> bool {
    let mut strings = Vec::new();
    match &t.action {
        Some(Action::Shell { command }) => strings.push(command.as_str()),
        Some(Action::HttpGet { url }) => strings.push(url),
        Some(Action::ReadFile { path }) => strings.push(path),
        Some(Action::WriteFile { path, content }) => strings.extend([path.as_str(), content]),
        Some(Action::CopyFile { from, to }) => strings.extend([from.as_str(), to]),
        Some(Action::Sim { args, .. } | Action::Phone { args, .. } | Action::Adb { args, .. }) => {
            collect_strings(args, &mut strings);
        }
        Some(Action::Steps { .. }) | None => {}
    }
    strings.iter().any(|s| {
        s.split(|c: char| c.is_whitespace() || "\"'(),;<>[]".contains(c))
            .map(|w| w.trim_end_matches(['.', ':', '!', '?']))
            .filter(|w| w.chars().count() >= 4 && !w.contains("{{"))
            .filter(|w| w.contains(['/', '@']) || w.trim_matches('.').contains('.'))
            .any(|w| has_literal(step, &w.to_lowercase()))
    })
}

fn collect_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// Whether `text` holds `literal` with no letter, digit, `/`, `_`, `-` or inner `.` either
/// side (a sentence's full stop may follow it).
fn has_literal(text: &str, literal: &str) -> bool {
    let joins = |c: char| c.is_alphanumeric() || "/_-.".contains(c);
    text.match_indices(literal).any(|(i, _)| {
        let mut after = text[i + literal.len()..].chars();
        let next = after.next();
        let ends = match next {
            None => true,
            Some('.') => after.next().is_none_or(char::is_whitespace),
            Some(c) => !joins(c),
        };
        ends && text[..i].chars().next_back().is_none_or(|c| !joins(c))
    })
}

/// Whether task `i` runs on a device the request names and no other task runs there.
fn named_and_alone(
    plan: &Plan,
    i: usize,
    target: &Target,
    devices: &[&DeviceProfile],
    text: &str,
) -> bool {
    let Target::Device(on) = target else {
        return false;
    };
    let named = devices
        .iter()
        .any(|d| &d.info.name == on && named_as(d, devices, text).is_some());
    let alone = plan
        .tasks
        .iter()
        .enumerate()
        .all(|(j, t)| j == i || !matches!(&t.target, Target::Device(n) if n == on));
    named && alone
}

/// Whether `d` has every capability `t` needs and, for a tool, offers that tool.
pub(crate) fn can_run(d: &DeviceProfile, t: &crate::PlannedTask) -> bool {
    let caps = t
        .capabilities
        .iter()
        .all(|c| d.info.capabilities.contains(c));
    let tool = match t.action.as_ref().and_then(super::parse::tool_of) {
        Some((executor, tool)) => {
            d.tools.is_empty()
                || d.tools
                    .iter()
                    .any(|s| s.executor == executor && s.name == tool)
        }
        None => true,
    };
    caps && tool
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
                    outputs: vec![],
                    inputs: vec![],
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
                "the request names the device mac-laptop (as \"mac\" in \"copy notes from my \
                 mac to my phone\") but no task runs on it: add a task with \"on\": \
                 \"mac-laptop\" for that step and keep the tasks that are right (to move data \
                 between devices, read it on one and write it on the other)"
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
        // The step is quoted: the clause that names the device.
        let e = check(
            "Back up the files to the server, and let me know on my phone when it is done.",
            &["linux-server"],
        );
        assert!(
            e[0].contains(r#"(as "phone" in "and let me know on my phone when it is done")"#),
            "{e:?}"
        );
    }

    /// A simulated task on `device` (needing `shell`, which the test devices have).
    fn sim_task(id: &str, device: &str, op: &str, args: serde_json::Value) -> PlannedTask {
        PlannedTask {
            id: id.into(),
            title: "x".into(),
            instruction: "x".into(),
            action: Some(Action::Sim {
                op: op.into(),
                args,
            }),
            target: Target::Device(device.into()),
            capabilities: vec!["shell".into()],
            max_turns: None,
            outputs: vec![],
            inputs: vec![],
        }
    }

    /// The device each task of `p` is bound to.
    fn on(p: &Plan) -> Vec<String> {
        p.tasks
            .iter()
            .map(|t| match &t.target {
                Target::Device(d) => d.as_str().to_owned(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn a_last_write_for_either_laptop_moves_to_a_laptop() {
        let devs = [
            device("mac-laptop", "laptop"),
            device("windows-laptop", "laptop"),
            device("linux-server", "server"),
        ];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let sim = |id: &str, op: &str| sim_task(id, "linux-server", op, serde_json::json!({}));
        let plan = || Plan {
            tasks: vec![
                sim("t1", "http_get"),
                sim("t2", "data.sum_csv"),
                sim("t3", "file.write"),
            ],
            edges: vec![
                crate::PlannedEdge {
                    from: "t1".into(),
                    to: "t2".into(),
                    kind: weft_protocol::EdgeKind::Success,
                    condition: None,
                },
                crate::PlannedEdge {
                    from: "t2".into(),
                    to: "t3".into(),
                    kind: weft_protocol::EdgeKind::Success,
                    condition: None,
                },
            ],
        };
        let mut p = plan();
        move_to_either_kind(
            &mut p,
            &refs,
            "Fetch it on the server and publish the total on either laptop.",
        );
        // Only the last write moves: the fetch and the sum stay where the model put them.
        assert_eq!(on(&p), ["linux-server", "linux-server", "mac-laptop"]);
        // Left alone: no "either"; a task already on a laptop.
        let mut p = plan();
        move_to_either_kind(&mut p, &refs, "Publish the total on the server.");
        assert_eq!(on(&p), ["linux-server"; 3]);
        let mut p = plan();
        p.tasks[0].target = Target::Device("windows-laptop".into());
        move_to_either_kind(&mut p, &refs, "Publish it on either laptop.");
        assert_eq!(on(&p), ["windows-laptop", "linux-server", "linux-server"]);
    }

    #[test]
    fn a_write_moves_to_the_device_named_where_the_request_writes_its_path() {
        let devs = [
            device("mac-laptop", "laptop"),
            device("windows-laptop", "laptop"),
            device("linux-server", "server"),
        ];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let write = |id: &str, on: &str, path: &str| {
            sim_task(
                id,
                on,
                "file.write",
                serde_json::json!({"path": path, "content": "x"}),
            )
        };
        let text = "Build billing on the Linux server, copy the build log to my Mac as \
                    builds/billing.log; if it passes, notify me on the Windows laptop.";
        let mut p = Plan {
            tasks: vec![
                write("t1", "linux-server", "builds/billing.log"),
                write("t2", "windows-laptop", "status/ok.txt"),
                write("t3", "linux-server", "builds/other.log"),
            ],
            edges: vec![],
        };
        move_writes_where_named(&mut p, &refs, text);
        // Only the write of the path the request places moves; the others stay.
        assert_eq!(on(&p), ["mac-laptop", "windows-laptop", "linux-server"]);
        // A step naming two devices says nothing about where the file goes.
        let mut p = Plan {
            tasks: vec![write("t1", "linux-server", "notes/a.md")],
            edges: vec![],
        };
        move_writes_where_named(
            &mut p,
            &refs,
            "Copy notes/a.md from my Mac to the Windows laptop",
        );
        assert_eq!(on(&p), ["linux-server"]);
    }

    #[test]
    fn a_task_whose_title_names_an_unused_device_moves_there() {
        let devs = [
            device("mac-laptop", "laptop"),
            device("android-phone", "phone"),
            device("linux-server", "server"),
        ];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let text = "Sum the server's sales and put the total in my phone's app data";
        let mut plan = plan_on(&["linux-server", "mac-laptop"]);
        plan.tasks[1].title = "publish to the phone's app data".into();
        move_to_named_devices(&mut plan, &refs, text);
        assert_eq!(plan.tasks[1].target, Target::Device("android-phone".into()));
        assert!(named_devices_unused(&plan, &refs, text).is_empty());

        // Two titles name the phone: the model must choose, nothing moves.
        let mut plan = plan_on(&["linux-server", "mac-laptop", "mac-laptop"]);
        plan.tasks[1].title = "phone: part 1".into();
        plan.tasks[2].title = "phone: part 2".into();
        move_to_named_devices(&mut plan, &refs, text);
        assert_eq!(named_devices_unused(&plan, &refs, text).len(), 1);

        // A device that cannot run the task does not take it.
        let mut plan = plan_on(&["linux-server", "mac-laptop"]);
        plan.tasks[1].title = "publish to the phone".into();
        plan.tasks[1].capabilities.push("camera".into());
        move_to_named_devices(&mut plan, &refs, text);
        assert_eq!(plan.tasks[1].target, Target::Device("mac-laptop".into()));

        // The only task on a device the request also names stays there (seen with the 1.5B
        // model: "read phone fitness data" on the Windows laptop, which the request names for
        // the brief; moving it left the laptop unused, and the repair blamed the model for it).
        let text = "Write the brief on the Mac with my steps from the phone";
        let mut plan = plan_on(&["linux-server", "mac-laptop"]);
        plan.tasks[1].title = "read phone fitness data".into();
        move_to_named_devices(&mut plan, &refs, text);
        assert_eq!(plan.tasks[1].target, Target::Device("mac-laptop".into()));
        let errors = named_devices_unused(&plan, &refs, text);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("android-phone"), "{errors:?}");
        // With another task on the Mac, it may move.
        let mut plan = plan_on(&["mac-laptop", "mac-laptop"]);
        plan.tasks[1].title = "read phone fitness data".into();
        move_to_named_devices(&mut plan, &refs, text);
        assert_eq!(plan.tasks[1].target, Target::Device("android-phone".into()));
    }

    #[test]
    fn a_task_quoting_what_the_request_places_on_an_unused_device_moves_there() {
        let devs = [
            device("windows-laptop", "laptop"),
            device("edge-box", "edge"),
            device("android-phone", "phone"),
            device("linux-server", "server"),
        ];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let read = |path: &str| Action::Sim {
            op: "file.read".into(),
            args: serde_json::json!({ "path": path }),
        };
        let fetch = |url: &str| Action::HttpGet { url: url.into() };
        // As the 1.5B model wrote it: every step on the edge box.
        let text = "Fetch https://web.example/lists/berlin.txt on the server and \
                    https://web.example/lists/hamburg.txt on the edge box, merge them, and save \
                    the result as merged/stock.txt on the Windows laptop.";
        let mut plan = plan_on(&["edge-box", "edge-box", "edge-box"]);
        plan.tasks[0].action = Some(fetch("https://web.example/lists/berlin.txt"));
        plan.tasks[1].action = Some(fetch("https://web.example/lists/hamburg.txt"));
        plan.tasks[2].action = Some(Action::WriteFile {
            path: "merged/stock.txt".into(),
            content: "{{t1.output}}".into(),
        });
        move_by_quoted_literals(&mut plan, &refs, text);
        let on: Vec<String> = plan
            .tasks
            .iter()
            .map(|t| format!("{:?}", t.target))
            .collect();
        assert_eq!(
            on,
            [
                r#"Device(DeviceName("linux-server"))"#,
                r#"Device(DeviceName("edge-box"))"#,
                r#"Device(DeviceName("windows-laptop"))"#
            ]
        );
        assert!(named_devices_unused(&plan, &refs, text).is_empty());

        // A file named in parentheses after the device: the read of it moves.
        let text = "Put the report on the Windows laptop: my steps from the phone \
                    (health/steps-w16.txt).";
        let mut plan = plan_on(&["windows-laptop", "windows-laptop"]);
        plan.tasks[1].action = Some(read("health/steps-w16.txt"));
        move_by_quoted_literals(&mut plan, &refs, text);
        assert_eq!(plan.tasks[1].target, Target::Device("android-phone".into()));

        // Two tasks quote the literal: the model must choose, nothing moves.
        let mut plan = plan_on(&["windows-laptop", "windows-laptop", "windows-laptop"]);
        plan.tasks[1].action = Some(read("health/steps-w16.txt"));
        plan.tasks[2].action = Some(Action::WriteFile {
            path: "health/steps-w16.txt".into(),
            content: "x".into(),
        });
        move_by_quoted_literals(&mut plan, &refs, text);
        assert_eq!(named_devices_unused(&plan, &refs, text).len(), 1);

        // A step that names two devices says nothing about which one; a literal inside a longer
        // word is not quoted; a device's only task on a named device stays.
        for (text, path) in [
            (
                "Copy notes/a.txt from the server to my phone",
                "notes/a.txt",
            ),
            ("Read notes/a.txt.bak on my phone", "notes/a.txt"),
            ("Read notes/a.txt on my phone", "my/notes/a.txt"),
        ] {
            let mut plan = plan_on(&["linux-server", "linux-server"]);
            plan.tasks[1].action = Some(read(path));
            move_by_quoted_literals(&mut plan, &refs, text);
            assert_eq!(
                plan.tasks[1].target,
                Target::Device("linux-server".into()),
                "{text}"
            );
        }
        let text = "Read notes/a.txt on my phone and keep it on the server";
        let mut plan = plan_on(&["linux-server"]);
        plan.tasks[0].action = Some(read("notes/a.txt"));
        move_by_quoted_literals(&mut plan, &refs, text);
        assert_eq!(plan.tasks[0].target, Target::Device("linux-server".into()));
    }

    #[test]
    fn steps_split_at_punctuation_and_conjunctions_but_keep_urls_and_files_whole() {
        assert_eq!(
            steps("fetch http://a.b/c.txt on the server, sum it: then save 1,240 to x.txt. done"),
            [
                "fetch http://a.b/c.txt on the server",
                "sum it",
                "save 1,240 to x.txt",
                "done"
            ]
        );
        assert_eq!(steps("read a and b"), ["read a", "b"]);
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
