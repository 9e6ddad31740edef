//! The agent's config file (TOML) and how it combines with flags and the environment.
//!
//! Precedence, highest first: command-line flags, `WEFT_*` environment variables, the config
//! file, built-in defaults. The file is `--config PATH` (or `WEFT_AGENT_CONFIG`); without either,
//! the platform's default ([`default_config_path`]) is read if it exists. Relative paths in the
//! file are relative to the file's own directory, and `~/` is the home directory. Unknown keys
//! are errors, and every error names the file and the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use weft_planner::llm::Secret;

use crate::config::AdbConfig;
use crate::policy::{EXECUTORS, Glob, Policy};
use crate::{Config, LlmConfig};

/// The config file's name inside the config dir.
pub const CONFIG_FILE: &str = "agent.toml";
/// The token file `weft-agent init` writes next to the config file.
pub const TOKEN_FILE: &str = "token";

/// The platform's per-user config directory for weft: `$XDG_CONFIG_HOME/weft` or
/// `~/.config/weft` (Linux, Android, other Unix), `~/Library/Application Support/weft` (macOS),
/// `%APPDATA%\weft` (Windows).
pub fn config_dir() -> Option<PathBuf> {
    config_dir_for(std::env::consts::OS, |k| std::env::var_os(k))
}

/// Where `weft-agent init` puts the workdir and state dir: `$XDG_DATA_HOME/weft/agent` or
/// `~/.local/share/weft/agent`, `~/Library/Application Support/weft/agent`,
/// `%LOCALAPPDATA%\weft\agent`.
pub fn data_dir() -> Option<PathBuf> {
    data_dir_for(std::env::consts::OS, |k| std::env::var_os(k)).map(|d| d.join("agent"))
}

/// The default config file: [`config_dir`]`/agent.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join(CONFIG_FILE))
}

/// The home directory (`HOME`, or `USERPROFILE` on Windows).
pub fn home_dir() -> Option<PathBuf> {
    home_for(std::env::consts::OS, |k| std::env::var_os(k))
}

fn absolute_var(env: &impl Fn(&str) -> Option<OsString>, key: &str) -> Option<PathBuf> {
    env(key)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() || p.has_root())
}

fn home_for(os: &str, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if os == "windows" {
        absolute_var(&env, "USERPROFILE").or_else(|| absolute_var(&env, "HOME"))
    } else {
        absolute_var(&env, "HOME")
    }
}

pub(crate) fn config_dir_for(os: &str, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let base = match os {
        "windows" => absolute_var(&env, "APPDATA"),
        "macos" => home_for(os, &env).map(|h| h.join("Library/Application Support")),
        _ => absolute_var(&env, "XDG_CONFIG_HOME")
            .or_else(|| home_for(os, &env).map(|h| h.join(".config"))),
    };
    base.map(|b| b.join("weft"))
}

pub(crate) fn data_dir_for(os: &str, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let base = match os {
        "windows" => absolute_var(&env, "LOCALAPPDATA").or_else(|| absolute_var(&env, "APPDATA")),
        "macos" => home_for(os, &env).map(|h| h.join("Library/Application Support")),
        _ => absolute_var(&env, "XDG_DATA_HOME")
            .or_else(|| home_for(os, &env).map(|h| h.join(".local/share"))),
    };
    base.map(|b| b.join("weft"))
}

/// The config file as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: Option<String>,
    /// Further base URLs of the same orchestrator (replicas on one Postgres; the agent
    /// connects to whichever leads).
    pub replicas: Option<Vec<String>>,
    /// The server certificate's SHA-256 (`sha256:…`): only that certificate is accepted.
    pub server_fingerprint: Option<String>,
    /// Allow a plain `http://` server that is not on this machine.
    pub insecure_plaintext: Option<bool>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub token_file: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub policy: PolicyFile,
    pub adb: Option<AdbFile>,
    pub llm: Option<LlmFile>,
    pub sim: Option<SimFile>,
}

/// `[sim]`: a simulated device profile for benchmarks (the `sim` executor, docs/sim.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFile {
    pub profile: Option<String>,
    pub seed: Option<u64>,
    pub latency_scale: Option<f64>,
    pub fail_rate: Option<f64>,
}

/// `[llm]`: the device's own model, for tasks that have an instruction and no action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFile {
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// The file holding the API key; there is no key for the key itself.
    pub api_key_file: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<u32>,
    pub input_bytes: Option<usize>,
    pub tool_output_bytes: Option<usize>,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub executors: Option<Vec<String>>,
    pub max_output_bytes: Option<usize>,
    pub max_run_secs: Option<u64>,
    #[serde(default)]
    pub shell: ShellFile,
    #[serde(default)]
    pub fs: FsFile,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub phone: ToolsFile,
    #[serde(default)]
    pub adb: ToolsFile,
    #[serde(default)]
    pub files: FilesFile,
}

/// `[policy.files]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesFile {
    pub max_upload_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellFile {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsFile {
    #[serde(default)]
    pub read: Vec<PathBuf>,
    #[serde(default)]
    pub write: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub hosts: Option<Vec<String>>,
    #[serde(default)]
    pub deny_hosts: Vec<String>,
    #[serde(default)]
    pub allow_networks: Vec<String>,
    /// Host name → `IP:PORT` to connect to instead.
    #[serde(default)]
    pub connect_to: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsFile {
    pub tools: Option<Vec<String>>,
}

/// `[adb]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdbFile {
    pub serial: String,
    pub path: Option<PathBuf>,
}

/// A config file read from disk, its paths resolved and its policy checked.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub file: FileConfig,
    pub policy: Policy,
}

impl Loaded {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the file at `path` (relative paths are resolved against its directory).
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let at = |e: String| anyhow::anyhow!("config file {}: {e}", path.display());
        let mut file: FileConfig = toml::from_str(text).map_err(|e| at(e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in [&mut file.token_file, &mut file.workdir, &mut file.state_dir]
            .into_iter()
            .flatten()
        {
            *p = resolve(p, &base);
        }
        if let Some(key) = file.llm.as_mut().and_then(|l| l.api_key_file.as_mut()) {
            *key = resolve(key, &base);
        }
        let policy = build_policy(&file.policy, &base).map_err(at)?;
        if let Some(sim) = &file.sim {
            sim_config(None, None, Some(sim))
                .map(|c| c.validate())
                .transpose()
                .map_err(at)?;
        }
        Ok(Self { path, file, policy })
    }

    /// Reads the file named by `--config`, else the default file if it exists.
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Option<Self>> {
        match explicit {
            Some(p) => Self::read(p).map(Some),
            None => match default_config_path() {
                Some(p) if p.is_file() => Self::read(&p).map(Some),
                _ => Ok(None),
            },
        }
    }
}

/// `p` with `~/` expanded and, if relative, joined to `base`.
fn resolve(p: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = home_dir()
    {
        return home.join(rest);
    }
    if p.is_absolute() || p.has_root() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Checks `[policy]` and builds the [`Policy`]; errors name the key.
fn build_policy(f: &PolicyFile, base: &Path) -> Result<Policy, String> {
    let mut p = Policy::default();
    if let Some(list) = &f.executors {
        for (i, e) in list.iter().enumerate() {
            if !EXECUTORS.contains(&e.as_str()) {
                return Err(format!(
                    "policy.executors[{i}]: unknown executor `{e}` (known: {})",
                    EXECUTORS.join(", ")
                ));
            }
        }
        p.executors = Some(list.clone());
    }
    if let Some(n) = f.max_output_bytes {
        if n == 0 || n > crate::policy::MAX_OUTPUT_BYTES_LIMIT {
            return Err(format!(
                "policy.max_output_bytes: {n} is not in 1..={}",
                crate::policy::MAX_OUTPUT_BYTES_LIMIT
            ));
        }
        p.max_output_bytes = n;
    }
    if let Some(n) = f.files.max_upload_bytes {
        if n == 0 {
            return Err(
                "policy.files.max_upload_bytes: must be at least 1 (leave it out for the \
                 default, 1 GiB)"
                    .into(),
            );
        }
        p.files.max_upload_bytes = n;
    }
    if let Some(s) = f.max_run_secs {
        if s == 0 {
            return Err(
                "policy.max_run_secs: must be at least 1 (leave it out for no limit)".into(),
            );
        }
        p.max_run = Some(Duration::from_secs(s));
    }
    let globs = |key: &str, list: &[String]| -> Result<Vec<Glob>, String> {
        list.iter()
            .enumerate()
            .map(|(i, g)| {
                if g.trim().is_empty() {
                    Err(format!("{key}[{i}]: an empty pattern"))
                } else {
                    Ok(Glob::new(g.trim()))
                }
            })
            .collect()
    };
    p.shell.allow = globs("policy.shell.allow", &f.shell.allow)?;
    p.shell.deny = globs("policy.shell.deny", &f.shell.deny)?;
    for (key, list, out) in [
        ("policy.fs.read", &f.fs.read, &mut p.fs.read),
        ("policy.fs.write", &f.fs.write, &mut p.fs.write),
    ] {
        for (i, root) in list.iter().enumerate() {
            let r = resolve(root, base);
            if r.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "{key}[{i}]: `{}` must not contain `..`",
                    root.display()
                ));
            }
            out.push(r);
        }
    }
    if let Some(hosts) = &f.http.hosts {
        p.http.hosts = globs("policy.http.hosts", hosts)?
            .into_iter()
            .map(|g| Glob::new(&g.as_str().to_ascii_lowercase()))
            .collect();
    }
    p.http.deny_hosts = globs("policy.http.deny_hosts", &f.http.deny_hosts)?
        .into_iter()
        .map(|g| Glob::new(&g.as_str().to_ascii_lowercase()))
        .collect();
    for (i, n) in f.http.allow_networks.iter().enumerate() {
        let net = n
            .parse::<ipnet::IpNet>()
            .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                format!(
                    "policy.http.allow_networks[{i}]: `{n}` is not an address or network \
                     (e.g. 127.0.0.1 or 192.168.1.0/24)"
                )
            })?;
        p.http.allow_networks.push(net);
    }
    for (host, to) in &f.http.connect_to {
        let addr = to.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "policy.http.connect_to.{host}: `{to}` is not an address with a port \
                 (e.g. 127.0.0.1:8080)"
            )
        })?;
        p.http.connect_to.insert(host.to_ascii_lowercase(), addr);
    }
    p.phone_tools.clone_from(&f.phone.tools);
    p.adb_tools.clone_from(&f.adb.tools);
    Ok(p)
}

/// What flags and the environment say; `None` where they say nothing.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub server: Option<String>,
    /// The further `--server`s (replicas); with `server` they replace the file's list.
    pub replicas: Vec<String>,
    /// `--server-fingerprint` / `WEFT_SERVER_FINGERPRINT`.
    pub server_fingerprint: Option<String>,
    /// `--insecure-plaintext`.
    pub insecure_plaintext: bool,
    pub name: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub kind: Option<String>,
    pub workdir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub max_concurrency: Option<u32>,
    pub test_executors: bool,
    /// `--llm-base-url` / `WEFT_AGENT_LLM_BASE_URL`.
    pub llm_base_url: Option<String>,
    /// `--llm-model` / `WEFT_AGENT_LLM_MODEL`.
    pub llm_model: Option<String>,
    /// `--llm-api-key-file` / `WEFT_AGENT_LLM_API_KEY_FILE`.
    pub llm_api_key_file: Option<PathBuf>,
    /// `WEFT_AGENT_LLM_API_KEY` (environment only: never a flag). `Debug` redacts it.
    pub llm_api_key: Option<Secret>,
    /// `--sim-profile` / `WEFT_SIM_PROFILE`.
    pub sim_profile: Option<String>,
    /// `--sim-seed` / `WEFT_SIM_SEED`.
    pub sim_seed: Option<u64>,
}

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7600";

/// Everything but the token: what `policy check` and `profile` need, and what running needs
/// besides the token.
pub fn config_without_token(o: &Overrides, file: Option<&Loaded>) -> Config {
    let f = file.map(|l| &l.file);
    let pick = |flag: &Option<String>, from_file: Option<&Option<String>>, default: &str| {
        flag.clone()
            .or_else(|| from_file.and_then(Clone::clone))
            .unwrap_or_else(|| default.to_owned())
    };
    let server = pick(&o.server, f.map(|f| &f.server), DEFAULT_SERVER);
    let name = pick(&o.name, f.map(|f| &f.name), "");
    let mut c = Config::new(&server, &name, "");
    c.replicas = if o.server.is_some() {
        o.replicas.clone()
    } else {
        f.and_then(|f| f.replicas.clone()).unwrap_or_default()
    };
    c.server_fingerprint = o
        .server_fingerprint
        .clone()
        .or_else(|| f.and_then(|f| f.server_fingerprint.clone()));
    c.insecure_plaintext =
        o.insecure_plaintext || f.and_then(|f| f.insecure_plaintext).unwrap_or(false);
    c.kind = pick(&o.kind, f.map(|f| &f.kind), "laptop");
    c.workdir = o
        .workdir
        .clone()
        .or_else(|| f.and_then(|f| f.workdir.clone()))
        .unwrap_or_else(|| PathBuf::from("weft-work"));
    c.state_dir = o
        .state_dir
        .clone()
        .or_else(|| f.and_then(|f| f.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("weft-state"));
    c.max_concurrency = o
        .max_concurrency
        .or_else(|| f.and_then(|f| f.max_concurrency))
        .unwrap_or(4);
    c.test_executors = o.test_executors;
    c.llm = llm_config(o, f.and_then(|f| f.llm.as_ref()));
    c.sim = sim_config(
        o.sim_profile.as_deref(),
        o.sim_seed,
        f.and_then(|f| f.sim.as_ref()),
    );
    if let Some(l) = file {
        c.policy = l.policy.clone();
        c.adb = l.file.adb.as_ref().map(|a| AdbConfig {
            serial: a.serial.clone(),
            program: a
                .path
                .as_ref()
                .map(|p| resolve(p, l.path.parent().unwrap_or(Path::new(""))))
                .unwrap_or_else(|| PathBuf::from("adb")),
        });
    }
    c
}

/// The device's LLM settings without the API key, if flags, the environment or an `[llm]`
/// section say anything about them (a half-given setting is then refused by validation, rather
/// than silently leaving the device without its executor).
fn llm_config(o: &Overrides, f: Option<&LlmFile>) -> Option<LlmConfig> {
    if f.is_none()
        && o.llm_base_url.is_none()
        && o.llm_model.is_none()
        && o.llm_api_key_file.is_none()
    {
        return None;
    }
    let none = LlmFile::default();
    let f = f.unwrap_or(&none);
    let base_url = o.llm_base_url.clone().or_else(|| f.base_url.clone());
    let model = o.llm_model.clone().or_else(|| f.model.clone());
    let mut l = LlmConfig::new(base_url.unwrap_or_default(), model.unwrap_or_default());
    if let Some(s) = f.timeout_secs {
        l.client.timeout = Duration::from_secs(s);
    }
    if let Some(n) = f.max_retries {
        l.client.max_retries = n;
    }
    if let Some(n) = f.input_bytes {
        l.input_bytes = n;
    }
    if let Some(n) = f.tool_output_bytes {
        l.tool_output_bytes = n;
    }
    Some(l)
}

/// The `sim` executor's settings, if a profile is named by a flag or `[sim]`.
fn sim_config(
    profile: Option<&str>,
    seed: Option<u64>,
    f: Option<&SimFile>,
) -> Option<crate::sim::SimConfig> {
    let profile = profile.or_else(|| f.and_then(|f| f.profile.as_deref()))?;
    let mut c = crate::sim::SimConfig::new(profile);
    if let Some(seed) = seed.or_else(|| f.and_then(|f| f.seed)) {
        c.seed = seed;
    }
    if let Some(s) = f.and_then(|f| f.latency_scale) {
        c.latency_scale = s;
    }
    if let Some(r) = f.and_then(|f| f.fail_rate) {
        c.fail_rate = r;
    }
    Some(c)
}

/// The full configuration to run with: [`config_without_token`] plus the token (flag or
/// environment, else the token file from a flag or the config file), validated.
pub fn config(o: &Overrides, file: Option<&Loaded>) -> anyhow::Result<Config> {
    let mut c = config_without_token(o, file);
    let where_ = || match file {
        Some(l) => format!(
            " (config file {}; flags and WEFT_* variables override it)",
            l.path.display()
        ),
        None => String::new(),
    };
    if c.name.as_str().is_empty() {
        bail!(
            "no device name: pass --name or set WEFT_DEVICE_NAME, or `name` in the config file{}",
            where_()
        );
    }
    let token_file = o
        .token_file
        .clone()
        .or_else(|| file.and_then(|l| l.file.token_file.clone()));
    c.token = match (&o.token, token_file) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read the token file {}{}", f.display(), where_()))?
            .trim()
            .to_owned(),
        (None, None) => bail!(
            "no device token: set WEFT_DEVICE_TOKEN, pass --token-file, or set `token_file` in \
             the config file (the token was printed by `weft device add`){}",
            where_()
        ),
    };
    if let Some(llm) = &mut c.llm {
        let key_file = o.llm_api_key_file.clone().or_else(|| {
            file.and_then(|l| l.file.llm.as_ref())
                .and_then(|l| l.api_key_file.clone())
        });
        let key = match (&o.llm_api_key, key_file) {
            (Some(k), _) => Some(k.expose().trim().to_owned()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(&f)
                    .with_context(|| {
                        format!(
                            "cannot read the LLM API key file {}{}",
                            f.display(),
                            where_()
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        llm.client.api_key = key.filter(|k| !k.is_empty()).map(Secret::new);
    }
    c.validate()
        .map_err(|e| anyhow::anyhow!("{e}{}", where_()))?;
    Ok(c)
}

/// What `weft-agent init` writes.
#[derive(Debug, Clone)]
pub struct InitValues {
    pub server: String,
    /// The other replicas' URLs, if the enrollment line listed several servers.
    pub replicas: Vec<String>,
    /// The server certificate's fingerprint from the enrollment line, if it had one.
    pub server_fingerprint: Option<String>,
    pub name: String,
    pub kind: String,
    /// Relative to the config file's directory, or absolute.
    pub token_file: PathBuf,
    pub workdir: PathBuf,
    pub state_dir: PathBuf,
    pub max_concurrency: u32,
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The commented config file `weft-agent init` writes.
pub fn init_text(v: &InitValues) -> String {
    let path = |p: &Path| quoted(&p.display().to_string());
    format!(
        r#"# weft-agent configuration, written by `weft-agent init`.
# Flags (--server, --name, ...) and WEFT_* environment variables override these values.
# Relative paths are relative to this file's directory; "~/" is your home directory.

# The orchestrator's base URL (https:// for a server on another machine).
server = {server}
# Replicas of the same orchestrator on one Postgres: the agent connects to whichever leads.
{replicas}
# The SHA-256 fingerprint of the server's TLS certificate, from `weft device add`: only that
# certificate is accepted. Without it, the certificate must be signed by a public authority.
# After the server's certificate changes, put the new fingerprint here (`weft serve` prints it).
{fingerprint}
# This device's registered name (`weft device add NAME`).
name = {name}
# laptop, phone, server, ...
kind = {kind}
# The file holding the device token (mode 0600). The token never goes on a command line.
token_file = {token_file}
# Where shell commands run and files are read and written.
workdir = {workdir}
# Where results wait for the orchestrator across restarts; must be outside the workdir.
state_dir = {state_dir}
# Most attempts this device runs at once.
max_concurrency = {max_concurrency}

# An Android device attached over USB or adb-over-network offers the `adb` executor:
# [adb]
# serial = "emulator-5554"   # as `adb devices` lists it
# path = "adb"               # the adb program, if it is not on PATH

# The device's own model (any OpenAI-compatible chat-completions endpoint: Ollama, vLLM,
# llama.cpp, OpenAI, ...). With it the device runs tasks that have an instruction and no action,
# calling its own tools (within the policy below); without it, it refuses them.
# [llm]
# base_url = "http://localhost:11434/v1"
# model = "llama3.1"
# api_key_file = "llm-key"     # a file holding the API key, if the endpoint needs one
# timeout_secs = 120           # one model call
# max_retries = 3              # after a connection failure, 429 or 5xx
# input_bytes = 8000           # of each upstream task's output shown to the model
# tool_output_bytes = 4000     # of each tool result returned to the model

# The owner's policy: what this device does, whatever the orchestrator asks. A refusal ends
# the task with `policy_denied` and names the rule. Patterns are globs: * is any text, ? one
# character. See "Owner policy" in weft's README.
[policy]
# executors = ["shell", "fs", "http", "phone", "adb"]   # default: every executor it has
# max_output_bytes = 262144   # output kept per result; also the largest file a task writes
# max_run_secs = 600          # longest one attempt may run on this device

[policy.shell]
# allow = ["git *", "make *", "ls *"]   # if set, every command in a line must match one
deny = []                              # e.g. ["sudo *", "rm -rf *"]; deny wins

[policy.fs]
# Absolute roots beyond the workdir (which is always readable and writable).
read = []
write = []

[policy.http]
# hosts = ["*"]               # host patterns that may be fetched
deny_hosts = []
# Loopback, private and link-local addresses are refused unless listed here,
# e.g. ["192.168.1.0/24", "127.0.0.1"].
allow_networks = []

# [policy.files]
# max_upload_bytes = 1073741824   # largest output file sent to the orchestrator (1 GiB)

# [policy.phone]
# tools = ["notification", "clipboard_set", "battery_status"]   # default: all but location
# [policy.adb]
# tools = ["tap", "swipe", "screenshot"]                        # default: all
"#,
        server = quoted(&v.server),
        replicas = if v.replicas.is_empty() {
            "# replicas = [\"https://weft2.lan:7600\"]".to_owned()
        } else {
            format!(
                "replicas = [{}]",
                v.replicas
                    .iter()
                    .map(|r| quoted(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        fingerprint = match &v.server_fingerprint {
            Some(fp) => format!("server_fingerprint = {}", quoted(fp)),
            None => "# server_fingerprint = \"sha256:…\"".to_owned(),
        },
        name = quoted(&v.name),
        kind = quoted(&v.kind),
        token_file = path(&v.token_file),
        workdir = path(&v.workdir),
        state_dir = path(&v.state_dir),
        max_concurrency = v.max_concurrency,
    )
}

/// Writes `contents` to `path`, readable only by this user on Unix; refuses to replace an
/// existing file unless `force`.
pub fn write_private(path: &Path, contents: &str, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn config_dirs_per_platform() {
        let e = env(&[("HOME", "/home/u")]);
        assert_eq!(
            config_dir_for("linux", &e),
            Some("/home/u/.config/weft".into())
        );
        assert_eq!(
            data_dir_for("linux", &e),
            Some("/home/u/.local/share/weft".into())
        );
        let e = env(&[
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/x/conf"),
            ("XDG_DATA_HOME", "rel"),
        ]);
        assert_eq!(config_dir_for("linux", &e), Some("/x/conf/weft".into()));
        // A relative XDG variable is ignored, as the spec says.
        assert_eq!(
            data_dir_for("linux", &e),
            Some("/home/u/.local/share/weft".into())
        );
        assert_eq!(
            config_dir_for(
                "android",
                env(&[("HOME", "/data/data/com.termux/files/home")])
            ),
            Some("/data/data/com.termux/files/home/.config/weft".into())
        );
        assert_eq!(
            config_dir_for("macos", env(&[("HOME", "/Users/u")])),
            Some("/Users/u/Library/Application Support/weft".into())
        );
        assert_eq!(config_dir_for("linux", env(&[])), None);
    }

    fn sample() -> InitValues {
        InitValues {
            server: "https://weft.lan:7600".into(),
            replicas: vec!["https://weft2.lan:7600".into()],
            server_fingerprint: Some(format!("sha256:{}", "0f".repeat(32))),
            name: "mbp".into(),
            kind: "laptop".into(),
            token_file: "token".into(),
            workdir: "/srv/a \"b\"/work".into(),
            state_dir: "/srv/state".into(),
            max_concurrency: 3,
        }
    }

    #[test]
    fn the_init_file_reads_back_as_written() {
        let text = init_text(&sample());
        let l = Loaded::parse(Path::new("/etc/weft/agent.toml"), &text).unwrap();
        assert_eq!(l.file.server.as_deref(), Some("https://weft.lan:7600"));
        assert_eq!(
            l.file.replicas.as_deref(),
            Some(&["https://weft2.lan:7600".to_owned()][..])
        );
        assert_eq!(
            l.file.server_fingerprint,
            Some(format!("sha256:{}", "0f".repeat(32)))
        );
        assert_eq!(l.file.name.as_deref(), Some("mbp"));
        // Without a fingerprint the line is there, commented out.
        let text = init_text(&InitValues {
            server_fingerprint: None,
            ..sample()
        });
        assert!(text.contains("\n# server_fingerprint = "), "{text}");
        let l = Loaded::parse(Path::new("/etc/weft/agent.toml"), &text).unwrap();
        assert_eq!(l.file.server_fingerprint, None);
        assert_eq!(l.file.token_file, Some("/etc/weft/token".into()));
        assert_eq!(l.file.workdir, Some("/srv/a \"b\"/work".into()));
        assert_eq!(l.file.max_concurrency, Some(3));
        // The policy it writes is the default policy.
        assert_eq!(l.policy, Policy::default());
        assert!(l.file.adb.is_none());
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let text = "server = \"https://file:1\"\nname = \"from-file\"\nkind = \"server\"\n\
                    workdir = \"work\"\nstate_dir = \"state\"\n\
                    [adb]\nserial = \"emulator-5554\"\n";
        let l = Loaded::parse(Path::new("/cfg/agent.toml"), text).unwrap();
        let o = Overrides {
            name: Some("from-flag".into()),
            token: Some("tok".into()),
            ..Overrides::default()
        };
        let c = config(&o, Some(&l)).unwrap();
        assert_eq!(c.server, "https://file:1");
        assert_eq!(c.name.as_str(), "from-flag");
        assert_eq!(c.kind, "server");
        assert_eq!(c.workdir, PathBuf::from("/cfg/work"));
        assert_eq!(c.state_dir, PathBuf::from("/cfg/state"));
        assert_eq!(c.max_concurrency, 4);
        assert_eq!(c.token, "tok");
        let adb = c.adb.unwrap();
        assert_eq!(
            (adb.serial.as_str(), adb.program),
            ("emulator-5554", "adb".into())
        );

        let c = config_without_token(&Overrides::default(), None);
        assert_eq!(c.server, DEFAULT_SERVER);
        assert_eq!(c.workdir, PathBuf::from("weft-work"));
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let err = |text: &str| {
            Loaded::parse(Path::new("/cfg/agent.toml"), text)
                .unwrap_err()
                .to_string()
        };
        let e = err("sever = \"x\"");
        assert!(e.contains("/cfg/agent.toml") && e.contains("sever"), "{e}");
        let e = err("[policy.http.connect_to]\n\"web.test\" = \"127.0.0.1\"");
        assert!(
            e.contains(
                "policy.http.connect_to.web.test: `127.0.0.1` is not an address with a port"
            ),
            "{e}"
        );
        let e = err("[policy.http]\nallow_networks = [\"10.0.0/8\"]");
        assert!(
            e.contains("/cfg/agent.toml") && e.contains("policy.http.allow_networks[0]"),
            "{e}"
        );
        let e = err("[policy]\nexecutors = [\"shell\", \"teleport\"]");
        assert!(e.contains("policy.executors[1]"), "{e}");
        let e = err("max_concurrency = \"four\"");
        assert!(e.contains("max_concurrency"), "{e}");
        let e = err("[policy]\nmax_output_bytes = 0");
        assert!(e.contains("policy.max_output_bytes"), "{e}");
        let e = err("[policy.files]\nmax_upload_bytes = 0");
        assert!(e.contains("policy.files.max_upload_bytes"), "{e}");
        let e = err("[policy.files]\nmax_download_bytes = 1");
        assert!(e.contains("max_download_bytes"), "{e}");

        // A missing token names the file the rest came from.
        let l = Loaded::parse(Path::new("/cfg/agent.toml"), "name = \"x\"").unwrap();
        let e = config(&Overrides::default(), Some(&l))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token") && e.contains("/cfg/agent.toml"), "{e}");
        let l = Loaded::parse(Path::new("/cfg/agent.toml"), "name = \"x y\"").unwrap();
        let o = Overrides {
            token: Some("t".into()),
            ..Overrides::default()
        };
        let e = config(&o, Some(&l)).unwrap_err().to_string();
        assert!(
            e.contains("device name") && e.contains("/cfg/agent.toml"),
            "{e}"
        );
    }

    #[test]
    fn a_policy_section_is_read_in_full() {
        let text = r#"
[policy]
executors = ["shell", "fs"]
max_output_bytes = 1000
max_run_secs = 30
[policy.shell]
allow = ["git *"]
deny = ["git push *"]
[policy.fs]
read = ["/data/in", "shared"]
write = ["~/out"]
[policy.http]
hosts = ["*.Example.com"]
deny_hosts = ["admin.example.com"]
allow_networks = ["192.168.1.0/24", "127.0.0.1", "::1"]
connect_to = { "Web.Test" = "127.0.0.1:8080" }
[policy.phone]
tools = ["location"]
[policy.adb]
tools = []
[policy.files]
max_upload_bytes = 1048576
"#;
        let p = Loaded::parse(Path::new("/cfg/agent.toml"), text)
            .unwrap()
            .policy;
        assert_eq!(p.executors, Some(vec!["shell".into(), "fs".into()]));
        assert_eq!(p.max_output_bytes, 1000);
        assert_eq!(p.max_run, Some(Duration::from_secs(30)));
        assert_eq!(p.files.max_upload_bytes, 1 << 20);
        assert_eq!(p.shell.allow, [Glob::new("git *")]);
        assert_eq!(
            p.fs.read,
            [PathBuf::from("/data/in"), PathBuf::from("/cfg/shared")]
        );
        assert_eq!(p.http.hosts, [Glob::new("*.example.com")]);
        assert_eq!(p.http.allow_networks.len(), 3);
        assert_eq!(
            p.http.connect_to.get("web.test"),
            Some(&"127.0.0.1:8080".parse().unwrap())
        );
        assert!(p.check_tool("phone", "location").is_ok());
        assert!(p.check_tool("adb", "tap").is_err());
    }
}
