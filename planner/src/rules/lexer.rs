//! Splits request text into words, quoted strings and commas, remembering where each came from.
//!
//! Outside quotes, whitespace separates tokens and a comma is a token of its own, so
//! `fetch http://x/a, on laptop` gives `fetch`, `http://x/a`, `,`, `on`, `laptop`. A quote starts
//! a quoted string only at the start of a token (so the apostrophe in `it's` is part of a word)
//! and ends at the matching closing quote. Inside straight double quotes, `\"` and `\\` are
//! escapes; every other backslash is kept as written. Lexing never fails: a quote that is never
//! closed runs to the end of the text and is marked as such for the parser to report.

use std::iter::Peekable;
use std::str::CharIndices;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A run of characters up to whitespace or a comma.
    Word,
    /// A quoted string; `closed` is false when the text ended before the closing quote.
    Quoted { closed: bool },
    /// A comma outside quotes.
    Comma,
}

/// One token and where it is in the request text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    /// The word as written, or the quoted string's content with its escapes resolved.
    pub value: String,
    /// Byte offset of the token's first character (the opening quote, for a quoted string).
    pub start: usize,
    /// Byte offset just past the token (past the closing quote, for a quoted string).
    pub end: usize,
}

impl Token {
    /// The token's text if it is a bare word.
    pub fn word(&self) -> Option<&str> {
        (self.kind == Kind::Word).then_some(self.value.as_str())
    }

    /// Whether this is the bare word `word`, ignoring ASCII case.
    pub fn is_word(&self, word: &str) -> bool {
        self.word().is_some_and(|w| w.eq_ignore_ascii_case(word))
    }

    /// The token for an error message: `` `word` `` or `` `"quoted"` ``.
    pub fn show(&self) -> String {
        match self.kind {
            Kind::Word | Kind::Comma => format!("`{}`", self.value),
            Kind::Quoted { .. } => format!("`\"{}\"`", self.value),
        }
    }
}

type Chars<'a> = Peekable<CharIndices<'a>>;

/// Tokenizes `text`. Never fails; see the module docs for the rules.
pub(crate) fn lex(text: &str) -> Vec<Token> {
    let mut chars = text.char_indices().peekable();
    let mut tokens = Vec::new();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == ',' {
            chars.next();
            tokens.push(Token {
                kind: Kind::Comma,
                value: ",".to_owned(),
                start,
                end: start + c.len_utf8(),
            });
        } else if let Some(close) = closing_quote(c) {
            chars.next();
            tokens.push(quoted(&mut chars, start, c, close, text.len()));
        } else {
            tokens.push(word(text, &mut chars, start));
        }
    }
    tokens
}

/// The quote that closes `open`, if `open` opens a quoted string. Typographic quotes, which
/// phone keyboards insert, count as well.
fn closing_quote(open: char) -> Option<char> {
    match open {
        '"' => Some('"'),
        '\'' => Some('\''),
        '\u{201C}' => Some('\u{201D}'),
        '\u{2018}' => Some('\u{2019}'),
        _ => None,
    }
}

/// Reads a bare word starting at byte `start`, up to whitespace, a comma or the end.
fn word(text: &str, chars: &mut Chars<'_>, start: usize) -> Token {
    let mut end = text.len();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            end = i;
            break;
        }
        chars.next();
    }
    Token {
        kind: Kind::Word,
        value: text.get(start..end).unwrap_or_default().to_owned(),
        start,
        end,
    }
}

/// Reads a quoted string whose opening quote (at byte `start`) was just consumed.
fn quoted(chars: &mut Chars<'_>, start: usize, open: char, close: char, len: usize) -> Token {
    let escapes = open == '"';
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c == close {
            return Token {
                kind: Kind::Quoted { closed: true },
                value,
                start,
                end: i + c.len_utf8(),
            };
        }
        match chars.peek() {
            Some(&(_, next)) if escapes && c == '\\' && (next == '"' || next == '\\') => {
                value.push(next);
                chars.next();
            }
            _ => value.push(c),
        }
    }
    Token {
        kind: Kind::Quoted { closed: false },
        value,
        start,
        end: len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the tokens of `input` one per line: `word`, `"quoted"`, `"open…` (never closed) or
    /// `,`, each with its byte range, and checks the ranges are slices of the input.
    fn check(input: &str, expect: &str) {
        let tokens = lex(input);
        let got: Vec<String> = tokens
            .iter()
            .map(|t| {
                assert!(input.get(t.start..t.end).is_some(), "{t:?} in {input:?}");
                let shown = match t.kind {
                    Kind::Word | Kind::Comma => t.value.clone(),
                    Kind::Quoted { closed: true } => format!("{:?}", t.value),
                    Kind::Quoted { closed: false } => format!("{:?}…", t.value),
                };
                format!("{shown} {}..{}", t.start, t.end)
            })
            .collect();
        assert_eq!(got.join("\n"), expect.trim(), "input {input:?}");
    }

    #[test]
    fn words_and_commas() {
        check(
            "on laptop run",
            "on 0..2
laptop 3..9
run 10..13",
        );
        check(
            "  fetch http://127.0.0.1:7600/healthz,on\tphone  ",
            "fetch 2..7
http://127.0.0.1:7600/healthz 8..37
, 37..38
on 38..40
phone 41..46",
        );
        check(",,", ", 0..1\n, 1..2");
        check("", "");
    }

    #[test]
    fn quotes() {
        check(
            r#"run "echo a, b and c then d""#,
            r#"run 0..3
"echo a, b and c then d" 4..28"#,
        );
        check(
            r#"'it says "hi"' "a \"b\" \\ \n""#,
            r#""it says \"hi\"" 0..14
"a \"b\" \\ \\n" 15..30"#,
        );
        check(r"'a\'", r#""a\\" 0..4"#);
        check(
            "it's \u{201C}curly, yes\u{201D}",
            "it's 0..4\n\"curly, yes\" 5..21",
        );
        check(r#"x"y z""#, "x\"y 0..3\nz\" 4..6");
        check(r#""a"b"#, "\"a\" 0..3\nb 3..4");
    }

    #[test]
    fn unterminated_quotes_run_to_the_end() {
        check(r#"run "unterminated"#, "run 0..3\n\"unterminated\"… 4..17");
        check(r#"run "x\"#, "run 0..3\n\"x\\\\\"… 4..7");
        check("\"é, ü", "\"é, ü\"… 0..7");
    }
}
