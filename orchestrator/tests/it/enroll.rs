//! Devices where people are: enrollment from `weft device add` to an agent running from its
//! config file as the service unit says, the owner's policy on a real agent process, and the
//! tool executors (`phone`, `adb`) against scripted stand-ins placed first on PATH (no real
//! Android device is available here).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};
use weft_protocol::RequestStatus;

use crate::harness::Harness;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A home of its own for a "fresh machine": HOME and the XDG dirs inside `root`, and a
/// `weft-agent` on PATH (a two-line script running `weft agent`, since only `weft` is built
/// for these tests).
pub struct Machine {
    root: PathBuf,
}

impl Machine {
    pub fn new(root: &Path) -> Self {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        script(
            &bin.join("weft-agent"),
            &format!("exec '{WEFT}' agent \"$@\"\n"),
        );
        Self {
            root: root.to_path_buf(),
        }
    }

    fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }

    pub fn config_home(&self) -> PathBuf {
        self.root.join("config")
    }

    /// A command with this machine's environment (and none of the caller's WEFT_ variables).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(program);
        c.env("HOME", self.root.join("home"))
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_DATA_HOME", self.root.join("data"))
            .env("PATH", path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("WEFT_") {
                c.env_remove(k);
            }
        }
        c
    }

    pub async fn sh(&self, line: &str) -> std::process::Output {
        let out = self
            .command("sh")
            .args(["-c", line])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The words of a systemd `ExecStart=` line (quotes removed; no escapes used here).
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

async fn sigterm_and_wait(child: &mut Child) {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("agent did not exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "agent exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_goes_from_device_add_to_a_running_service() {
    let h = Harness::start().await;
    let m = Machine::new(&h.dir.path().join("laptop-machine"));

    // On the orchestrator's machine: register the device; the CLI prints the line to run.
    let out = Command::new(WEFT)
        .args([
            "device", "add", "mbp", "--kind", "laptop", "--server", &h.base,
        ])
        .args(["--api-token", &h.token])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let line = printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("WEFT_DEVICE_TOKEN="))
        .unwrap_or_else(|| panic!("no enrollment line in:\n{printed}"))
        .to_owned();
    // Not a phone: no QR code.
    assert!(!printed.contains('█'), "{printed}");
    let (init, install) = line.split_once(" && ").expect("init && install-service");
    assert_eq!(install, "weft-agent install-service");

    // On the device: the printed `init` exactly as printed, then the service unit, not started
    // (this test must not touch the real user's systemd).
    m.sh(init).await;
    let config = m.config_home().join("weft/agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("server = \"{}\"", h.base)), "{text}");
    assert!(text.contains("name = \"mbp\""));
    assert!(
        !text.contains(line.split(['=', ' ']).nth(1).unwrap()),
        "the token is not in the config"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let token = m.config_home().join("weft/token");
        assert_eq!(
            std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // A second init does not overwrite the first.
    let again = m.command("sh").args(["-c", init]).output().await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let out = m.sh(&format!("{install} --no-start")).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("systemctl --user enable --now weft-agent.service"),
        "{said}"
    );
    let unit_path = m.config_home().join("systemd/user/weft-agent.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let argv = exec_start(&unit);
    assert_eq!(
        argv[1..],
        [
            "agent".to_owned(),
            "--config".into(),
            config.display().to_string()
        ],
        "{unit}"
    );
    assert_eq!(Path::new(&argv[0]), std::fs::canonicalize(WEFT).unwrap());

    // Start the agent as systemd would: the unit's command line, no token in the environment.
    let mut agent = m
        .command(&argv[0])
        .args(&argv[1..])
        .current_dir(&m.root)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    h.wait_online(1).await;
    let devices = h.devices().await;
    let d = &devices[0];
    assert_eq!(d.name.as_str(), "mbp");
    assert!(d.capabilities.contains(&"shell".to_owned()), "{d:?}");
    assert!(d.os_version.is_some(), "{d:?}");
    let v = h.submit(r#"on mbp run "echo enrolled""#).await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(
        v.tasks[0].output.as_ref().unwrap().data["stdout"],
        "enrolled\n"
    );
    // It ran in the workdir `init` chose, under the data dir.
    sigterm_and_wait(&mut agent).await;

    // And it can be taken away again.
    m.sh("weft-agent uninstall-service").await;
    assert!(!unit_path.exists());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_enrollment_prints_a_qr_code() {
    let h = Harness::start().await;
    let out = Command::new(WEFT)
        .args([
            "device", "add", "pixel", "--kind", "phone", "--server", &h.base,
        ])
        .args(["--api-token", &h.token])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("--kind phone && weft-agent install-service"),
        "{printed}"
    );
    // The code itself is decoded back to the command in the unit tests of cli::enroll.
    assert!(
        printed.lines().filter(|l| l.contains('█')).count() > 10,
        "{printed}"
    );
    h.stop().await;
}

/// Stand-ins for adb and two Termux:API tools that record how they were called.
fn stand_ins(bin: &Path) -> PathBuf {
    let log = bin.join("calls.log");
    let l = log.display();
    script(
        &bin.join("adb"),
        &format!(
            "printf 'adb %s\\n' \"$*\" >> '{l}'\n\
             if [ \"$3 $4 $5 $6\" = 'shell pm list packages' ]; then echo package:com.android.chrome; fi\n"
        ),
    );
    script(
        &bin.join("termux-battery-status"),
        r#"echo '{"percentage": 64, "status": "CHARGING"}'"#,
    );
    script(
        &bin.join("termux-notification"),
        &format!("printf 'notification %s\\n' \"$*\" >> '{l}'\n"),
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_agent_offers_the_tools_it_finds_and_its_policy_holds() {
    let h = Harness::start().await;
    let m = Machine::new(&h.dir.path().join("phone-machine"));
    let log = stand_ins(&m.bin());
    let token = h.add_device("pixel", "phone").await;
    let dir = h.dir.path().join("pixel");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{base}\"\nname = \"pixel\"\nkind = \"phone\"\ntoken_file = \"token\"\n\
         workdir = \"work\"\nstate_dir = \"state\"\n\
         [adb]\nserial = \"R58M123\"\n\
         [policy]\nexecutors = [\"shell\", \"fs\", \"phone\", \"adb\"]\n\
         [policy.shell]\ndeny = [\"rm *\"]\n\
         [policy.adb]\ntools = [\"list_packages\", \"key_event\"]\n",
            base = h.base
        ),
    )
    .unwrap();
    std::fs::write(dir.join("token"), &token).unwrap();

    // `policy check` explains, and its exit code says, what the device would do.
    let check = |action: serde_json::Value| {
        let mut c = m.command(WEFT);
        c.args(["agent", "--config"]).arg(&config);
        c.args(["policy", "check", &action.to_string()]);
        async move { c.output().await.unwrap() }
    };
    let out = check(json!({"kind": "shell", "command": "rm -rf ~"})).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("policy.shell.deny[0]"));
    let out = check(json!({"kind": "phone", "tool": "battery_status"})).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let mut agent = m
        .command(WEFT)
        .args(["agent", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    h.wait_online(1).await;
    let d = h.devices().await.remove(0);
    assert_eq!(d.capabilities, ["shell", "fs", "phone", "adb"], "{d:?}");
    let tools: Vec<(String, String)> = d
        .tools
        .iter()
        .map(|t| (t.executor.clone(), t.name.clone()))
        .collect();
    assert_eq!(
        tools,
        [
            ("phone".to_owned(), "notification".to_owned()),
            ("phone".into(), "battery_status".into()),
            ("adb".into(), "key_event".into()),
            ("adb".into(), "list_packages".into()),
        ]
    );
    assert_eq!(d.tools[0].args["required"], json!(["content"]));

    // Tasks with tool actions, given as a graph (the rules planner does not write them).
    let task = |id: &str, action: serde_json::Value| json!({"id": id, "instruction": id, "action": action, "device": "pixel"});
    let (status, body) = h
        .post(
            "/v1/requests",
            &json!({"text": "phone tools", "graph": {"tasks": [
                task("battery", json!({"kind": "phone", "tool": "battery_status"})),
                task("notify", json!({"kind": "phone", "tool": "notification",
                                      "args": {"title": "weft", "content": "hello"}})),
                task("back", json!({"kind": "adb", "tool": "key_event", "args": {"key": "BACK"}})),
                task("packages", json!({"kind": "adb", "tool": "list_packages"})),
                task("tap", json!({"kind": "adb", "tool": "tap", "args": {"x": 1, "y": 1}})),
                task("rm", json!({"kind": "shell", "command": "rm -rf work"})),
            ]}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let v = h.wait_done(body["id"].as_str().unwrap()).await;
    let by_id = |id: &str| v.tasks.iter().find(|t| t.id.as_str() == id).unwrap();
    assert_eq!(
        by_id("battery").output.as_ref().unwrap().data["result"]["percentage"],
        64
    );
    assert_eq!(by_id("notify").status, weft_protocol::TaskStatus::Succeeded);
    assert_eq!(
        by_id("packages").output.as_ref().unwrap().data["packages"],
        json!(["com.android.chrome"])
    );
    for (id, rule) in [("tap", "policy.adb.tools"), ("rm", "policy.shell.deny[0]")] {
        let t = by_id(id);
        assert_eq!(t.status, weft_protocol::TaskStatus::Failed, "{t:?}");
        let e = t.error.as_ref().unwrap();
        assert_eq!(e.code, "policy_denied", "{e:?}");
        assert!(e.message.contains(rule), "{e:?}");
        // Not retried (the default retry policy allows 3 attempts): one attempt.
        assert_eq!(t.attempts.len(), 1);
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    let mut calls: Vec<&str> = calls.lines().collect();
    calls.sort_unstable();
    assert_eq!(
        calls,
        [
            "adb -s R58M123 shell input keyevent KEYCODE_BACK",
            "adb -s R58M123 shell pm list packages",
            "notification --title weft --content hello",
        ]
    );
    sigterm_and_wait(&mut agent).await;
    h.stop().await;
}
