//! Notification figures, printed (never asserted), with the real collector on loopback and
//! a stand-in webhook receiver. Bounded in hosts and time.
//!
//!   cargo build --release -p rollcall-collector && \
//!   cargo run --release -p rollcall-collector --example notify_bench -- [--hosts 200] [--pending 1000]
//!
//! 1. Latency: `--hosts` hosts (each its own region, so each is its own incident) send one
//!    heartbeat and fall silent; for each, the time from its deadline (when the heartbeat
//!    was sent + interval + grace) to the receiver holding its trigger. p50, p99, max.
//! 2. Outbox: the receiver down while `--pending` hosts fall silent; then back. How long
//!    until its first delivery (the backoff it was in) and the rate it drains at.

#[path = "../tests/common/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use receiver::{Flavour, Receiver};
use rollcall_collector::client::Client;
use rollcall_collector::testing::{arg, Collector};
use serde_json::{json, Value};

const INTERVAL: u64 = 20;
const GRACE: u64 = 2;

fn heartbeat(host: &str, interval: u64) -> Value {
    let now = chrono::Utc::now().to_rfc3339();
    json!({
        "proto_version": 1, "host": host,
        "identity": { "machine_id": format!("m-{host}"), "install_id": "i1" },
        "interval_secs": interval,
        "labels": { "env": "prod", "region": format!("r-{host}"), "zone": format!("z-{host}") },
        "state": {
            "proto_version": 1, "agent_version": "0.1.0", "at": now,
            "besclient": {
                "health": "ok", "status": "running", "reason": "running", "since": now,
                "pid": 7, "manager": "systemd", "unit_state": "active (running)",
                "log": { "dir": "/l", "dir_exists": true, "newest": null, "last_write": now, "stale_after_secs": 3600, "stale": false },
                "errors": { "count": 0, "last_line": null, "last_at": null }, "disk": null,
                "remediation": { "enabled": true, "paused_until": null, "pause_reason": null, "step": null, "exhausted_rounds": 0, "next_attempt_at": null, "attempts_in_window": 0, "flapping": false }
            }
        },
        "events": []
    })
}

/// Registers `names` (enroll, one heartbeat, lifecycle live) over 8 threads; returns when
/// each heartbeat was sent.
fn register(c: &Collector, names: &[String], interval: u64) -> HashMap<String, Instant> {
    let chunks: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(8).max(1))
        .map(|c| c.to_vec())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (enroller, admin) = (c.enroller(), c.admin());
            let (url, ca) = (c.url.clone(), c.data.join("ca.pem"));
            std::thread::spawn(move || {
                let mut sent = HashMap::new();
                for h in chunk {
                    let body = json!({
                        "proto_version": 1, "host": h,
                        "identity": { "machine_id": format!("m-{h}"), "install_id": "i1" },
                        "labels": { "region": format!("r-{h}") },
                    });
                    let r = enroller
                        .send_json("POST", "/api/v1/enroll", &body)
                        .expect("enroll");
                    let cred = r.body["credential"]
                        .as_str()
                        .expect("credential")
                        .to_owned();
                    let agent = Client::new(&url, &ca, Some(cred)).expect("client");
                    let at = Instant::now();
                    let r = agent
                        .send_json("POST", "/api/v1/heartbeat", &heartbeat(&h, interval))
                        .expect("heartbeat");
                    assert_eq!(r.status, 200, "{:?}", r.body);
                    admin
                        .send_json(
                            "PUT",
                            &format!("/api/v1/hosts/{h}/lifecycle"),
                            &json!({"lifecycle": "live"}),
                        )
                        .expect("lifecycle");
                    sent.insert(h, at);
                }
                sent
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect()
}

fn subjects(r: &Receiver) -> HashMap<String, Instant> {
    r.requests()
        .iter()
        .filter_map(|q| {
            let v = q.json();
            (v["status"] == "firing").then(|| {
                (
                    v["alerts"][0]["labels"]["subject"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    q.at,
                )
            })
        })
        .collect()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hosts = arg("--hosts", 200) as usize;
    let pending = arg("--pending", 1000) as usize;
    let exe = std::env::current_exe().expect("exe");
    let collector = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("rollcall-collector"))
        .filter(|p| p.exists())
        .expect(
            "target/release/rollcall-collector: cargo build --release -p rollcall-collector first",
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Receiver::start(Flavour::Webhook);
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/")
        ),
    )
    .expect("config");
    let c = Collector::spawn(
        &collector,
        &dir.path().join("data"),
        "127.0.0.1:0",
        &format!("{GRACE}s"),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--enroll-rate",
            "1000000",
        ],
    );

    // Hosts that stay up (an hour's interval, heard once): the silent ones are then a
    // part of the fleet, not nearly all of it (which is a blind collector, one incident).
    let steady: Vec<String> = (0..2 * (hosts + pending))
        .map(|i| format!("up-{i:05}"))
        .collect();
    register(&c, &steady, 3600);

    // 1. Latency.
    let names: Vec<String> = (0..hosts).map(|i| format!("lat-{i:05}")).collect();
    let sent = register(&c, &names, INTERVAL);
    let deadline = |h: &str| sent[h] + Duration::from_secs(INTERVAL + GRACE);
    let started = Instant::now();
    while hook.count() < hosts && started.elapsed() < Duration::from_secs(INTERVAL + 60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = subjects(&hook);
    let mut lat: Vec<f64> = got
        .iter()
        .filter(|(h, _)| sent.contains_key(*h))
        .map(|(h, at)| at.saturating_duration_since(deadline(h)).as_secs_f64() * 1e3)
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "deadline -> webhook holds the trigger, {} of {hosts} hosts: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );

    // 2. Outbox: receiver down while `pending` incidents open, then back.
    hook.stop();
    let names: Vec<String> = (0..pending).map(|i| format!("box-{i:05}")).collect();
    let sent = register(&c, &names, INTERVAL);
    let last_deadline = sent.values().max().copied().unwrap_or_else(Instant::now)
        + Duration::from_secs(INTERVAL + GRACE + 2);
    let admin = c.admin();
    let waiting = || {
        let m = admin
            .get_bytes("/metrics")
            .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        m.lines()
            .find_map(|l| {
                l.strip_prefix("rollcall_notifications_pending{receiver_kind=\"webhook\"} ")
            })
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
    };
    // Every deadline passed, and the outbox holds them all (its gauge lags a few seconds).
    let give_up = last_deadline + Duration::from_secs(30);
    while Instant::now() < last_deadline || (waiting() < pending && Instant::now() < give_up) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let waiting = waiting();
    let before = hook.count();
    let hook = hook.restart();
    let back = Instant::now();
    while hook.count() < before + pending && back.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: HashMap<String, Instant> = subjects(&hook)
        .into_iter()
        .filter(|(h, _)| h.starts_with("box-"))
        .collect();
    let first = got.values().min().copied();
    let last = got.values().max().copied();
    match (first, last) {
        (Some(f), Some(l)) if got.len() > 1 => {
            let drain = l.duration_since(f).as_secs_f64();
            println!("outbox: {waiting} notifications pending when the receiver returned");
            println!(
                "outbox: first delivery {:.1} s after it returned (the backoff it was in); {} delivered in {:.2} s after that: {:.0} notifications/s",
                f.duration_since(back).as_secs_f64(),
                got.len(),
                drain,
                (got.len() - 1) as f64 / drain.max(1e-9)
            );
        }
        _ => println!("outbox: only {} delivered within 600 s", got.len()),
    }
}
