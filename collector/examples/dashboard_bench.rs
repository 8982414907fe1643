//! The dashboard's server time at fleet scale: a collector started on a database of N
//! hosts, signed in over HTTPS like a browser, asked for the overview and the first page
//! of hosts. Prints the time per page (median and p90 over 20 calls, on a warm keep-alive
//! connection) and the bytes of the overview with its assets.
//!
//!   cargo build --release -p rollcall-collector
//!   cargo run --release -p rollcall-collector --example dashboard_bench -- 100000 1000000

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Duration, Utc};
use rollcall_collector::store::{self, HeartbeatRecord, StateJson, Write};
use rollcall_collector::testing::Collector;
use rollcall_proto::Health;

/// The `rollcall-collector` built beside this example.
fn collector_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent()
        .and_then(|p| p.parent())
        .map(|d| d.join("rollcall-collector"))
        .filter(|p| p.exists())
        .expect("rollcall-collector: cargo build --release -p rollcall-collector first")
}

/// N hosts written straight to a new database: six regions, three zones each, one in a
/// hundred unhealthy, one in a hundred last heard ten minutes ago.
fn fill(dir: &Path, n: usize) {
    let mut st = store::open(
        &store::Backend::Sqlite,
        dir,
        &rollcall_collector::replica::Replica::alone(),
    )
    .expect("store");
    let now = Utc::now();
    let regions = ["us-south", "us-east", "eu-de", "eu-gb", "jp-tok", "au-syd"];
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..n {
        let region = regions[i % 6];
        let sick = i % 100 == 7;
        batch.push(Write::Heartbeat(HeartbeatRecord {
            host: format!("kube-{i:07}-worker.{region}.example.net"),
            identity: format!("{:032x}/{:08x}", i as u128 * 2654435761, i),
            received_at: if i % 100 == 0 {
                now - Duration::minutes(10)
            } else {
                now
            },
            interval_secs: 60,
            labels: [
                ("env".to_owned(), "prod".to_owned()),
                ("region".to_owned(), region.to_owned()),
                ("zone".to_owned(), format!("{region}-{}", i % 3)),
                (
                    "role".to_owned(),
                    if i % 5 == 0 { "db" } else { "worker" }.to_owned(),
                ),
            ]
            .into(),
            health: if sick { Health::Critical } else { Health::Ok },
            reason: if sick {
                "BESClient is stopped; remediation exhausted after 5 restarts".to_owned()
            } else {
                "BESClient (pid 81234) is running and logging".to_owned()
            },
            state_json: StateJson::Text(String::new()),
            state_fingerprint: 0,
            events: Vec::new(),
            booted_at: None,
        }));
        if batch.len() == batch.capacity() {
            st.commit(&batch).expect("commit");
            batch.clear();
        }
    }
    st.commit(&batch).expect("commit");
}

fn ms(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

fn main() {
    rollcall_collector::no_huge_pages();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000]
    } else {
        sizes
    };
    for n in sizes {
        let d = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        fill(d.path(), n);
        println!("{n} hosts written in {:.1} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let c = Collector::spawn(&collector_exe(), d.path(), "127.0.0.1:0", "120s", &[]);
        println!("collector up in {:.1} s", t.elapsed().as_secs_f64());
        let base = c.url.clone();
        let ca = std::fs::read(d.path().join("ca.pem")).expect("ca.pem");
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let token = std::fs::read_to_string(d.path().join("admin.token")).expect("token");
        let r = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}&next=%2F", token.trim()))
            .send()
            .expect("sign in");
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let get = |path: &str| {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .expect(path);
            assert_eq!(r.status(), 200, "{path}");
            let body = r.bytes().expect("body");
            (t.elapsed().as_secs_f64() * 1000.0, body.len())
        };
        for (path, what) in [
            ("/", "overview"),
            ("/hosts", "hosts, first page"),
            ("/hosts?state=unhealthy", "hosts, unhealthy"),
            ("/hosts?name=kube-00012", "hosts, name prefix"),
            ("/hosts?region=eu-de&page=50", "hosts, region, page 50"),
        ] {
            get(path);
            let (times, sizes): (Vec<f64>, Vec<usize>) = (0..20).map(|_| get(path)).unzip();
            let (p50, p90) = ms(times);
            println!(
                "{n} hosts: {what} ({path}): median {p50:.1} ms, p90 {p90:.1} ms, {} bytes",
                sizes[0]
            );
        }
        let page = get("/").1;
        let assets: usize = rollcall_collector::dashboard::ASSETS
            .iter()
            .map(|(p, _, _)| get(p).1)
            .sum();
        println!(
            "{n} hosts: overview with its assets: {} bytes ({page} page + {assets} assets), uncompressed",
            page + assets
        );
    }
}
