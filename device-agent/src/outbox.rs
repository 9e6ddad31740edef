//! Results waiting for the orchestrator's `ack`.
//!
//! A result stays here from the moment its attempt ends until the orchestrator acknowledges it;
//! after a reconnect every entry is sent again. The orchestrator applies each attempt's result
//! at most once, so a re-sent copy is harmless.

use weft_protocol::{AgentMsg, AttemptId};

#[derive(Debug, Default)]
pub struct Outbox {
    /// Oldest first; at most one entry per attempt.
    entries: Vec<(AttemptId, AgentMsg)>,
}

impl Outbox {
    /// Keeps `result` (an `AgentMsg::Result`) until [`Outbox::ack`].
    pub fn put(&mut self, attempt: AttemptId, result: AgentMsg) {
        self.remove(&attempt);
        self.entries.push((attempt, result));
    }

    /// Drops the entry of an acknowledged attempt. Returns whether there was one.
    pub fn ack(&mut self, attempt: &AttemptId) -> bool {
        self.remove(attempt)
    }

    fn remove(&mut self, attempt: &AttemptId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(a, _)| a != attempt);
        before != self.entries.len()
    }

    /// Keeps only the entries whose attempt `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&AttemptId) -> bool) {
        self.entries.retain(|(a, _)| keep(a));
    }

    pub fn attempts(&self) -> impl Iterator<Item = &AttemptId> {
        self.entries.iter().map(|(a, _)| a)
    }

    /// Every held result, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &AgentMsg> {
        self.entries.iter().map(|(_, m)| m)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat() -> AgentMsg {
        AgentMsg::Heartbeat {}
    }

    #[test]
    fn keeps_order_until_acked() {
        let mut o = Outbox::default();
        o.put("b".into(), heartbeat());
        o.put("a".into(), heartbeat());
        assert_eq!(
            o.attempts().map(|a| a.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert!(o.ack(&"b".into()));
        assert!(!o.ack(&"b".into()));
        assert_eq!(o.len(), 1);
        o.retain(|a| a.as_str() != "a");
        assert_eq!(o.len(), 0);
    }
}
