//! The fleet against the inventory: who should report and does not, who reports and is
//! listed nowhere, whose labels or BMC address disagree, which names are doubled, whose
//! lifecycle disagrees. Every line says what to do.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Inventory;
use crate::state::{HostState, Lifecycle};

/// A host as the collector knows it, for reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported<'a> {
    pub name: &'a str,
    /// env, region, zone, role.
    pub labels: [&'a str; 4],
    pub last_heard: DateTime<Utc>,
    pub state: HostState,
    pub lifecycle: Lifecycle,
    /// Its BMC address, as its agent found it in-band.
    pub bmc: Option<std::net::IpAddr>,
}

const LABELS: [&str; 4] = ["env", "region", "zone", "role"];

/// The classes, in the order a report lists them.
pub const CLASSES: [&str; 5] = ["missing", "unknown", "mismatch", "duplicate", "lifecycle"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub class: &'static str,
    pub host: String,
    pub what: String,
    pub to_do: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub inventory: String,
    pub inventory_loaded_at: DateTime<Utc>,
    pub devices: usize,
    pub hosts: usize,
    pub counts: BTreeMap<&'static str, usize>,
    pub total: usize,
    pub discrepancies: Vec<Discrepancy>,
}

fn line(class: &'static str, host: &str, what: String, to_do: String) -> Discrepancy {
    Discrepancy {
        class,
        host: host.to_owned(),
        what,
        to_do,
    }
}

/// Compares `hosts` (the collector's) with `inv` at `now`: a live device silent for more
/// than `missing_after` counts as missing.
pub fn reconcile<'a>(
    inv: &Inventory,
    hosts: impl Iterator<Item = Reported<'a>>,
    now: DateTime<Utc>,
    missing_after: std::time::Duration,
) -> Report {
    let hosts: Vec<Reported<'a>> = hosts.collect();
    let by_name: HashMap<String, &Reported<'a>> = hosts
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h))
        .collect();
    let missing_after = chrono::Duration::from_std(missing_after).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for d in &inv.devices {
        let key = d.hostname.to_ascii_lowercase();
        if !seen.insert(key.clone()) {
            continue;
        }
        let listed = inv.devices_named(&d.hostname).count();
        if listed > 1 {
            out.push(line(
                "duplicate",
                &d.hostname,
                format!("listed {listed} times in the inventory (a lookup by name fails: \"unexpected number of servers\")"),
                "remove or rename the stale entry in the provisioning system".into(),
            ));
        }
        let host = by_name.get(&key);
        match (host, d.cancelled()) {
            (None, false) => out.push(line(
                "missing",
                &d.hostname,
                "in the inventory, never heard from".into(),
                "never enrolled: run bootstrap on it (or mark it cancelled if it is gone)".into(),
            )),
            (Some(h), false)
                if h.state == HostState::Silent && now - h.last_heard > missing_after =>
            {
                out.push(line(
                    "missing",
                    &d.hostname,
                    format!(
                        "silent since {} ({} ago)",
                        h.last_heard.format("%Y-%m-%d %H:%M UTC"),
                        crate::state::age(now - h.last_heard)
                    ),
                    "check that the machine is up; if it is, rerun bootstrap (the agent stopped or was removed)".into(),
                ))
            }
            _ => {}
        }
        let Some(h) = host else {
            continue;
        };
        for (i, label) in LABELS.iter().enumerate() {
            let (ours, theirs) = (h.labels[i], d.label(label));
            if !ours.is_empty() && !theirs.is_empty() && !ours.eq_ignore_ascii_case(theirs) {
                out.push(line(
                    "mismatch",
                    h.name,
                    format!("{label}: the agent says {ours:?}, the inventory {theirs:?}"),
                    "fix the agent's [host] labels, or the inventory, whichever is wrong".into(),
                ));
            }
        }
        if let (Some(bmc), false) = (h.bmc, d.mgmt_ip.is_empty()) {
            if d.mgmt_ip.parse::<std::net::IpAddr>().ok() != Some(bmc) {
                out.push(line(
                    "mismatch",
                    h.name,
                    format!(
                        "BMC: the agent finds {bmc} in-band, the inventory's management IP is {}",
                        d.mgmt_ip
                    ),
                    "correct the inventory, or the BMC's LAN settings (the scanners probe the address the agent finds)".into(),
                ));
            }
        }
        match (d.cancelled(), h.lifecycle) {
            (true, Lifecycle::Live | Lifecycle::Build) => out.push(line(
                "lifecycle",
                h.name,
                format!(
                    "the inventory marks it {:?}, rollcall has it {}",
                    &*d.status,
                    h.lifecycle.as_str()
                ),
                format!(
                    "`rollcall lifecycle {} available`, or correct the inventory",
                    h.name
                ),
            )),
            (false, Lifecycle::Available | Lifecycle::Retired) => out.push(line(
                "lifecycle",
                h.name,
                format!(
                    "rollcall has it {}, the inventory lists it in use",
                    h.lifecycle.as_str()
                ),
                format!(
                    "`rollcall lifecycle {} live`, or mark it cancelled in the inventory",
                    h.name
                ),
            )),
            _ => {}
        }
    }
    for h in &hosts {
        if h.state == HostState::Duplicate {
            out.push(line(
                "duplicate",
                h.name,
                "two machines report as this host".into(),
                "find the clone (`rollcall host` shows both identities) and re-bootstrap it under its own hostname".into(),
            ));
        }
        if h.lifecycle != Lifecycle::Retired && !inv.contains(h.name) {
            out.push(line(
                "unknown",
                h.name,
                "reporting, but in no inventory".into(),
                "check for a rename or a missed cancellation; add it to the inventory or retire it"
                    .into(),
            ));
        }
    }
    out.sort_by(|a, b| {
        let pos = |c: &str| CLASSES.iter().position(|x| *x == c).unwrap_or(0);
        (pos(a.class), &a.host).cmp(&(pos(b.class), &b.host))
    });
    let mut counts: BTreeMap<&'static str, usize> = CLASSES.iter().map(|c| (*c, 0)).collect();
    for d in &out {
        *counts.entry(d.class).or_default() += 1;
    }
    Report {
        generated_at: now,
        inventory: inv.path.display().to_string(),
        inventory_loaded_at: inv.loaded_at,
        devices: inv.devices.len(),
        hosts: hosts.len(),
        total: out.len(),
        counts,
        discrepancies: out,
    }
}

impl Report {
    /// The report for a person: a summary, then each class with its lines.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Reconciliation of {} devices ({}, read {}) against {} hosts, {}",
            self.devices,
            self.inventory,
            self.inventory_loaded_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.hosts,
            self.generated_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = writeln!(o, "{} discrepancies", self.total);
        for class in CLASSES {
            let lines: Vec<&Discrepancy> = self
                .discrepancies
                .iter()
                .filter(|d| d.class == class)
                .collect();
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(o, "\n{class} ({}):", lines.len());
            for d in lines {
                let _ = writeln!(o, "  {}: {} — {}", d.host, d.what, d.to_do);
            }
        }
        o
    }
}
