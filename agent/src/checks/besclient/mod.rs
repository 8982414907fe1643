//! The BigFix client: its process (pidfd), its log directory's freshness and content, the
//! disk under `/var/opt/BESClient`. Healed by the shared [`Supervisor`].
//!
//! Invariant: nothing here waits on the network. Every wait is on the daemon's pidfd, the
//! log directory's inotify, a timer, or a bounded local command.

pub mod checkin;
pub mod config;
pub mod logs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{
    BesclientState, DaemonStatus, DiskState, ErrorMatches, EventKind, Health, LogState,
};
use tokio::time::Instant;

pub use config::BesclientConfig;

use crate::clock::{ago, to_chrono, Clock};
use crate::config::Config;
use crate::disk::{self, human_bytes};
use crate::events::Fields;
use crate::manager::{ManagerError, ServiceManager};
use crate::process::{self, ExitWatch, Proc};
use crate::publish::Envelope;
use crate::remediation::{Problem, Step};
use crate::supervisor::{hms, Core, Daemon, Plan, Status, Supervisor, Verdict, PERIODIC};
use checkin::{Checkin, LogReader};
use logs::{Change, LogWatcher, Tail};
use rollcall_proto::CheckinVerdict;

const CHECK: &str = "besclient";
/// The service manager's view costs a process spawn: asked rarely, and after every action.
const UNIT_EVERY: Duration = Duration::from_secs(300);
/// While verifying or dead: how often to look for the process.
const DISCOVER_EVERY: Duration = Duration::from_millis(250);
/// Error lines are counted always, but announced at most this often.
const ERROR_EVENT_EVERY: chrono::Duration = chrono::Duration::minutes(10);

impl Status for DaemonStatus {
    const UNKNOWN: Self = DaemonStatus::Unknown;
    const RESTARTING: Self = DaemonStatus::Restarting;
    fn is_fault(self) -> bool {
        matches!(self, DaemonStatus::Dead | DaemonStatus::Hung)
    }
}

/// besclient's supervisor, built from the config: its manager, its plan.
pub fn supervisor(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Supervisor<Besclient>, ManagerError> {
    build(config, clock, Besclient::new(config.besclient.clone()))
}

/// Everything once, without acting (`doctor`): the whole newest log is read for errors, as
/// the runbook's "does today's log have errors?" does.
pub async fn look_once(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<BesclientState, ManagerError> {
    let mut daemon = Besclient::new(config.besclient.clone());
    daemon.one_shot = true;
    Ok(build(config, clock, daemon)?.observe_once().await)
}

fn build(
    config: &Config,
    clock: Arc<dyn Clock>,
    daemon: Besclient,
) -> Result<Supervisor<Besclient>, ManagerError> {
    let cfg = &config.besclient;
    let manager = ServiceManager::pick(&cfg.managed)?;
    let plan = Plan {
        remediation: config.remediation.clone(),
        verify_within: cfg.verify_within,
        checkin_verify_within: cfg.checkin.verify_within,
        command_timeout: cfg.managed.command_timeout,
        state_dir: config.state_dir.clone(),
        unit_every: Some(UNIT_EVERY),
    };
    Ok(Supervisor::new(daemon, manager, plan, clock))
}

/// What the agent observes of the BigFix client.
pub struct Besclient {
    cfg: BesclientConfig,
    /// A one-shot look (`doctor`): no inotify, and the whole newest log is read for errors.
    one_shot: bool,
    watcher: Option<LogWatcher>,
    proc: Option<Proc>,
    exit: Option<ExitWatch>,
    logs: logs::Snapshot,
    tail: Tail,
    errors: ErrorMatches,
    last_error_event: Option<DateTime<Utc>>,
    disk: Option<DiskState>,
    /// BigFix check-in, from the RelayChain files and the log's check-in lines.
    checkin: Checkin,
    /// The log whose check-in lines are being read, with the block time under way.
    checkin_log: Option<(PathBuf, LogReader)>,
    relay_watcher: Option<LogWatcher>,
    relay_tail: Tail,
    /// The verdict last announced.
    checkin_said: CheckinVerdict,
    /// Unreadable check-in records were mentioned (once).
    said_bad_records: bool,
}

/// besclient's own wakes.
pub enum Signal {
    /// The process's pidfd (or its polling fallback) fired.
    Exit,
    /// The log directory changed; `None` when inotify stopped.
    Log(Option<Change>),
    /// The RelayChain directory changed; `None` when inotify stopped.
    Relay(Option<Change>),
}

impl Besclient {
    pub fn new(cfg: BesclientConfig) -> Self {
        Besclient {
            tail: Tail::new(cfg.error_patterns.clone()),
            one_shot: false,
            watcher: None,
            proc: None,
            exit: None,
            logs: logs::Snapshot::default(),
            errors: ErrorMatches::default(),
            last_error_event: None,
            disk: None,
            checkin: Checkin::new(DateTime::<Utc>::MIN_UTC),
            checkin_log: None,
            relay_watcher: None,
            relay_tail: Tail::new(Vec::new()),
            checkin_said: CheckinVerdict::Unknown,
            said_bad_records: false,
            cfg,
        }
    }

    fn rescan_logs(&mut self, core: &mut Core<DaemonStatus>) {
        let mut fresh = logs::scan(&self.cfg.log_dir, &core.clock.today_log_name());
        fresh.keep_times_if_unwritten(&self.logs);
        self.logs = fresh;
        if let Some(newest) = self.logs.newest.clone() {
            self.read_log(&self.cfg.log_dir.join(newest), core);
        }
        if let Some(newest) = self.newest_relay_chain() {
            self.read_relay_chain(&newest, core);
        }
    }

    /// Says once that unreadable check-in records were ignored.
    fn say_bad_records(&mut self) {
        if self.checkin.bad_records > 0 && !std::mem::replace(&mut self.said_bad_records, true) {
            log::warn!(target: CHECK, "{} check-in record(s) in {} or {} could not be read (truncated, garbage or stamped in the future) and were ignored", self.checkin.bad_records, self.cfg.checkin.relay_chain_dir.display(), self.cfg.log_dir.display());
        }
    }

    /// The check-in verdict now; a change is announced as an event.
    fn checkin_verdict(&mut self, core: &mut Core<DaemonStatus>) -> (CheckinVerdict, String) {
        let ci = &self.cfg.checkin;
        let (v, why) = self
            .checkin
            .verdict(core.now(), ci.warn_after, ci.critical_after);
        if v != self.checkin_said {
            let was = std::mem::replace(&mut self.checkin_said, v);
            let level = match v {
                CheckinVerdict::Warn | CheckinVerdict::Critical => Some(log::Level::Warn),
                CheckinVerdict::Ok if was != CheckinVerdict::Unknown => Some(log::Level::Info),
                _ => None,
            };
            if let Some(level) = level {
                let msg = format!("BigFix check-in {}: {why}", v.as_str());
                let f = Fields {
                    level: Some(level),
                    ..Fields::default()
                };
                core.emit(CHECK, EventKind::Observed, msg, f);
            }
        }
        (v, why)
    }

    /// The newest `YYYYMMDD.txt` in the RelayChain directory.
    fn newest_relay_chain(&self) -> Option<PathBuf> {
        std::fs::read_dir(&self.cfg.checkin.relay_chain_dir)
            .ok()?
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| checkin::is_relay_chain_name(n))
            .max()
            .map(|n| self.cfg.checkin.relay_chain_dir.join(n))
    }

    /// New lines of a RelayChain file; whether they are news (see [`Checkin::note`]).
    fn read_relay_chain(&mut self, path: &Path, core: &mut Core<DaemonStatus>) -> bool {
        let Some(date) = checkin::file_date(path) else {
            return false;
        };
        let (lines, _) = self.relay_tail.poll_lines(path);
        let now = core.now();
        let mut news = false;
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            news |= self
                .checkin
                .note(checkin::relay_chain_line(date, line), now);
        }
        news
    }

    /// New lines of the daily log `path`, read for check-in records; whether they are news.
    fn read_checkin_lines(&mut self, path: &Path, lines: &[String], now: DateTime<Utc>) -> bool {
        let Some(date) = checkin::file_date(path) else {
            return false;
        };
        if self.checkin_log.as_ref().is_none_or(|(p, _)| p != path) {
            self.checkin_log = Some((path.to_owned(), LogReader::new(date)));
        }
        let Some((_, reader)) = self.checkin_log.as_mut() else {
            return false;
        };
        let mut news = false;
        for line in lines {
            match reader.line(line, &self.cfg.checkin.patterns) {
                Ok(None) => {}
                Ok(Some(s)) => news |= self.checkin.note(Ok(s), now),
                Err(e) => news |= self.checkin.note(Err(e), now),
            }
        }
        news
    }

    fn on_exit(&mut self, core: &mut Core<DaemonStatus>) {
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
        core.unit = None;
        core.emit(
            CHECK,
            EventKind::Observed,
            format!("BESClient (pid {}) exited", p.pid),
            Fields {
                pid: Some(p.pid),
                ..Fields::default()
            },
        );
        self.find_process(core);
    }

    /// Takes note of a log write; says whether it needs an evaluation (anything but a
    /// routine write from a running client).
    fn on_written(&mut self, path: PathBuf, core: &mut Core<DaemonStatus>) -> bool {
        self.logs.dir_exists = true;
        let errors = self.errors.count;
        let (mtime, checkin_news) = self.read_log(&path, core);
        if let Some(t) = mtime {
            self.logs.last_write = self.logs.last_write.max(Some(t));
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            // Today's write only matters to a verification (and the local-time lookup is
            // the costliest part of a routine write); rescans keep it right otherwise.
            if core.ladder.verifying().is_some() && name == core.clock.today_log_name() {
                self.logs.today_write = self.logs.today_write.max(mtime);
            }
            if self.logs.newest.as_deref().is_none_or(|n| name > n) {
                self.logs.newest = Some(name.to_owned());
            }
        }
        if self.proc.is_none() {
            // A log write with no known process: someone (re)started it.
            self.find_process(core);
        }
        self.errors.count != errors
            || checkin_news
            || core.status != DaemonStatus::Running
            || core.ladder.verifying().is_some()
            || self.proc.is_none()
    }

    /// Reads the new lines of `path`: error lines matched and counted, check-in lines
    /// noted. Returns its mtime, and whether the check-in lines were news.
    fn read_log(
        &mut self,
        path: &Path,
        core: &mut Core<DaemonStatus>,
    ) -> (Option<DateTime<Utc>>, bool) {
        let (lines, mtime) = self.tail.poll_lines(path);
        let now = core.now();
        // A one-shot look read the check-in records back already.
        let news = !self.one_shot && self.read_checkin_lines(path, &lines, now);
        let found: Vec<_> = lines.iter().filter_map(|l| self.tail.error(l)).collect();
        let Some(last) = found.last() else {
            return (mtime, news);
        };
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
            core.emit(CHECK, EventKind::Observed, msg, Fields::default());
        }
        (mtime, news)
    }

    /// The time freshness is measured from: the last log write, or the agent's start if
    /// there has been none.
    fn log_reference(&self, core: &Core<DaemonStatus>) -> DateTime<Utc> {
        self.logs.last_write.unwrap_or(core.started)
    }
}

impl Daemon for Besclient {
    const CHECK: &'static str = CHECK;
    const NAME: &'static str = "BESClient";
    const DEAD: &'static str = "not running";
    const PROOF: &'static str = "BESClient to run and write today's log";
    const UNOBSERVED: &'static str = "not yet observed";
    type Status = DaemonStatus;
    type State = BesclientState;
    type Signal = Signal;

    /// The first look at everything. The tail starts at the end of the newest log: lines
    /// written before the agent started are history, not news (unless one-shot).
    async fn start(&mut self, core: &mut Core<DaemonStatus>) {
        if !self.one_shot {
            self.watcher = match LogWatcher::new(&self.cfg.log_dir) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::warn!(target: CHECK, "cannot watch {} with inotify ({e}); checking it every {}s instead", self.cfg.log_dir.display(), PERIODIC.as_secs());
                    None
                }
            };
        }
        let ci = &self.cfg.checkin;
        self.checkin = checkin::read_back(
            &self.cfg.log_dir,
            &ci.relay_chain_dir,
            &ci.patterns,
            core.now(),
        );
        self.say_bad_records();
        if let Some(newest) = self.newest_relay_chain() {
            self.relay_tail.follow_from_end(newest);
        }
        if !self.one_shot {
            let dir = &self.cfg.checkin.relay_chain_dir;
            self.relay_watcher = match LogWatcher::for_files(dir, checkin::is_relay_chain_name) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::warn!(target: CHECK, "cannot watch {} with inotify ({e}); checking it every {}s instead", dir.display(), PERIODIC.as_secs());
                    None
                }
            };
        }
        self.logs = logs::scan(&self.cfg.log_dir, &core.clock.today_log_name());
        if let Some(newest) = self.logs.newest.clone() {
            let path = self.cfg.log_dir.join(newest);
            if self.one_shot {
                self.read_log(&path, core);
            } else {
                self.tail.follow_from_end(path);
            }
        }
        core.refresh_unit().await;
        self.disk = disk::check(&self.cfg.data_dir);
        self.find_process(core);
        if !self.one_shot {
            let how = match &self.exit {
                Some(w) if w.uses_pidfd() => "exit watched by pidfd",
                Some(_) => "exit watched by polling",
                None => "not running at start",
            };
            let which = self
                .proc
                .map_or(String::new(), |p| format!(" pid {}", p.pid));
            log::info!(target: CHECK, "supervising BESClient{which} via {} ({how})", core.manager.name());
        }
    }

    async fn signal(&mut self) -> Signal {
        tokio::select! {
            _ = async { match &self.exit { Some(x) => x.exited().await, None => std::future::pending().await } } => Signal::Exit,
            c = async { match self.watcher.as_mut() { Some(w) => w.next().await, None => std::future::pending().await } } => Signal::Log(c),
            c = async { match self.relay_watcher.as_mut() { Some(w) => w.next().await, None => std::future::pending().await } } => Signal::Relay(c),
        }
    }

    fn on_signal(&mut self, signal: Signal, core: &mut Core<DaemonStatus>) -> bool {
        match signal {
            Signal::Exit => self.on_exit(core),
            Signal::Log(Some(Change::Written(path))) => return self.on_written(path, core),
            Signal::Log(Some(Change::Rescan)) => self.rescan_logs(core),
            Signal::Log(None) => {
                log::warn!(target: CHECK, "inotify stopped; checking the log directory every {}s instead", PERIODIC.as_secs());
                self.watcher = None;
            }
            Signal::Relay(Some(Change::Written(path))) => {
                let changed = self.read_relay_chain(&path, core);
                self.say_bad_records();
                return changed;
            }
            Signal::Relay(Some(Change::Rescan)) => {
                if let Some(newest) = self.newest_relay_chain() {
                    self.read_relay_chain(&newest, core);
                }
            }
            Signal::Relay(None) => {
                log::warn!(target: CHECK, "inotify stopped; checking the RelayChain directory every {}s instead", PERIODIC.as_secs());
                self.relay_watcher = None;
            }
        }
        self.say_bad_records();
        true
    }

    async fn look(&mut self, core: &mut Core<DaemonStatus>) {
        self.rescan_logs(core);
        self.disk = disk::check(&self.cfg.data_dir);
        self.find_process(core);
    }

    /// Finds the daemon: the manager's main PID, the pidfile, then any process running the
    /// configured executable (oldest first). Sets up the exit watch.
    fn find_process(&mut self, core: &Core<DaemonStatus>) {
        if self.proc.is_some_and(|p| p.alive()) {
            return;
        }
        let exe = &self.cfg.process;
        let from_unit = core.unit.as_ref().and_then(|u| u.main_pid);
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

    fn after_action(&mut self, core: &mut Core<DaemonStatus>) {
        self.rescan_logs(core);
        self.proc = None;
        self.exit = None;
        self.find_process(core);
    }

    fn pid(&self) -> Option<u32> {
        self.proc.map(|p| p.pid)
    }

    async fn classify(&mut self, core: &mut Core<DaemonStatus>) -> Option<Verdict<DaemonStatus>> {
        let now = core.now();
        let alive = self.proc.filter(|p| p.alive());
        let quiet_for = (now - self.log_reference(core))
            .to_std()
            .unwrap_or(Duration::ZERO);
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
        let last = match self.logs.last_write {
            Some(t) => format!("last log write {} ({} ago)", t.to_rfc3339(), ago(now - t)),
            None if self.logs.dir_exists => "no daily log in the log directory".to_owned(),
            None => format!("log directory {} is missing", self.cfg.log_dir.display()),
        };
        let exhausted = core.exhausted_note();
        Some(match alive {
            None => Verdict {
                status: DaemonStatus::Dead,
                health: Health::Critical,
                reason: format!(
                    "BESClient is not running{}; {last}{disk_note}{exhausted}",
                    core.unit_note()
                ),
                problem: Some(Problem::Dead),
            },
            Some(p) if stale => {
                let how = if p.stopped() {
                    "stopped (SIGSTOP) and silent"
                } else {
                    "running but silent"
                };
                Verdict {
                    status: DaemonStatus::Hung,
                    health: Health::Critical,
                    reason: format!(
                        "BESClient (pid {}) is {how}: {last}, stale after {}{disk_note}{exhausted}",
                        p.pid,
                        humantime::format_duration(self.cfg.stale_after)
                    ),
                    problem: Some(Problem::Hung),
                }
            }
            Some(p) => {
                let mut warnings = Vec::new();
                let (checkin, checkin_why) = self.checkin_verdict(core);
                if checkin == CheckinVerdict::Warn {
                    warnings.push(checkin_why.clone());
                }
                if core.flapping() {
                    warnings
                        .push("flapping: recovered 3+ times within the budget window".to_owned());
                }
                if let Some(l) = &self.errors.last_line {
                    warnings.push(format!("{} error line(s), last: {l}", self.errors.count));
                }
                if !disk_note.is_empty() {
                    warnings.push(disk_note.trim_start_matches("; ").to_owned());
                }
                let health = if checkin == CheckinVerdict::Critical {
                    Health::Critical
                } else if warnings.is_empty() {
                    Health::Ok
                } else {
                    Health::Warn
                };
                let mut reason = format!("BESClient (pid {}) is running and logging", p.pid);
                if checkin == CheckinVerdict::Critical {
                    reason.push_str(", but ");
                    reason.push_str(&checkin_why);
                }
                for w in warnings {
                    reason.push_str("; ");
                    reason.push_str(&w);
                }
                Verdict {
                    status: DaemonStatus::Running,
                    health,
                    reason,
                    // Alive is not compliant: a client that cannot check in gets the
                    // runbook's restart.
                    problem: (checkin == CheckinVerdict::Critical)
                        .then_some(Problem::NotCheckingIn),
                }
            }
        })
    }

    /// Verified: the process is up and today's log was written after the action; for a
    /// client that did not check in, a new check-in after it.
    fn verify(
        &self,
        core: &Core<DaemonStatus>,
        step: Step,
        issued: DateTime<Utc>,
    ) -> Result<String, String> {
        let Some(p) = self.proc.filter(|p| p.alive()) else {
            return Err("BESClient is not running".to_owned());
        };
        if core.ladder.problem() == Some(Problem::NotCheckingIn) {
            return match self.checkin.last_success {
                Some((t, via)) if t >= issued => Ok(format!(
                    "BESClient verified checking in: pid {} {via} {:.1}s after the {}{}",
                    p.pid,
                    (t - issued).num_milliseconds().max(0) as f64 / 1000.0,
                    step.as_str(),
                    self.checkin
                        .relay
                        .as_deref()
                        .map_or(String::new(), |r| format!(" via relay {r}"))
                )),
                _ => Err(match &self.checkin.last_failure {
                    Some((t, line)) if *t >= issued => format!(
                        "no BigFix check-in since the {} ({} at {})",
                        step.as_str(),
                        checkin::failure_words(line),
                        hms(*t)
                    ),
                    _ => format!("no BigFix check-in since the {}", step.as_str()),
                }),
            };
        }
        let today = core.clock.today_log_name();
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

    /// A restart that did not bring the check-in back: a relay this host cannot reach is
    /// said as such, and held until the next round.
    fn exhausted_words(
        &self,
        core: &Core<DaemonStatus>,
        retry_at: DateTime<Utc>,
    ) -> Option<String> {
        if core.ladder.problem() != Some(Problem::NotCheckingIn) {
            return None;
        }
        let next = format!("holding; next restart at {}", retry_at.to_rfc3339());
        Some(match (&self.checkin.relay, self.checkin.failing_since, &self.checkin.last_failure) {
            // Failing since: the failure lines (transport errors, `F` registrations) came
            // after the last success, so the relay is not reached.
            (Some(r), Some(since), Some((_, line))) => format!(
                "relay {r} unreachable from this host since {} ({}); a restart did not help; {next}",
                since.format("%Y-%m-%d %H:%M UTC"),
                checkin::failure_words(line)
            ),
            _ => format!("BigFix check-in still failing after a restart; {next}"),
        })
    }

    /// Every process running the BESClient executable.
    fn leftovers(&self) -> Vec<Proc> {
        process::find_by_exe(&self.cfg.process)
    }

    fn next_look(&self, core: &Core<DaemonStatus>) -> Instant {
        let now_i = Instant::now();
        let mut wake = now_i + PERIODIC;
        if self.proc.is_none() {
            wake = wake.min(now_i + Duration::from_secs(1));
        }
        if core.status == DaemonStatus::Running {
            let stale_at = self.log_reference(core) + to_chrono(self.cfg.stale_after);
            let in_ = (stale_at - core.now()).to_std().unwrap_or(Duration::ZERO);
            wake = wake.min(now_i + in_ + Duration::from_millis(1));
            // The check-in verdict worsens by time alone.
            let ci = &self.cfg.checkin;
            if let Some(t) = self
                .checkin
                .next_change(core.now(), ci.warn_after, ci.critical_after)
            {
                let in_ = (t - core.now()).to_std().unwrap_or(Duration::ZERO);
                wake = wake.min(now_i + in_ + Duration::from_millis(1));
            }
        }
        wake
    }

    fn verify_every(&self) -> Duration {
        DISCOVER_EVERY
    }

    fn watching_words(&self) -> String {
        format!(
            "watching; BESClient counts as hung if its log stays silent for {}",
            humantime::format_duration(self.cfg.stale_after)
        )
    }

    fn state(&self, core: &Core<DaemonStatus>) -> BesclientState {
        BesclientState {
            health: core.health,
            status: core.status,
            reason: core.reason.clone(),
            since: core.since,
            pid: self.proc.filter(|p| p.alive()).map(|p| p.pid),
            manager: core.manager.name().to_owned(),
            unit_state: core.unit.as_ref().map(|u| u.text.clone()),
            log: LogState {
                dir: self.cfg.log_dir.display().to_string(),
                dir_exists: self.logs.dir_exists,
                newest: self.logs.newest.clone(),
                last_write: self.logs.last_write,
                stale_after_secs: self.cfg.stale_after.as_secs(),
                stale: core.status == DaemonStatus::Hung,
            },
            errors: self.errors.clone(),
            disk: self.disk.clone(),
            remediation: core.remediation_state(),
            checkin: Some(self.checkin.state(
                core.now(),
                self.cfg.checkin.warn_after,
                self.cfg.checkin.critical_after,
            )),
        }
    }

    /// Timestamps and routine log writes are not news; status, process, steps, error
    /// counts, pause, flapping, the manager's word, a full disk and the check-in are.
    fn sees_change(old: &BesclientState, new: &BesclientState) -> bool {
        let key = |s: &BesclientState| {
            (
                s.status,
                s.health,
                s.pid,
                s.remediation.step.clone(),
                s.remediation.exhausted_rounds,
                s.errors.count,
                s.remediation.paused_until,
                s.remediation.flapping,
                s.unit_state.clone(),
                s.disk.as_ref().is_some_and(|d| d.full),
                s.checkin
                    .as_ref()
                    .map(|c| (c.verdict, c.relay.clone(), c.failing_since)),
            )
        };
        key(old) != key(new)
    }

    fn post(state: BesclientState, to: &mut Envelope) {
        to.besclient = Some(state);
    }
}

#[cfg(test)]
mod tests;
