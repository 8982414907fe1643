//! BigFix check-in, end to end: the simulated client's relay goes down while it stays alive
//! and logging; the agent sees check-in go warn then critical from the client's own records,
//! restarts the client once, then holds with the relay named instead of escalating; the
//! collector flags the host with the relay in the reason; a restarted agent remembers the
//! last success; the relay's return clears it all.

use std::time::Duration;

use rollcall_tests::{free_port, host_view, wait_until, Agent, Collector, SimHost, Start};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn checkin(v: &Value) -> &Value {
    &v["agent_state"]["besclient"]["checkin"]
}

#[test]
fn a_relay_that_goes_down_gets_one_restart_then_a_hold_that_names_it() {
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), &format!("127.0.0.1:{}", free_port()), "5s");
    let admin = c.admin();
    let h = SimHost::new();
    h.faults("relay = relay-dal10.example\n");
    h.start_client();
    let config = h.agent_config(
        "sysv",
        "",
        "max_restarts = 20\nbackoff_base = \"4s\"\nbackoff_max = \"4s\"",
    );
    h.report_to(&config, &c, "web-1", "1s", "region = \"us-south\"");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        &h.checkin_section("warn_after = \"3s\"\ncritical_after = \"6s\"\nverify_within = \"2s\""),
    );
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&config);
    let view = || host_view(&admin, "web-1");

    // Registered and reporting: ok, through the relay the client named.
    wait_until("check-in ok at the collector", T, || {
        checkin(&view())["verdict"] == "ok"
    });
    let v = view();
    assert_eq!(checkin(&v)["relay"], "relay-dal10.example", "{v}");
    rollcall_tests::assert_not_flagged(&v["host"], "web-1");

    // The relay goes away: the client lives and logs, but every registration fails.
    h.faults("relay = relay-dal10.example\nrun = relay-down\n");
    wait_until("check-in warn", T, || checkin(&view())["verdict"] == "warn");
    wait_until("the host unhealthy for its check-in", T, || {
        view()["host"]["state"] == "unhealthy"
    });
    let v = view();
    let reason = v["host"]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("not checked into BigFix for")
            && reason.contains("talking to relay relay-dal10.example since"),
        "{reason}"
    );
    assert_eq!(checkin(&v)["verdict"], "critical", "{v}");
    assert!(checkin(&v)["failing_since"].is_string(), "{v}");
    let last_success = checkin(&v)["last_success_at"].clone();
    assert!(last_success.is_string(), "{v}");
    let said: Vec<String> = agent
        .events()
        .iter()
        .filter_map(|e| e["msg"].as_str().map(str::to_owned))
        .filter(|m| m.starts_with("BigFix check-in"))
        .collect();
    assert!(
        said.iter().any(|m| m.starts_with("BigFix check-in warn:"))
            && said
                .iter()
                .any(|m| m.starts_with("BigFix check-in critical:")),
        "{said:?}"
    );

    // A restarted agent remembers the last success from the kept records.
    drop(agent);
    let agent = Agent::start(&config);
    agent.wait_supervising();
    wait_until("the restarted agent's state", T, || {
        h.agent_state().is_some_and(|s| {
            s["pid"] == agent.pid() && s["state"]["besclient"]["checkin"]["verdict"] == "critical"
        })
    });
    let s = h.agent_state().unwrap();
    assert_eq!(
        s["state"]["besclient"]["checkin"]["last_success_at"], last_success,
        "{s}"
    );

    // The relay is back: registered again, ok, and the host up.
    h.faults("relay = relay-dal10.example\n");
    wait_until("check-in ok again", T, || {
        let v = view();
        checkin(&v)["verdict"] == "ok" && v["host"]["state"] == "up"
    });
    assert!(checkin(&view())["failing_since"].is_null());

    // Garbage in the client's records is ignored, and said once.
    let chain = h
        .root()
        .join("var/opt/BESClient/__BESData/__Global/RelayChain");
    let today = std::fs::read_dir(&chain)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    for junk in [
        "At 25:99:00 +0000 - S - s:1(x",
        "\u{1}\u{2}garbage",
        "At 10:00:00 +0000 - Q - s:1(a) - r:2(b) - c:3(c)",
    ] {
        let mut text = std::fs::read_to_string(&today).unwrap();
        text.push_str(junk);
        text.push('\n');
        std::fs::write(&today, text).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let said = |a: &Agent| {
        a.lines()
            .iter()
            .filter(|l| {
                l["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("could not be read"))
            })
            .count()
    };
    // doctor walks the runbook's check: the check-in, the relay, the last success.
    let o = std::process::Command::new(rollcall_tests::bin("rollcall-agent"))
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let doctor = String::from_utf8_lossy(&o.stdout);
    assert!(
        doctor.contains("BigFix check-in: ok — checked into BigFix")
            && doctor.contains("relay relay-dal10.example; last success 20"),
        "{doctor}"
    );
    wait_until("the garbage said", T, || said(&agent) >= 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(said(&agent), 1, "said once");
    assert_eq!(checkin(&view())["verdict"], "ok", "still ok");
}

#[test]
fn a_refused_registration_is_seen_in_the_relay_chain_alone() {
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), &format!("127.0.0.1:{}", free_port()), "5s");
    let admin = c.admin();
    let (h, _agent) = relay_host(&c, "web-9", "relay-x.example", "us-south");
    wait_until("check-in ok", T, || {
        checkin(&host_view(&admin, "web-9"))["verdict"] == "ok"
    });
    h.faults("relay = relay-x.example\nrun = refused\n");
    wait_until("check-in critical", T, || {
        checkin(&host_view(&admin, "web-9"))["verdict"] == "critical"
    });
    let c9 = checkin(&host_view(&admin, "web-9")).clone();
    assert_eq!(c9["relay"], "relay-x.example", "{c9}");
    assert!(
        c9["reason"]
            .as_str()
            .unwrap()
            .contains("registration failed talking to relay relay-x.example"),
        "{c9}"
    );
}

/// A host with a running client registered with `relay`, and an agent reporting every
/// second that only observes (remediation off) with short check-in thresholds.
fn relay_host(c: &Collector, name: &str, relay: &str, region: &str) -> (SimHost, Agent) {
    let h = SimHost::new();
    h.faults(&format!("relay = {relay}\n"));
    h.start_client();
    let config = h.agent_config("sysv", "", "enabled = false");
    h.report_to(&config, c, name, "1s", &format!("region = \"{region}\""));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&h.checkin_section("warn_after = \"2s\"\ncritical_after = \"3s\""));
    std::fs::write(&config, text).unwrap();
    let a = Agent::start(&config);
    (h, a)
}

#[test]
fn a_relay_most_of_whose_hosts_fail_together_is_suspect_and_the_hosts_say_so() {
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), &format!("127.0.0.1:{}", free_port()), "5s");
    let admin = c.admin();
    let mut fleet = Vec::new();
    for i in 0..6 {
        fleet.push(relay_host(
            &c,
            &format!("a{i}"),
            "relay-a.example",
            "us-south",
        ));
    }
    for i in 0..2 {
        fleet.push(relay_host(
            &c,
            &format!("b{i}"),
            "relay-b.example",
            "us-east",
        ));
    }
    let names: Vec<String> = (0..6)
        .map(|i| format!("a{i}"))
        .chain((0..2).map(|i| format!("b{i}")))
        .collect();
    for n in &names {
        wait_until(&format!("{n} checking in"), T, || {
            checkin(&host_view(&admin, n))["verdict"] == "ok"
        });
        // Hosts are in build for their first 48 h: make them live, as the inventory would.
        rollcall_collector::testing::set_lifecycle(&admin, n, "live");
    }
    let relays = || admin.get("/api/v1/relays").unwrap().body;
    assert_eq!(relays()["suspect"], 0, "{}", relays());

    // relay-a goes down for five of its six hosts.
    for (h, _) in &fleet[..5] {
        h.faults("relay = relay-a.example\nrun = relay-down\n");
    }
    wait_until("relay-a suspect", T, || relays()["suspect"] == 1);
    let r = relays();
    let relay = |name: &str| {
        r["relays"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["relay"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(relay("relay-a.example")["suspect"], true, "{r}");
    assert_eq!(relay("relay-a.example")["failing"], 5, "{r}");
    assert_eq!(relay("relay-a.example")["hosts"], 6, "{r}");
    assert_eq!(relay("relay-b.example")["suspect"], false, "{r}");
    wait_until("a failing host's reason names the relay", T, || {
        host_view(&admin, "a0")["host"]["reason"]
            .as_str()
            .is_some_and(|s| {
                s.starts_with(
                    "relay relay-a.example suspect: 5 of 6 hosts cannot check in through it since",
                )
            })
    });
    // The hosts that still check in are not flagged.
    for n in ["a5", "b0"] {
        rollcall_tests::assert_not_flagged(&host_view(&admin, n)["host"], n);
    }
    let o = std::process::Command::new(rollcall_tests::bin("rollcall"))
        .arg("relays")
        .env("ROLLCALL_URL", &c.url)
        .env("ROLLCALL_CA", c.data.join("ca.pem"))
        .env(
            "ROLLCALL_TOKEN",
            std::fs::read_to_string(c.data.join("admin.token"))
                .unwrap()
                .trim(),
        )
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("SUSPECT"));
}
