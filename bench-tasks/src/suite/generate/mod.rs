//! The program that writes the suite's task files (`weft-bench generate`).
//!
//! The tasks are written here, as parametrised families per category, rather than by hand:
//! a family states its request, rules-grammar request, device state, reference plan and
//! checkers once, and its instances differ in files, people, numbers, devices and graph shape.
//! The generated files are committed; a test checks they are exactly what this program writes,
//! so an edit here must be followed by `cargo run -p weft-bench --bin weft-bench -- generate`.
//!
//! A generated file starts with [`HEADER`]. Any other `*.toml` in the suite is hand-written
//! (the `refusals/` tasks, or a task written beside generated ones in any category): the
//! suite loads and validates it like the others, and the generator neither checks, removes
//! nor overwrites it.

mod everyday;
mod fanout;
mod ops;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};
use weft_protocol::rest::{EdgeView, GraphSpec, TaskSpec};
use weft_protocol::{Action, Condition, ConditionOp, ConditionSource, EdgeKind, FilesSpec};

use super::check::{Check, Items, SeededFile};
use super::task::{DeviceSetup, Expect, TaskFile, UNSUPPORTED};

/// The devices, by their names.
pub(crate) const W: &str = "windows-laptop";
pub(crate) const M: &str = "mac-laptop";
pub(crate) const S: &str = "linux-server";
pub(crate) const P: &str = "android-phone";
pub(crate) const E: &str = "edge-box";
/// Not a device: "whichever laptop" — a task placed by kind, a checker on `any:laptop`.
pub(crate) const L: &str = "laptop";

/// Why rules cannot express tasks that use the simulated apps.
pub(crate) const NO_APPS: &str = "the rules grammar has only run, fetch, write, read and copy: it \
     cannot reach the simulated apps (mail, messages, notifications, calendar, notes, clipboard, app \
     data, camera, build, metrics)";

/// Builds one task file.
pub(crate) struct B {
    t: TaskFile,
}

impl B {
    pub fn new(category: &str, id: &str, title: &str, request: &str) -> Self {
        Self {
            t: TaskFile {
                id: id.to_owned(),
                category: category.to_owned(),
                title: title.to_owned(),
                request: request.to_owned(),
                rules: String::new(),
                rules_note: String::new(),
                expect: Expect::Done,
                refuse: String::new(),
                devices: BTreeMap::new(),
                web: BTreeMap::new(),
                plan: GraphSpec {
                    tasks: Vec::new(),
                    edges: Vec::new(),
                },
                checks: Vec::new(),
            },
        }
    }

    /// The request in the rules grammar.
    pub fn rules(&mut self, text: &str) -> &mut Self {
        self.t.rules = text.to_owned();
        self
    }

    /// The rules grammar cannot express this task, because `why`.
    pub fn unsupported(&mut self, why: &str) -> &mut Self {
        self.t.rules = UNSUPPORTED.to_owned();
        self.t.rules_note = why.to_owned();
        self
    }

    pub fn dev(&mut self, device: &str) -> &mut DeviceSetup {
        self.t.devices.entry(device.to_owned()).or_default()
    }

    pub fn file(&mut self, device: &str, path: &str, content: &str) -> &mut Self {
        self.dev(device)
            .files
            .insert(path.to_owned(), content.to_owned());
        self
    }

    /// A binary file placed on `device` at reset: `size` bytes seeded by the run's seed.
    pub fn seeded_file(&mut self, device: &str, path: &str, size: u64) -> &mut Self {
        self.dev(device).seeded_files.insert(path.to_owned(), size);
        self
    }

    /// Task `id` sends these files (relative to its workdir) when it succeeds.
    pub fn sends(&mut self, id: &str, files: &[&str]) -> &mut Self {
        let task = self
            .t
            .plan
            .tasks
            .iter_mut()
            .find(|t| t.id.as_str() == id)
            .unwrap_or_else(|| panic!("no task {id}"));
        task.outputs = Some(FilesSpec { files: strs(files) });
        self
    }

    /// On `device`, after `from`, copies the file `name` that `from` sent to `to`: a `file.copy`
    /// from `{{FROM.files.NAME}}`, the copy the agent downloaded before the task runs. Returns
    /// its id.
    pub fn receive(
        &mut self,
        device: &str,
        instruction: &str,
        from: &str,
        name: &str,
        to: &str,
    ) -> String {
        let id = self.sim(
            device,
            instruction,
            "file.copy",
            json!({"from": format!("{{{{{from}.files.{name}}}}}"), "to": to}),
        );
        self.after(from, &id);
        id
    }

    pub fn page(&mut self, path: &str, body: &str) -> &mut Self {
        self.t.web.insert(path.to_owned(), body.to_owned());
        self
    }

    fn push(
        &mut self,
        device: Option<&str>,
        kind: Option<&str>,
        instruction: &str,
        action: Action,
    ) -> String {
        let id = format!("t{}", self.t.plan.tasks.len() + 1);
        self.t.plan.tasks.push(TaskSpec {
            id: id.as_str().into(),
            title: title_of(instruction),
            instruction: instruction.to_owned(),
            action: Some(action),
            device: device.map(Into::into),
            device_kind: kind.map(str::to_owned),
            capabilities: Vec::new(),
            retry: None,
            max_turns: None,
            inputs: None,
            outputs: None,
        });
        id
    }

    /// A `sim` task on a named device (or on any laptop, for [`L`]); returns its id.
    pub fn sim(&mut self, device: &str, instruction: &str, op: &str, args: Value) -> String {
        if device == L {
            return self.sim_on_kind(L, instruction, op, args);
        }
        self.push(
            Some(device),
            None,
            instruction,
            Action::Sim {
                op: op.to_owned(),
                args,
            },
        )
    }

    /// A `sim` task on any device of a kind.
    pub fn sim_on_kind(&mut self, kind: &str, instruction: &str, op: &str, args: Value) -> String {
        self.push(
            None,
            Some(kind),
            instruction,
            Action::Sim {
                op: op.to_owned(),
                args,
            },
        )
    }

    /// An HTTP GET on a named device.
    pub fn fetch(&mut self, device: &str, instruction: &str, url: &str) -> String {
        self.push(
            Some(device),
            None,
            instruction,
            Action::HttpGet {
                url: url.to_owned(),
            },
        )
    }

    fn edge(&mut self, from: &str, to: &str, kind: EdgeKind, condition: Option<Condition>) {
        self.t.plan.edges.push(EdgeView {
            from: from.into(),
            to: to.into(),
            kind,
            condition,
        });
    }

    /// `to` runs once `from` succeeded.
    pub fn after(&mut self, from: &str, to: &str) -> &mut Self {
        self.edge(from, to, EdgeKind::Success, None);
        self
    }

    pub fn after_all(&mut self, froms: &[String], to: &str) -> &mut Self {
        for f in froms {
            self.after(f, to);
        }
        self
    }

    /// `to` runs once `from` ended, however.
    pub fn after_any(&mut self, from: &str, to: &str) -> &mut Self {
        self.edge(from, to, EdgeKind::Completion, None);
        self
    }

    /// `to` runs when the value at `path` in `from`'s output data `op`s `value`.
    pub fn when(&mut self, from: &str, to: &str, path: &str, op: ConditionOp, value: Value) {
        self.edge(
            from,
            to,
            EdgeKind::Condition,
            Some(Condition {
                on: ConditionSource::Data,
                path: path.to_owned(),
                op,
                value: Some(value),
            }),
        );
    }

    pub fn check(&mut self, c: Check) -> &mut Self {
        self.t.checks.push(c);
        self
    }

    pub fn done(mut self) -> TaskFile {
        // Tasks for [`L`] name their device "the laptop" in the request: say which.
        if self
            .t
            .plan
            .tasks
            .iter()
            .any(|t| t.device_kind.as_deref() == Some(L))
        {
            self.t.request = self.t.request.replace(" the laptop", " either laptop");
        }
        self.t
    }
}

/// A task title from its instruction: the first clause, at most 60 characters.
fn title_of(instruction: &str) -> String {
    let first = instruction
        .split(['.', ';'])
        .next()
        .unwrap_or(instruction)
        .trim();
    if first.chars().count() > 60 {
        format!("{}…", first.chars().take(59).collect::<String>())
    } else {
        first.to_owned()
    }
}

pub(crate) fn s(x: &str) -> String {
    x.to_owned()
}

/// A checker's device: [`L`] is any laptop.
fn on(device: &str) -> String {
    if device == L {
        "any:laptop".to_owned()
    } else {
        device.to_owned()
    }
}

pub(crate) fn strs(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| (*x).to_owned()).collect()
}

// Checker shorthands.

pub(crate) fn file_eq(device: &str, path: &str, content: &str) -> Check {
    Check::File {
        device: on(device),
        path: s(path),
        or_paths: vec![],
        equals: Some(s(content)),
        contains: vec![],
        not_contains: vec![],
    }
}

pub(crate) fn file_has(device: &str, path: &str, contains: &[&str]) -> Check {
    Check::File {
        device: on(device),
        path: s(path),
        or_paths: vec![],
        equals: None,
        contains: strs(contains),
        not_contains: vec![],
    }
}

/// `check` (of a file a request puts "under DIR/", at `dir` + `rel`, `rel` being its path on
/// the source) also holding for the file at `dir` + its name alone: the request allows keeping
/// the source's folders or not.
pub(crate) fn under(check: Check, dir: &str, rel: &str) -> Check {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let (kept, flat) = (format!("{dir}{rel}"), format!("{dir}{name}"));
    let mut check = check;
    if let Check::File { path, or_paths, .. } | Check::Sha256 { path, or_paths, .. } = &mut check {
        for p in [kept, flat] {
            if p != *path && !or_paths.contains(&p) {
                or_paths.push(p);
            }
        }
    }
    check
}

/// The file at `path` holds the `size` seeded bytes placed at `src_path` on `src`.
pub(crate) fn seeded_at(device: &str, path: &str, src: &str, src_path: &str, size: u64) -> Check {
    Check::Sha256 {
        device: on(device),
        path: s(path),
        or_paths: vec![],
        sha256: None,
        seeded: Some(SeededFile {
            device: s(src),
            path: s(src_path),
            size: Some(size),
        }),
    }
}

/// The file at `path` holds the photo the phone takes as `name` (`DCIM/NAME.jpg`).
pub(crate) fn photo_at(device: &str, path: &str, name: &str) -> Check {
    Check::Sha256 {
        device: on(device),
        path: s(path),
        or_paths: vec![],
        sha256: None,
        seeded: Some(SeededFile {
            device: s(P),
            path: photo_path(name),
            size: None,
        }),
    }
}

/// Where the phone's `photo.take` writes the photo `name`.
pub(crate) fn photo_path(name: &str) -> String {
    format!("DCIM/{name}.jpg")
}

pub(crate) fn no_file(device: &str, path: &str) -> Check {
    Check::NoFile {
        device: on(device),
        path: s(path),
    }
}

pub(crate) fn mail(
    device: &str,
    to: &str,
    subject: Option<&str>,
    contains: &[&str],
    attachment: Option<&str>,
) -> Check {
    Check::Mail {
        device: on(device),
        to: s(to),
        subject_contains: subject.map(s),
        contains: strs(contains),
        not_contains: vec![],
        attachment: attachment.map(s),
    }
}

pub(crate) fn no_mail(device: &str) -> Check {
    Check::NoMail { device: on(device) }
}

pub(crate) fn message(device: &str, to: &str, contains: &[&str]) -> Check {
    Check::Message {
        device: on(device),
        to: s(to),
        contains: strs(contains),
        not_contains: vec![],
    }
}

pub(crate) fn notification(device: &str, contains: &[&str]) -> Check {
    Check::Notification {
        device: on(device),
        contains: strs(contains),
        not_contains: vec![],
    }
}

pub(crate) fn no_notification(device: &str) -> Check {
    Check::NoNotification { device: on(device) }
}

pub(crate) fn note(device: &str, title: &str, contains: &[&str]) -> Check {
    Check::Note {
        device: on(device),
        title: s(title),
        contains: strs(contains),
        not_contains: vec![],
    }
}

pub(crate) fn event(device: &str, title: &str, start: &str, attendee: Option<&str>) -> Check {
    Check::Event {
        device: on(device),
        title: s(title),
        start: s(start),
        attendee: attendee.map(s),
    }
}

pub(crate) fn no_event(device: &str, title: &str) -> Check {
    Check::NoEvent {
        device: on(device),
        title: s(title),
    }
}

pub(crate) fn reminder(device: &str, due: &str, contains: &[&str]) -> Check {
    Check::Reminder {
        device: on(device),
        due: s(due),
        contains: strs(contains),
        not_contains: vec![],
    }
}

pub(crate) fn clipboard_eq(device: &str, text: &str) -> Check {
    Check::Clipboard {
        device: on(device),
        equals: Some(s(text)),
        contains: vec![],
    }
}

pub(crate) fn kv(device: &str, key: &str, value: Value) -> Check {
    Check::Kv {
        device: on(device),
        key: s(key),
        equals: value,
    }
}

pub(crate) fn no_kv(device: &str, key: &str) -> Check {
    Check::NoKv {
        device: on(device),
        key: s(key),
    }
}

/// Exactly `n` items of a kind on the device (summed over any laptop for [`L`]).
pub(crate) fn count(device: &str, items: Items, n: usize) -> Check {
    Check::Count {
        device: on(device),
        items,
        to: None,
        contains: vec![],
        equals: n,
    }
}

/// Exactly `n` mails or messages to `to`.
pub(crate) fn count_to(device: &str, items: Items, to: &str, n: usize) -> Check {
    Check::Count {
        device: on(device),
        items,
        to: Some(s(to)),
        contains: vec![],
        equals: n,
    }
}

/// The same checker, also refusing these texts (for the kinds that have `not_contains`).
pub(crate) fn without(mut c: Check, texts: &[&str]) -> Check {
    match &mut c {
        Check::File { not_contains, .. }
        | Check::Mail { not_contains, .. }
        | Check::Message { not_contains, .. }
        | Check::Notification { not_contains, .. }
        | Check::Note { not_contains, .. }
        | Check::Reminder { not_contains, .. } => not_contains.extend(strs(texts)),
        other => panic!("{} has no not_contains", other.describe()),
    }
    c
}

/// Every task of the suite.
pub fn tasks() -> Vec<TaskFile> {
    let mut all = Vec::new();
    all.extend(everyday::file_sync());
    all.extend(ops::log_collection());
    all.extend(everyday::report_assembly());
    all.extend(everyday::phone_messaging());
    all.extend(everyday::calendar());
    all.extend(ops::data_pipeline());
    all.extend(ops::build_test());
    all.extend(everyday::photo_handoff());
    all.extend(ops::monitoring());
    all.extend(ops::research());
    all.extend(fanout::file_sync());
    all.extend(fanout::log_collection());
    all.extend(fanout::report_assembly());
    all.extend(fanout::phone_messaging());
    all.extend(fanout::calendar());
    all.extend(fanout::data_pipeline());
    all.extend(fanout::build_test());
    all.extend(fanout::photo_handoff());
    all.extend(fanout::monitoring());
    all.extend(fanout::research());
    all
}

/// The header of every generated file.
pub const HEADER: &str = "# Generated by `weft-bench generate` (bench-tasks/src/suite/generate/); \
                          edit the generator, not this file.\n";

/// Each task file's path (relative to the suite root) and text.
pub fn files() -> anyhow::Result<Vec<(String, String)>> {
    tasks()
        .into_iter()
        .map(|t| {
            t.validate()
                .with_context(|| format!("generated task {}", t.id))?;
            let text =
                toml::to_string_pretty(&t).with_context(|| format!("generated task {}", t.id))?;
            Ok((
                format!("{}/{}.toml", t.category, t.id),
                format!("{HEADER}{text}"),
            ))
        })
        .collect()
}

/// Whether `text` is a file the generator wrote (it starts with [`HEADER`]).
pub fn is_generated(text: &str) -> bool {
    text.starts_with(HEADER)
}

/// Every `*.toml` one folder down under `root` (`CATEGORY/ID.toml`): its path relative to
/// `root` (with `/`), and its text.
fn task_files(root: &Path) -> anyhow::Result<Vec<(String, std::path::PathBuf, String)>> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(root)? {
        let p = entry?.path();
        if !p.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&p)? {
            let f = f?.path();
            if f.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let rel = f
                .strip_prefix(root)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            out.push((rel, f, text));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the suite under `root`, replacing the generated task files there and leaving the
/// hand-written ones. Returns how many it wrote. Fails, before writing anything, if a
/// hand-written file is where a generated one goes.
pub fn write(root: &Path) -> anyhow::Result<usize> {
    let files = files()?;
    let existing = task_files(root)?;
    if let Some((rel, _, _)) = existing
        .iter()
        .find(|(rel, _, text)| !is_generated(text) && files.iter().any(|(r, _)| r == rel))
    {
        anyhow::bail!("{rel} is hand-written, and the generator writes a task there");
    }
    for (_, path, text) in &existing {
        if is_generated(text) {
            std::fs::remove_file(path)?;
        }
    }
    for (rel, text) in &files {
        let p = root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, text)?;
    }
    Ok(files.len())
}

/// The differences between `root` and what [`write`] would write (empty: in sync).
/// Hand-written files are not the generator's business, unless one sits where the generator
/// writes.
pub fn diff(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut expected: BTreeMap<String, String> = files()?.into_iter().collect();
    for (rel, _, text) in task_files(root)? {
        let hand = !is_generated(&text);
        match expected.remove(&rel) {
            None if hand => {}
            None => problems.push(format!("{rel}: not written by the generator")),
            Some(_) if hand => problems.push(format!(
                "{rel}: hand-written, but the generator writes a task there"
            )),
            Some(want) if text != want => {
                problems.push(format!("{rel}: differs from the generator's output"));
            }
            Some(_) => {}
        }
    }
    problems.extend(expected.into_keys().map(|rel| format!("{rel}: missing")));
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::task::{Suite, default_suite};

    #[test]
    fn the_committed_suite_is_what_the_generator_writes() {
        let root = default_suite();
        let problems = diff(&root).unwrap();
        assert!(
            problems.is_empty(),
            "bench-tasks/tasks is out of date; run `cargo run -p weft-bench --bin weft-bench -- \
             generate`:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn hand_written_tasks_sit_beside_generated_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let n = write(root).unwrap();
        assert_eq!(diff(root).unwrap(), Vec::<String>::new());
        // A hand-written task in a generated category, and one in a folder of its own: the
        // check leaves them alone, a rewrite keeps them, the suite loads them.
        let mut hand = tasks().remove(0);
        hand.id = "sync-hand".into();
        hand.request = "Back up my thesis introduction by hand.".into();
        hand.title = "A hand-written task".into();
        let text = toml::to_string_pretty(&hand).unwrap();
        std::fs::write(root.join("file-sync/sync-hand.toml"), &text).unwrap();
        std::fs::create_dir_all(root.join("hand")).unwrap();
        hand.id = "own-01".into();
        hand.category = "hand".into();
        hand.request = "Back up my thesis introduction, by hand again.".into();
        std::fs::write(
            root.join("hand/own-01.toml"),
            toml::to_string_pretty(&hand).unwrap(),
        )
        .unwrap();
        assert_eq!(diff(root).unwrap(), Vec::<String>::new());
        assert_eq!(write(root).unwrap(), n);
        assert_eq!(
            std::fs::read_to_string(root.join("file-sync/sync-hand.toml")).unwrap(),
            text
        );
        let suite = Suite::load(root).unwrap();
        assert_eq!(suite.tasks.len(), n + 2);
        assert!(suite.tasks.iter().any(|t| t.id == "own-01"));
        // The same schema holds for them: a hand-written task that does not validate fails
        // the load, naming its file.
        std::fs::write(
            root.join("hand/own-02.toml"),
            "id = \"own-02\"\ncategory = \"hand\"\ntitle = \"t\"\nrequest = \"r\"\n\
             rules = \"unsupported\"\nrules_note = \"n\"\nexpect = \"refused\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Suite::load(root).unwrap_err());
        assert!(e.contains("own-02.toml") && e.contains("refuse"), "{e}");
        std::fs::remove_file(root.join("hand/own-02.toml")).unwrap();
        // A generated file edited, or one the generator no longer writes, is found.
        let sync01 = root.join("file-sync/sync-01.toml");
        let generated = std::fs::read_to_string(&sync01).unwrap();
        std::fs::write(&sync01, generated.replace("thesis", "novel")).unwrap();
        std::fs::write(root.join("file-sync/sync-99.toml"), &generated).unwrap();
        assert_eq!(
            diff(root).unwrap(),
            [
                "file-sync/sync-01.toml: differs from the generator's output",
                "file-sync/sync-99.toml: not written by the generator"
            ]
        );
        write(root).unwrap();
        assert!(!root.join("file-sync/sync-99.toml").exists());
        // A hand-written file where the generator writes: found, and never overwritten.
        std::fs::write(&sync01, &text).unwrap();
        assert_eq!(
            diff(root).unwrap(),
            ["file-sync/sync-01.toml: hand-written, but the generator writes a task there"]
        );
        assert!(write(root).is_err());
        assert_eq!(std::fs::read_to_string(&sync01).unwrap(), text);
    }

    #[test]
    fn the_suite_has_ten_categories_of_ten_or_more_distinct_tasks() {
        let suite = Suite::load(&default_suite()).unwrap();
        assert!(suite.tasks.len() >= 100, "{} tasks", suite.tasks.len());
        let cats = suite.categories();
        assert!(cats.len() >= 10, "{cats:?}");
        for c in &cats {
            let n = suite.tasks.iter().filter(|t| &t.category == c).count();
            assert!(n >= 10, "{c}: {n} tasks");
        }
        // No two tasks ask the same thing.
        let mut requests: Vec<&str> = suite.tasks.iter().map(|t| t.request.as_str()).collect();
        requests.sort_unstable();
        requests.dedup();
        assert_eq!(requests.len(), suite.tasks.len(), "a request is repeated");
        // Nor the same plan from the same starting state (mon-01 and mon-02 share a plan; the
        // disk they find differs).
        let mut setups: Vec<String> = suite
            .tasks
            .iter()
            .map(|t| serde_json::to_string(&(&t.plan, &t.devices, &t.web)).unwrap())
            .collect();
        setups.sort_unstable();
        setups.dedup();
        assert_eq!(setups.len(), suite.tasks.len(), "a task is repeated");
    }

    /// The LLM planner refuses some requests before it asks the model (a device kind nobody
    /// has, a whole disk destroyed): none of them may be a request the suite wants carried out.
    #[test]
    fn no_request_to_carry_out_is_refused_before_planning() {
        let devices = crate::suite::devices::infos();
        let mut caught = Vec::new();
        for t in Suite::load(&default_suite()).unwrap().tasks {
            let why = weft_planner::llm::refusal_before_planning(&t.request, &devices);
            match (t.expects_refusal(), why) {
                (false, Some(why)) => panic!("{}: refused before planning: {why}", t.id),
                (true, Some(_)) => caught.push(t.id.clone()),
                _ => {}
            }
        }
        // Not every refusal is the text's to find: some need a plan to see (`rm -rf /`).
        assert!(caught.len() >= 5, "{caught:?}");
    }

    #[test]
    fn every_rules_request_is_read_by_the_rules_planner() {
        use weft_planner::RulesPlanner;
        let devices = crate::suite::devices::infos();
        for t in tasks().iter().filter(|t| t.rules_supported()) {
            let t = t.with_web("http://127.0.0.1:9").unwrap();
            let plan = RulesPlanner::new().plan_sync(&t.rules, &devices);
            let plan = plan.unwrap_or_else(|e| panic!("{}: {e}\n{}", t.id, t.rules));
            for task in &plan.tasks {
                if let weft_planner::Target::Device(d) = &task.target {
                    let dev = crate::suite::devices::by_name(d.as_str()).unwrap();
                    for c in &task.capabilities {
                        assert!(
                            dev.executors.contains(&c.as_str()),
                            "{}: {} has no {c} executor",
                            t.id,
                            dev.name
                        );
                    }
                }
            }
        }
    }
}
