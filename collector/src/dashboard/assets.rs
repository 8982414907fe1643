//! The stylesheet, the script and the icon, compiled into the binary. Their paths carry
//! the version, so a browser may keep them as long as it likes.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/live.js");
const ICON: &str = include_str!("assets/icon.svg");

pub const CSS_PATH: &str = concat!("/assets/dashboard-", env!("CARGO_PKG_VERSION"), ".css");
pub const JS_PATH: &str = concat!("/assets/live-", env!("CARGO_PKG_VERSION"), ".js");
pub const ICON_PATH: &str = concat!("/assets/icon-", env!("CARGO_PKG_VERSION"), ".svg");

/// Every asset, as `(path, content type, body)`.
pub const ALL: [(&str, &str, &str); 3] = [
    (CSS_PATH, "text/css; charset=utf-8", CSS),
    (JS_PATH, "text/javascript; charset=utf-8", JS),
    (ICON_PATH, "image/svg+xml", ICON),
];

pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/assets/{file}");
    match ALL.iter().find(|(p, _, _)| *p == wanted) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
