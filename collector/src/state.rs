//! A host's state, derived from what the collector knows and its own clock only, and
//! explained in words an SRE can act on.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::Health;
use serde::{Deserialize, Serialize};

/// Derived state, most urgent meaning first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Up,
    /// Past its interval, inside the grace period.
    Late,
    /// Past interval + grace.
    Silent,
    /// Reporting, but a check is critical (e.g. remediation exhausted).
    Unhealthy,
    /// Under maintenance until a time.
    Maintenance,
    /// Two identities live at once under one hostname.
    Duplicate,
}

impl HostState {
    pub const ALL: [HostState; 6] = [
        HostState::Up,
        HostState::Late,
        HostState::Silent,
        HostState::Unhealthy,
        HostState::Maintenance,
        HostState::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Up => "up",
            HostState::Late => "late",
            HostState::Silent => "silent",
            HostState::Unhealthy => "unhealthy",
            HostState::Maintenance => "maintenance",
            HostState::Duplicate => "duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<HostState> {
        HostState::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a host is in the inventory's lifecycle. Only `live` hosts are ever flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// First seen less than the build period ago (48 h): being built, never flagged.
    Build,
    Live,
    /// Marked for decommission: never flagged.
    Available,
    Retired,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 4] = [
        Lifecycle::Build,
        Lifecycle::Live,
        Lifecycle::Available,
        Lifecycle::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Build => "build",
            Lifecycle::Live => "live",
            Lifecycle::Available => "available",
            Lifecycle::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Lifecycle> {
        Lifecycle::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// What the collector's judgement depends on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Silence beyond interval + grace is `silent`.
    pub grace: Duration,
    /// Hosts first seen less than this ago are in `build`.
    pub build_period: Duration,
    /// Scanners probe their zone's BMCs once a round of this; a scanner's verdict older
    /// than three rounds no longer counts.
    pub probe_interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            grace: Duration::from_secs(120),
            build_period: Duration::from_secs(48 * 3600),
            probe_interval: Duration::from_secs(300),
        }
    }
}

/// A host's entry in the inventory, as lifecycle is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryFacts {
    /// In the inventory now (false: listed once, gone since).
    pub listed: bool,
    /// Marked for cancellation or reclaim.
    pub cancelled: bool,
    pub provisioned: Option<DateTime<Utc>>,
}

impl InventoryFacts {
    /// The lifecycle the inventory gives at `now`: gone → retired; cancelled → available;
    /// provisioned less than the build period ago → build; otherwise live.
    pub fn lifecycle(&self, policy: &Policy, now: DateTime<Utc>) -> Lifecycle {
        if !self.listed {
            Lifecycle::Retired
        } else if self.cancelled {
            Lifecycle::Available
        } else if self
            .provisioned
            .is_some_and(|p| now - p < dur(policy.build_period))
        {
            Lifecycle::Build
        } else {
            Lifecycle::Live
        }
    }
}

/// Which source decided a host's lifecycle.
pub fn lifecycle_source(f: &Facts<'_>) -> &'static str {
    match (f.lifecycle_override, f.inventory) {
        (Some(_), _) => "operator",
        (None, Some(_)) => "inventory",
        (None, None) => "first seen",
    }
}

/// The facts about one host that its state is derived from.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts<'a> {
    pub first_seen: DateTime<Utc>,
    /// By the collector's clock, never the agent's.
    pub last_heard: DateTime<Utc>,
    /// The heartbeat interval the host announced.
    pub interval: Duration,
    /// The agent's own overall health and its one-line reason.
    pub health: Health,
    pub health_reason: &'a str,
    /// Set by an operator: `available` and `retired` stick; `live` ends `build` early.
    pub lifecycle_override: Option<Lifecycle>,
    /// What the inventory says of it, when one is configured and has listed it.
    pub inventory: Option<InventoryFacts>,
    pub maintenance: Option<(DateTime<Utc>, &'a str)>,
    /// The identity last heard under this hostname.
    pub identity: &'a str,
    /// Another identity heard under the same hostname after this one appeared, and when it
    /// was last heard: while both are live, the host is a duplicate.
    pub other: Option<(&'a str, DateTime<Utc>)>,
    /// Every scanner that probed this host's BMC lately found it unreachable: the sentence
    /// that says so ("BMC 10.1.2.3 of H unreachable from scanner S since T").
    pub bmc_unreachable: Option<String>,
}

impl Facts<'_> {
    /// The other identity, while it is live (heard within interval + grace).
    pub fn live_other(&self, policy: &Policy, now: DateTime<Utc>) -> Option<(&str, DateTime<Utc>)> {
        self.other
            .filter(|(_, t)| now <= *t + dur(self.interval) + dur(policy.grace))
    }
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `3m12s`: ages at a precision that reads well.
pub fn age(d: chrono::Duration) -> impl std::fmt::Display {
    Short(Duration::from_secs(d.num_seconds().max(0) as u64))
}

/// A duration as `3m12s`, `1d2h`, `0s`.
struct Short(Duration);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs();
        let (days, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
        if s == 0 {
            return f.write_str("0s");
        }
        for (v, u) in [(days, "d"), (h, "h"), (m, "m"), (sec, "s")] {
            if v > 0 {
                write!(f, "{v}{u}")?;
            }
        }
        Ok(())
    }
}

/// A time of day, `14:02:11 UTC`: written per host in every listing, so without a
/// format-string parser.
struct Hms(DateTime<Utc>);

impl std::fmt::Display for Hms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::Timelike;
        let t = self.0;
        write!(f, "{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
    }
}

/// The moment `f` turns silent: interval + grace after it was last heard, or, for a
/// collector that has just (re)started, after the collector came up, whichever is later.
/// So a restarted collector flags nobody for one interval + grace, then flags exactly the
/// hosts that stayed quiet, including those that died while it was down.
pub fn deadline(f: &Facts<'_>, policy: &Policy, up_since: DateTime<Utc>) -> DateTime<Utc> {
    f.last_heard.max(up_since) + dur(f.interval) + dur(policy.grace)
}

/// State, lifecycle and flag without the words: what the registry needs on every
/// heartbeat. [`judge`] adds the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub state: HostState,
    pub lifecycle: Lifecycle,
    pub flagged: bool,
    pub deadline: DateTime<Utc>,
}

pub fn classify(
    f: &Facts<'_>,
    policy: &Policy,
    up_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Verdict {
    let lifecycle = match (f.lifecycle_override, f.inventory) {
        (Some(l), _) => l,
        (None, Some(i)) => i.lifecycle(policy, now),
        (None, None) if now - f.first_seen < dur(policy.build_period) => Lifecycle::Build,
        (None, None) => Lifecycle::Live,
    };
    let deadline = deadline(f, policy, up_since);
    let late_at = f.last_heard.max(up_since) + dur(f.interval);
    let state = if f.maintenance.as_ref().is_some_and(|(u, _)| *u > now) {
        HostState::Maintenance
    } else if f.live_other(policy, now).is_some() {
        HostState::Duplicate
    } else if now > deadline {
        HostState::Silent
    } else if now > late_at {
        HostState::Late
    } else if f.health == Health::Critical || f.bmc_unreachable.is_some() {
        HostState::Unhealthy
    } else {
        HostState::Up
    };
    let flagged = lifecycle == Lifecycle::Live
        && matches!(
            state,
            HostState::Silent | HostState::Unhealthy | HostState::Duplicate
        );
    Verdict {
        state,
        lifecycle,
        flagged,
        deadline,
    }
}

/// The reason for `state`, in words.
pub fn explain(f: &Facts<'_>, policy: &Policy, state: HostState, now: DateTime<Utc>) -> String {
    let heard = format_args!(
        "last heard {}, {} ago; expected every {} + {} grace",
        Hms(f.last_heard),
        age(now - f.last_heard),
        Short(f.interval),
        Short(policy.grace)
    );
    match state {
        HostState::Maintenance => {
            let (until, why) = f.maintenance.unwrap_or((now, ""));
            format!("maintenance until {} ({why}); {heard}", until.to_rfc3339())
        }
        HostState::Duplicate => {
            let (other, other_at) = f.other.unwrap_or(("?", now));
            format!(
                "duplicate: two identities report as this host (cloned image or restored snapshot?): {} last heard {}, and {} last heard {}",
                f.identity,
                Hms(f.last_heard),
                other,
                Hms(other_at)
            )
        }
        HostState::Silent => format!("silent: {heard}"),
        HostState::Late => format!("late: {heard}"),
        HostState::Unhealthy => match (&f.bmc_unreachable, f.health) {
            (Some(bmc), Health::Critical) => format!("unhealthy: {}; {bmc}", f.health_reason),
            (Some(bmc), _) => format!("unhealthy: {bmc}"),
            (None, _) => format!("unhealthy: {}", f.health_reason),
        },
        HostState::Up => format!("up: {heard}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A derived state with its explanation.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Judgement {
        state: HostState,
        lifecycle: Lifecycle,
        reason: String,
        /// Whether this host counts as a problem (state silent/unhealthy/duplicate on a live host).
        flagged: bool,
        /// When the host turns silent if nothing is heard: the key of the deadline index.
        deadline: DateTime<Utc>,
    }

    /// Derives state, lifecycle and reason at `now` (the collector's clock).
    fn judge(
        f: &Facts<'_>,
        policy: &Policy,
        up_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Judgement {
        let v = classify(f, policy, up_since, now);
        Judgement {
            state: v.state,
            lifecycle: v.lifecycle,
            reason: explain(f, policy, v.state, now),
            flagged: v.flagged,
            deadline: v.deadline,
        }
    }

    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap()
    }

    fn facts() -> Facts<'static> {
        Facts {
            first_seen: t(0, 0, 0) - chrono::Duration::days(30),
            last_heard: t(14, 2, 11),
            interval: Duration::from_secs(60),
            health: Health::Ok,
            health_reason: "all checks ok",
            lifecycle_override: None,
            inventory: None,
            maintenance: None,
            identity: "m1/i1",
            other: None,
            bmc_unreachable: None,
        }
    }

    fn judge_at(f: &Facts<'_>, now: DateTime<Utc>) -> Judgement {
        judge(f, &Policy::default(), t(0, 0, 0), now)
    }

    #[test]
    fn up_late_silent_follow_interval_and_grace() {
        let f = facts();
        assert_eq!(judge_at(&f, t(14, 3, 0)).state, HostState::Up);
        assert_eq!(judge_at(&f, t(14, 3, 12)).state, HostState::Late);
        assert_eq!(
            judge_at(&f, t(14, 5, 11)).state,
            HostState::Late,
            "exactly at the deadline: not yet"
        );
        let j = judge_at(&f, t(14, 5, 23));
        assert_eq!(j.state, HostState::Silent);
        assert!(j.flagged);
        assert_eq!(
            j.reason,
            "silent: last heard 14:02:11 UTC, 3m12s ago; expected every 1m + 2m grace"
        );
        assert_eq!(j.deadline, t(14, 5, 11));
    }

    #[test]
    fn a_restarted_collector_waits_one_interval_plus_grace_then_flags_the_quiet() {
        let f = facts(); // last heard 14:02:11, then the collector was down
        let up = t(15, 0, 0);
        let p = Policy::default();
        assert_eq!(
            judge(&f, &p, up, t(15, 2, 59)).state,
            HostState::Late,
            "no false flag at restart"
        );
        let j = judge(&f, &p, up, t(15, 3, 1));
        assert_eq!(
            j.state,
            HostState::Silent,
            "died while the collector was down: flagged"
        );
        assert_eq!(j.deadline, t(15, 3, 0));
    }

    #[test]
    fn unhealthy_is_a_reporting_host_with_a_critical_check() {
        let mut f = facts();
        f.health = Health::Critical;
        f.health_reason = "remediation exhausted (round 3)";
        let j = judge_at(&f, t(14, 2, 30));
        assert_eq!(j.state, HostState::Unhealthy);
        assert_eq!(j.reason, "unhealthy: remediation exhausted (round 3)");
        assert!(j.flagged);
    }

    #[test]
    fn an_unreachable_bmc_makes_a_reporting_host_unhealthy_but_not_a_silent_one() {
        let mut f = facts();
        let bmc = "BMC 10.1.2.3 of m1 unreachable from scanner s1 since 14:01:00 UTC";
        f.bmc_unreachable = Some(bmc.to_owned());
        let j = judge_at(&f, t(14, 2, 30));
        assert_eq!(j.state, HostState::Unhealthy);
        assert_eq!(j.reason, format!("unhealthy: {bmc}"));
        f.health = Health::Critical;
        f.health_reason = "BESClient is not running";
        let j = judge_at(&f, t(14, 2, 30));
        assert_eq!(
            j.reason,
            format!("unhealthy: BESClient is not running; {bmc}")
        );
        // Silence says more than the BMC.
        assert_eq!(judge_at(&f, t(14, 6, 0)).state, HostState::Silent);
    }

    #[test]
    fn maintenance_wins_until_it_expires() {
        let mut f = facts();
        f.maintenance = Some((t(15, 0, 0), "kernel patching"));
        let j = judge_at(&f, t(14, 30, 0));
        assert_eq!(j.state, HostState::Maintenance);
        assert!(!j.flagged);
        assert!(j.reason.contains("kernel patching"));
        assert_eq!(
            judge_at(&f, t(15, 0, 1)).state,
            HostState::Silent,
            "expired by itself"
        );
    }

    #[test]
    fn build_and_available_hosts_are_never_flagged() {
        let mut f = facts();
        f.first_seen = t(10, 0, 0);
        let j = judge_at(&f, t(16, 0, 0));
        assert_eq!(
            (j.state, j.lifecycle, j.flagged),
            (HostState::Silent, Lifecycle::Build, false)
        );
        f.first_seen = t(0, 0, 0) - chrono::Duration::days(3);
        assert!(judge_at(&f, t(16, 0, 0)).flagged);
        f.lifecycle_override = Some(Lifecycle::Available);
        let j = judge_at(&f, t(16, 0, 0));
        assert_eq!((j.lifecycle, j.flagged), (Lifecycle::Available, false));
    }

    #[test]
    fn duplicate_names_both_identities_while_both_are_live() {
        let mut f = facts();
        f.other = Some(("4c1e/9a", t(14, 2, 0)));
        let j = judge_at(&f, t(14, 2, 30));
        assert_eq!(j.state, HostState::Duplicate);
        assert!(j.flagged);
        assert!(
            j.reason.contains("4c1e/9a last heard 14:02:00") && j.reason.contains("m1/i1"),
            "{}",
            j.reason
        );
        // The other one quiet for interval + grace: one identity left, no longer a duplicate.
        assert_eq!(judge_at(&f, t(14, 4, 59)).state, HostState::Duplicate);
        assert_ne!(judge_at(&f, t(14, 5, 1)).state, HostState::Duplicate);
    }

    #[test]
    fn names_round_trip() {
        for s in HostState::ALL {
            assert_eq!(HostState::parse(s.as_str()), Some(s));
        }
        for l in Lifecycle::ALL {
            assert_eq!(Lifecycle::parse(l.as_str()), Some(l));
        }
        assert_eq!(HostState::parse("dead"), None);
    }
}
