//! The overview, the host listing and its CSV, zones and scanners, incidents, relays.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::layout::{self, badge, query, respond, when, Shown};
use super::{Session, Viewer};
use crate::http::App;
use crate::incidents::Incident;
use crate::lock;
use crate::registry::{Filter, Registry, RelayView, Tile, ZoneView};
use crate::state::{HostState, Lifecycle};
use crate::store::HistoryRecord;

/// Hosts per page of the listing.
const PAGE_SIZE: usize = 100;

/// Everything the overview shows, read in one go.
struct Overview {
    pub hosts: usize,
    pub flagged: usize,
    pub states: BTreeMap<HostState, usize>,
    pub lifecycles: BTreeMap<&'static str, usize>,
    pub tiles: Vec<Tile>,
    pub blind_zones: Vec<ZoneView>,
    pub suspect_relays: Vec<RelayView>,
    /// Open incidents, or why they cannot be read now.
    pub incidents: Result<Vec<Incident>, String>,
    /// The last hour's history lines, or why they cannot be read now.
    pub changes: Result<Vec<HistoryRecord>, String>,
    pub generation: u64,
}

impl Overview {
    /// What the registry holds now; incidents and changes are added by the caller.
    pub fn read(r: &Registry) -> Overview {
        let states = r.per_state();
        let tally = r.tally();
        Overview {
            hosts: r.len(),
            flagged: tally.flagged,
            states,
            lifecycles: tally.lifecycles,
            tiles: tally.tiles,
            blind_zones: r.zones().into_iter().filter(|z| z.flagged).collect(),
            suspect_relays: r.relays().into_iter().filter(|r| r.suspect).collect(),
            incidents: Ok(Vec::new()),
            changes: Ok(Vec::new()),
            generation: r.generation(),
        }
    }
}

/// The overview's live part.
fn overview_markup(o: &Overview, now: DateTime<Utc>) -> Markup {
    html! {
        section aria-labelledby="counts-h" {
            h2 #counts-h { "Hosts by state" }
            p.total { (o.hosts) " hosts, " strong #flagged-count { (o.flagged) } " flagged" }
            ul.counts {
                @for (s, n) in &o.states {
                    li {
                        a href={ "/hosts?" (query(&[("state", s.as_str())])) } class={ "count st-" (s.as_str()) } data-state=(s.as_str()) {
                            span.n { (n) } (badge(*s))
                        }
                    }
                }
            }
            h3 { "By lifecycle" }
            ul.lifecycles {
                @for (l, n) in &o.lifecycles {
                    li { a href={ "/hosts?" (query(&[("lifecycle", l)])) } data-lifecycle=(l) { span.n { (n) } " " (l) } }
                }
            }
        }
        section aria-labelledby="tiles-h" {
            h2 #tiles-h { "Regions and zones" }
            @if o.tiles.is_empty() {
                p { "No host has reported yet." }
            }
            ul.tiles {
                @for t in &o.tiles {
                    li class={ "tile st-" (t.worst.as_str()) } {
                        a href={ "/hosts?" (query(&[("region", &t.region), ("zone", &t.zone)])) } {
                            span.place { (or_none(&t.region)) " / " (or_none(&t.zone)) }
                            span.tally { (t.flagged) " flagged of " (t.hosts) }
                            (badge(t.worst))
                        }
                    }
                }
            }
        }
        section aria-labelledby="incidents-h" {
            h2 #incidents-h { "Open incidents" }
            @match &o.incidents {
                Ok(list) => (incident_table(list, now)),
                Err(e) => p.error role="alert" { "Incidents cannot be read now: " (e) },
            }
        }
        section aria-labelledby="zones-h" {
            h2 #zones-h { "Zones without a working scanner" }
            @if o.blind_zones.is_empty() {
                p { "Every zone with scanners has a working one." }
            } @else {
                ul { @for z in &o.blind_zones { li { strong { (z.zone) } ": " (z.reason) } } }
            }
        }
        section aria-labelledby="relays-h" {
            h2 #relays-h { "Suspect relays" }
            @if o.suspect_relays.is_empty() {
                p { "No relay is suspect." }
            } @else {
                ul { @for r in &o.suspect_relays { li { strong { (r.relay) } ": " (r.reason) } } }
            }
        }
        section aria-labelledby="changes-h" {
            h2 #changes-h { "What changed in the last hour" }
            @if let Err(e) = &o.changes {
                p.error role="alert" { "The history cannot be read now: " (e) }
            } @else if o.changes.as_ref().is_ok_and(Vec::is_empty) {
                p { "Nothing changed in the last hour." }
            } @else {
                div.table-wrap { table.changes #changes {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Host" } th scope="col" { "What" } } }
                    tbody {
                        @for c in o.changes.iter().flatten() {
                            tr {
                                td { (when(c.at, now)) }
                                td { a href={ "/hosts/" (path(&c.host)) } { (c.host) } }
                                td { span.kind { (c.kind) } " " (c.message) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

/// A host name as a path segment.
pub(super) fn path(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn incident_table(list: &[Incident], now: DateTime<Utc>) -> Markup {
    html! {
        @if list.is_empty() {
            p { "No incident." }
        } @else {
            div.table-wrap { table.incidents {
                thead { tr {
                    th scope="col" { "Severity" } th scope="col" { "Incident" } th scope="col" { "Hosts" }
                    th scope="col" { "Opened" } th scope="col" { "State" } th scope="col" { "Next step" }
                } }
                tbody {
                    @for i in list {
                        tr {
                            td { span class={ "sev sev-" (i.severity.as_str()) } { (i.severity.as_str()) } }
                            td {
                                 strong { (i.kind.as_str()) " "
                                     @if i.kind.is_host() { a href={ "/hosts/" (path(&i.subject)) } { (i.subject) } } @else { (i.subject) } }
                                 br; (i.summary)
                                 @if let Some(c) = &i.covered_by { br; small { "covered by " (c) } } }
                            td { (i.hosts.len()) }
                            td { (when(i.opened_at, now)) }
                            td { (i.state) @if let Some(r) = i.resolved_at { " " (when(r, now)) } }
                            td { (i.next_step) @if let Some(rb) = &i.runbook { " (runbook: " (rb) ")" } }
                        }
                    }
                }
            } }
        }
    }
}

pub(super) async fn overview(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    headers: HeaderMap,
) -> Response {
    let now = app.now();
    let mut o = Overview::read(&lock(&app.registry));
    o.incidents = app
        .notifier
        .incidents(Some(true), 50)
        .await
        .map_err(|e| e.sentence());
    o.changes = lock(&app.store)
        .history_since(now - chrono::TimeDelta::hours(1), 50)
        .map_err(|e| e.sentence());
    let live = overview_markup(&o, now);
    respond(
        &headers,
        Shown {
            title: "Overview".into(),
            nav: "/",
            session: &session,
            before: html! {},
            live: Some(live),
            generation: o.generation,
        },
    )
}

/// The listing's query: the API's filters, a name prefix and a page.
struct Listing {
    filter: Filter,
    /// The query as given, for the form and the links.
    given: BTreeMap<String, String>,
    page: usize,
}

fn listing(q: &HashMap<String, String>) -> Result<Listing, crate::http::ApiError> {
    let mut given: BTreeMap<String, String> = q
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), v.trim().to_owned()))
        .collect();
    let page = match given.remove("page") {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| {
                crate::http::ApiError::bad(
                    "page",
                    format!("page {p:?} is not a page number (1, 2, …)"),
                )
            })?,
    };
    let filter = crate::http::host_filter(&given)?;
    Ok(Listing {
        filter,
        given,
        page,
    })
}

fn bad_query(session: &Session, e: crate::http::ApiError) -> Response {
    layout::plain(
        StatusCode::BAD_REQUEST,
        session,
        "/hosts",
        "Hosts",
        html! {
            p.error role="alert" { "The filter " strong { (e.field_name().unwrap_or("?")) } " is wrong: " (e.message()) }
            p { a href="/hosts" { "All hosts" } }
        },
    )
}

pub(super) async fn hosts(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let l = match listing(&q) {
        Ok(l) => l,
        Err(e) => return bad_query(&session, e),
    };
    let now = app.now();
    let mut r = lock(&app.registry);
    r.refresh_names();
    let page = r.page(&l.filter, (l.page - 1) * PAGE_SIZE, PAGE_SIZE, now);
    let labels = r.label_values();
    let generation = r.generation();
    let get = |k: &str| l.given.get(k).map_or("", String::as_str);
    let pages = page.total.div_ceil(PAGE_SIZE).max(1);
    let given: Vec<(&str, &str)> = l
        .given
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The same filter on another page.
    let link = |p: usize| {
        let p = p.to_string();
        let pairs: Vec<(&str, &str)> = given
            .iter()
            .copied()
            .chain([("page", p.as_str())])
            .collect();
        format!("/hosts?{}", query(&pairs))
    };
    let before = html! {
        form.filters method="get" action="/hosts" role="search" aria-label="Filter hosts" {
            div.field {
                label for="f-name" { "Name begins with" }
                input #f-name type="search" name="name" value=(get("name")) autocomplete="off";
            }
            div.field {
                label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" { "any" }
                    @for s in HostState::ALL { option value=(s.as_str()) selected[get("state") == s.as_str()] { (s.as_str()) } }
                }
            }
            div.field {
                label for="f-lifecycle" { "Lifecycle" }
                select #f-lifecycle name="lifecycle" {
                    option value="" { "any" }
                    @for lc in Lifecycle::ALL { option value=(lc.as_str()) selected[get("lifecycle") == lc.as_str()] { (lc.as_str()) } }
                }
            }
            @for (i, label) in ["env", "region", "zone", "role"].iter().enumerate() {
                div.field {
                    label for={ "f-" (label) } { (label) }
                    select id={ "f-" (label) } name=(label) {
                        option value="" { "any" }
                        @for v in &labels[i] { option value=(v) selected[get(label) == *v] { (v) } }
                    }
                }
            }
            div.field.buttons {
                button type="submit" { "Filter" }
                a href="/hosts" { "Clear" }
            }
        }
        p.download { a #csv href={ "/hosts.csv?" (query(&given)) } download { "Download CSV of this filter" } }
    };
    let live = html! {
        p.total #match-count { (page.total) " hosts match, " (page.flagged) " flagged. Page " (l.page) " of " (pages) "." }
        (host_table(&page.hosts, now))
        nav.pager aria-label="Pages" {
            @if l.page > 1 { a rel="prev" href=(link(l.page - 1)) { "← Previous" } }
            @if l.page < pages { a rel="next" href=(link(l.page + 1)) { "Next →" } }
        }
    };
    drop(r);
    respond(
        &headers,
        Shown {
            title: "Hosts".into(),
            nav: "/hosts",
            session: &session,
            before,
            live: Some(live),
            generation,
        },
    )
}

fn host_table(hosts: &[crate::registry::HostView<'_>], now: DateTime<Utc>) -> Markup {
    html! {
        div.table-wrap { table.hosts #hosts {
            thead { tr {
                th scope="col" { "State" } th scope="col" { "Host" } th scope="col" { "Why" }
                th scope="col" { "Last heard" } th scope="col" { "Lifecycle" } th scope="col" { "Labels" }
            } }
            tbody {
                @for h in hosts {
                    tr data-host=(h.name) data-state=(h.state.as_str()) .flagged[h.flagged] {
                        td { (badge(h.state)) @if h.flagged { " " span.flag { "flagged" } } }
                        th scope="row" { a href={ "/hosts/" (path(h.name)) } { (h.name) } }
                        td.reason { (h.reason) }
                        td { (when(h.last_heard, now)) }
                        td { (h.lifecycle.as_str()) }
                        td.labels { @for (k, v) in h.labels.pairs() { span.label { (k) "=" (v) } " " } }
                    }
                }
            }
        } }
    }
}

pub(super) async fn hosts_csv(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let l = match listing(&q) {
        Ok(l) => l,
        Err(e) => return bad_query(&session, e),
    };
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record([
        "name",
        "state",
        "flagged",
        "lifecycle",
        "reason",
        "last_heard",
        "env",
        "region",
        "zone",
        "role",
        "identity",
    ]);
    // In slices, the registry let go between them: a download of a million hosts does not
    // hold heartbeats back.
    let ids = lock(&app.registry).sorted(&l.filter);
    for chunk in ids.chunks(5_000) {
        let now = app.now();
        let r = lock(&app.registry);
        for h in r.views(chunk, now) {
            let labels = h.labels.values();
            let _ = out.write_record([
                h.name,
                h.state.as_str(),
                if h.flagged { "true" } else { "false" },
                h.lifecycle.as_str(),
                &h.reason,
                &h.last_heard.to_rfc3339(),
                labels[0],
                labels[1],
                labels[2],
                labels[3],
                h.identity,
            ]);
        }
    }
    let body = out.into_inner().unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"rollcall-hosts.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn zones(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    headers: HeaderMap,
) -> Response {
    let (zones, generation) = {
        let r = lock(&app.registry);
        (r.zones(), r.generation())
    };
    let live = html! {
        @if zones.is_empty() {
            p { "No zone has hosts with a zone label yet." }
        }
        @for z in &zones {
            section.zone aria-labelledby={ "z-" (z.zone) } {
                h2 id={ "z-" (z.zone) } {
                    (z.zone) " "
                    @if z.flagged { span.badge.st-silent { span.icon aria-hidden="true" { "✖" } " no working scanner" } }
                    @else if z.scanners.is_empty() { span.badge.neutral { span.icon aria-hidden="true" { "–" } " no scanner" } }
                    @else { span.badge.st-up { span.icon aria-hidden="true" { "✔" } " scanned" } }
                }
                p { (z.hosts) " hosts, " (z.bmcs) " BMCs to probe. " (z.reason) }
                @if !z.scanners.is_empty() {
                    ul { @for s in &z.scanners { li {
                        a href={ "/hosts/" (path(&s.name)) } { (s.name) } ": "
                        @if s.working { "working" } @else { strong { "not working" } } " — " (s.reason)
                    } } }
                }
            }
        }
    };
    respond(
        &headers,
        Shown {
            title: "Zones and scanners".into(),
            nav: "/zones",
            session: &session,
            before: html! {},
            live: Some(live),
            generation,
        },
    )
}

pub(super) async fn incidents(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let all = q.get("state").map(String::as_str) == Some("all");
    let now = app.now();
    let list = app
        .notifier
        .incidents(if all { None } else { Some(true) }, 200)
        .await;
    let generation = lock(&app.registry).generation();
    let before = html! {
        p { @if all { a href="/incidents" { "Open incidents only" } } @else { a href="/incidents?state=all" { "Open and resolved" } } }
    };
    let live = match list {
        Ok(list) => incident_table(&list, now),
        Err(e) => {
            html! { p.error role="alert" { "Incidents cannot be read now: " (e.sentence()) } }
        }
    };
    respond(
        &headers,
        Shown {
            title: "Incidents".into(),
            nav: "/incidents",
            session: &session,
            before,
            live: Some(live),
            generation,
        },
    )
}

pub(super) async fn relays(
    State(app): State<Arc<App>>,
    Viewer(session): Viewer,
    headers: HeaderMap,
) -> Response {
    let now = app.now();
    let (relays, generation) = {
        let r = lock(&app.registry);
        (r.relays(), r.generation())
    };
    let live = html! {
        @if relays.is_empty() {
            p { "No host has reported a BigFix relay yet." }
        } @else {
            div.table-wrap { table.relays {
                thead { tr { th scope="col" { "Relay" } th scope="col" { "Hosts" } th scope="col" { "Failing" } th scope="col" { "Since" } th scope="col" { "Regions" } th scope="col" { "Verdict" } } }
                tbody { @for r in &relays { tr {
                    th scope="row" { (or_none(&r.relay)) }
                    td { (r.hosts) } td { (r.failing) }
                    td { @if let Some(s) = r.failing_since { (when(s, now)) } }
                    td { (r.regions.join(", ")) }
                    td { @if r.suspect { span.badge.st-silent { span.icon aria-hidden="true" { "✖" } " suspect" } " " } (r.reason) }
                } } }
            } }
        }
    };
    respond(
        &headers,
        Shown {
            title: "Relays".into(),
            nav: "/relays",
            session: &session,
            before: html! {},
            live: Some(live),
            generation,
        },
    )
}
