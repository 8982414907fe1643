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
    let Some(act) = Action::parse(&action) else {
        return layout::plain(
            StatusCode::NOT_FOUND,
            &session,
            "/hosts",
            "No such action",
            html! { p.error role="alert" { "There is no action " code { (action) } "; the host page lists them." } },
        );
    };
    let what = act.words(&name, field);
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
    let done = act.run(&app, &name, field, &by).await;
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

/// What an admin can do to a host from its page: each a form posted to
/// `/hosts/{name}/{path}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Maintenance,
    EndMaintenance,
    Lifecycle,
    Revoke,
}

impl Action {
    const ALL: [Action; 4] = [
        Action::Maintenance,
        Action::EndMaintenance,
        Action::Lifecycle,
        Action::Revoke,
    ];

    pub(super) fn path(self) -> &'static str {
        match self {
            Action::Maintenance => "maintenance",
            Action::EndMaintenance => "end-maintenance",
            Action::Lifecycle => "lifecycle",
            Action::Revoke => "revoke",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.path() == s)
    }

    /// What it will do, asked before it is done.
    fn words<'f>(self, name: &str, field: impl Fn(&str) -> &'f str) -> String {
        match self {
            Action::Maintenance => format!(
                "Put {name} in maintenance for {} because “{}”",
                field("for"),
                field("reason")
            ),
            Action::EndMaintenance => format!("End the maintenance of {name}"),
            Action::Lifecycle => format!("Set the lifecycle of {name} to {}", field("lifecycle")),
            Action::Revoke => format!(
                "Revoke every credential of {name}: its agent stops reporting until it enrolls again"
            ),
        }
    }

    /// What the host page says once it is done.
    pub(super) fn done(self) -> &'static str {
        match self {
            Action::Maintenance => "Maintenance is set; it shows in the history below.",
            Action::EndMaintenance => "Maintenance is ended.",
            Action::Lifecycle => "The lifecycle is set.",
            Action::Revoke => "The host's credentials are revoked: its agent must enroll again.",
        }
    }

    /// Does it through the same action as the API.
    async fn run<'f>(
        self,
        app: &App,
        name: &str,
        field: impl Fn(&str) -> &'f str,
        by: &str,
    ) -> crate::http::Result<()> {
        match self {
            Action::Maintenance => {
                admin::start_maintenance(app, name, None, Some(field("for")), field("reason"), by)
                    .await
                    .map(drop)
            }
            Action::EndMaintenance => admin::end_maintenance(app, name, by).await,
            Action::Lifecycle => admin::set_lifecycle(app, name, field("lifecycle"), by)
                .await
                .map(drop),
            Action::Revoke => admin::revoke_host(app, name, by).await.map(drop),
        }
    }
}
