//! Hosts ordered by the moment they turn silent, so that the sweeper finds the next one to
//! flag in O(log n) and sleeps until exactly then, instead of scanning every host.

use std::collections::BTreeSet;

/// A host's slot in the collector's tables.
pub type HostId = u32;

/// No deadline pending.
const NONE: i64 = i64::MIN;

/// Deadlines in milliseconds since the Unix epoch.
#[derive(Debug, Default)]
pub struct DeadlineIndex {
    order: BTreeSet<(i64, HostId)>,
    /// Per host slot (they are dense), its pending deadline or [`NONE`]: 8 bytes a host,
    /// where a map would take over 30 at a million hosts.
    by_host: Vec<i64>,
}

impl DeadlineIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, host: HostId) -> &mut i64 {
        let i = host as usize;
        if i >= self.by_host.len() {
            self.by_host.resize(i + 1, NONE);
        }
        &mut self.by_host[i]
    }

    /// Sets (or moves) the deadline of `host`.
    pub fn set(&mut self, host: HostId, deadline_ms: i64) {
        let deadline_ms = deadline_ms.max(NONE + 1);
        let old = std::mem::replace(self.slot(host), deadline_ms);
        if old == deadline_ms {
            return;
        }
        if old != NONE {
            self.order.remove(&(old, host));
        }
        self.order.insert((deadline_ms, host));
    }

    pub fn remove(&mut self, host: HostId) {
        let Some(slot) = self.by_host.get_mut(host as usize) else {
            return;
        };
        let old = std::mem::replace(slot, NONE);
        if old != NONE {
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
            self.by_host[h as usize] = NONE;
            out.push((d, h));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
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
