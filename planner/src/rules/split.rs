//! Splits a token stream into steps (separated by `then`) of clauses (separated by `,` or `and`).
//!
//! Separators inside quotes are part of a quoted token and never count. A comma directly followed
//! by `and` or `then` (`a, and b`, `a, then b`), and `and` directly followed by `then`
//! (`a and then b`), leave an empty clause behind that is skipped. Every other empty clause (`a and
//! and b`, a leading or trailing separator) is reported as a [`Piece::Gap`].

use super::lexer::{Kind, Token};

/// A separator between clauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Comma,
    And,
    Then,
}

impl Sep {
    /// The separator `token` is, if any.
    fn of(token: &Token) -> Option<Sep> {
        if token.kind == Kind::Comma {
            Some(Sep::Comma)
        } else if token.is_word("and") {
            Some(Sep::And)
        } else if token.is_word("then") {
            Some(Sep::Then)
        } else {
            None
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Sep::Comma => ",",
            Sep::And => "and",
            Sep::Then => "then",
        }
    }
}

/// One part of a step, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'t> {
    /// The tokens of one clause; never empty.
    Clause(&'t [Token]),
    /// An empty clause, described for the user (`nothing after "and" at the end`).
    Gap(String),
}

/// Splits `tokens` into steps of pieces. A step may be empty only if a gap was reported.
pub(crate) fn split(tokens: &[Token]) -> Vec<Vec<Piece<'_>>> {
    let seps: Vec<Sep> = tokens.iter().filter_map(Sep::of).collect();
    let mut steps = vec![Vec::new()];
    for (k, tokens) in tokens.split(|t| Sep::of(t).is_some()).enumerate() {
        let before = k.checked_sub(1).and_then(|j| seps.get(j)).copied();
        let after = seps.get(k).copied();
        let piece = if !tokens.is_empty() {
            Some(Piece::Clause(tokens))
        } else if skippable(before, after) {
            None
        } else {
            Some(Piece::Gap(describe_gap(before, after)))
        };
        if let (Some(piece), Some(step)) = (piece, steps.last_mut()) {
            step.push(piece);
        }
        if after == Some(Sep::Then) {
            steps.push(Vec::new());
        }
    }
    steps
}

/// Whether an empty clause between `before` and `after` is just an Oxford comma or `and then`.
fn skippable(before: Option<Sep>, after: Option<Sep>) -> bool {
    matches!(
        (before, after),
        (Some(Sep::Comma), Some(Sep::And | Sep::Then)) | (Some(Sep::And), Some(Sep::Then))
    )
}

fn describe_gap(before: Option<Sep>, after: Option<Sep>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("nothing between \"{}\" and \"{}\"", b.as_str(), a.as_str()),
        (Some(b), None) => format!("nothing after \"{}\" at the end", b.as_str()),
        (None, Some(a)) => format!("nothing before \"{}\" at the start", a.as_str()),
        (None, None) => "nothing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    /// Renders steps separated by ` ; `, pieces by ` | `, a clause as its words and a gap as
    /// `<gap: …>`.
    fn check(input: &str, expect: &str) {
        let tokens = lex(input);
        let got: Vec<String> = split(&tokens)
            .iter()
            .map(|step| {
                let pieces: Vec<String> = step
                    .iter()
                    .map(|p| match p {
                        Piece::Clause(ts) => ts
                            .iter()
                            .map(|t| t.value.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                        Piece::Gap(g) => format!("<gap: {g}>"),
                    })
                    .collect();
                pieces.join(" | ")
            })
            .collect();
        assert_eq!(got.join(" ; "), expect, "input {input:?}");
    }

    #[test]
    fn steps_and_clauses() {
        check("a", "a");
        check("a b, c AND d Then e", "a b | c | d ; e");
        check("a, b and c then d", "a | b | c ; d");
        check("a then b then c", "a ; b ; c");
        check(r#"run "x, y and z then w""#, "run x, y and z then w");
        check("android thenceforth sand", "android thenceforth sand");
    }

    #[test]
    fn oxford_comma_and_and_then() {
        check("a, b, and c", "a | b | c");
        check("a, then b", "a ; b");
        check("a and then b", "a ; b");
        check("a, and then b", "a ; b");
    }

    #[test]
    fn empty_clauses_are_gaps() {
        check(
            "a and and b",
            r#"a | <gap: nothing between "and" and "and"> | b"#,
        );
        check("a and", r#"a | <gap: nothing after "and" at the end>"#);
        check("a,", r#"a | <gap: nothing after "," at the end>"#);
        check("then a", r#"<gap: nothing before "then" at the start> ; a"#);
        check(
            "a then, b",
            r#"a ; <gap: nothing between "then" and ","> | b"#,
        );
        check(
            "a then and b",
            r#"a ; <gap: nothing between "then" and "and"> | b"#,
        );
        check("a,,b", r#"a | <gap: nothing between "," and ","> | b"#);
        check(
            "a then then b",
            r#"a ; <gap: nothing between "then" and "then"> ; b"#,
        );
        check("", "<gap: nothing>");
    }
}
