//! The committed runs with a real local model (Qwen2.5-Coder-1.5B-Instruct under llama.cpp) —
//! of the suite, `bench-tasks/results/llm-qwen2.5-coder-1.5b/`, and of the held-out tasks,
//! `…-heldout/` — replayed from their cassettes with no model: every task's plan comes from the
//! recording, runs on real agents, and must score exactly as the committed report says.

use std::path::PathBuf;
use std::time::Duration;

use weft_bench::suite::progress::Progress;
use weft_bench::suite::task::default_suite;
use weft_bench::suite::{Faults, LlmSettings, Mode, PlannerKind, Report, RunOptions, run};

const MODEL: &str = "qwen2.5-coder-1.5b-instruct";

fn dir(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// What a task's score is: its outcome and each check's verdict.
fn scores(r: &Report) -> Vec<String> {
    r.runs[0]
        .tasks
        .iter()
        .map(|t| {
            let failed: Vec<&str> = t.failed_checks.iter().map(|c| c.check.as_str()).collect();
            format!(
                "{} {} {} {}/{} subtasks {}/{} failed {:?}",
                t.id,
                t.outcome,
                t.success,
                t.checks_passed,
                t.checks_total,
                t.subtasks_completed,
                t.subtasks,
                failed
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_llm_run_replays_to_the_committed_scores() {
    replays_as_committed(default_suite(), dir("results/llm-qwen2.5-coder-1.5b"), 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_held_out_run_replays_to_the_committed_scores() {
    replays_as_committed(
        dir("heldout"),
        dir("results/llm-qwen2.5-coder-1.5b-heldout"),
        20,
    )
    .await;
}

/// Replays the cassette of `results` on the tasks of `suite` its report names (at least `min`)
/// and requires the report's scores.
async fn replays_as_committed(suite: PathBuf, results: PathBuf, min: usize) {
    let committed: Report =
        serde_json::from_str(&std::fs::read_to_string(results.join("report.json")).unwrap())
            .unwrap();
    let ids: Vec<String> = committed.runs[0]
        .tasks
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert!(ids.len() >= min, "{} tasks recorded", ids.len());
    let opts = RunOptions {
        suite,
        planner: PlannerKind::Llm,
        llm: LlmSettings {
            replay: Some(results.join("cassette.jsonl")),
            model: Some(MODEL.into()),
            ..LlmSettings::default()
        },
        mode: Mode::Parallel,
        faults: Faults::None,
        seed: 1,
        filter: ids,
        latency_scale: 0.05,
        fail_rate: None,
        agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_weft-bench")),
        task_timeout: Duration::from_secs(60),
        keep_dir: None,
        command: "weft-bench run (replay test)".into(),
    };
    let replayed = run(&opts, &mut Progress::new(false)).await.unwrap();
    // No plan missed the cassette: every answer is the recorded one.
    let missed: Vec<&str> = replayed.runs[0]
        .tasks
        .iter()
        .filter(|t| t.note.contains("llm_cassette_miss"))
        .map(|t| t.id.as_str())
        .collect();
    assert!(missed.is_empty(), "cassette misses: {missed:?}");
    assert_eq!(scores(&replayed), scores(&committed));
    assert_eq!(
        replayed.runs[0].summary.succeeded,
        committed.runs[0].summary.succeeded
    );
}
