//! nessusd on a scanner host, end to end: the simulated nessusd (HTTPS `/server/status`, an
//! LSB init script) moving through loading → ready → download-failed → hung → dead →
//! refusing to start; the agent heals each through the ladder; the collector shows each
//! step in the host's state, events and history.

use std::time::Duration;

use rollcall_tests::{free_port, host_view, wait_until, Agent, Collector, SimHost, Start};
use serde_json::Value;

fn nessusd(v: &Value) -> Value {
    v["agent_state"]["nessusd"].clone()
}

/// The messages of the host's stored events from `check`, oldest first.
fn events(v: &Value, check: &str) -> Vec<String> {
    let mut e: Vec<(u64, String)> = v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["check"] == check)
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    e.sort();
    e.into_iter().map(|(_, m)| m).collect()
}

fn history(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["message"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn nessusd_is_healed_through_the_ladder_and_the_collector_shows_each_step() {
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), &format!("127.0.0.1:{}", free_port()), "5s");
    let admin = c.admin();
    let h = SimHost::new();
    h.start_client();
    let listen = format!("127.0.0.1:{}", free_port());
    h.install_nessus(&listen, 3000);
    assert!(h.nessus_service("start").status.success());
    let config = h.agent_config(
        "sysv",
        "",
        "max_restarts = 20\nbackoff_base = \"1s\"\nbackoff_max = \"2s\"\n",
    );
    h.report_to(
        &config,
        &c,
        "scan-1",
        "2s",
        "role = \"scanner\", zone = \"z1\"",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&h.nessusd_section(&listen, "300ms"));
    std::fs::write(&config, text).unwrap();
    let _agent = Agent::start(&config);
    let view = || host_view(&admin, "scan-1");
    let status = || nessusd(&view())["status"].as_str().unwrap_or("").to_owned();

    // Compiling plugins after its start: busy, with progress, the host up (a warning).
    wait_until(
        "nessusd loading at the collector",
        Duration::from_secs(30),
        || status() == "loading",
    );
    let n = nessusd(&view());
    assert_eq!(n["health"], "warn", "{n}");
    assert!(n["progress"].as_u64().is_some(), "{n}");
    assert!(n["reason"].as_str().unwrap().contains("loading"), "{n}");
    wait_until("nessusd ready", Duration::from_secs(30), || {
        status() == "ready"
    });
    rollcall_tests::assert_not_flagged(&view()["host"], "the nessusd host");
    let first = h.nessus_pids();
    assert_eq!(first.len(), 1);

    // The feed update fails: down, a plain restart through the init script, verified.
    h.nessus_fault("download-failed");
    wait_until(
        "a restart after download-failed, verified",
        Duration::from_secs(30),
        || {
            let e = events(&view(), "nessusd");
            e.iter().any(|m| m.contains("download-failed"))
                && e.iter()
                    .any(|m| m.starts_with("nessusd restart issued via sysv"))
                && e.iter()
                    .any(|m| m.starts_with("nessusd verified answering"))
        },
    );
    wait_until("ready again", Duration::from_secs(30), || {
        status() == "ready"
    });
    assert_ne!(h.nessus_pids(), first, "a new nessusd");
    // The collector flagged the host while nessusd was down, and said why.
    assert!(
        history(&view())
            .iter()
            .any(|m| m.contains("unhealthy") && m.contains("download-failed")),
        "{:?}",
        history(&view())
    );

    // It takes connections and answers nothing: hung, so the first step kills it.
    let before = h.nessus_pids();
    h.nessus_fault("hang");
    wait_until(
        "a hard restart of the hung nessusd",
        Duration::from_secs(30),
        || {
            let e = events(&view(), "nessusd");
            e.iter().any(|m| m.contains("is hung"))
                && e.iter()
                    .any(|m| m.starts_with("nessusd hard restart issued"))
                && e.iter()
                    .any(|m| m.starts_with("killed leftover nessusd process"))
        },
    );
    wait_until("ready after the hang", Duration::from_secs(30), || {
        status() == "ready" && h.nessus_pids() != before
    });

    // It dies and will not start again: restart, hard restart, exhausted — the host is
    // unhealthy with the reason — then it can start again and the next round heals it.
    h.nessus_settings(&format!(
        "listen = {listen}\nloading_ms = 500\nstart = fail\n"
    ));
    h.nessus_fault("exit");
    wait_until("remediation exhausted", Duration::from_secs(40), || {
        let v = view();
        v["host"]["state"] == "unhealthy"
            && v["host"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("nessusd is not running"))
            && nessusd(&v)["remediation"]["exhausted_rounds"].as_u64() >= Some(1)
    });
    let e = events(&view(), "nessusd");
    assert!(
        e.iter()
            .any(|m| m.contains("restart failed") || m.contains("did not bring it back")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("nessusd remediation exhausted (round 1)")),
        "{e:?}"
    );
    h.nessus_settings(&format!("listen = {listen}\nloading_ms = 500\n"));
    wait_until("healed after the backoff", Duration::from_secs(40), || {
        let v = view();
        nessusd(&v)["status"] == "ready" && v["host"]["state"] == "up"
    });
    assert_eq!(h.nessus_pids().len(), 1);

    // The CLI shows it: ready, and flapping after recovering four times within the hour.
    let out = c.cli(&["host", "scan-1"]);
    assert!(
        out.contains("nessusd: warn — nessusd (pid ") && out.contains("is ready; flapping"),
        "{out}"
    );
}
