//! The HTTPS JSON API, split by resource. Errors are `{"error": "...", "field": "..."}` with
//! the status that fits; nothing that fails validation reaches the store.

pub mod admin;
mod app;
mod compliance;
mod health;
pub mod hosts;
mod incidents;
mod ingest;
mod reconcile;
mod relays;
mod scan;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

pub use app::{Admin, App, Body, Bucket, Rate, Reader};
pub use hosts::filter as host_filter;
pub use ingest::{decode_enroll, decode_heartbeat};

use crate::metrics::Metrics;

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: None,
            retry_after: None,
        }
    }
    pub fn field(status: StatusCode, field: &str, error: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(status, error)
        }
    }
    pub fn bad(field: &str, error: impl Into<String>) -> Self {
        ApiError::field(StatusCode::BAD_REQUEST, field, error)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.error
    }

    /// The field it names, if any.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    pub fn retry(mut self, secs: u64) -> Self {
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

pub type Result<T> = std::result::Result<T, ApiError>;

/// JSON, with the path of the offending field in the error. The path is tracked only when
/// the fast parse has failed.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
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
    })?;
    // The fast parse failed, so if the value read is whole, something follows it.
    de.end().map_err(|e| {
        ApiError::bad(
            "(body)",
            format!("invalid JSON: {e}; send one JSON document and nothing after it"),
        )
    })?;
    Ok(v)
}

pub fn body(b: std::result::Result<Bytes, BytesRejection>, metrics: &Metrics) -> Result<Bytes> {
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

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see / (the dashboard), /api/v1/hosts, /api/v1/summary, /api/v1/incidents, /api/v1/relays, /metrics",
    )
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(crate::dashboard::router())
        .route("/api/v1/heartbeat", post(ingest::heartbeat))
        .route("/api/v1/enroll", post(ingest::enroll))
        .route("/api/v1/hosts/{name}/credentials", delete(admin::revoke))
        .route("/api/v1/hosts", get(hosts::hosts))
        .route("/api/v1/hosts/{name}", get(hosts::host))
        .route(
            "/api/v1/hosts/{name}/maintenance",
            put(admin::put_maintenance).delete(admin::delete_maintenance),
        )
        .route("/api/v1/hosts/{name}/lifecycle", put(admin::put_lifecycle))
        .route("/api/v1/summary", get(hosts::summary))
        .route("/api/v1/enrollments/unheard", get(hosts::unheard))
        .route("/api/v1/probe-targets", get(scan::probe_targets))
        .route("/api/v1/probe-results", post(scan::probe_results))
        .route("/api/v1/zones", get(scan::zones))
        .route("/api/v1/relays", get(relays::relays))
        .route("/api/v1/compliance", get(compliance::compliance))
        .route("/api/v1/reconcile", get(reconcile::reconcile))
        .route("/api/v1/incidents", get(incidents::incidents))
        .route("/api/v1/incidents/{id}", get(incidents::incident))
        .route("/api/v1/receivers", get(incidents::receivers))
        .route("/api/v1/receivers/{name}/test", post(incidents::test))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}
