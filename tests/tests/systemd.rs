//! The agent under a real systemd: Debian bookworm booted with systemd-nspawn, the simulated
//! BESClient installed at the real paths with its LSB init script, so that
//! systemd-sysv-generator makes `besclient.service` exactly as on real hosts
//! (`Type=forking`, `Restart=no`, `RemainAfterExit=yes`: `active (exited)` after a death).
//! The agent runs from the repository's own unit file, `Type=notify`, logging to journald.
//!
//! Needs root and the cached root filesystem from `scripts/container-rootfs.sh`.

use std::path::Path;

use rollcall_tests::bin;
use rollcall_tests::container::T;
use rollcall_tests::container::{install_besclient_sim, put, Container};
use rollcall_tests::wait_until;
use serde_json::Value;

/// The host as bootstrap leaves it, by hand: the client at its real paths, the agent and
/// its unit.
fn boot(agent_toml: &str) -> Container {
    Container::boot(|root| {
        install_besclient_sim(root);
        put(
            root,
            "/usr/bin/rollcall-agent",
            Some(&bin("rollcall-agent")),
            "",
            0o755,
        );
        let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/rollcall-agent.service");
        put(
            root,
            "/etc/systemd/system/rollcall-agent.service",
            Some(&unit),
            "",
            0o644,
        );
        put(root, "/etc/rollcall/agent.toml", None, agent_toml, 0o644);
    })
}

fn field<'a>(e: &'a Value, k: &str) -> &'a str {
    e[k].as_str().unwrap_or("")
}

#[test]
fn under_systemd_the_agent_heals_through_systemd_itself() {
    let c = boot(
        "[besclient]\nstale_after = \"3s\"\nverify_within = \"3s\"\n\n[remediation]\nmax_restarts = 20\nbackoff_base = \"1s\"\nbackoff_max = \"2s\"\n",
    );
    // As on a real host: the generated unit, started by systemd.
    let unit = c.sh("systemctl cat besclient.service");
    for line in [
        "Type=forking",
        "Restart=no",
        "RemainAfterExit=yes",
        "GuessMainPID=no",
    ] {
        assert!(
            unit.contains(line),
            "sysv-generator unit lacks {line}:\n{unit}"
        );
    }
    assert_eq!(
        c.run(&["systemctl", "start", "besclient"]).status.code(),
        Some(0)
    );
    let o = c.run(&["systemctl", "start", "rollcall-agent"]);
    assert!(
        o.status.success(),
        "Type=notify start: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(c.show("rollcall-agent"), "active/running");
    wait_until(
        "the agent to supervise via systemd (manager = auto)",
        T,
        || {
            c.sh("journalctl -u rollcall-agent --no-pager")
                .contains("via systemd (exit watched by pidfd)")
        },
    );

    // kill -9: the unit still claims to be active; the agent is not fooled.
    let old = c.client_pids();
    assert_eq!(old.len(), 1);
    c.sh(&format!("kill -9 {}", old[0]));
    let (i, act) = c.wait_event("a restart", 0, |e| {
        field(e, "EVENT") == "action" && field(e, "STEP") == "restart"
    });
    assert_eq!(field(&act, "CHECK"), "besclient");
    assert_eq!(field(&act, "ACTION"), "restart");
    assert!(
        field(&act, "MESSAGE").contains("restart issued via systemd"),
        "{act}"
    );
    let (i, ok) = c.wait_event("verification", i, |e| field(e, "EVENT") == "verified");
    let new = c.client_pids();
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    assert_eq!(
        field(&ok, "PID"),
        new[0].to_string(),
        "journald carries the PID field: {ok}"
    );
    // Started by systemd, in the service's own cgroup: never the agent's child.
    let cg = c.sh(&format!("cat /proc/{}/cgroup", new[0]));
    assert!(cg.contains("/system.slice/besclient.service"), "{cg}");
    let ppid = c.sh(&format!("ps -o ppid= -p {}", new[0]));
    assert_eq!(ppid.trim(), "1", "reparented to systemd, not the agent");

    // SIGSTOP: hung after stale_after, killed, started again by systemd.
    c.sh(&format!("kill -STOP {}", new[0]));
    let (i, _) = c.wait_event("the hang", i, |e| {
        field(e, "EVENT") == "observed"
            && field(e, "MESSAGE").contains("stopped (SIGSTOP) and silent")
    });
    let (i, _) = c.wait_event("the hard restart", i, |e| {
        field(e, "STEP") == "hard_restart" && field(e, "EVENT") == "action"
    });
    let (i, _) = c.wait_event("its verification", i, |e| field(e, "EVENT") == "verified");
    assert!(!c.client_pids().contains(&new[0]));

    // A client that cannot start: systemd reports the failed job; the agent climbs the
    // ladder, says it is exhausted, and keeps trying until the client can start again.
    c.sh("echo 'start = fail' >> /etc/besclient-sim.conf");
    let pid = c.client_pids()[0];
    c.sh(&format!("kill -9 {pid}"));
    let (i, failed) = c.wait_event("a failed verification", i, |e| {
        field(e, "EVENT") == "verify_failed"
    });
    assert!(
        field(&failed, "MESSAGE").contains("besclient.service"),
        "systemctl's words are kept: {failed}"
    );
    let (i, _) = c.wait_event("exhaustion", i, |e| field(e, "EVENT") == "exhausted");
    c.sh("sed -i '/start = fail/d' /etc/besclient-sim.conf");
    c.wait_event("recovery after the backoff", i, |e| {
        field(e, "EVENT") == "verified"
    });
    assert_eq!(c.client_pids().len(), 1);
    assert_eq!(
        c.show("rollcall-agent"),
        "active/running",
        "the agent itself never failed"
    );
}
