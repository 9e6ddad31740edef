//! Parses one clause: an action with an optional `on DEVICE` before or after it.
//!
//! ```text
//! clause := [on] action [on]            (at most one `on`)
//! on     := "on" [article] DEVICE       article: the, my, a, an
//! action := run QUOTED | fetch URL | write (QUOTED | RESULT) to PATH | read PATH
//!         | copy PATH from [article] DEVICE to [article] DEVICE   (no `on`)
//!         | send PATH to [article] DEVICE                         (the source is `on`'s)
//! RESULT := "the result" | "the results" | "the output" | "its output" | "it"
//! ```
//!
//! Verbs and their synonyms are matched ignoring case. The device word is returned as written;
//! resolving it against the registered devices is the caller's job, and so is filling in which
//! tasks' result a `write the result` means.

use weft_protocol::Action;

use super::lexer::{Kind, Token};

/// A clause the parser understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause<'t> {
    /// The word after `on` (article skipped), if any.
    pub device: Option<&'t str>,
    pub job: Job,
}

/// What a clause asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// A complete action.
    Action(Action),
    /// `write the result to PATH`: write the result of the step before to `path`. Which tasks
    /// that is, and so the file's content, is known only when the plan is built.
    WriteResult { path: String },
    /// `copy PATH from A to B` (`from` is A) or `send PATH to B` (`from` is `None`: the
    /// clause's `on DEVICE`): the file at `path` in A's workdir placed at `path` in B's. Two
    /// tasks once the plan is built. `path` is a checked file name (relative, no `..`).
    Copy {
        path: String,
        from: Option<String>,
        to: String,
    },
}

/// Why a clause was not understood: `None` when it does not start with a known action at all,
/// else a specific reason.
pub(crate) type NotUnderstood = Option<String>;

/// The action verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Run,
    Fetch,
    Write,
    Read,
    Copy,
    Send,
}

impl Verb {
    fn parse(word: &str) -> Option<Verb> {
        match word.to_ascii_lowercase().as_str() {
            "run" | "execute" | "exec" | "shell" => Some(Verb::Run),
            "fetch" | "get" | "download" => Some(Verb::Fetch),
            "write" | "save" => Some(Verb::Write),
            "read" | "cat" | "show" => Some(Verb::Read),
            "copy" | "cp" => Some(Verb::Copy),
            "send" => Some(Verb::Send),
            _ => None,
        }
    }
}

const ARTICLES: [&str; 4] = ["the", "my", "a", "an"];

/// The tokens of a clause and how far parsing got.
struct Cursor<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl<'t> Cursor<'t> {
    fn peek_at(&self, ahead: usize) -> Option<&'t Token> {
        self.tokens.get(self.pos + ahead)
    }

    fn peek(&self) -> Option<&'t Token> {
        self.peek_at(0)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let token = self.peek();
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    /// Whether the next token is the word `word`.
    fn at_word(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(word))
    }
}

/// Parses the (non-empty) tokens of one clause.
pub(crate) fn parse(tokens: &[Token]) -> Result<Clause<'_>, NotUnderstood> {
    if tokens
        .iter()
        .any(|t| t.kind == (Kind::Quoted { closed: false }))
    {
        return Err(reason("a quote is opened but never closed"));
    }
    let mut cur = Cursor { tokens, pos: 0 };
    let mut device = on_device(&mut cur)?;
    let job = action(&mut cur)?;
    if matches!(job, Job::Copy { from: Some(_), .. }) && (device.is_some() || cur.at_word("on")) {
        return Err(reason(
            "copy names its devices with \"from\" and \"to\", not \"on\"",
        ));
    }
    if device.is_none() {
        device = on_device(&mut cur)?;
    } else if cur.at_word("on") {
        return Err(reason("a task can name only one device"));
    }
    if let Some(extra) = cur.next() {
        return Err(reason(format!(
            "unexpected {} after the action",
            extra.show()
        )));
    }
    Ok(Clause { device, job })
}

fn reason(text: impl Into<String>) -> NotUnderstood {
    Some(text.into())
}

/// Reads `on [article] DEVICE` if the clause continues with `on`.
fn on_device<'t>(cur: &mut Cursor<'t>) -> Result<Option<&'t str>, NotUnderstood> {
    if !cur.at_word("on") {
        return Ok(None);
    }
    cur.next();
    if article_ahead(cur) {
        cur.next();
    }
    match cur.next() {
        Some(t) => match t.word() {
            Some(w) if Verb::parse(w).is_none() => Ok(Some(w)),
            _ => Err(reason(format!(
                "expected a device name or kind after \"on\", found {}",
                t.show()
            ))),
        },
        None => Err(reason("\"on\" needs a device name or kind after it")),
    }
}

/// Whether the next word is an article followed by what can be a device word, so that a device
/// really named `my` still works in `on my run "x"`.
fn article_ahead(cur: &Cursor<'_>) -> bool {
    let is_article = cur
        .peek()
        .and_then(Token::word)
        .is_some_and(|w| ARTICLES.iter().any(|a| a.eq_ignore_ascii_case(w)));
    let device_follows = cur
        .peek_at(1)
        .and_then(Token::word)
        .is_some_and(|w| Verb::parse(w).is_none() && !w.eq_ignore_ascii_case("on"));
    is_article && device_follows
}

/// Reads an action: a verb and its arguments.
fn action(cur: &mut Cursor<'_>) -> Result<Job, NotUnderstood> {
    let Some(verb) = cur.peek().and_then(Token::word).and_then(Verb::parse) else {
        return Err(None);
    };
    cur.next();
    match verb {
        Verb::Run => run(cur).map(Job::Action),
        Verb::Fetch => fetch(cur).map(Job::Action),
        Verb::Write => write(cur),
        Verb::Read => read(cur).map(Job::Action),
        Verb::Copy => copy(cur),
        Verb::Send => send(cur),
    }
}

/// `copy PATH from DEVICE to DEVICE`.
fn copy(cur: &mut Cursor<'_>) -> Result<Job, NotUnderstood> {
    const EXAMPLE: &str = "e.g. copy notes/a.txt from laptop to phone";
    let path = file_path(cur, &format!("copy needs a path, {EXAMPLE}"), EXAMPLE)?;
    if !cur.at_word("from") {
        return Err(reason(format!(
            "expected \"from DEVICE\" after the path, {EXAMPLE}"
        )));
    }
    cur.next();
    let from = device_word(cur, "from", EXAMPLE)?;
    if !cur.at_word("to") {
        return Err(reason(format!(
            "expected \"to DEVICE\" after the source, {EXAMPLE}"
        )));
    }
    cur.next();
    let to = device_word(cur, "to", EXAMPLE)?;
    Ok(Job::Copy {
        path,
        from: Some(from.to_owned()),
        to: to.to_owned(),
    })
}

/// `send PATH to DEVICE`; the source is the clause's `on DEVICE`.
fn send(cur: &mut Cursor<'_>) -> Result<Job, NotUnderstood> {
    const EXAMPLE: &str = "e.g. on laptop send notes/a.txt to phone";
    let path = file_path(cur, &format!("send needs a path, {EXAMPLE}"), EXAMPLE)?;
    if !cur.at_word("to") {
        return Err(reason(format!(
            "expected \"to DEVICE\" after the path, {EXAMPLE}"
        )));
    }
    cur.next();
    let to = device_word(cur, "to", EXAMPLE)?;
    Ok(Job::Copy {
        path,
        from: None,
        to: to.to_owned(),
    })
}

/// The path of a copy: relative to the workdir, without `.`, `..`, globs or references.
fn file_path(cur: &mut Cursor<'_>, missing: &str, example: &str) -> Result<String, NotUnderstood> {
    let path = argument(cur, missing)?;
    if path.contains("{{") || path.contains("}}") {
        return Err(reason(format!(
            "`{path}`: a path to copy cannot hold `{{{{` or `}}}}`"
        )));
    }
    weft_protocol::files::check_file_name(&path).map_err(|why| {
        reason(format!(
            "`{path}` is not a path relative to the device's working directory ({why}), {example}"
        ))
    })?;
    Ok(path)
}

/// The device word after `from` or `to` (an article skipped).
fn device_word<'t>(
    cur: &mut Cursor<'t>,
    after: &str,
    example: &str,
) -> Result<&'t str, NotUnderstood> {
    // `from a to b`: `a` is the device, not an article.
    if article_ahead(cur) && !cur.peek_at(1).is_some_and(|t| t.is_word("to")) {
        cur.next();
    }
    match cur.next().and_then(Token::word) {
        Some(w) if Verb::parse(w).is_none() && !w.eq_ignore_ascii_case("on") => Ok(w),
        _ => Err(reason(format!(
            "expected a device name or kind after \"{after}\", {example}"
        ))),
    }
}

/// `run "COMMAND"`.
fn run(cur: &mut Cursor<'_>) -> Result<Action, NotUnderstood> {
    const EXAMPLE: &str = "e.g. run \"echo hi\"";
    let command = match cur.next() {
        Some(t) if matches!(t.kind, Kind::Quoted { .. }) => t.value.clone(),
        Some(_) => return Err(reason(format!("the command must be in quotes, {EXAMPLE}"))),
        None => return Err(reason(format!("run needs a quoted command, {EXAMPLE}"))),
    };
    if command.trim().is_empty() {
        return Err(reason("the command is empty"));
    }
    Ok(Action::Shell { command })
}

/// `fetch URL`, the URL bare or quoted.
fn fetch(cur: &mut Cursor<'_>) -> Result<Action, NotUnderstood> {
    let url = argument(cur, "fetch needs a URL")?;
    if !is_http_url(&url) {
        return Err(reason(format!(
            "`{url}` is not a URL starting with http:// or https://"
        )));
    }
    Ok(Action::HttpGet { url })
}

/// `write "TEXT" to PATH` or `write the result to PATH`, the path bare or quoted.
fn write(cur: &mut Cursor<'_>) -> Result<Job, NotUnderstood> {
    const EXAMPLE: &str = "e.g. write \"hello\" to notes.txt";
    const EITHER: &str = "e.g. write \"hello\" to notes.txt or write the result to notes.txt";
    let content = if let Some(words) = result_words(cur) {
        cur.pos += words;
        None
    } else {
        match cur.next() {
            Some(t) if matches!(t.kind, Kind::Quoted { .. }) => Some(t.value.clone()),
            Some(_) => {
                return Err(reason(format!(
                    "the text must be in quotes or be \"the result\", {EITHER}"
                )));
            }
            None => {
                return Err(reason(format!(
                    "write needs quoted text or \"the result\", {EITHER}"
                )));
            }
        }
    };
    if !(cur.at_word("to") || cur.at_word("into")) {
        return Err(reason(format!(
            "expected \"to PATH\" after the text, {EXAMPLE}"
        )));
    }
    cur.next();
    let path = argument(cur, "write needs a path after \"to\"")?;
    Ok(match content {
        Some(content) => Job::Action(Action::WriteFile { path, content }),
        None => Job::WriteResult { path },
    })
}

/// How many words at the cursor name the result of the step before (`it`, `the result`, `the
/// results`, `the output`, `its output`, any case), if they do.
fn result_words(cur: &Cursor<'_>) -> Option<usize> {
    const PHRASES: [&[&str]; 5] = [
        &["it"],
        &["the", "result"],
        &["the", "results"],
        &["the", "output"],
        &["its", "output"],
    ];
    PHRASES
        .iter()
        .find(|phrase| {
            phrase
                .iter()
                .enumerate()
                .all(|(k, word)| cur.peek_at(k).is_some_and(|t| t.is_word(word)))
        })
        .map(|phrase| phrase.len())
}

/// `read PATH`, the path bare or quoted.
fn read(cur: &mut Cursor<'_>) -> Result<Action, NotUnderstood> {
    let path = argument(cur, "read needs a path")?;
    Ok(Action::ReadFile { path })
}

/// A non-empty argument, bare or quoted; `missing` is the reason given when there is none. A bare
/// `on` is not an argument: it starts the device part.
fn argument(cur: &mut Cursor<'_>, missing: &str) -> Result<String, NotUnderstood> {
    match cur.peek() {
        Some(t) if !t.value.trim().is_empty() && !t.is_word("on") => {
            cur.next();
            Ok(t.value.clone())
        }
        _ => Err(reason(missing)),
    }
}

/// Whether `url` is `http://` or `https://` (any case) followed by something, without whitespace.
fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty()) && !url.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    /// Renders the parse of `input` as `[DEVICE] ACTION` or `? REASON` (`?` alone for no action).
    fn check(input: &str, expect: &str) {
        let tokens = lex(input);
        let got = match parse(&tokens) {
            Ok(Clause {
                device,
                job: Job::Action(action),
            }) => format!("[{}] {action:?}", device.unwrap_or("-")),
            Ok(Clause {
                device,
                job: Job::WriteResult { path },
            }) => format!(
                "[{}] WriteResult {{ path: {path:?} }}",
                device.unwrap_or("-")
            ),
            Ok(Clause {
                device,
                job: Job::Copy { path, from, to },
            }) => format!(
                "[{}] Copy {path:?} from {} to {to}",
                device.unwrap_or("-"),
                from.as_deref().unwrap_or("-")
            ),
            Err(None) => "?".to_owned(),
            Err(Some(r)) => format!("? {r}"),
        };
        assert_eq!(got, expect, "input {input:?}");
    }

    #[test]
    fn actions_and_synonyms() {
        check(r#"run "echo hi""#, r#"[-] Shell { command: "echo hi" }"#);
        for verb in ["RUN", "execute", "Exec", "shell"] {
            check(
                &format!("{verb} 'ls -l'"),
                r#"[-] Shell { command: "ls -l" }"#,
            );
        }
        for verb in ["fetch", "get", "download", "GET"] {
            check(
                &format!("{verb} https://example.com/a?b=c"),
                r#"[-] HttpGet { url: "https://example.com/a?b=c" }"#,
            );
        }
        check(
            r#"fetch "http://127.0.0.1:7600/healthz""#,
            r#"[-] HttpGet { url: "http://127.0.0.1:7600/healthz" }"#,
        );
        for verb in ["write", "save"] {
            check(
                &format!(r#"{verb} "hello file" to notes/a.txt"#),
                r#"[-] WriteFile { path: "notes/a.txt", content: "hello file" }"#,
            );
        }
        check(
            r#"write "" into "my notes.txt""#,
            r#"[-] WriteFile { path: "my notes.txt", content: "" }"#,
        );
        for verb in ["read", "cat", "show"] {
            check(
                &format!("{verb} notes/a.txt"),
                r#"[-] ReadFile { path: "notes/a.txt" }"#,
            );
        }
    }

    #[test]
    fn write_the_result() {
        for thing in [
            "the result",
            "the results",
            "the output",
            "its output",
            "it",
            "The Result",
            "IT",
        ] {
            check(
                &format!("write {thing} to out.txt"),
                r#"[-] WriteResult { path: "out.txt" }"#,
            );
        }
        check(
            "on phone save the output into 'my notes.txt'",
            r#"[phone] WriteResult { path: "my notes.txt" }"#,
        );
        check(
            "write it to out.txt on laptop",
            r#"[laptop] WriteResult { path: "out.txt" }"#,
        );
        check(
            r#"write "the result" to out.txt"#,
            r#"[-] WriteFile { path: "out.txt", content: "the result" }"#,
        );
        check(
            "write result to out.txt",
            r#"? the text must be in quotes or be "the result", e.g. write "hello" to notes.txt or write the result to notes.txt"#,
        );
        check(
            "write the results of t1 to out.txt",
            r#"? expected "to PATH" after the text, e.g. write "hello" to notes.txt"#,
        );
        check("write it to", r#"? write needs a path after "to""#);
        check(
            "write",
            r#"? write needs quoted text or "the result", e.g. write "hello" to notes.txt or write the result to notes.txt"#,
        );
    }

    #[test]
    fn devices() {
        check(r#"on laptop run "x""#, r#"[laptop] Shell { command: "x" }"#);
        check(r#"run "x" on laptop"#, r#"[laptop] Shell { command: "x" }"#);
        check(
            "On The Server read a.txt",
            r#"[Server] ReadFile { path: "a.txt" }"#,
        );
        check(
            "fetch http://x on my phone",
            r#"[phone] HttpGet { url: "http://x" }"#,
        );
        check(r#"on my run "x""#, r#"[my] Shell { command: "x" }"#);
        check(r#"on a run "x""#, r#"[a] Shell { command: "x" }"#);
    }

    #[test]
    fn not_understood() {
        check("make me a sandwich", "?");
        check("on laptop make me a sandwich", "?");
        check(
            r#"run "unterminated"#,
            "? a quote is opened but never closed",
        );
        check(
            "run uname",
            r#"? the command must be in quotes, e.g. run "echo hi""#,
        );
        check("run", r#"? run needs a quoted command, e.g. run "echo hi""#);
        check(r#"run "  ""#, "? the command is empty");
        check(
            "fetch ftp://x",
            "? `ftp://x` is not a URL starting with http:// or https://",
        );
        check(
            "fetch http://",
            "? `http://` is not a URL starting with http:// or https://",
        );
        check(
            r#"fetch "http://a b""#,
            "? `http://a b` is not a URL starting with http:// or https://",
        );
        check("fetch on laptop", "? fetch needs a URL");
        check(
            "write hello to a.txt",
            r#"? the text must be in quotes or be "the result", e.g. write "hello" to notes.txt or write the result to notes.txt"#,
        );
        check(
            r#"write "hello" a.txt"#,
            r#"? expected "to PATH" after the text, e.g. write "hello" to notes.txt"#,
        );
        check(r#"write "hello" to"#, r#"? write needs a path after "to""#);
        check(r#"read """#, "? read needs a path");
        check("on", r#"? "on" needs a device name or kind after it"#);
        check(
            r#"on "laptop" run "x""#,
            r#"? expected a device name or kind after "on", found `"laptop"`"#,
        );
        check(
            r#"on run "x""#,
            r#"? expected a device name or kind after "on", found `run`"#,
        );
        check(
            r#"on laptop run "x" on server"#,
            "? a task can name only one device",
        );
        check(
            r#"run "x" please"#,
            "? unexpected `please` after the action",
        );
        check(
            r#"run "x" on laptop now"#,
            "? unexpected `now` after the action",
        );
    }

    #[test]
    fn copy_and_send() {
        check(
            "copy notes/a.txt from laptop to phone",
            r#"[-] Copy "notes/a.txt" from laptop to phone"#,
        );
        check(
            "Copy 'my notes.txt' from the laptop to my phone",
            r#"[-] Copy "my notes.txt" from laptop to phone"#,
        );
        check("cp a.txt from A to B", r#"[-] Copy "a.txt" from A to B"#);
        check(
            "copy a.txt from a to a phone",
            r#"[-] Copy "a.txt" from a to phone"#,
        );
        check(
            "on laptop send photo.jpg to phone",
            r#"[laptop] Copy "photo.jpg" from - to phone"#,
        );
        check(
            "send photo.jpg to the phone on laptop",
            r#"[laptop] Copy "photo.jpg" from - to phone"#,
        );
        check(
            "send photo.jpg to phone",
            r#"[-] Copy "photo.jpg" from - to phone"#,
        );
    }

    #[test]
    fn copy_and_send_not_understood() {
        check(
            "copy a.txt to phone",
            r#"? expected "from DEVICE" after the path, e.g. copy notes/a.txt from laptop to phone"#,
        );
        check(
            "copy a.txt from laptop",
            r#"? expected "to DEVICE" after the source, e.g. copy notes/a.txt from laptop to phone"#,
        );
        check(
            "copy a.txt from laptop to",
            r#"? expected a device name or kind after "to", e.g. copy notes/a.txt from laptop to phone"#,
        );
        check(
            "copy",
            "? copy needs a path, e.g. copy notes/a.txt from laptop to phone",
        );
        check(
            "on server copy a.txt from laptop to phone",
            r#"? copy names its devices with "from" and "to", not "on""#,
        );
        check(
            "copy a.txt from laptop to phone on server",
            r#"? copy names its devices with "from" and "to", not "on""#,
        );
        check(
            "copy /etc/passwd from laptop to phone",
            "? `/etc/passwd` is not a path relative to the device's working directory (`/etc/passwd` is absolute; names are relative to the workdir), e.g. copy notes/a.txt from laptop to phone",
        );
        check(
            "copy ../a.txt from laptop to phone",
            "? `../a.txt` is not a path relative to the device's working directory (`../a.txt` has a `..` part), e.g. copy notes/a.txt from laptop to phone",
        );
        check(
            "send '{{t1.output}}' to phone",
            "? `{{t1.output}}`: a path to copy cannot hold `{{` or `}}`",
        );
        check(
            "send a.txt phone",
            r#"? expected "to DEVICE" after the path, e.g. on laptop send notes/a.txt to phone"#,
        );
        check(
            "copy a.txt from laptop to phone now",
            "? unexpected `now` after the action",
        );
    }
}
