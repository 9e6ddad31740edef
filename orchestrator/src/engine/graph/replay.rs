//! A graph rebuilt from its journal alone, and what the journal determines of a graph.

use std::collections::HashMap;

use weft_protocol::rest::EventKind;
use weft_protocol::{TaskId, TaskStatus};

use super::{Graph, Task, TaskDefaults};

impl Graph {
    /// Rebuilds a request's graph from its journal alone: the tasks and edges it was created
    /// with, every accepted edit batch, and every status change with its output. The result
    /// equals the live graph ([`Graph::snapshot`]): the journal is enough to recover it.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a EventKind>,
        defaults: &TaskDefaults,
    ) -> Result<Self, String> {
        let mut graph: Option<Graph> = None;
        let ctx = crate::engine::EditCtx {
            devices: HashMap::new(),
            check_targets: false,
            defaults: defaults.clone(),
            now_ms: 0,
        };
        for ev in events {
            let g = graph.as_mut();
            match (ev, g) {
                (EventKind::RequestCreated { tasks, edges, .. }, None) => {
                    let mut g = Graph::from_records(Vec::new(), &[], 0)?;
                    for (i, spec) in tasks.iter().enumerate() {
                        let position = u32::try_from(i).unwrap_or(u32::MAX);
                        g.insert(Task::from_spec(spec, position, defaults))?;
                    }
                    for e in edges {
                        g.insert_edge(e)?;
                    }
                    graph = Some(g);
                }
                (EventKind::GraphEdited { ops, .. }, Some(g)) => {
                    g.apply_ops(ops, &ctx).map_err(|e| e.message)?;
                }
                (
                    EventKind::TaskStatus {
                        task_id,
                        status,
                        output,
                        files,
                        ..
                    },
                    Some(g),
                ) => {
                    g.replay_status(task_id, *status)?;
                    if let Some(t) = g.task_mut(task_id) {
                        if output.is_some() {
                            t.output.clone_from(output);
                        }
                        if !files.is_empty() {
                            t.produced.clone_from(files);
                        }
                    }
                }
                (EventKind::TaskRetrying { task_id, .. }, Some(g)) => {
                    g.replay_status(task_id, TaskStatus::Ready)?;
                }
                (EventKind::RequestCreated { .. }, Some(_)) => {
                    return Err("a second request_created event".into());
                }
                (_, None) => return Err("events before request_created".into()),
                _ => {}
            }
        }
        graph.ok_or_else(|| "no request_created event".into())
    }

    /// A journaled status change, made the one way statuses change. The journal records only
    /// transitions that were made, so a refused one means the journal is not this graph's.
    fn replay_status(&mut self, id: &TaskId, to: TaskStatus) -> Result<(), String> {
        let from = self
            .task(id)
            .ok_or_else(|| format!("status of unknown task {id}"))?
            .status;
        if from == to {
            return Ok(());
        }
        self.transition(id, to).map_err(|e| e.to_string())
    }

    /// What the journal determines: every task's definition, status and output, and the
    /// edges. Two graphs with equal snapshots are the same graph.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        for t in self.tasks() {
            out.push_str(&format!(
                "{} [{}] {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}\n",
                t.id,
                t.status.as_str(),
                t.title,
                t.instruction,
                t.action,
                t.target,
                t.capabilities,
                t.output,
                t.files,
                t.produced
            ));
        }
        for e in self.edges() {
            out.push_str(&format!(
                "{} -> {} {:?} {:?}\n",
                e.from, e.to, e.kind, e.condition
            ));
        }
        out
    }
}
