//! Supervision of the BigFix client: process (pidfd), service manager, log freshness and
//! content, disk; healed through the [`RemediationLadder`].
//!
//! Invariant: nothing here waits on the network. Every wait is on the daemon's pidfd, the
//! log directory's inotify, a timer, or a bounded local command.

pub mod logs;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{
    BesclientState, DaemonStatus, DiskState, ErrorMatches, EventKind, Health, LogState,
    RemediationState,
};
use tokio::time::{Instant, Interval};

use crate::clock::Clock;
use crate::config::Config;
use crate::disk::{self, human_bytes};
use crate::events::{EventLog, Fields};
use crate::manager::{ServiceManager, UnitStatus};
use crate::pause::{self, Pause};
use crate::process::{self, ExitWatch, Proc};
use crate::remediation::{Decision, Failed, Policy, Problem, RemediationLadder, Step};
use crate::state::{self, LocalState};
use logs::{Change, LogWatcher, Tail};

const CHECK: &str = "besclient";
/// Routine re-checks of everything that sends no event of its own.
const PERIODIC: Duration = Duration::from_secs(60);
/// The service manager's view costs a process spawn: asked rarely, and after every action.
const UNIT_EVERY: Duration = Duration::from_secs(300);
/// While verifying or dead: how often to look for the process.
const DISCOVER_EVERY: Duration = Duration::from_millis(250);
/// Error lines are counted always, but announced at most this often.
const ERROR_EVENT_EVERY: chrono::Duration = chrono::Duration::minutes(10);

pub struct Supervisor<C: Clock> {
    cfg: crate::config::BesclientConfig,
    remediation_enabled: bool,
    reinstall: Vec<String>,
    state_dir: PathBuf,
    clock: C,
    manager: ServiceManager,
    events: EventLog,
    ladder: RemediationLadder,
    watchdog: Option<Interval>,

    proc: Option<Proc>,
    exit: Option<ExitWatch>,
    logs: logs::Snapshot,
    tail: Tail,
    errors: ErrorMatches,
    last_error_event: Option<DateTime<Utc>>,
    unit: Option<UnitStatus>,
    next_unit_check: Instant,
    disk: Option<DiskState>,
    pause: Option<Pause>,

    status: DaemonStatus,
    health: Health,
    reason: String,
    since: DateTime<Utc>,
    started: DateTime<Utc>,
    /// Wall time the step under verification was issued.
    issued_at: Option<DateTime<Utc>>,
    /// The step's command failed: no need to wait out `verify_within`.
    failed_early: Option<String>,
    /// The kind of the last "not acting" event, so that it is said once, not every loop.
    held: Option<&'static str>,
    /// The ladder just verified a recovery (and said so).
    just_verified: bool,
    written: Option<(String, Instant)>,
    /// The state, for the reporter: updated on every publish, announced on a change.
    reporting: Option<tokio::sync::watch::Sender<Option<rollcall_proto::AgentState>>>,
}

impl<C: Clock> Supervisor<C> {
    pub fn new(config: &Config, manager: ServiceManager, clock: C) -> Self {
        let now = clock.now();
        let cfg = config.besclient.clone();
        let policy = Policy::new(&config.remediation, cfg.verify_within);
        Supervisor {
            tail: Tail::new(cfg.error_patterns.clone()),
            logs: logs::Snapshot::default(),
            remediation_enabled: config.remediation.enabled,
            reinstall: config.remediation.reinstall.clone(),
            state_dir: config.state_dir.clone(),
            manager,
            events: EventLog::new(),
            ladder: RemediationLadder::new(policy),
            watchdog: None,
            proc: None,
            exit: None,
            errors: ErrorMatches::default(),
            last_error_event: None,
            unit: None,
            next_unit_check: Instant::now(),
            disk: None,
            pause: None,
            status: DaemonStatus::Unknown,
            health: Health::Warn,
            reason: "not yet observed".to_owned(),
            since: now,
            started: now,
            issued_at: None,
            failed_early: None,
            held: None,
            just_verified: false,
            written: None,
            reporting: None,
            cfg,
            clock,
        }
    }

    /// Ping systemd's watchdog every `every`, from this loop (so a stuck loop is caught).
    pub fn with_watchdog(mut self, every: Option<Duration>) -> Self {
        self.watchdog = every.map(tokio::time::interval);
        self
    }

    /// Hands state and events to a reporter.
    pub fn with_outlet(
        mut self,
        state: tokio::sync::watch::Sender<Option<rollcall_proto::AgentState>>,
        events: EventLog,
    ) -> Self {
        self.events = events;
        self.reporting = Some(state);
        self
    }

    /// Looks at everything once, without acting: what `doctor` reports.
    pub async fn observe_once(&mut self) -> BesclientState {
        self.refresh_all().await;
        // A one-shot look reads the whole newest log, as the runbook's "does today's log
        // have errors?" does.
        if let Some(newest) = self.logs.newest.clone() {
            self.tail = Tail::new(self.cfg.error_patterns.clone());
            self.match_errors(&self.cfg.log_dir.join(newest));
        }
        self.classify(self.clock.now());
        self.state()
    }

    /// Supervises until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut watcher = match LogWatcher::new(&self.cfg.log_dir) {
            Ok(w) => Some(w),
            Err(e) => {
                log::warn!(target: CHECK, "cannot watch {} with inotify ({e}); checking it every {}s instead", self.cfg.log_dir.display(), PERIODIC.as_secs());
                None
            }
        };
        self.refresh_all().await;
        let how = match &self.exit {
            Some(w) if w.uses_pidfd() => "exit watched by pidfd",
            Some(_) => "exit watched by polling",
            None => "not running at start",
        };
        let pid = self.proc.map(|p| p.pid);
        let which = pid.map_or(String::new(), |p| format!(" pid {p}"));
        log::info!(target: CHECK, "supervising BESClient{which} via {} ({how})", self.manager.name());
        tokio::pin!(shutdown);
        enum Wake {
            Exit,
            Log(Option<Change>),
            Timer,
            Watchdog,
            Shutdown,
        }
        // A routine log write from a running client changes nothing anyone sees: it only
        // moves the freshness deadline, which the timer re-checks with a rescan. Skipping
        // the evaluation then keeps the idle agent near zero CPU.
        let mut dirty = true;
        let mut wake = Instant::now();
        loop {
            if dirty {
                self.evaluate().await;
                self.publish();
                wake = self.next_wake();
            }
            let w = tokio::select! {
                _ = async { match &self.exit { Some(x) => x.exited().await, None => std::future::pending().await } } => Wake::Exit,
                c = async { match watcher.as_mut() { Some(w) => w.next().await, None => std::future::pending().await } } => Wake::Log(c),
                _ = tokio::time::sleep_until(wake) => Wake::Timer,
                _ = tick(&mut self.watchdog) => Wake::Watchdog,
                _ = &mut shutdown => Wake::Shutdown,
            };
            dirty = true;
            match w {
                Wake::Exit => self.on_exit(),
                Wake::Log(Some(Change::Written(path))) => dirty = self.on_written(path),
                Wake::Log(Some(Change::Rescan)) => self.rescan_logs(),
                Wake::Log(None) => {
                    log::warn!(target: CHECK, "inotify stopped; checking the log directory every {}s instead", PERIODIC.as_secs());
                    watcher = None;
                }
                Wake::Timer => self.on_timer().await,
                Wake::Watchdog => {
                    notify_watchdog();
                    dirty = false;
                }
                Wake::Shutdown => break,
            }
        }
        self.publish();
    }

    /// The first look at everything. The tail starts at the end of the newest log: lines
    /// written before the agent started are history, not news.
    async fn refresh_all(&mut self) {
        self.logs = logs::scan(&self.cfg.log_dir, &self.clock.today_log_name());
        if let Some(newest) = &self.logs.newest {
            self.tail.follow_from_end(self.cfg.log_dir.join(newest));
        }
        self.refresh_unit().await;
        self.disk = disk::check(&self.cfg.data_dir);
        self.refresh_pause();
        self.find_process();
    }

    async fn refresh_unit(&mut self) {
        let status = pinging(&mut self.watchdog, self.manager.status()).await;
        self.unit = match status {
            Ok(u) => u,
            Err(e) => Some(UnitStatus {
                text: format!("unknown ({e})"),
                main_pid: None,
            }),
        };
        self.next_unit_check = Instant::now() + UNIT_EVERY;
    }

    fn refresh_pause(&mut self) {
        self.pause = match pause::active(&self.state_dir, self.clock.now()) {
            Ok(p) => p,
            Err(e) => {
                log::warn!(target: CHECK, "{e}");
                None
            }
        };
    }

    fn rescan_logs(&mut self) {
        let mut fresh = logs::scan(&self.cfg.log_dir, &self.clock.today_log_name());
        fresh.keep_times_if_unwritten(&self.logs);
        self.logs = fresh;
        if let Some(newest) = self.logs.newest.clone() {
            self.match_errors(&self.cfg.log_dir.join(newest));
        }
    }

    /// Finds the daemon: the manager's main PID, the pidfile, then any process running the
    /// configured executable (oldest first). Sets up the exit watch.
    fn find_process(&mut self) {
        if self.proc.is_some_and(|p| p.alive()) {
            return;
        }
        let exe = &self.cfg.process;
        let from_unit = self.unit.as_ref().and_then(|u| u.main_pid);
        let from_pidfile = self.cfg.pidfile.as_deref().and_then(process::read_pidfile);
        let found = [from_unit, from_pidfile]
            .into_iter()
            .flatten()
            .filter(|pid| process::runs(*pid, exe))
            .find_map(Proc::get)
            .or_else(|| process::find_by_exe(exe).into_iter().next());
        self.exit = found.map(ExitWatch::new);
        self.proc = found;
    }

    fn on_exit(&mut self) {
        let Some(p) = self.proc else {
            self.exit = None;
            return;
        };
        if p.alive() {
            // A spurious wake (the fd errored): fall back to polling this process.
            self.exit = Some(ExitWatch::Poll(p));
            return;
        }
        self.proc = None;
        self.exit = None;
        // What the manager said while the process lived is no longer true.
        self.unit = None;
        self.emit(
            EventKind::Observed,
            format!("BESClient (pid {}) exited", p.pid),
            Fields {
                pid: Some(p.pid),
                ..Fields::default()
            },
        );
        self.find_process();
    }

    /// Takes note of a log write; says whether it needs an evaluation (anything but a
    /// routine write from a running client).
    fn on_written(&mut self, path: PathBuf) -> bool {
        self.logs.dir_exists = true;
        let errors = self.errors.count;
        let mtime = self.match_errors(&path);
        if let Some(t) = mtime {
            self.logs.last_write = self.logs.last_write.max(Some(t));
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            // Today's write only matters to a verification (and the local-time lookup is
            // the costliest part of a routine write); rescans keep it right otherwise.
            if self.ladder.verifying().is_some() && name == self.clock.today_log_name() {
                self.logs.today_write = self.logs.today_write.max(mtime);
            }
            if self.logs.newest.as_deref().is_none_or(|n| name > n) {
                self.logs.newest = Some(name.to_owned());
            }
        }
        if self.proc.is_none() {
            // A log write with no known process: someone (re)started it.
            self.find_process();
        }
        self.errors.count != errors
            || self.status != DaemonStatus::Running
            || self.ladder.verifying().is_some()
            || self.proc.is_none()
    }

    /// Matches new lines of `path` against the error patterns; returns its mtime.
    fn match_errors(&mut self, path: &Path) -> Option<DateTime<Utc>> {
        let (found, mtime) = self.tail.poll(path);
        let Some(last) = found.last() else {
            return mtime;
        };
        let now = self.clock.now();
        self.errors.count += found.len() as u64;
        self.errors.last_line = Some(last.line.clone());
        self.errors.last_at = Some(now);
        if self
            .last_error_event
            .is_none_or(|t| now - t >= ERROR_EVENT_EVERY)
        {
            self.last_error_event = Some(now);
            let msg = format!(
                "BESClient logged an error ({} so far): {}",
                self.errors.count, last.line
            );
            self.emit(EventKind::Observed, msg, Fields::default());
        }
        mtime
    }

    async fn on_timer(&mut self) {
        self.rescan_logs();
        self.disk = disk::check(&self.cfg.data_dir);
        self.refresh_pause();
        if Instant::now() >= self.next_unit_check {
            self.refresh_unit().await;
        }
        self.find_process();
    }

    /// When the loop must look again even if no event arrives.
    fn next_wake(&mut self) -> Instant {
        let now_i = Instant::now();
        let now = self.clock.now();
        let mut wake = now_i + PERIODIC;
        if let Some((_, deadline)) = self.ladder.verifying() {
            wake = wake.min(deadline).min(now_i + DISCOVER_EVERY);
        }
        if let Some((until, _)) = self.ladder.waiting() {
            wake = wake.min(until);
        }
        if self.proc.is_none() {
            wake = wake.min(now_i + Duration::from_secs(1));
        }
        if self.status == DaemonStatus::Running {
            let stale_at = self.log_reference() + chrono_dur(self.cfg.stale_after);
            let in_ = (stale_at - now).to_std().unwrap_or(Duration::ZERO);
            wake = wake.min(now_i + in_ + Duration::from_millis(1));
        }
        if let Some(p) = &self.pause {
            let in_ = (p.until - now).to_std().unwrap_or(Duration::ZERO);
            wake = wake.min(now_i + in_);
        }
        wake
    }

    /// The time freshness is measured from: the last log write, or the agent's start if
    /// there has been none.
    fn log_reference(&self) -> DateTime<Utc> {
        self.logs.last_write.unwrap_or(self.started)
    }

    /// Verification, classification and, if something is wrong, the next ladder step.
    async fn evaluate(&mut self) {
        loop {
            let now_i = Instant::now();
            let now = self.clock.now();
            if let Some((step, deadline)) = self.ladder.verifying() {
                self.find_process();
                match self.verification() {
                    Ok(msg) => {
                        self.just_verified = true;
                        self.ladder.verified(now_i);
                        self.issued_at = None;
                        self.failed_early = None;
                        self.emit_step(EventKind::Verified, msg, step);
                        self.refresh_unit().await;
                    }
                    Err(why) if now_i >= deadline || self.failed_early.is_some() => {
                        let why = self.failed_early.take().unwrap_or(why);
                        self.issued_at = None;
                        self.fail_step(step, why, now_i, now).await;
                    }
                    Err(_) => {
                        let reason = format!(
                            "{} issued at {}; waiting up to {} for BESClient to run and write today's log",
                            step.as_str(),
                            hms(self.issued_at.unwrap_or(now)),
                            humantime::format_duration(self.cfg.verify_within)
                        );
                        self.set_status(DaemonStatus::Restarting, Health::Warn, reason);
                        return;
                    }
                }
            }
            let Some(problem) = self.classify(now) else {
                if self.ladder.exhausted_rounds() > 0 || self.ladder.waiting().is_some() {
                    self.ladder.recovered_without_us();
                }
                self.held = None;
                return;
            };
            if self.unit.is_none() && (!self.remediation_enabled || self.pause.is_some()) {
                // Not acting: at least say what the service manager thinks, next time round.
                self.refresh_unit().await;
            }
            if !self.remediation_enabled {
                self.hold(
                    "observe",
                    "observe only (remediation.enabled = false): not acting".to_owned(),
                );
                return;
            }
            self.refresh_pause();
            if let Some(p) = &self.pause {
                let msg = format!(
                    "remediation paused until {} ({}): not acting",
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
                    let at = now + chrono_dur(until.saturating_duration_since(now_i));
                    self.hold(
                        why.as_str(),
                        format!("{}: next attempt at {}", why.as_str(), at.to_rfc3339()),
                    );
                    return;
                }
                Decision::Verifying { .. } => return,
            }
        }
    }

    async fn fail_step(&mut self, step: Step, why: String, now_i: Instant, now: DateTime<Utc>) {
        match self.ladder.verify_failed(now_i) {
            Failed::Escalate(next) => {
                let msg = format!(
                    "{} did not bring BESClient back: {why}; escalating to {}",
                    step.as_str(),
                    next.as_str()
                );
                self.emit_step(EventKind::VerifyFailed, msg, step);
            }
            Failed::Exhausted { round, retry_at } => {
                let msg = format!("{} did not bring BESClient back: {why}", step.as_str());
                self.emit_step(EventKind::VerifyFailed, msg, step);
                let at = now + chrono_dur(retry_at.saturating_duration_since(now_i));
                let msg = format!(
                    "remediation exhausted (round {round}): every step failed; retrying from the first step at {} (in {})",
                    at.to_rfc3339(),
                    humantime::format_duration(retry_at.saturating_duration_since(now_i))
                );
                self.emit_step(EventKind::Exhausted, msg, step);
            }
        }
        self.refresh_unit().await;
    }

    /// `Ok` with the proof, or `Err` with what is missing.
    fn verification(&self) -> Result<String, String> {
        let issued = self.issued_at.unwrap_or(self.started);
        let Some(p) = self.proc.filter(|p| p.alive()) else {
            return Err("BESClient is not running".to_owned());
        };
        let today = self.clock.today_log_name();
        match self.logs.today_write {
            Some(t) if t > issued => Ok(format!(
                "BESClient verified healthy: pid {} up and {today} written {:.1}s after the action",
                p.pid,
                (t - issued).num_milliseconds().max(0) as f64 / 1000.0
            )),
            Some(t) => Err(format!(
                "pid {} is up but {today} was last written at {}, before the action",
                p.pid,
                hms(t)
            )),
            None => Err(format!("pid {} is up but {today} has not appeared", p.pid)),
        }
    }

    /// Sets status, health and reason from the signals; returns the problem, if any.
    fn classify(&mut self, now: DateTime<Utc>) -> Option<Problem> {
        let alive = self.proc.filter(|p| p.alive());
        let reference = self.log_reference();
        let quiet_for = (now - reference).to_std().unwrap_or(Duration::ZERO);
        let stale = quiet_for > self.cfg.stale_after;
        let disk_note = match &self.disk {
            Some(d) if d.full => format!(
                "; the disk holding {} is full ({} free of {}): BESClient cannot write",
                d.path,
                human_bytes(d.avail_bytes),
                human_bytes(d.total_bytes)
            ),
            _ => String::new(),
        };
        let unit_note = match &self.unit {
            Some(u) => format!(" ({} says: {})", self.manager.name(), u.text),
            None => String::new(),
        };
        let last = match self.logs.last_write {
            Some(t) => format!("last log write {} ({} ago)", t.to_rfc3339(), ago(now - t)),
            None if self.logs.dir_exists => "no daily log in the log directory".to_owned(),
            None => format!("log directory {} is missing", self.cfg.log_dir.display()),
        };
        let exhausted = match self.ladder.exhausted_rounds() {
            0 => String::new(),
            n => format!("; remediation exhausted {n} time(s), still retrying"),
        };
        let (status, health, reason, problem) = match alive {
            None => (
                DaemonStatus::Dead,
                Health::Critical,
                format!("BESClient is not running{unit_note}; {last}{disk_note}{exhausted}"),
                Some(Problem::Dead),
            ),
            Some(p) if stale => {
                let how = if p.stopped() {
                    "stopped (SIGSTOP) and silent"
                } else {
                    "running but silent"
                };
                (
                    DaemonStatus::Hung,
                    Health::Critical,
                    format!(
                        "BESClient (pid {}) is {how}: {last}, stale after {}{disk_note}{exhausted}",
                        p.pid,
                        humantime::format_duration(self.cfg.stale_after)
                    ),
                    Some(Problem::Hung),
                )
            }
            Some(p) => {
                let mut warnings = Vec::new();
                if self.ladder.flapping(Instant::now()) {
                    warnings
                        .push("flapping: recovered 3+ times within the budget window".to_owned());
                }
                if let Some(l) = &self.errors.last_line {
                    warnings.push(format!("{} error line(s), last: {l}", self.errors.count));
                }
                if !disk_note.is_empty() {
                    warnings.push(disk_note.trim_start_matches("; ").to_owned());
                }
                let health = if warnings.is_empty() {
                    Health::Ok
                } else {
                    Health::Warn
                };
                let mut reason = format!("BESClient (pid {}) is running and logging", p.pid);
                for w in warnings {
                    reason.push_str("; ");
                    reason.push_str(&w);
                }
                (DaemonStatus::Running, health, reason, None)
            }
        };
        self.set_status(status, health, reason);
        problem
    }

    fn set_status(&mut self, status: DaemonStatus, health: Health, reason: String) {
        // A recovery the ladder just verified was announced by its "verified" event.
        let announced = std::mem::take(&mut self.just_verified);
        if status != self.status {
            let was = self.status;
            self.status = status;
            self.since = self.clock.now();
            let announced = announced || was == DaemonStatus::Restarting;
            if matches!(status, DaemonStatus::Dead | DaemonStatus::Hung)
                || (status == DaemonStatus::Running && !announced)
            {
                let pid = self.proc.map(|p| p.pid);
                let level = (status == DaemonStatus::Running).then_some(log::Level::Info);
                self.emit(
                    EventKind::Observed,
                    reason.clone(),
                    Fields {
                        pid,
                        level,
                        ..Fields::default()
                    },
                );
            }
        }
        self.health = health;
        self.reason = reason;
    }

    /// Says once why the agent does not act.
    fn hold(&mut self, kind: &'static str, msg: String) {
        if self.held != Some(kind) {
            self.held = Some(kind);
            self.emit(EventKind::Held, msg, Fields::default());
        }
    }

    async fn act(&mut self, step: Step, problem: Problem) {
        let pid = self.proc.map(|p| p.pid);
        self.issued_at = Some(self.clock.now_coarse());
        self.failed_early = None;
        let cause = match problem {
            Problem::Dead => "not running",
            Problem::Hung => "hung",
        };
        let what = match step {
            Step::Restart => format!("restart issued via {} (BESClient {cause})", self.manager.name()),
            Step::HardRestart => format!(
                "hard restart issued via {}: stop, kill leftover BESClient processes, start (BESClient {cause})",
                self.manager.name()
            ),
            Step::Reinstall => format!(
                "reinstall issued: {} (BESClient {cause})",
                self.reinstall.join(" ")
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
            Step::Restart => pinging(&mut self.watchdog, self.manager.restart())
                .await
                .map_err(|e| e.to_string()),
            Step::HardRestart => {
                if problem == Problem::Hung {
                    // A stopped or wedged daemon would make a graceful stop hang: kill first.
                    self.kill_leftovers().await;
                }
                if let Err(e) = pinging(&mut self.watchdog, self.manager.stop()).await {
                    log::warn!(target: CHECK, step = "hard_restart"; "stop failed ({e}); killing leftovers and starting anyway");
                }
                self.kill_leftovers().await;
                pinging(&mut self.watchdog, self.manager.start())
                    .await
                    .map_err(|e| e.to_string())
            }
            Step::Reinstall => {
                let timeout = self.cfg.command_timeout;
                match pinging(
                    &mut self.watchdog,
                    crate::exec::run(&self.reinstall, timeout),
                )
                .await
                {
                    Ok(out) if out.status.success() => {
                        pinging(&mut self.watchdog, self.manager.start())
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Ok(out) => Err(format!(
                        "reinstall exited with {}: {}",
                        out.status,
                        out.last_words()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(e) = result {
            self.failed_early = Some(format!("{} failed: {e}", step.as_str()));
        }
        self.rescan_logs();
        self.proc = None;
        self.exit = None;
        self.find_process();
    }

    /// SIGKILL every process running the BESClient executable, and wait (briefly) for them
    /// to be gone so that the start that follows does not find them.
    async fn kill_leftovers(&mut self) {
        let leftovers = process::find_by_exe(&self.cfg.process);
        let now = self.clock.now();
        for (p, outcome) in process::kill_all(&leftovers).await {
            self.events.killed(now, CHECK, "BESClient", p.pid, outcome);
        }
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
    pub fn state(&mut self) -> BesclientState {
        let now = self.clock.now();
        let now_i = Instant::now();
        let next_attempt_at = self
            .ladder
            .waiting()
            .map(|(until, _)| now + chrono_dur(until.saturating_duration_since(now_i)));
        let stale = self.status == DaemonStatus::Hung;
        BesclientState {
            health: self.health,
            status: self.status,
            reason: self.reason.clone(),
            since: self.since,
            pid: self.proc.filter(|p| p.alive()).map(|p| p.pid),
            manager: self.manager.name().to_owned(),
            unit_state: self.unit.as_ref().map(|u| u.text.clone()),
            log: LogState {
                dir: self.cfg.log_dir.display().to_string(),
                dir_exists: self.logs.dir_exists,
                newest: self.logs.newest.clone(),
                last_write: self.logs.last_write,
                stale_after_secs: self.cfg.stale_after.as_secs(),
                stale,
            },
            errors: self.errors.clone(),
            disk: self.disk.clone(),
            remediation: RemediationState {
                enabled: self.remediation_enabled,
                paused_until: self.pause.as_ref().map(|p| p.until),
                pause_reason: self.pause.as_ref().map(|p| p.reason.clone()),
                step: self.ladder.last_step().map(|s| s.as_str().to_owned()),
                exhausted_rounds: self.ladder.exhausted_rounds(),
                next_attempt_at,
                attempts_in_window: self.ladder.attempts_in_window(now_i),
                flapping: self.ladder.flapping(now_i),
            },
        }
    }

    /// What the agent will do next, in words, for `doctor`.
    fn next_words(&self) -> String {
        if let Some((step, _)) = self.ladder.verifying() {
            return format!("verifying the {}", step.as_str());
        }
        if let Some((_, why)) = self.ladder.waiting() {
            return format!("waiting ({}) before the next attempt", why.as_str());
        }
        match self.status {
            DaemonStatus::Running => format!(
                "watching; BESClient counts as hung if its log stays silent for {}",
                humantime::format_duration(self.cfg.stale_after)
            ),
            _ if !self.remediation_enabled => "observing only (remediation disabled)".to_owned(),
            _ if self.pause.is_some() => "nothing until the pause ends".to_owned(),
            _ => "remediating".to_owned(),
        }
    }

    /// Writes `state.json` when something an SRE would see changed, or once a minute.
    fn publish(&mut self) {
        let s = self.state();
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}|{:?}|{}",
            s.status,
            s.health,
            s.pid,
            s.remediation.step,
            s.remediation.exhausted_rounds,
            s.errors.count,
            s.remediation.paused_until,
            s.remediation.flapping,
            s.unit_state,
            s.disk.as_ref().is_some_and(|d| d.full)
        );
        let changed = self.written.as_ref().is_none_or(|(k, _)| *k != key);
        if let Some((_, at)) = &self.written {
            if !changed && at.elapsed() < PERIODIC {
                return;
            }
        }
        let agent_state = rollcall_proto::AgentState {
            proto_version: rollcall_proto::PROTO_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            at: self.clock.now(),
            besclient: s,
            // The reporter adds the BMC and nessusd checks' results to what it sends.
            bmc: None,
            nessusd: None,
        };
        if let Some(tx) = &self.reporting {
            // A change is sent at once; a periodic refresh only updates what the next
            // regular heartbeat carries.
            let st = agent_state.clone();
            tx.send_if_modified(|v| {
                *v = Some(st);
                changed
            });
        }
        let local = LocalState {
            pid: std::process::id(),
            state: agent_state,
            next: self.next_words(),
            events: self.events.recent().rev().take(50).cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&local).unwrap_or_default();
        if let Err(e) = state::write_atomic(&state::path(&self.state_dir), &bytes) {
            if self.written.is_none() {
                log::warn!(target: "agent", "cannot write {}: {e}; doctor will not show the agent's history", state::path(&self.state_dir).display());
            }
        }
        self.written = Some((key, Instant::now()));
    }
}

/// Waits for `fut` while still pinging the watchdog: remediation commands may run for up to
/// `command_timeout`, longer than systemd's watchdog interval.
async fn pinging<F: Future>(dog: &mut Option<Interval>, fut: F) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick(dog) => notify_watchdog(),
        }
    }
}

async fn tick(dog: &mut Option<Interval>) {
    match dog {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn notify_watchdog() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f UTC").to_string()
}

/// `3h12m`-style ages.
pub fn ago(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0) as u64;
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

#[cfg(test)]
mod tests;
