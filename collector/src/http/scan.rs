//! Scanners and BMCs: `GET /api/v1/probe-targets`, `POST /api/v1/probe-results` (with a
//! scanner host's credential) and `GET /api/v1/zones`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use rollcall_proto::{
    ProbeAck, ProbeResults, ProbeTarget, ProbeTargets, MAX_PROBE_RESULTS, PROTO_VERSION,
};
use serde_json::{json, Value};

use super::{body, parse, ApiError, App, Reader, Result};
use crate::lock;
use crate::server::Peer;

/// `GET /api/v1/probe-targets`, with a scanner host's credential: the BMCs of the live
/// hosts in its zone.
pub(super) async fn probe_targets(
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
pub(super) async fn probe_results(
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
    let now = app.now();
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
pub(super) async fn zones(State(app): State<Arc<App>>, _: Reader) -> Result<Json<Value>> {
    let zones = lock(&app.registry).zones();
    let flagged = zones.iter().filter(|z| z.flagged).count();
    Ok(Json(json!({ "zones": zones, "flagged": flagged })))
}
