//! Durable storage behind one trait: SQLite (embedded, the default) and PostgreSQL (the
//! store several collectors share), both passing the same [`suite`].

pub mod copy;
pub mod feed;
mod outbox;
mod pg_outbox;
pub mod postgres;
pub mod schema;
mod sqlite;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rollcall_proto::{Event, Health};

pub(crate) use postgres::PgStore;
pub(crate) use sqlite::SqliteStore;

use crate::incidents::{Action, Incident};
use crate::state::Lifecycle;

/// One heartbeat as it is made durable.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatRecord {
    pub host: String,
    /// The agent's identity (machine-id + install id).
    pub identity: String,
    /// By the collector's clock.
    pub received_at: DateTime<Utc>,
    pub interval_secs: u32,
    pub labels: BTreeMap<String, String>,
    pub health: Health,
    pub reason: String,
    /// The agent's full state as it sent it, latest wins.
    pub state_json: StateJson,
    /// Changes when anything but timestamps changes in the state: the full state is
    /// rewritten only then, the rest of the time a heartbeat updates a small row.
    pub state_fingerprint: u64,
    /// Events not yet acknowledged; redeliveries are ignored by `(host, seq)`.
    pub events: Vec<Event>,
    /// When the host booted, as the agent reported it.
    pub booted_at: Option<DateTime<Utc>>,
}

/// The agent's state: kept parsed, and turned into JSON only if the store writes it (most
/// heartbeats repeat an unchanged state).
#[derive(Debug, Clone, PartialEq)]
pub enum StateJson {
    Text(String),
    Parsed(std::sync::Arc<rollcall_proto::AgentState>),
    /// The agent sent the digest of the state stored last (`state_fingerprint`): nothing
    /// to write.
    Same,
}

impl StateJson {
    /// The state as JSON; `None` for [`StateJson::Same`], which is never written.
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            StateJson::Text(t) => Some(std::borrow::Cow::Borrowed(t)),
            StateJson::Parsed(s) => Some(std::borrow::Cow::Owned(
                serde_json::to_string(&**s).unwrap_or_default(),
            )),
            StateJson::Same => None,
        }
    }
}

/// A credential change: issued at enrollment, revoked by an operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CredentialRecord {
    /// A new credential for `host`; earlier credentials of the same host and identity
    /// (a re-enrollment) are revoked in the same transaction. Both changes write a line of
    /// the host's history in that transaction too.
    Issue {
        sha256: String,
        host: String,
        identity: String,
        at: DateTime<Utc>,
        /// The BMC address the agent announced, for the history line.
        bmc_address: Option<String>,
    },
    /// Every credential of `host`.
    RevokeHost { host: String, at: DateTime<Utc> },
}

/// The heartbeats of a batch, in order.
pub fn heartbeats(batch: &[Write]) -> impl Iterator<Item = &HeartbeatRecord> {
    batch.iter().filter_map(|w| match w {
        Write::Heartbeat(h) => Some(h),
        _ => None,
    })
}

/// Latest wins: each host's newest heartbeat of the batch, with the earliest time it was
/// heard in it (its first-seen time, if it is new).
fn latest_per_host(batch: &[Write]) -> HashMap<&str, (&HeartbeatRecord, DateTime<Utc>)> {
    let mut latest: HashMap<&str, (&HeartbeatRecord, DateTime<Utc>)> =
        HashMap::with_capacity(batch.len());
    for hb in heartbeats(batch) {
        latest
            .entry(hb.host.as_str())
            .and_modify(|(cur, first)| {
                if hb.received_at >= cur.received_at {
                    *cur = hb;
                }
                *first = (*first).min(hb.received_at);
            })
            .or_insert((hb, hb.received_at));
    }
    latest
}

/// Everything in a host's row but its last-heard time (its name too): what a heartbeat
/// that changes nothing repeats. SipHash with fixed keys, the same in every process of a
/// build.
fn row_fingerprint(hb: &HeartbeatRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &hb.host,
        &hb.identity,
        hb.interval_secs,
        &hb.labels,
        hb.health.as_str(),
        &hb.reason,
    )
        .hash(&mut h);
    h.finish()
}

/// The history line an enrollment writes.
fn enrolled_line(identity: &str, bmc_address: Option<&str>) -> String {
    match bmc_address {
        Some(a) => format!("enrolled identity {identity}, BMC {a}"),
        None => format!("enrolled identity {identity}"),
    }
}

/// The history line a revocation of `n` credentials writes.
fn revoked_line(n: u64) -> String {
    format!("credentials revoked by an operator ({n})")
}

/// A credential as stored (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub sha256: String,
    pub host: String,
    pub identity: String,
    pub issued_at: DateTime<Utc>,
    pub revoked: bool,
}

/// One line of a host's history as the collector saw it: a reload, a reboot, a silence
/// and its end, a refused credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRecord {
    pub host: String,
    pub at: DateTime<Utc>,
    /// `state`, `identity`, `reboot`, `security`, `spool`.
    pub kind: String,
    pub message: String,
}

/// Everything the writer makes durable, batched together.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Heartbeat(HeartbeatRecord),
    Credential(CredentialRecord),
    History(HistoryRecord),
    /// A history line only the leader writes (a sweep's: silences, returns): dropped by a
    /// collector that does not lead, or no longer does.
    Note(HistoryRecord),
}

impl From<HeartbeatRecord> for Write {
    fn from(h: HeartbeatRecord) -> Write {
        Write::Heartbeat(h)
    }
}

impl From<CredentialRecord> for Write {
    fn from(c: CredentialRecord) -> Write {
        Write::Credential(c)
    }
}

impl From<HistoryRecord> for Write {
    fn from(h: HistoryRecord) -> Write {
        Write::History(h)
    }
}

/// A host as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub host: String,
    pub identity: String,
    pub first_seen: DateTime<Utc>,
    pub last_heard: DateTime<Utc>,
    pub interval_secs: u32,
    pub labels: BTreeMap<String, String>,
    pub health: Health,
    pub reason: String,
    pub lifecycle: Option<Lifecycle>,
    pub maintenance: Option<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Host rows written: one per host per batch, however many heartbeats it sent.
    pub hosts: usize,
    pub events_new: usize,
    pub events_duplicate: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {target}: {source}")]
    Postgres {
        target: String,
        source: ::postgres::Error,
    },
    #[error("this collector no longer leads (epoch {epoch}); another one does what only the leader does")]
    NotLeader { epoch: i64 },
    /// A copy between stores that cannot be made, with what to do.
    #[error("{0}")]
    Copy(String),
    #[error("database {path} holds an unreadable value in {what}: {detail}")]
    Corrupt {
        path: String,
        what: &'static str,
        detail: String,
    },
    #[error("database {path} has schema version {found}, newer than this rollcall-collector knows ({known}): a newer release wrote it; run that release, or restore a backup taken before the upgrade")]
    TooNew {
        path: String,
        found: u32,
        known: u32,
    },
}

impl StoreError {
    /// What went wrong and what to do, for an API answer, a log line and `/readyz`.
    pub fn sentence(&self) -> String {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite { path, source } => {
                let what = match source.sqlite_error_code() {
                    Some(C::DiskFull) => "the disk is full; free space on its filesystem",
                    Some(C::ReadOnly) => {
                        "it is read-only; check the filesystem and the file's owner and mode"
                    }
                    Some(C::SystemIoFailure) => {
                        "an I/O error occurred; check the disk and the kernel log"
                    }
                    Some(C::DatabaseBusy | C::DatabaseLocked) => {
                        "it is locked by another process; run one collector per data directory"
                    }
                    Some(C::CannotOpen | C::PermissionDenied) => {
                        "it cannot be opened; check the data directory's owner and mode"
                    }
                    Some(C::DatabaseCorrupt | C::NotADatabase) => {
                        "it is damaged; restore it from a backup"
                    }
                    _ => "see the collector's log",
                };
                format!("the database {path} cannot be written: {what} ({source})")
            }
            StoreError::Postgres { target, source } => {
                use ::postgres::error::SqlState as S;
                let what = match source.code() {
                    Some(c) if *c == S::DISK_FULL => {
                        "the database server's disk is full; free space there"
                    }
                    Some(c) if *c == S::READ_ONLY_SQL_TRANSACTION => {
                        "it is a read-only standby; point store at the primary"
                    }
                    Some(c) if *c == S::TOO_MANY_CONNECTIONS => {
                        "it has no connection left; raise max_connections on the server"
                    }
                    Some(c) if *c == S::INVALID_PASSWORD || *c == S::INVALID_AUTHORIZATION_SPECIFICATION => {
                        "it refused the user or password; check store_password_file or PGPASSWORD and pg_hba.conf"
                    }
                    Some(c) if *c == S::INVALID_CATALOG_NAME => {
                        "the database does not exist; create it (createdb -O rollcall rollcall)"
                    }
                    Some(c) if *c == S::INSUFFICIENT_PRIVILEGE => {
                        "the user may not do this; make it the owner of the database"
                    }
                    Some(c) if *c == S::ADMIN_SHUTDOWN || *c == S::CANNOT_CONNECT_NOW => {
                        "the server is shutting down or starting; the collector tries again"
                    }
                    _ if untrusted_certificate(source) => {
                        "its TLS certificate is not trusted; set PGSSLROOTCERT to the file of the CA that signed it, and name the server in store's URL as its certificate does (or, on a network you trust, add sslmode=disable to store's URL)"
                    }
                    _ if source.to_string().contains("TLS") => {
                        "TLS to it failed; turn ssl on on the server, or remove sslmode=require from store's URL"
                    }
                    _ if source.is_closed() || source.code().is_none() => {
                        "it cannot be reached; the collector tries again (check the server, the network and store's host and port)"
                    }
                    _ => "see the collector's log",
                };
                format!("the database {target} cannot be used: {what} ({source})")
            }
            StoreError::Corrupt { .. } => format!("{self}; restore the database from a backup"),
            StoreError::TooNew { .. } | StoreError::NotLeader { .. } | StoreError::Copy(_) => {
                self.to_string()
            }
        }
    }
}

/// Whether `e` failed because the server's certificate did not verify (an unknown CA, a
/// name it does not cover, expired).
fn untrusted_certificate(e: &::postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        // An io::Error's `source` skips the error it wraps: look inside it.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map_or(c, |i| i as &(dyn std::error::Error + 'static));
        if let Some(rustls::Error::InvalidCertificate(_)) = inner.downcast_ref::<rustls::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod error_tests {
    use super::StoreError;

    #[test]
    fn a_store_error_says_what_to_do() {
        let e = |code| StoreError::Sqlite {
            path: "/var/lib/rollcall-collector/rollcall.db".into(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        };
        let full = e(rusqlite::ffi::SQLITE_FULL).sentence();
        assert!(
            full.starts_with("the database /var/lib/rollcall-collector/rollcall.db cannot be written: the disk is full; free space on its filesystem"),
            "{full}"
        );
        assert!(e(rusqlite::ffi::SQLITE_READONLY)
            .sentence()
            .contains("read-only"));
        assert!(e(rusqlite::ffi::SQLITE_IOERR)
            .sentence()
            .contains("kernel log"));
        assert!(e(rusqlite::ffi::SQLITE_CORRUPT)
            .sentence()
            .contains("backup"));
    }
}

pub trait Store: Send {
    /// Every host, for the in-memory index at start-up.
    fn load_hosts(&self) -> Result<Vec<HostRow>, StoreError>;
    /// Every credential (hashes only), for the in-memory lookup at start-up.
    fn load_credentials(&self) -> Result<Vec<CredentialRow>, StoreError>;
    /// One transaction for the whole batch; returns only once it is durable.
    fn commit(&mut self, batch: &[Write]) -> Result<CommitStats, StoreError>;
    /// `None` ends maintenance. Returns whether the host exists.
    fn set_maintenance(
        &mut self,
        host: &str,
        until: Option<(DateTime<Utc>, &str)>,
    ) -> Result<bool, StoreError>;
    /// `None` returns the host to its derived lifecycle (`build`/`live`).
    fn set_lifecycle(&mut self, host: &str, l: Option<Lifecycle>) -> Result<bool, StoreError>;
    /// The latest full agent state a host sent (JSON), if the host exists.
    fn host_state(&self, host: &str) -> Result<Option<String>, StoreError>;
    /// The newest `limit` events of a host, newest first.
    fn recent_events(&self, host: &str, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// The newest `limit` history lines of a host, newest first.
    fn recent_history(&self, host: &str, limit: usize) -> Result<Vec<HistoryRecord>, StoreError>;
    /// History lines of every host at or after `since`, newest first, at most `limit`.
    fn history_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError>;
    /// Deletes events and history received before `before`; returns how many.
    fn prune_events(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A boxed store is a store: the collector holds its backends as `Box<dyn Store>`.
impl<S: Store + ?Sized> Store for Box<S> {
    fn load_hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        (**self).load_hosts()
    }
    fn load_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        (**self).load_credentials()
    }
    fn commit(&mut self, batch: &[Write]) -> Result<CommitStats, StoreError> {
        (**self).commit(batch)
    }
    fn set_maintenance(
        &mut self,
        host: &str,
        until: Option<(DateTime<Utc>, &str)>,
    ) -> Result<bool, StoreError> {
        (**self).set_maintenance(host, until)
    }
    fn set_lifecycle(&mut self, host: &str, l: Option<Lifecycle>) -> Result<bool, StoreError> {
        (**self).set_lifecycle(host, l)
    }
    fn host_state(&self, host: &str) -> Result<Option<String>, StoreError> {
        (**self).host_state(host)
    }
    fn recent_events(&self, host: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        (**self).recent_events(host, limit)
    }
    fn recent_history(&self, host: &str, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        (**self).recent_history(host, limit)
    }
    fn history_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        (**self).history_since(since, limit)
    }
    fn prune_events(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        (**self).prune_events(before)
    }
}

/// A notification as the outbox holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub receiver: String,
    pub incident: i64,
    pub action: Action,
    /// The incident as it is told.
    pub body: Incident,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    /// Not to be tried before this.
    pub next_at: DateTime<Utc>,
    /// `pending`, `sent`, `failed`.
    pub state: String,
    pub last_error: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

/// How one attempt at a notification ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Sent,
    /// Try again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// The receiver refused it for good (for example a 400): kept, shown, not retried.
    Failed {
        error: String,
    },
}

/// Notifications per receiver and state, and when the oldest of them was written.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxTally {
    pub receiver: String,
    pub state: String,
    pub count: u64,
    pub oldest: DateTime<Utc>,
}

/// Incidents and the notification outbox.
pub trait IncidentStore: Send {
    /// The incidents still open, and the next free incident id.
    fn load_open_incidents(&self) -> Result<(Vec<Incident>, i64), StoreError>;
    /// Incident changes and the notifications they cause, in one transaction.
    fn record(
        &mut self,
        changed: &[Incident],
        outbox: &[(i64, String, Action, Incident)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A receiver's pending notifications, oldest first.
    fn pending(&self, receiver: &str, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    fn delivered(&mut self, id: i64, d: &Delivery, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Takes notification `id` to send it: `false` if it is no longer pending, or this
    /// collector no longer leads (then someone else sends it).
    fn claim(&mut self, _id: i64) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Newest first; `open` picks open or resolved ones.
    fn incidents(&self, open: Option<bool>, limit: usize) -> Result<Vec<Incident>, StoreError>;
    /// One incident and every notification made of it.
    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<OutboxRow>)>, StoreError>;
    fn outbox_tally(&self) -> Result<Vec<OutboxTally>, StoreError>;
    /// A receiver's pending notifications: how many, and when the oldest was written.
    fn pending_count(&self, receiver: &str) -> Result<(u64, Option<DateTime<Utc>>), StoreError>;
    /// Deletes resolved incidents and finished notifications older than `before`; open
    /// incidents and pending notifications are kept whatever their age. Returns how many.
    fn prune_incidents(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Which database the collector keeps its data in.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Backend {
    /// `rollcall.db` in the data directory: one collector.
    #[default]
    Sqlite,
    /// A PostgreSQL database any number of collectors share.
    Postgres(Box<postgres::Target>),
}

impl Backend {
    /// Where the data is, for log lines.
    pub fn describe(&self, data_dir: &std::path::Path) -> String {
        match self {
            Backend::Sqlite => data_dir.join(DB_FILE).display().to_string(),
            Backend::Postgres(t) => t.shown.clone(),
        }
    }
}

/// Opens a connection for incidents and the outbox (the notifier's and the API's).
pub fn open_incidents(
    backend: &Backend,
    data_dir: &std::path::Path,
    replica: &std::sync::Arc<crate::replica::Replica>,
) -> Result<Box<dyn IncidentStore>, StoreError> {
    Ok(match backend {
        Backend::Sqlite => Box::new(SqliteStore::open(&data_dir.join(DB_FILE))?),
        Backend::Postgres(t) => Box::new(PgStore::open_as(t, replica.clone())?),
    })
}

/// Opens a connection to the store: the embedded SQLite database (`rollcall.db` in
/// `data_dir`) or PostgreSQL. Call it once per connection the collector needs: the ingest
/// writer's, and the operators'.
pub fn open(
    backend: &Backend,
    data_dir: &std::path::Path,
    replica: &std::sync::Arc<crate::replica::Replica>,
) -> Result<Box<dyn Store>, StoreError> {
    Ok(match backend {
        Backend::Sqlite => Box::new(SqliteStore::open(&data_dir.join(DB_FILE))?),
        Backend::Postgres(t) => Box::new(PgStore::open_as(t, replica.clone())?),
    })
}

/// The SQLite database's file name in the data directory.
pub const DB_FILE: &str = "rollcall.db";

/// The behaviour every backend must show, run against each of them.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;
    use chrono::TimeZone;
    use rollcall_proto::EventKind;

    pub fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap() + chrono::Duration::seconds(s as i64)
    }

    pub fn event(seq: u64, msg: &str) -> Event {
        Event {
            seq,
            at: t(0),
            check: "besclient".into(),
            kind: EventKind::Action,
            message: msg.into(),
            action: Some("restart".into()),
            step: Some("restart".into()),
            pid: Some(42),
        }
    }

    pub fn hbs<const N: usize>(h: [HeartbeatRecord; N]) -> Vec<Write> {
        h.into_iter().map(Write::from).collect()
    }

    pub fn hb(host: &str, at: u32, health: Health, events: Vec<Event>) -> HeartbeatRecord {
        HeartbeatRecord {
            host: host.into(),
            identity: format!("id-{host}"),
            received_at: t(at),
            interval_secs: 60,
            labels: [("region".to_owned(), "us-south".to_owned())].into(),
            health,
            reason: format!("{host} at {at}"),
            state_json: StateJson::Text(format!("{{\"at\":{at}}}")),
            state_fingerprint: at as u64,
            events,
            booted_at: None,
        }
    }

    /// Runs every check on stores made by `open`, which must return a store over the same
    /// durable data each time it is called (a reopen).
    pub fn run<S: Store>(open: impl Fn() -> S) {
        latest_wins_and_first_seen_stays(&open);
        events_are_deduplicated(&open);
        maintenance_and_lifecycle(&open);
        pruning(&open);
        credentials(&open);
    }

    /// The incident and outbox checks every backend must pass.
    /// An incident about `key` (a silent host), open or resolved.
    pub fn incident(id: i64, key: &str, open: bool) -> Incident {
        use crate::incidents::{Kind, Severity};
        Incident {
            id,
            key: key.into(),
            kind: Kind::Silent,
            subject: key.into(),
            severity: Severity::Critical,
            state: if open { "open" } else { "resolved" }.into(),
            summary: format!("{key} silent"),
            next_step: "look".into(),
            runbook: None,
            labels: BTreeMap::new(),
            hosts: vec![key.into()],
            covered_by: None,
            opened_at: t(1),
            updated_at: t(1),
            notified_at: Some(t(1)),
            resolved_at: (!open).then(|| t(2)),
            resolution: None,
            notified: vec!["hook".into()],
            told_hosts: 1,
            told_at: Some(t(1)),
            history: vec![],
        }
    }

    pub fn run_incidents<S: IncidentStore>(open: impl Fn() -> S) {
        let inc = incident;
        let mut s = open();
        assert_eq!(s.load_open_incidents().unwrap(), (vec![], 1));
        let a = inc(1, "silent/a", true);
        let b = inc(2, "silent/b", true);
        s.record(
            &[a.clone(), b.clone()],
            &[
                (1, "hook".into(), Action::Trigger, a.clone()),
                (2, "hook".into(), Action::Trigger, b.clone()),
                (1, "pager".into(), Action::Trigger, a.clone()),
            ],
            t(1),
        )
        .unwrap();
        // Resolved across a reopen: open ones come back, ids go on.
        let b2 = inc(2, "silent/b", false);
        open()
            .record(
                std::slice::from_ref(&b2),
                &[(2, "hook".into(), Action::Resolve, b2.clone())],
                t(2),
            )
            .unwrap();
        let s = open();
        let (still, next) = s.load_open_incidents().unwrap();
        assert_eq!((still, next), (vec![a.clone()], 3));
        // In order per receiver; delivery outcomes kept.
        let hook = s.pending("hook", 10).unwrap();
        let order: Vec<(i64, Action)> = hook.iter().map(|r| (r.incident, r.action)).collect();
        assert_eq!(
            order,
            [
                (1, Action::Trigger),
                (2, Action::Trigger),
                (2, Action::Resolve)
            ]
        );
        let mut s = open();
        s.delivered(hook[0].id, &Delivery::Sent, t(3)).unwrap();
        s.delivered(
            hook[1].id,
            &Delivery::Retry {
                at: t(60),
                error: "HTTP 503".into(),
            },
            t(3),
        )
        .unwrap();
        let pending = open().pending("hook", 10).unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!((pending[0].attempts, pending[0].next_at), (1, t(60)));
        assert_eq!(pending[0].last_error.as_deref(), Some("HTTP 503"));
        s.delivered(
            pending[0].id,
            &Delivery::Failed {
                error: "HTTP 400".into(),
            },
            t(4),
        )
        .unwrap();
        let (one, deliveries) = open().incident(2).unwrap().unwrap();
        assert_eq!(one, b2);
        let states: Vec<&str> = deliveries.iter().map(|d| d.state.as_str()).collect();
        assert_eq!(states, ["failed", "pending"]);
        assert!(open().incident(99).unwrap().is_none());
        let resolved = open().incidents(Some(false), 10).unwrap();
        assert_eq!(resolved, vec![b2.clone()]);
        assert_eq!(open().incidents(None, 10).unwrap().len(), 2);
        let mut tally = open().outbox_tally().unwrap();
        tally.sort_by(|x, y| (&x.receiver, &x.state).cmp(&(&y.receiver, &y.state)));
        let counts: Vec<(&str, &str, u64)> = tally
            .iter()
            .map(|x| (x.receiver.as_str(), x.state.as_str(), x.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("hook", "failed", 1),
                ("hook", "pending", 1),
                ("hook", "sent", 1),
                ("pager", "pending", 1)
            ]
        );
        assert_eq!(open().pending_count("hook").unwrap(), (1, Some(t(2))));
        assert_eq!(open().pending_count("nobody").unwrap(), (0, None));
        // Pruning keeps what is open or pending, however old.
        let mut s = open();
        assert_eq!(
            s.prune_incidents(t(100)).unwrap(),
            2,
            "hook's sent and failed; b stays while its resolve is pending"
        );
        assert_eq!(s.incidents(None, 10).unwrap(), vec![b2, a]);
        assert_eq!(s.pending("hook", 10).unwrap().len(), 1);
        assert_eq!(s.pending("pager", 10).unwrap().len(), 1);
    }

    fn credentials<S: Store>(open: &impl Fn() -> S) {
        let mut s = open();
        let issue = |sha: &str, host: &str, identity: &str, at: u32| {
            Write::from(CredentialRecord::Issue {
                sha256: sha.into(),
                host: host.into(),
                identity: identity.into(),
                at: t(at),
                bmc_address: None,
            })
        };
        s.commit(&[
            issue("h1", "web1", "m1/i1", 1),
            issue("h2", "web2", "m2/i2", 1),
        ])
        .unwrap();
        // A clone (another identity) keeps the first; a re-enrollment of the same
        // identity replaces its own earlier credential.
        s.commit(&[issue("h3", "web1", "m9/i9", 2)]).unwrap();
        s.commit(&[issue("h4", "web2", "m2/i2", 3)]).unwrap();
        let mut c = open().load_credentials().unwrap();
        c.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        let revoked: Vec<(&str, bool)> = c.iter().map(|r| (r.sha256.as_str(), r.revoked)).collect();
        assert_eq!(
            revoked,
            [("h1", false), ("h2", true), ("h3", false), ("h4", false)]
        );
        assert_eq!(
            (c[0].host.as_str(), c[0].identity.as_str()),
            ("web1", "m1/i1")
        );
        let mut s = open();
        s.commit(&[Write::Credential(CredentialRecord::RevokeHost {
            host: "web1".into(),
            at: t(4),
        })])
        .unwrap();
        let live: Vec<String> = open()
            .load_credentials()
            .unwrap()
            .into_iter()
            .filter(|r| !r.revoked)
            .map(|r| r.sha256)
            .collect();
        assert_eq!(live, ["h4"]);
        // History: newest first, per host.
        let line = |host: &str, at: u32, msg: &str| {
            Write::from(HistoryRecord {
                host: host.into(),
                at: t(at),
                kind: "state".into(),
                message: msg.into(),
            })
        };
        s.commit(&[
            line("web1", 5, "silent"),
            line("web1", 6, "heard again"),
            line("web2", 5, "x"),
        ])
        .unwrap();
        let h = open().recent_history("web1", 10).unwrap();
        let msgs: Vec<&str> = h.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "heard again",
                "silent",
                "credentials revoked by an operator (2)",
                "enrolled identity m9/i9",
                "enrolled identity m1/i1"
            ]
        );
        assert_eq!(h[0].at, t(6));
        assert_eq!(open().recent_history("web1", 1).unwrap().len(), 1);
        // Every host's, since a time: newest first, bounded.
        let since: Vec<(String, String)> = open()
            .history_since(t(5), 10)
            .unwrap()
            .into_iter()
            .map(|l| (l.host, l.message))
            .collect();
        let pair = |h: &str, m: &str| (h.to_owned(), m.to_owned());
        assert_eq!(
            since,
            [
                pair("web1", "heard again"),
                pair("web2", "x"),
                pair("web1", "silent")
            ]
        );
        assert_eq!(open().history_since(t(5), 1).unwrap().len(), 1);
        assert!(open().history_since(t(7), 10).unwrap().is_empty());
    }

    fn latest_wins_and_first_seen_stays<S: Store>(open: &impl Fn() -> S) {
        let mut s = open();
        let st = s
            .commit(&hbs([
                hb("a", 1, Health::Ok, vec![]),
                hb("b", 1, Health::Ok, vec![]),
                hb("a", 2, Health::Critical, vec![]),
            ]))
            .unwrap();
        assert_eq!(st.hosts, 2, "one row per host per batch");
        s.commit(&hbs([hb("a", 3, Health::Warn, vec![])])).unwrap();
        drop(s);
        let s = open();
        let mut hosts = s.load_hosts().unwrap();
        hosts.sort_by(|x, y| x.host.cmp(&y.host));
        let a = &hosts[0];
        assert_eq!(
            (a.host.as_str(), a.health, a.last_heard, a.first_seen),
            ("a", Health::Warn, t(3), t(1))
        );
        assert_eq!(a.reason, "a at 3");
        assert_eq!(s.host_state("a").unwrap().as_deref(), Some("{\"at\":3}"));
        assert_eq!(s.host_state("nobody").unwrap(), None);
        // Same fingerprint, only timestamps moved: the small row is updated, the state kept.
        let mut s = open();
        let mut same = hb("a", 4, Health::Warn, vec![]);
        same.state_fingerprint = 3;
        s.commit(&hbs([same.clone()])).unwrap();
        same.received_at = t(5);
        same.state_json = StateJson::Text("{\"at\":5}".into());
        s.commit(&hbs([same])).unwrap();
        assert_eq!(s.host_state("a").unwrap().as_deref(), Some("{\"at\":4}"));
        let a = s
            .load_hosts()
            .unwrap()
            .into_iter()
            .find(|h| h.host == "a")
            .unwrap();
        assert_eq!(a.last_heard, t(5), "the heartbeat itself is recorded");
        assert_eq!(a.labels["region"], "us-south");
        // Nothing but the time moves (same row, same state): still durable, across a reopen.
        let mut quiet = hb("q", 10, Health::Ok, vec![]);
        s.commit(&hbs([quiet.clone()])).unwrap();
        for at in [11, 12, 13] {
            quiet.received_at = t(at);
            s.commit(&hbs([quiet.clone()])).unwrap();
        }
        drop(s);
        let q = open()
            .load_hosts()
            .unwrap()
            .into_iter()
            .find(|h| h.host == "q")
            .unwrap();
        assert_eq!((q.last_heard, q.first_seen), (t(13), t(10)));
        assert_eq!(hosts[1].host, "b");
    }

    fn events_are_deduplicated<S: Store>(open: &impl Fn() -> S) {
        let mut s = open();
        let st = s
            .commit(&hbs([hb(
                "c",
                1,
                Health::Ok,
                vec![event(1, "one"), event(2, "two")],
            )]))
            .unwrap();
        assert_eq!((st.events_new, st.events_duplicate), (2, 0));
        // At-least-once: the agent resends 2 with 3.
        let st = s
            .commit(&hbs([hb(
                "c",
                2,
                Health::Ok,
                vec![event(2, "two"), event(3, "three")],
            )]))
            .unwrap();
        assert_eq!((st.events_new, st.events_duplicate), (1, 1));
        let ev = open().recent_events("c", 10).unwrap();
        let msgs: Vec<&str> = ev.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["three", "two", "one"]);
        assert_eq!(ev[0].pid, Some(42));
        assert_eq!(open().recent_events("c", 1).unwrap().len(), 1);
        assert!(open().recent_events("nobody", 10).unwrap().is_empty());
    }

    fn maintenance_and_lifecycle<S: Store>(open: &impl Fn() -> S) {
        let mut s = open();
        s.commit(&hbs([hb("d", 1, Health::Ok, vec![])])).unwrap();
        assert!(s
            .set_maintenance("d", Some((t(7200), "kernel patching")))
            .unwrap());
        assert!(s.set_lifecycle("d", Some(Lifecycle::Available)).unwrap());
        assert!(!s.set_maintenance("nobody", None).unwrap());
        // A heartbeat does not undo what an operator set.
        s.commit(&hbs([hb("d", 2, Health::Ok, vec![])])).unwrap();
        let d = open()
            .load_hosts()
            .unwrap()
            .into_iter()
            .find(|h| h.host == "d")
            .unwrap();
        assert_eq!(d.maintenance, Some((t(7200), "kernel patching".to_owned())));
        assert_eq!(d.lifecycle, Some(Lifecycle::Available));
        let mut s = open();
        s.set_maintenance("d", None).unwrap();
        s.set_lifecycle("d", None).unwrap();
        let d = open()
            .load_hosts()
            .unwrap()
            .into_iter()
            .find(|h| h.host == "d")
            .unwrap();
        assert_eq!((d.maintenance, d.lifecycle), (None, None));
    }

    fn pruning<S: Store>(open: &impl Fn() -> S) {
        let mut s = open();
        s.commit(&hbs([hb("e", 10, Health::Ok, vec![event(1, "old")])]))
            .unwrap();
        s.commit(&hbs([hb("e", 100, Health::Ok, vec![event(2, "new")])]))
            .unwrap();
        // Everything received before the cut goes, whichever host sent it (earlier steps of
        // this suite left three events of "c" at t(1) and t(2)).
        assert_eq!(s.prune_events(t(50)).unwrap(), 4);
        let ev = s.recent_events("e", 10).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].message, "new");
        assert!(s.recent_events("c", 10).unwrap().is_empty());
        assert_eq!(s.prune_events(t(50)).unwrap(), 0);
    }
}
