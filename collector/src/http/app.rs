//! The collector's shared state as the HTTP handlers see it, and what every handler needs:
//! token and credential checks, per-host rate limits, durable writes through ingest.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{ApiError, Result};
use crate::auth::{Credential, Credentials, Role, Tokens};
use crate::clock::Clock;
use crate::ingest::{Ingest, SubmitError};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::server::Peer;
use crate::store::{CommitStats, Store, Write};
use crate::{lock, read};

pub struct App {
    pub registry: Arc<Mutex<Registry>>,
    pub ingest: Ingest,
    /// A second connection: reads of stored detail, and operators' writes.
    pub store: Mutex<Box<dyn Store>>,
    /// Reloaded from `tokens.json` on SIGHUP.
    pub tokens: RwLock<Tokens>,
    /// Per-host credentials, by hash.
    pub credentials: RwLock<Credentials>,
    pub metrics: Arc<Metrics>,
    /// Per-host heartbeat budget.
    pub rate: Mutex<HashMap<String, Bucket>>,
    /// Per-host enrollment budget, apart: enrolling does not cost a heartbeat.
    pub enroll_rate: Mutex<HashMap<String, Bucket>>,
    /// Per-enrollment-secret budget, by the secret's hash, at `secret_limit`.
    pub secret_rate: Mutex<HashMap<String, Bucket>>,
    pub secret_limit: Rate,
    pub ready: AtomicBool,
    /// Agents must present a client certificate signed by the collector's client CA.
    pub require_client_cert: bool,
    /// The collector's clock: every "now" a handler uses.
    pub clock: Arc<dyn Clock>,
    /// Incidents and their notifications.
    pub notifier: Arc<crate::notify::Notifier>,
    /// The inventory in force, if `[inventory]` is configured.
    pub inventory: Arc<crate::inventory::Watch>,
    /// The open connections.
    pub connections: Arc<crate::server::Connections>,
    /// Refusals to say about a host, a few at a time.
    pub refusals: Mutex<RefusalLog>,
    /// The server certificate served, renewed in place.
    pub tls: Arc<crate::tls::Served>,
    /// Dashboard sessions: the key they are signed with.
    pub sessions: crate::dashboard::Sessions,
    /// Whether this collector leads, and how far it follows the others.
    pub replica: Arc<crate::replica::Replica>,
}

/// Refusals that say something about a host (its credential used to write another host,
/// an enrollment under its name while its agent speaks), by that host: the first is said
/// at once, the ones after it counted and said at most once a minute. A flood of refused
/// requests writes almost nothing.
#[derive(Debug, Default)]
pub struct RefusalLog(HashMap<String, Refusals>);

#[derive(Debug)]
struct Refusals {
    said_at: DateTime<Utc>,
    more: u64,
    /// The hosts it tried to write since, the first few.
    targets: Vec<String>,
}

/// How often a credential's refused writes are said, at most.
const SAY_REFUSALS_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl RefusalLog {
    /// A refusal about host `owner` naming `target` (the host written, the identity
    /// enrolled): `first`'s words if they are to be said now.
    pub fn refused(
        &mut self,
        owner: &str,
        target: &str,
        first: impl FnOnce() -> String,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if let Some(r) = self.0.get_mut(owner) {
            r.more += 1;
            if r.targets.len() < 5 && !r.targets.iter().any(|t| t == target) {
                r.targets.push(target.to_owned());
            }
            return None;
        }
        self.0.insert(
            owner.to_owned(),
            Refusals {
                said_at: now,
                more: 0,
                targets: Vec::new(),
            },
        );
        Some(first())
    }

    /// The counts due (owner, words); forgets credentials quiet for a minute.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut due = Vec::new();
        self.0.retain(|owner, r| {
            if now - r.said_at < SAY_REFUSALS_EVERY {
                return true;
            }
            if r.more == 0 {
                return false;
            }
            let targets: Vec<String> = r.targets.iter().map(|t| format!("{t:?}")).collect();
            let more = if r.targets.len() >= 5 { ", …" } else { "" };
            due.push((
                owner.clone(),
                format!(
                    "{} more like it were refused in the last {} min ({}{more})",
                    r.more,
                    (now - r.said_at).num_minutes().max(1),
                    targets.join(", "),
                ),
            ));
            r.more = 0;
            r.targets.clear();
            r.said_at = now;
            true
        });
        due
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

/// A bucket's size and refill.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: f64,
    pub per_sec: f64,
}

/// Per host: a burst of 20, refilled one every 3 s.
pub const HOST_RATE: Rate = Rate {
    burst: 20.0,
    per_sec: 1.0 / 3.0,
};

impl Rate {
    /// Per enrollment secret: `per_sec` a second after a burst of 50 times as many. At the
    /// default 10, a fleet of 6,000 hosts bootstrapped at once enrolls in about ten
    /// minutes, and a stolen secret cannot enroll hosts by the hundred thousand.
    pub fn per_secret(per_sec: u32) -> Rate {
        Rate {
            burst: 50.0 * f64::from(per_sec.max(1)),
            per_sec: f64::from(per_sec.max(1)),
        }
    }
}

impl App {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The name and role of the API token presented.
    pub fn caller(&self, headers: &HeaderMap) -> Result<(String, Role)> {
        let Some(v) = headers.get(header::AUTHORIZATION) else {
            self.metrics.rejected("unauthenticated");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API token: send the header 'Authorization: Bearer <token>'",
            ));
        };
        let token = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let who = read(&self.tokens)
            .who(token)
            .map(|(name, role, _)| (name.to_owned(), role));
        who.ok_or_else(|| {
            self.metrics.rejected("unauthenticated");
            ApiError::new(StatusCode::UNAUTHORIZED, "unknown API token")
        })
    }

    /// The caller's token name, if its role is at least `need`.
    pub fn require(&self, headers: &HeaderMap, need: Role) -> Result<String> {
        let (name, role) = self.caller(headers)?;
        let ok = match need {
            Role::Enroll => role == Role::Enroll,
            Role::Read => role >= Role::Read,
            Role::Admin => role == Role::Admin,
        };
        if !ok {
            self.metrics.rejected("forbidden");
            let what = match need {
                Role::Enroll => "enrolling needs an enrollment secret",
                Role::Read => "this call needs a read or admin token",
                Role::Admin => "this call needs an admin token",
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, what));
        }
        Ok(name)
    }

    /// The host a heartbeat's credential belongs to.
    /// With `--client-ca`, agents' calls need a verified client certificate (refused with
    /// 403, not 401: an agent drops its credential on 401, and the credential is fine).
    pub fn client_cert(&self, peer: Option<&Peer>) -> Result<()> {
        if !self.require_client_cert || peer.is_some_and(|p| p.client_cert) {
            return Ok(());
        }
        self.metrics.rejected("no_client_cert");
        Err(ApiError::field(
            StatusCode::FORBIDDEN,
            "client_cert",
            "this collector requires agents to present a client certificate signed by its client CA; set collector.client_cert and collector.client_key in the agent's config",
        ))
    }

    pub fn host_credential(&self, headers: &HeaderMap) -> Result<String> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            self.metrics.rejected("unauthenticated");
            return Err(ApiError::field(
                StatusCode::UNAUTHORIZED,
                "credential",
                "missing host credential: send 'Authorization: Bearer <credential>' (agents get one by enrolling)",
            ));
        };
        let creds = read(&self.credentials);
        match creds.check(token) {
            Credential::Host(h) => Ok(h.to_owned()),
            Credential::Revoked(h) => {
                self.metrics.rejected("revoked");
                Err(ApiError::field(
                    StatusCode::UNAUTHORIZED,
                    "credential",
                    format!("the credential of host {h} was revoked; enroll again with an enrollment secret"),
                ))
            }
            Credential::Unknown => {
                self.metrics.rejected("unauthenticated");
                let secret = read(&self.tokens).role(token) == Some(Role::Enroll);
                Err(ApiError::field(
                    StatusCode::UNAUTHORIZED,
                    "credential",
                    if secret {
                        "an enrollment secret cannot send heartbeats: exchange it for a host credential at POST /api/v1/enroll"
                    } else {
                        "unknown host credential: enroll again with an enrollment secret"
                    },
                ))
            }
        }
    }

    /// Queues a write and waits until it is durable.
    pub async fn write(&self, w: impl Into<Write>) -> Result<CommitStats> {
        let ack = self.ingest.submit(w).map_err(|e| {
            self.metrics.rejected("queue_full");
            match e {
                SubmitError::QueueFull(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "collector busy: ingest queue full; retry later",
                )
                .retry(1),
                SubmitError::Stopped => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "collector is shutting down",
                )
                .retry(5),
            }
        })?;
        match ack.await {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(e)) => {
                self.metrics.store_failed(&e);
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{e}; nothing was stored or acknowledged, retry later"),
                )
                .retry(5))
            }
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "collector is shutting down",
            )
            .retry(5)),
        }
    }

    /// A request refused for `reason` (a `rollcall_requests_rejected_total` label) that
    /// says something about host `owner`, naming `target` (the host written, the identity
    /// enrolled): counted, and `words` said as [`RefusalLog`] decides.
    pub fn refused(
        &self,
        reason: &'static str,
        owner: &str,
        target: &str,
        now: DateTime<Utc>,
        words: impl FnOnce() -> String,
    ) {
        self.metrics.rejected(reason);
        let said = lock(&self.refusals).refused(owner, target, words, now);
        if let Some(w) = said {
            self.say_refused(owner, now, w);
        }
    }

    /// Says the refused writes counted for a minute or more.
    pub fn say_refusals(&self, now: DateTime<Utc>) {
        let due = lock(&self.refusals).due(now);
        for (owner, words) in due {
            self.say_refused(&owner, now, words);
        }
    }

    fn say_refused(&self, owner: &str, now: DateTime<Utc>, message: String) {
        log::warn!("security: host {owner}: {message}");
        // Recorded, but never waited for: a refusal must not cost the writer a commit.
        let _ = self.ingest.submit(crate::store::HistoryRecord {
            host: owner.to_owned(),
            at: now,
            kind: "security".into(),
            message,
        });
    }

    /// Takes one token from the host's bucket, or says when to come back.
    pub fn rate_check(
        &self,
        buckets: &Mutex<HashMap<String, Bucket>>,
        host: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.take(buckets, host, HOST_RATE, now).map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("host {host} calls too often; retry in {wait}s"),
            )
            .retry(wait)
        })
    }

    /// Takes one token from `key`'s bucket at `rate`, or says how many seconds to wait.
    pub fn take(
        &self,
        buckets: &Mutex<HashMap<String, Bucket>>,
        key: &str,
        rate: Rate,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), u64> {
        let mut all = lock(buckets);
        let b = all.entry(key.to_owned()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate.per_sec).min(rate.burst);
        b.at = now;
        if b.tokens < 1.0 {
            self.metrics.rejected("rate_limited");
            return Err(((1.0 - b.tokens) / rate.per_sec).ceil() as u64);
        }
        b.tokens -= 1.0;
        Ok(())
    }
}

/// A call that needs an admin token (403 with a read token, 401 without one), with the
/// token's name: what the history says did it.
pub struct Admin(pub String);

/// A call that needs a read or admin token.
pub struct Reader;

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self> {
        app.require(&parts.headers, Role::Admin).map(Admin)
    }
}

impl FromRequestParts<Arc<App>> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self> {
        app.require(&parts.headers, Role::Read).map(|_| Reader)
    }
}

/// A JSON body, size-checked and parsed with the offending field named (400, 413).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self> {
        let b = Bytes::from_request(req, app).await;
        let b = super::body(b, &app.metrics)?;
        super::parse(&b).map(Body)
    }
}

#[cfg(test)]
mod tests {
    use super::RefusalLog;
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_flood_of_refused_writes_is_said_once_then_once_a_minute() {
        let t0 = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        let s = chrono::TimeDelta::seconds;
        let mut log = RefusalLog::default();
        let words = || "its credential was used to write host \"web-2\"".to_owned();
        let first = log.refused("web-1", "web-2", words, t0).unwrap();
        assert!(first.contains("\"web-2\""), "{first}");
        for i in 0..20_000 {
            let target = format!("web-{}", 2 + i % 9);
            assert_eq!(log.refused("web-1", &target, words, t0 + s(i / 1000)), None);
        }
        assert!(log.due(t0 + s(59)).is_empty(), "not before a minute");
        let due = log.due(t0 + s(60));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "web-1");
        assert!(
            due[0]
                .1
                .starts_with("20000 more like it were refused in the last 1 min"),
            "{}",
            due[0].1
        );
        assert!(due[0].1.contains("\"web-2\", \"web-3\""), "{}", due[0].1);
        // Quiet since: nothing more to say, and after a quiet minute it is forgotten, so
        // the next refusal is said at once again.
        assert!(log.due(t0 + s(120)).is_empty());
        assert!(log.refused("web-1", "web-5", words, t0 + s(121)).is_some());
        // Another credential is said on its own.
        assert!(log.refused("db-1", "web-5", words, t0 + s(121)).is_some());
    }
}
