//! The remediation ladder: restart → verify → stop, kill, start → verify → reinstall →
//! verify → exhausted, then again after a capped exponential backoff, forever.
//!
//! Pure decisions over `tokio::time::Instant`s handed in by the caller: no I/O here, so the
//! whole ladder (budget, backoff, flapping) is tested in paused time.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RemediationConfig;

/// One rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Restart through the service manager.
    Restart,
    /// Stop through the service manager, SIGKILL leftover processes, start.
    HardRestart,
    /// Run the configured reinstall command, then start.
    Reinstall,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Restart => "restart",
            Step::HardRestart => "hard_restart",
            Step::Reinstall => "reinstall",
        }
    }
}

/// What is wrong with the supervised service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not running: a plain restart is the first step.
    Dead,
    /// Running but silent: a plain stop usually hangs on it, so the first step kills it.
    Hung,
    /// Running and logging, but its work does not get through (BigFix check-in): one
    /// restart a round, verified over `checkin_verify_within`, never escalated — a relay
    /// that is down is not mended by a reinstall.
    NotCheckingIn,
}

impl Problem {
    /// The daemon is up through this problem: its rounds are one restart, never escalated,
    /// its own judgement stands while the restart is verified, and a death or hang meanwhile
    /// is a round of its own.
    pub fn daemon_runs(self) -> bool {
        self == Problem::NotCheckingIn
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The ladder ran out; waiting before the next round.
    Backoff,
    /// `max_restarts` per `per` spent; waiting for the oldest to leave the window.
    Budget,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Backoff => "backoff after exhausted remediation",
            WaitReason::Budget => "restart budget spent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Issue this step now; verification runs until `deadline`.
    Act { step: Step, deadline: Instant },
    /// Do nothing until `until`.
    Wait { until: Instant, why: WaitReason },
    /// A step is being verified until `deadline`.
    Verifying { step: Step, deadline: Instant },
}

/// What became of a step that failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Climb to this step next.
    Escalate(Step),
    /// No step left: round `round` failed; the next starts at `retry_at`.
    Exhausted { round: u32, retry_at: Instant },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Verifying { step: Step, deadline: Instant },
    Waiting { until: Instant, why: WaitReason },
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_restarts: u32,
    pub per: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub verify_within: Duration,
    /// How long a restart for [`Problem::NotCheckingIn`] has to show a new check-in.
    pub checkin_verify_within: Duration,
    pub has_reinstall: bool,
}

impl Policy {
    pub fn new(r: &RemediationConfig, verify_within: Duration) -> Policy {
        Policy {
            max_restarts: r.max_restarts,
            per: r.per,
            backoff_base: r.backoff_base,
            backoff_max: r.backoff_max,
            verify_within,
            checkin_verify_within: verify_within,
            has_reinstall: !r.reinstall.is_empty(),
        }
    }
}

/// Recoveries within `per` from which a service counts as flapping.
const FLAPPING_RECOVERIES: usize = 3;

#[derive(Debug)]
pub struct RemediationLadder {
    policy: Policy,
    phase: Phase,
    /// The step the current round continues with.
    next: Option<Step>,
    /// When each step within the budget window was issued.
    attempts: VecDeque<Instant>,
    exhausted_rounds: u32,
    recoveries: VecDeque<Instant>,
    last_step: Option<Step>,
    /// What the current round acts on.
    problem: Option<Problem>,
}

impl RemediationLadder {
    pub fn new(policy: Policy) -> Self {
        RemediationLadder {
            policy,
            phase: Phase::Idle,
            next: None,
            attempts: VecDeque::new(),
            exhausted_rounds: 0,
            recoveries: VecDeque::new(),
            last_step: None,
            problem: None,
        }
    }

    /// What the current (or last) round acts on.
    pub fn problem(&self) -> Option<Problem> {
        self.problem
    }

    fn prune(&mut self, now: Instant) {
        let per = self.policy.per;
        while self
            .attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= per)
        {
            self.attempts.pop_front();
        }
        while self
            .recoveries
            .front()
            .is_some_and(|t| now.duration_since(*t) >= per)
        {
            self.recoveries.pop_front();
        }
    }

    /// What to do about `problem` now.
    pub fn decide(&mut self, now: Instant, problem: Problem) -> Decision {
        self.prune(now);
        // A check-in round never keeps a dead or hung client waiting: that is a round of
        // its own, at once.
        let other = self.problem.is_some_and(Problem::daemon_runs) && !problem.daemon_runs();
        match self.phase {
            Phase::Verifying { step, deadline } if !other => {
                return Decision::Verifying { step, deadline }
            }
            Phase::Waiting { until, why }
                if now < until && (why == WaitReason::Budget || !other) =>
            {
                return Decision::Wait { until, why }
            }
            _ if other => self.abandon(),
            _ => {}
        }
        let step = self.next.unwrap_or(match problem {
            Problem::Dead | Problem::NotCheckingIn => Step::Restart,
            Problem::Hung => Step::HardRestart,
        });
        if self.attempts.len() >= self.policy.max_restarts as usize {
            let until = self.attempts[0] + self.policy.per;
            self.phase = Phase::Waiting {
                until,
                why: WaitReason::Budget,
            };
            return Decision::Wait {
                until,
                why: WaitReason::Budget,
            };
        }
        self.attempts.push_back(now);
        if self.next.is_none() {
            self.problem = Some(problem);
        }
        let deadline = now
            + match self.problem {
                Some(Problem::NotCheckingIn) => self.policy.checkin_verify_within,
                _ => self.policy.verify_within,
            };
        self.phase = Phase::Verifying { step, deadline };
        self.next = Some(step);
        self.last_step = Some(step);
        Decision::Act { step, deadline }
    }

    /// The step under verification, if any.
    pub fn verifying(&self) -> Option<(Step, Instant)> {
        match self.phase {
            Phase::Verifying { step, deadline } => Some((step, deadline)),
            _ => None,
        }
    }

    /// The step in progress or last taken.
    pub fn last_step(&self) -> Option<Step> {
        self.last_step
    }

    /// The step under verification succeeded.
    pub fn verified(&mut self, now: Instant) {
        self.phase = Phase::Idle;
        self.next = None;
        self.exhausted_rounds = 0;
        self.recoveries.push_back(now);
        self.prune(now);
    }

    /// The step under verification failed: escalate, or end the round with a backoff.
    pub fn verify_failed(&mut self, now: Instant) -> Failed {
        let step = match self.phase {
            Phase::Verifying { step, .. } => step,
            _ => self.next.unwrap_or(Step::Restart),
        };
        let next = match step {
            _ if self.problem.is_some_and(Problem::daemon_runs) => None,
            Step::Restart => Some(Step::HardRestart),
            Step::HardRestart if self.policy.has_reinstall => Some(Step::Reinstall),
            Step::HardRestart | Step::Reinstall => None,
        };
        if let Some(next) = next {
            self.phase = Phase::Idle;
            self.next = Some(next);
            return Failed::Escalate(next);
        }
        self.exhausted_rounds = self.exhausted_rounds.saturating_add(1);
        let retry_at = now + self.backoff(self.exhausted_rounds);
        self.phase = Phase::Waiting {
            until: retry_at,
            why: WaitReason::Backoff,
        };
        self.next = None;
        Failed::Exhausted {
            round: self.exhausted_rounds,
            retry_at,
        }
    }

    /// Drops the round under way (its attempts still count against the budget).
    pub fn abandon(&mut self) {
        self.phase = Phase::Idle;
        self.next = None;
    }

    /// The service came back by itself (or by someone else's hand): forget the round.
    pub fn recovered_without_us(&mut self) {
        self.phase = Phase::Idle;
        self.next = None;
        self.exhausted_rounds = 0;
    }

    /// `backoff_base * 2^(round-1)`, capped at `backoff_max`.
    fn backoff(&self, round: u32) -> Duration {
        let factor = 1u32
            .checked_shl(round.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        self.policy
            .backoff_base
            .checked_mul(factor)
            .unwrap_or(self.policy.backoff_max)
            .min(self.policy.backoff_max)
    }

    pub fn exhausted_rounds(&self) -> u32 {
        self.exhausted_rounds
    }

    pub fn waiting(&self) -> Option<(Instant, WaitReason)> {
        match self.phase {
            Phase::Waiting { until, why } => Some((until, why)),
            _ => None,
        }
    }

    pub fn attempts_in_window(&self, now: Instant) -> u32 {
        self.within_window(&self.attempts, now) as u32
    }

    /// Recovered at least three times within `per`.
    pub fn flapping(&self, now: Instant) -> bool {
        self.within_window(&self.recoveries, now) >= FLAPPING_RECOVERIES
    }

    /// How many of `times` are less than `per` old (what `prune` would keep).
    fn within_window(&self, times: &VecDeque<Instant>, now: Instant) -> usize {
        times
            .iter()
            .filter(|t| now.duration_since(**t) < self.policy.per)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(has_reinstall: bool) -> Policy {
        Policy {
            max_restarts: 5,
            per: Duration::from_secs(3600),
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
            verify_within: Duration::from_secs(120),
            checkin_verify_within: Duration::from_secs(120),
            has_reinstall,
        }
    }

    #[test]
    fn not_checking_in_is_one_restart_a_round_never_escalated() {
        let mut p = policy(true);
        p.checkin_verify_within = Duration::from_secs(1800);
        let mut l = RemediationLadder::new(p);
        let t0 = Instant::now();
        match l.decide(t0, Problem::NotCheckingIn) {
            Decision::Act { step, deadline } => {
                assert_eq!(step, Step::Restart);
                assert_eq!(deadline, t0 + Duration::from_secs(1800), "its own window");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.problem(), Some(Problem::NotCheckingIn));
        let t1 = t0 + Duration::from_secs(1800);
        match l.verify_failed(t1) {
            Failed::Exhausted { round, retry_at } => {
                assert_eq!(round, 1);
                assert_eq!(retry_at, t1 + Duration::from_secs(60));
            }
            other => panic!("no hard restart, no reinstall: {other:?}"),
        }
        // Once per backoff period: nothing before it, a restart after.
        assert!(matches!(
            l.decide(t1 + Duration::from_secs(59), Problem::NotCheckingIn),
            Decision::Wait { .. }
        ));
        assert_eq!(
            act(l.decide(t1 + Duration::from_secs(60), Problem::NotCheckingIn)),
            Step::Restart
        );
        // A death while a check-in round waits out its backoff is acted on at once.
        l.verify_failed(t1 + Duration::from_secs(61));
        assert_eq!(
            act(l.decide(t1 + Duration::from_secs(62), Problem::Dead)),
            Step::Restart
        );
        assert_eq!(l.problem(), Some(Problem::Dead));
        // A death meanwhile is a round of its own, with the whole ladder.
        l.verified(t1 + Duration::from_secs(61));
        assert_eq!(
            act(l.decide(t1 + Duration::from_secs(62), Problem::Dead)),
            Step::Restart
        );
        assert!(matches!(
            l.verify_failed(t1 + Duration::from_secs(70)),
            Failed::Escalate(Step::HardRestart)
        ));
    }

    fn act(d: Decision) -> Step {
        match d {
            Decision::Act { step, .. } => step,
            other => panic!("expected an action, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_death_is_restarted_and_verified() {
        let mut l = RemediationLadder::new(policy(false));
        let t = Instant::now();
        assert_eq!(act(l.decide(t, Problem::Dead)), Step::Restart);
        assert!(matches!(
            l.decide(t, Problem::Dead),
            Decision::Verifying {
                step: Step::Restart,
                ..
            }
        ));
        l.verified(t + Duration::from_secs(2));
        assert_eq!(l.exhausted_rounds(), 0);
        assert_eq!(
            act(l.decide(t + Duration::from_secs(60), Problem::Dead)),
            Step::Restart
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_starts_with_the_kill() {
        let mut l = RemediationLadder::new(policy(false));
        assert_eq!(
            act(l.decide(Instant::now(), Problem::Hung)),
            Step::HardRestart
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_ladder_then_backoff_doubles_to_the_cap_and_never_stops() {
        let mut p = policy(true);
        p.max_restarts = 1000;
        let mut l = RemediationLadder::new(p);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for round in 1..=10u32 {
            assert_eq!(act(l.decide(now, Problem::Dead)), Step::Restart);
            assert_eq!(l.verify_failed(now), Failed::Escalate(Step::HardRestart));
            assert_eq!(act(l.decide(now, Problem::Dead)), Step::HardRestart);
            assert_eq!(l.verify_failed(now), Failed::Escalate(Step::Reinstall));
            assert_eq!(act(l.decide(now, Problem::Dead)), Step::Reinstall);
            let Failed::Exhausted { round: r, retry_at } = l.verify_failed(now) else {
                panic!("the ladder should be exhausted after reinstall");
            };
            assert_eq!(r, round);
            assert_eq!(
                l.decide(now, Problem::Dead),
                Decision::Wait {
                    until: retry_at,
                    why: WaitReason::Backoff
                }
            );
            waits.push((retry_at - now).as_secs());
            now = retry_at;
        }
        assert_eq!(
            waits,
            [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_reinstall_the_ladder_ends_after_the_hard_restart() {
        let mut l = RemediationLadder::new(policy(false));
        let now = Instant::now();
        act(l.decide(now, Problem::Dead));
        l.verify_failed(now);
        assert_eq!(act(l.decide(now, Problem::Dead)), Step::HardRestart);
        assert!(matches!(
            l.verify_failed(now),
            Failed::Exhausted { round: 1, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_holds_back_then_resumes_when_the_window_moves() {
        let mut p = policy(false);
        p.max_restarts = 3;
        let mut l = RemediationLadder::new(p);
        let start = Instant::now();
        for i in 0..3 {
            let now = start + Duration::from_secs(i * 10);
            act(l.decide(now, Problem::Dead));
            l.verified(now + Duration::from_secs(1));
        }
        let now = start + Duration::from_secs(40);
        assert_eq!(
            l.decide(now, Problem::Dead),
            Decision::Wait {
                until: start + Duration::from_secs(3600),
                why: WaitReason::Budget
            }
        );
        assert!(
            l.flapping(now),
            "three recoveries within the hour is flapping"
        );
        let later = start + Duration::from_secs(3600);
        assert_eq!(act(l.decide(later, Problem::Dead)), Step::Restart);
        assert_eq!(
            l.attempts_in_window(later),
            3,
            "two of the old ones and the new one"
        );
        assert!(!l.flapping(later + Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovery_resets_the_backoff() {
        let mut l = RemediationLadder::new(policy(false));
        let now = Instant::now();
        act(l.decide(now, Problem::Dead));
        l.verify_failed(now);
        act(l.decide(now, Problem::Dead));
        assert!(matches!(
            l.verify_failed(now),
            Failed::Exhausted { round: 1, .. }
        ));
        l.recovered_without_us();
        assert_eq!(l.exhausted_rounds(), 0);
        assert_eq!(act(l.decide(now, Problem::Dead)), Step::Restart);
    }

    #[test]
    fn backoff_never_overflows() {
        let mut p = policy(false);
        p.backoff_max = Duration::from_secs(u64::MAX / 4);
        let l = RemediationLadder::new(p);
        assert_eq!(l.backoff(u32::MAX), Duration::from_secs(60 << 31));
        assert_eq!(l.backoff(1), Duration::from_secs(60));
    }
}
