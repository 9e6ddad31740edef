//! `policy.shell.allow` against real shells: for generated lines full of tricky quoting, if
//! the policy accepts a line, everything `bash --posix` and `dash` actually run under it matches
//! an allowed pattern, and nothing is written outside the workdir and the write root.
//!
//! What runs is recorded three ways, so nothing real executes and builtins are seen too:
//! - `PATH` is a directory of wrapper scripts (and nothing else) that log their name and
//!   arguments and exit 0;
//! - the shells trace every command they run, builtins included (`-x`);
//! - the files around the workdir are compared before and after.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use weft_agent::policy::{Glob, Policy, ShellPolicy};

/// The owner's patterns. From `eval *` on they name builtins that run or reinterpret text:
/// the policy refuses those whatever the patterns say, and these patterns check that it does.
const ALLOW: [&str; 32] = [
    "echo *",
    "printf *",
    "true",
    ":",
    "pwd",
    "ls *",
    "cat *",
    "wc -l",
    "git status",
    "test *",
    "[ *",
    "eval *",
    "exec *",
    "command *",
    "builtin *",
    ". *",
    "source *",
    "trap *",
    "alias *",
    "cd *",
    "chdir *",
    "export *",
    "read *",
    "set *",
    "hash *",
    "let *",
    "time *",
    "unset *",
    "mapfile *",
    "jobs *",
    "coproc *",
    "declare *",
];

/// Programs on the test's `PATH`: each one only logs how it was called.
const WRAPPED: [&str; 12] = [
    "ls", "cat", "wc", "git", "touch", "rm", "id", "sh", "env", "xargs", "sudo", "x",
];

/// The shells, how each is asked to trace, and how its trace is read.
const SHELLS: [(&str, &[&str], Trace); 2] = [
    ("bash", &["--posix", "-x", "-c"], Trace::Bash),
    ("dash", &["-x", "-c"], Trace::Dash),
];

#[derive(Debug, Clone, Copy)]
enum Trace {
    /// Lines starting with `+`, words quoted as bash quotes them (bash ignores an inherited
    /// `PS4` when run as root, so there is no marker).
    Bash,
    /// Entries after the `PS4` marker, words unquoted; the first line of each is read.
    Dash,
}

/// Begins each of dash's trace entries (a character no generated line contains).
const MARK: char = '\u{1e}';

/// Text inside quotes: anything, including what would end the quotes.
fn inner(alphabet: Vec<&'static str>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), 0..4).prop_map(|v| v.concat())
}

/// What may stand inside `'…'` or `"…"` and keep them closed.
const QUOTABLE: [&str; 16] = [
    "a", " ", ";", "touch x", "(", ")", "\n", "#", "*", "{", "}", "<", ">", "|", "&", "~",
];

/// Characters that end or change quotes and expansions.
const ENDS_QUOTES: [&str; 12] = [
    "'", "\"", "\\", "$", "`", "$(id)", "rm y", "$HOME", "\\'", "!", "\n", "${X}",
];

fn piece() -> impl Strategy<Value = String> {
    let everything = || {
        let mut all = QUOTABLE.to_vec();
        all.extend(ENDS_QUOTES);
        inner(all)
    };
    prop_oneof![
        // Read the same way by every shell.
        8 => prop::sample::select(vec![
            "a", "b1", "-l", "x.txt", "status", "--", "-v", "-p", "a=b", "%s", "/", "..",
            "@OUT@/f", "-R", "eval", "touch", "rm", "-n",
        ])
        .prop_map(str::to_owned),
        3 => inner(QUOTABLE.to_vec()).prop_map(|s| format!("'{s}'")),
        3 => inner(QUOTABLE.to_vec()).prop_map(|s| format!("\"{s}\"")),
        4 => prop::sample::select(vec![
            "\\;", "\\'", "\\\"", "\\\\", "\\ ", "\\$", "\\n", "\\#", "\\&", "\\|", "\\>",
            "\\(", "\\`", "\"$HOME\"", "\"${HOME}\"", "\"$1\"", "\"a\\\"b\"", "\"\\$x\"", "~",
            "~/f", "*", "?", "[ab]", "*.txt", "#", "#x", "!", "'\\''", "a'\\''b", "''", "\"\"",
            "\"'\"", "'\"'",
        ])
        .prop_map(str::to_owned),
        // Read differently, or not at all.
        1 => prop_oneof![
            everything().prop_map(|s| format!("'{s}'")),
            everything().prop_map(|s| format!("\"{s}\"")),
            everything().prop_map(|s| format!("$'{s}'")),
        ],
        1 => prop::sample::select(vec![
            "$HOME", "${HOME}", "\"${X:-y}\"", "$'\\''", "$\"a\"", "$(id)", "`id`", "$((1))",
            "\"$@\"", "{a,b}", "{", "}", "\\\n", "\n", ";", "&", "|", "(", ")", "<(id)",
            ">(id)", "<<E", "&>", "\\",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Half of a quote that one reader may close where another does not (the issue's
/// `echo $'\'' ; touch /tmp/x ; echo $'\''`): placed on both sides of a command, it hides
/// the command from a reader that gets it wrong.
const HALF_QUOTES: [&str; 18] = [
    "'\\''", "'\\'", "\"\\\"", "$'\\''", "\\'", "'", "\"", "\\\"", "#", "$\"", "\"'\"", "'\"'",
    "\\\\'", "a\\\\'", "`", "\"\\\\\"", "'\\\\'", "\\#",
];

/// A command between two half quotes: `'\' ; touch x ; '\'`.
fn sandwich() -> impl Strategy<Value = String> {
    (
        prop::sample::select(HALF_QUOTES.to_vec()),
        prop::sample::select(vec![
            " ; touch x ; ",
            "\ntouch x\n",
            " | rm y | ",
            " && id && ",
            ";touch x;",
            " & id & ",
        ]),
        prop::sample::select(HALF_QUOTES.to_vec()),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(a, mid, b, same)| format!("{a}{mid}{}", if same { a } else { b }))
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(piece(), 1..3).prop_map(|v| v.concat()),
        1 => sandwich(),
    ]
}

/// Names the allow-list must not let through (or only in a form the shells agree on): the
/// builtins and reserved words of bash and dash that run or reinterpret text, programs that
/// run other programs, assignments, names that expand, and allowed names with other words.
const OTHER_NAMES: [&str; 66] = [
    "touch",
    "rm",
    "id",
    "sh",
    "env",
    "x",
    "eval",
    "exec",
    "command",
    "builtin",
    ".",
    "source",
    "trap",
    "fc",
    "history",
    "jobs",
    "alias",
    "unalias",
    "hash",
    "enable",
    "set",
    "shopt",
    "cd",
    "chdir",
    "pushd",
    "popd",
    "export",
    "readonly",
    "unset",
    "declare",
    "typeset",
    "local",
    "read",
    "mapfile",
    "readarray",
    "getopts",
    "let",
    "compgen",
    "complete",
    "type",
    "umask",
    "wait",
    "times",
    "if",
    "then",
    "fi",
    "for",
    "do",
    "done",
    "while",
    "case",
    "function",
    "{",
    "}",
    "!",
    "[[",
    "time",
    "coproc",
    "X=1",
    "PATH=.",
    "$'echo'",
    "*",
    "~/x",
    "\"$HOME\"",
    "true",
    "pwd",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(OTHER_NAMES.to_vec()).prop_map(str::to_owned)
}

/// Builtins made to run `touch x` (or `x`, the line in `in.txt`) or to move the shell out of
/// the workdir, should the policy let them through.
const RUNNERS: [&str; 24] = [
    "eval 'touch x'",
    "eval touch x",
    "exec touch x",
    "command touch x",
    "builtin eval 'touch x'",
    ". ./in.txt",
    "source in.txt",
    "trap 'touch x' EXIT",
    "time touch x",
    "coproc touch x",
    "jobs -x touch x",
    "cd ../out",
    "chdir ../out",
    "alias echo='touch x'\necho a",
    "read 'a[$(touch x)]' < in.txt",
    "mapfile -C 'touch x' -c 1 a < in.txt",
    "printf -v 'a[$(touch x)]' %s x",
    "test -v 'a[$(touch x)]'",
    "[ -v 'a[$(touch x)]' ]",
    "let 'a[$(touch x)]'",
    "unset 'a[$(touch x)]'",
    "declare 'a[$(touch x)]=1'",
    "export PATH=.",
    "set -o noglob",
];

fn redirect() -> impl Strategy<Value = String> {
    let op = prop_oneof![
        6 => prop::sample::select(vec![">", ">>", "<", "2>", "<>", ">|", "1>"]),
        1 => prop::sample::select(vec!["10>", ">&", "<<<", "<<", "&>", ">(", "<(", "<&"]),
    ];
    let target = prop_oneof![
        6 => prop::sample::select(vec![
            "out.txt", "in.txt", "f", "@SHARED@/f", "/dev/null", "'q t'", "\"x\"", "sub/f",
            "o\\ t",
        ]),
        2 => prop::sample::select(vec![
            "../out/f", "@OUT@/f", "~/f", "\"$HOME\"/f", "*.txt", "@SHARED@/../out/f",
            "$HOME/f", "#f", "1", "-",
        ]),
    ];
    let to_file = (op, prop::bool::ANY, target)
        .prop_map(|(op, space, target)| format!("{op}{}{target}", if space { " " } else { "" }));
    prop_oneof![
        3 => to_file,
        1 => prop::sample::select(vec!["2>&1", ">&2", "<&-", "2>&-", "1>&2"]).prop_map(str::to_owned),
    ]
}

fn command() -> impl Strategy<Value = String> {
    // A name whose patterns take any arguments, with some; or a whole command.
    let head = prop_oneof![
        10 => (
            prop::sample::select(vec![
                "echo", "printf", "ls", "cat", "test", "[", "'echo'", "e\\cho", "\"ec\"ho",
                "ec''ho",
            ]),
            prop::collection::vec(word(), 1..4),
        )
            .prop_map(|(name, args)| format!("{name} {}", args.join(" "))),
        4 => prop::sample::select(vec![
            "true", ":", "pwd", "wc -l", "git status", "'git' status", "w\\c -l", "\"pwd\"",
            "git \"status\"",
        ])
        .prop_map(str::to_owned),
        2 => (name(), prop::collection::vec(word(), 0..3))
            .prop_map(|(name, args)| format!("{name} {}", args.join(" "))),
        1 => prop::sample::select(RUNNERS.to_vec()).prop_map(str::to_owned),
    ];
    let redirects = prop_oneof![
        3 => Just(Vec::new()),
        2 => prop::collection::vec(redirect(), 1..3),
    ];
    (head, redirects).prop_map(|(mut c, redirects)| {
        for r in &redirects {
            c.push(' ');
            c.push_str(r);
        }
        c
    })
}

fn line() -> impl Strategy<Value = String> {
    let sep = prop_oneof![
        12 => prop::sample::select(vec!["; ", ";", " && ", "||", " | ", " & ", "\n", "&", " ;\n"]),
        1 => prop::sample::select(vec![";;", "|&", " &> ", "\\\n", " ; ; ", ";&"]),
    ];
    let commands = prop::collection::vec((command(), sep), 1..4);
    // Now and then a fragment dropped anywhere in the line, where no grammar would put it.
    let stray = prop::option::weighted(
        0.15,
        (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                "'", "\"", "\\", "$'", "`", "#", "\n", ";", "(", "{ ", "<<", "$(", "\\\n", "${",
                "'\\''", "\\'",
            ]),
        ),
    );
    let end = prop::sample::select(vec!["", "", "", ";", "&", "\n", " ;\n", " |"]);
    (commands, end, stray).prop_map(|(commands, end, stray)| {
        let n = commands.len();
        let mut line = String::new();
        for (i, (c, sep)) in commands.into_iter().enumerate() {
            line.push_str(&c);
            line.push_str(if i + 1 < n { sep } else { end });
        }
        if let Some((at, fragment)) = stray {
            let cuts: Vec<usize> = (0..=line.len())
                .filter(|&i| line.is_char_boundary(i))
                .collect();
            line.insert_str(cuts[at.index(cuts.len())], fragment);
        }
        line
    })
}

/// A fresh tree per line: `work/` (the shell's cwd and workdir), `shared/` (a write root),
/// `out/` (outside every root) and `home/` (`$HOME`, also outside).
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["work", "shared", "out", "home"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        for f in ["work/in.txt", "work/a.txt", "out/keep", "home/keep"] {
            std::fs::write(dir.path().join(f), "x\n").unwrap();
        }
        Case { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The generated line with its placeholders filled in.
    fn line(&self, line: &str) -> String {
        line.replace("@OUT@", &self.path("out").display().to_string())
            .replace("@SHARED@", &self.path("shared").display().to_string())
    }

    fn policy(&self) -> Policy {
        let mut p = Policy {
            shell: ShellPolicy {
                allow: ALLOW.iter().map(|p| Glob::new(p)).collect(),
                deny: Vec::new(),
            },
            ..Policy::default()
        };
        p.fs.write = vec![self.path("shared")];
        p
    }

    /// Every file and directory outside the places the line may write, with its size and
    /// modification time.
    fn outside(&self) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
        let mut seen = BTreeMap::new();
        let mut todo = vec![self.dir.path().to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p == self.path("work") || p == self.path("shared") {
                    continue;
                }
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    seen.insert(p.clone(), (0, None));
                    todo.push(p);
                } else {
                    seen.insert(p, (m.len(), m.modified().ok()));
                }
            }
        }
        seen
    }
}

/// The wrapper scripts, once per test run, and the file they log to.
struct Wrappers {
    dir: tempfile::TempDir,
}

impl Wrappers {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let log = dir.path().join("log");
        for name in WRAPPED {
            let script = dir.path().join("bin").join(name);
            // One record per call, written at once (wrappers in a pipeline run side by side):
            // name and arguments joined by spaces, ended by RS (\036), so arguments may hold
            // newlines. Only builtins of /bin/sh are used; the log's path is written in, so
            // nothing the line does to its environment can hide a call.
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nr=\"${{0##*/}}\"\nfor a in \"$@\"; do r=\"$r $a\"; done\n\
                     printf '%s\\036' \"$r\" >> '{}'\nexit 0\n",
                    log.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Wrappers { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

/// What one shell did with one line.
#[derive(Debug, Default)]
struct Ran {
    /// Commands the shell traced, as name and arguments joined by spaces.
    traced: Vec<String>,
    /// Wrapped programs that ran, the same way.
    called: Vec<String>,
    /// Files outside the workdir and the write root that appeared, changed or went.
    touched: Vec<String>,
    timed_out: bool,
}

fn run(shell: &str, args: &[&str], trace: Trace, line: &str, case: &Case, w: &Wrappers) -> Ran {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::remove_file(w.log());
    let before = case.outside();
    // Found on this process's PATH: the shell's own PATH holds only the wrappers.
    let mut command = Command::new(program(shell).expect("checked by require_shells"));
    command
        .args(args)
        .arg(line)
        .env_clear()
        .env("PATH", w.bin())
        .env("HOME", case.path("home"))
        .env("LC_ALL", "C");
    if let Trace::Dash = trace {
        command.env("PS4", format!("{MARK}+ "));
    }
    let mut child = command
        .current_dir(case.path("work"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shell}: {e}"));
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ran = Ran::default();
    // Until the shell and everything it started in the background are gone.
    loop {
        let _ = child.try_wait();
        if !alive(child.id()) {
            break;
        }
        if Instant::now() > deadline {
            ran.timed_out = true;
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    let err = reader.join().unwrap();
    ran.traced = match trace {
        Trace::Bash => bash_trace(&err),
        Trace::Dash => err
            .split(MARK)
            .filter_map(|e| e.strip_prefix("+ "))
            .map(|e| e.lines().next().unwrap_or("").to_owned())
            .collect(),
    };
    ran.called = std::fs::read_to_string(w.log())
        .unwrap_or_default()
        .split('\u{1e}')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let after = case.outside();
    for (p, m) in &after {
        if before.get(p) != Some(m) {
            ran.touched.push(format!("{} written", p.display()));
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        ran.touched.push(format!("{} removed", p.display()));
    }
    ran
}

/// Whether a process of the group `group` is still running (zombies, which this sandbox's
/// init may be slow to reap, do not count).
fn alive(group: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
    })
}

/// The commands in bash's trace: lines starting with `+` (more for nested commands), then
/// the words as bash quotes them (`'…'`, `\x`, `$'…'`), up to an unquoted newline.
fn bash_trace(err: &str) -> Vec<String> {
    let chars: Vec<char> = err.chars().collect();
    let mut entries = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '+' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i] == '+' {
            i += 1;
        }
        i += 1; // the space after the pluses
        let mut entry = String::new();
        while i < chars.len() && chars[i] != '\n' {
            match chars[i] {
                '\'' => {
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        entry.push(chars[i]);
                        i += 1;
                    }
                    i += 1;
                }
                '\\' => {
                    entry.extend(chars.get(i + 1));
                    i += 2;
                }
                '$' if chars.get(i + 1) == Some(&'\'') => {
                    i += 2;
                    let mut bytes = Vec::new();
                    while i < chars.len() && chars[i] != '\'' {
                        if chars[i] == '\\' {
                            let digits: String = chars[i + 1..]
                                .iter()
                                .take(3)
                                .take_while(|c| c.is_digit(8))
                                .collect();
                            if !digits.is_empty() {
                                bytes.push(u8::from_str_radix(&digits, 8).unwrap());
                                i += 1 + digits.len();
                                continue;
                            }
                            let c = chars.get(i + 1).copied().unwrap_or('\\');
                            bytes.extend(
                                match c {
                                    'n' => '\n',
                                    't' => '\t',
                                    c => c,
                                }
                                .to_string()
                                .bytes(),
                            );
                            i += 2;
                        } else {
                            bytes.extend(chars[i].to_string().bytes());
                            i += 1;
                        }
                    }
                    entry.push_str(&String::from_utf8_lossy(&bytes));
                    i += 1;
                }
                c => {
                    entry.push(c);
                    i += 1;
                }
            }
        }
        i += 1;
        entries.push(entry);
    }
    entries
}

/// Why what `ran` breaks the allow-list, if it does.
fn violations(ran: &Ran) -> Vec<String> {
    let allowed = |c: &String| ALLOW.iter().any(|p| Glob::new(p).matches(c));
    let mut v: Vec<String> = ran
        .traced
        .iter()
        .filter(|c| !allowed(c))
        .map(|c| format!("ran `{c}`"))
        .collect();
    v.extend(
        ran.called
            .iter()
            .filter(|c| !allowed(c))
            .map(|c| format!("called `{c}`")),
    );
    v.extend(ran.touched.iter().cloned());
    if ran.timed_out {
        v.push("still running after 10 s".into());
    }
    v
}

/// Where `name` is on this process's `PATH`.
fn program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn require_shells() {
    for (shell, _, _) in SHELLS {
        assert!(
            program(shell).is_some(),
            "`{shell}` is not installed: the shell allow-list test runs every accepted line \
             under bash and dash; install Debian's `{shell}` package (.ci/test does)"
        );
    }
}

/// Runs `generated` (its placeholders filled in for a fresh tree each time) under every shell
/// if the policy accepts it, and fails on the first shell that runs what the policy forbids.
fn check(generated: &str, w: &Wrappers, stats: &Stats) -> Result<(), TestCaseError> {
    stats.lines.fetch_add(1, Ordering::Relaxed);
    for (i, (shell, args, trace)) in SHELLS.into_iter().enumerate() {
        let case = Case::new();
        let line = case.line(generated);
        let accepted = case.policy().check_shell(&line, &case.path("work")).is_ok();
        match (i, accepted) {
            (0, false) => return Ok(()),
            (0, true) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            (_, false) => {
                return Err(TestCaseError::fail(format!(
                    "{line:?} was accepted in one tree and refused in another"
                )));
            }
            _ => {}
        }
        let mut ran = run(shell, args, trace, &line, &case, w);
        // dash writes a trace entry a word at a time, so the entries of commands running side
        // by side (`|`, `&`) mix; for such lines only bash's trace (one write an entry) is
        // read, and dash's wrapper calls and files.
        if let Trace::Dash = trace
            && line.contains(['|', '&'])
        {
            ran.traced.clear();
        }
        stats
            .traced
            .fetch_add(ran.traced.len() + ran.called.len(), Ordering::Relaxed);
        let v = violations(&ran);
        if !v.is_empty() {
            return Err(TestCaseError::fail(format!(
                "the policy accepts {line:?}, but under {shell}: {}",
                v.join("; ")
            )));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Stats {
    lines: AtomicUsize,
    accepted: AtomicUsize,
    traced: AtomicUsize,
}

#[test]
fn the_harness_sees_what_a_refused_line_would_run() {
    require_shells();
    let w = Wrappers::new();
    // The line: bash runs `touch`, dash fails to parse; both are seen.
    let case = Case::new();
    let line = "echo $'\\'' ; touch /tmp/x ; echo $'\\''";
    assert!(case.policy().check_shell(line, &case.path("work")).is_err());
    let ran = run("bash", SHELLS[0].1, Trace::Bash, line, &case, &w);
    assert_eq!(ran.called, ["touch /tmp/x"]);
    assert!(ran.traced.contains(&"touch /tmp/x".to_owned()), "{ran:?}");
    // A builtin is seen in the trace, a write outside the roots in the files.
    for (shell, args, trace) in SHELLS {
        let case = Case::new();
        let line = case.line("cd ..; echo x > out/f; eval 'printf %s\\\\n \"a b\"'");
        let ran = run(shell, args, trace, &line, &case, &w);
        assert!(ran.traced.iter().any(|c| c == "cd .."), "{shell}: {ran:?}");
        assert!(
            ran.traced.iter().any(|c| c.starts_with("eval ")),
            "{shell}: {ran:?}"
        );
        assert!(
            ran.traced.iter().any(|c| c == "printf %s\\n a b"),
            "{shell}: {ran:?}"
        );
        assert_eq!(ran.touched.len(), 1, "{shell}: {ran:?}");
        // `cd *` and `eval *` are among the patterns (the policy refuses both anyway).
        assert_eq!(
            violations(&ran),
            [format!("{} written", case.path("out/f").display())],
            "{shell}"
        );
    }
}

#[test]
fn lines_the_policy_accepts_run_only_allowed_commands_under_bash_and_dash() {
    require_shells();
    let w = Wrappers::new();
    let stats = Stats::default();
    // Lines accepted on purpose, so the property is never checked on nothing.
    for line in [
        "echo 'a;b' \"c|d\" e\\;f && ls -l *.txt | wc -l",
        "git status; cat -n < in.txt > out.txt 2>&1; printf '%s\\n' x >> @SHARED@/f",
        "[ -f in.txt ] || echo \"$HOME\" ~ # ; rm -rf /",
        "true & pwd\n: ; test -n 'x'\"y\" >/dev/null",
    ] {
        let case = Case::new();
        let filled = case.line(line);
        if let Err(d) = case.policy().check_shell(&filled, &case.path("work")) {
            panic!("{line:?} is refused: {d}");
        }
        check(line, &w, &stats).unwrap();
    }
    let cases = std::env::var("WEFT_SHELL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    if let Err(e) = runner.run(&line(), |l| check(&l, &w, &stats)) {
        panic!("{e}");
    }
    let (lines, accepted) = (
        stats.lines.load(Ordering::Relaxed),
        stats.accepted.load(Ordering::Relaxed),
    );
    println!(
        "shell allow-list: {lines} lines generated, {accepted} accepted and run under bash and \
         dash, {} commands seen running, {:.1} s",
        stats.traced.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        accepted * 10 >= lines,
        "only {accepted} of {lines} generated lines were accepted: the grammar no longer \
         exercises the property"
    );
}
