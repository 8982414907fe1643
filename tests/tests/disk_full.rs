//! A full filesystem under /var/opt/BESClient is reported as the cause. Needs root (mount).

use std::process::Command;
use std::time::Duration;

use rollcall_tests::{wait_until, Agent, SimHost, Tmpfs};

#[test]
fn a_full_disk_is_named_as_the_cause() {
    let h = SimHost::new();
    let data = h.root().join("var/opt/BESClient");
    std::fs::remove_dir_all(&data).unwrap();
    let _m = Tmpfs::mount(&data, "512k");
    std::fs::create_dir_all(h.log_dir()).unwrap();
    let pid = h.start_client();
    // Fill it: the client can no longer write its log.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=100"])
        .arg(format!("of={}/filler", data.display()))
        .output();

    let agent = Agent::start(&h.agent_config(
        "sysv",
        "stale_after = \"2s\"\nverify_within = \"1s\"",
        "enabled = false",
    ));
    agent.wait_supervising();
    let _ = pid;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "the agent to name the full disk",
            Duration::from_secs(15),
            || {
                h.agent_state().is_some_and(|s| {
                    let b = &s["state"]["besclient"];
                    b["status"] == "hung"
                        && b["disk"]["full"] == true
                        && b["reason"].as_str().unwrap_or("").contains("is full")
                })
            },
        )
    }));
    assert!(
        r.is_ok(),
        "state: {:?}",
        h.agent_state().map(|s| s["state"]["besclient"].clone())
    );
}
