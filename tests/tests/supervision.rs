//! The agent against the simulated BESClient: real processes, real init script, real
//! inotify and pidfd. Each scenario runs under the SysV and the command service managers.

use std::process::Command;
use std::time::Duration;

use rollcall_tests::{is, step_is, wait_until, Agent, SimHost};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn kill(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn pid_of(e: &Value) -> Option<u64> {
    e["pid"].as_u64()
}

/// Generates one test per manager for a scenario `fn(manager: &str)`.
macro_rules! per_manager {
    ($($name:ident),* $(,)?) => {
        mod sysv {
            $( #[test] fn $name() { super::$name("sysv") } )*
        }
        mod command {
            $( #[test] fn $name() { super::$name("command") } )*
        }
    };
}

per_manager!(
    kill_9_is_restarted_and_verified,
    sigstop_is_hung_then_killed_and_restarted,
    a_start_that_fails_climbs_the_whole_ladder_and_keeps_retrying,
    observe_only_never_acts,
    a_pause_holds_actions_until_resumed,
    log_directory_deleted_and_recreated_is_followed,
    error_lines_are_counted_and_reported,
    a_slow_start_is_verified_without_escalating,
    a_client_dead_when_the_agent_starts_is_started,
);

fn kill_9_is_restarted_and_verified(manager: &str) {
    let h = SimHost::new();
    let old = h.start_client();
    let agent = Agent::start(&h.agent_config(
        manager,
        "stale_after = \"30s\"\nverify_within = \"10s\"",
        "",
    ));
    agent.wait_supervising();

    kill("-KILL", old);
    let (i, died) = agent.wait_event("the death to be observed", 0, T, |e| {
        is(e, "observed") && e["msg"].as_str().unwrap_or("").contains("exited")
    });
    assert_eq!(pid_of(&died), Some(old as u64));
    let (j, _) = agent.wait_event("a restart", i, T, |e| step_is(e, "action", "restart"));
    let (_, ok) = agent.wait_event("the restart to be verified", j, T, |e| is(e, "verified"));
    let new = h.daemon_pid();
    assert_ne!(new, old);
    assert_eq!(
        pid_of(&ok),
        Some(new as u64),
        "verified the new process: {ok}"
    );
    assert!(ok["msg"].as_str().unwrap().contains("written"), "{ok}");

    // The published state agrees.
    wait_until("state.json to show running", T, || {
        h.agent_state().is_some_and(|s| {
            s["state"]["besclient"]["status"] == "running" && s["state"]["besclient"]["pid"] == new
        })
    });
}

fn sigstop_is_hung_then_killed_and_restarted(manager: &str) {
    let h = SimHost::new();
    let old = h.start_client();
    let agent =
        Agent::start(&h.agent_config(manager, "stale_after = \"2s\"\nverify_within = \"2s\"", ""));
    agent.wait_supervising();

    kill("-STOP", old);
    let (i, hung) = agent.wait_event("the hang to be observed", 0, T, |e| {
        is(e, "observed") && e["msg"].as_str().unwrap_or("").contains("silent")
    });
    assert!(
        hung["msg"]
            .as_str()
            .unwrap()
            .contains("stopped (SIGSTOP) and silent"),
        "{hung}"
    );
    let (j, _) = agent.wait_event("the hard restart", i, T, |e| {
        step_is(e, "action", "hard_restart")
    });
    let (_, killed) = agent.wait_event("the hung process killed", j, T, |e| e["action"] == "kill");
    assert_eq!(pid_of(&killed), Some(old as u64));
    agent.wait_event("the restart to be verified", j, T, |e| is(e, "verified"));
    assert_ne!(h.daemon_pid(), old);
}

fn a_start_that_fails_climbs_the_whole_ladder_and_keeps_retrying(manager: &str) {
    let h = SimHost::new();
    h.start_client();
    let marker = h.root().join("reinstalled");
    let reinstall = h.root().join("rebootstrap");
    h.write_exec(
        &reinstall,
        &format!("#!/bin/sh\necho run >> {}\n", marker.display()),
    );
    let agent = Agent::start(&h.agent_config(
        manager,
        "stale_after = \"30s\"\nverify_within = \"1s\"",
        &format!(
            "max_restarts = 4\nper = \"8s\"\nbackoff_base = \"1s\"\nbackoff_max = \"2s\"\nreinstall = [\"{}\"]",
            reinstall.display()
        ),
    ));
    agent.wait_supervising();

    h.faults("start = fail\n");
    kill("-KILL", h.daemon_pid());

    // Round 1: every rung, each verified as failed, then exhausted.
    let mut at = 0;
    for step in ["restart", "hard_restart", "reinstall"] {
        let (i, _) = agent.wait_event(step, at, T, |e| step_is(e, "action", step));
        let (j, failed) =
            agent.wait_event("its verification to fail", i, T, |e| is(e, "verify_failed"));
        assert_eq!(failed["step"], step, "{failed}");
        assert!(
            failed["msg"].as_str().unwrap().contains("failed to start"),
            "the init script's words are kept: {failed}"
        );
        at = j;
    }
    assert!(marker.exists(), "the reinstall command ran");
    let (i, ex) = agent.wait_event("remediation exhausted", at, T, |e| is(e, "exhausted"));
    assert!(ex["msg"].as_str().unwrap().contains("round 1"), "{ex}");

    // It does not give up: after the backoff, round 2 starts, and the budget (4 per 8s)
    // then holds it back instead of thrashing.
    let (i, _) = agent.wait_event("round 2", i, T, |e| step_is(e, "action", "restart"));
    let (i, held) = agent.wait_event("the budget to hold", i, T, |e| is(e, "held"));
    assert!(held["msg"].as_str().unwrap().contains("budget"), "{held}");

    // The client can start again: the next permitted attempt heals it.
    h.faults("");
    agent.wait_event("recovery after the budget window", i, T, |e| {
        is(e, "verified")
    });
    h.daemon_pid();
    let actions = agent
        .events()
        .iter()
        .filter(|e| is(e, "action") && e["action"] != "kill")
        .count();
    assert!(
        actions <= 4 + 4,
        "never more than the budget per window: {actions} actions"
    );
}

fn observe_only_never_acts(manager: &str) {
    let h = SimHost::new();
    let old = h.start_client();
    let agent = Agent::start(&h.agent_config(manager, "stale_after = \"30s\"", "enabled = false"));
    agent.wait_supervising();
    kill("-KILL", old);
    let (i, held) = agent.wait_event("the agent to say it will not act", 0, T, |e| is(e, "held"));
    assert!(
        held["msg"].as_str().unwrap().contains("observe only"),
        "{held}"
    );
    assert!(
        !agent.events()[..i].iter().any(|e| is(e, "action")),
        "no action before"
    );
    assert!(h.daemon_pids().is_empty(), "the client stays down");
    wait_until("state.json to show it dead and critical", T, || {
        h.agent_state().is_some_and(|s| {
            s["state"]["besclient"]["status"] == "dead"
                && s["state"]["besclient"]["health"] == "critical"
        })
    });
    assert!(!agent.events().iter().any(|e| is(e, "action")));
}

fn a_pause_holds_actions_until_resumed(manager: &str) {
    let h = SimHost::new();
    let old = h.start_client();
    let config = h.agent_config(manager, "stale_after = \"30s\"", "");
    let agent = Agent::start(&config);
    agent.wait_supervising();
    let out = Command::new(rollcall_tests::bin("rollcall-agent"))
        .args([
            "pause",
            "--for",
            "1h",
            "--reason",
            "relay maintenance",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    kill("-KILL", old);
    let (i, held) = agent.wait_event("the pause to hold", 0, T, |e| is(e, "held"));
    assert!(
        held["msg"].as_str().unwrap().contains("relay maintenance"),
        "{held}"
    );
    assert!(h.daemon_pids().is_empty());

    let out = Command::new(rollcall_tests::bin("rollcall-agent"))
        .args(["resume", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    agent.wait_event("the restart after resume", i, T, |e| {
        step_is(e, "action", "restart")
    });
    agent.wait_event("its verification", i, T, |e| is(e, "verified"));
}

fn log_directory_deleted_and_recreated_is_followed(manager: &str) {
    let h = SimHost::new();
    let old = h.start_client();
    let agent =
        Agent::start(&h.agent_config(manager, "stale_after = \"3s\"\nverify_within = \"3s\"", ""));
    agent.wait_supervising();

    // A reinstall wipes the data tree while the client is down; the agent must follow the
    // re-created directory to verify its restart.
    kill("-KILL", old);
    std::fs::remove_dir_all(h.root().join("var/opt/BESClient/__BESData")).unwrap();
    let (i, _) = agent.wait_event("a restart", 0, T, |e| step_is(e, "action", "restart"));
    agent.wait_event("verification from the new directory", i, T, |e| {
        is(e, "verified")
    });

    // Deleted under a running client: the client re-creates it and keeps logging; the agent
    // keeps seeing the writes (no false hang) past several stale_after periods.
    let pid = h.daemon_pid();
    let before = agent.events().len();
    std::fs::remove_dir_all(h.log_dir()).unwrap();
    let deleted_at = std::time::SystemTime::now();
    // Three stale_after periods of the client writing into the new directory.
    wait_until(
        "the client to log in the re-created directory for 9s",
        T,
        || {
            std::fs::read_dir(h.log_dir())
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    e.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                        t.duration_since(deleted_at)
                            .is_ok_and(|d| d > Duration::from_secs(9))
                    })
                })
        },
    );
    assert!(
        h.agent_state()
            .is_some_and(|s| s["state"]["besclient"]["status"] == "running"),
        "still running in the agent's eyes"
    );
    assert_eq!(h.daemon_pid(), pid, "the client was left alone");
    let later: Vec<_> = agent.events()[before..].to_vec();
    assert!(
        !later.iter().any(|e| is(e, "action") || is(e, "observed")),
        "no hang, no action: {later:?}"
    );
}

fn error_lines_are_counted_and_reported(manager: &str) {
    let h = SimHost::new();
    h.start_client();
    let agent = Agent::start(&h.agent_config(manager, "stale_after = \"30s\"", ""));
    agent.wait_supervising();
    h.faults("run = errors\n");
    let (_, e) = agent.wait_event("an error line", 0, T, |e| {
        is(e, "observed") && e["msg"].as_str().unwrap_or("").contains("logged an error")
    });
    assert!(e["msg"].as_str().unwrap().contains("GetURL failed"), "{e}");
    wait_until("state.json to count several errors and warn", T, || {
        h.agent_state().is_some_and(|s| {
            let b = &s["state"]["besclient"];
            b["errors"]["count"].as_u64().unwrap_or(0) >= 3
                && b["health"] == "warn"
                && b["status"] == "running"
        })
    });
    assert!(
        !agent.events().iter().any(|e| is(e, "action")),
        "error lines alone are not a reason to restart"
    );
}

fn a_slow_start_is_verified_without_escalating(manager: &str) {
    let h = SimHost::new();
    let old = h.start_client();
    let agent =
        Agent::start(&h.agent_config(manager, "stale_after = \"30s\"\nverify_within = \"6s\"", ""));
    agent.wait_supervising();
    // Up at once, but its first log line only after 2 s: still within verify_within.
    h.faults("start = slow:2\n");
    kill("-KILL", old);
    let (i, _) = agent.wait_event("a restart", 0, T, |e| step_is(e, "action", "restart"));
    let (_, ok) = agent.wait_event("verification", i, T, |e| is(e, "verified"));
    let secs: f64 = ok["msg"]
        .as_str()
        .unwrap()
        .split(" written ")
        .nth(1)
        .unwrap()
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 1.9, "verified only once the log was written: {ok}");
    assert!(!agent.events().iter().any(|e| is(e, "verify_failed")));
}

fn a_client_dead_when_the_agent_starts_is_started(manager: &str) {
    let h = SimHost::new();
    let agent = Agent::start(&h.agent_config(manager, "stale_after = \"30s\"", ""));
    agent.wait_supervising();
    let (i, _) = agent.wait_event("a restart", 0, T, |e| step_is(e, "action", "restart"));
    agent.wait_event("verification", i, T, |e| is(e, "verified"));
    h.daemon_pid();
}
