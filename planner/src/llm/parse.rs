//! Reading the model's answers: a plan, or a revision. Every problem found is reported, in
//! words the model can act on, so that a repair round can fix them all at once.

use std::collections::BTreeSet;

use serde_json::Value;
use weft_protocol::rest::{EdgeView, EditOp, TaskSpec};

use crate::revise::Revision;
use crate::{DeviceProfile, Limits, Plan, PlannedEdge, PlannedTask, Target};

/// The most turns a planned task may ask for.
const MAX_TURNS: u32 = 1000;

/// The most ops in one revision (the engine's limit per edit batch).
const MAX_OPS: usize = 100;

/// The longest title kept, in characters.
const MAX_TITLE_CHARS: usize = 80;

/// Reads a plan and checks it against `devices` (the online ones, as shown to the model).
pub(crate) fn plan(answer: &str, devices: &[&DeviceProfile]) -> Result<Plan, Vec<String>> {
    let v = json_object(answer).map_err(|e| vec![e])?;
    let Some(tasks) = v.get("tasks").and_then(Value::as_array) else {
        return Err(vec![
            "the answer must be a JSON object with a `tasks` array and an `edges` array".into(),
        ]);
    };
    let edges = match v.get("edges") {
        None => &Vec::new(),
        Some(Value::Array(e)) => e,
        Some(_) => return Err(vec!["`edges` must be an array".into()]),
    };
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let mut t = t.clone();
        strip_nulls(&mut t);
        if let Some(o) = t.as_object_mut() {
            // The server sets retry policies, not the model.
            o.remove("retry");
        }
        let id = t
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        match serde_json::from_value::<TaskSpec>(t) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(format!("tasks[{i}] (id {id}): {e}")),
        }
    }
    let mut planned_edges = Vec::new();
    for (i, e) in edges.iter().enumerate() {
        let mut e = e.clone();
        strip_nulls(&mut e);
        if let Some(o) = e.as_object_mut() {
            o.entry("kind").or_insert_with(|| Value::from("success"));
        }
        match serde_json::from_value::<EdgeView>(e) {
            Ok(e) => planned_edges.push(PlannedEdge {
                from: e.from,
                to: e.to,
                kind: e.kind,
                condition: e.condition,
            }),
            Err(err) => errors.push(format!("edges[{i}]: {err}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut planned = Vec::with_capacity(specs.len());
    for spec in specs {
        let (t, problem) = task(spec, devices);
        planned.push(t);
        errors.extend(problem);
    }
    let plan = Plan {
        tasks: planned,
        edges: planned_edges,
    };
    if let Err(e) = plan.validate(&Limits::default()) {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
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
    if title.chars().count() <= MAX_TITLE_CHARS {
        return title;
    }
    let mut t: String = title.chars().take(MAX_TITLE_CHARS - 1).collect();
    t.push('…');
    t
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
        })
        .collect()
    }

    /// Parses `answer` and renders the outcome: `ok: t1@laptop[shell] t2@*[fs] | t1>t2` or the
    /// errors joined by ` / `.
    fn check(answer: &str, expect: &str) {
        let devices = devices();
        let refs: Vec<&DeviceProfile> = devices.iter().collect();
        let got = match plan(answer, &refs) {
            Ok(p) => {
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
            Err(e) => e.join(" / "),
        };
        assert_eq!(got, expect, "answer: {answer}");
    }

    const T1: &str = r#"{"id": "t1", "title": "hi", "instruction": "say hi", "action": {"kind": "shell", "command": "echo hi"}, "device": "laptop", "device_kind": null, "capabilities": [], "max_turns": null}"#;

    #[test]
    fn a_good_plan() {
        check(
            &format!(
                r#"{{"tasks": [{T1}, {{"id": "t2", "instruction": "save it", "action": {{"kind": "write_file", "path": "a.txt", "content": "{{{{t1.output}}}}"}}}}], "edges": [{{"from": "t1", "to": "t2", "kind": "success", "condition": null}}]}}"#
            ),
            "ok: t1@laptop[shell] t2@*[fs] | t1>t2:success",
        );
        // In a code fence, without `edges`, a kind instead of a device.
        check(
            "```json\n{\"tasks\": [{\"id\": \"a\", \"instruction\": \"x\", \"device_kind\": \"server\", \"action\": {\"kind\": \"shell\", \"command\": \"true\"}}]}\n```",
            "ok: a@kind:server[shell] | ",
        );
        // Prose around the object.
        check(
            &format!("Here is the plan: {{\"tasks\": [{T1}], \"edges\": []}} Enjoy."),
            "ok: t1@laptop[shell] | ",
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
            "the answer must be a JSON object with a `tasks` array and an `edges` array",
        );
    }

    #[test]
    fn schema_errors_name_the_task_or_edge() {
        check(
            r#"{"tasks": [{"id": "t1", "instruction": "x", "colour": "red"}, {"id": "t2", "instruction": "y", "action": {"kind": "shell", "cmd": "ls"}}], "edges": [{"from": "t1"}]}"#,
            "tasks[0] (id t1): unknown field `colour`, expected one of `id`, `title`, \
             `instruction`, `action`, `device`, `device_kind`, `capabilities`, `retry`, \
             `max_turns` / tasks[1] (id t2): unknown field `cmd`, expected `command` / \
             edges[0]: missing field `to`",
        );
    }

    #[test]
    fn devices_and_capabilities_must_exist() {
        check(
            r#"{"tasks": [{"id": "t1", "instruction": "x", "device": "toaster", "action": {"kind": "shell", "command": "x"}}, {"id": "t2", "instruction": "y", "device": "phone", "action": {"kind": "shell", "command": "x"}}, {"id": "t3", "instruction": "z", "device_kind": "tablet", "action": {"kind": "shell", "command": "x"}}, {"id": "t4", "instruction": "think about it"}]}"#,
            "task t1: device `toaster` is not one of the online devices (laptop, phone, server) / \
             task t2: device `phone` lacks a capability the task needs; it needs shell and the \
             device has fs, http / \
             task t3: no online device is of kind `tablet` (kinds online: laptop, phone, server) / \
             task t4 has no action, so it needs a device with the `llm` capability, and no \
             online device has it: give the task an explicit action",
        );
    }

    #[test]
    fn structural_errors_come_from_plan_validate() {
        let t = |id: &str| {
            format!(
                r#"{{"id": "{id}", "instruction": "x", "action": {{"kind": "shell", "command": "true"}}}}"#
            )
        };
        check(
            &format!(
                r#"{{"tasks": [{}, {}], "edges": [{{"from": "t1", "to": "t2"}}, {{"from": "t2", "to": "t1"}}]}}"#,
                t("t1"),
                t("t2")
            ),
            "invalid plan: the task graph has a cycle (involving t1, t2)",
        );
        check(
            r#"{"tasks": [{"id": "t1", "instruction": "x", "action": {"kind": "shell", "command": "echo {{t2.output}}"}}, {"id": "t2", "instruction": "y", "action": {"kind": "shell", "command": "true"}}]}"#,
            "invalid plan: task t1 refers to t2 ({{t2.output}}), which is not upstream of it",
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
