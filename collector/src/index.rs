//! Hosts ordered by the moment they turn silent, so that the sweeper finds the next one to
//! flag in O(log n) and sleeps until exactly then, instead of scanning every host.

use std::collections::{BTreeSet, HashMap};

/// A host's slot in the collector's tables.
pub type HostId = u32;

/// Deadlines in milliseconds since the Unix epoch.
#[derive(Debug, Default)]
pub struct DeadlineIndex {
    order: BTreeSet<(i64, HostId)>,
    by_host: HashMap<HostId, i64>,
}

impl DeadlineIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or moves) the deadline of `host`.
    pub fn set(&mut self, host: HostId, deadline_ms: i64) {
        if let Some(old) = self.by_host.insert(host, deadline_ms) {
            if old == deadline_ms {
                return;
            }
            self.order.remove(&(old, host));
        }
        self.order.insert((deadline_ms, host));
    }

    pub fn remove(&mut self, host: HostId) {
        if let Some(old) = self.by_host.remove(&host) {
            self.order.remove(&(old, host));
        }
    }

    /// The earliest deadline still pending.
    pub fn next(&self) -> Option<(i64, HostId)> {
        self.order.first().copied()
    }

    /// Removes and returns every host whose deadline is at or before `now_ms`, earliest first.
    pub fn expire(&mut self, now_ms: i64) -> Vec<(i64, HostId)> {
        let mut out = Vec::new();
        while let Some(&(d, h)) = self.order.first() {
            if d > now_ms {
                break;
            }
            self.order.pop_first();
            self.by_host.remove(&h);
            out.push((d, h));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_deadline_order_and_only_what_is_due() {
        let mut ix = DeadlineIndex::new();
        ix.set(1, 300);
        ix.set(2, 100);
        ix.set(3, 200);
        assert_eq!(ix.next(), Some((100, 2)));
        assert_eq!(ix.expire(250), vec![(100, 2), (200, 3)]);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.expire(299), vec![]);
        assert_eq!(ix.expire(300), vec![(300, 1)]);
        assert!(ix.is_empty());
    }

    #[test]
    fn a_heartbeat_moves_the_deadline() {
        let mut ix = DeadlineIndex::new();
        ix.set(7, 100);
        ix.set(7, 500);
        ix.set(7, 500);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.expire(400), vec![]);
        assert_eq!(ix.next(), Some((500, 7)));
        ix.remove(7);
        assert_eq!(ix.next(), None);
    }

    #[test]
    fn many_hosts_same_deadline() {
        let mut ix = DeadlineIndex::new();
        for h in 0..1000 {
            ix.set(h, 42);
        }
        assert_eq!(ix.expire(42).len(), 1000);
    }
}
