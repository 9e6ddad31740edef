//! How `policy.shell.allow` reads a shell line: which commands it runs and which files it
//! redirects to.
//!
//! An allow-list is a boundary only if this reading and the shell's agree, on every common
//! `/bin/sh` (dash, bash in POSIX mode, bash). So this module does not try to understand the
//! whole shell language. It reads a small subset that those shells read the same way, and
//! refuses everything else by name ([`Refusal`]):
//!
//! - words of plain characters, `'…'`, `"…"` (with only `"$NAME"` / `"${NAME}"` expanded in
//!   them) and backslash escapes; globs (`*`, `?`, `[…]`) and `~`;
//! - the control operators `;`, `&`, `&&`, `|`, `||` and newlines, and `#` comments;
//! - the redirections `<`, `>`, `>>`, `>|`, `<>` (with a one-digit descriptor or none) and the
//!   descriptor copies `N>&M`, `N<&M`, `N>&-`.
//!
//! A command name must be a plain word, not an assignment, and not one of the reserved words
//! and builtins that run text the patterns never saw or change how later commands are found
//! ([`REFUSED_NAMES`]).
//!
//! What a pattern is matched against is the command's words after quote removal, joined by
//! one space. Characters the shell may replace (a glob, `~`, `"$NAME"`) are marked *wild*:
//! only a `*` of a pattern matches them, so whatever they expand to, the command still
//! matches (see [`super::Glob::matches_marked`]).
//!
//! Architecture invariant: pure; `device-agent/tests/it/shell_policy.rs` checks accepted lines
//! against what real bash and dash run.

use super::FsOp;

/// Why a line cannot be read with certainty: the construct, and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the line uses, as the owner would recognise it: "ANSI-C quoting `$'…'`".
    pub construct: String,
    /// Why an allow-list cannot accept it.
    pub why: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the line uses {}, which is refused under an allow-list ({})",
            self.construct, self.why
        )
    }
}

fn refuse<T>(construct: impl Into<String>, why: &'static str) -> Result<T, Refusal> {
    Err(Refusal {
        construct: construct.into(),
        why,
    })
}

const READ_DIFFERENTLY: &str = "shells read it differently, so what runs cannot be checked";
const RUNS_UNCHECKED: &str = "what it runs is not checked against the patterns";

/// One word of a command: as written, and what the shell makes of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Word {
    /// As written, quotes included.
    pub raw: String,
    /// After quote removal; expansions are kept as written.
    pub value: Vec<char>,
    /// For each character of `value`: whether the shell may replace it (a glob, `~`, `"$X"`).
    pub wild: Vec<bool>,
}

impl Word {
    fn push(&mut self, c: char, wild: bool) {
        self.value.push(c);
        self.wild.push(wild);
    }

    fn push_str(&mut self, s: &str, wild: bool) {
        for c in s.chars() {
            self.push(c, wild);
        }
    }

    pub fn value(&self) -> String {
        self.value.iter().collect()
    }

    fn is_wild(&self) -> bool {
        self.wild.iter().any(|&w| w)
    }

    /// `NAME=…` or `NAME+=…` as written: a variable assignment before the command name.
    fn is_assignment(&self) -> bool {
        let name_len = self
            .raw
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .count();
        name_len > 0
            && !self.raw.starts_with(|c: char| c.is_ascii_digit())
            && (self.raw[name_len..].starts_with('=') || self.raw[name_len..].starts_with("+="))
    }
}

/// A redirection: `2>> log.txt`, `<&-`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redirect {
    /// The operator as written, with its descriptor: `2>>`.
    pub op: String,
    /// The target after quote removal: a path, or a descriptor for `>&` / `<&`.
    pub target: String,
    /// How the target file is opened; `None` for a descriptor copy or close.
    pub access: Option<FsOp>,
}

/// One simple command of a line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Command {
    /// As written (trimmed), for messages.
    pub source: String,
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
}

impl Command {
    /// The words' values joined by one space, and which characters are wild.
    pub fn text(&self) -> (Vec<char>, Vec<bool>) {
        let (mut text, mut wild) = (Vec::new(), Vec::new());
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                text.push(' ');
                wild.push(false);
            }
            text.extend(&w.value);
            wild.extend(&w.wild);
        }
        (text, wild)
    }
}

/// The control operators that end a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Semi,
    Amp,
    And,
    Or,
    Pipe,
    Newline,
}

/// Reads `line` into its simple commands, or names the first construct it cannot be certain
/// of. Blank lines and comments give no command.
pub fn parse(line: &str) -> Result<Vec<Command>, Refusal> {
    let chars: Vec<char> = line.chars().collect();
    let mut lx = Lexer {
        chars: &chars,
        i: 0,
    };
    let mut commands = Vec::new();
    let mut cur = Command::default();
    let (mut start, mut before) = (0, None);
    loop {
        lx.skip_blanks();
        let at = lx.i;
        let sep = match lx.peek() {
            None => None,
            Some('\n') => {
                lx.i += 1;
                Some(Sep::Newline)
            }
            Some('#') => {
                while lx.peek().is_some_and(|c| c != '\n') {
                    lx.i += 1;
                }
                continue;
            }
            Some(';' | '&' | '|') => Some(lx.operator()?),
            Some('(' | ')') => {
                return refuse(
                    "parentheses `( … )` (a subshell or a function definition)",
                    RUNS_UNCHECKED,
                );
            }
            Some('<' | '>') => {
                cur.redirects.push(lx.redirect(String::new())?);
                continue;
            }
            Some(_) => {
                let word = lx.word()?;
                if matches!(lx.peek(), Some('<' | '>'))
                    && word.raw.chars().all(|c| c.is_ascii_digit())
                {
                    if word.raw.len() > 1 {
                        return refuse(
                            format!("a descriptor of several digits `{}>`", word.raw),
                            "bash reads a descriptor, dash a word",
                        );
                    }
                    cur.redirects.push(lx.redirect(word.raw)?);
                } else {
                    cur.words.push(word);
                }
                continue;
            }
        };
        cur.source = chars[start..at]
            .iter()
            .collect::<String>()
            .trim()
            .to_owned();
        finish(&mut commands, std::mem::take(&mut cur), before, sep)?;
        match sep {
            None => return Ok(commands),
            Some(_) => (before, start) = (sep, lx.i),
        }
    }
}

/// Adds `cmd`, which `before` and `after` surround, to `commands`; an empty command is a
/// blank line, or a syntax error the shell would stop at.
fn finish(
    commands: &mut Vec<Command>,
    cmd: Command,
    before: Option<Sep>,
    after: Option<Sep>,
) -> Result<(), Refusal> {
    if !cmd.words.is_empty() {
        commands.push(cmd);
        return Ok(());
    }
    if !cmd.redirects.is_empty() {
        return refuse(
            format!("a redirection with no command `{}`", cmd.source),
            RUNS_UNCHECKED,
        );
    }
    let opens = matches!(before, None | Some(Sep::Semi | Sep::Amp | Sep::Newline));
    let closes = matches!(after, None | Some(Sep::Newline));
    if opens && closes {
        Ok(())
    } else {
        refuse(
            "an operator with no command on one side",
            "a shell reads it as a syntax error or waits for more",
        )
    }
}

struct Lexer<'a> {
    chars: &'a [char],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }

    /// `;`, `&`, `&&`, `|`, `||`; the lexer is on the first character.
    fn operator(&mut self) -> Result<Sep, Refusal> {
        let first = self.next();
        let second = self.peek();
        let two = |lx: &mut Self, sep| {
            lx.i += 1;
            Ok(sep)
        };
        match (first, second) {
            (Some(';'), Some(';' | '&')) => refuse(
                format!("`;{}` (a `case` terminator)", second.unwrap_or_default()),
                READ_DIFFERENTLY,
            ),
            (Some(';'), _) => Ok(Sep::Semi),
            (Some('&'), Some('&')) => two(self, Sep::And),
            (Some('&'), Some('>')) => refuse(
                "`&>`",
                "bash redirects both outputs, dash runs the command in the background",
            ),
            (Some('&'), _) => Ok(Sep::Amp),
            (Some('|'), Some('|')) => two(self, Sep::Or),
            (Some('|'), Some('&')) => refuse("`|&`", READ_DIFFERENTLY),
            _ => Ok(Sep::Pipe),
        }
    }

    /// A redirection; the lexer is on its `<` or `>`, `fd` is its descriptor as written.
    fn redirect(&mut self, fd: String) -> Result<Redirect, Refusal> {
        let first = self.next().unwrap_or_default();
        let second = self.peek();
        let (op, access) = match (first, second) {
            ('<', Some('<')) if self.peek_at(1) == Some('<') => {
                return refuse("a here-string `<<<`", READ_DIFFERENTLY);
            }
            ('<', Some('<')) => return refuse("a here-document `<<`", READ_DIFFERENTLY),
            (_, Some('(')) => {
                return refuse(format!("process substitution `{first}(…)`"), RUNS_UNCHECKED);
            }
            (_, Some('&')) => (format!("{first}&"), None),
            ('<', Some('>')) => ("<>".to_owned(), Some(FsOp::Write)),
            ('>', Some(c @ ('>' | '|'))) => (format!(">{c}"), Some(FsOp::Write)),
            ('<', _) => ("<".to_owned(), Some(FsOp::Read)),
            _ => (">".to_owned(), Some(FsOp::Write)),
        };
        self.i += op.chars().count() - 1;
        let op = format!("{fd}{op}");
        self.skip_blanks();
        if matches!(
            self.peek(),
            None | Some('\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' | '#')
        ) {
            return refuse(
                format!("a redirection `{op}` without a target"),
                READ_DIFFERENTLY,
            );
        }
        let target = self.word()?;
        if matches!(self.peek(), Some('<' | '>')) {
            return refuse(
                format!(
                    "a redirection target followed by another redirection `{op}{}`",
                    target.raw
                ),
                READ_DIFFERENTLY,
            );
        }
        if target.is_wild() {
            return refuse(
                format!(
                    "a redirection target the shell expands `{op} {}`",
                    target.raw
                ),
                "where it points cannot be checked",
            );
        }
        let value = target.value();
        if access.is_none()
            && !(value == "-" || value.len() == 1 && value.as_bytes()[0].is_ascii_digit())
        {
            return refuse(
                format!("`{op}` with a file name `{op}{}`", target.raw),
                "bash redirects both outputs to the file, dash refuses it",
            );
        }
        Ok(Redirect {
            op,
            target: value,
            access,
        })
    }

    /// A word, up to a blank or an operator; the lexer is on its first character.
    fn word(&mut self) -> Result<Word, Refusal> {
        let start = self.i;
        let mut w = Word::default();
        // From an unquoted `[` to the end of the word, the shell may replace everything.
        let mut bracket = false;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
                '\'' => {
                    self.i += 1;
                    loop {
                        match self.next() {
                            None => return refuse("an unclosed `'`", READ_DIFFERENTLY),
                            Some('\'') => break,
                            Some(c) => w.push(plain(c)?, bracket),
                        }
                    }
                }
                '"' => self.double_quoted(&mut w, bracket)?,
                '\\' => {
                    self.i += 1;
                    match self.next() {
                        None => {
                            return refuse("a backslash at the end of the line", READ_DIFFERENTLY);
                        }
                        Some('\n') => {
                            return refuse(
                                "a backslash-newline (line continuation)",
                                READ_DIFFERENTLY,
                            );
                        }
                        Some(c) => w.push(plain(c)?, bracket),
                    }
                }
                '$' => {
                    let (construct, why) = self.dollar_construct(false);
                    return refuse(construct, why);
                }
                '`' => return refuse("command substitution with backquotes `…`", RUNS_UNCHECKED),
                '{' | '}' => {
                    return refuse(
                        "braces `{ … }` (a command group, or brace expansion in bash)",
                        READ_DIFFERENTLY,
                    );
                }
                '*' | '?' => {
                    self.i += 1;
                    w.push(c, true);
                }
                '[' => {
                    self.i += 1;
                    bracket = true;
                    w.push(c, true);
                }
                '~' => {
                    // A tilde prefix, up to the next `/` or `:`, becomes a home directory.
                    while let Some(c) = self.peek().filter(|c| {
                        !matches!(
                            c,
                            '/' | ':' | ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
                        )
                    }) {
                        if matches!(c, '\'' | '"' | '\\' | '$' | '`' | '{' | '}') {
                            return refuse(
                                format!("a quoted tilde prefix `~…{c}`"),
                                READ_DIFFERENTLY,
                            );
                        }
                        self.i += 1;
                        w.push(plain(c)?, true);
                    }
                }
                c => {
                    self.i += 1;
                    w.push(plain(c)?, bracket);
                }
            }
        }
        w.raw = self.chars[start..self.i].iter().collect();
        // A lone `[` is the `test` command, not a glob.
        if w.raw == "[" {
            w.wild = vec![false];
        }
        Ok(w)
    }

    /// `"…"`; the lexer is on the opening quote.
    fn double_quoted(&mut self, w: &mut Word, wild: bool) -> Result<(), Refusal> {
        self.i += 1;
        loop {
            match self.next() {
                None => return refuse("an unclosed `\"`", READ_DIFFERENTLY),
                Some('"') => return Ok(()),
                Some('\\') => match self.next() {
                    None => return refuse("an unclosed `\"`", READ_DIFFERENTLY),
                    Some('\n') => {
                        return refuse("a backslash-newline (line continuation)", READ_DIFFERENTLY);
                    }
                    Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c, wild),
                    Some(c) => {
                        w.push('\\', wild);
                        w.push(plain(c)?, wild);
                    }
                },
                Some('$') => {
                    self.i -= 1;
                    match self.quoted_parameter() {
                        Some(text) => w.push_str(&text, true),
                        None => {
                            let (construct, why) = self.dollar_construct(true);
                            return refuse(construct, why);
                        }
                    }
                }
                Some('`') => {
                    return refuse("command substitution with backquotes `…`", RUNS_UNCHECKED);
                }
                Some(c) => w.push(plain(c)?, wild),
            }
        }
    }

    /// `$NAME`, `${NAME}` or a one-character special parameter other than `$@` and `$*`
    /// (which may expand to no word at all), consumed; `None` (nothing consumed) otherwise.
    fn quoted_parameter(&mut self) -> Option<String> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let len = match self.peek_at(1)? {
            c if c.is_ascii_alphabetic() || c == '_' => {
                1 + self.chars[self.i + 1..]
                    .iter()
                    .take_while(|&&c| name_char(c))
                    .count()
            }
            c if c.is_ascii_digit() || "#?$!-".contains(c) => 2,
            '{' => {
                let name = self.chars[self.i + 2..]
                    .iter()
                    .take_while(|&&c| name_char(c))
                    .count();
                let ok = name > 0
                    && !self.chars[self.i + 2].is_ascii_digit()
                    && self.peek_at(2 + name) == Some('}');
                if !ok {
                    return None;
                }
                name + 3
            }
            _ => return None,
        };
        let text = self.chars[self.i..self.i + len].iter().collect();
        self.i += len;
        Some(text)
    }

    /// Names what a `$` the lexer is on starts, and why it is refused.
    fn dollar_construct(&self, quoted: bool) -> (&'static str, &'static str) {
        match (self.peek_at(1), self.peek_at(2)) {
            (Some('\''), _) if !quoted => ("ANSI-C quoting `$'…'`", READ_DIFFERENTLY),
            (Some('"'), _) if !quoted => ("locale quoting `$\"…\"`", READ_DIFFERENTLY),
            (Some('('), Some('(')) => ("arithmetic expansion `$((…))`", RUNS_UNCHECKED),
            (Some('('), _) => ("command substitution `$(…)`", RUNS_UNCHECKED),
            (Some('['), _) => ("arithmetic expansion `$[…]`", RUNS_UNCHECKED),
            (Some('{'), _) => (
                "a parameter expansion with an operator `${…}`",
                "only \"$NAME\" and \"${NAME}\" are read",
            ),
            (Some('@' | '*'), _) => ("`$@` or `$*`", "it may expand to no word at all"),
            _ if quoted => ("a `$` that is not \"$NAME\"", READ_DIFFERENTLY),
            _ => (
                "an unquoted `$`",
                "unquoted, the shell splits and globs what it expands to; write \"$NAME\"",
            ),
        }
    }
}

/// `c`, unless it is a control character other than tab and newline.
fn plain(c: char) -> Result<char, Refusal> {
    if c.is_control() && c != '\t' && c != '\n' {
        refuse(
            format!("a control character (U+{:04X})", u32::from(c)),
            READ_DIFFERENTLY,
        )
    } else {
        Ok(c)
    }
}

/// Command names refused under an allow-list whatever the patterns say, and why.
pub const REFUSED_NAMES: &[(&[&str], &str)] = &[
    (
        &["eval", ".", "source", "trap", "fc", "history"],
        "it runs text or a file as shell code",
    ),
    (
        &["exec", "command", "builtin", "jobs", "time", "coproc"],
        "it runs another command, named in its arguments",
    ),
    (
        &[
            "alias", "unalias", "hash", "enable", "set", "shopt", "bind", "complete", "compgen",
            "compopt", "cd", "chdir", "pushd", "popd", "export", "readonly", "unset", "declare",
            "typeset", "local",
        ],
        "it changes how the commands after it are found or read",
    ),
    (
        &["read", "mapfile", "readarray", "getopts", "let"],
        "it assigns to variables, and bash evaluates an array subscript in a name, which can \
         run commands",
    ),
    (
        &[
            "!", "{", "}", "[[", "]]", "case", "esac", "if", "then", "elif", "else", "fi", "for",
            "while", "until", "do", "done", "in", "select", "function",
        ],
        "a reserved word: compound commands are not read",
    ),
];

/// Whether a command may run under an allow-list at all, before its patterns are looked at:
/// no assignment, a plain name, none of [`REFUSED_NAMES`], and no builtin option that assigns
/// to a variable (`printf -v`, `test -v`, `wait -p`).
pub fn vet(command: &Command) -> Result<(), Refusal> {
    let Some(name) = command.words.first() else {
        return Ok(());
    };
    if name.is_assignment() {
        return refuse(
            format!("a variable assignment `{}`", name.raw),
            "it can change what the command runs (PATH, LD_PRELOAD, …)",
        );
    }
    if name.is_wild() {
        return refuse(
            format!("a command name the shell expands `{}`", name.raw),
            "what it names cannot be checked",
        );
    }
    let value = name.value();
    if let Some((_, why)) = REFUSED_NAMES
        .iter()
        .find(|(names, _)| names.contains(&value.as_str()))
    {
        return refuse(format!("`{value}`"), why);
    }
    let args = &command.words[1..];
    let assigns = match value.as_str() {
        "printf" => args.first().is_some_and(|a| {
            let v = a.value();
            a.is_wild() || (v.starts_with('-') && v != "--")
        }),
        "test" | "[" => args
            .iter()
            .any(|a| matches!(a.value().as_str(), "-v" | "-R")),
        "wait" => args.iter().any(|a| {
            let v = a.value();
            v.starts_with('-') && v.contains('p')
        }),
        _ => false,
    };
    if assigns {
        return refuse(
            format!("`{value}` with an option that names a variable"),
            "bash evaluates an array subscript in the name, which can run commands",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands of `line` as `value|value` with wild characters in `{}`, redirections as
    /// ` op target`, or the refused construct.
    fn read(line: &str) -> String {
        match parse(line).and_then(|cs| {
            cs.iter().try_for_each(vet)?;
            Ok(cs)
        }) {
            Err(r) => format!("refused: {}", r.construct),
            Ok(cs) => cs
                .iter()
                .map(|c| {
                    let (text, wild) = c.text();
                    let mut s = String::new();
                    for (ch, w) in text.iter().zip(wild) {
                        if w {
                            s.push('{');
                            s.push(*ch);
                            s.push('}');
                        } else {
                            s.push(*ch);
                        }
                    }
                    for r in &c.redirects {
                        s.push_str(&format!(" {} {}", r.op, r.target));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join("|"),
        }
    }

    fn check(cases: &[(&str, &str)]) {
        for (line, expect) in cases {
            assert_eq!(read(line), *expect, "{line:?}");
        }
    }

    #[test]
    fn commands_and_quotes() {
        check(&[
            (
                "git status; echo 'a;b' && ls | wc -l",
                "git status|echo a;b|ls|wc -l",
            ),
            ("echo \"a | b\" c\\;d", "echo a | b c;d"),
            ("echo 'a'\\''b'", "echo a'b"),
            ("echo \"x\\\"y\\\\z\\q\"", "echo x\"y\\z\\q"),
            ("echo a#b # c; rm -rf /\nls", "echo a#b|ls"),
            ("true &\n\n# comment\nfalse;", "true|false"),
            ("", ""),
            ("   # only a comment", ""),
            ("echo 'two\nlines'", "echo two\nlines"),
            (
                "[ -f x ] || echo \"$HOME\"",
                "[ -f x ]|echo {$}{H}{O}{M}{E}",
            ),
            ("ls *.txt ~/a x[ab]y", "ls {*}.txt {~}/a x{[}{a}{b}{]}{y}"),
            ("echo \"${X}\"", "echo {$}{{}{X}{}}"),
        ]);
    }

    #[test]
    fn redirections_are_read_with_their_targets() {
        check(&[
            ("make test > log.txt 2>&1", "make test > log.txt 2>& 1"),
            (
                "sort < in >> out <&- 2>/dev/null",
                "sort < in >> out <& - 2> /dev/null",
            ),
            ("echo x >| 'a b' 1<> c", "echo x >| a b 1<> c"),
            ("echo 10>f", "refused: a descriptor of several digits `10>`"),
            ("echo a2>f", "echo a2 > f"),
            ("echo > $HOME/x", "refused: an unquoted `$`"),
            (
                "echo > \"$HOME\"/x",
                "refused: a redirection target the shell expands `> \"$HOME\"/x`",
            ),
            (
                "echo > ~/x",
                "refused: a redirection target the shell expands `> ~/x`",
            ),
            (
                "echo > *.txt",
                "refused: a redirection target the shell expands `> *.txt`",
            ),
            ("echo >&file", "refused: `>&` with a file name `>&file`"),
            ("echo hi &> f", "refused: `&>`"),
            ("cat <<EOF\nx\nEOF", "refused: a here-document `<<`"),
            ("cat <<< x", "refused: a here-string `<<<`"),
            ("> f", "refused: a redirection with no command `> f`"),
            ("echo >", "refused: a redirection `>` without a target"),
            ("echo > #x", "refused: a redirection `>` without a target"),
        ]);
    }

    #[test]
    fn constructs_that_shells_read_differently_are_named() {
        check(&[
            (
                "echo $'\\'' ; touch /tmp/x ; echo $'\\''",
                "refused: ANSI-C quoting `$'…'`",
            ),
            ("echo $\"x\"", "refused: locale quoting `$\"…\"`"),
            ("echo $(id)", "refused: command substitution `$(…)`"),
            (
                "echo \"`id`\"",
                "refused: command substitution with backquotes `…`",
            ),
            ("echo $((1+1))", "refused: arithmetic expansion `$((…))`"),
            (
                "echo \"${X:-$(id)}\"",
                "refused: a parameter expansion with an operator `${…}`",
            ),
            ("echo $HOME", "refused: an unquoted `$`"),
            ("echo \"$@\"", "refused: `$@` or `$*`"),
            ("diff <(ls) x", "refused: process substitution `<(…)`"),
            ("tee >(sh)", "refused: process substitution `>(…)`"),
            (
                "(rm x)",
                "refused: parentheses `( … )` (a subshell or a function definition)",
            ),
            (
                "f() { rm x; }",
                "refused: parentheses `( … )` (a subshell or a function definition)",
            ),
            (
                "{ rm x; }",
                "refused: braces `{ … }` (a command group, or brace expansion in bash)",
            ),
            (
                "echo {a,b}",
                "refused: braces `{ … }` (a command group, or brace expansion in bash)",
            ),
            (
                "echo a\\\nb",
                "refused: a backslash-newline (line continuation)",
            ),
            (
                "echo \"a\\\nb\"",
                "refused: a backslash-newline (line continuation)",
            ),
            ("echo a\\", "refused: a backslash at the end of the line"),
            ("echo 'a", "refused: an unclosed `'`"),
            ("echo \"a", "refused: an unclosed `\"`"),
            ("echo a\rb", "refused: a control character (U+000D)"),
            ("echo a ;; rm x", "refused: `;;` (a `case` terminator)"),
            ("echo a |& rm x", "refused: `|&`"),
            (
                "echo a ; ; rm x",
                "refused: an operator with no command on one side",
            ),
            ("; echo", "refused: an operator with no command on one side"),
            (
                "echo a |",
                "refused: an operator with no command on one side",
            ),
            (
                "echo a &&\nrm",
                "refused: an operator with no command on one side",
            ),
        ]);
    }

    #[test]
    fn names_that_run_or_reinterpret_text_are_refused() {
        check(&[
            ("eval 'rm x'", "refused: `eval`"),
            ("exec rm x", "refused: `exec`"),
            (". ./x.sh", "refused: `.`"),
            ("source x.sh", "refused: `source`"),
            ("'eval' x", "refused: `eval`"),
            ("e\\val x", "refused: `eval`"),
            ("alias ls=rm", "refused: `alias`"),
            ("cd /; ls", "refused: `cd`"),
            ("chdir /", "refused: `chdir`"),
            ("if true; then rm x; fi", "refused: `if`"),
            ("! rm x", "refused: `!`"),
            ("read 'a[$(id)]'", "refused: `read`"),
            (
                "PATH=/tmp/evil git status",
                "refused: a variable assignment `PATH=/tmp/evil`",
            ),
            ("X+=1", "refused: a variable assignment `X+=1`"),
            ("*", "refused: a command name the shell expands `*`"),
            (
                "~/bin/x",
                "refused: a command name the shell expands `~/bin/x`",
            ),
            (
                "printf -v 'a[$(id)]' x",
                "refused: `printf` with an option that names a variable",
            ),
            (
                "test -v 'a[$(id)]'",
                "refused: `test` with an option that names a variable",
            ),
            (
                "[ -R x ]",
                "refused: `[` with an option that names a variable",
            ),
            (
                "wait -p x",
                "refused: `wait` with an option that names a variable",
            ),
            ("printf -- -v", "printf -- -v"),
            ("printf '%s\\n' x", "printf %s\\n x"),
            ("echo eval x=1", "echo eval x=1"),
        ]);
    }
}
