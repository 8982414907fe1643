//! An admin's forms on the host page: maintenance, ending it, lifecycle, revoking the
//! credentials. Each needs an admin session and its CSRF token, is shown back for
//! confirmation first, then runs the same action as the API and says so in the history.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;

use super::layout::{self};
use super::pages::path;
use super::Viewer;
use crate::http::{admin, App};

pub(super) async fn act(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map_or("", |v| v.trim());
    if !session.csrf_ok(field("csrf")) {
        log::warn!("dashboard: a form for host {name} without this session's CSRF token was refused (token {})", session.name);
        return layout::refused_csrf();
    }
    if !session.is_admin() {
        return layout::plain(
            StatusCode::FORBIDDEN,
            &session,
            "/hosts",
            "Refused",
            html! { p.error role="alert" { "Changing a host needs an admin token; you signed in with a read token. Nothing was changed." } },
        );
    }
    let what = match action.as_str() {
        "maintenance" => format!(
            "Put {name} in maintenance for {} because “{}”",
            field("for"),
            field("reason")
        ),
        "end-maintenance" => format!("End the maintenance of {name}"),
        "lifecycle" => format!("Set the lifecycle of {name} to {}", field("lifecycle")),
        "revoke" => format!(
            "Revoke every credential of {name}: its agent stops reporting until it enrolls again"
        ),
        _ => {
            return layout::plain(
                StatusCode::NOT_FOUND,
                &session,
                "/hosts",
                "No such action",
                html! { p.error role="alert" { "There is no action " code { (action) } "; the host page lists them." } },
            )
        }
    };
    let back = format!("/hosts/{}", path(&name));
    if field("confirm") != "yes" {
        return layout::plain(
            StatusCode::OK,
            &session,
            "/hosts",
            "Confirm",
            html! {
                form.confirm #confirm-form method="post" action={ (back) "/" (action) } {
                    p { (what) "?" }
                    @for (k, v) in &form {
                        @if k != "confirm" { input type="hidden" name=(k) value=(v); }
                    }
                    input type="hidden" name="confirm" value="yes";
                    button #confirm type="submit" { "Confirm" }
                    " "
                    a href=(back) { "Cancel" }
                }
            },
        );
    }
    let by = format!("{} (dashboard)", session.name);
    let done = match action.as_str() {
        "maintenance" => {
            admin::start_maintenance(&app, &name, None, Some(field("for")), field("reason"), &by)
                .await
                .map(|_| ())
        }
        "end-maintenance" => admin::end_maintenance(&app, &name, &by).await,
        "lifecycle" => admin::set_lifecycle(&app, &name, field("lifecycle"), &by)
            .await
            .map(|_| ()),
        _ => admin::revoke_host(&app, &name, &by).await.map(|_| ()),
    };
    match done {
        Ok(()) => Redirect::to(&format!("{back}?done={action}")).into_response(),
        Err(e) => layout::plain(
            e.status(),
            &session,
            "/hosts",
            "Not done",
            html! {
                p.error role="alert" #action-error {
                    (what) ": not done. "
                    @if let Some(f) = e.field_name() { "The " strong { (f) } " is wrong: " }
                    (e.message())
                }
                p { a href=(back) { "Back to " (name) } }
            },
        ),
    }
}
