//! Real agents listing three collectors on one PostgreSQL: each reports to its own first
//! choice, and when that collector is killed it moves to the next one without its host
//! ever being flagged; every collector still answers for the whole fleet.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rollcall_collector::testing::postgres::Cluster;
use rollcall_collector::testing::replicas::Replicas;
use rollcall_tests::{assert_not_flagged, bin, reporting_host_to, wait_until, Agent};
use serde_json::Value;

fn host(c: &rollcall_collector::testing::Collector, name: &str) -> Value {
    c.admin()
        .get(&format!("/api/v1/hosts/{name}"))
        .unwrap()
        .body["host"]
        .clone()
}

fn heard(h: &Value) -> DateTime<Utc> {
    h["last_heard"]
        .as_str()
        .unwrap_or("")
        .parse()
        .unwrap_or_default()
}

/// The message of the first log line of `a` containing `words`.
fn said(a: &Agent, words: &str) -> Option<String> {
    a.lines().iter().find_map(|l| {
        l["msg"]
            .as_str()
            .filter(|m| m.contains(words))
            .map(str::to_owned)
    })
}

#[test]
fn agents_move_to_the_next_collector_when_theirs_dies_and_no_host_is_flagged() {
    let pg = Cluster::start(false);
    let d = tempfile::tempdir().unwrap();
    let url = pg.url(&pg.create("failover"));
    let pw = pg.password_file(d.path());
    let mut rs = Replicas::start(
        &bin("rollcall-collector"),
        3,
        d.path(),
        (&url, &pw),
        "5s",
        "",
        &[],
    );
    let names = ["fo-a", "fo-b", "fo-c", "fo-d", "fo-e", "fo-f"];
    let agents: Vec<_> = {
        let cs: Vec<&rollcall_collector::testing::Collector> = rs.live().map(|(_, c)| c).collect();
        names
            .iter()
            .map(|n| {
                reporting_host_to(
                    &cs,
                    n,
                    "1s",
                    "env = \"prod\", region = \"eu-de\", zone = \"fra02\", role = \"worker\"",
                )
            })
            .collect()
    };
    for (_, c) in rs.live() {
        wait_until(
            "every host on every collector",
            Duration::from_secs(30),
            || names.iter().all(|n| host(c, n)["state"] == "up"),
        );
    }
    // Routine heartbeats carry the digest of the unchanged state, not the state.
    wait_until("digests", Duration::from_secs(15), || {
        rs.live()
            .filter_map(|(_, c)| c.metric("rollcall_heartbeats_digest_total"))
            .sum::<f64>()
            > 0.0
    });
    // The collector that agent fo-a chose first: the one to kill.
    let choice = |a: &Agent| {
        let m = said(a, "first choice ").expect("the agent names its first choice");
        m.rsplit("first choice ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_owned()
    };
    let victim_url = choice(&agents[0].1);
    let victim = rs
        .urls()
        .iter()
        .position(|u| *u == victim_url)
        .unwrap_or_else(|| panic!("{victim_url} is none of {:?}", rs.urls()));
    let moving: Vec<usize> = (0..names.len())
        .filter(|i| choice(&agents[*i].1) == victim_url)
        .collect();

    rs.kill(victim);
    let killed = Utc::now();
    // Those that reported there say so and go on elsewhere; every host keeps being heard.
    for i in &moving {
        wait_until("the move said", Duration::from_secs(15), || {
            said(&agents[*i].1, &format!("collector {victim_url} failed")).is_some()
        });
    }
    for (_, c) in rs.live() {
        wait_until(
            "every host heard after the kill",
            Duration::from_secs(15),
            || {
                names
                    .iter()
                    .all(|n| heard(&host(c, n)) > killed + chrono::Duration::seconds(1))
            },
        );
    }
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        for (i, c) in rs.live() {
            for n in names {
                let h = host(c, n);
                assert_not_flagged(&h, &format!("collector {i}, {n}"));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "{} of {} agents moved off the killed collector",
        moving.len(),
        names.len()
    );
    drop(agents);
}
