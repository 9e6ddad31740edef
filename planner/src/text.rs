//! Cutting text that came from outside (device output, errors, model answers, request text) to
//! a size. Every cut falls on a character boundary, so it never splits a UTF-8 sequence and
//! never panics, whatever the text. The one place for it: the planner's prompts, the device
//! agent's LLM executor and the orchestrator all cut with these.

/// The longest prefix of `text` that is at most `max` bytes long.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// At most `max` bytes of `text` and, if anything was cut, a note of how much is shown: how
/// untrusted output is given to a model.
pub fn cut_noted(text: &str, max: usize) -> String {
    let shown = cut(text, max);
    if shown.len() == text.len() {
        return text.to_owned();
    }
    format!(
        "{shown}… [truncated: {} of {} bytes shown]",
        shown.len(),
        text.len()
    )
}

/// At most `max` characters of `text`, the last one `…` if anything was cut (titles).
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_falls_on_a_char_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("abcdef", 3), "abc");
        // "é" is two bytes; a cut through it keeps what comes before.
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("🦀", 3), "");
    }

    #[test]
    fn cut_noted_says_how_much_is_shown() {
        assert_eq!(cut_noted("short", 10), "short");
        assert_eq!(cut_noted("short", 5), "short");
        assert_eq!(
            cut_noted("héllo world", 2),
            "h… [truncated: 1 of 12 bytes shown]"
        );
        assert_eq!(
            cut_noted("abcdef", 3),
            "abc… [truncated: 3 of 6 bytes shown]"
        );
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("héllo", 5), "héllo");
        assert_eq!(shorten("héllo", 4), "hél…");
        assert_eq!(shorten("abc", 1), "…");
        assert_eq!(shorten("abc", 0), "…");
    }
}
