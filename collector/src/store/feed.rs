//! The change feed several collectors share a fleet through: every transaction that
//! changes what a collector holds in memory (hosts heard, credentials, maintenance,
//! lifecycles) also appends one row to `changes`, naming the collector that wrote it. Each
//! collector follows the table from its last position and applies what the others wrote.
//! `NOTIFY rollcall_changes` only wakes the followers; the rows are what they read.
//!
//! Order without gaps: rows are read by `(xid, seq)` and only from transactions older than
//! the oldest one still running (`pg_snapshot_xmin`). A transaction that is still open may
//! hold a lower `seq` than one that has committed; reading by sequence alone would step
//! over it for good. Every transaction below the snapshot's xmin has ended, and every
//! later one has a larger xid, so the position `(xid, seq)` only moves over rows that are
//! final.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use postgres::Client;
use rollcall_proto::Health;
use serde::{Deserialize, Serialize};

use super::CredentialRecord;

/// One change, as the followers apply it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", content = "v", rename_all = "snake_case")]
pub enum Change {
    /// A host written in full (new, or anything but its time changed).
    Host {
        host: String,
        identity: String,
        at: DateTime<Utc>,
        interval: u32,
        labels: BTreeMap<String, String>,
        health: Health,
        reason: String,
        /// The agent's state as it sent it; empty when it sent the digest of the one
        /// stored.
        state: String,
        /// The state's fingerprint: the digest agents may send for it, to any collector.
        #[serde(default)]
        fp: u64,
        booted_at: Option<DateTime<Utc>>,
    },
    /// A routine heartbeat: only the time moved.
    Heard {
        host: String,
        at: DateTime<Utc>,
    },
    Credential(CredentialRecord),
    Maintenance {
        host: String,
        until: Option<(DateTime<Utc>, String)>,
    },
    Lifecycle {
        host: String,
        lifecycle: Option<String>,
    },
}

/// Where a follower is: the last row it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub xid: u64,
    pub seq: i64,
}

/// A row of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub position: Position,
    /// When it was written (the writer's transaction, by the database's clock).
    pub at: DateTime<Utc>,
    pub origin: String,
    pub changes: Vec<Change>,
}

/// Appends `changes` as one row in the transaction `tx`, and wakes the followers when it
/// commits.
pub(super) fn append(
    tx: &mut postgres::Transaction<'_>,
    origin: &str,
    changes: &[Change],
) -> Result<(), postgres::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(changes).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT INTO changes (origin, body) VALUES ($1, $2)",
        &[&origin, &body],
    )?;
    tx.batch_execute("NOTIFY rollcall_changes")?;
    Ok(())
}

/// The position from which a collector that is about to load every host must follow:
/// what committed before it is in what it loads.
pub fn start(c: &mut Client) -> Result<Position, postgres::Error> {
    let xmin: String = c
        .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])?
        .get(0);
    Ok(Position {
        xid: xmin.parse::<u64>().unwrap_or(0).saturating_sub(1),
        seq: i64::MAX,
    })
}

/// What a follower reads from its position.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Up to the limit of rows after it that are final, oldest first.
    Entries(Vec<Entry>),
    /// Rows after it were pruned before it read them: it must load everything again.
    Pruned,
}

/// Up to `limit` rows after `from` that are final, oldest first; or [`Read::Pruned`] if
/// some after `from` were pruned unread. One statement, so one snapshot: a prune that
/// committed before it has moved the horizon, and one that did not has deleted nothing it
/// sees.
pub fn read(c: &mut Client, from: Position, limit: i64) -> Result<Read, postgres::Error> {
    let rows = c.query(
        "SELECT h.xid::text, h.seq, c.xid::text, c.seq, c.at, c.origin, c.body
         FROM feed_horizon h LEFT JOIN LATERAL (
             SELECT xid, seq, at, origin, body FROM changes
             WHERE (xid, seq) > ($1::text::xid8, $2)
               AND xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY xid, seq LIMIT $3) c ON true
         WHERE h.id = 1
         ORDER BY c.xid, c.seq",
        &[&from.xid.to_string(), &from.seq, &limit],
    )?;
    let horizon = rows.first().map(|r| Position {
        xid: r.get::<_, &str>(0).parse().unwrap_or(0),
        seq: r.get(1),
    });
    if horizon.is_some_and(|h| h > from) {
        return Ok(Read::Pruned);
    }
    Ok(Read::Entries(
        rows.iter()
            .filter_map(|r| {
                // No change after `from`: the horizon's row alone, with nulls.
                let xid = r.get::<_, Option<&str>>(2)?;
                let seq = r.get::<_, Option<i64>>(3)?;
                let body: &str = r.get(6);
                Some(Entry {
                    position: Position {
                        xid: xid.parse().unwrap_or(0),
                        seq,
                    },
                    at: r.get(4),
                    origin: r.get(5),
                    // A row this release cannot read is skipped, not fatal: it was written
                    // by a newer one, and the next full load has its effect.
                    changes: serde_json::from_str(body).unwrap_or_else(|e| {
                        log::warn!("change feed: row {xid}/{seq} unreadable: {e}");
                        Vec::new()
                    }),
                })
            })
            .collect(),
    ))
}

/// Deletes rows older than `before` (in transaction `tx`), and moves the horizon past
/// them.
pub(crate) fn prune(
    tx: &mut postgres::Transaction<'_>,
    before: DateTime<Utc>,
) -> Result<(), postgres::Error> {
    let gone = tx.query(
        "WITH gone AS (DELETE FROM changes WHERE at < $1 RETURNING xid, seq)
         SELECT xid::text, seq FROM gone ORDER BY xid DESC, seq DESC LIMIT 1",
        &[&before],
    )?;
    if let Some(r) = gone.first() {
        tx.execute(
            "UPDATE feed_horizon SET xid = greatest(xid, $1::text::xid8),
                 seq = CASE WHEN $1::text::xid8 >= xid THEN $2 ELSE seq END WHERE id = 1",
            &[&r.get::<_, &str>(0), &r.get::<_, i64>(1)],
        )?;
    }
    Ok(())
}
