//! Incidents and the notification outbox in PostgreSQL: an incident change and the
//! notifications it causes are one transaction, written before anything is sent.

use chrono::{DateTime, Utc};

use super::postgres::PgStore;
use super::{Delivery, IncidentStore, OutboxRow, OutboxTally, StoreError};
use crate::incidents::{Action, Incident};

const OUTBOX_COLUMNS: &str = "id, receiver, incident, action, body::text, created_at, attempts, next_at, state, last_error, done_at";

impl PgStore {
    /// `f` in one transaction that commits only if this collector leads in the current
    /// epoch: what it writes waits for, and is undone by, no other leader.
    fn fenced<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let epoch = self.replica.epoch();
        self.in_transaction(|tx| {
            let now: i64 = tx
                .query_one("SELECT epoch FROM leadership WHERE id = 1 FOR SHARE", &[])
                .map_err(self.err())?
                .get(0);
            if now != epoch {
                return Err(StoreError::NotLeader { epoch });
            }
            f(tx).map_err(self.err())
        })
    }

    fn incident_doc(&self, doc: &str) -> Result<Incident, StoreError> {
        serde_json::from_str(doc).map_err(|e| self.corrupt("incidents.doc", e.to_string()))
    }

    fn docs(&self, rows: Vec<postgres::Row>) -> Result<Vec<Incident>, StoreError> {
        rows.iter()
            .map(|r| self.incident_doc(r.get::<_, &str>(0)))
            .collect()
    }

    fn outbox_rows(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = self.with(|c| c.query(sql, params).map_err(self.err()))?;
        rows.iter()
            .map(|r| {
                let action_text: &str = r.get(3);
                Ok(OutboxRow {
                    id: r.get(0),
                    receiver: r.get(1),
                    incident: r.get(2),
                    action: Action::parse(action_text)
                        .ok_or_else(|| self.corrupt("outbox.action", action_text.to_owned()))?,
                    body: self.incident_doc(r.get(4))?,
                    created_at: r.get(5),
                    attempts: r.get::<_, i32>(6).max(0) as u32,
                    next_at: r.get(7),
                    state: r.get(8),
                    last_error: r.get(9),
                    done_at: r.get(10),
                })
            })
            .collect()
    }
}

impl IncidentStore for PgStore {
    fn load_open_incidents(&self) -> Result<(Vec<Incident>, i64), StoreError> {
        let (open, next) = self.with(|c| {
            let open = c.query(
                "SELECT doc::text FROM incidents WHERE open ORDER BY id",
                &[],
            );
            let next = c.query_one("SELECT coalesce(max(id), 0) + 1 FROM incidents", &[]);
            open.and_then(|o| Ok((o, next?.get::<_, i64>(0))))
                .map_err(self.err())
        })?;
        Ok((self.docs(open)?, next))
    }

    fn record(
        &mut self,
        changed: &[Incident],
        outbox: &[(i64, String, Action, Incident)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.fenced(|tx| {
                for i in changed {
                    let doc = serde_json::to_string(i).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO incidents (id, key, open, opened_at, doc) VALUES ($1, $2, $3, $4, $5::text::jsonb)
                         ON CONFLICT (id) DO UPDATE SET open = excluded.open, doc = excluded.doc",
                        &[&i.id, &i.key, &i.is_open(), &i.opened_at, &doc],
                    )?;
                }
                for (incident, receiver, a, body) in outbox {
                    let body = serde_json::to_string(body).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO outbox (receiver, incident, action, body, created_at, next_at)
                         VALUES ($1, $2, $3, $4::text::jsonb, $5, $5)",
                        &[receiver, incident, &a.as_str(), &body, &now],
                    )?;
                }
                Ok(())
        })
    }

    fn pending(&self, receiver: &str, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_rows(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE receiver = $1 AND state = 'pending' ORDER BY id LIMIT $2"
            ),
            &[&receiver, &(limit as i64)],
        )
    }

    fn delivered(&mut self, id: i64, d: &Delivery, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.fenced(|c| {
            match d {
                Delivery::Sent => c.execute(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = $2, last_error = NULL WHERE id = $1",
                    &[&id, &now],
                ),
                Delivery::Retry { at, error } => c.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE id = $1",
                    &[&id, at, error],
                ),
                Delivery::Failed { error } => c.execute(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, done_at = $2, last_error = $3 WHERE id = $1",
                    &[&id, &now, error],
                ),
            }
            .map(|_| ())
        })
    }

    fn claim(&mut self, id: i64) -> Result<bool, StoreError> {
        let epoch = self.replica.epoch();
        self.fenced(|tx| {
            tx.execute(
                "UPDATE outbox SET claimed_epoch = $2 WHERE id = $1 AND state = 'pending'",
                &[&id, &epoch],
            )
            .map(|n| n == 1)
        })
        .or_else(|e| match e {
            StoreError::NotLeader { .. } => Ok(false),
            e => Err(e),
        })
    }

    fn incidents(&self, open: Option<bool>, limit: usize) -> Result<Vec<Incident>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT doc::text FROM incidents WHERE $1::boolean IS NULL OR open = $1
                 ORDER BY id DESC LIMIT $2",
                &[&open, &(limit as i64)],
            )
            .map_err(self.err())
        })?;
        self.docs(rows)
    }

    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<OutboxRow>)>, StoreError> {
        let rows = self.with(|c| {
            c.query("SELECT doc::text FROM incidents WHERE id = $1", &[&id])
                .map_err(self.err())
        })?;
        let Some(doc) = self.docs(rows)?.pop() else {
            return Ok(None);
        };
        let deliveries = self.outbox_rows(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE incident = $1 ORDER BY id"),
            &[&id],
        )?;
        Ok(Some((doc, deliveries)))
    }

    fn outbox_tally(&self) -> Result<Vec<OutboxTally>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT receiver, state, count(*), min(created_at) FROM outbox GROUP BY receiver, state",
                &[],
            )
            .map_err(self.err())
        })?;
        Ok(rows
            .iter()
            .map(|r| OutboxTally {
                receiver: r.get(0),
                state: r.get(1),
                count: r.get::<_, i64>(2).max(0) as u64,
                oldest: r.get(3),
            })
            .collect())
    }

    fn pending_count(&self, receiver: &str) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.with(|c| {
            c.query_one(
                "SELECT count(*), min(created_at) FROM outbox WHERE receiver = $1 AND state = 'pending'",
                &[&receiver],
            )
            .map(|r| (r.get::<_, i64>(0).max(0) as u64, r.get(1)))
            .map_err(self.err())
        })
    }

    fn prune_incidents(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.transaction(|tx| {
            let outbox = tx.execute(
                "DELETE FROM outbox WHERE state <> 'pending' AND created_at < $1",
                &[&before],
            )?;
            // A resolved incident goes with its last notification: never while one is
            // pending.
            let incidents = tx.execute(
                "DELETE FROM incidents WHERE NOT open AND opened_at < $1
                     AND id NOT IN (SELECT incident FROM outbox WHERE state = 'pending')",
                &[&before],
            )?;
            Ok(outbox + incidents)
        })
    }
}
