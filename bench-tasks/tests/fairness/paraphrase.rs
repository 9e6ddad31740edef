//! A paraphrasing reference planner: each task's reference plan with every literal the plan
//! invents put in other words.
//!
//! A string in an action's arguments is kept whole when it appears verbatim in the task's
//! request or inputs (a title the request quotes, a search word, a key, a recipient). Otherwise
//! its references (`{{t1.output…}}`) are kept, and in the text between them:
//!
//! - runs of two or more words that appear verbatim in the request or the inputs are kept;
//! - data is kept: words with a digit or one of `/ . @ _ $ #` or an inner `-` (numbers, times,
//!   paths, ids, addresses, keys);
//! - a word the request or the inputs hold is kept as a name (`Priya`, `importer`) unless the
//!   synonym table lists it as an everyday word (`done`, `files`, `report`);
//! - every other word is replaced by its synonym, with its capitalisation; a word the table
//!   lacks is reported as missing, so no invented word is left as it was.
//!
//! A checker that demands the reference plan's own phrasing fails on the paraphrase.

use std::collections::BTreeSet;

use serde_json::Value;
use weft_bench::suite::TaskFile;
use weft_protocol::Action;

/// Everyday words and the words used instead (lowercase).
const SYNONYMS: &[(&str, &str)] = &[
    ("a", "one"),
    ("about", "regarding"),
    ("agenda", "schedule"),
    ("alert", "warning"),
    ("archive", "bundle"),
    ("arrived", "landed"),
    ("at", "by"),
    ("attached", "enclosed"),
    ("backup", "copy"),
    ("brief", "summary"),
    ("build", "compile"),
    ("busy", "taken"),
    ("collected", "gathered"),
    ("copied", "transferred"),
    ("deploy", "rollout"),
    ("done", "finished"),
    ("failed", "broke"),
    ("failing", "broken"),
    ("files", "items"),
    ("finding", "result"),
    ("first", "initial"),
    ("from", "via"),
    ("hi", "hello"),
    ("in", "inside"),
    ("is", "stands"),
    ("items", "entries"),
    ("know", "heard"),
    ("kpis", "metrics"),
    ("latest", "newest"),
    ("mail", "email"),
    ("mails", "emails"),
    ("meeting", "session"),
    ("messages", "texts"),
    ("notes", "minutes"),
    ("on", "upon"),
    ("other", "more"),
    ("people", "persons"),
    ("photo", "picture"),
    ("report", "summary"),
    ("research", "study"),
    ("sent", "delivered"),
    ("server", "host"),
    ("sources", "references"),
    ("steps", "paces"),
    ("the", "this"),
    ("tests", "checks"),
    ("too", "overly"),
    ("hot", "warm"),
    ("week", "weekly"),
    ("weekly", "week's"),
    ("yesterday", "previous-day"),
    ("your", "thy"),
    ("are", "sit"),
    ("box", "unit"),
    ("edge", "border"),
    ("warnings", "cautions"),
    ("open", "unfinished"),
    ("urgent", "pressing"),
    ("degraded", "impaired"),
    ("laptop", "notebook"),
    ("expenses", "costs"),
    ("heat", "warmth"),
    ("rainwater", "stormwater"),
    ("away", "absent"),
    ("tomorrow", "next-day"),
    ("landed", "arrived"),
    ("bike", "bicycle"),
];

/// What the paraphraser did to one task.
#[derive(Debug, Default)]
pub struct Rewritten {
    /// Words replaced, as `old → new`.
    pub words: Vec<String>,
    /// Words that needed a synonym the table lacks.
    pub missing: BTreeSet<String>,
}

/// The task with its reference plan paraphrased.
pub fn paraphrase(task: &TaskFile) -> (TaskFile, Rewritten) {
    let sources = sources(task);
    let mut out = task.clone();
    let mut done = Rewritten::default();
    for t in &mut out.plan.tasks {
        match &mut t.action {
            Some(Action::Sim { args, .. }) => rewrite_value(args, &sources, &mut done),
            Some(Action::HttpGet { url }) => *url = rewrite(url, &sources, &mut done),
            Some(Action::WriteFile { content, .. }) => {
                *content = rewrite(content, &sources, &mut done)
            }
            _ => {}
        }
    }
    (out, done)
}

/// The texts a planner is given or finds: the request and every input of the task.
fn sources(task: &TaskFile) -> Vec<String> {
    let mut s = vec![task.request.clone()];
    for d in task.devices.values() {
        s.extend(d.files.keys().cloned());
        s.extend(d.seeded_files.keys().cloned());
        s.extend(d.files.values().cloned());
        s.extend(
            d.notes
                .iter()
                .flat_map(|n| [n.title.clone(), n.body.clone()]),
        );
        s.extend(d.inbox.iter().flat_map(|m| {
            [m.from.clone(), m.subject.clone(), m.body.clone()]
                .into_iter()
                .chain(m.to.iter().cloned())
        }));
        s.extend(d.calendar.iter().map(|e| e.title.clone()));
        s.push(d.clipboard.clone());
        s.extend(d.kv.keys().cloned());
        s.extend(d.kv.values().map(|v| match v {
            Value::String(x) => x.clone(),
            other => other.to_string(),
        }));
        s.extend(d.metrics.keys().cloned());
    }
    s.extend(task.web.keys().cloned());
    s.extend(task.web.values().cloned());
    s
}

fn rewrite_value(v: &mut Value, sources: &[String], done: &mut Rewritten) {
    match v {
        Value::String(s) => *s = rewrite(s, sources, done),
        Value::Array(xs) => xs.iter_mut().for_each(|x| rewrite_value(x, sources, done)),
        Value::Object(m) => m.values_mut().for_each(|x| rewrite_value(x, sources, done)),
        _ => {}
    }
}

/// `text` with its invented words replaced (see the module's doc).
pub fn rewrite(text: &str, sources: &[String], done: &mut Rewritten) -> String {
    let whole = text.trim();
    if whole.is_empty() || sources.iter().any(|s| has_word(s, whole)) {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rewrite_literal(&rest[..start], sources, done));
        out.push_str(&rest[start..start + len + 2]);
        rest = &rest[start + len + 2..];
    }
    out.push_str(&rewrite_literal(rest, sources, done));
    out
}

/// The words of `text` with the byte ranges they cover.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut w = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                w.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        w.push((s, text.len()));
    }
    w
}

fn rewrite_literal(text: &str, sources: &[String], done: &mut Rewritten) -> String {
    let ws = words(text);
    let mut out = String::new();
    let mut at = 0; // bytes of `text` already in `out`
    let mut i = 0;
    while i < ws.len() {
        // The longest run of two or more words found verbatim in a source.
        let run = (i + 1..ws.len())
            .rev()
            .find(|&j| {
                let phrase = trim_punct(&text[ws[i].0..ws[j].1]);
                sources.iter().any(|s| s.contains(phrase))
            })
            .unwrap_or(i);
        if run > i {
            i = run + 1;
            continue;
        }
        let (s, e) = ws[i];
        let word = &text[s..e];
        let core = trim_punct(word);
        if let Some(new) = replacement(core, sources, done) {
            let c0 = s + word.find(core).unwrap_or(0);
            out.push_str(&text[at..c0]);
            out.push_str(&new);
            at = c0 + core.len();
            done.words.push(format!("{core} → {new}"));
        }
        i += 1;
    }
    out.push_str(&text[at..]);
    out
}

/// A word without the punctuation around it (`latest:` → `latest`, `"Q1` → `Q1`).
fn trim_punct(w: &str) -> &str {
    w.trim_matches(|c: char| !c.is_alphanumeric() && !"_/$#@{}".contains(c))
}

/// What replaces one word, or `None` to keep it.
fn replacement(core: &str, sources: &[String], done: &mut Rewritten) -> Option<String> {
    if core.is_empty() || is_data(core) {
        return None;
    }
    let lower = core.to_lowercase();
    let synonym = SYNONYMS.iter().find(|(w, _)| *w == lower).map(|(_, s)| *s);
    if synonym.is_none() && sources.iter().any(|s| has_word(s, core)) {
        return None;
    }
    let Some(new) = synonym else {
        done.missing.insert(lower);
        return None;
    };
    Some(same_case(core, new))
}

/// Numbers, times, paths, ids, addresses, keys: anything with a digit or `/ . @ _ $ #`, or
/// with a `-` inside.
fn is_data(w: &str) -> bool {
    w.chars()
        .any(|c| c.is_ascii_digit() || "/.@_$#".contains(c))
        || w.trim_matches('-').contains('-')
}

/// `text` holds `word` with no letter or digit on either side.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric()) && after.is_none_or(|c| !c.is_alphanumeric())
    })
}

/// `new` written like `like`: all capitals, a capital first, or lowercase.
fn same_case(like: &str, new: &str) -> String {
    let letters: Vec<char> = like.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.len() > 1 && letters.iter().all(|c| c.is_uppercase()) {
        new.to_uppercase()
    } else if letters.first().is_some_and(|c| c.is_uppercase()) {
        let mut c = new.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    } else {
        new.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, request: &str) -> String {
        let mut done = Rewritten::default();
        let out = rewrite(text, &[request.to_owned()], &mut done);
        assert!(done.missing.is_empty(), "{:?}", done.missing);
        out
    }

    #[test]
    fn invented_words_change_and_data_stays() {
        let req = "Back up the budget files to the server under backup/w/, and let me know on \
                   my phone when the backup is done. Text Ana, Ben: \"Dinner moved to 20:00\".";
        let cases = [
            // Invented wording: other words, same capitalisation.
            ("Backup done", "Copy finished"),
            (
                "2 files from the windows-laptop",
                "2 items via this windows-laptop",
            ),
            // References stay; the words between them change.
            (
                "{{t1.output.count}} mails; latest: {{t1.output.summary}}",
                "{{t1.output.count}} emails; newest: {{t1.output.summary}}",
            ),
            // A string the request holds stays whole; so do runs of its words and names.
            ("budget files", "budget files"),
            ("Ana, Dinner moved to 20:00", "Ana, Dinner moved to 20:00"),
            ("# Week 12 report\n\n", "# Weekly 12 summary\n\n"),
            ("backup/w/a.txt", "backup/w/a.txt"),
        ];
        for (text, want) in cases {
            assert_eq!(check(text, req), want, "{text}");
        }
    }

    #[test]
    fn a_word_without_a_synonym_is_reported() {
        let mut done = Rewritten::default();
        rewrite("zebra crossing", &["x".to_owned()], &mut done);
        assert_eq!(
            done.missing,
            BTreeSet::from(["zebra".to_owned(), "crossing".to_owned()])
        );
    }
}
