//! nessusd supervised: asked for `/server/status` every `interval`, healed with the same
//! ladder, budget, backoff and pause as besclient (restart through the service manager →
//! stop, kill leftovers, start → exhausted, retried after a capped backoff, forever).
//!
//! `ready` is ok; `loading` is busy (warn) and left alone: compiling plugins takes minutes
//! and a restart would start it over. Anything else is down: a connection that hangs is a
//! wedged nessusd (its first step kills it); anything else starts with a plain restart. An
//! action is verified when nessusd answers again, `loading` or `ready`, within
//! `verify_within`: a nessusd that answers is alive, and it may compile for a long while.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{EventKind, Health, NessusdState, NessusdStatus, RemediationState};
use tokio::sync::watch;
use tokio::time::Instant;

use super::status::{judge, Prober, Status};
use crate::clock::Clock;
use crate::config::{Config, NessusdConfig};
use crate::events::{EventLog, Fields};
use crate::manager::{ServiceManager, UnitStatus};
use crate::pause::{self, Pause};
use crate::process::{self, Proc};
use crate::remediation::{Decision, Failed, Policy, Problem, RemediationLadder, Step};

const CHECK: &str = "nessusd";

/// While an action is being verified, nessusd is asked this often.
const VERIFY_EVERY: Duration = Duration::from_millis(500);

pub struct NessusdSupervisor<C: Clock> {
    cfg: NessusdConfig,
    state_dir: PathBuf,
    remediation_enabled: bool,
    prober: Prober,
    manager: ServiceManager,
    ladder: RemediationLadder,
    clock: C,
    events: EventLog,
    out: Option<watch::Sender<Option<NessusdState>>>,

    last: Option<Status>,
    proc: Option<Proc>,
    unit: Option<UnitStatus>,
    pause: Option<Pause>,
    status: NessusdStatus,
    since: DateTime<Utc>,
    health: Health,
    reason: String,
    progress: Option<u32>,
    issued_at: Option<DateTime<Utc>>,
    /// The action itself failed (the command exited non-zero): no need to wait it out.
    failed_early: Option<String>,
    /// Why the agent does not act, said once.
    held: Option<&'static str>,
}

impl<C: Clock> NessusdSupervisor<C> {
    pub fn new(config: &Config, manager: ServiceManager, clock: C) -> std::io::Result<Self> {
        let cfg = config.nessusd.clone();
        let prober = Prober::new(&cfg.status_url, cfg.timeout)?;
        let mut policy = Policy::new(&config.remediation, cfg.verify_within);
        // The configured reinstall is besclient's.
        policy.has_reinstall = false;
        let now = clock.now();
        Ok(NessusdSupervisor {
            state_dir: config.state_dir.clone(),
            remediation_enabled: config.remediation.enabled,
            prober,
            manager,
            ladder: RemediationLadder::new(policy),
            clock,
            events: EventLog::new(),
            out: None,
            last: None,
            proc: None,
            unit: None,
            pause: None,
            status: NessusdStatus::Unknown,
            since: now,
            health: Health::Warn,
            reason: "nessusd not asked yet".to_owned(),
            progress: None,
            issued_at: None,
            failed_early: None,
            held: None,
            cfg,
        })
    }

    /// Hands state and events to a reporter.
    pub fn with_outlet(
        mut self,
        out: watch::Sender<Option<NessusdState>>,
        events: EventLog,
    ) -> Self {
        self.out = Some(out);
        self.events = events;
        self
    }

    /// Supervises until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        log::info!(target: CHECK, "watching nessusd at {} every {} via {}", self.cfg.status_url, humantime::format_duration(self.cfg.interval), self.manager.name());
        self.refresh_unit().await;
        loop {
            self.step().await;
            let wait = self.next_wait();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => break,
            }
        }
    }

    /// One look and whatever it calls for; the state published.
    pub async fn step(&mut self) {
        self.look().await;
        self.evaluate().await;
        self.publish();
    }

    fn next_wait(&self) -> Duration {
        if self.ladder.verifying().is_some() {
            return VERIFY_EVERY.min(self.cfg.interval);
        }
        match self.ladder.waiting() {
            Some((until, _)) => self
                .cfg
                .interval
                .min(until.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(10)),
            None => self.cfg.interval,
        }
    }

    async fn look(&mut self) {
        self.last = Some(self.prober.status().await);
        self.find_process();
    }

    fn find_process(&mut self) {
        self.proc = self.leftovers().into_iter().next();
    }

    /// Processes of nessusd: its supervisor (`process`) and the `nessusd` beside it.
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

    async fn refresh_unit(&mut self) {
        self.unit = match self.manager.status().await {
            Ok(u) => u,
            Err(e) => Some(UnitStatus {
                text: format!("status unknown: {e}"),
                main_pid: None,
            }),
        };
    }

    async fn evaluate(&mut self) {
        let now_i = Instant::now();
        let now = self.clock.now();
        if let Some((step, deadline)) = self.ladder.verifying() {
            match &self.last {
                Some(s @ (Status::Ready | Status::Loading { .. })) => {
                    let word = if *s == Status::Ready {
                        "ready"
                    } else {
                        "loading"
                    };
                    let after = self
                        .issued_at
                        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                        .unwrap_or(0.0);
                    let msg = format!(
                        "nessusd verified answering: {word}, {after:.1}s after the {}",
                        step.as_str()
                    );
                    self.ladder.verified(now_i);
                    self.issued_at = None;
                    self.failed_early = None;
                    self.emit_step(EventKind::Verified, msg, step);
                    self.refresh_unit().await;
                }
                _ if now_i >= deadline || self.failed_early.is_some() => {
                    let why = self.failed_early.take().unwrap_or_else(|| {
                        format!(
                            "still down after {}: {}",
                            humantime::format_duration(self.cfg.verify_within),
                            self.down_words()
                        )
                    });
                    self.issued_at = None;
                    self.fail_step(step, why, now_i, now).await;
                }
                _ => {
                    let reason = format!(
                        "nessusd {} issued at {}; waiting up to {} for it to answer",
                        step.as_str(),
                        self.issued_at.unwrap_or(now).format("%H:%M:%S UTC"),
                        humantime::format_duration(self.cfg.verify_within)
                    );
                    self.set_status(NessusdStatus::Restarting, Health::Warn, reason, None);
                    return;
                }
            }
        }
        let Some(problem) = self.classify().await else {
            if self.ladder.exhausted_rounds() > 0 || self.ladder.waiting().is_some() {
                self.ladder.recovered_without_us();
            }
            self.held = None;
            return;
        };
        if !self.remediation_enabled {
            self.hold(
                "observe",
                "observe only (remediation.enabled = false): not acting on nessusd".to_owned(),
            );
            return;
        }
        self.pause = pause::active(&self.state_dir, now).ok().flatten();
        if let Some(p) = &self.pause {
            let msg = format!(
                "remediation paused until {} ({}): not acting on nessusd",
                p.until.to_rfc3339(),
                p.reason
            );
            self.hold("pause", msg);
            return;
        }
        match self.ladder.decide(now_i, problem) {
            Decision::Act { step, .. } => {
                self.held = None;
                self.act(step, problem).await;
            }
            Decision::Wait { until, why } => {
                let at = now
                    + chrono::Duration::from_std(until.saturating_duration_since(now_i))
                        .unwrap_or_default();
                self.hold(
                    why.as_str(),
                    format!(
                        "nessusd: {}: next attempt at {}",
                        why.as_str(),
                        at.to_rfc3339()
                    ),
                );
            }
            Decision::Verifying { .. } => {}
        }
    }

    /// What the last answer (or its absence) said, in words.
    fn down_words(&self) -> String {
        match &self.last {
            Some(Status::Down { reason, .. }) => reason.clone(),
            Some(Status::Loading { .. }) => "loading".to_owned(),
            Some(Status::Ready) => "ready".to_owned(),
            None => "not asked".to_owned(),
        }
    }

    /// Sets status, health and reason from the last answer; returns the problem, if any.
    async fn classify(&mut self) -> Option<Problem> {
        let last = self.last.clone()?;
        let free = crate::disk::check(&self.cfg.install_dir).map(|d| (d.path, d.avail_bytes));
        let (health, judged) = judge(&last, free);
        let pid = self.proc.map(|p| p.pid);
        let exhausted = match self.ladder.exhausted_rounds() {
            0 => String::new(),
            n => format!("; remediation exhausted {n} time(s), still retrying"),
        };
        match last {
            Status::Ready => {
                let mut reason = match pid {
                    Some(p) => format!("nessusd (pid {p}) is ready"),
                    None => "nessusd is ready".to_owned(),
                };
                if self.ladder.flapping(Instant::now()) {
                    reason.push_str("; flapping: recovered 3+ times within the budget window");
                }
                let health = if reason.contains("flapping") {
                    Health::Warn
                } else {
                    Health::Ok
                };
                self.set_status(NessusdStatus::Ready, health, reason, None);
                None
            }
            Status::Loading { progress } => {
                self.set_status(NessusdStatus::Loading, health, judged, progress);
                None
            }
            Status::Down { timed_out, .. } => {
                if self.status != NessusdStatus::Down {
                    self.refresh_unit().await;
                }
                let unit = match &self.unit {
                    Some(u) => format!(" ({} says: {})", self.manager.name(), u.text),
                    None => String::new(),
                };
                let (what, problem) = match (pid, timed_out) {
                    (None, _) => ("nessusd is not running".to_owned(), Problem::Dead),
                    (Some(p), true) => (format!("nessusd (pid {p}) is hung"), Problem::Hung),
                    (Some(p), false) => (format!("nessusd (pid {p}) is down"), Problem::Dead),
                };
                let reason = format!("{what}{unit}: {judged}{exhausted}");
                self.set_status(NessusdStatus::Down, Health::Critical, reason, None);
                Some(problem)
            }
        }
    }

    fn set_status(
        &mut self,
        status: NessusdStatus,
        health: Health,
        reason: String,
        progress: Option<u32>,
    ) {
        if status != self.status {
            let was = self.status;
            self.status = status;
            self.since = self.clock.now();
            let announce = match status {
                NessusdStatus::Down => Some(log::Level::Warn),
                // A recovery the ladder verified was announced by its "verified" event.
                NessusdStatus::Ready | NessusdStatus::Loading
                    if !matches!(was, NessusdStatus::Restarting) =>
                {
                    Some(log::Level::Info)
                }
                _ => None,
            };
            if let Some(level) = announce {
                let pid = self.proc.map(|p| p.pid);
                self.emit(
                    EventKind::Observed,
                    reason.clone(),
                    Fields {
                        pid,
                        level: Some(level),
                        ..Fields::default()
                    },
                );
            }
        }
        self.health = health;
        self.reason = reason;
        self.progress = progress;
    }

    fn hold(&mut self, kind: &'static str, msg: String) {
        if self.held != Some(kind) {
            self.held = Some(kind);
            self.emit(EventKind::Held, msg, Fields::default());
        }
    }

    async fn act(&mut self, step: Step, problem: Problem) {
        let pid = self.proc.map(|p| p.pid);
        self.issued_at = Some(self.clock.now());
        self.failed_early = None;
        let cause = match problem {
            Problem::Dead => "down",
            Problem::Hung => "hung",
        };
        let what = match step {
            Step::HardRestart => format!(
                "nessusd hard restart issued via {}: stop, kill leftover nessusd processes, start (nessusd {cause})",
                self.manager.name()
            ),
            _ => format!(
                "nessusd restart issued via {} (nessusd {cause})",
                self.manager.name()
            ),
        };
        self.emit(
            EventKind::Action,
            what,
            Fields {
                action: Some(step.as_str()),
                step: Some(step.as_str()),
                pid,
                level: None,
            },
        );
        let result = match step {
            Step::HardRestart | Step::Reinstall => {
                if problem == Problem::Hung {
                    // A wedged daemon would make a graceful stop hang: kill first.
                    self.kill_leftovers().await;
                }
                if let Err(e) = self.manager.stop().await {
                    log::warn!(target: CHECK, step = "hard_restart"; "stop failed ({e}); killing leftovers and starting anyway");
                }
                self.kill_leftovers().await;
                self.manager.start().await
            }
            Step::Restart => self.manager.restart().await,
        };
        if let Err(e) = result {
            self.failed_early = Some(format!("{} failed: {e}", step.as_str()));
        }
        self.find_process();
    }

    async fn kill_leftovers(&mut self) {
        let leftovers = self.leftovers();
        let now = self.clock.now();
        for (p, outcome) in process::kill_all(&leftovers).await {
            self.events.killed(now, CHECK, "nessusd", p.pid, outcome);
        }
    }

    async fn fail_step(&mut self, step: Step, why: String, now_i: Instant, now: DateTime<Utc>) {
        match self.ladder.verify_failed(now_i) {
            Failed::Escalate(next) => {
                let msg = format!(
                    "nessusd {} did not bring it back: {why}; escalating to {}",
                    step.as_str(),
                    next.as_str()
                );
                self.emit_step(EventKind::VerifyFailed, msg, step);
            }
            Failed::Exhausted { round, retry_at } => {
                let msg = format!("nessusd {} did not bring it back: {why}", step.as_str());
                self.emit_step(EventKind::VerifyFailed, msg, step);
                let wait = retry_at.saturating_duration_since(now_i);
                let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                let msg = format!(
                    "nessusd remediation exhausted (round {round}): every step failed; retrying from the first step at {} (in {})",
                    at.to_rfc3339(),
                    humantime::format_duration(wait)
                );
                self.emit_step(EventKind::Exhausted, msg, step);
            }
        }
        self.refresh_unit().await;
    }

    fn emit(&mut self, kind: EventKind, message: String, f: Fields<'_>) {
        let now = self.clock.now();
        self.events.emit(now, CHECK, kind, message, f);
    }

    fn emit_step(&mut self, kind: EventKind, message: String, step: Step) {
        let pid = self.proc.map(|p| p.pid);
        self.emit(
            kind,
            message,
            Fields {
                step: Some(step.as_str()),
                pid,
                ..Fields::default()
            },
        );
    }

    /// The typed state the heartbeat carries.
    pub fn state(&mut self) -> NessusdState {
        let now = self.clock.now();
        let now_i = Instant::now();
        let to_wall = |i: Instant| {
            now + chrono::Duration::from_std(i.saturating_duration_since(now_i)).unwrap_or_default()
        };
        NessusdState {
            health: self.health,
            status: self.status,
            progress: self.progress,
            said: match &self.last {
                Some(Status::Down { status, .. }) => status.clone(),
                Some(Status::Loading { .. }) => Some("loading".to_owned()),
                Some(Status::Ready) => Some("ready".to_owned()),
                None => None,
            },
            reason: self.reason.clone(),
            since: self.since,
            pid: self.proc.map(|p| p.pid),
            manager: self.manager.name().to_owned(),
            unit_state: self.unit.as_ref().map(|u| u.text.clone()),
            remediation: RemediationState {
                enabled: self.remediation_enabled,
                paused_until: self.pause.as_ref().map(|p| p.until),
                pause_reason: self.pause.as_ref().map(|p| p.reason.clone()),
                step: self.ladder.last_step().map(|s| s.as_str().to_owned()),
                exhausted_rounds: self.ladder.exhausted_rounds(),
                next_attempt_at: self.ladder.waiting().map(|(t, _)| to_wall(t)),
                attempts_in_window: self.ladder.attempts_in_window(now_i),
                flapping: self.ladder.flapping(now_i),
            },
        }
    }

    fn publish(&mut self) {
        let s = self.state();
        if let Some(out) = &self.out {
            out.send_if_modified(|v| {
                let changed = v.as_ref().is_none_or(|old| {
                    (
                        old.health,
                        old.status,
                        old.progress,
                        &old.reason,
                        &old.remediation,
                    ) != (s.health, s.status, s.progress, &s.reason, &s.remediation)
                });
                *v = Some(s);
                changed
            });
        }
    }
}
