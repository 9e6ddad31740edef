//! The `weft-agent` command line (also `weft agent`).
//!
//! Without a subcommand it runs the agent. The flags belong to the top level and may also be
//! given after a subcommand (`weft-agent init --name mbp`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use weft_protocol::Action;

use crate::exec::{self, Ctx, Toolbox};
use crate::service::{self, InstallOptions, Manager, ServiceSpec};
use crate::settings::{self, InitValues, Loaded, Overrides};

/// Run a weft device agent: connect to an orchestrator and run the tasks it assigns, within
/// the policy of this device's owner.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file (default: the platform's config dir, e.g. ~/.config/weft/agent.toml,
    /// read if it exists). Flags and WEFT_* variables override its values.
    #[arg(long, env = "WEFT_AGENT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The orchestrator's base URL [default: http://127.0.0.1:7600]; the WebSocket URL is
    /// derived from it. Repeat it (or comma-separate) for replicas on one Postgres: the agent
    /// connects to whichever leads (docs/replicas.md).
    #[arg(long, env = "WEFT_SERVER", global = true, value_delimiter = ',')]
    pub server: Vec<String>,
    /// The SHA-256 fingerprint of the server's TLS certificate (`sha256:…`, printed by `weft
    /// device add`): only that certificate is accepted.
    #[arg(long, env = "WEFT_SERVER_FINGERPRINT", global = true)]
    pub server_fingerprint: Option<String>,
    /// Allow a plain http:// server that is not on this machine (the token then crosses the
    /// network unencrypted).
    #[arg(long, global = true)]
    pub insecure_plaintext: bool,
    /// This device's registered name (`weft device add NAME`).
    #[arg(long, env = "WEFT_DEVICE_NAME", global = true)]
    pub name: Option<String>,
    /// The device token. Prefer the environment variable or a token file: a command line is
    /// visible to every user of the machine.
    #[arg(long, env = "WEFT_DEVICE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the device token.
    #[arg(
        long,
        env = "WEFT_DEVICE_TOKEN_FILE",
        conflicts_with = "token",
        global = true
    )]
    pub token_file: Option<PathBuf>,
    /// laptop, phone, server, … [default: laptop]
    #[arg(long, env = "WEFT_DEVICE_KIND", global = true)]
    pub kind: Option<String>,
    /// Where shell commands run; `fs` actions stay inside it (and the roots the policy allows)
    /// [default: ./weft-work].
    #[arg(long, env = "WEFT_WORKDIR", global = true)]
    pub workdir: Option<PathBuf>,
    /// Where unacknowledged results are kept across restarts; must be outside the workdir
    /// [default: ./weft-state].
    #[arg(long, env = "WEFT_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Most attempts this device runs at once [default: 4].
    #[arg(long, env = "WEFT_MAX_CONCURRENCY", global = true)]
    pub max_concurrency: Option<u32>,
    /// Also offer the test executors (`steps`, which works in turns like an LLM loop).
    #[arg(long, env = "WEFT_TEST_EXECUTORS", global = true)]
    pub test_executors: bool,
    /// The API root of this device's own model, any OpenAI-compatible chat-completions
    /// endpoint (e.g. http://localhost:11434/v1). With --llm-model, the device runs tasks that
    /// have an instruction and no action (capability `llm`).
    #[arg(long, env = "WEFT_AGENT_LLM_BASE_URL", global = true)]
    pub llm_base_url: Option<String>,
    /// The model of this device's LLM executor, e.g. llama3.1.
    #[arg(long, env = "WEFT_AGENT_LLM_MODEL", global = true)]
    pub llm_model: Option<String>,
    /// A file holding the LLM endpoint's API key (else WEFT_AGENT_LLM_API_KEY; there is no
    /// flag for the key itself).
    #[arg(long, env = "WEFT_AGENT_LLM_API_KEY_FILE", global = true)]
    pub llm_api_key_file: Option<PathBuf>,
    /// Simulate this benchmark device profile (windows-laptop, mac-laptop, linux-server,
    /// android-phone, edge-box): offer the `sim` executor (docs/sim.md).
    #[arg(long, env = "WEFT_SIM_PROFILE", global = true)]
    pub sim_profile: Option<String>,
    /// Seed of the simulated profile's modelled times and transient failures [default: 0].
    #[arg(long, env = "WEFT_SIM_SEED", global = true)]
    pub sim_seed: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a commented config file (and the token file, from WEFT_DEVICE_TOKEN) for this
    /// device.
    Init {
        /// Replace an existing config or token file.
        #[arg(long)]
        force: bool,
        /// Replace only the token file when a config file exists (after `weft device rotate`):
        /// the config, with the owner's policy, is kept. Without a config file, the same as a
        /// first `init`.
        #[arg(long, conflicts_with = "force")]
        new_token: bool,
    },
    /// Run the agent as a service of this user: a systemd user unit (Linux), a launchd agent
    /// (macOS), a Termux:Boot script (Android); prints the steps for Windows.
    InstallService {
        /// Print what would be written and run, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the service file but do not enable or start it.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and remove the service.
    UninstallService {
        #[arg(long)]
        dry_run: bool,
    },
    /// The owner's policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the profile this agent states in its hello: kind, platform, OS version,
    /// capabilities and tools (with their argument schemas). This is what planners see.
    Profile,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Explain what this device would do with an action, e.g.
    /// '{"kind": "shell", "command": "rm -rf /"}'. Exits 0 if it would run, 1 if refused.
    Check {
        /// The action as JSON (the `action` of a task).
        action: String,
    },
    /// Print the policy in force (after the config file is read).
    Show,
}

impl Args {
    fn overrides(&self) -> Overrides {
        Overrides {
            server: self.server.first().cloned(),
            replicas: self.server.iter().skip(1).cloned().collect(),
            server_fingerprint: self.server_fingerprint.clone(),
            insecure_plaintext: self.insecure_plaintext,
            name: self.name.clone(),
            token: self.token.clone(),
            token_file: self.token_file.clone(),
            kind: self.kind.clone(),
            workdir: self.workdir.clone(),
            state_dir: self.state_dir.clone(),
            max_concurrency: self.max_concurrency,
            test_executors: self.test_executors,
            llm_base_url: self.llm_base_url.clone(),
            llm_model: self.llm_model.clone(),
            llm_api_key_file: self.llm_api_key_file.clone(),
            // From the environment only, so it is never on a command line.
            llm_api_key: std::env::var("WEFT_AGENT_LLM_API_KEY")
                .ok()
                .map(weft_planner::llm::Secret::new),
            sim_profile: self.sim_profile.clone(),
            sim_seed: self.sim_seed,
        }
    }

    /// The configuration to run with: flags and environment over the config file over
    /// defaults, validated.
    pub fn config(&self) -> anyhow::Result<crate::Config> {
        let file = Loaded::find(self.config.as_deref())?;
        settings::config(&self.overrides(), file.as_ref())
    }

    /// The config file this invocation means: `--config`, else the platform default.
    fn config_path(&self) -> anyhow::Result<PathBuf> {
        match &self.config {
            Some(p) => Ok(p.clone()),
            None => settings::default_config_path()
                .context("cannot tell where the config file goes (no HOME); pass --config PATH"),
        }
    }
}

/// A token cancelled on SIGINT or SIGTERM.
fn stop_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
        t.cancel();
    });
    token
}

/// Runs the command line: the agent (until SIGINT/SIGTERM) or a subcommand. Returns the exit
/// code.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    match &args.command {
        None => {
            let config = args.config()?;
            tracing::info!(server = %config.server, device = %config.name,
                workdir = %config.workdir.display(), state_dir = %config.state_dir.display(),
                "weft-agent starting");
            crate::run(config, stop_on_signal()).await?;
            Ok(0)
        }
        Some(Command::Init { force, new_token }) => {
            let path = std::path::absolute(args.config_path()?)?;
            if *new_token && path.exists() {
                replace_token(&args, &path).map(|()| 0)
            } else {
                init(&args, *force).map(|()| 0)
            }
        }
        Some(Command::InstallService { dry_run, no_start }) => {
            let path = args.config_path()?;
            // The service must be able to start: check the file now.
            let file = Loaded::read(&path).with_context(|| {
                format!("run `weft-agent init` first (it writes {})", path.display())
            })?;
            // The service runs with `--config` alone: the file must be enough.
            settings::config(&Overrides::default(), Some(&file))?;
            let spec = ServiceSpec::for_this_program(&path)?;
            let opts = InstallOptions {
                dry_run: *dry_run,
                no_start: *no_start,
            };
            service::install(Manager::current(), &spec, opts, &mut std::io::stdout())?;
            Ok(0)
        }
        Some(Command::UninstallService { dry_run }) => {
            service::uninstall(Manager::current(), *dry_run, &mut std::io::stdout())?;
            Ok(0)
        }
        Some(Command::Policy(PolicyCommand::Show)) => {
            let file = Loaded::find(args.config.as_deref())?;
            let c = settings::config_without_token(&args.overrides(), file.as_ref());
            match &file {
                Some(f) => println!("config file: {}", f.path.display()),
                None => println!("config file: none (the default policy)"),
            }
            println!("workdir: {}", c.workdir.display());
            println!("{:#?}", c.policy);
            Ok(0)
        }
        Some(Command::Policy(PolicyCommand::Check { action })) => {
            let file = Loaded::find(args.config.as_deref())?;
            let c = settings::config_without_token(&args.overrides(), file.as_ref());
            let (allowed, text) = check_action(&c, action).await;
            println!("{text}");
            Ok(if allowed { 0 } else { 1 })
        }
        Some(Command::Profile) => {
            let file = Loaded::find(args.config.as_deref())?;
            let c = settings::config_without_token(&args.overrides(), file.as_ref());
            let tools = Toolbox::discover(&c);
            let profile = serde_json::json!({
                "kind": c.kind,
                "platform": crate::platform(),
                "os_version": crate::profile::os_version(),
                "capabilities": exec::capabilities(&c, &tools),
                "tools": exec::tool_specs(&c, &tools),
                "max_concurrency": c.max_concurrency,
            });
            println!("{}", serde_json::to_string_pretty(&profile)?);
            Ok(0)
        }
    }
}

/// What `policy check` says about `action_json`, and whether it would run.
pub async fn check_action(c: &crate::Config, action_json: &str) -> (bool, String) {
    let action: Action = match serde_json::from_str(action_json) {
        Ok(a) => a,
        Err(e) => {
            return (
                false,
                format!(
                    "refused: not an action ({e}); e.g. {{\"kind\": \"shell\", \"command\": \"ls\"}}"
                ),
            );
        }
    };
    let tools = Toolbox::discover(c);
    let capabilities = exec::capabilities(c, &tools);
    let http = match exec::http::client(&c.policy, c.http_timeout) {
        Ok(h) => h,
        Err(e) => return (false, format!("cannot set up the HTTP client: {e}")),
    };
    let ctx = Ctx {
        workdir: &c.workdir,
        policy: &c.policy,
        tools: &tools,
        max_output_bytes: c.policy.max_output_bytes,
        http: &http,
        http_timeout: c.http_timeout,
        progress: tokio::sync::mpsc::unbounded_channel().0,
        max_turns: 1,
    };
    if let Err(e) = exec::vet(&action, &capabilities, &ctx) {
        return (false, format!("refused ({}): {}", e.code, e.message));
    }
    let mut lines = vec![format!(
        "allowed: the `{}` executor would run it",
        action.capability()
    )];
    match &action {
        Action::HttpGet { url } => {
            // What the resolver would see (each redirect is checked the same way).
            if let Ok(u) = reqwest::Url::parse(url)
                && let Some(host) = u.host_str()
            {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                if bare.parse::<std::net::IpAddr>().is_err() {
                    match tokio::net::lookup_host((bare, u.port_or_known_default().unwrap_or(80)))
                        .await
                    {
                        Ok(addrs) => {
                            for a in addrs {
                                if let Err(d) = c.policy.check_ip(bare, a.ip()) {
                                    return (
                                        false,
                                        format!(
                                            "refused ({}): {}",
                                            d.error().code,
                                            d.error().message
                                        ),
                                    );
                                }
                                lines.push(format!("  {bare} resolves to {}: allowed", a.ip()));
                            }
                        }
                        Err(e) => lines.push(format!(
                            "  {bare} does not resolve here ({e}); it is checked again when fetched"
                        )),
                    }
                }
            }
        }
        Action::ReadFile { path }
        | Action::WriteFile { path, .. }
        | Action::CopyFile { to: path, .. } => {
            lines.push(format!(
                "  inside {}; symlinks are resolved and checked when it runs",
                if Path::new(path).is_absolute() {
                    "a root the policy allows"
                } else {
                    "the workdir"
                }
            ));
        }
        _ => {}
    }
    if let Some(max) = c.policy.max_run {
        lines.push(format!(
            "  stopped after {} s (policy.max_run_secs)",
            max.as_secs()
        ));
    }
    lines.push(format!(
        "  output kept up to {} bytes (policy.max_output_bytes)",
        c.policy.max_output_bytes
    ));
    (true, lines.join("\n"))
}

/// `weft-agent init`: writes the config file and, given a token, the token file.
fn init(args: &Args, force: bool) -> anyhow::Result<()> {
    let path = std::path::absolute(args.config_path()?)?;
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            path.display()
        );
    }
    let Some(name) = args.name.clone() else {
        bail!("init needs the device's name: --name NAME (as in `weft device add NAME`)");
    };
    if !weft_protocol::ids::valid_device_name(&name) {
        bail!("device name `{name}`: use 1-64 letters, digits, '-' or '_'");
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let data = settings::data_dir().unwrap_or_else(|| dir.clone());
    let token_file = match &args.token_file {
        Some(f) => std::path::absolute(f)?,
        None => dir.join(settings::TOKEN_FILE),
    };
    match (&args.token, token_file.is_file()) {
        (Some(token), _) => {
            if token.trim().is_empty() {
                bail!("the device token is empty");
            }
            settings::write_private(&token_file, &format!("{}\n", token.trim()), force)?;
        }
        (None, true) => {}
        (None, false) => bail!(
            "no device token: run with WEFT_DEVICE_TOKEN=… (printed by `weft device add`), or \
             pass --token-file FILE of an existing file"
        ),
    }
    let values = InitValues {
        server: args
            .server
            .first()
            .cloned()
            .unwrap_or_else(|| settings::DEFAULT_SERVER.to_owned()),
        replicas: args.server.iter().skip(1).cloned().collect(),
        server_fingerprint: args.server_fingerprint.clone(),
        name,
        kind: args.kind.clone().unwrap_or_else(|| "laptop".to_owned()),
        token_file: if token_file.parent() == Some(dir.as_path()) {
            PathBuf::from(token_file.file_name().unwrap_or_default())
        } else {
            token_file.clone()
        },
        workdir: match &args.workdir {
            Some(w) => std::path::absolute(w)?,
            None => data.join("work"),
        },
        state_dir: match &args.state_dir {
            Some(s) => std::path::absolute(s)?,
            None => data.join("state"),
        },
        max_concurrency: args.max_concurrency.unwrap_or(4),
    };
    let text = settings::init_text(&values);
    // Check what was written reads back into a valid configuration before keeping it.
    let loaded = Loaded::parse(&path, &text)?;
    let check = Overrides {
        token: Some("x".into()),
        ..Overrides::default()
    };
    settings::config(&check, Some(&loaded))?;
    settings::write_private(&path, &text, force)?;
    println!("wrote {}", path.display());
    println!("token in {}", token_file.display());
    println!(
        "next: `{} install-service` to run it as a service, or `{}` to run it here",
        program_hint(),
        program_hint()
    );
    Ok(())
}

/// `weft-agent init --new-token` where a config file exists: writes the new token to the
/// token file the config names and keeps the config (and the owner's policy in it).
fn replace_token(args: &Args, path: &Path) -> anyhow::Result<()> {
    let loaded = Loaded::read(path)?;
    let Some(token) = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        bail!("no device token: run with WEFT_DEVICE_TOKEN=… (printed by `weft device rotate`)");
    };
    if let (Some(name), Some(kept)) = (&args.name, &loaded.file.name)
        && name != kept
    {
        bail!(
            "{} is the config of device `{kept}`, not `{name}`: pass --config with this \
             device's file, or `init --force` to replace it",
            path.display()
        );
    }
    let Some(token_file) = args.token_file.clone().or(loaded.file.token_file.clone()) else {
        bail!(
            "{} names no token_file to replace; add `token_file = \"token\"` to it, or run \
             `init --force`",
            path.display()
        );
    };
    settings::write_private(&token_file, &format!("{token}\n"), true)?;
    println!("new token in {}", token_file.display());
    println!("kept {} (its policy unchanged)", path.display());
    if let Some(given) = &args.server_fingerprint
        && loaded.file.server_fingerprint.as_ref() != Some(given)
    {
        println!(
            "note: the config pins another server fingerprint than {given}; if the server's \
             certificate changed, put the new one in server_fingerprint"
        );
    }
    println!(
        "next: `{} install-service` to start the service again, or `{}` to run it here",
        program_hint(),
        program_hint()
    );
    Ok(())
}

/// How the user invoked this program: `weft agent` or `weft-agent`.
fn program_hint() -> &'static str {
    let exe = std::env::current_exe().ok();
    match exe
        .as_deref()
        .and_then(Path::file_stem)
        .and_then(|s| s.to_str())
    {
        Some("weft") => "weft agent",
        _ => "weft-agent",
    }
}
