//! The frame every page shares, and the small pieces pages are made of: state badges,
//! times, the sign-in page, refusals. Security headers are set here, once.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::{Session, LIVE_HEADER};
use crate::state::HostState;

/// A page to send: the frame's parts and the part that refreshes itself.
pub struct Shown<'a> {
    pub title: String,
    /// The navigation entry that is current (its path).
    pub nav: &'static str,
    pub session: &'a Session,
    /// Above the live part: what a refresh must not touch (a filter being typed).
    pub before: Markup,
    /// The part that refreshes itself; `None` on a page that must not be fetched again (a
    /// confirmation or a refusal, the answer to a form).
    pub live: Option<Markup>,
    /// The registry's generation the live part was made at.
    pub generation: u64,
}

const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/hosts", "Hosts"),
    ("/zones", "Zones and scanners"),
    ("/incidents", "Incidents"),
    ("/relays", "Relays"),
];

/// The whole page.
pub fn html_page(s: &Shown) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (s.title) " · rollcall" }
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                link rel="icon" href=(super::assets::ICON_PATH) type="image/svg+xml";
                script src=(super::assets::JS_PATH) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "rollcall" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if path == s.nav {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/logout" {
                        span.who { (s.session.name) " · " (role_words(s.session)) }
                        input type="hidden" name="csrf" value=(s.session.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main #main {
                    h1 { (s.title) }
                    (s.before)
                    @if let Some(live) = &s.live {
                        div #live data-generation=(s.generation) {
                            (live)
                        }
                        p.live-status #live-status role="status" aria-live="polite" {}
                    }
                }
            }
        }
    }
    .into_string()
}

fn role_words(s: &Session) -> &'static str {
    if s.is_admin() {
        "admin"
    } else {
        "read only"
    }
}

/// The page, or only its live part when `live.js` asks.
pub fn respond(headers: &HeaderMap, s: Shown) -> Response {
    if headers.contains_key(LIVE_HEADER) {
        let part = s.live.map(Markup::into_string).unwrap_or_default();
        let mut r = send(StatusCode::OK, part);
        if let Ok(v) = HeaderValue::from_str(&s.generation.to_string()) {
            r.headers_mut().insert("x-rollcall-generation", v);
        }
        return r;
    }
    send(StatusCode::OK, html_page(&s))
}

/// HTML with the headers every dashboard answer carries: nothing but our own assets may
/// run or load, no framing, never cached (pages show who is down now).
pub fn send(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    let set = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (k, v) in set {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

/// A page with no live part: a confirmation, a refusal.
pub fn plain(
    status: StatusCode,
    session: &Session,
    nav: &'static str,
    title: &str,
    body: Markup,
) -> Response {
    let s = Shown {
        title: title.to_owned(),
        nav,
        session,
        before: body,
        live: None,
        generation: 0,
    };
    send(status, html_page(&s))
}

/// The sign-in page, with why the last try failed.
pub fn login(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · rollcall" }
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                link rel="icon" href=(super::assets::ICON_PATH) type="image/svg+xml";
            }
            body {
                main #main .signin {
                    h1 { "rollcall" }
                    p { "Sign in with an API token: a read token shows the fleet, an admin token also changes it." }
                    @if let Some(e) = error {
                        p.error #signin-error role="alert" { (e) }
                    }
                    form method="post" action="/login" {
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        input type="hidden" name="next" value=(next);
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "Tokens are made on the collector's host: " code { "rollcall-collector token add --name NAME --role read" } "." }
                }
            }
        }
    };
    send(status, page.into_string())
}

/// A form that did not carry this session's CSRF token.
pub fn refused_csrf() -> Response {
    send(
        StatusCode::FORBIDDEN,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Refused · rollcall" } link rel="stylesheet" href=(super::assets::CSS_PATH); }
                body { main #main {
                    h1 { "Refused" }
                    p.error role="alert" { "This form was not sent from a page of this dashboard in your session (its CSRF token is missing or stale). Nothing was changed. Go back, reload the page and try again." }
                    p { a href="/" { "Overview" } }
                } }
            }
        }
        .into_string(),
    )
}

/// Icon and word of a state: never colour alone.
pub fn badge(s: HostState) -> Markup {
    let icon = match s {
        HostState::Up => "✔",
        HostState::Late => "◷",
        HostState::Silent => "✖",
        HostState::Unhealthy => "▲",
        HostState::Maintenance => "‖",
        HostState::Duplicate => "◆",
    };
    html! {
        span class={ "badge st-" (s.as_str()) } {
            span.icon aria-hidden="true" { (icon) } " " (s.as_str())
        }
    }
}

/// A time as UTC, with how long ago in words; the exact time in `datetime`.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let ago = now - t;
    let words = if ago < chrono::TimeDelta::zero() {
        format!("in {}", crate::state::age(-ago))
    } else {
        format!("{} ago", crate::state::age(ago))
    };
    html! {
        time datetime=(t.to_rfc3339()) title=(t.format("%Y-%m-%d %H:%M:%S UTC")) { (words) }
    }
}

/// A query string built from pairs, empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    q.finish()
}
