//! Which parts of an agent's state count as a change: everything except the timestamps and
//! gauges that move with every heartbeat. The collector rewrites a host's stored state only
//! when this fingerprint moves.
//!
//! Every impl destructures its struct without `..`: a field added to a state type does not
//! compile until it is listed here, hashed or named as moving on its own.

use std::hash::{Hash, Hasher};

use crate::{
    AgentState, BesclientState, BmcState, CheckinState, DiskState, LogState, NessusdState,
};

/// Feeds what an SRE would call a change of state to `h`.
pub trait Significant {
    fn significant<H: Hasher>(&self, h: &mut H);
}

impl<T: Significant> Significant for Option<T> {
    fn significant<H: Hasher>(&self, h: &mut H) {
        match self {
            None => 0u8.hash(h),
            Some(t) => {
                1u8.hash(h);
                t.significant(h);
            }
        }
    }
}

impl AgentState {
    /// A 64-bit fingerprint of the significant parts (see [`Significant`]).
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.significant(&mut h);
        h.finish()
    }
}

impl Significant for AgentState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let AgentState {
            proto_version,
            agent_version,
            at: _,
            besclient,
            bmc,
            nessusd,
        } = self;
        (proto_version, agent_version).hash(h);
        besclient.significant(h);
        bmc.significant(h);
        nessusd.significant(h);
    }
}

impl Significant for BesclientState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let BesclientState {
            health,
            status,
            reason,
            since,
            pid,
            manager,
            unit_state,
            log,
            errors,
            disk,
            remediation,
            checkin,
        } = self;
        (health, status, reason, since, pid, manager, unit_state).hash(h);
        log.significant(h);
        errors.hash(h);
        disk.significant(h);
        remediation.hash(h);
        checkin.significant(h);
    }
}

impl Significant for CheckinState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let CheckinState {
            verdict,
            relay,
            failing_since,
            bad_records,
            // These move with every report or failed attempt; the verdict, the relay and
            // when failing started are what change the picture.
            reason: _,
            last_success_at: _,
            last_success_via: _,
            last_failure_at: _,
            last_failure: _,
        } = self;
        (verdict, relay, failing_since, bad_records).hash(h);
    }
}

impl Significant for LogState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let LogState {
            dir,
            dir_exists,
            newest,
            // Moves with every write of a healthy client.
            last_write: _,
            stale_after_secs,
            stale,
        } = self;
        (dir, dir_exists, newest, stale_after_secs, stale).hash(h);
    }
}

impl Significant for DiskState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let DiskState {
            path,
            // Gauges: what matters is whether the disk is full.
            avail_bytes: _,
            total_bytes: _,
            full,
        } = self;
        (path, full).hash(h);
    }
}

impl Significant for BmcState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let BmcState {
            health,
            present,
            address,
            channel,
            reason,
            // Moves with every in-band check.
            checked_at: _,
        } = self;
        (health, present, address, channel, reason).hash(h);
    }
}

impl Significant for NessusdState {
    fn significant<H: Hasher>(&self, h: &mut H) {
        let NessusdState {
            health,
            status,
            progress,
            said,
            reason,
            since,
            pid,
            manager,
            unit_state,
            remediation,
        } = self;
        (health, status, progress, said, reason, since, pid, manager).hash(h);
        (unit_state, remediation).hash(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AgentState {
        serde_json::from_value(serde_json::json!({
            "proto_version": 1, "agent_version": "t", "at": "2026-11-22T06:00:00Z",
            "besclient": {
                "health": "ok", "status": "running", "reason": "BESClient (pid 7) is running and logging",
                "since": "2026-11-22T06:00:00Z", "pid": 7, "manager": "systemd", "unit_state": null,
                "log": {"dir": "/l", "dir_exists": true, "newest": "20261122.log", "last_write": "2026-11-22T06:00:00Z", "stale_after_secs": 3600, "stale": false},
                "errors": {"count": 0, "last_line": null, "last_at": null},
                "disk": {"path": "/var/opt/BESClient", "avail_bytes": 1000, "total_bytes": 5000, "full": false},
                "remediation": {"enabled": true, "paused_until": null, "pause_reason": null, "step": null,
                    "exhausted_rounds": 0, "next_attempt_at": null, "attempts_in_window": 0, "flapping": false}
            },
            "bmc": {"health": "ok", "present": true, "address": "10.0.0.5", "channel": 1,
                "reason": "BMC answers at 10.0.0.5", "checked_at": "2026-11-22T06:00:00Z"}
        }))
        .unwrap()
    }

    #[test]
    fn moving_timestamps_and_gauges_are_not_a_change() {
        let a = state();
        let mut b = a.clone();
        b.at += chrono::Duration::seconds(60);
        b.besclient.log.last_write = Some(b.at);
        let d = b.besclient.disk.as_mut().unwrap();
        d.avail_bytes -= 10;
        b.bmc.as_mut().unwrap().checked_at = b.at;
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn what_an_sre_would_see_is_a_change() {
        let a = state();
        let changes: [fn(&mut AgentState); 7] = [
            |s| s.besclient.status = crate::DaemonStatus::Dead,
            |s| s.besclient.reason.push('!'),
            |s| s.besclient.errors.count += 1,
            |s| s.besclient.remediation.step = Some("restart".into()),
            |s| s.besclient.disk.as_mut().unwrap().full = true,
            |s| s.bmc.as_mut().unwrap().address = None,
            |s| s.bmc = None,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(a.fingerprint(), b.fingerprint(), "change {i}");
        }
    }
}
