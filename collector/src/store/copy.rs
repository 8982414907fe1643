//! `rollcall-collector store copy`: one collector's SQLite database into a new PostgreSQL
//! database, before the collectors that will share it start. Hosts with their states and
//! maintenance, credentials (agents keep theirs: no fleet-wide enrollment), history,
//! events, incidents and notifications; in one PostgreSQL transaction, so a failed copy
//! leaves nothing behind.

use std::path::Path;

use super::postgres::{PgStore, Target};
use super::{SqliteStore, StoreError};

/// Rows copied, per table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub hosts: usize,
    pub states: usize,
    pub credentials: usize,
    pub history: usize,
    pub events: usize,
    pub incidents: usize,
    pub notifications: usize,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hosts ({} states), {} credentials, {} history lines, {} events, {} incidents, {} notifications",
            self.hosts,
            self.states,
            self.credentials,
            self.history,
            self.events,
            self.incidents,
            self.notifications
        )
    }
}

/// Rows sent to PostgreSQL in one statement (in tests a few, so that tables span chunks).
#[cfg(not(test))]
const CHUNK: usize = 5000;
#[cfg(test)]
const CHUNK: usize = 2;

/// What is copied, table by table: the SQLite query gives each row as one JSON object, and
/// PostgreSQL inserts a chunk of them read through `jsonb_to_recordset` (`r`), where times
/// are the milliseconds SQLite keeps (`ms(x)` below: exact, no floating point).
const TABLES: [(&str, &str); 7] = [
    (
        "SELECT json_object('name', name, 'identity', identity, 'first_seen', first_seen,
             'last_heard', last_heard, 'interval_secs', interval_secs, 'labels', labels,
             'health', health, 'reason', reason, 'lifecycle', lifecycle,
             'maint_until', maint_until, 'maint_reason', maint_reason) FROM hosts",
        // fp 0 matches no heartbeat: each host's first one is written in full.
        "INSERT INTO hosts (name, identity, first_seen, last_heard, interval_secs, labels, health,
                            reason, lifecycle, maint_until, maint_reason, fp)
         SELECT name, identity, pg_temp.ms(first_seen), pg_temp.ms(last_heard), interval_secs, labels::jsonb,
                health, reason, lifecycle, pg_temp.ms(maint_until), maint_reason, 0
         FROM jsonb_to_recordset($1::text::jsonb) AS r(name text, identity text, first_seen bigint,
             last_heard bigint, interval_secs int, labels text, health text, reason text,
             lifecycle text, maint_until bigint, maint_reason text)",
    ),
    (
        "SELECT json_object('name', name, 'fingerprint', fingerprint, 'state', state)
         FROM host_state",
        "INSERT INTO host_state (name, fingerprint, state)
         SELECT name, fingerprint, state
         FROM jsonb_to_recordset($1::text::jsonb) AS r(name text, fingerprint bigint, state text)",
    ),
    (
        "SELECT json_object('sha256', sha256, 'host', host, 'identity', identity,
             'issued_at', issued_at, 'revoked_at', revoked_at) FROM credentials",
        "INSERT INTO credentials (sha256, host, identity, issued_at, revoked_at)
         SELECT sha256, host, identity, pg_temp.ms(issued_at), pg_temp.ms(revoked_at)
         FROM jsonb_to_recordset($1::text::jsonb) AS r(sha256 text, host text, identity text,
             issued_at bigint, revoked_at bigint)",
    ),
    (
        "SELECT json_object('host', host, 'at', at, 'kind', kind, 'message', message)
         FROM history ORDER BY rowid",
        // In the order written: lines of the same moment keep it.
        "INSERT INTO history (host, at, kind, message)
         SELECT host, pg_temp.ms(at), kind, message
         FROM ROWS FROM (jsonb_to_recordset($1::text::jsonb)
             AS (host text, at bigint, kind text, message text))
             WITH ORDINALITY AS r(host, at, kind, message, o) ORDER BY o",
    ),
    (
        "SELECT json_object('host', host, 'seq', seq, 'at', at, 'received_at', received_at,
             'body', body) FROM events",
        "INSERT INTO events (host, seq, at, received_at, body)
         SELECT host, seq, pg_temp.ms(at), pg_temp.ms(received_at), body::jsonb
         FROM jsonb_to_recordset($1::text::jsonb) AS r(host text, seq bigint, at bigint,
             received_at bigint, body text)",
    ),
    (
        "SELECT json_object('id', id, 'key', key, 'open', open, 'opened_at', opened_at,
             'doc', doc) FROM incidents",
        "INSERT INTO incidents (id, key, open, opened_at, doc)
         SELECT id, key, open <> 0, pg_temp.ms(opened_at), doc::jsonb
         FROM jsonb_to_recordset($1::text::jsonb) AS r(id bigint, key text, open int,
             opened_at bigint, doc text)",
    ),
    (
        "SELECT json_object('id', id, 'receiver', receiver, 'incident', incident,
             'action', action, 'body', body, 'created_at', created_at, 'attempts', attempts,
             'next_at', next_at, 'state', state, 'last_error', last_error, 'done_at', done_at)
         FROM outbox",
        "INSERT INTO outbox (id, receiver, incident, action, body, created_at, attempts, next_at,
                             state, last_error, done_at)
         OVERRIDING SYSTEM VALUE
         SELECT id, receiver, incident, action, body::jsonb, pg_temp.ms(created_at), attempts,
                pg_temp.ms(next_at), state, last_error, pg_temp.ms(done_at)
         FROM jsonb_to_recordset($1::text::jsonb) AS r(id bigint, receiver text, incident bigint,
             action text, body text, created_at bigint, attempts int, next_at bigint,
             state text, last_error text, done_at bigint)",
    ),
];

/// Copies the SQLite database at `from` into the PostgreSQL database `to`, which must hold
/// no host and no credential and on which no collector has led yet.
pub fn sqlite_to_postgres(from: &Path, to: &Target) -> Result<Copied, StoreError> {
    if !from.is_file() {
        return Err(StoreError::Copy(format!(
            "there is no database at {}; give the data directory of the collector whose database to copy (--data-dir)",
            from.display()
        )));
    }
    // Opening folds what the last process logged and brings the schema up to date.
    let src = SqliteStore::open(from)?;
    let dst = PgStore::open(to)?;
    let sql_err = src.err();
    dst.in_transaction(|tx| {
        let pg = |e| StoreError::Postgres {
            target: to.shown.clone(),
            source: e,
        };
        let (hosts, creds, epoch): (i64, i64, i64) = tx
            .query_one(
                "SELECT (SELECT count(*) FROM hosts), (SELECT count(*) FROM credentials),
                        (SELECT epoch FROM leadership WHERE id = 1)",
                &[],
            )
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .map_err(pg)?;
        if hosts > 0 || creds > 0 || epoch > 0 {
            return Err(StoreError::Copy(format!(
                "{} already holds {hosts} hosts and {creds} credentials{}; copy into a new, empty database, before any collector starts on it",
                to.shown,
                if epoch > 0 { ", and collectors have run on it" } else { "" }
            )));
        }
        // This session's own, gone with it.
        tx.batch_execute(
            "CREATE OR REPLACE FUNCTION pg_temp.ms(bigint) RETURNS timestamptz IMMUTABLE LANGUAGE sql
             AS $$ SELECT timestamptz 'epoch' + $1 * interval '1 millisecond' $$",
        )
        .map_err(pg)?;
        // Every table read in one snapshot, should a collector still be writing.
        let snapshot = src.conn.unchecked_transaction().map_err(&sql_err)?;
        let mut n = [0; TABLES.len()];
        for ((read, write), n) in TABLES.iter().zip(&mut n) {
            let mut stmt = snapshot.prepare(read).map_err(&sql_err)?;
            let mut rows = stmt.query([]).map_err(&sql_err)?;
            let mut chunk: Vec<String> = Vec::with_capacity(CHUNK);
            let mut send = |chunk: &mut Vec<String>| {
                let json = format!("[{}]", chunk.join(","));
                chunk.clear();
                tx.execute(*write, &[&json]).map(|k| *n += k as usize).map_err(pg)
            };
            while let Some(r) = rows.next().map_err(&sql_err)? {
                chunk.push(r.get(0).map_err(&sql_err)?);
                if chunk.len() == CHUNK {
                    send(&mut chunk)?;
                }
            }
            if !chunk.is_empty() {
                send(&mut chunk)?;
            }
        }
        // New notifications are numbered after the copied ones.
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('outbox', 'id'), max(id)) FROM outbox
             HAVING max(id) IS NOT NULL",
            &[],
        )
        .map_err(pg)?;
        let [hosts, states, credentials, history, events, incidents, notifications] = n;
        Ok(Copied {
            hosts,
            states,
            credentials,
            history,
            events,
            incidents,
            notifications,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{event, hb, incident, t};
    use crate::store::{
        Action, CredentialRecord, Delivery, HistoryRecord, IncidentStore, Store, Write,
    };
    use crate::testing::postgres::Cluster;
    use rollcall_proto::Health;

    /// Everything a collector reads back from a store, in a fixed order.
    fn contents(s: &(impl Store + IncidentStore)) -> String {
        let mut hosts = s.load_hosts().unwrap();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        let mut creds = s.load_credentials().unwrap();
        creds.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        let per_host: Vec<_> = hosts
            .iter()
            .map(|h| {
                (
                    s.host_state(&h.host).unwrap(),
                    s.recent_history(&h.host, 100).unwrap(),
                    s.recent_events(&h.host, 100).unwrap(),
                )
            })
            .collect();
        let incidents = s.incidents(None, 100).unwrap();
        let outbox: Vec<_> = incidents
            .iter()
            .map(|i| s.incident(i.id).unwrap())
            .collect();
        format!(
            "{hosts:#?}\n{creds:#?}\n{per_host:#?}\n{incidents:#?}\n{outbox:#?}\n{:?}\n{:?}",
            s.load_open_incidents().unwrap(),
            s.pending("hook", 100).unwrap()
        )
    }

    #[test]
    fn a_sqlite_database_is_copied_whole_into_an_empty_postgres_one_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        let mut src = SqliteStore::open(&path).unwrap();
        let issue = |host: &str, sha: &str, at| {
            Write::Credential(CredentialRecord::Issue {
                sha256: sha.repeat(64 / sha.len()),
                host: host.into(),
                identity: format!("id-{host}"),
                at: t(at),
                bmc_address: None,
            })
        };
        src.commit(&[
            issue("a", "a1", 1),
            issue("b", "b1", 1),
            Write::from(hb(
                "a",
                2,
                Health::Ok,
                vec![event(1, "up"), event(2, "reload")],
            )),
            Write::from(hb("b", 3, Health::Critical, vec![event(1, "down")])),
            Write::History(HistoryRecord {
                host: "a".into(),
                at: t(4),
                kind: "note".into(),
                message: "rebooted by hand".into(),
            }),
        ])
        .unwrap();
        // A routine heartbeat left in the heard log, a revoked credential, a maintenance.
        let mut later = hb("a", 9, Health::Ok, vec![]);
        later.reason = "a at 2".into();
        src.commit(&[Write::from(later)]).unwrap();
        src.commit(&[
            Write::Credential(CredentialRecord::RevokeHost {
                host: "b".into(),
                at: t(10),
            }),
            issue("b", "b2", 11),
        ])
        .unwrap();
        src.set_maintenance("b", Some((t(3600), "disk swap")))
            .unwrap();
        let (one, two) = (incident(1, "silent/a", true), incident(2, "down/b", false));
        src.record(
            &[one.clone(), two.clone()],
            &[
                (1, "hook".into(), Action::Trigger, one.clone()),
                (2, "hook".into(), Action::Trigger, two.clone()),
            ],
            t(12),
        )
        .unwrap();
        let first = src.pending("hook", 10).unwrap()[0].id;
        src.delivered(first, &Delivery::Sent, t(13)).unwrap();
        drop(src);

        let db = Cluster::shared().database("copy");
        let n = sqlite_to_postgres(&path, &db).unwrap();
        assert_eq!(
            n.to_string(),
            "2 hosts (2 states), 3 credentials, 5 history lines, 3 events, 2 incidents, 2 notifications"
        );
        let (src, dst) = (
            SqliteStore::open(&path).unwrap(),
            PgStore::open(&db).unwrap(),
        );
        assert_eq!(contents(&dst), contents(&src));
        // The routine heartbeat's time, folded from the log, came along.
        let a = dst.load_hosts().unwrap();
        assert_eq!(a.iter().find(|h| h.host == "a").unwrap().last_heard, t(9));
        // New incidents and notifications are numbered after the copied ones.
        let mut dst = dst;
        let three = incident(3, "silent/c", true);
        dst.record(
            std::slice::from_ref(&three),
            &[(3, "hook".into(), Action::Trigger, three.clone())],
            t(14),
        )
        .unwrap();
        let ids: Vec<i64> = dst
            .pending("hook", 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids[1] > ids[0], "{ids:?}");

        // Only once: the database is no longer empty.
        let e = sqlite_to_postgres(&path, &db).unwrap_err().sentence();
        assert!(
            e.contains("already holds 2 hosts and 3 credentials; copy into a new, empty database"),
            "{e}"
        );
        // Nothing to copy from.
        let e = sqlite_to_postgres(&dir.path().join("none.db"), &db)
            .unwrap_err()
            .sentence();
        assert!(
            e.contains("there is no database at") && e.contains("none.db"),
            "{e}"
        );
    }
}
