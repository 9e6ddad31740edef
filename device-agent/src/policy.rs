//! The device owner's policy: what this agent does, whatever the orchestrator asks.
//!
//! The policy lives in the agent's config file (`[policy]`, see README "Owner policy") and is
//! checked on the device before any executor runs ([`crate::exec::vet`]) and again by the
//! executors where only run time can tell (symlinks, DNS answers, redirects). A refusal ends the
//! attempt with the non-retryable error `policy_denied`, whose message names the rule
//! (`policy.shell.deny[0]`, `policy.http.allow_networks`, …). The capabilities an agent
//! advertises are cut down to the executors the policy allows, so planners do not plan what
//! would be refused.
//!
//! Patterns are globs: `*` matches any run of characters (including none, spaces and `/`), `?`
//! one character; everything else matches itself. A pattern must match the whole text.
//!
//! Architecture invariant: nothing here does I/O; the executors do it and call these checks.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use weft_protocol::ErrorInfo;

pub mod shell;

/// The error code of every refusal by the owner's policy (never retried).
pub const POLICY_DENIED: &str = "policy_denied";

/// Results above this size are cut down so that the result frame stays under the protocol's
/// frame limit with room for JSON escaping.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// The most `max_output_bytes` may be: a result must fit one 1 MiB frame.
pub const MAX_OUTPUT_BYTES_LIMIT: usize = 512 * 1024;

/// Largest output file uploaded to the orchestrator unless the owner says otherwise
/// (`policy.files.max_upload_bytes`): 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;

/// Every executor this agent knows, by capability name.
pub const EXECUTORS: [&str; 8] = ["shell", "fs", "http", "phone", "adb", "steps", "sim", "llm"];

/// Phone tools that are off unless the owner names them in `policy.phone.tools`.
pub const PHONE_TOOLS_OFF_BY_DEFAULT: [&str; 1] = ["location"];

/// A refusal by the owner's policy: the rule that refused and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The rule, as written in the config file: `policy.shell.deny[0]`.
    pub rule: String,
    pub reason: String,
}

impl Denied {
    fn new(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            reason: reason.into(),
        }
    }

    /// The `policy_denied` error an attempt ends with.
    pub fn error(&self) -> ErrorInfo {
        ErrorInfo::new(
            POLICY_DENIED,
            format!("refused by {}: {}", self.rule, self.reason),
        )
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by {}: {}", self.rule, self.reason)
    }
}

impl std::error::Error for Denied {}

/// A glob pattern: `*` any run of characters, `?` one character, the rest literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        self.matches_marked(&t, &vec![false; t.len()])
    }

    /// Whether the pattern matches all of `text`, where a character marked in `wild` (one a
    /// shell may replace by any text, such as a glob) is matched only by a `*`. So if the
    /// pattern matches, it also matches whatever the wild characters become.
    pub fn matches_marked(&self, t: &[char], wild: &[bool]) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        // Where the last `*` was, and the text position it has swallowed up to.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            let one = pi < p.len()
                && p[pi] != '*'
                && !wild.get(ti).copied().unwrap_or(false)
                && (p[pi] == '?' || p[pi] == t[ti]);
            if one {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

/// The owner's policy. [`Policy::default`] allows every executor the device has, any shell
/// command, files inside the workdir only, and HTTP to any public address (loopback, private
/// and link-local addresses refused).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Executors this device may use (`policy.executors`); `None`: every one it has.
    pub executors: Option<Vec<String>>,
    pub shell: ShellPolicy,
    pub fs: FsPolicy,
    pub http: HttpPolicy,
    /// Phone tools allowed (`policy.phone.tools`); `None`: all but [`PHONE_TOOLS_OFF_BY_DEFAULT`].
    pub phone_tools: Option<Vec<String>>,
    /// adb tools allowed (`policy.adb.tools`); `None`: all.
    pub adb_tools: Option<Vec<String>>,
    /// Largest stdout, stderr, HTTP body, file or tool output kept in a result, in bytes
    /// (`policy.max_output_bytes`); also the largest file a task may write.
    pub max_output_bytes: usize,
    /// Longest any attempt may run on this device (`policy.max_run_secs`); `None`: until the
    /// orchestrator's deadline.
    pub max_run: Option<Duration>,
    pub files: FilesPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            executors: None,
            shell: ShellPolicy::default(),
            fs: FsPolicy::default(),
            http: HttpPolicy::default(),
            phone_tools: None,
            adb_tools: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_run: None,
            files: FilesPolicy::default(),
        }
    }
}

/// `policy.files`: the files a task hands to tasks on other devices (issue 17,
/// `docs/artifacts.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesPolicy {
    /// Largest output file sent to the orchestrator (`policy.files.max_upload_bytes`); a
    /// declared output above it fails the attempt with `policy_denied`.
    pub max_upload_bytes: u64,
}

impl Default for FilesPolicy {
    fn default() -> Self {
        Self {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }
}

impl FilesPolicy {
    /// Whether the output file `name` of `size` bytes may be sent.
    pub fn check_upload(&self, name: &str, size: u64) -> Result<(), Denied> {
        if size <= self.max_upload_bytes {
            return Ok(());
        }
        Err(Denied::new(
            "policy.files.max_upload_bytes",
            format!(
                "the output file `{name}` is {size} bytes; this device sends files of at most \
                 {} bytes",
                self.max_upload_bytes
            ),
        ))
    }
}

/// `policy.shell`: glob patterns on the command. Deny wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShellPolicy {
    /// If not empty, every command in the line must match one of these.
    pub allow: Vec<Glob>,
    /// A line is refused if it, or any command in it, matches one of these.
    pub deny: Vec<Glob>,
}

/// `policy.fs`: absolute roots beyond the workdir (which is always readable and writable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsPolicy {
    /// Extra roots files may be read from.
    pub read: Vec<PathBuf>,
    /// Extra roots files may be written to (and read from).
    pub write: Vec<PathBuf>,
}

/// `policy.http`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPolicy {
    /// Host patterns that may be fetched (`*.example.com`); default `["*"]`.
    pub hosts: Vec<Glob>,
    /// Host patterns never fetched; deny wins.
    pub deny_hosts: Vec<Glob>,
    /// Networks allowed although they are loopback, private, link-local or otherwise not
    /// public (`127.0.0.0/8`, `192.168.1.20`).
    pub allow_networks: Vec<IpNet>,
    /// Host names (lowercase) whose URLs go to another address and port instead, as curl's
    /// `--connect-to`: a name only this setup knows (a test fixture, a split-horizon name).
    /// The URL is rewritten before it is checked, so the target must still be allowed.
    pub connect_to: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            hosts: vec![Glob::new("*")],
            deny_hosts: Vec::new(),
            allow_networks: Vec::new(),
            connect_to: std::collections::BTreeMap::new(),
        }
    }
}

/// Whether a file is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsOp {
    Read,
    Write,
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRefusal {
    /// `..`, an empty path, or (after resolving symlinks) a place outside every allowed root:
    /// error `path_outside_workdir`, as always.
    Escape(String),
    /// An absolute path outside the workdir and every root the policy allows.
    Denied(Denied),
}

impl PathRefusal {
    pub fn error(&self) -> ErrorInfo {
        match self {
            PathRefusal::Escape(m) => ErrorInfo::new("path_outside_workdir", m.clone()),
            PathRefusal::Denied(d) => d.error(),
        }
    }
}

impl Policy {
    /// Allows HTTP to loopback addresses (`127.0.0.0/8`, `::1`): for a demo or tests where the
    /// orchestrator and the agent share a machine.
    pub fn allow_loopback_http(&mut self) {
        for net in ["127.0.0.0/8", "::1/128"] {
            if let Ok(n) = net.parse() {
                self.http.allow_networks.push(n);
            }
        }
    }

    /// Whether the executor `capability` may be used at all.
    pub fn check_executor(&self, capability: &str) -> Result<(), Denied> {
        match &self.executors {
            Some(list) if !list.iter().any(|e| e == capability) => Err(Denied::new(
                "policy.executors",
                format!(
                    "the `{capability}` executor is not in this device's allowed executors [{}]",
                    list.join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the tool `tool` of a tool executor (`phone`, `adb`) may be used.
    pub fn check_tool(&self, executor: &str, tool: &str) -> Result<(), Denied> {
        let (list, rule) = match executor {
            "phone" => (&self.phone_tools, "policy.phone.tools"),
            _ => (&self.adb_tools, "policy.adb.tools"),
        };
        let allowed = match list {
            Some(l) => l.iter().any(|t| t == tool),
            None => executor != "phone" || !PHONE_TOOLS_OFF_BY_DEFAULT.contains(&tool),
        };
        if allowed {
            Ok(())
        } else if list.is_none() {
            Err(Denied::new(
                rule,
                format!("the `{tool}` tool is off unless named in {rule}"),
            ))
        } else {
            Err(Denied::new(
                rule,
                format!("the `{tool}` tool is not in {rule}"),
            ))
        }
    }

    /// Checks a shell command line, run in `workdir`, against `policy.shell`.
    ///
    /// A deny pattern refuses the line if it matches the whole line or any one command: the
    /// line cut at `;`, `&`, `&&`, `|`, `||`, newlines and parentheses (quotes respected,
    /// whitespace runs as one space), and, where [`shell::parse`] can read the line, each
    /// command's words after quote removal.
    ///
    /// With an allow-list, the line must be one [`shell::parse`] reads with certainty (any
    /// other construct is refused by name), no command may be one [`shell::vet`] refuses
    /// (`eval`, `exec`, `.`, assignments, …), every command must match an allow pattern, and
    /// every redirection must target `/dev/null` or a path [`Policy::check_path`] accepts.
    pub fn check_shell(&self, line: &str, workdir: &Path) -> Result<(), Denied> {
        let parsed = shell::parse(line);
        let whole = collapse_ws(line);
        let cut = split_commands(line);
        let words: Vec<String> = match &parsed {
            Ok(commands) => commands
                .iter()
                .map(|c| c.text().0.into_iter().collect())
                .collect(),
            Err(_) => Vec::new(),
        };
        for (i, p) in self.shell.deny.iter().enumerate() {
            let hit = std::iter::once(&whole)
                .chain(&cut)
                .chain(&words)
                .find(|c| p.matches(c));
            if let Some(hit) = hit {
                return Err(Denied::new(
                    format!("policy.shell.deny[{i}]"),
                    format!("`{hit}` matches the denied pattern `{}`", p.as_str()),
                ));
            }
        }
        if self.shell.allow.is_empty() {
            return Ok(());
        }
        let refused = |r: shell::Refusal| Denied::new("policy.shell.allow", r.to_string());
        let commands = parsed.map_err(refused)?;
        for c in &commands {
            shell::vet(c).map_err(refused)?;
            let (text, wild) = c.text();
            if !self
                .shell
                .allow
                .iter()
                .any(|p| p.matches_marked(&text, &wild))
            {
                return Err(Denied::new(
                    "policy.shell.allow",
                    format!("`{}` matches none of the allowed patterns", c.source),
                ));
            }
            for r in &c.redirects {
                let Some(op) = r.access else { continue };
                if r.target == "/dev/null" {
                    continue;
                }
                if let Err(refusal) = self.check_path(op, &r.target, workdir) {
                    let reason = match refusal {
                        PathRefusal::Denied(d) => d.reason,
                        PathRefusal::Escape(m) => m,
                    };
                    let rule = match op {
                        FsOp::Read => "policy.fs.read",
                        FsOp::Write => "policy.fs.write",
                    };
                    return Err(Denied::new(
                        rule,
                        format!("the redirection `{} {}`: {reason}", r.op, r.target),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The roots a file may be read from or written to: the workdir first, then the configured
    /// ones (writable roots are readable too).
    pub fn fs_roots(&self, op: FsOp, workdir: &Path) -> Vec<PathBuf> {
        let mut roots = vec![workdir.to_path_buf()];
        if op == FsOp::Read {
            roots.extend(self.fs.read.iter().cloned());
        }
        roots.extend(self.fs.write.iter().cloned());
        roots
    }

    /// Checks a path lexically and returns where it points: a relative path inside the
    /// workdir, or an absolute path inside a configured root. `..` is never accepted.
    pub fn check_path(&self, op: FsOp, path: &str, workdir: &Path) -> Result<PathBuf, PathRefusal> {
        let escape = || {
            PathRefusal::Escape(format!(
                "`{path}` is not a path inside the agent's workdir (or an allowed root)"
            ))
        };
        if path.trim().is_empty() || path.contains('\0') {
            return Err(escape());
        }
        let p = Path::new(path);
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(escape());
        }
        if !p.has_root() && !matches!(p.components().next(), Some(Component::Prefix(_))) {
            return Ok(workdir.join(p));
        }
        let (configured, rule) = match op {
            FsOp::Read => (
                self.fs
                    .read
                    .iter()
                    .chain(&self.fs.write)
                    .collect::<Vec<_>>(),
                "policy.fs.read",
            ),
            FsOp::Write => (self.fs.write.iter().collect(), "policy.fs.write"),
        };
        if configured.iter().any(|root| p.starts_with(root)) {
            return Ok(p.to_path_buf());
        }
        let what = if op == FsOp::Read { "read" } else { "write" };
        Err(PathRefusal::Denied(Denied::new(
            rule,
            if configured.is_empty() {
                format!("`{path}` is outside the workdir and no extra {what} roots are configured")
            } else {
                format!(
                    "`{path}` is outside the workdir and every {what} root ({})",
                    configured
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        )))
    }

    /// Checks a URL's scheme and host against `policy.http` (and, for an address literal, the
    /// address). Names are checked again, address by address, when they are resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Denied> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Denied::new(
                "policy.http",
                format!(
                    "only http and https URLs are fetched, not `{}`",
                    url.scheme()
                ),
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(Denied::new("policy.http", "the URL has no host"));
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.check_host(bare)?;
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check_ip(bare, ip),
            Err(_) => Ok(()),
        }
    }

    /// Checks a host name against `policy.http.hosts` and `deny_hosts`.
    pub fn check_host(&self, host: &str) -> Result<(), Denied> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        for (i, p) in self.http.deny_hosts.iter().enumerate() {
            if p.matches(&host) {
                return Err(Denied::new(
                    format!("policy.http.deny_hosts[{i}]"),
                    format!("`{host}` matches the denied host pattern `{}`", p.as_str()),
                ));
            }
        }
        if self.http.hosts.iter().any(|p| p.matches(&host)) {
            Ok(())
        } else {
            Err(Denied::new(
                "policy.http.hosts",
                format!("`{host}` matches none of the allowed host patterns"),
            ))
        }
    }

    /// Checks one address a host resolved to: loopback, private, link-local and other
    /// non-public ranges are refused unless inside `policy.http.allow_networks`.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Denied> {
        let Some(range) = non_public(ip) else {
            return Ok(());
        };
        let ip = canonical_ip(ip);
        if self.http.allow_networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(Denied::new(
            "policy.http.allow_networks",
            format!(
                "`{host}` resolves to {ip}, a {range} address; such addresses are fetched only \
                 if policy.http.allow_networks includes them"
            ),
        ))
    }
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The kind of non-public range `ip` is in, if any.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if o[0] == 0 {
                Some("\"this network\"")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("shared (carrier-grade NAT)")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("IETF protocol assignment")
            } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
                Some("benchmarking")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if o[0] >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique local (private)")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if (s[0] & 0xff00) == 0xff00 {
                Some("multicast")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64: judge the IPv4 address inside.
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                non_public(IpAddr::V4(v4))
            } else {
                None
            }
        }
    }
}

/// Cuts a shell line at its control operators and parentheses, respecting quotes and
/// backslashes: the lenient cut the deny patterns are matched against, whatever the line holds.
fn split_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    let push = |cur: &mut String, out: &mut Vec<String>| {
        let c = collapse_ws(cur);
        if !c.is_empty() {
            out.push(c);
        }
        cur.clear();
    };
    for ch in line.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
            continue;
        }
        if single {
            cur.push(ch);
            if ch == '\'' {
                single = false;
            }
            continue;
        }
        match ch {
            '\\' => {
                cur.push(ch);
                escaped = true;
            }
            '\'' if !double => {
                cur.push(ch);
                single = true;
            }
            '"' => {
                cur.push(ch);
                double = !double;
            }
            ';' | '&' | '|' | '\n' | '(' | ')' if !double => push(&mut cur, &mut out),
            _ => cur.push(ch),
        }
    }
    push(&mut cur, &mut out);
    out
}

/// `text` trimmed, with each run of whitespace as one space.
fn collapse_ws(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            shell: ShellPolicy {
                allow: allow.iter().map(|p| Glob::new(p)).collect(),
                deny: deny.iter().map(|p| Glob::new(p)).collect(),
            },
            ..Policy::default()
        }
    }

    #[test]
    fn globs_match_the_whole_text_and_wild_characters_only_with_a_star() {
        // In the text, `#` marks the character after it as wild (one a shell may replace).
        let matches = |p: &str, text: &str| {
            let (mut t, mut w) = (Vec::new(), Vec::new());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                let wild = c == '#';
                t.push(if wild { chars.next().unwrap() } else { c });
                w.push(wild);
            }
            let plain = Glob::new(p).matches(&t.iter().collect::<String>());
            if !w.contains(&true) {
                assert_eq!(Glob::new(p).matches_marked(&t, &w), plain, "{p} ~ {text}");
            }
            Glob::new(p).matches_marked(&t, &w)
        };
        for (p, t, m) in [
            ("*", "", true),
            ("*", "anything at all", true),
            ("git *", "git status", true),
            ("git *", "git", false),
            ("git*", "git", true),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "evil.com/.example.com", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("rm -rf *", "rm -rf /", true),
            ("*sudo *", "echo x; sudo rm", true),
            ("ls", "ls -l", false),
            ("cat *.txt", "cat #*.txt", true),
            ("rm -f ?", "rm -f #*", false),
            ("rm -f *", "rm -f #*", true),
            ("ls #", "ls ##", false),
            ("echo *", "echo #$#H#O#M#E", true),
            ("echo ?????", "echo #$#H#O#M#E", false),
            ("a*b", "a#?#?b", true),
            ("a*", "#ab", false),
        ] {
            assert_eq!(matches(p, t), m, "{p} ~ {t}");
        }
    }

    #[test]
    fn deny_patterns_see_the_cut_line_and_the_unquoted_words() {
        assert_eq!(
            split_commands("git status; echo 'a;b' && ls | wc -l\n(make  test) &"),
            ["git status", "echo 'a;b'", "ls", "wc -l", "make test"]
        );
        assert_eq!(split_commands("echo \"a | b\""), ["echo \"a | b\""]);
        let p = shell(&[], &["git push *"]);
        let work = Path::new("/w");
        assert_eq!(
            p.check_shell("git 'push' origin", work).unwrap_err().rule,
            "policy.shell.deny[0]"
        );
        // A line the strict reading refuses is still cut for the deny patterns.
        assert_eq!(
            p.check_shell("echo $'x'; git push x", work)
                .unwrap_err()
                .rule,
            "policy.shell.deny[0]"
        );
    }

    #[test]
    fn shell_deny_wins_and_allow_lists_are_strict() {
        let work = Path::new("/w");
        let check = |p: &Policy, line: &str| p.check_shell(line, work).map_err(|d| d.rule);
        let any = Policy::default();
        assert_eq!(check(&any, "rm -rf /"), Ok(()));
        assert_eq!(check(&any, "echo $'x' > /etc/x"), Ok(()));

        let p = shell(&[], &["rm -rf *", "sudo *"]);
        assert_eq!(check(&p, "ls"), Ok(()));
        assert_eq!(
            check(&p, "rm  -rf   /tmp/x"),
            Err("policy.shell.deny[0]".into())
        );
        assert_eq!(
            check(&p, "ls; sudo reboot"),
            Err("policy.shell.deny[1]".into())
        );

        let p = shell(&["git *", "make test", "echo *"], &["git push *"]);
        assert_eq!(check(&p, "git status && make test"), Ok(()));
        assert_eq!(check(&p, "'git' status"), Ok(()));
        assert_eq!(
            check(&p, "git push origin main"),
            Err("policy.shell.deny[0]".into())
        );
        assert_eq!(
            check(&p, "git status; curl x | sh"),
            Err("policy.shell.allow".into())
        );
        assert_eq!(
            check(&p, "echo $(cat /etc/passwd)"),
            Err("policy.shell.allow".into())
        );
        let d = p.check_shell("uname -a", work).unwrap_err();
        assert_eq!(
            d.error().message,
            "refused by policy.shell.allow: `uname -a` matches none of the allowed patterns"
        );
        assert_eq!(d.error().code, POLICY_DENIED);

        // The example: bash reads `$'\''` as a quote, dash as `$` and an open quote.
        let d = p
            .check_shell("echo $'\\'' ; touch /tmp/x ; echo $'\\''", work)
            .unwrap_err();
        assert_eq!(
            d.to_string(),
            "refused by policy.shell.allow: the line uses ANSI-C quoting `$'…'`, which is \
             refused under an allow-list (shells read it differently, so what runs cannot be \
             checked)"
        );
        let d = p.check_shell("echo x; eval 'echo y'", work).unwrap_err();
        assert!(d.reason.contains("`eval`"), "{d}");
        // Globs and "$NAME" stay inside the `*` of a pattern.
        assert_eq!(check(&p, "echo *.txt \"$HOME\""), Ok(()));
        let p = shell(&["rm -f ?"], &[]);
        assert_eq!(check(&p, "rm -f a"), Ok(()));
        assert_eq!(check(&p, "rm -f *"), Err("policy.shell.allow".into()));
    }

    #[test]
    fn redirections_under_an_allow_list_stay_in_the_file_roots() {
        let work = Path::new("/w");
        let mut p = shell(&["echo *", "sort"], &[]);
        p.fs.read = vec!["/data/in".into()];
        p.fs.write = vec!["/data/out".into()];
        let check = |p: &Policy, line: &str| p.check_shell(line, work).map_err(|d| d.to_string());
        for ok in [
            "echo x > out.txt",
            "echo x >> sub/log 2>&1",
            "echo x 2>/dev/null",
            "sort < /data/in/a > /data/out/b",
            "sort < /data/out/b",
            "echo x >&2",
        ] {
            assert_eq!(check(&p, ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check(&p, "echo x > /tmp/x"),
            Err(
                "refused by policy.fs.write: the redirection `> /tmp/x`: `/tmp/x` is outside \
                 the workdir and every write root (/data/out)"
                    .into()
            )
        );
        assert_eq!(
            check(&p, "sort < /data/in/a > /data/in/b").unwrap_err(),
            "refused by policy.fs.write: the redirection `> /data/in/b`: `/data/in/b` is \
             outside the workdir and every write root (/data/out)"
        );
        assert!(
            check(&p, "sort < /etc/passwd")
                .unwrap_err()
                .contains("policy.fs.read")
        );
        assert!(
            check(&p, "echo x > ../x")
                .unwrap_err()
                .contains("`../x` is not a path inside")
        );
        assert!(check(&p, "echo x 2<> /etc/x").is_err());
        assert!(check(&p, "echo x >| /etc/x").is_err());
    }

    #[test]
    fn executors_and_tools() {
        let mut p = Policy::default();
        assert!(p.check_executor("adb").is_ok());
        assert!(p.check_tool("phone", "battery_status").is_ok());
        assert_eq!(
            p.check_tool("phone", "location").unwrap_err().rule,
            "policy.phone.tools"
        );
        assert!(p.check_tool("adb", "tap").is_ok());
        p.executors = Some(vec!["shell".into(), "fs".into()]);
        let d = p.check_executor("http").unwrap_err();
        assert_eq!(d.rule, "policy.executors");
        assert!(d.reason.contains("shell, fs"), "{d}");
        p.phone_tools = Some(vec!["location".into()]);
        assert!(p.check_tool("phone", "location").is_ok());
        assert!(p.check_tool("phone", "notification").is_err());
        p.adb_tools = Some(vec![]);
        assert_eq!(
            p.check_tool("adb", "tap").unwrap_err().rule,
            "policy.adb.tools"
        );
    }

    #[test]
    fn paths_stay_in_the_workdir_or_configured_roots() {
        let work = Path::new("/w");
        let mut p = Policy::default();
        let check = |p: &Policy, op, path: &str| p.check_path(op, path, work);
        assert_eq!(
            check(&p, FsOp::Read, "a/b.txt"),
            Ok(PathBuf::from("/w/a/b.txt"))
        );
        for bad in ["../x", "a/../../x", "", " ", "/data/../w/x"] {
            assert!(
                matches!(check(&p, FsOp::Read, bad), Err(PathRefusal::Escape(_))),
                "{bad}"
            );
        }
        let Err(PathRefusal::Denied(d)) = check(&p, FsOp::Read, "/etc/passwd") else {
            panic!("absolute paths need a root")
        };
        assert_eq!(d.rule, "policy.fs.read");
        p.fs.read = vec!["/data/shared".into()];
        p.fs.write = vec!["/data/out".into()];
        assert_eq!(
            check(&p, FsOp::Read, "/data/shared/a"),
            Ok(PathBuf::from("/data/shared/a"))
        );
        assert!(check(&p, FsOp::Read, "/data/out/a").is_ok());
        assert!(check(&p, FsOp::Write, "/data/out/a").is_ok());
        let Err(PathRefusal::Denied(d)) = check(&p, FsOp::Write, "/data/shared/a") else {
            panic!("read roots are not writable")
        };
        assert_eq!(d.rule, "policy.fs.write");
        assert!(d.reason.contains("/data/out"), "{d}");
        // A root is a directory, not a name prefix.
        assert!(check(&p, FsOp::Read, "/data/shared-other/a").is_err());
    }

    #[test]
    fn http_hosts_and_addresses() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let mut p = Policy::default();
        assert!(p.check_url(&url("https://example.com/x")).is_ok());
        assert_eq!(
            p.check_url(&url("ftp://example.com")).unwrap_err().rule,
            "policy.http"
        );
        for local in [
            "http://127.0.0.1:7600/healthz",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert_eq!(
                p.check_url(&url(local)).unwrap_err().rule,
                "policy.http.allow_networks",
                "{local}"
            );
        }
        assert!(p.check_url(&url("http://93.184.215.14/")).is_ok());
        p.allow_loopback_http();
        assert!(p.check_url(&url("http://127.0.0.1:7600/healthz")).is_ok());
        assert!(p.check_url(&url("http://[::1]/")).is_ok());
        assert!(p.check_url(&url("http://[::ffff:127.0.0.1]/")).is_ok());
        assert!(p.check_url(&url("http://10.1.2.3/")).is_err());

        p.http.hosts = vec![Glob::new("*.example.com"), Glob::new("example.com")];
        p.http.deny_hosts = vec![Glob::new("admin.example.com")];
        assert!(p.check_url(&url("https://api.example.com/")).is_ok());
        assert!(p.check_url(&url("https://EXAMPLE.com./")).is_ok());
        assert_eq!(
            p.check_url(&url("https://admin.example.com/"))
                .unwrap_err()
                .rule,
            "policy.http.deny_hosts[0]"
        );
        assert_eq!(
            p.check_url(&url("https://example.org/")).unwrap_err().rule,
            "policy.http.hosts"
        );
        // An address is judged as the address it is, whatever the name.
        assert_eq!(
            p.check_ip("db.example.com", "10.0.0.5".parse().unwrap())
                .unwrap_err()
                .rule,
            "policy.http.allow_networks"
        );
    }
}
