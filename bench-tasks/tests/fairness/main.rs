//! The suite is fair and cannot be gamed (docs/bench.md, "Fair checkers"):
//!
//! - its reference plans pass every task, and so do the same plans with every word they invent
//!   put in other words ([`paraphrase`]): no checker demands a plan's own phrasing;
//! - the shortcuts fail: a plan that runs every branch of its conditions fails every task whose
//!   reference run leaves a branch untaken, and a plan that does everything on one device fails
//!   every task whose device state lives on more than one device ([`variants`]).
//!
//! Every task of the suite runs, at latency scale 0.05, against a real orchestrator and five
//! real agent processes. `FAIRNESS_SUITE=DIR` runs another suite (to measure an older one; the
//! counts are printed either way).

mod paraphrase;
mod variants;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_bench::suite::progress::Progress;
use weft_bench::suite::report::TaskResult;
use weft_bench::suite::task::default_suite;
use weft_bench::suite::{Faults, LlmSettings, Mode, PlannerKind, RunOptions, Suite, TaskFile, run};

fn suite() -> Suite {
    let root = std::env::var_os("FAIRNESS_SUITE")
        .map(PathBuf::from)
        .unwrap_or_else(default_suite);
    Suite::load(&root).unwrap()
}

/// Writes `tasks` as a suite under `dir`.
fn write_suite(dir: &Path, tasks: &[TaskFile]) {
    for t in tasks {
        let folder = dir.join(&t.category);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("{}.toml", t.id)),
            toml::to_string_pretty(t).unwrap(),
        )
        .unwrap();
    }
}

/// Runs `tasks` with their plans as written (the reference planner); results by task id.
async fn run_plans(tasks: &[TaskFile]) -> BTreeMap<String, TaskResult> {
    let dir = tempfile::tempdir().unwrap();
    write_suite(dir.path(), tasks);
    let opts = RunOptions {
        suite: dir.path().to_path_buf(),
        planner: PlannerKind::Reference,
        llm: LlmSettings::default(),
        mode: Mode::Parallel,
        faults: Faults::None,
        seed: 7,
        filter: Vec::new(),
        latency_scale: 0.05,
        fail_rate: None,
        agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_weft-bench")),
        task_timeout: Duration::from_secs(60),
        keep_dir: None,
        command: "weft-bench run (fairness test)".into(),
    };
    let report = run(&opts, &mut Progress::new(false)).await.unwrap();
    report.runs[0]
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.clone()))
        .collect()
}

fn why(t: &TaskResult) -> String {
    format!(
        "{} {}: {:?} {:?} {}",
        t.id, t.outcome, t.errors, t.failed_checks, t.note
    )
}

/// A copy of `t` under another id (`ID-SUFFIX`), so variants can run in one suite.
fn renamed(mut t: TaskFile, suffix: &str) -> TaskFile {
    t.id = format!("{}-{suffix}", t.id);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_and_paraphrased_plans_pass_every_task() {
    let suite = suite();
    let mut tasks = suite.tasks.clone();
    let mut rewritten = 0;
    let mut changed = 0;
    let mut missing = BTreeMap::new();
    for t in &suite.tasks {
        let (p, done) = paraphrase::paraphrase(t);
        if !done.missing.is_empty() {
            missing.insert(t.id.clone(), done.missing);
        }
        rewritten += done.words.len();
        changed += usize::from(p.plan != t.plan);
        tasks.push(renamed(p, "para"));
    }
    assert!(
        missing.is_empty(),
        "words the plans invent with no synonym in paraphrase::SYNONYMS: {missing:?}"
    );
    let results = run_plans(&tasks).await;
    let (para, reference): (Vec<&TaskResult>, Vec<&TaskResult>) =
        results.values().partition(|t| t.id.ends_with("-para"));
    let passed = |xs: &[&TaskResult]| xs.iter().filter(|t| t.success).count();
    println!(
        "reference plans: {}/{} passed; paraphrased plans ({changed} plans changed, \
         {rewritten} words rewritten): {}/{} passed",
        passed(&reference),
        reference.len(),
        passed(&para),
        para.len()
    );
    let failed: Vec<String> = results.values().filter(|t| !t.success).map(why).collect();
    assert_eq!(failed, Vec::<String>::new());
    assert_eq!(reference.len(), suite.tasks.len());
    // The paraphrase is not the plan.
    assert!(
        changed > 0 && rewritten >= changed,
        "{changed} plans changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortcuts_fail() {
    let suite = suite();
    let branching: Vec<&TaskFile> = suite
        .tasks
        .iter()
        .filter(|t| variants::has_conditions(t))
        .collect();
    // Every task whose plan uses several devices; the assertion is on those whose device state
    // spans devices (where a fetch or a computation ran leaves no trace in the final state).
    let one_device: Vec<(&TaskFile, &'static str)> = suite
        .tasks
        .iter()
        .filter(|t| variants::plan_devices(t).len() > 1)
        .flat_map(|t| {
            variants::one_devices_for(t)
                .into_iter()
                .map(move |d| (t, d))
        })
        .collect();
    let mut tasks: Vec<TaskFile> = Vec::new();
    for t in &branching {
        tasks.push((*t).clone());
        tasks.push(renamed(variants::every_branch(t), "branches"));
    }
    for (t, d) in &one_device {
        tasks.push(renamed(variants::on_one_device(t, d), &format!("on-{d}")));
    }
    let results = run_plans(&tasks).await;

    // Every branch run: fails wherever the reference run leaves a branch untaken (it makes
    // fewer attempts than the graph has tasks; no attempt fails at fail rate 0).
    let mut untaken = Vec::new();
    let mut branch_passes = Vec::new();
    for t in &branching {
        let r = &results[&t.id];
        assert!(r.success, "reference {}", why(r));
        let v = &results[&format!("{}-branches", t.id)];
        if r.attempts < r.subtasks {
            untaken.push(t.id.clone());
            if v.success {
                branch_passes.push(t.id.clone());
            }
        }
    }
    println!(
        "every-branch plans: {} branching tasks, {} with a branch untaken; {} of those pass \
         with every branch run: {branch_passes:?}",
        branching.len(),
        untaken.len(),
        branch_passes.len()
    );

    // One device: fails every task whose device state spans devices, on every device it
    // could be moved to.
    let spans = |t: &TaskFile| variants::state_devices(t).len() > 1;
    let mut passes = Vec::new();
    let mut undetectable = BTreeMap::new();
    for (t, d) in &one_device {
        if results[&format!("{}-on-{d}", t.id)].success {
            if spans(t) {
                passes.push(format!("{} on {d}", t.id));
            } else {
                undetectable.insert(t.id.clone(), *d);
            }
        }
    }
    let tasks_of = |multi: bool| {
        let mut ids: Vec<&str> = one_device
            .iter()
            .filter(|(t, _)| spans(t) == multi)
            .map(|(t, _)| t.id.as_str())
            .collect();
        ids.dedup();
        ids.len()
    };
    let multi = tasks_of(true);
    println!(
        "one-device plans: {} variants of {} tasks planned on several devices; of the {multi} \
         tasks whose state spans devices, {} variants pass: {passes:?}; of the {} whose state \
         is on one device (fetches, computations or untaken branches elsewhere), {} pass on \
         some device: {undetectable:?}",
        one_device.len(),
        multi + tasks_of(false),
        passes.len(),
        tasks_of(false),
        undetectable.len()
    );
    assert!(!untaken.is_empty() && multi > 0);
    assert_eq!(
        branch_passes,
        Vec::<String>::new(),
        "every-branch plans passed"
    );
    assert_eq!(passes, Vec::<String>::new(), "one-device plans passed");
}
