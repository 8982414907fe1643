//! Schema versions. The database records the version of its schema (SQLite: the
//! `user_version` in its header); at start, every migration above it runs, in order, in
//! one transaction with the new version, so a database is at one version or the next,
//! never between. A database newer than this binary is refused: it was written by a newer
//! release, and this one would misread it.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One step of the schema.
pub struct Migration {
    pub version: u32,
    /// What it changes, for the log line that says it ran.
    pub what: &'static str,
    pub sql: &'static str,
}

/// The SQLite store's migrations, oldest first. Version 1 is the schema every release
/// before versions had: its statements create only what is missing, so a database made
/// by any of them is adopted as it is.
pub const SQLITE: &[Migration] = &[Migration {
    version: 1,
    what: "the schema of 0.1.0, now with a version",
    sql: V1,
}];

/// The newest version this binary knows.
pub fn latest(list: &[Migration]) -> u32 {
    list.last().map_or(0, |m| m.version)
}

/// Brings the database at `path` to the newest version of `list`; the version it was at.
pub fn migrate(conn: &mut Connection, path: &Path, list: &[Migration]) -> Result<u32, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    // IMMEDIATE: a second connection opening at the same time waits here, then finds the
    // work done.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let found: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    let known = latest(list);
    if found > known {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found,
            known,
        });
    }
    for m in list.iter().filter(|m| m.version > found) {
        tx.execute_batch(m.sql).map_err(err)?;
        tx.pragma_update(None, "user_version", m.version)
            .map_err(err)?;
        log::info!(
            "database {}: schema version {} ({})",
            path.display(),
            m.version,
            m.what
        );
    }
    tx.commit().map_err(err)?;
    Ok(found)
}

/// The PostgreSQL store's migrations, oldest first. The version is kept in
/// `rollcall_schema`, one row per migration that ran.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        what: "the first schema on PostgreSQL",
        sql: PG_V1,
    },
    Migration {
        version: 2,
        what: "the change feed and the leader's epoch, for several collectors",
        sql: PG_V2,
    },
];

/// A key for `pg_advisory_xact_lock` that only schema changes take: replicas starting
/// together wait for one another here, and the later ones find the work done.
const PG_MIGRATION_LOCK: i64 = 0x726f_6c6c_6361_6c6c; // "rollcall"

/// Brings the PostgreSQL database to the newest version of [`POSTGRES`]; the version it
/// was at.
pub fn migrate_pg(c: &mut postgres::Client, shown: &str) -> Result<u32, StoreError> {
    migrate_pg_with(c, shown, POSTGRES)
}

pub(crate) fn migrate_pg_with(
    c: &mut postgres::Client,
    shown: &str,
    list: &[Migration],
) -> Result<u32, StoreError> {
    let err = |source| StoreError::Postgres {
        target: shown.to_owned(),
        source,
    };
    let mut tx = c.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS rollcall_schema (
            version    integer PRIMARY KEY,
            what       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(err)?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM rollcall_schema", &[])
        .map_err(err)?
        .get(0);
    let found = found.max(0) as u32;
    let known = latest(list);
    if found > known {
        return Err(StoreError::TooNew {
            path: shown.to_owned(),
            found,
            known,
        });
    }
    for m in list.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.sql).map_err(err)?;
        tx.execute(
            "INSERT INTO rollcall_schema (version, what) VALUES ($1, $2)",
            &[&(m.version as i32), &m.what],
        )
        .map_err(err)?;
        log::info!(
            "database {shown}: schema version {} ({})",
            m.version,
            m.what
        );
    }
    tx.commit().map_err(err)?;
    Ok(found)
}

const V1: &str = "

CREATE TABLE IF NOT EXISTS hosts (
    name          TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_heard    INTEGER NOT NULL,
    interval_secs INTEGER NOT NULL,
    labels        TEXT NOT NULL,
    health        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    lifecycle     TEXT,
    maint_until   INTEGER,
    maint_reason  TEXT
);
-- When hosts were heard: a heartbeat that changes nothing but its time lands here, one
-- row per commit (a JSON array of [ms, host] pairs) rather than one row update per host,
-- and is folded into hosts.last_heard now and then. Loading takes the later of the two.
CREATE TABLE IF NOT EXISTS heard (
    times TEXT NOT NULL
);
-- The full agent state, apart from the small row a heartbeat updates every time.
CREATE TABLE IF NOT EXISTS host_state (
    name        TEXT PRIMARY KEY,
    fingerprint INTEGER NOT NULL,
    state       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    host        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (host, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
-- Per-host credentials: only their SHA-256.
CREATE TABLE IF NOT EXISTS credentials (
    sha256     TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    identity   TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS credentials_host ON credentials(host, identity);
-- What the collector saw happen to a host: reloads, reboots, silences, refusals.
CREATE TABLE IF NOT EXISTS history (
    host    TEXT NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_host ON history(host, at);
CREATE INDEX IF NOT EXISTS history_at ON history(at);
-- Incidents, each a JSON document; the columns are what listings filter on.
CREATE TABLE IF NOT EXISTS incidents (
    id        INTEGER PRIMARY KEY,
    key       TEXT NOT NULL,
    open      INTEGER NOT NULL,
    opened_at INTEGER NOT NULL,
    doc       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents(open, id);
-- Notifications, written with the incident change that caused them and before they are
-- sent: `pending` until the receiver took it (`sent`) or refused it for good (`failed`).
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY,
    receiver   TEXT NOT NULL,
    incident   INTEGER NOT NULL,
    action     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    done_at    INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(receiver, state, id);
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox(incident);
";

const PG_V1: &str = "
CREATE TABLE hosts (
    name          text PRIMARY KEY,
    identity      text NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_heard    timestamptz NOT NULL,
    interval_secs integer NOT NULL,
    labels        jsonb NOT NULL,
    health        text NOT NULL,
    reason        text NOT NULL,
    lifecycle     text,
    maint_until   timestamptz,
    maint_reason  text,
    -- Everything a routine heartbeat repeats (the row but its time, and the state):
    -- where it matches, a heartbeat moves last_heard only.
    fp            bigint NOT NULL
);
CREATE TABLE host_state (
    name        text PRIMARY KEY,
    fingerprint bigint NOT NULL,
    state       text NOT NULL
);
CREATE TABLE events (
    host        text NOT NULL,
    seq         bigint NOT NULL,
    at          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    body        jsonb NOT NULL,
    PRIMARY KEY (host, seq)
);
CREATE INDEX events_received ON events (received_at);
CREATE TABLE credentials (
    sha256     text PRIMARY KEY,
    host       text NOT NULL,
    identity   text NOT NULL,
    issued_at  timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX credentials_host ON credentials (host, identity);
CREATE TABLE history (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host    text NOT NULL,
    at      timestamptz NOT NULL,
    kind    text NOT NULL,
    message text NOT NULL
);
CREATE INDEX history_host ON history (host, at);
CREATE INDEX history_at ON history (at);
CREATE TABLE incidents (
    id        bigint PRIMARY KEY,
    key       text NOT NULL,
    open      boolean NOT NULL,
    opened_at timestamptz NOT NULL,
    doc       jsonb NOT NULL
);
CREATE INDEX incidents_open ON incidents (open, id);
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver   text NOT NULL,
    incident   bigint NOT NULL,
    action     text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    next_at    timestamptz NOT NULL,
    state      text NOT NULL DEFAULT 'pending',
    last_error text,
    done_at    timestamptz
);
CREATE INDEX outbox_pending ON outbox (receiver, state, id);
CREATE INDEX outbox_incident ON outbox (incident);
";

const PG_V2: &str = "
-- What each collector wrote that the others hold in memory, in commit order (see
-- store/feed.rs): one row per transaction.
CREATE TABLE changes (
    xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq    bigint GENERATED ALWAYS AS IDENTITY,
    at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    origin text NOT NULL,
    body   text NOT NULL,
    PRIMARY KEY (xid, seq)
);
CREATE INDEX changes_at ON changes (at);
-- The leader's term: raised by each collector that becomes the leader. What only the
-- leader writes checks it in the same transaction, so a deposed leader writes nothing.
CREATE TABLE leadership (
    id     integer PRIMARY KEY CHECK (id = 1),
    epoch  bigint NOT NULL,
    holder text NOT NULL,
    since  timestamptz NOT NULL
);
INSERT INTO leadership VALUES (1, 0, '', now());
-- The epoch of the leader that took a notification to send it.
ALTER TABLE outbox ADD COLUMN claimed_epoch bigint;
-- The newest change pruned from the feed: a collector whose position is below it has
-- missed changes and loads every host again.
CREATE TABLE feed_horizon (
    id  integer PRIMARY KEY CHECK (id = 1),
    xid xid8 NOT NULL,
    seq bigint NOT NULL
);
INSERT INTO feed_horizon VALUES (1, '0', 0);
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{event, hb, incident, t};
    use crate::store::{
        Action, CredentialRecord, HistoryRecord, IncidentStore, SqliteStore, Store, Write,
    };
    use rollcall_proto::Health;

    fn version(path: &Path) -> u32 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    fn set_version(path: &Path, v: u32) {
        Connection::open(path)
            .unwrap()
            .pragma_update(None, "user_version", v)
            .unwrap();
    }

    #[test]
    fn a_database_of_the_releases_before_versions_is_adopted_with_nothing_lost() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rollcall.db");
        // What a release before versions left: the same tables and rows, and no version
        // (the statements of version 1 are those releases' schema, unchanged).
        {
            let mut s = SqliteStore::open(&path).unwrap();
            let mut a = hb("web-1", 1, Health::Critical, vec![]);
            a.events = vec![event(7, "restart")];
            s.commit(&[
                Write::Heartbeat(a),
                Write::Heartbeat(hb("web-2", 2, Health::Ok, vec![])),
                Write::Credential(CredentialRecord::Issue {
                    sha256: "h1".into(),
                    host: "web-1".into(),
                    identity: "id-web-1".into(),
                    at: t(1),
                    bmc_address: None,
                }),
                Write::History(HistoryRecord {
                    host: "web-1".into(),
                    at: t(3),
                    kind: "state".into(),
                    message: "up -> unhealthy".into(),
                }),
            ])
            .unwrap();
            s.set_maintenance("web-2", Some((t(9_000), "patching")))
                .unwrap();
            let i = incident(1, "silent/web-1", true);
            s.record(
                std::slice::from_ref(&i),
                &[(1, "hook".into(), Action::Trigger, i.clone())],
                t(4),
            )
            .unwrap();
        }
        set_version(&path, 0);

        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(version(&path), 1, "the first migration records the version");
        let mut hosts = s.load_hosts().unwrap();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].health, Health::Critical);
        assert_eq!(hosts[1].maintenance.as_ref().unwrap().1, "patching");
        assert_eq!(s.load_credentials().unwrap().len(), 1);
        assert_eq!(s.recent_events("web-1", 10).unwrap()[0].seq, 7);
        assert!(s
            .recent_history("web-1", 10)
            .unwrap()
            .iter()
            .any(|l| l.message == "up -> unhealthy"));
        assert_eq!(s.load_open_incidents().unwrap().0.len(), 1);
        assert_eq!(s.pending("hook", 10).unwrap().len(), 1);
        // Opened again: nothing to do.
        drop(s);
        SqliteStore::open(&path).unwrap();
        assert_eq!(version(&path), 1);
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused_with_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rollcall.db");
        SqliteStore::open(&path).unwrap();
        set_version(&path, latest(SQLITE) + 1);
        let e = SqliteStore::open(&path).err().expect("refused");
        let words = e.sentence();
        assert!(matches!(e, StoreError::TooNew { found, .. } if found == latest(SQLITE) + 1));
        assert!(
            words.contains("newer release") && words.contains("backup"),
            "{words}"
        );
        assert_eq!(version(&path), latest(SQLITE) + 1, "left as it was");
    }

    const TABLE_A: Migration = Migration {
        version: 1,
        what: "a",
        sql: "CREATE TABLE a (x INTEGER);",
    };
    const COLUMN_Y: Migration = Migration {
        version: 2,
        what: "a.y",
        sql: "ALTER TABLE a ADD COLUMN y TEXT;",
    };
    const BROKEN: Migration = Migration {
        version: 3,
        what: "broken",
        sql: "CREATE TABLE b (z INTEGER); ALTER TABLE nowhere ADD COLUMN q;",
    };

    #[test]
    fn migrations_run_in_order_each_with_its_version_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("m.db");
        let mut c = Connection::open(&path).unwrap();
        // Everything in one transaction: a failure leaves the database as it was.
        assert!(migrate(&mut c, &path, &[TABLE_A, COLUMN_Y, BROKEN]).is_err());
        assert_eq!(version(&path), 0);
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
        assert_eq!(migrate(&mut c, &path, &[TABLE_A]).unwrap(), 0);
        c.execute("INSERT INTO a (x) VALUES (41)", []).unwrap();
        // Only what is above the recorded version runs (table a again would fail).
        assert_eq!(migrate(&mut c, &path, &[TABLE_A, COLUMN_Y]).unwrap(), 1);
        assert_eq!(version(&path), 2);
        let (x, y): (i64, Option<String>) = c
            .query_row("SELECT x, y FROM a", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((x, y), (41, None));
        // A failing step after a good one: the version stays at the last good one.
        assert!(migrate(&mut c, &path, &[TABLE_A, COLUMN_Y, BROKEN]).is_err());
        assert_eq!(version(&path), 2);
    }

    /// A migration that shipped is never edited: databases already at its version would
    /// never see the change. A new change is a new migration.
    #[test]
    fn shipped_migrations_are_frozen() {
        use sha2::{Digest, Sha256};
        let digest = crate::auth::hex(&Sha256::digest(V1.as_bytes()));
        assert_eq!(
            digest, FROZEN_V1,
            "version 1 changed: add a migration instead"
        );
        let pg: Vec<String> = POSTGRES
            .iter()
            .map(|m| crate::auth::hex(&Sha256::digest(m.sql.as_bytes())))
            .collect();
        assert_eq!(
            pg, FROZEN_PG,
            "a shipped PostgreSQL migration changed: add one instead"
        );
    }

    /// What the first PostgreSQL schema's release wrote, by hand (that release's store
    /// no longer exists to write it): a host, its state, an event, a credential, history,
    /// an open incident and its pending notification.
    const PG_V1_ROWS: &str = "
        INSERT INTO hosts (name, identity, first_seen, last_heard, interval_secs, labels, health,
                           reason, maint_until, maint_reason, fp)
        VALUES ('web-1', 'm1/i1', '2026-11-22T12:00:01Z', '2026-11-22T12:00:05Z', 60,
                '{\"region\": \"eu-de\"}', 'critical', 'besclient down', '2026-11-23T00:00:00Z',
                'patching', 42);
        INSERT INTO host_state VALUES ('web-1', 7, '{\"at\":5}');
        INSERT INTO events VALUES ('web-1', 3, '2026-11-22T12:00:04Z', '2026-11-22T12:00:05Z',
                '{\"seq\":3,\"at\":\"2026-11-22T12:00:04Z\",\"check\":\"besclient\",\"kind\":\"action\",\"message\":\"restart\"}');
        INSERT INTO credentials VALUES ('h1', 'web-1', 'm1/i1', '2026-11-22T12:00:01Z', NULL);
        INSERT INTO history (host, at, kind, message)
        VALUES ('web-1', '2026-11-22T12:00:03Z', 'state', 'up -> unhealthy');
    ";

    #[test]
    fn a_postgres_database_of_the_first_schema_is_upgraded_with_nothing_lost() {
        use crate::store::PgStore;
        use crate::testing::postgres::Cluster;
        let db = Cluster::shared().database("upgrade");
        {
            let mut c = db.connect().unwrap();
            assert_eq!(migrate_pg_with(&mut c, "test", &POSTGRES[..1]).unwrap(), 0);
            c.batch_execute(PG_V1_ROWS).unwrap();
        }
        let mut s = PgStore::open(&db).unwrap();
        let i = incident(1, "silent/web-1", true);
        let hosts = s.load_hosts().unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].health, Health::Critical);
        assert_eq!(hosts[0].labels["region"], "eu-de");
        assert_eq!(hosts[0].maintenance.as_ref().unwrap().1, "patching");
        assert_eq!(
            s.host_state("web-1").unwrap().as_deref(),
            Some("{\"at\":5}")
        );
        assert_eq!(s.recent_events("web-1", 10).unwrap()[0].seq, 3);
        assert_eq!(s.load_credentials().unwrap().len(), 1);
        assert_eq!(
            s.recent_history("web-1", 10).unwrap()[0].message,
            "up -> unhealthy"
        );
        // And what version 2 adds works on it.
        s.record(
            std::slice::from_ref(&i),
            &[(1, "hook".into(), Action::Trigger, i.clone())],
            t(4),
        )
        .unwrap();
        assert!(s.claim(s.pending("hook", 1).unwrap()[0].id).unwrap());
        s.commit(&[Write::Heartbeat(hb("web-2", 6, Health::Ok, vec![]))])
            .unwrap();
        let versions: Vec<i32> = db
            .connect()
            .unwrap()
            .query("SELECT version FROM rollcall_schema ORDER BY version", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, [1, 2]);
    }

    #[test]
    fn a_postgres_database_newer_than_the_binary_is_refused() {
        use crate::store::PgStore;
        use crate::testing::postgres::Cluster;
        let db = Cluster::shared().database("newer");
        PgStore::open(&db).unwrap();
        db.connect()
            .unwrap()
            .execute(
                "INSERT INTO rollcall_schema (version, what) VALUES ($1, 'from the future')",
                &[&(latest(POSTGRES) as i32 + 1)],
            )
            .unwrap();
        let e = PgStore::open(&db).err().expect("refused");
        assert!(matches!(e, StoreError::TooNew { found, .. } if found == latest(POSTGRES) + 1));
        assert!(e.sentence().contains("newer release"), "{}", e.sentence());
    }

    const FROZEN_PG: [&str; 2] = [
        "71132a4862f1babb1c25c9d4aed6ab9066287539fcb5e1ea279d7917c2b8f734",
        "b36bc7a1dafef23df45d94f92b38452909619c0ef7d2fd6ec4e71f6164eb448e",
    ];

    const FROZEN_V1: &str = "fb2f70584afb5d008397a80cc930cfba99f59c26bb902f35be597aa814fe506a";
}
