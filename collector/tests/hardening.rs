//! What a bad client sends the collector: strict JSON, bounded numbers and durations,
//! refused control characters, and terminals that never see them raw.

mod common;

use common::{admin_cli, enroll_body, expect_error as expect, heartbeat, token, Collector, Start};
use rollcall_collector::client::Reply;
use serde_json::{json, Value};

fn raw(c: &Collector, token: &str, method: &str, path: &str, body: &str) -> Reply {
    c.enroller()
        .request(method, path, Some(token), Some(body.as_bytes().to_vec()))
        .unwrap()
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

/// A TLS client trusting the collector's CA, for connections made by hand.
fn tls_config(c: &Collector) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(c.data.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn metric_value(c: &Collector, name: &str) -> f64 {
    c.metric(name).unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn a_flood_of_idle_and_half_sent_connections_does_not_keep_a_client_out() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let d = tempfile::tempdir().unwrap();
    // The file limit the attack was found with: 128.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=128:128", "--"])
        .arg(env!("CARGO_BIN_EXE_rollcall-collector"));
    let c = Collector::spawn_command(
        cmd,
        d.path(),
        "127.0.0.1:0",
        "120s",
        &["--header-timeout", "3s"],
    );
    let rss_before = rollcall_collector::testing::rss_kib(c.pid());
    let tls = tls_config(&c);

    // 300 connections, no credential needed: a third never start TLS, the rest send half
    // a request's headers and wait.
    let mut raw = Vec::new();
    let mut half = Vec::new();
    for i in 0..300 {
        let tcp = TcpStream::connect(&c.addr).unwrap();
        if i % 3 == 0 {
            raw.push(tcp);
            continue;
        }
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // An evicted connection fails here; the flood goes on regardless.
        let _ = s.write_all(b"POST /api/v1/heartbeat HTTP/1.1\r\nHost: rollcall\r\nContent-");
        let _ = s.flush();
        half.push(s);
    }

    // A real client is served while the flood is held open.
    let r = c.admin().get("/api/v1/summary").unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let open = metric_value(&c, "rollcall_connections");
    assert!(
        open <= 96.0,
        "{open} connections open under a file limit of 128"
    );
    assert!(metric_value(&c, "rollcall_connections_evicted_total") > 0.0);
    let rss_after = rollcall_collector::testing::rss_kib(c.pid());
    eprintln!("RSS {rss_before} KiB before the flood, {rss_after} KiB under it; {open} open");

    // Half-sent requests are dropped once the header timeout has passed: each held stream
    // reads the end of the connection (or an error), not a wait.
    let start = std::time::Instant::now();
    for s in half.iter_mut().rev().take(20) {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(15),
        "half-sent requests were held {:?}",
        start.elapsed()
    );
    // And the client is still served afterwards.
    assert_eq!(c.admin().get("/api/v1/summary").unwrap().status, 200);
    drop(raw);
}

fn history(c: &Collector, host: &str) -> Vec<String> {
    c.admin()
        .get(&format!("/api/v1/hosts/{host}"))
        .unwrap()
        .body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}: {}", l["kind"], l["message"]))
        .collect()
}

fn data_bytes(c: &Collector) -> u64 {
    std::fs::read_dir(&c.data)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_flood_of_refused_writes_writes_almost_nothing() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let agents = c.agents();
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[1])).status, 200);
    let ok = c
        .admin()
        .send_json(
            "PUT",
            "/api/v1/hosts/web-1/maintenance",
            &json!({ "for": "1h", "reason": "kernel patching" }),
        )
        .unwrap();
    assert_eq!(ok.status, 200);
    let before = history(&c, "web-1");
    let bytes_before = data_bytes(&c);

    // web-1's credential writes 20,000 heartbeats for other hosts.
    let thief = agents.client_for("web-1");
    let (mut forbidden, mut throttled) = (0, 0);
    for i in 0..20_000 {
        let hb = heartbeat(&format!("db-{}", i % 50), 60, "ok", &[]);
        match thief
            .send_json("POST", "/api/v1/heartbeat", &hb)
            .unwrap()
            .status
        {
            403 => forbidden += 1,
            429 => throttled += 1,
            s => panic!("status {s}"),
        }
    }
    // Its budget is spent on the first ones; the rest are turned away before being read.
    assert!(forbidden <= 25, "{forbidden} refused as 403");
    assert_eq!(forbidden + throttled, 20_000);

    // One note in web-1's history, and the host's own history is all still there.
    let after = history(&c, "web-1");
    let security: Vec<&String> = after.iter().filter(|l| l.contains("security")).collect();
    assert_eq!(security.len(), 1, "{after:#?}");
    for line in &before {
        assert!(after.contains(line), "{line} was pushed out: {after:#?}");
    }
    let grown = data_bytes(&c).saturating_sub(bytes_before);
    eprintln!("20,000 refused writes: {forbidden}×403, {throttled}×429, data grew {grown} bytes");
    assert!(grown < 512 * 1024, "the data directory grew {grown} bytes");
}

#[test]
fn a_full_disk_makes_the_collector_unready_and_is_counted() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let _fs = rollcall_collector::testing::Tmpfs::mount(&data, "8m");
    let c = Collector::start(&data, "120s");
    let agents = c.agents();
    let hosts: Vec<String> = (0..40).map(|i| format!("web-{i}")).collect();
    for h in &hosts {
        assert_eq!(agents.post(&heartbeat(h, 60, "ok", &[1])).status, 200);
    }
    let ready = |c: &Collector| c.admin().get("/readyz").unwrap();
    assert_eq!(ready(&c).status, 200);

    // Fill the filesystem.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}/filler", data.display()))
        .output();
    let mut refused = None;
    'fill: for seq in 2..200u64 {
        for h in &hosts {
            let r = agents.post(&heartbeat(h, 60, "ok", &[seq]));
            match r.status {
                200 => {}
                503 => {
                    refused = Some(r);
                    break 'fill;
                }
                s => panic!("status {s}: {:?}", r.body),
            }
        }
    }
    let refused = refused.expect("a heartbeat refused on a full disk");
    let words = refused.body["error"].as_str().unwrap().to_owned();
    assert!(
        words.contains("disk is full") && words.contains("nothing was stored"),
        "{words}"
    );

    let r = ready(&c);
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("storage failing"),
        "{:?}",
        r.body
    );
    assert!(metric_value(&c, "rollcall_store_failures_total") >= 1.0);
    assert_eq!(metric_value(&c, "rollcall_store_failing"), 1.0);
    // An admin's change gets a sentence, not the database's error code.
    let m = c
        .admin()
        .send_json(
            "PUT",
            "/api/v1/hosts/web-1/maintenance",
            &json!({ "for": "1h", "reason": "x".repeat(400) }),
        )
        .unwrap();
    if m.status != 200 {
        let e = m.body["error"].as_str().unwrap();
        assert_eq!(m.status, 503);
        assert!(
            e.contains("free space") && e.contains("nothing was changed"),
            "{e}"
        );
    }

    // Space again: the next write goes through and the collector is ready again.
    std::fs::remove_file(data.join("filler")).unwrap();
    common::wait(|| agents.post(&heartbeat("web-0", 60, "ok", &[500])).status == 200);
    assert_eq!(ready(&c).status, 200);
    assert_eq!(metric_value(&c, "rollcall_store_failing"), 0.0);
}

#[test]
fn an_enrollment_under_a_speaking_hosts_name_does_not_cut_it_off() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let agents = c.agents();
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[1])).status, 200);

    // Someone holding the enrollment secret enrolls as web-1, with its identity (a
    // machine-id is not a secret) and with another.
    let enroller = c.enroller();
    let mut other = enroll_body("web-1");
    other["identity"]["machine_id"] = json!("stolen");
    for body in [enroll_body("web-1"), other] {
        let r = enroller.send_json("POST", "/api/v1/enroll", &body).unwrap();
        expect(&r, 409, Some("host"), "rollcall revoke web-1");
        assert!(r.body.get("credential").is_none());
    }
    // The live agent goes on; the attempt is in the host's history, once.
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[2])).status, 200);
    let notes: Vec<String> = history(&c, "web-1")
        .into_iter()
        .filter(|l| l.contains("an enrollment as this host"))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");

    // A host reinstalled for real: an admin revokes the old credential, the new agent
    // enrolls.
    let (code, out) = admin_cli(&c, &["revoke", "web-1"]);
    assert_eq!(code, 0, "{out}");
    let r = enroller
        .send_json("POST", "/api/v1/enroll", &enroll_body("web-1"))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Hosts that enrolled and never spoke are listed, and the CLI shows them.
    for h in ["ghost-1", "ghost-2"] {
        let r = enroller
            .send_json("POST", "/api/v1/enroll", &enroll_body(h))
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let v = c.admin().get("/api/v1/enrollments/unheard").unwrap().body;
    let hosts: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["ghost-1", "ghost-2"], "{v}");
    let (code, out) = admin_cli(&c, &["unheard"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ghost-1") && out.contains("2 host(s) enrolled and never heard"),
        "{out}"
    );
}

#[test]
fn an_enrollment_secret_enrolls_a_bounded_number_of_hosts_at_once() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let enroller = c.enroller();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..600 {
        let r = enroller
            .send_json("POST", "/api/v1/enroll", &enroll_body(&format!("h-{i}")))
            .unwrap();
        *statuses.entry(r.status).or_default() += 1;
        if r.status == 429 {
            assert!(r.retry_after.is_some());
        }
    }
    // A burst of 500, then 10 a second: the loop takes a few seconds, so a few dozen more.
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert!((500..600).contains(&ok), "{statuses:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");
}

/// The SHA-256 of the certificate the collector serves now.
fn served_fingerprint(c: &Collector) -> String {
    use sha2::Digest;
    use std::io::Write;
    let tcp = std::net::TcpStream::connect(&c.addr).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(tls_config(c), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: rollcall\r\nConnection: close\r\n\r\n")
        .unwrap();
    let cert = s.conn.peer_certificates().unwrap()[0].clone();
    sha2::Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_server_certificate_is_renewed_while_clients_keep_trusting_it() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    // A data directory that already existed, open to all.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut c = Collector::start_with(&data, "120s", &["--cert-validity", "6s"]);
    let agents = c.agents();
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[1])).status, 200);

    // Private: the directory 0700, every file 0600 but the certificates.
    assert_eq!(mode(&data), 0o700);
    for e in std::fs::read_dir(&data).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let want = if name.ends_with(".pem") { 0o644 } else { 0o600 };
        assert_eq!(mode(&path), want, "{name}");
    }

    // Valid for 6 s, renewed 2 s before it ends: a new certificate is served, and a client
    // pinning the CA goes on as if nothing happened.
    let first = served_fingerprint(&c);
    let expiry = |c: &Collector| {
        metric_value(
            c,
            "rollcall_certificate_expiry_timestamp_seconds{cert=\"server\"}",
        )
    };
    let first_expiry = expiry(&c);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        first_expiry - now <= 7.0,
        "expires {first_expiry}, now {now}"
    );
    common::wait(|| served_fingerprint(&c) != first);
    assert!(expiry(&c) > first_expiry);
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[2])).status, 200);
    let ca = rollcall_collector::tls::info(&data.join("ca.pem")).unwrap();
    assert!(
        (ca.not_after - chrono::Utc::now()).num_days() > 3000,
        "{ca:?}"
    );

    // `cert show` and `cert rotate` from the command line.
    let collector = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let shown = collector(&["cert", "show"]);
    assert!(
        shown.contains("CA certificate") && shown.contains("127.0.0.1"),
        "{shown}"
    );
    let before = served_fingerprint(&c);
    let rotated = collector(&["--cert-validity", "1h", "cert", "rotate"]);
    assert!(rotated.contains("new server certificate"), "{rotated}");
    common::wait(|| served_fingerprint(&c) != before);

    // A file loosened while it was stopped is tightened at the next start.
    c.kill9();
    std::fs::set_permissions(
        data.join("rollcall.db"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let _c = Collector::start_with(&data, "120s", &[]);
    assert_eq!(mode(&data.join("rollcall.db")), 0o600);
}

#[test]
fn no_secret_reaches_the_collectors_output() {
    use std::io::Read;
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            "--data-dir",
        ])
        .arg(d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&first).contains("enroll.secret") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the collector exited");
        first.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&first).into_owned();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("rollcall-collector listening on "))
        .unwrap()
        .to_owned();
    let read = |f: &str| {
        std::fs::read_to_string(d.path().join(f))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (admin, secret) = (read("admin.token"), read("enroll.secret"));
    let client = |token: &str| {
        rollcall_collector::client::Client::new(&url, &d.path().join("ca.pem"), Some(token.into()))
            .unwrap()
    };
    // Enroll, report, write another host, fail to authenticate: everything that logs.
    let r = client(&secret)
        .send_json("POST", "/api/v1/enroll", &enroll_body("web-1"))
        .unwrap();
    let cred = r.body["credential"].as_str().unwrap().to_owned();
    let hb = heartbeat("web-1", 60, "ok", &[1]);
    assert_eq!(
        client(&cred)
            .send_json("POST", "/api/v1/heartbeat", &hb)
            .unwrap()
            .status,
        200
    );
    let other = heartbeat("web-2", 60, "ok", &[1]);
    assert_eq!(
        client(&cred)
            .send_json("POST", "/api/v1/heartbeat", &other)
            .unwrap()
            .status,
        403
    );
    assert_eq!(client(&admin).get("/api/v1/summary").unwrap().status, 200);
    assert_eq!(client("wrong").get("/api/v1/summary").unwrap().status, 401);
    child.kill().unwrap();
    let _ = child.wait();
    let mut out = text;
    let _ = stdout.read_to_string(&mut out);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let all = out + &err;
    assert!(
        all.contains("security: host web-1"),
        "the refusal is logged: {all}"
    );
    for (what, s) in [
        ("admin token", &admin),
        ("enrollment secret", &secret),
        ("credential", &cred),
    ] {
        assert!(
            !all.contains(s.as_str()),
            "the {what} is in the collector's output:\n{all}"
        );
    }
}
