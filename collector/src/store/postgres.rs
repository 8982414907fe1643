//! PostgreSQL: the store several collectors share. A commit is one transaction of a few
//! statements whatever the batch's size (arrays through `unnest`), acknowledged only
//! once PostgreSQL said it committed (`synchronous_commit` as the server has it, `on` by
//! default: flushed to its WAL).
//!
//! A routine heartbeat (nothing but its time moved) costs one row update: `hosts.fp`
//! holds a fingerprint of the row and of the agent's state, and the batch's first
//! statement moves `last_heard` only where it matches. The hosts it missed (new, or
//! changed, here or through another collector) are written in full. Nothing is cached
//! between batches, so what another replica wrote is never overwritten with a stale copy.

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use postgres::Client;
use rollcall_proto::Event;

use super::{
    CommitStats, CredentialRecord, CredentialRow, HeartbeatRecord, HistoryRecord, HostRow, Store,
    StoreError, Write,
};
use crate::state::Lifecycle;

/// Where the database is, and how to reach it.
#[derive(Clone)]
pub struct Target {
    pub(crate) config: postgres::Config,
    /// The URL without its password, for messages.
    pub shown: String,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.shown == other.shown && self.config.get_password() == other.config.get_password()
    }
}

/// How long the change feed keeps a change: a collector away longer loads every host
/// again.
const FEED_KEPT: chrono::Duration = chrono::Duration::hours(1);

/// How long connecting may take, and how soon a dead server is noticed on a quiet
/// connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
const TCP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Target {
    /// A new connection of its own (the leader's session, a follower's).
    pub(crate) fn connect(&self) -> Result<Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }

    /// `url` is `postgres://user@host:port/db?options` (or the `key=value` form); a
    /// password comes from `password` (a file or the environment), never from the URL, which
    /// ends up in process listings and logs.
    pub fn parse(url: &str, password: Option<String>) -> Result<Target, String> {
        let mut config: postgres::Config = url.parse().map_err(|e| {
            format!("store {url:?} is not a PostgreSQL URL ({e}); write it like \"postgres://rollcall@db.example:5432/rollcall\"")
        })?;
        if config.get_password().is_some() {
            return Err(
                "the store URL holds a password; remove it and put the password in store_password_file or the PGPASSWORD environment variable"
                    .into(),
            );
        }
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_user().is_none() {
            config.user("rollcall");
        }
        if config.get_dbname().is_none() {
            config.dbname("rollcall");
        }
        // A server that stops answering (a partition, not a refusal) fails a call within
        // TCP_TIMEOUT instead of the kernel's quarter of an hour: the leader's session
        // notices it lost the lock, the writer answers 503.
        config
            .application_name("rollcall-collector")
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_user_timeout(TCP_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE);
        let ports = config.get_ports();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    postgres::config::Host::Tcp(h) => h.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                };
                match ports.get(i).or(ports.first()) {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            })
            .collect();
        let shown = format!(
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or_default(),
            hosts.join(","),
            config.get_dbname().unwrap_or_default()
        );
        Ok(Target {
            config,
            shown,
            tls: tls_connector()?,
        })
    }
}

/// TLS to the database when its URL asks for it (`sslmode=require`, or `prefer`, the
/// default, when the server offers it): the system's roots, and the CA in `PGSSLROOTCERT`
/// if that is set, as libpq reads it.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let extra = std::env::var_os("PGSSLROOTCERT").map(std::path::PathBuf::from);
    let roots =
        crate::tls::system_roots_and(extra.as_deref()).map_err(|e| format!("PGSSLROOTCERT {e}"))?;
    let tls = crate::tls::client_config(roots).map_err(|e| e.to_string())?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

pub struct PgStore {
    target: Target,
    /// Which collector writes (the feed's origin), and the epoch it leads in.
    pub(super) replica: std::sync::Arc<crate::replica::Replica>,
    /// Connected on first use and again after the server went away; `&self` reads need it
    /// mutable too.
    client: RefCell<Option<Client>>,
}

/// Everything a routine heartbeat repeats: the host row but its time, and the state.
fn fingerprint(hb: &HeartbeatRecord) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (super::row_fingerprint(hb), hb.state_fingerprint).hash(&mut h);
    h.finish() as i64
}

impl PgStore {
    /// Connects, and brings the schema to this binary's version: as a collector of its
    /// own, which leads nothing (epoch 0, as an empty database has it).
    pub fn open(target: &Target) -> Result<PgStore, StoreError> {
        PgStore::open_as(target, crate::replica::Replica::shared())
    }

    /// As [`PgStore::open`], writing as `replica`.
    pub fn open_as(
        target: &Target,
        replica: std::sync::Arc<crate::replica::Replica>,
    ) -> Result<PgStore, StoreError> {
        let s = PgStore {
            target: target.clone(),
            client: RefCell::new(None),
            replica,
        };
        s.with(|c| super::schema::migrate_pg(c, &target.shown))?;
        Ok(s)
    }

    pub(super) fn err(&self) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |source| StoreError::Postgres {
            target: self.target.shown.clone(),
            source,
        }
    }

    pub(super) fn corrupt(&self, what: &'static str, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.target.shown.clone(),
            what,
            detail,
        }
    }

    /// Runs `f` on the connection, connecting first if there is none; a connection the
    /// server closed is dropped, to be made again by the next call.
    ///
    /// The client runs its own small runtime to wait on the server; called from one of the
    /// collector's async tasks, the wait is declared blocking (`block_in_place`) so that
    /// neither runtime stalls the other.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| self.with_here(f)),
            _ => self.with_here(f),
        }
    }

    fn with_here<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            let c = self.target.connect().map_err(self.err())?;
            *slot = Some(c);
        }
        let client = slot.as_mut().expect("connected above");
        let out = f(client);
        if client.is_closed() {
            *slot = None;
        }
        out
    }

    /// Runs `f` in one transaction, committed if it returned `Ok`.
    pub(super) fn transaction<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.in_transaction(|tx| f(tx).map_err(self.err()))
    }

    /// As [`PgStore::transaction`], for a body whose own errors are the store's.
    pub(super) fn in_transaction<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(self.err())?;
            let out = f(&mut tx)?;
            tx.commit().map_err(self.err())?;
            Ok(out)
        })
    }

    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.with(|c| c.query(sql, params).map_err(self.err()))
    }

    fn history_rows(&self, rows: Vec<postgres::Row>) -> Vec<HistoryRecord> {
        rows.into_iter()
            .map(|r| HistoryRecord {
                host: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                message: r.get(3),
            })
            .collect()
    }
}

/// Column arrays for one `unnest`.
#[derive(Default)]
struct HostColumns<'a> {
    name: Vec<&'a str>,
    identity: Vec<&'a str>,
    first_seen: Vec<DateTime<Utc>>,
    last_heard: Vec<DateTime<Utc>>,
    interval: Vec<i32>,
    labels: Vec<String>,
    health: Vec<&'static str>,
    reason: Vec<&'a str>,
    fp: Vec<i64>,
    state_fp: Vec<i64>,
    state: Vec<String>,
    /// False for a digest: the stored state stays.
    has_state: Vec<bool>,
}

/// Who writes a batch: the feed's origin, and the epoch it leads in (`None`: it does not
/// lead, and writes no leader's notes).
struct Writer<'a> {
    origin: &'a str,
    epoch: Option<i64>,
}

fn commit_batch(
    tx: &mut postgres::Transaction<'_>,
    batch: &[Write],
    who: Writer<'_>,
) -> Result<CommitStats, postgres::Error> {
    let mut changes = Vec::new();
    let latest = super::latest_per_host(batch);
    let mut stats = CommitStats {
        hosts: latest.len(),
        ..CommitStats::default()
    };
    if !latest.is_empty() {
        // Routine heartbeats: only the time moves, where the row already says the rest.
        let (mut names, mut ats, mut fps) = (
            Vec::with_capacity(latest.len()),
            Vec::with_capacity(latest.len()),
            Vec::with_capacity(latest.len()),
        );
        for (name, (hb, _)) in &latest {
            names.push(*name);
            ats.push(hb.received_at);
            fps.push(fingerprint(hb));
        }
        let heard = tx.query(
            "UPDATE hosts AS h SET last_heard = greatest(h.last_heard, v.at)
             FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) AS v(name, at, fp)
             WHERE h.name = v.name AND h.fp = v.fp
             RETURNING h.name",
            &[&names, &ats, &fps],
        )?;
        let heard: std::collections::HashSet<String> =
            heard.into_iter().map(|r| r.get(0)).collect();
        for name in &heard {
            changes.push(super::feed::Change::Heard {
                host: name.clone(),
                at: latest[name.as_str()].0.received_at,
            });
        }
        let mut c = HostColumns::default();
        for (name, fp) in names.iter().zip(&fps) {
            if heard.contains(*name) {
                continue;
            }
            let (hb, first) = latest[name];
            c.name.push(name);
            c.identity.push(&hb.identity);
            c.first_seen.push(first);
            c.last_heard.push(hb.received_at);
            c.interval
                .push(hb.interval_secs.min(i32::MAX as u32) as i32);
            c.labels
                .push(serde_json::to_string(&hb.labels).unwrap_or_else(|_| "{}".into()));
            c.health.push(hb.health.as_str());
            c.reason.push(&hb.reason);
            c.fp.push(*fp);
            c.state_fp.push(hb.state_fingerprint as i64);
            let text = hb.state_json.text();
            c.has_state.push(text.is_some());
            c.state
                .push(text.map(|t| t.into_owned()).unwrap_or_default());
            changes.push(super::feed::Change::Host {
                host: hb.host.clone(),
                identity: hb.identity.clone(),
                at: hb.received_at,
                interval: hb.interval_secs,
                labels: hb.labels.clone(),
                health: hb.health,
                reason: hb.reason.clone(),
                state: c.state.last().cloned().unwrap_or_default(),
                fp: hb.state_fingerprint,
                booted_at: hb.booted_at,
            });
        }
        if !c.name.is_empty() {
            // A heartbeat older than the row (one that went to another collector and
            // arrived late) changes neither the row nor the state.
            tx.execute(
                "WITH v AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                         $5::int4[], $6::text[], $7::text[], $8::text[], $9::int8[],
                                         $10::int8[], $11::text[], $12::bool[])
                        AS v(name, identity, first_seen, last_heard, interval_secs, labels, health,
                             reason, fp, state_fp, state, has_state)
                 ), written AS (
                    INSERT INTO hosts (name, identity, first_seen, last_heard, interval_secs, labels, health, reason, fp)
                    SELECT name, identity, first_seen, last_heard, interval_secs, labels::jsonb, health, reason, fp
                    FROM v
                    ON CONFLICT (name) DO UPDATE SET identity = excluded.identity,
                       last_heard = excluded.last_heard, interval_secs = excluded.interval_secs,
                       labels = excluded.labels, health = excluded.health, reason = excluded.reason,
                       fp = excluded.fp
                    WHERE hosts.last_heard <= excluded.last_heard
                    RETURNING name
                 )
                 INSERT INTO host_state (name, fingerprint, state)
                 SELECT v.name, v.state_fp, v.state FROM v JOIN written USING (name) WHERE v.has_state
                 ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state",
                &[
                    &c.name,
                    &c.identity,
                    &c.first_seen,
                    &c.last_heard,
                    &c.interval,
                    &c.labels,
                    &c.health,
                    &c.reason,
                    &c.fp,
                    &c.state_fp,
                    &c.state,
                    &c.has_state,
                ],
            )?;
        }
    }
    // Events: redeliveries are ignored by (host, seq).
    let (mut host, mut seq, mut at, mut received, mut body) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for hb in super::heartbeats(batch) {
        for e in &hb.events {
            host.push(hb.host.as_str());
            seq.push(e.seq as i64);
            at.push(e.at);
            received.push(hb.received_at);
            body.push(serde_json::to_string(e).unwrap_or_default());
        }
    }
    if !host.is_empty() {
        let n = tx.execute(
            "INSERT INTO events (host, seq, at, received_at, body)
             SELECT host, seq, at, received_at, body::jsonb
             FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::timestamptz[], $5::text[])
                  AS v(host, seq, at, received_at, body)
             ON CONFLICT (host, seq) DO NOTHING",
            &[&host, &seq, &at, &received, &body],
        )? as usize;
        stats.events_new = n;
        stats.events_duplicate = host.len() - n;
    }
    // History and credentials, in the batch's order.
    let mut lines: Vec<(String, DateTime<Utc>, &str, String)> = Vec::new();
    let mut notes: Vec<&HistoryRecord> = Vec::new();
    for w in batch {
        match w {
            Write::Heartbeat(_) => {}
            Write::Note(n) => notes.push(n),
            Write::Credential(
                r @ CredentialRecord::Issue {
                    sha256,
                    host,
                    identity,
                    at,
                    bmc_address,
                },
            ) => {
                changes.push(super::feed::Change::Credential(r.clone()));
                lines.push((
                    host.clone(),
                    *at,
                    "identity",
                    super::enrolled_line(identity, bmc_address.as_deref()),
                ));
                tx.execute(
                    "UPDATE credentials SET revoked_at = $3
                     WHERE host = $1 AND identity = $2 AND revoked_at IS NULL",
                    &[host, identity, at],
                )?;
                tx.execute(
                    "INSERT INTO credentials (sha256, host, identity, issued_at) VALUES ($1, $2, $3, $4)",
                    &[sha256, host, identity, at],
                )?;
            }
            Write::Credential(r @ CredentialRecord::RevokeHost { host, at }) => {
                changes.push(super::feed::Change::Credential(r.clone()));
                let n = tx.execute(
                    "UPDATE credentials SET revoked_at = $2 WHERE host = $1 AND revoked_at IS NULL",
                    &[host, at],
                )?;
                lines.push((host.clone(), *at, "security", super::revoked_line(n)));
            }
            Write::History(h) => lines.push((h.host.clone(), h.at, &h.kind, h.message.clone())),
        }
    }
    if !lines.is_empty() {
        let host: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
        let at: Vec<DateTime<Utc>> = lines.iter().map(|l| l.1).collect();
        let kind: Vec<&str> = lines.iter().map(|l| l.2).collect();
        let message: Vec<&str> = lines.iter().map(|l| l.3.as_str()).collect();
        // WITH ORDINALITY: ids follow the batch's order, which breaks ties of `at`.
        tx.execute(
            "INSERT INTO history (host, at, kind, message)
             SELECT host, at, kind, message
             FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])
                  WITH ORDINALITY AS v(host, at, kind, message, n)
             ORDER BY n",
            &[&host, &at, &kind, &message],
        )?;
    }
    // The leader's notes: written only while its epoch is the current one.
    if let (Some(epoch), false) = (who.epoch, notes.is_empty()) {
        let host: Vec<&str> = notes.iter().map(|l| l.host.as_str()).collect();
        let at: Vec<DateTime<Utc>> = notes.iter().map(|l| l.at).collect();
        let kind: Vec<&str> = notes.iter().map(|l| l.kind.as_str()).collect();
        let message: Vec<&str> = notes.iter().map(|l| l.message.as_str()).collect();
        tx.execute(
            "INSERT INTO history (host, at, kind, message)
             SELECT host, at, kind, message
             FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])
                  WITH ORDINALITY AS v(host, at, kind, message, n)
             WHERE (SELECT epoch FROM leadership WHERE id = 1) = $5
             ORDER BY n",
            &[&host, &at, &kind, &message, &epoch],
        )?;
    }
    super::feed::append(tx, who.origin, &changes)?;
    Ok(stats)
}

impl Store for PgStore {
    fn load_hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let rows = self.rows(
            "SELECT name, identity, first_seen, last_heard, interval_secs, labels::text, health, reason,
                    lifecycle, maint_until, maint_reason FROM hosts",
            &[],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let host: String = r.get(0);
            let labels: String = r.get(5);
            let labels = serde_json::from_str(&labels)
                .map_err(|e| self.corrupt("hosts.labels", format!("{host}: {e}")))?;
            let h: String = r.get(6);
            let health = super::sqlite::parse_health(&h)
                .ok_or_else(|| self.corrupt("hosts.health", format!("{host}: {h:?}")))?;
            let lifecycle = match r.get::<_, Option<String>>(8) {
                None => None,
                Some(l) => Some(
                    Lifecycle::parse(&l)
                        .ok_or_else(|| self.corrupt("hosts.lifecycle", format!("{host}: {l:?}")))?,
                ),
            };
            let until: Option<DateTime<Utc>> = r.get(9);
            let why: Option<String> = r.get(10);
            out.push(HostRow {
                identity: r.get(1),
                first_seen: r.get(2),
                last_heard: r.get(3),
                interval_secs: r.get::<_, i32>(4).max(0) as u32,
                labels,
                health,
                reason: r.get(7),
                lifecycle,
                maintenance: until.map(|u| (u, why.unwrap_or_default())),
                host,
            });
        }
        Ok(out)
    }

    fn load_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        let rows = self.rows(
            "SELECT sha256, host, identity, revoked_at IS NOT NULL, issued_at FROM credentials",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| CredentialRow {
                sha256: r.get(0),
                host: r.get(1),
                identity: r.get(2),
                revoked: r.get(3),
                issued_at: r.get(4),
            })
            .collect())
    }

    fn commit(&mut self, batch: &[Write]) -> Result<CommitStats, StoreError> {
        let who = Writer {
            origin: &self.replica.id,
            epoch: self.replica.is_leader().then(|| self.replica.epoch()),
        };
        self.transaction(|tx| commit_batch(tx, batch, who))
    }

    fn set_maintenance(
        &mut self,
        host: &str,
        until: Option<(DateTime<Utc>, &str)>,
    ) -> Result<bool, StoreError> {
        let (u, r) = (until.map(|(u, _)| u), until.map(|(_, r)| r));
        let change = super::feed::Change::Maintenance {
            host: host.to_owned(),
            until: until.map(|(u, r)| (u, r.to_owned())),
        };
        self.transaction(|tx| {
            let n = tx.execute(
                "UPDATE hosts SET maint_until = $2, maint_reason = $3 WHERE name = $1",
                &[&host, &u, &r],
            )?;
            super::feed::append(tx, &self.replica.id, std::slice::from_ref(&change))?;
            Ok(n == 1)
        })
    }

    fn set_lifecycle(&mut self, host: &str, l: Option<Lifecycle>) -> Result<bool, StoreError> {
        let l = l.map(Lifecycle::as_str);
        let change = super::feed::Change::Lifecycle {
            host: host.to_owned(),
            lifecycle: l.map(str::to_owned),
        };
        self.transaction(|tx| {
            let n = tx.execute(
                "UPDATE hosts SET lifecycle = $2 WHERE name = $1",
                &[&host, &l],
            )?;
            super::feed::append(tx, &self.replica.id, std::slice::from_ref(&change))?;
            Ok(n == 1)
        })
    }

    fn host_state(&self, host: &str) -> Result<Option<String>, StoreError> {
        let rows = self.rows("SELECT state FROM host_state WHERE name = $1", &[&host])?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn recent_events(&self, host: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        let rows = self.rows(
            "SELECT body::text FROM events WHERE host = $1 ORDER BY seq DESC LIMIT $2",
            &[&host, &(limit as i64)],
        )?;
        rows.into_iter()
            .map(|r| {
                let b: String = r.get(0);
                serde_json::from_str(&b)
                    .map_err(|e| self.corrupt("events.body", format!("{host}: {e}")))
            })
            .collect()
    }

    fn recent_history(&self, host: &str, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        let rows = self.rows(
            "SELECT host, at, kind, message FROM history WHERE host = $1
             ORDER BY at DESC, id DESC LIMIT $2",
            &[&host, &(limit as i64)],
        )?;
        Ok(self.history_rows(rows))
    }

    fn history_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let rows = self.rows(
            "SELECT host, at, kind, message FROM history WHERE at >= $1
             ORDER BY at DESC, id DESC LIMIT $2",
            &[&since, &(limit as i64)],
        )?;
        Ok(self.history_rows(rows))
    }

    fn prune_events(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.transaction(|tx| {
            let n = tx.execute("DELETE FROM events WHERE received_at < $1", &[&before])?;
            let h = tx.execute("DELETE FROM history WHERE at < $1", &[&before])?;
            // The change feed is for collectors that are running: one that was away
            // longer loads every host again when it starts.
            super::feed::prune(tx, Utc::now() - FEED_KEPT)?;
            Ok(n + h)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite;
    use crate::testing::postgres::Cluster;
    use rollcall_proto::Health;

    #[test]
    fn passes_the_store_suite_on_a_real_server() {
        let db = Cluster::shared().database("suite");
        suite::run(|| PgStore::open(&db).unwrap());
    }

    #[test]
    fn passes_the_incident_suite_on_a_real_server() {
        let db = Cluster::shared().database("incident_suite");
        suite::run_incidents(|| PgStore::open(&db).unwrap());
    }

    #[test]
    fn the_feed_carries_each_commit_once_in_order_and_says_when_some_were_pruned_unread() {
        use crate::store::feed::{self, Change};
        let db = Cluster::shared().database("feed");
        let mut a = PgStore::open(&db).unwrap();
        let mut c = db.connect().unwrap();
        let start = feed::start(&mut c).unwrap();
        a.commit(&[Write::from(suite::hb("f", 1, Health::Ok, vec![]))])
            .unwrap();
        let mut routine = suite::hb("f", 2, Health::Ok, vec![]);
        routine.reason = "f at 1".into();
        routine.state_fingerprint = 1;
        a.commit(&[Write::from(routine)]).unwrap();
        a.set_maintenance("f", Some((suite::t(99), "swap")))
            .unwrap();
        let feed::Read::Entries(rows) = feed::read(&mut c, start, 100).unwrap() else {
            panic!("nothing was pruned")
        };
        let kinds: Vec<&str> = rows
            .iter()
            .flat_map(|e| &e.changes)
            .map(|ch| match ch {
                Change::Host { .. } => "host",
                Change::Heard { .. } => "heard",
                Change::Maintenance { .. } => "maintenance",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["host", "heard", "maintenance"]);
        assert!(rows.iter().all(|e| e.origin == a.replica.id));
        let last = rows.last().unwrap().position;
        assert_eq!(
            feed::read(&mut c, last, 100).unwrap(),
            feed::Read::Entries(vec![]),
            "read once"
        );
        // Pruned before one collector read them: it is told; one that read them is not.
        let mut tx = c.transaction().unwrap();
        feed::prune(&mut tx, Utc::now() + chrono::Duration::hours(1)).unwrap();
        tx.commit().unwrap();
        assert_eq!(feed::read(&mut c, start, 100).unwrap(), feed::Read::Pruned);
        assert_eq!(
            feed::read(&mut c, last, 100).unwrap(),
            feed::Read::Entries(vec![])
        );
        // What is written after the prune is read after its position as before.
        a.set_maintenance("f", None).unwrap();
        let feed::Read::Entries(after) = feed::read(&mut c, last, 100).unwrap() else {
            panic!("nothing unread was pruned")
        };
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_defaults_are_named() {
        let e = Target::parse("postgres://rollcall:hunter2@db/rollcall", None).unwrap_err();
        assert!(
            e.contains("store_password_file") && !e.contains("hunter2"),
            "{e}"
        );
        let t = Target::parse("postgres://db.example:5433", Some("pw".into())).unwrap();
        assert_eq!(t.shown, "postgres://rollcall@db.example:5433/rollcall");
        assert!(Target::parse("mysql://x", None)
            .unwrap_err()
            .contains("postgres://"));
    }

    #[test]
    fn a_routine_heartbeat_moves_only_the_time_and_a_change_elsewhere_is_not_undone() {
        let db = Cluster::shared().database("routine");
        let mut a = PgStore::open(&db).unwrap();
        let mut b = PgStore::open(&db).unwrap();
        let h1 = suite::hb("r", 1, Health::Ok, vec![]);
        a.commit(&[Write::from(h1.clone())]).unwrap();
        // The host moved to the other collector and changed there...
        let mut h2 = suite::hb("r", 2, Health::Critical, vec![]);
        h2.state_fingerprint = 99;
        b.commit(&[Write::from(h2)]).unwrap();
        // ...then came back with its first state again: written in full, not only its time.
        let mut h3 = h1.clone();
        h3.received_at = suite::t(3);
        a.commit(&[Write::from(h3)]).unwrap();
        let row = &a.load_hosts().unwrap()[0];
        assert_eq!((row.health, row.last_heard), (Health::Ok, suite::t(3)));
        assert_eq!(a.host_state("r").unwrap().as_deref(), Some("{\"at\":1}"));
        // A late heartbeat from before changes nothing.
        let mut late = suite::hb("r", 2, Health::Warn, vec![]);
        late.state_fingerprint = 7;
        b.commit(&[Write::from(late)]).unwrap();
        let row = &a.load_hosts().unwrap()[0];
        assert_eq!((row.health, row.last_heard), (Health::Ok, suite::t(3)));
    }
}
