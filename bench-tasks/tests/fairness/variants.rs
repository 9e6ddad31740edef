//! Shortcut variants of a reference plan: every branch run, everything on one device.

use std::collections::BTreeSet;

use weft_bench::suite::TaskFile;
use weft_bench::suite::devices;
use weft_protocol::{Action, EdgeKind};

/// The plan has condition edges.
pub fn has_conditions(t: &TaskFile) -> bool {
    t.plan.edges.iter().any(|e| e.kind == EdgeKind::Condition)
}

/// The plan with every condition edge made a completion edge: every branch runs.
pub fn every_branch(t: &TaskFile) -> TaskFile {
    let mut v = t.clone();
    for e in &mut v.plan.edges {
        if e.kind == EdgeKind::Condition {
            e.kind = EdgeKind::Completion;
            e.condition = None;
        }
    }
    v
}

/// The plan with every task on `device`.
pub fn on_one_device(t: &TaskFile, device: &str) -> TaskFile {
    let mut v = t.clone();
    for task in &mut v.plan.tasks {
        task.device = Some(device.into());
        task.device_kind = None;
    }
    v
}

/// The devices the plan names (by name, or `kind:KIND`).
pub fn plan_devices(t: &TaskFile) -> BTreeSet<String> {
    t.plan.tasks.iter().map(label).collect()
}

fn label(task: &weft_protocol::rest::TaskSpec) -> String {
    match (&task.device, &task.device_kind) {
        (Some(d), _) => d.as_str().to_owned(),
        (None, Some(k)) => format!("kind:{k}"),
        (None, None) => "anywhere".to_owned(),
    }
}

/// Tasks of the plan reached through a condition edge (they may not run).
fn conditional(t: &TaskFile) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = t
        .plan
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Condition)
        .map(|e| e.to.as_str().to_owned())
        .collect();
    loop {
        let more: Vec<String> = t
            .plan
            .edges
            .iter()
            .filter(|e| out.contains(e.from.as_str()) && !out.contains(e.to.as_str()))
            .map(|e| e.to.as_str().to_owned())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

/// Where the plan's unconditional tasks read or change device state: every task but HTTP
/// fetches and `data.*` computations (which leave no trace and could run anywhere), by device
/// name or `kind:KIND`.
pub fn state_devices(t: &TaskFile) -> BTreeSet<String> {
    let skip = conditional(t);
    t.plan
        .tasks
        .iter()
        .filter(|task| !skip.contains(task.id.as_str()))
        .filter(|task| match &task.action {
            Some(Action::Sim { op, .. }) => !op.starts_with("data."),
            Some(Action::HttpGet { .. }) | None => false,
            Some(_) => true,
        })
        .map(label)
        .collect()
}

/// Whether `device` can run every task of the plan (its executors, and the apps its profile
/// has for each `sim` op).
fn can_run_all(t: &TaskFile, device: &devices::Device) -> bool {
    let Some(profile) = weft_agent::sim::profile(device.name) else {
        return false;
    };
    let ops: Vec<String> = weft_agent::sim::specs(profile)
        .into_iter()
        .map(|s| s.name)
        .collect();
    t.plan.tasks.iter().all(|task| match &task.action {
        Some(Action::Sim { op, .. }) => device.executors.contains(&"sim") && ops.contains(op),
        Some(Action::HttpGet { .. }) => device.executors.contains(&"http"),
        _ => false,
    })
}

/// The devices a one-device shortcut could pick: those the plan uses (either laptop for a
/// task placed on any laptop) that can run every task of it.
pub fn one_devices_for(t: &TaskFile) -> Vec<&'static str> {
    let used = plan_devices(t);
    devices::all()
        .iter()
        .filter(|d| used.contains(d.name) || used.contains(&format!("kind:{}", d.kind)))
        .filter(|d| can_run_all(t, d))
        .map(|d| d.name)
        .collect()
}
