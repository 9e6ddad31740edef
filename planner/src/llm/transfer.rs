//! Whole files move as files, not as text.
//!
//! A small model moves a file the way the prompt's rule 2 says: read it on one device
//! (`file.read`, or the tool that made it, `photo.take`) and write that read's whole output on
//! another (`file.write` with `{{t1.output}}` as its content). As text, the file is cut to the
//! output limit and a binary file (a photo, a PDF) arrives as a description of itself. When the
//! write's content is nothing but that output, the model meant the file, and there is one right
//! way to move it: the reading task declares the file as an output (`outputs.files`, sent to the
//! orchestrator after it succeeds, content-addressed and verified) and the write becomes a copy
//! of the fetched file (`file.copy` from `{{t1.files.PATH}}`), byte for byte, whatever its size.
//!
//! Only the simulated apps' `file.*` ops are rewritten: the built-in `write_file` has no copy
//! beside it on every device, so a plan that uses it keeps moving text.

use serde_json::{Value, json};
use weft_protocol::{Action, EdgeKind, TaskId};

use super::review;
use crate::refs::{self, Refers};
use crate::{DeviceProfile, Plan, PlannedEdge, PlannedTask, Target};

/// The simulated apps' ops that read, write and copy a file, and take a photo.
pub(crate) const SIM_READ: &str = "file.read";
pub(crate) const SIM_WRITE: &str = "file.write";
const SIM_COPY: &str = "file.copy";
const SIM_PHOTO: &str = "photo.take";

/// The file a task's action reads or makes, if its path is known from its arguments alone:
/// its path, and whether a copy into a directory keeps the folders above the file
/// (`thesis/ch1.md` → `backup/thesis/ch1.md`, as `cp --parents` does) or only its name (a
/// photo is `DCIM/NAME.jpg`; `DCIM/` is the camera's folder, not part of what the user named).
pub(crate) fn source_file(action: &Action) -> Option<(String, bool)> {
    let Action::Sim { op, args } = action else {
        return match action {
            Action::ReadFile { path } => literal(path).map(|p| (p, true)),
            _ => None,
        };
    };
    match op.as_str() {
        SIM_READ => literal(args.get("path")?.as_str()?).map(|p| (p, true)),
        SIM_PHOTO => {
            let name = args.get("name")?.as_str()?.trim();
            (!name.is_empty() && !name.contains('/'))
                .then(|| literal(&format!("DCIM/{name}.jpg")))
                .flatten()
                .map(|p| (p, false))
        }
        _ => None,
    }
}

/// `path` trimmed, if it is a literal (no reference in it).
fn literal(path: &str) -> Option<String> {
    let p = path.trim();
    (!p.is_empty() && !p.contains("{{")).then(|| p.to_owned())
}

/// Where a file goes when written to `to`: `to` itself, or, for a directory (`Desktop/`), the
/// file under it by its relative path or its name (see [`source_file`]).
pub(crate) fn destination(to: &str, source: &str, keep_parents: bool) -> Option<String> {
    if !to.ends_with('/') {
        return Some(to.to_owned());
    }
    let relative = keep_parents
        && !source.starts_with('/')
        && !source.starts_with('~')
        && !source.split('/').any(|part| part == "..");
    let below = if relative {
        source.trim_start_matches("./")
    } else {
        source.rsplit('/').next()?
    };
    (!below.is_empty() && !below.ends_with('/')).then(|| format!("{to}{below}"))
}

/// Rewrites every simulated `file.write` whose content is exactly the whole output of one task
/// that reads or makes a simulated file (see [`source_file`]) into a `file.copy` of that file,
/// declared as the source task's output. Writes that append, that hold any other text, or whose
/// file cannot be named as an output (a path outside the workdir, a glob character) are left as
/// they are. The plan's tasks, ids and edges stay: the reference `{{t1.files.PATH}}` needs t1
/// upstream just as `{{t1.output}}` did.
///
/// The same for the built-in pair: a `write_file` of the whole output of a `read_file` of a
/// file (its name has an extension, and a write to a file path keeps it: a directory's
/// listing written to `list.txt` is text) becomes `copy_file` from `{{t1.files.PATH}}` (also
/// `fs`, so the writing device runs it), as the rules planner's `copy` does. As text, a binary
/// file would arrive as its lossy, cut UTF-8 reading, reported succeeded.
pub(crate) fn move_files_as_files(plan: &mut Plan) {
    for w in 0..plan.tasks.len() {
        let Some((source, to)) = whole_output_write(plan, w) else {
            continue;
        };
        let Some(s) = plan.tasks.iter().position(|t| t.id == source) else {
            continue;
        };
        let Some((path, keep_parents)) = plan.tasks[s].action.as_ref().and_then(source_file) else {
            continue;
        };
        let Some(to) = destination(&to, &path, keep_parents) else {
            continue;
        };
        // `{{tN.files.PATH}}`, or all of tN's files when PATH cannot be written in a reference
        // and it is tN's only file (as the rules planner's `copy` does).
        let reference = if refs::file_name(&path).is_ok() {
            format!("{{{{{source}.files.{path}}}}}")
        } else if plan.tasks[s].outputs.iter().all(|o| *o == path)
            && weft_protocol::files::check_file_name(&path).is_ok()
        {
            format!("{{{{{source}.files}}}}")
        } else {
            continue;
        };
        let action = match (&plan.tasks[s].action, &plan.tasks[w].action) {
            (Some(Action::Sim { .. }), Some(Action::Sim { .. })) => Action::Sim {
                op: SIM_COPY.to_owned(),
                args: json!({"from": reference, "to": to}),
            },
            (Some(Action::ReadFile { .. }), Some(Action::WriteFile { .. }))
                if extension(&path).is_some()
                    && extension(&to).is_none_or(|e| Some(e) == extension(&path)) =>
            {
                Action::CopyFile {
                    from: reference,
                    to: to.clone(),
                }
            }
            // `read_file`'s device may not run `file.copy`, and so on.
            _ => continue,
        };
        tracing::debug!(task = %plan.tasks[w].id, %source, %path, %to, "a whole file moves as a file");
        plan.tasks[w].action = Some(action);
        if !plan.tasks[s].outputs.contains(&path) {
            plan.tasks[s].outputs.push(path);
        }
    }
}

/// The extension of a path's last part (`jpg` of `DCIM/a.jpg`; none for `.profile`), if any.
fn extension(path: &str) -> Option<&str> {
    let (stem, ext) = path.rsplit('/').next()?.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

/// A copy of a file onto itself (`file.copy` from PATH to PATH) on some device, when the
/// request names exactly one device on which no task runs, and names it as where something
/// comes from ("from the Linux server"): the model meant "bring PATH here
/// from that device" ("roll out firmware/x.bin from the server to the edge box and my phone",
/// planned as a copy on the edge box and one on the phone). The named device reads the file and
/// declares it as an output, and each such copy takes it from there (`{{tN.files.PATH}}`), byte
/// for byte. Nothing changes when no copy is onto itself, when the request names no unused
/// device or several, or when that device cannot read a simulated file.
pub(crate) fn pull_from_named_source(plan: &mut Plan, devices: &[&DeviceProfile], text: &str) {
    let text = text.to_lowercase();
    // Named as where the file comes from: "from the Linux server", "from my Mac".
    let named_from = |d: &DeviceProfile| {
        review::named_as(d, devices, &text).is_some_and(|alias| {
            ["from ", "from the ", "from my "]
                .iter()
                .any(|from| review::has_word(&text, &format!("{from}{alias}")))
        })
    };
    let unused: Vec<&DeviceProfile> = devices
        .iter()
        .copied()
        .filter(|d| !review::runs_on(plan, d) && named_from(d))
        .collect();
    let [source] = unused.as_slice() else {
        return;
    };
    let onto_itself: Vec<(usize, String)> = plan
        .tasks
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let Some(Action::Sim { op, args }) = &t.action else {
                return None;
            };
            let from = literal(args.get("from")?.as_str()?)?;
            let to = literal(args.get("to")?.as_str()?)?;
            (op == SIM_COPY && from == to && refs::file_name(&from).is_ok()).then_some((i, from))
        })
        .collect();
    let mut paths: Vec<&String> = onto_itself.iter().map(|(_, p)| p).collect();
    paths.sort();
    paths.dedup();
    let mut readers: Vec<PlannedTask> = Vec::new();
    let mut next = plan.tasks.len() + 1;
    for path in paths {
        let id = loop {
            let id = TaskId::from(format!("t{next}").as_str());
            next += 1;
            if !plan.tasks.iter().any(|t| t.id == id) {
                break id;
            }
        };
        let title = format!("read {path} on {}", source.info.name);
        let reader = PlannedTask {
            id,
            instruction: title.clone(),
            title,
            action: Some(Action::Sim {
                op: SIM_READ.to_owned(),
                args: json!({ "path": path }),
            }),
            target: Target::Device(source.info.name.clone()),
            capabilities: vec!["sim".into()],
            max_turns: None,
            outputs: vec![path.clone()],
            inputs: vec![],
        };
        if !review::can_run(source, &reader) {
            return;
        }
        readers.push(reader);
    }
    for reader in readers {
        let path = &reader.outputs[0];
        for (i, _) in onto_itself.iter().filter(|(_, p)| p == path) {
            let t = &mut plan.tasks[*i];
            tracing::debug!(task = %t.id, %path, from = %source.info.name, "a copy onto itself takes the file from the named device");
            t.action = Some(Action::Sim {
                op: SIM_COPY.to_owned(),
                args: json!({"from": format!("{{{{{}.files.{path}}}}}", reader.id), "to": path}),
            });
            plan.edges.push(PlannedEdge {
                from: reader.id.clone(),
                to: t.id.clone(),
                kind: EdgeKind::Success,
                condition: None,
            });
        }
        plan.tasks.push(reader);
    }
}

/// Declares every file a task's reference names as an output of the task it names: the model
/// writes `{{t1.files.PATH}}` where it uses a file (the prompt's file examples), and the plan
/// must say that t1 produces PATH for the file to be sent on after t1 succeeds.
///
/// Three readings are mended first, in the action's arguments: a name that is the last part of
/// the one file t1 reads or makes (`{{t1.files.receipt.jpg}}` for `DCIM/receipt.jpg`) becomes
/// that file's path; a `file.write` of one whole file reference (which would write the fetched
/// file's local path as text) becomes a `file.copy` of it; and a `file.copy` of one whole file
/// into a directory (`"to": "Desktop/"`) copies it to the file there (see [`destination`]).
/// `{{t1.files}}` declares the file t1 reads or makes; when t1 makes no file known by name,
/// the error asks for `{{t1.files.PATH}}`.
pub(crate) fn declare_referenced_files(plan: &mut Plan) -> Vec<String> {
    let mut errors = Vec::new();
    // What each task reads or makes (the mends below change only copies and references).
    let sources: Vec<(TaskId, Option<(String, bool)>)> = plan
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.action.as_ref().and_then(source_file)))
        .collect();
    let source_of = |id: &TaskId| {
        sources
            .iter()
            .find(|(t, _)| t == id)
            .and_then(|(_, s)| s.clone())
    };
    for task in &mut plan.tasks {
        let Some(Action::Sim { op, args }) = task.action.as_mut() else {
            continue;
        };
        // The last part of the source's path stands for it.
        if let Value::Object(fields) = args {
            for v in fields.values_mut() {
                let Value::String(text) = v else { continue };
                let Ok(found) = refs::parse(text) else {
                    continue;
                };
                for r in found {
                    let Refers::File(name) = &r.what else {
                        continue;
                    };
                    let Some((path, _)) = source_of(&r.task) else {
                        continue;
                    };
                    if *name != path && path.ends_with(&format!("/{name}")) {
                        let full = refs::Reference {
                            task: r.task.clone(),
                            what: Refers::File(path),
                        };
                        *text = text.replace(&r.to_string(), &full.to_string());
                    }
                }
            }
        }
        // A file written whole (its path as the content) is a copy of it.
        let written = args
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let appends = args.get("append").and_then(Value::as_bool) == Some(true);
        if op == SIM_WRITE && !appends && whole_file_reference(written).is_some() {
            let to = args.get("path").cloned().unwrap_or_default();
            *args = json!({"from": written.trim(), "to": to});
            *op = SIM_COPY.to_owned();
        }
        // A whole file copied into a directory lands there by its name.
        if op == SIM_COPY {
            let from = args.get("from").and_then(Value::as_str).unwrap_or_default();
            let to = args.get("to").and_then(Value::as_str).unwrap_or_default();
            if let Some((task, name)) = whole_file_reference(from) {
                let keep = source_of(&task).is_some_and(|(p, keep)| p == name && keep);
                if let Some(dest) = destination(to, &name, keep).filter(|d| d != to) {
                    args["to"] = Value::String(dest);
                }
            }
        }
    }
    for w in 0..plan.tasks.len() {
        let t = &plan.tasks[w];
        let Ok(found) = refs::task_references(&t.instruction, t.action.as_ref()) else {
            continue;
        };
        let own = t.id.clone();
        for r in found {
            let Some(s) = plan.tasks.iter().position(|t| t.id == r.task) else {
                continue;
            };
            if r.task == own {
                continue;
            }
            let name = match &r.what {
                Refers::File(name) => name.clone(),
                Refers::Files if plan.tasks[s].outputs.is_empty() => {
                    match plan.tasks[s].action.as_ref().and_then(source_file) {
                        Some((path, _)) if refs::file_name(&path).is_ok() => path,
                        _ => {
                            errors.push(format!(
                                "task {own}: {r} names no file: task {} reads or makes no file \
                                 known by name; write {{{{{}.files.PATH}}}} with the file's path",
                                r.task, r.task
                            ));
                            continue;
                        }
                    }
                }
                _ => continue,
            };
            if !plan.tasks[s].outputs.contains(&name) {
                plan.tasks[s].outputs.push(name);
            }
        }
    }
    errors
}

/// The one reference a text is, whitespace around it aside (`{{t1.output}}`, `{{t1.files.a}}`).
fn whole_reference(text: &str) -> Option<refs::Reference> {
    let [r] = <[refs::Reference; 1]>::try_from(refs::parse(text).ok()?).ok()?;
    (text.trim() == r.to_string()).then_some(r)
}

/// The task and file name of a text that is exactly one `{{ID.files.NAME}}`.
fn whole_file_reference(text: &str) -> Option<(TaskId, String)> {
    let r = whole_reference(text)?;
    let Refers::File(name) = r.what else {
        return None;
    };
    Some((r.task, name))
}

/// For task `w`, a simulated write (not an append) or a `write_file` whose content is exactly
/// `{{ID.output}}`: that ID and the path written.
fn whole_output_write(plan: &Plan, w: usize) -> Option<(TaskId, String)> {
    let (to, content) = match plan.tasks[w].action.as_ref()? {
        Action::Sim { op, args }
            if op == SIM_WRITE && args.get("append").and_then(Value::as_bool) != Some(true) =>
        {
            (args.get("path")?.as_str()?, args.get("content")?.as_str()?)
        }
        Action::WriteFile { path, content } => (path.as_str(), content.as_str()),
        _ => return None,
    };
    let to = literal(to)?;
    let r = whole_reference(content)?;
    let whole = matches!(&r.what, Refers::Output(keys) if keys.is_empty());
    (whole && r.task != plan.tasks[w].id).then_some((r.task, to))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task(id: &str, on: &str, op: &str, args: Value) -> PlannedTask {
        PlannedTask {
            id: id.into(),
            title: id.into(),
            instruction: id.into(),
            action: Some(Action::Sim {
                op: op.into(),
                args,
            }),
            target: Target::Device(on.into()),
            capabilities: vec!["sim".into()],
            max_turns: None,
            outputs: vec![],
            inputs: vec![],
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

    fn write(id: &str, path: &str, content: &str) -> PlannedTask {
        task(
            id,
            "laptop",
            SIM_WRITE,
            json!({"path": path, "content": content}),
        )
    }

    fn plan(tasks: Vec<PlannedTask>) -> Plan {
        let edges = tasks
            .iter()
            .skip(1)
            .map(|t| edge(tasks[0].id.as_str(), t.id.as_str()))
            .collect();
        Plan { tasks, edges }
    }

    #[test]
    fn a_read_file_written_whole_elsewhere_is_copied_as_a_file() {
        let mut p = plan(vec![
            task("t1", "mac", SIM_READ, json!({"path": "thesis/ch1.md"})),
            write("t2", "backup/mac/", " {{t1.output}}\n"),
            write("t3", "Desktop/ch1-copy.md", "{{t1.output}}"),
        ]);
        move_files_as_files(&mut p);
        assert_eq!(p.tasks[0].outputs, ["thesis/ch1.md"]);
        assert_eq!(
            p.tasks[0].action,
            Some(Action::Sim {
                op: SIM_READ.into(),
                args: json!({"path": "thesis/ch1.md"})
            }),
            "the read itself is kept (its output may be used elsewhere)"
        );
        let copy = |to: &str| {
            Some(Action::Sim {
                op: SIM_COPY.into(),
                args: json!({"from": "{{t1.files.thesis/ch1.md}}", "to": to}),
            })
        };
        assert_eq!(p.tasks[1].action, copy("backup/mac/thesis/ch1.md"));
        assert_eq!(p.tasks[2].action, copy("Desktop/ch1-copy.md"));
        assert!(p.validate(&crate::Limits::default()).is_ok());
    }

    #[test]
    fn a_name_a_reference_cannot_hold_is_all_files_of_its_task() {
        let mut p = plan(vec![
            task(
                "t1",
                "mac",
                SIM_READ,
                json!({"path": "My Documents/a b.md"}),
            ),
            write("t2", "b.md", "{{t1.output}}"),
        ]);
        move_files_as_files(&mut p);
        assert_eq!(p.tasks[0].outputs, ["My Documents/a b.md"]);
        assert_eq!(
            p.tasks[1].action,
            Some(Action::Sim {
                op: SIM_COPY.into(),
                args: json!({"from": "{{t1.files}}", "to": "b.md"})
            })
        );
    }

    #[test]
    fn a_photo_written_whole_is_copied_by_its_name() {
        let mut p = plan(vec![
            task("t1", "phone", SIM_PHOTO, json!({"name": "meter-gas"})),
            write("t2", "meters/2026-03/", "{{t1.output}}"),
            write("t3", "Desktop/gas.jpg", "{{t1.output}}"),
        ]);
        move_files_as_files(&mut p);
        assert_eq!(p.tasks[0].outputs, ["DCIM/meter-gas.jpg"], "declared once");
        let Some(Action::Sim { op, args }) = &p.tasks[1].action else {
            panic!("{:?}", p.tasks[1].action)
        };
        assert_eq!(op, SIM_COPY);
        assert_eq!(
            args,
            &json!({"from": "{{t1.files.DCIM/meter-gas.jpg}}", "to": "meters/2026-03/meter-gas.jpg"})
        );
        let refs = crate::refs::task_references("", p.tasks[1].action.as_ref()).unwrap();
        assert!(matches!(&refs[0].what, Refers::File(n) if n == "DCIM/meter-gas.jpg"));
    }

    #[test]
    fn other_writes_and_sources_are_left_alone() {
        let cases: Vec<(PlannedTask, PlannedTask, &str)> = vec![
            (
                task("t1", "mac", SIM_READ, json!({"path": "a.md"})),
                write("t2", "b.md", "# copy\n{{t1.output}}"),
                "text around the output",
            ),
            (
                task("t1", "mac", SIM_READ, json!({"path": "a.md"})),
                write("t2", "b.md", "{{t1.output.content}}"),
                "a part of the output",
            ),
            (
                task("t1", "mac", SIM_READ, json!({"path": "a.md"})),
                write("t2", "b.md", "{{t1.output}}\n{{t1.output}}"),
                "the output twice",
            ),
            (
                task("t1", "mac", SIM_READ, json!({"path": "a.md"})),
                task(
                    "t2",
                    "laptop",
                    SIM_WRITE,
                    json!({"path": "b.md", "content": "{{t1.output}}", "append": true}),
                ),
                "an append",
            ),
            (
                task("t1", "mac", "calendar.list", json!({})),
                write("t2", "b.md", "{{t1.output}}"),
                "not a file",
            ),
            (
                task("t1", "mac", SIM_READ, json!({"path": "../etc/passwd"})),
                write("t2", "b.md", "{{t1.output}}"),
                "a path outside the workdir",
            ),
            (
                task("t1", "phone", SIM_PHOTO, json!({})),
                write("t2", "Desktop/", "{{t1.output}}"),
                "a photo of no name",
            ),
            (
                task("t1", "mac", SIM_READ, json!({"path": "{{t0.output}}"})),
                write("t2", "b.md", "{{t1.output}}"),
                "a path from a reference",
            ),
            (
                PlannedTask {
                    action: Some(Action::ReadFile {
                        path: "a.md".into(),
                    }),
                    ..task("t1", "mac", SIM_READ, json!({}))
                },
                write("t2", "b.md", "{{t1.output}}"),
                "a built-in read: its device may not run file.copy",
            ),
        ];
        for (source, w, why) in cases {
            let mut p = plan(vec![source, w]);
            let before = format!("{:?}", p.tasks);
            move_files_as_files(&mut p);
            assert_eq!(format!("{:?}", p.tasks), before, "{why}");
        }
    }

    fn device(name: &str, kind: &str, caps: &[&str]) -> DeviceProfile {
        DeviceProfile {
            info: crate::DeviceInfo {
                name: name.into(),
                kind: kind.into(),
                capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
                online: true,
            },
            platform: None,
            tools: Vec::new(),
        }
    }

    fn built_in(id: &str, on: &str, action: Action) -> PlannedTask {
        PlannedTask {
            capabilities: vec![action.capability().to_owned()],
            action: Some(action),
            ..task(id, on, "unused", json!({}))
        }
    }

    #[test]
    fn a_read_file_written_whole_by_write_file_is_a_copy_file() {
        let read = |path: &str| Action::ReadFile { path: path.into() };
        let write = |path: &str| Action::WriteFile {
            path: path.into(),
            content: "{{t1.output}}".into(),
        };
        let copy = |from: &str, to: &str| {
            Some(Action::CopyFile {
                from: from.into(),
                to: to.into(),
            })
        };
        let mut p = plan(vec![
            built_in("t1", "laptop", read("photos/cat 1.jpg")),
            built_in("t2", "server", write("backup/")),
            built_in("t3", "phone", write("Desktop/cat.jpg")),
            // Another extension (a listing, a summary): text.
            built_in("t4", "server", write("cat.txt")),
        ]);
        move_files_as_files(&mut p);
        assert_eq!(p.tasks[0].outputs, ["photos/cat 1.jpg"]);
        // A name a reference cannot hold: all of t1's files, which is that one.
        assert_eq!(
            p.tasks[1].action,
            copy("{{t1.files}}", "backup/photos/cat 1.jpg")
        );
        assert_eq!(p.tasks[1].capabilities, ["fs"], "the write's own");
        assert_eq!(p.tasks[2].action, copy("{{t1.files}}", "Desktop/cat.jpg"));
        assert_eq!(p.tasks[3].action, Some(write("cat.txt")));
        p.validate(&crate::Limits::default()).unwrap();

        // A directory read (its listing) is text wherever it goes.
        let mut p = plan(vec![
            built_in("t1", "laptop", read("photos")),
            built_in("t2", "server", write("list")),
        ]);
        move_files_as_files(&mut p);
        assert!(p.tasks[0].outputs.is_empty());
        assert_eq!(p.tasks[1].action, Some(write("list")));
    }

    #[test]
    fn a_copy_onto_itself_takes_the_file_from_the_named_unused_device() {
        let devs = [
            device("linux-server", "server", &["sim"]),
            device("edge-box", "edge", &["sim"]),
            device("android-phone", "phone", &["sim"]),
        ];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let copy = |id: &str, on: &str| {
            task(
                id,
                on,
                SIM_COPY,
                json!({"from": "fw/v15.bin", "to": "fw/v15.bin"}),
            )
        };
        let text = "Roll out fw/v15.bin from the Linux server to the edge box and my phone.";
        let mut p = Plan {
            tasks: vec![copy("t1", "edge-box"), copy("t2", "android-phone")],
            edges: vec![],
        };
        pull_from_named_source(&mut p, &refs, text);
        assert_eq!(p.tasks.len(), 3);
        let reader = &p.tasks[2];
        assert_eq!(
            (reader.id.as_str(), &reader.target, &reader.outputs),
            (
                "t3",
                &Target::Device("linux-server".into()),
                &vec!["fw/v15.bin".to_owned()]
            )
        );
        for t in &p.tasks[..2] {
            assert_eq!(
                t.action,
                Some(Action::Sim {
                    op: SIM_COPY.into(),
                    args: json!({"from": "{{t3.files.fw/v15.bin}}", "to": "fw/v15.bin"}),
                })
            );
        }
        assert_eq!(p.edges, [edge("t3", "t1"), edge("t3", "t2")]);

        // Left alone: a real copy within a device; no unused named device; a source that
        // cannot read a simulated file.
        let cases = [
            (
                task(
                    "t1",
                    "edge-box",
                    SIM_COPY,
                    json!({"from": "a.txt", "to": "b.txt"}),
                ),
                text,
                &refs,
            ),
            (
                copy("t1", "edge-box"),
                "Copy fw/v15.bin on the edge box",
                &refs,
            ),
            // The unused device is where the file goes, not where it comes from.
            (
                copy("t1", "edge-box"),
                "Roll out fw/v15.bin from the edge box to my phone",
                &refs,
            ),
        ];
        for (t, text, refs) in cases {
            let mut p = Plan {
                tasks: vec![t],
                edges: vec![],
            };
            let before = format!("{p:?}");
            pull_from_named_source(&mut p, refs, text);
            assert_eq!(format!("{p:?}"), before, "{text}");
        }
        let no_sim = [
            device("linux-server", "server", &["shell"]),
            device("edge-box", "edge", &["sim"]),
        ];
        let refs: Vec<&DeviceProfile> = no_sim.iter().collect();
        let mut p = Plan {
            tasks: vec![copy("t1", "edge-box")],
            edges: vec![],
        };
        pull_from_named_source(&mut p, &refs, text);
        assert_eq!(p.tasks.len(), 1);
    }

    fn copy_from(id: &str, on: &str, from: &str, to: &str) -> PlannedTask {
        task(id, on, SIM_COPY, json!({"from": from, "to": to}))
    }

    #[test]
    fn a_file_a_later_task_refers_to_is_declared_by_the_task_that_makes_it() {
        let mut p = plan(vec![
            task("t1", "phone", SIM_PHOTO, json!({"name": "invoice"})),
            copy_from(
                "t2",
                "server",
                "{{t1.files.DCIM/invoice.jpg}}",
                "scans/invoice.jpg",
            ),
            copy_from(
                "t3",
                "laptop",
                "{{t1.files.DCIM/invoice.jpg}}",
                "Desktop/x.jpg",
            ),
            task("t4", "server", SIM_READ, json!({"path": "a/report.pdf"})),
            copy_from("t5", "laptop", "{{t4.files}}", "backup/report.pdf"),
        ]);
        p.edges.push(edge("t4", "t5"));
        assert_eq!(declare_referenced_files(&mut p), Vec::<String>::new());
        assert_eq!(p.tasks[0].outputs, ["DCIM/invoice.jpg"], "declared once");
        assert_eq!(
            p.tasks[3].outputs,
            ["a/report.pdf"],
            "{{t4.files}}: what t4 read"
        );
        assert!(p.tasks[1].outputs.is_empty());
        p.validate(&crate::Limits::default()).unwrap();
    }

    #[test]
    fn a_file_named_by_its_last_part_or_copied_into_a_directory_is_mended() {
        let mut p = plan(vec![
            task("t1", "phone", SIM_PHOTO, json!({"name": "shelf-a"})),
            copy_from("t2", "mac", "{{t1.files.shelf-a.jpg}}", "Desktop/"),
            task("t3", "mac", SIM_READ, json!({"path": "docs/cv.pdf"})),
            copy_from("t4", "server", "{{t3.files.docs/cv.pdf}}", "backup/"),
            // Not a whole file: left as written.
            copy_from("t5", "server", "x{{t3.files.docs/cv.pdf}}", "b/"),
            write("t6", "Pictures/", "{{t1.files.DCIM/shelf-a.jpg}}"),
        ]);
        declare_referenced_files(&mut p);
        let args = |i: usize| match &p.tasks[i].action {
            Some(Action::Sim { args, .. }) => args.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            args(1),
            json!({"from": "{{t1.files.DCIM/shelf-a.jpg}}", "to": "Desktop/shelf-a.jpg"}),
            "a photo by its name, into the directory by its name"
        );
        assert_eq!(
            args(3),
            json!({"from": "{{t3.files.docs/cv.pdf}}", "to": "backup/docs/cv.pdf"}),
            "a file read keeps its folders, as a copy under a directory does elsewhere"
        );
        assert_eq!(args(4)["to"], "b/");
        assert_eq!(
            p.tasks[5].action,
            Some(Action::Sim {
                op: SIM_COPY.into(),
                args: json!({"from": "{{t1.files.DCIM/shelf-a.jpg}}", "to": "Pictures/shelf-a.jpg"})
            }),
            "a file written whole is copied"
        );
        assert_eq!(p.tasks[0].outputs, ["DCIM/shelf-a.jpg"]);
        assert_eq!(p.tasks[2].outputs, ["docs/cv.pdf"]);
    }

    #[test]
    fn all_files_of_a_task_that_makes_none_known_is_an_error_to_repair() {
        let mut p = plan(vec![
            task("t1", "server", "build.run", json!({"project": "app"})),
            copy_from("t2", "phone", "{{t1.files}}", "Downloads/"),
        ]);
        let errors = declare_referenced_files(&mut p);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("{{t1.files.PATH}}"), "{}", errors[0]);
        assert!(p.tasks[0].outputs.is_empty());
        // Named, the file is declared: a build's artifact the model names itself.
        let mut p = plan(vec![
            task("t1", "server", "build.run", json!({"project": "app"})),
            copy_from(
                "t2",
                "phone",
                "{{t1.files.dist/app.apk}}",
                "Downloads/app.apk",
            ),
        ]);
        assert!(declare_referenced_files(&mut p).is_empty());
        assert_eq!(p.tasks[0].outputs, ["dist/app.apk"]);
    }

    #[test]
    fn destinations() {
        assert_eq!(
            destination("a/b.md", "x/y.md", true).as_deref(),
            Some("a/b.md")
        );
        assert_eq!(
            destination("bk/", "x/y.md", true).as_deref(),
            Some("bk/x/y.md")
        );
        assert_eq!(
            destination("bk/", "x/y.md", false).as_deref(),
            Some("bk/y.md")
        );
        assert_eq!(
            destination("bk/", "/abs/y.md", true).as_deref(),
            Some("bk/y.md")
        );
        assert_eq!(
            destination("bk/", "../y.md", true).as_deref(),
            Some("bk/y.md")
        );
        assert_eq!(destination("bk/", "x/", true), None);
    }
}
