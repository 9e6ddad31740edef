//! Rebuilding the unfinished requests from the store at start.

use weft_protocol::RequestId;
use weft_protocol::TaskStatus;
use weft_protocol::rest::EventKind;

use super::attempts::Live;
use super::{Engine, Request, millis};
use crate::Error;
use crate::engine::LiveRequest;
use crate::engine::graph::Graph;
use crate::store::{Batch, Op};

impl Engine {
    /// Rebuilds every unfinished request from the store after a restart. Attempts that were in
    /// flight wait for their device as if it had just disconnected: reattached if it comes
    /// back holding them within the grace window, tried again otherwise.
    pub(super) async fn resume(&mut self) -> Result<(), Error> {
        let now = self.now();
        let live = self.store.load_live().await?;
        let mut b = Batch::default();
        // No device is connected to this engine yet, whatever an earlier one (another replica,
        // or this process before a restart) wrote; standbys read this.
        b.op(Op::DevicesOffline);
        let (mut requests, mut attempts) = (0, 0);
        for row in live {
            let id = row.id.clone();
            attempts += self.resume_request(row, now)?;
            requests += 1;
            // A request whose every task ended but that was not closed cannot occur (both are
            // written in one transaction); settle it anyway rather than leave it running.
            self.close_if_ended(&mut b, &id, now);
        }
        self.stage(b);
        self.flush().await?;
        if attempts > 0 {
            self.wake_at(now + millis(self.opts.lost_grace));
        }
        if requests > 0 {
            tracing::info!(
                requests,
                in_flight = attempts,
                "resumed unfinished requests"
            );
        }
        Ok(())
    }

    /// Rebuilds one request, its attempts in flight waiting for their devices from `now`.
    /// Returns how many attempts were in flight.
    fn resume_request(&mut self, row: LiveRequest, now: u64) -> Result<usize, Error> {
        let mut graph = Graph::from_records(row.tasks, &row.edges, now)
            .map_err(|e| Error::Corrupt(format!("request {}: {e}", row.id)))?;
        for (task, used) in &row.attempts_used {
            if let Some(t) = graph.task_mut(task) {
                t.attempts_used = *used;
            }
        }
        let in_flight = row.in_flight.len();
        for a in row.in_flight {
            let known = graph.task(&a.task_id).is_some_and(|t| {
                matches!(t.status(), TaskStatus::Dispatched | TaskStatus::Running)
            }) && self.devices.contains(&a.device);
            let Some(t) = graph.task_mut(&a.task_id).filter(|_| known) else {
                return Err(Error::Corrupt(format!(
                    "attempt {} is in flight for task {} which is not",
                    a.id, a.task_id
                )));
            };
            t.attempt = Some(a.id.clone());
            let uses_turns = t.uses_turns();
            let tid = t.id.clone();
            self.devices.occupy(&a.device, &a.id);
            // The blobs its device may still download: as its `assign` named them.
            let inputs = super::files::inputs(&graph, &tid, &a.id)
                .map(|i| i.files.into_iter().map(|f| f.file).collect())
                .unwrap_or_default();
            let live = Live {
                request: row.id.clone(),
                task: a.task_id,
                device: a.device,
                status: a.status,
                deadline_ms: a.deadline_ms,
                lost_since: Some(now),
                // Its device answers by holding it when it comes back, or it is lost.
                awaiting_answer_since: None,
                uses_turns,
                max_turns: a.max_turns,
                turns_used: a.turns_used,
                inputs,
            };
            self.attempts.insert(a.id, live);
        }
        let request = Request {
            graph,
            version: row.version,
            cancelling: row.cancel_requested,
            turns: row.turns,
        };
        self.requests.insert(row.id, request);
        Ok(in_flight)
    }

    /// Closes a request whose every task has ended.
    fn close_if_ended(&mut self, b: &mut Batch, id: &RequestId, now: u64) {
        let Some(outcome) = self.requests.get(id).and_then(|r| r.graph.outcome()) else {
            return;
        };
        self.requests.remove(id);
        b.op(Op::UpdateRequest {
            id: id.clone(),
            status: outcome,
            error: None,
            at_ms: now,
        });
        let status = EventKind::RequestStatus {
            status: outcome,
            error: None,
        };
        b.event(id, status);
    }
}
