//! What the engine has changed but not yet handed to the committer: the current group's row
//! changes, its numbered journal events, and what waits for its commit (replies, frames to
//! devices, device views). Handing it over is the only way any of it leaves the engine.
//!
//! A `running` status superseded in its own group is not journaled: when an attempt's accept
//! and its result (or its failure, cancel or loss) are handled in one group, the task's
//! journal goes `dispatched` → the outcome, a transition the graph allows and `Graph::replay`
//! makes. No one can have seen the `running` event (events leave only after their group's
//! commit), its row change is folded into the outcome's by the store anyway, and one journal
//! row less per quick subtask is written, published and streamed (BENCHMARKS.md, issue 16
//! part 4).

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use weft_protocol::rest::{DeviceView, Event, EventKind};
use weft_protocol::{AttemptId, DeviceName, RequestId, ServerMsg, TaskStatus};

use super::committer::{Effect, Group};
use crate::Error;
use crate::engine::{ConnId, Outbound};
use crate::store::{Batch, Op};

#[derive(Debug)]
pub(super) struct Outbox {
    /// Changes of the current group, not yet handed to the committer.
    pending: Group,
    /// Journal position of the last event staged: the engine is the journal's only writer.
    last_seq: u64,
    /// Where groups go to be committed, in order.
    committer: mpsc::Sender<Group>,
    /// The current group's `running` events, by request and attempt: their index in
    /// `pending.events`.
    running: HashMap<(RequestId, AttemptId), usize>,
    /// Indexes of `pending.events` superseded in the group, dropped (and the events after them
    /// renumbered) when it is handed over.
    superseded: Vec<usize>,
}

impl Outbox {
    /// An outbox whose next event is numbered `last_seq + 1`.
    pub fn new(committer: mpsc::Sender<Group>, last_seq: u64) -> Self {
        Self {
            pending: Group::default(),
            last_seq,
            committer,
            running: HashMap::new(),
            superseded: Vec::new(),
        }
    }

    /// Adds `batch` to the current group, numbering its events (stamped `at_ms`).
    pub fn stage(&mut self, batch: Batch, at_ms: u64) {
        self.pending.ops.extend(batch.ops);
        for (request_id, kind) in batch.events {
            if let Some((attempt, running)) = attempt_status(&kind) {
                let key = (request_id.clone(), attempt.clone());
                if running {
                    self.running.insert(key, self.pending.events.len());
                } else if let Some(i) = self.running.remove(&key) {
                    self.superseded.push(i);
                }
            }
            self.last_seq += 1;
            self.pending.events.push(Event {
                seq: self.last_seq,
                request_id,
                at_ms,
                kind,
            });
        }
    }

    /// A row change without an event (device rows).
    pub fn op(&mut self, op: Op) {
        self.pending.ops.push(op);
    }

    /// Answers a caller once the current group is committed.
    pub fn reply<T: Send + 'static>(&mut self, to: oneshot::Sender<T>, value: T) {
        self.pending.effects.push(Effect::Reply(Box::new(move || {
            let _ = to.send(value);
        })));
    }

    /// Sends a frame to one connection once the current group is committed.
    pub fn frame(&mut self, device: &DeviceName, (conn, tx): &(ConnId, Outbound), msg: ServerMsg) {
        self.pending.effects.push(Effect::Frame {
            device: device.clone(),
            conn: *conn,
            tx: tx.clone(),
            msg: Box::new(msg),
        });
    }

    /// Publishes device views once the current group is committed.
    pub fn device_views(&mut self, views: Vec<DeviceView>) {
        for v in views {
            self.pending.effects.push(Effect::Device(Box::new(v)));
        }
    }

    /// Hands the current group to the committer, which commits it and then broadcasts its
    /// events and releases its replies and frames, in order.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.drop_superseded();
        let group = std::mem::take(&mut self.pending);
        self.committer
            .send(group)
            .await
            .map_err(|_| Error::EngineGone)
    }

    /// Drops the group's superseded `running` events and numbers the rest without gaps (none
    /// of them has left the engine yet).
    fn drop_superseded(&mut self) {
        self.running.clear();
        if self.superseded.is_empty() {
            return;
        }
        self.superseded.sort_unstable();
        let mut drop = std::mem::take(&mut self.superseded).into_iter().peekable();
        let mut seq = self.pending.events.first().map_or(0, |e| e.seq);
        let mut i = 0;
        self.pending.events.retain_mut(|e| {
            let keep = drop.next_if_eq(&i).is_none();
            i += 1;
            if keep {
                e.seq = seq;
                seq += 1;
            }
            keep
        });
        self.last_seq = seq - 1;
    }

    /// Hands the current group over and waits until it, and so everything staged before it,
    /// is committed.
    pub async fn settle(&mut self) -> Result<(), Error> {
        let rx = self.committed();
        self.flush().await?;
        rx.await.map_err(|_| Error::EngineGone)
    }

    /// Told once the current group, and so everything staged before it, is committed
    /// (dropped unanswered if the commit fails).
    pub fn committed(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.pending.barriers.push(tx);
        rx
    }
}

/// The attempt a status event concerns, and whether it says `running`.
fn attempt_status(kind: &EventKind) -> Option<(&AttemptId, bool)> {
    match kind {
        EventKind::TaskStatus {
            status,
            attempt_id: Some(a),
            ..
        } => Some((a, *status == TaskStatus::Running)),
        EventKind::TaskRetrying { attempt_id, .. } => Some((attempt_id, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::RequestId;
    use weft_protocol::rest::EventKind;

    use super::*;

    #[test]
    fn events_are_numbered_from_the_journal_s_end_and_replies_wait() {
        let (tx, _rx) = mpsc::channel(1);
        let mut out = Outbox::new(tx, 41);
        let r = RequestId::from("r");
        for _ in 0..2 {
            let mut b = Batch::default();
            b.event(
                &r,
                EventKind::GraphEdited {
                    version: 2,
                    ops: vec![],
                },
            );
            out.stage(b, 7);
        }
        let (reply, mut answer) = oneshot::channel();
        out.reply(reply, 5);
        let seqs: Vec<(u64, u64)> = out
            .pending
            .events
            .iter()
            .map(|e| (e.seq, e.at_ms))
            .collect();
        assert_eq!(seqs, [(42, 7), (43, 7)]);
        // The reply waits in the group until the committer releases it.
        assert!(answer.try_recv().is_err());
        assert_eq!(out.pending.effects.len(), 1);
    }

    fn status(task: &str, status: TaskStatus, attempt: &str) -> EventKind {
        EventKind::TaskStatus {
            task_id: task.into(),
            status,
            attempt_id: Some(AttemptId::from(attempt)),
            device: None,
            output: None,
            error: None,
            files: Vec::new(),
        }
    }

    fn kinds(out: &Outbox) -> Vec<(u64, String)> {
        out.pending
            .events
            .iter()
            .map(|e| match &e.kind {
                EventKind::TaskStatus {
                    task_id, status, ..
                } => (e.seq, format!("{task_id} {}", status.as_str())),
                k => (e.seq, format!("{k:?}")),
            })
            .collect()
    }

    #[test]
    fn a_running_status_superseded_in_its_group_is_not_journaled() {
        let (tx, _rx) = mpsc::channel(1);
        let mut out = Outbox::new(tx, 10);
        let r = RequestId::from("r");
        let mut b = Batch::default();
        b.event(&r, status("t1", TaskStatus::Running, "a1"));
        b.event(&r, status("t2", TaskStatus::Running, "a2"));
        out.stage(b, 1);
        let mut b = Batch::default();
        // t1's result in the same group: its `running` goes; t2's stays (no outcome yet); an
        // outcome of another attempt of t2 does not touch it.
        b.event(&r, status("t1", TaskStatus::Succeeded, "a1"));
        b.event(&r, status("t2", TaskStatus::Failed, "a9"));
        b.event(
            &RequestId::from("other"),
            status("t2", TaskStatus::Succeeded, "a2"),
        );
        out.stage(b, 2);
        out.drop_superseded();
        assert_eq!(
            kinds(&out),
            [
                (11, "t2 running".into()),
                (12, "t1 succeeded".into()),
                (13, "t2 failed".into()),
                (14, "t2 succeeded".into()),
            ]
        );
        // Numbering goes on without a gap, and a `running` of the next group is kept.
        let mut b = Batch::default();
        b.event(&r, status("t3", TaskStatus::Running, "a3"));
        out.stage(b, 3);
        assert_eq!(out.pending.events.last().map(|e| e.seq), Some(15));

        // A retry (the attempt failed and the task waits again) supersedes it too.
        let (tx, _rx) = mpsc::channel(1);
        let mut out = Outbox::new(tx, 0);
        let mut b = Batch::default();
        b.event(&r, status("t1", TaskStatus::Running, "a1"));
        b.event(
            &r,
            EventKind::TaskRetrying {
                task_id: "t1".into(),
                attempt_id: "a1".into(),
                attempts: 1,
                retry_at_ms: 5,
                error: weft_protocol::ErrorInfo::new("failed", "no"),
            },
        );
        out.stage(b, 1);
        out.drop_superseded();
        assert_eq!(out.pending.events.len(), 1);
        assert_eq!(out.pending.events[0].seq, 1);
        assert_eq!(out.last_seq, 1);
    }
}
