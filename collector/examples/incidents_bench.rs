//! Incident figures, printed (never asserted): a fleet of simulated hosts in regions, one
//! region goes dark and comes back, through the collector's own registry and incident
//! engine on an injected clock (no sleeping, no network).
//!
//!   cargo run --release -p rollcall-collector --example incidents_bench -- [--hosts 10000] [--regions 5]
//!
//! Prints: incidents opened and notifications per receiver for the dark region and its
//! return; the time one incident pass (observe + reconcile) takes at that size.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rollcall_collector::incidents::{Engine, Incident, Rules};
use rollcall_collector::registry::Registry;
use rollcall_collector::state::{Lifecycle, Policy};
use rollcall_collector::store::{HeartbeatRecord, StateJson};
use rollcall_collector::testing::arg;
use rollcall_proto::Health;

fn beat(host: &str, region: usize, at: DateTime<Utc>) -> HeartbeatRecord {
    HeartbeatRecord {
        host: host.into(),
        identity: format!("id-{host}"),
        received_at: at,
        interval_secs: 60,
        labels: BTreeMap::from([
            ("region".to_owned(), format!("region-{region}")),
            (
                "zone".to_owned(),
                format!("zone-{region}-{}", host.len() % 3),
            ),
        ]),
        health: Health::Ok,
        reason: "ok".into(),
        state_json: StateJson::Text("{}".into()),
        state_fingerprint: 1,
        events: vec![],
        booted_at: None,
    }
}

fn main() {
    let hosts = arg("--hosts", 10_000) as usize;
    let regions = (arg("--regions", 5) as usize).max(1);
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let mut reg = Registry::new(Policy::default(), t0);
    let names: Vec<(String, usize)> = (0..hosts)
        .map(|i| (format!("host-{i:07}"), i % regions))
        .collect();
    for (n, r) in &names {
        reg.apply(&beat(n, *r, t0));
        reg.set_lifecycle(n, Some(Lifecycle::Live), t0);
    }
    let mut engine = Engine::new(Rules::default(), vec![], 1);
    let route = |_: &Incident| vec!["webhook".to_owned(), "pagerduty".to_owned()];
    let mut told: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let (mut opened, mut notified) = (0, 0);
    let mut pass_times = Vec::new();
    let mut pass = |reg: &Registry, engine: &mut Engine, now: DateTime<Utc>| {
        let started = Instant::now();
        let obs = reg.observe(now, 4, Duration::from_secs(3600));
        let step = engine.reconcile(&obs, now, &|h| reg.status_words(h, now), &route);
        pass_times.push(started.elapsed());
        for i in &step.changed {
            if i.opened_at == now {
                opened += 1;
                notified += usize::from(i.notified_at.is_some());
            }
        }
        for (_, r, a, _) in &step.outbox {
            *told.entry((r.clone(), a.as_str())).or_default() += 1;
        }
    };
    // Every host reports every minute for ten minutes; then region 0 stops for ten.
    let mut now = t0;
    for minute in 1..=20 {
        now = t0 + chrono::Duration::minutes(minute);
        for (n, r) in &names {
            if !(11..=15).contains(&minute) || *r != 0 {
                reg.apply(&beat(n, *r, now));
            }
        }
        reg.sweep(now);
        pass(&reg, &mut engine, now);
        // Half-minute passes too, as silences fall due between heartbeats.
        let half = now + chrono::Duration::seconds(30);
        reg.sweep(half);
        pass(&reg, &mut engine, half);
    }
    let _ = now;
    let dark = hosts.div_ceil(regions);
    println!(
        "{hosts} hosts in {regions} regions; region-0 ({dark} hosts) dark for 5 minutes, then back"
    );
    println!(
        "incidents opened: {opened}, of which notified: {notified} (the others are listed inside it, not told)"
    );
    for ((r, a), n) in &told {
        println!("notifications to {r}: {a} {n}");
    }
    pass_times.sort();
    let p = |q: f64| pass_times[((pass_times.len() - 1) as f64 * q) as usize];
    println!(
        "incident pass (observe + reconcile) at {hosts} hosts: p50 {:.2} ms, max {:.2} ms over {} passes",
        p(0.5).as_secs_f64() * 1e3,
        p(1.0).as_secs_f64() * 1e3,
        pass_times.len()
    );
}
