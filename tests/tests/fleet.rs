//! A collector and several agents on loopback, each supervising its own simulated
//! BESClient: what an SRE sees in the collector when agents, clients and the collector
//! itself fail.

use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_tests::{
    free_port, host_view, reporting_host, wait_until, Agent, Collector, SimHost, Start,
};
use serde_json::Value;

fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
}

fn state(v: &Value) -> String {
    v["host"]["state"].as_str().unwrap_or("").to_owned()
}

/// A simulated host with a running client and an agent reporting every `interval`.
fn host(c: &Collector, name: &str, interval: &str, region: &str) -> (SimHost, Agent) {
    reporting_host(
        c,
        name,
        interval,
        &format!("env = \"test\", region = \"{region}\", zone = \"{region}-1\", role = \"worker\""),
    )
}

fn history(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l["message"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn stopped_agents_go_silent_on_time_and_come_back_with_the_gap_in_history() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "127.0.0.1:0", "2s");
    let admin = c.admin();
    let fleet: Vec<(SimHost, Agent)> = ["fleet-a", "fleet-b", "fleet-c"]
        .iter()
        .map(|n| host(&c, n, "1s", "us-south"))
        .collect();
    for n in ["fleet-a", "fleet-b", "fleet-c"] {
        wait_until(&format!("{n} up"), Duration::from_secs(20), || {
            let v = host_view(&admin, n);
            state(&v) == "up" && v["agent_state"]["besclient"]["status"] == "running"
        });
    }
    // Each enrolled: its credential is private, the collector holds a hash.
    let cred = fleet[0].0.state_dir().join("credential");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cred).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A revoked credential: the agent says so and enrolls again with the secret it holds.
    let r = admin
        .request("DELETE", "/api/v1/hosts/fleet-a/credentials", None, None)
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let says =
        |words: &'static str| move |l: &Value| l["msg"].as_str().is_some_and(|m| m.contains(words));
    let a = &fleet[0].1;
    wait_until("fleet-a re-enrolled", Duration::from_secs(10), || {
        let lines = a.lines();
        lines.iter().any(says("refused this host's credential"))
            && lines
                .iter()
                .filter(|l| says("enrolled with the collector")(l))
                .count()
                == 2
    });
    wait_until(
        "fleet-a up on its new credential",
        Duration::from_secs(5),
        || state(&host_view(&admin, "fleet-a")) == "up",
    );

    // SIGSTOP one agent: silent within interval + grace + 1 s of its last heartbeat.
    let b = &fleet[1].1;
    signal(b.pid(), "-STOP");
    let stopped = Instant::now();
    wait_until("fleet-b silent", Duration::from_secs(10), || {
        state(&host_view(&admin, "fleet-b")) == "silent"
    });
    let took = stopped.elapsed();
    assert!(
        took <= Duration::from_secs(4),
        "silent after {took:?}; interval 1s + grace 2s + 1s"
    );
    let v = host_view(&admin, "fleet-b");
    assert!(
        v["host"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("silent: last heard"),
        "{v}"
    );
    // `late` (a heartbeat a little past its 1 s interval on a busy machine) is no flag.
    for other in ["fleet-a", "fleet-c"] {
        assert_ne!(
            state(&host_view(&admin, other)),
            "silent",
            "{other} unaffected"
        );
    }
    let silent = admin.get("/api/v1/hosts?state=silent").unwrap().body;
    assert_eq!(silent["count"], 1, "{silent}");

    // Resumed: up again, the silence in its history.
    signal(b.pid(), "-CONT");
    wait_until("fleet-b up again", Duration::from_secs(10), || {
        state(&host_view(&admin, "fleet-b")) == "up"
    });
    wait_until(
        "the gap in fleet-b's history",
        Duration::from_secs(5),
        || {
            history(&host_view(&admin, "fleet-b"))
                .iter()
                .any(|l| l.starts_with("heard again after"))
        },
    );

    // kill -9 of an agent: the same.
    let mut fleet = fleet;
    let (_h, mut c_agent) = fleet.pop().unwrap();
    c_agent.kill9();
    wait_until("fleet-c silent", Duration::from_secs(10), || {
        state(&host_view(&admin, "fleet-c")) == "silent"
    });
    assert_ne!(state(&host_view(&admin, "fleet-a")), "silent");
}

#[test]
fn a_client_death_reaches_the_collector_at_once() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "127.0.0.1:0", "2s");
    let admin = c.admin();
    // A long interval: only the change itself can bring the news this fast.
    let (h, a) = host(&c, "quick-1", "60s", "us-east");
    wait_until("quick-1 up", Duration::from_secs(20), || {
        host_view(&admin, "quick-1")["agent_state"]["besclient"]["status"] == "running"
    });
    let pid = h.daemon_pid();
    let killed = Instant::now();
    signal(pid, "-KILL");
    wait_until(
        "the restart at the collector",
        Duration::from_secs(5),
        || {
            host_view(&admin, "quick-1")["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["action"] == "restart"))
        },
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "restart reached the collector after {took:?}"
    );
    a.wait_event("verified", 0, Duration::from_secs(10), |e| {
        rollcall_tests::is(e, "verified")
    });
}

#[test]
fn events_made_while_the_collector_is_down_arrive_in_order_once_and_nobody_is_flagged() {
    let d = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut c = Collector::start(d.path(), &listen, "2s");
    let (h, a) = host(&c, "outage-1", "1s", "eu-de");
    let (_h2, _a2) = host(&c, "outage-2", "1s", "eu-de");
    let admin = c.admin();
    for n in ["outage-1", "outage-2"] {
        wait_until(&format!("{n} up"), Duration::from_secs(20), || {
            state(&host_view(&admin, n)) == "up"
        });
    }
    c.kill9();
    // Two deaths healed while nobody listens (several intervals).
    let mut after = a.events().len();
    for _ in 0..2 {
        let pid = h.daemon_pid();
        signal(pid, "-KILL");
        let (i, _) = a.wait_event("verified", after, Duration::from_secs(15), |e| {
            rollcall_tests::is(e, "verified")
        });
        after = i + 1;
    }
    std::thread::sleep(Duration::from_secs(3));
    let c = Collector::start(d.path(), &listen, "2s");
    let admin = c.admin();
    // Every event the agent made is stored once, in order.
    let made: Vec<u64> = a
        .events()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    wait_until(
        "the spooled events delivered",
        Duration::from_secs(20),
        || {
            let stored = host_view(&admin, "outage-1")["events"]
                .as_array()
                .map_or(0, Vec::len);
            stored >= made.len()
        },
    );
    let v = host_view(&admin, "outage-1");
    let mut stored: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    stored.reverse();
    let made: Vec<u64> = a
        .events()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(stored, made, "none lost, none duplicated, in order");
    let restarts = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "restart")
        .count();
    assert_eq!(restarts, 2);
    // Nobody was flagged: watch past the restarted collector's interval + grace.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for n in ["outage-1", "outage-2"] {
            let s = state(&host_view(&admin, n));
            assert!(
                s == "up" || s == "late",
                "{n} was {s} after the collector came back"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
