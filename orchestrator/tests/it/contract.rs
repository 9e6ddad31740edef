//! The API does what `/openapi.json` says: schemathesis (from PyPI, pinned, in a virtualenv this
//! test makes under `target/tmp/`) runs its checks against a real server, every route and every
//! answer, and must find nothing.
//!
//! Knobs: `WEFT_CONTRACT_EXAMPLES` (cases per operation and phase, default 100),
//! `WEFT_CONTRACT_SEED` (default 1: the same cases every run), `WEFT_PYTHON` (the interpreter
//! the virtualenv is made with, default `python3`; without `venv`, Debian's `python3-venv`,
//! which `.ci/test` installs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use weft_orchestrator::listen::AuthLimit;
use weft_protocol::{EdgeKind, TaskStatus};

use crate::harness::Harness;

/// The pinned tools. hypothesis is pinned below schemathesis's newest pick: from 6.131 on it
/// reads lambdas' source with `ast.parse` while deep in a recursive draw, which CPython 3.11
/// (Debian 12's) fails with `SystemError: AST constructor recursion depth mismatch`.
const PACKAGES: [&str; 2] = ["schemathesis==4.32.5", "hypothesis==6.130.12"];

/// schemathesis's settings. What is left out, and why:
/// - the three Server-Sent Events routes: their answers are streams that end only with the
///   request (or never, for `/v1/events` and `/v1/devices/events`); schemathesis would wait on
///   each for the whole request timeout. The agent WebSocket is not in the document at all.
/// - Submitting and editing answer `422` to well-formed bodies whose meaning the server
///   refuses (text the rules planner does not understand, an edge to a task that is not there,
///   a device that is not registered): a JSON Schema cannot say which texts are plannable, so
///   for those two, `422` is an accepted answer to schema-valid data.
///
/// `{request}` is a request made before the run (one task cancelled, one skipped), so that the
/// answers about a real request are checked against the document too.
const CONFIG: &str = r#"
[[operations]]
include-path-regex = "/events$"
enabled = false

[[operations]]
include-path = "/v1/requests"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "404", "409", "422"]

[[operations]]
include-path = "/v1/requests/{id}/edits"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "404", "409", "422"]

[[operations]]
include-path-regex = "^/v1/requests/\\{id\\}(/layout)?$"
include-method = "GET"
parameters = { id = "{request}" }
"#;

#[tokio::test]
async fn the_api_does_what_its_openapi_document_says() {
    let venv = schemathesis_venv();
    // schemathesis sends wrong tokens on purpose (`ignored_auth`); with the default limit on
    // failed authentications, 127.0.0.1 would soon wait, and good calls be answered `429`.
    let mut h = Harness::start_with(|o| {
        o.auth_limit = AuthLimit {
            free_failures: 1_000_000,
            ..AuthLimit::default()
        }
    })
    .await;
    let request = cancelled_request(&mut h).await;

    let dir = h.dir.path();
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG.replace("{request}", &request)).unwrap();
    let examples = env_or("WEFT_CONTRACT_EXAMPLES", "100");
    let seed = env_or("WEFT_CONTRACT_SEED", "1");
    let mut run = tokio::process::Command::new(venv.join("bin/schemathesis"));
    run.arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run", &format!("{}/openapi.json", h.base)])
        .args(["--header", &format!("Authorization: Bearer {}", h.token)])
        .args([
            "--checks",
            "all",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
        ])
        .args(["--workers", "2", "--request-timeout", "10"])
        .current_dir(dir)
        .env("HOME", dir)
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(600), run.output())
        .await
        .expect("schemathesis ran for more than 10 minutes")
        .expect("schemathesis did not start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Test cases:"))
        .nth(1)
        .unwrap_or("(no summary)")
        .trim();
    eprintln!(
        "schemathesis, {examples} examples per operation, seed {seed}: {summary}, in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "schemathesis found the API and its document at odds:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A request with two tasks, `t2` after `t1` by an edge written without a kind (a `success`
/// edge, as docs/graph.md says); `t1` is cancelled while it runs, so `t2` is skipped.
async fn cancelled_request(h: &mut Harness) -> String {
    let token = h.add_device("laptop", "laptop").await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;
    let task = |id: &str| {
        json!({"id": id, "instruction": "wait", "device": "laptop",
                                 "action": {"kind": "shell", "command": "sleep 30"}})
    };
    let graph = json!({"tasks": [task("t1"), task("t2")], "edges": [{"from": "t1", "to": "t2"}]});
    let (status, view) = h
        .post(
            "/v1/requests",
            &json!({"text": "say hi twice", "graph": graph}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["edges"][0]["kind"], json!(EdgeKind::Success));
    let id = view["id"].as_str().unwrap().to_owned();
    h.wait_for(&id, "running t1", |v| {
        v.tasks[0].status == TaskStatus::Running
    })
    .await;
    let (status, view) = h.delete(&format!("/v1/requests/{id}/tasks/t1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{view}");
    let done = h.wait_done(&id).await;
    let status_of = |t: &str| {
        done.tasks
            .iter()
            .find(|x| x.id.as_str() == t)
            .unwrap()
            .status
    };
    assert_eq!(status_of("t1"), TaskStatus::Cancelled);
    assert_eq!(status_of("t2"), TaskStatus::Skipped);
    id
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The virtualenv with [`PACKAGES`], made once per target directory (`.complete` marks one
/// whose install finished).
fn schemathesis_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "contract-venv-{}",
        PACKAGES.join("-").replace("==", "-")
    ));
    let done = venv.join(".complete");
    if done.exists() {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let python = env_or("WEFT_PYTHON", "python3");
    let made = std::process::Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): the contract test needs Python 3"));
    assert!(
        made.status.success(),
        "{python} -m venv failed (on Debian: apt-get install python3-venv; .ci/test does):\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pip = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES)
        .output()
        .expect("cannot run the virtualenv's pip");
    assert!(
        pip.status.success(),
        "pip install {} failed (PyPI must be reachable):\n{}",
        PACKAGES.join(" "),
        String::from_utf8_lossy(&pip.stderr)
    );
    std::fs::write(&done, "").unwrap();
    venv
}
