//! The collector on PostgreSQL, as a process: it waits for a database that is not up yet,
//! acknowledges only what PostgreSQL committed, answers 503 with Retry-After while the
//! server is away and recovers by itself, and finds everything again after both restart.

mod common;

use std::path::Path;

use common::{heartbeat, wait, Collector, Start};
use rollcall_collector::testing::postgres::Cluster;

#[test]
fn a_collector_on_postgres_waits_for_it_rides_out_its_restart_and_loses_nothing() {
    let pg = Cluster::start(false);
    let db = pg.create("collector");
    let d = tempfile::tempdir().unwrap();
    let pw = pg.password_file(d.path());
    let url = pg.url(&db);
    let args = [
        "--store",
        url.as_str(),
        "--store-password-file",
        pw.to_str().unwrap(),
    ];
    let data = d.path().join("data");

    // Started while the database is down: it says so, waits, and serves once it is up.
    pg.kill();
    let c = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(3));
            pg.resume();
        });
        Collector::start_with(&data, "120s", &args)
    });
    let log = c.log();
    assert!(
        log.contains("cannot be reached; the collector tries again")
            && log.contains("trying again in 1s"),
        "{log}"
    );
    assert!(
        log.contains(url.trim_start_matches("postgres://")),
        "names the database: {log}"
    );
    assert!(
        !log.contains(rollcall_collector::testing::postgres::PASSWORD),
        "the password is never logged"
    );

    let (agents, admin) = (c.agents(), c.admin());
    for i in 0..20 {
        let health = if i % 5 == 0 { "critical" } else { "ok" };
        let r = agents.post(&heartbeat(&format!("pg-{i:02}"), 60, health, &[1, 2]));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(admin.get("/api/v1/hosts").unwrap().body["count"], 20);

    // PostgreSQL goes away: nothing is acknowledged, agents are told when to come back.
    pg.kill();
    let r = agents.post(&heartbeat("pg-00", 60, "ok", &[3]));
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.retry_after, Some(5), "{:?}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was stored or acknowledged"),
        "{:?}",
        r.body
    );
    let ready = admin.get("/readyz").unwrap();
    assert_eq!(ready.status, 503);

    // Back: the collector reconnects by itself, and the refused heartbeat is sent again.
    pg.resume();
    wait(|| agents.post(&heartbeat("pg-00", 60, "ok", &[3])).status == 200);
    wait(|| admin.get("/readyz").unwrap().status == 200);

    // Both killed and started again: every acknowledged host, state and event is there.
    drop(c);
    pg.kill();
    pg.resume();
    let c = Collector::start_with(&data, "120s", &args);
    let admin = c.admin();
    let all = admin.get("/api/v1/hosts").unwrap().body;
    assert_eq!(all["count"], 20, "{all}");
    let bad = admin.get("/api/v1/hosts?state=unhealthy").unwrap().body;
    let names: Vec<&str> = bad["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pg-05", "pg-10", "pg-15"], "pg-00 recovered");
    let one = admin.get("/api/v1/hosts/pg-00").unwrap().body;
    let seqs = common::event_seqs(&one);
    assert_eq!(seqs, [3, 2, 1], "{one}");
}

/// The log (stderr) of a collector on `store`, given the CA `ca` in PGSSLROOTCERT, until it
/// holds `words` or 20 s pass; the collector is then killed. For a collector that does not
/// get to serve.
fn log_until(store: &str, pw: &Path, ca: Option<&Path>, data: &Path, words: &str) -> String {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"));
    match ca {
        Some(ca) => cmd.env("PGSSLROOTCERT", ca),
        None => cmd.env_remove("PGSSLROOTCERT"),
    };
    let mut child = cmd
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--store", store, "--store-password-file"])
        .arg(pw)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the collector");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut log = String::new();
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                log.push_str(&l);
                log.push('\n');
                if l.contains(words) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn a_collector_reaches_postgres_over_tls_and_refuses_a_certificate_it_cannot_trust() {
    let pg = Cluster::start(false);
    let d = tempfile::tempdir().unwrap();
    let ca = pg.serve_tls(&d.path().join("pg-tls"));
    let db = pg.create("tls");
    let pw = pg.password_file(d.path());
    let url = format!("{}?sslmode=require", pg.url(&db));
    let args = [
        "--store",
        url.as_str(),
        "--store-password-file",
        pw.to_str().unwrap(),
    ];

    // Without the database's CA: it does not connect, and says what to set.
    let untrusting = d.path().join("untrusting");
    let log = log_until(&url, &pw, None, &untrusting, "not trusted");
    assert!(
        log.contains("its TLS certificate is not trusted; set PGSSLROOTCERT")
            && log.contains("trying again in"),
        "{log}"
    );
    assert_eq!(pg.collector_connections().1, 0, "nothing connected");
    // Without sslmode, TLS is used when the server offers it, and checked the same way.
    let log = log_until(&pg.url(&db), &pw, None, &untrusting, "not trusted");
    assert!(log.contains("add sslmode=disable"), "{log}");

    // With it: every connection the collector holds is encrypted, and it serves.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"));
    cmd.env("PGSSLROOTCERT", &ca);
    let c = Collector::spawn_command(cmd, &d.path().join("data"), "127.0.0.1:0", "120s", &args);
    let r = c.agents().post(&heartbeat("tls-1", 60, "ok", &[1]));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(c.admin().get("/api/v1/hosts").unwrap().body["count"], 1);
    let (encrypted, all) = pg.collector_connections();
    assert!(all >= 2, "the writer's and the readers' connections: {all}");
    assert_eq!(encrypted, all, "every collector connection uses TLS");
    println!("{encrypted} of {all} collector connections use TLS");

    // A server that offers no TLS, asked for it: refused, with what to change.
    drop(c);
    let plain = Cluster::start(false);
    let db = plain.create("plain");
    let url = format!("{}?sslmode=require", plain.url(&db));
    let log = log_until(&url, &pw, Some(&ca), &d.path().join("plain"), "TLS");
    assert!(
        log.contains("TLS to it failed; turn ssl on on the server, or remove sslmode=require"),
        "{log}"
    );
}

#[test]
fn a_collector_away_longer_than_the_feed_keeps_loads_every_host_again_and_follows_on() {
    use rollcall_collector::testing::replicas::Replicas;
    let pg = Cluster::start(false);
    let d = tempfile::tempdir().unwrap();
    let db = pg.create("away");
    let pw = pg.password_file(d.path());
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_rollcall-collector"));
    let rs = Replicas::start(exe, 2, d.path(), (&pg.url(&db), &pw), "120s", "", &[]);
    let (a, b) = (
        rs.members[0].as_ref().unwrap(),
        rs.members[1].as_ref().unwrap(),
    );
    let shows = |c: &Collector, host: &str| {
        c.admin()
            .get(&format!("/api/v1/hosts/{host}"))
            .map(|r| r.body["host"]["state"].as_str().map(str::to_owned))
            .ok()
            .flatten()
    };
    let agents = a.agents();
    assert_eq!(
        agents.post(&heartbeat("away-1", 60, "ok", &[1])).status,
        200
    );
    common::wait_for("away-1 on b", std::time::Duration::from_secs(10), || {
        shows(b, "away-1").is_some()
    });

    // b stops; meanwhile a takes a new host and a maintenance, and the feed is pruned
    // before b read them.
    let signal = |s| {
        rustix::process::kill_process(rustix::process::Pid::from_raw(b.pid() as i32).unwrap(), s)
            .unwrap()
    };
    signal(rustix::process::Signal::STOP);
    assert_eq!(
        agents.post(&heartbeat("away-2", 60, "ok", &[1])).status,
        200
    );
    rollcall_collector::testing::maintain(&a.admin(), "away-1", "disk swap");
    pg.prune_feed(&db);
    signal(rustix::process::Signal::CONT);

    // b notices, loads every host and credential again, and says so.
    common::wait_for(
        "b loads every host again",
        std::time::Duration::from_secs(15),
        || {
            b.log()
                .contains("longer than the change feed keeps changes: loaded all 2 hosts again")
        },
    );
    assert_eq!(shows(b, "away-2").as_deref(), Some("up"));
    assert_eq!(shows(b, "away-1").as_deref(), Some("maintenance"));
    // The credential a issued while b was away is taken by b.
    let r = agents.post_to(b, &heartbeat("away-2", 60, "ok", &[2]));
    assert_eq!(r.status, 200, "{:?}", r.body);
    // And b follows on from there.
    assert_eq!(
        agents.post(&heartbeat("away-3", 60, "ok", &[1])).status,
        200
    );
    common::wait_for("away-3 on b", std::time::Duration::from_secs(10), || {
        shows(b, "away-3").is_some()
    });
    assert_eq!(b.admin().get("/readyz").unwrap().status, 200);
}

#[test]
fn a_collector_moves_from_sqlite_to_postgres_with_its_hosts_and_agents_keep_their_credentials() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    // One collector on SQLite, as every deployment starts.
    let c = Collector::start(&data, "120s");
    let agents = c.agents();
    for (i, h) in ["mv-1", "mv-2", "mv-3"].iter().enumerate() {
        let health = if i == 2 { "critical" } else { "ok" };
        assert_eq!(agents.post(&heartbeat(h, 60, health, &[1, 2])).status, 200);
    }
    rollcall_collector::testing::maintain(&c.admin(), "mv-1", "disk swap");
    let before = c.admin().get("/api/v1/hosts").unwrap().body;
    drop(c);

    // Copied into a new PostgreSQL database with the collector stopped.
    let pg = Cluster::start(false);
    let url = pg.url(&pg.create("moved"));
    let pw = pg.password_file(d.path());
    let store = [
        "--store",
        url.as_str(),
        "--store-password-file",
        pw.to_str().unwrap(),
    ];
    let copy = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .args(["store", "copy"])
            .output()
            .unwrap()
    };
    let o = copy(&store);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.starts_with("copied 3 hosts (3 states), 3 credentials,") && said.contains("6 events"),
        "{said}"
    );
    // Twice is refused, and says why; without a PostgreSQL store it says what to give.
    let o = copy(&store);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already holds 3 hosts"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = copy(&[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("give its URL with --store"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The collector on PostgreSQL knows every host as it was, and the agents' credentials.
    let c = Collector::start_with(&data, "120s", &store);
    let after = c.admin().get("/api/v1/hosts").unwrap().body;
    let view = |v: &serde_json::Value| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                // Not the reason: it says how long ago, which moves.
                format!(
                    "{} {} {} {} {} {}",
                    h["name"],
                    h["state"],
                    h["flagged"],
                    h["lifecycle"],
                    h["last_heard"],
                    h["labels"]
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&after), view(&before));
    let r = agents.post_to(&c, &heartbeat("mv-2", 60, "ok", &[3]));
    assert_eq!(
        r.status, 200,
        "the credential issued on SQLite: {:?}",
        r.body
    );
    let one = c.admin().get("/api/v1/hosts/mv-2").unwrap().body;
    let seqs = common::event_seqs(&one);
    assert_eq!(seqs, [3, 2, 1], "events before and after the move: {one}");
}
