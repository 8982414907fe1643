//! Enrollment, per-host credentials, and identities: who may write what, and what the
//! collector makes of reloads and clones.

mod common;

use common::{enroll_body, expect_error as expect, heartbeat, Collector, Start};
use rollcall_collector::client::{Client, Reply};
use serde_json::{json, Value};

fn enroll(c: &Client, body: &Value) -> Reply {
    c.send_json("POST", "/api/v1/enroll", body).unwrap()
}

fn send(c: &Collector, cred: &str, hb: &Value) -> Reply {
    c.enroller()
        .request(
            "POST",
            "/api/v1/heartbeat",
            Some(cred),
            Some(hb.to_string().into_bytes()),
        )
        .unwrap()
}

fn history(admin: &Client, host: &str) -> Vec<String> {
    admin.get(&format!("/api/v1/hosts/{host}")).unwrap().body["history"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    format!(
                        "{}: {}",
                        l["kind"].as_str().unwrap(),
                        l["message"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn metric(admin: &Client, line: &str) -> bool {
    admin
        .get("/metrics")
        .unwrap()
        .body
        .as_str()
        .unwrap()
        .contains(line)
}

#[test]
fn a_credential_writes_its_own_host_only_and_can_be_revoked() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let (admin, enroller) = (c.admin(), c.enroller());

    // Enrollment: only with a valid secret, for a valid host.
    let wrong = Client::new(
        &c.url,
        &c.data.join("ca.pem"),
        Some("not-the-secret".into()),
    )
    .unwrap();
    expect(
        &enroll(&wrong, &enroll_body("web-1")),
        401,
        None,
        "unknown API token",
    );
    expect(
        &enroll(&admin, &enroll_body("web-1")),
        403,
        None,
        "enrollment secret",
    );
    let mut bad = enroll_body("web 1");
    expect(&enroll(&enroller, &bad), 400, Some("host"), "DNS name");
    bad = enroll_body("web-1");
    bad["bmc_address"] = json!("not-an-ip");
    expect(
        &enroll(&enroller, &bad),
        400,
        Some("bmc_address"),
        "not an IP",
    );
    let r = enroll(&enroller, &enroll_body("web-1"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let web1 = r.body["credential"].as_str().unwrap().to_owned();
    let web2 = enroll(&enroller, &enroll_body("web-2")).body["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    // The collector keeps only hashes.
    let db = std::fs::read(c.data.join("rollcall.db")).unwrap();
    let wal = std::fs::read(c.data.join("rollcall.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(web1.len()).any(|w| w == web1.as_bytes()),
            "a credential is never stored"
        );
    }

    assert_eq!(
        send(&c, &web1, &heartbeat("web-1", 60, "ok", &[])).status,
        200
    );
    // web-1's credential cannot write web-2: refused, recorded, counted; web-2 untouched.
    let r = send(&c, &web1, &heartbeat("web-2", 60, "critical", &[1]));
    expect(&r, 403, Some("host"), "belongs to host web-1");
    assert_eq!(admin.get("/api/v1/hosts/web-2").unwrap().status, 404);
    common::wait(|| {
        history(&admin, "web-1")
            .iter()
            .any(|l| l.starts_with("security:") && l.contains("\"web-2\""))
    });
    assert!(metric(
        &admin,
        "rollcall_requests_rejected_total{reason=\"wrong_host\"} 1"
    ));
    assert_eq!(
        send(&c, &web2, &heartbeat("web-2", 60, "ok", &[])).status,
        200
    );

    // Revoked: refused in words the agent logs, and the host may enroll again.
    let r = admin
        .request("DELETE", "/api/v1/hosts/web-1/credentials", None, None)
        .unwrap();
    assert_eq!(
        (r.status, r.body["revoked"].as_u64()),
        (200, Some(1)),
        "{:?}",
        r.body
    );
    let r = send(&c, &web1, &heartbeat("web-1", 60, "ok", &[]));
    expect(&r, 401, Some("credential"), "revoked");
    assert!(metric(
        &admin,
        "rollcall_requests_rejected_total{reason=\"revoked\"} 1"
    ));
    let again = enroll(&enroller, &enroll_body("web-1")).body["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send(&c, &again, &heartbeat("web-1", 60, "ok", &[])).status,
        200
    );
    // Revoking a host with no credential says so.
    let r = admin
        .request("DELETE", "/api/v1/hosts/nobody/credentials", None, None)
        .unwrap();
    expect(&r, 404, Some("name"), "no live credential");
    // A read token cannot revoke.
    let reader = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
        .args(["--data-dir"])
        .arg(&c.data)
        .args(["token", "add", "--name", "ro", "--role", "read"])
        .output()
        .unwrap();
    assert!(reader.status.success());
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &c.pid().to_string()])
        .status();
    let ro = Client::new(
        &c.url,
        &c.data.join("ca.pem"),
        Some(String::from_utf8(reader.stdout).unwrap().trim().to_owned()),
    )
    .unwrap();
    common::wait(|| ro.get("/api/v1/summary").unwrap().status == 200);
    let r = ro
        .request("DELETE", "/api/v1/hosts/web-2/credentials", None, None)
        .unwrap();
    expect(&r, 403, None, "admin");

    // Credentials survive a restart; the revoked one stays revoked.
    drop(c);
    let c = Collector::start(d.path(), "120s");
    assert_eq!(
        send(&c, &web2, &heartbeat("web-2", 60, "ok", &[])).status,
        200
    );
    expect(
        &send(&c, &web1, &heartbeat("web-1", 60, "ok", &[])),
        401,
        Some("credential"),
        "revoked",
    );
}

#[test]
fn rotating_the_enrollment_secret_keeps_enrolled_hosts() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let old = c.enroller();
    let cred = enroll(&old, &enroll_body("db-1")).body["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let tool = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
            .arg("--data-dir")
            .arg(&c.data)
            .arg("token")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let new_secret = tool(&["add", "--name", "enroll-2027", "--role", "enroll"]);
    tool(&["remove", "--name", "enroll"]);
    let listed = tool(&["list"]);
    assert!(
        listed.contains("enroll-2027") && !listed.contains("enroll\t"),
        "{listed}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &c.pid().to_string()])
        .status();
    common::wait(|| enroll(&old, &enroll_body("db-2")).status == 401);
    let fresh = Client::new(
        &c.url,
        &c.data.join("ca.pem"),
        Some(new_secret.trim().to_owned()),
    )
    .unwrap();
    assert_eq!(enroll(&fresh, &enroll_body("db-2")).status, 200);
    assert_eq!(
        send(&c, &cred, &heartbeat("db-1", 60, "ok", &[])).status,
        200
    );
}

#[test]
fn a_reload_is_history_and_two_live_identities_are_a_duplicate() {
    let d = tempfile::tempdir().unwrap();
    // Heartbeats 1 s apart and a grace of 1 s: an agent that stops is silent in 2 s.
    let c = Collector::start(d.path(), "1s");
    let (admin, enroller) = (c.admin(), c.enroller());
    let as_identity = |machine: &str| {
        let mut e = enroll_body("r1");
        e["identity"]["machine_id"] = json!(machine);
        let cred = enroll(&enroller, &e).body["credential"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut hb = heartbeat("r1", 1, "ok", &[]);
        hb["identity"]["machine_id"] = json!(machine);
        (cred, hb)
    };
    let (old_cred, old_hb) = as_identity("aaaa");
    assert_eq!(send(&c, &old_cred, &old_hb).status, 200);
    // The OS is reloaded: the host goes quiet, then a new machine-id enrolls under the
    // same name.
    common::wait(|| admin.get("/api/v1/hosts/r1").unwrap().body["host"]["state"] == "silent");
    let (new_cred, new_hb) = as_identity("bbbb");
    assert_eq!(send(&c, &new_cred, &new_hb).status, 200);
    let h = admin.get("/api/v1/hosts/r1").unwrap().body;
    assert_eq!(h["host"]["state"], "up", "a reload is not a duplicate: {h}");
    assert_eq!(h["host"]["identity"], "bbbb/i1");
    common::wait(|| {
        history(&admin, "r1")
            .iter()
            .any(|l| l.contains("new identity bbbb/i1 replaces aaaa/i1"))
    });
    // The old identity speaks again while the new one is live: a clone.
    assert_eq!(send(&c, &old_cred, &old_hb).status, 200);
    let h = admin.get("/api/v1/hosts/r1").unwrap().body;
    assert_eq!(h["host"]["state"], "duplicate", "{h}");
    let reason = h["host"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("aaaa/i1") && reason.contains("bbbb/i1"),
        "{reason}"
    );
    assert_eq!(h["host"]["duplicate_of"], "bbbb/i1");
    let dup = admin.get("/api/v1/hosts?state=duplicate").unwrap().body;
    assert_eq!(dup["count"], 1);
    common::wait(|| {
        history(&admin, "r1")
            .iter()
            .any(|l| l.contains("speaks again while bbbb/i1 is live"))
    });
}
