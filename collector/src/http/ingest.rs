//! `POST /api/v1/heartbeat` and `POST /api/v1/enroll`: what agents send.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use rollcall_proto::{EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck, PROTO_VERSION};

use super::{body, parse, ApiError, App, Result};
use crate::auth::Role;
use crate::server::Peer;
use crate::store::{CredentialRecord, HeartbeatRecord, HistoryRecord, StateJson};
use crate::{lock, read, write};

const MAX_EVENTS: usize = 1000;
const MAX_LABELS: usize = 32;

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
    if !rollcall_proto::valid_host_name(host) {
        return Err(ApiError::bad(
            "host",
            format!("host must be {}", rollcall_proto::HOST_NAME_RULE),
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
    if let Some((k, _)) = labels.iter().find(|(k, v)| {
        k.is_empty()
            || k.len() > 64
            || !k.bytes().all(|b| b.is_ascii_graphic())
            || v.chars().count() > 128
            || v.chars().any(char::is_control)
    }) {
        return Err(ApiError::bad(
            &format!("labels.{}", k.escape_debug()),
            "label names are 1 to 64 printable ASCII characters with no space; values at most 128 characters with no control characters",
        ));
    }
    Ok(())
}

/// The largest event sequence number taken: 2^53, past which JSON readers lose digits.
/// An agent counts from 1, one per event; it would take millennia to get there.
const MAX_SEQ: u64 = 1 << 53;
/// The most events an agent can say it dropped in one heartbeat.
const MAX_DROPPED: u64 = u32::MAX as u64;
/// How far ahead of the collector's clock an event may be dated before it is taken as
/// dated now: a host whose clock runs ahead must not keep its events first forever.
const MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

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
    if let Some(i) = hb.events.iter().position(|e| e.seq == 0 || e.seq > MAX_SEQ) {
        return Err(ApiError::bad(
            &format!("events[{i}].seq"),
            format!("event sequence numbers run from 1 to {MAX_SEQ}"),
        ));
    }
    if hb.events_dropped > MAX_DROPPED {
        return Err(ApiError::bad(
            "events_dropped",
            format!("events_dropped must be at most {MAX_DROPPED}"),
        ));
    }
    match (&hb.state, &hb.state_digest) {
        (None, None) => Err(ApiError::bad(
            "state",
            "a heartbeat carries the agent's state, or the state_digest this collector gave for it",
        )),
        (Some(_), Some(_)) => Err(ApiError::bad(
            "state_digest",
            "send either the state or its state_digest, not both",
        )),
        (None, Some(d)) if d.len() != 16 || u64::from_str_radix(d, 16).is_err() => {
            Err(ApiError::bad(
                "state_digest",
                "state_digest is 16 hex digits, as the collector gave it",
            ))
        }
        _ => Ok(()),
    }
}

/// Events dated ahead of `now` by more than [`MAX_AHEAD`] are dated `now`; says how many.
fn date_events(events: &mut [rollcall_proto::Event], now: chrono::DateTime<chrono::Utc>) -> usize {
    let mut moved = 0;
    for e in events.iter_mut().filter(|e| e.at > now + MAX_AHEAD) {
        e.at = now;
        moved += 1;
    }
    moved
}

/// A heartbeat body, parsed and checked: what the collector takes from an agent before
/// any credential decides whose it is. Every refusal is a 400 naming the field.
pub fn decode_heartbeat(body: &[u8]) -> Result<Heartbeat> {
    let hb: Heartbeat = parse(body)?;
    validate(hb.proto_version, &hb.host, &hb.identity, &hb.labels)?;
    validate_heartbeat(&hb)?;
    Ok(hb)
}

/// An enrollment body, parsed and checked, as [`decode_heartbeat`].
pub fn decode_enroll(body: &[u8]) -> Result<EnrollRequest> {
    let req: EnrollRequest = parse(body)?;
    validate(req.proto_version, &req.host, &req.identity, &req.labels)?;
    if let Some(a) = &req.bmc_address {
        if a.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::bad(
                "bmc_address",
                format!("bmc_address {a:?} is not an IP address"),
            ));
        }
    }
    Ok(req)
}

pub(super) async fn heartbeat(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatAck>> {
    app.client_cert(peer.as_deref())?;
    let owner = app.host_credential(&headers)?;
    // Before anything else: a credential's budget covers what it sends, refused or not.
    let now = app.now();
    app.rate_check(&app.rate, &owner, now)?;
    let b = body(b, &app.metrics)?;
    let mut hb = decode_heartbeat(&b).inspect_err(|_| app.metrics.rejected("bad_request"))?;
    if hb.host != owner {
        let identity = hb.identity.to_string();
        app.refused("wrong_host", &owner, &hb.host, now, || {
            format!(
                "its credential was used to write host {:?} (identity {identity}); refused",
                hb.host
            )
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
    let ahead = date_events(&mut hb.events, now);
    if ahead > 0 {
        log::debug!(
            "host {}: {ahead} event(s) dated more than {} min ahead of the collector's clock were dated now",
            hb.host,
            MAX_AHEAD.num_minutes()
        );
    }
    // The state, or the digest of one this collector knows for this host.
    let (state_json, state_fingerprint, health, reason) = match hb.state.take() {
        Some(state) => {
            let (health, reason) = state.overall();
            let fp = state.fingerprint();
            (StateJson::Parsed(Arc::new(state)), fp, health, reason)
        }
        None => {
            let fp = hb
                .state_digest
                .as_deref()
                .and_then(|d| u64::from_str_radix(d, 16).ok())
                .unwrap_or_default();
            match lock(&app.registry).known_state(&hb.host, fp) {
                Some((health, reason)) => (StateJson::Same, fp, health, reason),
                None => {
                    app.metrics.rejected("state_needed");
                    return Ok(Json(HeartbeatAck {
                        acked_seq: 0,
                        state_digest: None,
                        state_needed: true,
                    }));
                }
            }
        }
    };
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
    let record = HeartbeatRecord {
        identity: hb.identity.to_string(),
        received_at: now,
        interval_secs: hb.interval_secs,
        health,
        reason,
        state_fingerprint,
        state_json,
        labels: hb.labels,
        events: hb.events,
        host: hb.host,
        booted_at: hb.booted_at,
    };
    let digest = matches!(record.state_json, StateJson::Same);
    app.write(record).await?;
    app.metrics.accepted();
    if digest {
        app.metrics.digest();
    }
    Ok(Json(HeartbeatAck {
        acked_seq,
        state_digest: Some(format!("{state_fingerprint:016x}")),
        state_needed: false,
    }))
}

pub(super) async fn enroll(
    State(app): State<Arc<App>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<EnrollResponse>> {
    app.client_cert(peer.as_deref())?;
    app.require(&headers, Role::Enroll)?;
    let now = app.now();
    let secret = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(crate::auth::hash)
        .unwrap_or_default();
    app.take(&app.secret_rate, &secret, app.secret_limit, now)
        .map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this enrollment secret enrolls too many hosts at once; retry in {wait}s"),
            )
            .retry(wait)
        })?;
    let b = body(b, &app.metrics)?;
    let req = decode_enroll(&b).inspect_err(|_| app.metrics.rejected("bad_request"))?;
    if let Err(why) = app.inventory.may_enroll(&req.host) {
        app.metrics.rejected("not_in_inventory");
        log::warn!("enrollment of {} refused: {why}", req.host);
        return Err(ApiError::field(StatusCode::FORBIDDEN, "host", why));
    }
    app.rate_check(&app.enroll_rate, &req.host, now)?;
    // Enrolling must not cut off an agent that speaks: see ARCHITECTURE.md, "Enrollment".
    // The registry's lookup first: counting a host's live credentials scans them all.
    let heard = lock(&app.registry).speaking(&req.host, now);
    if let Some(last) = heard.filter(|_| read(&app.credentials).live(&req.host) > 0) {
        let identity = req.identity.to_string();
        app.refused("live_credential", &req.host, &identity, now, || {
            format!("an enrollment as this host (identity {identity}) was refused: its agent holds a live credential and is heard")
        });
        return Err(ApiError::field(
            StatusCode::CONFLICT,
            "host",
            format!(
                "host {} already has an agent with a live credential, last heard {}; it keeps it. If this host was reinstalled, revoke the old credential first (rollcall revoke {}), or enroll once it has gone silent",
                req.host,
                last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                req.host
            ),
        )
        .retry(60));
    }
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
    write(&app.credentials).apply(&issue);
    app.metrics.enrolled();
    log::info!("host {} enrolled (identity {})", req.host, req.identity);
    Ok(Json(EnrollResponse {
        host: req.host,
        credential,
    }))
}
