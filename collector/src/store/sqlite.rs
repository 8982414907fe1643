//! Embedded SQLite: WAL, one writer, `synchronous = FULL` so that a commit that returned
//! is on disk (a heartbeat is acknowledged only after that).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rollcall_proto::{Event, Health};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    CommitStats, CredentialRecord, CredentialRow, HistoryRecord, HostRow, Store, StoreError, Write,
};
use crate::state::Lifecycle;

/// `heard` is folded into `hosts` once it holds this many rows, or this long after the
/// last fold.
const FOLD_ROWS: u64 = 200_000;
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// WAL pages (4 KiB) before an automatic checkpoint.
const CHECKPOINT_PAGES: i64 = 8000;

/// What the writer last wrote of a host.
#[derive(Debug, Clone, Copy)]
struct Written {
    /// The fingerprints of the state and of the host row, so that neither is rewritten
    /// unchanged.
    state: u64,
    row: u64,
    /// The row's rowid: where a fold writes its time.
    rowid: i64,
    /// Its latest time in `heard` not folded yet (ms); 0 when none.
    heard: i64,
}

pub struct SqliteStore {
    path: PathBuf,
    pub(super) conn: Connection,
    /// Per host (by a hash of its name: no copy of a million names), what this process
    /// last wrote of it. Two names sharing a hash only cost a rewrite: the row's
    /// fingerprint holds the name. Empty after a restart: the first heartbeat of each host
    /// writes its row and state.
    written: HashMap<u64, Written>,
    name_hash: std::hash::RandomState,
    /// The database's `schema_version` when the rowids in `written` were learned: a
    /// VACUUM (which may renumber rows) or any schema change moves it.
    schema_version: i64,
    /// Rows in `heard` not yet folded into `hosts`, and when that was last done.
    heard_rows: u64,
    folded_at: std::time::Instant,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn health_str(h: Health) -> &'static str {
    h.as_str()
}

pub(super) fn parse_health(s: &str) -> Option<Health> {
    match s {
        "ok" => Some(Health::Ok),
        "warn" => Some(Health::Warn),
        "critical" => Some(Health::Critical),
        _ => None,
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "busy_timeout", 5000)
            .map_err(err)?;
        // Let the WAL grow to CHECKPOINT_PAGES before it is copied back, so that a page
        // written many times meanwhile (the heard log's tail, busy host rows) is copied once.
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
            .map_err(err)?;
        super::schema::migrate(&mut conn, path, super::schema::SQLITE)?;
        let mut store = SqliteStore {
            path: path.to_owned(),
            conn,
            written: HashMap::new(),
            name_hash: std::hash::RandomState::new(),
            schema_version: 0,
            heard_rows: 0,
            folded_at: std::time::Instant::now(),
        };
        store.schema_version = store.schema_version().map_err(err)?;
        // What an earlier process logged and did not fold. Should it fail, the hosts are
        // still read with their logged times (`load_hosts`), and the next fold retries.
        if let Err(e) = store.fold_log() {
            log::warn!("folding heard times into hosts failed (retried later): {e}");
        }
        Ok(store)
    }

    /// Folds the heard times this process logged into `hosts.last_heard`: one update per
    /// host, by rowid, however often it was heard meanwhile; then empties the log.
    fn fold_heard(&mut self) -> Result<(), StoreError> {
        let mut pending: Vec<(i64, i64)> = self
            .written
            .values()
            .filter(|w| w.heard != 0)
            .map(|w| (w.rowid, w.heard))
            .collect();
        pending.sort_unstable();
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        // Read in the transaction: a VACUUM that commits after it makes the updates below
        // fail (a stale snapshot), and the next fold sees the new version.
        let version: i64 = tx
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .map_err(err)?;
        if version == self.schema_version {
            {
                let mut update = tx
                    .prepare_cached(
                        "UPDATE hosts SET last_heard = max(last_heard, ?2) WHERE rowid = ?1",
                    )
                    .map_err(err)?;
                for (rowid, at) in pending {
                    update.execute(params![rowid, at]).map_err(err)?;
                }
            }
            tx.execute("DELETE FROM heard", []).map_err(err)?;
            tx.commit().map_err(err)?;
            for w in self.written.values_mut() {
                w.heard = 0;
            }
        } else {
            // Rows may have been renumbered (a VACUUM by hand): fold by name from the log,
            // and learn each rowid again from the host's next write.
            drop(tx);
            log::info!(
                "the schema of {} changed under this collector (a VACUUM?): heard times folded by name",
                self.path.display()
            );
            self.fold_log()?;
            self.written.clear();
            self.schema_version = version;
        }
        self.heard_rows = 0;
        self.folded_at = std::time::Instant::now();
        Ok(())
    }

    fn schema_version(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
    }

    /// Folds whatever `heard` holds, read from the log itself: at open, for the times an
    /// earlier process logged (this one holds none of them in memory).
    fn fold_log(&mut self) -> Result<(), StoreError> {
        let err = self.err();
        // Most opens find the log empty: no write transaction for them.
        let logged: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM heard)", [], |r| r.get(0))
            .map_err(&err)?;
        if !logged {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        tx.execute(
            "UPDATE hosts SET last_heard = max(hosts.last_heard, h.at)
             FROM (SELECT j.value ->> 1 AS name, max(j.value ->> 0) AS at
                   FROM heard, json_each(heard.times) AS j GROUP BY 1) AS h
             WHERE hosts.name = h.name",
            [],
        )
        .map_err(&err)?;
        tx.execute("DELETE FROM heard", []).map_err(&err)?;
        tx.commit().map_err(err)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The latest time in `heard` per host (not yet folded into `hosts`).
    fn heard_latest(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT rowid, times FROM heard")
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        let mut latest = HashMap::new();
        while let Some(r) = rows.next().map_err(self.err())? {
            let (id, times): (i64, String) =
                (r.get(0).map_err(self.err())?, r.get(1).map_err(self.err())?);
            let pairs: Vec<(i64, String)> = serde_json::from_str(&times)
                .map_err(|e| self.corrupt("heard.times", format!("row {id}: {e}")))?;
            for (at, host) in pairs {
                let t = latest.entry(host).or_insert(at);
                *t = at.max(*t);
            }
        }
        Ok(latest)
    }

    pub(super) fn corrupt(&self, what: &'static str, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            what,
            detail,
        }
    }
}

impl Store for SqliteStore {
    fn load_hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, identity, first_seen, last_heard, interval_secs, labels, health, reason,
                        lifecycle, maint_until, maint_reason FROM hosts",
            )
            .map_err(self.err())?;
        type Raw = (
            String,
            String,
            i64,
            i64,
            u32,
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .map_err(self.err())?;
        let heard = self.heard_latest()?;
        let mut out = Vec::new();
        for raw in rows {
            let (
                host,
                identity,
                first_seen,
                last_heard,
                interval_secs,
                labels,
                health,
                reason,
                lifecycle,
                mu,
                mr,
            ): Raw = raw.map_err(self.err())?;
            let last_heard = heard
                .get(&host)
                .map_or(last_heard, |h| (*h).max(last_heard));
            let labels = serde_json::from_str(&labels)
                .map_err(|e| self.corrupt("hosts.labels", format!("{host}: {e}")))?;
            let health = parse_health(&health)
                .ok_or_else(|| self.corrupt("hosts.health", format!("{host}: {health:?}")))?;
            let lifecycle = match lifecycle {
                None => None,
                Some(l) => Some(
                    Lifecycle::parse(&l)
                        .ok_or_else(|| self.corrupt("hosts.lifecycle", format!("{host}: {l:?}")))?,
                ),
            };
            out.push(HostRow {
                host,
                identity,
                first_seen: from_ms(first_seen),
                last_heard: from_ms(last_heard),
                interval_secs,
                labels,
                health,
                reason,
                lifecycle,
                maintenance: mu.map(|u| (from_ms(u), mr.unwrap_or_default())),
            });
        }
        Ok(out)
    }

    fn load_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sha256, host, identity, revoked_at IS NOT NULL, issued_at FROM credentials",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CredentialRow {
                    sha256: r.get(0)?,
                    host: r.get(1)?,
                    identity: r.get(2)?,
                    revoked: r.get(3)?,
                    issued_at: from_ms(r.get(4)?),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn commit(&mut self, batch: &[Write]) -> Result<CommitStats, StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // One row update per host per batch.
        let latest = super::latest_per_host(batch);
        let tx = self.conn.transaction().map_err(err)?;
        let mut stats = CommitStats::default();
        let mut written_now = Vec::new();
        let mut heard_rows = 0;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO hosts (name, identity, first_seen, last_heard, interval_secs, labels, health, reason)
                     VALUES (?1, ?2, ?8, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(name) DO UPDATE SET identity = excluded.identity, last_heard = excluded.last_heard,
                        interval_secs = excluded.interval_secs, labels = excluded.labels, health = excluded.health,
                        reason = excluded.reason
                     RETURNING rowid",
                )
                .map_err(err)?;
            let mut state = tx
                .prepare_cached(
                    "INSERT INTO host_state (name, fingerprint, state) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state",
                )
                .map_err(err)?;
            let mut heard = Vec::new();
            for (hb, first_seen) in latest.values() {
                let row = super::row_fingerprint(hb);
                let name = self.name_hash.hash_one(hb.host.as_str());
                let was = self.written.get(&name).copied().unwrap_or(Written {
                    state: !hb.state_fingerprint,
                    row: !row,
                    rowid: 0,
                    heard: 0,
                });
                let mut now = Written { row, ..was };
                if was.row == row {
                    heard.push((ms(hb.received_at), hb.host.as_str()));
                    now.heard = ms(hb.received_at);
                } else {
                    let labels = serde_json::to_string(&hb.labels).unwrap_or_else(|_| "{}".into());
                    // The row now holds this time: nothing of it is left to fold.
                    now.heard = 0;
                    now.rowid = upsert
                        .query_row(
                            params![
                                hb.host,
                                hb.identity,
                                ms(hb.received_at),
                                hb.interval_secs,
                                labels,
                                health_str(hb.health),
                                hb.reason,
                                ms(*first_seen)
                            ],
                            |r| r.get(0),
                        )
                        .map_err(err)?;
                }
                stats.hosts += 1;
                now.state = match hb.state_json.text() {
                    Some(text) if was.state != hb.state_fingerprint => {
                        state
                            .execute(params![hb.host, hb.state_fingerprint as i64, &*text])
                            .map_err(err)?;
                        hb.state_fingerprint
                    }
                    // A digest: the stored state is the one it names.
                    None => hb.state_fingerprint,
                    Some(_) => was.state,
                };
                written_now.push((name, now));
            }
            if !heard.is_empty() {
                let times = serde_json::to_string(&heard).expect("pairs of a number and a string");
                tx.prepare_cached("INSERT INTO heard (times) VALUES (?1)")
                    .and_then(|mut st| st.execute([times]))
                    .map_err(err)?;
                heard_rows = heard.len() as u64;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (host, seq, at, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            for hb in super::heartbeats(batch) {
                for e in &hb.events {
                    let body = serde_json::to_string(e).unwrap_or_default();
                    let n = insert
                        .execute(params![
                            hb.host,
                            e.seq as i64,
                            ms(e.at),
                            ms(hb.received_at),
                            body
                        ])
                        .map_err(err)?;
                    if n == 1 {
                        stats.events_new += 1;
                    } else {
                        stats.events_duplicate += 1;
                    }
                }
            }
        }
        let history = |host: &str, at: DateTime<Utc>, kind: &str, message: &str| {
            tx.prepare_cached(
                "INSERT INTO history (host, at, kind, message) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![host, ms(at), kind, message]))
            .map(|_| ())
            .map_err(err)
        };
        for w in batch {
            match w {
                Write::Heartbeat(_) => {}
                Write::Credential(CredentialRecord::Issue {
                    sha256,
                    host,
                    identity,
                    at,
                    bmc_address,
                }) => {
                    history(
                        host,
                        *at,
                        "identity",
                        &super::enrolled_line(identity, bmc_address.as_deref()),
                    )?;
                    tx.prepare_cached(
                        "UPDATE credentials SET revoked_at = ?3
                         WHERE host = ?1 AND identity = ?2 AND revoked_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![host, identity, ms(*at)]))
                    .map_err(err)?;
                    tx.prepare_cached(
                        "INSERT INTO credentials (sha256, host, identity, issued_at) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| s.execute(params![sha256, host, identity, ms(*at)]))
                    .map_err(err)?;
                }
                Write::Credential(CredentialRecord::RevokeHost { host, at }) => {
                    let n = tx
                        .prepare_cached(
                            "UPDATE credentials SET revoked_at = ?2 WHERE host = ?1 AND revoked_at IS NULL",
                        )
                        .and_then(|mut s| s.execute(params![host, ms(*at)]))
                        .map_err(err)?;
                    history(host, *at, "security", &super::revoked_line(n as u64))?;
                }
                Write::History(h) | Write::Note(h) => history(&h.host, h.at, &h.kind, &h.message)?,
            }
        }
        tx.commit().map_err(err)?;
        // Only once durable: a rolled-back state must be written again next time.
        self.written.extend(written_now);
        self.heard_rows += heard_rows;
        if self.heard_rows >= FOLD_ROWS
            || (self.heard_rows > 0 && self.folded_at.elapsed() >= FOLD_EVERY)
        {
            // Durable either way: a failed fold leaves the rows to the next one.
            if let Err(e) = self.fold_heard() {
                log::warn!("folding heard times into hosts failed (retried later): {e}");
            }
        }
        Ok(stats)
    }

    fn set_maintenance(
        &mut self,
        host: &str,
        until: Option<(DateTime<Utc>, &str)>,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE hosts SET maint_until = ?2, maint_reason = ?3 WHERE name = ?1",
                params![host, until.map(|(u, _)| ms(u)), until.map(|(_, r)| r)],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn set_lifecycle(&mut self, host: &str, l: Option<Lifecycle>) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE hosts SET lifecycle = ?2 WHERE name = ?1",
                params![host, l.map(Lifecycle::as_str)],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn host_state(&self, host: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT state FROM host_state WHERE name = ?1",
                params![host],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn recent_events(&self, host: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM events WHERE host = ?1 ORDER BY seq DESC LIMIT ?2")
            .map_err(self.err())?;
        let bodies = stmt
            .query_map(params![host, limit as i64], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        let mut out = Vec::new();
        for b in bodies {
            let b = b.map_err(self.err())?;
            out.push(
                serde_json::from_str(&b)
                    .map_err(|e| self.corrupt("events.body", format!("{host}: {e}")))?,
            );
        }
        Ok(out)
    }

    fn recent_history(&self, host: &str, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, kind, message FROM history WHERE host = ?1 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![host, limit as i64], |r| {
                Ok(HistoryRecord {
                    host: host.to_owned(),
                    at: from_ms(r.get(0)?),
                    kind: r.get(1)?,
                    message: r.get(2)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn history_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT host, at, kind, message FROM history WHERE at >= ?1 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![ms(since), limit as i64], |r| {
                Ok(HistoryRecord {
                    host: r.get(0)?,
                    at: from_ms(r.get(1)?),
                    kind: r.get(2)?,
                    message: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn prune_events(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM events WHERE received_at < ?1",
                params![ms(before)],
            )
            .map_err(self.err())?;
        let h = self
            .conn
            .execute("DELETE FROM history WHERE at < ?1", params![ms(before)])
            .map_err(self.err())?;
        Ok((n + h) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite;

    #[test]
    fn passes_the_store_suite_on_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        suite::run(|| SqliteStore::open(&path).unwrap());
        // WAL mode is what lets readers run beside the one writer.
        let s = SqliteStore::open(&path).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn passes_the_incident_suite_on_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        suite::run_incidents(|| SqliteStore::open(&path).unwrap());
    }

    /// Each host's `last_heard` as the row holds it, not through the log.
    fn rows_heard(s: &SqliteStore) -> Vec<(String, i64)> {
        let mut st = s
            .conn
            .prepare("SELECT name, last_heard FROM hosts ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn logged(s: &SqliteStore) -> i64 {
        s.conn
            .query_row("SELECT count(*) FROM heard", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn heard_times_folded_into_hosts_are_kept_and_the_log_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        let mut s = SqliteStore::open(&path).unwrap();
        // Three hosts; each one's own time goes to its own row.
        let mut hs: Vec<_> = ["a", "b", "c"]
            .map(|n| suite::hb(n, 1, Health::Ok, vec![]))
            .into();
        s.commit(&hs.iter().cloned().map(Write::from).collect::<Vec<_>>())
            .unwrap();
        for at in 2..=40 {
            for (i, h) in hs.iter_mut().enumerate() {
                h.received_at = suite::t(at + i as u32);
            }
            s.commit(&hs.iter().cloned().map(Write::from).collect::<Vec<_>>())
                .unwrap();
        }
        assert_eq!(
            logged(&s),
            39,
            "a time-only heartbeat appends to the log, it does not rewrite the row"
        );
        s.fold_heard().unwrap();
        assert_eq!(logged(&s), 0);
        let ms = |at| suite::t(at).timestamp_millis();
        assert_eq!(
            rows_heard(&s),
            [
                ("a".into(), ms(40)),
                ("b".into(), ms(41)),
                ("c".into(), ms(42))
            ]
        );
        // Logged after the fold, then the process ends before the next one: the next
        // open folds the log itself.
        for h in &mut hs {
            h.received_at += chrono::Duration::seconds(100);
        }
        s.commit(&hs.iter().cloned().map(Write::from).collect::<Vec<_>>())
            .unwrap();
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(logged(&s), 0);
        assert_eq!(
            rows_heard(&s),
            [
                ("a".into(), ms(140)),
                ("b".into(), ms(141)),
                ("c".into(), ms(142))
            ]
        );
        let rows = s.load_hosts().unwrap();
        let a = rows.iter().find(|r| r.host == "a").unwrap();
        assert_eq!(a.last_heard, suite::t(140));
    }

    #[test]
    fn after_a_vacuum_by_hand_heard_times_are_folded_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let mut hs: Vec<_> = ["a", "b"]
            .map(|n| suite::hb(n, 1, Health::Ok, vec![]))
            .into();
        let batch = |hs: &[crate::store::HeartbeatRecord]| {
            hs.iter().cloned().map(Write::from).collect::<Vec<_>>()
        };
        s.commit(&batch(&hs)).unwrap();
        hs[0].received_at = suite::t(7);
        hs[1].received_at = suite::t(8);
        s.commit(&batch(&hs)).unwrap();
        // An operator's VACUUM, which may renumber rows, from another connection.
        Connection::open(&path)
            .unwrap()
            .execute_batch("VACUUM")
            .unwrap();
        s.fold_heard().unwrap();
        assert!(s.written.is_empty(), "rowids are learned again");
        assert_eq!(logged(&s), 0);
        let ms = |at| suite::t(at).timestamp_millis();
        assert_eq!(rows_heard(&s), [("a".into(), ms(7)), ("b".into(), ms(8))]);
        // Written again in full once, then folded by rowid as before.
        hs[0].received_at = suite::t(9);
        hs[1].received_at = suite::t(10);
        s.commit(&batch(&hs)).unwrap();
        assert_eq!(logged(&s), 0, "rows rewritten, not logged");
        hs[0].received_at = suite::t(11);
        hs[1].received_at = suite::t(12);
        s.commit(&batch(&hs)).unwrap();
        assert_eq!(logged(&s), 1);
        s.fold_heard().unwrap();
        assert_eq!(s.written.len(), 2);
        assert_eq!(rows_heard(&s), [("a".into(), ms(11)), ("b".into(), ms(12))]);
    }

    #[test]
    fn an_unopenable_path_is_named() {
        let e = SqliteStore::open(Path::new("/nonexistent/dir/rollcall.db"))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("/nonexistent/dir/rollcall.db"),
            "{e}"
        );
    }

    #[test]
    fn a_corrupt_value_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        let mut s = SqliteStore::open(&path).unwrap();
        s.commit(&suite::hbs([suite::hb("x", 1, Health::Ok, vec![])]))
            .unwrap();
        s.conn
            .execute("UPDATE hosts SET health = 'bogus'", [])
            .unwrap();
        let e = s.load_hosts().unwrap_err().to_string();
        assert!(e.contains("hosts.health") && e.contains("bogus"), "{e}");
    }
}
