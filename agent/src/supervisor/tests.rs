//! The shared loop, over tokio's paused clock and a [`ManualClock`], with a scripted daemon
//! and a scripted service manager: ladder order, verification, budget, backoff, pause and
//! observe-only, each as the events an SRE would read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rollcall_proto::{DaemonStatus, Event, EventKind, Health};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::clock::ManualClock;
use crate::manager::scripted::{Scripted, World};

/// A daemon that is up when the scripted manager says so, and (optionally) writes its
/// proof only `proof_after` a start.
struct Fake {
    world: Arc<Mutex<World>>,
    /// Signalled by the test when it changed the world.
    poke: Arc<Notify>,
    proof_after: Duration,
    up_since: Option<Instant>,
}

impl Fake {
    fn up(&self) -> bool {
        self.world.lock().unwrap().up
    }
}

impl Daemon for Fake {
    const CHECK: &'static str = "fake";
    const NAME: &'static str = "fake";
    const DEAD: &'static str = "not running";
    const PROOF: &'static str = "fake to prove itself";
    const UNOBSERVED: &'static str = "not yet observed";
    type Status = DaemonStatus;
    type State = (DaemonStatus, Health, String);
    type Signal = ();

    async fn start(&mut self, _: &mut Core<DaemonStatus>) {}

    async fn signal(&mut self) {
        self.poke.notified().await
    }

    fn on_signal(&mut self, _: (), _: &mut Core<DaemonStatus>) -> bool {
        true
    }

    async fn look(&mut self, _: &mut Core<DaemonStatus>) {}

    fn find_process(&mut self, _: &Core<DaemonStatus>) {
        match (self.up(), self.up_since) {
            (true, None) => self.up_since = Some(Instant::now()),
            (false, _) => self.up_since = None,
            _ => {}
        }
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    async fn classify(&mut self, _: &mut Core<DaemonStatus>) -> Option<Verdict<DaemonStatus>> {
        Some(if self.up() {
            Verdict {
                status: DaemonStatus::Running,
                health: Health::Ok,
                reason: "fake is up".to_owned(),
                problem: None,
            }
        } else {
            Verdict {
                status: DaemonStatus::Dead,
                health: Health::Critical,
                reason: "fake is not running".to_owned(),
                problem: Some(Problem::Dead),
            }
        })
    }

    fn verify(&self, _: &Core<DaemonStatus>, _: Step, _: DateTime<Utc>) -> Result<String, String> {
        match self.up_since {
            Some(t) if t.elapsed() >= self.proof_after => Ok("fake verified".to_owned()),
            Some(_) => Err("fake is up but has not proved itself".to_owned()),
            None => Err("fake is not running".to_owned()),
        }
    }

    fn leftovers(&self) -> Vec<Proc> {
        Vec::new()
    }

    fn next_look(&self, _: &Core<DaemonStatus>) -> Instant {
        Instant::now() + PERIODIC
    }

    fn verify_every(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn watching_words(&self) -> String {
        "watching".to_owned()
    }

    fn state(&self, core: &Core<DaemonStatus>) -> Self::State {
        (core.status, core.health, core.reason.clone())
    }

    fn sees_change(old: &Self::State, new: &Self::State) -> bool {
        old != new
    }

    fn post(_: Self::State, _: &mut Envelope) {}
}

struct Harness {
    world: Arc<Mutex<World>>,
    poke: Arc<Notify>,
    events: EventLog,
    state_dir: tempfile::TempDir,
    clock: ManualClock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Setup {
    enabled: bool,
    max_restarts: u32,
    reinstall: Vec<String>,
    starts: bool,
    proof_after: Duration,
    paused: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            enabled: true,
            max_restarts: 10,
            reinstall: Vec::new(),
            starts: true,
            proof_after: Duration::ZERO,
            paused: false,
        }
    }
}

const VERIFY_WITHIN: Duration = Duration::from_secs(5);
const BACKOFF: Duration = Duration::from_secs(60);
const PER: Duration = Duration::from_secs(3600);

/// A dead daemon under supervision, as `setup` says.
fn supervise(setup: Setup) -> Harness {
    let world = Arc::new(Mutex::new(World {
        up: false,
        starts: setup.starts,
        calls: Vec::new(),
    }));
    let poke = Arc::new(Notify::new());
    let state_dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap());
    if setup.paused {
        let until = clock.now() + chrono::Duration::hours(2);
        let reason = "relay maintenance".to_owned();
        pause::set(state_dir.path(), &Pause { until, reason }).unwrap();
    }
    let plan = Plan {
        remediation: RemediationConfig {
            enabled: setup.enabled,
            max_restarts: setup.max_restarts,
            per: PER,
            backoff_base: BACKOFF,
            backoff_max: BACKOFF * 2,
            reinstall: setup.reinstall.clone(),
        },
        verify_within: VERIFY_WITHIN,
        checkin_verify_within: VERIFY_WITHIN,
        command_timeout: Duration::from_secs(5),
        state_dir: state_dir.path().to_owned(),
        unit_every: None,
    };
    let fake = Fake {
        world: world.clone(),
        poke: poke.clone(),
        proof_after: setup.proof_after,
        up_since: None,
    };
    let events = EventLog::new();
    let board = Board::new(
        state_dir.path().to_owned(),
        events.clone(),
        Arc::new(clock.clone()),
        None,
    );
    let manager = ServiceManager::Scripted(Scripted(world.clone()));
    let sup = Supervisor::new(fake, manager, plan, Arc::new(clock.clone()))
        .with_outlet(board, events.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sup.run(async {
        let _ = stopped.await;
    }));
    Harness {
        world,
        poke,
        events,
        state_dir,
        clock,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Harness {
    /// Lets the loop run for `d` of paused time.
    async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    fn calls(&self) -> Vec<&'static str> {
        self.world.lock().unwrap().calls.clone()
    }

    /// Events oldest first, as (kind, step, message).
    fn events(&self) -> Vec<(EventKind, Option<String>, String)> {
        let mut all: Vec<Event> = self.events.recent(usize::MAX);
        all.reverse();
        all.into_iter()
            .map(|e| (e.kind, e.step, e.message))
            .collect()
    }

    fn kinds(&self) -> Vec<(EventKind, Option<String>)> {
        self.events().into_iter().map(|(k, s, _)| (k, s)).collect()
    }

    fn set(&self, f: impl FnOnce(&mut World)) {
        f(&mut self.world.lock().unwrap());
        self.poke.notify_one();
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

fn step(kind: EventKind, step: &str) -> (EventKind, Option<String>) {
    (kind, Some(step.to_owned()))
}

#[tokio::test(start_paused = true)]
async fn a_dead_daemon_is_restarted_and_the_restart_verified() {
    let h = supervise(Setup::default());
    h.wait(Duration::from_secs(1)).await;
    assert_eq!(h.calls(), ["restart"]);
    assert_eq!(
        h.kinds(),
        [
            (EventKind::Observed, None),
            step(EventKind::Action, "restart"),
            step(EventKind::Verified, "restart"),
        ]
    );
    let events = h.events();
    assert_eq!(
        events[1].2,
        "fake restart issued via scripted (not running)"
    );
    assert_eq!(events[2].2, "fake verified");
    // Healthy now: nothing more is done, however long it stays so.
    h.wait(Duration::from_secs(3600)).await;
    assert_eq!(h.calls(), ["restart"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_proof_within_verify_within_does_not_escalate() {
    let h = supervise(Setup {
        proof_after: VERIFY_WITHIN - Duration::from_secs(1),
        ..Setup::default()
    });
    h.wait(VERIFY_WITHIN * 3).await;
    assert_eq!(h.calls(), ["restart"]);
    assert_eq!(
        h.kinds().last(),
        Some(&step(EventKind::Verified, "restart"))
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_step_without_its_proof_fails_when_verify_within_runs_out() {
    let h = supervise(Setup {
        proof_after: Duration::from_secs(86_400),
        ..Setup::default()
    });
    h.wait(VERIFY_WITHIN - Duration::from_millis(500)).await;
    assert_eq!(h.kinds().last(), Some(&step(EventKind::Action, "restart")));
    h.wait(Duration::from_secs(1)).await;
    let events = h.events();
    let (kind, _, msg) = events.last().unwrap();
    assert_eq!(*kind, EventKind::VerifyFailed, "{events:?}");
    assert_eq!(
        msg,
        "fake restart did not bring it back: fake is up but has not proved itself; escalating to hard_restart"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_cannot_start_climbs_the_ladder_in_order_then_backs_off_and_starts_over() {
    let h = supervise(Setup {
        starts: false,
        // A reinstall that cannot even be run fails at once too.
        reinstall: vec!["/nonexistent/rebootstrap".to_owned()],
        ..Setup::default()
    });
    h.wait(Duration::from_secs(1)).await;
    assert_eq!(h.calls(), ["restart", "stop", "start"]);
    assert_eq!(
        h.kinds()[1..],
        [
            step(EventKind::Action, "restart"),
            step(EventKind::VerifyFailed, "restart"),
            step(EventKind::Action, "hard_restart"),
            step(EventKind::VerifyFailed, "hard_restart"),
            step(EventKind::Action, "reinstall"),
            step(EventKind::VerifyFailed, "reinstall"),
            step(EventKind::Exhausted, "reinstall"),
            (EventKind::Held, None),
        ]
    );
    let events = h.events();
    assert!(
        events[2].2.contains("failed to start")
            && events[2].2.ends_with("escalating to hard_restart"),
        "the manager's words are kept: {events:?}"
    );
    assert!(
        events[5]
            .2
            .starts_with("fake reinstall issued: /nonexistent/rebootstrap"),
        "{events:?}"
    );
    assert!(events[6].2.contains("reinstall failed"), "{events:?}");
    assert!(
        events[7]
            .2
            .starts_with("fake remediation exhausted (round 1)"),
        "{events:?}"
    );
    assert!(events[8].2.contains("backoff"), "{events:?}");

    // Never gives up: once the backoff has passed, round 2 starts from the first step.
    let calls = h.calls().len();
    h.wait(BACKOFF - Duration::from_secs(2)).await;
    assert_eq!(h.calls().len(), calls, "nothing during the backoff");
    h.wait(Duration::from_secs(3)).await;
    assert_eq!(h.calls()[calls..], ["restart", "stop", "start"]);
    assert!(h.events().iter().any(|(k, _, m)| *k == EventKind::Exhausted
        && m.starts_with("fake remediation exhausted (round 2)")));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_holds_until_the_oldest_attempt_leaves_the_window() {
    let h = supervise(Setup {
        starts: false,
        max_restarts: 2,
        ..Setup::default()
    });
    // Both permitted attempts fail at once (the start command fails), the round is
    // exhausted, and after the backoff the budget holds the next round back.
    h.wait(BACKOFF + Duration::from_secs(1)).await;
    assert_eq!(h.calls(), ["restart", "stop", "start"]);
    let events = h.events();
    let (kind, _, msg) = events.last().unwrap();
    assert_eq!(*kind, EventKind::Held);
    assert!(msg.contains("restart budget spent"), "{msg}");
    assert!(events[2].2.contains("failed to start"), "{events:?}");

    // The window passes: the client can start now, and the next attempt heals it.
    h.set(|w| w.starts = true);
    h.wait(PER).await;
    assert_eq!(h.calls()[3..], ["restart"]);
    assert_eq!(
        h.kinds().last(),
        Some(&step(EventKind::Verified, "restart"))
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_or_observe_only_agent_says_so_once_and_does_nothing() {
    for (setup, words) in [
        (
            Setup {
                paused: true,
                ..Setup::default()
            },
            "remediation paused until",
        ),
        (
            Setup {
                enabled: false,
                ..Setup::default()
            },
            "observe only (remediation.enabled = false): not acting on fake",
        ),
    ] {
        let h = supervise(setup);
        for _ in 0..3 {
            h.set(|_| {});
            h.wait(PERIODIC).await;
        }
        assert!(h.calls().is_empty(), "{:?}", h.calls());
        let held: Vec<_> = h
            .events()
            .into_iter()
            .filter(|(k, _, _)| *k == EventKind::Held)
            .collect();
        assert_eq!(held.len(), 1, "said once: {held:?}");
        assert!(held[0].2.contains(words), "{held:?}");
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_pause_lifted_lets_the_ladder_act() {
    let h = supervise(Setup {
        paused: true,
        ..Setup::default()
    });
    h.wait(Duration::from_secs(1)).await;
    assert!(h.calls().is_empty());
    pause::clear(h.state_dir.path()).unwrap();
    h.wait(PERIODIC).await;
    assert_eq!(h.calls(), ["restart"]);
    // The pause's end is also met on the wall clock alone.
    let h2 = supervise(Setup {
        paused: true,
        ..Setup::default()
    });
    h2.wait(Duration::from_secs(1)).await;
    h2.clock.advance(Duration::from_secs(2 * 3600 + 1));
    h2.wait(PERIODIC).await;
    assert_eq!(h2.calls(), ["restart"]);
    h.stop().await;
    h2.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_daemon_back_by_itself_ends_the_round() {
    let h = supervise(Setup {
        starts: false,
        ..Setup::default()
    });
    h.wait(Duration::from_secs(1)).await;
    assert_eq!(
        h.kinds().last().unwrap().0,
        EventKind::Held,
        "{:?}",
        h.events()
    );
    // Someone else starts it during the backoff.
    h.set(|w| w.up = true);
    h.wait(Duration::from_secs(1)).await;
    let (kind, _, msg) = h.events().last().unwrap().clone();
    assert_eq!((kind, msg.as_str()), (EventKind::Observed, "fake is up"));
    // Dies again: a new round starts at once (no backoff left over from the old one).
    let calls = h.calls().len();
    h.set(|w| {
        w.up = false;
        w.starts = true;
    });
    h.wait(Duration::from_secs(1)).await;
    assert_eq!(h.calls()[calls..], ["restart"]);
    h.stop().await;
}
