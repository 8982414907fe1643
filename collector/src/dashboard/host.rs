//! One host: its state and why, each check with its reason, a day of state changes as a
//! strip, its agent's recent events, the collector's history, and the admin's actions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use maud::{html, Markup};
use rollcall_proto::{AgentState, Event, Health};

use super::actions::Action;
use super::layout::{self, badge, respond, when, Shown};
use super::pages::path;
use super::{Session, Viewer};
use crate::http::App;
use crate::lock;
use crate::registry::HostView;
use crate::state::{HostState, Lifecycle};
use crate::store::HistoryRecord;

pub(super) async fn page(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = app.now();
    // The state section is made while the registry is held: its view borrows from it.
    let (host, probes, generation) = {
        let r = lock(&app.registry);
        let host = r
            .get(&name, now)
            .map(|v| (v.state, v.lifecycle, summary(&v, now)));
        (host, r.bmc_probes(&name), r.generation())
    };
    let Some((state, lifecycle, summary)) = host else {
        return layout::plain(
            StatusCode::NOT_FOUND,
            &session,
            "/hosts",
            "No such host",
            html! { p.error role="alert" { "No host named " strong { (name) } " has reported to this collector." } p { a href={ "/hosts?name=" (path(&name)) } { "Hosts whose name begins so" } } },
        );
    };
    // Each read may fail on its own (a store that refuses): the page says which, rather
    // than showing an empty list that reads as "nothing happened".
    let (agent, events, history) = {
        let st = lock(&app.store);
        let agent = st
            .host_state(&name)
            .map(|s| s.and_then(|s| serde_json::from_str::<AgentState>(&s).ok()));
        (
            agent.map_err(|e| e.sentence()),
            st.recent_events(&name, 50).map_err(|e| e.sentence()),
            st.recent_history(&name, 200).map_err(|e| e.sentence()),
        )
    };
    let actions = if session.is_admin() {
        admin_forms(&session, &name, state, lifecycle)
    } else {
        html! {}
    };
    let done = q.get("done").map(String::as_str);
    let before = html! {
        @if let Some(d) = done {
            p.done role="status" #done { (Action::parse(d).map_or("Done.", Action::done)) }
        }
    };
    let live = html! {
        (summary)
        (actions)
        section aria-labelledby="checks-h" {
            h2 #checks-h { "Checks" }
            @match &agent {
                Ok(a) => (checks(a.as_ref(), probes.as_ref(), now)),
                Err(e) => p.error role="alert" { "The agent's state cannot be read now: " (e) },
            }
        }
        section aria-labelledby="timeline-h" {
            h2 #timeline-h { "The last 24 hours" }
            @match &history {
                Ok(h) => (timeline(h, state, now)),
                Err(e) => p.error role="alert" { "The history cannot be read now: " (e) },
            }
        }
        section aria-labelledby="events-h" {
            h2 #events-h { "Recent agent events" }
            @match &events {
                Ok(ev) => (event_table(ev, now)),
                Err(e) => p.error role="alert" { "The events cannot be read now: " (e) },
            }
        }
        section aria-labelledby="history-h" {
            h2 #history-h { "History" }
            @if let Ok(h) = &history { (history_table(h, now)) }
        }
    };
    respond(
        &headers,
        Shown {
            title: name.clone(),
            nav: "/hosts",
            session: &session,
            before,
            live: Some(live),
            generation,
        },
    )
}

/// State and reason, when last heard, lifecycle, identity and labels.
fn summary(v: &HostView<'_>, now: DateTime<Utc>) -> Markup {
    html! {
        section.summary aria-labelledby="state-h" {
            h2 #state-h { "State" }
            p.state #host-state { (badge(v.state)) @if v.flagged { " " span.flag { "flagged" } } }
            p.reason #host-reason { (v.reason) }
            dl.facts {
                dt { "Last heard" } dd { (when(v.last_heard, now)) }
                dt { "Lifecycle" } dd #host-lifecycle { (v.lifecycle.as_str()) " (from " (v.lifecycle_source) ")" }
                dt { "Identity" } dd { code { (v.identity) } @if let Some(d) = v.duplicate_of { " — also heard as " code { (d) } } }
                @for (k, l) in v.labels.pairs() { dt { (k) } dd { a href={ "/hosts?" (layout::query(&[(k, l)])) } { (l) } } }
            }
        }
    }
}

fn admin_forms(s: &Session, name: &str, state: HostState, lifecycle: Lifecycle) -> Markup {
    let base = format!("/hosts/{}", path(name));
    html! {
        section.actions aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            form.action #maintenance-form method="post" action={ (base) "/" (Action::Maintenance.path()) } {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "Maintenance" }
                    div.field { label for="m-for" { "For" } input #m-for name="for" value="2h" required size="6"; }
                    div.field.grow { label for="m-reason" { "Reason" } input #m-reason name="reason" required maxlength="500"; }
                    button type="submit" { "Set maintenance…" }
                }
            }
            @if state == HostState::Maintenance {
                form.action #end-maintenance-form method="post" action={ (base) "/" (Action::EndMaintenance.path()) } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button type="submit" { "End maintenance…" }
                }
            }
            form.action #lifecycle-form method="post" action={ (base) "/" (Action::Lifecycle.path()) } {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "Lifecycle" }
                    div.field {
                        label for="l-to" { "Set to" }
                        select #l-to name="lifecycle" {
                            @for l in [Lifecycle::Live, Lifecycle::Available, Lifecycle::Retired] {
                                option value=(l.as_str()) selected[l == lifecycle] { (l.as_str()) }
                            }
                        }
                    }
                    button type="submit" { "Set lifecycle…" }
                }
            }
            form.action #revoke-form method="post" action={ (base) "/" (Action::Revoke.path()) } {
                input type="hidden" name="csrf" value=(s.csrf);
                button.danger type="submit" { "Revoke credentials…" }
            }
        }
    }
}

fn health(h: Health) -> Markup {
    let (icon, class) = match h {
        Health::Ok => ("✔", "st-up"),
        Health::Warn => ("◷", "st-late"),
        Health::Critical => ("✖", "st-silent"),
    };
    html! { span class={ "badge " (class) } { span.icon aria-hidden="true" { (icon) } " " (h.as_str()) } }
}

fn checks(
    agent: Option<&AgentState>,
    probes: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> Markup {
    let Some(a) = agent else {
        return html! { p { "Its agent has sent no state yet." } };
    };
    html! {
        div.table-wrap { table.checks #checks {
            thead { tr { th scope="col" { "Check" } th scope="col" { "Verdict" } th scope="col" { "Why" } } }
            tbody {
                tr data-check="besclient" {
                    th scope="row" { "BigFix client (besclient)" }
                    td { (health(a.besclient.health)) }
                    td { (a.besclient.reason) " " small { "since " (when(a.besclient.since, now)) } }
                }
                @if let Some(c) = &a.besclient.checkin {
                    tr data-check="checkin" {
                        th scope="row" { "BigFix check-in" }
                        td { (c.verdict.as_str()) }
                        td { (c.reason)
                             @if let Some(r) = &c.relay { " " small { "relay " (r) } }
                             @if let Some(t) = c.last_success_at { " " small { "last success " (when(t, now)) } } }
                    }
                }
                @if let Some(n) = &a.nessusd {
                    tr data-check="nessusd" {
                        th scope="row" { "Nessus scanner (nessusd)" }
                        td { (health(n.health)) }
                        td { (n.reason) }
                    }
                }
                @if let Some(b) = &a.bmc {
                    tr data-check="bmc" {
                        th scope="row" { "BMC, in-band" }
                        td { (health(b.health)) }
                        td { (b.reason) @if let Some(ad) = b.address { " " small { (ad.to_string()) } } }
                    }
                }
                @if let Some(p) = probes {
                    @for s in p["scanners"].as_array().into_iter().flatten() {
                        tr data-check="bmc-scan" {
                            th scope="row" { "BMC from scanner " (s["scanner"].as_str().unwrap_or("?")) }
                            td { @if s["reachable"].as_bool() == Some(true) { (health(Health::Ok)) } @else { (health(Health::Critical)) } }
                            td { (s["detail"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        } }
        p.small { "Agent " (a.agent_version) ", state taken " (when(a.at, now)) "." }
    }
}

/// The state a history line moved to: lines read `from -> to…`.
fn moved_to(l: &HistoryRecord) -> Option<HostState> {
    if l.kind != "state" {
        return None;
    }
    let to = l.message.split_once("-> ")?.1;
    let word: String = to.chars().take_while(char::is_ascii_alphabetic).collect();
    HostState::parse(&word)
}

/// A strip of the last 24 hours, a segment per state held, oldest left; and the same in
/// words for those who do not see colour.
fn timeline(history: &[HistoryRecord], now_state: HostState, now: DateTime<Utc>) -> Markup {
    let start = now - TimeDelta::hours(24);
    // Oldest first, within the day.
    let mut changes: Vec<(DateTime<Utc>, HostState)> = history
        .iter()
        .filter(|l| l.at >= start)
        .filter_map(|l| Some((l.at, moved_to(l)?)))
        .collect();
    changes.reverse();
    let first = history
        .iter()
        .filter(|l| l.at < start)
        .find_map(moved_to)
        .or_else(|| {
            history
                .iter()
                .rev()
                .filter(|l| l.at >= start)
                .find_map(|l| {
                    let from = l.message.split_once(" -> ")?.0;
                    HostState::parse(from.trim())
                })
        })
        .unwrap_or(now_state);
    let mut segs = Vec::new();
    let (mut from, mut st) = (start, first);
    for (at, to) in &changes {
        segs.push((from, *at, st));
        (from, st) = (*at, *to);
    }
    segs.push((from, now, st));
    let x = |t: DateTime<Utc>| ((t - start).num_seconds().clamp(0, 86_400) as f64) / 60.0;
    html! {
        svg.strip #timeline viewBox="0 0 1440 20" preserveAspectRatio="none" role="img" aria-label="State over the last 24 hours" {
            @for (a, b, s) in &segs {
                rect class={ "seg st-" (s.as_str()) } x=(format!("{:.1}", x(*a))) y="0" width=(format!("{:.1}", (x(*b) - x(*a)).max(0.5))) height="20" {
                    title { (s.as_str()) " from " (a.format("%H:%M")) " to " (b.format("%H:%M")) " UTC" }
                }
            }
        }
        p.axis { span { "24 h ago" } span { "now" } }
        @if changes.is_empty() {
            p { (now_state.as_str()) " for the whole day (as far as the history tells)." }
        } @else {
            ol.changes { @for (at, to) in changes.iter().rev() { li { (when(*at, now)) ": " (badge(*to)) } } }
        }
    }
}

fn event_table(events: &[Event], now: DateTime<Utc>) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No event from its agent." }
        } @else {
            div.table-wrap { table.events {
                thead { tr { th scope="col" { "When" } th scope="col" { "Check" } th scope="col" { "Event" } th scope="col" { "Action" } } }
                tbody { @for e in events { tr {
                    td { (when(e.at, now)) } td { (e.check) } td { (e.message) } td { (e.action.as_deref().unwrap_or("")) }
                } } }
            } }
        }
    }
}

fn history_table(history: &[HistoryRecord], now: DateTime<Utc>) -> Markup {
    html! {
        @if history.is_empty() {
            p { "No history yet." }
        } @else {
            div.table-wrap { table.history #history {
                thead { tr { th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "What" } } }
                tbody { @for l in history.iter().take(50) { tr {
                    td { (when(l.at, now)) } td { (l.kind) } td { (l.message) }
                } } }
            } }
        }
    }
}
