//! nessusd on scanner hosts: asked for `/server/status` every `interval`, healed by the
//! shared [`Supervisor`] with the same ladder, budget, backoff and pause as besclient
//! (restart through the service manager → stop, kill leftovers, start → exhausted, retried
//! after a capped backoff, forever; no reinstall step).
//!
//! `ready` is ok; `loading` is busy (warn) and left alone: compiling plugins takes minutes
//! and a restart would start it over. Anything else is down: a connection that hangs is a
//! wedged nessusd (its first step kills it); anything else starts with a plain restart. An
//! action is verified when nessusd answers again, `loading` or `ready`, within
//! `verify_within`: a nessusd that answers is alive, and it may compile for a long while.

pub mod config;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{Health, NessusdState, NessusdStatus};
use tokio::time::Instant;

pub use config::NessusdConfig;
use status::{judge, Prober, Status as Answer};

use crate::clock::Clock;
use crate::config::{Config, RemediationConfig};
use crate::manager::ServiceManager;
use crate::process::{self, Proc};
use crate::publish::Envelope;
use crate::remediation::{Problem, Step};
use crate::supervisor::{Core, Daemon, Plan, Status, Supervisor, Verdict};

/// While an action is being verified, nessusd is asked this often.
const VERIFY_EVERY: Duration = Duration::from_millis(500);

impl Status for NessusdStatus {
    const UNKNOWN: Self = NessusdStatus::Unknown;
    const RESTARTING: Self = NessusdStatus::Restarting;
    fn is_fault(self) -> bool {
        self == NessusdStatus::Down
    }
}

/// nessusd's supervisor, built from the config: its manager, its plan, its prober.
pub fn supervisor(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Supervisor<Nessusd>> {
    let cfg = &config.nessusd;
    let manager = ServiceManager::pick(&cfg.managed)?;
    let plan = Plan {
        // The configured reinstall is besclient's: nessusd's ladder has no such step.
        remediation: RemediationConfig {
            reinstall: Vec::new(),
            ..config.remediation.clone()
        },
        verify_within: cfg.verify_within,
        checkin_verify_within: cfg.verify_within,
        command_timeout: cfg.managed.command_timeout,
        state_dir: config.state_dir.clone(),
        unit_every: None,
    };
    Ok(Supervisor::new(
        Nessusd::new(cfg.clone())?,
        manager,
        plan,
        clock,
    ))
}

/// What the agent observes of nessusd.
pub struct Nessusd {
    cfg: NessusdConfig,
    prober: Prober,
    /// The last answer to `/server/status`.
    last: Option<Answer>,
    proc: Option<Proc>,
    progress: Option<u32>,
}

impl Nessusd {
    pub fn new(cfg: NessusdConfig) -> std::io::Result<Self> {
        Ok(Nessusd {
            prober: Prober::new(&cfg.status_url, cfg.timeout)?,
            last: None,
            proc: None,
            progress: None,
            cfg,
        })
    }

    /// What the last answer (or its absence) said, in words.
    fn down_words(&self) -> String {
        match &self.last {
            Some(Answer::Down { reason, .. }) => reason.clone(),
            Some(Answer::Loading { .. }) => "loading".to_owned(),
            Some(Answer::Ready) => "ready".to_owned(),
            None => "not asked".to_owned(),
        }
    }
}

impl Daemon for Nessusd {
    const CHECK: &'static str = "nessusd";
    const NAME: &'static str = "nessusd";
    const DEAD: &'static str = "down";
    const PROOF: &'static str = "nessusd to answer";
    const UNOBSERVED: &'static str = "nessusd not asked yet";
    type Status = NessusdStatus;
    type State = NessusdState;
    /// nessusd sends nothing of its own: it is asked on the timer.
    type Signal = std::convert::Infallible;

    async fn start(&mut self, core: &mut Core<NessusdStatus>) {
        log::info!(target: Self::CHECK, "watching nessusd at {} every {} via {}", self.cfg.status_url, humantime::format_duration(self.cfg.interval), core.manager.name());
        core.refresh_unit().await;
        self.look(core).await;
    }

    async fn signal(&mut self) -> Self::Signal {
        std::future::pending().await
    }

    fn on_signal(&mut self, signal: Self::Signal, _: &mut Core<NessusdStatus>) -> bool {
        match signal {}
    }

    async fn look(&mut self, core: &mut Core<NessusdStatus>) {
        self.last = Some(self.prober.status().await);
        self.find_process(core);
    }

    fn find_process(&mut self, _: &Core<NessusdStatus>) {
        self.proc = self.leftovers().into_iter().next();
    }

    /// Its last answer predates the action: the next look verifies.
    fn observed_after_action(&self) -> bool {
        false
    }

    fn pid(&self) -> Option<u32> {
        self.proc.map(|p| p.pid)
    }

    async fn classify(&mut self, core: &mut Core<NessusdStatus>) -> Option<Verdict<NessusdStatus>> {
        let last = self.last.clone()?;
        let free = crate::disk::check(&self.cfg.install_dir).map(|d| (d.path, d.avail_bytes));
        let (health, judged) = judge(&last, free);
        let pid = self.pid();
        self.progress = None;
        Some(match last {
            Answer::Ready => {
                let mut reason = match pid {
                    Some(p) => format!("nessusd (pid {p}) is ready"),
                    None => "nessusd is ready".to_owned(),
                };
                let flapping = core.flapping();
                if flapping {
                    reason.push_str("; flapping: recovered 3+ times within the budget window");
                }
                Verdict {
                    status: NessusdStatus::Ready,
                    health: if flapping { Health::Warn } else { Health::Ok },
                    reason,
                    problem: None,
                }
            }
            Answer::Loading { progress } => {
                self.progress = progress;
                Verdict {
                    status: NessusdStatus::Loading,
                    health,
                    reason: judged,
                    problem: None,
                }
            }
            Answer::Down { timed_out, .. } => {
                if core.status != NessusdStatus::Down {
                    // Newly down: the reason says what the service manager says now.
                    core.refresh_unit().await;
                }
                let (what, problem) = match (pid, timed_out) {
                    (None, _) => ("nessusd is not running".to_owned(), Problem::Dead),
                    (Some(p), true) => (format!("nessusd (pid {p}) is hung"), Problem::Hung),
                    (Some(p), false) => (format!("nessusd (pid {p}) is down"), Problem::Dead),
                };
                Verdict {
                    status: NessusdStatus::Down,
                    health: Health::Critical,
                    reason: format!(
                        "{what}{}: {judged}{}",
                        core.unit_note(),
                        core.exhausted_note()
                    ),
                    problem: Some(problem),
                }
            }
        })
    }

    /// Verified: nessusd answers again, `loading` or `ready`.
    fn verify(
        &self,
        core: &Core<NessusdStatus>,
        step: Step,
        issued: DateTime<Utc>,
    ) -> Result<String, String> {
        let word = match &self.last {
            Some(Answer::Ready) => "ready",
            Some(Answer::Loading { .. }) => "loading",
            _ => {
                return Err(format!(
                    "still down after {}: {}",
                    humantime::format_duration(core.verify_within()),
                    self.down_words()
                ))
            }
        };
        let after = (core.now() - issued).num_milliseconds().max(0) as f64 / 1000.0;
        Ok(format!(
            "nessusd verified answering: {word}, {after:.1}s after the {}",
            step.as_str()
        ))
    }

    /// nessusd's supervisor (`process`) and the `nessusd` beside it.
    fn leftovers(&self) -> Vec<Proc> {
        let mut found = process::find_by_exe(&self.cfg.process);
        if let Some(dir) = self.cfg.process.parent() {
            let daemon = dir.join("nessusd");
            if daemon != self.cfg.process {
                found.extend(process::find_by_exe(&daemon));
            }
        }
        found.retain(Proc::alive);
        found
    }

    fn next_look(&self, _: &Core<NessusdStatus>) -> Instant {
        Instant::now() + self.cfg.interval
    }

    fn verify_every(&self) -> Duration {
        VERIFY_EVERY.min(self.cfg.interval)
    }

    fn watching_words(&self) -> String {
        format!(
            "asking nessusd every {}",
            humantime::format_duration(self.cfg.interval)
        )
    }

    fn state(&self, core: &Core<NessusdStatus>) -> NessusdState {
        NessusdState {
            health: core.health,
            status: core.status,
            progress: self.progress,
            said: match &self.last {
                Some(Answer::Down { status, .. }) => status.clone(),
                Some(Answer::Loading { .. }) => Some("loading".to_owned()),
                Some(Answer::Ready) => Some("ready".to_owned()),
                None => None,
            },
            reason: core.reason.clone(),
            since: core.since,
            pid: self.pid(),
            manager: core.manager.name().to_owned(),
            unit_state: core.unit.as_ref().map(|u| u.text.clone()),
            remediation: core.remediation_state(),
        }
    }

    fn sees_change(old: &NessusdState, new: &NessusdState) -> bool {
        (
            old.health,
            old.status,
            old.progress,
            &old.reason,
            &old.remediation,
        ) != (
            new.health,
            new.status,
            new.progress,
            &new.reason,
            &new.remediation,
        )
    }

    fn post(state: NessusdState, to: &mut Envelope) {
        to.nessusd = Some(state);
    }
}
