//! The one supervision loop every supervised daemon uses: observe → classify → ladder → act
//! through the service manager → verify → events → publish state.
//!
//! A daemon plugs in through [`Daemon`]: what it observes (and which wakes of its own it
//! has, such as a pidfd or an inotify stream), how it classifies, what proves a step worked,
//! and which processes are leftovers to kill. Everything else — the ladder, the budget and
//! backoff, observe-only and the local pause, the events and their wording, the service
//! manager's view, systemd's watchdog, publishing — is here, written once.
//!
//! Invariant: nothing here waits on the network. Every wait is on a daemon's own signal, a
//! timer, or a bounded local command (`command_timeout`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{EventKind, Health, RemediationState};
use tokio::time::{Instant, Interval};

use crate::clock::{to_chrono, Clock};
use crate::config::RemediationConfig;
use crate::events::{EventLog, Fields};
use crate::manager::{ServiceManager, UnitStatus};
use crate::pause::{self, Pause};
use crate::process::{self, Proc};
use crate::publish::{Board, Envelope};
use crate::remediation::{Decision, Failed, Policy, Problem, RemediationLadder, Step};

#[cfg(test)]
mod tests;

/// Routine re-checks of everything that sends no event of its own; also how often an
/// unchanged state is published again.
pub const PERIODIC: Duration = Duration::from_secs(60);

/// A daemon's status word: the proto enum the heartbeat carries.
pub trait Status: Copy + Eq + std::fmt::Debug {
    const UNKNOWN: Self;
    /// A step was issued and is being verified.
    const RESTARTING: Self;
    /// A status that calls for the ladder (dead, hung, down).
    fn is_fault(self) -> bool;
}

/// What a daemon's observations amount to now.
#[derive(Debug, Clone)]
pub struct Verdict<S> {
    pub status: S,
    pub health: Health,
    pub reason: String,
    /// What the ladder should act on, if anything.
    pub problem: Option<Problem>,
}

/// A supervised daemon: its observations and judgement. The loop, the ladder and the
/// actions are [`Supervisor`]'s.
// One thread runs the agent: these futures never need to be `Send`.
#[allow(async_fn_in_trait)]
pub trait Daemon {
    /// The check's name: the events' `check` field and the log target (`besclient`).
    const CHECK: &'static str;
    /// How messages name it (`BESClient`).
    const NAME: &'static str;
    /// Its death in an action's cause: "not running", "down".
    const DEAD: &'static str;
    /// What a step waits for, in words: "BESClient to run and write today's log".
    const PROOF: &'static str;
    /// The reason before the first look.
    const UNOBSERVED: &'static str;
    type Status: Status;
    /// The typed state the heartbeat carries for this check.
    type State: Clone;
    /// A wake of the daemon's own (its exit, a change in its log directory).
    type Signal;

    /// The first look at everything, before the loop (or for `doctor`).
    async fn start(&mut self, core: &mut Core<Self::Status>);
    /// Resolves with the daemon's next signal; never, if it has none.
    async fn signal(&mut self) -> Self::Signal;
    /// Takes a signal in; `false` when nothing anyone sees can have changed.
    fn on_signal(&mut self, signal: Self::Signal, core: &mut Core<Self::Status>) -> bool;
    /// The routine look, when the timer fires.
    async fn look(&mut self, core: &mut Core<Self::Status>);
    /// Looks for the daemon's process (after an action, while verifying).
    fn find_process(&mut self, core: &Core<Self::Status>);
    /// After an action: forget what it made stale and look again.
    fn after_action(&mut self, core: &mut Core<Self::Status>) {
        self.find_process(core);
    }
    /// Whether what `after_action` observed can already verify the step. A daemon seen only
    /// through its own periodic look (nessusd's status request) says no: its last answer
    /// predates the action, so the fault it showed is published and the step waits for
    /// the next look.
    fn observed_after_action(&self) -> bool {
        true
    }
    fn pid(&self) -> Option<u32>;
    /// The verdict from the latest observations; `None` while there are none.
    async fn classify(&mut self, core: &mut Core<Self::Status>) -> Option<Verdict<Self::Status>>;
    /// Whether the step issued at `issued` brought it back: the proof, or what is missing.
    fn verify(
        &self,
        core: &Core<Self::Status>,
        step: Step,
        issued: DateTime<Utc>,
    ) -> Result<String, String>;
    /// The words for a round that ended without bringing the daemon back, when the daemon
    /// knows better than "every step failed" (a relay that is down); `retry_at` is when
    /// the next round may start.
    fn exhausted_words(
        &self,
        _core: &Core<Self::Status>,
        _retry_at: DateTime<Utc>,
    ) -> Option<String> {
        None
    }
    /// The processes a hard restart kills.
    fn leftovers(&self) -> Vec<Proc>;
    /// When the daemon wants a routine look, even if nothing happens.
    fn next_look(&self, core: &Core<Self::Status>) -> Instant;
    /// How often to look while a step is being verified.
    fn verify_every(&self) -> Duration;
    /// What watching a healthy daemon means, for `doctor`.
    fn watching_words(&self) -> String;
    fn state(&self, core: &Core<Self::Status>) -> Self::State;
    /// Whether `new` differs from `old` in anything an SRE would see (sent at once).
    fn sees_change(old: &Self::State, new: &Self::State) -> bool;
    /// Puts this check's state where it belongs in the agent's state.
    fn post(state: Self::State, to: &mut Envelope);
}

/// How a daemon is healed: its part of the config, for the ladder.
#[derive(Debug, Clone)]
pub struct Plan {
    pub remediation: RemediationConfig,
    pub verify_within: Duration,
    /// How long a restart for [`Problem::NotCheckingIn`] has to show a new check-in.
    pub checkin_verify_within: Duration,
    pub command_timeout: Duration,
    pub state_dir: PathBuf,
    /// How often to ask the service manager while nothing happens; `None`: only around
    /// actions and faults.
    pub unit_every: Option<Duration>,
}

/// What every supervised daemon shares, and what a [`Daemon`] may read or refresh.
pub struct Core<S> {
    pub clock: Arc<dyn Clock>,
    pub manager: ServiceManager,
    pub ladder: RemediationLadder,
    /// The service manager's own view, reported (never trusted alone).
    pub unit: Option<UnitStatus>,
    pub pause: Option<Pause>,
    pub status: S,
    pub health: Health,
    pub reason: String,
    pub since: DateTime<Utc>,
    /// When supervision started: the reference before any observation.
    pub started: DateTime<Utc>,
    pub events: EventLog,
    plan: Plan,
    watchdog: Option<Interval>,
    next_unit_check: Instant,
    /// Wall time the step under verification was issued.
    issued_at: Option<DateTime<Utc>>,
    /// The step's command failed: no need to wait out `verify_within`.
    failed_early: Option<String>,
    /// The kind of the last "not acting" event, so that it is said once.
    held: Option<&'static str>,
    /// The ladder just verified a recovery (and said so).
    just_verified: bool,
}

impl<S: Status> Core<S> {
    pub fn remediation_enabled(&self) -> bool {
        self.plan.remediation.enabled
    }

    pub fn verify_within(&self) -> Duration {
        self.plan.verify_within
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Asks the service manager for its view (pinging the watchdog meanwhile).
    pub async fn refresh_unit(&mut self) {
        let status = pinging(&mut self.watchdog, self.manager.status()).await;
        self.unit = match status {
            Ok(u) => u,
            Err(e) => Some(UnitStatus {
                text: format!("unknown ({e})"),
                main_pid: None,
            }),
        };
        if let Some(every) = self.plan.unit_every {
            self.next_unit_check = Instant::now() + every;
        }
    }

    /// ` (systemd says: active (exited))`, or nothing when the manager was not asked.
    pub fn unit_note(&self) -> String {
        match &self.unit {
            Some(u) => format!(" ({} says: {})", self.manager.name(), u.text),
            None => String::new(),
        }
    }

    /// `; remediation exhausted N time(s), still retrying`, or nothing.
    pub fn exhausted_note(&self) -> String {
        match self.ladder.exhausted_rounds() {
            0 => String::new(),
            n => format!("; remediation exhausted {n} time(s), still retrying"),
        }
    }

    pub fn flapping(&self) -> bool {
        self.ladder.flapping(Instant::now())
    }

    pub fn refresh_pause(&mut self) {
        self.pause = match pause::active(&self.plan.state_dir, self.clock.now()) {
            Ok(p) => p,
            Err(e) => {
                log::warn!(target: "agent", "{e}");
                None
            }
        };
    }

    /// The remediation part of a check's state.
    pub fn remediation_state(&self) -> RemediationState {
        let now = self.clock.now();
        let now_i = Instant::now();
        RemediationState {
            enabled: self.plan.remediation.enabled,
            paused_until: self.pause.as_ref().map(|p| p.until),
            pause_reason: self.pause.as_ref().map(|p| p.reason.clone()),
            step: self.ladder.last_step().map(|s| s.as_str().to_owned()),
            exhausted_rounds: self.ladder.exhausted_rounds(),
            next_attempt_at: self
                .ladder
                .waiting()
                .map(|(until, _)| now + to_chrono(until.saturating_duration_since(now_i))),
            attempts_in_window: self.ladder.attempts_in_window(now_i),
            flapping: self.ladder.flapping(now_i),
        }
    }

    pub fn emit(&mut self, check: &str, kind: EventKind, message: String, f: Fields<'_>) {
        let now = self.clock.now();
        self.events.emit(now, check, kind, message, f);
    }
}

/// Supervises one daemon.
pub struct Supervisor<D: Daemon> {
    daemon: D,
    core: Core<D::Status>,
    board: Option<Board>,
    /// The state last published, and when.
    published: Option<(D::State, Instant)>,
}

impl<D: Daemon> Supervisor<D> {
    pub fn new(daemon: D, manager: ServiceManager, plan: Plan, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let policy = Policy {
            checkin_verify_within: plan.checkin_verify_within,
            ..Policy::new(&plan.remediation, plan.verify_within)
        };
        Supervisor {
            daemon,
            core: Core {
                clock,
                manager,
                ladder: RemediationLadder::new(policy),
                unit: None,
                pause: None,
                status: D::Status::UNKNOWN,
                health: Health::Warn,
                reason: D::UNOBSERVED.to_owned(),
                since: now,
                started: now,
                events: EventLog::new(),
                plan,
                watchdog: None,
                next_unit_check: Instant::now(),
                issued_at: None,
                failed_early: None,
                held: None,
                just_verified: false,
            },
            board: None,
            published: None,
        }
    }

    /// Ping systemd's watchdog every `every`, from this loop (so a stuck loop is caught).
    pub fn with_watchdog(mut self, every: Option<Duration>) -> Self {
        self.core.watchdog = every.map(tokio::time::interval);
        self
    }

    /// Numbers events in `events` (the host's one stream) and posts state to `board`.
    pub fn with_outlet(mut self, board: Board, events: EventLog) -> Self {
        self.core.events = events;
        self.board = Some(board);
        self
    }

    /// The daemon and the shared part, for a check's own tests to drive by hand.
    #[cfg(test)]
    pub(crate) fn parts(&mut self) -> (&mut D, &mut Core<D::Status>) {
        (&mut self.daemon, &mut self.core)
    }

    /// Looks at everything once, without acting: what `doctor` reports.
    pub async fn observe_once(&mut self) -> D::State {
        self.daemon.start(&mut self.core).await;
        self.core.refresh_pause();
        if let Some(v) = self.daemon.classify(&mut self.core).await {
            self.set_status(v.status, v.health, v.reason);
        }
        self.daemon.state(&self.core)
    }

    /// Supervises until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        self.daemon.start(&mut self.core).await;
        self.core.refresh_pause();
        tokio::pin!(shutdown);
        // A routine wake (a log write from a running client) may change nothing anyone
        // sees: skipping the evaluation then keeps an idle agent near zero CPU.
        let mut dirty = true;
        let mut wake = Instant::now();
        loop {
            if dirty {
                self.evaluate().await;
                self.publish();
                wake = self.next_wake();
            }
            tokio::select! {
                s = self.daemon.signal() => dirty = self.daemon.on_signal(s, &mut self.core),
                _ = tokio::time::sleep_until(wake) => {
                    self.on_timer().await;
                    dirty = true;
                }
                _ = tick(&mut self.core.watchdog) => {
                    notify_watchdog();
                    dirty = false;
                }
                _ = &mut shutdown => break,
            }
        }
        self.publish();
    }

    async fn on_timer(&mut self) {
        self.core.refresh_pause();
        if self.core.plan.unit_every.is_some() && Instant::now() >= self.core.next_unit_check {
            self.core.refresh_unit().await;
        }
        self.daemon.look(&mut self.core).await;
    }

    /// When the loop must look again even if no signal arrives.
    fn next_wake(&self) -> Instant {
        let now_i = Instant::now();
        let now = self.core.clock.now();
        let mut wake = self.daemon.next_look(&self.core);
        if let Some((_, deadline)) = self.core.ladder.verifying() {
            wake = wake.min(deadline).min(now_i + self.daemon.verify_every());
        }
        if let Some((until, _)) = self.core.ladder.waiting() {
            wake = wake.min(until);
        }
        if let Some(p) = &self.core.pause {
            wake = wake.min(now_i + (p.until - now).to_std().unwrap_or(Duration::ZERO));
        }
        wake
    }

    /// Verification, classification and, if something is wrong, the next ladder step.
    async fn evaluate(&mut self) {
        loop {
            let now_i = Instant::now();
            let now = self.core.clock.now();
            if let Some((step, deadline)) = self.core.ladder.verifying() {
                self.daemon.find_process(&self.core);
                let issued = self.core.issued_at.unwrap_or(self.core.started);
                match self.daemon.verify(&self.core, step, issued) {
                    Ok(proof) => {
                        self.core.just_verified = true;
                        self.core.ladder.verified(now_i);
                        self.core.issued_at = None;
                        self.core.failed_early = None;
                        self.emit_step(EventKind::Verified, proof, step);
                        self.core.refresh_unit().await;
                    }
                    Err(why) if now_i >= deadline || self.core.failed_early.is_some() => {
                        let why = self.core.failed_early.take().unwrap_or(why);
                        self.core.issued_at = None;
                        self.fail_step(step, why, now_i, now).await;
                    }
                    Err(_) if self.core.ladder.problem().is_some_and(Problem::daemon_runs) => {
                        // The client runs: its own state stands while the new check-in is
                        // awaited, unless it died or hung meanwhile (a round of its own).
                        let Some(v) = self.daemon.classify(&mut self.core).await else {
                            return;
                        };
                        let other = v.problem.is_some_and(|p| !p.daemon_runs());
                        self.set_status(v.status, v.health, v.reason);
                        if !other {
                            return;
                        }
                        self.core.ladder.abandon();
                        self.core.issued_at = None;
                    }
                    Err(_) => {
                        let reason = format!(
                            "{} {} issued at {}; waiting up to {} for {}",
                            D::NAME,
                            step.as_str(),
                            hms(issued),
                            humantime::format_duration(self.core.plan.verify_within),
                            D::PROOF
                        );
                        self.set_status(D::Status::RESTARTING, Health::Warn, reason);
                        return;
                    }
                }
            }
            let Some(verdict) = self.daemon.classify(&mut self.core).await else {
                return;
            };
            let problem = verdict.problem;
            self.set_status(verdict.status, verdict.health, verdict.reason);
            let Some(problem) = problem else {
                if self.core.ladder.exhausted_rounds() > 0 || self.core.ladder.waiting().is_some() {
                    self.core.ladder.recovered_without_us();
                }
                self.core.held = None;
                return;
            };
            if self.core.unit.is_none()
                && (!self.core.remediation_enabled() || self.core.pause.is_some())
            {
                // Not acting: at least say what the service manager thinks, next time round.
                self.core.refresh_unit().await;
            }
            if !self.core.remediation_enabled() {
                let msg = format!(
                    "observe only (remediation.enabled = false): not acting on {}",
                    D::NAME
                );
                self.hold("observe", msg);
                return;
            }
            self.core.refresh_pause();
            if let Some(p) = &self.core.pause {
                let msg = format!(
                    "remediation paused until {} ({}): not acting on {}",
                    p.until.to_rfc3339(),
                    p.reason,
                    D::NAME
                );
                self.hold("pause", msg);
                return;
            }
            match self.core.ladder.decide(now_i, problem) {
                Decision::Act { step, .. } => {
                    self.core.held = None;
                    self.act(step, problem).await;
                    if !self.daemon.observed_after_action() {
                        return;
                    }
                }
                Decision::Wait { until, why } => {
                    let at = now + to_chrono(until.saturating_duration_since(now_i));
                    let msg = format!(
                        "{}: {}: next attempt at {}",
                        D::NAME,
                        why.as_str(),
                        at.to_rfc3339()
                    );
                    self.hold(why.as_str(), msg);
                    return;
                }
                Decision::Verifying { .. } => return,
            }
        }
    }

    async fn fail_step(&mut self, step: Step, why: String, now_i: Instant, now: DateTime<Utc>) {
        match self.core.ladder.verify_failed(now_i) {
            Failed::Escalate(next) => {
                let msg = format!(
                    "{} {} did not bring it back: {why}; escalating to {}",
                    D::NAME,
                    step.as_str(),
                    next.as_str()
                );
                self.emit_step(EventKind::VerifyFailed, msg, step);
            }
            Failed::Exhausted { round, retry_at } => {
                let msg = format!("{} {} did not bring it back: {why}", D::NAME, step.as_str());
                self.emit_step(EventKind::VerifyFailed, msg, step);
                let wait = retry_at.saturating_duration_since(now_i);
                let at = now + to_chrono(wait);
                let msg = self.daemon.exhausted_words(&self.core, at).unwrap_or_else(|| {
                    format!(
                        "{} remediation exhausted (round {round}): every step failed; retrying from the first step at {} (in {})",
                        D::NAME,
                        at.to_rfc3339(),
                        humantime::format_duration(wait)
                    )
                });
                self.emit_step(EventKind::Exhausted, msg, step);
            }
        }
        self.core.refresh_unit().await;
    }

    async fn act(&mut self, step: Step, problem: Problem) {
        let pid = self.daemon.pid();
        self.core.issued_at = Some(self.core.clock.now_coarse());
        self.core.failed_early = None;
        let (name, via) = (D::NAME, self.core.manager.name());
        let cause = match problem {
            Problem::Dead => D::DEAD,
            Problem::Hung => "hung",
            Problem::NotCheckingIn => "not checking in",
        };
        let what = match step {
            Step::Restart => format!("{name} restart issued via {via} ({cause})"),
            Step::HardRestart => format!(
                "{name} hard restart issued via {via}: stop, kill leftover {name} processes, start ({cause})"
            ),
            Step::Reinstall => format!(
                "{name} reinstall issued: {} ({cause})",
                self.core.plan.remediation.reinstall.join(" ")
            ),
        };
        self.core.emit(
            D::CHECK,
            EventKind::Action,
            what,
            Fields {
                action: Some(step.as_str()),
                step: Some(step.as_str()),
                pid,
                level: None,
            },
        );
        let dog = &mut self.core.watchdog;
        let manager = &self.core.manager;
        let result = match step {
            Step::Restart => pinging(dog, manager.restart())
                .await
                .map_err(|e| e.to_string()),
            Step::HardRestart => {
                if problem == Problem::Hung {
                    // A stopped or wedged daemon would make a graceful stop hang: kill first.
                    self.kill_leftovers().await;
                }
                let (dog, manager) = (&mut self.core.watchdog, &self.core.manager);
                if let Err(e) = pinging(dog, manager.stop()).await {
                    log::warn!(target: D::CHECK, step = "hard_restart"; "stop failed ({e}); killing leftovers and starting anyway");
                }
                self.kill_leftovers().await;
                let (dog, manager) = (&mut self.core.watchdog, &self.core.manager);
                pinging(dog, manager.start())
                    .await
                    .map_err(|e| e.to_string())
            }
            Step::Reinstall => {
                let (argv, timeout) = (
                    &self.core.plan.remediation.reinstall,
                    self.core.plan.command_timeout,
                );
                match pinging(dog, crate::exec::run(argv, timeout)).await {
                    Ok(out) if out.status.success() => pinging(dog, manager.start())
                        .await
                        .map_err(|e| e.to_string()),
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
            self.core.failed_early = Some(format!("{} failed: {e}", step.as_str()));
        }
        self.daemon.after_action(&mut self.core);
    }

    /// SIGKILL every leftover process, and wait (briefly) for them to be gone so that the
    /// start that follows does not find them.
    async fn kill_leftovers(&mut self) {
        let leftovers = self.daemon.leftovers();
        let now = self.core.clock.now();
        for (p, outcome) in process::kill_all(&leftovers).await {
            self.core
                .events
                .killed(now, D::CHECK, D::NAME, p.pid, outcome);
        }
    }

    fn set_status(&mut self, status: D::Status, health: Health, reason: String) {
        // A recovery the ladder just verified was announced by its "verified" event.
        let announced = std::mem::take(&mut self.core.just_verified);
        if status != self.core.status {
            let was = self.core.status;
            self.core.status = status;
            self.core.since = self.core.clock.now();
            let announced = announced || was == D::Status::RESTARTING;
            let good = !status.is_fault() && status != D::Status::RESTARTING;
            if status.is_fault() || (good && !announced) {
                let level = good.then_some(log::Level::Info);
                let pid = self.daemon.pid();
                self.core.emit(
                    D::CHECK,
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
        self.core.health = health;
        self.core.reason = reason;
    }

    /// Says once why the agent does not act.
    fn hold(&mut self, kind: &'static str, msg: String) {
        if self.core.held != Some(kind) {
            self.core.held = Some(kind);
            self.core
                .emit(D::CHECK, EventKind::Held, msg, Fields::default());
        }
    }

    fn emit_step(&mut self, kind: EventKind, message: String, step: Step) {
        let pid = self.daemon.pid();
        self.core.emit(
            D::CHECK,
            kind,
            message,
            Fields {
                step: Some(step.as_str()),
                pid,
                ..Fields::default()
            },
        );
    }

    /// What the agent will do next, in words, for `doctor`.
    pub fn next_words(&self) -> String {
        if let Some((step, _)) = self.core.ladder.verifying() {
            return format!("verifying the {}", step.as_str());
        }
        if let Some((_, why)) = self.core.ladder.waiting() {
            return format!("waiting ({}) before the next attempt", why.as_str());
        }
        let status = self.core.status;
        if !status.is_fault() && status != D::Status::UNKNOWN {
            return self.daemon.watching_words();
        }
        if !self.core.remediation_enabled() {
            "observing only (remediation disabled)".to_owned()
        } else if self.core.pause.is_some() {
            "nothing until the pause ends".to_owned()
        } else {
            "remediating".to_owned()
        }
    }

    /// Posts the state when something an SRE would see changed (sent at once), or once
    /// every [`PERIODIC`] (refreshed quietly).
    fn publish(&mut self) {
        let state = self.daemon.state(&self.core);
        let changed = self
            .published
            .as_ref()
            .is_none_or(|(old, _)| D::sees_change(old, &state));
        if !changed
            && self
                .published
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < PERIODIC)
        {
            return;
        }
        if let Some(board) = &self.board {
            let posted = state.clone();
            board.post(D::CHECK, self.next_words(), changed, |env| {
                D::post(posted, env)
            });
        }
        self.published = Some((state, Instant::now()));
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

/// `14:02:11.123 UTC`.
pub fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f UTC").to_string()
}
