//! Reconciliation figures, printed (never asserted): an inventory of `--devices` devices
//! against as many registered hosts (1 % of each class of discrepancy planted), in
//! process.
//!
//!   cargo run --release -p rollcall-collector --example reconcile_bench -- [--devices 100000]
//!
//! Prints: the time to read the device list, the time to reconcile, and the memory each
//! takes per device (resident set growth).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use rollcall_collector::inventory::{parse, reconcile};
use rollcall_collector::registry::Registry;
use rollcall_collector::state::Policy;
use rollcall_collector::store::{HeartbeatRecord, StateJson};
use rollcall_collector::testing::{arg, rss_kib};
use rollcall_proto::Health;

fn main() {
    rollcall_collector::no_huge_pages();
    let devices = arg("--devices", 100_000) as usize;
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
    let pid = std::process::id();
    let name = |i: usize| format!("node-{i:07}.example.net");
    let mut reg = Registry::new(Policy::default(), now - chrono::Duration::days(3));
    for i in (0..devices).filter(|i| i % 100 != 0) {
        reg.apply(&HeartbeatRecord {
            host: name(i),
            identity: format!("id-{i}"),
            received_at: now,
            interval_secs: 60,
            labels: BTreeMap::from([
                (
                    "region".to_owned(),
                    if i % 100 == 1 { "eu-de" } else { "us-south" }.to_owned(),
                ),
                ("zone".to_owned(), format!("dal1{}", i % 3)),
            ]),
            health: Health::Ok,
            reason: String::new(),
            state_json: StateJson::Text("{}".into()),
            state_fingerprint: 1,
            events: vec![],
            booted_at: None,
        });
    }
    let mut csv =
        String::from("hostname,primary_ip,mgmt_ip,region,zone,role,env,provisioned,status\n");
    for i in 0..devices {
        let status = if i % 100 == 2 { "cancelled" } else { "live" };
        csv.push_str(&format!(
            "{},10.{}.{}.{},,us-south,dal1{},worker,prod,2026-01-01,{status}\n",
            name(i),
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            i % 3
        ));
    }
    let before = rss_kib(pid);
    let started = Instant::now();
    let inv = parse(
        std::path::Path::new("devices.csv"),
        csv.as_bytes(),
        &BTreeMap::new(),
        now,
    )
    .expect("parse");
    let read = started.elapsed();
    let after_read = rss_kib(pid);
    drop(csv);
    let inv = Arc::new(inv);
    reg.apply_inventory(inv.clone(), now);
    let started = Instant::now();
    let report = reconcile(
        &inv,
        reg.reported(),
        now,
        std::time::Duration::from_secs(24 * 3600),
    );
    let took = started.elapsed();
    let after = rss_kib(pid);
    println!(
        "{devices} devices against {} hosts: {} discrepancies {:?}",
        reg.len(),
        report.total,
        report.counts
    );
    println!(
        "read the device list: {:.0} ms, {} bytes per device resident",
        read.as_secs_f64() * 1e3,
        (after_read.saturating_sub(before)) * 1024 / devices as u64
    );
    println!(
        "reconcile: {:.0} ms (target <= 1 s), {} bytes per device resident while it ran (report included)",
        took.as_secs_f64() * 1e3,
        (after.saturating_sub(after_read)) * 1024 / devices as u64
    );
}
