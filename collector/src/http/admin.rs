//! What admins change: maintenance, lifecycle, credentials. Each is written through the
//! operator connection before the registry changes, and said in the host's history with
//! the name of the token that did it. The API handlers and the dashboard's forms both call
//! the actions here.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Admin, ApiError, App, Body, Result};
use crate::state::Lifecycle;
use crate::store::{CredentialRecord, HistoryRecord, Store, StoreError};
use crate::{lock, read, write};

pub(super) async fn revoke(
    State(app): State<Arc<App>>,
    Admin(by): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let revoked = revoke_host(&app, &name, &by).await?;
    Ok(Json(json!({ "host": name, "revoked": revoked })))
}

/// Revokes every live credential of host `name`; how many.
pub async fn revoke_host(app: &App, name: &str, by: &str) -> Result<usize> {
    let live = read(&app.credentials).live(name);
    if live == 0 {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "name",
            format!("host {name:?} holds no live credential"),
        ));
    }
    let now = app.now();
    let r = CredentialRecord::RevokeHost {
        host: name.to_owned(),
        at: now,
    };
    app.write(r.clone()).await?;
    write(&app.credentials).apply(&r);
    // The store says it in the host's history.
    log::info!("credentials of host {name} revoked ({live}) by token {by}");
    Ok(live)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaintenanceBody {
    until: Option<DateTime<Utc>>,
    #[serde(rename = "for")]
    for_: Option<String>,
    reason: String,
}

pub(super) async fn put_maintenance(
    State(app): State<Arc<App>>,
    Admin(by): Admin,
    Path(name): Path<String>,
    Body(m): Body<MaintenanceBody>,
) -> Result<Json<Value>> {
    let until = start_maintenance(&app, &name, m.until, m.for_.as_deref(), &m.reason, &by).await?;
    Ok(Json(
        json!({ "host": name, "maintenance_until": until, "reason": m.reason.trim() }),
    ))
}

/// Puts host `name` in maintenance until `until`, or `for_` (a duration such as `2h`)
/// from now, exactly one of them; returns when it ends.
pub async fn start_maintenance(
    app: &App,
    name: &str,
    until: Option<DateTime<Utc>>,
    for_: Option<&str>,
    reason: &str,
    by: &str,
) -> Result<DateTime<Utc>> {
    let now = app.now();
    let until = match (until, for_) {
        (Some(u), None) => u,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d.trim()).map_err(|e| {
                ApiError::bad(
                    "for",
                    format!("invalid duration {d:?} ({e}); write it like \"2h\""),
                )
            })?;
            // Bounded before the addition: a duration of centuries must not overflow it.
            if d > MAX_MAINTENANCE.to_std().unwrap_or_default() {
                return Err(ApiError::bad(
                    "for",
                    too_long(&humantime::format_duration(d).to_string()),
                ));
            }
            now + chrono::Duration::from_std(d).unwrap_or(MAX_MAINTENANCE)
        }
        _ => {
            return Err(ApiError::bad(
                "until",
                "give exactly one of \"until\" (RFC 3339 time) or \"for\" (duration)",
            ))
        }
    };
    if until <= now {
        return Err(ApiError::bad("until", "maintenance must end in the future"));
    }
    if until > now + MAX_MAINTENANCE {
        return Err(ApiError::bad("until", too_long(&until.to_rfc3339())));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "reason",
            "a reason of 1 to 500 characters, on one line and with no control characters, is required",
        ));
    }
    operator_write(app, name, |st| {
        st.set_maintenance(name, Some((until, reason)))
    })?;
    lock(&app.registry).set_maintenance(name, Some((until, reason.to_owned())), now);
    let until_words = until.format("%Y-%m-%d %H:%M UTC");
    say(
        app,
        name,
        by,
        format!("maintenance until {until_words}: {reason}"),
    )
    .await;
    Ok(until)
}

/// The longest maintenance: past it, a host is not in maintenance but out of service.
const MAX_MAINTENANCE: chrono::Duration = chrono::Duration::days(90);

fn too_long(what: &str) -> String {
    format!("maintenance until {what} is longer than 90 days: mark the host 'available' instead")
}

/// An operator's change, written through the operator connection: 503 if the store fails,
/// 404 if there is no such host. The registry is updated by the caller afterwards.
fn operator_write(
    app: &App,
    name: &str,
    change: impl FnOnce(&mut dyn Store) -> std::result::Result<bool, StoreError>,
) -> Result<()> {
    let known = change(lock(&app.store).as_mut()).map_err(|e| {
        let e = e.sentence();
        app.metrics.store_failed(&e);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; nothing was changed, retry later"),
        )
        .retry(5)
    })?;
    app.metrics.store_ok();
    if !known {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "name",
            format!("no host named {name:?}"),
        ));
    }
    Ok(())
}

/// Says an operator's change in the host's history, with who made it. The change is
/// already durable: a history line that cannot be written is logged, not an error.
async fn say(app: &App, host: &str, by: &str, what: String) {
    let line = HistoryRecord {
        host: host.to_owned(),
        at: app.now(),
        kind: "operator".into(),
        message: format!("{what} (by token {by})"),
    };
    if let Err(e) = app.write(line).await {
        log::warn!("history of host {host}: an operator's change was not recorded: {e:?}");
    }
}

pub(super) async fn delete_maintenance(
    State(app): State<Arc<App>>,
    Admin(by): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    end_maintenance(&app, &name, &by).await?;
    Ok(Json(json!({ "host": name, "maintenance_until": null })))
}

/// Ends host `name`'s maintenance.
pub async fn end_maintenance(app: &App, name: &str, by: &str) -> Result<()> {
    operator_write(app, name, |st| st.set_maintenance(name, None))?;
    lock(&app.registry).set_maintenance(name, None, app.now());
    say(app, name, by, "maintenance ended".into()).await;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LifecycleBody {
    lifecycle: String,
}

pub(super) async fn put_lifecycle(
    State(app): State<Arc<App>>,
    Admin(by): Admin,
    Path(name): Path<String>,
    Body(l): Body<LifecycleBody>,
) -> Result<Json<Value>> {
    let lifecycle = set_lifecycle(&app, &name, &l.lifecycle, &by).await?;
    Ok(Json(json!({ "host": name, "lifecycle": lifecycle })))
}

/// Sets host `name`'s lifecycle (`live`, `available` or `retired`).
pub async fn set_lifecycle(app: &App, name: &str, lifecycle: &str, by: &str) -> Result<Lifecycle> {
    let l =
        match Lifecycle::parse(lifecycle) {
            Some(Lifecycle::Build) => return Err(ApiError::bad(
                "lifecycle",
                "build is derived from first contact (under 48 h); set live, available or retired",
            )),
            Some(x) => x,
            None => {
                return Err(ApiError::bad(
                    "lifecycle",
                    format!("unknown lifecycle {lifecycle:?}; one of live, available, retired"),
                ))
            }
        };
    operator_write(app, name, |st| st.set_lifecycle(name, Some(l)))?;
    lock(&app.registry).set_lifecycle(name, Some(l), app.now());
    say(app, name, by, format!("lifecycle set to {}", l.as_str())).await;
    Ok(l)
}
