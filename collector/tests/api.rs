//! The collector as a process: started on port 0 with a fresh data directory, driven over
//! HTTPS with its own CA pinned, killed and restarted on the same data.

mod common;

use std::time::{Duration, Instant};

use common::{heartbeat, wait_for, Collector, Start};
use rollcall_collector::client::{Client, Reply};
use serde_json::{json, Value};

fn state_of(c: &Client, host: &str) -> String {
    c.get(&format!("/api/v1/hosts/{host}")).unwrap().body["host"]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn heartbeats_are_acknowledged_stored_and_queryable() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let (agent, admin) = (c.agents(), c.admin());
    let r = agent.post(&heartbeat("web-1", 60, "ok", &[1, 2]));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["acked_seq"], 2);
    // A redelivery (at-least-once) plus one new event: stored once each.
    assert_eq!(
        agent.post(&heartbeat("web-1", 60, "ok", &[2, 3])).status,
        200
    );
    assert_eq!(
        agent.post(&heartbeat("db-1", 60, "critical", &[])).status,
        200
    );

    let all = admin.get("/api/v1/hosts").unwrap();
    assert_eq!(all.body["count"], 2);
    let bad = admin.get("/api/v1/hosts?state=unhealthy").unwrap().body;
    assert_eq!(bad["hosts"][0]["name"], "db-1");
    assert_eq!(
        bad["hosts"][0]["reason"],
        "unhealthy: remediation exhausted (round 2)"
    );
    assert_eq!(
        admin
            .get("/api/v1/hosts?zone=dal10&role=carrier-worker")
            .unwrap()
            .body["count"],
        2
    );
    assert_eq!(
        admin.get("/api/v1/hosts?zone=wdc04").unwrap().body["count"],
        0
    );

    let h = admin.get("/api/v1/hosts/web-1").unwrap().body;
    assert_eq!(h["host"]["state"], "up");
    assert_eq!(h["host"]["lifecycle"], "build", "first seen just now");
    assert_eq!(h["agent_state"]["besclient"]["manager"], "systemd");
    let seqs = common::event_seqs(&h);
    assert_eq!(seqs, [3, 2, 1], "deduplicated, newest first");

    let s = admin.get("/api/v1/summary").unwrap().body;
    assert_eq!(
        (s["hosts"].as_u64(), s["states"]["unhealthy"].as_u64()),
        (Some(2), Some(1))
    );

    let m = admin.get("/metrics").unwrap().body;
    let m = m.as_str().unwrap();
    assert!(m.contains("rollcall_heartbeats_accepted_total 3"), "{m}");
    assert!(
        m.contains("rollcall_events_total{outcome=\"duplicate\"} 1"),
        "{m}"
    );
    assert!(!m.contains("web-1"), "no per-host labels");
    assert!(
        m.contains("rollcall_hosts_lifecycle{lifecycle=\"build\"} 2"),
        "{m}"
    );
    assert!(m.contains("rollcall_commit_seconds_total"), "{m}");
}

#[test]
fn an_unchanged_state_goes_as_its_digest_and_an_unknown_digest_asks_for_the_state() {
    let d = tempfile::tempdir().unwrap();
    let mut c = Collector::start(&d.path().join("data"), "120s");
    let (agents, admin) = (c.agents(), c.admin());
    let full = heartbeat("web-1", 60, "critical", &[1]);
    let r = agents.post(&full);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let digest = r.body["state_digest"].as_str().unwrap().to_owned();
    assert_eq!(digest.len(), 16, "{digest}");
    let stored = admin.get("/api/v1/hosts/web-1").unwrap().body;
    // The same state as its digest, with an event: stored, the state and health kept.
    let mut routine = heartbeat("web-1", 60, "critical", &[2]);
    routine.as_object_mut().unwrap().remove("state");
    routine["state_digest"] = json!(digest);
    let r = agents.post(&routine);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["acked_seq"].as_u64(),
            r.body["state_digest"].as_str()
        ),
        (Some(2), Some(digest.as_str()))
    );
    let now = admin.get("/api/v1/hosts/web-1").unwrap().body;
    assert_eq!(now["host"]["state"], "unhealthy");
    assert_eq!(now["host"]["reason"], stored["host"]["reason"]);
    assert_eq!(
        now["agent_state"], stored["agent_state"],
        "the stored state stays"
    );
    assert!(now["host"]["last_heard"].as_str() > stored["host"]["last_heard"].as_str());
    assert_eq!(now["events"].as_array().unwrap().len(), 2);
    let metrics = admin.get("/metrics").unwrap().body;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("rollcall_heartbeats_digest_total 1"));
    // A digest this collector does not hold: nothing stored, the whole state asked for.
    let mut unknown = routine.clone();
    unknown["state_digest"] = json!("00000000deadbeef");
    unknown["events"] = json!([]);
    let r = agents.post(&unknown);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state_needed"], true, "{:?}", r.body);
    assert_eq!(r.body["acked_seq"], 0);
    // After a restart the collector holds no digest yet: it asks once, then takes them.
    let cred = agents.credential("web-1");
    c.kill9();
    let c = Collector::start(&d.path().join("data"), "120s");
    let agent = Client::new(&c.url, &c.data.join("ca.pem"), Some(cred)).unwrap();
    let post = |hb: &Value| agent.send_json("POST", "/api/v1/heartbeat", hb).unwrap();
    let r = post(&routine);
    assert_eq!(r.body["state_needed"], true, "{:?}", r.body);
    let r = post(&full);
    assert_eq!(r.body["state_digest"].as_str(), Some(digest.as_str()));
    assert_eq!(post(&routine).body["acked_seq"], 2);
    // Neither, both, or a digest that is not one: named.
    let mut neither = routine.clone();
    neither.as_object_mut().unwrap().remove("state_digest");
    common::expect_error(&post(&neither), 400, Some("state"), "state_digest");
    let mut both = full.clone();
    both["state_digest"] = json!(digest);
    common::expect_error(&post(&both), 400, Some("state_digest"), "not both");
    let mut bad = routine.clone();
    bad["state_digest"] = json!("xyz");
    common::expect_error(&post(&bad), 400, Some("state_digest"), "16 hex digits");
}

#[test]
fn a_silent_host_is_flagged_within_a_second_of_its_deadline() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "1s");
    let (agent, admin) = (c.agents(), c.admin());
    // Live hosts only are flagged: mark it live after first contact.
    assert_eq!(agent.post(&heartbeat("quiet", 1, "ok", &[])).status, 200);
    let heard = Instant::now();
    let r = admin
        .send_json(
            "PUT",
            "/api/v1/hosts/quiet/lifecycle",
            &json!({"lifecycle": "live"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Deadline: 1 s interval + 1 s grace after it was heard; the collector restarted
    // nothing, but it came up less than interval + grace ago, so allow for that.
    wait_for("silent", Duration::from_secs(10), || {
        state_of(&admin, "quiet") == "silent"
    });
    let after = heard.elapsed();
    assert!(
        after < Duration::from_secs(2) + Duration::from_secs(1) + Duration::from_millis(500),
        "flagged {after:?} after last heard"
    );
    let h = admin.get("/api/v1/hosts/quiet").unwrap().body;
    assert_eq!(h["host"]["flagged"], true);
    assert!(
        h["host"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("silent: last heard"),
        "{h}"
    );
    // Heard again: up at once.
    agent.post(&heartbeat("quiet", 1, "ok", &[]));
    assert_eq!(state_of(&admin, "quiet"), "up");
}

#[test]
fn kill_9_during_a_stream_loses_no_acknowledged_heartbeat() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let d = tempfile::tempdir().unwrap();
    let mut c = Collector::start(d.path(), "120s");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for t in 0..4 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let client = c.agents();
        let enroller = c.enroller();
        // Enrolled before the stream, so that the kill lands among heartbeats.
        for i in 0..25 {
            client.credential(&format!("h{t}-{i}"));
        }
        senders.push(std::thread::spawn(move || {
            // 25 hosts per sender, round-robin, each host's events numbered from 1.
            let hosts: Vec<String> = (0..25).map(|i| format!("h{t}-{i}")).collect();
            'rounds: for seq in 1..=15u64 {
                for host in &hosts {
                    if stop.load(Ordering::Relaxed) {
                        break 'rounds;
                    }
                    let hb = heartbeat(host, 60, "ok", &[seq]);
                    let cred = client.credential(host);
                    let body = Some(hb.to_string().into_bytes());
                    match enroller.request("POST", "/api/v1/heartbeat", Some(&cred), body) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().push((host.clone(), seq)),
                        _ => break 'rounds,
                    }
                }
            }
        }));
    }
    wait_for(
        "a stream of acknowledged heartbeats",
        Duration::from_secs(60),
        || acked.lock().unwrap().len() >= 300,
    );
    c.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    drop(c);
    let c = Collector::start(d.path(), "120s");
    let admin = c.admin();
    let hosts: std::collections::BTreeSet<String> = acked.iter().map(|(h, _)| h.clone()).collect();
    assert!(
        hosts.len() >= 50,
        "a fleet was streaming: {} hosts",
        hosts.len()
    );
    for host in hosts {
        let want = acked
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0);
        // Every acknowledged event is stored, with none missing before it.
        let h = admin.get(&format!("/api/v1/hosts/{host}")).unwrap().body;
        let seqs = common::event_seqs(&h);
        let newest = seqs.first().copied().unwrap_or(0);
        assert!(
            newest >= want,
            "{host}: acknowledged up to {want}, stored up to {newest}"
        );
        let expect: Vec<u64> = (1..=newest).rev().collect();
        assert_eq!(seqs, expect, "{host}: no gaps");
    }
}

#[test]
fn a_restarted_collector_flags_nobody_falsely_then_exactly_the_quiet_ones() {
    let d = tempfile::tempdir().unwrap();
    let mut c = Collector::start(d.path(), "1s");
    let (agent, admin) = (c.agents(), c.admin());
    for h in ["talker", "dead"] {
        agent.post(&heartbeat(h, 1, "ok", &[]));
        rollcall_collector::testing::set_lifecycle(&admin, h, "live");
    }
    // Down for three intervals.
    c.kill9();
    std::thread::sleep(Duration::from_secs(3));
    let c = Collector::start(d.path(), "1s");
    let (agent, admin) = (c.agents(), c.admin());
    let up = Instant::now();
    for h in ["talker", "dead"] {
        let s = state_of(&admin, h);
        assert!(
            s == "up" || s == "late",
            "{h} is {s} right after the restart: a false flag"
        );
    }
    // The talker keeps talking; the dead one stays quiet.
    let mut dead_flagged = None;
    while up.elapsed() < Duration::from_secs(4) {
        agent.post(&heartbeat("talker", 1, "ok", &[]));
        assert_ne!(state_of(&admin, "talker"), "silent");
        if dead_flagged.is_none() && state_of(&admin, "dead") == "silent" {
            dead_flagged = Some(up.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = dead_flagged.expect("the host that stayed quiet is flagged");
    assert!(
        at >= Duration::from_millis(1900),
        "not before interval + grace after the restart: {at:?}"
    );
}

#[test]
fn maintenance_and_lifecycle_through_the_api() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "1s");
    let (agent, admin) = (c.agents(), c.admin());
    agent.post(&heartbeat("m1", 1, "critical", &[]));
    admin
        .send_json(
            "PUT",
            "/api/v1/hosts/m1/lifecycle",
            &json!({"lifecycle": "live"}),
        )
        .unwrap();
    assert_eq!(state_of(&admin, "m1"), "unhealthy");
    let r = admin
        .send_json(
            "PUT",
            "/api/v1/hosts/m1/maintenance",
            &json!({"for": "1s", "reason": "kernel patching"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let h = admin.get("/api/v1/hosts/m1").unwrap().body;
    assert_eq!(h["host"]["state"], "maintenance");
    assert_eq!(h["host"]["flagged"], false);
    // It expires by itself.
    wait_for("maintenance to expire", Duration::from_secs(5), || {
        state_of(&admin, "m1") != "maintenance"
    });
    // Early end, and available hosts are never flagged.
    admin
        .send_json(
            "PUT",
            "/api/v1/hosts/m1/maintenance",
            &json!({"for": "1h", "reason": "x"}),
        )
        .unwrap();
    assert_eq!(
        admin
            .request("DELETE", "/api/v1/hosts/m1/maintenance", None, None)
            .unwrap()
            .status,
        200
    );
    assert_ne!(state_of(&admin, "m1"), "maintenance");
    admin
        .send_json(
            "PUT",
            "/api/v1/hosts/m1/lifecycle",
            &json!({"lifecycle": "available"}),
        )
        .unwrap();
    let h = admin.get("/api/v1/hosts/m1").unwrap().body;
    assert_eq!(
        (
            h["host"]["lifecycle"].as_str(),
            h["host"]["flagged"].as_bool()
        ),
        (Some("available"), Some(false))
    );
    assert_eq!(
        admin.get("/api/v1/hosts?lifecycle=available").unwrap().body["count"],
        1
    );
}

#[test]
fn every_kind_of_bad_input_is_refused_clearly_and_stores_nothing() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let (agents, admin) = (c.agents(), c.admin());
    let agent = agents.client_for("x");
    let hb = |v: Value| agent.send_json("POST", "/api/v1/heartbeat", &v).unwrap();
    let expect = |r: Reply, status: u16, field: Option<&str>, words: &str| {
        common::expect_error(&r, status, field, words)
    };
    let ok = heartbeat("x", 60, "ok", &[]);

    // Authentication and roles.
    expect(
        agent
            .request(
                "POST",
                "/api/v1/heartbeat",
                Some(""),
                Some(ok.to_string().into_bytes()),
            )
            .unwrap(),
        401,
        Some("credential"),
        "host credential",
    );
    let anon = Client::new(&c.url, &c.data.join("ca.pem"), None).unwrap();
    expect(
        anon.get("/api/v1/hosts").unwrap(),
        401,
        None,
        "Authorization: Bearer",
    );
    expect(
        admin.send_json("POST", "/api/v1/heartbeat", &ok).unwrap(),
        401,
        Some("credential"),
        "unknown host credential",
    );
    expect(
        c.enroller()
            .send_json("POST", "/api/v1/heartbeat", &ok)
            .unwrap(),
        401,
        Some("credential"),
        "POST /api/v1/enroll",
    );
    expect(
        agent.get("/api/v1/hosts").unwrap(),
        401,
        None,
        "unknown API token",
    );
    expect(
        c.enroller().get("/api/v1/hosts").unwrap(),
        403,
        None,
        "read or admin",
    );
    expect(
        c.enroller()
            .send_json(
                "PUT",
                "/api/v1/hosts/x/lifecycle",
                &json!({"lifecycle": "live"}),
            )
            .unwrap(),
        403,
        None,
        "admin",
    );

    // Malformed and out of range.
    expect(
        agent
            .request(
                "POST",
                "/api/v1/heartbeat",
                None,
                Some(b"{not json".to_vec()),
            )
            .unwrap(),
        400,
        Some("(body)"),
        "invalid JSON",
    );
    let mut v = ok.clone();
    v.as_object_mut().unwrap().remove("identity");
    expect(hb(v), 400, Some("identity"), "missing field");
    let mut v = ok.clone();
    v["interval_secs"] = json!("sixty");
    expect(hb(v), 400, Some("interval_secs"), "invalid type");
    let mut v = ok.clone();
    v["interval_secs"] = json!(0);
    expect(hb(v), 400, Some("interval_secs"), "between 1 and 86400");
    let mut v = ok.clone();
    v["host"] = json!("bad host/name");
    expect(hb(v), 400, Some("host"), "DNS name");
    let mut v = ok.clone();
    v["proto_version"] = json!(99);
    expect(hb(v), 400, Some("proto_version"), "upgrade");
    let mut v = ok.clone();
    v["state"]["besclient"]["health"] = json!("fine");
    expect(
        hb(v),
        400,
        Some("state.besclient.health"),
        "unknown variant",
    );
    expect(
        admin.get("/api/v1/hosts?state=dead").unwrap(),
        400,
        Some("state"),
        "one of up",
    );
    expect(
        admin.get("/api/v1/hosts?colour=red").unwrap(),
        400,
        Some("colour"),
        "unknown filter",
    );

    // Too large.
    let mut v = ok.clone();
    v["labels"]["padding"] = json!("x".repeat(70 * 1024));
    expect(hb(v), 413, None, "larger than 65536");

    // Unknown host for operator calls.
    expect(
        admin
            .send_json(
                "PUT",
                "/api/v1/hosts/nobody/maintenance",
                &json!({"for": "1h", "reason": "x"}),
            )
            .unwrap(),
        404,
        Some("name"),
        "no host named",
    );
    expect(
        admin
            .send_json(
                "PUT",
                "/api/v1/hosts/nobody/lifecycle",
                &json!({"lifecycle": "build"}),
            )
            .unwrap(),
        400,
        Some("lifecycle"),
        "derived",
    );
    expect(
        admin.get("/api/v1/hosts/nobody").unwrap(),
        404,
        Some("name"),
        "no host named",
    );

    // Nothing of the above reached the store.
    assert_eq!(admin.get("/api/v1/hosts").unwrap().body["count"], 0);

    // Rate limit: a burst of 20, then 429 with Retry-After.
    let mut statuses = Vec::new();
    agents.credential("chatty");
    for _ in 0..25 {
        let r = agents.post(&heartbeat("chatty", 60, "ok", &[]));
        if r.status == 429 {
            assert!(r.retry_after.unwrap_or(0) >= 1, "Retry-After given");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        20,
        "{statuses:?}"
    );
    assert!(statuses.ends_with(&[429, 429, 429, 429, 429]));

    let m = admin.get("/metrics").unwrap().body;
    let m = m.as_str().unwrap();
    for reason in [
        "unauthenticated",
        "forbidden",
        "bad_request",
        "too_large",
        "rate_limited",
    ] {
        assert!(
            m.contains(&format!(
                "rollcall_requests_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason} counted: {m}"
        );
    }
}

#[test]
fn a_client_with_the_wrong_ca_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let other = tempfile::tempdir().unwrap();
    rollcall_collector::tls::ensure(
        other.path(),
        &["localhost".into()],
        rollcall_collector::tls::SERVER_VALIDITY,
    )
    .unwrap();
    let wrong = Client::new(&c.url, &other.path().join("ca.pem"), None).unwrap();
    let e = wrong.get("/healthz").unwrap_err().to_string();
    assert!(e.contains("certificate") || e.contains("Unknown"), "{e}");
    assert_eq!(c.admin().get("/healthz").unwrap().status, 200);
    assert_eq!(c.admin().get("/readyz").unwrap().status, 200);
}

#[test]
fn a_full_ingest_queue_answers_503_with_retry_after_and_acks_nothing_it_refused() {
    let d = tempfile::tempdir().unwrap();
    // Room for one waiting heartbeat: a burst from many hosts at once overflows it.
    let c = Collector::start_with(d.path(), "120s", &["--queue", "1"]);
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    // Enrolled one at a time first: enrollments queue for the writer too.
    let fleet: Vec<_> = (0..32)
        .map(|t| {
            let client = c.agents();
            for i in 0..10 {
                client.credential(&format!("burst-{t}-{i}"));
            }
            client
        })
        .collect();
    for (t, client) in fleet.into_iter().enumerate() {
        let results = results.clone();
        senders.push(std::thread::spawn(move || {
            for i in 0..10 {
                let host = format!("burst-{t}-{i}");
                let r = client.post(&heartbeat(&host, 60, "ok", &[1]));
                results.lock().unwrap().push((host, r));
            }
        }));
    }
    for s in senders {
        s.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    let busy: Vec<&Reply> = results
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.status == 503)
        .collect();
    let ok: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.status == 200)
        .map(|(h, _)| h.as_str())
        .collect();
    assert!(
        !busy.is_empty(),
        "a queue of 1 under 32 concurrent senders must overflow"
    );
    assert_eq!(busy.len() + ok.len(), results.len(), "only 200 or 503");
    for r in &busy {
        assert_eq!(r.retry_after, Some(1), "{:?}", r.body);
        assert!(
            r.body["error"].as_str().unwrap().contains("queue full"),
            "{:?}",
            r.body
        );
    }
    // Exactly the acknowledged hosts exist: nothing refused was stored.
    let admin = c.admin();
    assert_eq!(admin.get("/api/v1/hosts").unwrap().body["count"], ok.len());
    let m = admin.get("/metrics").unwrap().body;
    assert!(m
        .as_str()
        .unwrap()
        .contains("rollcall_requests_rejected_total{reason=\"queue_full\"}"));
}
