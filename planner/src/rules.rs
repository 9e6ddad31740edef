//! The rules planner: offline, deterministic planning of imperative English.
//!
//! A request is steps separated by `then`; a step is clauses separated by `,` or `and`, which run
//! in parallel; every task of a step waits (success edges) for every task of the step before.
//! A clause is one action (`run`, `fetch`, `write`, `read`) with an optional `on DEVICE`.
//! `write the result to PATH` writes the output of the step before: its content is a reference
//! (`{{t1.output}}`, see [`crate::refs`]) to each task of that step. The full grammar, with
//! examples, is in `docs/rules-planner.md`.
//!
//! Planning runs in stages, each its own module: [`lexer`] (text → tokens), [`split`] (tokens →
//! steps of clauses), [`clause`] (clause → action and device word); this module resolves device
//! words against the registered devices and builds the [`Plan`].

mod clause;
mod lexer;
mod split;

use std::borrow::Borrow;

use weft_protocol::{Action, EdgeKind, TaskId};

use self::clause::Job;
use self::split::Piece;
use crate::text::shorten;
use crate::{
    DeviceInfo, Error, Limits, Plan, PlanFuture, PlanInput, PlannedEdge, PlannedTask, Planner,
    Target, refs,
};

/// Device kinds understood after `on` even when no registered device has them yet.
const WELL_KNOWN_KINDS: [&str; 6] = ["laptop", "phone", "server", "desktop", "tablet", "edge"];

/// The longest task title, in characters; longer titles end with `…`.
const MAX_TITLE_CHARS: usize = 80;

/// The offline planner for imperative English (`on laptop run "make test" then …`).
#[derive(Debug, Clone, Default)]
pub struct RulesPlanner;

/// A clause that was understood, before its device word is resolved.
#[derive(Debug)]
struct Draft<'t> {
    /// The clause as written.
    instruction: &'t str,
    device: Option<&'t str>,
    job: Job,
}

impl RulesPlanner {
    /// The rules planner; it has no configuration.
    pub fn new() -> Self {
        Self
    }

    /// Plans `text` for the registered `devices`. Pure and deterministic; never panics.
    ///
    /// Errors: [`Error::Empty`] for blank text, [`Error::TooLarge`] beyond [`Limits::default`],
    /// [`Error::Unplannable`] when any part is not understood, [`Error::UnknownDevice`] when an
    /// `on DEVICE` matches neither a registered name nor a kind.
    pub fn plan_sync(&self, text: &str, devices: &[DeviceInfo]) -> Result<Plan, Error> {
        plan_for(text, devices)
    }
}

/// [`RulesPlanner::plan_sync`] for any list that holds device infos (the planner's profiles
/// are read in place).
fn plan_for<D: Borrow<DeviceInfo>>(text: &str, devices: &[D]) -> Result<Plan, Error> {
    if text.trim().is_empty() {
        return Err(Error::Empty);
    }
    let limits = Limits::default();
    let tokens = lexer::lex(text);
    let steps = split::split(&tokens);
    check_task_count(&steps, &limits)?;
    let drafts = parse_steps(text, &steps)?;
    let plan = build_plan(&drafts, devices)?;
    plan.validate(&limits)?;
    Ok(plan)
}

impl Planner for RulesPlanner {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn plan<'a>(&'a self, input: PlanInput<'a>) -> PlanFuture<'a> {
        Box::pin(std::future::ready(plan_for(input.text, input.devices)))
    }
}

/// Refuses more clauses than a plan may have tasks, before parsing any of them.
fn check_task_count(steps: &[Vec<Piece<'_>>], limits: &Limits) -> Result<(), Error> {
    let count = steps
        .iter()
        .flatten()
        .filter(|p| matches!(p, Piece::Clause(_)))
        .count();
    if count > limits.max_tasks {
        return Err(Error::TooLarge {
            what: "tasks",
            count,
            limit: limits.max_tasks,
        });
    }
    Ok(())
}

/// Parses every clause, collecting what was and was not understood, in order of appearance.
///
/// A clause is not understood either when a `{{…}}` in its action is malformed or misplaced
/// ([`refs::task_references`]), or when it writes "the result" with no earlier step.
fn parse_steps<'t>(text: &'t str, steps: &[Vec<Piece<'t>>]) -> Result<Vec<Vec<Draft<'t>>>, Error> {
    let mut understood = Vec::new();
    let mut not_understood = Vec::new();
    let mut drafts = Vec::with_capacity(steps.len());
    let mut earlier_step = false;
    for step in steps {
        let mut step_drafts = Vec::with_capacity(step.len());
        for piece in step {
            let tokens = match piece {
                Piece::Clause(tokens) => *tokens,
                Piece::Gap(gap) => {
                    not_understood.push(gap.clone());
                    continue;
                }
            };
            let instruction = clause_text(text, tokens);
            let parsed = clause::parse(tokens).and_then(|c| match &c.job {
                Job::Action(action) => match refs::task_references("", Some(action)) {
                    Ok(_) => Ok(c),
                    Err(why) => Err(Some(why)),
                },
                Job::WriteResult { .. } if !earlier_step => Err(Some(NO_EARLIER_RESULT.to_owned())),
                Job::WriteResult { .. } => Ok(c),
                Job::Copy { from: None, .. } if c.device.is_none() => {
                    Err(Some(SEND_NEEDS_A_SOURCE.to_owned()))
                }
                Job::Copy { .. } => Ok(c),
            });
            match parsed {
                Ok(c) => {
                    understood.push(instruction.to_owned());
                    step_drafts.push(Draft {
                        instruction,
                        device: c.device,
                        job: c.job,
                    });
                }
                Err(None) => not_understood.push(format!("\"{instruction}\"")),
                Err(Some(why)) => not_understood.push(format!("\"{instruction}\" ({why})")),
            }
        }
        earlier_step |= step.iter().any(|p| matches!(p, Piece::Clause(_)));
        drafts.push(step_drafts);
    }
    if !not_understood.is_empty() {
        return Err(Error::Unplannable {
            understood,
            not_understood,
        });
    }
    Ok(drafts)
}

/// The request text a clause's tokens cover, from the first token's start to the last one's end.
fn clause_text<'t>(text: &'t str, tokens: &[lexer::Token]) -> &'t str {
    match (tokens.first(), tokens.last()) {
        (Some(first), Some(last)) => text.get(first.start..last.end).unwrap_or_default(),
        _ => "",
    }
}

/// Resolves the word after `on`: a registered device name (any case) first, then a registered or
/// well-known device kind.
fn resolve_device<D: Borrow<DeviceInfo>>(word: &str, devices: &[D]) -> Result<Target, Error> {
    let devices = || devices.iter().map(Borrow::borrow);
    if let Some(d) = devices().find(|d: &&DeviceInfo| d.name.as_str().eq_ignore_ascii_case(word)) {
        return Ok(Target::Device(d.name.clone()));
    }
    let kind = word.to_ascii_lowercase();
    let registered_kind = devices().any(|d: &DeviceInfo| d.kind.eq_ignore_ascii_case(&kind));
    if registered_kind || WELL_KNOWN_KINDS.contains(&kind.as_str()) {
        return Ok(Target::Kind(kind));
    }
    let mut known: Vec<String> = devices().map(|d: &DeviceInfo| d.name.to_string()).collect();
    known.sort();
    Err(Error::UnknownDevice {
        name: word.to_owned(),
        known,
    })
}

/// Builds the plan: tasks `t1`, `t2`, … in order, and a success edge from every task of a step to
/// every task of the next non-empty step. A copy is two tasks, the sending one first (it is
/// what the step before leads to) and the receiving one last (what the next step waits for).
/// Fails on the first unknown device.
fn build_plan<D: Borrow<DeviceInfo>>(
    drafts: &[Vec<Draft<'_>>],
    devices: &[D],
) -> Result<Plan, Error> {
    let mut plan = Plan::default();
    let mut previous: Vec<TaskId> = Vec::new();
    for step in drafts.iter().filter(|s| !s.is_empty()) {
        let mut current = Vec::with_capacity(step.len());
        // The tasks the step before leads to, and those the next step waits for.
        let mut starts = Vec::with_capacity(step.len());
        for draft in step {
            let id = TaskId(format!("t{}", plan.tasks.len() + 1));
            if let Job::Copy { path, from, to } = &draft.job {
                let source = from.as_deref().or(draft.device).unwrap_or_default();
                let [send, receive] =
                    copy_tasks(&id, draft.instruction, path, source, to, devices)?;
                success_edge(&mut plan, &send.id, &receive.id);
                starts.push(send.id.clone());
                current.push(receive.id.clone());
                plan.tasks.extend([send, receive]);
                continue;
            }
            plan.tasks
                .push(task(id.clone(), draft, &previous, devices)?);
            starts.push(id.clone());
            current.push(id);
        }
        for from in &previous {
            for to in &starts {
                success_edge(&mut plan, from, to);
            }
        }
        previous = current;
    }
    Ok(plan)
}

fn success_edge(plan: &mut Plan, from: &TaskId, to: &TaskId) {
    plan.edges.push(PlannedEdge {
        from: from.clone(),
        to: to.clone(),
        kind: EdgeKind::Success,
        condition: None,
    });
}

/// The two tasks of `copy PATH from SOURCE to DEST` (or `on SOURCE send PATH to DEST`): `id`
/// on the source declares `path` as its output (its action lists the directory the file is in,
/// `fs`'s `read_file` of a directory: it reads none of the file's bytes, and shows its size);
/// the next on the destination copies the fetched file to `path` in its own workdir
/// (`copy_file`, also `fs`: it makes the directories).
fn copy_tasks<D: Borrow<DeviceInfo>>(
    id: &TaskId,
    instruction: &str,
    path: &str,
    source: &str,
    dest: &str,
    devices: &[D],
) -> Result<[PlannedTask; 2], Error> {
    let dir = path.rsplit_once('/').map_or(".", |(dir, _)| dir);
    let send = Action::ReadFile {
        path: dir.to_owned(),
    };
    let receive_id = TaskId(format!(
        "t{}",
        id.as_str()[1..].parse::<usize>().unwrap_or(0) + 1
    ));
    // `{{t1.files.NAME}}` when NAME can be written in a reference; else all of t1's files,
    // which is that one file.
    let reference = if path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-+@/".contains(c))
    {
        format!("{{{{{id}.files.{path}}}}}")
    } else {
        format!("{{{{{id}.files}}}}")
    };
    let receive = Action::CopyFile {
        from: reference,
        to: path.to_owned(),
    };
    let shown = one_line(path);
    Ok([
        PlannedTask {
            id: id.clone(),
            title: shorten(&format!("send {shown}"), MAX_TITLE_CHARS),
            instruction: instruction.to_owned(),
            capabilities: vec![send.capability().to_owned()],
            action: Some(send),
            target: resolve_device(source, devices)?,
            max_turns: None,
            outputs: vec![path.to_owned()],
            inputs: Vec::new(),
        },
        PlannedTask {
            id: receive_id,
            title: shorten(&format!("receive {shown}"), MAX_TITLE_CHARS),
            instruction: instruction.to_owned(),
            capabilities: vec![receive.capability().to_owned()],
            action: Some(receive),
            target: resolve_device(dest, devices)?,
            max_turns: None,
            outputs: Vec::new(),
            inputs: Vec::new(),
        },
    ])
}

/// The task for one understood clause; `previous` are the tasks of the step before.
fn task<D: Borrow<DeviceInfo>>(
    id: TaskId,
    draft: &Draft<'_>,
    previous: &[TaskId],
    devices: &[D],
) -> Result<PlannedTask, Error> {
    let target = match draft.device {
        Some(word) => resolve_device(word, devices)?,
        None => Target::Any,
    };
    let (action, title) = match &draft.job {
        Job::Action(action) => (action.clone(), title(action)),
        // Two tasks: built by `copy_tasks`, never here.
        Job::Copy { .. } => {
            return Err(Error::InvalidPlan(format!(
                "task {id}: a copy is two tasks"
            )));
        }
        Job::WriteResult { path } => {
            let content: Vec<String> = previous
                .iter()
                .map(|p| format!("{{{{{p}.output}}}}"))
                .collect();
            let what = if previous.len() == 1 {
                "result"
            } else {
                "results"
            };
            let title = shorten(
                &format!("write {what} to {}", one_line(path)),
                MAX_TITLE_CHARS,
            );
            let action = Action::WriteFile {
                path: path.clone(),
                content: content.join("\n"),
            };
            (action, title)
        }
    };
    Ok(PlannedTask {
        id,
        title,
        instruction: draft.instruction.to_owned(),
        capabilities: vec![action.capability().to_owned()],
        action: Some(action),
        target,
        max_turns: None,
        outputs: Vec::new(),
        inputs: Vec::new(),
    })
}

/// Why `write the result` cannot be the first step.
const NO_EARLIER_RESULT: &str = "there is no earlier result to write: \"the result\" is the output \
     of the step before \"then\", e.g. run \"date\" then write the result to date.txt";

/// Why `send PATH to DEVICE` needs `on DEVICE`.
const SEND_NEEDS_A_SOURCE: &str = "send needs the device the file is on: on laptop send \
     notes/a.txt to phone, or copy notes/a.txt from laptop to phone";

/// A short human title: `` run `echo hi` ``, `fetch URL`, `write PATH`, `read PATH`.
fn title(action: &Action) -> String {
    let full = match action {
        Action::Shell { command } => format!("run `{}`", one_line(command)),
        Action::HttpGet { url } => format!("fetch {url}"),
        Action::WriteFile { path, .. } => format!("write {}", one_line(path)),
        Action::ReadFile { path } => format!("read {}", one_line(path)),
        Action::CopyFile { to, .. } => format!("copy to {}", one_line(to)),
        Action::Steps { steps, .. } => format!("{steps} steps"),
        Action::Phone { tool, .. } => format!("phone {tool}"),
        Action::Adb { tool, .. } => format!("adb {tool}"),
        Action::Sim { op, .. } => format!("sim {op}"),
    };
    shorten(&full, MAX_TITLE_CHARS)
}

/// `text` with every run of whitespace (newlines included) turned into one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
