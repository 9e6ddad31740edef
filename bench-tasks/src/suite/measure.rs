//! Figures read from a finished request: subtask completion, attempts, retries,
//! re-placements, parallel width from the attempt timelines, recovery time.

use std::collections::{BTreeMap, BTreeSet};

use weft_protocol::rest::{EdgeView, GraphSpec, RequestView};
use weft_protocol::{AttemptStatus, EdgeKind, TaskId, TaskStatus};

/// What the attempts of one request show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Tasks in the final graph.
    pub subtasks: u32,
    /// Tasks that succeeded, or were skipped as the graph intends (a condition that did not
    /// hold, with nothing failed upstream).
    pub completed: u32,
    pub attempts: u32,
    /// Attempts after the first, over all tasks.
    pub retries: u32,
    /// Attempts on another device than the attempt before.
    pub replacements: u32,
    /// Attempts that ended lost or timed out.
    pub lost: u32,
    /// `task: code` of each task that failed.
    pub errors: Vec<String>,
}

/// Counts for `view`.
pub fn counts(view: &RequestView) -> Counts {
    let failed: BTreeSet<&TaskId> = view
        .tasks
        .iter()
        .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled))
        .map(|t| &t.id)
        .collect();
    let upstream = upstream_map(&view.edges);
    let mut c = Counts {
        subtasks: view.tasks.len() as u32,
        ..Counts::default()
    };
    for t in &view.tasks {
        let intended_skip = t.status == TaskStatus::Skipped
            && ancestors(&upstream, &t.id)
                .iter()
                .all(|a| !failed.contains(a));
        if t.status == TaskStatus::Succeeded || intended_skip {
            c.completed += 1;
        }
        c.attempts += t.attempts.len() as u32;
        c.retries += t.attempts.len().saturating_sub(1) as u32;
        c.replacements += t
            .attempts
            .windows(2)
            .filter(|w| w[0].device != w[1].device)
            .count() as u32;
        c.lost += t
            .attempts
            .iter()
            .filter(|a| matches!(a.status, AttemptStatus::Lost | AttemptStatus::TimedOut))
            .count() as u32;
        if t.status == TaskStatus::Failed {
            let code = t.error.as_ref().map_or("failed", |e| e.code.as_str());
            c.errors.push(format!("{}: {code}", t.id));
        }
    }
    c
}

fn upstream_map(edges: &[EdgeView]) -> BTreeMap<&TaskId, Vec<&TaskId>> {
    let mut m: BTreeMap<&TaskId, Vec<&TaskId>> = BTreeMap::new();
    for e in edges {
        m.entry(&e.to).or_default().push(&e.from);
    }
    m
}

fn ancestors<'a>(
    up: &BTreeMap<&'a TaskId, Vec<&'a TaskId>>,
    t: &'a TaskId,
) -> BTreeSet<&'a TaskId> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![t];
    while let Some(x) = stack.pop() {
        for p in up.get(x).into_iter().flatten() {
            if seen.insert(*p) {
                stack.push(p);
            }
        }
    }
    seen
}

/// Parallel width from attempt timelines `[start, end)` in ms: the time-weighted mean number
/// of attempts running while any runs, and the most at once.
pub fn width(intervals: &[(u64, u64)]) -> (f64, u32) {
    let mut points: Vec<(u64, i32)> = Vec::new();
    for &(s, e) in intervals {
        if e > s {
            points.push((s, 1));
            points.push((e, -1));
        }
    }
    // Ends before starts at the same instant: touching attempts do not overlap.
    points.sort();
    let (mut running, mut max, mut busy, mut weighted) = (0i32, 0i32, 0u64, 0u64);
    let mut last = 0u64;
    for (t, d) in points {
        if running > 0 {
            busy += t - last;
            weighted += (t - last) * running as u64;
        }
        running += d;
        max = max.max(running);
        last = t;
    }
    if busy == 0 {
        (
            if intervals.is_empty() { 0.0 } else { 1.0 },
            max.max(0) as u32,
        )
    } else {
        (weighted as f64 / busy as f64, max as u32)
    }
}

/// The attempt intervals of a request (attempts that have ended).
pub fn intervals(view: &RequestView) -> Vec<(u64, u64)> {
    view.tasks
        .iter()
        .flat_map(|t| &t.attempts)
        .filter_map(|a| a.ended_at_ms.map(|e| (a.started_at_ms, e)))
        .collect()
}

/// For each task that had a failed, lost or timed-out attempt and then succeeded: the time from
/// the end of its first such attempt to the end of its successful one, in ms.
pub fn recoveries(view: &RequestView) -> Vec<u64> {
    view.tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Succeeded)
        .filter_map(|t| {
            let first_bad = t.attempts.iter().find(|a| {
                matches!(
                    a.status,
                    AttemptStatus::Failed
                        | AttemptStatus::Lost
                        | AttemptStatus::TimedOut
                        | AttemptStatus::Rejected
                )
            })?;
            let good = t
                .attempts
                .iter()
                .rev()
                .find(|a| a.status == AttemptStatus::Succeeded)?;
            Some(
                good.ended_at_ms?
                    .saturating_sub(first_bad.ended_at_ms.unwrap_or(first_bad.started_at_ms)),
            )
        })
        .collect()
}

/// The graph's structural width: tasks per level of its longest path (1.0 for a chain).
pub fn graph_width(graph: &GraphSpec) -> f64 {
    let n = graph.tasks.len();
    if n == 0 {
        return 0.0;
    }
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    // The plan is acyclic; relax until nothing changes (n rounds at most).
    for _ in 0..n {
        let mut changed = false;
        for e in &graph.edges {
            let d = depth.get(e.from.as_str()).copied().unwrap_or(1) + 1;
            if depth.get(e.to.as_str()).copied().unwrap_or(1) < d {
                depth.insert(e.to.as_str(), d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let longest = graph
        .tasks
        .iter()
        .map(|t| depth.get(t.id.as_str()).copied().unwrap_or(1))
        .max()
        .unwrap_or(1);
    n as f64 / longest as f64
}

/// The same tasks made into one chain: in a topological order (file order among the ready),
/// an extra `completion` edge from every task to every later one, where no edge joins them
/// yet. A completion edge waits for the task to end however it ended, so the graph still runs
/// exactly the tasks it would have run in parallel, one after another. (Edges to every later
/// task, not only the next: a task skipped by a condition ends at once, and must not let the
/// one after it start beside an earlier one still running.)
pub fn sequential(graph: &GraphSpec) -> GraphSpec {
    let order = topo_order(graph);
    let mut g = graph.clone();
    for (k, &i) in order.iter().enumerate() {
        for &j in &order[k + 1..] {
            let (from, to) = (&graph.tasks[i].id, &graph.tasks[j].id);
            if !g.edges.iter().any(|e| &e.from == from && &e.to == to) {
                g.edges.push(EdgeView {
                    from: from.clone(),
                    to: to.clone(),
                    kind: EdgeKind::Completion,
                    condition: None,
                });
            }
        }
    }
    g
}

/// Task indices in a topological order, earliest in the file first among those ready.
fn topo_order(graph: &GraphSpec) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = graph
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut indegree = vec![0usize; graph.tasks.len()];
    for e in &graph.edges {
        if let Some(&i) = index.get(e.to.as_str()) {
            indegree[i] += 1;
        }
    }
    let mut done = vec![false; graph.tasks.len()];
    let mut order = Vec::new();
    while order.len() < graph.tasks.len() {
        let Some(next) = (0..graph.tasks.len()).find(|&i| !done[i] && indegree[i] == 0) else {
            break; // a cycle: the orchestrator refuses it anyway
        };
        done[next] = true;
        order.push(next);
        for e in &graph.edges {
            if e.from == graph.tasks[next].id
                && let Some(&i) = index.get(e.to.as_str())
            {
                indegree[i] -= 1;
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use weft_protocol::rest::TaskSpec;

    use super::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> GraphSpec {
        GraphSpec {
            tasks: (1..=n)
                .map(|i| TaskSpec {
                    id: format!("t{i}").as_str().into(),
                    title: String::new(),
                    instruction: format!("task {i}"),
                    action: None,
                    device: None,
                    device_kind: None,
                    capabilities: vec![],
                    retry: None,
                    max_turns: None,
                    inputs: None,
                    outputs: None,
                })
                .collect(),
            edges: edges
                .iter()
                .map(|(a, b)| EdgeView {
                    from: format!("t{a}").as_str().into(),
                    to: format!("t{b}").as_str().into(),
                    kind: EdgeKind::Success,
                    condition: None,
                })
                .collect(),
        }
    }

    fn edges(g: &GraphSpec) -> String {
        g.edges
            .iter()
            .map(|e| format!("{}>{}:{}", e.from, e.to, e.kind.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn sequential_chains_in_topological_order() {
        // t1, t2 -> t3; t4 independent.
        let g = graph(4, &[(1, 3), (2, 3)]);
        assert_eq!(
            edges(&sequential(&g)),
            "t1>t3:success t2>t3:success t1>t2:completion t1>t4:completion \
             t2>t4:completion t3>t4:completion"
        );
        assert_eq!(graph_width(&g), 2.0);
        assert_eq!(graph_width(&sequential(&g)), 1.0);
        // A later task that is an upstream of an earlier one comes first.
        let g = graph(3, &[(3, 1)]);
        assert_eq!(
            edges(&sequential(&g)),
            "t3>t1:success t2>t3:completion t2>t1:completion"
        );
    }

    #[test]
    fn width_from_timelines() {
        assert_eq!(width(&[]), (0.0, 0));
        assert_eq!(width(&[(0, 10), (10, 20)]), (1.0, 1));
        assert_eq!(width(&[(0, 10), (0, 10)]), (2.0, 2));
        // 0-5: 1, 5-10: 3, 10-20: 1 → (5 + 15 + 10) / 20.
        assert_eq!(width(&[(0, 10), (5, 20), (5, 10)]), (1.5, 3));
    }
}
