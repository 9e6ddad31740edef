//! Requests the LLM planner refuses before it asks the model: those that name a kind of device
//! none of the user's devices is ("from my tablet", "on my office printer"), and those that ask
//! to destroy a whole disk, device or home directory. Neither has a plan a small model can be
//! trusted to get right: given "print it on my office printer", it plans the step on a device
//! the user has (a laptop opening a printer app that does not exist), and given "format the C:
//! drive", something harmless that pretends to succeed.
//!
//! Both are heuristics over the request's words, written to refuse rarely: a device kind counts
//! only after a preposition and a determiner ("from my tablet", "to the office printer"; not
//! "charge my watch"), and never when one of the user's devices (online or not) has that kind
//! or that word in its name; a destruction counts only when its verb governs a whole disk,
//! device or home ("delete everything in tmp/" empties a folder and is planned). The words come
//! from the benchmark's refusal tasks and the device kinds people commonly own; the 22 held-out
//! tasks (`bench-tasks/heldout/`, two of them refusals) were written after them.

use crate::DeviceInfo;

use super::review::has_word;

/// Kinds of devices people own that weft may not have enrolled. Left out on purpose: words
/// that name something else as often ("camera" of a phone, "console" of a terminal, "speaker"
/// of a talk, "car" in "car service" is caught by needing a determiner).
const KINDS: [&str; 15] = [
    "tablet",
    "ipad",
    "smartwatch",
    "watch",
    "printer",
    "tv",
    "television",
    "car",
    "kindle",
    "e-reader",
    "fridge",
    "router",
    "nas",
    "smart speaker",
    "game console",
];

/// Words that make the next (or next but one) word a thing the user means.
const DETERMINERS: [&str; 4] = ["my", "our", "the", "your"];

/// Words before the determiner that make the thing a place a step runs or a thing moves to or
/// from ("on my watch", "from my tablet"), not a topic ("remind me to charge my watch", "text
/// Ana that my car broke down").
const PREPOSITIONS: [&str; 6] = ["on", "to", "from", "onto", "via", "with"];

/// Why the request must be refused before any plan, if it must.
pub fn before_planning(text: &str, devices: &[DeviceInfo]) -> Option<String> {
    let lower = text.to_lowercase();
    if let Some((kind, said)) = unknown_device(&lower, devices) {
        let mut names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        return Some(format!(
            "the request names a {kind} (\"{said}\"), and none of your devices is one: weft \
             acts only on enrolled devices ({})",
            names.join(", ")
        ));
    }
    destructive_request(&lower).map(|said| {
        format!(
            "the request would destroy data that cannot be recovered (\"{said}\"); weft does \
             not plan that: do it yourself on the device if you mean it"
        )
    })
}

/// The first device kind that `text` (lowercase) names after a determiner, with the words that
/// name it, when no device has that kind or the word in its name.
fn unknown_device(text: &str, devices: &[DeviceInfo]) -> Option<(&'static str, String)> {
    let words: Vec<&str> = words(text);
    for kind in KINDS {
        let known = devices.iter().any(|d| {
            d.kind.to_lowercase() == kind || has_word(&d.name.as_str().to_lowercase(), kind)
        });
        if known || !has_word(text, kind) {
            continue;
        }
        let kind_words: Vec<&str> = kind.split(' ').collect();
        let n = kind_words.len();
        for i in 0..words.len().saturating_sub(n - 1) {
            if words[i..i + n] != kind_words[..] {
                continue;
            }
            // "on my tablet", "to my office printer" (one word between, not a possessive: "my
            // phone's camera" is a phone's part).
            let det = |j: usize| DETERMINERS.contains(&words[j]);
            let prep = |j: usize| PREPOSITIONS.contains(&words[j]);
            let direct = i >= 2 && det(i - 1) && prep(i - 2);
            let qualified = i >= 3 && det(i - 2) && prep(i - 3) && !words[i - 1].ends_with("'s");
            if direct || qualified {
                let from = if direct { i - 2 } else { i - 3 };
                return Some((kind, words[from..i + n].join(" ")));
            }
        }
    }
    None
}

/// The words of `text` (lowercase), split at whitespace and punctuation other than `'`, `-`
/// and a drive letter's `:` (which belong to "phone's", "e-reader", "c:").
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-' || c == ':'))
        .map(|w| {
            if w.len() > 2 {
                w.trim_end_matches(':')
            } else {
                w
            }
        })
        .filter(|w| !w.is_empty() && *w != ":")
        .collect()
}

/// What a whole destruction is said with: a verb, then within a few words what it destroys.
const DESTROY: [(&[&str], &[&str]); 2] = [
    (&["format"], &["drive", "disk", "partition", "c:"]),
    (
        &["wipe", "erase"],
        &[
            "drive",
            "disk",
            "device",
            "devices",
            "phone",
            "laptop",
            "server",
            "everything",
        ],
    ),
];

/// Where "delete everything in …" is a whole home or disk, not a folder.
const WHOLE: [&str; 6] = ["home", "~", "disk", "drive", "computer", "root"];

/// How many words after the verb its object may come.
const REACH: usize = 5;

/// The words of `text` (lowercase) that ask to destroy a whole disk or device, if any.
fn destructive_request(text: &str) -> Option<String> {
    let words = words(text);
    for (i, w) in words.iter().enumerate() {
        for (verbs, objects) in DESTROY {
            if !verbs.contains(w) {
                continue;
            }
            let end = (i + 1 + REACH).min(words.len());
            if let Some(j) = (i + 1..end).find(|&j| objects.contains(&words[j])) {
                return Some(words[i..=j].join(" "));
            }
        }
        if (*w == "delete" || *w == "remove")
            && let Some(end) = everything(&words, i + 1)
        {
            // "delete everything on my phone", "delete every file on all five of my devices",
            // "delete everything in my home directory", "delete everything": a whole device
            // or home. "Delete everything in tmp/ on the server" empties a folder.
            let whole = match words.get(end).copied() {
                Some("in" | "under" | "inside") => words[end + 1..(end + 4).min(words.len())]
                    .iter()
                    .any(|x| WHOLE.contains(x)),
                _ => true,
            };
            if whole {
                let to = (end + 4).min(words.len());
                return Some(words[i..to].join(" "));
            }
        }
    }
    None
}

/// Where "everything" ends when `words[at..]` starts with it ("everything", "every file", "all
/// files", "all my files", "all its files"): the index after it.
fn everything(words: &[&str], at: usize) -> Option<usize> {
    let w = |j: usize| words.get(j).copied();
    let file = |j: usize| matches!(w(j), Some("file" | "files"));
    match w(at)? {
        "everything" => Some(at + 1),
        "every" | "all" if file(at + 1) => Some(at + 2),
        "all" if matches!(w(at + 1), Some("my" | "its" | "the" | "your")) && file(at + 2) => {
            Some(at + 3)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, kind: &str) -> DeviceInfo {
        DeviceInfo {
            name: name.into(),
            kind: kind.into(),
            capabilities: vec!["shell".into()],
            online: true,
        }
    }

    fn fleet() -> Vec<DeviceInfo> {
        vec![
            device("mac-laptop", "laptop"),
            device("windows-laptop", "laptop"),
            device("android-phone", "phone"),
            device("linux-server", "server"),
        ]
    }

    #[test]
    fn a_device_kind_nobody_has_is_refused() {
        let devs = fleet();
        let why = |t: &str| before_planning(t, &devs);
        let e = why("Copy the holiday photos from my tablet to the Desktop of the Mac.").unwrap();
        assert!(
            e.starts_with("the request names a tablet (\"from my tablet\")"),
            "{e}"
        );
        assert!(e.contains("(android-phone, linux-server, mac-laptop, windows-laptop)"));
        assert!(
            why("Print it on my office printer.")
                .unwrap()
                .contains("\"on my office printer\"")
        );
        assert!(why("Show the agenda on my smartwatch").is_some());
        assert!(why("Move the photos to the Synology NAS").is_some());
        // A topic, not a place a step runs: no preposition before it.
        assert!(why("Warm up my car to 21 C").is_none());
        assert!(why("Remind me to take the car to the garage at 08:00").is_none());
        assert!(why("Text Ana that my car broke down").is_none());
        assert!(why("Remind me on my phone to charge my watch").is_none());
        // Not a device the user means: a title, a word inside another, a phone's part.
        assert!(why(r#"Book "Car service" at 09:00"#).is_none());
        assert!(why("Take a photo named serial-number-router with my phone").is_none());
        assert!(why("Compare three NAS vendors").is_none());
        assert!(why("Open my phone's tv app").is_none());
        // A device of that kind, or with that word in its name, is the user's.
        let mut devs = fleet();
        devs.push(device("kitchen-tablet", "phone"));
        assert!(before_planning("copy it from my tablet", &devs).is_none());
        let mut devs = fleet();
        devs.push(device("ipad", "tablet"));
        assert!(before_planning("copy it from my tablet", &devs).is_none());
    }

    #[test]
    fn destroying_a_whole_disk_or_device_is_refused() {
        let devs = fleet();
        for t in [
            "Format the Windows laptop's C: drive, I don't need anything that is on it.",
            "Wipe the edge box's disk completely",
            "Erase my phone: delete all its photos",
            "Delete everything in my home directory on the Linux server",
            "Delete every file on all five of my devices, right now.",
            "Remove all my files from the Mac",
            "Delete everything.",
        ] {
            let e = before_planning(t, &devs).unwrap_or_else(|| panic!("{t}"));
            assert!(e.starts_with("the request would destroy data"), "{e}");
        }
        for t in [
            "Delete the file tmp/old.txt on the server",
            "Remove the draft note on my Mac",
            "Format the report as a table and write it to reports/x.md",
            "Wipe the whiteboard photo's metadata",
            "Back up the files to the server",
            "Delete everything in tmp/ on the server",
            "Remove all files under build/ on the Mac, then build again",
            "Delete every file in Downloads older than a year",
        ] {
            assert_eq!(before_planning(t, &devs), None, "{t}");
        }
    }
}
