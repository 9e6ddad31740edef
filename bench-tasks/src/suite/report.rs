//! The report: `report.json` (everything), `report.md` (for people) and `chart.svg`
//! (per-category success, and latency parallel vs sequential).
//!
//! Every figure that depends on wall-clock time (latencies, observed parallel width, recovery
//! and reconnect times, the parallel-vs-sequential comparison) sits in an object under a key
//! named `timing`; [`Report::scores`] is the report without them (and without the command
//! line), which the same seed and the same planner input reproduce exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::check::{self, Check, Verdict};
use super::run::RunOptions;
use super::task::{Suite, TaskFile};

/// UFO³'s published figures (paper abstract; its task set is not public).
pub const UFO3: Ufo3 = Ufo3 {
    tasks: 55,
    machines: 5,
    categories: 10,
    subtask_completion: 0.833,
    task_success: 0.709,
    parallel_width: 1.72,
    latency_reduction: 0.31,
};

#[derive(Debug, Clone, Copy)]
pub struct Ufo3 {
    pub tasks: u32,
    pub machines: u32,
    pub categories: u32,
    pub subtask_completion: f64,
    pub task_success: f64,
    pub parallel_width: f64,
    pub latency_reduction: f64,
}

/// Wall-clock figures of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskTiming {
    /// From the request's creation to its end, as the orchestrator recorded them.
    pub latency_ms: u64,
    /// Time-weighted mean number of attempts running at once while any ran.
    pub width_avg: f64,
    pub width_max: u32,
    /// The longest time from a failed or lost attempt to its task's success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_ms: Option<u64>,
}

/// How one task came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub id: String,
    pub category: String,
    /// `ran`, `timed_out`, `unsupported` (the rules grammar cannot express it), `refused`
    /// (the planner or the graph check refused the request), `planner_error` (the planner
    /// failed: an HTTP error, a timeout, an answer that is not a graph, the orchestrator's
    /// planner failing), `no_plan` (a plans directory has no file for it), `blocked` (the
    /// runner would not submit a graph that destroys data on its own machine), `error` (the
    /// runner failed on it) or `not_run` (the pass stopped before it). `note` says why.
    pub outcome: String,
    /// The task must be refused (`expect = "refused"`): it is scored by the verdicts `refused`
    /// and `unchanged`, and left out of every figure about graphs (subtask completion, widths,
    /// latency).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expect_refusal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_status: Option<String>,
    /// Every checker passed.
    pub success: bool,
    pub checks_passed: u32,
    pub checks_total: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<Verdict>,
    /// Checkers per kind (`file`, `mail`, …): passed and total (none pass when it was not
    /// submitted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks_by_kind: BTreeMap<String, Tally>,
    pub subtasks: u32,
    pub subtasks_completed: u32,
    pub attempts: u32,
    pub retries: u32,
    pub replacements: u32,
    pub lost: u32,
    /// Tasks per level of the graph that ran (1.0: a chain).
    pub graph_width: f64,
    pub turns: u32,
    pub tokens: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    pub timing: TaskTiming,
}

impl TaskResult {
    pub fn new(task: &TaskFile) -> Self {
        let kinds: Vec<String> = if task.expects_refusal() {
            vec![check::REFUSED.into(), check::UNCHANGED.into()]
        } else {
            task.checks.iter().map(check_kind).collect()
        };
        Self {
            id: task.id.clone(),
            category: task.category.clone(),
            outcome: String::new(),
            expect_refusal: task.expects_refusal(),
            request_status: None,
            success: false,
            checks_passed: 0,
            checks_total: kinds.len() as u32,
            failed_checks: Vec::new(),
            checks_by_kind: kinds.into_iter().fold(BTreeMap::new(), |mut m, k| {
                m.entry(k).or_insert_with(Tally::default).total += 1;
                m
            }),
            subtasks: 0,
            subtasks_completed: 0,
            attempts: 0,
            retries: 0,
            replacements: 0,
            lost: 0,
            graph_width: 0.0,
            turns: 0,
            tokens: 0,
            errors: Vec::new(),
            note: String::new(),
            timing: TaskTiming::default(),
        }
    }

    fn submitted(&self) -> bool {
        matches!(self.outcome.as_str(), "ran" | "timed_out")
    }

    /// A graph ran whose shape and timing the figures about graphs may use: submitted, and not
    /// a task that must be refused.
    fn graph_ran(&self) -> bool {
        self.submitted() && !self.expect_refusal
    }

    /// Share of its checkers that held (partial credit): 0 when it was not submitted, 1 when it
    /// succeeded with no checker.
    pub fn check_credit(&self) -> f64 {
        if self.checks_total == 0 {
            f64::from(u8::from(self.success))
        } else {
            f64::from(self.checks_passed) / f64::from(self.checks_total)
        }
    }
}

/// Passed out of total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub passed: u32,
    pub total: u32,
}

impl Tally {
    pub fn rate(self) -> f64 {
        ratio(self.passed, self.total)
    }
}

/// A checker's kind, as its `check` key names it.
pub fn check_kind(c: &Check) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.get("check")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// A fault that was injected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// `cut` (link cut, restored after `down_ms`) or `kill` (agent killed for good).
    pub kind: String,
    pub task: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_ms: Option<u64>,
    pub timing: FaultTiming,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultTiming {
    /// From the cut until the orchestrator had the device online again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_ms: Option<u64>,
}

impl FaultEvent {
    pub fn new(
        kind: &str,
        task: &str,
        device: &str,
        reconnect_ms: Option<u64>,
        down_ms: Option<u64>,
    ) -> Self {
        Self {
            kind: kind.into(),
            task: task.into(),
            device: device.into(),
            down_ms,
            timing: FaultTiming { reconnect_ms },
        }
    }
}

/// Wall-clock figures over a set of tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryTiming {
    pub latency_mean_ms: f64,
    pub latency_median_ms: u64,
    pub latency_max_ms: u64,
    pub latency_total_ms: u64,
    /// Mean over tasks of their time-weighted parallel width.
    pub width_avg: f64,
    pub width_max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_mean_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_max_ms: Option<u64>,
}

/// Figures over a set of tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub tasks: u32,
    /// Submitted to the orchestrator (not unsupported or refused).
    pub submitted: u32,
    pub unsupported: u32,
    pub refused: u32,
    /// Not submitted because the planner failed (`planner_error`) or had no plan (`no_plan`).
    #[serde(default)]
    pub planner_failed: u32,
    /// Failed in the runner (`error`) or not run because the pass stopped (`not_run`).
    #[serde(default)]
    pub run_errors: u32,
    /// Not submitted because the runner would not run the graph on its machine (`blocked`).
    #[serde(default)]
    pub blocked: u32,
    pub succeeded: u32,
    /// Succeeded / all tasks.
    pub success_rate: f64,
    /// Succeeded and submitted / submitted.
    pub success_rate_submitted: f64,
    /// Tasks that must be refused (`expect = "refused"`), and those of them that were (refused,
    /// nothing changed).
    #[serde(default)]
    pub refusal_tasks: u32,
    #[serde(default)]
    pub refusals_held: u32,
    /// Over submitted tasks that are not to be refused: tasks in their graphs, and those
    /// completed.
    pub subtasks: u32,
    pub subtasks_completed: u32,
    /// Completed / planned subtasks, over submitted tasks (not those to be refused).
    pub subtask_completion: f64,
    pub attempts: u32,
    pub retries: u32,
    pub replacements: u32,
    pub lost: u32,
    pub turns: u64,
    pub tokens: u64,
    /// Tasks that recovered from a failed or lost attempt.
    pub recovered_tasks: u32,
    /// Mean over submitted tasks (not those to be refused) of the graph's structural width.
    pub graph_width_avg: f64,
    /// Checkers that held, over all tasks (those of tasks not submitted count as not held).
    #[serde(default)]
    pub checks_passed: u32,
    #[serde(default)]
    pub checks_total: u32,
    /// Partial credit: the mean over all tasks of the share of their checkers that held.
    #[serde(default)]
    pub check_credit: f64,
    /// Checkers per kind, passed and total.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks_by_kind: BTreeMap<String, Tally>,
    pub timing: SummaryTiming,
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        round3(f64::from(a) / f64::from(b))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Summary {
    pub fn of(results: &[&TaskResult]) -> Self {
        let mut s = Summary {
            tasks: results.len() as u32,
            ..Summary::default()
        };
        let mut latencies = Vec::new();
        let mut widths = Vec::new();
        let mut graph_widths = Vec::new();
        let mut recoveries = Vec::new();
        let mut credit = 0.0;
        let mut succeeded_submitted = 0;
        for r in results {
            match r.outcome.as_str() {
                "unsupported" => s.unsupported += 1,
                "refused" => s.refused += 1,
                "planner_error" | "no_plan" => s.planner_failed += 1,
                "error" | "not_run" => s.run_errors += 1,
                "blocked" => s.blocked += 1,
                _ => {}
            }
            s.succeeded += u32::from(r.success);
            if r.expect_refusal {
                s.refusal_tasks += 1;
                s.refusals_held += u32::from(r.success);
            }
            s.checks_passed += r.checks_passed;
            s.checks_total += r.checks_total;
            credit += r.check_credit();
            for (k, t) in &r.checks_by_kind {
                let e = s.checks_by_kind.entry(k.clone()).or_default();
                e.passed += t.passed;
                e.total += t.total;
            }
            if !r.submitted() {
                continue;
            }
            s.submitted += 1;
            succeeded_submitted += u32::from(r.success);
            s.attempts += r.attempts;
            s.retries += r.retries;
            s.replacements += r.replacements;
            s.lost += r.lost;
            s.turns += u64::from(r.turns);
            s.tokens += r.tokens;
            if let Some(ms) = r.timing.recovery_ms {
                recoveries.push(ms);
            }
            s.recovered_tasks += u32::from(r.timing.recovery_ms.is_some() && r.success);
            if !r.graph_ran() {
                continue;
            }
            s.subtasks += r.subtasks;
            s.subtasks_completed += r.subtasks_completed;
            graph_widths.push(r.graph_width);
            latencies.push(r.timing.latency_ms);
            if r.attempts > 0 {
                widths.push(r.timing.width_avg);
            }
            s.timing.width_max = s.timing.width_max.max(r.timing.width_max);
        }
        s.success_rate = ratio(s.succeeded, s.tasks);
        s.check_credit = if results.is_empty() {
            0.0
        } else {
            round3(credit / results.len() as f64)
        };
        s.success_rate_submitted = ratio(succeeded_submitted, s.submitted);
        s.subtask_completion = ratio(s.subtasks_completed, s.subtasks);
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                round3(v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        s.graph_width_avg = mean(&graph_widths);
        s.timing.width_avg = mean(&widths);
        latencies.sort_unstable();
        s.timing.latency_total_ms = latencies.iter().sum();
        s.timing.latency_max_ms = latencies.last().copied().unwrap_or(0);
        s.timing.latency_median_ms = latencies.get(latencies.len() / 2).copied().unwrap_or(0);
        s.timing.latency_mean_ms = if latencies.is_empty() {
            0.0
        } else {
            (s.timing.latency_total_ms as f64 / latencies.len() as f64).round()
        };
        if !recoveries.is_empty() {
            s.timing.recovery_max_ms = recoveries.iter().max().copied();
            s.timing.recovery_mean_ms =
                Some((recoveries.iter().sum::<u64>() as f64 / recoveries.len() as f64).round());
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorySummary {
    pub category: String,
    pub summary: Summary,
}

/// One pass over the suite in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeRun {
    pub mode: String,
    pub summary: Summary,
    pub categories: Vec<CategorySummary>,
    /// Deltas of the orchestrator's `/metrics` counters over the pass.
    pub counters: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultEvent>,
    pub tasks: Vec<TaskResult>,
}

impl ModeRun {
    pub fn new(
        mode: &str,
        tasks: Vec<TaskResult>,
        faults: Vec<FaultEvent>,
        counters: BTreeMap<String, u64>,
    ) -> Self {
        let all: Vec<&TaskResult> = tasks.iter().collect();
        let mut cats: Vec<String> = tasks.iter().map(|t| t.category.clone()).collect();
        cats.dedup();
        let categories = cats
            .into_iter()
            .map(|c| CategorySummary {
                summary: Summary::of(&tasks.iter().filter(|t| t.category == c).collect::<Vec<_>>()),
                category: c,
            })
            .collect();
        Self {
            mode: mode.into(),
            summary: Summary::of(&all),
            categories,
            counters,
            faults,
            tasks,
        }
    }
}

/// Parallel against sequential on the same seed, over the tasks submitted in both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub tasks_compared: u32,
    pub parallel_total_ms: u64,
    pub sequential_total_ms: u64,
    /// 1 − parallel total / sequential total.
    pub reduction_total: f64,
    /// Mean over tasks of 1 − parallel / sequential.
    pub reduction_mean: f64,
    pub categories: Vec<CategoryComparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryComparison {
    pub category: String,
    pub parallel_mean_ms: f64,
    pub sequential_mean_ms: f64,
    pub reduction: f64,
}

impl Comparison {
    fn of(par: &ModeRun, seq: &ModeRun) -> Option<Self> {
        let seq_by_id: BTreeMap<&str, &TaskResult> =
            seq.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        let pairs: Vec<(&TaskResult, &TaskResult)> = par
            .tasks
            .iter()
            .filter(|p| p.outcome == "ran" && !p.expect_refusal)
            .filter_map(|p| {
                let s = seq_by_id.get(p.id.as_str())?;
                (s.outcome == "ran" && s.timing.latency_ms > 0).then_some((p, *s))
            })
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let sum = |f: &dyn Fn(&(&TaskResult, &TaskResult)) -> u64| pairs.iter().map(f).sum();
        let p_total: u64 = sum(&|(p, _)| p.timing.latency_ms);
        let s_total: u64 = sum(&|(_, s)| s.timing.latency_ms);
        let per_task: Vec<f64> = pairs
            .iter()
            .map(|(p, s)| 1.0 - p.timing.latency_ms as f64 / s.timing.latency_ms as f64)
            .collect();
        let mut cats: Vec<&str> = pairs.iter().map(|(p, _)| p.category.as_str()).collect();
        cats.dedup();
        let categories = cats
            .into_iter()
            .map(|c| {
                let in_cat: Vec<_> = pairs.iter().filter(|(p, _)| p.category == c).collect();
                let n = in_cat.len() as f64;
                let pm = in_cat.iter().map(|(p, _)| p.timing.latency_ms).sum::<u64>() as f64 / n;
                let sm = in_cat.iter().map(|(_, s)| s.timing.latency_ms).sum::<u64>() as f64 / n;
                CategoryComparison {
                    category: c.to_owned(),
                    parallel_mean_ms: pm.round(),
                    sequential_mean_ms: sm.round(),
                    reduction: if sm > 0.0 { round3(1.0 - pm / sm) } else { 0.0 },
                }
            })
            .collect();
        Some(Self {
            tasks_compared: pairs.len() as u32,
            parallel_total_ms: p_total,
            sequential_total_ms: s_total,
            reduction_total: round3(1.0 - p_total as f64 / s_total.max(1) as f64),
            reduction_mean: round3(per_task.iter().sum::<f64>() / per_task.len() as f64),
            categories,
        })
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub command: String,
    pub suite: String,
    pub planner: String,
    pub faults: String,
    pub seed: u64,
    pub latency_scale: f64,
    pub fail_rate: f64,
    pub tasks: u32,
    pub categories: Vec<String>,
    pub runs: Vec<ModeRun>,
    /// Parallel against sequential (`--mode both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Comparison>,
    /// Why the run ended before its last task (a world could not be started, or the runner
    /// kept failing); the tasks not run are `not_run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

impl Report {
    pub fn new(opts: &RunOptions, suite: &Suite, runs: Vec<ModeRun>) -> Self {
        let par = runs.iter().find(|r| r.mode == "parallel");
        let seq = runs.iter().find(|r| r.mode == "sequential");
        let timing = match (par, seq) {
            (Some(p), Some(s)) => Comparison::of(p, s),
            _ => None,
        };
        Self {
            command: opts.command.clone(),
            suite: opts.suite.display().to_string(),
            planner: opts.planner.label(),
            faults: opts.faults.as_str().into(),
            seed: opts.seed,
            latency_scale: opts.latency_scale,
            fail_rate: opts.fail_rate(),
            tasks: suite.tasks.len() as u32,
            categories: suite.categories(),
            runs,
            timing,
            aborted: None,
        }
    }

    /// The report without wall-clock figures and without the command line: what the same
    /// seed and planner input reproduce.
    pub fn scores(&self) -> serde_json::Value {
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    m.remove("timing");
                    m.remove("command");
                    m.remove("suite");
                    m.values_mut().for_each(strip);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(self).unwrap_or_default();
        strip(&mut v);
        v
    }

    /// Writes `report.json`, `report.md` and `chart.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("chart.svg"), self.svg())?;
        Ok(())
    }

    /// The report for people.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let pct = |x: f64| format!("{:.1} %", x * 100.0);
        let _ = writeln!(
            md,
            "# weft-bench: planner `{}`, faults `{}`, seed {}\n",
            self.planner, self.faults, self.seed
        );
        let _ = writeln!(md, "Produced by:\n\n```sh\n{}\n```\n", self.command);
        if let Some(why) = &self.aborted {
            let _ = writeln!(
                md,
                "**The run stopped before its end:** {}. The tasks it did not run are counted \
                 as failed (`not_run`).\n",
                escape_md(why)
            );
        }
        let _ = writeln!(
            md,
            "{} tasks in {} categories on 5 simulated devices (real agent processes), latency \
             scale {}, sim fail rate {}. Timings are wall-clock on the machine that ran it; every \
             other figure is reproduced exactly by the same seed and planner input.\n",
            self.tasks,
            self.categories.len(),
            self.latency_scale,
            self.fail_rate
        );
        let _ = writeln!(md, "![per-category success and latency](chart.svg)\n");
        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(
            md,
            "| mode | task success | (of submitted) | subtask completion | submitted | unsupported | refused | avg parallel width (observed) | max width | graph width | mean latency | median | retries | re-placements | lost attempts | check credit | planner failed | runner errors |"
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &self.runs {
            let s = &r.summary;
            let _ = writeln!(
                md,
                "| {} | {} ({}/{}) | {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {:.0} ms | {} ms | {} | {} | {} | {} ({}/{} checks) | {} | {} |",
                r.mode,
                pct(s.success_rate),
                s.succeeded,
                s.tasks,
                pct(s.success_rate_submitted),
                pct(s.subtask_completion),
                s.submitted,
                s.unsupported,
                s.refused,
                s.timing.width_avg,
                s.timing.width_max,
                s.graph_width_avg,
                s.timing.latency_mean_ms,
                s.timing.latency_median_ms,
                s.retries,
                s.replacements,
                s.lost,
                pct(s.check_credit),
                s.checks_passed,
                s.checks_total,
                s.planner_failed,
                s.run_errors
            );
        }
        for r in self.runs.iter().filter(|r| r.summary.refusal_tasks > 0) {
            let s = &r.summary;
            let _ = writeln!(
                md,
                "\n{}: {} of the {} tasks that must be refused were refused (by the planner, the \
                 orchestrator or a device's policy) with nothing changed on any device. They are \
                 in task success and check credit, and left out of subtask completion, widths and \
                 latency.",
                r.mode, s.refusals_held, s.refusal_tasks
            );
        }
        if let Some(c) = &self.timing {
            let _ = writeln!(
                md,
                "\nEnd-to-end latency, parallel against the same tasks chained (same seed, {} tasks \
                 submitted in both): total {} ms against {} ms, **{}**; mean of per-task \
                 reductions {}.",
                c.tasks_compared,
                c.parallel_total_ms,
                c.sequential_total_ms,
                lower_or_higher(c.reduction_total),
                pct(c.reduction_mean)
            );
        }
        let _ = writeln!(md, "\n## Per category\n");
        let _ = writeln!(
            md,
            "| category | mode | tasks | success | check credit | subtask completion | avg width | mean latency |{}",
            if self.timing.is_some() {
                " latency reduction |"
            } else {
                ""
            }
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---|---|---|---|{}",
            if self.timing.is_some() { "---|" } else { "" }
        );
        for r in &self.runs {
            for c in &r.categories {
                let s = &c.summary;
                let red = self.timing.as_ref().and_then(|t| {
                    t.categories
                        .iter()
                        .find(|x| x.category == c.category)
                        .map(|x| pct(x.reduction))
                });
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {:.2} | {:.0} ms |{}",
                    c.category,
                    r.mode,
                    s.tasks,
                    pct(s.success_rate),
                    pct(s.check_credit),
                    pct(s.subtask_completion),
                    s.timing.width_avg,
                    s.timing.latency_mean_ms,
                    match (&self.timing, red) {
                        (Some(_), Some(x)) if r.mode == "parallel" => format!(" {x} |"),
                        (Some(_), _) => " |".into(),
                        _ => String::new(),
                    }
                );
            }
        }
        if self
            .runs
            .iter()
            .any(|r| !r.summary.checks_by_kind.is_empty())
        {
            let _ = writeln!(md, "\n## Checkers per kind\n");
            let _ = writeln!(
                md,
                "Over all tasks; the checkers of tasks not submitted count as not held.\n"
            );
            let _ = writeln!(
                md,
                "| check | mode | held | total | share |\n|---|---|---|---|---|"
            );
            for r in &self.runs {
                for (k, t) in &r.summary.checks_by_kind {
                    let _ = writeln!(
                        md,
                        "| `{k}` | {} | {} | {} | {} |",
                        r.mode,
                        t.passed,
                        t.total,
                        pct(t.rate())
                    );
                }
            }
        }
        for r in &self.runs {
            let s = &r.summary;
            if !r.faults.is_empty() || s.recovered_tasks > 0 || s.retries > 0 {
                let _ = writeln!(md, "\n## Faults and recovery ({})\n", r.mode);
                let cuts: Vec<&FaultEvent> = r.faults.iter().filter(|f| f.kind == "cut").collect();
                if !cuts.is_empty() {
                    let rec: Vec<u64> = cuts.iter().filter_map(|f| f.timing.reconnect_ms).collect();
                    let _ = writeln!(
                        md,
                        "- {} link cuts (down 0.2–1.2 s each); the device was back online after {:.0} ms on average, {} ms at most.",
                        cuts.len(),
                        rec.iter().sum::<u64>() as f64 / rec.len().max(1) as f64,
                        rec.iter().max().copied().unwrap_or(0)
                    );
                }
                for f in r.faults.iter().filter(|f| f.kind == "kill") {
                    let after = r
                        .tasks
                        .iter()
                        .position(|t| t.id == f.task)
                        .map_or(0, |i| r.tasks.len() - i - 1);
                    let _ = writeln!(
                        md,
                        "- `{}` was killed during task `{}` and never came back ({} tasks ran after it).",
                        f.device, f.task, after
                    );
                }
                let _ = writeln!(
                    md,
                    "- {} retries, {} re-placements on another device, {} attempts lost or timed out; {} tasks recovered from a failed attempt and passed{}.",
                    s.retries,
                    s.replacements,
                    s.lost,
                    s.recovered_tasks,
                    match (s.timing.recovery_mean_ms, s.timing.recovery_max_ms) {
                        (Some(m), Some(x)) =>
                            format!(" (recovery: {m:.0} ms on average, {x} ms at most)"),
                        _ => String::new(),
                    }
                );
                let _ = writeln!(
                    md,
                    "- orchestrator counters over the pass: {}",
                    r.counters
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let _ = writeln!(md, "\n## Tasks that did not pass\n");
        let mut any = false;
        for r in &self.runs {
            let failed: Vec<&TaskResult> = r
                .tasks
                .iter()
                .filter(|t| !t.success && t.outcome != "unsupported")
                .collect();
            let unsupported = r
                .tasks
                .iter()
                .filter(|t| t.outcome == "unsupported")
                .count();
            if unsupported > 0 {
                any = true;
                let _ = writeln!(
                    md,
                    "- {}: {} tasks not submitted because the rules grammar cannot express them \
                     (`rules = \"unsupported\"` in the task file; each says why).",
                    r.mode, unsupported
                );
            }
            for t in failed {
                any = true;
                let why = if !t.failed_checks.is_empty() {
                    t.failed_checks
                        .iter()
                        .map(|v| format!("{} — {}", v.check, v.detail))
                        .collect::<Vec<_>>()
                        .join("; ")
                } else {
                    t.note.clone()
                };
                let _ = writeln!(
                    md,
                    "- {}: `{}/{}` ({}{}): {}",
                    r.mode,
                    t.category,
                    t.id,
                    t.outcome,
                    if t.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", t.errors.join(", "))
                    },
                    escape_md(&why)
                );
            }
        }
        if !any {
            let _ = writeln!(md, "None: every task passed all its checkers.");
        }
        let u = UFO3;
        let par = self
            .runs
            .iter()
            .find(|r| r.mode == "parallel")
            .or(self.runs.first());
        if let Some(p) = par {
            let s = &p.summary;
            let _ = writeln!(md, "\n## Beside UFO³'s published figures\n");
            let _ = writeln!(
                md,
                "| | UFO³ (paper) | this run ({}) |\n|---|---|---|\n\
                 | tasks / devices / categories | {} / {} / {} | {} / 5 / {} |\n\
                 | subtask completion | {} | {} |\n| task success | {} | {} |\n\
                 | average parallel width | {:.2} | {:.2} observed, {:.2} in the graphs |\n\
                 | latency vs sequential | {} lower | {} |\n",
                p.mode,
                u.tasks,
                u.machines,
                u.categories,
                self.tasks,
                self.categories.len(),
                pct(u.subtask_completion),
                pct(s.subtask_completion),
                pct(u.task_success),
                pct(s.success_rate),
                u.parallel_width,
                s.timing.width_avg,
                s.graph_width_avg,
                pct(u.latency_reduction),
                self.timing
                    .as_ref()
                    .map(|c| lower_or_higher(c.reduction_total))
                    .unwrap_or_else(|| "(run with --mode both)".into())
            );
            let _ = writeln!(
                md,
                "Not like for like: UFO³'s agents are LLMs acting on real desktops and phones, its \
                 55 tasks are not public, and its latencies are dominated by model calls. Here the \
                 devices' apps are simulated with modelled times, checkers read the devices' final \
                 state, and the planner is `{}`. See bench-tasks/results/README.md.",
                self.planner
            );
        }
        md
    }

    /// Two bar charts: success per category (one bar per mode), and mean latency per category
    /// (parallel against sequential).
    pub fn svg(&self) -> String {
        let cats = &self.categories;
        let colors = ["#3b7dd8", "#e08a2c", "#5aa469"];
        let (w, row, left) = (900.0, 22.0, 170.0);
        let bar_w = w - left - 80.0;
        let n_modes = self.runs.len().max(1) as f64;
        let panel_h = cats.len() as f64 * row * n_modes + cats.len() as f64 * 8.0 + 40.0;
        let total_h = 60.0 + panel_h * 2.0 + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{total_h}" viewBox="0 0 {w} {total_h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="16" font-weight="bold">weft-bench: planner {}, faults {}, seed {}</text>"#,
            esc(&self.planner),
            esc(&self.faults),
            self.seed
        );
        for (k, r) in self.runs.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="43">{}</text>"#,
                left + k as f64 * 120.0,
                colors[k % colors.len()],
                left + k as f64 * 120.0 + 16.0,
                esc(&r.mode)
            );
        }
        let max_latency = self
            .runs
            .iter()
            .flat_map(|r| &r.categories)
            .map(|c| c.summary.timing.latency_mean_ms)
            .fold(1.0_f64, f64::max);
        for (panel, title) in [
            (0, "task success per category (%)"),
            (1, "mean end-to-end latency per category (ms)"),
        ] {
            let top = 60.0 + panel as f64 * panel_h;
            let _ = writeln!(
                s,
                r#"<text x="10" y="{}" font-size="14" font-weight="bold">{title}</text>"#,
                top + 16.0
            );
            let mut y = top + 28.0;
            for c in cats {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                    left - 8.0,
                    y + row * n_modes / 2.0 + 4.0,
                    esc(c)
                );
                for (k, r) in self.runs.iter().enumerate() {
                    let Some(cs) = r.categories.iter().find(|x| &x.category == c) else {
                        continue;
                    };
                    let (value, label) = if panel == 0 {
                        (
                            cs.summary.success_rate,
                            format!("{:.0} %", cs.summary.success_rate * 100.0),
                        )
                    } else {
                        (
                            cs.summary.timing.latency_mean_ms / max_latency,
                            format!("{:.0} ms", cs.summary.timing.latency_mean_ms),
                        )
                    };
                    let len = (value.clamp(0.0, 1.0) * bar_w).max(1.0);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{left}" y="{:.1}" width="{len:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                        y,
                        row - 4.0,
                        colors[k % colors.len()],
                        left + len + 4.0,
                        y + row - 9.0,
                        esc(&label)
                    );
                    y += row;
                }
                y += 8.0;
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// `31.0 % lower`, or `12.0 % higher` for a negative reduction.
pub fn lower_or_higher(reduction: f64) -> String {
    if reduction >= 0.0 {
        format!("{:.1} % lower", reduction * 100.0)
    } else {
        format!("{:.1} % higher", -reduction * 100.0)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::task::default_suite;

    #[test]
    fn failures_are_counted_by_kind_and_partial_credit_averages_over_tasks() {
        let suite = Suite::load(&default_suite()).unwrap();
        let mut results: Vec<TaskResult> = suite.tasks[..5].iter().map(TaskResult::new).collect();
        let outcomes = ["ran", "planner_error", "no_plan", "error", "not_run"];
        for (r, o) in results.iter_mut().zip(outcomes) {
            r.outcome = o.into();
            r.note = format!("because {o}");
        }
        // The one that ran: half its checkers held (or its only one).
        let r = &mut results[0];
        r.checks_passed = r.checks_total.div_ceil(2);
        let credit = f64::from(r.checks_passed) / f64::from(r.checks_total);
        let run = ModeRun::new("parallel", results, vec![], BTreeMap::new());
        let s = &run.summary;
        assert_eq!((s.submitted, s.planner_failed, s.run_errors), (1, 2, 2));
        assert_eq!(s.check_credit, round3(credit / 5.0));
        let total: u32 = s.checks_by_kind.values().map(|t| t.total).sum();
        assert_eq!(total, s.checks_total);

        let opts = RunOptions {
            suite: default_suite(),
            planner: crate::suite::PlannerKind::Reference,
            llm: Default::default(),
            mode: crate::suite::Mode::Parallel,
            faults: crate::suite::Faults::None,
            seed: 1,
            filter: vec![],
            latency_scale: 1.0,
            fail_rate: None,
            agent_bin: "weft-bench".into(),
            task_timeout: std::time::Duration::from_secs(1),
            keep_dir: None,
            command: "test".into(),
        };
        let mut report = Report::new(&opts, &suite, vec![run]);
        report.aborted = Some("the sequential pass could not start".into());
        let md = report.markdown();
        assert!(
            md.contains("**The run stopped before its end:** the sequential pass"),
            "{md}"
        );
        assert!(
            md.contains("(planner_error): because planner_error"),
            "{md}"
        );
        assert!(md.contains("(not_run): because not_run"), "{md}");
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn refusal_tasks_count_in_success_and_stay_out_of_graph_figures() {
        let suite = Suite::load(&default_suite()).unwrap();
        let refusal = suite.tasks.iter().find(|t| t.expects_refusal()).unwrap();
        let ordinary = suite.tasks.iter().find(|t| !t.expects_refusal()).unwrap();
        let ran = |t: &TaskFile, success: bool, width: f64, ms: u64| {
            let mut r = TaskResult::new(t);
            r.outcome = "ran".into();
            r.success = success;
            r.checks_passed = if success { r.checks_total } else { 0 };
            (r.subtasks, r.subtasks_completed, r.graph_width) = (2, 1, width);
            r.timing.latency_ms = ms;
            r
        };
        // Refused by the planner; a plan that ran on a refusal task; an ordinary task.
        let mut refused = TaskResult::new(refusal);
        assert_eq!(refused.checks_total, 2);
        assert_eq!(refused.checks_by_kind.len(), 2);
        refused.outcome = "refused".into();
        refused.success = true;
        refused.checks_passed = 2;
        let results = vec![
            refused,
            ran(refusal, false, 5.0, 900),
            ran(ordinary, true, 2.0, 100),
        ];
        let s = Summary::of(&results.iter().collect::<Vec<_>>());
        assert_eq!((s.tasks, s.succeeded, s.submitted), (3, 2, 2));
        assert_eq!((s.refusal_tasks, s.refusals_held, s.refused), (2, 1, 1));
        // Of the two submitted, one succeeded; the refusal task that ran has no graph figures.
        assert_eq!(s.success_rate_submitted, 0.5);
        assert_eq!((s.subtasks, s.subtasks_completed), (2, 1));
        assert_eq!(s.graph_width_avg, 2.0);
        assert_eq!(s.timing.latency_total_ms, 100);
        let par = ModeRun::new("parallel", results.clone(), vec![], BTreeMap::new());
        let seq = ModeRun::new("sequential", results, vec![], BTreeMap::new());
        let c = Comparison::of(&par, &seq).unwrap();
        assert_eq!(c.tasks_compared, 1);
    }
}
