//! `GET /api/v1/hosts`, `/api/v1/hosts/{name}`, `/api/v1/summary`: what SREs read.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, App, Reader, Result};
use crate::lock;
use crate::registry::Filter;
use crate::state::{HostState, Lifecycle};

/// The filters of a query, by name (the API's and the dashboard's listings).
pub fn filter<'q>(q: impl IntoIterator<Item = (&'q String, &'q String)>) -> Result<Filter> {
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
            "name" => f.name_prefix = Some(v.clone()),
            other => return Err(ApiError::bad(other, format!("unknown filter {other:?}; use state, lifecycle, env, region, zone, role or name (a prefix)"))),
        }
    }
    Ok(f)
}

pub(super) async fn hosts(
    State(app): State<Arc<App>>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    let f = filter(&q)?;
    // Written straight from the registry, under its lock: no copy of each host first.
    #[derive(serde::Serialize)]
    struct Page<'a, T> {
        count: usize,
        hosts: &'a [T],
    }
    let body = {
        let r = lock(&app.registry);
        let hosts = r.query(&f, app.now());
        serde_json::to_vec(&Page {
            count: hosts.len(),
            hosts: &hosts,
        })
    }
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("hosts: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub(super) async fn host(
    State(app): State<Arc<App>>,
    _: Reader,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let (view, probes) = {
        let r = lock(&app.registry);
        (
            r.get(&name, app.now()).map(|v| json!(v)),
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

pub(super) async fn summary(State(app): State<Arc<App>>, _: Reader) -> Result<Json<Value>> {
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

/// `GET /api/v1/enrollments/unheard`: hosts that enrolled and never sent a heartbeat,
/// oldest first. A bootstrap that stopped half-way, or a secret used to enroll hosts that
/// do not exist.
pub(super) async fn unheard(State(app): State<Arc<App>>, _: Reader) -> Json<Value> {
    let registry = lock(&app.registry);
    let creds = crate::read(&app.credentials);
    let hosts: Vec<Value> = creds
        .unheard(|h| registry.knows(h))
        .into_iter()
        .map(|(host, at)| json!({ "host": host, "enrolled_at": at }))
        .collect();
    Json(json!({ "count": hosts.len(), "hosts": hosts }))
}
