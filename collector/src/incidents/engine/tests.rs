use super::*;
use crate::incidents::Problem;
use crate::store::suite::t;

fn host(name: &str, region: &str, state: HostState, since: u32) -> HostObserved {
    let problems = match state {
        HostState::Silent => vec![Problem {
            kind: Kind::Silent,
            reason: "silent: last heard 12:00:00 UTC".into(),
        }],
        HostState::Unhealthy => vec![Problem {
            kind: Kind::UnhealthyBesclient,
            reason: "besclient dead".into(),
        }],
        _ => vec![],
    };
    HostObserved {
        name: name.into(),
        labels: BTreeMap::from([
            ("region".to_owned(), region.to_owned()),
            ("zone".to_owned(), format!("{region}-1")),
        ]),
        state,
        silent_since: (state == HostState::Silent).then(|| t(since)),
        deadline_span: chrono::Duration::seconds(180),
        problems,
        suspect_relay: None,
        flapping: None,
    }
}

/// A fleet of `per` live hosts in each region, with the given ones flagged (the silent
/// ones count as quiet in their region and zone).
fn fleet(regions: &[&str], per: usize, flagged: Vec<HostObserved>) -> Observed {
    let quiet = |label: &str, name: &str| {
        flagged
            .iter()
            .filter(|h| {
                h.state == HostState::Silent
                    && h.labels.get(label).map(String::as_str) == Some(name)
            })
            .count()
    };
    Observed {
        live: regions.len() * per,
        regions: regions
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    Tally {
                        live: per,
                        quiet: quiet("region", r),
                    },
                )
            })
            .collect(),
        zones: regions
            .iter()
            .map(|r| {
                let z = format!("{r}-1");
                let quiet = quiet("zone", &z);
                (z, Tally { live: per, quiet })
            })
            .collect(),
        hosts: flagged,
        ..Observed::default()
    }
}

fn everyone(_: &Incident) -> Vec<String> {
    vec!["hook".into(), "pager".into()]
}

fn up(_: &str) -> Option<String> {
    Some("up: last heard 12:05:00 UTC".into())
}

fn told(s: &Step) -> Vec<(String, Action)> {
    s.outbox
        .iter()
        .map(|(_, r, a, i)| (format!("{r}:{}", i.key), *a))
        .collect()
}

#[test]
fn a_silent_host_is_one_trigger_then_one_resolve_per_receiver() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let obs = fleet(&["r1"], 20, vec![host("a", "r1", HostState::Silent, 0)]);
    let s = e.reconcile(&obs, t(1), &up, &everyone);
    assert_eq!(
        told(&s),
        [
            ("hook:silent/a".to_owned(), Action::Trigger),
            ("pager:silent/a".to_owned(), Action::Trigger)
        ]
    );
    assert_eq!(s.changed[0].severity, crate::incidents::Severity::Critical);
    assert!(s.changed[0].next_step.contains("rollcall-agent"));
    // The same again: nothing new, no second incident.
    assert!(e.reconcile(&obs, t(2), &up, &everyone).is_empty());
    let s = e.reconcile(&fleet(&["r1"], 20, vec![]), t(3), &up, &everyone);
    assert_eq!(told(&s).len(), 2);
    assert!(s.outbox.iter().all(|o| o.2 == Action::Resolve));
    let inc = &s.changed[0];
    assert_eq!(
        inc.resolution.as_deref(),
        Some("a is up: last heard 12:05:00 UTC")
    );
    let what: Vec<&str> = inc.history.iter().map(|l| l.what.as_str()).collect();
    assert_eq!(what, ["opened", "notified", "resolved"]);
    assert_eq!(e.open().count(), 0);
}

#[test]
fn a_dark_region_is_one_incident_with_its_hosts_inside_and_one_resolve() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let dark: Vec<HostObserved> = (0..8)
        .map(|i| host(&format!("h{i}"), "r1", HostState::Silent, i))
        .chain([host("far", "r2", HostState::Silent, 0)])
        .collect();
    let s = e.reconcile(
        &fleet(&["r1", "r2"], 10, dark.clone()),
        t(10),
        &up,
        &everyone,
    );
    let keys: BTreeSet<String> = told(&s).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "hook:region-dark/r1".to_owned(),
            "pager:region-dark/r1".to_owned(),
            "hook:silent/far".to_owned(),
            "pager:silent/far".to_owned(),
        ]),
        "the region once, its zone and hosts inside it; the other region's host on its own"
    );
    let region = s
        .changed
        .iter()
        .find(|i| i.key == "region-dark/r1")
        .unwrap();
    assert_eq!(region.hosts.len(), 8);
    assert!(region.summary.contains("8 of 10"), "{}", region.summary);
    let zone = s
        .changed
        .iter()
        .find(|i| i.key == "zone-dark/r1-1")
        .unwrap();
    assert_eq!(zone.covered_by.as_deref(), Some("region-dark/r1"));
    // Restored but one host: the region resolves (told), its hosts' incidents resolve
    // quietly; the one still silent is held (a region comes back host by host)...
    let rest = fleet(&["r1", "r2"], 10, vec![dark[0].clone(), dark[8].clone()]);
    let s = e.reconcile(&rest, t(400), &up, &everyone);
    assert_eq!(
        told(&s),
        [
            ("hook:region-dark/r1".to_owned(), Action::Resolve),
            ("pager:region-dark/r1".to_owned(), Action::Resolve),
        ]
    );
    let h1 = s.changed.iter().find(|i| i.key == "silent/h1").unwrap();
    assert!(h1.notified.is_empty() && !h1.is_open());
    // ...and told on its own if it is still silent twice its deadline span later.
    assert!(e.reconcile(&rest, t(700), &up, &everyone).outbox.is_empty());
    let s = e.reconcile(&rest, t(761), &up, &everyone);
    assert_eq!(
        told(&s),
        [
            ("hook:silent/h0".to_owned(), Action::Trigger),
            ("pager:silent/h0".to_owned(), Action::Trigger),
        ]
    );
}

#[test]
fn scattered_silences_are_not_a_dark_region() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    // Six of ten silent, but hours apart.
    let hosts = (0..6)
        .map(|i| host(&format!("h{i}"), "r1", HostState::Silent, i * 3600))
        .collect();
    let s = e.reconcile(&fleet(&["r1"], 10, hosts), t(30000), &up, &everyone);
    assert!(s.changed.iter().all(|i| i.kind == Kind::Silent));
    assert_eq!(s.outbox.len(), 12);
}

#[test]
fn a_blind_collector_is_one_incident_not_thousands() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let hosts: Vec<HostObserved> = ["r1", "r2", "r3"]
        .iter()
        .flat_map(|r| (0..20).map(move |i| host(&format!("{r}-{i}"), r, HostState::Silent, 0)))
        .collect();
    let s = e.reconcile(
        &fleet(&["r1", "r2", "r3"], 20, hosts),
        t(200),
        &up,
        &everyone,
    );
    assert_eq!(
        told(&s),
        [
            ("hook:collector-blind/fleet".to_owned(), Action::Trigger),
            ("pager:collector-blind/fleet".to_owned(), Action::Trigger)
        ]
    );
    let regions = s.changed.iter().filter(|i| i.kind == Kind::RegionDark);
    assert!(regions.clone().count() == 3 && regions.into_iter().all(|i| i.covered_by.is_some()));
}

#[test]
fn maintenance_resolves_a_notified_incident_with_its_reason() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let obs = fleet(&["r1"], 20, vec![host("m", "r1", HostState::Unhealthy, 0)]);
    e.reconcile(&obs, t(1), &up, &everyone);
    let maint =
        |_: &str| Some("in maintenance until 2026-11-22T14:00:00Z (kernel patching)".to_owned());
    let s = e.reconcile(&fleet(&["r1"], 20, vec![]), t(2), &maint, &everyone);
    assert_eq!(s.outbox.len(), 2, "the resolve goes to both receivers");
    assert!(s.changed[0]
        .resolution
        .as_deref()
        .unwrap()
        .contains("kernel patching"));
}

#[test]
fn a_flapping_host_is_one_incident_covering_its_changes() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let mut h = host("f", "r1", HostState::Unhealthy, 0);
    h.flapping = Some(5);
    let s = e.reconcile(&fleet(&["r1"], 20, vec![h.clone()]), t(1), &up, &everyone);
    assert_eq!(
        told(&s),
        [
            ("hook:flapping/f".to_owned(), Action::Trigger),
            ("pager:flapping/f".to_owned(), Action::Trigger)
        ]
    );
    // Up, down, up again while flapping: nothing more is told.
    h.state = HostState::Up;
    h.problems.clear();
    let s = e.reconcile(&fleet(&["r1"], 20, vec![h.clone()]), t(2), &up, &everyone);
    assert!(s.outbox.is_empty());
    h.flapping = None;
    let s = e.reconcile(&fleet(&["r1"], 20, vec![]), t(3), &up, &everyone);
    assert_eq!(s.outbox.len(), 2);
    assert!(s
        .outbox
        .iter()
        .all(|o| o.2 == Action::Resolve && o.3.kind == Kind::Flapping));
}

#[test]
fn a_suspect_relay_covers_its_hosts_check_in() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let hosts: Vec<HostObserved> = (0..5)
        .map(|i| {
            let mut h = host(&format!("c{i}"), "r1", HostState::Unhealthy, 0);
            h.problems = vec![Problem {
                kind: Kind::UnhealthyCheckin,
                reason: "not checked in".into(),
            }];
            h.suspect_relay = Some("relay-1".into());
            h
        })
        .collect();
    let mut obs = fleet(&["r1"], 20, hosts);
    obs.suspect_relays = vec![("relay-1".into(), "relay relay-1 suspect".into())];
    let s = e.reconcile(&obs, t(1), &up, &|i: &Incident| {
        if i.kind == Kind::RelaySuspect {
            vec!["hook".into()]
        } else {
            vec!["hook".into(), "pager".into()]
        }
    });
    assert_eq!(
        told(&s),
        [("hook:relay-suspect/relay-1".to_owned(), Action::Trigger)]
    );
    let relay = s
        .changed
        .iter()
        .find(|i| i.kind == Kind::RelaySuspect)
        .unwrap();
    assert_eq!(relay.hosts, ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(relay.labels.get("region").map(String::as_str), Some("r1"));
}

#[test]
fn restarted_engine_keeps_identity_and_resolves_what_it_told() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let obs = fleet(&["r1"], 20, vec![host("k", "r1", HostState::Silent, 0)]);
    let s = e.reconcile(&obs, t(1), &up, &everyone);
    let open: Vec<Incident> = s.changed.clone();
    let mut again = Engine::new(Rules::default(), open.clone(), 1);
    assert!(
        again.reconcile(&obs, t(2), &up, &everyone).is_empty(),
        "no second incident"
    );
    let s = again.reconcile(&fleet(&["r1"], 20, vec![]), t(3), &up, &everyone);
    assert_eq!(told(&s).len(), 2);
    // A new incident after the restart takes a fresh id.
    let s = again.reconcile(&obs, t(4), &up, &everyone);
    assert!(s.changed[0].id > open[0].id);
}

#[test]
fn the_first_silent_hosts_of_a_region_going_quiet_wait_for_it() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    // Cut off: two of ten already silent, six more late (past their interval).
    let first: Vec<HostObserved> = (0..2)
        .map(|i| host(&format!("h{i}"), "r1", HostState::Silent, 0))
        .collect();
    let mut obs = fleet(&["r1", "r2"], 10, first.clone());
    obs.regions.get_mut("r1").unwrap().quiet = 8;
    let s = e.reconcile(&obs, t(1), &up, &everyone);
    assert!(s.outbox.is_empty(), "held: {:?}", told(&s));
    assert!(s.changed[0].history[1]
        .message
        .starts_with("held: most hosts of r1"));
    // The rest turn silent: the region, told once; the first two inside it.
    let all: Vec<HostObserved> = (0..8)
        .map(|i| host(&format!("h{i}"), "r1", HostState::Silent, i))
        .collect();
    let s = e.reconcile(&fleet(&["r1", "r2"], 10, all), t(3), &up, &everyone);
    let keys: Vec<String> = told(&s).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["hook:region-dark/r1", "pager:region-dark/r1"]);

    // Another time, the late hosts come back: the two held are told on their own.
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let mut obs = fleet(&["r1", "r2"], 10, first.clone());
    obs.regions.get_mut("r1").unwrap().quiet = 8;
    e.reconcile(&obs, t(1), &up, &everyone);
    let s = e.reconcile(&fleet(&["r1", "r2"], 10, first), t(2), &up, &everyone);
    let keys: Vec<String> = told(&s).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "hook:silent/h0",
            "pager:silent/h0",
            "hook:silent/h1",
            "pager:silent/h1"
        ]
    );
}

#[test]
fn a_group_is_told_again_only_when_it_doubled_ten_minutes_on() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let silent = |n: u32| -> Vec<HostObserved> {
        (0..n)
            .map(|i| host(&format!("h{i}"), "r1", HostState::Silent, i))
            .collect()
    };
    let obs = |n: u32| fleet(&["r1", "r2"], 40, silent(n));
    let s = e.reconcile(&obs(20), t(100), &up, &everyone);
    assert_eq!(told(&s).len(), 2, "the trigger");
    // Doubled within the minute: no update (a region going dark is one message).
    let s = e.reconcile(&obs(40), t(160), &up, &everyone);
    assert!(s.outbox.is_empty(), "{:?}", told(&s));
    // Ten minutes after it was told: changed but not doubled since, nothing; doubled, told.
    let s = e.reconcile(&obs(39), t(800), &up, &everyone);
    assert!(s.outbox.is_empty(), "{:?}", told(&s));
    let s = e.reconcile(&obs(40), t(801), &up, &everyone);
    assert_eq!(
        told(&s),
        [
            ("hook:region-dark/r1".to_owned(), Action::Update),
            ("pager:region-dark/r1".to_owned(), Action::Update)
        ]
    );
    let region = s
        .changed
        .iter()
        .find(|i| i.kind == Kind::RegionDark)
        .unwrap();
    assert_eq!(region.told_hosts, 40);
    assert!(region.history.iter().any(|l| l.what == "updated"));
}

#[test]
fn the_first_silent_hosts_of_a_fleet_going_quiet_wait_for_the_blind_collector() {
    let mut e = Engine::new(Rules::default(), vec![], 1);
    let regions = ["r1", "r2", "r3"];
    let hosts = |n: usize| -> Vec<HostObserved> {
        (0..n)
            .map(|i| {
                host(
                    &format!("h{i}"),
                    regions[i % 3],
                    HostState::Silent,
                    i as u32,
                )
            })
            .collect()
    };
    // Two silent, the other ten late: no region has five quiet, the fleet has all.
    let mut obs = fleet(&regions, 4, hosts(2));
    obs.quiet = 12;
    let s = e.reconcile(&obs, t(10), &up, &everyone);
    assert!(s.outbox.is_empty(), "held: {:?}", told(&s));
    let mut obs = fleet(&regions, 4, hosts(12));
    obs.quiet = 12;
    let s = e.reconcile(&obs, t(12), &up, &everyone);
    assert_eq!(
        told(&s),
        [
            ("hook:collector-blind/fleet".to_owned(), Action::Trigger),
            ("pager:collector-blind/fleet".to_owned(), Action::Trigger)
        ]
    );
}
