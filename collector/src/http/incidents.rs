//! `GET /api/v1/incidents`, `GET /api/v1/incidents/{id}`, `GET /api/v1/receivers` and
//! `POST /api/v1/receivers/{name}/test`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{Admin, ApiError, App, Reader, Result};
use crate::incidents::Kind;

fn store_error(e: crate::store::StoreError) -> ApiError {
    log::error!("reading incidents: {e}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the incident store cannot be read now; try again",
    )
    .retry(1)
}

pub(super) async fn incidents(
    State(app): State<Arc<App>>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    for k in q.keys() {
        if !["state", "kind", "region", "limit"].contains(&k.as_str()) {
            return Err(ApiError::bad(
                k,
                format!("unknown parameter {k:?}; filter with state, kind, region, limit"),
            ));
        }
    }
    let open = match q.get("state").map(String::as_str) {
        None | Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::bad(
                "state",
                format!("unknown state {other:?}; use open, resolved or all"),
            ))
        }
    };
    if let Some(k) = q.get("kind") {
        if !Kind::ALL.iter().any(|kind| kind.matches(k)) {
            return Err(ApiError::bad(
                "kind",
                format!(
                    "unknown kind {k:?}; the kinds are: {}",
                    Kind::ALL.map(Kind::as_str).join(", ")
                ),
            ));
        }
    }
    let limit = match q.get("limit") {
        None => 500,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::bad("limit", "limit must be a number from 1 to 10000"))?,
    };
    let list = app
        .notifier
        .incidents(open, limit)
        .await
        .map_err(store_error)?;
    let list: Vec<_> = list
        .into_iter()
        .filter(|i| q.get("kind").is_none_or(|k| i.kind.matches(k)))
        .filter(|i| {
            q.get("region")
                .is_none_or(|r| i.region() == Some(r.as_str()))
        })
        .map(|mut i| {
            // A listing is a summary: the whole history is at /incidents/{id}.
            i.history.clear();
            i
        })
        .collect();
    let open_count = list.iter().filter(|i| i.is_open()).count();
    Ok(Json(json!({ "incidents": list, "open": open_count })))
}

pub(super) async fn incident(
    State(app): State<Arc<App>>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad("id", format!("incident id {id:?} is not a number")))?;
    let Some((inc, deliveries)) = app.notifier.incident(id).await.map_err(store_error)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no incident {id}; `rollcall incidents --all` lists them"),
        ));
    };
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "receiver": d.receiver, "action": d.action.as_str(), "state": d.state,
                "attempts": d.attempts, "last_error": d.last_error,
                "queued_at": d.created_at, "done_at": d.done_at,
            })
        })
        .collect();
    let mut v = serde_json::to_value(&inc).unwrap_or_default();
    v["deliveries"] = Value::Array(deliveries);
    Ok(Json(v))
}

pub(super) async fn receivers(State(app): State<Arc<App>>, _: Reader) -> Json<Value> {
    let list = app.notifier.statuses();
    let failed = list.iter().filter(|r| r.state == "failed").count();
    Json(json!({ "receivers": list, "failed": failed }))
}

pub(super) async fn test(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    match app.notifier.test(&name, app.now()).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no receiver {name:?}; the configured ones are: {}",
                app.notifier
                    .config
                    .receivers
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Some(Ok(())) => Ok(Json(json!({ "receiver": name, "sent": true }))),
        Some(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("receiver {name} did not take the test notification: {e}"),
        )),
    }
}
