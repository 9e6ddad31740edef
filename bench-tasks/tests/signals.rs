//! `weft-bench run` stopped by a signal stops its device agents too: a real `weft-bench run`
//! process, its five `weft-bench agent` children found in /proc, SIGTERM, and none of them left.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The pids of the processes whose parent is `parent` (from /proc/PID/stat).
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID …": the command may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        if rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` is still a process that has not been reaped or is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, r)| r.chars().next())
                .map(|state| state != 'Z')
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < end, "{what} did not happen in {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_the_run_and_its_device_agents() {
    let out = tempfile::tempdir().unwrap();
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_weft-bench"))
        .args(["run", "--planner", "reference", "--quiet"])
        // A few tasks with the simulated devices' times stretched: it is still running when
        // the signal comes.
        .args(["--filter", "photo-handoff", "--latency-scale", "20"])
        .arg("--suite")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks"))
        .arg("--out")
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut agents = Vec::new();
    wait_until("five device agents", Duration::from_secs(60), || {
        agents = children(run.id());
        agents.len() >= 5
    });
    kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
    let mut status = None;
    wait_until("the run's exit", Duration::from_secs(30), || {
        status = run.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
    wait_until("no device agent left", Duration::from_secs(10), || {
        agents.iter().all(|p| !alive(*p))
    });
    assert!(
        !out.path().join("report.json").exists(),
        "a stopped run writes no report"
    );
}
