//! Every host in memory, compact, with its current derived state.
//!
//! The [`DeadlineIndex`] holds, per host, the next moment its state can change with no new
//! input (turning late, turning silent, maintenance ending, build ending). The sweeper
//! expires what is due, re-judges only those hosts and re-indexes them, so the cached state
//! of every host is current and `state=silent` is answered from a set, not a scan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{DaemonStatus, Health};

use crate::index::{DeadlineIndex, HostId};
use crate::state::{classify, explain, Facts, HostState, Lifecycle, Policy, Verdict};
use crate::store::{HeartbeatRecord, HistoryRecord, HostRow, StateJson};

mod compliance;
mod incidents;
mod page;
mod relays;
mod scan;
pub use compliance::{ComplianceRow, CSV_HEADER};
pub use page::{urgency, Page, Tile};
pub use relays::RelayView;
pub use scan::{ProbeAssignment, ScannerView, ZoneView};

/// Label values repeat across thousands of hosts: each distinct one is stored once.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    values: Vec<Box<str>>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.values.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn find(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn get(&self, id: u32) -> &str {
        self.values.get(id as usize).map_or("", |v| v)
    }
}

/// The labels the API filters by.
const LABELS: [&str; 4] = ["env", "region", "zone", "role"];

#[derive(Debug)]
struct Host {
    name: Box<str>,
    identity: Box<str>,
    /// Interned values of [`LABELS`].
    labels: [u32; 4],
    first_seen_ms: i64,
    last_heard_ms: i64,
    interval_s: u32,
    health: Health,
    health_reason: Box<str>,
    /// The fingerprint of the agent's state stored last: the digest it may send instead.
    state_fp: u64,
    lifecycle_override: Option<Lifecycle>,
    /// What the inventory says of it (once an inventory listed it).
    inventory: Option<crate::state::InventoryFacts>,
    maintenance: Option<Box<(i64, Box<str>)>>,
    /// The identity heard before `identity` took over, while it may still be live.
    other: Option<Box<Other>>,
    /// Boot time the agent last reported (Unix seconds; 0 = unknown).
    boot_s: u32,
    /// Its nessusd is critical (a scanner that scans nothing).
    nessusd_down: bool,
    /// What its agent last said of the BigFix client.
    besclient: DaemonStatus,
    /// Its BMC's address and what the scanners found there.
    bmc: Option<Box<scan::BmcWatch>>,
    /// Its BigFix relay and since when it fails to check in through it.
    checkin: Option<Box<relays::CheckinWatch>>,
    /// The checks its agent says are critical, with their words (only while it says so).
    critical: Option<incidents::CriticalChecks>,
    /// When its flag last changed (for flapping), newest last.
    flips: Option<Box<[i64]>>,
    state: HostState,
    lifecycle: Lifecycle,
    flagged: bool,
}

/// A second identity under one hostname.
#[derive(Debug)]
struct Other {
    identity: Box<str>,
    last_heard_ms: i64,
    /// Heard again after the newer identity appeared: both live at once (a clone), not a
    /// reload.
    alternated: bool,
}

/// A state change, for events, metrics and notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub host: String,
    pub from: Option<HostState>,
    pub to: HostState,
    pub flagged: bool,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// One host as the API shows it, borrowed from the registry: a listing of many thousand
/// hosts is serialized straight from it, with one allocation (the reason) per host.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HostView<'r> {
    pub name: &'r str,
    pub state: HostState,
    pub lifecycle: Lifecycle,
    /// Which source decided the lifecycle: `operator`, `inventory` or `first seen`.
    pub lifecycle_source: &'static str,
    pub flagged: bool,
    pub reason: String,
    pub last_heard: DateTime<Utc>,
    pub labels: Labels<'r>,
    /// The identity (machine-id/install id) last heard under this name.
    pub identity: &'r str,
    /// The other identity, while the host is a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<&'r str>,
    /// Its last BigFix check-in and relay, as its agent reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkin: Option<CheckinView<'r>>,
}

/// A host's BigFix check-in in a listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckinView<'r> {
    pub last_success: Option<DateTime<Utc>>,
    pub relay: &'r str,
    pub failing_since: Option<DateTime<Utc>>,
}

/// A host's non-empty labels, shown as a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels<'r>([&'r str; 4]);

impl<'r> Labels<'r> {
    /// The labels set, by name.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &'r str)> + '_ {
        self.iter()
    }

    /// env, region, zone and role, "" where unset.
    pub fn values(&self) -> [&'r str; 4] {
        self.0
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, &'r str)> + '_ {
        LABELS
            .iter()
            .zip(self.0)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v))
    }
}

impl serde::Serialize for Labels<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Filters of `GET /api/v1/hosts`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<HostState>,
    pub lifecycle: Option<Lifecycle>,
    pub env: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub role: Option<String>,
    /// Names beginning with this.
    pub name_prefix: Option<String>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub struct Registry {
    policy: Policy,
    up_since: DateTime<Utc>,
    /// Host slots by name: the table holds slot numbers only; the names are in `hosts`.
    names: hashbrown::HashTable<HostId>,
    hasher: std::hash::RandomState,
    hosts: Vec<Host>,
    labels: Interner,
    changes: DeadlineIndex,
    by_state: [HashSet<HostId>; 6],
    /// Host slots by name, for pages without a sort: hosts added since the last
    /// [`Registry::refresh_names`] are not in it yet (pages sort those few themselves).
    by_name: Vec<HostId>,
    notes: Vec<HistoryRecord>,
    suspects: relays::Suspects,
    /// Counts changes of any host's state, flag or lifecycle, and of the suspect relays:
    /// the incident pass looks again only when it moved.
    generation: u64,
    /// The inventory lifecycles come from, if one is configured and read.
    inventory: Option<std::sync::Arc<crate::inventory::Inventory>>,
}

pub(super) fn slot(s: HostState) -> usize {
    HostState::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

impl Registry {
    /// An empty registry for a collector that came up at `up_since`.
    pub fn new(policy: Policy, up_since: DateTime<Utc>) -> Registry {
        Registry {
            policy,
            up_since,
            names: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            hosts: Vec::new(),
            labels: Interner::default(),
            changes: DeadlineIndex::new(),
            by_state: Default::default(),
            by_name: Vec::new(),
            notes: Vec::new(),
            suspects: Default::default(),
            generation: 0,
            inventory: None,
        }
    }

    /// Loads stored hosts at start-up, judged as of `now`.
    pub fn load(&mut self, rows: Vec<HostRow>, now: DateTime<Utc>) {
        for r in rows {
            let (id, _) = self.slot_for(&r.host, &r.identity, &r.labels, r.first_seen);
            let h = &mut self.hosts[id as usize];
            h.last_heard_ms = ms(r.last_heard);
            h.interval_s = r.interval_secs;
            h.health = r.health;
            h.health_reason = r.reason.into();
            h.lifecycle_override = r.lifecycle;
            h.maintenance = r
                .maintenance
                .map(|(u, why)| Box::new((ms(u), why.into_boxed_str())));
            self.rejudge(id, now);
        }
        self.refresh_names();
    }

    /// The slot of host `name`, and whether it is new (made now).
    fn slot_for(
        &mut self,
        name: &str,
        identity: &str,
        labels: &BTreeMap<String, String>,
        first_seen: DateTime<Utc>,
    ) -> (HostId, bool) {
        let value = |k: &str| labels.get(k).map_or("", String::as_str);
        if let Some(id) = self.id(name) {
            // A known host's labels rarely change: compared in place, interned only if so.
            let h = &self.hosts[id as usize];
            let same = (0..LABELS.len()).all(|i| self.labels.get(h.labels[i]) == value(LABELS[i]));
            if !same {
                let ids = LABELS.map(|k| self.labels.id(value(k)));
                self.hosts[id as usize].labels = ids;
            }
            return (id, false);
        }
        let ids = LABELS.map(|k| self.labels.id(value(k)));
        let id = self.hosts.len() as HostId;
        self.hosts.push(Host {
            name: name.into(),
            identity: identity.into(),
            labels: ids,
            first_seen_ms: ms(first_seen),
            last_heard_ms: ms(first_seen),
            interval_s: 60,
            health: Health::Ok,
            health_reason: "".into(),
            state_fp: 0,
            lifecycle_override: None,
            inventory: None,
            maintenance: None,
            other: None,
            boot_s: 0,
            nessusd_down: false,
            besclient: DaemonStatus::Unknown,
            bmc: None,
            checkin: None,
            critical: None,
            flips: None,
            state: HostState::Up,
            lifecycle: Lifecycle::Build,
            flagged: false,
        });
        self.by_state[slot(HostState::Up)].insert(id);
        if let Some(d) = self
            .inventory
            .as_ref()
            .and_then(|i| i.devices_named(name).next())
        {
            self.hosts[id as usize].inventory = Some(d.facts());
        }
        let (hosts, hasher) = (&self.hosts, &self.hasher);
        self.names.insert_unique(hasher.hash_one(name), id, |&i| {
            hasher.hash_one(&*hosts[i as usize].name)
        });
        (id, true)
    }

    /// The slot of the host called `name`.
    fn id(&self, name: &str) -> Option<HostId> {
        self.names
            .find(self.hasher.hash_one(name), |&i| {
                *self.hosts[i as usize].name == *name
            })
            .copied()
    }

    fn facts<'h>(&self, h: &'h Host, now: DateTime<Utc>) -> Facts<'h> {
        Facts {
            bmc_unreachable: self.bmc_unreachable(h, now),
            first_seen: at(h.first_seen_ms),
            last_heard: at(h.last_heard_ms),
            interval: Duration::from_secs(h.interval_s as u64),
            health: h.health,
            health_reason: &h.health_reason,
            lifecycle_override: h.lifecycle_override,
            inventory: h.inventory,
            maintenance: h.maintenance.as_ref().map(|m| (at(m.0), &*m.1)),
            identity: &h.identity,
            other: h
                .other
                .as_ref()
                .filter(|o| o.alternated)
                .map(|o| (&*o.identity, at(o.last_heard_ms))),
        }
    }

    /// Re-derives one host's state; re-indexes its next change; returns the transition.
    fn rejudge(&mut self, id: HostId, now: DateTime<Utc>) -> Option<Transition> {
        let h = &self.hosts[id as usize];
        let f = self.facts(h, now);
        let j = classify(&f, &self.policy, self.up_since, now);
        let next = next_change(&f, &j, &self.policy, self.up_since, now);
        let changed = h.state != j.state || h.flagged != j.flagged || h.lifecycle != j.lifecycle;
        // Words only for a change: they are the costly part of a heartbeat's bookkeeping.
        let reason = changed.then(|| explain(&f, &self.policy, j.state, now));
        let h = &mut self.hosts[id as usize];
        let from = h.state;
        self.by_state[slot(from)].remove(&id);
        self.by_state[slot(j.state)].insert(id);
        let flipped = h.flagged != j.flagged && j.lifecycle == Lifecycle::Live;
        if changed {
            self.generation += 1;
        }
        h.state = j.state;
        h.flagged = j.flagged;
        h.lifecycle = j.lifecycle;
        match next {
            Some(t) => self.changes.set(id, ms(t)),
            None => self.changes.remove(id),
        }
        let worth_a_line = from != j.state
            && !matches!(
                (from, j.state),
                (HostState::Up, HostState::Late) | (HostState::Late, HostState::Up)
            );
        if let (true, Some(r)) = (worth_a_line, &reason) {
            let name = h.name.to_string();
            self.note(&name, now, "state", format!("{from} -> {r}"));
        }
        if flipped {
            self.flipped(id, ms(now));
        }
        let h = &self.hosts[id as usize];
        reason.map(|reason| Transition {
            host: h.name.to_string(),
            from: Some(from),
            to: j.state,
            flagged: j.flagged,
            reason,
            at: now,
        })
    }

    /// Applies a durable heartbeat (heard at `r.received_at`, the collector's clock).
    pub fn apply(&mut self, r: &HeartbeatRecord) -> Option<Transition> {
        let (id, new) = self.slot_for(&r.host, &r.identity, &r.labels, r.received_at);
        let now = ms(r.received_at);
        // The silence is measured before `identify` moves the last-heard time to the new
        // identity's.
        self.note_return(id, r.received_at);
        if !new {
            self.identify(id, r);
        }
        let h = &mut self.hosts[id as usize];
        h.last_heard_ms = h.last_heard_ms.max(now);
        h.interval_s = r.interval_secs.max(1);
        h.health = r.health;
        if *h.health_reason != *r.reason {
            h.health_reason = r.reason.as_str().into();
        }
        h.state_fp = r.state_fingerprint;
        if let StateJson::Parsed(s) = &r.state_json {
            h.besclient = s.besclient.status;
            h.nessusd_down = s
                .nessusd
                .as_ref()
                .is_some_and(|n| n.health == Health::Critical);
            let address = s.bmc.as_ref().and_then(|b| b.address);
            self.watch_bmc(id, address, r.received_at);
            self.watch_checkin(id, s.besclient.checkin.as_ref());
            let critical = (r.health == Health::Critical)
                .then(|| incidents::critical_checks(s))
                .filter(|c| !c.is_empty());
            self.hosts[id as usize].critical = critical.map(Vec::into_boxed_slice);
        }
        let t = self.rejudge(id, r.received_at);
        match (new, t) {
            (true, _) => {
                self.note(
                    &r.host,
                    r.received_at,
                    "identity",
                    format!("first heard, identity {}", r.identity),
                );
                let h = &self.hosts[id as usize];
                Some(Transition {
                    host: r.host.clone(),
                    from: None,
                    to: h.state,
                    flagged: h.flagged,
                    reason: self.reason(id, r.received_at),
                    at: r.received_at,
                })
            }
            (false, t) => t,
        }
    }

    /// The health and reason of `host`'s state stored last, if its fingerprint is `fp`: what
    /// a heartbeat carrying that digest instead of the state reports.
    pub fn known_state(&self, host: &str, fp: u64) -> Option<(Health, String)> {
        let h = &self.hosts[self.id(host)? as usize];
        (h.state_fp == fp && fp != 0).then(|| (h.health, h.health_reason.to_string()))
    }

    /// A routine heartbeat another collector stored (nothing but its time moved); `None`
    /// for a host not known here, or no change of state.
    pub fn heard(&mut self, host: &str, when: DateTime<Utc>) -> Option<Transition> {
        let id = self.id(host)?;
        self.note_return(id, when);
        let h = &mut self.hosts[id as usize];
        h.last_heard_ms = h.last_heard_ms.max(ms(when));
        self.rejudge(id, when)
    }

    /// Notes the end of a silence when a silent host is heard at `when`.
    fn note_return(&mut self, id: HostId, when: DateTime<Utc>) {
        let h = &self.hosts[id as usize];
        if h.state != HostState::Silent {
            return;
        }
        let gap = when - at(h.last_heard_ms);
        let since = at(h.last_heard_ms).format("%H:%M:%S UTC");
        let host = h.name.to_string();
        self.note(
            &host,
            when,
            "state",
            format!(
                "heard again after {} of silence (last heard before at {since})",
                crate::state::age(gap)
            ),
        );
    }

    /// Follows the identities and boots of a known host before its heartbeat is applied:
    /// a new identity is a reload unless the old one speaks again (then both are live: a
    /// duplicate).
    fn identify(&mut self, id: HostId, r: &HeartbeatRecord) {
        let now = ms(r.received_at);
        let h = &mut self.hosts[id as usize];
        let mut note = None;
        if *h.identity != *r.identity {
            let previous = std::mem::replace(&mut h.identity, r.identity.as_str().into());
            let previous_heard = std::mem::replace(&mut h.last_heard_ms, now);
            match h.other.take() {
                Some(mut o) if *o.identity == *r.identity => {
                    // The older identity is back while the newer one lives: two hosts.
                    if !o.alternated {
                        note = Some((
                            "identity",
                            format!(
                                "identity {} speaks again while {previous} is live: two machines report as this host",
                                r.identity
                            ),
                        ));
                    }
                    o.identity = previous;
                    o.last_heard_ms = previous_heard;
                    o.alternated = true;
                    h.other = Some(o);
                }
                _ => {
                    note = Some((
                        "identity",
                        format!(
                            "new identity {} replaces {previous} (OS reload or reinstall; last heard {})",
                            r.identity,
                            at(previous_heard).format("%H:%M:%S UTC")
                        ),
                    ));
                    h.other = Some(Box::new(Other {
                        identity: previous,
                        last_heard_ms: previous_heard,
                        alternated: false,
                    }));
                }
            }
        }
        let boot = r
            .booted_at
            .map_or(0, |b| b.timestamp().clamp(0, u32::MAX as i64) as u32);
        // Boot times read from /proc/stat wobble by a second: a reboot moves them further.
        if boot != 0 && h.boot_s != 0 && boot.abs_diff(h.boot_s) > 2 && note.is_none() {
            note = Some((
                "reboot",
                format!(
                    "rebooted at {}",
                    at(boot as i64 * 1000).format("%Y-%m-%d %H:%M:%S UTC")
                ),
            ));
        }
        if boot != 0 {
            h.boot_s = boot;
        }
        if let Some((kind, msg)) = note {
            self.note(&r.host, r.received_at, kind, msg);
        }
    }

    fn note(&mut self, host: &str, at: DateTime<Utc>, kind: &str, message: String) {
        self.notes.push(HistoryRecord {
            host: host.to_owned(),
            at,
            kind: kind.to_owned(),
            message,
        });
    }

    /// History lines made since the last call, for the store.
    pub fn take_notes(&mut self) -> Vec<HistoryRecord> {
        std::mem::take(&mut self.notes)
    }

    /// Sets or clears maintenance; `false` if the host is unknown.
    pub fn set_maintenance(
        &mut self,
        name: &str,
        m: Option<(DateTime<Utc>, String)>,
        now: DateTime<Utc>,
    ) -> Option<Option<Transition>> {
        let id = self.id(name)?;
        self.hosts[id as usize].maintenance =
            m.map(|(u, why)| Box::new((ms(u), why.into_boxed_str())));
        Some(self.rejudge(id, now))
    }

    pub fn set_lifecycle(
        &mut self,
        name: &str,
        l: Option<Lifecycle>,
        now: DateTime<Utc>,
    ) -> Option<Option<Transition>> {
        let id = self.id(name)?;
        self.hosts[id as usize].lifecycle_override = l;
        Some(self.rejudge(id, now))
    }

    /// Moves whenever a host's state, flag or lifecycle, or the suspect relays, change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the sweeper must next look, if ever.
    pub fn next_change(&self) -> Option<DateTime<Utc>> {
        self.changes.next().map(|(t, _)| at(t))
    }

    /// Re-judges every host whose state could have changed by `now`.
    pub fn sweep(&mut self, now: DateTime<Utc>) -> Vec<Transition> {
        let due = self.changes.expire(ms(now));
        due.into_iter()
            .filter_map(|(_, id)| self.rejudge(id, now))
            .collect()
    }

    /// The reason for the state this host is shown in (the cached one: a view never says
    /// one thing and explains another, whatever the sweeper has reached).
    fn reason(&self, id: HostId, now: DateTime<Utc>) -> String {
        let h = &self.hosts[id as usize];
        let own = explain(&self.facts(h, now), &self.policy, h.state, now);
        match self.relay_words(h) {
            Some(relay) => format!("{relay}; {own}"),
            None => own,
        }
    }

    fn view(&self, id: HostId, now: DateTime<Utc>) -> HostView<'_> {
        let h = &self.hosts[id as usize];
        HostView {
            name: &h.name,
            state: h.state,
            lifecycle: h.lifecycle,
            lifecycle_source: crate::state::lifecycle_source(&self.facts(h, now)),
            flagged: h.flagged,
            reason: self.reason(id, now),
            last_heard: at(h.last_heard_ms),
            identity: &h.identity,
            duplicate_of: (h.state == HostState::Duplicate)
                .then(|| h.other.as_ref().map(|o| &*o.identity))
                .flatten(),
            labels: Labels(h.labels.map(|v| self.labels.get(v))),
            checkin: h.checkin.as_deref().map(|c| CheckinView {
                last_success: c.last_success_ms.map(at),
                relay: self.labels.get(c.relay),
                failing_since: c.failing_since_ms.map(at),
            }),
        }
    }

    /// When `name` was last heard, if within its interval and grace: an agent speaks for
    /// it.
    pub fn speaking(&self, name: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let h = &self.hosts[self.id(name)? as usize];
        let last = at(h.last_heard_ms);
        let span = chrono::Duration::seconds(i64::from(h.interval_s))
            + chrono::Duration::from_std(self.policy.grace).unwrap_or_default();
        (now - last <= span).then_some(last)
    }

    /// Whether a host called `name` was ever heard.
    pub fn knows(&self, name: &str) -> bool {
        self.id(name).is_some()
    }

    pub fn get(&self, name: &str, now: DateTime<Utc>) -> Option<HostView<'_>> {
        self.id(name).map(|id| self.view(id, now))
    }

    /// Hosts matching `f`, by name. A state filter reads only that state's set.
    pub fn query(&self, f: &Filter, now: DateTime<Utc>) -> Vec<HostView<'_>> {
        let ids = self.sorted(f);
        self.views(&ids, now)
    }

    /// The slots of the hosts matching `f`, by name: to view a few at a time.
    pub fn sorted(&self, f: &Filter) -> Vec<HostId> {
        let mut ids = self.matching(f);
        ids.sort_unstable_by(|a, b| {
            self.hosts[*a as usize]
                .name
                .cmp(&self.hosts[*b as usize].name)
        });
        ids
    }

    /// The hosts in slots `ids` (from [`Registry::sorted`]; slots are never reused).
    pub fn views(&self, ids: &[HostId], now: DateTime<Utc>) -> Vec<HostView<'_>> {
        ids.iter()
            .filter(|id| (**id as usize) < self.hosts.len())
            .map(|id| self.view(*id, now))
            .collect()
    }

    /// Takes each host's lifecycle from `inv` (a host listed once and gone since is
    /// retired); returns the transitions this causes.
    pub fn apply_inventory(
        &mut self,
        inv: std::sync::Arc<crate::inventory::Inventory>,
        now: DateTime<Utc>,
    ) -> Vec<Transition> {
        self.inventory = Some(inv.clone());
        let mut changed = Vec::new();
        for id in 0..self.hosts.len() as HostId {
            let h = &mut self.hosts[id as usize];
            let device = inv.devices_named(&h.name).next();
            let facts = match (device, h.inventory) {
                (Some(d), _) => Some(d.facts()),
                (None, Some(was)) => Some(crate::state::InventoryFacts {
                    listed: false,
                    ..was
                }),
                (None, None) => None,
            };
            if facts != h.inventory {
                h.inventory = facts;
                changed.extend(self.rejudge(id, now));
            }
        }
        changed
    }

    /// Every host as reconciliation with the inventory sees it.
    pub fn reported(&self) -> impl Iterator<Item = crate::inventory::Reported<'_>> {
        self.hosts.iter().map(|h| crate::inventory::Reported {
            name: &h.name,
            labels: h.labels.map(|v| self.labels.get(v)),
            last_heard: at(h.last_heard_ms),
            state: h.state,
            lifecycle: h.lifecycle,
            bmc: Self::bmc_address(h),
        })
    }

    /// Hosts per lifecycle.
    pub fn lifecycles(&self) -> BTreeMap<&'static str, usize> {
        let mut n = [0usize; Lifecycle::ALL.len()];
        for h in &self.hosts {
            if let Some(i) = Lifecycle::ALL.iter().position(|l| *l == h.lifecycle) {
                n[i] += 1;
            }
        }
        Lifecycle::ALL.iter().map(|l| l.as_str()).zip(n).collect()
    }

    pub fn counts(&self) -> (BTreeMap<HostState, usize>, usize) {
        let flagged = self.hosts.iter().filter(|h| h.flagged).count();
        (self.per_state(), flagged)
    }

    /// Hosts per state, from the state sets: no pass over the hosts.
    pub fn per_state(&self) -> BTreeMap<HostState, usize> {
        HostState::ALL
            .iter()
            .map(|s| (*s, self.by_state[slot(*s)].len()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// The next moment this host's state can change without a heartbeat or an operator.
fn next_change(
    f: &Facts,
    j: &Verdict,
    p: &Policy,
    up_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let interval = chrono::Duration::from_std(f.interval).unwrap_or(chrono::Duration::MAX);
    let late_at = f.last_heard.max(up_since) + interval;
    let build_end =
        f.first_seen + chrono::Duration::from_std(p.build_period).unwrap_or(chrono::Duration::MAX);
    let mut candidates = vec![late_at, j.deadline];
    if let Some((_, t)) = f.other {
        candidates.push(t + interval + chrono::Duration::from_std(p.grace).unwrap_or_default());
    }
    if let Some((until, _)) = &f.maintenance {
        candidates.push(*until);
    }
    match (f.lifecycle_override, f.inventory) {
        (None, None) => candidates.push(build_end),
        (None, Some(i)) => candidates.extend(i.provisioned.map(|prov| {
            prov + chrono::Duration::from_std(p.build_period).unwrap_or(chrono::Duration::MAX)
        })),
        _ => {}
    }
    // Just after the boundary: the judgement uses strict comparisons.
    candidates
        .into_iter()
        .filter(|t| *t >= now)
        .min()
        .map(|t| t + chrono::Duration::milliseconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{hb, t};

    fn reg() -> Registry {
        Registry::new(Policy::default(), t(0))
    }

    fn live(mut r: HeartbeatRecord) -> HeartbeatRecord {
        r.labels.insert("zone".into(), "dal10".into());
        r
    }

    fn messages(r: &mut Registry) -> Vec<String> {
        r.take_notes().into_iter().map(|n| n.message).collect()
    }

    #[test]
    fn history_keeps_silences_reloads_and_reboots() {
        let mut r = reg();
        let mut a = live(hb("h", 0, Health::Ok, vec![]));
        a.booted_at = Some(t(0) - chrono::Duration::days(3));
        r.apply(&a);
        assert_eq!(messages(&mut r), ["first heard, identity id-h"]);
        // Silent, then back after a reload (a new identity): the gap is the old one's.
        r.sweep(t(200));
        assert!(messages(&mut r)
            .iter()
            .any(|m| m.contains("-> silent: last heard")));
        let mut b = a.clone();
        b.received_at = t(300);
        b.identity = "reloaded".into();
        b.booted_at = Some(t(250));
        r.apply(&b);
        let m = messages(&mut r);
        assert!(
            m.iter()
                .any(|m| m.starts_with("heard again after 5m of silence")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m.starts_with("new identity reloaded replaces id-h")),
            "{m:?}"
        );
        // Same identity, new boot time: a reboot; the same boot time again: nothing.
        let mut c = b.clone();
        c.received_at = t(360);
        c.booted_at = Some(t(340));
        r.apply(&c);
        assert_eq!(messages(&mut r).len(), 1);
        c.received_at = t(420);
        r.apply(&c);
        assert!(messages(&mut r).is_empty());
        assert_eq!(r.get("h", t(420)).unwrap().state, HostState::Up);
    }

    #[test]
    fn a_host_turns_late_then_silent_exactly_at_its_deadline() {
        let mut r = reg();
        r.policy.build_period = Duration::ZERO; // live at once
        let first = r.apply(&live(hb("a", 0, Health::Ok, vec![]))).unwrap();
        assert_eq!((first.from, first.to), (None, HostState::Up));
        // Nothing due before the interval.
        assert!(r.sweep(t(59)).is_empty());
        assert_eq!(
            r.next_change(),
            Some(t(60) + chrono::Duration::milliseconds(1))
        );
        let late = r.sweep(t(61));
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].to, HostState::Late);
        // Deadline: 0 + 60 + 120 s; flagged within a millisecond of it.
        assert_eq!(
            r.next_change(),
            Some(t(180) + chrono::Duration::milliseconds(1))
        );
        let silent = r.sweep(t(180) + chrono::Duration::milliseconds(1));
        assert_eq!(silent[0].to, HostState::Silent);
        assert!(silent[0].flagged);
        assert!(
            silent[0]
                .reason
                .starts_with("silent: last heard 12:00:00 UTC, 3m ago"),
            "{}",
            silent[0].reason
        );
        assert_eq!(
            r.query(
                &Filter {
                    state: Some(HostState::Silent),
                    ..Filter::default()
                },
                t(200)
            )
            .len(),
            1
        );
        // Heard again: up, with no sweep needed.
        let back = r.apply(&live(hb("a", 300, Health::Ok, vec![]))).unwrap();
        assert_eq!(
            (back.from, back.to),
            (Some(HostState::Silent), HostState::Up)
        );
        assert!(r
            .query(
                &Filter {
                    state: Some(HostState::Silent),
                    ..Filter::default()
                },
                t(300)
            )
            .is_empty());
    }

    #[test]
    fn restart_flags_nobody_at_once_then_the_ones_that_stayed_quiet() {
        let mut before = reg();
        before.policy.build_period = Duration::ZERO;
        before.apply(&hb("quiet", 0, Health::Ok, vec![]));
        before.apply(&hb("talks", 0, Health::Ok, vec![]));
        // The collector was down from t(10) and comes back at t(1000).
        let rows: Vec<HostRow> = ["quiet", "talks"]
            .iter()
            .map(|n| HostRow {
                host: n.to_string(),
                identity: format!("id-{n}"),
                first_seen: t(0),
                last_heard: t(0),
                interval_secs: 60,
                labels: BTreeMap::new(),
                health: Health::Ok,
                reason: String::new(),
                lifecycle: Some(Lifecycle::Live),
                maintenance: None,
            })
            .collect();
        let mut r = Registry::new(Policy::default(), t(1000));
        r.load(rows, t(1000));
        let (counts, flagged) = r.counts();
        assert_eq!(
            (counts[&HostState::Silent], flagged),
            (0, 0),
            "no false flags at restart"
        );
        r.apply(&hb("talks", 1030, Health::Ok, vec![]));
        let changes = r.sweep(t(1181));
        let silent: Vec<&str> = changes
            .iter()
            .filter(|c| c.to == HostState::Silent)
            .map(|c| c.host.as_str())
            .collect();
        assert_eq!(silent, ["quiet"], "true flags after interval + grace");
    }

    #[test]
    fn a_view_explains_the_state_it_shows() {
        let mut r = reg();
        r.apply(&hb("v", 0, Health::Ok, vec![]));
        // Past the deadline but before the sweeper ran: the state shown and its reason
        // must still agree.
        let v = r.get("v", t(500)).unwrap();
        let word = v.reason.split(':').next().unwrap();
        assert_eq!(word, v.state.as_str(), "{v:?}");
        r.sweep(t(500));
        let v = r.get("v", t(500)).unwrap();
        assert_eq!(
            (v.state, v.reason.split(':').next().unwrap()),
            (HostState::Silent, "silent")
        );
    }

    #[test]
    fn maintenance_expires_by_itself_through_the_sweeper() {
        let mut r = reg();
        r.apply(&hb("m", 0, Health::Critical, vec![]));
        r.set_maintenance("m", Some((t(30), "patching".into())), t(1))
            .unwrap();
        assert_eq!(r.get("m", t(2)).unwrap().state, HostState::Maintenance);
        let ch = r.sweep(t(31));
        assert_eq!(ch[0].to, HostState::Unhealthy, "back to what it really is");
        assert!(r.set_maintenance("nobody", None, t(1)).is_none());
    }

    #[test]
    fn filters_by_labels_state_and_lifecycle() {
        let mut r = reg();
        let mut a = hb("a", 0, Health::Ok, vec![]);
        a.labels.insert("zone".into(), "dal10".into());
        let mut b = hb("b", 0, Health::Critical, vec![]);
        b.labels.insert("zone".into(), "wdc04".into());
        r.apply(&a);
        r.apply(&b);
        let q = |f: Filter| {
            r.query(&f, t(1))
                .into_iter()
                .map(|h| h.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            q(Filter {
                zone: Some("dal10".into()),
                ..Filter::default()
            }),
            ["a"]
        );
        assert_eq!(
            q(Filter {
                region: Some("us-south".into()),
                ..Filter::default()
            }),
            ["a", "b"]
        );
        assert_eq!(
            q(Filter {
                region: Some("eu-de".into()),
                ..Filter::default()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            q(Filter {
                state: Some(HostState::Unhealthy),
                ..Filter::default()
            }),
            ["b"]
        );
        assert_eq!(
            q(Filter {
                lifecycle: Some(Lifecycle::Build),
                ..Filter::default()
            }),
            ["a", "b"]
        );
        let v = r.get("a", t(1)).unwrap();
        assert_eq!(
            serde_json::to_value(&v.labels).unwrap(),
            serde_json::json!({"region": "us-south", "zone": "dal10"}),
            "an object of the non-empty labels (no env, no role)"
        );
    }

    #[test]
    fn lifecycle_follows_the_inventory_and_an_operator_still_overrides() {
        use std::sync::Arc;
        let inv = |text: &str| {
            Arc::new(
                crate::inventory::parse(
                    std::path::Path::new("devices.csv"),
                    text.as_bytes(),
                    &BTreeMap::new(),
                    t(0),
                )
                .unwrap(),
            )
        };
        let mut r = reg();
        // Provisioned at t(0): build for 48 h, then live on the collector's clock alone.
        r.apply_inventory(
            inv("hostname,provisioned,status\nnew,2026-11-22T12:00:00Z,live\nold,2026-01-01,live\nbye,2026-01-01,live\n"),
            t(0),
        );
        for h in ["new", "old", "bye"] {
            r.apply(&hb(h, 10, Health::Ok, vec![]));
        }
        let l = |r: &Registry, h: &str, at: u32| {
            let v = r.get(h, t(at)).unwrap();
            (v.lifecycle, v.lifecycle_source)
        };
        assert_eq!(l(&r, "new", 10), (Lifecycle::Build, "inventory"));
        assert_eq!(l(&r, "old", 10), (Lifecycle::Live, "inventory"));
        let two_days = 48 * 3600;
        let changes = r.sweep(t(two_days) + chrono::Duration::milliseconds(2));
        assert!(changes.iter().any(|c| c.host == "new"), "{changes:?}");
        assert_eq!(l(&r, "new", two_days + 1).0, Lifecycle::Live);
        // Cancelled, and gone from the list after having been in it.
        r.apply_inventory(
            inv("hostname,provisioned,status\nnew,2026-11-22T12:00:00Z,live\nold,2026-01-01,Pending Cancellation\n"),
            t(two_days + 5),
        );
        assert_eq!(l(&r, "old", two_days + 5).0, Lifecycle::Available);
        assert_eq!(
            l(&r, "bye", two_days + 5),
            (Lifecycle::Retired, "inventory")
        );
        // An operator's word wins, and says so.
        r.set_lifecycle("bye", Some(Lifecycle::Live), t(two_days + 6));
        assert_eq!(l(&r, "bye", two_days + 6), (Lifecycle::Live, "operator"));
        // A host first heard after the inventory was read takes its lifecycle at once.
        r.apply_inventory(inv("hostname,status\nlate,cancelled\n"), t(two_days + 7));
        r.apply(&hb("late", two_days + 8, Health::Ok, vec![]));
        assert_eq!(
            l(&r, "late", two_days + 8),
            (Lifecycle::Available, "inventory")
        );
    }
}
