//! Load figures for the collector, printed (never asserted). Loopback only, bounded in
//! count and time.
//!
//!   cargo run --release -p rollcall-collector --example loadgen -- ingest [--hosts 200000] [--seconds 10] [--connections 64] [--rounds 3] [--digest 1]
//!       durable heartbeats per second into the real collector, and the same generator
//!       against a no-op HTTPS handler (same TLS and HTTP stack), alternated in rounds
//!       within one run; the ratio, and CPU time per heartbeat of each server.
//!   cargo run --release -p rollcall-collector --example loadgen -- stores [--hosts 60000] [--seconds 4] [--connections 512] [--rounds 3]
//!       the same on SQLite, PostgreSQL with one collector and PostgreSQL with three (a
//!       throwaway cluster of Debian's PostgreSQL, fsync on), in one run; and the delay of
//!       the changes between the three.
//!   cargo run --release -p rollcall-collector --example loadgen -- scale [--hosts 1000000]
//!       collector RSS per registered host, and GET /api/v1/hosts?state=silent latency
//!       with 1 % of the hosts silent.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rollcall_collector::testing::replicas::Replicas;
use rollcall_collector::testing::{arg, rss_kib};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

// The same allocator as the collector, so that the no-op handler is a fair baseline.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One heartbeat body for host `i`: its own name and identity.
fn body(i: u64, interval: u32, now: &str) -> Bytes {
    let host = format!("node-{i:07}.example.net");
    Bytes::from(format!(
        r#"{{"proto_version":1,"host":"{host}","identity":{{"machine_id":"{i:032x}","install_id":"{:08x}"}},"interval_secs":{interval},"labels":{{"env":"prod","region":"us-south","zone":"dal1{}","role":"carrier-worker"}},"state":{{"proto_version":1,"agent_version":"0.1.0","at":"{now}","besclient":{{"health":"ok","status":"running","reason":"BESClient (pid 4242) is running and logging","since":"{now}","pid":4242,"manager":"systemd","unit_state":"active (running)","log":{{"dir":"/var/opt/BESClient/__BESData/__Global/Logs","dir_exists":true,"newest":"20261122.log","last_write":"{now}","stale_after_secs":3600,"stale":false}},"errors":{{"count":0,"last_line":null,"last_at":null}},"disk":null,"remediation":{{"enabled":true,"paused_until":null,"pause_reason":null,"step":null,"exhausted_rounds":0,"next_attempt_at":null,"attempts_in_window":0,"flapping":false}}}}}},"events":[]}}"#,
        i.wrapping_mul(2654435761) & 0xffff_ffff,
        i % 3
    ))
}

/// How the generated heartbeats carry the (unchanging) state.
static DIGEST_MODE: AtomicBool = AtomicBool::new(false);
/// The digest the collector gave for that state, from the warm-up's acknowledgements.
static DIGEST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A heartbeat of host `i`: its whole state, or (in digest mode) the state's digest.
fn heartbeat_body(i: u64, now: &str) -> Bytes {
    let full = body(i, 60, now);
    if !DIGEST_MODE.load(Ordering::Relaxed) {
        return full;
    }
    let digest = DIGEST
        .lock()
        .expect("digest")
        .clone()
        .expect("a digest from the warm-up");
    let text = std::str::from_utf8(&full).expect("utf-8");
    let (head, rest) = text.split_once(r#""state":"#).expect("state");
    let tail = &rest[rest.find(r#","events""#).expect("events")..];
    Bytes::from(format!(r#"{head}"state_digest":"{digest}"{tail}"#))
}

fn enroll_body(i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"proto_version":1,"host":"node-{i:07}.example.net","identity":{{"machine_id":"{i:032x}","install_id":"{:08x}"}},"labels":{{"env":"prod","region":"us-south","zone":"dal1{}","role":"carrier-worker"}}}}"#,
        i.wrapping_mul(2654435761) & 0xffff_ffff,
        i % 3
    ))
}

/// Enrolls hosts `first..first + count` with the enrollment secret over 32 connections;
/// returns each one's `Authorization` header value, by `i - first`.
async fn enroll_all(
    addr: &str,
    ca: &Path,
    secret: &str,
    first: u64,
    count: u64,
) -> Arc<Vec<String>> {
    let next = Arc::new(AtomicU64::new(first));
    let connector = tls_client(ca);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (next, connector) = (next.clone(), connector.clone());
        let (addr, auth) = (addr.to_owned(), format!("Bearer {secret}"));
        tasks.push(tokio::spawn(async move {
            let mut send = open(&addr, &connector).await;
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + count {
                    break;
                }
                loop {
                    let req = Request::post("/api/v1/enroll")
                        .header("host", "localhost")
                        .header("authorization", &auth)
                        .body(Full::new(enroll_body(i)))
                        .expect("request");
                    let resp = send.send_request(req).await.expect("enroll");
                    let status = resp.status();
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    if status == 200 {
                        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
                        let cred = v["credential"].as_str().expect("credential");
                        got.push((i, format!("Bearer {cred}")));
                        break;
                    }
                    assert_eq!(status, 503, "enrolling: {}", String::from_utf8_lossy(&body));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            got
        }));
    }
    let mut all = vec![String::new(); count as usize];
    for t in tasks {
        for (i, c) in t.await.expect("task") {
            all[(i - first) as usize] = c;
        }
    }
    Arc::new(all)
}

/// A splayed visiting order: every host once per round, in a scattered order.
fn splay(i: u64, hosts: u64) -> u64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % hosts
}

fn tls_client(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca.pem") {
        roots.add(c.expect("cert")).expect("root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One persistent HTTPS connection to `addr`, ready for requests.
async fn open(
    addr: &str,
    connector: &tokio_rustls::TlsConnector,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).ok();
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http");
    tokio::spawn(conn);
    send
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// Sends heartbeats for `hosts` hosts over `conns` persistent connections for `seconds`,
/// or (with 0 seconds) one per host.
/// With several addresses (collectors sharing a database), each host is sent to one of
/// them (host i to address i mod n), as agents stay with one while it answers.
async fn generate(
    addrs: &[String],
    ca: &Path,
    creds: Arc<Vec<String>>,
    hosts: u64,
    conns: u64,
    seconds: u64,
) -> (f64, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let n = addrs.len() as u64;
    let nexts: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let connector = tls_client(ca);
    // One time for the whole run: a state that keeps its "since" is an unchanged state.
    static NOW: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let now = NOW.get_or_init(|| chrono::Utc::now().to_rfc3339());
    let mut tasks = Vec::new();
    for k in 0..conns.max(n) {
        let part = k % n;
        // The hosts i with i mod n = part.
        let share = (hosts + n - 1 - part) / n;
        let (counts, stop, next, connector, creds) = (
            counts.clone(),
            stop.clone(),
            nexts[part as usize].clone(),
            connector.clone(),
            creds.clone(),
        );
        let (addr, now) = (addrs[part as usize].clone(), now.clone());
        tasks.push(tokio::spawn(async move {
            let mut send = open(&addr, &connector).await;
            while !stop.load(Ordering::Relaxed) {
                let m = next.fetch_add(1, Ordering::Relaxed);
                if seconds == 0 && m >= share {
                    break;
                }
                let j = if seconds == 0 { m } else { splay(m, share) };
                let i = part + n * j;
                let req = Request::post("/api/v1/heartbeat")
                    .header("host", "localhost")
                    .header("authorization", &creds[i as usize])
                    .header("content-type", "application/json")
                    .body(Full::new(heartbeat_body(i, &now)))
                    .expect("request");
                match send.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let got = resp.into_body().collect().await;
                        if seconds == 0 && status == 200 {
                            let ack: serde_json::Value = got
                                .map(|b| serde_json::from_slice(&b.to_bytes()).unwrap_or_default())
                                .unwrap_or_default();
                            if let Some(d) = ack["state_digest"].as_str() {
                                *DIGEST.lock().expect("digest") = Some(d.to_owned());
                            }
                        }
                        match status {
                            200 => counts.ok.fetch_add(1, Ordering::Relaxed),
                            _ => counts.refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    if seconds > 0 {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
    }
    for t in tasks {
        let _ = t.await;
    }
    (start.elapsed().as_secs_f64(), counts)
}

struct Proc(Child, String);

/// What a phase sends to and measures: the servers' processes and addresses.
struct Target {
    pids: Vec<u32>,
    addrs: Vec<String>,
}

impl Proc {
    fn target(&self) -> Target {
        Target {
            pids: vec![self.0.id()],
            addrs: vec![self.1.clone()],
        }
    }

    fn addrs(&self) -> Vec<String> {
        vec![self.1.clone()]
    }
}

impl Target {
    fn of(rs: &Replicas) -> Target {
        Target {
            pids: rs.live().map(|(_, c)| c.pid()).collect(),
            addrs: rs.live().map(|(_, c)| c.addr.clone()).collect(),
        }
    }

    fn cpu(&self) -> (f64, f64) {
        (
            self.pids.iter().map(|p| cpu_secs(*p)).sum(),
            self.pids.iter().map(|p| writer_cpu_secs(*p)).sum(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_owned()
}

fn collector(data: &Path, extra: &[&str]) -> Proc {
    let mut child = Command::new(bin_dir().join("rollcall-collector"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rollcall-collector (build it: cargo build --release -p rollcall-collector)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let l = lines.next().expect("collector exited").expect("line");
        if let Some(a) = l.strip_prefix("rollcall-collector listening on https://") {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Proc(child, addr)
}

/// The no-op handler: same TLS and HTTP stack, answers 200 without reading the heartbeat.
fn serve_noop(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let served = rollcall_collector::tls::Served::load(dir).expect("certificates");
        let cfg =
            rollcall_collector::tls::server_config(std::sync::Arc::new(served), None).expect("tls");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!(
            "noop listening on https://{}",
            listener.local_addr().expect("addr")
        );
        let app = axum::Router::new().route(
            "/api/v1/heartbeat",
            axum::routing::post(|| async { axum::Json(serde_json::json!({"acked_seq": 0})) }),
        );
        rollcall_collector::server::serve(
            listener,
            cfg,
            app,
            Default::default(),
            rollcall_collector::server::Limits::new(None, std::time::Duration::from_secs(75)),
            Default::default(),
            std::future::pending(),
        )
        .await;
    });
}

fn noop(dir: &Path) -> Proc {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["serve-noop"])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("noop");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let l = lines.next().expect("noop exited").expect("line");
    Proc(
        child,
        l.trim_start_matches("noop listening on https://")
            .to_owned(),
    )
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat` (USER_HZ = 100).
fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&format!("/proc/{pid}/stat"))
}

/// CPU time of the collector's ingest writer thread (SQLite, registry).
fn writer_cpu_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "ingest-writer")
        })
        .map(|t| stat_cpu_secs(&t.path().join("stat").to_string_lossy()))
        .sum()
}

fn stat_cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
}

/// One phase against one server: heartbeats per second, and CPU µs per heartbeat spent by
/// the server and by the generator.
struct Phase {
    rate: f64,
    server_us: f64,
    writer_us: f64,
    generator_us: f64,
    refused: u64,
    failed: u64,
}

fn phase(
    rt: &tokio::runtime::Runtime,
    server: &Target,
    ca: &Path,
    creds: Arc<Vec<String>>,
    hosts: u64,
    conns: u64,
    seconds: u64,
) -> Phase {
    let ((s0, w0), g0) = (server.cpu(), cpu_secs(std::process::id()));
    let (t, counts) = rt.block_on(generate(&server.addrs, ca, creds, hosts, conns, seconds));
    let ((s1, w1), g1) = (server.cpu(), cpu_secs(std::process::id()));
    let ok = counts.ok.load(Ordering::Relaxed);
    let per = |d: f64| d * 1e6 / ok.max(1) as f64;
    Phase {
        rate: ok as f64 / t,
        server_us: per(s1 - s0),
        writer_us: per(w1 - w0),
        generator_us: per(g1 - g0),
        refused: counts.refused.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ingest() {
    let hosts = arg("--hosts", 200_000);
    let seconds = arg("--seconds", 10);
    let conns = arg("--connections", 64);
    let rounds = arg("--rounds", 3).max(1);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    // Enrolling the whole simulated fleet at once is the benchmark's set-up, not an attack.
    let c = collector(&data, &["--queue", "100000", "--enroll-rate", "1000000"]);
    let token = std::fs::read_to_string(data.join("enroll.secret")).expect("secret");
    let ca = data.join("ca.pem");
    let n = noop(&data);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let enrolling = Instant::now();
    let creds = rt.block_on(enroll_all(&c.1, &ca, token.trim(), 0, hosts));
    println!(
        "{hosts} hosts enrolled in {:.1} s",
        enrolling.elapsed().as_secs_f64()
    );
    // Every host's first heartbeat writes its whole state; the rounds measure what follows.
    let warm = rt
        .block_on(generate(&c.addrs(), &ca, creds.clone(), hosts, conns, 0))
        .1;
    assert_eq!(
        warm.ok.load(Ordering::Relaxed),
        hosts,
        "first heartbeat of every host"
    );
    // `--digest 1`: the rounds send the state's digest, as agents do once it is stored.
    DIGEST_MODE.store(arg("--digest", 0) == 1, Ordering::Relaxed);
    println!("{hosts} simulated hosts, {conns} TLS connections, {rounds} rounds of {seconds} s against each server in turn, loopback, 2 cores shared with the generator:");
    println!("  round   no-op/s  collector/s  ratio   server CPU µs/hb: no-op, collector (its writer thread)   generator CPU µs/hb");
    let mut ratios = Vec::new();
    let mut rates = (Vec::new(), Vec::new());
    let mut cpu = (Vec::new(), Vec::new());
    let mut problems = (0, 0);
    for round in 1..=rounds {
        // Alternated, so that drift in the machine's speed falls on both alike.
        let a = phase(&rt, &n.target(), &ca, creds.clone(), hosts, conns, seconds);
        let b = phase(&rt, &c.target(), &ca, creds.clone(), hosts, conns, seconds);
        println!(
            "  {round:>5}  {:>8.0}  {:>11.0}  {:>5.2}   {:>23.1}, {:>5.1} ({:>4.1})                 {:>5.1}, {:.1}",
            a.rate,
            b.rate,
            b.rate / a.rate,
            a.server_us,
            b.server_us,
            b.writer_us,
            a.generator_us,
            b.generator_us
        );
        ratios.push(b.rate / a.rate);
        rates.0.push(a.rate);
        rates.1.push(b.rate);
        cpu.0.push(a.server_us);
        cpu.1.push(b.server_us);
        problems.0 += b.refused;
        problems.1 += b.failed;
    }
    drop(n);
    println!(
        "  median: no-op {:.0}/s, collector (durable acks) {:.0}/s, ratio {:.2}; server CPU per heartbeat {:.1} µs no-op, {:.1} µs collector; collector refused {}, failed {}",
        median(rates.0),
        median(rates.1),
        median(ratios),
        median(cpu.0),
        median(cpu.1),
        problems.0,
        problems.1
    );
    let metrics = rollcall_collector::client::Client::new(&format!("https://{}", c.1), &ca, None)
        .and_then(|cl| cl.get("/metrics"))
        .map(|r| r.body.as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    for l in metrics.lines().filter(|l| {
        l.starts_with("rollcall_commits_total")
            || l.starts_with("rollcall_committed_heartbeats_total")
            || l.starts_with("rollcall_commit_seconds_total")
    }) {
        println!("  {l}");
    }
}

/// SQLite, PostgreSQL with one collector, PostgreSQL with three, each against the no-op
/// handler, in alternated rounds within one run; then the replication delay the three saw.
fn stores() {
    use rollcall_collector::testing::postgres::Cluster;
    let hosts = arg("--hosts", 60_000);
    let seconds = arg("--seconds", 4);
    let conns = arg("--connections", 512);
    let rounds = arg("--rounds", 3).max(1);
    let dir = tempfile::tempdir().expect("tmp");
    let busy = ["--queue", "100000", "--enroll-rate", "1000000"];
    let sqlite = collector(&dir.path().join("sqlite"), &busy);
    let n = noop(&dir.path().join("sqlite"));
    // PostgreSQL as it ships (fsync on): a commit is on disk before the acknowledgement.
    let pg = Cluster::start(true);
    let pw = pg.password_file(dir.path());
    let exe = bin_dir().join("rollcall-collector");
    let setup = |name: &str, count: usize| {
        let url = pg.url(&pg.create(name));
        let d = dir.path().join(name);
        std::fs::create_dir(&d).expect("dir");
        Replicas::start(&exe, count, &d, (&url, &pw), "120s", "", &busy)
    };
    let one = setup("pg1", 1);
    let three = setup("pg3", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let ready = |data: &Path, target: &Target| {
        let secret = std::fs::read_to_string(data.join("enroll.secret")).expect("secret");
        let ca = data.join("ca.pem");
        let creds = rt.block_on(enroll_all(&target.addrs[0], &ca, secret.trim(), 0, hosts));
        // The other collectors learn the credentials from the change feed.
        std::thread::sleep(Duration::from_secs(2));
        let warm = rt.block_on(generate(&target.addrs, &ca, creds.clone(), hosts, conns, 0));
        assert_eq!(warm.1.ok.load(Ordering::Relaxed), hosts, "first heartbeats");
        (creds, ca)
    };
    // The no-op, SQLite, PostgreSQL with one collector, with three.
    let targets = [
        n.target(),
        sqlite.target(),
        Target::of(&one),
        Target::of(&three),
    ];
    let data = ["sqlite", "pg1/r0", "pg3/r0"].map(|d| dir.path().join(d));
    let t0 = Instant::now();
    // The no-op server takes the SQLite collector's credentials (it reads nothing).
    let mut fleets: Vec<_> = targets[1..]
        .iter()
        .zip(&data)
        .map(|(t, d)| ready(d, t))
        .collect();
    fleets.insert(0, fleets[0].clone());
    println!(
        "{hosts} hosts enrolled and heard once by each store in {:.0} s; {rounds} rounds of {seconds} s each, {conns} TLS connections, loopback, 2 cores shared by the generator, the collectors and PostgreSQL:",
        t0.elapsed().as_secs_f64()
    );
    // The heartbeats as agents send them once their state is stored: its digest. Against
    // SQLite and the no-op also with the whole state, as agents of earlier releases send.
    let phases: [(&str, usize, bool); 7] = [
        ("no-op, whole state", 0, false),
        ("SQLite, whole state", 1, false),
        ("no-op, digest", 0, true),
        ("SQLite, digest", 1, true),
        ("PostgreSQL 1 collector, digest", 2, true),
        ("PostgreSQL 3 collectors, digest", 3, true),
        ("no-op, digest (again)", 0, true),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    for round in 1..=rounds {
        println!("  round {round}:");
        for (k, (name, i, digest)) in phases.iter().enumerate() {
            DIGEST_MODE.store(*digest, Ordering::Relaxed);
            let (creds, ca) = fleets[*i].clone();
            let p = phase(&rt, &targets[*i], &ca, creds, hosts, conns, seconds);
            println!(
                "    {name:<34} {:>7.0}/s  {:>5.1} µs of server CPU per heartbeat{}",
                p.rate,
                p.server_us,
                if p.refused + p.failed > 0 {
                    format!(" ({} refused, {} failed)", p.refused, p.failed)
                } else {
                    String::new()
                }
            );
            rates[k].push(p.rate);
            cpu[k].push(p.server_us);
        }
    }
    let m = |k: usize| median(rates[k].clone());
    let c = |k: usize| median(cpu[k].clone());
    let noop_digest = (m(2) + m(6)) / 2.0;
    println!("  medians:");
    println!(
        "    SQLite, whole state: {:.0}/s, {:.2} of the no-op's; {:.1} µs of collector CPU per heartbeat (no-op {:.1})",
        m(1),
        m(1) / m(0),
        c(1),
        c(0)
    );
    println!(
        "    SQLite, digest: {:.0}/s, {:.2} of the no-op's; {:.1} µs of collector CPU per heartbeat (no-op {:.1})",
        m(3),
        m(3) / noop_digest,
        c(3),
        c(2)
    );
    for (k, name) in [
        (4, "PostgreSQL, 1 collector"),
        (5, "PostgreSQL, 3 collectors"),
    ] {
        println!(
            "    {name}, digest: {:.0}/s, {:.2} of the no-op's, {:.2} of SQLite's; {:.1} µs of collectors' CPU per heartbeat",
            m(k),
            m(k) / noop_digest,
            m(k) / m(3),
            c(k)
        );
    }
    // From another collector's commit to its application here, over the three.
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for (_, c) in three.live() {
        let text = c.admin().get("/metrics").expect("metrics").body;
        for l in text.as_str().unwrap_or("").lines() {
            let Some(rest) = l.strip_prefix("rollcall_replica_apply_delay_seconds_bucket{le=\"")
            else {
                continue;
            };
            let (le, count) = rest.split_once("\"} ").expect("bucket");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            let count: u64 = count.trim().parse().expect("count");
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += count,
                None => buckets.push((le, count)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0, |b| b.1);
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n as f64 >= q * total as f64)
            .map_or(f64::NAN, |b| b.0)
    };
    println!(
        "  replication delay between the 3 collectors ({total} changes applied): p50 <= {} s, p99 <= {} s (histogram bucket bounds)",
        quantile(0.5),
        quantile(0.99)
    );
}

fn scale() {
    let hosts = arg("--hosts", 1_000_000);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let c = collector(
        &data,
        &[
            "--grace",
            "1s",
            "--queue",
            "100000",
            "--enroll-rate",
            "1000000",
        ],
    );
    let pid = c.0.id();
    let token = std::fs::read_to_string(data.join("enroll.secret")).expect("secret");
    let ca = data.join("ca.pem");
    std::thread::sleep(Duration::from_millis(500));
    let base = rss_kib(pid);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    // 1 % with a 1 s interval (they will fall silent), the rest every hour.
    let silent = hosts / 100;
    let enrolling = Instant::now();
    let creds = rt.block_on(enroll_all(&c.1, &ca, token.trim(), 0, hosts));
    let enrolled_in = enrolling.elapsed().as_secs_f64();
    let gen = |first: u64, count: u64, interval: u32| {
        rt.block_on(async {
            let counts = Arc::new(Counts::default());
            let next = Arc::new(AtomicU64::new(first));
            let connector = tls_client(&ca);
            let now = chrono::Utc::now().to_rfc3339();
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let (counts, next, connector, now, creds) = (
                    counts.clone(),
                    next.clone(),
                    connector.clone(),
                    now.clone(),
                    creds.clone(),
                );
                let addr = c.1.clone();
                tasks.push(tokio::spawn(async move {
                    let mut send = open(&addr, &connector).await;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= first + count {
                            break;
                        }
                        let req = Request::post("/api/v1/heartbeat")
                            .header("host", "localhost")
                            .header("authorization", &creds[i as usize])
                            .body(Full::new(body(i, interval, &now)))
                            .expect("req");
                        let resp = send.send_request(req).await.expect("send");
                        let ok = resp.status() == 200;
                        let _ = resp.into_body().collect().await;
                        if ok {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            counts.ok.load(Ordering::Relaxed)
        })
    };
    let t = Instant::now();
    let a = gen(0, silent, 1);
    let b = gen(silent, hosts - silent, 3600);
    let took = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kib(pid);
    println!(
        "{hosts} hosts enrolled in {enrolled_in:.0} s, then registered over HTTPS in {took:.0} s ({} acknowledged)",
        a + b
    );
    println!(
        "  collector RSS {rss} KiB (baseline {base} KiB): {:.0} bytes per host",
        (rss - base) as f64 * 1024.0 / hosts as f64
    );
    let admin = std::fs::read_to_string(data.join("admin.token")).expect("admin");
    let client = rollcall_collector::client::Client::new(
        &format!("https://{}", c.1),
        &ca,
        Some(admin.trim().to_owned()),
    )
    .expect("client");
    let query = || {
        let s = Instant::now();
        let (status, bytes) = client
            .get_bytes("/api/v1/hosts?state=silent")
            .expect("query");
        // The whole body received; parsing it is the client's cost, not the endpoint's.
        let took = s.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        (took, v["count"].as_u64().unwrap_or(0), bytes.len())
    };
    let mut times = Vec::new();
    let (mut found, mut size) = (0, 0);
    for _ in 0..21 {
        let (took, n, bytes) = query();
        times.push(took);
        (found, size) = (n, bytes);
    }
    // The first also opens the connection (TLS handshake): shown apart.
    let first = times.remove(0);
    times.sort_by(|x, y| x.total_cmp(y));
    println!(
        "  GET /api/v1/hosts?state=silent: {found} hosts ({} KiB), p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (20 requests over HTTPS on one connection, until the whole body is received; before them the first, which opened the connection, {first:.1} ms)",
        size / 1024,
        times[10],
        times[18],
        times[19]
    );
}

fn main() {
    // The no-op server is this program too.
    rollcall_collector::no_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve-noop") => serve_noop(Path::new(&args[2])),
        Some("ingest") => ingest(),
        Some("scale") => scale(),
        Some("stores") => stores(),
        _ => eprintln!(
            "usage: loadgen ingest|stores [--hosts N] [--seconds S] [--connections C] [--rounds R] | scale [--hosts N]"
        ),
    }
}
