//! Reporting to the collector: enrollment, heartbeats (every interval at a per-host offset,
//! and at once on a change), events spooled on disk until acknowledged, backoff.
//!
//! Invariant: supervision never waits on this. The supervisor hands over its state and
//! events through channels that never block; everything here runs beside it.

pub mod config;
pub mod link;
pub mod scan;
pub mod schedule;
pub mod spool;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rollcall_proto::{
    AgentState, EnrollRequest, EnrollResponse, Event, Heartbeat, HeartbeatAck, PROTO_VERSION,
};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::config::{CollectorConfig, Config};
use crate::events::EventLog;
use crate::identity::HostIdentity;
use link::{Failure, Link};
use schedule::{Schedule, MIN_GAP};
use spool::Spool;

/// At most this many events, and about this many bytes of them, per heartbeat (the
/// collector takes 64 KiB).
const BATCH_EVENTS: usize = 200;
const BATCH_BYTES: usize = 40 * 1024;

/// The supervisors' side: never blocks.
#[derive(Debug)]
pub struct Outlet {
    /// The agent's state as the [`crate::publish::Board`] puts it together.
    pub state: watch::Sender<Option<AgentState>>,
    events: mpsc::UnboundedSender<Event>,
    seq: Arc<AtomicU64>,
}

impl Outlet {
    /// An event log for one check: numbered in the host's one stream, handed to the reporter.
    pub fn event_log(&self) -> EventLog {
        EventLog::reporting(self.seq.clone(), self.events.clone())
    }
}

pub struct Inlet {
    state: watch::Receiver<Option<AgentState>>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// Events are numbered from `first_seq`.
pub fn channel(first_seq: u64) -> (Outlet, Inlet) {
    let (st, sr) = watch::channel(None);
    let (et, er) = mpsc::unbounded_channel();
    (
        Outlet {
            state: st,
            events: et,
            seq: Arc::new(AtomicU64::new(first_seq)),
        },
        Inlet {
            state: sr,
            events: er,
        },
    )
}

/// Why a heartbeat did not go through, and so how to wait.
enum Wait {
    /// The collector failed or could not be reached: back off, at least this long.
    Backoff(Option<Duration>),
    /// The collector is fine but this host sent too often: wait exactly this long.
    Throttled(Duration),
}

/// What keeps the agent from reporting, if anything: shown in `state.json` and by
/// `doctor` while supervision goes on.
pub type Problem = std::sync::Arc<std::sync::Mutex<Option<String>>>;

pub struct Reporter<C: Clock> {
    cfg: CollectorConfig,
    labels: std::collections::BTreeMap<String, String>,
    me: HostIdentity,
    credential_file: PathBuf,
    credential: Option<String>,
    /// Set up on first use and again after it failed: a CA file that a bootstrap has not
    /// written yet must not stop supervision, and is picked up once it is there.
    link: Option<Link>,
    problem: Problem,
    spool: Spool,
    schedule: Schedule,
    clock: C,
    /// Since when the collector has not taken a heartbeat, and what was said about it.
    outage: Option<(DateTime<Utc>, String)>,
    bmc_cfg: crate::config::BmcConfig,
    /// The latest in-band BMC check, sent with every heartbeat.
    bmc: Option<rollcall_proto::BmcState>,
    scanner: crate::config::ScannerConfig,
    /// What was last said about probing, not to repeat it every round.
    scan_said: Option<String>,
    /// The fingerprint of the state the collector acknowledged last, and the digest it gave
    /// for it: sent instead of the state while the state's fingerprint stays the same.
    acked_state: Option<(u64, String)>,
}

/// The first sequence number for this run: above everything spooled or acknowledged, and
/// above the wall clock in microseconds-ish units (ms × 1000), so that a reinstalled host
/// (a new state directory) or a crash that lost the last numbers never reuses one.
pub fn first_seq(highest_on_disk: u64, now: DateTime<Utc>) -> u64 {
    let floor = (now.timestamp_millis().max(0) as u64).saturating_mul(1000);
    (highest_on_disk + 1).max(floor)
}

impl<C: Clock> Reporter<C> {
    /// Opens the spool and the link; returns the first event sequence number to use.
    pub fn new(
        config: &Config,
        me: HostIdentity,
        clock: C,
        problem: Problem,
    ) -> anyhow::Result<(Reporter<C>, u64)> {
        use anyhow::Context;
        let Some(cfg) = config.collector.clone() else {
            anyhow::bail!("no [collector] section: nothing to report to");
        };
        let dir = config.state_dir.join("spool");
        let (spool, opened) = Spool::open(&dir, cfg.spool_max_events, cfg.spool_max_bytes)
            .with_context(|| format!("opening the event spool in {}", dir.display()))?;
        if opened.skipped_lines > 0 {
            log::warn!(target: "agent", "event spool {}: {} unreadable line(s) skipped (a torn write?)", dir.display(), opened.skipped_lines);
        }
        if !spool.is_empty() {
            log::info!(target: "agent", "{} event(s) spooled from an earlier run are waiting for the collector", spool.len());
        }
        let credential_file = config.state_dir.join("credential");
        let credential = std::fs::read_to_string(&credential_file)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        // Jitter only needs hosts to differ; a fixed seed if the system has no randomness.
        let seed = getrandom::u64().unwrap_or(0x9e37_79b9);
        let schedule = Schedule::new(cfg.interval, &format!("{}/{}", me.host, me.identity), seed);
        let first = first_seq(opened.highest_seq, clock.now());
        Ok((
            Reporter {
                labels: config.host.labels.clone(),
                cfg,
                me,
                credential_file,
                credential,
                link: None,
                problem: problem.clone(),
                spool,
                schedule,
                clock,
                outage: None,
                bmc_cfg: config.bmc.clone(),
                bmc: None,
                scanner: config.scanner.clone(),
                scan_said: None,
                acked_state: None,
            },
            first,
        ))
    }

    /// Reports until `shutdown`; what is spooled stays on disk for the next run.
    pub async fn run(mut self, mut inlet: Inlet, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let first_choice = match self.cfg.urls.len() {
            1 => String::new(),
            _ => format!(
                "; first choice {}",
                link::Route::new(&self.cfg.urls, &self.me.host).first()
            ),
        };
        log::info!(target: "agent", "reporting to {} as {} every {} (offset {:.1}s{first_choice})", self.cfg.urls.join(", "), self.me.host, humantime::format_duration(self.cfg.interval), self.schedule.offset().as_secs_f64());
        let (bmc_tx, mut bmc_rx) = mpsc::unbounded_channel();
        let bmc_task = tokio::spawn(crate::checks::bmc::inband::watch(
            self.bmc_cfg.clone(),
            bmc_tx,
        ));
        // The first result before the first heartbeat (and enrollment, which names the BMC's
        // address), unless it takes long.
        if let Ok(Some(b)) = tokio::time::timeout(Duration::from_secs(15), bmc_rx.recv()).await {
            self.note_bmc(b);
        }
        // The first heartbeat goes as soon as there is a state.
        let mut changed = true;
        let mut next = self.clock.now();
        let mut last_sent = tokio::time::Instant::now() - MIN_GAP;
        // Scanners: the first round shortly after the first heartbeat, then as the
        // collector says.
        let mut probe_at = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut probing: Option<tokio::task::JoinHandle<scan::Round>> = None;
        loop {
            let now = self.clock.now();
            let due = if changed && self.schedule.may_send_now(now) {
                tokio::time::Instant::now().max(last_sent + MIN_GAP)
            } else {
                tokio::time::Instant::now() + (next - now).to_std().unwrap_or(Duration::ZERO)
            };
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                r = inlet.state.changed() => {
                    if r.is_err() { break; }
                    changed = true;
                    continue;
                }
                Some(b) = bmc_rx.recv() => {
                    changed |= self.note_bmc(b);
                    continue;
                }
                e = inlet.events.recv() => {
                    match e {
                        Some(e) => { self.spool.push(e); changed = true; }
                        None => break,
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(probe_at), if self.scanner.enabled && probing.is_none() && self.credential.is_some() => {
                    probe_at = self.start_round(&mut probing).await;
                    continue;
                }
                r = async { probing.as_mut().expect("guarded by is_some").await }, if probing.is_some() => {
                    probing = None;
                    if let Ok(round) = r {
                        self.finish_round(&round).await;
                    }
                    continue;
                }
                _ = &mut shutdown => break,
            }
            let state = inlet.state.borrow_and_update().clone();
            let Some(state) = state else {
                next = self.clock.now() + chrono::Duration::seconds(1);
                changed = false;
                continue;
            };
            // Everything already handed over goes in this heartbeat.
            while let Ok(e) = inlet.events.try_recv() {
                self.spool.push(e);
            }
            changed = false;
            last_sent = tokio::time::Instant::now();
            let now = self.clock.now();
            match self.send(state).await {
                Ok(more) => {
                    self.schedule.succeeded();
                    changed = more;
                    next = self.schedule.next_regular(self.clock.now());
                }
                Err(Wait::Backoff(retry_after)) => {
                    next = self.schedule.failed(now, retry_after);
                }
                Err(Wait::Throttled(retry_after)) => {
                    // What changed meanwhile goes when the hold ends.
                    changed = true;
                    next = self.schedule.throttled(now, retry_after);
                }
            }
        }
        bmc_task.abort();
        if let Some(p) = probing {
            p.abort();
        }
        while let Ok(e) = inlet.events.try_recv() {
            self.spool.push(e);
        }
    }

    /// Keeps the latest BMC check; whether it changed what an SRE would see.
    fn note_bmc(&mut self, r: crate::checks::bmc::inband::InBand) -> bool {
        let b = r.into_state(self.clock.now());
        let changed = self.bmc.as_ref().is_none_or(|old| {
            (old.health, old.present, old.address, &old.reason)
                != (b.health, b.present, b.address, &b.reason)
        });
        if changed {
            log::info!(target: "agent", "bmc: {}", b.reason);
        }
        self.bmc = Some(b);
        changed
    }

    /// One heartbeat. `Ok(true)`: more events are waiting. `Err`: how long to wait.
    /// The link to the collector, set up now if it is not yet.
    fn link(&mut self) -> Result<Link, Wait> {
        if let Some(l) = &self.link {
            return Ok(l.clone());
        }
        match Link::new(&self.cfg, &self.me.host) {
            Ok(l) => {
                if crate::lock(&self.problem).take().is_some() {
                    log::info!(target: "agent", "reporting to {} is set up", l.current());
                }
                self.link = Some(l.clone());
                Ok(l)
            }
            Err(e) => {
                let why = format!("reporting is misconfigured: setting up TLS to the collector: {e}; supervision and healing go on, events are spooled, and the setup is retried");
                self.say_once(&why);
                *crate::lock(&self.problem) = Some(why);
                Err(Wait::Backoff(None))
            }
        }
    }

    async fn send(&mut self, mut state: AgentState) -> Result<bool, Wait> {
        let link = self.link()?;
        state.bmc = self.bmc.clone();
        let credential = match self.credential.clone() {
            Some(c) => c,
            None => self.enroll().await.map_err(Wait::Backoff)?,
        };
        let events = self.spool.batch(BATCH_EVENTS, BATCH_BYTES);
        let dropped = self.spool.unreported();
        // An unchanged state goes as the digest the collector gave for it.
        let fingerprint = state.fingerprint();
        let (state, state_digest) = match &self.acked_state {
            Some((fp, digest)) if *fp == fingerprint => (None, Some(digest.clone())),
            _ => (Some(state), None),
        };
        let sent_digest = state_digest.is_some();
        let hb = Heartbeat {
            proto_version: PROTO_VERSION,
            host: self.me.host.clone(),
            identity: self.me.identity.clone(),
            interval_secs: self.cfg.interval.as_secs().clamp(1, 86_400) as u32,
            labels: self.labels.clone(),
            state,
            state_digest,
            events,
            booted_at: self.me.booted_at,
            events_dropped: dropped,
        };
        match link
            .post::<_, HeartbeatAck>("/api/v1/heartbeat", &credential, &hb)
            .await
        {
            // This collector does not know the digest: nothing was taken; the whole state
            // goes at once.
            Ok(ack) if ack.state_needed => {
                log::debug!(target: "agent", "the collector asked for the whole state");
                self.acked_state = None;
                Ok(true)
            }
            Ok(ack) => {
                self.acked_state = ack.state_digest.map(|d| (fingerprint, d));
                self.spool.ack(ack.acked_seq, dropped);
                if let Some((since, _)) = self.outage.take() {
                    log::info!(target: "agent", "collector reachable again after {}; {} spooled event(s) left to deliver", crate::clock::ago(self.clock.now() - since), self.spool.len());
                }
                Ok(!self.spool.is_empty())
            }
            Err(Failure::Refused {
                status: 401, error, ..
            }) => {
                log::warn!(target: "agent", "the collector refused this host's credential ({error}); enrolling again");
                self.credential = None;
                if let Err(e) = std::fs::remove_file(&self.credential_file) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        log::warn!(target: "agent", "cannot remove {}: {e}", self.credential_file.display());
                    }
                }
                Err(Wait::Backoff(None))
            }
            Err(Failure::Refused {
                status: 429,
                error,
                retry_after: Some(wait),
            }) => {
                log::debug!(target: "agent", "collector throttles this host ({error}); next heartbeat in {wait:?}");
                Err(Wait::Throttled(wait))
            }
            Err(f) => {
                // A collector of an earlier release takes no digest (400): the whole state
                // goes next time.
                if sent_digest && matches!(f, Failure::Refused { status: 400, .. }) {
                    self.acked_state = None;
                }
                Err(Wait::Backoff(self.failed(f)))
            }
        }
    }

    /// Says what went wrong, once per kind of outage; returns the wait the collector asked.
    fn failed(&mut self, f: Failure) -> Option<Duration> {
        let (what, retry_after) = match &f {
            Failure::Unreachable(e) => (format!("collector unreachable ({e})"), None),
            Failure::Refused {
                status: s @ (429 | 503),
                error,
                retry_after,
            } => (format!("collector busy (HTTP {s}: {error})"), *retry_after),
            Failure::Refused {
                status,
                error,
                retry_after,
            } => (
                format!("collector refused the heartbeat (HTTP {status}: {error})"),
                *retry_after,
            ),
        };
        let kind = what.split(" (").next().unwrap_or("").to_owned();
        match &self.outage {
            Some((_, said)) if *said == kind => {
                log::debug!(target: "agent", "{what}; retrying");
            }
            _ => {
                log::warn!(target: "agent", "{what}; supervision goes on, events are spooled in {} and sent when it answers", self.spool.dir().display());
                let since = self.outage.as_ref().map_or(self.clock.now(), |(t, _)| *t);
                self.outage = Some((since, kind));
            }
        }
        retry_after
    }

    /// Exchanges the enrollment secret for this host's credential, saved 0600.
    async fn enroll(&mut self) -> Result<String, Option<Duration>> {
        let Some(file) = self.cfg.enroll_secret_file.clone() else {
            self.say_once("no credential and no enrollment secret (set collector.enroll_secret_file); cannot report");
            return Err(None);
        };
        let secret = match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            Ok(_) => {
                self.say_once(&format!(
                    "enrollment secret file {} is empty; cannot enroll",
                    file.display()
                ));
                return Err(None);
            }
            Err(e) => {
                self.say_once(&format!(
                    "cannot read the enrollment secret {}: {e}; cannot enroll",
                    file.display()
                ));
                return Err(None);
            }
        };
        let req = EnrollRequest {
            proto_version: PROTO_VERSION,
            host: self.me.host.clone(),
            identity: self.me.identity.clone(),
            labels: self.labels.clone(),
            bmc_address: self
                .bmc
                .as_ref()
                .and_then(|b| b.address)
                .map(|a| a.to_string()),
        };
        let Some(link) = self.link.clone() else {
            return Err(None);
        };
        match link
            .post::<_, EnrollResponse>("/api/v1/enroll", &secret, &req)
            .await
        {
            Ok(r) => {
                if let Err(e) = write_private(&self.credential_file, &r.credential) {
                    log::warn!(target: "agent", "cannot save the credential to {}: {e}; it is kept in memory, and the agent enrolls again after a restart", self.credential_file.display());
                }
                log::info!(target: "agent", "enrolled with the collector as {} (identity {})", self.me.host, self.me.identity);
                self.credential = Some(r.credential.clone());
                Ok(r.credential)
            }
            Err(Failure::Refused {
                status: 401, error, ..
            }) => {
                self.say_once(&format!("the collector refused the enrollment secret in {} ({error}); bootstrap writes the current one", file.display()));
                Err(None)
            }
            Err(Failure::Refused {
                status: 403, error, ..
            }) => {
                self.say_once(&format!(
                    "the collector refused to enroll this host ({error})"
                ));
                Err(None)
            }
            Err(Failure::Refused {
                status: 409,
                error,
                retry_after,
            }) => {
                // Another agent speaks for this host name with a live credential.
                self.say_once(&format!(
                    "the collector will not enroll this host while another agent speaks for it ({error})"
                ));
                Err(retry_after)
            }
            Err(f) => Err(self.failed(f)),
        }
    }

    /// Asks for this round's BMCs and starts probing them; when to start the next round.
    async fn start_round(
        &mut self,
        probing: &mut Option<tokio::task::JoinHandle<scan::Round>>,
    ) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let (Some(credential), Some(link)) = (self.credential.clone(), self.link.clone()) else {
            return now + Duration::from_secs(10);
        };
        match scan::assignment(&link, &credential).await {
            Ok((targets, every)) => {
                log::debug!(target: "scanner", "probing {} BMC(s) of zone {}", targets.targets.len(), targets.zone);
                *probing = Some(tokio::spawn(scan::probe(targets, self.scanner.clone())));
                now + every
            }
            Err((wait, why)) => {
                if self.scan_said.as_deref() != Some(why.as_str()) {
                    log::warn!(target: "scanner", "{why}");
                    self.scan_said = Some(why);
                }
                now + wait
            }
        }
    }

    /// Reports a finished round and says what it found.
    async fn finish_round(&mut self, round: &scan::Round) {
        let (Some(credential), Some(link)) = (self.credential.clone(), self.link.clone()) else {
            return;
        };
        let down = round.results.iter().filter(|r| !r.reachable).count();
        match scan::report(&link, &credential, &self.me.host, round).await {
            Ok((taken, ignored, why)) => {
                let msg = format!(
                    "probed {} BMC(s) of zone {} in {:.1}s ({} packets): {down} unreachable; the collector took {taken}{}",
                    round.results.len(),
                    round.zone,
                    round.took.as_secs_f64(),
                    round.packets,
                    if ignored > 0 {
                        format!(", ignored {ignored} ({})", why.join("; "))
                    } else {
                        String::new()
                    }
                );
                // Said at info when the picture changes, else at debug.
                let key = format!("{} {down} {ignored}", round.results.len());
                if self.scan_said.as_deref() != Some(key.as_str()) {
                    log::info!(target: "scanner", "{msg}");
                    self.scan_said = Some(key);
                } else {
                    log::debug!(target: "scanner", "{msg}");
                }
            }
            Err(e) => {
                log::warn!(target: "scanner", "cannot report probe results: {e}; the next round reports afresh")
            }
        }
    }

    fn say_once(&mut self, msg: &str) {
        if self.outage.as_ref().is_none_or(|(_, said)| said != msg) {
            log::error!(target: "agent", "{msg}");
            let since = self.outage.as_ref().map_or(self.clock.now(), |(t, _)| *t);
            self.outage = Some((since, msg.to_owned()));
        }
    }
}

/// Written to a temporary file made 0600, then renamed into place.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sequence_numbers_never_go_back() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let floor = now.timestamp_millis() as u64 * 1000;
        assert_eq!(
            first_seq(0, now),
            floor,
            "a fresh install starts at the clock"
        );
        assert_eq!(
            first_seq(floor + 5, now),
            floor + 6,
            "above what is on disk"
        );
        // A later run starts above any number an earlier run could have used in between.
        assert!(first_seq(0, now + chrono::Duration::seconds(1)) > floor + 999);
        assert!(first_seq(0, now) < 1 << 53, "exact in a JSON double");
    }

    #[test]
    fn the_credential_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("credential");
        write_private(&p, "abc").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "abc\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
