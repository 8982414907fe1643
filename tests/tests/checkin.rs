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
    assert_eq!(v["host"]["state"], "up", "{v}");

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
}
