//! What a bad client sends the collector: strict JSON, bounded numbers and durations,
//! refused control characters, and terminals that never see them raw.

mod common;

use common::{admin_cli, enroll_body, expect_error as expect, heartbeat, Collector, Start};
use rollcall_collector::client::Reply;
use serde_json::{json, Value};

fn raw(c: &Collector, token: &str, method: &str, path: &str, body: &str) -> Reply {
    c.enroller()
        .request(method, path, Some(token), Some(body.as_bytes().to_vec()))
        .unwrap()
}

fn token(c: &Collector, file: &str) -> String {
    std::fs::read_to_string(c.data.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_valid_document_followed_by_anything_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let agents = c.agents();
    let cred = agents.credential("web-1");
    let hb = heartbeat("web-1", 60, "ok", &[1]).to_string();

    for tail in ["garbage", "{}", " []", "\u{0}"] {
        let r = raw(
            &c,
            &cred,
            "POST",
            "/api/v1/heartbeat",
            &format!("{hb}{tail}"),
        );
        expect(&r, 400, Some("(body)"), "trailing");
    }
    let secret = token(&c, "enroll.secret");
    let e = enroll_body("web-2").to_string();
    let r = raw(&c, &secret, "POST", "/api/v1/enroll", &format!("{e}x"));
    expect(&r, 400, Some("(body)"), "nothing after it");
    let admin = token(&c, "admin.token");
    let r = raw(
        &c,
        &admin,
        "PUT",
        "/api/v1/hosts/web-1/lifecycle",
        r#"{"lifecycle":"retired"} {"lifecycle":"live"}"#,
    );
    expect(&r, 400, Some("(body)"), "trailing");

    // Nothing refused was taken: web-1 has no heartbeat, web-2 no credential, and the
    // lifecycle is unchanged.
    let h = c.admin().get("/api/v1/hosts/web-1").unwrap();
    assert_eq!(h.status, 404, "{:?}", h.body);
    assert_eq!(raw(&c, &cred, "POST", "/api/v1/heartbeat", &hb).status, 200);
    let h = c.admin().get("/api/v1/hosts/web-1").unwrap();
    assert_ne!(h.body["host"]["lifecycle"], "retired", "{:?}", h.body);
    assert_eq!(c.admin().get("/api/v1/hosts/web-2").unwrap().status, 404);
}

#[test]
fn durations_and_numbers_from_outside_are_bounded_and_named() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let agents = c.agents();
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[1])).status, 200);
    let admin = c.admin();
    let maint = |body: Value| {
        admin
            .send_json("PUT", "/api/v1/hosts/web-1/maintenance", &body)
            .unwrap()
    };

    // Each of these overflowed the date arithmetic and dropped the connection.
    for huge in ["300000y", "1e19s", "584942417355y", "90days 1s"] {
        let r = maint(json!({ "for": huge, "reason": "patching" }));
        assert_eq!(r.status, 400, "{huge}: {:?}", r.body);
        assert_eq!(r.body["field"], "for", "{huge}: {:?}", r.body);
    }
    let r = maint(json!({ "until": "9999-12-31T23:59:59Z", "reason": "patching" }));
    expect(&r, 400, Some("until"), "longer than 90 days");
    // The collector is still there, and a sensible request goes through.
    let r = maint(json!({ "for": "2h", "reason": "patching" }));
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A reason is counted in characters: 500 two-byte characters are fine, 501 are not.
    let r = maint(json!({ "for": "2h", "reason": "é".repeat(500) }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = maint(json!({ "for": "2h", "reason": "é".repeat(501) }));
    expect(&r, 400, Some("reason"), "1 to 500 characters");
    let r = maint(json!({ "for": "2h", "reason": "ok\n2026-12-03T00:00:00Z INFO forged" }));
    expect(&r, 400, Some("reason"), "control characters");

    // Event numbers and counts out of any agent's range, named.
    let mut hb = heartbeat("web-1", 60, "ok", &[2]);
    hb["events"][0]["seq"] = json!(u64::MAX);
    expect(&agents.post(&hb), 400, Some("events[0].seq"), "from 1 to");
    let mut hb = heartbeat("web-1", 60, "ok", &[]);
    hb["events_dropped"] = json!(u64::MAX);
    expect(&agents.post(&hb), 400, Some("events_dropped"), "at most");
    let h = admin.get("/api/v1/hosts/web-1").unwrap().body;
    assert!(
        !h.to_string().contains("18446744073709551615"),
        "a refused count reached the history: {h}"
    );

    // An event dated in year 9999 is taken as dated now, and does not stay first.
    let mut hb = heartbeat("web-1", 60, "ok", &[3, 4]);
    hb["events"][0]["at"] = json!("9999-01-01T00:00:00Z");
    assert_eq!(agents.post(&hb).status, 200);
    let h = admin.get("/api/v1/hosts/web-1").unwrap().body;
    let events = h["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .all(|e| !e["at"].as_str().unwrap().starts_with("9999")),
        "{events:?}"
    );
}

#[test]
fn control_characters_are_refused_in_labels_and_escaped_on_the_terminal() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let agents = c.agents();

    let mut hb = heartbeat("web-1", 60, "ok", &[]);
    hb["labels"]["role"] = json!("web\u{1b}]0;owned\u{7}");
    expect(
        &agents.post(&hb),
        400,
        Some("labels.role"),
        "no control characters",
    );
    let mut hb = heartbeat("web-1", 60, "ok", &[]);
    hb["labels"]["ro\nle"] = json!("web");
    expect(&agents.post(&hb), 400, Some("labels.ro\\nle"), "printable");

    // A reason and an event message are the agent's words, kept as sent, but a terminal
    // sees them escaped: no ESC reaches it, and no newline starts a line of its own.
    let forged = "dead\n  why: all fine\u{1b}[2J\u{9b}31m";
    let mut hb = heartbeat("web-1", 60, "critical", &[1]);
    hb["state"]["besclient"]["reason"] = json!(forged);
    hb["events"][0]["message"] = json!(forged);
    assert_eq!(agents.post(&hb).status, 200);
    let h = c.admin().get("/api/v1/hosts/web-1").unwrap().body;
    assert_eq!(h["events"][0]["message"], forged, "stored as sent");

    for args in [
        &["host", "web-1"][..],
        &["hosts"][..],
        &["incidents", "--all"][..],
    ] {
        let (_, out) = admin_cli(&c, args);
        assert!(
            !out.contains(['\u{1b}', '\u{9b}']),
            "rollcall {args:?} printed a raw escape: {out:?}"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("  why: all fine")),
            "rollcall {args:?} printed a forged line: {out}"
        );
    }
    let (_, out) = admin_cli(&c, &["host", "web-1"]);
    assert!(out.contains("dead\\n  why: all fine\\u{1b}[2J"), "{out}");
    // JSON output keeps the text, escaped by JSON itself.
    let (_, out) = admin_cli(&c, &["host", "web-1", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"][0]["message"], forged);
}
