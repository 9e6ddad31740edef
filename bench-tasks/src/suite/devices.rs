//! The five simulated devices of the suite, each a real `weft agent` process with a `sim`
//! profile, and the agent config file the runner writes for each.

use std::path::Path;

/// One device of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// Its registered name, which is also its `sim` profile.
    pub name: &'static str,
    pub kind: &'static str,
    /// The executors its owner's policy allows (`policy.executors`).
    pub executors: &'static [&'static str],
    /// Attempts it runs at once.
    pub max_concurrency: u32,
}

const DEVICES: [Device; 5] = [
    Device {
        name: "windows-laptop",
        kind: "laptop",
        // No POSIX shell on a stock Windows laptop.
        executors: &["sim", "fs", "http"],
        max_concurrency: 4,
    },
    Device {
        name: "mac-laptop",
        kind: "laptop",
        executors: &["sim", "fs", "http", "shell"],
        max_concurrency: 4,
    },
    Device {
        name: "linux-server",
        kind: "server",
        executors: &["sim", "fs", "http", "shell"],
        max_concurrency: 8,
    },
    Device {
        name: "android-phone",
        kind: "phone",
        executors: &["sim", "fs", "http", "shell"],
        max_concurrency: 2,
    },
    Device {
        name: "edge-box",
        kind: "edge",
        executors: &["sim", "fs", "http", "shell"],
        max_concurrency: 2,
    },
];

pub fn all() -> &'static [Device] {
    &DEVICES
}

pub fn names() -> Vec<&'static str> {
    DEVICES.iter().map(|d| d.name).collect()
}

pub fn by_name(name: &str) -> Option<&'static Device> {
    DEVICES.iter().find(|d| d.name == name)
}

/// The suite's devices as a planner sees them, all online (for tests that plan without agents).
#[cfg(test)]
pub(crate) fn infos() -> Vec<weft_planner::DeviceInfo> {
    DEVICES
        .iter()
        .map(|d| weft_planner::DeviceInfo {
            name: d.name.into(),
            kind: d.kind.into(),
            capabilities: d.executors.iter().map(|e| (*e).to_owned()).collect(),
            online: true,
        })
        .collect()
}

/// How the runner sets up one agent.
#[derive(Debug, Clone)]
pub struct AgentSetup<'a> {
    pub server: &'a str,
    pub token_file: &'a Path,
    pub workdir: &'a Path,
    pub state_dir: &'a Path,
    pub seed: u64,
    pub latency_scale: f64,
    pub fail_rate: f64,
    /// Where the runner's web server listens: the agent connects there for the suite's
    /// stable host name ([`super::env::WEB_HOST`]).
    pub web: std::net::SocketAddr,
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl Device {
    /// The agent's config file (`weft agent --config FILE`).
    pub fn config_toml(&self, s: &AgentSetup<'_>) -> String {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| quoted(i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "# written by weft-bench for the simulated device {name}\n\
             server = {server}\nname = {name_q}\nkind = {kind}\ntoken_file = {token}\n\
             workdir = {workdir}\nstate_dir = {state}\nmax_concurrency = {conc}\n\n\
             [sim]\nprofile = {name_q}\nseed = {seed}\nlatency_scale = {scale}\n\
             fail_rate = {fail}\n\n\
             [policy]\nexecutors = [{executors}]\n\n\
             [policy.http]\n# The runner's web server is on loopback, under a stable name.\n\
             allow_networks = [\"127.0.0.1\"]\n\
             connect_to = {{ {web_host} = {web} }}\n",
            web_host = quoted(super::env::WEB_HOST),
            web = quoted(&s.web.to_string()),
            name = self.name,
            server = quoted(s.server),
            name_q = quoted(self.name),
            kind = quoted(self.kind),
            token = quoted(&s.token_file.display().to_string()),
            workdir = quoted(&s.workdir.display().to_string()),
            state = quoted(&s.state_dir.display().to_string()),
            conc = self.max_concurrency,
            seed = s.seed,
            scale = format_float(s.latency_scale),
            fail = format_float(s.fail_rate),
            executors = list(self.executors),
        )
    }
}

/// A float as TOML needs it (always with a decimal point).
fn format_float(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_is_one_the_agent_reads() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok\n").unwrap();
        let setup = AgentSetup {
            server: "http://127.0.0.1:9",
            token_file: &token,
            workdir: &dir.path().join("work"),
            state_dir: &dir.path().join("state"),
            seed: 3,
            latency_scale: 1.0,
            fail_rate: 0.25,
            web: "127.0.0.1:8123".parse().unwrap(),
        };
        for d in all() {
            let text = d.config_toml(&setup);
            let path = dir.path().join(format!("{}.toml", d.name));
            std::fs::write(&path, &text).unwrap();
            let loaded = weft_agent::settings::Loaded::read(&path).unwrap();
            let c = weft_agent::settings::config(&Default::default(), Some(&loaded)).unwrap();
            assert_eq!(c.name.as_str(), d.name);
            assert_eq!(
                c.policy.http.connect_to.get(super::super::env::WEB_HOST),
                Some(&setup.web)
            );
            assert_eq!(c.kind, d.kind);
            let sim = c.sim.unwrap();
            assert_eq!(
                (sim.profile.as_str(), sim.seed, sim.fail_rate),
                (d.name, 3, 0.25)
            );
            assert_eq!(
                weft_agent::sim::profile(d.name).unwrap().kind,
                d.kind,
                "the profile and the device agree on the kind"
            );
        }
    }
}
