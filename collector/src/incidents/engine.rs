//! From what was observed to which incidents are open: each pass derives the incidents
//! that should be open now, opens the new ones, keeps the rest current (their hosts,
//! whether a group covers them) and resolves what is gone. Pure: time and routing are
//! handed in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::words;
use super::{Action, HostObserved, Incident, Kind, Observed, Rules, Tally, UPDATE_AFTER};
use crate::state::HostState;

/// What one pass changed, to be made durable in one transaction before anything is sent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Step {
    /// Every incident opened, changed or resolved, as it now is.
    pub changed: Vec<Incident>,
    /// Notifications: incident id, receiver, action, the incident as it is told.
    pub outbox: Vec<(i64, String, Action, Incident)>,
}

impl Step {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

/// An incident as this pass wants it.
#[derive(Debug)]
struct Want {
    kind: Kind,
    subject: String,
    labels: BTreeMap<String, String>,
    hosts: Vec<String>,
    summary: String,
    next_step: String,
    covered_by: Option<String>,
}

impl Want {
    fn key(&self) -> String {
        key(self.kind, &self.subject)
    }
}

pub fn key(kind: Kind, subject: &str) -> String {
    format!("{kind}/{subject}")
}

/// Open incidents and the rules they are judged by.
#[derive(Debug)]
pub struct Engine {
    rules: Rules,
    open: BTreeMap<String, Incident>,
    next_id: i64,
    /// Groups (dark regions and zones, a blind collector) resolved lately, and when: their
    /// last silent hosts are usually coming back with them, so they are held a little
    /// longer before being told on their own.
    ended: BTreeMap<String, DateTime<Utc>>,
}

impl Engine {
    /// With the incidents still open when the collector stopped, and the next free id.
    pub fn new(rules: Rules, open: Vec<Incident>, next_id: i64) -> Engine {
        let next_id = open
            .iter()
            .map(|i| i.id + 1)
            .max()
            .unwrap_or(1)
            .max(next_id);
        Engine {
            rules,
            open: open.into_iter().map(|i| (i.key.clone(), i)).collect(),
            next_id,
            ended: BTreeMap::new(),
        }
    }

    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    /// One pass at `now`. `status` gives a host's current state in words (for the
    /// resolution of its incidents); `route` the receivers an incident goes to.
    pub fn reconcile(
        &mut self,
        obs: &Observed,
        now: DateTime<Utc>,
        status: &dyn Fn(&str) -> Option<String>,
        route: &dyn Fn(&Incident) -> Vec<String>,
    ) -> Step {
        self.ended
            .retain(|_, t| now - *t < chrono::TimeDelta::hours(1));
        let mut wants = self.wants(obs, now);
        // Groups ending in this pass hold their silent hosts from now on (see `ended`).
        let ending: Vec<String> = self
            .open
            .values()
            .filter(|i| {
                matches!(
                    i.kind,
                    Kind::RegionDark | Kind::ZoneDark | Kind::CollectorBlind
                )
            })
            .filter(|i| !wants.iter().any(|w| w.key() == i.key))
            .map(|i| i.key.clone())
            .collect();
        if !ending.is_empty() {
            for k in ending {
                self.ended.insert(k, now);
            }
            wants = self.wants(obs, now);
        }
        let mut step = Step::default();
        let wanted: BTreeSet<String> = wants.iter().map(Want::key).collect();
        let open_groups: BTreeSet<String> = wants
            .iter()
            .filter(|w| !w.kind.is_host())
            .map(Want::key)
            .collect();
        // Groups first: a host incident uncovered in this pass by a resolved group is told
        // after the group's resolve.
        for key in self.open.keys().cloned().collect::<Vec<_>>() {
            if wanted.contains(&key) {
                continue;
            }
            let Some(mut inc) = self.open.remove(&key) else {
                continue;
            };
            let why = words::resolution(&inc, obs, status);
            inc.resolved_at = Some(now);
            inc.state = "resolved".into();
            inc.resolution = Some(why.clone());
            inc.log(now, "resolved", why);
            for r in &inc.notified {
                step.outbox
                    .push((inc.id, r.clone(), Action::Resolve, inc.clone()));
            }
            step.changed.push(inc);
        }
        for w in wants {
            let key = w.key();
            match self.open.get_mut(&key) {
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let mut inc = Incident {
                        id,
                        key: key.clone(),
                        kind: w.kind,
                        subject: w.subject,
                        severity: w.kind.severity(),
                        state: "open".into(),
                        summary: w.summary.clone(),
                        next_step: w.next_step,
                        runbook: self.rules.runbooks.get(&w.kind).cloned(),
                        labels: w.labels,
                        hosts: w.hosts,
                        covered_by: w.covered_by.clone(),
                        opened_at: now,
                        updated_at: now,
                        notified_at: None,
                        resolved_at: None,
                        resolution: None,
                        notified: Vec::new(),
                        told_hosts: 0,
                        told_at: None,
                        history: Vec::new(),
                    };
                    inc.log(now, "opened", w.summary);
                    match &w.covered_by {
                        Some(g) => {
                            inc.log(now, "covered", covered_words(g, &open_groups, &self.ended))
                        }
                        None => notify(&mut inc, now, route, &mut step),
                    }
                    step.changed.push(inc.clone());
                    self.open.insert(key, inc);
                }
                Some(inc) => {
                    let mut changed = false;
                    if inc.hosts != w.hosts {
                        inc.hosts = w.hosts;
                        // Group summaries carry counts; a host's words stay as opened
                        // (its "3m ago" would change every pass).
                        if !inc.kind.is_host() {
                            inc.summary = w.summary;
                        }
                        inc.updated_at = now;
                        changed = true;
                        let grown = inc.hosts.len() >= 2 * inc.told_hosts.max(1);
                        let quiet_since = inc.told_at.is_none_or(|t| now - t >= UPDATE_AFTER);
                        if !inc.kind.is_host() && !inc.notified.is_empty() && grown && quiet_since {
                            let was = inc.told_hosts;
                            inc.told_hosts = inc.hosts.len();
                            inc.told_at = Some(now);
                            inc.log(
                                now,
                                "updated",
                                format!(
                                    "now {} hosts (told with {was}): {}",
                                    inc.hosts.len(),
                                    inc.summary
                                ),
                            );
                            for r in &inc.notified {
                                step.outbox
                                    .push((inc.id, r.clone(), Action::Update, inc.clone()));
                            }
                        }
                    }
                    if inc.covered_by != w.covered_by {
                        match &w.covered_by {
                            Some(g) => {
                                inc.log(now, "covered", covered_words(g, &open_groups, &self.ended))
                            }
                            None => {
                                let was = inc.covered_by.clone().unwrap_or_default();
                                inc.log(now, "uncovered", format!("outlived {was}"));
                                if inc.notified_at.is_none() {
                                    notify(inc, now, route, &mut step);
                                }
                            }
                        }
                        inc.covered_by = w.covered_by;
                        changed = true;
                    }
                    if changed {
                        step.changed.push(inc.clone());
                    }
                }
            }
        }
        step
    }

    /// Every incident that should be open, given `obs`.
    fn wants(&self, obs: &Observed, now: DateTime<Utc>) -> Vec<Want> {
        let mut out = Vec::new();
        let silent: Vec<&HostObserved> = obs
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Silent)
            .collect();
        let is_open = |k: Kind, s: &str| self.open.contains_key(&key(k, s));

        // Blind: nearly every host silent at once.
        let min = self.rules.dark_min_hosts;
        let blind_key = key(Kind::CollectorBlind, "fleet");
        let blind = obs.live >= 2 * min.max(1)
            && if is_open(Kind::CollectorBlind, "fleet") {
                silent.len() * 5 >= obs.live
            } else {
                silent.len() * 10 >= obs.live * 9
            };
        if blind {
            out.push(Want {
                kind: Kind::CollectorBlind,
                subject: "fleet".into(),
                labels: BTreeMap::new(),
                hosts: names(&silent),
                summary: words::blind(silent.len(), obs.live),
                next_step: words::next_step(Kind::CollectorBlind, "fleet", ""),
                covered_by: None,
            });
        }

        // Dark regions, then zones (a zone of a dark region is covered by it).
        let mut dark_regions = BTreeSet::new();
        for (scope, label, tallies) in [
            (Kind::RegionDark, "region", &obs.regions),
            (Kind::ZoneDark, "zone", &obs.zones),
        ] {
            for (name, tally) in tallies {
                let members: Vec<&HostObserved> = silent
                    .iter()
                    .copied()
                    .filter(|h| h.labels.get(label) == Some(name))
                    .collect();
                if !self.dark(&members, tally, is_open(scope, name)) {
                    continue;
                }
                let region = members
                    .iter()
                    .find_map(|h| h.labels.get("region"))
                    .cloned()
                    .unwrap_or_default();
                let covered_by = if blind {
                    Some(blind_key.clone())
                } else if scope == Kind::ZoneDark && dark_regions.contains(&region) {
                    Some(key(Kind::RegionDark, &region))
                } else {
                    None
                };
                if scope == Kind::RegionDark {
                    dark_regions.insert(name.clone());
                }
                let mut labels = BTreeMap::from([(label.to_owned(), name.clone())]);
                if scope == Kind::ZoneDark && !region.is_empty() {
                    labels.insert("region".into(), region);
                }
                out.push(Want {
                    kind: scope,
                    subject: name.clone(),
                    labels,
                    hosts: names(&members),
                    summary: words::dark(label, name, members.len(), tally.live),
                    next_step: words::next_step(scope, name, ""),
                    covered_by,
                });
            }
        }
        let dark_zones: BTreeSet<String> = out
            .iter()
            .filter(|w| w.kind == Kind::ZoneDark)
            .map(Want::key)
            .collect();
        let dark_zone = |h: &HostObserved| {
            h.labels
                .get("zone")
                .map(|z| key(Kind::ZoneDark, z))
                .filter(|k| dark_zones.contains(k))
        };
        // A silent host whose region or zone is going quiet (enough of its hosts late or
        // silent to go dark) is held for that group rather than told on its own: when a
        // region is cut off, its hosts turn silent one by one over an interval, and the
        // first of them must not page before the region is seen. The hold lasts at most
        // twice the host's deadline span from its silence (the window dark is judged in).
        let going_quiet = |label: &str, h: &HostObserved, tallies: &BTreeMap<String, Tally>| {
            let since = h.silent_since?;
            if now - since > h.deadline_span * 2 {
                return None;
            }
            let name = h.labels.get(label)?;
            let t = tallies.get(name)?;
            (t.quiet >= self.rules.dark_min_hosts.max(1) && t.quiet * 2 >= t.live).then(|| {
                let kind = if label == "region" {
                    Kind::RegionDark
                } else {
                    Kind::ZoneDark
                };
                key(kind, name)
            })
        };
        // A group that ended lately still holds its silent hosts for twice their deadline
        // span: a region coming back returns host by host, and the last few are not news.
        let coming_back = |h: &HostObserved| {
            [("region", Kind::RegionDark), ("zone", Kind::ZoneDark)]
                .iter()
                .filter_map(|(label, kind)| h.labels.get(*label).map(|v| key(*kind, v)))
                .chain([blind_key.clone()])
                .find(|k| {
                    self.ended
                        .get(k)
                        .is_some_and(|t| now - *t <= h.deadline_span * 2)
                })
        };
        let cover_silent: std::collections::HashMap<String, Option<String>> = silent
            .iter()
            .map(|h| {
                let region = h
                    .labels
                    .get("region")
                    .filter(|r| dark_regions.contains(*r))
                    .map(|r| key(Kind::RegionDark, r));
                // The whole fleet going quiet is the collector going blind.
                let fleet_quiet = obs.live >= 2 * min.max(1)
                    && obs.quiet * 10 >= obs.live * 9
                    && h.silent_since
                        .is_some_and(|t| now - t <= h.deadline_span * 2);
                let by = if blind || fleet_quiet {
                    Some(blind_key.clone())
                } else {
                    region
                        .or_else(|| dark_zone(h))
                        .or_else(|| going_quiet("region", h, &obs.regions))
                        .or_else(|| going_quiet("zone", h, &obs.zones))
                        .or_else(|| coming_back(h))
                };
                (h.name.clone(), by)
            })
            .collect();

        for (relay, sentence) in &obs.suspect_relays {
            let members: Vec<&HostObserved> = obs
                .hosts
                .iter()
                .filter(|h| h.suspect_relay.as_deref() == Some(relay))
                .collect();
            let mut labels = BTreeMap::new();
            if let Some(r) = common(&members, "region") {
                labels.insert("region".into(), r);
            }
            out.push(Want {
                kind: Kind::RelaySuspect,
                subject: relay.clone(),
                labels,
                hosts: names(&members),
                summary: sentence.clone(),
                next_step: words::next_step(Kind::RelaySuspect, relay, ""),
                covered_by: None,
            });
        }
        if let Some((sentence, hosts)) = &obs.drift {
            out.push(Want {
                kind: Kind::InventoryDrift,
                subject: "inventory".into(),
                labels: BTreeMap::new(),
                hosts: hosts.clone(),
                summary: sentence.clone(),
                next_step: words::next_step(Kind::InventoryDrift, "inventory", ""),
                covered_by: None,
            });
        }
        for (zone, sentence, scanners) in &obs.scannerless {
            out.push(Want {
                kind: Kind::ZoneNoScanner,
                subject: zone.clone(),
                labels: BTreeMap::from([("zone".to_owned(), zone.clone())]),
                hosts: scanners.clone(),
                summary: sentence.clone(),
                next_step: words::next_step(Kind::ZoneNoScanner, zone, sentence),
                covered_by: None,
            });
        }

        for h in &obs.hosts {
            let flapping = h.flapping.map(|n| {
                out.push(Want {
                    kind: Kind::Flapping,
                    subject: h.name.clone(),
                    labels: h.labels.clone(),
                    hosts: vec![h.name.clone()],
                    summary: words::flapping(&h.name, n, self.rules.flap_window),
                    next_step: words::next_step(Kind::Flapping, &h.name, ""),
                    covered_by: None,
                });
                key(Kind::Flapping, &h.name)
            });
            for p in &h.problems {
                let covered_by = flapping.clone().or_else(|| match p.kind {
                    Kind::Silent => cover_silent.get(&h.name).cloned().flatten(),
                    Kind::UnhealthyCheckin => {
                        h.suspect_relay.as_ref().map(|r| key(Kind::RelaySuspect, r))
                    }
                    _ => None,
                });
                out.push(Want {
                    kind: p.kind,
                    subject: h.name.clone(),
                    labels: h.labels.clone(),
                    hosts: vec![h.name.clone()],
                    summary: format!("{}: {}", h.name, p.reason),
                    next_step: words::next_step(p.kind, &h.name, &p.reason),
                    covered_by,
                });
            }
        }
        out
    }

    /// Whether `members` (the silent hosts of a region or zone) make it dark: at least
    /// `dark_min_hosts` and half its live hosts, silent within twice a deadline of each
    /// other. Once dark, it stays so until fewer than 20% remain silent.
    fn dark(&self, members: &[&HostObserved], tally: &Tally, was_open: bool) -> bool {
        if was_open {
            return members.len() * 5 >= tally.live && !members.is_empty();
        }
        if members.len() < self.rules.dark_min_hosts.max(1) || members.len() * 2 < tally.live {
            return false;
        }
        let mut since: Vec<DateTime<Utc>> = members.iter().filter_map(|h| h.silent_since).collect();
        since.sort_unstable();
        let span = members
            .iter()
            .map(|h| h.deadline_span)
            .max()
            .unwrap_or_default()
            * 2;
        let (mut best, mut lo) = (0, 0);
        for hi in 0..since.len() {
            while since[hi] - since[lo] > span {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best >= self.rules.dark_min_hosts.max(1) && best * 2 >= tally.live
    }
}

/// Why a covered incident is not told: its group is open, or its region or zone is going
/// quiet and may be.
fn covered_words(
    group: &str,
    open: &BTreeSet<String>,
    ended: &BTreeMap<String, DateTime<Utc>>,
) -> String {
    if open.contains(group) {
        format!("listed in {group}, not notified on its own")
    } else if ended.contains_key(group) {
        format!("held: {group} just ended and its hosts are coming back; told on its own if it stays silent")
    } else {
        format!("held: most hosts of {} are late or silent; told on its own if that does not turn into {group}", group.split('/').nth(1).unwrap_or(group))
    }
}

fn names(hosts: &[&HostObserved]) -> Vec<String> {
    let mut v: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    v.sort();
    v
}

/// The value of `label` all of `hosts` share, if they do.
fn common(hosts: &[&HostObserved], label: &str) -> Option<String> {
    let first = hosts.first()?.labels.get(label)?;
    hosts
        .iter()
        .all(|h| h.labels.get(label) == Some(first))
        .then(|| first.clone())
}

/// Routes `inc` and queues its trigger for every receiver that takes it.
fn notify(
    inc: &mut Incident,
    now: DateTime<Utc>,
    route: &dyn Fn(&Incident) -> Vec<String>,
    step: &mut Step,
) {
    let to = route(inc);
    if to.is_empty() {
        inc.log(now, "notified", "no receiver's route takes it".into());
        return;
    }
    inc.notified_at = Some(now);
    inc.notified = to.clone();
    inc.told_hosts = inc.hosts.len();
    inc.told_at = Some(now);
    inc.log(now, "notified", format!("queued for {}", to.join(", ")));
    for r in to {
        step.outbox.push((inc.id, r, Action::Trigger, inc.clone()));
    }
}

#[cfg(test)]
mod tests;
