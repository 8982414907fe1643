//! BMC reachability from the scanners, and scan zones.
//!
//! A host cannot reliably reach its own BMC over the LAN, so every scanner (a host with the
//! label `role = scanner`) probes the BMCs of the live hosts in its zone and reports what
//! it found. A BMC counts as unreachable when every scanner that probed it within the last
//! three rounds found it so; one scanner reaching it is enough (the others' trouble is
//! then theirs, and shows in their zone). A zone whose scanners are all silent or have
//! nessusd critical scans nothing, and is flagged.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rollcall_proto::ProbeResult;
use serde::Serialize;

use super::{at, ms, Host, Registry, Transition};
use crate::index::HostId;
use crate::state::{HostState, Lifecycle};

/// The role label value of scanner hosts.
pub const SCANNER_ROLE: &str = "scanner";

/// Index of the zone and role labels in a host's `labels`.
const ZONE: usize = 2;
const ROLE: usize = 3;

/// A host's BMC address and each scanner's latest verdict on it.
#[derive(Debug)]
pub(super) struct BmcWatch {
    address: IpAddr,
    seen: Vec<Seen>,
}

#[derive(Debug)]
struct Seen {
    scanner: HostId,
    reachable: bool,
    /// Since when this scanner's verdict has held.
    since_ms: i64,
    checked_ms: i64,
    detail: Box<str>,
}

/// What a scanner is to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAssignment {
    pub zone: String,
    pub targets: Vec<(String, IpAddr)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScannerView {
    pub name: String,
    pub working: bool,
    /// Why it does or does not count as working.
    pub reason: String,
}

/// One scan zone as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneView {
    pub zone: String,
    /// Hosts labelled with this zone (all lifecycles but retired).
    pub hosts: usize,
    /// Of them, live hosts with a known BMC address: what the zone's scanners probe.
    pub bmcs: usize,
    pub scanners: Vec<ScannerView>,
    pub flagged: bool,
    pub reason: String,
}

impl Registry {
    /// How often scanners are asked to probe.
    pub fn probe_interval(&self) -> std::time::Duration {
        self.policy.probe_interval
    }

    fn label(&self, h: &Host, i: usize) -> &str {
        self.labels.get(h.labels[i])
    }

    fn is_scanner(&self, h: &Host) -> bool {
        self.label(h, ROLE) == SCANNER_ROLE
    }

    /// Probed by the scanners: live, not in maintenance, with a known BMC address.
    /// The BMC address its agent found in-band, whatever its lifecycle.
    pub(super) fn bmc_address(h: &Host) -> Option<IpAddr> {
        h.bmc.as_ref().map(|b| b.address)
    }

    fn probed(h: &Host) -> Option<IpAddr> {
        let assigned = h.lifecycle == Lifecycle::Live && h.state != HostState::Maintenance;
        h.bmc.as_ref().filter(|_| assigned).map(|b| b.address)
    }

    /// Notes the BMC address a heartbeat reported; a new address starts over.
    pub(super) fn watch_bmc(&mut self, id: HostId, address: Option<IpAddr>, now: DateTime<Utc>) {
        let h = &mut self.hosts[id as usize];
        match (address, &mut h.bmc) {
            (None, _) => h.bmc = None,
            (Some(a), Some(b)) if b.address == a => {}
            (Some(a), slot) => {
                let was = slot.as_ref().map(|b| b.address);
                *slot = Some(Box::new(BmcWatch {
                    address: a,
                    seen: Vec::new(),
                }));
                if let Some(was) = was {
                    let name = h.name.to_string();
                    self.note(
                        &name,
                        now,
                        "bmc",
                        format!("BMC address changed from {was} to {a}"),
                    );
                }
            }
        }
    }

    /// "BMC A of H unreachable from scanner S since T", while every scanner with a recent
    /// verdict says so.
    pub(super) fn bmc_unreachable(&self, h: &Host, now: DateTime<Utc>) -> Option<String> {
        let b = h.bmc.as_ref()?;
        let fresh_ms = 3 * self.policy.probe_interval.as_millis() as i64;
        let fresh: Vec<&Seen> = b
            .seen
            .iter()
            .filter(|s| ms(now) - s.checked_ms <= fresh_ms)
            .collect();
        if fresh.is_empty() || fresh.iter().any(|s| s.reachable) {
            return None;
        }
        let since = fresh.iter().map(|s| s.since_ms).min().unwrap_or(0);
        let names: Vec<&str> = fresh
            .iter()
            .map(|s| &*self.hosts[s.scanner as usize].name)
            .collect();
        let scanners = match names.len() {
            1 => format!("scanner {}", names[0]),
            _ => format!("scanners {}", names.join(", ")),
        };
        Some(format!(
            "BMC {} of {} unreachable from {scanners} since {} ({})",
            b.address,
            h.name,
            at(since).format("%Y-%m-%d %H:%M:%S UTC"),
            fresh[0].detail
        ))
    }

    /// The host's BMC address and each scanner's latest verdict on it, for its view.
    /// The scanners' verdict on a host's BMC in words: `reachable`, `unreachable: …`,
    /// `not probed yet`, or `no BMC address` (the agent reported none).
    pub(super) fn bmc_verdict(&self, h: &Host, now: DateTime<Utc>) -> String {
        let Some(b) = h.bmc.as_ref() else {
            return "no BMC address".to_owned();
        };
        if let Some(why) = self.bmc_unreachable(h, now) {
            return format!("unreachable: {why}");
        }
        if b.seen.is_empty() {
            "not probed yet".to_owned()
        } else {
            "reachable".to_owned()
        }
    }

    pub fn bmc_probes(&self, name: &str) -> Option<serde_json::Value> {
        let h = &self.hosts[self.id(name)? as usize];
        let b = h.bmc.as_ref()?;
        let seen: Vec<serde_json::Value> = b
            .seen
            .iter()
            .map(|s| {
                serde_json::json!({
                    "scanner": &*self.hosts[s.scanner as usize].name,
                    "reachable": s.reachable,
                    "since": at(s.since_ms),
                    "checked": at(s.checked_ms),
                    "detail": &*s.detail,
                })
            })
            .collect();
        Some(serde_json::json!({ "address": b.address, "scanners": seen }))
    }

    /// Why `name` may not probe, or its zone.
    fn scanner_zone(&self, name: &str) -> Result<(HostId, u32), String> {
        let Some(id) = self.id(name) else {
            return Err(format!(
                "host {name} has not reported yet; probe targets follow its first heartbeat"
            ));
        };
        let h = &self.hosts[id as usize];
        if !self.is_scanner(h) {
            return Err(format!(
                "host {name} is not a scanner (its role label is {:?}); set role = \"{SCANNER_ROLE}\" in its [host] labels",
                self.label(h, ROLE)
            ));
        }
        if self.label(h, ZONE).is_empty() {
            return Err(format!(
                "scanner {name} has no zone label; set zone in its [host] labels"
            ));
        }
        Ok((id, h.labels[ZONE]))
    }

    /// The BMCs `scanner` probes: those of the live hosts in its zone (not in build,
    /// available, retired or maintenance), itself excluded.
    pub fn probe_targets(&self, scanner: &str) -> Result<ProbeAssignment, String> {
        let (me, zone) = self.scanner_zone(scanner)?;
        let mut targets: Vec<(String, IpAddr)> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| *i as HostId != me && h.labels[ZONE] == zone)
            .filter_map(|(_, h)| Some((h.name.to_string(), Self::probed(h)?)))
            .collect();
        targets.sort();
        Ok(ProbeAssignment {
            zone: self.labels.get(zone).to_owned(),
            targets,
        })
    }

    /// Records a scanner's results. Returns how many were taken, why the others were not,
    /// and the state changes they caused.
    pub fn record_probes(
        &mut self,
        scanner: &str,
        results: &[ProbeResult],
        now: DateTime<Utc>,
    ) -> Result<(u32, Vec<String>, Vec<Transition>), String> {
        let (me, zone) = self.scanner_zone(scanner)?;
        let mut taken = 0;
        let mut ignored = Vec::new();
        let mut touched = Vec::new();
        for r in results {
            let Some(id) = self.id(&r.host) else {
                ignored.push(format!("{}: no such host", r.host));
                continue;
            };
            let h = &self.hosts[id as usize];
            let why = if h.labels[ZONE] != zone {
                Some("not in this scanner's zone".to_owned())
            } else if Self::probed(h) != Some(r.address) {
                Some(match Self::probed(h) {
                    Some(a) => format!("its BMC is now {a}, not {}", r.address),
                    None => "not assigned (not live, in maintenance, or no BMC address)".into(),
                })
            } else {
                None
            };
            if let Some(why) = why {
                ignored.push(format!("{}: {why}", r.host));
                continue;
            }
            taken += 1;
            let checked = ms(r.at.min(now));
            let name = h.name.to_string();
            let address = r.address;
            let Some(b) = self.hosts[id as usize].bmc.as_mut() else {
                continue;
            };
            let seen = Seen {
                scanner: me,
                reachable: r.reachable,
                since_ms: checked,
                checked_ms: checked,
                detail: r.detail.as_str().into(),
            };
            // (the verdict may change the host's state, it is worth a history line)
            let (rejudge, note) = match b.seen.iter().position(|s| s.scanner == me) {
                Some(i) if b.seen[i].reachable == r.reachable => {
                    b.seen[i].checked_ms = checked;
                    b.seen[i].detail = seen.detail;
                    (false, false)
                }
                Some(i) => {
                    b.seen[i] = seen;
                    (true, true)
                }
                None => {
                    // A first verdict is news when it is bad, or when it overrules another
                    // scanner's bad one.
                    let others_unreachable = b.seen.iter().any(|s| !s.reachable);
                    b.seen.push(seen);
                    (true, !r.reachable || others_unreachable)
                }
            };
            if rejudge {
                touched.push(id);
            }
            if note {
                let what = if r.reachable {
                    format!(
                        "BMC {address} reachable from scanner {scanner} ({})",
                        r.detail
                    )
                } else {
                    format!(
                        "BMC {address} unreachable from scanner {scanner} ({})",
                        r.detail
                    )
                };
                self.note(&name, now, "bmc", what);
            }
        }
        let transitions = touched
            .into_iter()
            .filter_map(|id| self.rejudge(id, now))
            .collect();
        Ok((taken, ignored, transitions))
    }

    /// Why this scanner does or does not scan.
    fn scanner_view(&self, h: &Host) -> ScannerView {
        let (working, reason) = match h.state {
            HostState::Silent => (
                false,
                format!(
                    "silent since {}",
                    at(h.last_heard_ms).format("%H:%M:%S UTC")
                ),
            ),
            HostState::Maintenance => (false, "in maintenance".to_owned()),
            _ if h.nessusd_down => (false, format!("nessusd critical: {}", h.health_reason)),
            _ if h.lifecycle == Lifecycle::Retired || h.lifecycle == Lifecycle::Available => {
                (false, format!("lifecycle {}", h.lifecycle.as_str()))
            }
            s => (true, format!("{} and nessusd not critical", s.as_str())),
        };
        ScannerView {
            name: h.name.to_string(),
            working,
            reason,
        }
    }

    /// Every zone label in use, with its scanners. A zone with scanners none of which
    /// works is flagged; a zone without any scanner is shown, not flagged (it is not a
    /// scan zone).
    pub fn zones(&self) -> Vec<ZoneView> {
        // By interned id while counting; named and sorted once at the end.
        let mut zones: super::page::IdMap<u32, ZoneView> = Default::default();
        // The empty zone and the scanner role as ids: no string compared per host.
        let (no_zone, scanner) = (self.labels.find(""), self.labels.find(SCANNER_ROLE));
        for h in &self.hosts {
            if h.lifecycle == Lifecycle::Retired || Some(h.labels[ZONE]) == no_zone {
                continue;
            }
            let z = zones.entry(h.labels[ZONE]).or_insert_with(|| ZoneView {
                zone: self.label(h, ZONE).to_owned(),
                hosts: 0,
                bmcs: 0,
                scanners: Vec::new(),
                flagged: false,
                reason: String::new(),
            });
            z.hosts += 1;
            if Self::probed(h).is_some() {
                z.bmcs += 1;
            }
            if scanner.is_some() && Some(h.labels[ROLE]) == scanner {
                z.scanners.push(self.scanner_view(h));
            }
        }
        let mut out: Vec<ZoneView> = zones.into_values().collect();
        out.sort_unstable_by(|a, b| a.zone.cmp(&b.zone));
        for z in &mut out {
            z.scanners.sort_by(|a, b| a.name.cmp(&b.name));
            let working = z.scanners.iter().filter(|s| s.working).count();
            (z.flagged, z.reason) = match (z.scanners.len(), working) {
                (0, _) => (false, format!("zone {} has no scanner: not a scan zone", z.zone)),
                (_, 0) => (
                    true,
                    format!(
                        "zone {} has no working scanner ({}): its {} BMC(s) are not probed and its hosts not scanned",
                        z.zone,
                        z.scanners
                            .iter()
                            .map(|s| format!("{}: {}", s.name, s.reason))
                            .collect::<Vec<_>>()
                            .join("; "),
                        z.bmcs
                    ),
                ),
                (n, w) => (false, format!("zone {}: {w} of {n} scanner(s) working", z.zone)),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Policy;
    use crate::store::suite::{hb, t};
    use crate::store::{HeartbeatRecord, StateJson};
    use rollcall_proto::{AgentState, Health};

    /// A heartbeat from `host` in `zone` with `role`, its BMC at `bmc`, its nessusd
    /// `nessusd` (if any).
    fn beat(
        host: &str,
        at: u32,
        zone: &str,
        role: &str,
        bmc: Option<&str>,
        nessusd: Option<Health>,
    ) -> HeartbeatRecord {
        let mut r = hb(host, at, Health::Ok, vec![]);
        r.labels.insert("zone".into(), zone.into());
        r.labels.insert("role".into(), role.into());
        let mut state = serde_json::json!({
            "proto_version": 1, "agent_version": "t", "at": t(at),
            "besclient": {
                "health": "ok", "status": "running", "reason": "running",
                "since": t(0), "pid": 7, "manager": "systemd", "unit_state": null,
                "log": {"dir": "/l", "dir_exists": true, "newest": null, "last_write": null,
                    "stale_after_secs": 3600, "stale": false},
                "errors": {"count": 0, "last_line": null, "last_at": null}, "disk": null,
                "remediation": {"enabled": true, "paused_until": null, "pause_reason": null,
                    "step": null, "exhausted_rounds": 0, "next_attempt_at": null,
                    "attempts_in_window": 0, "flapping": false}
            }
        });
        if let Some(a) = bmc {
            state["bmc"] = serde_json::json!({"health": "ok", "present": true, "address": a,
                "channel": 1, "reason": "ok", "checked_at": t(at)});
        }
        if let Some(h) = nessusd {
            state["nessusd"] = serde_json::json!({"health": h, "status": "ready",
                "reason": format!("nessusd {h}"), "since": t(0), "pid": 9, "manager": "systemd",
                "unit_state": null, "remediation": state["besclient"]["remediation"].clone()});
            r.health = h;
            r.reason = format!("nessusd {h}");
        }
        let s: AgentState = serde_json::from_value(state).unwrap();
        r.state_json = StateJson::Parsed(std::sync::Arc::new(s));
        r
    }

    fn result(host: &str, address: &str, reachable: bool, at: u32) -> ProbeResult {
        ProbeResult {
            host: host.into(),
            address: address.parse().unwrap(),
            reachable,
            via: reachable.then(|| "asf".to_owned()),
            detail: if reachable {
                "pong in 1 ms"
            } else {
                "no answer to 3 ASF pings, 3 IPMI tries"
            }
            .into(),
            at: t(at),
        }
    }

    /// A fleet past its build period: two scanners in z1, hosts in z1 and z2.
    fn fleet() -> Registry {
        let mut r = Registry::new(Policy::default(), t(0));
        r.apply(&beat("scan-a", 0, "z1", "scanner", None, Some(Health::Ok)));
        r.apply(&beat("scan-b", 0, "z1", "scanner", None, Some(Health::Ok)));
        r.apply(&beat("h1", 0, "z1", "worker", Some("10.0.0.1"), None));
        r.apply(&beat("h2", 0, "z1", "worker", Some("10.0.0.2"), None));
        r.apply(&beat("vm", 0, "z1", "worker", None, None));
        r.apply(&beat("far", 0, "z2", "worker", Some("10.9.0.1"), None));
        for h in ["scan-a", "scan-b", "h1", "h2", "vm", "far"] {
            r.set_lifecycle(h, Some(Lifecycle::Live), t(1));
        }
        r
    }

    fn names(a: &ProbeAssignment) -> Vec<&str> {
        a.targets.iter().map(|(h, _)| h.as_str()).collect()
    }

    #[test]
    fn a_scanner_gets_the_bmcs_of_the_live_hosts_in_its_zone() {
        let mut r = fleet();
        let a = r.probe_targets("scan-a").unwrap();
        assert_eq!(a.zone, "z1");
        assert_eq!(names(&a), ["h1", "h2"], "no VM, no other zone, not itself");
        // Maintenance, build and available hosts are not assigned; a new host in build is
        // not either until it is live.
        r.set_maintenance("h1", Some((t(3600), "firmware".into())), t(2));
        r.set_lifecycle("h2", Some(Lifecycle::Available), t(2));
        r.apply(&beat("h3", 2, "z1", "worker", Some("10.0.0.3"), None));
        assert!(names(&r.probe_targets("scan-a").unwrap()).is_empty());
        r.set_maintenance("h1", None, t(3));
        r.set_lifecycle("h3", Some(Lifecycle::Live), t(3));
        assert_eq!(names(&r.probe_targets("scan-a").unwrap()), ["h1", "h3"]);
        // A host leaving the zone leaves the list.
        r.apply(&beat("h3", 4, "z2", "worker", Some("10.0.0.3"), None));
        assert_eq!(names(&r.probe_targets("scan-a").unwrap()), ["h1"]);
        // Not a scanner, or no zone: refused, saying what to set.
        assert!(r
            .probe_targets("h1")
            .unwrap_err()
            .contains("role = \"scanner\""));
        r.apply(&beat("scan-c", 5, "", "scanner", None, None));
        assert!(r.probe_targets("scan-c").unwrap_err().contains("zone"));
        assert!(r
            .probe_targets("nobody")
            .unwrap_err()
            .contains("not reported"));
    }

    #[test]
    fn a_bmc_unreachable_from_every_scanner_makes_its_host_unhealthy_with_the_reason() {
        let mut r = fleet();
        let (n, ignored, ch) = r
            .record_probes("scan-a", &[result("h1", "10.0.0.1", false, 10)], t(10))
            .unwrap();
        assert_eq!((n, ignored.len()), (1, 0));
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].to, HostState::Unhealthy);
        assert_eq!(
            ch[0].reason,
            "unhealthy: BMC 10.0.0.1 of h1 unreachable from scanner scan-a since 2026-11-22 12:00:10 UTC (no answer to 3 ASF pings, 3 IPMI tries)"
        );
        assert!(ch[0].flagged);
        // Another scanner reaches it: the BMC is reachable, the trouble is scan-a's path.
        let (_, _, ch) = r
            .record_probes("scan-b", &[result("h1", "10.0.0.1", true, 11)], t(11))
            .unwrap();
        assert_eq!(ch[0].to, HostState::Up);
        // Both unreachable: named together, since the earliest.
        r.record_probes("scan-b", &[result("h1", "10.0.0.1", false, 20)], t(20))
            .unwrap();
        let v = r.get("h1", t(21)).unwrap();
        assert!(
            v.reason
                .contains("unreachable from scanners scan-a, scan-b since 2026-11-22 12:00:10 UTC"),
            "{}",
            v.reason
        );
        // Verdicts older than three rounds stop counting (the next heartbeat re-judges).
        r.apply(&beat(
            "h1",
            20 + 3 * 300 + 1,
            "z1",
            "worker",
            Some("10.0.0.1"),
            None,
        ));
        assert_eq!(
            r.get("h1", t(20 + 3 * 300 + 1)).unwrap().state,
            HostState::Up
        );
        // Recorded in the host's history.
        let notes: Vec<String> = r.take_notes().into_iter().map(|n| n.message).collect();
        assert!(
            notes
                .iter()
                .any(|m| m == "BMC 10.0.0.1 reachable from scanner scan-b (pong in 1 ms)"),
            "{notes:?}"
        );
    }

    #[test]
    fn results_for_hosts_not_assigned_are_ignored_and_said_why() {
        let mut r = fleet();
        let (n, why, ch) = r
            .record_probes(
                "scan-a",
                &[
                    result("far", "10.9.0.1", false, 10),
                    result("h2", "10.0.0.99", false, 10),
                    result("ghost", "10.0.0.7", false, 10),
                ],
                t(10),
            )
            .unwrap();
        assert_eq!((n, ch.len()), (0, 0));
        assert_eq!(
            why,
            [
                "far: not in this scanner's zone",
                "h2: its BMC is now 10.0.0.2, not 10.0.0.99",
                "ghost: no such host"
            ]
        );
        assert!(r.record_probes("h1", &[], t(10)).is_err());
    }

    #[test]
    fn a_zone_whose_scanners_are_all_silent_or_have_nessusd_critical_is_flagged() {
        let mut r = fleet();
        let z = |r: &Registry| r.zones().into_iter().find(|z| z.zone == "z1").unwrap();
        assert!(!z(&r).flagged, "{}", z(&r).reason);
        assert_eq!(z(&r).reason, "zone z1: 2 of 2 scanner(s) working");
        // scan-a's nessusd goes critical: one left.
        r.apply(&beat(
            "scan-a",
            30,
            "z1",
            "scanner",
            None,
            Some(Health::Critical),
        ));
        r.apply(&beat("scan-b", 30, "z1", "scanner", None, Some(Health::Ok)));
        assert!(!z(&r).flagged);
        // scan-b goes silent (heard at 30, interval 60 + grace 120); scan-a reports on.
        r.apply(&beat(
            "scan-a",
            200,
            "z1",
            "scanner",
            None,
            Some(Health::Critical),
        ));
        r.sweep(t(30 + 181));
        let zone = z(&r);
        assert!(zone.flagged, "{}", zone.reason);
        assert!(
            zone.reason
                .starts_with("zone z1 has no working scanner (scan-a: nessusd critical"),
            "{}",
            zone.reason
        );
        assert!(
            zone.reason.contains("scan-b: silent since"),
            "{}",
            zone.reason
        );
        assert_eq!(zone.bmcs, 2);
        // A zone without scanners is listed, never flagged.
        let z2 = r.zones().into_iter().find(|z| z.zone == "z2").unwrap();
        assert!(!z2.flagged && z2.scanners.is_empty());
        // scan-b back: the zone works again.
        r.apply(&beat(
            "scan-b",
            400,
            "z1",
            "scanner",
            None,
            Some(Health::Ok),
        ));
        assert!(!z(&r).flagged);
    }
}
