//! `weft-bench`: the cross-device benchmark suite. See docs/bench.md.
//!
//! ```text
//! weft-bench run                                   # every task, reference plans, parallel
//! weft-bench run --planner rules --mode both --out results/rules
//! weft-bench run --faults transient --filter file-sync,monitoring
//! weft-bench list                                  # the suite, per category
//! weft-bench generate                              # rewrite the task files
//! weft-bench agent --config FILE                   # a device agent (as `weft agent`)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weft_bench::suite::progress::Progress;
use weft_bench::suite::task::default_suite;
use weft_bench::suite::{self, Faults, LlmSettings, Mode, PlannerKind, RunOptions, Suite};

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
    /// Where the graphs come from: the task files' reference plans, the rules planner (the
    /// rules-grammar requests) or the LLM planner (the natural-language requests).
    #[arg(long, value_enum, default_value_t = PlannerKind::Reference)]
    planner: PlannerKind,
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
    /// Keep the databases, agent logs and device workdirs under this directory.
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

async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let agent_bin = match a.agent_bin {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let opts = RunOptions {
        suite: a.suite.unwrap_or_else(default_suite),
        planner: a.planner,
        llm: LlmSettings {
            replay: a.llm_replay,
            record: a.llm_record,
            base_url: a.llm_base_url,
            model: a.llm_model,
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
    let report = suite::run(&opts, &mut progress).await?;
    report.write(&a.out)?;
    for r in &report.runs {
        let s = &r.summary;
        println!(
            "{}: {}/{} tasks passed ({:.1} %), subtask completion {:.1} %, parallel width {:.2} avg / {} max, mean latency {:.0} ms",
            r.mode,
            s.succeeded,
            s.tasks,
            s.success_rate * 100.0,
            s.subtask_completion * 100.0,
            s.timing.width_avg,
            s.timing.width_max,
            s.timing.latency_mean_ms
        );
    }
    if let Some(c) = &report.timing {
        println!(
            "latency parallel vs sequential: {} ({} tasks)",
            weft_bench::suite::report::lower_or_higher(c.reduction_total),
            c.tasks_compared
        );
    }
    println!("report: {}", a.out.join("report.md").display());
    Ok(0)
}

fn list(suite: Option<PathBuf>) -> anyhow::Result<i32> {
    let suite = Suite::load(&suite.unwrap_or_else(default_suite))?;
    println!("{} tasks in {}", suite.tasks.len(), suite.root.display());
    println!("{:<18} {:>6} {:>14}", "category", "tasks", "rules grammar");
    for c in suite.categories() {
        let tasks: Vec<_> = suite.tasks.iter().filter(|t| t.category == c).collect();
        let rules = tasks.iter().filter(|t| t.rules_supported()).count();
        println!("{c:<18} {:>6} {:>14}", tasks.len(), rules);
    }
    let rules = suite.tasks.iter().filter(|t| t.rules_supported()).count();
    println!("{:<18} {:>6} {:>14}", "total", suite.tasks.len(), rules);
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
            run(a).await
        }
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
