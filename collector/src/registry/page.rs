//! What the dashboard reads from the registry: a page of hosts, flagged first, without
//! building a view of every host that matches; the fleet per region and zone; the label
//! values to filter by.

use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Utc};

use super::{Filter, Host, HostId, HostView, Registry};
use crate::state::{HostState, Lifecycle};

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

/// The fleet as the overview counts it.
pub struct Tally {
    pub flagged: usize,
    pub lifecycles: std::collections::BTreeMap<&'static str, usize>,
    pub tiles: Vec<Tile>,
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
    fn passes(&self, f: &Filter, wanted: &[Option<Option<u32>>; 4], h: &Host) -> bool {
        f.state.is_none_or(|s| h.state == s)
            && f.lifecycle.is_none_or(|l| h.lifecycle == l)
            && wanted
                .iter()
                .zip(h.labels)
                .all(|(w, have)| w.is_none_or(|id| id == Some(have)))
            && f.name_prefix
                .as_deref()
                .is_none_or(|p| h.name.starts_with(p))
    }

    /// Per label: no filter, or the wanted value's id (`None` if no host has that value,
    /// which then matches nothing).
    fn wanted(&self, f: &Filter) -> [Option<Option<u32>>; 4] {
        [&f.env, &f.region, &f.zone, &f.role].map(|v| v.as_ref().map(|v| self.labels.find(v)))
    }

    /// The slots a filter can match: its state's set, or every host.
    fn candidates<'a>(&'a self, f: &Filter) -> Box<dyn Iterator<Item = HostId> + 'a> {
        match f.state {
            Some(s) => Box::new(self.by_state[super::slot(s)].iter().copied()),
            None => Box::new(0..self.hosts.len() as HostId),
        }
    }

    /// Ids of the hosts matching `f`, in no order.
    pub(super) fn matching(&self, f: &Filter) -> Vec<HostId> {
        let wanted = self.wanted(f);
        self.candidates(f)
            .filter(|id| self.passes(f, &wanted, &self.hosts[*id as usize]))
            .collect()
    }

    fn by_name_cmp(&self, a: HostId, b: HostId) -> std::cmp::Ordering {
        self.hosts[a as usize]
            .name
            .cmp(&self.hosts[b as usize].name)
    }

    /// Brings the name index up to the hosts added since the last call: a few are
    /// inserted, many merged in.
    pub fn refresh_names(&mut self) {
        let known = self.by_name.len();
        if known == self.hosts.len() {
            return;
        }
        // Sorted with the names beside the slots: no trip through each host per comparison.
        let mut named: Vec<(&str, HostId)> = (known..self.hosts.len())
            .map(|i| (&*self.hosts[i].name, i as HostId))
            .collect();
        named.sort_unstable();
        let new: Vec<HostId> = named.into_iter().map(|(_, id)| id).collect();
        let mut old = std::mem::take(&mut self.by_name);
        if new.len() <= 64 {
            for id in new {
                let at = old.partition_point(|o| self.by_name_cmp(*o, id).is_lt());
                old.insert(at, id);
            }
            self.by_name = old;
            return;
        }
        self.by_name = merge(&old, &new, |a, b| self.by_name_cmp(a, b).is_le());
    }

    /// Hosts `offset..offset + limit` of those matching `f`, flagged first, then by name.
    /// The flagged are few and sorted; the rest are read in name order from the index,
    /// so a page costs a walk, never a sort of the fleet.
    pub fn page(&self, f: &Filter, offset: usize, limit: usize, now: DateTime<Utc>) -> Page<'_> {
        let wanted = self.wanted(f);
        let passes = |id: &HostId| self.passes(f, &wanted, &self.hosts[*id as usize]);
        // Hosts added since the index was last refreshed: sorted here, walked beside it.
        let mut tail: Vec<HostId> =
            (self.by_name.len() as HostId..self.hosts.len() as HostId).collect();
        tail.sort_unstable_by(|a, b| self.by_name_cmp(*a, *b));
        let range = |list: &[HostId]| -> std::ops::Range<usize> {
            match f.name_prefix.as_deref() {
                None => 0..list.len(),
                Some(p) => {
                    let lo = list.partition_point(|id| &*self.hosts[*id as usize].name < p);
                    let n = list[lo..]
                        .partition_point(|id| self.hosts[*id as usize].name.starts_with(p));
                    lo..lo + n
                }
            }
        };
        let (a, b) = (&self.by_name[range(&self.by_name)], &tail[range(&tail)]);
        let in_order = || Merged::new(a, b, |x, y| self.by_name_cmp(x, y).is_le());
        let total = match (f, &wanted) {
            (
                Filter {
                    state: None,
                    lifecycle: None,
                    name_prefix: None,
                    ..
                },
                [None, None, None, None],
            ) => self.hosts.len(),
            // A name prefix: only the index's range for it is read.
            (
                Filter {
                    state: None,
                    name_prefix: Some(_),
                    ..
                },
                _,
            ) => in_order().filter(passes).count(),
            _ => self.candidates(f).filter(passes).count(),
        };
        let mut flagged: Vec<HostId> = [
            HostState::Silent,
            HostState::Unhealthy,
            HostState::Duplicate,
        ]
        .into_iter()
        .flat_map(|s| self.by_state[super::slot(s)].iter().copied())
        .filter(|id| self.hosts[*id as usize].flagged && passes(id))
        .collect();
        flagged.sort_unstable_by(|a, b| self.by_name_cmp(*a, *b));
        let end = offset.saturating_add(limit);
        let mut ids: Vec<HostId> = flagged
            .get(offset.min(flagged.len())..end.min(flagged.len()))
            .unwrap_or_default()
            .to_vec();
        if ids.len() < limit {
            let skip = offset.saturating_sub(flagged.len());
            let want = limit - ids.len();
            ids.extend(
                in_order()
                    .filter(|id| !self.hosts[*id as usize].flagged && passes(id))
                    .skip(skip)
                    .take(want),
            );
        }
        Page {
            total,
            flagged: flagged.len(),
            hosts: ids.into_iter().map(|id| self.view(id, now)).collect(),
        }
    }

    /// Every region and zone with hosts (retired hosts left out), by region then zone.
    pub fn tiles(&self) -> Vec<Tile> {
        self.tally().tiles
    }

    /// What the overview counts, in one pass over the hosts.
    pub fn tally(&self) -> Tally {
        let (region, zone) = (1, 2);
        let mut flagged = 0;
        let mut lifecycles = [0usize; Lifecycle::ALL.len()];
        // By interned ids while counting: no string is compared per host.
        let mut tiles: IdMap<(u32, u32), Tile> = IdMap::default();
        for h in &self.hosts {
            lifecycles[h.lifecycle as usize] += 1;
            if h.flagged {
                flagged += 1;
            }
            if h.lifecycle == Lifecycle::Retired {
                continue;
            }
            let t = tiles
                .entry((h.labels[region], h.labels[zone]))
                .or_insert_with(|| Tile {
                    region: String::new(),
                    zone: String::new(),
                    hosts: 0,
                    flagged: 0,
                    worst: HostState::Up,
                });
            t.hosts += 1;
            if h.flagged {
                t.flagged += 1;
            }
            let counts = h.flagged || h.state == HostState::Late;
            if counts && urgency(h.state) > urgency(t.worst) {
                t.worst = h.state;
            }
        }
        let mut tiles: Vec<Tile> = tiles
            .into_iter()
            .map(|((r, z), mut t)| {
                t.region = self.labels.get(r).to_owned();
                t.zone = self.labels.get(z).to_owned();
                t
            })
            .collect();
        tiles.sort_unstable_by(|a, b| (&a.region, &a.zone).cmp(&(&b.region, &b.zone)));
        Tally {
            flagged,
            lifecycles: Lifecycle::ALL
                .iter()
                .map(|l| (l.as_str(), lifecycles[*l as usize]))
                .collect(),
            tiles,
        }
    }

    /// The values each label takes, sorted: what the dashboard's filters offer.
    pub fn label_values(&self) -> [Vec<&str>; 4] {
        // Interned ids seen, per label: a bitmap, not a hash per host.
        let mut used = [const { Vec::new() }; 4];
        for u in &mut used {
            *u = vec![false; self.labels.values.len()];
        }
        for h in &self.hosts {
            for (i, id) in h.labels.iter().enumerate() {
                if let Some(seen) = used[i].get_mut(*id as usize) {
                    *seen = true;
                }
            }
        }
        used.map(|u| {
            let mut v: Vec<&str> = u
                .iter()
                .enumerate()
                .filter(|(_, seen)| **seen)
                .map(|(id, _)| self.labels.get(id as u32))
                .filter(|v| !v.is_empty())
                .collect();
            v.sort_unstable();
            v
        })
    }
}

/// A map keyed by interned ids, hashed with a multiply: counting a million hosts into a
/// few dozen tiles should not cost a million SipHashes.
pub(super) type IdMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IdHash>>;

#[derive(Default)]
pub(super) struct IdHash(u64);

impl Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u32(u32::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Two sorted lists as one.
fn merge(a: &[HostId], b: &[HostId], le: impl Fn(HostId, HostId) -> bool) -> Vec<HostId> {
    Merged::new(a, b, le).collect()
}

/// Walks two sorted lists in order.
struct Merged<'a, F> {
    a: &'a [HostId],
    b: &'a [HostId],
    le: F,
}

impl<'a, F: Fn(HostId, HostId) -> bool> Merged<'a, F> {
    fn new(a: &'a [HostId], b: &'a [HostId], le: F) -> Self {
        Merged { a, b, le }
    }
}

impl<F: Fn(HostId, HostId) -> bool> Iterator for Merged<'_, F> {
    type Item = HostId;
    fn next(&mut self) -> Option<HostId> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(x), Some(y)) => (self.le)(*x, *y),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let list = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rollcall_proto::Health;

    use super::*;
    use crate::state::Policy;
    use crate::store::suite::{hb, t};

    /// Hosts h00…h24 in two zones; every fifth critical (flagged), h24 in another region.
    /// Hosts added in a shuffled order, the name index refreshed half-way: pages read the
    /// index and the hosts added since together.
    fn fleet() -> Registry {
        let policy = Policy {
            build_period: Duration::ZERO,
            ..Policy::default()
        };
        let mut r = Registry::new(policy, t(0));
        for k in 0..25 {
            let i = (k * 7) % 25;
            if k == 13 {
                r.refresh_names();
            }
            let health = if i % 5 == 2 {
                Health::Critical
            } else {
                Health::Ok
            };
            let mut rec = hb(&format!("h{i:02}"), 0, health, vec![]);
            rec.labels.insert("zone".into(), format!("z{}", i % 2));
            if i == 24 {
                rec.labels.insert("region".into(), "eu-de".into());
            }
            r.apply(&rec);
        }
        r
    }

    fn names(p: &Page) -> Vec<String> {
        p.hosts.iter().map(|h| h.name.to_owned()).collect()
    }

    #[test]
    fn a_page_is_flagged_hosts_first_then_by_name_and_pages_do_not_overlap() {
        let r = fleet();
        let all = Filter::default();
        let first = r.page(&all, 0, 7, t(10));
        assert_eq!((first.total, first.flagged), (25, 5));
        assert_eq!(
            names(&first),
            ["h02", "h07", "h12", "h17", "h22", "h00", "h01"]
        );
        let second = r.page(&all, 7, 7, t(10));
        assert_eq!(
            names(&second),
            ["h03", "h04", "h05", "h06", "h08", "h09", "h10"]
        );
        let last = r.page(&all, 21, 7, t(10));
        assert_eq!(names(&last), ["h20", "h21", "h23", "h24"]);
        assert!(r.page(&all, 25, 7, t(10)).hosts.is_empty());
        // Every host once, over all pages.
        let mut seen: Vec<String> = (0..4)
            .flat_map(|p| names(&r.page(&all, p * 7, 7, t(10))))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 25);
    }

    #[test]
    fn the_name_index_stays_in_order_as_hosts_come() {
        let mut r = Registry::new(Policy::default(), t(0));
        let mut expect = Vec::new();
        // A few at a time (inserted), then many (merged).
        for (round, n) in [(0, 3), (1, 70), (2, 1), (3, 300)] {
            for i in 0..n {
                let name = format!("n{:05}", (i * 7919 + round * 13) % 100_000);
                if !expect.contains(&name) {
                    expect.push(name.clone());
                }
                r.apply(&hb(&name, 0, Health::Ok, vec![]));
            }
            r.refresh_names();
            expect.sort();
            let got: Vec<&str> = r
                .by_name
                .iter()
                .map(|id| &*r.hosts[*id as usize].name)
                .collect();
            assert_eq!(got, expect, "round {round}");
        }
    }

    #[test]
    fn a_name_prefix_and_labels_narrow_a_page() {
        let r = fleet();
        let f = Filter {
            name_prefix: Some("h1".into()),
            zone: Some("z0".into()),
            ..Filter::default()
        };
        let p = r.page(&f, 0, 100, t(10));
        assert_eq!(names(&p), ["h12", "h10", "h14", "h16", "h18"]);
        assert_eq!(p.flagged, 1);
        let none = Filter {
            region: Some("nowhere".into()),
            ..Filter::default()
        };
        assert_eq!(r.page(&none, 0, 100, t(10)).total, 0);
    }

    #[test]
    fn tiles_count_each_zone_and_show_its_worst_flagged_state() {
        let mut r = fleet();
        // Nobody heard past interval + grace: every host silent, silence the worst.
        r.sweep(t(60 + 121));
        let tiles = r.tiles();
        let z: Vec<(&str, &str, usize, usize, HostState)> = tiles
            .iter()
            .map(|t| {
                (
                    t.region.as_str(),
                    t.zone.as_str(),
                    t.hosts,
                    t.flagged,
                    t.worst,
                )
            })
            .collect();
        assert_eq!(z[0].0, "eu-de", "by region, then zone");
        assert_eq!(z.iter().map(|t| t.2).sum::<usize>(), 25);
        assert!(z.iter().all(|t| t.4 == HostState::Silent), "{z:?}");
        let fresh = fleet();
        let tiles = fresh.tiles();
        let us_z0 = tiles
            .iter()
            .find(|t| t.region == "us-south" && t.zone == "z0")
            .unwrap();
        assert_eq!(
            (us_z0.hosts, us_z0.flagged, us_z0.worst),
            (12, 3, HostState::Unhealthy)
        );
        let eu = tiles.iter().find(|t| t.region == "eu-de").unwrap();
        assert_eq!((eu.hosts, eu.flagged, eu.worst), (1, 0, HostState::Up));
        // The overview's one pass counts as the API's separate ones do.
        let tally = fresh.tally();
        assert_eq!(tally.lifecycles, fresh.lifecycles());
        assert_eq!(tally.flagged, fresh.counts().1);
        assert_eq!(tally.flagged, 5);
        let labels = fresh.label_values();
        assert_eq!(labels[1], ["eu-de", "us-south"]);
        assert_eq!(labels[2], ["z0", "z1"]);
        assert!(labels[0].is_empty() && labels[3].is_empty());
    }
}
