//! The engine's writer: commits groups of changes in order while the engine goes on with the
//! next inputs, then releases what waited for each group.
//!
//! Architecture invariant (unchanged by the pipelining): nothing a group caused — replies,
//! frames to devices, journal events, device views — leaves before that group is committed,
//! and groups are committed and released in the order the engine made them.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weft_protocol::rest::{DeviceView, Event};
use weft_protocol::{DeviceName, ServerMsg};

use crate::Error;
use crate::engine::{Command, ConnId, Hub, Outbound};
use crate::store::{Op, Store};

/// Groups handed over but not yet committed, beyond the one being committed; they are
/// committed together next. Small: a full queue makes the engine wait, and its next group
/// grows meanwhile.
pub(super) const QUEUED_GROUPS: usize = 4;

/// One group's changes and what waits for them.
#[derive(Default)]
pub(super) struct Group {
    pub ops: Vec<Op>,
    /// Numbered already: the engine is the journal's only writer.
    pub events: Vec<Event>,
    /// Released in order after the commit.
    pub effects: Vec<Effect>,
    /// Told once this group, and so every group before it, is committed.
    pub barriers: Vec<oneshot::Sender<()>>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.events.is_empty()
            && self.effects.is_empty()
            && self.barriers.is_empty()
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("ops", &self.ops.len())
            .field("events", &self.events.len())
            .field("effects", &self.effects.len())
            .finish()
    }
}

pub(super) enum Effect {
    /// Answers a caller.
    Reply(Box<dyn FnOnce() + Send>),
    /// A frame for one connection of a device.
    Frame {
        device: DeviceName,
        conn: ConnId,
        tx: Outbound,
        msg: Box<ServerMsg>,
    },
    /// A device's view changed.
    Device(Box<DeviceView>),
}

/// Where released effects go besides their own channels.
pub(super) struct Outlets {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub device_events: broadcast::Sender<DeviceView>,
    /// To tell the engine about a connection that cannot keep up.
    pub engine: mpsc::WeakSender<Command>,
    /// Cancelled if a commit fails (fail-stop).
    pub shutdown: CancellationToken,
}

/// Commits every group it is given, in order, until the engine drops its sender. Stops at the
/// first failed commit, cancelling `shutdown`: what waited for that group and later ones is
/// dropped unreleased (callers see the engine gone). The failed commit's error is returned.
pub(super) async fn run(out: Outlets, mut groups: mpsc::Receiver<Group>) -> Result<(), Error> {
    while let Some(first) = groups.recv().await {
        // Groups that queued up while the last commit ran go into this one transaction (in
        // order: the outcome equals committing them one by one), then are released in order.
        let mut batch = vec![first];
        while let Ok(next) = groups.try_recv() {
            batch.push(next);
        }
        let counts: Vec<usize> = batch.iter().map(|g| g.events.len()).collect();
        let ops: Vec<Op> = batch.iter_mut().flat_map(|g| g.ops.drain(..)).collect();
        let mut events: Vec<Event> = batch.iter_mut().flat_map(|g| g.events.drain(..)).collect();
        if let Err(e) = out.store.commit(&ops, &events).await {
            tracing::error!(error = %e, "store write failed; stopping the engine (fail-stop)");
            out.shutdown.cancel();
            return Err(e);
        }
        for (mut group, count) in batch.into_iter().zip(counts) {
            group.events = events.drain(..count).collect();
            release(&out, group);
        }
    }
    Ok(())
}

/// Publishes a committed group's events and releases what waited for it, in order.
fn release(out: &Outlets, group: Group) {
    out.hub.publish(group.events);
    for effect in group.effects {
        match effect {
            Effect::Reply(send) => send(),
            Effect::Frame {
                device,
                conn,
                tx,
                msg,
            } => {
                if let Err(e) = tx.try_send(*msg) {
                    tracing::warn!(device = %device, error = %e, "outbound queue unusable; dropping connection");
                    if let Some(engine) = out.engine.upgrade() {
                        // Rare: off this task, so that a busy engine never stalls commits.
                        tokio::spawn(async move {
                            let _ = engine.send(Command::Overflow { device, conn }).await;
                        });
                    }
                }
            }
            Effect::Device(view) => {
                let _ = out.device_events.send(*view);
            }
        }
    }
    for barrier in group.barriers {
        let _ = barrier.send(());
    }
}
