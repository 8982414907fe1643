//! Several collectors on one PostgreSQL: each follows the others' writes through the change
//! feed (`store::feed`), and one of them, the leader, does what must happen once: history
//! notes from sweeps, incidents and their notifications, retention.
//!
//! The leader holds `pg_try_advisory_lock` on a session of its own, which pings the server
//! every second; the server ends that session after [`IDLE_LIMIT`] without a word
//! (`idle_session_timeout`), so a leader that stopped (SIGSTOP, a hung machine) loses the
//! lock as a dead one does. Each new leader raises the epoch in `leadership`, and what
//! only the leader writes checks the epoch in its own transaction: a deposed leader that
//! wakes up late writes and sends nothing.
//!
//! On SQLite there is one collector: it leads, at epoch 0, and is always caught up.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use postgres::fallible_iterator::FallibleIterator;

use crate::store::feed::{self, Entry, Position};
use crate::store::postgres::Target;

/// The key of the leader's advisory lock.
const LEADER_LOCK: i64 = 0x726f_6c6c_6c65_6164; // "rollllead"
/// How often the leader's session speaks, and candidates try for the lock.
const TICK: Duration = Duration::from_secs(1);
/// The server ends a leader's session silent this long.
const IDLE_LIMIT: &str = "5s";
/// A follower whose last complete read is older than this is not caught up.
const CAUGHT_UP_WITHIN: Duration = Duration::from_secs(5);
/// Rows a follower reads at once.
const READ_LIMIT: i64 = 2000;
/// Buckets of the delay between a change's commit and its application elsewhere.
pub const DELAY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// This collector's part among its replicas.
pub struct Replica {
    /// Names this collector in the feed: host name, process id and a random part.
    pub id: String,
    /// Whether there are others (PostgreSQL) or not (SQLite).
    pub shared: bool,
    leader: AtomicBool,
    epoch: AtomicI64,
    /// When the follower last read everything there was; `None` before its first read.
    caught_up_at: Mutex<Option<Instant>>,
    position: Mutex<Position>,
    /// Applied changes by delay bucket (the last counts the rest), their sum in µs.
    delays: [AtomicU64; DELAY_BUCKETS.len() + 1],
    delay_micros: AtomicU64,
    applied: AtomicU64,
}

impl Replica {
    /// The only collector (SQLite): the leader, at epoch 0.
    pub fn alone() -> Arc<Replica> {
        let r = Replica::new(false);
        r.leader.store(true, Ordering::Relaxed);
        Arc::new(r)
    }

    /// One of several (PostgreSQL): a follower until it wins the lock.
    pub fn shared() -> Arc<Replica> {
        Arc::new(Replica::new(true))
    }

    fn new(shared: bool) -> Replica {
        let host = crate::host_name().unwrap_or_else(|| "localhost".into());
        let mut nonce = [0u8; 4];
        let _ = getrandom::fill(&mut nonce);
        Replica {
            id: format!("{host}/{}/{}", std::process::id(), crate::auth::hex(&nonce)),
            shared,
            leader: AtomicBool::new(false),
            epoch: AtomicI64::new(0),
            caught_up_at: Mutex::new(None),
            position: Mutex::new(Position::default()),
            delays: Default::default(),
            delay_micros: AtomicU64::new(0),
            applied: AtomicU64::new(0),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// The epoch this collector leads (or last led) in.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// `None` when caught up with the others' writes, or how long since it last was.
    pub fn behind(&self) -> Option<Duration> {
        if !self.shared {
            return None;
        }
        match *crate::lock(&self.caught_up_at) {
            Some(t) if t.elapsed() < CAUGHT_UP_WITHIN => None,
            Some(t) => Some(t.elapsed()),
            None => Some(Duration::MAX),
        }
    }

    pub fn position(&self) -> Position {
        *crate::lock(&self.position)
    }

    fn record_delay(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = DELAY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(DELAY_BUCKETS.len());
        self.delays[i].fetch_add(1, Ordering::Relaxed);
        self.delay_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus lines: whether it leads, the epoch, how far behind, the delays.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "# HELP rollcall_replica_leader 1 if this collector is the leader (does what must happen once).\n# TYPE rollcall_replica_leader gauge\nrollcall_replica_leader {}", u8::from(self.is_leader()));
        let _ = writeln!(o, "# HELP rollcall_replica_epoch The epoch this collector leads or last led in.\n# TYPE rollcall_replica_epoch gauge\nrollcall_replica_epoch {}", self.epoch());
        let behind = match self.behind() {
            None => 0.0,
            Some(d) if d == Duration::MAX => -1.0,
            Some(d) => d.as_secs_f64(),
        };
        let _ = writeln!(o, "# HELP rollcall_replica_behind_seconds 0 when caught up with the other collectors' writes; else since when it was (-1: never yet).\n# TYPE rollcall_replica_behind_seconds gauge\nrollcall_replica_behind_seconds {behind:.3}");
        let _ = writeln!(o, "# HELP rollcall_replica_apply_delay_seconds From another collector's commit to its application here.\n# TYPE rollcall_replica_apply_delay_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in DELAY_BUCKETS.iter().enumerate() {
            cumulative += self.delays[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "rollcall_replica_apply_delay_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let n = self.applied.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "rollcall_replica_apply_delay_seconds_bucket{{le=\"+Inf\"}} {n}\nrollcall_replica_apply_delay_seconds_sum {:.6}\nrollcall_replica_apply_delay_seconds_count {n}",
            self.delay_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        o
    }
}

/// Runs forever on its own thread: tries for the leader's lock, and keeps its session
/// speaking while it holds it.
pub fn run_election(replica: Arc<Replica>, target: Target, on_change: impl Fn(bool, i64)) {
    loop {
        let mut c = match target.connect() {
            Ok(c) => c,
            Err(e) => {
                lose(&replica, &on_change, &format!("{e}"));
                std::thread::sleep(TICK);
                continue;
            }
        };
        if let Err(e) = c.batch_execute(&format!("SET idle_session_timeout = '{IDLE_LIMIT}'")) {
            log::warn!("leader election: {e}");
        }
        loop {
            let step = if replica.is_leader() {
                c.batch_execute("SELECT 1").map(|_| ())
            } else {
                try_lead(&mut c, &replica).map(|won| {
                    if won {
                        log::info!(
                            "leading the collectors (epoch {}): sweeps' notes, incidents, notifications and retention run here",
                            replica.epoch()
                        );
                        on_change(true, replica.epoch());
                    }
                })
            };
            if let Err(e) = step {
                lose(&replica, &on_change, &e.to_string());
                break;
            }
            std::thread::sleep(TICK);
        }
        std::thread::sleep(TICK);
    }
}

fn lose(replica: &Replica, on_change: &impl Fn(bool, i64), why: &str) {
    if replica.leader.swap(false, Ordering::Relaxed) {
        log::warn!(
            "no longer leading (epoch {}): {why}; another collector takes over",
            replica.epoch()
        );
        on_change(false, replica.epoch());
    }
}

fn try_lead(c: &mut postgres::Client, replica: &Replica) -> Result<bool, postgres::Error> {
    let won: bool = c
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?
        .get(0);
    if !won {
        return Ok(false);
    }
    let epoch: i64 = c
        .query_one(
            "UPDATE leadership SET epoch = epoch + 1, holder = $1, since = now() WHERE id = 1 RETURNING epoch",
            &[&replica.id],
        )?
        .get(0);
    replica.epoch.store(epoch, Ordering::Relaxed);
    replica.leader.store(true, Ordering::Relaxed);
    Ok(true)
}

/// Where to start following: call before loading the hosts.
pub fn start_position(replica: &Replica, target: &Target) -> Result<(), postgres::Error> {
    let mut c = target.connect()?;
    *crate::lock(&replica.position) = feed::start(&mut c)?;
    Ok(())
}

/// Changes after this collector's position were pruned before it read them: loads every
/// host and credential again (`reload`) and follows on from now.
fn catch_up(
    c: &mut postgres::Client,
    replica: &Replica,
    reload: &mut impl FnMut() -> Result<usize, String>,
) -> Result<(), String> {
    let restart = feed::start(c).map_err(|e| e.to_string())?;
    let n = reload().map_err(|e| format!("loading every host again: {e}"))?;
    log::warn!("this collector was away longer than the change feed keeps changes: loaded all {n} hosts again");
    *crate::lock(&replica.position) = restart;
    Ok(())
}

/// Runs forever on its own thread: reads what the other collectors wrote, in commit
/// order, and hands each of their rows to `apply`. Had rows it never read been pruned
/// meanwhile (this collector was stopped longer than the feed keeps them), `reload` loads
/// every host and credential again instead.
pub fn run_follower(
    replica: Arc<Replica>,
    target: Target,
    mut apply: impl FnMut(&Entry),
    mut reload: impl FnMut() -> Result<usize, String>,
) {
    loop {
        let mut c = match target.connect() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("following the other collectors: {e}; trying again");
                std::thread::sleep(TICK);
                continue;
            }
        };
        if let Err(e) = c.batch_execute("LISTEN rollcall_changes") {
            log::warn!("following the other collectors: {e}");
        }
        loop {
            let from = replica.position();
            let entries = match feed::read(&mut c, from, READ_LIMIT) {
                Ok(feed::Read::Entries(e)) => e,
                Ok(feed::Read::Pruned) => match catch_up(&mut c, &replica, &mut reload) {
                    Ok(()) => continue,
                    Err(e) => {
                        log::warn!("following the other collectors: {e}; trying again");
                        break;
                    }
                },
                Err(e) => {
                    log::warn!("following the other collectors: {e}; trying again");
                    break;
                }
            };
            let now = Utc::now();
            for e in &entries {
                if e.origin != replica.id {
                    apply(e);
                    replica.record_delay((now - e.at).to_std().unwrap_or_default());
                }
                *crate::lock(&replica.position) = e.position;
            }
            if (entries.len() as i64) < READ_LIMIT {
                *crate::lock(&replica.caught_up_at) = Some(Instant::now());
                // Woken by a commit, or looking again after a while: a transaction that
                // was still open holds back the rows behind it until it ends.
                let _ = c
                    .notifications()
                    .timeout_iter(Duration::from_millis(250))
                    .next();
                while let Ok(Some(_)) = c.notifications().iter().next() {}
            }
        }
        std::thread::sleep(TICK);
    }
}
