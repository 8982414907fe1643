//! Load figures for the collector, printed (never asserted). Loopback only, bounded in
//! count and time.
//!
//!   cargo run --release -p rollcall-collector --example loadgen -- ingest [--hosts 200000] [--seconds 10] [--connections 64]
//!       durable heartbeats per second into the real collector, and the same generator
//!       against a no-op HTTPS handler (same TLS and HTTP stack) in the same run; the ratio.
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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

// The same allocator as the collector, so that the no-op handler is a fair baseline.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: u64) -> u64 {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// One heartbeat body for host `i`: its own name and identity.
fn body(i: u64, interval: u32, now: &str) -> Bytes {
    let host = format!("node-{i:07}.example.net");
    Bytes::from(format!(
        r#"{{"proto_version":1,"host":"{host}","identity":{{"machine_id":"{i:032x}","install_id":"{:08x}"}},"interval_secs":{interval},"labels":{{"env":"prod","region":"us-south","zone":"dal1{}","role":"carrier-worker"}},"state":{{"proto_version":1,"agent_version":"0.1.0","at":"{now}","besclient":{{"health":"ok","status":"running","reason":"BESClient (pid 4242) is running and logging","since":"{now}","pid":4242,"manager":"systemd","unit_state":"active (running)","log":{{"dir":"/var/opt/BESClient/__BESData/__Global/Logs","dir_exists":true,"newest":"20261122.log","last_write":"{now}","stale_after_secs":3600,"stale":false}},"errors":{{"count":0,"last_line":null,"last_at":null}},"disk":null,"remediation":{{"enabled":true,"paused_until":null,"pause_reason":null,"step":null,"exhausted_rounds":0,"next_attempt_at":null,"attempts_in_window":0,"flapping":false}}}}}},"events":[]}}"#,
        i.wrapping_mul(2654435761) & 0xffff_ffff,
        i % 3
    ))
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

/// Sends heartbeats for `hosts` hosts over `conns` persistent connections until `stop`.
async fn generate(
    addr: &str,
    ca: &Path,
    creds: Arc<Vec<String>>,
    hosts: u64,
    conns: u64,
    seconds: u64,
) -> (f64, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let connector = tls_client(ca);
    let now = chrono::Utc::now().to_rfc3339();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (counts, stop, next, connector, creds) = (
            counts.clone(),
            stop.clone(),
            next.clone(),
            connector.clone(),
            creds.clone(),
        );
        let (addr, now) = (addr.to_owned(), now.clone());
        tasks.push(tokio::spawn(async move {
            let mut send = open(&addr, &connector).await;
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let i = splay(n, hosts);
                let req = Request::post("/api/v1/heartbeat")
                    .header("host", "localhost")
                    .header("authorization", &creds[i as usize])
                    .header("content-type", "application/json")
                    .body(Full::new(body(i, 60, &now)))
                    .expect("request");
                match send.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
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
        let cfg = rollcall_collector::tls::server_config(dir, None).expect("tls");
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn ingest() {
    let hosts = arg("--hosts", 200_000);
    let seconds = arg("--seconds", 10);
    let conns = arg("--connections", 64);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let c = collector(&data, &["--queue", "100000"]);
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
    let (t_noop, noop_counts) =
        rt.block_on(generate(&n.1, &ca, creds.clone(), hosts, conns, seconds));
    drop(n);
    let (t_real, real) = rt.block_on(generate(&c.1, &ca, creds, hosts, conns, seconds));
    let noop_rate = noop_counts.ok.load(Ordering::Relaxed) as f64 / t_noop;
    let real_rate = real.ok.load(Ordering::Relaxed) as f64 / t_real;
    println!("{hosts} simulated hosts, {conns} TLS connections, {seconds} s each, loopback, 2 cores shared with the generator:");
    println!("  no-op HTTPS handler:      {noop_rate:>9.0} heartbeats/s");
    println!(
        "  collector, durable acks:  {real_rate:>9.0} heartbeats/s  (refused {}, failed {})",
        real.refused.load(Ordering::Relaxed),
        real.failed.load(Ordering::Relaxed)
    );
    println!("  ratio collector/no-op:    {:.2}", real_rate / noop_rate);
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

fn scale() {
    let hosts = arg("--hosts", 1_000_000);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let c = collector(&data, &["--grace", "1s", "--queue", "100000"]);
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
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..20 {
        let s = Instant::now();
        let (status, bytes) = client
            .get_bytes("/api/v1/hosts?state=silent")
            .expect("query");
        // The whole body received; parsing it is the client's cost, not the endpoint's.
        times.push(s.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        found = v["count"].as_u64().unwrap_or(0);
    }
    times.sort_by(|x, y| x.total_cmp(y));
    println!("  GET /api/v1/hosts?state=silent: {found} hosts, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (20 requests over HTTPS, until the whole body is received)", times[10], times[18], times[19]);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve-noop") => serve_noop(Path::new(&args[2])),
        Some("ingest") => ingest(),
        Some("scale") => scale(),
        _ => eprintln!(
            "usage: loadgen ingest [--hosts N] [--seconds S] [--connections C] | scale [--hosts N]"
        ),
    }
}
