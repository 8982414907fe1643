//! `GET /api/v1/reconcile`: the fleet against the inventory, every discrepancy with what to
//! do.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::{ApiError, App, Reader, Result};
use crate::lock;

pub(super) async fn reconcile(State(app): State<Arc<App>>, _: Reader) -> Result<Json<Value>> {
    let inv = &app.inventory;
    if inv.config.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no inventory configured: set [inventory] path = \"/path/to/devices.csv\" in collector.toml",
        ));
    }
    let error = lock(&inv.last_error).clone();
    let report = inv.reconcile(&lock(&app.registry), app.now());
    let Some(report) = report else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error.unwrap_or_else(|| "the inventory has not been read yet".into()),
        ));
    };
    let mut v = serde_json::to_value(&report).unwrap_or_default();
    v["text"] = Value::String(report.text());
    // A newer file that did not parse: the report is from the previous one, and says so.
    v["inventory_error"] = error.map_or(Value::Null, Value::String);
    Ok(Json(v))
}
