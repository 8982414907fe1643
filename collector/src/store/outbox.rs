//! Incidents and the notification outbox in SQLite: an incident change and the
//! notifications it causes are one transaction, written before anything is sent.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::sqlite::SqliteStore;
use super::{Delivery, IncidentStore, OutboxRow, OutboxTally, StoreError};
use crate::incidents::{Action, Incident};

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

const OUTBOX_COLUMNS: &str =
    "id, receiver, incident, action, body, created_at, attempts, next_at, state, last_error, done_at";

impl SqliteStore {
    fn incident_doc(&self, doc: &str) -> Result<Incident, StoreError> {
        serde_json::from_str(doc).map_err(|e| self.corrupt("incidents.doc", e.to_string()))
    }

    fn outbox_row(&self, r: &rusqlite::Row<'_>) -> Result<OutboxRow, StoreError> {
        let get = |e: rusqlite::Error| self.err()(e);
        let action_text: String = r.get(3).map_err(get)?;
        let body: String = r.get(4).map_err(get)?;
        Ok(OutboxRow {
            id: r.get(0).map_err(get)?,
            receiver: r.get(1).map_err(get)?,
            incident: r.get(2).map_err(get)?,
            action: Action::parse(&action_text)
                .ok_or_else(|| self.corrupt("outbox.action", action_text.clone()))?,
            body: self.incident_doc(&body)?,
            created_at: from_ms(r.get(5).map_err(get)?),
            attempts: r.get(6).map_err(get)?,
            next_at: from_ms(r.get(7).map_err(get)?),
            state: r.get(8).map_err(get)?,
            last_error: r.get(9).map_err(get)?,
            done_at: r.get::<_, Option<i64>>(10).map_err(get)?.map(from_ms),
        })
    }

    fn outbox_query(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let mut rows = stmt.query(p).map_err(self.err())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(self.err())? {
            out.push(self.outbox_row(r)?);
        }
        Ok(out)
    }
}

impl IncidentStore for SqliteStore {
    fn load_open_incidents(&self) -> Result<(Vec<Incident>, i64), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT doc FROM incidents WHERE open = 1 ORDER BY id")
            .map_err(self.err())?;
        let docs: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        let open = docs
            .iter()
            .map(|d| self.incident_doc(d))
            .collect::<Result<Vec<_>, _>>()?;
        let next: i64 = self
            .conn
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM incidents", [], |r| {
                r.get(0)
            })
            .map_err(self.err())?;
        Ok((open, next))
    }

    fn record(
        &mut self,
        changed: &[Incident],
        outbox: &[(i64, String, Action, Incident)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path().display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut put = tx
                .prepare(
                    "INSERT INTO incidents (id, key, open, opened_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET open = excluded.open, doc = excluded.doc",
                )
                .map_err(err)?;
            for i in changed {
                let doc = serde_json::to_string(i).unwrap_or_default();
                put.execute(params![i.id, i.key, i.is_open(), ms(i.opened_at), doc])
                    .map_err(err)?;
            }
            let mut queue = tx
                .prepare(
                    "INSERT INTO outbox (receiver, incident, action, body, created_at, next_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )
                .map_err(err)?;
            for (incident, receiver, a, body) in outbox {
                let body = serde_json::to_string(body).unwrap_or_default();
                queue
                    .execute(params![receiver, incident, a.as_str(), body, ms(now)])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn pending(&self, receiver: &str, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_query(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE receiver = ?1 AND state = 'pending' ORDER BY id LIMIT ?2"
            ),
            params![receiver, limit as i64],
        )
    }

    fn delivered(&mut self, id: i64, d: &Delivery, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (sql, p): (&str, Vec<rusqlite::types::Value>) = match d {
            Delivery::Sent => (
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?2, last_error = NULL WHERE id = ?1",
                vec![id.into(), ms(now).into()],
            ),
            Delivery::Retry { at, error } => (
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE id = ?1",
                vec![id.into(), ms(*at).into(), error.clone().into()],
            ),
            Delivery::Failed { error } => (
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, done_at = ?2, last_error = ?3 WHERE id = ?1",
                vec![id.into(), ms(now).into(), error.clone().into()],
            ),
        };
        self.conn
            .execute(sql, rusqlite::params_from_iter(p))
            .map_err(self.err())?;
        Ok(())
    }

    fn incidents(&self, open: Option<bool>, limit: usize) -> Result<Vec<Incident>, StoreError> {
        let sql = match open {
            Some(true) => "SELECT doc FROM incidents WHERE open = 1 ORDER BY id DESC LIMIT ?1",
            Some(false) => "SELECT doc FROM incidents WHERE open = 0 ORDER BY id DESC LIMIT ?1",
            None => "SELECT doc FROM incidents ORDER BY id DESC LIMIT ?1",
        };
        let mut stmt = self.conn.prepare(sql).map_err(self.err())?;
        let docs: Vec<String> = stmt
            .query_map([limit as i64], |r| r.get(0))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        docs.iter().map(|d| self.incident_doc(d)).collect()
    }

    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<OutboxRow>)>, StoreError> {
        let doc: Option<String> = self
            .conn
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        let Some(doc) = doc else {
            return Ok(None);
        };
        let deliveries = self.outbox_query(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE incident = ?1 ORDER BY id"),
            [id],
        )?;
        Ok(Some((self.incident_doc(&doc)?, deliveries)))
    }

    fn outbox_tally(&self) -> Result<Vec<OutboxTally>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT receiver, state, count(*), min(created_at) FROM outbox GROUP BY receiver, state",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OutboxTally {
                    receiver: r.get(0)?,
                    state: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                    oldest: from_ms(r.get(3)?),
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    fn pending_count(&self, receiver: &str) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.conn
            .query_row(
                "SELECT count(*), min(created_at) FROM outbox WHERE receiver = ?1 AND state = 'pending'",
                [receiver],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?.map(from_ms))),
            )
            .map_err(self.err())
    }

    fn prune_incidents(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let cut = ms(before);
        let outbox = self
            .conn
            .execute(
                "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?1",
                [cut],
            )
            .map_err(self.err())?;
        // A resolved incident goes with its last notification: never while one is pending.
        let incidents = self
            .conn
            .execute(
                "DELETE FROM incidents WHERE open = 0 AND opened_at < ?1
                 AND id NOT IN (SELECT incident FROM outbox WHERE state = 'pending')",
                [cut],
            )
            .map_err(self.err())?;
        Ok((outbox + incidents) as u64)
    }
}
