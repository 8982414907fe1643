//! Incidents: what the collector already knows (flagged hosts, dark regions, suspect relays,
//! zones without a working scanner) turned into problems with a stable identity, a next
//! step in words and a history, each notified once and resolved once.
//!
//! [`Engine`] is pure: it is handed what the registry observed ([`Observed`]) and the time,
//! and says which incidents opened, changed and resolved, and which receivers to tell. The
//! caller makes that durable (incident and outbox rows in one transaction) before anything
//! is sent.

mod engine;
mod words;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use engine::{Engine, Step};

use crate::state::HostState;

/// What an incident is about. Host kinds name one host; the others a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Silent,
    /// The BigFix client down, hung or failing to heal.
    UnhealthyBesclient,
    /// The BigFix client runs but does not check in.
    UnhealthyCheckin,
    UnhealthyNessusd,
    /// The host's own BMC, checked in-band.
    UnhealthyBmc,
    /// Unhealthy for another reason its agent gave.
    Unhealthy,
    /// The BMC unreachable from every scanner that probed it.
    BmcUnreachable,
    Duplicate,
    Flapping,
    RegionDark,
    ZoneDark,
    CollectorBlind,
    ZoneNoScanner,
    RelaySuspect,
    /// The fleet and the inventory disagree beyond `[inventory] alert_over`.
    InventoryDrift,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::Silent,
        Kind::UnhealthyBesclient,
        Kind::UnhealthyCheckin,
        Kind::UnhealthyNessusd,
        Kind::UnhealthyBmc,
        Kind::Unhealthy,
        Kind::BmcUnreachable,
        Kind::Duplicate,
        Kind::Flapping,
        Kind::RegionDark,
        Kind::ZoneDark,
        Kind::CollectorBlind,
        Kind::ZoneNoScanner,
        Kind::RelaySuspect,
        Kind::InventoryDrift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Silent => "silent",
            Kind::UnhealthyBesclient => "unhealthy-besclient",
            Kind::UnhealthyCheckin => "unhealthy-checkin",
            Kind::UnhealthyNessusd => "unhealthy-nessusd",
            Kind::UnhealthyBmc => "unhealthy-bmc",
            Kind::Unhealthy => "unhealthy",
            Kind::BmcUnreachable => "bmc-unreachable",
            Kind::Duplicate => "duplicate",
            Kind::Flapping => "flapping",
            Kind::RegionDark => "region-dark",
            Kind::ZoneDark => "zone-dark",
            Kind::CollectorBlind => "collector-blind",
            Kind::ZoneNoScanner => "zone-no-scanner",
            Kind::RelaySuspect => "relay-suspect",
            Kind::InventoryDrift => "inventory-drift",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a route's `kinds` entry `pattern` takes this kind: its name, or a prefix
    /// before a dash (`unhealthy` takes every `unhealthy-…`).
    pub fn matches(self, pattern: &str) -> bool {
        let s = self.as_str();
        s == pattern
            || s.strip_prefix(pattern)
                .is_some_and(|rest| rest.starts_with('-'))
    }

    /// About one host, rather than a group of them.
    pub fn is_host(self) -> bool {
        !matches!(
            self,
            Kind::RegionDark
                | Kind::ZoneDark
                | Kind::CollectorBlind
                | Kind::ZoneNoScanner
                | Kind::RelaySuspect
                | Kind::InventoryDrift
        )
    }

    pub fn severity(self) -> Severity {
        match self {
            Kind::Silent | Kind::RegionDark | Kind::ZoneDark | Kind::CollectorBlind => {
                Severity::Critical
            }
            Kind::Duplicate | Kind::Flapping => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PagerDuty's levels, which every receiver can map.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One line of an incident's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub at: DateTime<Utc>,
    /// `opened`, `notified`, `covered`, `uncovered`, `updated`, `resolved`.
    pub what: String,
    pub message: String,
}

/// A told group incident is told again when it has at least doubled, but not sooner than
/// this after it was last told: a region going dark over one interval is one message, an
/// outage still spreading ten minutes on is news.
pub const UPDATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Lines kept per incident: the first ones and the newest.
const HISTORY_MAX: usize = 100;

/// A problem with a stable identity: `key` is kind + subject, so an update of the same
/// problem is never a second incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    pub key: String,
    pub kind: Kind,
    /// The host, region, zone or relay it is about (`fleet` for a blind collector).
    pub subject: String,
    pub severity: Severity,
    /// `open` or `resolved`.
    pub state: String,
    pub summary: String,
    /// What to do, from the runbooks' own advice.
    pub next_step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// env, region, zone, role where they apply: what routes match on.
    pub labels: BTreeMap<String, String>,
    /// A group's hosts (or a host incident's own host).
    pub hosts: Vec<String>,
    /// The open group incident that explains this one; while set, this one is listed
    /// there and not notified on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_by: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Receivers told of it: each of them gets its resolve.
    #[serde(default)]
    pub notified: Vec<String>,
    /// How many hosts it had when it was last told, and when.
    #[serde(default)]
    pub told_hosts: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub history: Vec<Line>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }

    pub fn region(&self) -> Option<&str> {
        self.labels.get("region").map(String::as_str)
    }

    fn log(&mut self, at: DateTime<Utc>, what: &str, message: String) {
        if self.history.len() >= HISTORY_MAX {
            // Keep the opening lines; drop the oldest of the rest.
            self.history.remove(HISTORY_MAX / 2);
        }
        self.history.push(Line {
            at,
            what: what.to_owned(),
            message,
        });
        self.updated_at = at;
    }
}

/// Why a host has a host incident, as the registry sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: Kind,
    /// In words, the registry's reason for it.
    pub reason: String,
}

/// A live host the engine must know of: flagged, or flapping.
#[derive(Debug, Clone, PartialEq)]
pub struct HostObserved {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: HostState,
    /// When it turned silent (its deadline), if it is silent.
    pub silent_since: Option<DateTime<Utc>>,
    /// Its interval + grace, which sizes how close silences must be to count as one.
    pub deadline_span: chrono::Duration,
    pub problems: Vec<Problem>,
    /// The suspect relay it fails to check in through, if any.
    pub suspect_relay: Option<String>,
    /// Flag changes within the flapping window, when more than the limit.
    pub flapping: Option<usize>,
}

/// Live hosts (not in maintenance) of one region or zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub live: usize,
    /// Of them, late or silent: when a region is cut off, every host of it is late (past
    /// its interval) before the first turns silent (past interval + grace).
    pub quiet: usize,
}

/// What the registry observed at one moment: all the engine derives incidents from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub hosts: Vec<HostObserved>,
    /// Live hosts not in maintenance, fleet-wide, by region and by zone.
    pub live: usize,
    /// Of them, late or silent, fleet-wide.
    pub quiet: usize,
    pub regions: BTreeMap<String, Tally>,
    pub zones: BTreeMap<String, Tally>,
    /// Zones whose scanners all fail: zone, the sentence, the scanners.
    pub scannerless: Vec<(String, String, Vec<String>)>,
    /// Suspect relays: relay, the sentence.
    pub suspect_relays: Vec<(String, String)>,
    /// A significant drift from the inventory: the sentence, the hosts concerned.
    pub drift: Option<(String, Vec<String>)>,
}

/// A notification to make durable and then deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Trigger,
    /// A told group incident that has since at least doubled (and not within
    /// [`UPDATE_AFTER`] of the last time it was told).
    Update,
    Resolve,
    /// `rollcall notify test`: clearly marked, never part of an incident.
    Test,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Update => "update",
            Action::Resolve => "resolve",
            Action::Test => "test",
        }
    }

    /// The action [`Action::as_str`] names.
    pub fn parse(s: &str) -> Option<Action> {
        [
            Action::Trigger,
            Action::Update,
            Action::Resolve,
            Action::Test,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// How incidents are judged; `[incidents]` in collector.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// A host whose flag changes more than this many times within `flap_window` is one
    /// `flapping` incident.
    pub flap_changes: usize,
    pub flap_window: std::time::Duration,
    /// A region or zone is dark when at least this many of its live hosts (and at least
    /// half of them) went silent together.
    pub dark_min_hosts: usize,
    /// The runbook link per kind.
    pub runbooks: BTreeMap<Kind, String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            flap_changes: 4,
            flap_window: std::time::Duration::from_secs(3600),
            dark_min_hosts: 5,
            runbooks: BTreeMap::new(),
        }
    }
}
