//! The collector as a child process for tests, and heartbeats to send it.
// Each test binary uses a different part of this harness.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rollcall_collector::client::{Client, Reply};
use serde_json::{json, Value};

pub use rollcall_collector::testing::Collector;

/// This crate's collector binary, started through the workspace's one harness.
pub trait Start {
    fn start(data: &Path, grace: &str) -> Collector;
    fn start_with(data: &Path, grace: &str, extra: &[&str]) -> Collector;
    /// Agents: each host enrolls on its first heartbeat and then uses its own credential.
    fn agents(&self) -> Agents;
}

impl Start for Collector {
    fn start(data: &Path, grace: &str) -> Collector {
        Collector::start_with(data, grace, &[])
    }

    fn start_with(data: &Path, grace: &str, extra: &[&str]) -> Collector {
        let exe = Path::new(env!("CARGO_BIN_EXE_rollcall-collector"));
        Collector::spawn(exe, data, "127.0.0.1:0", grace, extra)
    }

    fn agents(&self) -> Agents {
        Agents {
            enroller: self.enroller(),
            url: self.url.clone(),
            ca: self.data.join("ca.pem"),
            creds: Default::default(),
        }
    }
}

/// A heartbeat from `host` in us-south/dal10 (see [`rollcall_collector::testing::heartbeat`]).
pub fn heartbeat(host: &str, interval: u32, health: &str, events: &[u64]) -> Value {
    rollcall_collector::testing::heartbeat(
        host,
        interval,
        health,
        events,
        json!({ "env": "prod", "region": "us-south", "zone": "dal10", "role": "carrier-worker" }),
    )
}

pub struct Agents {
    enroller: Client,
    url: String,
    ca: PathBuf,
    creds: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

pub fn enroll_body(host: &str) -> Value {
    json!({
        "proto_version": 1,
        "host": host,
        "identity": { "machine_id": format!("m-{host}"), "install_id": "i1" },
        "labels": { "env": "prod", "region": "us-south", "zone": "dal10", "role": "carrier-worker" },
    })
}

impl Agents {
    /// The credential of `host`, enrolling it first if needed.
    pub fn credential(&self, host: &str) -> String {
        if let Some(c) = self.creds.lock().unwrap().get(host) {
            return c.clone();
        }
        let r = self
            .enroller
            .send_json("POST", "/api/v1/enroll", &enroll_body(host))
            .unwrap();
        assert_eq!(r.status, 200, "enrolling {host}: {:?}", r.body);
        let cred = r.body["credential"].as_str().unwrap().to_owned();
        self.creds
            .lock()
            .unwrap()
            .insert(host.to_owned(), cred.clone());
        cred
    }

    /// A client holding `host`'s credential.
    pub fn client_for(&self, host: &str) -> Client {
        Client::new(&self.url, &self.ca, Some(self.credential(host))).unwrap()
    }

    /// Sends a heartbeat as `post` does; `None` while the collector cannot be reached.
    pub fn try_post(&self, hb: &Value) -> Option<Reply> {
        let host = hb["host"].as_str()?;
        let cred = self.credential(host);
        self.enroller
            .request(
                "POST",
                "/api/v1/heartbeat",
                Some(&cred),
                Some(hb.to_string().into_bytes()),
            )
            .ok()
    }

    /// Sends a heartbeat with the credential of the host it names.
    pub fn post(&self, hb: &Value) -> Reply {
        self.try_post(hb).expect("the collector answers")
    }

    /// Sends a heartbeat, with the credential its host got here, to another collector `c`.
    pub fn post_to(&self, c: &Collector, hb: &Value) -> Reply {
        let cred = self.credential(hb["host"].as_str().expect("host"));
        Client::new(&c.url, &c.data.join("ca.pem"), None)
            .unwrap()
            .request(
                "POST",
                "/api/v1/heartbeat",
                Some(&cred),
                Some(hb.to_string().into_bytes()),
            )
            .expect("the collector answers")
    }
}

/// The token or secret in the data directory's `file`.
pub fn token(c: &Collector, file: &str) -> String {
    std::fs::read_to_string(c.data.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

/// An error reply: its status, the `field` it names, and words of its `error`.
pub fn expect_error(r: &Reply, status: u16, field: Option<&str>, words: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["field"].as_str(), field, "{:?}", r.body);
    assert!(
        r.body["error"].as_str().unwrap_or("").contains(words),
        "{:?} lacks {words:?}",
        r.body
    );
}

/// Polls `f` every 20 ms until it holds, for at most `timeout`; how long that took.
pub fn wait_for(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    start.elapsed()
}

/// Polls `f` every 50 ms for up to 15 s.
pub fn wait(mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "timed out"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
pub mod receiver;

/// The `rollcall` CLI against `c` with its admin token: exit code, and stdout then stderr.
pub fn admin_cli(c: &Collector, args: &[&str]) -> (i32, String) {
    let token = std::fs::read_to_string(c.data.join("admin.token")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .env("ROLLCALL_URL", &c.url)
        .env("ROLLCALL_TOKEN", token.trim())
        .env("ROLLCALL_CA", c.data.join("ca.pem"))
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// The sequence numbers of the events in a host's view (`GET /api/v1/hosts/{name}`), as
/// listed: newest first.
pub fn event_seqs(view: &Value) -> Vec<u64> {
    view["events"]
        .as_array()
        .map(|es| es.iter().filter_map(|e| e["seq"].as_u64()).collect())
        .unwrap_or_default()
}
