//! A benchmark task file (`tasks/CATEGORY/ID.toml`) and the suite: every task file under a
//! directory.
//!
//! A task holds the request in two forms (natural language, and the rules planner's grammar or
//! `"unsupported"`), the initial state of the devices it involves, the web pages it may fetch,
//! a reference plan (the graph a good planner should produce) and the checkers its final device
//! state must pass. `${WEB}` in any string stands for the runner's web server
//! (`http://web.bench`), filled in when the suite is loaded for a run.
//!
//! A task whose correct outcome is a refusal (`expect = "refused"`: a dangerous or impossible
//! request) has no plan and no checkers: the reference planner refuses it with `refuse`, and the
//! runner scores it on its own terms (refused, and nothing changed on any device; see
//! [`super::check::refusal_verdicts`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use weft_agent::seeded;
use weft_agent::sim::{Event, Mail, Note, State};
use weft_protocol::Action;
use weft_protocol::rest::GraphSpec;

use super::check::{Check, SeededFile};
use super::devices;

/// What `rules` holds for a task the rules planner's grammar cannot express.
pub const UNSUPPORTED: &str = "unsupported";

/// The placeholder for the runner's web server in task strings.
pub const WEB: &str = "${WEB}";

/// What a task's correct outcome is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The request is carried out; the checkers judge the final state.
    #[default]
    Done,
    /// The request must be refused (it is dangerous, or asks for a device the user does not
    /// have), and nothing may change on any device.
    Refused,
}

impl Expect {
    fn is_done(&self) -> bool {
        *self == Expect::Done
    }
}

fn no_graph() -> GraphSpec {
    GraphSpec {
        tasks: Vec::new(),
        edges: Vec::new(),
    }
}

fn graph_is_empty(g: &GraphSpec) -> bool {
    g.tasks.is_empty() && g.edges.is_empty()
}

/// One task file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// Unique in the suite; also the file's name (`sync-03` in `file-sync/sync-03.toml`).
    pub id: String,
    /// The folder it is in.
    pub category: String,
    pub title: String,
    /// What a person would ask, in plain English.
    pub request: String,
    /// The same request in the rules planner's grammar (docs/rules-planner.md), or
    /// `"unsupported"` when the grammar cannot express it.
    pub rules: String,
    /// Why the grammar cannot express it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rules_note: String,
    /// `refused` for a request that must be refused; carried out otherwise (the default).
    #[serde(default, skip_serializing_if = "Expect::is_done")]
    pub expect: Expect,
    /// With `expect = "refused"`: the reference planner's refusal, saying why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refuse: String,
    /// Initial state of the devices, by device name; devices not named start empty (their
    /// profile's default apps).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, DeviceSetup>,
    /// Pages the runner's web server serves during this task, by path (`data/sales.csv` is
    /// `${WEB}/data/sales.csv`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub web: BTreeMap<String, String>,
    /// The reference plan (none for a task that must be refused).
    #[serde(default = "no_graph", skip_serializing_if = "graph_is_empty")]
    pub plan: GraphSpec,
    /// Predicates on the final device state; the task succeeds when all hold (none for a task
    /// that must be refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// A device's state before the task: files in its workdir and its simulated apps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSetup {
    /// Workdir files: relative path → content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Binary workdir files: relative path → size in bytes. The runner writes the seeded bytes
    /// of (the run's seed, this device, the path, the size) there (`weft_agent::seeded`), so
    /// they differ with the seed and a `sha256` checker's `seeded` form knows their hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seeded_files: BTreeMap<String, u64>,
    /// Apps installed besides the profile's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install: Vec<String>,
    /// Default apps that are not installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uninstall: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<Mail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendar: Vec<Event>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clipboard: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kv: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl DeviceSetup {
    /// The simulated state this setup starts `profile` with.
    pub fn state(&self, profile: &str) -> State {
        let mut s = weft_agent::sim::profile(profile)
            .map(|p| p.initial_state())
            .unwrap_or_default();
        s.apps.retain(|a| !self.uninstall.contains(a));
        for a in &self.install {
            if !s.apps.contains(a) {
                s.apps.push(a.clone());
            }
        }
        s.notes.clone_from(&self.notes);
        s.inbox.clone_from(&self.inbox);
        s.calendar.clone_from(&self.calendar);
        s.clipboard.clone_from(&self.clipboard);
        s.kv.clone_from(&self.kv);
        s.metrics.clone_from(&self.metrics);
        s
    }
}

impl TaskFile {
    /// Whether the rules grammar can express this task.
    pub fn rules_supported(&self) -> bool {
        self.rules.trim() != UNSUPPORTED
    }

    /// Whether the correct outcome is a refusal.
    pub fn expects_refusal(&self) -> bool {
        self.expect == Expect::Refused
    }

    /// Checks what loading cannot: names, devices, the reference plan's shape, checkers; a
    /// task that must be refused has a refusal and no plan, checkers or rules text.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !valid_id(&self.id) || !valid_id(&self.category) {
            bail!("id and category: use lowercase letters, digits and '-'");
        }
        if self.request.trim().is_empty() || self.rules.trim().is_empty() {
            bail!("request and rules must not be empty (rules may be \"unsupported\")");
        }
        if !self.rules_supported() && self.rules_note.trim().is_empty() {
            bail!("rules = \"unsupported\" needs a rules_note saying why");
        }
        for (name, setup) in &self.devices {
            if devices::by_name(name).is_none() {
                bail!(
                    "devices.{name}: no such device ({})",
                    devices::names().join(", ")
                );
            }
            for (path, size) in &setup.seeded_files {
                if !valid_path(path) {
                    bail!(
                        "devices.{name}.seeded_files: `{path}` is not a relative path (no \
                         leading `/`, no `.`, `..` or empty part, no `\\`)"
                    );
                }
                if !(1..=seeded::MAX_SIZE).contains(size) {
                    bail!(
                        "devices.{name}.seeded_files.\"{path}\": {size} bytes is not between 1 \
                         and {}",
                        seeded::MAX_SIZE
                    );
                }
                if setup.files.contains_key(path) {
                    bail!("devices.{name}: `{path}` is in both files and seeded_files");
                }
            }
        }
        if self.expects_refusal() {
            if self.refuse.trim().is_empty() {
                bail!("expect = \"refused\" needs `refuse`: the reference planner's refusal");
            }
            if !graph_is_empty(&self.plan) || !self.checks.is_empty() {
                bail!(
                    "expect = \"refused\": no [plan] and no [[checks]] (the runner scores a \
                     refusal, and that nothing changed on any device)"
                );
            }
            if self.rules_supported() {
                bail!(
                    "expect = \"refused\": rules must be \"unsupported\" (the rules planner \
                     does not judge requests; its grammar would run one)"
                );
            }
            return Ok(());
        }
        if !self.refuse.is_empty() {
            bail!("`refuse` is for tasks with expect = \"refused\"");
        }
        if self.plan.tasks.is_empty() {
            bail!("the reference plan has no task");
        }
        for t in &self.plan.tasks {
            match (&t.device, &t.device_kind) {
                (Some(d), _) if devices::by_name(d.as_str()).is_none() => {
                    bail!("plan task {}: no device {d}", t.id)
                }
                (None, Some(k)) if !devices::all().iter().any(|d| d.kind == k) => {
                    bail!("plan task {}: no device of kind {k}", t.id)
                }
                _ => {}
            }
            if let Some(Action::Sim { op, .. }) = &t.action
                && !weft_agent::sim::op_names().contains(&op.as_str())
            {
                bail!("plan task {}: unknown sim op `{op}`", t.id);
            }
        }
        if self.checks.is_empty() {
            bail!("a task needs at least one checker");
        }
        for (i, c) in self.checks.iter().enumerate() {
            c.validate().with_context(|| format!("checks[{i}]"))?;
            // A seeded file's size is the one placed at reset (a photo draws its own).
            if let Check::Sha256 {
                seeded:
                    Some(SeededFile {
                        device,
                        path,
                        size: Some(size),
                    }),
                ..
            } = c
                && self
                    .devices
                    .get(device)
                    .and_then(|d| d.seeded_files.get(path))
                    != Some(size)
            {
                bail!(
                    "checks[{i}]: seeded {path} on {device} ({size} bytes) is not one of the \
                     task's seeded_files"
                );
            }
        }
        Ok(())
    }

    /// This task with `${WEB}` replaced by `base` in its request, rules, plan and web pages.
    pub fn with_web(&self, base: &str) -> anyhow::Result<TaskFile> {
        let mut t = self.clone();
        t.request = t.request.replace(WEB, base);
        t.rules = t.rules.replace(WEB, base);
        let plan = serde_json::to_string(&t.plan)?;
        // `base` has no characters JSON escapes.
        t.plan = serde_json::from_str(&plan.replace(WEB, base))?;
        for page in t.web.values_mut() {
            *page = page.replace(WEB, base);
        }
        Ok(t)
    }
}

/// A relative path with `/` between its parts: none empty, `.` or `..`; no `\\` or NUL.
pub(crate) fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && !p.contains(['\\', '\0'])
        && p.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every task of a suite, sorted by category, then id.
#[derive(Debug, Clone)]
pub struct Suite {
    pub root: PathBuf,
    pub tasks: Vec<TaskFile>,
}

impl Suite {
    /// Reads every `*.toml` under `root/CATEGORY/`, checking each file and that ids are unique
    /// and match their file names and folders.
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let mut tasks = Vec::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .with_context(|| format!("cannot read the suite {}", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                let task: TaskFile =
                    toml::from_str(&text).with_context(|| format!("{}", f.display()))?;
                task.validate()
                    .with_context(|| format!("{}", f.display()))?;
                let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let folder = dir.file_name().and_then(|s| s.to_str()).unwrap_or_default();
                if task.id != stem || task.category != folder {
                    bail!(
                        "{}: id `{}` and category `{}` must be the file name and its folder",
                        f.display(),
                        task.id,
                        task.category
                    );
                }
                tasks.push(task);
            }
        }
        let mut ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            bail!("the task id {} is used twice", w[0]);
        }
        tasks.sort_by(|a, b| (&a.category, &a.id).cmp(&(&b.category, &b.id)));
        Ok(Self {
            root: root.to_path_buf(),
            tasks,
        })
    }

    /// The tasks whose category or id is in `filter` (all when it is empty).
    pub fn filtered(mut self, filter: &[String]) -> anyhow::Result<Self> {
        if filter.is_empty() {
            return Ok(self);
        }
        for f in filter {
            if !self.tasks.iter().any(|t| &t.category == f || &t.id == f) {
                bail!(
                    "--filter {f}: no such category or task (categories: {})",
                    self.categories().join(", ")
                );
            }
        }
        self.tasks
            .retain(|t| filter.iter().any(|f| f == &t.category || f == &t.id));
        Ok(self)
    }

    /// The categories, in order.
    pub fn categories(&self) -> Vec<String> {
        let mut c: Vec<String> = self.tasks.iter().map(|t| t.category.clone()).collect();
        c.dedup();
        c
    }
}

/// Where the suite is when none is given: `bench-tasks/tasks` of this source tree, else
/// `./bench-tasks/tasks`, else `./tasks`.
pub fn default_suite() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks");
    if built.is_dir() {
        return built;
    }
    let here = PathBuf::from("bench-tasks/tasks");
    if here.is_dir() {
        here
    } else {
        PathBuf::from("tasks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small task with `extra` TOML after its request: `ok` or the validation error.
    fn validate(extra: &str) -> String {
        let text = format!(
            "id = \"t-01\"\ncategory = \"c\"\ntitle = \"t\"\nrequest = \"r\"\nrules = \"r\"\n\
             {extra}\n\
             [[plan.tasks]]\nid = \"t1\"\ntitle = \"t\"\ninstruction = \"i\"\n\
             device = \"mac-laptop\"\n\
             [plan.tasks.action]\nkind = \"sim\"\nop = \"file.list\"\nargs = {{ dir = \".\" }}\n\
             [[checks]]\ncheck = \"no_mail\"\ndevice = \"mac-laptop\"\n"
        );
        let task: TaskFile = toml::from_str(&text).unwrap();
        match task.validate() {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn seeded_files_are_relative_paths_of_a_sane_size() {
        let cases = [
            (
                "[devices.mac-laptop.seeded_files]\n\"docs/budget.xlsx\" = 3145728",
                "ok",
            ),
            (
                "[devices.mac-laptop.seeded_files]\n\"/etc/x\" = 10",
                "devices.mac-laptop.seeded_files: `/etc/x` is not a relative path (no leading \
                 `/`, no `.`, `..` or empty part, no `\\`)",
            ),
            (
                "[devices.mac-laptop.seeded_files]\n\"a/../b\" = 10",
                "devices.mac-laptop.seeded_files: `a/../b` is not a relative path (no leading \
                 `/`, no `.`, `..` or empty part, no `\\`)",
            ),
            (
                "[devices.mac-laptop.seeded_files]\n\"a.bin\" = 0",
                "devices.mac-laptop.seeded_files.\"a.bin\": 0 bytes is not between 1 and 67108864",
            ),
            (
                "[devices.mac-laptop.seeded_files]\n\"a.bin\" = 67108865",
                "devices.mac-laptop.seeded_files.\"a.bin\": 67108865 bytes is not between 1 and \
                 67108864",
            ),
            (
                "[devices.mac-laptop]\nfiles = { \"a.bin\" = \"x\" }\nseeded_files = { \"a.bin\" = 1 }",
                "devices.mac-laptop: `a.bin` is in both files and seeded_files",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(validate(extra), want, "{extra}");
        }
    }

    #[test]
    fn a_seeded_checker_names_a_seeded_file_of_the_task_or_a_photo() {
        let placed = "[devices.mac-laptop.seeded_files]\n\"docs/a.pdf\" = 1000\n";
        let check = |seeded: &str| {
            format!(
                "{placed}[[checks]]\ncheck = \"sha256\"\ndevice = \"linux-server\"\n\
                 path = \"backup/a.pdf\"\nseeded = {seeded}\n"
            )
        };
        let cases = [
            (
                r#"{ device = "mac-laptop", path = "docs/a.pdf", size = 1000 }"#,
                "ok",
            ),
            (r#"{ device = "android-phone", path = "DCIM/x.jpg" }"#, "ok"),
            (
                r#"{ device = "mac-laptop", path = "docs/a.pdf", size = 999 }"#,
                "checks[0]: seeded docs/a.pdf on mac-laptop (999 bytes) is not one of the \
                 task's seeded_files",
            ),
            (
                r#"{ device = "linux-server", path = "docs/a.pdf", size = 1000 }"#,
                "checks[0]: seeded docs/a.pdf on linux-server (1000 bytes) is not one of the \
                 task's seeded_files",
            ),
        ];
        for (seeded, want) in cases {
            assert_eq!(validate(&check(seeded)), want, "{seeded}");
        }
    }
}
