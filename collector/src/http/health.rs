//! `/metrics` (no per-host labels), `/healthz`, `/readyz`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, App};
use crate::lock;

pub(super) async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
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
    text.push_str(&format!(
        "# HELP rollcall_connections Open client connections.\n# TYPE rollcall_connections gauge\nrollcall_connections {}\n# HELP rollcall_connections_evicted_total Idle connections closed to make room at the connection cap or when out of file descriptors.\n# TYPE rollcall_connections_evicted_total counter\nrollcall_connections_evicted_total {}\n",
        app.connections.count(),
        app.connections.evicted()
    ));
    text.push_str(&format!(
        "# HELP rollcall_certificate_expiry_timestamp_seconds When a certificate expires: the server's is renewed from the CA before; the CA's is not.\n# TYPE rollcall_certificate_expiry_timestamp_seconds gauge\nrollcall_certificate_expiry_timestamp_seconds{{cert=\"server\"}} {}\nrollcall_certificate_expiry_timestamp_seconds{{cert=\"ca\"}} {}\n",
        app.tls.server().not_after.timestamp(),
        app.tls.ca().not_after.timestamp()
    ));
    text.push_str(&app.notifier.render(app.now()));
    text.push_str(&app.replica.render());
    if let Some(inv) = app.inventory.current() {
        text.push_str(&format!(
            "# HELP rollcall_inventory_devices Devices in the inventory in force.\n# TYPE rollcall_inventory_devices gauge\nrollcall_inventory_devices {}\n",
            inv.devices.len()
        ));
        text.push_str("# HELP rollcall_inventory_discrepancies Discrepancies with the inventory, by class (reconciled every minute).\n# TYPE rollcall_inventory_discrepancies gauge\n");
        for (class, n) in crate::lock(&app.inventory.counts).iter() {
            text.push_str(&format!(
                "rollcall_inventory_discrepancies{{class=\"{class}\"}} {n}\n"
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: hosts loaded, and the store takes writes. A load balancer sends agents elsewhere
/// while this collector can acknowledge nothing.
pub(super) async fn readyz(State(app): State<Arc<App>>) -> Response {
    if let Some(behind) = app.replica.behind() {
        let words = if behind == std::time::Duration::MAX {
            "catching up with the other collectors' writes (not read yet)".to_owned()
        } else {
            format!(
                "catching up with the other collectors' writes ({}s behind)",
                behind.as_secs()
            )
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, words)
            .retry(1)
            .into_response()
    } else if let Some(why) = app.metrics.store_failing() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage failing: {why}"),
        )
        .retry(5)
        .into_response()
    } else if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "loading hosts")
            .retry(1)
            .into_response()
    }
}
