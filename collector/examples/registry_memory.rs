//! Resident memory per registered host, and the silent-host query time, at fleet scale.
//!
//!   cargo run --release -p rollcall-collector --example registry_memory -- 1000000

use std::time::Instant;

use chrono::{Duration, Utc};
use rollcall_collector::registry::{Filter, Registry};
use rollcall_collector::state::{HostState, Policy};
use rollcall_collector::store::HeartbeatRecord;
use rollcall_proto::Health;

/// The collector's allocator, so that the figures are the collector's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    rollcall_collector::testing::rss_kib(std::process::id())
}

fn main() {
    rollcall_collector::no_huge_pages();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let t0 = Utc::now() - Duration::days(10);
    let mut reg = Registry::new(Policy::default(), t0);
    let before = rss_kib();
    let regions = ["us-south", "us-east", "eu-de", "eu-gb", "jp-tok", "au-syd"];
    for i in 0..n {
        let mut r = HeartbeatRecord {
            host: format!("kube-{:07}-worker.{}.example.net", i, regions[i % 6]),
            identity: format!("{:032x}/{:08x}", i as u128 * 2654435761, i),
            received_at: t0,
            interval_secs: 60,
            labels: [
                ("env".to_owned(), "prod".to_owned()),
                ("region".to_owned(), regions[i % 6].to_owned()),
                ("zone".to_owned(), format!("{}-{}", regions[i % 6], i % 3)),
                ("role".to_owned(), "carrier-worker".to_owned()),
            ]
            .into(),
            health: Health::Ok,
            reason: "BESClient (pid 81234) is running and logging".to_owned(),
            state_json: rollcall_collector::store::StateJson::Text(String::new()),
            state_fingerprint: 0,
            events: Vec::new(),
            booted_at: None,
        };
        // 1 % stay quiet; the rest report again a day later.
        if i % 100 != 0 {
            r.received_at = t0 + Duration::days(1);
        }
        reg.apply(&r);
        // The collector writes these lines to the store as they come.
        reg.take_notes();
    }
    let after = rss_kib();
    let now = t0 + Duration::days(1) + Duration::seconds(30);
    reg.sweep(now);
    let f = Filter {
        state: Some(HostState::Silent),
        ..Filter::default()
    };
    let mut times = Vec::new();
    let mut found = 0;
    let mut bytes = 0;
    for _ in 0..20 {
        let s = Instant::now();
        let hosts = reg.query(&f, now);
        let body = serde_json::to_vec(&hosts).expect("json");
        times.push(s.elapsed().as_secs_f64() * 1000.0);
        found = hosts.len();
        bytes = body.len();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{n} hosts: RSS grew {} KiB = {:.0} bytes per host",
        after - before,
        (after - before) as f64 * 1024.0 / n as f64
    );
    println!(
        "query state=silent: {found} hosts as {} KiB of JSON, p50 {:.2} ms, max {:.2} ms (registry and JSON, no HTTP)",
        bytes / 1024,
        times[10],
        times[19]
    );
}
