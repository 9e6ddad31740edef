//! The runner: every task of the suite, one after another, against a fresh world per mode;
//! each scored by its checkers on the devices' final state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use weft_orchestrator::config::{LlmOptions, PlannerChoice};
use weft_planner::llm::CassetteMode;
use weft_planner::{DeviceInfo, RulesPlanner, Target};
use weft_protocol::rest::{
    DeviceStatus, EdgeView, GraphSpec, RequestView, SubmitRequest, TaskSpec,
};
use weft_protocol::{FilesSpec, RequestStatus};

use super::api::{self, Submitted};
use super::check::{self, Verdict};
use super::devices;
use super::env::{Env, EnvOptions};
use super::external::{Answer, External, Failure, PlanInput, PlannerDevice, Source};
use super::progress::Progress;
use super::report::{FaultEvent, ModeRun, Report, TaskResult, TaskTiming, check_kind};
use super::task::{Suite, TaskFile};
use super::{guard, measure};

/// Where a task's graph comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannerKind {
    /// The task file's reference plan, submitted as a graph (the suite's self-check).
    Reference,
    /// The rules planner, given the task's rules-grammar request.
    Rules,
    /// The LLM planner, given the natural-language request.
    Llm,
    /// A planner outside weft (an HTTP endpoint, a child process, or a directory of plans),
    /// given the natural-language request and the devices; its graph is submitted.
    External(External),
}

impl PlannerKind {
    /// `reference`, `rules`, `llm` or `external`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlannerKind::Reference => "reference",
            PlannerKind::Rules => "rules",
            PlannerKind::Llm => "llm",
            PlannerKind::External(_) => "external",
        }
    }

    /// As the report names it: the kind, or an external planner as it was given.
    pub fn label(&self) -> String {
        match self {
            PlannerKind::External(e) => e.source.label(),
            k => k.as_str().to_owned(),
        }
    }
}

impl std::str::FromStr for PlannerKind {
    type Err = String;

    /// `reference`, `rules`, `llm`, `http://HOST:PORT/PATH` or `exec:CMD`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(PlannerKind::Reference),
            "rules" => Ok(PlannerKind::Rules),
            "llm" => Ok(PlannerKind::Llm),
            _ => Source::parse(s)
                .map(|src| PlannerKind::External(External::new(src)))
                .ok_or_else(|| {
                    format!(
                        "`{s}`: expected reference, rules, llm, http://HOST:PORT/PATH or exec:CMD"
                    )
                }),
        }
    }
}

/// How the tasks of one request are allowed to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// As planned: independent tasks run at once.
    Parallel,
    /// The same tasks chained one after another (extra `completion` edges).
    Sequential,
    /// Parallel, then sequential, on the same seed, compared.
    Both,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Parallel => "parallel",
            Mode::Sequential => "sequential",
            Mode::Both => "both",
        }
    }
}

/// Faults injected while the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Faults {
    None,
    /// Links cut and restored during tasks (seeded), and executors failing a share of attempts
    /// (`sim_transient`, seeded).
    Transient,
    /// One device killed in the middle of a task, never back (seeded).
    Permanent,
}

impl Faults {
    pub fn as_str(self) -> &'static str {
        match self {
            Faults::None => "none",
            Faults::Transient => "transient",
            Faults::Permanent => "permanent",
        }
    }
}

/// The LLM planner's settings (passed to the orchestrator's planner as `weft serve` would),
/// and how long a submission may take.
#[derive(Debug, Clone, Default)]
pub struct LlmSettings {
    pub replay: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// How long `POST /v1/requests` may take (the orchestrator plans inside it); `None`:
    /// [`api::SUBMIT_TIMEOUT`]. Other REST calls keep [`api::CALL_TIMEOUT`].
    pub submit_timeout: Option<Duration>,
}

/// Everything `weft-bench run` was asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub suite: PathBuf,
    pub planner: PlannerKind,
    pub llm: LlmSettings,
    pub mode: Mode,
    pub faults: Faults,
    pub seed: u64,
    pub filter: Vec<String>,
    /// Multiplies the simulated devices' modelled times.
    pub latency_scale: f64,
    /// Share of attempts the sim executors fail; `None`: 0.15 with transient faults, else 0.
    pub fail_rate: Option<f64>,
    /// `PROGRAM agent --config FILE` runs an agent.
    pub agent_bin: PathBuf,
    /// Longest one task may take before it is cancelled and counted failed.
    pub task_timeout: Duration,
    /// Keep the world's files (databases, agent logs, device workdirs) under this directory.
    pub keep_dir: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
}

impl RunOptions {
    pub fn fail_rate(&self) -> f64 {
        self.fail_rate.unwrap_or(match self.faults {
            Faults::Transient => 0.15,
            _ => 0.0,
        })
    }

    fn planner_choice(&self) -> anyhow::Result<PlannerChoice> {
        if self.planner != PlannerKind::Llm {
            return Ok(PlannerChoice::Rules);
        }
        let l = &self.llm;
        let model = l.model.clone().unwrap_or_else(|| "weft-bench".into());
        let base = match (&l.base_url, &l.replay) {
            (Some(u), _) => u.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => bail!(
                "--planner llm needs --llm-replay FILE (a recorded cassette) or --llm-base-url URL \
                 with --llm-model NAME"
            ),
        };
        let mut o = LlmOptions::new(base, model);
        // The suite scores plans, and a revision's prompt holds the graph as it stood when a
        // task ended, which depends on which of two parallel tasks ended first: with
        // revisions, a recorded cassette would not replay.
        o.revise_rounds = 0;
        // A small model on a CPU takes minutes for a long plan.
        o.planner.client.timeout = std::time::Duration::from_secs(600);
        o.planner.client.cassette = match (&l.record, &l.replay) {
            (Some(r), _) => CassetteMode::Record(r.clone()),
            (None, Some(p)) => {
                if !p.is_file() {
                    bail!("--llm-replay {}: no such file", p.display());
                }
                CassetteMode::Replay(p.clone())
            }
            (None, None) => CassetteMode::Off,
        };
        o.planner.client.api_key = std::env::var("WEFT_LLM_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| weft_planner::llm::Secret::new(k.trim()));
        Ok(PlannerChoice::Llm(Box::new(o)))
    }
}

/// SplitMix64: the seeded choices of the fault schedule.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(b.wrapping_mul(0xd1b5_4a32_d192_ed03));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fault planned for one task. Its victim is drawn (`pick`) from the devices of the plan
/// that was submitted for the task, whoever planned it: see [`victims`].
#[derive(Debug, Clone, PartialEq)]
enum Planned {
    Cut {
        pick: u64,
        after: Duration,
        down: Duration,
    },
    /// Armed at its task: it strikes during that task, or the first one after it that is
    /// submitted.
    Kill { pick: u64, after: Duration },
}

impl Planned {
    fn after(&self) -> Duration {
        match self {
            Planned::Cut { after, .. } | Planned::Kill { after, .. } => *after,
        }
    }

    fn pick(&self) -> u64 {
        match self {
            Planned::Cut { pick, .. } | Planned::Kill { pick, .. } => *pick,
        }
    }
}

/// The seeded fault schedule for a pass of `n` tasks: what happens during which task (by
/// index), and when. Which device it strikes depends on the plan submitted for that task.
fn fault_schedule(faults: Faults, seed: u64, n: usize) -> BTreeMap<usize, Planned> {
    let mut plan = BTreeMap::new();
    match faults {
        Faults::None => {}
        Faults::Transient => {
            for i in 0..n {
                let r = |k| mix(seed, i as u64, k);
                if r(1) % 100 < 40 {
                    plan.insert(
                        i,
                        Planned::Cut {
                            pick: r(2),
                            after: Duration::from_millis(20 + r(3) % 400),
                            down: Duration::from_millis(200 + r(4) % 1000),
                        },
                    );
                }
            }
        }
        Faults::Permanent => {
            let n = n as u64;
            if n > 0 {
                let i = (n / 3 + mix(seed, 0, 1) % (n / 3).max(1)).min(n - 1) as usize;
                plan.insert(
                    i,
                    Planned::Kill {
                        pick: mix(seed, 0, 2),
                        after: Duration::from_millis(30 + mix(seed, 0, 3) % 200),
                    },
                );
            }
        }
    }
    plan
}

/// The devices a fault may strike during a submitted request, sorted: those its tasks are
/// bound to (named in the plan, whoever planned it), and every device of a kind that a task of
/// the submitted graph is placed by.
fn victims(view: &RequestView, graph: Option<&GraphSpec>) -> Vec<String> {
    let mut d: Vec<String> = view
        .tasks
        .iter()
        .filter_map(|t| t.device.as_ref().map(|d| d.as_str().to_owned()))
        .collect();
    for t in graph.map(|g| g.tasks.as_slice()).unwrap_or_default() {
        if let (None, Some(kind)) = (&t.device, &t.device_kind) {
            d.extend(
                devices::all()
                    .iter()
                    .filter(|x| x.kind == kind)
                    .map(|x| x.name.to_owned()),
            );
        }
    }
    d.sort();
    d.dedup();
    d
}

/// A rules plan as a graph to submit, with the files its tasks send and take (a `copy`).
fn graph_of(plan: &weft_planner::Plan) -> GraphSpec {
    let files = |names: &[String]| {
        (!names.is_empty()).then(|| FilesSpec {
            files: names.to_vec(),
        })
    };
    GraphSpec {
        tasks: plan
            .tasks
            .iter()
            .map(|t| TaskSpec {
                id: t.id.clone(),
                title: t.title.clone(),
                instruction: t.instruction.clone(),
                action: t.action.clone(),
                device: match &t.target {
                    Target::Device(d) => Some(d.clone()),
                    _ => None,
                },
                device_kind: match &t.target {
                    Target::Kind(k) => Some(k.clone()),
                    _ => None,
                },
                capabilities: t.capabilities.clone(),
                retry: None,
                max_turns: t.max_turns,
                inputs: files(&t.inputs),
                outputs: files(&t.outputs),
            })
            .collect(),
        edges: plan
            .edges
            .iter()
            .map(|e| EdgeView {
                from: e.from.clone(),
                to: e.to.clone(),
                kind: e.kind,
                condition: e.condition.clone(),
            })
            .collect(),
    }
}

/// The graph a finished request ran (ids and edges only), for its structural width.
fn graph_of_view(view: &RequestView) -> GraphSpec {
    GraphSpec {
        tasks: view
            .tasks
            .iter()
            .map(|t| TaskSpec {
                id: t.id.clone(),
                title: String::new(),
                instruction: String::new(),
                action: None,
                device: None,
                device_kind: None,
                capabilities: vec![],
                retry: None,
                max_turns: None,
                inputs: None,
                outputs: None,
            })
            .collect(),
        edges: view.edges.clone(),
    }
}

/// After this many tasks in a row fail for the runner's own reasons (not the planner's), the
/// world is taken to be broken and the pass stops; the tasks left are reported `not_run`.
const RUNNER_ERRORS_IN_A_ROW: u32 = 3;

/// Runs the suite as `opts` says and builds the report.
///
/// A task whose planning, submission or waiting fails is scored failed with the reason, and
/// the run goes on. `Err` only for bad options, or when the first world cannot be started
/// (nothing ran); a later set-up failure ends the run with what was done so far, and
/// `Report::aborted` says why.
pub async fn run(opts: &RunOptions, progress: &mut Progress) -> anyhow::Result<Report> {
    if opts.planner == PlannerKind::Llm && opts.mode != Mode::Parallel {
        bail!(
            "--planner llm runs in --mode parallel only: the sequential baseline needs the plan \
             before it is submitted, and the LLM plans inside the orchestrator"
        );
    }
    if !(opts.latency_scale.is_finite() && (0.0..=100.0).contains(&opts.latency_scale)) {
        bail!("--latency-scale must be between 0 and 100");
    }
    if let PlannerKind::External(External {
        source: Source::Plans(dir),
        ..
    }) = &opts.planner
        && !dir.is_dir()
    {
        bail!("--plans {}: no such directory", dir.display());
    }
    let planner = opts.planner_choice()?;
    let suite = Suite::load(&opts.suite)?.filtered(&opts.filter)?;
    if suite.tasks.is_empty() {
        bail!("no task to run in {}", opts.suite.display());
    }
    let modes: Vec<Mode> = match opts.mode {
        Mode::Both => vec![Mode::Parallel, Mode::Sequential],
        m => vec![m],
    };
    let mut runs = Vec::new();
    let mut aborted = None;
    for (k, mode) in modes.iter().enumerate() {
        let env_opts = EnvOptions {
            planner: planner.clone(),
            seed: opts.seed,
            latency_scale: opts.latency_scale,
            fail_rate: opts.fail_rate(),
            agent_bin: opts.agent_bin.clone(),
            queue_timeout: match opts.faults {
                Faults::Permanent => Duration::from_secs(4),
                _ => Duration::from_secs(20),
            },
            keep_dir: opts.keep_dir.as_ref().map(|d| d.join(mode.as_str())),
        };
        let env = match Env::start(&env_opts).await {
            Ok(env) => env,
            Err(e) if runs.is_empty() => return Err(e),
            Err(e) => {
                aborted = Some(format!("the {} pass could not start: {e:#}", mode.as_str()));
                break;
            }
        };
        progress.start(mode.as_str(), suite.tasks.len(), k + 1, modes.len());
        let (run, stopped) = run_mode(env, opts, &suite, *mode, progress).await;
        progress.finish();
        runs.push(run);
        if let Some(why) = stopped {
            aborted = Some(format!("the {} pass stopped: {why}", mode.as_str()));
            break;
        }
    }
    let mut report = Report::new(opts, &suite, runs);
    report.aborted = aborted;
    Ok(report)
}

/// One pass over the suite in `env`; the reason when it stopped before the end.
async fn run_mode(
    mut env: Env,
    opts: &RunOptions,
    suite: &Suite,
    mode: Mode,
    progress: &mut Progress,
) -> (ModeRun, Option<String>) {
    env.api = env
        .api
        .clone()
        .with_submit_timeout(opts.llm.submit_timeout.unwrap_or(api::SUBMIT_TIMEOUT));
    let schedule = fault_schedule(opts.faults, opts.seed, suite.tasks.len());
    // A kill waits for a task that is submitted.
    let mut armed: Option<Planned> = None;
    let mut tasks = Vec::new();
    let mut faults = Vec::new();
    let mut dead: Vec<String> = Vec::new();
    let metrics_before = env.api.metrics().await.unwrap_or_default();
    let mut stopped = None;
    let mut in_a_row = 0;
    for (i, file) in suite.tasks.iter().enumerate() {
        if let Some(why) = &stopped {
            let mut r = TaskResult::new(file);
            r.outcome = "not_run".into();
            r.note = format!("not run: {why}");
            progress.task(&r.category, &r.id, false);
            tasks.push(r);
            continue;
        }
        if let Some(k @ Planned::Kill { .. }) = schedule.get(&i) {
            armed = Some(k.clone());
        }
        let planned = armed.as_ref().or(schedule.get(&i));
        let (result, fault) = match file.with_web(&env.web_base) {
            Ok(task) => match run_task(&env, &task, opts, mode, planned, &dead).await {
                Ok(done) => done,
                Err(e) => (runner_error(file, &e), None),
            },
            Err(e) => (runner_error(file, &e), None),
        };
        if let Some(f) = fault {
            if f.kind == "kill" {
                dead.push(f.device.clone());
                armed = None;
            }
            faults.push(f);
        }
        if result.outcome == "error" {
            in_a_row += 1;
            if in_a_row >= RUNNER_ERRORS_IN_A_ROW {
                stopped = Some(format!(
                    "{in_a_row} tasks in a row failed in the runner, the last: {}",
                    result.note
                ));
            }
        } else {
            in_a_row = 0;
        }
        progress.task(&result.category, &result.id, result.success);
        tasks.push(result);
    }
    let metrics_after = env.api.metrics().await.unwrap_or_default();
    env.stop().await;
    let delta = |k: &str| {
        metrics_after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(metrics_before.get(k).copied().unwrap_or(0))
    };
    let counters = [
        "weft_attempts_dispatched_total",
        "weft_attempts_retried_total",
        "weft_attempts_lost_total",
        "weft_attempts_reattached_total",
        "weft_attempts_timed_out_total",
        "weft_results_duplicate_total",
    ]
    .into_iter()
    .map(|k| (k.trim_start_matches("weft_").to_owned(), delta(k)))
    .collect();
    (
        ModeRun::new(mode.as_str(), tasks, faults, counters),
        stopped,
    )
}

/// A task the runner itself failed on (not the planner): outcome `error` with the reason.
fn runner_error(task: &TaskFile, e: &anyhow::Error) -> TaskResult {
    let mut r = TaskResult::new(task);
    r.outcome = "error".into();
    r.note = format!("{e:#}");
    r
}

/// What to submit for a task, or why nothing is.
enum Plan {
    Submit(SubmitRequest),
    /// Not submitted: the outcome (`unsupported`, `refused`, `planner_error`, `no_plan`) and
    /// why.
    Not {
        outcome: &'static str,
        note: String,
    },
}

async fn plan_for(
    env: &Env,
    task: &TaskFile,
    opts: &RunOptions,
    mode: Mode,
) -> anyhow::Result<Plan> {
    let seq = mode == Mode::Sequential;
    let graph = |g: GraphSpec| {
        Plan::Submit(SubmitRequest {
            text: task.request.clone(),
            turn_budget: None,
            graph: Some(if seq { measure::sequential(&g) } else { g }),
        })
    };
    Ok(match &opts.planner {
        PlannerKind::Reference if task.expects_refusal() => Plan::Not {
            outcome: "refused",
            note: format!("the reference planner refuses: {}", task.refuse),
        },
        PlannerKind::Reference => graph(task.plan.clone()),
        PlannerKind::Rules if !task.rules_supported() => Plan::Not {
            outcome: "unsupported",
            note: task.rules_note.clone(),
        },
        PlannerKind::Rules if !seq => Plan::Submit(SubmitRequest {
            text: task.rules.clone(),
            turn_budget: None,
            graph: None,
        }),
        PlannerKind::Rules => {
            // The same planner the server runs, here, so that its graph can be chained.
            let devices: Vec<DeviceInfo> = env
                .api
                .devices()
                .await?
                .into_iter()
                .map(|d| DeviceInfo {
                    name: d.name,
                    kind: d.kind,
                    capabilities: d.capabilities,
                    online: d.status == DeviceStatus::Online,
                })
                .collect();
            match RulesPlanner::new().plan_sync(&task.rules, &devices) {
                Ok(plan) => Plan::Submit(SubmitRequest {
                    text: task.rules.clone(),
                    turn_budget: None,
                    graph: Some(measure::sequential(&graph_of(&plan))),
                }),
                Err(e) => Plan::Not {
                    outcome: "refused",
                    note: format!("{}: {e}", e.code()),
                },
            }
        }
        PlannerKind::Llm => Plan::Submit(SubmitRequest {
            text: task.request.clone(),
            turn_budget: None,
            graph: None,
        }),
        PlannerKind::External(ext) => {
            let mut devices: Vec<PlannerDevice> = env
                .api
                .devices()
                .await?
                .into_iter()
                .map(PlannerDevice::from)
                .collect();
            devices.sort_by(|a, b| a.name.cmp(&b.name));
            let input = PlanInput {
                request: task.request.clone(),
                devices,
            };
            match ext.plan(&task.id, &input).await {
                Ok(Answer::Graph(g)) => graph(g),
                Ok(Answer::Refuse(why)) => Plan::Not {
                    outcome: "refused",
                    note: format!("planner refused: {why}"),
                },
                Err(Failure::NoPlan(why)) => Plan::Not {
                    outcome: "no_plan",
                    note: why,
                },
                Err(Failure::Error(why)) => Plan::Not {
                    outcome: "planner_error",
                    note: why,
                },
            }
        }
    })
}

/// Polls a request until it ends; past `timeout` it is cancelled.
async fn wait_done(env: &Env, id: &str, timeout: Duration) -> anyhow::Result<(RequestView, bool)> {
    let until = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        let v = env.api.request(id).await?;
        if v.status.is_terminal() {
            return Ok((v, timed_out));
        }
        if Instant::now() > until {
            if timed_out {
                return Ok((v, true));
            }
            timed_out = true;
            env.api.cancel(id).await.ok();
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Carries out a planned fault on one of `victims` (chosen by its `pick`); returns what
/// happened. With no victim known at submission (every task placed by the orchestrator), the
/// devices the request's attempts have started on by then are the victims; none: no fault.
async fn inject(
    env: &Env,
    planned: &Planned,
    task: &str,
    request: &str,
    mut victims: Vec<String>,
) -> Option<FaultEvent> {
    tokio::time::sleep(planned.after()).await;
    if victims.is_empty()
        && let Ok(v) = env.api.request(request).await
    {
        victims = v
            .tasks
            .iter()
            .flat_map(|t| &t.attempts)
            .map(|a| a.device.as_str().to_owned())
            .collect();
        victims.sort();
        victims.dedup();
    }
    if victims.is_empty() {
        return None;
    }
    let device = victims[(planned.pick() % victims.len() as u64) as usize].as_str();
    Some(match planned {
        Planned::Cut { down, .. } => {
            let cut_at = Instant::now();
            env.cut(device, *down);
            // Until the orchestrator has it online again (the agent reconnects on its own).
            let mut seen_offline = false;
            let limit = *down + Duration::from_secs(30);
            loop {
                let st = env.status(device).await.ok().flatten();
                if st != Some(DeviceStatus::Online) {
                    seen_offline = true;
                } else if seen_offline || cut_at.elapsed() > *down {
                    break;
                }
                if cut_at.elapsed() > limit {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            FaultEvent::new(
                "cut",
                task,
                device,
                Some(cut_at.elapsed().as_millis() as u64),
                Some(down.as_millis() as u64),
            )
        }
        Planned::Kill { .. } => {
            env.kill(device).await;
            FaultEvent::new("kill", task, device, None, None)
        }
    })
}

/// Runs one task and scores it: by its checkers, or, for a task that must be refused, by
/// whether it was refused and nothing changed on any device.
async fn run_task(
    env: &Env,
    task: &TaskFile,
    opts: &RunOptions,
    mode: Mode,
    planned: Option<&Planned>,
    dead: &[String],
) -> anyhow::Result<(TaskResult, Option<FaultEvent>)> {
    env.reset(task)?;
    let before = if task.expects_refusal() {
        Some(env.states()?)
    } else {
        None
    };
    let (mut result, view, fault) = carry_out(env, task, opts, mode, planned, dead).await?;
    if let (Some(_), Some(v)) = (&opts.keep_dir, &view) {
        keep_view(&env.dir, &task.id, v)?;
    }
    if let Some(before) = before {
        score_refusal(
            &mut result,
            view.as_ref(),
            &check::changes(&before, &env.states()?),
        );
    }
    Ok((result, fault))
}

/// With `--keep`: the request as it ended (its graph, each task's action, device, attempts and
/// output) in `DIR/requests/ID.json`, to see what a planner asked for and what each step did.
fn keep_view(dir: &Path, id: &str, view: &RequestView) -> anyhow::Result<()> {
    let dir = dir.join("requests");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(view)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Who refused a task that must be refused, if anyone did: the planner or the orchestrator
/// (outcome `refused`), or a device's policy (a task of the request that ran failed
/// `policy_denied`). A planner that cannot express the request (`unsupported`) or fails did not
/// judge it, and refused nothing.
fn refused_by(result: &TaskResult, view: Option<&RequestView>) -> Option<String> {
    if result.outcome == "refused" {
        return Some(result.note.clone());
    }
    view?.tasks.iter().find_map(|t| {
        let e = t.error.as_ref()?;
        (e.code == weft_agent::policy::POLICY_DENIED).then(|| {
            let on = t.device.as_ref().map_or("a device", |d| d.as_str());
            format!("{on} refused task {}: {}", t.id, e.message)
        })
    })
}

/// Scores a task that must be refused by its two verdicts (`refused`, `unchanged`); one that
/// was neither refused nor submitted (unsupported, a planner failure) scores nothing, as any
/// task not submitted.
fn score_refusal(result: &mut TaskResult, view: Option<&RequestView>, changes: &[String]) {
    if !matches!(result.outcome.as_str(), "refused" | "ran" | "timed_out") {
        return;
    }
    let by = refused_by(result, view);
    let verdicts = check::refusal_verdicts(by.as_deref(), changes);
    for (kind, v) in [check::REFUSED, check::UNCHANGED].iter().zip(&verdicts) {
        if v.passed {
            result
                .checks_by_kind
                .entry((*kind).into())
                .or_default()
                .passed += 1;
        }
    }
    result.success = verdicts.iter().all(|v| v.passed);
    result.checks_passed = verdicts.iter().filter(|v| v.passed).count() as u32;
    result.checks_total = verdicts.len() as u32;
    result.failed_checks = verdicts.into_iter().filter(|v| !v.passed).collect();
    if result.outcome != "refused"
        && let Some(by) = by
    {
        result.note = format!("refused on the device: {by}");
    }
}

/// Plans, submits and waits for one task (in a world already reset for it), with its fault if
/// one is planned; evaluates its checkers. Also returns the request as it ended, when one ran.
async fn carry_out(
    env: &Env,
    task: &TaskFile,
    opts: &RunOptions,
    mode: Mode,
    planned: Option<&Planned>,
    dead: &[String],
) -> anyhow::Result<(TaskResult, Option<RequestView>, Option<FaultEvent>)> {
    let mut result = TaskResult::new(task);
    let body = match plan_for(env, task, opts, mode).await? {
        Plan::Submit(b) => b,
        Plan::Not { outcome, note } => {
            result.outcome = outcome.into();
            result.note = note;
            return Ok((result, None, None));
        }
    };
    if let Some((id, why)) = body.graph.as_ref().and_then(guard::unsafe_task) {
        result.outcome = "blocked".into();
        result.note = format!(
            "not submitted: task {id}: {why}; the devices are processes on the runner's own \
             machine"
        );
        return Ok((result, None, None));
    }
    let view = match env.api.submit(&body).await {
        Ok(Submitted::Accepted(v)) => v,
        Ok(Submitted::Refused { code, message }) => {
            result.outcome = "refused".into();
            result.note = format!("{code}: {message}");
            return Ok((result, None, None));
        }
        // The orchestrator planned inside the call: its failure is the planner's.
        Err(e) if body.graph.is_none() => {
            result.outcome = "planner_error".into();
            result.note = format!("submitting the request: {e:#}");
            return Ok((result, None, None));
        }
        Err(e) => return Err(e.context("submitting the graph")),
    };
    let id = view.id.as_str().to_owned();
    let (done, fault) = match planned {
        Some(p) => {
            let victims = victims(&view, body.graph.as_ref());
            let (done, fault) = tokio::join!(
                wait_done(env, &id, opts.task_timeout),
                inject(env, p, &task.id, &id, victims)
            );
            (done?, fault)
        }
        None => (wait_done(env, &id, opts.task_timeout).await?, None),
    };
    let (view, timed_out) = done;
    env.wait_idle(Duration::from_secs(10)).await?;
    if let Some(FaultEvent { kind, device, .. }) = &fault
        && kind == "cut"
        && !dead.contains(device)
    {
        env.wait_online(&[device.as_str()], Duration::from_secs(30))
            .await
            .context("a device did not come back after its link was cut")?;
    }
    let states = env.states()?;
    let verdicts: Vec<Verdict> = task
        .checks
        .iter()
        .map(|c| c.evaluate(&states, opts.seed))
        .collect();
    let counts = measure::counts(&view);
    let (avg, max) = measure::width(&measure::intervals(&view));
    let recoveries = measure::recoveries(&view);
    result.outcome = if timed_out {
        "timed_out".into()
    } else {
        "ran".into()
    };
    result.request_status = Some(view.status.as_str().to_owned());
    result.success = verdicts.iter().all(|v| v.passed);
    result.checks_passed = verdicts.iter().filter(|v| v.passed).count() as u32;
    result.checks_total = verdicts.len() as u32;
    for (c, v) in task.checks.iter().zip(&verdicts) {
        if v.passed {
            result
                .checks_by_kind
                .entry(check_kind(c))
                .or_default()
                .passed += 1;
        }
    }
    result.failed_checks = verdicts.into_iter().filter(|v| !v.passed).collect();
    result.subtasks = counts.subtasks;
    result.subtasks_completed = counts.completed;
    result.attempts = counts.attempts;
    result.retries = counts.retries;
    result.replacements = counts.replacements;
    result.lost = counts.lost;
    result.errors = counts.errors;
    result.graph_width = (measure::graph_width(&graph_of_view(&view)) * 100.0).round() / 100.0;
    result.turns = view.turns.used;
    result.tokens = view
        .llm
        .map(|l| l.prompt_tokens + l.completion_tokens)
        .unwrap_or(0);
    result.timing = TaskTiming {
        latency_ms: view.updated_at_ms.saturating_sub(view.created_at_ms),
        width_avg: (avg * 100.0).round() / 100.0,
        width_max: max,
        recovery_ms: recoveries.iter().max().copied(),
    };
    if view.status != RequestStatus::Succeeded && result.note.is_empty() {
        result.note = view
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.code, e.message))
            .unwrap_or_default();
    }
    Ok((result, Some(view), fault))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_plan_keeps_the_files_a_copy_sends() {
        // The sequential pass submits the rules plan as a graph: a `copy` only works if the
        // sending task still declares its file.
        let devices = crate::suite::devices::infos();
        let plan = RulesPlanner::new()
            .plan_sync(
                "copy docs/a.pdf from windows-laptop to mac-laptop",
                &devices,
            )
            .unwrap();
        let graph = graph_of(&plan);
        assert_eq!(
            graph.tasks[0].outputs,
            Some(FilesSpec {
                files: vec!["docs/a.pdf".into()]
            })
        );
        assert_eq!(
            (&graph.tasks[1].outputs, &graph.tasks[1].inputs),
            (&None, &None)
        );
    }

    #[test]
    fn the_fault_schedule_follows_the_seed() {
        let n = 120;
        let a = fault_schedule(Faults::Transient, 1, n);
        assert_eq!(a, fault_schedule(Faults::Transient, 1, n));
        assert_ne!(a, fault_schedule(Faults::Transient, 2, n));
        assert!(a.len() > n / 5 && a.len() < n * 3 / 5, "{} cuts", a.len());
        let k = fault_schedule(Faults::Permanent, 1, n);
        assert_eq!(k.len(), 1);
        let (i, _) = k.iter().next().unwrap();
        assert!(*i >= n / 3 && *i < 2 * n / 3 + 1);
        assert!(fault_schedule(Faults::None, 1, n).is_empty());
    }
}
