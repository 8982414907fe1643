//! TLS between agents and the collector, end to end: a collector that requires client
//! certificates, agents with the right one, none, or one from another CA; an agent that
//! pins the wrong CA; a collector whose certificate has expired. Each refusal is plain in
//! the agent's log and counted in the collector's `/metrics`, and nothing is written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rollcall_collector::store::Store;
use rollcall_tests::{wait_until, Agent, Collector, SimHost, Start};
use serde_json::Value;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str, not_after: Option<time::OffsetDateTime>) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if let Some(t) = not_after {
        params.not_before = t - time::Duration::days(30);
        params.not_after = t;
    }
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A leaf certificate signed by `ca`, written as `<name>.pem` / `<name>.key` in `dir`.
fn leaf(
    ca: &Ca,
    dir: &Path,
    name: &str,
    sans: &[&str],
    not_after: Option<time::OffsetDateTime>,
) -> (PathBuf, PathBuf) {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    if let Some(t) = not_after {
        params.not_before = t - time::Duration::days(30);
        params.not_after = t;
    }
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, format!("{}{}", cert.pem(), ca.pem)).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn write_ca(ca: &Ca, path: &Path) -> PathBuf {
    std::fs::write(path, &ca.pem).unwrap();
    path.to_owned()
}

/// A simulated host whose agent reports to `c`, with `extra` lines in `[collector]`.
fn host(c: &Collector, name: &str, extra: &str) -> (SimHost, Agent) {
    let h = SimHost::new();
    h.faults("interval_ms = 200\n");
    h.start_client();
    let config = h.agent_config("sysv", "", "");
    h.report_to(&config, c, name, "1s", "env = \"test\"");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    let a = Agent::start(&config);
    a.wait_supervising();
    (h, a)
}

/// Points the agent config's `ca_file` (as `report_to` wrote it for `c`) at `ca`.
fn pin(config: &Path, c: &Collector, ca: &Path) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        &c.data.join("ca.pem").display().to_string(),
        &ca.display().to_string(),
    );
    std::fs::write(config, text).unwrap();
}

/// Whether the agent's log has a line with `words` (any case).
fn says(a: &Agent, words: &str) -> bool {
    let words = words.to_lowercase();
    a.lines().iter().any(|l| {
        l["msg"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains(&words))
    })
}

fn metric(c: &Collector, line_start: &str) -> u64 {
    let body = c.admin().get("/metrics").unwrap().body;
    let text = body.as_str().map(str::to_owned).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn known(c: &Collector, name: &str) -> bool {
    c.admin()
        .get(&format!("/api/v1/hosts/{name}"))
        .unwrap()
        .status
        == 200
}

fn log_of(a: &Agent) -> String {
    a.lines()
        .iter()
        .filter_map(|l: &Value| l["msg"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_collector_requiring_client_certificates_takes_only_agents_that_present_one() {
    let data = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let clients = ca("fleet client CA", None);
    let rogue = ca("someone else's CA", None);
    let client_ca = write_ca(&clients, &pki.path().join("client-ca.pem"));
    let c = Collector::start_with(
        data.path(),
        "127.0.0.1:0",
        "2s",
        &["--client-ca", client_ca.to_str().unwrap()],
    );

    let (cert, key) = leaf(&clients, pki.path(), "good-1", &["good-1"], None);
    let (_h1, good) = host(
        &c,
        "good-1",
        &format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let (_h2, bare) = host(&c, "bare-1", "");
    let (rcert, rkey) = leaf(&rogue, pki.path(), "rogue-1", &["rogue-1"], None);
    let (_h3, rogue_agent) = host(
        &c,
        "rogue-1",
        &format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            rcert.display(),
            rkey.display()
        ),
    );

    wait_until(
        "good-1 up at the collector",
        Duration::from_secs(10),
        || {
            known(&c, "good-1")
                && rollcall_tests::host_view(&c.admin(), "good-1")["host"]["state"] == "up"
        },
    );
    wait_until(
        "the agent without a certificate told why",
        Duration::from_secs(10),
        || says(&bare, "client certificate"),
    );
    wait_until(
        "the agent with another CA's certificate refused",
        Duration::from_secs(10),
        || says(&rogue_agent, "unreachable"),
    );
    assert!(
        metric(
            &c,
            "rollcall_requests_rejected_total{reason=\"no_client_cert\"}"
        ) >= 1,
        "refusals without a certificate are counted"
    );
    assert!(
        metric(&c, "rollcall_tls_handshakes_failed_total") >= 1,
        "handshakes with a certificate of another CA are counted"
    );
    assert!(says(&good, "enrolled with the collector"));
    assert!(!known(&c, "bare-1"), "nothing written for bare-1");
    assert!(!known(&c, "rogue-1"), "nothing written for rogue-1");
    let log = log_of(&rogue_agent);
    assert!(
        !log.contains("enrolled with the collector"),
        "rogue-1 never enrolled:\n{log}"
    );
    // SREs' API calls still need only a token.
    assert_eq!(c.admin().get("/api/v1/summary").unwrap().status, 200);
}

#[test]
fn an_agent_that_pins_the_wrong_or_an_expired_ca_does_not_talk_to_the_collector() {
    // The agent pins a CA that did not sign the collector's certificate.
    let data = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), "127.0.0.1:0", "2s");
    let other = write_ca(&ca("another CA", None), &pki.path().join("other-ca.pem"));
    let h = SimHost::new();
    h.faults("interval_ms = 200\n");
    h.start_client();
    let config = h.agent_config("sysv", "", "");
    h.report_to(&config, &c, "wrong-ca-1", "1s", "env = \"test\"");
    pin(&config, &c, &other);
    let a = Agent::start(&config);
    a.wait_supervising();
    wait_until(
        "the agent says the collector's certificate is not trusted",
        Duration::from_secs(10),
        || says(&a, "UnknownIssuer"),
    );
    assert!(metric(&c, "rollcall_tls_handshakes_failed_total") >= 1);
    assert!(!known(&c, "wrong-ca-1"), "nothing written");
    let supervising = h.agent_state().expect("state.json")["state"]["besclient"]["status"].clone();
    assert_eq!(supervising, "running", "supervision goes on");
    drop(a);
    drop(c);

    // A collector whose CA and certificate have expired (made before its first start, so
    // it keeps them).
    let data = tempfile::tempdir().unwrap();
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let old = ca("expired collector CA", Some(past));
    write_ca(&old, &data.path().join("ca.pem"));
    let (cert, key) = leaf(
        &old,
        data.path(),
        "server",
        &["localhost", "127.0.0.1"],
        Some(past),
    );
    std::fs::rename(cert, data.path().join("server.pem")).unwrap();
    std::fs::rename(key, data.path().join("server.key")).unwrap();
    let c = Collector::start(data.path(), "127.0.0.1:0", "2s");
    let (_h, a) = host(&c, "expired-1", "");
    wait_until(
        "the agent says the collector's certificate expired",
        Duration::from_secs(10),
        || says(&a, "expired"),
    );
    drop(c);
    // No client can reach this collector, so look in its database.
    let stored = rollcall_collector::store::open(
        &Default::default(),
        data.path(),
        &rollcall_collector::replica::Replica::alone(),
    )
    .unwrap()
    .load_hosts()
    .unwrap();
    assert!(
        stored.is_empty(),
        "nothing written: {} host(s)",
        stored.len()
    );
}

#[test]
fn an_agent_with_a_broken_ca_file_still_heals_and_reports_once_it_is_fixed() {
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), "127.0.0.1:0", "2s");
    let h = SimHost::new();
    h.faults("interval_ms = 200\n");
    let old = h.start_client();
    let config = h.agent_config("sysv", "stale_after = \"30s\"\nverify_within = \"10s\"", "");
    h.report_to(&config, &c, "half-bootstrapped-1", "1s", "env = \"test\"");
    // A bootstrap that stopped half-way: the CA file is there, and empty.
    let ca = h.root().join("etc/rollcall/ca.pem");
    std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
    std::fs::write(&ca, "").unwrap();
    pin(&config, &c, &ca);

    let a = Agent::start(&config);
    a.wait_supervising();
    wait_until(
        "the agent to say reporting is misconfigured",
        Duration::from_secs(10),
        || says(&a, "reporting is misconfigured"),
    );
    // It heals a killed client all the same.
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (i, _) = a.wait_event("a restart", 0, Duration::from_secs(30), |e| {
        e["action"] == "restart"
    });
    a.wait_event("the restart verified", i, Duration::from_secs(30), |e| {
        e["event"] == "verified"
    });
    assert_ne!(h.daemon_pid(), old);
    // The state file and doctor say what is wrong.
    wait_until(
        "state.json to carry the problem",
        Duration::from_secs(10),
        || {
            h.agent_state().is_some_and(|s| {
                s["reporting_problem"]
                    .as_str()
                    .is_some_and(|p| p.contains(&ca.display().to_string()))
            })
        },
    );
    let doctor = std::process::Command::new(rollcall_tests::bin("rollcall-agent"))
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(2), "{out}");
    assert!(out.contains("[CRIT] reporting:"), "{out}");
    assert!(!known(&c, "half-bootstrapped-1"));

    // The bootstrap finishes: the agent sets the link up on its own and reports.
    std::fs::copy(c.data.join("ca.pem"), &ca).unwrap();
    wait_until(
        "the host to be known to the collector",
        Duration::from_secs(15),
        || known(&c, "half-bootstrapped-1"),
    );
    assert!(says(&a, "is set up"), "{}", log_of(&a));
}
