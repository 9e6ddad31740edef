//! The table of live attempts: what is in flight, on which device, until when. Pure.

use std::collections::HashMap;

use weft_protocol::{AttemptId, AttemptStatus, DeviceName, FileRef, RequestId, TaskId};

/// An attempt in flight.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Live {
    pub request: RequestId,
    pub task: TaskId,
    pub device: DeviceName,
    pub status: AttemptStatus,
    pub deadline_ms: u64,
    /// When the device's connection dropped with this attempt in flight; after the grace
    /// window the attempt is lost.
    pub lost_since: Option<u64>,
    /// When its `assign` was sent on a live connection, until the device answers (`accept` or
    /// `reject`), its connection drops, or it says it holds the attempt: a device that stays
    /// connected but never answers (an agent too old to read the assignment) loses it after
    /// the answer timeout, instead of holding it until its deadline.
    pub awaiting_answer_since: Option<u64>,
    /// Whether the attempt draws turns from the request's pool, its limit (extensions
    /// included) and what it reported using.
    pub uses_turns: bool,
    pub max_turns: u32,
    pub turns_used: u32,
    /// The stored files its `assign` names as inputs: the blobs its device may download.
    pub inputs: Vec<FileRef>,
}

/// Attempts past a deadline at some moment.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Due {
    /// Past their own deadline.
    pub overdue: Vec<AttemptId>,
    /// Their device has been gone longer than the grace window.
    pub lost: Vec<AttemptId>,
    /// Their connected device has not answered the `assign` within the answer timeout.
    pub unanswered: Vec<AttemptId>,
    /// When the next of the others is due, if any is live.
    pub next_ms: Option<u64>,
}

/// The waits [`Attempts::due`] checks, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waits {
    /// How long a device that went away may take to come back.
    pub grace_ms: u64,
    /// How long a connected device may take to answer an `assign`.
    pub answer_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct Attempts {
    live: HashMap<AttemptId, Live>,
}

impl Attempts {
    pub fn insert(&mut self, id: AttemptId, live: Live) {
        self.live.insert(id, live);
    }

    /// Forgets an attempt: the one way an attempt stops being live.
    pub fn remove(&mut self, id: &AttemptId) -> Option<Live> {
        self.live.remove(id)
    }

    pub fn get(&self, id: &AttemptId) -> Option<&Live> {
        self.live.get(id)
    }

    pub fn get_mut(&mut self, id: &AttemptId) -> Option<&mut Live> {
        self.live.get_mut(id)
    }

    /// The live attempts `device` holds.
    pub fn held_by<'a>(&'a self, device: &'a DeviceName) -> impl Iterator<Item = &'a Live> {
        self.live.values().filter(move |l| &l.device == device)
    }

    /// The live attempt `id` if `device` holds it.
    pub fn owned(&self, device: &DeviceName, id: &AttemptId) -> Option<Live> {
        self.live.get(id).filter(|l| &l.device == device).cloned()
    }

    /// How many attempts run on a connected device (not waiting for a lost one).
    pub fn running(&self) -> usize {
        self.live
            .values()
            .filter(|l| l.lost_since.is_none())
            .count()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// The attempts whose device went away at `now` start their grace window (an attempt
    /// already waiting keeps its start); an answer is no longer awaited on that connection.
    pub fn mark_lost<'a>(&mut self, ids: impl IntoIterator<Item = &'a AttemptId>, now: u64) {
        for id in ids {
            if let Some(l) = self.live.get_mut(id) {
                l.lost_since.get_or_insert(now);
                l.awaiting_answer_since = None;
            }
        }
    }

    /// The device came back holding these attempts: they are no longer waiting, and holding
    /// one is an answer to its `assign`. Returns how many were.
    pub fn reattach<'a>(&mut self, ids: impl IntoIterator<Item = &'a AttemptId>) -> usize {
        let mut n = 0;
        for id in ids {
            if let Some(l) = self.live.get_mut(id) {
                l.lost_since = None;
                l.awaiting_answer_since = None;
                n += 1;
            }
        }
        n
    }

    /// The attempts past their deadline, those whose device has been gone longer than the
    /// grace window, and those whose connected device has not answered their `assign` within
    /// the answer timeout, at `now`. An attempt is in at most one list.
    pub fn due(&self, now: u64, waits: Waits) -> Due {
        let mut due = Due::default();
        for (id, l) in &self.live {
            let lost_at = l.lost_since.map(|t| t + waits.grace_ms);
            let unanswered_at = l.awaiting_answer_since.map(|t| t + waits.answer_ms);
            if l.deadline_ms <= now {
                due.overdue.push(id.clone());
            } else if lost_at.is_some_and(|t| t <= now) {
                due.lost.push(id.clone());
            } else if unanswered_at.is_some_and(|t| t <= now) {
                due.unanswered.push(id.clone());
            } else {
                let at = [lost_at, unanswered_at]
                    .into_iter()
                    .flatten()
                    .fold(l.deadline_ms, u64::min);
                due.next_ms = Some(due.next_ms.map_or(at, |n| n.min(at)));
            }
        }
        due.overdue.sort();
        due.lost.sort();
        due.unanswered.sort();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(device: &str, deadline_ms: u64) -> Live {
        Live {
            request: RequestId::from("r"),
            task: TaskId::from("t"),
            device: DeviceName::from(device),
            status: AttemptStatus::Dispatched,
            deadline_ms,
            lost_since: None,
            awaiting_answer_since: None,
            uses_turns: false,
            max_turns: 1,
            turns_used: 0,
            inputs: vec![],
        }
    }

    fn table() -> Attempts {
        let mut a = Attempts::default();
        a.insert("a1".into(), live("d1", 100));
        a.insert("a2".into(), live("d1", 500));
        a.insert("a3".into(), live("d2", 500));
        a
    }

    const W: Waits = Waits {
        grace_ms: 50,
        answer_ms: 40,
    };

    fn ids(v: &[AttemptId]) -> Vec<&str> {
        v.iter().map(AttemptId::as_str).collect()
    }

    #[test]
    fn only_the_holder_owns_an_attempt() {
        let a = table();
        assert!(a.owned(&"d1".into(), &"a1".into()).is_some());
        assert!(a.owned(&"d2".into(), &"a1".into()).is_none());
        assert!(a.owned(&"d1".into(), &"a9".into()).is_none());
    }

    #[test]
    fn deadlines_and_grace_windows() {
        let mut a = table();
        assert_eq!(
            a.due(99, W),
            Due {
                next_ms: Some(100),
                ..Due::default()
            }
        );
        let due = a.due(100, W);
        assert_eq!((ids(&due.overdue), ids(&due.lost)), (vec!["a1"], vec![]));
        // d1 goes away at 200: a2 waits out the grace window; a1 is overdue either way.
        a.mark_lost([&"a1".into(), &"a2".into()], 200);
        assert_eq!(a.running(), 1);
        let due = a.due(249, W);
        assert_eq!((ids(&due.overdue), ids(&due.lost)), (vec!["a1"], vec![]));
        let due = a.due(250, W);
        assert_eq!(
            (ids(&due.overdue), ids(&due.lost)),
            (vec!["a1"], vec!["a2"])
        );
        // A second drop does not restart the window.
        a.mark_lost([&"a2".into()], 240);
        assert_eq!(ids(&a.due(250, W).lost), ["a2"]);
        // It came back in time.
        assert_eq!(a.reattach([&"a2".into(), &"a9".into()]), 1);
        assert!(a.due(250, W).lost.is_empty());
        assert_eq!(a.running(), 2);
        assert!(a.remove(&"a1".into()).is_some());
        assert!(a.remove(&"a1".into()).is_none());
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn an_assignment_not_answered_in_time_is_due_unless_answered_or_the_device_left() {
        let mut a = Attempts::default();
        for id in ["a1", "a2", "a3", "a4"] {
            a.insert(
                id.into(),
                Live {
                    awaiting_answer_since: Some(100),
                    ..live("d1", 10_000)
                },
            );
        }
        // a2 is accepted (the engine clears the wait), a3's device leaves, a4's device comes
        // back holding it.
        a.get_mut(&"a2".into()).unwrap().awaiting_answer_since = None;
        a.mark_lost([&"a3".into()], 150);
        a.mark_lost([&"a4".into()], 150);
        a.reattach([&"a4".into()]);
        let due = a.due(139, W);
        assert!(due.unanswered.is_empty());
        // The next is a1's answer timeout (a3's grace window ends at 200).
        assert_eq!(due.next_ms, Some(140));
        let due = a.due(140, W);
        assert_eq!(
            (ids(&due.overdue), ids(&due.lost), ids(&due.unanswered)),
            (vec![], vec![], vec!["a1"])
        );
        // Past its deadline it is overdue, not unanswered; past the grace window, lost.
        let due = a.due(10_000, W);
        assert_eq!(
            (ids(&due.overdue), ids(&due.lost), ids(&due.unanswered)),
            (vec!["a1", "a2", "a3", "a4"], vec![], vec![])
        );
        assert_eq!(ids(&a.due(200, W).lost), ["a3"]);
    }
}
