//! Telling people: the incident pass (the engine over the registry, every change made
//! durable with its notifications before any is sent) and one delivery task per receiver
//! that sends its outbox in order, with retries, backoff and the receiver's own limits.
//!
//! The invariant: an incident that was notified gets its resolve. The receivers told are
//! stored in the incident, the resolve is queued in the same transaction that resolves it,
//! and the outbox survives restarts; inhibition and maintenance only ever decide whether
//! a trigger is sent, never whether a resolve is.

pub mod config;
pub mod send;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::incidents::{Action, Engine, Incident, Kind};
use crate::lock;
use crate::registry::Registry;
use crate::store::{Delivery, IncidentStore, StoreError};
pub use config::{NotifyConfig, Receiver, ReceiverKind};
use wire::Outcome;

/// How often the incident pass looks when nothing changed (flapping windows age,
/// scanners' verdicts expire).
const IDLE_PASS: Duration = Duration::from_secs(5);
/// How often it checks whether something changed.
const TICK: Duration = Duration::from_millis(200);
/// Retries back off from 1 s to this.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A receiver's `Retry-After` is honoured up to this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// GitHub allows this many content-creating requests an hour.
const GITHUB_PER_HOUR: usize = 500;
/// Alertmanager is re-sent what still fires this often.
const ALERTMANAGER_REFRESH: Duration = Duration::from_secs(60);

/// A receiver as `rollcall notify list` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiverStatus {
    pub name: String,
    pub kind: &'static str,
    /// `ok`, `retrying`, or `failed` (gone for good until fixed; its notifications wait).
    pub state: &'static str,
    pub pending: u64,
    pub oldest_pending: Option<DateTime<Utc>>,
    pub sent: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
}

pub struct Notifier {
    pub config: NotifyConfig,
    store: Arc<Mutex<Box<dyn IncidentStore>>>,
    clients: Vec<reqwest::Client>,
    wakes: Vec<Arc<Notify>>,
    status: Mutex<Vec<ReceiverStatus>>,
    external: String,
    open_by_kind: Mutex<BTreeMap<Kind, usize>>,
    passes: AtomicU64,
    /// Incidents are judged and told by the leader only.
    replica: Arc<crate::replica::Replica>,
}

/// At most `max` requests within any `window`.
struct Budget {
    max: usize,
    window: Duration,
    used: std::collections::VecDeque<tokio::time::Instant>,
}

impl Budget {
    fn new(max: usize, window: Duration) -> Budget {
        Budget {
            max,
            window,
            used: Default::default(),
        }
    }

    /// Takes `need` requests at `now`, or says until when to wait.
    fn take(&mut self, need: usize, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        while self
            .used
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.used.pop_front();
        }
        if self.used.len() + need > self.max {
            return self.used.front().map(|t| *t + self.window);
        }
        self.used.extend(std::iter::repeat_n(now, need));
        None
    }
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(BACKOFF_MAX)
}

impl Notifier {
    /// Builds the receivers' clients; `external` is the collector's address for links.
    pub fn new(
        config: NotifyConfig,
        store: Box<dyn IncidentStore>,
        external: String,
        replica: Arc<crate::replica::Replica>,
    ) -> Result<Notifier, String> {
        let clients = config
            .receivers
            .iter()
            .map(send::client)
            .collect::<Result<Vec<_>, _>>()?;
        let status = config
            .receivers
            .iter()
            .map(|r| ReceiverStatus {
                name: r.name.clone(),
                kind: r.kind.as_str(),
                state: "ok",
                ..Default::default()
            })
            .collect();
        Ok(Notifier {
            external: config.external_url.clone().unwrap_or(external),
            wakes: config
                .receivers
                .iter()
                .map(|_| Arc::new(Notify::new()))
                .collect(),
            config,
            store: Arc::new(Mutex::new(store)),
            clients,
            status: Mutex::new(status),
            open_by_kind: Mutex::new(BTreeMap::new()),
            passes: AtomicU64::new(0),
            replica,
        })
    }

    /// Runs `f` on the notifier's store connection, off the async threads.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn IncidentStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&mut **lock(&store)))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Incidents, newest first (`open`: only open or only resolved ones).
    pub async fn incidents(
        &self,
        open: Option<bool>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.with_store(move |s| s.incidents(open, limit)).await
    }

    /// Deletes resolved incidents and finished notifications written before `before`.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.with_store(move |s| s.prune_incidents(before)).await
    }

    /// One incident and its notifications.
    pub async fn incident(
        &self,
        id: i64,
    ) -> Result<Option<(Incident, Vec<crate::store::OutboxRow>)>, StoreError> {
        self.with_store(move |s| s.incident(id)).await
    }

    /// The receivers an incident goes to.
    pub fn route(&self, i: &Incident) -> Vec<String> {
        self.config
            .receivers
            .iter()
            .filter(|r| r.route.takes(i))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Loads the incidents left open by the last run.
    pub fn engine(&self) -> Result<Engine, StoreError> {
        let (open, next) = lock(&self.store).load_open_incidents()?;
        self.count_open(open.iter());
        Ok(Engine::new(self.config.rules.clone(), open, next))
    }

    fn count_open<'a>(&self, open: impl Iterator<Item = &'a Incident>) {
        let mut by: BTreeMap<Kind, usize> = BTreeMap::new();
        for i in open {
            *by.entry(i.kind).or_default() += 1;
        }
        *lock(&self.open_by_kind) = by;
    }

    /// Open incidents, by kind (for `/metrics`).
    pub fn open_by_kind(&self) -> BTreeMap<Kind, usize> {
        lock(&self.open_by_kind).clone()
    }

    pub fn statuses(&self) -> Vec<ReceiverStatus> {
        lock(&self.status).clone()
    }

    /// Passes of the incident engine so far.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.config.receivers.iter().position(|r| r.name == name)
    }

    /// The incident pass, forever: after the collector has settled (every host had its
    /// chance to be heard), whenever the registry changed, and every few seconds anyway.
    pub async fn run_incidents(
        self: Arc<Self>,
        mut engine: Engine,
        registry: Arc<Mutex<Registry>>,
        inventory: Arc<crate::inventory::Watch>,
        clock: Arc<dyn Clock>,
    ) {
        let settled = lock(&registry).settled_at();
        let (mut seen, mut last_pass) = (u64::MAX, tokio::time::Instant::now());
        let rules = self.config.rules.clone();
        // The epoch the engine's open incidents were read in: a collector that comes to
        // lead reads them again (the last leader's), and one that stops leading stops.
        let mut engine_epoch = self.replica.is_leader().then(|| self.replica.epoch());
        loop {
            tokio::time::sleep(TICK).await;
            let now = clock.now();
            if now < settled {
                continue;
            }
            if !self.replica.is_leader() {
                engine_epoch = None;
                continue;
            }
            if engine_epoch != Some(self.replica.epoch()) {
                let epoch = self.replica.epoch();
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.engine()).await {
                    Ok(Ok(e)) => {
                        engine = e;
                        engine_epoch = Some(epoch);
                        seen = u64::MAX;
                        log::info!(
                            "incidents: {} open, judged here from now on (epoch {epoch})",
                            engine.open().count()
                        );
                    }
                    Ok(Err(e)) => {
                        log::error!("incidents: cannot read the open ones: {e}");
                        continue;
                    }
                    Err(_) => continue,
                }
            }
            let step = {
                let r = lock(&registry);
                let generation = r.generation();
                if generation == seen && last_pass.elapsed() < IDLE_PASS {
                    continue;
                }
                seen = generation;
                last_pass = tokio::time::Instant::now();
                let mut obs = r.observe(now, rules.flap_changes, rules.flap_window);
                obs.drift = inventory.drift();
                engine.reconcile(&obs, now, &|h| r.status_words(h, now), &|i| self.route(i))
            };
            self.passes.fetch_add(1, Ordering::Relaxed);
            if step.is_empty() {
                continue;
            }
            for i in &step.changed {
                match (i.is_open(), i.notified_at == Some(i.updated_at)) {
                    (true, true) => log::warn!("incident {} opened: {}", i.key, i.summary),
                    (true, false) => {
                        log::info!("incident {} opened or changed: {}", i.key, i.summary)
                    }
                    (false, _) => log::info!(
                        "incident {} resolved: {}",
                        i.key,
                        i.resolution.as_deref().unwrap_or("")
                    ),
                }
            }
            // Durable before anything is sent; a store that refuses is retried, never
            // skipped (the engine has moved on, so these notifications exist only here).
            let mut delay = Duration::from_millis(100);
            loop {
                let (changed, outbox) = (step.changed.clone(), step.outbox.clone());
                match self
                    .with_store(move |s| s.record(&changed, &outbox, now))
                    .await
                {
                    Ok(()) => break,
                    // Deposed meanwhile: the new leader judges for itself, from what is
                    // stored.
                    Err(e @ StoreError::NotLeader { .. }) => {
                        log::warn!("incidents: {e}");
                        engine_epoch = None;
                        break;
                    }
                    Err(e) => {
                        log::error!("cannot record incidents, retrying in {delay:?}: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
            self.count_open(engine.open());
            for (_, receiver, _, _) in &step.outbox {
                if let Some(i) = self.index(receiver) {
                    self.wakes[i].notify_one();
                }
            }
        }
    }

    /// One receiver's delivery task, forever: its outbox in order, one at a time.
    pub async fn run_receiver(self: Arc<Self>, idx: usize, clock: Arc<dyn Clock>) {
        let r = &self.config.receivers[idx];
        let http = &self.clients[idx];
        let wake = self.wakes[idx].clone();
        let mut last_sent: Option<tokio::time::Instant> = None;
        let mut refreshed = tokio::time::Instant::now();
        let mut created = Budget::new(GITHUB_PER_HOUR, Duration::from_secs(3600));
        loop {
            if !self.replica.is_leader() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if lock(&self.status)[idx].state == "failed" {
                let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
                continue;
            }
            let name = r.name.clone();
            let rows = match self.with_store(move |s| s.pending(&name, 100)).await {
                Ok(rows) => rows,
                Err(e) => {
                    log::error!("receiver {}: cannot read its outbox: {e}", r.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let name = r.name.clone();
            if let Ok((n, oldest)) = self.with_store(move |s| s.pending_count(&name)).await {
                let mut st = lock(&self.status);
                st[idx].pending = n;
                st[idx].oldest_pending = oldest;
            }
            if r.kind == ReceiverKind::Alertmanager && refreshed.elapsed() >= ALERTMANAGER_REFRESH {
                refreshed = tokio::time::Instant::now();
                self.refresh_alertmanager(idx, clock.now()).await;
            }
            if rows.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
                continue;
            }
            // The batch in order; the first one not taken ends it (order is kept: nothing
            // behind it goes first).
            for row in rows {
                let now = clock.now();
                if row.next_at > now {
                    let wait = (row.next_at - now).to_std().unwrap_or_default();
                    tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                    break;
                }
                if let Some(t) = last_sent {
                    tokio::time::sleep_until(t + r.kind.spacing()).await;
                }
                if r.kind == ReceiverKind::Github {
                    // A resolve comments and closes; anything else opens or comments.
                    let need = if row.action == Action::Resolve { 2 } else { 1 };
                    let now = tokio::time::Instant::now();
                    if let Some(until) = created.take(need, now) {
                        log::warn!(
                            "receiver {}: GitHub's {GITHUB_PER_HOUR} content requests an hour are used; waiting",
                            r.name
                        );
                        tokio::time::sleep_until(until).await;
                        break;
                    }
                }
                // Taken in this epoch first: a deposed leader sends nothing.
                let id = row.id;
                match self.with_store(move |s| s.claim(id)).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        log::error!("receiver {}: cannot take a notification: {e}", r.name);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
                let outcome = send::deliver(
                    http,
                    r,
                    row.id,
                    row.action,
                    &row.body,
                    &self.external,
                    clock.now(),
                )
                .await;
                last_sent = Some(tokio::time::Instant::now());
                let now = clock.now();
                let delivery = match &outcome {
                    Outcome::Sent => Delivery::Sent,
                    Outcome::Retry { after, error } => {
                        let wait = after
                            .map(|a| a.min(RETRY_AFTER_MAX))
                            .unwrap_or_else(|| backoff(row.attempts));
                        Delivery::Retry {
                            at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                            error: error.clone(),
                        }
                    }
                    Outcome::Refused(error) => Delivery::Failed {
                        error: error.clone(),
                    },
                    // Kept pending: it goes once the receiver is fixed.
                    Outcome::Gone(error) => Delivery::Retry {
                        at: now,
                        error: error.clone(),
                    },
                };
                self.note(idx, &outcome, row.action, &row.body.key, now);
                let id = row.id;
                let taken = !matches!(delivery, Delivery::Retry { .. });
                if let Err(e) = self
                    .with_store(move |s| s.delivered(id, &delivery, now))
                    .await
                {
                    log::error!("receiver {}: cannot record a delivery: {e}", r.name);
                    break;
                }
                if !taken {
                    break;
                }
            }
        }
    }

    fn note(&self, idx: usize, outcome: &Outcome, action: Action, key: &str, now: DateTime<Utc>) {
        let r = &self.config.receivers[idx];
        let mut st = lock(&self.status);
        let s = &mut st[idx];
        match outcome {
            Outcome::Sent => {
                s.sent += 1;
                s.state = "ok";
                s.last_sent_at = Some(now);
                log::info!("receiver {} took the {} of {key}", r.name, action.as_str());
            }
            Outcome::Retry { error, .. } => {
                s.state = "retrying";
                s.last_error = Some(error.clone());
                log::warn!(
                    "receiver {}: the {} of {key} will be retried: {error}",
                    r.name,
                    action.as_str()
                );
            }
            Outcome::Refused(error) => {
                s.failed += 1;
                s.last_error = Some(error.clone());
                log::error!(
                    "receiver {} refused the {} of {key} for good: {error}",
                    r.name,
                    action.as_str()
                );
            }
            Outcome::Gone(error) => {
                s.state = "failed";
                s.last_error = Some(error.clone());
                log::error!(
                    "receiver {} is gone ({error}): nothing more is sent to it; its notifications wait. Fix it, then `rollcall notify test {}` or restart the collector",
                    r.name,
                    r.name
                );
            }
        }
    }

    async fn refresh_alertmanager(&self, idx: usize, now: DateTime<Utc>) {
        let r = &self.config.receivers[idx];
        let name = r.name.clone();
        let firing = match self.with_store(|s| s.incidents(Some(true), 10_000)).await {
            Ok(list) => list
                .into_iter()
                .filter(|i| i.notified.contains(&name))
                .collect::<Vec<_>>(),
            Err(_) => return,
        };
        if firing.is_empty() {
            return;
        }
        let o =
            send::alertmanager_refresh(&self.clients[idx], r, &firing, &self.external, now).await;
        if o != Outcome::Sent {
            log::warn!(
                "receiver {}: re-sending {} firing alert(s): {o:?}",
                r.name,
                firing.len()
            );
        }
    }

    /// Sends a clearly marked test notification to `name` now, outside the outbox; a
    /// receiver marked failed that takes it is back in service.
    pub async fn test(&self, name: &str, now: DateTime<Utc>) -> Option<Result<(), String>> {
        let idx = self.index(name)?;
        let r = &self.config.receivers[idx];
        let inc = wire::test_incident(name, now);
        let o = send::deliver(
            &self.clients[idx],
            r,
            now.timestamp_millis(),
            Action::Test,
            &inc,
            &self.external,
            now,
        )
        .await;
        Some(match o {
            Outcome::Sent => {
                let mut st = lock(&self.status);
                if st[idx].state == "failed" {
                    st[idx].state = "ok";
                    log::info!("receiver {name} took a test notification: back in service");
                }
                drop(st);
                self.wakes[idx].notify_one();
                Ok(())
            }
            Outcome::Retry { error, .. } | Outcome::Refused(error) | Outcome::Gone(error) => {
                Err(error)
            }
        })
    }

    /// `/metrics` lines: incidents open by kind; notifications by receiver kind.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "# HELP rollcall_incidents_open Open incidents, by kind.\n# TYPE rollcall_incidents_open gauge");
        let open = self.open_by_kind();
        for k in Kind::ALL {
            let _ = writeln!(
                o,
                "rollcall_incidents_open{{kind=\"{k}\"}} {}",
                open.get(&k).copied().unwrap_or(0)
            );
        }
        let st = self.statuses();
        #[derive(Default)]
        struct Tally {
            sent: u64,
            failed: u64,
            pending: u64,
            oldest: Option<DateTime<Utc>>,
            gone: u64,
        }
        let mut by: BTreeMap<&str, Tally> = ReceiverKind::ALL
            .iter()
            .map(|k| (k.as_str(), Tally::default()))
            .collect();
        for s in &st {
            let e = by.entry(s.kind).or_default();
            e.sent += s.sent;
            e.failed += s.failed;
            e.pending += s.pending;
            e.oldest = match (e.oldest, s.oldest_pending) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            e.gone += u64::from(s.state == "failed");
        }
        let _ = writeln!(o, "# HELP rollcall_notifications_total Notifications by receiver kind and outcome (sent, or refused for good).\n# TYPE rollcall_notifications_total counter");
        for (k, v) in &by {
            let _ = writeln!(
                o,
                "rollcall_notifications_total{{receiver_kind=\"{k}\",outcome=\"sent\"}} {}",
                v.sent
            );
            let _ = writeln!(
                o,
                "rollcall_notifications_total{{receiver_kind=\"{k}\",outcome=\"failed\"}} {}",
                v.failed
            );
        }
        let _ = writeln!(o, "# HELP rollcall_notifications_pending Notifications written and not yet taken, by receiver kind.\n# TYPE rollcall_notifications_pending gauge");
        for (k, v) in &by {
            let _ = writeln!(
                o,
                "rollcall_notifications_pending{{receiver_kind=\"{k}\"}} {}",
                v.pending
            );
        }
        let oldest = by
            .values()
            .filter_map(|v| v.oldest)
            .min()
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        let _ = writeln!(o, "# HELP rollcall_notification_oldest_pending_seconds Age of the oldest notification not yet taken (0: none).\n# TYPE rollcall_notification_oldest_pending_seconds gauge\nrollcall_notification_oldest_pending_seconds {oldest:.3}");
        let _ = writeln!(o, "# HELP rollcall_receivers_failed Receivers gone for good (410, a revoked token), by kind: nothing is sent to them until fixed.\n# TYPE rollcall_receivers_failed gauge");
        for (k, v) in &by {
            let _ = writeln!(
                o,
                "rollcall_receivers_failed{{receiver_kind=\"{k}\"}} {}",
                v.gone
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hourly_budget_waits_for_its_oldest_request() {
        let t0 = tokio::time::Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(3600));
        assert_eq!(b.take(2, t0), None);
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(
            b.take(2, t1),
            Some(t0 + Duration::from_secs(3600)),
            "3 an hour"
        );
        assert_eq!(b.take(1, t1), None);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.take(2, later), None, "the first two aged out");
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
