//! The HTTPS JSON API. Errors are `{"error": "...", "field": "..."}` with the status that
//! fits; nothing that fails validation reaches the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use rollcall_proto::{
    EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck, ProbeAck, ProbeResults, ProbeTarget,
    ProbeTargets, MAX_PROBE_RESULTS, PROTO_VERSION,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Credential, Credentials, Role, Tokens};
use crate::ingest::{Ingest, SubmitError};
use crate::metrics::Metrics;
use crate::registry::{Filter, Registry};
use crate::server::Peer;
use crate::state::{HostState, Lifecycle};
use crate::store::{
    CommitStats, CredentialRecord, HeartbeatRecord, HistoryRecord, SqliteStore, StateJson, Store,
    Write,
};

/// Largest heartbeat accepted (413 above).
pub const MAX_BODY: usize = 64 * 1024;
const MAX_EVENTS: usize = 1000;
const MAX_LABELS: usize = 32;

pub struct App {
    pub registry: Arc<Mutex<Registry>>,
    pub ingest: Ingest,
    /// A second connection: reads of stored detail, and operators' writes.
    pub store: Mutex<SqliteStore>,
    /// Reloaded from `tokens.json` on SIGHUP.
    pub tokens: std::sync::RwLock<Tokens>,
    /// Per-host credentials, by hash.
    pub credentials: std::sync::RwLock<Credentials>,
    pub metrics: Arc<Metrics>,
    /// Per-host heartbeat budget.
    pub rate: Mutex<HashMap<String, Bucket>>,
    /// Per-host enrollment budget, apart: enrolling does not cost a heartbeat.
    pub enroll_rate: Mutex<HashMap<String, Bucket>>,
    pub ready: AtomicBool,
    /// Agents must present a client certificate signed by the collector's client CA.
    pub require_client_cert: bool,
}

/// Per-host token bucket: a burst of 20, refilled one every 3 s.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

const BURST: f64 = 20.0;
const REFILL_PER_SEC: f64 = 1.0 / 3.0;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: None,
            retry_after: None,
        }
    }
    fn field(status: StatusCode, field: &str, error: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(status, error)
        }
    }
    fn bad(field: &str, error: impl Into<String>) -> Self {
        ApiError::field(StatusCode::BAD_REQUEST, field, error)
    }
    fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.error, "field": self.field }));
        let mut r = (self.status, body).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

type Result<T> = std::result::Result<T, ApiError>;

impl App {
    fn role(&self, headers: &HeaderMap) -> Result<Role> {
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
        let role = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .role(token);
        role.ok_or_else(|| {
            self.metrics.rejected("unauthenticated");
            ApiError::new(StatusCode::UNAUTHORIZED, "unknown API token")
        })
    }

    fn require(&self, headers: &HeaderMap, need: Role) -> Result<Role> {
        let role = self.role(headers)?;
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
        Ok(role)
    }

    /// The host a heartbeat's credential belongs to.
    /// With `--client-ca`, agents' calls need a verified client certificate (refused with
    /// 403, not 401: an agent drops its credential on 401, and the credential is fine).
    fn client_cert(&self, peer: Option<&Peer>) -> Result<()> {
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

    fn host_credential(&self, headers: &HeaderMap) -> Result<String> {
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
        let creds = self.credentials.read().unwrap_or_else(|p| p.into_inner());
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
                let secret = self
                    .tokens
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .role(token)
                    == Some(Role::Enroll);
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
    async fn write(&self, w: impl Into<Write>) -> Result<CommitStats> {
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
                log::error!("storing failed: {e}");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage failed; nothing was acknowledged, retry later",
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

    /// Takes one token from the host's bucket, or says when to come back.
    fn rate_check(
        &self,
        buckets: &Mutex<HashMap<String, Bucket>>,
        host: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut rate = lock(buckets);
        let b = rate.entry(host.to_owned()).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * REFILL_PER_SEC).min(BURST);
        b.at = now;
        if b.tokens < 1.0 {
            let wait = ((1.0 - b.tokens) / REFILL_PER_SEC).ceil() as u64;
            self.metrics.rejected("rate_limited");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("host {host} calls too often; retry in {wait}s"),
            )
            .retry(wait));
        }
        b.tokens -= 1.0;
        Ok(())
    }
}

/// JSON, with the path of the offending field in the error. The path is tracked only when
/// the fast parse has failed.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // serde names a missing field only in its message: "missing field `identity`".
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next());
        let field = match (path.as_str(), missing) {
            ("." | "?", Some(m)) => m.to_owned(),
            ("." | "?", None) => "(body)".to_owned(),
            (p, Some(m)) => format!("{p}.{m}"),
            (p, None) => p.to_owned(),
        };
        ApiError::bad(&field, format!("invalid JSON: {inner}"))
    })
}

fn body(b: std::result::Result<Bytes, BytesRejection>, metrics: &Metrics) -> Result<Bytes> {
    b.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            metrics.rejected("too_large");
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY} bytes"),
            )
        } else {
            metrics.rejected("bad_request");
            ApiError::bad("(body)", r.body_text())
        }
    })
}

/// A host name as DNS allows it.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !h.starts_with(['-', '.'])
}

/// What enrollment and heartbeats share: version, host name, identity, labels.
fn validate(
    proto_version: u32,
    host: &str,
    identity: &rollcall_proto::Identity,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    if proto_version != PROTO_VERSION {
        return Err(ApiError::bad("proto_version", format!("proto_version {proto_version} is not spoken here (this collector speaks {PROTO_VERSION}); upgrade the collector or the agent")));
    }
    if !valid_host(host) {
        return Err(ApiError::bad(
            "host",
            "host must be a DNS name (letters, digits, '-', '.', '_'; at most 253)",
        ));
    }
    for (field, v) in [
        ("identity.machine_id", &identity.machine_id),
        ("identity.install_id", &identity.install_id),
    ] {
        if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad(
                field,
                format!("{field} must be 1 to 128 printable characters"),
            ));
        }
    }
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad(
            "labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    if let Some((k, _)) = labels
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 128)
    {
        return Err(ApiError::bad(
            &format!("labels.{k}"),
            "label names are 1 to 64 characters, values at most 128",
        ));
    }
    Ok(())
}

fn validate_heartbeat(hb: &Heartbeat) -> Result<()> {
    if !(1..=86_400).contains(&hb.interval_secs) {
        return Err(ApiError::bad(
            "interval_secs",
            "interval_secs must be between 1 and 86400",
        ));
    }
    if hb.events.len() > MAX_EVENTS {
        return Err(ApiError::bad(
            "events",
            format!("at most {MAX_EVENTS} events per heartbeat"),
        ));
    }
    Ok(())
}

async fn heartbeat(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatAck>> {
    app.client_cert(peer.as_deref())?;
    let owner = app.host_credential(&headers)?;
    let b = body(b, &app.metrics)?;
    let hb: Heartbeat = parse(&b).inspect_err(|_| app.metrics.rejected("bad_request"))?;
    validate(hb.proto_version, &hb.host, &hb.identity, &hb.labels)
        .inspect_err(|_| app.metrics.rejected("bad_request"))?;
    validate_heartbeat(&hb).inspect_err(|_| app.metrics.rejected("bad_request"))?;
    let now = Utc::now();
    if hb.host != owner {
        app.metrics.rejected("wrong_host");
        log::warn!(
            "security: the credential of host {owner} was used to write host {:?} (identity {}); refused",
            hb.host,
            hb.identity
        );
        // Recorded, but never waited for: a refusal must not cost the writer a commit each.
        let _ = app.ingest.submit(HistoryRecord {
            host: owner.clone(),
            at: now,
            kind: "security".into(),
            message: format!(
                "its credential was used to write host {:?} (identity {}); refused",
                hb.host, hb.identity
            ),
        });
        return Err(ApiError::field(
            StatusCode::FORBIDDEN,
            "host",
            format!(
                "this credential belongs to host {owner}; it cannot write host {:?}",
                hb.host
            ),
        ));
    }
    app.rate_check(&app.rate, &hb.host, now)?;
    if hb.events_dropped > 0 {
        let _ = app.ingest.submit(HistoryRecord {
            host: hb.host.clone(),
            at: now,
            kind: "spool".into(),
            message: format!(
                "the agent dropped {} event(s): its spool was full while it could not reach the collector",
                hb.events_dropped
            ),
        });
    }
    let acked_seq = hb.events.iter().map(|e| e.seq).max().unwrap_or(0);
    let (health, reason) = hb.state.overall();
    let record = HeartbeatRecord {
        identity: hb.identity.to_string(),
        received_at: now,
        interval_secs: hb.interval_secs,
        health,
        reason,
        state_fingerprint: fingerprint(&hb.state),
        state_json: StateJson::Parsed(Arc::new(hb.state)),
        labels: hb.labels,
        events: hb.events,
        host: hb.host,
        booted_at: hb.booted_at,
    };
    app.write(record).await?;
    app.metrics.accepted();
    Ok(Json(HeartbeatAck { acked_seq }))
}

async fn enroll(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<EnrollResponse>> {
    app.client_cert(peer.as_deref())?;
    app.require(&headers, Role::Enroll)?;
    let b = body(b, &app.metrics)?;
    let req: EnrollRequest = parse(&b).inspect_err(|_| app.metrics.rejected("bad_request"))?;
    validate(req.proto_version, &req.host, &req.identity, &req.labels)
        .inspect_err(|_| app.metrics.rejected("bad_request"))?;
    if let Some(a) = &req.bmc_address {
        if a.parse::<std::net::IpAddr>().is_err() {
            app.metrics.rejected("bad_request");
            return Err(ApiError::bad(
                "bmc_address",
                format!("bmc_address {a:?} is not an IP address"),
            ));
        }
    }
    let now = Utc::now();
    app.rate_check(&app.enroll_rate, &req.host, now)?;
    let credential = crate::auth::new_token()
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry(5))?;
    let issue = CredentialRecord::Issue {
        sha256: crate::auth::hash(&credential),
        host: req.host.clone(),
        identity: req.identity.to_string(),
        at: now,
        bmc_address: req.bmc_address.clone(),
    };
    app.write(issue.clone()).await?;
    app.credentials
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .apply(&issue);
    app.metrics.enrolled();
    log::info!("host {} enrolled (identity {})", req.host, req.identity);
    Ok(Json(EnrollResponse {
        host: req.host,
        credential,
    }))
}

async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    app.require(&headers, Role::Admin)?;
    let live = app
        .credentials
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .live(&name);
    if live == 0 {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "name",
            format!("host {name:?} holds no live credential"),
        ));
    }
    let now = Utc::now();
    let r = CredentialRecord::RevokeHost {
        host: name.clone(),
        at: now,
    };
    app.write(r.clone()).await?;
    app.credentials
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .apply(&r);
    log::info!("credentials of host {name} revoked ({live})");
    Ok(Json(json!({ "host": name, "revoked": live })))
}

/// What an SRE would call a change of state: everything but the timestamps that move with
/// every heartbeat (`at`, the last log write, when the BMC was last checked).
fn fingerprint(s: &rollcall_proto::AgentState) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let b = &s.besclient;
    let r = &b.remediation;
    (
        b.health,
        b.status.as_str(),
        &b.reason,
        b.since,
        b.pid,
        &b.manager,
        &b.unit_state,
    )
        .hash(&mut h);
    (
        b.log.dir_exists,
        &b.log.newest,
        b.log.stale,
        b.errors.count,
        &b.errors.last_line,
    )
        .hash(&mut h);
    b.disk.as_ref().map(|d| d.full).hash(&mut h);
    (
        r.enabled,
        r.paused_until,
        &r.pause_reason,
        &r.step,
        r.exhausted_rounds,
        r.next_attempt_at,
        r.attempts_in_window,
        r.flapping,
    )
        .hash(&mut h);
    s.bmc
        .as_ref()
        .map(|m| (m.health, m.present, m.address, m.channel, &m.reason))
        .hash(&mut h);
    s.nessusd
        .as_ref()
        .map(|n| {
            let r = &n.remediation;
            (
                (
                    n.health, n.status, n.progress, &n.said, &n.reason, n.since, n.pid,
                ),
                (
                    &n.unit_state,
                    &r.step,
                    r.exhausted_rounds,
                    r.next_attempt_at,
                ),
                (r.paused_until, r.attempts_in_window, r.flapping),
            )
        })
        .hash(&mut h);
    h.finish()
}

fn filter(q: &HashMap<String, String>) -> Result<Filter> {
    let mut f = Filter::default();
    for (k, v) in q {
        match k.as_str() {
            "state" => {
                f.state = Some(HostState::parse(v).ok_or_else(|| {
                    ApiError::bad("state", format!("unknown state {v:?}; one of up, late, silent, unhealthy, maintenance, duplicate"))
                })?)
            }
            "lifecycle" => {
                f.lifecycle = Some(Lifecycle::parse(v).ok_or_else(|| ApiError::bad("lifecycle", format!("unknown lifecycle {v:?}; one of build, live, available, retired")))?)
            }
            "env" => f.env = Some(v.clone()),
            "region" => f.region = Some(v.clone()),
            "zone" => f.zone = Some(v.clone()),
            "role" => f.role = Some(v.clone()),
            other => return Err(ApiError::bad(other, format!("unknown filter {other:?}; use state, lifecycle, env, region, zone or role"))),
        }
    }
    Ok(f)
}

async fn hosts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    app.require(&headers, Role::Read)?;
    let f = filter(&q)?;
    // Written straight from the registry, under its lock: no copy of each host first.
    #[derive(serde::Serialize)]
    struct Page<'a, T> {
        count: usize,
        hosts: &'a [T],
    }
    let body = {
        let r = lock(&app.registry);
        let hosts = r.query(&f, Utc::now());
        serde_json::to_vec(&Page {
            count: hosts.len(),
            hosts: &hosts,
        })
    }
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("hosts: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn host(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    app.require(&headers, Role::Read)?;
    let (view, probes) = {
        let r = lock(&app.registry);
        (
            r.get(&name, Utc::now()).map(|v| json!(v)),
            r.bmc_probes(&name),
        )
    };
    let Some(view) = view else {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "name",
            format!("no host named {name:?}"),
        ));
    };
    let store = lock(&app.store);
    let state: Option<Value> = store
        .host_state(&name)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok());
    let events = store.recent_events(&name, 50).unwrap_or_default();
    let history = store.recent_history(&name, 50).unwrap_or_default();
    Ok(Json(
        json!({ "host": view, "agent_state": state, "bmc_probes": probes, "events": events, "history": history }),
    ))
}

/// `GET /api/v1/probe-targets`, with a scanner host's credential: the BMCs of the live
/// hosts in its zone.
async fn probe_targets(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Json<ProbeTargets>> {
    app.client_cert(peer.as_deref())?;
    let scanner = app.host_credential(&headers)?;
    let r = lock(&app.registry);
    let interval = r.probe_interval();
    let a = r.probe_targets(&scanner).map_err(|why| {
        app.metrics.rejected("not_a_scanner");
        ApiError::field(StatusCode::FORBIDDEN, "scanner", why)
    })?;
    drop(r);
    Ok(Json(ProbeTargets {
        scanner,
        zone: a.zone,
        interval_secs: interval.as_secs().clamp(1, u32::MAX as u64) as u32,
        targets: a
            .targets
            .into_iter()
            .map(|(host, address)| ProbeTarget { host, address })
            .collect(),
    }))
}

/// `POST /api/v1/probe-results`, with a scanner host's credential: what it found, taken
/// for the hosts assigned to it.
async fn probe_results(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ProbeAck>> {
    app.client_cert(peer.as_deref())?;
    let scanner = app.host_credential(&headers)?;
    let b = body(b, &app.metrics)?;
    let r: ProbeResults = parse(&b).inspect_err(|_| app.metrics.rejected("bad_request"))?;
    let bad = |field: &str, msg: String| {
        app.metrics.rejected("bad_request");
        ApiError::bad(field, msg)
    };
    if r.proto_version != PROTO_VERSION {
        return Err(bad(
            "proto_version",
            format!(
                "proto_version {} is not {PROTO_VERSION}; upgrade the agent or the collector",
                r.proto_version
            ),
        ));
    }
    if r.scanner != scanner {
        app.metrics.rejected("wrong_host");
        return Err(ApiError::field(
            StatusCode::FORBIDDEN,
            "scanner",
            format!(
                "this credential belongs to host {scanner}; it cannot report as scanner {:?}",
                r.scanner
            ),
        ));
    }
    if r.results.len() > MAX_PROBE_RESULTS {
        return Err(bad(
            "results",
            format!(
                "{} results in one call; send at most {MAX_PROBE_RESULTS} per call",
                r.results.len()
            ),
        ));
    }
    if let Some(e) = r.results.iter().find(|e| e.detail.len() > 512) {
        return Err(bad(
            "results.detail",
            format!("the detail for host {:?} is over 512 bytes", e.host),
        ));
    }
    let now = Utc::now();
    let (taken, ignored, transitions) = lock(&app.registry)
        .record_probes(&scanner, &r.results, now)
        .map_err(|why| {
            app.metrics.rejected("not_a_scanner");
            ApiError::field(StatusCode::FORBIDDEN, "scanner", why)
        })?;
    for t in &transitions {
        app.metrics.transition(t.to);
        if let Some(from) = t.from {
            log::info!("host {} {} -> {}: {}", t.host, from, t.to, t.reason);
        }
    }
    Ok(Json(ProbeAck {
        recorded: taken,
        ignored: ignored.len() as u32,
        why_ignored: ignored.into_iter().take(10).collect(),
    }))
}

/// `GET /api/v1/zones`: every zone, its scanners, and whether it has a working one.
async fn zones(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>> {
    app.require(&headers, Role::Read)?;
    let zones = lock(&app.registry).zones();
    let flagged = zones.iter().filter(|z| z.flagged).count();
    Ok(Json(json!({ "zones": zones, "flagged": flagged })))
}

async fn summary(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>> {
    app.require(&headers, Role::Read)?;
    let r = lock(&app.registry);
    let (states, flagged) = r.counts();
    let states: HashMap<&str, usize> = states.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let zones_flagged: Vec<String> = r
        .zones()
        .into_iter()
        .filter(|z| z.flagged)
        .map(|z| z.zone)
        .collect();
    Ok(Json(
        json!({ "hosts": r.len(), "flagged": flagged, "states": states, "zones_flagged": zones_flagged }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    until: Option<DateTime<Utc>>,
    #[serde(rename = "for")]
    for_: Option<String>,
    reason: String,
}

async fn put_maintenance(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    app.require(&headers, Role::Admin)?;
    let m: MaintenanceBody = parse(&body(b, &app.metrics)?)?;
    let now = Utc::now();
    let until = match (m.until, m.for_.as_deref()) {
        (Some(u), None) => u,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d).map_err(|e| {
                ApiError::bad(
                    "for",
                    format!("invalid duration {d:?} ({e}); write it like \"2h\""),
                )
            })?;
            now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
        }
        _ => {
            return Err(ApiError::bad(
                "until",
                "give exactly one of \"until\" (RFC 3339 time) or \"for\" (duration)",
            ))
        }
    };
    if until <= now {
        return Err(ApiError::bad("until", "maintenance must end in the future"));
    }
    if until > now + chrono::Duration::days(90) {
        return Err(ApiError::bad(
            "until",
            "maintenance longer than 90 days: mark the host 'available' instead",
        ));
    }
    if m.reason.trim().is_empty() || m.reason.len() > 500 {
        return Err(ApiError::bad(
            "reason",
            "a reason of 1 to 500 characters is required",
        ));
    }
    operator_write(&app, &name, |st| {
        st.set_maintenance(&name, Some((until, m.reason.trim())))
    })?;
    lock(&app.registry).set_maintenance(&name, Some((until, m.reason.trim().to_owned())), now);
    Ok(Json(
        json!({ "host": name, "maintenance_until": until, "reason": m.reason.trim() }),
    ))
}

/// An operator's change, written through the operator connection: 503 if the store fails,
/// 404 if there is no such host. The registry is updated by the caller afterwards.
fn operator_write(
    app: &App,
    name: &str,
    write: impl FnOnce(&mut SqliteStore) -> std::result::Result<bool, crate::store::StoreError>,
) -> Result<()> {
    let known = write(&mut lock(&app.store))
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry(5))?;
    if !known {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "name",
            format!("no host named {name:?}"),
        ));
    }
    Ok(())
}

async fn delete_maintenance(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    app.require(&headers, Role::Admin)?;
    operator_write(&app, &name, |st| st.set_maintenance(&name, None))?;
    lock(&app.registry).set_maintenance(&name, None, Utc::now());
    Ok(Json(json!({ "host": name, "maintenance_until": null })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleBody {
    lifecycle: String,
}

async fn put_lifecycle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    app.require(&headers, Role::Admin)?;
    let l: LifecycleBody = parse(&body(b, &app.metrics)?)?;
    let lifecycle =
        match Lifecycle::parse(&l.lifecycle) {
            Some(Lifecycle::Build) => return Err(ApiError::bad(
                "lifecycle",
                "build is derived from first contact (under 48 h); set live, available or retired",
            )),
            Some(x) => x,
            None => {
                return Err(ApiError::bad(
                    "lifecycle",
                    format!(
                        "unknown lifecycle {:?}; one of live, available, retired",
                        l.lifecycle
                    ),
                ))
            }
        };
    operator_write(&app, &name, |st| st.set_lifecycle(&name, Some(lifecycle)))?;
    lock(&app.registry).set_lifecycle(&name, Some(lifecycle), Utc::now());
    Ok(Json(json!({ "host": name, "lifecycle": lifecycle })))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let (states, lifecycles, flagged, zones) = {
        let r = lock(&app.registry);
        let (states, flagged) = r.counts();
        let zones = r.zones();
        (states, r.lifecycles(), flagged, zones)
    };
    let zones_flagged = zones.iter().filter(|z| z.flagged).count();
    let mut text = app
        .metrics
        .render(&states, &lifecycles, flagged, app.ingest.depth());
    text.push_str(&format!(
        "# HELP rollcall_zones Zones in use (host zone labels).\n# TYPE rollcall_zones gauge\nrollcall_zones {}\n# HELP rollcall_zones_flagged Scan zones with no working scanner.\n# TYPE rollcall_zones_flagged gauge\nrollcall_zones_flagged {zones_flagged}\n",
        zones.len()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "loading hosts")
            .retry(1)
            .into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/hosts, /api/v1/summary, /metrics",
    )
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/heartbeat", post(heartbeat))
        .route("/api/v1/enroll", post(enroll))
        .route(
            "/api/v1/hosts/{name}/credentials",
            axum::routing::delete(revoke),
        )
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/hosts/{name}", get(host))
        .route(
            "/api/v1/hosts/{name}/maintenance",
            put(put_maintenance).delete(delete_maintenance),
        )
        .route("/api/v1/hosts/{name}/lifecycle", put(put_lifecycle))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/probe-targets", get(probe_targets))
        .route("/api/v1/probe-results", post(probe_results))
        .route("/api/v1/zones", get(zones))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
