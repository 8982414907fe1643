//! The dashboard: server-rendered HTML on the collector's own port, for SREs who look
//! rather than type. Pages read the registry and the store as the API does; admin forms
//! call the same actions as the API (`http::admin`). Assets are compiled in; nothing is
//! fetched from elsewhere. Pages read with JavaScript off; with it on, `live.js` refreshes
//! the part of a page marked `#live` while the tab is visible.

mod actions;
mod assets;
mod host;
mod layout;
mod pages;
mod session;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

pub use assets::ALL as ASSETS;
pub use session::{Session, Sessions};
use session::{COOKIE, TTL};

use crate::http::App;
use crate::read;

/// The dashboard's routes, merged into the API's router.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/hosts", get(pages::hosts))
        .route("/hosts.csv", get(pages::hosts_csv))
        .route("/hosts/{name}", get(host::page))
        .route("/hosts/{name}/{action}", post(actions::act))
        .route("/zones", get(pages::zones))
        .route("/incidents", get(pages::incidents))
        .route("/relays", get(pages::relays))
        .route("/assets/{file}", get(assets::serve))
        .route("/ui/generation", get(generation))
}

/// The session of a request, from its cookie.
fn session_of(app: &App, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get_all(header::COOKIE);
    let value = cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))?;
    app.sessions.check(&read(&app.tokens), value, app.now())
}

/// A signed-in viewer; anyone else is sent to sign in and brought back.
pub struct Viewer(pub Session);

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        if let Some(s) = session_of(app, &parts.headers) {
            return Ok(Viewer(s));
        }
        if parts.headers.contains_key(LIVE_HEADER) {
            // A live refresh of a page whose session ended: the script reloads the page.
            return Err(StatusCode::UNAUTHORIZED.into_response());
        }
        let back = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let to = format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
        );
        Err(Redirect::to(&to).into_response())
    }
}

/// Sent by `live.js`: answer with the `#live` part of the page only.
pub const LIVE_HEADER: &str = "x-rollcall-live";

/// A path on this site to go back to after signing in: never another site.
fn local(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if session_of(&app, &headers).is_some() {
        return Redirect::to(local(q.next.as_deref())).into_response();
    }
    layout::login(StatusCode::OK, local(q.next.as_deref()), None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(app): State<Arc<App>>, Form(f): Form<LoginForm>) -> Response {
    let next = local(f.next.as_deref());
    let now = app.now();
    let signed = app
        .sessions
        .sign_in(&read(&app.tokens), f.token.trim(), now);
    match signed {
        Ok((cookie, s)) => {
            log::info!("dashboard: token {} signed in ({:?})", s.name, s.role);
            let mut r = Redirect::to(next).into_response();
            let c = format!(
                "{COOKIE}={cookie}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
                TTL.num_seconds()
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(why) => {
            app.metrics.rejected("unauthenticated");
            layout::login(StatusCode::UNAUTHORIZED, next, Some(why))
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(s) = session_of(&app, &headers) {
        if !s.csrf_ok(&f.csrf) {
            return layout::refused_csrf();
        }
    }
    let mut r = Redirect::to("/login").into_response();
    let c = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// What `live.js` polls: moves whenever any host's state, flag or lifecycle changes.
async fn generation(State(app): State<Arc<App>>, _: Viewer) -> Response {
    let g = crate::lock(&app.registry).generation();
    ([(header::CACHE_CONTROL, "no-store")], g.to_string()).into_response()
}
