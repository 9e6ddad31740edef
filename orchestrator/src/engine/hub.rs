//! Where committed journal events go: to the streams following one request, and to the few
//! subscribers that follow every request (the web view's live list, the reviser).
//!
//! A stream following one request gets only that request's events, so the cost of an event
//! does not grow with the number of open streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use weft_protocol::RequestId;
use weft_protocol::rest::{Event, EventKind};

/// Events buffered per request stream (pointers: 8 bytes each, allocated when the stream
/// opens); a stream that falls further behind re-reads the journal (it sees `Lagged`). A
/// dispatch pass can put hundreds of one request's events in one commit.
const PER_REQUEST_CAPACITY: usize = 1024;

/// Events buffered for the subscribers to every request.
const ALL_CAPACITY: usize = 4096;

/// Every this many publishes, channels nobody follows any more are dropped (a stream that
/// subscribed to a request that had already ended never sees an event that would drop it).
const PRUNE_EVERY: u32 = 256;

#[derive(Debug)]
pub struct Hub {
    all: broadcast::Sender<Arc<Event>>,
    by_request: Mutex<Channels>,
}

#[derive(Debug, Default)]
struct Channels {
    map: HashMap<RequestId, broadcast::Sender<Arc<Event>>>,
    publishes: u32,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            all: broadcast::channel(ALL_CAPACITY).0,
            by_request: Mutex::new(Channels::default()),
        }
    }
}

impl Hub {
    /// Every request's events, as they are committed.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Event>> {
        self.all.subscribe()
    }

    /// One request's events, as they are committed. The request's channel goes away with its
    /// last subscription (or when the request ends), so asking for requests that do not exist
    /// or have ended holds no memory.
    pub fn subscribe(self: &Arc<Self>, request: &RequestId) -> RequestEvents {
        let rx = self
            .lock()
            .map
            .entry(request.clone())
            .or_insert_with(|| broadcast::channel(PER_REQUEST_CAPACITY).0)
            .subscribe();
        RequestEvents {
            rx: Some(rx),
            hub: self.clone(),
            request: request.clone(),
        }
    }

    /// Drops a request's channel if nobody follows it any more.
    fn release(&self, request: &RequestId) {
        let mut channels = self.lock();
        if channels
            .map
            .get(request)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.map.remove(request);
        }
    }

    /// Sends committed events to their subscribers. A request's channel is dropped once
    /// nobody follows it or the request has ended (its receivers still get what was sent).
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let everyone = self.all.receiver_count() > 0;
        let mut channels = self.lock();
        channels.publishes += 1;
        if channels.publishes.is_multiple_of(PRUNE_EVERY) {
            channels.map.retain(|_, tx| tx.receiver_count() > 0);
        }
        let by_request = &mut channels.map;
        for ev in events {
            let ev = Arc::new(ev);
            let last =
                matches!(&ev.kind, EventKind::RequestStatus { status, .. } if status.is_terminal());
            if let Some(tx) = by_request.get(&ev.request_id) {
                let sent = tx.send(ev.clone()).is_ok();
                if !sent || last {
                    by_request.remove(&ev.request_id);
                }
                if everyone {
                    let _ = self.all.send(ev);
                }
            } else if everyone {
                let _ = self.all.send(ev);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.by_request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many requests have a channel open (for tests).
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().map.len()
    }
}

/// A subscription to one request's events; dropping it releases the request's channel when it
/// was the last one.
#[derive(Debug)]
pub struct RequestEvents {
    /// `None` only while being dropped.
    rx: Option<broadcast::Receiver<Arc<Event>>>,
    hub: Arc<Hub>,
    request: RequestId,
}

impl RequestEvents {
    /// The next event, as `broadcast::Receiver::recv`.
    pub async fn recv(&mut self) -> Result<Arc<Event>, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for RequestEvents {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.hub.release(&self.request);
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::RequestStatus;

    use super::*;

    fn ev(seq: u64, request: &str, status: RequestStatus) -> Event {
        Event {
            seq,
            request_id: request.into(),
            at_ms: seq,
            kind: EventKind::RequestStatus {
                status,
                error: None,
            },
        }
    }

    #[tokio::test]
    async fn a_stream_gets_only_its_request_and_the_channel_closes_at_the_end() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscribe(&"a".into());
        let mut all = hub.subscribe_all();
        hub.publish(vec![
            ev(1, "b", RequestStatus::Running),
            ev(2, "a", RequestStatus::Running),
            ev(3, "a", RequestStatus::Succeeded),
        ]);
        assert_eq!(a.recv().await.unwrap().seq, 2);
        assert_eq!(a.recv().await.unwrap().seq, 3);
        assert!(matches!(
            a.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        assert_eq!(hub.open(), 0);
        let seqs: Vec<u64> = std::iter::from_fn(|| all.try_recv().ok())
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn a_channel_goes_with_its_last_subscription() {
        let hub = Arc::new(Hub::default());
        let first = hub.subscribe(&"a".into());
        let second = hub.subscribe(&"a".into());
        assert_eq!(hub.open(), 1);
        drop(first);
        assert_eq!(hub.open(), 1);
        drop(second);
        assert_eq!(hub.open(), 0);
        // Subscriptions to requests that do not exist hold nothing once dropped.
        for i in 0..100 {
            drop(hub.subscribe(&RequestId(format!("nope-{i}"))));
        }
        assert_eq!(hub.open(), 0);
    }

    #[test]
    fn a_channel_nobody_follows_is_dropped() {
        let hub = Arc::new(Hub::default());
        let (tx, _) = broadcast::channel(4);
        hub.lock().map.insert("a".into(), tx);
        assert_eq!(hub.open(), 1);
        hub.publish(vec![ev(1, "a", RequestStatus::Running)]);
        assert_eq!(hub.open(), 0);
        // A request that never has another event: pruned after a while.
        let (tx, _) = broadcast::channel(4);
        hub.lock().map.insert("done".into(), tx);
        for seq in 0..u64::from(PRUNE_EVERY) {
            hub.publish(vec![ev(seq, "other", RequestStatus::Running)]);
        }
        assert_eq!(hub.open(), 0);
    }
}
