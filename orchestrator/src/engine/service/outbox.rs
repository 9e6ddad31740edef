//! What the engine has changed but not yet handed to the committer: the current group's row
//! changes, its numbered journal events, and what waits for its commit (replies, frames to
//! devices, device views). Handing it over is the only way any of it leaves the engine.

use tokio::sync::{mpsc, oneshot};
use weft_protocol::rest::{DeviceView, Event};
use weft_protocol::{DeviceName, ServerMsg};

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
}

impl Outbox {
    /// An outbox whose next event is numbered `last_seq + 1`.
    pub fn new(committer: mpsc::Sender<Group>, last_seq: u64) -> Self {
        Self {
            pending: Group::default(),
            last_seq,
            committer,
        }
    }

    /// Adds `batch` to the current group, numbering its events (stamped `at_ms`).
    pub fn stage(&mut self, batch: Batch, at_ms: u64) {
        self.pending.ops.extend(batch.ops);
        for (request_id, kind) in batch.events {
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
        let group = std::mem::take(&mut self.pending);
        self.committer
            .send(group)
            .await
            .map_err(|_| Error::EngineGone)
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
}
