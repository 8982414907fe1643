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
    assert!(out(&rollcall(&c, None, &["host", "m1"])).contains("(available, by operator)"));
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
    // Receivers: named with their kind and host; no secret, not even a Slack URL's path.
    let slack_url = d.path().join("slack.url");
    std::fs::write(
        &slack_url,
        "https://hooks.slack.com/services/T0/B0/s3cr3tpath\n",
    )
    .unwrap();
    let key = d.path().join("pd.key");
    std::fs::write(&key, "R0UTING-KEY-VALUE\n").unwrap();
    std::fs::write(
        &file,
        format!(
            "[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl_file = \"{}\"\n\n[[notify]]\nname = \"pager\"\nkind = \"pagerduty\"\nrouting_key_file = \"{}\"\n",
            slack_url.display(),
            key.display()
        ),
    )
    .unwrap();
    let o = check(&["check-config"]);
    let said = out(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    assert!(
        said.contains("receiver chat: slack to hooks.slack.com"),
        "{said}"
    );
    assert!(
        said.contains("receiver pager: pagerduty to events.pagerduty.com (secret read)"),
        "{said}"
    );
    assert!(
        !said.contains("s3cr3tpath") && !said.contains("R0UTING"),
        "{said}"
    );
    // An unreadable secret: the file named, exit 78.
    std::fs::remove_file(&key).unwrap();
    let o = check(&["check-config"]);
    assert_eq!(o.status.code(), Some(78), "{}", out(&o));
    assert!(
        out(&o).contains("pd.key") && out(&o).contains("routing_key_file"),
        "{}",
        out(&o)
    );
}

#[test]
fn a_relay_most_of_whose_hosts_fail_together_is_suspect_and_named() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "60s");
    let (agents, admin) = (c.agents(), c.admin());
    let since = "2026-12-01T09:12:00Z";
    let hb = |host: &str, relay: &str, failing: bool| {
        let mut v = heartbeat(host, 60, if failing { "critical" } else { "ok" }, &[]);
        v["state"]["besclient"]["checkin"] = serde_json::json!({
            "verdict": if failing { "critical" } else { "ok" },
            "reason": if failing { "not checked into BigFix for 1day 3h" } else { "checked into BigFix 1m ago (report)" },
            "last_success_at": "2026-11-30T06:00:00Z", "last_success_via": "report",
            "relay": relay,
            "last_failure_at": if failing { Some(since) } else { None },
            "last_failure": if failing { Some("GetURL failed - General transport failure") } else { None },
            "failing_since": if failing { Some(since) } else { None },
            "bad_records": 0
        });
        v
    };
    let mut names = Vec::new();
    for i in 0..6 {
        for (relay, failing) in [("relay-a", i < 5), ("relay-b", i == 0)] {
            let host = format!("{}{i}", &relay[6..]);
            let r = agents.post(&hb(&host, relay, failing));
            assert_eq!(r.status, 200, "{:?}", r.body);
            names.push(host);
        }
    }
    for h in &names {
        let o = rollcall(&c, None, &["lifecycle", h, "live"]);
        assert!(o.status.success(), "{}", out(&o));
    }

    let r = admin.get("/api/v1/relays").unwrap().body;
    assert_eq!(r["suspect"], 1, "{r}");
    let relay = |name: &str| {
        r["relays"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["relay"] == name)
            .cloned()
            .unwrap()
    };
    let a = relay("relay-a");
    assert_eq!(
        (a["hosts"].as_u64(), a["failing"].as_u64()),
        (Some(6), Some(5)),
        "{a}"
    );
    assert_eq!(a["suspect"], true, "{a}");
    assert_eq!(a["regions"], serde_json::json!(["us-south"]), "{a}");
    assert_eq!(relay("relay-b")["suspect"], false, "{r}");

    // The failing hosts of the suspect relay say so first; the other relay's do not.
    common::wait(|| {
        admin.get("/api/v1/hosts/a0").unwrap().body["host"]["reason"]
            .as_str()
            .is_some_and(|s| {
                s.starts_with(
                    "relay relay-a suspect: 5 of 6 hosts cannot check in through it since 2026-12-01 09:12 UTC; unhealthy",
                )
            })
    });
    let b0 = admin.get("/api/v1/hosts/b0").unwrap().body;
    let b0 = b0["host"]["reason"].as_str().unwrap();
    assert!(b0.starts_with("unhealthy"), "{b0}");

    let o = rollcall(&c, None, &["relays"]);
    assert_eq!(o.status.code(), Some(1), "a suspect relay: {}", out(&o));
    let t = out(&o);
    assert!(t.contains("relay-a") && t.contains("SUSPECT"), "{t}");
    let o = rollcall(&c, None, &["relays", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["suspect"], 1);
}

/// RFC 4180 records: quoted fields may hold commas, quotes (doubled) and line breaks.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "unterminated record"
    );
    records
}

#[test]
fn the_compliance_export_is_csv_with_a_header_and_a_row_per_host() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "60s");
    let agents = c.agents();
    for (host, health) in [("web-1", "ok"), ("web-2", "critical"), ("db-1", "ok")] {
        let mut hb = heartbeat(host, 60, health, &[]);
        hb["state"]["besclient"]["checkin"] = serde_json::json!({
            "verdict": "ok", "reason": "checked into BigFix 1m ago (report)",
            "last_success_at": "2026-12-01T09:00:00Z", "last_success_via": "report",
            "relay": "relay-dal10", "last_failure_at": null, "last_failure": null,
            "failing_since": null, "bad_records": 0
        });
        assert_eq!(agents.post(&hb).status, 200);
    }
    for h in ["web-1", "web-2"] {
        assert!(rollcall(&c, None, &["lifecycle", h, "live"])
            .status
            .success());
    }
    let o = rollcall(
        &c,
        None,
        &[
            "maintenance",
            "web-1",
            "--for",
            "2h",
            "--reason",
            "disk, \"quoted\"",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));

    let o = rollcall(&c, None, &["compliance", "--csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let records = csv_records(&String::from_utf8(o.stdout).unwrap());
    let header = &records[0];
    assert_eq!(header[0], "name");
    assert!(header.contains(&"last_checkin".to_owned()) && header.contains(&"relay".to_owned()));
    assert!(
        records.iter().all(|r| r.len() == header.len()),
        "{records:?}"
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = |host: &str| records.iter().find(|r| r[0] == host).unwrap().clone();
    let names: Vec<&str> = records[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["db-1", "web-1", "web-2"]);
    assert_eq!(row("web-2")[col("in_scope")], "true");
    assert_eq!(row("web-2")[col("state")], "unhealthy");
    assert_eq!(row("web-1")[col("in_scope")], "false", "in maintenance");
    assert!(
        row("web-1")[col("reason")].contains("disk, \"quoted\""),
        "{:?}",
        row("web-1")
    );
    assert!(!row("web-1")[col("maintenance_until")].is_empty());
    assert_eq!(row("db-1")[col("in_scope")], "false", "in build");
    assert_eq!(row("web-2")[col("relay")], "relay-dal10");
    assert_eq!(
        row("web-2")[col("last_checkin")],
        "2026-12-01T09:00:00+00:00"
    );
    assert_eq!(row("web-2")[col("besclient")], "dead");

    let o = rollcall(&c, None, &["host", "web-2"]);
    assert!(
        out(&o).contains("BigFix check-in: ok — checked into BigFix 1m ago (report) (relay relay-dal10, last success 2026-12-01T09:00:00Z)"),
        "{}",
        out(&o)
    );

    let o = rollcall(&c, None, &["compliance", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["hosts"].as_u64(), v["in_scope"].as_u64()),
        (Some(3), Some(1))
    );
    let o = rollcall(&c, None, &["compliance"]);
    assert!(out(&o).contains("3 host(s), 1 in scope"), "{}", out(&o));
    let bad = c.admin().get("/api/v1/compliance?format=xml").unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["field"], "format");
}
