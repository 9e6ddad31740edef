//! The benchmark suite end to end, at CI size: a few tasks of different categories against a
//! real orchestrator and five real agent processes (this package's `weft-bench agent`), with
//! the simulated devices' modelled times scaled down.

use std::path::PathBuf;
use std::time::Duration;

use weft_bench::suite::external::{External, Source};
use weft_bench::suite::progress::Progress;
use weft_bench::suite::task::default_suite;
use weft_bench::suite::{Faults, LlmSettings, Mode, PlannerKind, Report, RunOptions, run};

/// Tasks that together use every kind of edge, references, sim apps, HTTP and shell.
const SUBSET: &[&str] = &[
    "sync-02",     // parallel reads, notify after all writes
    "logs-01",     // log.collect on two devices, sort, write
    "cal-10",      // condition edges: the busy branch
    "mon-09",      // http_get, a condition on the body, a completion edge
    "build-02",    // build.run, condition on the status
    "research-08", // a URL taken from an upstream output
    "report-02",   // a task placed by device kind (any laptop)
    "photo-12",    // seeded photos sent as files to two devices, file.copy from {{t1.files…}}
    "refuse-01",   // dangerous: refused, nothing changed
    "refuse-07",   // impossible (a tablet): refused, nothing changed
];

fn options(planner: PlannerKind, filter: &[&str], mode: Mode) -> RunOptions {
    RunOptions {
        suite: default_suite(),
        planner,
        llm: LlmSettings::default(),
        mode,
        faults: Faults::None,
        seed: 7,
        filter: filter.iter().map(|s| (*s).to_owned()).collect(),
        latency_scale: 0.05,
        fail_rate: None,
        agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_weft-bench")),
        task_timeout: Duration::from_secs(60),
        keep_dir: None,
        command: "weft-bench run (test)".into(),
    }
}

fn failures(report: &Report) -> Vec<String> {
    report
        .runs
        .iter()
        .flat_map(|r| {
            r.tasks.iter().filter(|t| !t.success).map(move |t| {
                format!(
                    "{} {}: {} {:?} {:?} {}",
                    r.mode, t.id, t.outcome, t.errors, t.failed_checks, t.note
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_plans_pass_in_parallel_and_sequential() {
    let report = run(
        &options(PlannerKind::Reference, SUBSET, Mode::Both),
        &mut Progress::new(false),
    )
    .await
    .unwrap();
    assert_eq!(failures(&report), Vec::<String>::new());
    let par = &report.runs[0];
    let seq = &report.runs[1];
    assert_eq!(
        (par.mode.as_str(), seq.mode.as_str()),
        ("parallel", "sequential")
    );
    assert_eq!(par.summary.succeeded, SUBSET.len() as u32);
    assert_eq!(par.summary.subtask_completion, 1.0);
    // The reference planner refuses the two tasks that must be refused; they have no graph.
    assert_eq!(
        (
            par.summary.refusal_tasks,
            par.summary.refusals_held,
            par.summary.refused
        ),
        (2, 2, 2)
    );
    assert_eq!(par.summary.submitted, SUBSET.len() as u32 - 2);
    assert_eq!(par.summary.success_rate_submitted, 1.0);
    // The graphs have parallel branches; chained, they have none.
    assert!(par.summary.graph_width_avg > 1.2, "{:?}", par.summary);
    assert_eq!(seq.summary.graph_width_avg, 1.0);
    assert_eq!(
        seq.summary.timing.width_max, 1,
        "sequential runs one attempt at a time"
    );
    assert!(report.timing.is_some(), "the comparison is made");
    // The files are written.
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| parallel | 100.0 % (10/10)"), "{md}");
    assert!(md.contains("2 of the 2 tasks that must be refused"), "{md}");
    let svg = std::fs::read_to_string(dir.path().join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("file-sync"));
    let json: Report =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json.scores(), report.scores());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_scores() {
    // Executors fail a third of their attempts (seeded): retries happen, and must happen the
    // same way twice.
    let mut opts = options(
        PlannerKind::Reference,
        &["sync-03", "cal-01", "phone-08"],
        Mode::Parallel,
    );
    opts.fail_rate = Some(0.3);
    let a = run(&opts, &mut Progress::new(false)).await.unwrap();
    let b = run(&opts, &mut Progress::new(false)).await.unwrap();
    assert!(a.runs[0].summary.retries > 0, "{:?}", a.runs[0].summary);
    assert_eq!(
        serde_json::to_string_pretty(&a.scores()).unwrap(),
        serde_json::to_string_pretty(&b.scores()).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_planner_runs_what_its_grammar_expresses() {
    let report = run(
        &options(
            PlannerKind::Rules,
            &["sync-01", "data-01", "sync-02", "sync-16"],
            Mode::Parallel,
        ),
        &mut Progress::new(false),
    )
    .await
    .unwrap();
    let r = &report.runs[0];
    let by_id = |id: &str| r.tasks.iter().find(|t| t.id == id).unwrap();
    assert!(by_id("sync-01").success, "{:?}", by_id("sync-01"));
    assert!(by_id("data-01").success, "{:?}", by_id("data-01"));
    // A seeded spreadsheet moved with `copy`: the very bytes arrived.
    assert!(by_id("sync-16").success, "{:?}", by_id("sync-16"));
    // sync-02 tells the phone, which the grammar cannot say: not submitted, not passed.
    assert_eq!(by_id("sync-02").outcome, "unsupported");
    assert!(!by_id("sync-02").success);
    assert_eq!((r.summary.submitted, r.summary.unsupported), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_about_a_photo_is_not_the_photo() {
    // photo-04's reference plan, but the laptop writes the photo's output text (its size and
    // hash) instead of copying the file the phone sent: the plan succeeds, the check does not.
    let dir = tempfile::tempdir().unwrap();
    let plan = serde_json::json!({"tasks": [
        {"id": "t1", "title": "take", "instruction": "take the photo", "device": "android-phone",
         "action": {"kind": "sim", "op": "photo.take", "args": {"name": "serial-number-router"}}},
        {"id": "t2", "title": "save", "instruction": "save it", "device": "windows-laptop",
         "action": {"kind": "sim", "op": "file.write",
                    "args": {"path": "Desktop/serial-number-router.jpg", "content": "{{t1.output}}"}}}],
        "edges": [{"from": "t1", "to": "t2", "kind": "success"}]});
    std::fs::write(dir.path().join("photo-04.json"), plan.to_string()).unwrap();
    let mut opts = options(
        PlannerKind::External(External::new(Source::Plans(dir.path().to_path_buf()))),
        &["photo-04"],
        Mode::Parallel,
    );
    opts.seed = 11;
    let report = run(&opts, &mut Progress::new(false)).await.unwrap();
    let t = &report.runs[0].tasks[0];
    assert_eq!(
        (t.outcome.as_str(), t.request_status.as_deref()),
        ("ran", Some("succeeded"))
    );
    assert!(!t.success);
    assert_eq!(t.failed_checks.len(), 1, "{t:?}");
    let f = &t.failed_checks[0];
    assert_eq!(
        f.check,
        "sha256 of Desktop/serial-number-router.jpg on windows-laptop"
    );
    assert!(
        f.detail
            .starts_with("windows-laptop: Desktop/serial-number-router.jpg has sha256 "),
        "{f:?}"
    );
}

#[tokio::test]
async fn the_llm_planner_needs_a_cassette_or_an_endpoint() {
    let opts = options(PlannerKind::Llm, &["sync-01"], Mode::Parallel);
    let e = run(&opts, &mut Progress::new(false)).await.unwrap_err();
    assert!(e.to_string().contains("--llm-replay"), "{e}");
    let mut opts = options(PlannerKind::Llm, &["sync-01"], Mode::Parallel);
    opts.llm.replay = Some(PathBuf::from("/nonexistent/cassette.jsonl"));
    let e = run(&opts, &mut Progress::new(false)).await.unwrap_err();
    assert!(e.to_string().contains("no such file"), "{e}");
    let mut opts = options(PlannerKind::Llm, &["sync-01"], Mode::Both);
    opts.llm.replay = Some(PathBuf::from("/nonexistent/cassette.jsonl"));
    let e = run(&opts, &mut Progress::new(false)).await.unwrap_err();
    assert!(e.to_string().contains("parallel only"), "{e}");
}
