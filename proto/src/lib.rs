//! Wire types shared by `rollcall-agent` and `rollcall-collector`.
//!
//! Everything here is serialized as JSON. Compatibility rules:
//! - [`PROTO_VERSION`] is bumped when a field changes meaning or is removed;
//! - new optional fields may be added without a bump (`#[serde(default)]`), so an older
//!   collector keeps accepting a newer agent's state and ignores what it does not know.

mod change;

pub use change::Significant;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the agent state and event encoding.
pub const PROTO_VERSION: u32 = 1;

/// What a host name may be, in words, for errors on either side of the wire.
pub const HOST_NAME_RULE: &str =
    "a DNS name (letters, digits, '-', '.', '_'; at most 253 characters, not starting with '-' or '.')";

/// Whether `name` is a host name as the wire takes it (see [`HOST_NAME_RULE`]). The agent
/// checks its configured name with this, the collector every enrollment and heartbeat.
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && !name.starts_with(['-', '.'])
}

/// Severity of one check, as an SRE would triage it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Warn,
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warn => "warn",
            Health::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The full current state of one agent: sent whole in every heartbeat (latest wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub proto_version: u32,
    pub agent_version: String,
    /// When this snapshot was taken, by the agent's clock.
    pub at: DateTime<Utc>,
    pub besclient: BesclientState,
    /// The host's own BMC, checked in-band; absent until the first check (and from older
    /// agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcState>,
    /// nessusd, on scanner hosts where it is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nessusd: Option<NessusdState>,
}

impl AgentState {
    /// The host's health: the worst of its checks, explained by the checks at that level.
    pub fn overall(&self) -> (Health, String) {
        let mut checks = vec![(self.besclient.health, self.besclient.reason.as_str())];
        if let Some(n) = &self.nessusd {
            checks.push((n.health, n.reason.as_str()));
        }
        if let Some(b) = &self.bmc {
            checks.push((b.health, b.reason.as_str()));
        }
        let worst = checks.iter().map(|c| c.0).max().unwrap_or(Health::Ok);
        if worst == Health::Ok {
            return (worst, self.besclient.reason.clone());
        }
        let reasons: Vec<&str> = checks
            .iter()
            .filter(|c| c.0 == worst)
            .map(|c| c.1)
            .collect();
        (worst, reasons.join("; "))
    }
}

/// What nessusd is doing, by its own `/server/status` and the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NessusdStatus {
    /// `ready`: scanning.
    Ready,
    /// `loading`: compiling plugins; scans nothing until ready.
    Loading,
    /// Any other status, an HTTP or TLS error, or no answer.
    Down,
    /// A remediation step was issued and is being verified.
    Restarting,
    /// Not yet asked.
    Unknown,
}

impl NessusdStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NessusdStatus::Ready => "ready",
            NessusdStatus::Loading => "loading",
            NessusdStatus::Down => "down",
            NessusdStatus::Restarting => "restarting",
            NessusdStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NessusdState {
    pub health: Health,
    pub status: NessusdStatus,
    /// Plugin compilation progress, percent, while `loading`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u32>,
    /// nessusd's own status word when it gave one (`download-failed`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub pid: Option<u32>,
    pub manager: String,
    pub unit_state: Option<String>,
    pub remediation: RemediationState,
}

/// The host's BMC as seen from the host: whether there is one, whether it answers, and
/// the LAN address scanners reach it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BmcState {
    pub health: Health,
    /// A BMC device exists (`/dev/ipmi0`); false on VMs, which is not an error.
    pub present: bool,
    pub address: Option<std::net::IpAddr>,
    pub channel: Option<u8>,
    pub reason: String,
    pub checked_at: DateTime<Utc>,
}

/// What the BESClient daemon is doing, judged from all signals together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonStatus {
    /// Process up and its log written within `stale_after`.
    Running,
    /// Process up but the log has not been written within `stale_after`.
    Hung,
    /// No BESClient process.
    Dead,
    /// A remediation step was issued and is being verified.
    Restarting,
    /// Not yet observed (agent just started).
    Unknown,
}

impl DaemonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonStatus::Running => "running",
            DaemonStatus::Hung => "hung",
            DaemonStatus::Dead => "dead",
            DaemonStatus::Restarting => "restarting",
            DaemonStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BesclientState {
    pub health: Health,
    pub status: DaemonStatus,
    /// One sentence an SRE can act on: what is wrong and since when.
    pub reason: String,
    /// Since when `status` has held.
    pub since: DateTime<Utc>,
    pub pid: Option<u32>,
    /// Which service manager the agent drives: `systemd`, `sysv` or `command`.
    pub manager: String,
    /// The service manager's own view (e.g. `active (exited)`), which alone proves nothing.
    pub unit_state: Option<String>,
    pub log: LogState,
    pub errors: ErrorMatches,
    pub disk: Option<DiskState>,
    pub remediation: RemediationState,
    /// BigFix check-in, from the client's own records; absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkin: Option<CheckinState>,
}

/// Whether the client checks into BigFix: its registrations and reports, by its own
/// RelayChain files and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckinState {
    pub verdict: CheckinVerdict,
    /// In words, e.g. "not checked into BigFix for 1d 3h: General transport failure
    /// talking to relay relay-dal10 since 2026-12-01 09:12 UTC".
    pub reason: String,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Which record showed it: `relay chain`, `registration`, `report`.
    pub last_success_via: Option<String>,
    /// The relay in use, by the latest record that named one.
    pub relay: Option<String>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure: Option<String>,
    /// The first failure after the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// Records that could not be read (truncated, garbage, stamped in the future).
    pub bad_records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckinVerdict {
    Ok,
    /// `warn_after` without a success.
    Warn,
    /// `critical_after` without a success.
    Critical,
    /// Nothing seen yet, and not watched for `warn_after` yet.
    Unknown,
}

impl CheckinVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckinVerdict::Ok => "ok",
            CheckinVerdict::Warn => "warn",
            CheckinVerdict::Critical => "critical",
            CheckinVerdict::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogState {
    pub dir: String,
    pub dir_exists: bool,
    /// File name of the newest `YYYYMMDD.log` (or `.bkg`), if any.
    pub newest: Option<String>,
    pub last_write: Option<DateTime<Utc>>,
    pub stale_after_secs: u64,
    pub stale: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Hash, Serialize, Deserialize)]
pub struct ErrorMatches {
    /// Lines matching any of `error_patterns` since the agent started.
    pub count: u64,
    pub last_line: Option<String>,
    pub last_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskState {
    /// The filesystem checked (the nearest existing directory of the BESClient data path).
    pub path: String,
    pub avail_bytes: u64,
    pub total_bytes: u64,
    pub full: bool,
}

#[derive(Debug, Clone, PartialEq, Hash, Serialize, Deserialize)]
pub struct RemediationState {
    pub enabled: bool,
    pub paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    /// Ladder step in progress or last taken: `restart`, `hard_restart`, `reinstall`.
    pub step: Option<String>,
    /// Remediation rounds that ran through the whole ladder without success, in a row.
    pub exhausted_rounds: u32,
    /// When the agent will act next, if it is waiting (backoff or restart budget).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Restarts/starts issued within the budget window.
    pub attempts_in_window: u32,
    pub flapping: bool,
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Something observed: death, hang, recovery, error lines, disk.
    Observed,
    /// A remediation action issued.
    Action,
    /// The outcome of verifying an action.
    Verified,
    VerifyFailed,
    /// The ladder ran out of steps; retried after backoff.
    Exhausted,
    /// The agent decided to wait (budget, backoff, pause, observe-only).
    Held,
}

/// One structured event, numbered so that a collector can deduplicate redeliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// The check it belongs to: `besclient`, `nessusd`, `bmc`, `agent`.
    pub check: String,
    pub kind: EventKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// Who an agent is: the machine-id, and an install id the agent creates on its first run.
/// An OS reload changes the machine-id under the same hostname; a cloned image repeats both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub machine_id: String,
    pub install_id: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.machine_id, self.install_id)
    }
}

/// `POST /api/v1/heartbeat`: the full current state (latest wins) plus the events the
/// collector has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub proto_version: u32,
    pub host: String,
    pub identity: Identity,
    /// How often this agent reports; the collector's silence deadline follows it.
    pub interval_secs: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The agent's whole state; absent when `state_digest` says it is the one the
    /// collector acknowledged last (nothing significant in it changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentState>,
    /// Instead of an unchanged `state`: its digest, as the collector gave it in
    /// [`HeartbeatAck::state_digest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
    /// When the host booted (from `/proc/stat`): a change is a reboot in the host's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_at: Option<DateTime<Utc>>,
    /// Events the agent had to drop (its spool was full while the collector was away) and
    /// has not reported before: the collector records them in the host's history.
    #[serde(default)]
    pub events_dropped: u64,
}

/// `POST /api/v1/enroll`, authenticated with an enrollment secret: exchanged for a
/// credential that writes this host's record only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub proto_version: u32,
    pub host: String,
    pub identity: Identity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The BMC's LAN address, when the agent knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_address: Option<String>,
}

/// The answer to an enrollment: the per-host credential, shown once (the collector keeps
/// only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub host: String,
    pub credential: String,
}

/// The collector's answer once the heartbeat is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// Every event up to this sequence number is stored; the agent may drop them.
    pub acked_seq: u64,
    /// The digest of the state now stored: the agent sends it instead of the state while
    /// the state does not change. Absent from collectors that take no digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<String>,
    /// The collector does not know the digest sent (it restarted, or the agent moved to
    /// another collector): nothing was stored; send the whole state now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state_needed: bool,
}

/// `GET /api/v1/probe-targets` (a scanner host's credential): the BMCs this scanner
/// probes — those of the live hosts in its zone — and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeTargets {
    pub scanner: String,
    pub zone: String,
    /// A round every this many seconds.
    pub interval_secs: u32,
    pub targets: Vec<ProbeTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTarget {
    /// The host the BMC belongs to.
    pub host: String,
    pub address: std::net::IpAddr,
}

/// `POST /api/v1/probe-results`: what one round found, in batches (the collector takes
/// at most [`MAX_PROBE_RESULTS`] per call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResults {
    pub proto_version: u32,
    pub scanner: String,
    pub results: Vec<ProbeResult>,
}

pub const MAX_PROBE_RESULTS: usize = 400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub host: String,
    pub address: std::net::IpAddr,
    pub reachable: bool,
    /// `asf` (answered the Presence Ping) or `ipmi` (ignored ASF, answered IPMI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// In words: the round trip, or why it counts as unreachable.
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// The answer to [`ProbeResults`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAck {
    pub recorded: u32,
    /// Results for hosts not assigned to this scanner (another zone, gone, a new BMC
    /// address), with the first few reasons.
    pub ignored: u32,
    #[serde(default)]
    pub why_ignored: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_and_omits_empty_fields() {
        let e = Event {
            seq: 7,
            at: DateTime::parse_from_rfc3339("2026-11-22T06:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            check: "besclient".into(),
            kind: EventKind::Action,
            message: "restart issued".into(),
            action: Some("restart".into()),
            step: None,
            pid: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"kind\":\"action\""), "{json}");
        assert!(!json.contains("\"pid\""), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn a_host_is_as_healthy_as_its_worst_check_and_says_which() {
        let mut s: AgentState = serde_json::from_value(serde_json::json!({
            "proto_version": 1, "agent_version": "t", "at": "2026-11-22T06:00:00Z",
            "besclient": {
                "health": "ok", "status": "running", "reason": "BESClient (pid 7) is running and logging",
                "since": "2026-11-22T06:00:00Z", "pid": 7, "manager": "systemd", "unit_state": null,
                "log": {"dir": "/l", "dir_exists": true, "newest": null, "last_write": null, "stale_after_secs": 3600, "stale": false},
                "errors": {"count": 0, "last_line": null, "last_at": null}, "disk": null,
                "remediation": {"enabled": true, "paused_until": null, "pause_reason": null, "step": null,
                    "exhausted_rounds": 0, "next_attempt_at": null, "attempts_in_window": 0, "flapping": false}
            },
            "bmc": {"health": "critical", "present": true, "address": null, "channel": null,
                "reason": "the BMC does not answer in-band", "checked_at": "2026-11-22T06:00:00Z"}
        }))
        .unwrap();
        assert_eq!(
            s.overall(),
            (
                Health::Critical,
                "the BMC does not answer in-band".to_owned()
            )
        );
        s.bmc = None;
        assert_eq!(
            s.overall(),
            (
                Health::Ok,
                "BESClient (pid 7) is running and logging".to_owned()
            )
        );
    }

    #[test]
    fn host_names_are_dns_names() {
        for ok in ["web-1", "web-1.dal10.example.com", "a_b", "7"] {
            assert!(valid_host_name(ok), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in ["", "-web", ".web", "web 1", "web/1", "wéb", long.as_str()] {
            assert!(!valid_host_name(bad), "{bad}");
        }
        assert!(valid_host_name(&"a".repeat(253)));
    }

    #[test]
    fn older_event_without_optional_fields_still_parses() {
        let json = r#"{"seq":1,"at":"2026-11-22T06:00:00Z","check":"besclient","kind":"observed","message":"died"}"#;
        let e: Event = serde_json::from_str(json).unwrap();
        assert_eq!(e.kind, EventKind::Observed);
        assert_eq!(e.pid, None);
    }
}
