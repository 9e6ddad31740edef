//! External planners end to end: the example planner of docs/bench.md as a real Python process
//! (over HTTP and over stdin/stdout), a planner that fails in every way but one, a plans
//! directory, and the `compare` and `--seeds` commands of the real binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use weft_bench::suite::external::{External, Source};
use weft_bench::suite::progress::Progress;
use weft_bench::suite::report::TaskResult;
use weft_bench::suite::task::default_suite;
use weft_bench::suite::{Faults, LlmSettings, Mode, PlannerKind, Report, RunOptions, Suite, run};

const DEVICES: &[&str] = &[
    "windows-laptop",
    "mac-laptop",
    "linux-server",
    "android-phone",
    "edge-box",
];

fn options(planner: PlannerKind, filter: &[&str], mode: Mode) -> RunOptions {
    RunOptions {
        suite: default_suite(),
        planner,
        llm: LlmSettings::default(),
        mode,
        faults: Faults::None,
        seed: 3,
        filter: filter.iter().map(|s| (*s).to_owned()).collect(),
        latency_scale: 0.05,
        fail_rate: None,
        agent_bin: PathBuf::from(env!("CARGO_BIN_EXE_weft-bench")),
        task_timeout: Duration::from_secs(60),
        keep_dir: None,
        command: "weft-bench run (test)".into(),
    }
}

fn external(source: Source, timeout: Duration) -> PlannerKind {
    PlannerKind::External(External { source, timeout })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> PathBuf {
    repo().join("docs/bench-planner-example.py")
}

fn task<'a>(report: &'a Report, mode: &str, id: &str) -> &'a TaskResult {
    report
        .runs
        .iter()
        .find(|r| r.mode == mode)
        .and_then(|r| r.tasks.iter().find(|t| t.id == id))
        .unwrap_or_else(|| panic!("no task {id} in the {mode} pass"))
}

/// The devices a request names, as the example planner reads it.
fn named(request: &str) -> usize {
    let text = request.to_lowercase();
    DEVICES
        .iter()
        .filter(|d| text.contains(**d) || text.contains(&d.replace('-', " ")))
        .count()
}

/// Asserts that `report` holds the example planner's plans for `ids`: a saved request per
/// named device, a refusal when none is named.
fn assert_example_plans(report: &Report, ids: &[&str]) {
    let suite = Suite::load(&default_suite()).unwrap();
    let mut refused = 0;
    for run in &report.runs {
        for id in ids {
            let file = suite.tasks.iter().find(|t| t.id == *id).unwrap();
            let t = task(report, &run.mode, id);
            match named(&file.request) {
                0 => {
                    refused += 1;
                    assert_eq!(t.outcome, "refused", "{t:?}");
                    assert!(t.note.contains("names no device"), "{t:?}");
                }
                n => {
                    assert_eq!(t.outcome, "ran", "{t:?}");
                    assert_eq!(t.request_status.as_deref(), Some("succeeded"), "{t:?}");
                    assert_eq!((t.subtasks, t.subtasks_completed), (n as u32, n as u32));
                    assert_eq!(t.attempts, n as u32, "{t:?}");
                }
            }
        }
    }
    assert!(
        refused > 0,
        "the chosen tasks include one that names no device"
    );
}

/// Tasks naming two devices, one device, and none.
const EXAMPLE_TASKS: &[&str] = &["sync-01", "build-08", "cal-01"];

#[test]
fn the_docs_include_the_example_planner_verbatim() {
    let md = std::fs::read_to_string(repo().join("docs/bench.md")).unwrap();
    let py = std::fs::read_to_string(example()).unwrap();
    assert!(
        md.contains(&format!("```python\n{py}```\n")),
        "docs/bench.md must quote docs/bench-planner-example.py exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_planner_plans_over_http() {
    let mut child = tokio::process::Command::new("python3")
        .arg(example())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("the planner prints its port")
        .trim()
        .parse()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/plan");
    let report = run(
        &options(
            external(Source::Http(url.clone()), Duration::from_secs(10)),
            EXAMPLE_TASKS,
            Mode::Parallel,
        ),
        &mut Progress::new(false),
    )
    .await
    .unwrap();
    child.kill().await.ok();
    assert_eq!(report.planner, url);
    assert_example_plans(&report, EXAMPLE_TASKS);
    // Saving a request passes none of these tasks' checkers; the report says so.
    let s = &report.runs[0].summary;
    assert_eq!((s.submitted, s.refused, s.succeeded), (2, 1, 0), "{s:?}");
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.contains("planner refused: the request names no device"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_planner_plans_over_stdio_in_both_modes() {
    let cmd = format!("python3 {} --stdio", example().display());
    let report = run(
        &options(
            external(Source::Exec(cmd.clone()), Duration::from_secs(10)),
            EXAMPLE_TASKS,
            Mode::Both,
        ),
        &mut Progress::new(false),
    )
    .await
    .unwrap();
    assert_eq!(report.planner, format!("exec:{cmd}"));
    assert_eq!(report.runs.len(), 2);
    assert_example_plans(&report, EXAMPLE_TASKS);
    let seq = &report.runs[1];
    assert_eq!(seq.summary.timing.width_max, 1, "{:?}", seq.summary);
}

/// A planner on a raw socket: answers by the request it is given.
async fn serve_planner(answers: Vec<(String, Behaviour)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let body = read_body(&mut conn).await;
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let request = doc["request"].as_str().unwrap().to_owned();
                assert_eq!(doc["devices"].as_array().unwrap().len(), 5, "{doc}");
                let (status, text) = match answers.iter().find(|(r, _)| *r == request) {
                    Some((_, Behaviour::Answer(t))) => ("200 OK", t.clone()),
                    Some((_, Behaviour::Fail)) => {
                        ("500 Internal Server Error", "model fell over".into())
                    }
                    Some((_, Behaviour::Hang)) => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        ("200 OK", "{}".into())
                    }
                    None => ("404 Not Found", String::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/plan")
}

async fn read_body(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the connection closed early");
                buf.extend_from_slice(&chunk[..n]);
            }
            return buf[end + 4..end + 4 + len].to_vec();
        }
    }
}

#[derive(Debug, Clone)]
enum Behaviour {
    Answer(String),
    Fail,
    Hang,
}

fn request_of(id: &str) -> String {
    let suite = Suite::load(&default_suite()).unwrap();
    let t = suite.tasks.iter().find(|t| t.id == id).unwrap();
    assert!(
        !t.request.contains("${WEB}"),
        "{id} must not use the web server"
    );
    t.request.clone()
}

fn reference_plan(id: &str) -> String {
    let suite = Suite::load(&default_suite()).unwrap();
    let t = suite.tasks.iter().find(|t| t.id == id).unwrap();
    serde_json::to_string(&t.plan).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_planner_fails_its_task_and_the_run_goes_on() {
    let url = serve_planner(vec![
        (request_of("sync-01"), Behaviour::Fail),
        (request_of("sync-03"), Behaviour::Hang),
        (
            request_of("sync-02"),
            Behaviour::Answer(r#"{"tasks": 3}"#.into()),
        ),
        (
            request_of("phone-08"),
            Behaviour::Answer(
                r#"{"tasks": [{"id": "a", "instruction": "x", "device": "nokia-3310", "action": {"kind": "read_file", "path": "x"}}]}"#
                    .into(),
            ),
        ),
        (request_of("cal-01"), Behaviour::Answer(reference_plan("cal-01"))),
    ])
    .await;
    let ids = ["sync-01", "sync-03", "sync-02", "phone-08", "cal-01"];
    let report = run(
        &options(
            external(Source::Http(url), Duration::from_secs(1)),
            &ids,
            Mode::Parallel,
        ),
        &mut Progress::new(false),
    )
    .await
    .unwrap();
    assert_eq!(report.aborted, None);
    let t = |id| task(&report, "parallel", id);
    assert_eq!(t("sync-01").outcome, "planner_error");
    assert!(t("sync-01").note.contains("500"), "{:?}", t("sync-01"));
    assert_eq!(t("sync-03").outcome, "planner_error");
    assert!(
        t("sync-03").note.contains("timed out"),
        "{:?}",
        t("sync-03")
    );
    assert_eq!(t("sync-02").outcome, "planner_error");
    assert!(
        t("sync-02").note.contains("invalid plan"),
        "{:?}",
        t("sync-02")
    );
    // The orchestrator checks the graph: an unknown device is refused with its code.
    assert_eq!(t("phone-08").outcome, "refused", "{:?}", t("phone-08"));
    assert!(
        t("phone-08").note.contains("nokia-3310"),
        "{:?}",
        t("phone-08")
    );
    // The one good answer ran and passed.
    assert!(t("cal-01").success, "{:?}", t("cal-01"));
    let s = &report.runs[0].summary;
    assert_eq!(
        (
            s.tasks,
            s.succeeded,
            s.planner_failed,
            s.refused,
            s.submitted
        ),
        (5, 1, 3, 1, 1),
        "{s:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("`phone-messaging/phone-08` (refused"), "{md}");
    assert!(md.contains("(planner_error): planner answered 500"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plans_directory_runs_its_plans_and_fails_the_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cal-01.json"), reference_plan("cal-01")).unwrap();
    std::fs::write(
        dir.path().join("sync-03.json"),
        r#"{"refuse": "not today"}"#,
    )
    .unwrap();
    let report = run(
        &options(
            external(Source::Plans(dir.path().to_owned()), Duration::from_secs(1)),
            &["cal-01", "sync-01", "sync-03"],
            Mode::Both,
        ),
        &mut Progress::new(false),
    )
    .await
    .unwrap();
    for mode in ["parallel", "sequential"] {
        assert!(task(&report, mode, "cal-01").success);
        assert_eq!(task(&report, mode, "sync-01").outcome, "no_plan");
        assert!(task(&report, mode, "sync-01").note.contains("sync-01.json"));
        assert_eq!(
            task(&report, mode, "sync-03").note,
            "planner refused: not today"
        );
    }
    let s = &report.runs[0].summary;
    assert_eq!(
        (s.succeeded, s.planner_failed, s.refused),
        (1, 1, 1),
        "{s:?}"
    );
    // Partial credit: cal-01's checkers all held, the others' none.
    assert_eq!(
        s.checks_passed,
        task(&report, "parallel", "cal-01").checks_total
    );
    assert!((s.check_credit - 1.0 / 3.0).abs() < 0.001, "{s:?}");
}

fn bench(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weft-bench {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn seeds_are_summarised_and_runs_compared() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds");
    let plans = dir.path().join("plans");
    let planned = dir.path().join("planned");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(plans.join("cal-01.json"), reference_plan("cal-01")).unwrap();
    let common = [
        "--filter",
        "cal-01,sync-01",
        "--latency-scale",
        "0.05",
        "--quiet",
    ];
    let mut args = vec!["run", "--seeds", "1,2", "--out", path(&seeds)];
    args.extend(common);
    bench(&args);
    let mut args = vec!["run", "--plans", path(&plans), "--out", path(&planned)];
    args.extend(common);
    bench(&args);

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seeds.join("seeds.json")).unwrap()).unwrap();
    assert_eq!(s["seeds"], serde_json::json!([1, 2]));
    let success = &s["modes"][0]["task_success"];
    assert_eq!(success["values"], serde_json::json!([1.0, 1.0]), "{s}");
    assert_eq!(
        (success["mean"].as_f64(), success["sd"].as_f64()),
        (Some(1.0), Some(0.0))
    );
    assert!(seeds.join("seed-2/report.json").is_file());
    let md = std::fs::read_to_string(seeds.join("seeds.md")).unwrap();
    assert!(
        md.contains("| parallel | **100.0 ± 0.0 %** | 100.0, 100.0 |"),
        "{md}"
    );

    let out = dir.path().join("cmp/compare.md");
    let stdout = bench(&["compare", path(&seeds), path(&planned), "--out", path(&out)]).stdout;
    let md = String::from_utf8(stdout).unwrap();
    assert_eq!(md, std::fs::read_to_string(&out).unwrap());
    // Three columns: the two seeds and the plans run.
    assert!(
        md.contains(
            "| **task success** | **100.0 %** (2/2) | **100.0 %** (2/2) | **50.0 %** (1/2) |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| calendar | 100.0 % (1/1) | 100.0 % (1/1) | 100.0 % (1/1) |"),
        "{md}"
    );
    assert!(
        md.contains("| file-sync | 100.0 % (1/1) | 100.0 % (1/1) | 0.0 % (0/1) |"),
        "{md}"
    );
    assert!(md.contains("## Checkers per kind"), "{md}");
    let svg = std::fs::read_to_string(out.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("calendar"), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_cassette_miss_fails_its_task_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("empty.jsonl");
    std::fs::write(&cassette, "").unwrap();
    let mut opts = options(PlannerKind::Llm, &["sync-01", "cal-01"], Mode::Parallel);
    opts.llm.replay = Some(cassette);
    let report = run(&opts, &mut Progress::new(false)).await.unwrap();
    for id in ["sync-01", "cal-01"] {
        let t = task(&report, "parallel", id);
        assert_eq!(t.outcome, "planner_error", "{t:?}");
        assert!(t.note.contains("llm_cassette_miss"), "{t:?}");
    }
    assert_eq!(report.runs[0].summary.planner_failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_past_its_timeout_fails_its_task() {
    // An LLM endpoint that accepts connections and never answers: the orchestrator's planner
    // waits inside `POST /v1/requests`, and the runner's submit timeout ends the wait.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let mut opts = options(PlannerKind::Llm, &["sync-01", "cal-01"], Mode::Parallel);
    opts.llm.base_url = Some(base);
    opts.llm.model = Some("silent".into());
    opts.llm.submit_timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let report = run(&opts, &mut Progress::new(false)).await.unwrap();
    for id in ["sync-01", "cal-01"] {
        let t = task(&report, "parallel", id);
        assert_eq!(t.outcome, "planner_error", "{t:?}");
        assert!(t.note.contains("no answer within 1 s"), "{t:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
