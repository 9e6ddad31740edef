//! References from one task to an upstream task's output, written `{{ID.output…}}` in the task's
//! instruction and in the string fields of its action.
//!
//! ```text
//! {{ID.output}}                the output's main text (below)
//! {{ID.output.summary}}        the output's summary
//! {{ID.output.KEY.KEY2…}}      a value in the output's data, one object key per step
//! {{ID.files}}                 the local paths of every file the task produced (below)
//! {{ID.files.NAME}}            the local path of its file NAME (`photo.jpg`, `build/app.apk`)
//! ```
//!
//! `ID` is a task id and each `KEY` an object key, both made of ASCII letters, digits, `-` and
//! `_` (task ids at most 64 characters). A `KEY` made only of digits also indexes an array
//! (`{{t1.output.items.0}}`). `summary` directly after `output` always means the summary text,
//! never a data key called `summary`, and takes no further keys. Whitespace just inside the
//! braces is allowed: `{{ t1.output.stdout }}`.
//!
//! A file NAME is what the task declared in its `outputs` (relative to its workdir), made of
//! ASCII letters, digits and `.`, `-`, `_`, `+`, `@`, with `/` between directories. Files
//! references stand for the path, relative to the consuming agent's workdir, that the file is
//! fetched to before the attempt runs (`inputs/<attempt>/<task>/<name>`); `{{ID.files}}` is
//! every such path, in name order, separated by spaces (in a shell command each one quoted).
//!
//! The **main text** of an output is `data.stdout` if it is a string (shell), else `data.body`
//! (http_get), else `data.content` (read_file), else the summary.
//!
//! `{{` always starts a reference: a `{{` that does not begin a well-formed reference is an error,
//! never passed through, and there is no escape for a literal `{{`. Text without `{{` is never
//! changed (a lone `}}` is just text).
//!
//! References are allowed in a task's `instruction` and in its action's `command` (shell), `url`
//! (http_get), `path` and `content` (write_file) and `path` (read_file). A task may refer only to
//! tasks upstream of it (checked by [`crate::Plan::validate`]; the engine checks edits against
//! its own graph with [`task_references`]). At dispatch time [`substitute`] replaces them with
//! text; inside a shell `command` every value is single-quoted, so device output can never
//! inject shell syntax, and a reference is therefore only accepted where a quoted word works:
//! written bare, not inside quotes, backquotes, a comment or a heredoc.
//!
//! One hazard quoting cannot remove: bash evaluates the operands of arithmetic (`$(( ))`,
//! `(( ))`, `[[ x -eq y ]]`, `let`) as expressions, and an expression can run commands
//! (`a[$(cmd)]`). Never use a reference as an arithmetic operand; compare with a `condition`
//! edge, or with `test` / `[` (which do not evaluate expressions), instead.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use weft_protocol::{Action, TaskId, TaskOutput};

/// The longest task id a reference may name, as for plans.
const MAX_TASK_ID_LEN: usize = 64;

/// What every reference error ends with.
/// (Files references, `{{t1.files…}}`, are not named in it: the text is part of what recorded
/// LLM conversations hold, so it stays as it was.)
const SYNTAX_HINT: &str = "a reference looks like {{t1.output}}, {{t1.output.summary}} or \
                           {{t1.output.stdout}}, and `{{` always starts one";

/// The files of upstream tasks an attempt takes, as the paths they are fetched to: by task,
/// then by file name.
pub type Files = BTreeMap<TaskId, BTreeMap<String, String>>;

/// What a reference stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refers {
    /// `{{ID.output…}}`: the keys after `output`: empty for the main text, `["summary"]` for
    /// the summary, else keys into the output's data.
    Output(Vec<String>),
    /// `{{ID.files}}`: every file the task produced.
    Files,
    /// `{{ID.files.NAME}}`: its file of that name.
    File(String),
}

/// A reference to (part of) an upstream task's output, or to its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The task whose output or files are referred to.
    pub task: TaskId,
    pub what: Refers,
}

impl Reference {
    /// The text this output reference stands for in `output` (`None` when a key is missing,
    /// or for a files reference). Strings are returned as they are; other JSON values as
    /// compact JSON text (`null`, `0`, `[1,2]`).
    pub fn resolve(&self, output: &TaskOutput) -> Option<String> {
        let Refers::Output(path) = &self.what else {
            return None;
        };
        let Some((first, rest)) = path.split_first() else {
            return Some(main_text(output));
        };
        if first == "summary" && rest.is_empty() {
            return Some(output.summary.clone());
        }
        let mut value = &output.data;
        for key in path {
            value = match value {
                Value::Object(map) => map.get(key)?,
                Value::Array(items) => items.get(array_index(key)?)?,
                _ => return None,
            };
        }
        Some(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl fmt::Display for Reference {
    /// The canonical spelling: `{{t1.output}}`, `{{t1.output.stdout}}`, `{{t1.files}}`,
    /// `{{t1.files.photo.jpg}}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            Refers::Output(path) => {
                write!(f, "{{{{{}.output", self.task)?;
                for key in path {
                    write!(f, ".{key}")?;
                }
            }
            Refers::Files => write!(f, "{{{{{}.files", self.task)?,
            Refers::File(name) => write!(f, "{{{{{}.files.{name}", self.task)?,
        }
        f.write_str("}}")
    }
}

/// Every reference in `text`, in order. `Err(message)` for a malformed `{{…}}`; the message quotes
/// it and says what is wrong.
pub fn parse(text: &str) -> Result<Vec<Reference>, String> {
    Ok(scan(text)?.into_iter().map(|f| f.reference).collect())
}

/// Every reference made by a task: in its instruction, then in its action's string fields.
/// The error names the field (`instruction`, or the action's `command`, `url`, `path`,
/// `content`) and the problem.
///
/// In a shell `command`, a reference must also stand where its single-quoted value stays one
/// literal piece of a word (see [`substitute`]); anywhere else it is refused.
pub fn task_references(
    instruction: &str,
    action: Option<&Action>,
) -> Result<Vec<Reference>, String> {
    let mut all = parse(instruction).map_err(|e| format!("in the instruction: {e}"))?;
    let shell = matches!(action, Some(Action::Shell { .. }));
    for (field, text) in action.map(action_fields).unwrap_or_default() {
        let found =
            scan_field(text, shell).map_err(|e| format!("in the action's `{field}`: {e}"))?;
        all.extend(found.into_iter().map(|f| f.reference));
    }
    if let Some(Action::Sim { args, .. }) = action {
        let mut strings = Vec::new();
        sim_strings(args, "args".to_owned(), &mut strings);
        for (field, text) in strings {
            let found =
                scan_field(text, false).map_err(|e| format!("in the action's `{field}`: {e}"))?;
            all.extend(found.into_iter().map(|f| f.reference));
        }
    }
    Ok(all)
}

/// The references of a task's `inputs` files list: each entry must be exactly one files
/// reference (`{{t1.files}}` or `{{t1.files.NAME}}`). The error names the entry.
pub fn input_references(entries: &[String]) -> Result<Vec<Reference>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let whole = entry.trim();
            let found = scan(whole).map_err(|e| format!("in inputs.files[{i}]: {e}"))?;
            match found.as_slice() {
                [f] if f.start == 0
                    && f.end == whole.len()
                    && !matches!(f.reference.what, Refers::Output(_)) =>
                {
                    Ok(f.reference.clone())
                }
                _ => Err(format!(
                    "inputs.files[{i}] is `{entry}`; each entry is one reference to an upstream \
                     task's files, {{{{t1.files}}}} or {{{{t1.files.NAME}}}}"
                )),
            }
        })
        .collect()
}

/// The string values inside a `sim` action's `args`, each named by its place (`args.body`,
/// `args.to.0`): the fields that may hold references.
fn sim_strings<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((at, s)),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                sim_strings(v, format!("{at}.{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                sim_strings(v, format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// `value` with the references in its strings filled in (never shell-quoted).
fn fill_json(value: &Value, at: &str, up: &Upstream<'_>) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => {
            Value::String(fill(s, up, false).map_err(|e| format!("in the action's `{at}`: {e}"))?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| fill_json(v, &format!("{at}.{i}"), up))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), fill_json(v, &format!("{at}.{k}"), up)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Substitutes references at dispatch time, given the outputs of the task's upstream tasks.
///
/// Returns the instruction and the action with every reference replaced by its text
/// ([`Reference::resolve`]). Inside a shell `command` each value is shell-quoted (POSIX single
/// quotes, a `'` inside becoming `'\''`), so `rm {{t1.output}}` with the output `a b; reboot`
/// runs `rm 'a b; reboot'`: one argument, never shell syntax. Everywhere else the text is
/// inserted as it is.
///
/// Because the value is quoted for a plain word, a reference in a shell command must be written
/// bare: one inside `'…'`, `"…"`, `` `…` `` or `$'…'`, in a comment, after a heredoc operator
/// `<<`, or directly after `\` or `$` is refused (there the quotes would not protect it).
///
/// `Err(message)` for a malformed or misplaced reference, a reference to a task not in
/// `outputs`, or a key the output does not have.
pub fn substitute(
    instruction: &str,
    action: Option<&Action>,
    outputs: &BTreeMap<TaskId, TaskOutput>,
) -> Result<(String, Option<Action>), String> {
    substitute_with_files(instruction, action, outputs, &Files::new())
}

/// [`substitute`], files references included: each is filled in with the paths `files` gives
/// (every path of the task, space-separated, for `{{ID.files}}`; in a shell command each path
/// quoted on its own). A files reference to a task or a name `files` does not have is an
/// error.
pub fn substitute_with_files(
    instruction: &str,
    action: Option<&Action>,
    outputs: &BTreeMap<TaskId, TaskOutput>,
    files: &Files,
) -> Result<(String, Option<Action>), String> {
    let up = Upstream { outputs, files };
    let instruction =
        fill(instruction, &up, false).map_err(|e| format!("in the instruction: {e}"))?;
    let field = |name: &str, text: &str, quote: bool| {
        fill(text, &up, quote).map_err(|e| format!("in the action's `{name}`: {e}"))
    };
    let action = match action {
        None => None,
        Some(Action::Shell { command }) => Some(Action::Shell {
            command: field("command", command, true)?,
        }),
        Some(Action::HttpGet { url }) => Some(Action::HttpGet {
            url: field("url", url, false)?,
        }),
        Some(Action::WriteFile { path, content }) => Some(Action::WriteFile {
            path: field("path", path, false)?,
            content: field("content", content, false)?,
        }),
        Some(Action::ReadFile { path }) => Some(Action::ReadFile {
            path: field("path", path, false)?,
        }),
        Some(Action::CopyFile { from, to }) => Some(Action::CopyFile {
            from: field("from", from, false)?,
            to: field("to", to, false)?,
        }),
        Some(Action::Sim { op, args }) => Some(Action::Sim {
            op: op.clone(),
            args: fill_json(args, "args", &up)?,
        }),
        Some(a @ (Action::Steps { .. } | Action::Phone { .. } | Action::Adb { .. })) => {
            Some(a.clone())
        }
    };
    Ok((instruction, action))
}

/// What references are filled in from.
struct Upstream<'a> {
    outputs: &'a BTreeMap<TaskId, TaskOutput>,
    files: &'a Files,
}

/// `text` quoted for a POSIX shell: in single quotes, each `'` written as `'\''`.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The main text of an output: `data.stdout`, `data.body` or `data.content`, the first that is
/// a string, else the summary.
fn main_text(output: &TaskOutput) -> String {
    ["stdout", "body", "content"]
        .iter()
        .find_map(|key| output.data.get(key).and_then(Value::as_str))
        .unwrap_or(output.summary.as_str())
        .to_owned()
}

/// A key made only of digits (no leading zero unless it is `0`) as an array index.
fn array_index(key: &str) -> Option<usize> {
    let canonical = key == "0" || !key.starts_with('0');
    if canonical && key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse().ok()
    } else {
        None
    }
}

/// The string fields of an action that may hold references, with their names.
fn action_fields(action: &Action) -> Vec<(&'static str, &str)> {
    match action {
        Action::Shell { command } => vec![("command", command)],
        Action::HttpGet { url } => vec![("url", url)],
        Action::WriteFile { path, content } => vec![("path", path), ("content", content)],
        Action::ReadFile { path } => vec![("path", path)],
        Action::CopyFile { from, to } => vec![("from", from), ("to", to)],
        Action::Steps { .. } | Action::Phone { .. } | Action::Adb { .. } | Action::Sim { .. } => {
            vec![]
        }
    }
}

/// A reference and the byte range of its `{{…}}` in the text it was found in.
#[derive(Debug)]
struct Found {
    start: usize,
    end: usize,
    reference: Reference,
}

/// Finds every `{{…}}` in `text`, in order.
fn scan(text: &str) -> Result<Vec<Found>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some((before, after)) = rest.split_once("{{") {
        let start = offset + before.len();
        let Some((body, tail)) = after.split_once("}}") else {
            return Err(format!(
                "`{{{{{}` has no closing `}}}}`; {SYNTAX_HINT}",
                excerpt(after)
            ));
        };
        let end = start + body.len() + 4;
        let reference = parse_body(body)
            .map_err(|why| format!("`{{{{{body}}}}}` is not a reference ({why}); {SYNTAX_HINT}"))?;
        found.push(Found {
            start,
            end,
            reference,
        });
        offset = end;
        rest = tail;
    }
    Ok(found)
}

/// Parses what is between `{{` and `}}`.
fn parse_body(body: &str) -> Result<Reference, String> {
    let mut parts = body.trim().split('.');
    let task = parts.next().unwrap_or_default();
    if task.is_empty() {
        return Err("the task id is missing".to_owned());
    }
    if task.len() > MAX_TASK_ID_LEN || !is_word(task) {
        return Err(format!(
            "`{task}` is not a task id: 1-{MAX_TASK_ID_LEN} letters, digits, `-` or `_`"
        ));
    }
    match parts.next() {
        Some("output") => {}
        Some("files") => {
            let rest: Vec<&str> = parts.collect();
            let what = if rest.is_empty() {
                Refers::Files
            } else {
                Refers::File(file_name(&rest.join("."))?)
            };
            return Ok(Reference {
                task: TaskId::new(task),
                what,
            });
        }
        Some(other) => {
            return Err(format!(
                "expected `output` after the task id, found `{other}`"
            ));
        }
        None => return Err("expected `.output` after the task id".to_owned()),
    }
    let mut path = Vec::new();
    for key in parts {
        if key.is_empty() {
            return Err("a key is empty".to_owned());
        }
        if !is_word(key) {
            return Err(format!(
                "key `{key}` is not made of letters, digits, `-` and `_`"
            ));
        }
        path.push(key.to_owned());
    }
    if path.len() > 1 && path.first().is_some_and(|k| k == "summary") {
        return Err("`summary` is text and has no keys".to_owned());
    }
    Ok(Reference {
        task: TaskId::new(task),
        what: Refers::Output(path),
    })
}

/// The NAME of `{{ID.files.NAME}}`, checked: a relative file name (as `weft_protocol::files`
/// takes) of ASCII letters, digits, `.`, `-`, `_`, `+`, `@` and `/`.
pub(crate) fn file_name(name: &str) -> Result<String, String> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+@/".contains(&b))
    {
        return Err(format!(
            "file name `{name}` is not made of letters, digits, `.`, `-`, `_`, `+`, `@` and `/`"
        ));
    }
    weft_protocol::files::check_file_name(name)?;
    Ok(name.to_owned())
}

/// Whether `s` is non-empty ASCII letters, digits, `-` and `_`.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The start of an unterminated reference for an error message: up to 40 characters, `…` if cut.
fn excerpt(after: &str) -> String {
    const MAX: usize = 40;
    let mut shown: String = after.chars().take(MAX).collect();
    if after.chars().nth(MAX).is_some() {
        shown.push('…');
    }
    shown
}

/// The references in `text`; for a shell command (`shell`), also checks where they stand.
fn scan_field(text: &str, shell: bool) -> Result<Vec<Found>, String> {
    let found = scan(text)?;
    if shell {
        check_shell_placement(text, &found)?;
    }
    Ok(found)
}

/// Where the shell reading `command` is, as far as a substituted value cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shell {
    /// Unquoted: a single-quoted value stays one literal piece of the word it is in.
    Plain,
    Single,
    Double,
    Backquote,
    /// `$'…'`, where backslash escapes are processed.
    AnsiC,
    Comment,
}

/// Refuses references a single-quoted value would not protect: inside quotes, backquotes or a
/// comment, after a heredoc operator, or directly after `\` or `$`. A small scanner, not a shell
/// parser: it errs on the side of refusing.
fn check_shell_placement(command: &str, found: &[Found]) -> Result<(), String> {
    let refused = |f: &Found, place: &str| {
        Err(format!(
            "{} is {place}; in a shell command write references bare, they are quoted for you \
             (e.g. echo {{{{t1.output}}}})",
            f.reference
        ))
    };
    let bytes = command.as_bytes();
    let starting_at = |i: usize| found.iter().find(|f| f.start == i);
    let mut state = Shell::Plain;
    let mut heredoc = false;
    let mut prev: Option<u8> = None;
    let mut next_ref = found.iter().peekable();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if let Some(f) = next_ref.next_if(|f| f.start <= i) {
            let place = match state {
                Shell::Plain if heredoc => Some("after a heredoc operator `<<`"),
                Shell::Plain => None,
                Shell::Single => Some("inside '…'"),
                Shell::Double => Some("inside \"…\""),
                Shell::Backquote => Some("inside `…`"),
                Shell::AnsiC => Some("inside $'…'"),
                Shell::Comment => Some("in a comment"),
            };
            if let Some(place) = place {
                return refused(f, place);
            }
            i = f.end.max(i + 1);
            prev = Some(b'}');
            continue;
        }
        if state == Shell::Plain
            && (b == b'\\' || b == b'$')
            && let Some(f) = starting_at(i + 1)
        {
            let place = if b == b'$' {
                "directly after `$`"
            } else {
                "directly after a backslash"
            };
            return refused(f, place);
        }
        let next = bytes.get(i + 1).copied();
        let mut step = 1;
        state = match (state, b) {
            (Shell::Plain, b'\\') => {
                step = 2;
                Shell::Plain
            }
            (Shell::Plain, b'$') if next == Some(b'\'') => {
                step = 2;
                Shell::AnsiC
            }
            (Shell::Plain, b'\'') => Shell::Single,
            (Shell::Plain, b'"') => Shell::Double,
            (Shell::Plain, b'`') => Shell::Backquote,
            (Shell::Plain, b'#') if prev.is_none_or(|p| b" \t\n;&|()<>".contains(&p)) => {
                Shell::Comment
            }
            (Shell::Plain, b'<') if next == Some(b'<') => {
                heredoc = true;
                step = 2;
                Shell::Plain
            }
            (Shell::Double | Shell::Backquote | Shell::AnsiC, b'\\') => {
                step = 2;
                state
            }
            (Shell::Single | Shell::AnsiC, b'\'')
            | (Shell::Double, b'"')
            | (Shell::Backquote, b'`')
            | (Shell::Comment, b'\n') => Shell::Plain,
            (state, _) => state,
        };
        prev = Some(b);
        i += step;
    }
    Ok(())
}

/// `text` with every reference replaced by its text, shell-quoted if `quote` (a shell command).
fn fill(text: &str, up: &Upstream<'_>, quote: bool) -> Result<String, String> {
    let found = scan_field(text, quote)?;
    if found.is_empty() {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for f in found {
        out.push_str(text.get(copied..f.start).unwrap_or_default());
        let values = values(&f.reference, up)?;
        let written: Vec<String> = if quote {
            values.iter().map(|v| shell_quote(v)).collect()
        } else {
            values
        };
        out.push_str(&written.join(" "));
        copied = f.end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Ok(out)
}

/// The text (one value, or one per file for `{{ID.files}}`) that `r` stands for.
fn values(r: &Reference, up: &Upstream<'_>) -> Result<Vec<String>, String> {
    let task = &r.task;
    match &r.what {
        Refers::Output(path) => {
            let Some(output) = up.outputs.get(task) else {
                return Err(format!(
                    "{r} refers to {task}, whose output is not among this task's inputs \
                     (only upstream tasks' outputs are)"
                ));
            };
            let value = r
                .resolve(output)
                .ok_or_else(|| format!("{r}: the output of {task} has no `{}`", path.join(".")))?;
            Ok(vec![value])
        }
        Refers::Files | Refers::File(_) => {
            let Some(files) = up.files.get(task) else {
                return Err(format!(
                    "{r} refers to {task}, whose files are not among this task's inputs \
                     (only upstream tasks' files are)"
                ));
            };
            match &r.what {
                Refers::File(name) => files
                    .get(name)
                    .map(|p| vec![p.clone()])
                    .ok_or_else(|| format!("{r}: {task} produced no file `{name}`")),
                _ => Ok(files.values().cloned().collect()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Renders the references of `text` as `t1 [a, b]`, one per `;`, or `error: MESSAGE`.
    fn check_parse(text: &str, expect: &str) {
        let got = match parse(text) {
            Ok(refs) => refs
                .iter()
                .map(|r| match &r.what {
                    Refers::Output(path) => format!("{} {path:?}", r.task),
                    Refers::Files => format!("{} files", r.task),
                    Refers::File(name) => format!("{} file {name}", r.task),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "text {text:?}");
    }

    /// A malformed reference: the error is `ERROR; {SYNTAX_HINT}`.
    fn check_malformed(text: &str, expect: &str) {
        check_parse(text, &format!("error: {expect}; {SYNTAX_HINT}"));
    }

    #[test]
    fn parse_valid() {
        check_parse("", "");
        check_parse("no references here }} { } {x}", "");
        check_parse("{{t1.output}}", "t1 []");
        check_parse("{{t1.output.stdout}}", r#"t1 ["stdout"]"#);
        check_parse("{{t1.output.summary}}", r#"t1 ["summary"]"#);
        check_parse("{{ t1.output.stdout }}", r#"t1 ["stdout"]"#);
        check_parse("{{\n\tt1.output\n}}", "t1 []");
        check_parse(
            "echo {{t1.output}} and {{Build-2_x.output.a.b-c.d_e.0}}!",
            r#"t1 []; Build-2_x ["a", "b-c", "d_e", "0"]"#,
        );
        check_parse("{{t1.output}}{{t1.output}}", "t1 []; t1 []");
        check_parse("}}{{t2.output}}}}", "t2 []");
        check_parse("日本 {{t1.output}} é", "t1 []");
        check_parse(
            &format!("{{{{{}.output}}}}", "x".repeat(64)),
            &format!("{} []", "x".repeat(64)),
        );
    }

    #[test]
    fn parse_malformed() {
        check_malformed(
            "{{t1}}",
            "`{{t1}}` is not a reference (expected `.output` after the task id)",
        );
        check_malformed(
            "{{t1.out}}",
            "`{{t1.out}}` is not a reference (expected `output` after the task id, found `out`)",
        );
        check_malformed(
            "{{t1.Output}}",
            "`{{t1.Output}}` is not a reference (expected `output` after the task id, found `Output`)",
        );
        check_malformed(
            "{{.output}}",
            "`{{.output}}` is not a reference (the task id is missing)",
        );
        check_malformed("{{}}", "`{{}}` is not a reference (the task id is missing)");
        check_malformed(
            "{{  }}",
            "`{{  }}` is not a reference (the task id is missing)",
        );
        check_malformed("a {{t1.output", "`{{t1.output` has no closing `}}`");
        check_malformed("{{t1.output }", "`{{t1.output }` has no closing `}}`");
        check_malformed(
            &format!("{{{{{}", "y".repeat(50)),
            &format!("`{{{{{}…` has no closing `}}}}`", "y".repeat(40)),
        );
        check_malformed(
            "{{t 1.output}}",
            "`{{t 1.output}}` is not a reference (`t 1` is not a task id: 1-64 letters, digits, `-` or `_`)",
        );
        check_malformed(
            "{{t1 .output}}",
            "`{{t1 .output}}` is not a reference (`t1 ` is not a task id: 1-64 letters, digits, `-` or `_`)",
        );
        check_malformed(
            "{{t/1.output}}",
            "`{{t/1.output}}` is not a reference (`t/1` is not a task id: 1-64 letters, digits, `-` or `_`)",
        );
        check_malformed(
            &format!("{{{{{}.output}}}}", "x".repeat(65)),
            &format!(
                "`{{{{{x}.output}}}}` is not a reference (`{x}` is not a task id: 1-64 letters, digits, `-` or `_`)",
                x = "x".repeat(65)
            ),
        );
        check_malformed(
            "{{t1.output.}}",
            "`{{t1.output.}}` is not a reference (a key is empty)",
        );
        check_malformed(
            "{{t1.output..x}}",
            "`{{t1.output..x}}` is not a reference (a key is empty)",
        );
        check_malformed(
            "{{t1.output.a b}}",
            "`{{t1.output.a b}}` is not a reference (key `a b` is not made of letters, digits, `-` and `_`)",
        );
        check_malformed(
            "{{t1.output.é}}",
            "`{{t1.output.é}}` is not a reference (key `é` is not made of letters, digits, `-` and `_`)",
        );
        check_malformed(
            "{{t1.output.summary.x}}",
            "`{{t1.output.summary.x}}` is not a reference (`summary` is text and has no keys)",
        );
        check_malformed(
            "{{{{t1.output}}",
            "`{{{{t1.output}}` is not a reference (`{{t1` is not a task id: 1-64 letters, digits, `-` or `_`)",
        );
        check_malformed(
            "{{{t1.output}}}",
            "`{{{t1.output}}` is not a reference (`{t1` is not a task id: 1-64 letters, digits, `-` or `_`)",
        );
        check_malformed(
            "ok {{t1.output}} then {{t2}}",
            "`{{t2}}` is not a reference (expected `.output` after the task id)",
        );
    }

    #[test]
    fn display_is_the_canonical_spelling() {
        for (text, shown) in [
            ("{{ t1.output }}", "{{t1.output}}"),
            ("{{t1.output.a.0}}", "{{t1.output.a.0}}"),
        ] {
            let refs = parse(text).expect("valid");
            assert_eq!(
                refs.first().map(ToString::to_string).as_deref(),
                Some(shown)
            );
        }
    }

    fn output(summary: &str, data: Value) -> TaskOutput {
        TaskOutput {
            summary: summary.to_owned(),
            data,
        }
    }

    /// Resolves each reference (text) in `output`; `expect` is the text, or `None`.
    fn check_resolve(output: &TaskOutput, cases: &[(&str, Option<&str>)]) {
        for &(text, expect) in cases {
            let refs = parse(text).expect("valid reference");
            let [r] = refs.as_slice() else {
                panic!("one reference in {text}");
            };
            assert_eq!(r.resolve(output).as_deref(), expect, "reference {text}");
        }
    }

    #[test]
    fn main_text_order() {
        let all = json!({"stdout": "out", "body": "body", "content": "content"});
        check_resolve(&output("sum", all), &[("{{t1.output}}", Some("out"))]);
        let cases = [
            (json!({"stdout": 1, "body": "body", "content": "c"}), "body"),
            (json!({"body": "body", "content": "c"}), "body"),
            (json!({"body": null, "content": "c"}), "c"),
            (json!({"path": "a.txt", "content": ""}), ""),
            (json!({"path": "a.txt", "bytes": 3}), "sum"),
            (json!(null), "sum"),
            (json!("a bare string"), "sum"),
        ];
        for (data, expect) in cases {
            check_resolve(&output("sum", data), &[("{{t1.output}}", Some(expect))]);
        }
    }

    #[test]
    fn resolve_keys() {
        let out = output(
            "exit 0",
            json!({
                "stdout": "hi\n",
                "exit_code": 0,
                "summary": "a data key called summary",
                "nested": {"a": {"b-c": "deep"}, "list": [10, "x", {"k": true}]},
                "nothing": null,
                "obj": {"z": 1, "a": [1, 2]},
            }),
        );
        check_resolve(
            &out,
            &[
                ("{{t1.output.summary}}", Some("exit 0")),
                ("{{t1.output.stdout}}", Some("hi\n")),
                ("{{t1.output.exit_code}}", Some("0")),
                ("{{t1.output.nested.a.b-c}}", Some("deep")),
                ("{{t1.output.nested.list.0}}", Some("10")),
                ("{{t1.output.nested.list.1}}", Some("x")),
                ("{{t1.output.nested.list.2.k}}", Some("true")),
                ("{{t1.output.nested.list.3}}", None),
                ("{{t1.output.nested.list.01}}", None),
                ("{{t1.output.nested.list.x}}", None),
                ("{{t1.output.nothing}}", Some("null")),
                ("{{t1.output.obj}}", Some(r#"{"a":[1,2],"z":1}"#)),
                ("{{t1.output.obj.a}}", Some("[1,2]")),
                ("{{t1.output.missing}}", None),
                ("{{t1.output.stdout.x}}", None),
                ("{{t1.output.exit_code.0}}", None),
            ],
        );
    }

    #[test]
    fn task_references_names_the_field() {
        let check = |instruction: &str, action: Option<Action>, expect: &str| {
            let got = match task_references(instruction, action.as_ref()) {
                Ok(refs) => refs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(e) => format!("error: {e}"),
            };
            assert_eq!(got, expect, "{instruction:?} {action:?}");
        };
        check("plain", None, "");
        check(
            "use {{a.output}}",
            Some(Action::Shell {
                command: "cat {{b.output.stdout}} {{c.output}}".into(),
            }),
            "{{a.output}} {{b.output.stdout}} {{c.output}}",
        );
        check(
            "",
            Some(Action::HttpGet {
                url: "http://x/{{a.output}}".into(),
            }),
            "{{a.output}}",
        );
        check(
            "",
            Some(Action::WriteFile {
                path: "{{a.output.name}}.txt".into(),
                content: "{{b.output}}".into(),
            }),
            "{{a.output.name}} {{b.output}}",
        );
        check(
            "",
            Some(Action::ReadFile {
                path: "{{a.output}}".into(),
            }),
            "{{a.output}}",
        );
        check(
            "{{a}}",
            None,
            &format!(
                "error: in the instruction: `{{{{a}}}}` is not a reference \
                 (expected `.output` after the task id); {SYNTAX_HINT}"
            ),
        );
        check(
            "fine",
            Some(Action::WriteFile {
                path: "ok.txt".into(),
                content: "x {{a.output".into(),
            }),
            &format!(
                "error: in the action's `content`: `{{{{a.output` has no closing `}}}}`; \
                 {SYNTAX_HINT}"
            ),
        );
        check(
            "",
            Some(Action::Shell {
                command: "echo ${{x}}".into(),
            }),
            &format!(
                "error: in the action's `command`: `{{{{x}}}}` is not a reference \
                 (expected `.output` after the task id); {SYNTAX_HINT}"
            ),
        );
    }

    #[test]
    fn shell_placement() {
        let check = |command: &str, expect: &str| {
            let action = Action::Shell {
                command: command.to_owned(),
            };
            let got = match task_references("", Some(&action)) {
                Ok(refs) => format!("ok {}", refs.len()),
                Err(e) => e,
            };
            let expect = match expect.strip_prefix("ok") {
                Some(_) => expect.to_owned(),
                None => format!(
                    "in the action's `command`: {{{{t1.output}}}} is {expect}; in a shell command \
                     write references bare, they are quoted for you (e.g. echo {{{{t1.output}}}})"
                ),
            };
            assert_eq!(got, expect, "command {command:?}");
        };
        // Bare, wherever a word may be: fine.
        check("echo {{t1.output}}", "ok 1");
        check("{{t1.output}}", "ok 1");
        check("cp {{t1.output}} out-{{ t2.output.name }}.txt", "ok 2");
        check("x={{t1.output}}; echo \"$x\"", "ok 1");
        check("echo $(cat {{t1.output}})", "ok 1");
        check(
            "echo 'a' {{t1.output}} \"b\" `c` $'d' {{t1.output}}",
            "ok 2",
        );
        check("echo 'it''s' \\\\{{t1.output}}", "ok 1");
        check("echo a#b {{t1.output}}", "ok 1");
        check("echo # note\necho {{t1.output}}", "ok 1");
        check("echo \"a\\\"b\" {{t1.output}}", "ok 1");
        check("echo $x{{t1.output}} ${y}{{t1.output}}", "ok 2");
        check("echo é{{t1.output}}日", "ok 1");
        // Where single quotes would not protect the value: refused.
        check("echo '{{t1.output}}'", "inside '…'");
        check("echo 'a {{t1.output}} b'", "inside '…'");
        check("echo \"{{t1.output}}\"", "inside \"…\"");
        check("echo \"$(cat {{t1.output}})\"", "inside \"…\"");
        check("echo \"a\\\" {{t1.output}}\"", "inside \"…\"");
        check("echo `cat {{t1.output}}`", "inside `…`");
        check("echo $'{{t1.output}}'", "inside $'…'");
        check("echo $'\\' {{t1.output}}'", "inside $'…'");
        check("echo hi # {{t1.output}}", "in a comment");
        check("#{{t1.output}}", "in a comment");
        check("echo hi;#{{t1.output}}", "in a comment");
        check(
            "cat <<EOF\n{{t1.output}}\nEOF",
            "after a heredoc operator `<<`",
        );
        check(
            "cat <<'EOF'\n{{t1.output}}\nEOF",
            "after a heredoc operator `<<`",
        );
        check("echo \\{{t1.output}}", "directly after a backslash");
        check("echo ${{t1.output}}", "directly after `$`");
        check("echo ok {{t1.output}} '{{t1.output}}'", "inside '…'");
        // Only shell commands care.
        let write = Action::WriteFile {
            path: "a.txt".into(),
            content: "'{{t1.output}}' # \"{{t1.output}}\"".into(),
        };
        assert_eq!(
            task_references("'{{t1.output}}'", Some(&write)).map(|r| r.len()),
            Ok(3)
        );
    }

    /// Outputs of two upstream tasks: `t1` a shell task whose stdout is hostile, `t2` a fetch.
    fn upstream() -> BTreeMap<TaskId, TaskOutput> {
        BTreeMap::from([
            (
                TaskId::new("t1"),
                output(
                    "exit 0",
                    json!({"stdout": "a'; rm -rf ~ $(x) `y` \"z\"\n", "stderr": "", "exit_code": 0}),
                ),
            ),
            (
                TaskId::new("t2"),
                output(
                    "200 OK",
                    json!({"status": 200, "body": "it's {{t1.output}}", "truncated": false}),
                ),
            ),
        ])
    }

    /// Substitutes into `instruction` and `action` and renders the result as
    /// `INSTRUCTION | ACTION` (the action as Debug), or `error: MESSAGE`.
    fn check_subst(instruction: &str, action: Option<Action>, expect: &str) {
        let got = match substitute(instruction, action.as_ref(), &upstream()) {
            Ok((i, a)) => format!("{i} | {a:?}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "{instruction:?} {action:?}");
    }

    #[test]
    fn shell_commands_get_quoted_values() {
        check_subst(
            "print {{t1.output}}",
            Some(Action::Shell {
                command: "printf %s {{ t1.output }} > out.txt".into(),
            }),
            r#"print a'; rm -rf ~ $(x) `y` "z"
 | Some(Shell { command: "printf %s 'a'\\''; rm -rf ~ $(x) `y` \"z\"\n' > out.txt" })"#,
        );
        check_subst(
            "",
            Some(Action::Shell {
                command: "echo {{t1.output.exit_code}}{{t2.output.status}} {{t2.output.truncated}}"
                    .into(),
            }),
            r#" | Some(Shell { command: "echo '0''200' 'false'" })"#,
        );
        check_subst(
            "",
            Some(Action::Shell {
                command: "echo {{t1.output.stderr}}".into(),
            }),
            r#" | Some(Shell { command: "echo ''" })"#,
        );
        check_subst(
            "",
            Some(Action::Shell {
                command: "echo '{{t1.output}}'".into(),
            }),
            "error: in the action's `command`: {{t1.output}} is inside '…'; in a shell command \
             write references bare, they are quoted for you (e.g. echo {{t1.output}})",
        );
        assert_eq!(shell_quote("'; rm -rf ~"), r"''\''; rm -rf ~'");
        assert_eq!(shell_quote("$(x)"), "'$(x)'");
        assert_eq!(shell_quote("''"), r"''\'''\'''");
    }

    #[test]
    fn other_fields_get_values_as_they_are() {
        check_subst(
            "save {{t2.output.summary}}",
            Some(Action::WriteFile {
                path: "out-{{t2.output.status}}.txt".into(),
                content: "{{t2.output}}\n{{t1.output.exit_code}}".into(),
            }),
            r#"save 200 OK | Some(WriteFile { path: "out-200.txt", content: "it's {{t1.output}}\n0" })"#,
        );
        check_subst(
            "",
            Some(Action::HttpGet {
                url: "http://x/?q={{t1.output.exit_code}}".into(),
            }),
            r#" | Some(HttpGet { url: "http://x/?q=0" })"#,
        );
        check_subst(
            "",
            Some(Action::ReadFile {
                path: "{{t2.output.status}}.txt".into(),
            }),
            r#" | Some(ReadFile { path: "200.txt" })"#,
        );
        check_subst(
            "no refs {{{{",
            None,
            &format!("error: in the instruction: `{{{{{{{{` has no closing `}}}}`; {SYNTAX_HINT}"),
        );
        check_subst(
            "no refs }} at all",
            Some(Action::Shell {
                command: "echo '}}'".into(),
            }),
            r#"no refs }} at all | Some(Shell { command: "echo '}}'" })"#,
        );
    }

    #[test]
    fn sim_args_get_values_in_every_string() {
        let sim = Action::Sim {
            op: "mail.send".into(),
            args: json!({"to": ["ana@example.com", "{{t2.output.status}}"], "n": 3,
                         "body": "got {{t1.output.exit_code}}"}),
        };
        assert_eq!(
            task_references("", Some(&sim)).map(|r| r.len()),
            Ok(2),
            "references in nested strings are found"
        );
        let (_, a) = substitute("", Some(&sim), &upstream()).unwrap();
        assert_eq!(
            a,
            Some(Action::Sim {
                op: "mail.send".into(),
                args: json!({"to": ["ana@example.com", "200"], "n": 3, "body": "got 0"}),
            })
        );
        let bad = Action::Sim {
            op: "note.create".into(),
            args: json!({"note": {"body": "{{t1.outpt}}"}}),
        };
        let e = task_references("", Some(&bad)).unwrap_err();
        assert!(e.starts_with("in the action's `args.note.body`: "), "{e}");
        let missing = Action::Sim {
            op: "note.create".into(),
            args: json!({"body": "{{t3.output}}"}),
        };
        let e = substitute("", Some(&missing), &upstream()).unwrap_err();
        assert!(e.starts_with("in the action's `args.body`: "), "{e}");
    }

    #[test]
    fn substitute_errors() {
        check_subst(
            "{{t3.output}}",
            None,
            "error: in the instruction: {{t3.output}} refers to t3, whose output is not among \
             this task's inputs (only upstream tasks' outputs are)",
        );
        check_subst(
            "",
            Some(Action::Shell {
                command: "echo {{t1.output.nope.x}}".into(),
            }),
            "error: in the action's `command`: {{t1.output.nope.x}}: the output of t1 has no \
             `nope.x`",
        );
        check_subst(
            "",
            Some(Action::WriteFile {
                path: "a.txt".into(),
                content: "{{t1}}".into(),
            }),
            &format!(
                "error: in the action's `content`: `{{{{t1}}}}` is not a reference \
                 (expected `.output` after the task id); {SYNTAX_HINT}"
            ),
        );
    }

    #[test]
    fn files_references() {
        check_parse("{{t1.files}}", "t1 files");
        check_parse("{{ t1.files.photo.jpg }}", "t1 file photo.jpg");
        check_parse(
            "{{t1.files.build/app-1_x+y@2.apk}}",
            "t1 file build/app-1_x+y@2.apk",
        );
        check_malformed(
            "{{t1.files.a b}}",
            "`{{t1.files.a b}}` is not a reference (file name `a b` is not made of letters, \
             digits, `.`, `-`, `_`, `+`, `@` and `/`)",
        );
        check_malformed(
            "{{t1.files.../x}}",
            "`{{t1.files.../x}}` is not a reference (`../x` has a `..` part)",
        );
        check_malformed(
            "{{t1.files./etc/passwd}}",
            "`{{t1.files./etc/passwd}}` is not a reference (`/etc/passwd` is absolute; names \
             are relative to the workdir)",
        );
        let r = parse("{{t1.files.photo.jpg}} {{t1.files}}").unwrap();
        assert_eq!(
            r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["{{t1.files.photo.jpg}}", "{{t1.files}}"]
        );
    }

    #[test]
    fn input_entries_are_one_files_reference_each() {
        let entries = |e: &[&str]| {
            input_references(&e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(
            entries(&["{{t1.files}}", " {{t2.files.a.txt}} "]).unwrap(),
            ["{{t1.files}}", "{{t2.files.a.txt}}"]
        );
        for bad in [
            "{{t1.output}}",
            "x {{t1.files}}",
            "{{t1.files}}{{t2.files}}",
            "a.txt",
        ] {
            let e = entries(&["{{t1.files}}", bad]).unwrap_err();
            assert!(e.starts_with("inputs.files[1] is "), "{bad}: {e}");
        }
    }

    #[test]
    fn files_get_local_paths_quoted_in_shell() {
        let files: Files = BTreeMap::from([(
            TaskId::new("t1"),
            BTreeMap::from([
                ("b.txt".to_owned(), "inputs/a-2/t1/b.txt".to_owned()),
                (
                    "a it's.txt".to_owned(),
                    "inputs/a-2/t1/a it's.txt".to_owned(),
                ),
            ]),
        )]);
        let subst = |instruction: &str, action: Option<Action>| match substitute_with_files(
            instruction,
            action.as_ref(),
            &upstream(),
            &files,
        ) {
            Ok((i, a)) => format!("{i} | {a:?}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(
            subst(
                "read {{t1.files.b.txt}}",
                Some(Action::Shell {
                    command: "sha256sum {{t1.files}} {{t1.files.b.txt}}".into()
                })
            ),
            r#"read inputs/a-2/t1/b.txt | Some(Shell { command: "sha256sum 'inputs/a-2/t1/a it'\\''s.txt' 'inputs/a-2/t1/b.txt' 'inputs/a-2/t1/b.txt'" })"#
        );
        // In a sim action's args (a `file.copy` of the input to where it goes): the path
        // alone, never quoted; the reference is found for the engine to fetch the file.
        let copy = Action::Sim {
            op: "file.copy".into(),
            args: json!({"from": "{{t1.files.b.txt}}", "to": "Desktop/b.txt"}),
        };
        let found = task_references("", Some(&copy)).unwrap();
        assert_eq!(found.len(), 1);
        assert!(matches!(&found[0].what, Refers::File(n) if n == "b.txt"));
        assert_eq!(
            subst("", Some(copy)),
            r#" | Some(Sim { op: "file.copy", args: Object {"from": String("inputs/a-2/t1/b.txt"), "to": String("Desktop/b.txt")} })"#
        );
        assert_eq!(
            subst("{{t1.files.c.txt}}", None),
            "error: in the instruction: {{t1.files.c.txt}}: t1 produced no file `c.txt`"
        );
        assert_eq!(
            subst("{{t2.files}}", None),
            "error: in the instruction: {{t2.files}} refers to t2, whose files are not among \
             this task's inputs (only upstream tasks' files are)"
        );
    }
}
