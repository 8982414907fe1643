//! What the dashboard reads from the registry: a page of hosts, flagged first, without
//! building a view of every host that matches; the fleet per region and zone; the label
//! values to filter by.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Filter, Host, HostId, HostView, Registry};
use crate::state::HostState;

/// One page of a listing.
pub struct Page<'r> {
    /// Hosts matching the filter, on every page.
    pub total: usize,
    /// Of them, flagged.
    pub flagged: usize,
    pub hosts: Vec<HostView<'r>>,
}

/// One zone of one region, as a tile of the overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub region: String,
    pub zone: String,
    pub hosts: usize,
    pub flagged: usize,
    /// The most urgent state of its flagged hosts; `late` or `up` when none is flagged.
    pub worst: HostState,
}

/// How urgent a state is on a tile: silence first, then what a human must look at.
pub fn urgency(s: HostState) -> u8 {
    match s {
        HostState::Silent => 5,
        HostState::Unhealthy => 4,
        HostState::Duplicate => 3,
        HostState::Late => 2,
        HostState::Maintenance => 1,
        HostState::Up => 0,
    }
}

impl Registry {
    /// Whether host `h` passes `f`, labels given as the wanted values' ids.
    fn matches(&self, f: &Filter, wanted: &[Option<Option<u32>>; 4], h: &Host) -> bool {
        f.lifecycle.is_none_or(|l| h.lifecycle == l)
            && wanted
                .iter()
                .zip(h.labels)
                .all(|(w, have)| w.is_none_or(|id| id == Some(have)))
            && f.name_prefix
                .as_deref()
                .is_none_or(|p| h.name.starts_with(p))
    }

    /// Ids of the hosts matching `f`, in no order. A state filter reads only that state's
    /// set.
    pub(super) fn matching(&self, f: &Filter) -> Vec<HostId> {
        // Per label: no filter, or the wanted value's id (`None` if no host has that value,
        // which then matches nothing).
        let wanted: [Option<Option<u32>>; 4] =
            [&f.env, &f.region, &f.zone, &f.role].map(|v| v.as_ref().map(|v| self.labels.find(v)));
        let ok = |id: &HostId| self.matches(f, &wanted, &self.hosts[*id as usize]);
        match f.state {
            Some(s) => self.by_state[super::slot(s)]
                .iter()
                .copied()
                .filter(ok)
                .collect(),
            None => (0..self.hosts.len() as HostId).filter(ok).collect(),
        }
    }

    /// Hosts `offset..offset + limit` of those matching `f`, flagged first, then by name.
    /// Only the hosts up to the page's end are sorted, and only the page's are viewed.
    pub fn page(&self, f: &Filter, offset: usize, limit: usize, now: DateTime<Utc>) -> Page<'_> {
        let mut ids = self.matching(f);
        let total = ids.len();
        let flagged = ids
            .iter()
            .filter(|id| self.hosts[**id as usize].flagged)
            .count();
        let key = |id: &HostId| {
            let h = &self.hosts[*id as usize];
            (!h.flagged, &h.name)
        };
        let end = offset.saturating_add(limit).min(total);
        if end < total && end > 0 {
            ids.select_nth_unstable_by(end - 1, |a, b| key(a).cmp(&key(b)));
            ids.truncate(end);
        }
        ids.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
        let hosts = ids
            .get(offset.min(ids.len())..)
            .unwrap_or_default()
            .iter()
            .map(|id| self.view(*id, now))
            .collect();
        Page {
            total,
            flagged,
            hosts,
        }
    }

    /// Every region and zone with hosts (retired hosts left out), by region then zone.
    pub fn tiles(&self) -> Vec<Tile> {
        let (region, zone) = (1, 2);
        let mut tiles: BTreeMap<(&str, &str), Tile> = BTreeMap::new();
        for h in &self.hosts {
            if h.lifecycle == crate::state::Lifecycle::Retired {
                continue;
            }
            let key = (
                self.labels.get(h.labels[region]),
                self.labels.get(h.labels[zone]),
            );
            let t = tiles.entry(key).or_insert_with(|| Tile {
                region: key.0.to_owned(),
                zone: key.1.to_owned(),
                hosts: 0,
                flagged: 0,
                worst: HostState::Up,
            });
            t.hosts += 1;
            let counts = h.flagged || h.state == HostState::Late;
            if h.flagged {
                t.flagged += 1;
            }
            if counts && urgency(h.state) > urgency(t.worst) {
                t.worst = h.state;
            }
        }
        tiles.into_values().collect()
    }

    /// The values each label takes, sorted: what the dashboard's filters offer.
    pub fn label_values(&self) -> [Vec<&str>; 4] {
        let mut seen = [const { Vec::new() }; 4];
        let mut used: [std::collections::HashSet<u32>; 4] = Default::default();
        for h in &self.hosts {
            for i in 0..4 {
                if used[i].insert(h.labels[i]) {
                    let v = self.labels.get(h.labels[i]);
                    if !v.is_empty() {
                        seen[i].push(v);
                    }
                }
            }
        }
        for v in &mut seen {
            v.sort_unstable();
        }
        seen
    }
}
