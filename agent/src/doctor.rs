//! `rollcall-agent doctor`: every check once, reported the way an SRE walks the runbook.

use std::fmt::Write;

use rollcall_proto::{BesclientState, Health};
use serde::Serialize;

use crate::checks::besclient;
use crate::checks::bmc::inband;
use crate::checks::nessusd::status::{judge, Prober};
use crate::clock::{ago, Clock};
use crate::config::Config;
use crate::disk::human_bytes;
use crate::state::{self, LocalState};

/// How long doctor waits for nessusd's answer.
const NESSUSD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every check once, without acting, and what the running agent last wrote.
pub async fn collect(config: &Config, clock: std::sync::Arc<dyn Clock>) -> anyhow::Result<Report> {
    let besclient = besclient::look_once(config, clock.clone()).await?;
    let nessusd = if config.nessusd.enabled {
        let prober = Prober::new(&config.nessusd.status_url, NESSUSD_TIMEOUT)?;
        let status = prober.status().await;
        let free = crate::disk::check(&config.nessusd.install_dir).map(|d| (d.path, d.avail_bytes));
        let (health, reason) = judge(&status, free);
        Some(Verdict { health, reason })
    } else {
        None
    };
    let (agent, agent_note) = match state::read(&config.state_dir) {
        Ok(s) if crate::process::Proc::get(s.pid).is_some() => (Some(s), None),
        Ok(s) => (
            None,
            Some(format!(
                "not running (last state written by pid {} at {})",
                s.pid,
                s.state.at.to_rfc3339()
            )),
        ),
        Err(e) => (None, Some(format!("no state yet ({e})"))),
    };
    let bmc = inband::check(
        &config.bmc.device,
        &config.bmc.ipmitool,
        inband::CHECK_TIMEOUT,
    )
    .await
    .into_state(clock.now());
    let broken = config.collector_problem.as_ref().map(|p| Verdict {
        health: Health::Critical,
        reason: format!("reporting is off: {p}"),
    });
    let reporting = broken.or_else(|| {
        config.collector.as_ref().map(|c| {
            let running = agent.as_ref().and_then(|a| a.reporting_problem.clone());
            let urls = c.urls.join(", ");
            match (crate::report::link::Link::new(c, "doctor"), running) {
                (Err(e), _) => Verdict {
                    health: Health::Critical,
                    reason: format!("cannot set up TLS to the collector {urls}: {e}"),
                },
                (Ok(_), Some(p)) => Verdict {
                    health: Health::Critical,
                    reason: format!("the running agent says: {p}"),
                },
                (Ok(_), None) => Verdict {
                    health: Health::Ok,
                    reason: format!("reports to {urls} (CA {})", c.ca_file.display()),
                },
            }
        })
    });
    let health = nessusd
        .as_ref()
        .map_or(besclient.health, |n| n.health.max(besclient.health))
        .max(bmc.health)
        .max(reporting.as_ref().map_or(Health::Ok, |r| r.health));
    Ok(Report {
        health,
        besclient,
        nessusd,
        bmc,
        reporting,
        agent,
        agent_note,
    })
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub health: Health,
    pub besclient: BesclientState,
    /// nessusd's status, where `[nessusd]` is enabled.
    pub nessusd: Option<Verdict>,
    /// The host's own BMC, in-band ("no BMC" on a VM is fine).
    pub bmc: rollcall_proto::BmcState,
    /// Whether the agent can report to its collector, where `[collector]` is set.
    pub reporting: Option<Verdict>,
    /// The running agent's own last state and actions, if it is running.
    pub agent: Option<LocalState>,
    /// Why the running agent's state could not be read, if it could not.
    pub agent_note: Option<String>,
}

/// A check's health and its reason in words (nessusd, reporting).
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub health: Health,
    pub reason: String,
}

impl Report {
    /// Prints the report (JSON with `json`); the exit code: 2 if anything is critical.
    pub fn print(&self, json: bool) -> u8 {
        if json {
            println!("{}", serde_json::to_string_pretty(self).unwrap_or_default());
        } else {
            print!("{}", self.human());
        }
        self.exit_code() as u8
    }

    pub fn exit_code(&self) -> i32 {
        match self.health {
            Health::Critical => 2,
            Health::Warn | Health::Ok => 0,
        }
    }

    pub fn human(&self) -> String {
        let b = &self.besclient;
        let now = chrono::Utc::now();
        let mut o = String::new();
        let mark = |h: Health| match h {
            Health::Ok => "OK  ",
            Health::Warn => "WARN",
            Health::Critical => "CRIT",
        };
        let _ = writeln!(
            o,
            "rollcall-agent doctor: {}",
            self.health.as_str().to_uppercase()
        );
        let _ = writeln!(o);
        let _ = writeln!(o, "[{}] besclient: {}", mark(b.health), b.reason);
        if let Some(n) = &self.nessusd {
            let _ = writeln!(o, "[{}] nessusd: {}", mark(n.health), n.reason);
        }
        let _ = writeln!(o, "[{}] bmc: {}", mark(self.bmc.health), self.bmc.reason);
        if let Some(r) = &self.reporting {
            let _ = writeln!(o, "[{}] reporting: {}", mark(r.health), r.reason);
        }
        let _ = writeln!(
            o,
            "       status {} since {} ({} ago)",
            b.status.as_str(),
            b.since.to_rfc3339(),
            ago(now - b.since)
        );
        let _ = writeln!(
            o,
            "       service manager {}: {}",
            b.manager,
            b.unit_state
                .as_deref()
                .unwrap_or("(no status from configured commands)")
        );
        match b.pid {
            Some(p) => _ = writeln!(o, "       process: pid {p}"),
            None => _ = writeln!(o, "       process: none running"),
        }
        let newest = b.log.newest.as_deref().unwrap_or("none");
        let written = match b.log.last_write {
            Some(t) => format!("last written {} ({} ago)", t.to_rfc3339(), ago(now - t)),
            None => "never written".to_owned(),
        };
        let _ = writeln!(
            o,
            "       log dir {}{}: newest {newest}, {written}; hung after {}s of silence",
            b.log.dir,
            if b.log.dir_exists { "" } else { " (MISSING)" },
            b.log.stale_after_secs
        );
        if let Some(l) = &b.errors.last_line {
            let _ = writeln!(o, "       error lines: {} (last: {l})", b.errors.count);
        }
        if let Some(d) = &b.disk {
            let _ = writeln!(
                o,
                "       disk {}: {} free of {}{}",
                d.path,
                human_bytes(d.avail_bytes),
                human_bytes(d.total_bytes),
                if d.full { " — FULL" } else { "" }
            );
        }
        if let Some(c) = &b.checkin {
            let _ = writeln!(
                o,
                "       BigFix check-in: {} — {}",
                c.verdict.as_str(),
                c.reason
            );
            let when = |t: &Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("none seen".to_owned(), |t| {
                    format!("{} ({} ago)", t.to_rfc3339(), ago(now - t))
                })
            };
            let _ = writeln!(
                o,
                "       relay {}; last success {}{}; last failure {}{}",
                c.relay.as_deref().unwrap_or("not named yet"),
                when(&c.last_success_at),
                c.last_success_via
                    .as_deref()
                    .map_or(String::new(), |v| format!(" by {v}")),
                when(&c.last_failure_at),
                c.last_failure
                    .as_deref()
                    .map_or(String::new(), |l| format!(": {l}"))
            );
        }
        let r = &b.remediation;
        let mode = match (&r.paused_until, r.enabled) {
            (_, false) => "disabled (observe only)".to_owned(),
            (Some(u), true) => format!(
                "paused until {} ({})",
                u.to_rfc3339(),
                r.pause_reason.as_deref().unwrap_or("")
            ),
            (None, true) => "enabled".to_owned(),
        };
        let _ = writeln!(o, "       remediation: {mode}");
        let _ = writeln!(o);
        match (&self.agent, &self.agent_note) {
            (Some(a), _) => {
                let _ = writeln!(
                    o,
                    "running agent (pid {}), state of {}:",
                    a.pid,
                    a.state.at.to_rfc3339()
                );
                let _ = writeln!(
                    o,
                    "  sees: {} — {}",
                    a.state.besclient.status.as_str(),
                    a.state.besclient.reason
                );
                let _ = writeln!(o, "  next: {}", a.next);
                if a.events.is_empty() {
                    let _ = writeln!(o, "  no actions taken");
                } else {
                    let _ = writeln!(o, "  recent events (newest first):");
                    for e in a.events.iter().take(10) {
                        let _ =
                            writeln!(o, "    {}  {}", e.at.format("%Y-%m-%d %H:%M:%S"), e.message);
                    }
                }
            }
            (None, Some(n)) => _ = writeln!(o, "running agent: {n}"),
            (None, None) => {}
        }
        o
    }
}
