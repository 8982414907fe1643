//! The `rollcall` CLI against a running collector, as an SRE or a script uses it.

mod common;

use std::process::{Command, Output};

use common::{heartbeat, Collector, Start};

fn rollcall(c: &Collector, token: Option<&str>, args: &[&str]) -> Output {
    let admin = std::fs::read_to_string(c.data.join("admin.token")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env("ROLLCALL_URL", &c.url)
        .env("ROLLCALL_CA", c.data.join("ca.pem"))
        .env("ROLLCALL_TOKEN", token.unwrap_or(admin.trim()))
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn hosts_host_summary_and_silent_with_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "1s");
    let agent = c.agents();
    agent.post(&heartbeat("web-1", 60, "ok", &[1]));
    agent.post(&heartbeat("db-1", 1, "ok", &[]));
    let o = rollcall(&c, None, &["lifecycle", "db-1", "live"]);
    assert!(o.status.success(), "{}", out(&o));

    let o = rollcall(&c, None, &["hosts"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let t = out(&o);
    assert!(t.starts_with("NAME"), "a table: {t}");
    assert!(
        t.contains("web-1") && t.contains("db-1") && t.contains("2 host(s)"),
        "{t}"
    );

    let o = rollcall(&c, None, &["hosts", "--zone", "dal10", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["count"], 2);

    let o = rollcall(&c, None, &["host", "web-1"]);
    let t = out(&o);
    assert!(
        t.contains("web-1: up") && t.contains("why: up: last heard") && t.contains("restart 1"),
        "{t}"
    );

    // Nothing silent yet: exit 0. Then db-1 goes quiet: exit 1, and it is listed.
    let o = rollcall(&c, None, &["silent"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    common::wait(|| rollcall(&c, None, &["silent"]).status.code() == Some(1));
    let t = out(&rollcall(&c, None, &["silent"]));
    assert!(t.contains("db-1") && t.contains("silent!"), "{t}");

    let o = rollcall(&c, None, &["summary", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["states"]["silent"].as_u64(), v["flagged"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn maintenance_and_lifecycle_from_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    c.agents().post(&heartbeat("m1", 60, "ok", &[]));
    let o = rollcall(
        &c,
        None,
        &[
            "maintenance",
            "m1",
            "--for",
            "2h",
            "--reason",
            "kernel patching",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("under maintenance until"));
    assert!(out(&rollcall(&c, None, &["host", "m1"])).contains("maintenance"));
    let o = rollcall(&c, None, &["maintenance", "m1", "--end"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = rollcall(&c, None, &["lifecycle", "m1", "available"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&rollcall(&c, None, &["host", "m1"])).contains("(available)"));
}

#[test]
fn errors_name_the_problem_and_exit_codes_tell_them_apart() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    // Refused by the collector: 3.
    let o = rollcall(&c, None, &["host", "nobody"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        out(&o).contains("no host named \"nobody\" (name)"),
        "{}",
        out(&o)
    );
    let o = rollcall(&c, None, &["lifecycle", "nobody", "sideways"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(out(&o).contains("unknown lifecycle"), "{}", out(&o));
    let o = rollcall(&c, Some("wrong"), &["summary"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(out(&o).contains("unknown API token"), "{}", out(&o));
    // Unreachable: 4, naming the address.
    let o = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["summary"])
        .env("ROLLCALL_URL", "https://127.0.0.1:1")
        .env("ROLLCALL_CA", c.data.join("ca.pem"))
        .env("ROLLCALL_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(out(&o).contains("127.0.0.1:1"), "{}", out(&o));
    // A missing CA file: 4, naming the file and the variable.
    let o = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["summary"])
        .env("ROLLCALL_URL", &c.url)
        .env("ROLLCALL_CA", "/nonexistent/ca.pem")
        .env("ROLLCALL_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(
        out(&o).contains("/nonexistent/ca.pem") && out(&o).contains("ROLLCALL_CA"),
        "{}",
        out(&o)
    );
    // Bad usage: 2, from the argument parser.
    let o = rollcall(&c, None, &["maintenance", "m1"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}

#[test]
fn a_read_token_made_while_running_reads_but_cannot_change() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    c.agents().post(&heartbeat("r1", 60, "ok", &[]));
    let o = Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
        .args(["--data-dir"])
        .arg(&c.data)
        .args(["token", "add", "--name", "alice", "--role", "read"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert_eq!(token.len(), 64);
    // Not yet loaded by the running collector; SIGHUP loads it.
    assert_eq!(
        rollcall(&c, Some(&token), &["summary"]).status.code(),
        Some(3)
    );
    Command::new("kill")
        .args(["-HUP", &c.pid().to_string()])
        .status()
        .unwrap();
    common::wait(|| rollcall(&c, Some(&token), &["summary"]).status.code() == Some(0));
    assert!(out(&rollcall(&c, Some(&token), &["hosts"])).contains("r1"));
    let o = rollcall(&c, Some(&token), &["lifecycle", "r1", "available"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(out(&o).contains("admin token"), "{}", out(&o));
    let stored = std::fs::read_to_string(c.data.join("tokens.json")).unwrap();
    assert!(!stored.contains(&token), "only the hash is kept");
}

#[test]
fn the_collector_checks_its_configuration_and_exits_78_with_the_place() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("collector.toml");
    let check = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .env_remove("ROLLCALL_LISTEN")
            .output()
            .unwrap()
    };
    std::fs::write(&file, "grace = \"90s\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let o = check(&["check-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("configuration ok"), "{}", out(&o));

    std::fs::write(&file, "grace = \"90s\"\nprobe_interval = \"often\"\n").unwrap();
    for args in [&["check-config"][..], &[][..]] {
        let o = check(args);
        assert_eq!(o.status.code(), Some(78), "{}", out(&o));
        let said = out(&o);
        assert!(
            said.contains("collector.toml:2:18: probe_interval: invalid duration \"often\""),
            "{said}"
        );
    }
    // The command line wins over the file, even over a bad value in it.
    let o = check(&["--probe-interval", "1m", "check-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}
