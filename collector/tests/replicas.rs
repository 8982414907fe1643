//! Three collectors on one PostgreSQL, as processes, with a fleet whose hosts send to any of
//! them and move to the next when one fails: every collector answers with the fleet's
//! state, one leads, a kill -9 of the leader hands over within seconds without losing an
//! acknowledged heartbeat or flagging a host falsely, each incident is told once across
//! the hand-over, and a collector stopped (SIGSTOP) and resumed catches up.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::receiver::{Flavour, Receiver};
use common::{enroll_body, heartbeat, wait_for, Collector};
use rollcall_collector::client::Client;
use rollcall_collector::testing::postgres::Cluster;
use rollcall_collector::testing::replicas::Replicas;
use serde_json::Value;

/// Hosts that send every 2 s (announcing 3 s) to the collectors in turn, and to the next
/// one when one does not answer; each remembers when its last acknowledged heartbeat left.
struct Fleet {
    stop: Arc<AtomicBool>,
    up: Arc<Mutex<BTreeMap<String, bool>>>,
    acked: Arc<Mutex<BTreeMap<String, DateTime<Utc>>>>,
    /// A collector the hosts leave alone (as a load balancer does one whose `/readyz`
    /// stopped answering).
    avoid: Arc<Mutex<Option<usize>>>,
}

impl Fleet {
    fn start(urls: Vec<String>, ca: &Path, creds: BTreeMap<String, String>) -> Fleet {
        let stop = Arc::new(AtomicBool::new(false));
        let up = Arc::new(Mutex::new(
            creds
                .keys()
                .map(|h| (h.clone(), true))
                .collect::<BTreeMap<_, _>>(),
        ));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let avoid = Arc::new(Mutex::new(None));
        let clients: Arc<Vec<Client>> = Arc::new(
            urls.iter()
                .map(|u| Client::new(u, ca, None).unwrap())
                .collect(),
        );
        for (n, (host, cred)) in creds.into_iter().enumerate() {
            let (stop, up, acked, clients, avoid) = (
                stop.clone(),
                up.clone(),
                acked.clone(),
                clients.clone(),
                avoid.clone(),
            );
            std::thread::spawn(move || {
                let mut at = n;
                while !stop.load(Ordering::Relaxed) {
                    if up.lock().unwrap()[&host] {
                        let body = heartbeat(&host, 3, "ok", &[]).to_string().into_bytes();
                        for _ in 0..clients.len() {
                            at = (at + 1) % clients.len();
                            if *avoid.lock().unwrap() == Some(at) {
                                continue;
                            }
                            let left = Utc::now();
                            let r = clients[at].request(
                                "POST",
                                "/api/v1/heartbeat",
                                Some(&cred),
                                Some(body.clone()),
                            );
                            if matches!(&r, Ok(r) if r.status == 200) {
                                acked.lock().unwrap().insert(host.clone(), left);
                                break;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            });
        }
        Fleet {
            stop,
            up,
            acked,
            avoid,
        }
    }

    fn set(&self, host: &str, up: bool) {
        self.up.lock().unwrap().insert(host.into(), up);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn hosts(c: &Collector) -> Vec<Value> {
    c.admin().get("/api/v1/hosts").unwrap().body["hosts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn flagged(c: &Collector) -> Vec<String> {
    hosts(c)
        .iter()
        .filter(|h| h["flagged"] == true)
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_collectors_share_the_fleet_hand_over_the_lead_and_tell_each_incident_once() {
    let pg = Cluster::start(false);
    let d = tempfile::tempdir().unwrap();
    let url = pg.url(&pg.create("replicas"));
    let pw = pg.password_file(d.path());
    let hook = Receiver::start(Flavour::Webhook);
    let config = format!(
        "[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/")
    );
    let exe = Path::new(env!("CARGO_BIN_EXE_rollcall-collector"));
    let mut rs = Replicas::start(exe, 3, d.path(), (&url, &pw), "4s", &config, &[]);
    let (first_leader, first_epoch) = {
        let mut found = None;
        wait_for("one leader", Duration::from_secs(15), || {
            found = rs.leader();
            found.is_some()
        });
        found.unwrap()
    };
    assert!(first_epoch >= 1);

    // Enrolled through one collector; heard by all three.
    let names: Vec<String> = (0..9).map(|i| format!("r-{i}")).collect();
    let mut creds = BTreeMap::new();
    for (i, h) in names.iter().enumerate() {
        let enroller = rs.members[i % 3].as_ref().unwrap().enroller();
        let r = enroller
            .send_json("POST", "/api/v1/enroll", &enroll_body(h))
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        creds.insert(h.clone(), r.body["credential"].as_str().unwrap().to_owned());
    }
    let fleet = Fleet::start(rs.urls(), &rs.ca, creds.clone());
    for (_, c) in rs.live() {
        wait_for(
            "every host on every collector",
            Duration::from_secs(20),
            || hosts(c).len() == 9,
        );
    }
    // A state's digest, given by one collector, is taken by another that followed it.
    {
        let (a, b) = (
            rs.members[0].as_ref().unwrap(),
            rs.members[1].as_ref().unwrap(),
        );
        let post = |c: &Collector, hb: &Value| {
            Client::new(&c.url, &rs.ca, None)
                .unwrap()
                .request(
                    "POST",
                    "/api/v1/heartbeat",
                    Some(&creds["r-1"]),
                    Some(hb.to_string().into_bytes()),
                )
                .unwrap()
        };
        let mut hb = heartbeat("r-1", 3, "ok", &[]);
        hb["state"]["besclient"]["reason"] = serde_json::json!("digest check");
        let digest = post(a, &hb).body["state_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        hb.as_object_mut().unwrap().remove("state");
        hb["state_digest"] = serde_json::json!(digest);
        wait_for("the digest known elsewhere", Duration::from_secs(5), || {
            let r = post(b, &hb);
            r.status == 200 && r.body["state_needed"] != true
        });
    }
    // In service: what incidents are told about.
    let admin = rs.members[0].as_ref().unwrap().admin();
    for h in &names {
        rollcall_collector::testing::set_lifecycle(&admin, h, "live");
    }
    for (_, c) in rs.live() {
        wait_for("every host live everywhere", Duration::from_secs(5), || {
            hosts(c).iter().all(|h| h["lifecycle"] == "live")
        });
        assert!(flagged(c).is_empty(), "{:?}", flagged(c));
        assert_eq!(c.admin().get("/readyz").unwrap().status, 200);
    }

    // An operator's change through one collector is seen by the others.
    let other = (first_leader + 1) % 3;
    rollcall_collector::testing::maintain(
        &rs.members[other].as_ref().unwrap().admin(),
        "r-8",
        "disk swap",
    );
    for (_, c) in rs.live() {
        wait_for("maintenance everywhere", Duration::from_secs(5), || {
            let h = c.admin().get("/api/v1/hosts/r-8").unwrap().body;
            h["host"]["state"] == "maintenance"
        });
    }

    // A host goes quiet: one incident, told once.
    fleet.set("r-0", false);
    wait_for("the silence told", Duration::from_secs(20), || {
        hook.count() >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hook.statuses(),
        [("silent/r-0".to_owned(), "firing".to_owned())]
    );

    // The leader killed: another one leads within seconds.
    let killed_at = Instant::now();
    rs.kill(first_leader);
    let mut next = None;
    wait_for("a new leader", Duration::from_secs(10), || {
        next = rs.leader();
        next.is_some()
    });
    let took = killed_at.elapsed();
    let (new_leader, new_epoch) = next.unwrap();
    assert_ne!(new_leader, first_leader);
    assert!(new_epoch > first_epoch);
    println!("leader failover after kill -9: {} ms", took.as_millis());

    // No host falsely flagged on the survivors while they take the whole fleet.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        for (_, c) in rs.live() {
            assert_eq!(
                flagged(c),
                ["r-0"],
                "only the quiet host: {:#?}",
                hosts(c)
                    .iter()
                    .map(|h| format!("{} {} {}", h["name"], h["last_heard"], h["reason"]))
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Its return: one resolve, and the silence was not told again by the new leader.
    fleet.set("r-0", true);
    wait_for("the resolve", Duration::from_secs(20), || hook.count() >= 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hook.statuses(),
        [
            ("silent/r-0".to_owned(), "firing".to_owned()),
            ("silent/r-0".to_owned(), "resolved".to_owned())
        ]
    );

    // A follower stopped while the others write, then resumed: it catches up.
    let (stopped, _) = rs.live().find(|(i, _)| *i != new_leader).unwrap();
    let pid = rs.members[stopped].as_ref().unwrap().pid() as i32;
    let signal =
        |s| rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), s).unwrap();
    signal(rustix::process::Signal::STOP);
    std::thread::sleep(Duration::from_secs(6));
    signal(rustix::process::Signal::CONT);
    let c = rs.members[stopped].as_ref().unwrap();
    wait_for(
        "the stopped collector ready again",
        Duration::from_secs(10),
        || c.admin().get("/readyz").map(|r| r.status).ok() == Some(200),
    );

    // The leader frozen (SIGSTOP): the database ends its silent session and another one
    // leads; woken, it leads nothing and tells nothing, and each incident is told once.
    let (frozen, frozen_epoch) = rs.leader().unwrap();
    *fleet.avoid.lock().unwrap() = Some(frozen);
    let pid = rs.members[frozen].as_ref().unwrap().pid() as i32;
    let signal =
        |s| rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), s).unwrap();
    signal(rustix::process::Signal::STOP);
    let took = wait_for(
        "a leader while the old one is frozen",
        Duration::from_secs(20),
        || {
            rs.live()
                .filter(|(i, _)| *i != frozen)
                .any(|(i, _)| matches!(rs.role(i), Some((true, e)) if e > frozen_epoch))
        },
    );
    println!("leader failover after SIGSTOP: {} ms", took.as_millis());
    fleet.set("r-1", false);
    wait_for("r-1's silence told", Duration::from_secs(20), || {
        hook.count() >= 3
    });
    signal(rustix::process::Signal::CONT);
    *fleet.avoid.lock().unwrap() = None;
    wait_for(
        "the woken one knows it no longer leads",
        Duration::from_secs(10),
        || rs.role(frozen) == Some((false, frozen_epoch)),
    );
    fleet.set("r-1", true);
    wait_for("r-1's resolve", Duration::from_secs(20), || {
        hook.count() >= 4
    });
    std::thread::sleep(Duration::from_secs(3));
    let told = hook.statuses();
    assert_eq!(told.len(), 4, "{told:?}");
    assert_eq!(
        told[2..],
        [
            ("silent/r-1".to_owned(), "firing".to_owned()),
            ("silent/r-1".to_owned(), "resolved".to_owned())
        ]
    );

    // PostgreSQL restarted: heartbeats are answered 503 with Retry-After meanwhile, and the
    // collectors recover by themselves, with one leader again.
    pg.kill();
    let (_, any) = rs.live().next().unwrap();
    let r = Client::new(&any.url, &rs.ca, None)
        .unwrap()
        .request(
            "POST",
            "/api/v1/heartbeat",
            Some(&creds["r-2"]),
            Some(heartbeat("r-2", 3, "ok", &[]).to_string().into_bytes()),
        )
        .unwrap();
    assert_eq!((r.status, r.retry_after), (503, Some(5)), "{:?}", r.body);
    pg.resume();
    wait_for(
        "one leader after the restart",
        Duration::from_secs(20),
        || rs.leader().is_some(),
    );
    for (_, c) in rs.live() {
        wait_for("ready after the restart", Duration::from_secs(20), || {
            c.admin().get("/readyz").map(|r| r.status).ok() == Some(200)
        });
    }

    // Every acknowledged heartbeat is there, on every survivor.
    let acked = fleet.acked.lock().unwrap().clone();
    drop(fleet);
    std::thread::sleep(Duration::from_secs(1));
    for (i, c) in rs.live() {
        let heard: BTreeMap<String, DateTime<Utc>> = hosts(c)
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    h["last_heard"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        for (h, left) in &acked {
            assert!(
                heard[h] >= *left - chrono::Duration::milliseconds(1),
                "collector {i}: {h} acknowledged at {left}, last heard {}",
                heard[h]
            );
        }
    }
}
