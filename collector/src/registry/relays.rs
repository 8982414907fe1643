//! BigFix relays, from the hosts' own check-in reports: which live hosts check in through
//! each relay, how many of them fail to and since when. A relay most of whose hosts fail
//! together is suspect, and the failing hosts' reasons name it: one relay problem, not
//! dozens of separate mysteries (the runbook's "bigfix issues would be observed over a
//! large number of machines in the same region").

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rollcall_proto::CheckinState;
use serde::Serialize;

use super::{at, ms, Host, Registry};
use crate::index::HostId;
use crate::state::{HostState, Lifecycle};

/// A relay is suspect when at least this many of its live hosts fail to check in...
const SUSPECT_MIN_HOSTS: usize = 5;
/// ...and they started failing within this long of each other.
const SUSPECT_WINDOW_MS: i64 = 3600 * 1000;
/// How often the relays' verdicts are recomputed (a pass over every host).
const REFRESH_MS: i64 = 5000;

/// Index of the region label in a host's `labels`.
const REGION: usize = 1;

/// What a host's agent last said of its check-in.
#[derive(Debug)]
pub(super) struct CheckinWatch {
    /// Interned relay name (in the label interner).
    pub(super) relay: u32,
    pub(super) failing_since_ms: Option<i64>,
    pub(super) last_success_ms: Option<i64>,
}

/// One relay as `GET /api/v1/relays` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayView {
    pub relay: String,
    /// Live hosts (not in maintenance) that check in through it.
    pub hosts: usize,
    /// Of those, the ones failing to check in.
    pub failing: usize,
    /// When the earliest of them started failing.
    pub failing_since: Option<DateTime<Utc>>,
    pub regions: Vec<String>,
    pub suspect: bool,
    pub reason: String,
}

/// The suspect relays, by interned name, with the sentence their failing hosts carry.
#[derive(Debug, Default)]
pub(super) struct Suspects {
    pub(super) words: HashMap<u32, String>,
    at_ms: i64,
}

impl Registry {
    /// Keeps what the agent said of its check-in.
    pub(super) fn watch_checkin(&mut self, id: HostId, c: Option<&CheckinState>) {
        // An unnamed relay is kept as "" (the host's check-in still counts for the export).
        let relay = c.map(|c| self.labels.id(c.relay.as_deref().unwrap_or("")));
        let h = &mut self.hosts[id as usize];
        h.checkin = match (c, relay) {
            (Some(c), Some(relay)) => Some(Box::new(CheckinWatch {
                relay,
                failing_since_ms: c.failing_since.map(ms),
                last_success_ms: c.last_success_at.map(ms),
            })),
            _ => None,
        };
    }

    /// Every relay a live host checks in through, by name.
    pub fn relays(&self) -> Vec<RelayView> {
        struct Acc {
            hosts: usize,
            failing: Vec<i64>,
            regions: BTreeSet<u32>,
        }
        let mut by: BTreeMap<&str, Acc> = BTreeMap::new();
        for h in &self.hosts {
            let Some(c) = h.checkin.as_deref().filter(|_| in_scope(h)) else {
                continue;
            };
            if self.labels.get(c.relay).is_empty() {
                continue;
            }
            let a = by.entry(self.labels.get(c.relay)).or_insert(Acc {
                hosts: 0,
                failing: Vec::new(),
                regions: BTreeSet::new(),
            });
            a.hosts += 1;
            a.failing.extend(c.failing_since_ms);
            a.regions.insert(h.labels[REGION]);
        }
        by.into_iter()
            .map(|(relay, mut a)| {
                a.failing.sort_unstable();
                let (together, since) = most_within(&a.failing, SUSPECT_WINDOW_MS);
                let suspect = together >= SUSPECT_MIN_HOSTS && together * 2 >= a.hosts;
                let reason = if suspect {
                    format!(
                        "relay {relay} suspect: {together} of {} hosts cannot check in through it since {}",
                        a.hosts,
                        at(since).format("%Y-%m-%d %H:%M UTC")
                    )
                } else if a.failing.is_empty() {
                    format!("{} host(s) check in through it", a.hosts)
                } else {
                    format!(
                        "{} of {} host(s) fail to check in through it",
                        a.failing.len(),
                        a.hosts
                    )
                };
                RelayView {
                    relay: relay.to_owned(),
                    hosts: a.hosts,
                    failing: a.failing.len(),
                    failing_since: a.failing.first().map(|t| at(*t)),
                    regions: a
                        .regions
                        .iter()
                        .map(|r| self.labels.get(*r).to_owned())
                        .filter(|r| !r.is_empty())
                        .collect(),
                    suspect,
                    reason,
                }
            })
            .collect()
    }

    /// Recomputes which relays are suspect, at most every few seconds.
    pub fn refresh_relays(&mut self, now: DateTime<Utc>) {
        if ms(now) - self.suspects.at_ms < REFRESH_MS {
            return;
        }
        let words = self
            .relays()
            .into_iter()
            .filter(|r| r.suspect)
            .filter_map(|r| self.labels.find(&r.relay).map(|id| (id, r.reason)))
            .collect();
        if words != self.suspects.words {
            self.generation += 1;
        }
        self.suspects = Suspects {
            words,
            at_ms: ms(now),
        };
    }

    /// For an unhealthy host failing to check in through a suspect relay: the relay's
    /// sentence, which then leads its reason.
    pub(super) fn relay_words(&self, h: &Host) -> Option<&str> {
        let c = h.checkin.as_deref()?;
        if h.state != HostState::Unhealthy || c.failing_since_ms.is_none() {
            return None;
        }
        self.suspects.words.get(&c.relay).map(String::as_str)
    }
}

/// Live and not in maintenance: the hosts whose failures say something about a relay, and
/// the hosts a compliance report is about.
pub(super) fn in_scope(h: &Host) -> bool {
    h.lifecycle == Lifecycle::Live && h.state != HostState::Maintenance
}

/// The most of the sorted `times` that lie within `window` of each other, and the first
/// of them.
fn most_within(times: &[i64], window: i64) -> (usize, i64) {
    let mut best = (0, times.first().copied().unwrap_or(0));
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] > window {
            lo += 1;
        }
        if hi - lo + 1 > best.0 {
            best = (hi - lo + 1, times[lo]);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_together_only_within_the_window() {
        assert_eq!(most_within(&[], 10), (0, 0));
        assert_eq!(most_within(&[0, 5, 10, 100, 105], 10), (3, 0));
        assert_eq!(most_within(&[0, 50, 100, 105, 108, 109], 10), (4, 100));
    }
}
