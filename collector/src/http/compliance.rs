//! `GET /api/v1/compliance`: one row per host with what the compliance portal asks about,
//! as JSON or, with `?format=csv`, as CSV with a header.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, App, Reader, Result};
use crate::lock;
use crate::registry::CSV_HEADER;

pub(super) async fn compliance(
    State(app): State<Arc<App>>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    if let Some(k) = q.keys().find(|k| *k != "format") {
        return Err(ApiError::bad(
            k,
            format!("unknown parameter {k:?}; the only one is format=json|csv"),
        ));
    }
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("unknown format {other:?}; use json or csv"),
            ))
        }
    };
    let now = app.now();
    let r = lock(&app.registry);
    let rows = r.compliance(now);
    if csv {
        let mut body = String::with_capacity(256 * (rows.len() + 1));
        body.push_str(CSV_HEADER);
        body.push_str("\r\n");
        for row in &rows {
            body.push_str(&row.csv());
            body.push_str("\r\n");
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    let in_scope = rows.iter().filter(|r| r.in_scope).count();
    let body = serde_json::to_vec(&serde_json::json!({
        "at": now, "hosts": rows.len(), "in_scope": in_scope, "rows": rows
    }))
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("compliance: {e}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
