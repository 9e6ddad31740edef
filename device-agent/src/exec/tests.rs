//! Executors behind the policy, and the tool executors against scripted stand-ins for `adb`
//! and the Termux:API programs (real Android devices are not available here).

use std::path::Path;

use serde_json::json;
use weft_protocol::Action;
use weft_protocol::wire::ResultStatus;

use super::*;
use crate::config::AdbConfig;
use crate::policy::Glob;

/// Writes an executable script.
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory of stand-ins: `adb` records its arguments in `adb.log` and answers like adb;
/// the Termux:API tools record theirs in `termux.log`.
fn stand_ins(dir: &Path) {
    let log = dir.join("adb.log");
    script(
        &dir.join("adb"),
        &format!(
            r#"printf '%s\n' "$*" >> '{log}'
case "$3" in
  shell) if [ "$4 $5 $6" = "pm list packages" ]; then printf 'package:com.android.chrome\npackage:org.example.app\n'; fi ;;
  exec-out) printf '\211PNG\r\n\032\nfake-image' ;;
  push) echo "$4: 1 file pushed" ;;
  pull) printf 'from the phone' > "$5"; echo "$4: 1 file pulled" ;;
esac
"#,
            log = log.display()
        ),
    );
    let tlog = dir.join("termux.log").display().to_string();
    script(
        &dir.join("termux-battery-status"),
        r#"echo '{"health": "GOOD", "percentage": 81, "status": "DISCHARGING"}'"#,
    );
    script(
        &dir.join("termux-clipboard-set"),
        &format!("printf 'clipboard:' >> '{tlog}'; cat >> '{tlog}'; echo >> '{tlog}'\n"),
    );
    script(
        &dir.join("termux-notification"),
        &format!(
            "printf 'notification:' >> '{tlog}'; printf '%s|' \"$@\" >> '{tlog}'; echo >> '{tlog}'\n"
        ),
    );
}

struct Device {
    config: Config,
    tools: Toolbox,
    caps: Vec<String>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Device {
    /// A phone-kind agent with an adb device, its tools being the stand-ins.
    fn new(policy: Policy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        stand_ins(&bin);
        let mut config = Config::new("http://127.0.0.1:1", "pixel", "t");
        config.kind = "phone".into();
        config.workdir = dir.path().join("work");
        config.state_dir = dir.path().join("state");
        config.tool_path = Some(std::env::join_paths([&bin]).unwrap());
        config.adb = Some(AdbConfig {
            serial: "SER1".into(),
            program: "adb".into(),
        });
        config.policy = policy;
        std::fs::create_dir_all(&config.workdir).unwrap();
        let tools = Toolbox::discover(&config);
        let caps = capabilities(&config, &tools);
        let http = http::client(&config.policy, config.http_timeout).unwrap();
        Self {
            config,
            tools,
            caps,
            http,
            _dir: dir,
        }
    }

    fn bin(&self) -> std::path::PathBuf {
        self._dir.path().join("bin")
    }

    async fn run(&self, action: serde_json::Value) -> Outcome {
        let action: Action = serde_json::from_value(action).unwrap();
        let ctx = Ctx {
            workdir: &self.config.workdir,
            policy: &self.config.policy,
            tools: &self.tools,
            max_output_bytes: self.config.policy.max_output_bytes,
            http: &self.http,
            http_timeout: self.config.http_timeout,
            progress: mpsc::unbounded_channel().0,
            max_turns: 1,
        };
        run(&action, &self.caps, &ctx).await
    }
}

fn refusal(o: &Outcome) -> (String, String) {
    let e = o.error.clone().unwrap_or_else(|| ErrorInfo::new("ok", ""));
    (e.code, e.message)
}

#[tokio::test]
async fn every_executor_refuses_what_the_policy_forbids() {
    let mut policy = Policy::default();
    policy.shell.deny = vec![Glob::new("rm -rf *")];
    policy.phone_tools = Some(vec!["battery_status".into()]);
    policy.adb_tools = Some(vec!["screenshot".into(), "list_packages".into()]);
    let d = Device::new(policy);
    assert_eq!(d.caps, ["shell", "fs", "http", "phone", "adb"]);
    for (action, rule) in [
        (
            json!({"kind": "shell", "command": "ls; rm -rf /"}),
            "policy.shell.deny[0]",
        ),
        (
            json!({"kind": "read_file", "path": "/etc/passwd"}),
            "policy.fs.read",
        ),
        (
            json!({"kind": "write_file", "path": "/tmp/x", "content": "x"}),
            "policy.fs.write",
        ),
        (
            json!({"kind": "http_get", "url": "http://169.254.169.254/"}),
            "policy.http.allow_networks",
        ),
        (
            json!({"kind": "http_get", "url": "http://localhost:9/"}),
            "policy.http.allow_networks",
        ),
        (
            json!({"kind": "phone", "tool": "clipboard_set", "args": {"text": "x"}}),
            "policy.phone.tools",
        ),
        (
            json!({"kind": "phone", "tool": "location"}),
            "policy.phone.tools",
        ),
        (
            json!({"kind": "adb", "tool": "tap", "args": {"x": 1, "y": 2}}),
            "policy.adb.tools",
        ),
        (
            json!({"kind": "adb", "tool": "screenshot", "args": {"path": "/etc/shot.png"}}),
            "policy.fs.write",
        ),
    ] {
        let o = d.run(action.clone()).await;
        let (code, message) = refusal(&o);
        assert_eq!(code, "policy_denied", "{action}: {o:?}");
        assert!(message.contains(rule), "{action}: {message}");
    }
    // Nothing the refused actions named was run or written.
    assert!(!Path::new("/tmp/x").exists() || std::fs::read_to_string("/tmp/x").unwrap() != "x");
    assert!(!d.bin().join("termux.log").exists());
    assert!(!d.bin().join("adb.log").exists());

    // An executor the policy leaves out is neither advertised nor run.
    let d = Device::new(Policy {
        executors: Some(vec!["fs".into(), "phone".into()]),
        ..Policy::default()
    });
    assert_eq!(d.caps, ["fs", "phone"]);
    for action in [
        json!({"kind": "shell", "command": "echo hi"}),
        json!({"kind": "http_get", "url": "https://example.com"}),
        json!({"kind": "adb", "tool": "list_packages"}),
    ] {
        let (code, message) = refusal(&d.run(action.clone()).await);
        assert_eq!(code, "policy_denied", "{action}");
        assert!(message.contains("policy.executors"), "{message}");
    }
    let tools = tool_specs(&d.config, &d.tools);
    assert!(tools.iter().all(|t| t.executor == "phone"));
    // location is off by default.
    assert!(!tools.iter().any(|t| t.name == "location"));
}

#[tokio::test]
async fn the_output_cap_is_the_owners() {
    // (The run-time limit is applied by the agent around the executor: agent.rs tests.)
    let d = Device::new(Policy {
        max_output_bytes: 10,
        ..Policy::default()
    });
    let o = d
        .run(json!({"kind": "shell", "command": "echo 0123456789abcdef"}))
        .await;
    assert_eq!(o.output.data["stdout"], "0123456789");
    assert_eq!(o.output.data["truncated"], true);
}

#[tokio::test]
async fn adb_tools_drive_the_stand_in() {
    let d = Device::new(Policy::default());
    assert!(d.caps.contains(&"adb".to_owned()));
    let o = d.run(json!({"kind": "adb", "tool": "list_packages"})).await;
    assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
    assert_eq!(
        o.output.data["packages"],
        json!(["com.android.chrome", "org.example.app"])
    );
    let ok = |o: &Outcome| assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
    ok(&d
        .run(json!({"kind": "adb", "tool": "tap", "args": {"x": 540, "y": 1200}}))
        .await);
    ok(&d
        .run(json!({"kind": "adb", "tool": "type_text", "args": {"text": "hello world"}}))
        .await);
    ok(&d
        .run(json!({"kind": "adb", "tool": "key_event", "args": {"key": "back"}}))
        .await);
    ok(&d
        .run(
            json!({"kind": "adb", "tool": "launch_app", "args": {"package": "com.android.chrome"}}),
        )
        .await);
    let o = d
        .run(json!({"kind": "adb", "tool": "screenshot", "args": {"path": "shots/1.png"}}))
        .await;
    ok(&o);
    let png = std::fs::read(d.config.workdir.join("shots/1.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    std::fs::write(d.config.workdir.join("up.txt"), "to the phone").unwrap();
    ok(&d.run(json!({"kind": "adb", "tool": "push", "args": {"local": "up.txt", "remote": "/sdcard/up.txt"}})).await);
    ok(&d.run(json!({"kind": "adb", "tool": "pull", "args": {"remote": "/sdcard/x.txt", "local": "down/x.txt"}})).await);
    assert_eq!(
        std::fs::read_to_string(d.config.workdir.join("down/x.txt")).unwrap(),
        "from the phone"
    );
    let work = d.config.workdir.display();
    let log = std::fs::read_to_string(d.bin().join("adb.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "-s SER1 shell pm list packages".to_owned(),
            "-s SER1 shell input tap 540 1200".into(),
            "-s SER1 shell input text 'hello%sworld'".into(),
            "-s SER1 shell input keyevent KEYCODE_BACK".into(),
            "-s SER1 shell monkey -p com.android.chrome -c android.intent.category.LAUNCHER 1"
                .into(),
            "-s SER1 exec-out screencap -p".into(),
            format!("-s SER1 push {work}/up.txt /sdcard/up.txt"),
            format!("-s SER1 pull /sdcard/x.txt {work}/down/x.txt"),
        ]
    );
    // Bad arguments never reach adb.
    let (code, _) = refusal(
        &d.run(json!({"kind": "adb", "tool": "launch_app", "args": {"package": "x; reboot"}}))
            .await,
    );
    assert_eq!(code, "invalid_action");
    let (code, _) = refusal(
        &d.run(json!({"kind": "adb", "tool": "pull", "args": {"remote": "/x", "local": "../x"}}))
            .await,
    );
    assert_eq!(code, "path_outside_workdir");
    assert_eq!(
        std::fs::read_to_string(d.bin().join("adb.log")).unwrap(),
        log
    );
}

#[tokio::test]
async fn phone_tools_found_on_the_path_run() {
    let d = Device::new(Policy::default());
    let names: Vec<String> = tool_specs(&d.config, &d.tools)
        .into_iter()
        .filter(|t| t.executor == "phone")
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["notification", "clipboard_set", "battery_status"]);
    let o = d
        .run(json!({"kind": "phone", "tool": "battery_status"}))
        .await;
    assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
    assert_eq!(o.output.data["result"]["percentage"], 81);
    assert_eq!(o.output.summary, "battery 81%");
    let o = d
        .run(json!({"kind": "phone", "tool": "clipboard_set", "args": {"text": "--not-an-option"}}))
        .await;
    assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
    let o = d
        .run(json!({"kind": "phone", "tool": "notification", "args": {"title": "weft", "content": "build done"}}))
        .await;
    assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
    assert_eq!(
        std::fs::read_to_string(d.bin().join("termux.log")).unwrap(),
        "clipboard:--not-an-option\nnotification:--title|weft|--content|build done|\n"
    );
    // A tool this phone does not have.
    let (code, _) = refusal(
        &d.run(json!({"kind": "phone", "tool": "clipboard_get"}))
            .await,
    );
    assert_eq!(code, "unsupported_action");
}
