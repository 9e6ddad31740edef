//! `weft-agent install-service` / `uninstall-service`: run the agent as a service of the user
//! who installed it, from its config file (never with the token on the command line).
//!
//! - Linux: a systemd user unit, `$XDG_CONFIG_HOME/systemd/user/weft-agent.service`, enabled
//!   and started with `systemctl --user` (when systemctl is there and `--no-start` is not given).
//! - macOS: a launchd agent, `~/Library/LaunchAgents/dev.weft.agent.plist`, loaded with
//!   `launchctl`.
//! - Android (Termux): a Termux:Boot script, `~/.termux/boot/weft-agent`.
//! - Windows: the equivalent Task Scheduler commands are printed, not run.
//!
//! The text of each is built by a pure function, so every platform's form is tested here.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The systemd unit's name.
pub const UNIT_NAME: &str = "weft-agent.service";
/// The launchd label.
pub const LAUNCHD_LABEL: &str = "dev.weft.agent";
/// The Windows scheduled task's name.
pub const TASK_NAME: &str = "weft-agent";

/// The kind of service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
    TermuxBoot,
    Windows,
}

impl Manager {
    /// This platform's.
    pub fn current() -> Self {
        match std::env::consts::OS {
            "macos" => Manager::Launchd,
            "android" => Manager::TermuxBoot,
            "windows" => Manager::Windows,
            _ => Manager::Systemd,
        }
    }
}

/// What the service runs: `program prefix… --config CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub program: PathBuf,
    /// `["agent"]` when the program is `weft` rather than `weft-agent`.
    pub prefix: Vec<String>,
    pub config: PathBuf,
}

impl ServiceSpec {
    /// The running program (`weft-agent`, or `weft` for `weft agent`) with `config`.
    pub fn for_this_program(config: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot tell where this program is")?;
        let program = std::fs::canonicalize(&exe).unwrap_or(exe);
        let stem = program
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let prefix = if stem == "weft" {
            vec!["agent".to_owned()]
        } else {
            Vec::new()
        };
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
        Ok(Self {
            program,
            prefix,
            config,
        })
    }

    /// The arguments after the program.
    pub fn args(&self) -> Vec<String> {
        let mut a = self.prefix.clone();
        a.push("--config".into());
        a.push(self.config.display().to_string());
        a
    }
}

/// One word of a systemd command line: quoted when needed, `%` and `$` escaped.
fn systemd_word(w: &str) -> String {
    let escaped = w
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.is_empty() || escaped.contains(|c: char| c.is_whitespace() || c == ';') {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let exec = std::iter::once(spec.program.display().to_string())
        .chain(spec.args())
        .map(|w| systemd_word(&w))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Written by `weft-agent install-service`; remove with `weft-agent uninstall-service`.
[Unit]
Description=weft device agent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec}
# On SIGTERM the agent hands running work back to the orchestrator, then exits; the other
# processes of the unit (its commands) are killed only after that.
KillMode=mixed
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
# Exit status 2 is a configuration error or a refused token: restarting cannot fix it.
RestartPreventExitStatus=2
Environment=RUST_LOG=info
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The launchd agent (a property list).
pub fn launchd_plist(spec: &ServiceSpec, log: &Path) -> String {
    let args = std::iter::once(spec.program.display().to_string())
        .chain(spec.args())
        .map(|a| format!("        <string>{}</string>\n", xml(&a)))
        .collect::<String>();
    let log = xml(&log.display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `weft-agent install-service`; remove with `weft-agent uninstall-service`. -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LAUNCHD_LABEL}</string>
    <key>ProgramArguments</key>
    <array>
{args}    </array>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <key>ThrottleInterval</key>
    <integer>5</integer>
    <key>ExitTimeOut</key>
    <integer>30</integer>
    <key>StandardErrorPath</key>
    <string>{log}</string>
    <key>StandardOutPath</key>
    <string>{log}</string>
</dict>
</plist>
"#
    )
}

/// A Windows command-line word in double quotes.
fn win_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// The Task Scheduler commands that run the agent at logon (printed for the user to run).
pub fn windows_steps(spec: &ServiceSpec) -> String {
    let run = std::iter::once(spec.program.display().to_string())
        .chain(spec.args())
        .map(|w| win_quote(&w))
        .collect::<Vec<_>>()
        .join(" ");
    // schtasks takes the whole command line as one argument; inner quotes are escaped.
    let tr = run.replace('"', "\\\"");
    format!(
        "Run these in PowerShell or cmd as the user the agent should run as:\n\n  \
         schtasks /Create /TN {TASK_NAME} /SC ONLOGON /RL LIMITED /F /TR \"{tr}\"\n  \
         schtasks /Run /TN {TASK_NAME}\n\n\
         To remove it: schtasks /End /TN {TASK_NAME} & schtasks /Delete /TN {TASK_NAME} /F\n"
    )
}

/// A POSIX shell word in single quotes.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The Termux:Boot script (run at boot by the Termux:Boot app).
pub fn termux_boot_script(spec: &ServiceSpec, log: &Path) -> String {
    let cmd = std::iter::once(spec.program.display().to_string())
        .chain(spec.args())
        .map(|w| sh_quote(&w))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "#!/data/data/com.termux/files/usr/bin/sh
# Written by `weft-agent install-service`; started at boot by the Termux:Boot app.
# Keep the CPU awake while the agent runs (releases with `termux-wake-unlock`).
termux-wake-lock
exec {cmd} >> {log} 2>&1
",
        log = sh_quote(&log.display().to_string())
    )
}

/// Where each manager's file goes, from the environment.
pub fn service_file(manager: Manager, env: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let abs = |k: &str| env(k).map(PathBuf::from).filter(|p| p.is_absolute());
    let home = abs("HOME");
    match manager {
        Manager::Systemd => abs("XDG_CONFIG_HOME")
            .or_else(|| home.map(|h| h.join(".config")))
            .map(|c| c.join("systemd/user").join(UNIT_NAME)),
        Manager::Launchd => home.map(|h| {
            h.join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist"))
        }),
        Manager::TermuxBoot => home.map(|h| h.join(".termux/boot/weft-agent")),
        Manager::Windows => None,
    }
}

/// How to install.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Print what would be written and run; change nothing.
    pub dry_run: bool,
    /// Write the file but do not enable or start it.
    pub no_start: bool,
}

fn env_var(k: &str) -> Option<OsString> {
    std::env::var_os(k)
}

fn on_path(program: &str) -> bool {
    crate::exec::find_program(Path::new(program), &env_var("PATH").unwrap_or_default()).is_some()
}

/// Runs `program args` and fails with its stderr if it fails.
fn run(out: &mut dyn Write, program: &str, args: &[&str]) -> anyhow::Result<()> {
    writeln!(out, "  $ {program} {}", args.join(" "))?;
    let o = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !o.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Writes (or, dry, prints) the service for `manager` and starts it unless told not to.
pub fn install(
    manager: Manager,
    spec: &ServiceSpec,
    opts: InstallOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if manager == Manager::Windows {
        write!(out, "{}", windows_steps(spec))?;
        return Ok(());
    }
    let file = service_file(manager, &env_var)
        .context("cannot tell where the service file goes: HOME is not set")?;
    let home = env_var("HOME").map(PathBuf::from).unwrap_or_default();
    let (text, mode) = match manager {
        Manager::Systemd => (systemd_unit(spec), 0o644),
        Manager::Launchd => (
            launchd_plist(spec, &home.join("Library/Logs/weft-agent.log")),
            0o644,
        ),
        _ => (
            termux_boot_script(spec, &home.join(".weft-agent.log")),
            0o700,
        ),
    };
    if opts.dry_run {
        writeln!(out, "would write {}:\n", file.display())?;
        write!(out, "{text}")?;
        writeln!(out)?;
        for step in start_steps(manager, &file) {
            writeln!(out, "would run: {step}")?;
        }
        return Ok(());
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&file, &text).with_context(|| format!("cannot write {}", file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    writeln!(out, "wrote {}", file.display())?;
    let steps = start_steps(manager, &file);
    let can_run = match manager {
        Manager::Systemd => on_path("systemctl"),
        Manager::Launchd => on_path("launchctl"),
        _ => false,
    };
    if opts.no_start || !can_run {
        if !opts.no_start && !steps.is_empty() {
            writeln!(out, "no service manager found to start it; run:")?;
        } else if !steps.is_empty() {
            writeln!(out, "to start it, run:")?;
        }
        for step in &steps {
            writeln!(out, "  {step}")?;
        }
    } else {
        match manager {
            Manager::Systemd => {
                run(out, "systemctl", &["--user", "daemon-reload"])?;
                run(out, "systemctl", &["--user", "enable", "--now", UNIT_NAME])?;
            }
            _ => {
                let f = file.display().to_string();
                run(out, "launchctl", &["load", "-w", &f])?;
            }
        }
        writeln!(out, "the agent is running as a service")?;
    }
    match manager {
        Manager::Systemd => writeln!(
            out,
            "logs: journalctl --user -u {UNIT_NAME} -f\nto keep it running while you are logged \
             out: loginctl enable-linger $USER"
        )?,
        Manager::TermuxBoot => writeln!(
            out,
            "install the Termux:Boot app and open it once; the agent then starts at boot"
        )?,
        _ => {}
    }
    Ok(())
}

/// The commands that enable and start an installed service.
pub fn start_steps(manager: Manager, file: &Path) -> Vec<String> {
    match manager {
        Manager::Systemd => vec![
            "systemctl --user daemon-reload".into(),
            format!("systemctl --user enable --now {UNIT_NAME}"),
        ],
        Manager::Launchd => vec![format!("launchctl load -w {}", file.display())],
        Manager::TermuxBoot => vec![format!("sh {} &", file.display())],
        Manager::Windows => Vec::new(),
    }
}

/// Stops and removes the service (dry: prints what it would do).
pub fn uninstall(manager: Manager, dry_run: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(file) = service_file(manager, &env_var) else {
        if manager == Manager::Windows {
            writeln!(
                out,
                "run: schtasks /End /TN {TASK_NAME} & schtasks /Delete /TN {TASK_NAME} /F"
            )?;
            return Ok(());
        }
        bail!("cannot tell where the service file is: HOME is not set");
    };
    let stop: Vec<(&str, Vec<String>)> = match manager {
        Manager::Systemd => vec![(
            "systemctl",
            vec![
                "--user".into(),
                "disable".into(),
                "--now".into(),
                UNIT_NAME.into(),
            ],
        )],
        Manager::Launchd => vec![(
            "launchctl",
            vec!["unload".into(), "-w".into(), file.display().to_string()],
        )],
        _ => Vec::new(),
    };
    if dry_run {
        for (p, a) in &stop {
            writeln!(out, "would run: {p} {}", a.join(" "))?;
        }
        writeln!(out, "would remove {}", file.display())?;
        return Ok(());
    }
    for (p, a) in &stop {
        if file.exists() && on_path(p) {
            let args: Vec<&str> = a.iter().map(String::as_str).collect();
            if let Err(e) = run(out, p, &args) {
                writeln!(out, "  ({e}; removing the file anyway)")?;
            }
        }
    }
    match std::fs::remove_file(&file) {
        Ok(()) => writeln!(out, "removed {}", file.display())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            writeln!(
                out,
                "no service installed ({} does not exist)",
                file.display()
            )?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
    }
    if manager == Manager::Systemd && on_path("systemctl") {
        let _ = run(out, "systemctl", &["--user", "daemon-reload"]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            program: "/opt/weft tools/weft".into(),
            prefix: vec!["agent".into()],
            config: "/home/u/.config/weft/agent.toml".into(),
        }
    }

    #[test]
    fn systemd_unit_runs_the_agent_from_its_config() {
        let unit = systemd_unit(&spec());
        assert!(
            unit.contains(
                "ExecStart=\"/opt/weft tools/weft\" agent --config /home/u/.config/weft/agent.toml\n"
            ),
            "{unit}"
        );
        for line in [
            "KillMode=mixed",
            "Restart=on-failure",
            "WantedBy=default.target",
        ] {
            assert!(unit.contains(line), "{line}");
        }
        assert!(
            !unit.contains("WEFT_DEVICE_TOKEN") && !unit.contains("--token"),
            "no token in the unit"
        );
        assert_eq!(systemd_word("50%$x"), "50%%$$x");
    }

    #[test]
    fn launchd_plist_lists_every_argument() {
        let mut s = spec();
        s.config = "/Users/u/Library/Application Support/weft/agent.toml".into();
        let plist = launchd_plist(&s, Path::new("/Users/u/Library/Logs/weft-agent.log"));
        assert!(plist.contains("<string>dev.weft.agent</string>"));
        assert!(plist.contains(
            "        <string>/opt/weft tools/weft</string>\n        <string>agent</string>\n        \
             <string>--config</string>\n        \
             <string>/Users/u/Library/Application Support/weft/agent.toml</string>\n"
        ), "{plist}");
        assert!(plist.contains("<key>RunAtLoad</key>\n    <true/>"));
        let mut s = spec();
        s.config = "/a&b/<c>.toml".into();
        assert!(launchd_plist(&s, Path::new("/l")).contains("/a&amp;b/&lt;c&gt;.toml"));
    }

    #[test]
    fn windows_steps_use_the_task_scheduler() {
        let s = ServiceSpec {
            program: r"C:\Program Files\weft\weft-agent.exe".into(),
            prefix: vec![],
            config: r"C:\Users\u\AppData\Roaming\weft\agent.toml".into(),
        };
        let steps = windows_steps(&s);
        assert!(steps.contains(
            r#"schtasks /Create /TN weft-agent /SC ONLOGON /RL LIMITED /F /TR "\"C:\Program Files\weft\weft-agent.exe\" \"--config\" \"C:\Users\u\AppData\Roaming\weft\agent.toml\"""#
        ), "{steps}");
        assert!(steps.contains("schtasks /Run /TN weft-agent"));
        assert!(steps.contains("schtasks /Delete /TN weft-agent /F"));
    }

    #[test]
    fn termux_boot_script_takes_a_wake_lock() {
        let s = ServiceSpec {
            program: "/data/data/com.termux/files/usr/bin/weft-agent".into(),
            prefix: vec![],
            config: "/data/data/com.termux/files/home/.config/weft/agent.toml".into(),
        };
        let script = termux_boot_script(
            &s,
            Path::new("/data/data/com.termux/files/home/.weft-agent.log"),
        );
        assert!(script.starts_with("#!/data/data/com.termux/files/usr/bin/sh\n"));
        assert!(script.contains("termux-wake-lock\n"));
        assert!(
            script.contains(
                "exec '/data/data/com.termux/files/usr/bin/weft-agent' '--config' \
             '/data/data/com.termux/files/home/.config/weft/agent.toml' >> "
            ),
            "{script}"
        );
    }

    #[test]
    fn service_files_live_in_each_managers_place() {
        let env = |k: &str| match k {
            "HOME" => Some(OsString::from("/home/u")),
            _ => None,
        };
        assert_eq!(
            service_file(Manager::Systemd, &env),
            Some("/home/u/.config/systemd/user/weft-agent.service".into())
        );
        let xdg = |k: &str| match k {
            "HOME" => Some(OsString::from("/home/u")),
            "XDG_CONFIG_HOME" => Some(OsString::from("/x")),
            _ => None,
        };
        assert_eq!(
            service_file(Manager::Systemd, &xdg),
            Some("/x/systemd/user/weft-agent.service".into())
        );
        assert_eq!(
            service_file(Manager::Launchd, &env),
            Some("/home/u/Library/LaunchAgents/dev.weft.agent.plist".into())
        );
        assert_eq!(
            service_file(Manager::TermuxBoot, &env),
            Some("/home/u/.termux/boot/weft-agent".into())
        );
        assert_eq!(service_file(Manager::Windows, &env), None);
    }
}
