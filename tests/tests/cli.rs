//! `rollcall-agent check-config` and `doctor`, as an SRE runs them.

use std::process::{Command, Output};

use rollcall_tests::{bin, SimHost};

fn agent(args: &[&str]) -> Output {
    Command::new(bin("rollcall-agent"))
        .args(args)
        .output()
        .expect("running rollcall-agent")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_config_accepts_a_good_file() {
    let h = SimHost::new();
    let cfg = h.agent_config("sysv", "", "");
    let o = agent(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(": ok"));
}

#[test]
fn bad_configs_exit_78_naming_file_line_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "[besclient]\nstale_afterr = \"1h\"\n",
            ":2:",
            "besclient.stale_afterr",
        ),
        (
            "[besclient]\nverify_within = \"soon\"\n",
            ":2:",
            "write it like",
        ),
        (
            "[remediation]\nmax_restarts = -1\n",
            ":2:",
            "remediation.max_restarts",
        ),
        (
            "[remediation]\nreinstall = [\"/no/such/rebootstrap\"]\n",
            ":2:",
            "install it or fix the path",
        ),
        (
            "[besclient]\nmanager = \"command\"\n",
            ":2:",
            "besclient.start",
        ),
        ("state_dir = \"relative/dir\"\n", ":1:", "absolute"),
    ];
    for (body, line, words) in cases {
        let f = dir.path().join("agent.toml");
        std::fs::write(&f, body).unwrap();
        for cmd in ["check-config", "run", "doctor"] {
            let o = agent(&[cmd, "--config", f.to_str().unwrap()]);
            let t = text(&o);
            assert_eq!(o.status.code(), Some(78), "{cmd} on {body:?}: {t}");
            assert!(
                t.contains(&format!("agent.toml{line}")),
                "{cmd}: line missing in {t}"
            );
            assert!(t.contains(words), "{cmd}: {words:?} missing in {t}");
        }
    }
}

#[test]
fn a_broken_collector_section_fails_check_config_but_not_supervision() {
    let h = SimHost::new();
    let cfg = h.agent_config("sysv", "stale_after = \"1h\"", "");
    let mut body = std::fs::read_to_string(&cfg).unwrap();
    body.push_str("\n[collector]\nurl = \"https://c:8443\"\nca_file = \"/no/ca.pem\"\n");
    std::fs::write(&cfg, &body).unwrap();
    let line = body.lines().position(|l| l.starts_with("ca_file")).unwrap() + 1;
    let cfg = cfg.to_str().unwrap();

    // check-config: exit 78 with the place and the key, as for any other mistake.
    let o = agent(&["check-config", "--config", cfg]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(78), "{t}");
    assert!(
        t.contains(&format!("agent.toml:{line}:")) && t.contains("collector.ca_file"),
        "{t}"
    );
    // doctor: the checks run, and reporting is critical with the same words.
    let o = agent(&["doctor", "--config", cfg]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("[CRIT] reporting: reporting is off:") && t.contains("/no/ca.pem"),
        "{t}"
    );
    assert!(t.contains("besclient:"), "the other checks ran: {t}");
    // run: supervises (tests/tests/tls.rs shows it healing a killed client).
}

#[test]
fn a_missing_config_file_is_named() {
    let o = agent(&["check-config", "--config", "/nonexistent/agent.toml"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("/nonexistent/agent.toml"), "{}", text(&o));
}

#[test]
fn doctor_reports_a_dead_client_as_critical_and_a_running_one_as_ok() {
    let h = SimHost::new();
    let cfg = h.agent_config("sysv", "stale_after = \"1h\"", "");
    let cfg = cfg.to_str().unwrap();

    let o = agent(&["doctor", "--config", cfg]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("CRIT") && t.contains("BESClient is not running"),
        "{t}"
    );
    assert!(
        t.contains("BESClient is stopped"),
        "the init script's own words: {t}"
    );

    let pid = h.start_client();
    let o = agent(&["doctor", "--config", cfg, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["health"], "ok");
    assert_eq!(v["besclient"]["status"], "running");
    assert_eq!(v["besclient"]["pid"], pid);
    assert!(v["besclient"]["log"]["newest"]
        .as_str()
        .unwrap()
        .ends_with(".log"));
    if !std::path::Path::new("/dev/ipmi0").exists() {
        assert_eq!(v["bmc"]["present"], false, "{v}");
        assert_eq!(v["bmc"]["health"], "ok", "no BMC is not an error: {v}");
    }
}

#[test]
fn doctor_asks_nessusd_where_it_is_enabled() {
    let h = SimHost::new();
    h.start_client();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = h.agent_config("sysv", "stale_after = \"1h\"", "");
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str(&format!(
        "\n[nessusd]\nenabled = true\nstatus_url = \"https://127.0.0.1:{port}/server/status\"\n"
    ));
    std::fs::write(&cfg, text_cfg).unwrap();
    let o = agent(&["doctor", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "nessusd down is critical: {t}");
    assert!(
        t.contains("[CRIT] nessusd: no answer from https://127.0.0.1"),
        "{t}"
    );
    assert!(t.to_lowercase().contains("refused"), "{t}");
    assert!(t.contains("[OK  ] besclient"), "{t}");
}

#[test]
fn doctor_shows_what_the_running_agent_did() {
    let h = SimHost::new();
    let old = h.start_client();
    let cfg = h.agent_config("sysv", "stale_after = \"1h\"", "");
    let a = rollcall_tests::Agent::start(&cfg);
    a.wait_supervising();
    Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    a.wait_event("verified", 0, std::time::Duration::from_secs(30), |e| {
        rollcall_tests::is(e, "verified")
    });
    rollcall_tests::wait_until(
        "state.json to hold the recovery",
        std::time::Duration::from_secs(10),
        || {
            h.agent_state().is_some_and(|s| {
                s["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["kind"] == "verified"))
            })
        },
    );
    let o = agent(&["doctor", "--config", cfg.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("running agent (pid {})", a.pid())),
        "{t}"
    );
    assert!(t.contains("restart issued via sysv"), "{t}");
    assert!(t.contains("BESClient verified healthy"), "{t}");
    assert!(t.contains("next: watching"), "{t}");
}
