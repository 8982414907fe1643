//! `rollcall-collector store copy`: one collector's SQLite database into a new PostgreSQL
//! database, before the collectors that will share it start. Hosts with their states and
//! maintenance, credentials (agents keep theirs: no fleet-wide enrollment), history,
//! events, incidents and notifications; in one PostgreSQL transaction, so a failed copy
//! leaves nothing behind.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

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

/// Rows sent to PostgreSQL in one statement.
const CHUNK: usize = 5000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

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
        let c = &src.conn;
        // Every table read in one snapshot, should a collector still be writing.
        let _snapshot = c.unchecked_transaction().map_err(&sql_err)?;
        let hosts = chunks(
            c,
            "SELECT name, identity, first_seen, last_heard, interval_secs, labels, health, reason,
                    lifecycle, maint_until, maint_reason FROM hosts",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    at(r.get(2)?),
                    at(r.get(3)?),
                    r.get::<_, i32>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<i64>>(9)?.map(at),
                    r.get::<_, Option<String>>(10)?,
                ))
            },
            |rows| {
                let (a, b, cc, d, e, f, g, h, i, j, k) = unzip11(rows);
                // fp 0 matches no heartbeat: each host's first one is written in full.
                tx.execute(
                    "INSERT INTO hosts (name, identity, first_seen, last_heard, interval_secs, labels,
                                        health, reason, lifecycle, maint_until, maint_reason, fp)
                     SELECT a, b, c, d, e, f::jsonb, g, h, i, j, k, 0
                     FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                 $5::int[], $6::text[], $7::text[], $8::text[], $9::text[],
                                 $10::timestamptz[], $11::text[]) AS v(a, b, c, d, e, f, g, h, i, j, k)",
                    &[&a, &b, &cc, &d, &e, &f, &g, &h, &i, &j, &k],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        let states = chunks(
            c,
            "SELECT name, fingerprint, state FROM host_state",
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)),
            |rows| {
                let (a, b, cc): (Vec<_>, Vec<_>, Vec<_>) = unzip3(rows);
                tx.execute(
                    "INSERT INTO host_state (name, fingerprint, state)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])",
                    &[&a, &b, &cc],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        let credentials = chunks(
            c,
            "SELECT sha256, host, identity, issued_at, revoked_at FROM credentials",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    at(r.get(3)?),
                    r.get::<_, Option<i64>>(4)?.map(at),
                ))
            },
            |rows| {
                let (a, b, cc, d, e) = unzip5(rows);
                tx.execute(
                    "INSERT INTO credentials (sha256, host, identity, issued_at, revoked_at)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                                          $5::timestamptz[])",
                    &[&a, &b, &cc, &d, &e],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        let history = chunks(
            c,
            "SELECT host, at, kind, message FROM history ORDER BY rowid",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    at(r.get(1)?),
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
            |rows| {
                let (a, b, cc, d) = unzip4(rows);
                tx.execute(
                    "INSERT INTO history (host, at, kind, message)
                     SELECT a, b, c, d FROM unnest($1::text[], $2::timestamptz[], $3::text[],
                         $4::text[]) WITH ORDINALITY AS v(a, b, c, d, o) ORDER BY o",
                    &[&a, &b, &cc, &d],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        let events = chunks(
            c,
            "SELECT host, seq, at, received_at, body FROM events",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    at(r.get(2)?),
                    at(r.get(3)?),
                    r.get::<_, String>(4)?,
                ))
            },
            |rows| {
                let (a, b, cc, d, e) = unzip5(rows);
                tx.execute(
                    "INSERT INTO events (host, seq, at, received_at, body)
                     SELECT a, b, c, d, e::jsonb FROM unnest($1::text[], $2::bigint[],
                         $3::timestamptz[], $4::timestamptz[], $5::text[]) AS v(a, b, c, d, e)",
                    &[&a, &b, &cc, &d, &e],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        let incidents = chunks(
            c,
            "SELECT id, key, open, opened_at, doc FROM incidents",
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    at(r.get(3)?),
                    r.get::<_, String>(4)?,
                ))
            },
            |rows| {
                let (a, b, cc, d, e) = unzip5(rows);
                tx.execute(
                    "INSERT INTO incidents (id, key, open, opened_at, doc)
                     SELECT a, b, c, d, e::jsonb FROM unnest($1::bigint[], $2::text[],
                         $3::boolean[], $4::timestamptz[], $5::text[]) AS v(a, b, c, d, e)",
                    &[&a, &b, &cc, &d, &e],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        let notifications = chunks(
            c,
            "SELECT id, receiver, incident, action, body, created_at, attempts, next_at, state,
                    last_error, done_at FROM outbox",
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    at(r.get(5)?),
                    r.get::<_, i32>(6)?,
                    at(r.get(7)?),
                    r.get::<_, String>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<i64>>(10)?.map(at),
                ))
            },
            |rows| {
                let (a, b, cc, d, e, f, g, h, i, j, k) = unzip11(rows);
                tx.execute(
                    "INSERT INTO outbox (id, receiver, incident, action, body, created_at, attempts,
                                         next_at, state, last_error, done_at)
                     OVERRIDING SYSTEM VALUE
                     SELECT a, b, c, d, e::jsonb, f, g, h, i, j, k
                     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                 $6::timestamptz[], $7::int[], $8::timestamptz[], $9::text[],
                                 $10::text[], $11::timestamptz[]) AS v(a, b, c, d, e, f, g, h, i, j, k)",
                    &[&a, &b, &cc, &d, &e, &f, &g, &h, &i, &j, &k],
                )
                .map_err(pg)
            },
        )
        .map_err(&sql_err)??;
        // New notifications are numbered after the copied ones.
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('outbox', 'id'), max(id)) FROM outbox
             HAVING max(id) IS NOT NULL",
            &[],
        )
        .map_err(pg)?;
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

/// Reads `sql` from SQLite row by row and hands the rows to `write` `CHUNK` at a time:
/// how many it read, or the first error of either side (SQLite's outside, the writer's
/// inside).
fn chunks<T>(
    c: &Connection,
    sql: &str,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    mut write: impl FnMut(Vec<T>) -> Result<u64, StoreError>,
) -> rusqlite::Result<Result<usize, StoreError>> {
    let mut stmt = c.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let (mut batch, mut n) = (Vec::with_capacity(CHUNK), 0);
    while let Some(r) = rows.next()? {
        batch.push(row(r)?);
        n += 1;
        if batch.len() == CHUNK {
            if let Err(e) = write(std::mem::take(&mut batch)) {
                return Ok(Err(e));
            }
        }
    }
    if !batch.is_empty() {
        if let Err(e) = write(batch) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(n))
}

fn unzip3<A, B, C>(rows: Vec<(A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (a, b, c) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
    }
    out
}

fn unzip4<A, B, C, D>(rows: Vec<(A, B, C, D)>) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (a, b, c, d) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
    }
    out
}

type Cols5<A, B, C, D, E> = (Vec<A>, Vec<B>, Vec<C>, Vec<D>, Vec<E>);

fn unzip5<A, B, C, D, E>(rows: Vec<(A, B, C, D, E)>) -> Cols5<A, B, C, D, E> {
    let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (a, b, c, d, e) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
        out.4.push(e);
    }
    out
}

type Cols11<A, B, C, D, E, F, G, H, I, J, K> = (
    Vec<A>,
    Vec<B>,
    Vec<C>,
    Vec<D>,
    Vec<E>,
    Vec<F>,
    Vec<G>,
    Vec<H>,
    Vec<I>,
    Vec<J>,
    Vec<K>,
);

#[allow(clippy::type_complexity)]
fn unzip11<A, B, C, D, E, F, G, H, I, J, K>(
    rows: Vec<(A, B, C, D, E, F, G, H, I, J, K)>,
) -> Cols11<A, B, C, D, E, F, G, H, I, J, K> {
    let mut out: Cols11<A, B, C, D, E, F, G, H, I, J, K> = Default::default();
    for (a, b, c, d, e, f, g, h, i, j, k) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
        out.4.push(e);
        out.5.push(f);
        out.6.push(g);
        out.7.push(h);
        out.8.push(i);
        out.9.push(j);
        out.10.push(k);
    }
    out
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
