//! `weft-bench`: the cross-device benchmark suite. See docs/bench.md.
//!
//! ```text
//! weft-bench run                                   # every task, reference plans, parallel
//! weft-bench run --planner rules --mode both --out results/rules
//! weft-bench run --faults transient --filter file-sync,monitoring
//! weft-bench run --planner http://127.0.0.1:8000/plan   # an external planner (docs/bench.md)
//! weft-bench run --planner 'exec:python3 planner.py --stdio' --seeds 1,2,3
//! weft-bench compare results/a results/b --out compare.md
//! weft-bench list                                  # the suite, per category
//! weft-bench generate                              # rewrite the task files
//! weft-bench agent --config FILE                   # a device agent (as `weft agent`)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weft_bench::suite::compare::{self, Seeds};
use weft_bench::suite::external::{External, Source};
use weft_bench::suite::progress::Progress;
use weft_bench::suite::task::default_suite;
use weft_bench::suite::{self, Faults, LlmSettings, Mode, PlannerKind, Report, RunOptions, Suite};

#[derive(Debug, Parser)]
#[command(
    name = "weft-bench",
    version,
    about = "The cross-device benchmark suite: runs every task against an orchestrator and five \
             simulated devices (real agent processes) and scores the devices' final state"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the suite and write report.json, report.md and chart.svg.
    Run(RunArgs),
    /// Several runs side by side: reads DIR/report.json of each (a `--seeds` directory stands
    /// for its seed-N/ runs) and prints Markdown tables.
    Compare {
        /// Run directories (each with a report.json, or seed-*/report.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Also write the Markdown to this file, and a bar chart of task success per category
        /// beside it (same name, .svg).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the suite's tasks per category, with what the rules grammar can express.
    List {
        #[arg(long)]
        suite: Option<PathBuf>,
    },
    /// Write the task files from the generator (bench-tasks/src/suite/generate/).
    Generate {
        /// Where to write them [default: the suite in this source tree].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only check that the files are what the generator writes; exit 1 if not.
        #[arg(long)]
        check: bool,
    },
    /// Run a device agent (the same program as `weft agent`); the runner starts these.
    Agent(weft_agent::cli::Args),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The suite's directory [default: bench-tasks/tasks].
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Where the graphs come from: `reference` (the task files' plans), `rules` (the rules
    /// planner, given the rules-grammar requests), `llm` (the orchestrator's LLM planner, given
    /// the natural-language requests), `http://HOST:PORT/PATH` or `exec:CMD` (an external
    /// planner: docs/bench.md) [default: reference].
    #[arg(long, value_parser = parse_planner)]
    planner: Option<PlannerKind>,
    /// Pre-made plans: DIR/ID.json for each task, a graph or {"refuse": "why"}; a task
    /// without a file fails `no_plan`.
    #[arg(long, conflicts_with = "planner")]
    plans: Option<PathBuf>,
    /// Longest one call to an external planner may take, in seconds (a child process is
    /// killed then).
    #[arg(long, default_value_t = 600)]
    planner_timeout_secs: u64,
    /// Longest `POST /v1/requests` may take, in seconds: the orchestrator's planner plans
    /// inside it (other REST calls time out after 30 s).
    #[arg(long, default_value_t = 1800)]
    submit_timeout_secs: u64,
    /// With --planner llm: answer from this recorded cassette, no network.
    #[arg(long)]
    llm_replay: Option<PathBuf>,
    /// With --planner llm: record every exchange to this cassette.
    #[arg(long, conflicts_with = "llm_replay")]
    llm_record: Option<PathBuf>,
    /// With --planner llm: the OpenAI-compatible API root (key in WEFT_LLM_API_KEY).
    #[arg(long)]
    llm_base_url: Option<String>,
    /// With --planner llm: the model [default: weft-bench].
    #[arg(long)]
    llm_model: Option<String>,
    /// parallel (as planned), sequential (the same tasks chained), or both, compared.
    #[arg(long, value_enum, default_value_t = Mode::Parallel)]
    mode: Mode,
    /// none, transient (links cut and restored, executors failing some attempts) or
    /// permanent (a device killed mid-run, never back).
    #[arg(long, value_enum, default_value_t = Faults::None)]
    faults: Faults,
    /// Seeds the devices' modelled times, their transient failures and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run once per seed (OUT/seed-N/), then write the mean ± sd of task success (overall and
    /// per category) to OUT/seeds.md and OUT/seeds.json.
    #[arg(long, value_delimiter = ',', conflicts_with = "seed")]
    seeds: Vec<u64>,
    /// Only these categories or task ids (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    filter: Vec<String>,
    /// Where to write the report.
    #[arg(long, default_value = "weft-bench-report")]
    out: PathBuf,
    /// Multiplies the simulated devices' modelled times (0: no waiting).
    #[arg(long, default_value_t = 1.0)]
    latency_scale: f64,
    /// Share of attempts the simulated executors fail [default: 0.15 with --faults transient,
    /// else 0].
    #[arg(long)]
    fail_rate: Option<f64>,
    /// The program that runs an agent as `PROGRAM agent --config FILE` (`weft`, or this
    /// program) [default: this program].
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Longest one task may take, in seconds, before it is cancelled.
    #[arg(long, default_value_t = 120)]
    task_timeout_secs: u64,
    /// Keep the databases, agent logs, device workdirs and each request as it ended
    /// (`MODE/requests/ID.json`) under this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The command line as typed, for the report.
fn command_line() -> String {
    let mut args = std::env::args();
    let _ = args.next();
    std::iter::once("weft-bench".to_owned())
        .chain(args.map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_planner(s: &str) -> Result<PlannerKind, String> {
    s.parse()
}

async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let agent_bin = match a.agent_bin {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let mut planner = match (a.planner, a.plans) {
        (_, Some(dir)) => PlannerKind::External(External::new(Source::Plans(dir))),
        (Some(p), None) => p,
        (None, None) => PlannerKind::Reference,
    };
    if let PlannerKind::External(e) = &mut planner {
        e.timeout = Duration::from_secs(a.planner_timeout_secs.max(1));
    }
    let mut opts = RunOptions {
        suite: a.suite.unwrap_or_else(default_suite),
        planner,
        llm: LlmSettings {
            replay: a.llm_replay,
            record: a.llm_record,
            base_url: a.llm_base_url,
            model: a.llm_model,
            submit_timeout: Some(Duration::from_secs(a.submit_timeout_secs.max(1))),
        },
        mode: a.mode,
        faults: a.faults,
        seed: a.seed,
        filter: a.filter,
        latency_scale: a.latency_scale,
        fail_rate: a.fail_rate,
        agent_bin,
        task_timeout: Duration::from_secs(a.task_timeout_secs.max(1)),
        keep_dir: a.keep,
        command: command_line(),
    };
    if let Some(r) = opts.fail_rate
        && !(0.0..=1.0).contains(&r)
    {
        bail!("--fail-rate must be between 0 and 1");
    }
    let mut progress = Progress::new(!a.quiet);
    if a.seeds.is_empty() {
        let report = suite::run(&opts, &mut progress).await?;
        return Ok(finish(&report, &a.out));
    }
    let keep = opts.keep_dir.clone();
    let mut reports = Vec::new();
    let mut failed = BTreeMap::new();
    let mut code = 0;
    for &seed in &a.seeds {
        opts.seed = seed;
        opts.keep_dir = keep.as_ref().map(|d| d.join(format!("seed-{seed}")));
        let dir = a.out.join(format!("seed-{seed}"));
        println!("seed {seed}:");
        match suite::run(&opts, &mut progress).await {
            Ok(report) => {
                code = code.max(finish(&report, &dir));
                reports.push(report);
            }
            Err(e) => {
                eprintln!("weft-bench: seed {seed}: {e:#}");
                failed.insert(seed, format!("{e:#}"));
                code = 2;
            }
        }
    }
    if reports.is_empty() {
        bail!("no seed made a report");
    }
    let seeds = Seeds::of(&reports, failed);
    seeds.write(&a.out)?;
    for m in &seeds.modes {
        println!(
            "{} over seeds {:?}: task success {}, check credit {}",
            m.mode,
            seeds.seeds,
            m.task_success.pct(),
            m.check_credit.pct()
        );
    }
    println!("over seeds: {}", a.out.join("seeds.md").display());
    Ok(code)
}

/// Writes `report` to `out` and prints its figures; 2 when the run stopped early.
fn finish(report: &Report, out: &Path) -> i32 {
    if let Err(e) = report.write(out) {
        eprintln!("weft-bench: writing the report to {}: {e:#}", out.display());
        return 2;
    }
    for r in &report.runs {
        let s = &r.summary;
        println!(
            "{}: {}/{} tasks passed ({:.1} %), check credit {:.1} %, subtask completion {:.1} %, parallel width {:.2} avg / {} max, mean latency {:.0} ms{}",
            r.mode,
            s.succeeded,
            s.tasks,
            s.success_rate * 100.0,
            s.check_credit * 100.0,
            s.subtask_completion * 100.0,
            s.timing.width_avg,
            s.timing.width_max,
            s.timing.latency_mean_ms,
            if s.planner_failed + s.run_errors > 0 {
                format!(
                    "; {} planner failures, {} runner errors",
                    s.planner_failed, s.run_errors
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(c) = &report.timing {
        println!(
            "latency parallel vs sequential: {} ({} tasks)",
            weft_bench::suite::report::lower_or_higher(c.reduction_total),
            c.tasks_compared
        );
    }
    println!("report: {}", out.join("report.md").display());
    match &report.aborted {
        Some(why) => {
            eprintln!("weft-bench: the run stopped early: {why}");
            2
        }
        None => 0,
    }
}

fn compare_runs(dirs: &[PathBuf], out: Option<&Path>) -> anyhow::Result<i32> {
    let runs = compare::load(dirs)?;
    let cols = compare::columns(&runs);
    let md = compare::markdown(&cols);
    print!("{md}");
    if let Some(out) = out {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &md)?;
        let svg = out.with_extension("svg");
        std::fs::write(&svg, compare::svg(&cols))?;
        eprintln!("wrote {} and {}", out.display(), svg.display());
    }
    Ok(0)
}

fn list(suite: Option<PathBuf>) -> anyhow::Result<i32> {
    let suite = Suite::load(&suite.unwrap_or_else(default_suite))?;
    println!("{} tasks in {}", suite.tasks.len(), suite.root.display());
    println!(
        "{:<18} {:>6} {:>14} {:>12}",
        "category", "tasks", "rules grammar", "to refuse"
    );
    let row = |name: &str, tasks: &[&suite::TaskFile]| {
        let rules = tasks.iter().filter(|t| t.rules_supported()).count();
        let refuse = tasks.iter().filter(|t| t.expects_refusal()).count();
        println!("{name:<18} {:>6} {rules:>14} {refuse:>12}", tasks.len());
    };
    for c in suite.categories() {
        let tasks: Vec<_> = suite.tasks.iter().filter(|t| t.category == c).collect();
        row(&c, &tasks);
    }
    row("total", &suite.tasks.iter().collect::<Vec<_>>());
    Ok(0)
}

fn generate(out: Option<PathBuf>, check: bool) -> anyhow::Result<i32> {
    let root = out.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tasks"));
    if check {
        let problems = suite::generate::diff(&root)?;
        if problems.is_empty() {
            println!("{} is what the generator writes", root.display());
            return Ok(0);
        }
        for p in problems {
            eprintln!("{p}");
        }
        return Ok(1);
    }
    let n = suite::generate::write(&root)?;
    println!("wrote {n} task files under {}", root.display());
    Ok(0)
}

/// The first SIGINT or SIGTERM: its name, and the exit code a shell gives it (128 + its number).
#[cfg(unix)]
async fn stop_signal() -> (&'static str, i32) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    }
}

#[cfg(not(unix))]
async fn stop_signal() -> (&'static str, i32) {
    match tokio::signal::ctrl_c().await {
        Ok(()) => ("Ctrl-C", 130),
        Err(_) => std::future::pending().await,
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Agent(args) => {
            init_tracing("info");
            weft_agent::cli::run(args).await
        }
        Cmd::Run(a) => {
            // The orchestrator runs in this process: only its errors, not its chatter.
            init_tracing("error");
            tokio::select! {
                r = run(a) => r,
                (name, code) = stop_signal() => {
                    // Dropping the run drops its device agents, which are killed on drop: a
                    // signal's default action would leave them running without a parent.
                    eprintln!("weft-bench: {name}: stopped; the device agents are stopped too");
                    Ok(code)
                }
            }
        }
        Cmd::Compare { dirs, out } => compare_runs(&dirs, out.as_deref()),
        Cmd::List { suite } => list(suite),
        Cmd::Generate { out, check } => generate(out, check),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("weft-bench: {e:#}");
            std::process::exit(2);
        }
    }
}
