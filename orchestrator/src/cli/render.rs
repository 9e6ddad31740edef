//! Human-readable rendering of events and request views for the terminal.

use std::fmt::Write;

use weft_protocol::rest::{Event, EventKind, RequestView};

/// One line per event, with the time since `start_ms`.
pub fn event_line(ev: &Event, start_ms: u64) -> Option<String> {
    let t = ev.at_ms.saturating_sub(start_ms) as f64 / 1000.0;
    let body = match &ev.kind {
        EventKind::RequestCreated { tasks, edges, .. } => {
            format!("planned {} tasks, {} edges", tasks.len(), edges.len())
        }
        EventKind::TaskStatus {
            task_id,
            status,
            device,
            output,
            error,
            ..
        } => {
            let mut s = format!("{task_id} {}", status.as_str());
            if let Some(d) = device {
                let _ = write!(s, " on {d}");
            }
            if let Some(o) = output.as_ref().filter(|o| !o.summary.is_empty()) {
                let _ = write!(s, ": {}", one_line(&o.summary, 100));
            }
            if let Some(e) = error {
                let _ = write!(s, " [{}: {}]", e.code, one_line(&e.message, 100));
            }
            s
        }
        EventKind::TurnsExtended {
            task_id,
            asked,
            granted,
            max_turns,
            pool_left,
            ..
        } => {
            if *granted == 0 {
                format!("{task_id} asked for {asked} more turns: refused (budget spent)")
            } else {
                format!(
                    "{task_id} granted {granted} of {asked} more turns (limit {max_turns}, {pool_left} left)"
                )
            }
        }
        EventKind::GraphEdited { version, ops } => {
            let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
            format!("graph edited to version {version}: {}", names.join(", "))
        }
        EventKind::TaskRetrying {
            task_id,
            attempts,
            retry_at_ms,
            error,
            ..
        } => format!(
            "{task_id} attempt {attempts} failed [{}: {}]; retrying in {:.1}s",
            error.code,
            one_line(&error.message, 100),
            retry_at_ms.saturating_sub(ev.at_ms) as f64 / 1000.0
        ),
        EventKind::TaskProgress {
            task_id,
            message,
            turns_used,
            ..
        } => match turns_used {
            Some(t) => format!("{task_id} … {} (turn {t})", one_line(message, 100)),
            None => format!("{task_id} … {}", one_line(message, 100)),
        },
        EventKind::RequestStatus { status, error } => {
            let mut s = format!("request {}", status.as_str());
            if let Some(e) = error {
                let _ = write!(s, " ({}: {})", e.code, e.message);
            }
            s
        }
        EventKind::FilesDeleted { files } => {
            let names: Vec<String> = files
                .iter()
                .map(|f| format!("{}/{}", f.task_id, f.name))
                .collect();
            format!(
                "files deleted (retention): {}",
                one_line(&names.join(", "), 100)
            )
        }
    };
    Some(format!("[{t:>7.3}s] {body}"))
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat.to_owned()
    }
}

/// The final graph: tasks with status, device, attempts and output; then the edges.
pub fn request(view: &RequestView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "request {}  {}", view.id, view.status.as_str());
    let _ = writeln!(s, "  text: {}", view.text);
    if let Some(e) = &view.error {
        let _ = writeln!(s, "  error: {}: {}", e.code, e.message);
    }
    let _ = writeln!(s, "  tasks:");
    for t in &view.tasks {
        let device = t.device.as_ref().map(|d| d.as_str()).unwrap_or("-");
        let _ = writeln!(
            s,
            "    {:<4} {:<10} {:<10} {}  ({} attempt{})",
            t.id.as_str(),
            t.status.as_str(),
            device,
            t.title,
            t.attempts.len(),
            if t.attempts.len() == 1 { "" } else { "s" }
        );
        if let Some(o) = &t.output
            && !o.summary.is_empty()
        {
            let _ = writeln!(s, "         output: {}", one_line(&o.summary, 160));
        }
        if let Some(e) = &t.error {
            let _ = writeln!(
                s,
                "         error: {}: {}",
                e.code,
                one_line(&e.message, 160)
            );
        }
        for f in &t.files {
            let _ = writeln!(
                s,
                "         file: {}  {}  sha256 {}  {}",
                one_line(&f.name, 80),
                size(f.size),
                &f.sha256[..f.sha256.len().min(12)],
                f.url.as_deref().unwrap_or("(deleted: retention)")
            );
        }
    }
    if view.edges.is_empty() {
        let _ = writeln!(s, "  edges: none (all tasks ran in parallel)");
    } else {
        let _ = writeln!(s, "  edges:");
        for e in &view.edges {
            let _ = writeln!(s, "    {} -> {} ({})", e.from, e.to, e.kind.as_str());
        }
    }
    s
}

/// A byte count as people read it: `512 B`, `3.0 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(3 * 1024 * 1024 + 17), "3.0 MiB");
        assert_eq!(size(5 << 40), "5.0 TiB");
    }

    #[test]
    fn a_tasks_files_are_listed_under_it() {
        use weft_protocol::files::TaskFile;
        use weft_protocol::rest::{TaskView, TurnsView};
        let file = |name: &str, size, hex: &str, url: bool| TaskFile {
            name: name.into(),
            size,
            sha256: hex.repeat(32),
            url: url.then(|| TaskFile::url(&"r-1".into(), &hex.repeat(32))),
        };
        let view = RequestView {
            id: "r-1".into(),
            text: "copy".into(),
            status: weft_protocol::RequestStatus::Succeeded,
            version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            error: None,
            tasks: vec![TaskView {
                id: "t1".into(),
                title: "send".into(),
                instruction: "send".into(),
                action: None,
                device: Some("a".into()),
                status: weft_protocol::TaskStatus::Succeeded,
                attempts: vec![],
                output: None,
                error: None,
                retry: Default::default(),
                max_turns: 1,
                turns_used: 0,
                files: vec![
                    file("notes/a.txt", 2048, "ab", true),
                    file("old.bin", 5, "cd", false),
                ],
            }],
            edges: vec![],
            turns: TurnsView::default(),
            llm: None,
        };
        let text = request(&view);
        assert!(
            text.contains(&format!(
                "file: notes/a.txt  2.0 KiB  sha256 abababababab  /v1/requests/r-1/files/{}",
                "ab".repeat(32)
            )),
            "{text}"
        );
        assert!(
            text.contains("file: old.bin  5 B  sha256 cdcdcdcdcdcd  (deleted: retention)"),
            "{text}"
        );
    }

    #[test]
    fn control_characters_are_flattened() {
        assert_eq!(one_line("a\nb\x1b[31m", 10), "a b [31m");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
