//! The collector on PostgreSQL, as a process: it waits for a database that is not up yet,
//! acknowledges only what PostgreSQL committed, answers 503 with Retry-After while the
//! server is away and recovers by itself, and finds everything again after both restart.

mod common;

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
    let seqs: Vec<u64> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1], "{one}");
}
