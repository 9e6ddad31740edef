//! Reading the model's answers: a plan, or a revision. Every problem found is reported, in
//! words the model can act on, so that a repair round can fix them all at once.

use std::collections::BTreeSet;

use serde_json::Value;
use weft_protocol::rest::{EditOp, TaskSpec};
use weft_protocol::{Condition, DeviceName, EdgeKind, TaskId};

use super::actions;
use crate::revise::Revision;
use crate::{DeviceProfile, Limits, Plan, PlannedEdge, PlannedTask, Target};

/// The most turns a planned task may ask for.
const MAX_TURNS: u32 = 1000;

/// The most ops in one revision (the engine's limit per edit batch).
const MAX_OPS: usize = 100;

/// The longest title kept, in characters.
const MAX_TITLE_CHARS: usize = 80;

/// What the model answered to a request: a plan, or a refusal with its reason.
#[derive(Debug)]
pub(crate) enum Answer {
    Plan(Plan),
    Refuse(String),
}

/// Reads a plan in the model's format (see [`super::prompt::plan_schema`]) and checks it against
/// `devices` (the online ones, as shown to the model) and the request `text`. Every problem
/// found is reported.
pub(crate) fn plan(
    answer: &str,
    devices: &[&DeviceProfile],
    text: &str,
) -> Result<Answer, Vec<String>> {
    let mut v = json_object(answer).map_err(|e| vec![e])?;
    strip_nulls(&mut v);
    if let Some(reason) = v.get("refuse").and_then(Value::as_str)
        && !reason.trim().is_empty()
    {
        return Ok(Answer::Refuse(reason.trim().to_owned()));
    }
    let Some(tasks) = v.get("tasks").and_then(Value::as_array) else {
        return Err(vec![
            "the answer must be a JSON object with a `tasks` array".into(),
        ]);
    };
    let lower = text.to_lowercase();
    let mut read: Vec<Result<(TaskSpec, Vec<PlannedEdge>), String>> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            model_task(t).map_err(|e| {
                let id = t.get("id").and_then(Value::as_str).unwrap_or("?");
                format!("tasks[{i}] (id {id}): {e}")
            })
        })
        .collect();
    for (spec, _) in read.iter_mut().flatten() {
        super::mend::fetch_for_url_read(&mut spec.action);
    }
    // A title's kind first: "on the laptop" is more precise than the one device the request
    // names among those that run the tool.
    place_by_kind_in_title(&mut read, devices);
    for (spec, _) in read.iter_mut().flatten() {
        place(spec, devices, &lower);
    }
    let mut errors = Vec::new();
    let mut planned = Vec::with_capacity(tasks.len());
    let mut edges = Vec::new();
    for r in read {
        match r {
            Ok((spec, task_edges)) => {
                let (t, problem) = task(spec, devices);
                errors.extend(problem);
                planned.push(t);
                edges.extend(task_edges);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut plan = Plan {
        tasks: planned,
        edges,
    };
    super::mend::paths_as_named(&mut plan, text);
    add_edges_for_references(&mut plan);
    errors.extend(super::transfer::declare_referenced_files(&mut plan));
    super::mend::split_directory_write(&mut plan);
    if let Err(e) = plan.validate(&Limits::default()) {
        errors.push(e.to_string());
    }
    super::review::move_to_named_devices(&mut plan, devices, text);
    super::review::move_by_quoted_literals(&mut plan, devices, text);
    super::transfer::pull_from_named_source(&mut plan, devices, text);
    super::review::move_to_either_kind(&mut plan, devices, text);
    super::review::move_writes_where_named(&mut plan, devices, text);
    errors.extend(super::review::named_devices_unused(&plan, devices, text));
    if errors.is_empty() {
        super::transfer::move_files_as_files(&mut plan);
        Ok(Answer::Plan(plan))
    } else {
        Err(errors)
    }
}

/// One task of the model's format: `{"id", "name", "needs", "on", "run", "when"}` (also read:
/// `title`, `after`, `device`, `action`), as a [`TaskSpec`] and the edges into it.
fn model_task(t: &Value) -> Result<(TaskSpec, Vec<PlannedEdge>), String> {
    let o = t.as_object().ok_or("a task must be a JSON object")?;
    const KNOWN: [&str; 10] = [
        "id", "name", "needs", "on", "run", "when", "title", "after", "device", "action",
    ];
    for k in o.keys() {
        if !KNOWN.contains(&k.as_str()) {
            return Err(format!(
                "unknown field `{k}`; a task has id, name, needs, on, run and when"
            ));
        }
    }
    let get = |k: &str, alias: &str| o.get(k).or_else(|| o.get(alias));
    let text = |k: &str, alias: &str| get(k, alias).and_then(Value::as_str).map(str::to_owned);
    let id = TaskId::new(text("id", "id").ok_or("`id` is missing (use t1, t2, …)")?);
    let name = text("name", "title").unwrap_or_default();
    let device = text("on", "device").ok_or("`on` is missing: name the device that runs it")?;
    let run = get("run", "action").ok_or("`run` is missing: the tool and its arguments")?;
    let (action, max_turns) = actions::read(run).map_err(|e| format!("`run`: {e}"))?;
    let needs = match get("needs", "after") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(_) => return Err("`needs` must be a list of task ids".into()),
    };
    let when = match o.get("when") {
        None => None,
        Some(w) => Some(when(w).map_err(|e| format!("`when`: {e}"))?),
    };
    // A condition on the task's own output cannot be decided before it runs: the model meant
    // the task to run, so it runs unconditionally (as a task that "needs" itself does).
    let when = when.filter(|(from, _)| *from != id);
    let mut edges: Vec<PlannedEdge> = Vec::new();
    for from in needs {
        let from = TaskId::from(from.as_str().ok_or("`needs` must be a list of task ids")?);
        // A task that "needs" itself means nothing more than the task: no edge.
        let redundant = from == id
            || when.as_ref().is_some_and(|(on, _)| *on == from)
            || edges.iter().any(|e| e.from == from);
        if !redundant {
            edges.push(PlannedEdge {
                from,
                to: id.clone(),
                kind: EdgeKind::Success,
                condition: None,
            });
        }
    }
    if let Some((from, condition)) = when {
        edges.push(PlannedEdge {
            from,
            to: id.clone(),
            kind: EdgeKind::Condition,
            condition: Some(condition),
        });
    }
    let spec = TaskSpec {
        id,
        title: name.clone(),
        instruction: name,
        action,
        device: Some(DeviceName::from(device)),
        device_kind: None,
        capabilities: Vec::new(),
        retry: None,
        max_turns,
        inputs: None,
        outputs: None,
    };
    Ok((spec, edges))
}

/// `{"from", "op", "path", "value"}`: a condition on a field of an upstream task's output data.
fn when(w: &Value) -> Result<(TaskId, Condition), String> {
    let o = w
        .as_object()
        .ok_or("must be an object {from, op, path, value} or null")?;
    let task = o
        .get("from")
        .or_else(|| o.get("task"))
        .and_then(Value::as_str)
        .ok_or("`from` is missing: the task whose output decides")?;
    let task = TaskId::from(task);
    let mut c = w.clone();
    if let Some(c) = c.as_object_mut() {
        c.remove("from");
        c.remove("task");
        c.entry("on").or_insert_with(|| Value::from("data"));
    }
    let c: Condition = serde_json::from_value(c).map_err(|e| e.to_string())?;
    crate::condition::validate(&c)?;
    Ok((task, c))
}

/// A task that refers to another's output (`{{t1.output}}`) waits for it: the reference says
/// so even when the model forgot `after`. Adds a `success` edge for each such pair that has no
/// edge yet (a cycle this makes is reported by [`Plan::validate`]).
fn add_edges_for_references(plan: &mut Plan) {
    let ids: BTreeSet<&TaskId> = plan.tasks.iter().map(|t| &t.id).collect();
    let mut added = Vec::new();
    for t in &plan.tasks {
        let Ok(refs) = crate::refs::task_references(&t.instruction, t.action.as_ref()) else {
            continue;
        };
        for r in refs {
            let linked = plan
                .edges
                .iter()
                .chain(&added)
                .any(|e: &PlannedEdge| e.from == r.task && e.to == t.id);
            if r.task != t.id && ids.contains(&r.task) && !linked {
                added.push(PlannedEdge {
                    from: r.task,
                    to: t.id.clone(),
                    kind: EdgeKind::Success,
                    condition: None,
                });
            }
        }
    }
    plan.edges.extend(added);
}

/// Moves a task whose device does not run its tool to the one device that does, or to the one
/// of those that the request (`text`, lowercase) names. A choice with a single answer is made
/// here rather than asked of the model in a repair round, which a small model often gets wrong.
fn place(spec: &mut TaskSpec, devices: &[&DeviceProfile], text: &str) {
    let Some((chosen, executor, tool)) = misplaced(spec, devices) else {
        return;
    };
    let able: Vec<&DeviceProfile> = devices
        .iter()
        .copied()
        .filter(|d| runs(d, executor, tool))
        .collect();
    let named: Vec<&DeviceProfile> = able
        .iter()
        .copied()
        .filter(|d| super::review::named_as(d, devices, text).is_some())
        .collect();
    let pick = match (able.as_slice(), named.as_slice()) {
        ([only], _) | (_, [only]) => *only,
        _ => return,
    };
    tracing::debug!(
        task = %spec.id, tool, from = %chosen.info.name, to = %pick.info.name,
        "moved a task to the only device that runs its tool"
    );
    spec.device = Some(pick.info.name.clone());
}

/// For a task whose tool its device (one of `devices`, advertising tools) does not run: that
/// device, and the tool's executor and name.
fn misplaced<'a>(
    spec: &'a TaskSpec,
    devices: &[&'a DeviceProfile],
) -> Option<(&'a DeviceProfile, &'static str, &'a str)> {
    let (executor, tool) = spec.action.as_ref().and_then(tool_of)?;
    let name = spec.device.as_ref()?;
    let on = devices.iter().copied().find(|d| &d.info.name == name)?;
    (!on.tools.is_empty() && !runs(on, executor, tool)).then_some((on, executor, tool))
}

/// Whether device `d` advertises `executor`'s tool `tool`.
fn runs(d: &DeviceProfile, executor: &str, tool: &str) -> bool {
    d.tools
        .iter()
        .any(|t| t.executor == executor && t.name == tool)
}

/// Moves each task still on a device that does not run its tool, whose title names a device
/// kind ("add it on the laptop"), to a device of that kind that runs the tool and has no
/// identical task (same tool, same arguments) yet: "both laptops" planned as two tasks titled
/// for laptops but put on the server go one to each laptop. Devices are taken in name order;
/// a task with no such device left stays where it is (and is refused for repair).
fn place_by_kind_in_title(
    read: &mut [Result<(TaskSpec, Vec<PlannedEdge>), String>],
    devices: &[&DeviceProfile],
) {
    for i in 0..read.len() {
        let Ok((spec, _)) = &read[i] else { continue };
        let Some((_, executor, tool)) = misplaced(spec, devices) else {
            continue;
        };
        let title = spec.title.to_lowercase();
        let words: Vec<&str> = title
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .collect();
        let action = spec.action.clone();
        let pick = devices.iter().find(|d| {
            let kind = d.info.kind.as_str();
            let plural = format!("{kind}s");
            words.iter().any(|w| *w == kind || *w == plural)
                && runs(d, executor, tool)
                && !read.iter().flatten().any(|(other, _)| {
                    other.device.as_ref() == Some(&d.info.name) && other.action == action
                })
        });
        if let Some(d) = pick {
            tracing::debug!(task = %spec.id, to = %d.info.name, "moved to a device of the kind its title names");
            let name = d.info.name.clone();
            if let Ok((spec, _)) = &mut read[i] {
                spec.device = Some(name);
            }
        }
    }
}

/// One task, and what is wrong with it: an empty instruction, a turn limit out of range, or a
/// target no online device can satisfy.
fn task(spec: TaskSpec, devices: &[&DeviceProfile]) -> (PlannedTask, Option<String>) {
    let mut required: BTreeSet<String> = spec.capabilities.iter().cloned().collect();
    match &spec.action {
        Some(a) => required.insert(a.capability().to_owned()),
        None => required.insert("llm".to_owned()),
    };
    let problem = check_task(&spec, &required, devices);
    let title = if spec.title.trim().is_empty() {
        spec.instruction
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        spec.title.clone()
    };
    let target = match (spec.device, spec.device_kind) {
        (Some(name), _) => Target::Device(name),
        (None, Some(kind)) => Target::Kind(kind),
        (None, None) => Target::Any,
    };
    let task = PlannedTask {
        id: spec.id,
        title: cut_title(&title),
        instruction: spec.instruction,
        action: spec.action,
        target,
        capabilities: required.into_iter().collect(),
        max_turns: spec.max_turns,
        // The model declares no files: its references to them do (`declare_referenced_files`);
        // a spec (a revision's task) carries its own through.
        outputs: spec.outputs.map(|f| f.files).unwrap_or_default(),
        inputs: spec.inputs.map(|f| f.files).unwrap_or_default(),
    };
    (task, problem.err())
}

fn check_task(
    spec: &TaskSpec,
    required: &BTreeSet<String>,
    devices: &[&DeviceProfile],
) -> Result<(), String> {
    let id = &spec.id;
    if spec.instruction.trim().is_empty() {
        return Err(format!("task {id}: the instruction is empty"));
    }
    if let Some(n) = spec.max_turns
        && !(1..=MAX_TURNS).contains(&n)
    {
        return Err(format!(
            "task {id}: max_turns must be 1-{MAX_TURNS} (or null)"
        ));
    }
    let has_all = |d: &DeviceProfile| required.iter().all(|c| d.info.capabilities.contains(c));
    let wanted = required.iter().cloned().collect::<Vec<_>>().join(", ");
    match (&spec.device, &spec.device_kind) {
        (Some(name), _) => {
            let Some(d) = devices.iter().find(|d| &d.info.name == name) else {
                let names: Vec<String> = devices.iter().map(|d| d.info.name.to_string()).collect();
                return Err(format!(
                    "task {id}: device `{name}` is not one of the online devices ({})",
                    names.join(", ")
                ));
            };
            if !has_all(d) {
                return Err(missing(
                    id.as_str(),
                    spec,
                    &format!("device `{name}`"),
                    &wanted,
                    d,
                ));
            }
            if let Some((executor, tool)) = spec.action.as_ref().and_then(tool_of)
                && !d.tools.is_empty()
                && !d
                    .tools
                    .iter()
                    .any(|t| t.executor == executor && t.name == tool)
            {
                let mut has: Vec<&str> = d
                    .tools
                    .iter()
                    .filter(|t| t.executor == executor)
                    .map(|t| t.name.as_str())
                    .collect();
                has.sort_unstable();
                return Err(format!(
                    "task {id}: device `{name}` does not run the tool `{tool}`; run it on a \
                     device that does, or use one of {name}'s: {}",
                    has.join(", ")
                ));
            }
        }
        (None, Some(kind)) => {
            let of_kind: Vec<&&DeviceProfile> =
                devices.iter().filter(|d| &d.info.kind == kind).collect();
            if of_kind.is_empty() {
                let kinds: BTreeSet<&str> = devices.iter().map(|d| d.info.kind.as_str()).collect();
                return Err(format!(
                    "task {id}: no online device is of kind `{kind}` (kinds online: {})",
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            if !of_kind.iter().any(|d| has_all(d)) {
                return Err(no_capable(
                    id.as_str(),
                    spec,
                    &format!("of kind `{kind}`"),
                    &wanted,
                ));
            }
        }
        (None, None) => {
            if !devices.iter().any(|d| has_all(d)) {
                return Err(no_capable(id.as_str(), spec, "", &wanted));
            }
        }
    }
    Ok(())
}

/// The executor and tool of an action that names one (`sim`, `phone`, `adb`).
pub(super) fn tool_of(a: &weft_protocol::Action) -> Option<(&'static str, &str)> {
    match a {
        weft_protocol::Action::Sim { op, .. } => Some(("sim", op)),
        weft_protocol::Action::Phone { tool, .. } => Some(("phone", tool)),
        weft_protocol::Action::Adb { tool, .. } => Some(("adb", tool)),
        _ => None,
    }
}

fn missing(id: &str, spec: &TaskSpec, who: &str, wanted: &str, d: &DeviceProfile) -> String {
    let mut has = d.info.capabilities.clone();
    has.sort();
    let why = if spec.action.is_none() {
        " (a task without an action needs `llm`: give it an explicit action)"
    } else {
        ""
    };
    format!(
        "task {id}: {who} lacks a capability the task needs; it needs {wanted}{why} and the \
         device has {}",
        has.join(", ")
    )
}

fn no_capable(id: &str, spec: &TaskSpec, which: &str, wanted: &str) -> String {
    let which = if which.is_empty() {
        String::new()
    } else {
        format!("{which} ")
    };
    if spec.action.is_none() {
        format!(
            "task {id} has no action, so it needs a device with the `llm` capability, and no \
             online device {which}has it: give the task an explicit action"
        )
    } else {
        format!("task {id}: no online device {which}has every capability it needs ({wanted})")
    }
}

fn cut_title(title: &str) -> String {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::shorten(&title, MAX_TITLE_CHARS)
}

/// Reads a revision: `finish`, or `edit` with well-formed ops. (The engine checks the ops
/// against the live graph when it applies them.)
pub(crate) fn revision(answer: &str) -> Result<Revision, Vec<String>> {
    let mut v = json_object(answer).map_err(|e| vec![e])?;
    strip_nulls(&mut v);
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match v.get("decision").and_then(Value::as_str) {
        Some("finish") => Ok(Revision::Finish { reason }),
        Some("edit") => {
            let Some(ops) = v.get("ops").and_then(Value::as_array) else {
                return Err(vec![
                    "\"decision\": \"edit\" needs an `ops` array (or answer \"finish\")".into(),
                ]);
            };
            if ops.is_empty() {
                return Err(vec![
                    "`ops` is empty: give at least one op, or answer \"decision\": \"finish\""
                        .into(),
                ]);
            }
            if ops.len() > MAX_OPS {
                return Err(vec![format!(
                    "{} ops; at most {MAX_OPS} fit in one edit",
                    ops.len()
                )]);
            }
            let mut parsed = Vec::with_capacity(ops.len());
            let mut errors = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                if let Some(o) = op.as_object()
                    && let Some(Value::Object(t)) = o.get("task")
                    && t.contains_key("retry")
                {
                    errors.push(format!(
                        "ops[{i}]: `retry` is set by the server; leave it out"
                    ));
                    continue;
                }
                match serde_json::from_value::<EditOp>(op.clone()) {
                    Ok(op) => parsed.push(op),
                    Err(e) => errors.push(format!("ops[{i}]: {e}")),
                }
            }
            if errors.is_empty() {
                Ok(Revision::Edit {
                    ops: parsed,
                    reason,
                    answer: answer.to_owned(),
                })
            } else {
                Err(errors)
            }
        }
        _ => Err(vec!["`decision` must be \"finish\" or \"edit\"".into()]),
    }
}

/// The JSON object in an answer: the whole text, or inside a Markdown code fence, or from the
/// first `{` to the last `}` when the model wrapped it in prose.
fn json_object(answer: &str) -> Result<Value, String> {
    let text = answer.trim();
    let unfenced = text
        .strip_prefix("```")
        .map(|rest| {
            let rest = rest.split_once('\n').map_or("", |(_, body)| body);
            rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
        })
        .unwrap_or(text);
    let first = serde_json::from_str::<Value>(unfenced);
    let v = match first {
        Ok(v) => v,
        Err(e) => {
            let inner = match (unfenced.find('{'), unfenced.rfind('}')) {
                (Some(a), Some(b)) if a < b => serde_json::from_str::<Value>(&unfenced[a..=b]).ok(),
                _ => None,
            };
            inner.ok_or_else(|| format!("the answer is not a JSON object: {e}"))?
        }
    };
    if v.is_object() {
        Ok(v)
    } else {
        Err("the answer must be a JSON object, not an array or a scalar".into())
    }
}

/// Removes `null` members of objects, everywhere: `null` means "not set" in every field the
/// model writes (strict JSON Schemas make it write them).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceInfo;

    fn devices() -> Vec<DeviceProfile> {
        [
            ("laptop", "laptop", &["fs", "http", "shell"][..]),
            ("phone", "phone", &["fs", "http"][..]),
            ("server", "server", &["shell"][..]),
        ]
        .into_iter()
        .map(|(name, kind, caps)| DeviceProfile {
            info: DeviceInfo {
                name: name.into(),
                kind: kind.into(),
                capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
                online: true,
            },
            platform: Some("linux-x86_64".into()),
            tools: Vec::new(),
        })
        .collect()
    }

    /// Parses `answer` (to the request `text`) and renders the outcome:
    /// `ok: t1@laptop[shell] t2@phone[fs] | t1>t2:success`, `refuse: …`, or the errors joined by
    /// ` / `.
    fn check_for(text: &str, answer: &str, expect: &str) {
        let devices = devices();
        let refs: Vec<&DeviceProfile> = devices.iter().collect();
        let got = match plan(answer, &refs, text) {
            Ok(Answer::Plan(p)) => {
                let tasks: Vec<String> = p
                    .tasks
                    .iter()
                    .map(|t| {
                        let target = match &t.target {
                            Target::Device(d) => d.to_string(),
                            Target::Kind(k) => format!("kind:{k}"),
                            Target::Any => "*".into(),
                        };
                        format!("{}@{target}[{}]", t.id, t.capabilities.join(","))
                    })
                    .collect();
                let edges: Vec<String> = p
                    .edges
                    .iter()
                    .map(|e| format!("{}>{}:{}", e.from, e.to, e.kind.as_str()))
                    .collect();
                format!("ok: {} | {}", tasks.join(" "), edges.join(" "))
            }
            Ok(Answer::Refuse(why)) => format!("refuse: {why}"),
            Err(e) => e.join(" / "),
        };
        assert_eq!(got, expect, "answer: {answer}");
    }

    fn check(answer: &str, expect: &str) {
        check_for("do it", answer, expect);
    }

    const T1: &str = r#"{"id": "t1", "name": "say hi", "needs": [], "on": "laptop", "run": {"tool": "shell", "with": {"command": "echo hi"}}, "when": null}"#;

    #[test]
    fn a_good_plan() {
        check(
            &format!(
                r#"{{"refuse": null, "tasks": [{T1}, {{"id": "t2", "name": "save it", "needs": ["t1", "t2"], "on": "phone", "run": {{"tool": "write_file", "with": {{"path": "a.txt", "content": "{{{{t1.output}}}}"}}}}, "when": null}}]}}"#
            ),
            "ok: t1@laptop[shell] t2@phone[fs] | t1>t2:success",
        );
        // In a code fence, without `refuse` and `when`, with the long names.
        check(
            "```json\n{\"tasks\": [{\"id\": \"t1\", \"title\": \"x\", \"device\": \"server\", \"after\": [], \"action\": {\"tool\": \"shell\", \"with\": {\"command\": \"true\"}}}]}\n```",
            "ok: t1@server[shell] | ",
        );
        // Prose around the object.
        check(
            &format!("Here is the plan: {{\"tasks\": [{T1}]}} Enjoy."),
            "ok: t1@laptop[shell] | ",
        );
    }

    #[test]
    fn when_makes_a_condition_edge_and_references_make_edges() {
        check(
            &format!(
                r#"{{"tasks": [{T1}, {{"id": "t2", "name": "if", "on": "laptop", "needs": ["t1"], "when": {{"from": "t1", "path": "/exit_code", "op": "equals", "value": 0}}, "run": {{"tool": "shell", "with": {{"command": "echo {{{{t1.output}}}}"}}}}}}, {{"id": "t3", "name": "forgot needs", "on": "phone", "needs": [], "run": {{"tool": "write_file", "with": {{"path": "x", "content": "{{{{t2.output}}}}"}}}}}}]}}"#
            ),
            "ok: t1@laptop[shell] t2@laptop[shell] t3@phone[fs] | t1>t2:condition t2>t3:success",
        );
        check(
            &format!(
                r#"{{"tasks": [{T1}, {{"id": "t2", "name": "if", "on": "laptop", "when": {{"from": "t1", "path": "/exit_code", "op": "exists", "value": 1}}, "run": {{"tool": "shell", "with": {{"command": "true"}}}}}}]}}"#
            ),
            "tasks[1] (id t2): `when`: `exists` takes no `value`",
        );
        // A condition on the task's own output is dropped: the task runs.
        check(
            &format!(
                r#"{{"tasks": [{T1}, {{"id": "t2", "name": "self", "on": "laptop", "when": {{"from": "t2", "path": "/x", "op": "equals", "value": 1}}, "run": {{"tool": "shell", "with": {{"command": "true"}}}}}}]}}"#
            ),
            "ok: t1@laptop[shell] t2@laptop[shell] | ",
        );
    }

    #[test]
    fn a_refusal() {
        check(
            r#"{"refuse": "it would delete your files", "tasks": []}"#,
            "refuse: it would delete your files",
        );
    }

    #[test]
    fn not_json() {
        check(
            "I think you should run echo",
            "the answer is not a JSON object: expected value at line 1 column 1",
        );
        check(
            "[1, 2]",
            "the answer must be a JSON object, not an array or a scalar",
        );
        check(
            r#"{"steps": []}"#,
            "the answer must be a JSON object with a `tasks` array",
        );
    }

    #[test]
    fn every_task_error_is_reported() {
        check(
            r#"{"tasks": [{"id": "t1", "name": "x", "colour": "red"}, {"id": "t2", "name": "y", "on": "laptop", "run": {"tool": "shell", "with": {"cmd": "ls"}}}, {"id": "t3", "name": "z", "run": {"tool": "shell", "with": {"command": "ls"}}}]}"#,
            "tasks[0] (id t1): unknown field `colour`; a task has id, name, needs, on, run and \
             when / tasks[1] (id t2): `run`: tool `shell`: unknown field `cmd`, expected \
             `command` / tasks[2] (id t3): `on` is missing: name the device that runs it",
        );
    }

    #[test]
    fn devices_and_capabilities_must_exist() {
        check(
            r#"{"tasks": [{"id": "t1", "name": "x", "on": "toaster", "run": {"tool": "shell", "with": {"command": "x"}}}, {"id": "t2", "name": "y", "on": "phone", "run": {"tool": "shell", "with": {"command": "x"}}}, {"id": "t4", "name": "think about it", "on": "laptop", "run": {"tool": "llm", "with": {"max_turns": 3}}}]}"#,
            "task t1: device `toaster` is not one of the online devices (laptop, phone, server) / \
             task t2: device `phone` lacks a capability the task needs; it needs shell and the \
             device has fs, http / \
             task t4: device `laptop` lacks a capability the task needs; it needs llm (a task \
             without an action needs `llm`: give it an explicit action) and the device has fs, \
             http, shell",
        );
    }

    #[test]
    fn a_tool_must_be_one_the_device_runs() {
        let mut devs = devices();
        devs[2].info.capabilities.push("sim".into());
        devs[2].tools = vec![weft_protocol::ToolSpec {
            executor: "sim".into(),
            name: "metric.read".into(),
            description: "read a metric".into(),
            args: serde_json::json!({"type": "object"}),
        }];
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let answer = r#"{"tasks": [{"id": "t1", "name": "x", "on": "server", "run": {"tool": "notify", "with": {"title": "a", "body": "b"}}}, {"id": "t2", "name": "y", "on": "server", "run": {"tool": "metric.read", "with": {"name": "cpu"}}}]}"#;
        let Err(e) = plan(answer, &refs, "do it") else {
            panic!("refused");
        };
        assert_eq!(
            e,
            [
                "task t1: device `server` does not run the tool `notify`; run it on a device that \
              does, or use one of server's: metric.read"
            ]
        );
    }

    #[test]
    fn a_tool_only_one_device_runs_moves_the_task_there() {
        let op = |name: &str| weft_protocol::ToolSpec {
            executor: "sim".into(),
            name: name.into(),
            description: String::new(),
            args: serde_json::json!({"type": "object"}),
        };
        let mut devs = devices();
        for d in &mut devs {
            d.info.capabilities.push("sim".into());
            d.tools = vec![op("metric.read")];
        }
        devs[1].tools.push(op("message.send"));
        devs[0].tools.push(op("message.send"));
        devs[0].tools.push(op("photo.take"));
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let task = |id: &str, tool: &str, with: &str| {
            format!(
                r#"{{"id": "{id}", "name": "x", "on": "server", "run": {{"tool": "{tool}", "with": {with}}}}}"#
            )
        };
        let answer = format!(
            r#"{{"tasks": [{}, {}]}}"#,
            task("t1", "photo.take", "{}"),
            task("t2", "message.send", r#"{"to": "Sam", "text": "hi"}"#)
        );
        // Only the laptop takes photos; of the two that send messages, the request names the phone.
        let Ok(Answer::Plan(p)) = plan(&answer, &refs, "snap a photo and text Sam from my phone")
        else {
            panic!("refused");
        };
        let on: Vec<String> = p.tasks.iter().map(|t| format!("{:?}", t.target)).collect();
        assert_eq!(
            on,
            [
                r#"Device(DeviceName("laptop"))"#,
                r#"Device(DeviceName("phone"))"#
            ]
        );
        // Two devices send messages and the request names neither: the model must choose.
        let Err(e) = plan(&answer, &refs, "snap a photo and text Sam") else {
            panic!("accepted");
        };
        assert!(
            e[0].starts_with("task t2: device `server` does not run the tool `message.send`"),
            "{e:?}"
        );
    }

    #[test]
    fn a_task_titled_for_a_kind_moves_to_a_device_of_that_kind_without_the_same_task() {
        let op = |name: &str| weft_protocol::ToolSpec {
            executor: "sim".into(),
            name: name.into(),
            description: String::new(),
            args: serde_json::json!({"type": "object"}),
        };
        let mut devs = devices();
        devs.push(DeviceProfile {
            info: DeviceInfo {
                name: "laptop-2".into(),
                kind: "laptop".into(),
                capabilities: vec![],
                online: true,
            },
            platform: None,
            tools: vec![],
        });
        for d in &mut devs {
            d.info.capabilities.push("sim".into());
            d.tools = vec![op("metric.read")];
            if d.info.kind != "server" {
                d.tools.push(op("calendar.add"));
            }
        }
        let refs: Vec<&DeviceProfile> = devs.iter().collect();
        let add = |id: &str, title: &str, on: &str, start: &str| {
            format!(
                r#"{{"id": "{id}", "name": "{title}", "on": "{on}", "run": {{"tool": "calendar.add", "with": {{"title": "Dentist", "start": "{start}"}}}}}}"#
            )
        };
        let on = |answer: &str| -> Vec<String> {
            match plan(
                answer,
                &refs,
                "add Dentist to the calendars of both laptops",
            ) {
                Ok(Answer::Plan(p)) => p
                    .tasks
                    .iter()
                    .map(|t| match &t.target {
                        Target::Device(d) => d.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect(),
                Err(e) => e,
                Ok(other) => vec![format!("{other:?}")],
            }
        };
        // Both on the server, titled for laptops: one to each laptop, in name order.
        assert_eq!(
            on(&format!(
                r#"{{"tasks": [{}, {}]}}"#,
                add("t1", "on the work Laptop", "server", "2026-05-04T08:30"),
                add("t2", "on the home laptop", "server", "2026-05-04T08:30"),
            )),
            ["laptop", "laptop-2"]
        );
        // A laptop that already has the same event is not given it twice: with both taken, the
        // second task stays on the server and is refused for repair.
        let e = on(&format!(
            r#"{{"tasks": [{}, {}, {}]}}"#,
            add("t1", "laptops", "server", "2026-05-04T08:30"),
            add("t2", "on the laptop", "server", "2026-05-04T08:30"),
            add("t3", "mine", "laptop-2", "2026-05-04T08:30"),
        ));
        assert!(
            e.len() == 1 && e[0].starts_with("task t2: device `server` does not run the tool"),
            "{e:?}"
        );
        // A different event still goes there; a title naming no kind moves nothing.
        assert_eq!(
            on(&format!(
                r#"{{"tasks": [{}, {}]}}"#,
                add("t1", "on my phone", "server", "2026-05-04T08:30"),
                add("t2", "the laptop too", "phone", "2026-05-05T08:30"),
            )),
            ["phone", "phone"]
        );
        let e = on(&format!(
            r#"{{"tasks": [{}]}}"#,
            add("t1", "add it", "server", "2026-05-04T08:30")
        ));
        assert!(e[0].starts_with("task t1: device `server`"), "{e:?}");
    }

    #[test]
    fn a_device_the_request_names_must_be_used() {
        check_for(
            "print hi on the server",
            &format!(r#"{{"tasks": [{T1}]}}"#),
            "the request names the device server (as \"server\" in \"print hi on the server\") \
             but no task runs on it: add a task with \"on\": \"server\" for that step and keep \
             the tasks that are right (to move data between devices, read it on one and write \
             it on the other)",
        );
    }

    #[test]
    fn structural_errors_come_from_plan_validate() {
        let t = |id: &str, after: &str| {
            format!(
                r#"{{"id": "{id}", "name": "x", "on": "server", "needs": [{after}], "run": {{"tool": "shell", "with": {{"command": "true"}}}}}}"#
            )
        };
        check(
            &format!(
                r#"{{"tasks": [{}, {}]}}"#,
                t("t1", r#""t2""#),
                t("t2", r#""t1""#)
            ),
            "invalid plan: the task graph has a cycle (involving t1, t2)",
        );
        check(
            &format!(r#"{{"tasks": [{}]}}"#, t("t1", r#""t9""#)),
            "invalid plan: edge t9 -> t1 names a task that is not in the plan",
        );
        check(r#"{"tasks": []}"#, "invalid plan: the plan has no tasks");
    }

    #[test]
    fn revisions() {
        let check = |answer: &str, expect: &str| {
            let got = match revision(answer) {
                Ok(Revision::Finish { reason }) => format!("finish: {reason}"),
                Ok(Revision::Edit { ops, .. }) => format!(
                    "edit: {}",
                    ops.iter().map(EditOp::name).collect::<Vec<_>>().join(" ")
                ),
                Err(e) => e.join(" / "),
            };
            assert_eq!(got, expect, "answer: {answer}");
        };
        check(
            r#"{"decision": "finish", "reason": "done"}"#,
            "finish: done",
        );
        check(r#"{"decision": "finish", "ops": null}"#, "finish: ");
        check(
            r#"{"decision": "edit", "ops": [{"op": "add_task", "task": {"id": "t3", "instruction": "x", "action": {"kind": "shell", "command": "true"}, "device": null}}, {"op": "add_edge", "from": "t1", "to": "t3", "condition": null}]}"#,
            "edit: add_task add_edge",
        );
        check(
            r#"{"decision": "edit", "ops": []}"#,
            "`ops` is empty: give at least one op, or answer \"decision\": \"finish\"",
        );
        check(
            r#"{"decision": "edit", "ops": [{"op": "explode"}, {"op": "remove_task"}]}"#,
            "ops[0]: unknown variant `explode`, expected one of `add_task`, `remove_task`, \
             `update_task`, `add_edge`, `remove_edge` / ops[1]: missing field `task_id`",
        );
        check(
            r#"{"decision": "maybe"}"#,
            "`decision` must be \"finish\" or \"edit\"",
        );
    }
}
