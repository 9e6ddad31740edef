//! Mends of a small model's plan that have one right answer, made before the plan is checked:
//! each would otherwise cost a repair round, which a small model mostly answers with the same
//! plan (seen with the 1.5B model of bench-tasks/results/). Each mend changes only what it
//! names and leaves everything else as the model wrote it; the result is checked as any plan.
//!
//! - [`fetch_for_url_read`]: reading a file whose path is an `http(s)://` URL is fetching it.
//! - [`split_directory_write`]: one write of several read files' contents to a directory path
//!   (`backup/`) writes each file there, under its own relative path (a photo under its name).
//! - [`paths_as_named`]: a file read under a folder the request never names, when the request
//!   names the file under another, is read where the request says.
//!
//! After the plan is checked, `super::transfer` moves whole files as files.

use serde_json::Value;
use weft_protocol::{Action, EdgeKind, TaskId};

use crate::refs::{self, Refers};
use crate::{Plan, PlannedEdge, PlannedTask};

use super::transfer::{SIM_READ, SIM_WRITE};

/// A read of a URL (`read_file` or the simulated `file.read` with `path` `https://…`) becomes
/// `http_get` of it: no file has such a path, and the model meant the page.
pub(crate) fn fetch_for_url_read(action: &mut Option<Action>) {
    let path = match action.as_ref() {
        Some(Action::ReadFile { path }) => Some(path.as_str()),
        Some(Action::Sim { op, args }) if op == SIM_READ => {
            args.get("path").and_then(Value::as_str)
        }
        _ => None,
    };
    let Some(url) = path.map(str::trim).filter(|p| is_url(p)) else {
        return;
    };
    tracing::debug!(url, "a read of a URL is a fetch");
    *action = Some(Action::HttpGet {
        url: url.to_owned(),
    });
}

fn is_url(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && !path.contains("{{")
}

/// A file write (`write_file`, or the simulated `file.write`): its path and content.
fn write_of(action: &Action) -> Option<(&str, &str)> {
    match action {
        Action::WriteFile { path, content } => Some((path, content)),
        Action::Sim { op, args } if op == SIM_WRITE => Some((
            args.get("path").and_then(Value::as_str)?,
            args.get("content").and_then(Value::as_str)?,
        )),
        _ => None,
    }
}

/// The same write with another path and content.
fn rewrite(action: &Action, path: String, content: String) -> Action {
    match action {
        Action::Sim { op, args } => {
            let mut args = args.clone();
            args["path"] = Value::String(path);
            args["content"] = Value::String(content);
            Action::Sim {
                op: op.clone(),
                args,
            }
        }
        _ => Action::WriteFile { path, content },
    }
}

/// Splits each write whose path is a directory (ends with `/`) and whose content is nothing but
/// references to the whole outputs of file reads (`{{t1.output}}\n{{t2.output}}`) into one
/// write per read, each to its file's path under that directory. The first keeps the task's id,
/// the others get `ID-2`, `ID-3`, … (or the next free such id); each waits for its read and for
/// whatever else the task waited for, and whatever waited for the task waits for all of them.
/// A write whose content holds anything else is left as it is (it fails on the device with a
/// clear error, and the model's intent is not guessed).
pub(crate) fn split_directory_write(plan: &mut Plan) {
    let mut i = 0;
    while i < plan.tasks.len() {
        let Some(parts) = directory_write_parts(plan, i) else {
            i += 1;
            continue;
        };
        let original = plan.tasks[i].clone();
        let Some(action) = original.action.as_ref() else {
            i += 1;
            continue;
        };
        let mut ids = Vec::with_capacity(parts.len());
        let mut tasks = Vec::with_capacity(parts.len());
        for (n, (from, path)) in parts.iter().enumerate() {
            let id = if n == 0 {
                original.id.clone()
            } else {
                free_id(plan, &ids, &original.id, n + 1)
            };
            let content = format!("{{{{{from}.output}}}}");
            tasks.push(PlannedTask {
                id: id.clone(),
                action: Some(rewrite(action, path.clone(), content)),
                ..original.clone()
            });
            ids.push(id);
        }
        tracing::debug!(task = %original.id, writes = ids.len(), "split a write to a directory");
        // Edges: into the task from one of the reads go to that read's write only; every other
        // edge into or out of the task is repeated for each write.
        let mut edges = Vec::with_capacity(plan.edges.len() + 2 * ids.len());
        for e in std::mem::take(&mut plan.edges) {
            if e.to == original.id {
                match parts.iter().position(|(from, _)| *from == e.from) {
                    Some(n) if e.kind == EdgeKind::Success => {
                        edges.push(PlannedEdge {
                            to: ids[n].clone(),
                            ..e
                        });
                    }
                    _ => edges.extend(ids.iter().map(|id| PlannedEdge {
                        to: id.clone(),
                        ..e.clone()
                    })),
                }
            } else if e.from == original.id {
                edges.extend(ids.iter().map(|id| PlannedEdge {
                    from: id.clone(),
                    ..e.clone()
                }));
            } else {
                edges.push(e);
            }
        }
        plan.edges = edges;
        let added = tasks.len();
        plan.tasks.splice(i..=i, tasks);
        i += added;
    }
}

/// For task `i`, a write to a directory of nothing but whole outputs of file reads: each read's
/// id and where its file goes. `None` for anything else, and for a single read whose file would
/// land where the model did not say (a write of one read into `dir/` is split too: the path is
/// the read's).
fn directory_write_parts(plan: &Plan, i: usize) -> Option<Vec<(TaskId, String)>> {
    let (dir, content) = write_of(plan.tasks[i].action.as_ref()?)?;
    let dir = dir.trim();
    if !dir.ends_with('/') || dir.contains("{{") {
        return None;
    }
    let found = refs::parse(content).ok()?;
    // Nothing but the references, separated by white space.
    let mut rest = content.to_owned();
    for r in &found {
        rest = rest.replacen(&r.to_string(), "", 1);
    }
    if found.is_empty() || !rest.trim().is_empty() {
        return None;
    }
    let mut parts: Vec<(TaskId, String)> = Vec::with_capacity(found.len());
    for r in found {
        if !matches!(&r.what, Refers::Output(path) if path.is_empty()) {
            return None;
        }
        let read = plan.tasks.iter().find(|t| t.id == r.task)?;
        let (source, keep_parents) = super::transfer::source_file(read.action.as_ref()?)?;
        let to = super::transfer::destination(dir, &source, keep_parents)?;
        if parts.iter().any(|(_, p)| *p == to) {
            return None;
        }
        parts.push((r.task, to));
    }
    Some(parts)
}

/// `BASE-N`, or the next `BASE-M` (M > N) that no task and none of `taken` has.
fn free_id(plan: &Plan, taken: &[TaskId], base: &TaskId, n: usize) -> TaskId {
    (n..)
        .map(|m| TaskId::from(format!("{base}-{m}").as_str()))
        .find(|id| !plan.tasks.iter().any(|t| &t.id == id) && !taken.contains(id))
        .expect("an unbounded range has a free id")
}

/// The paths a request names: its words whose last part is a file name with an extension
/// (`talks/kickoff-2026.pptx`, `report.pdf`; not `v1.2` or a URL), without the punctuation
/// around them.
fn named_paths(text: &str) -> Vec<&str> {
    let has_extension = |name: &str| {
        name.rsplit_once('.').is_some_and(|(stem, ext)| {
            !stem.is_empty()
                && !ext.is_empty()
                && ext.bytes().all(|b| b.is_ascii_alphanumeric())
                && ext.bytes().any(|b| b.is_ascii_alphabetic())
        })
    };
    let mut paths: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '`' | '(' | ')' | ',' | ';'))
        .map(|w| w.trim_end_matches(['.', ':', '!', '?', '\'']))
        .filter(|w| !w.contains("://") && w.rsplit('/').next().is_some_and(has_extension))
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

/// A file the plan reads (`file.read`, `read_file`) at a path the request does not write, in
/// folders the request does not name, when the request names exactly one path with the same
/// file name (read `slides/kickoff.pptx`, the request says `talks/kickoff.pptx`; read
/// `archive/report.pdf` for "report.pdf"): the model took the folder from elsewhere (the
/// prompt's example). The path becomes the request's everywhere the plan spells it: as any action's
/// argument (a copy "at the same path" too) and in files references (`{{t1.files.PATH}}`).
pub(crate) fn paths_as_named(plan: &mut Plan, text: &str) {
    let named = named_paths(text);
    let lower = text.to_lowercase();
    let mut renamed: Vec<(String, String)> = Vec::new();
    for t in &plan.tasks {
        let path = match &t.action {
            Some(Action::ReadFile { path }) => path.as_str(),
            Some(Action::Sim { op, args }) if op == SIM_READ => {
                args.get("path").and_then(Value::as_str).unwrap_or_default()
            }
            _ => continue,
        };
        let path = path.trim();
        let Some(name) = path.rsplit('/').next().filter(|n| !n.is_empty()) else {
            continue;
        };
        if path.contains("{{") || named.contains(&path) {
            continue;
        }
        // "report.pdf from the archive folder": the folder is the request's.
        let folders = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        if folders
            .split('/')
            .any(|f| !f.is_empty() && lower.contains(&f.to_lowercase()))
        {
            continue;
        }
        let same_name: Vec<&&str> = named
            .iter()
            .filter(|p| p.rsplit('/').next() == Some(name))
            .collect();
        if let [to] = same_name.as_slice() {
            renamed.push((path.to_owned(), (**to).to_owned()));
        }
    }
    for (from, to) in renamed {
        tracing::debug!(%from, %to, "a path read as the request names it");
        for t in &mut plan.tasks {
            match t.action.as_mut() {
                Some(Action::ReadFile { path }) | Some(Action::WriteFile { path, .. })
                    if path.trim() == from =>
                {
                    *path = to.clone();
                }
                Some(Action::Sim { args, .. }) => {
                    let Value::Object(fields) = args else {
                        continue;
                    };
                    for v in fields.values_mut() {
                        let Value::String(s) = v else { continue };
                        if s.trim() == from {
                            *s = to.clone();
                        } else if s.contains(&format!(".files.{from}}}}}")) {
                            *s = s.replace(
                                &format!(".files.{from}}}}}"),
                                &format!(".files.{to}}}}}"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Target;

    fn task(id: &str, on: &str, action: Action) -> PlannedTask {
        PlannedTask {
            id: id.into(),
            title: id.into(),
            instruction: id.into(),
            action: Some(action),
            target: Target::Device(on.into()),
            capabilities: vec!["sim".into()],
            max_turns: None,
            outputs: vec![],
            inputs: vec![],
        }
    }

    fn sim(op: &str, args: Value) -> Action {
        Action::Sim {
            op: op.into(),
            args,
        }
    }

    fn edge(from: &str, to: &str) -> PlannedEdge {
        PlannedEdge {
            from: from.into(),
            to: to.into(),
            kind: EdgeKind::Success,
            condition: None,
        }
    }

    fn render(plan: &Plan) -> String {
        let tasks: Vec<String> = plan
            .tasks
            .iter()
            .map(|t| match t.action.as_ref().and_then(write_of) {
                Some((path, content)) => format!("{}:{path}={content}", t.id),
                None => t.id.to_string(),
            })
            .collect();
        let edges: Vec<String> = plan
            .edges
            .iter()
            .map(|e| format!("{}>{}", e.from, e.to))
            .collect();
        format!("{} | {}", tasks.join(" "), edges.join(" "))
    }

    #[test]
    fn a_read_of_a_url_is_a_fetch() {
        let mut a = Some(sim(
            SIM_READ,
            json!({"path": "http://web.bench/kpi/week-16.txt"}),
        ));
        fetch_for_url_read(&mut a);
        assert_eq!(
            a,
            Some(Action::HttpGet {
                url: "http://web.bench/kpi/week-16.txt".into()
            })
        );
        let mut a = Some(Action::ReadFile {
            path: " HTTPS://example.com/a ".into(),
        });
        fetch_for_url_read(&mut a);
        assert!(matches!(a, Some(Action::HttpGet { url }) if url == "HTTPS://example.com/a"));
        // Files, references and other ops stay as they are.
        for keep in [
            sim(SIM_READ, json!({"path": "notes/http.txt"})),
            sim(SIM_READ, json!({"path": "{{t1.output}}"})),
            sim("file.list", json!({"path": "http://x/"})),
            Action::ReadFile {
                path: "http/index.html".into(),
            },
        ] {
            let mut a = Some(keep.clone());
            fetch_for_url_read(&mut a);
            assert_eq!(a, Some(keep));
        }
    }

    #[test]
    fn a_write_of_several_reads_to_a_directory_writes_each_file_there() {
        let read = |id: &str, path: &str| task(id, "mac", sim(SIM_READ, json!({"path": path})));
        let mut plan = Plan {
            tasks: vec![
                read("t1", "recipes/shakshuka.md"),
                read("t2", "/home/me/dal.md"),
                read("t3", "./focaccia.md"),
                task(
                    "t4",
                    "server",
                    sim(
                        SIM_WRITE,
                        json!({"path": "backup/mac/", "content": "{{t1.output}}\n{{t2.output}}\n {{t3.output}}"}),
                    ),
                ),
                task(
                    "t4-2",
                    "server",
                    sim("file.list", json!({"dir": "backup/mac/"})),
                ),
            ],
            edges: vec![
                edge("t1", "t4"),
                edge("t2", "t4"),
                edge("t3", "t4"),
                edge("t4", "t4-2"),
            ],
        };
        split_directory_write(&mut plan);
        assert_eq!(
            render(&plan),
            "t1 t2 t3 t4:backup/mac/recipes/shakshuka.md={{t1.output}} \
             t4-3:backup/mac/dal.md={{t2.output}} t4-4:backup/mac/focaccia.md={{t3.output}} t4-2 \
             | t1>t4 t2>t4-3 t3>t4-4 t4>t4-2 t4-3>t4-2 t4-4>t4-2"
        );
        assert!(plan.validate(&crate::Limits::default()).is_ok());
        // The simulated write keeps its other arguments; the built-in write stays built in.
        let mut plan = Plan {
            tasks: vec![
                read("t1", "a.txt"),
                task(
                    "t2",
                    "server",
                    Action::WriteFile {
                        path: "out/".into(),
                        content: "{{t1.output}}".into(),
                    },
                ),
            ],
            edges: vec![edge("t1", "t2")],
        };
        split_directory_write(&mut plan);
        assert_eq!(
            plan.tasks[1].action,
            Some(Action::WriteFile {
                path: "out/a.txt".into(),
                content: "{{t1.output}}".into()
            })
        );
    }

    #[test]
    fn a_path_read_under_a_folder_the_request_does_not_name_is_read_where_it_does() {
        let text = "Copy the slide deck talks/kickoff-2026.pptx from my Mac to the Windows \
                    laptop, at the same path; and notes/a.md (not notes/b.md) too.";
        assert_eq!(
            named_paths(text),
            ["notes/a.md", "notes/b.md", "talks/kickoff-2026.pptx"]
        );
        // The deck read at `deck`, copied at the same path; three other reads.
        let plan = |deck: &str, b: &str| Plan {
            tasks: vec![
                task("t1", "mac", sim(SIM_READ, json!({ "path": deck }))),
                task(
                    "t2",
                    "win",
                    sim(
                        "file.copy",
                        json!({"from": format!("{{{{t1.files.{deck}}}}}"), "to": deck}),
                    ),
                ),
                // Named by the request: kept.
                task("t3", "mac", sim(SIM_READ, json!({"path": "notes/a.md"}))),
                // No path of the request has this name: kept.
                task("t4", "mac", sim(SIM_READ, json!({"path": "x/c.md"}))),
                task("t5", "win", Action::ReadFile { path: b.into() }),
            ],
            edges: vec![edge("t1", "t2")],
        };
        let mut p = plan("slides/kickoff-2026.pptx", "docs/b.md");
        paths_as_named(&mut p, text);
        assert_eq!(
            render(&p),
            render(&plan("talks/kickoff-2026.pptx", "notes/b.md"))
        );
        // A bare name: the folder the model added goes, unless the request names it.
        let read = |path: &str| {
            let mut p = Plan {
                tasks: vec![task("t1", "srv", sim(SIM_READ, json!({ "path": path })))],
                edges: vec![],
            };
            paths_as_named(
                &mut p,
                "Send report.pdf from the server's archive to my laptop",
            );
            p.tasks[0].action.clone()
        };
        assert_eq!(
            read("reports/report.pdf"),
            Some(sim(SIM_READ, json!({"path": "report.pdf"})))
        );
        assert_eq!(
            read("archive/report.pdf"),
            Some(sim(SIM_READ, json!({"path": "archive/report.pdf"})))
        );
        assert_eq!(
            named_paths("v1.2 of x.tar.gz, see https://a.b/c.html"),
            ["x.tar.gz"]
        );
        // Two paths of the request with that name: which one is not guessed.
        let mut p = Plan {
            tasks: vec![task("t1", "mac", sim(SIM_READ, json!({"path": "x/a.md"})))],
            edges: vec![],
        };
        paths_as_named(&mut p, "copy notes/a.md and old/a.md");
        assert_eq!(
            p.tasks[0].action,
            Some(sim(SIM_READ, json!({"path": "x/a.md"})))
        );
    }

    #[test]
    fn other_writes_are_left_alone() {
        let read = |id: &str, path: &str| task(id, "mac", sim(SIM_READ, json!({"path": path})));
        let write = |path: &str, content: &str| {
            task(
                "t3",
                "server",
                sim(SIM_WRITE, json!({"path": path, "content": content})),
            )
        };
        for (w, why) in [
            (
                write("backup/a.md", "{{t1.output}}\n{{t2.output}}"),
                "a file path",
            ),
            (write("backup/", "# Backup\n{{t1.output}}"), "text around"),
            (
                write("backup/", "{{t1.output.stdout}}"),
                "a part of an output",
            ),
            (write("backup/", "{{t9.output}}"), "an unknown task"),
            (write("backup/", "{{t2.output}}"), "not a file read"),
            (
                write("backup/", "{{t1.output}}{{t1.output}}"),
                "one file twice",
            ),
            (
                write("{{t1.output}}/", "{{t1.output}}"),
                "a path from a reference",
            ),
        ] {
            let mut plan = Plan {
                tasks: vec![
                    read("t1", "notes/a.md"),
                    task("t2", "mac", sim("calendar.list", json!({}))),
                    w,
                ],
                edges: vec![edge("t1", "t3"), edge("t2", "t3")],
            };
            let before = render(&plan);
            split_directory_write(&mut plan);
            assert_eq!(render(&plan), before, "{why}");
        }
    }
}
