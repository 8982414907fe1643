//! What the incident engine is handed: the live hosts that are flagged or flapping, with
//! each of their problems named by check, and the tallies that tell a dark region or zone
//! from a few silent hosts.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rollcall_proto::{AgentState, CheckinVerdict, DaemonStatus, Health};

use super::{ms, Host, Registry, LABELS};
use crate::incidents::{HostObserved, Kind, Observed, Problem, Tally};
use crate::index::HostId;
use crate::state::{HostState, Lifecycle};

/// Flag changes kept per host: enough to judge flapping for any sane limit.
const FLIPS_KEPT: usize = 64;

/// Index of the region and zone labels in a host's `labels`.
const REGION: usize = 1;
const ZONE: usize = 2;

/// A host's critical checks, with their words.
pub(super) type CriticalChecks = Box<[(Kind, Box<str>)]>;

/// The checks an agent says are critical, each with its own words.
pub(super) fn critical_checks(s: &AgentState) -> Vec<(Kind, Box<str>)> {
    let mut out = Vec::new();
    let b = &s.besclient;
    if b.health == Health::Critical {
        let checkin = b
            .checkin
            .as_ref()
            .filter(|c| c.verdict == CheckinVerdict::Critical && b.status == DaemonStatus::Running);
        match checkin {
            Some(c) => out.push((Kind::UnhealthyCheckin, c.reason.as_str().into())),
            None => out.push((Kind::UnhealthyBesclient, b.reason.as_str().into())),
        }
    }
    if let Some(n) = s.nessusd.as_ref().filter(|n| n.health == Health::Critical) {
        out.push((Kind::UnhealthyNessusd, n.reason.as_str().into()));
    }
    if let Some(m) = s.bmc.as_ref().filter(|m| m.health == Health::Critical) {
        out.push((Kind::UnhealthyBmc, m.reason.as_str().into()));
    }
    out
}

impl Registry {
    /// Counts a change of a live host's flag, for flapping.
    pub(super) fn flipped(&mut self, id: HostId, now_ms: i64) {
        let h = &mut self.hosts[id as usize];
        let mut flips = h.flips.take().map(Vec::from).unwrap_or_default();
        if flips.len() >= FLIPS_KEPT {
            flips.remove(0);
        }
        flips.push(now_ms);
        h.flips = Some(flips.into_boxed_slice());
    }

    /// Flag changes of `h` within `window` before `now`.
    fn flips_within(h: &Host, window: std::time::Duration, now: DateTime<Utc>) -> usize {
        let from = ms(now) - window.as_millis() as i64;
        h.flips
            .as_ref()
            .map_or(0, |f| f.iter().filter(|t| **t > from).count())
    }

    /// What the incident engine derives incidents from, at `now`: a host flapping when its
    /// flag changed more than `flap_changes` times within `flap_window`.
    pub fn observe(
        &self,
        now: DateTime<Utc>,
        flap_changes: usize,
        flap_window: std::time::Duration,
    ) -> Observed {
        let mut obs = Observed::default();
        let mut regions = HashMap::<u32, Tally>::new();
        let mut zones = HashMap::<u32, Tally>::new();
        for (id, h) in self.hosts.iter().enumerate() {
            if h.lifecycle != Lifecycle::Live || h.state == HostState::Maintenance {
                continue;
            }
            obs.live += 1;
            let quiet = usize::from(matches!(h.state, HostState::Late | HostState::Silent));
            obs.quiet += quiet;
            for (map, label) in [
                (&mut regions, h.labels[REGION]),
                (&mut zones, h.labels[ZONE]),
            ] {
                let t = map.entry(label).or_default();
                t.live += 1;
                t.quiet += quiet;
            }
            let flips = Self::flips_within(h, flap_window, now);
            let flapping = (flips > flap_changes).then_some(flips);
            if !h.flagged && flapping.is_none() {
                continue;
            }
            obs.hosts
                .push(self.host_observed(id as HostId, now, flapping));
        }
        let tallies = |m: HashMap<u32, Tally>| -> BTreeMap<String, Tally> {
            m.into_iter()
                .map(|(k, t)| (self.labels.get(k).to_owned(), t))
                .filter(|(k, _)| !k.is_empty())
                .collect()
        };
        obs.regions = tallies(regions);
        obs.zones = tallies(zones);
        obs.scannerless = self
            .zones()
            .into_iter()
            .filter(|z| z.flagged)
            .map(|z| {
                let scanners = z.scanners.into_iter().map(|s| s.name).collect();
                (z.zone, z.reason, scanners)
            })
            .collect();
        obs.suspect_relays = self
            .suspects
            .words
            .iter()
            .map(|(relay, words)| (self.labels.get(*relay).to_owned(), words.clone()))
            .collect();
        obs.suspect_relays.sort();
        obs
    }

    fn host_observed(
        &self,
        id: HostId,
        now: DateTime<Utc>,
        flapping: Option<usize>,
    ) -> HostObserved {
        let h = &self.hosts[id as usize];
        let f = self.facts(h, now);
        let span = chrono::Duration::from_std(f.interval + self.policy.grace)
            .unwrap_or(chrono::Duration::MAX);
        // Words only where a problem takes them (they are the costly part).
        let reason = || self.reason(id, now);
        let problems = if !h.flagged {
            Vec::new()
        } else {
            match h.state {
                HostState::Silent => vec![Problem {
                    kind: Kind::Silent,
                    reason: reason(),
                }],
                HostState::Duplicate => vec![Problem {
                    kind: Kind::Duplicate,
                    reason: reason(),
                }],
                _ => {
                    let mut v: Vec<Problem> = h
                        .critical
                        .iter()
                        .flat_map(|c| c.iter())
                        .map(|(kind, why)| Problem {
                            kind: *kind,
                            reason: why.to_string(),
                        })
                        .collect();
                    if let Some(bmc) = &f.bmc_unreachable {
                        v.push(Problem {
                            kind: Kind::BmcUnreachable,
                            reason: bmc.clone(),
                        });
                    }
                    if v.is_empty() {
                        v.push(Problem {
                            kind: Kind::Unhealthy,
                            reason: reason(),
                        });
                    }
                    v
                }
            }
        };
        HostObserved {
            name: h.name.to_string(),
            labels: LABELS
                .iter()
                .zip(h.labels)
                .map(|(k, v)| ((*k).to_owned(), self.labels.get(v).to_owned()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            state: h.state,
            silent_since: (h.state == HostState::Silent)
                .then(|| crate::state::deadline(&f, &self.policy, self.up_since)),
            deadline_span: span,
            problems,
            suspect_relay: h
                .checkin
                .as_deref()
                .filter(|c| c.failing_since_ms.is_some())
                .filter(|c| self.suspects.words.contains_key(&c.relay))
                .map(|c| self.labels.get(c.relay).to_owned()),
            flapping,
        }
    }

    /// A host's state in words, for the resolution of its incidents.
    pub fn status_words(&self, name: &str, now: DateTime<Utc>) -> Option<String> {
        let id = self.id(name)?;
        let h = &self.hosts[id as usize];
        if h.lifecycle != Lifecycle::Live {
            return Some(format!(
                "{} (lifecycle), no longer checked",
                h.lifecycle.as_str()
            ));
        }
        Some(self.reason(id, now))
    }

    /// When every host loaded at start has had its chance to be heard since the collector
    /// came up: before that, silence proves nothing and no incident is opened or resolved.
    pub fn settled_at(&self) -> DateTime<Utc> {
        let longest = self
            .hosts
            .iter()
            .map(|h| h.interval_s)
            .max()
            .unwrap_or(0)
            .min(3600);
        self.up_since
            + chrono::Duration::seconds(longest as i64)
            + chrono::Duration::from_std(self.policy.grace).unwrap_or_default()
    }
}
