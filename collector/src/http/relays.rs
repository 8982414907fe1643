//! `GET /api/v1/relays`: each BigFix relay, the live hosts that check in through it, how
//! many fail to and since when, and whether it is suspect.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::{App, Reader, Result};
use crate::lock;

pub(super) async fn relays(State(app): State<Arc<App>>, _: Reader) -> Result<Json<Value>> {
    let relays = lock(&app.registry).relays();
    let suspect = relays.iter().filter(|r| r.suspect).count();
    Ok(Json(json!({ "relays": relays, "suspect": suspect })))
}
