//! `rollcall-collector` as a child process on loopback, on its own data directory: the one
//! harness the workspace's tests and benchmarks start it with, and what they measure it by.
//! The collector itself does not use it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::client::Client;

pub mod postgres;
pub mod replicas;

/// How much of the collector's log is kept for [`Collector::log`].
const LOG_KEPT: usize = 4 << 20;

pub struct Collector {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub data: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Collector {
    /// Runs `exe` on `listen` (port 0: any) with `grace` (as the flag takes it, `2s`) and
    /// returns once it serves. Its log goes to stderr with `ROLLCALL_TEST_ECHO` set.
    pub fn spawn(exe: &Path, data: &Path, listen: &str, grace: &str, extra: &[&str]) -> Collector {
        Collector::spawn_command(Command::new(exe), data, listen, grace, extra)
    }

    /// As [`Collector::spawn`], with `cmd` the collector or a wrapper that runs it
    /// (`prlimit --nofile=128 -- rollcall-collector`).
    pub fn spawn_command(
        mut cmd: Command,
        data: &Path,
        listen: &str,
        grace: &str,
        extra: &[&str],
    ) -> Collector {
        let exe = format!("{:?}", cmd.get_program());
        let mut child = cmd
            .args(["--listen", listen, "--grace", grace, "--data-dir"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("ROLLCALL_TEST_ECHO").is_some() {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("starting {exe}: {e}"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() < LOG_KEPT {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("collector exited before listening")
                .expect("line");
            if let Some(u) = line.strip_prefix("rollcall-collector listening on ") {
                break u.to_owned();
            }
        };
        // Keep reading stdout so the collector never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Collector {
            child,
            addr: url.trim_start_matches("https://").to_owned(),
            url,
            data: data.to_owned(),
            log,
        }
    }

    /// A client holding the token in the data directory's `token_file`.
    pub fn client_with(&self, token_file: &str) -> Client {
        let token = std::fs::read_to_string(self.data.join(token_file))
            .unwrap_or_else(|e| panic!("{token_file}: {e}"));
        Client::new(
            &self.url,
            &self.data.join("ca.pem"),
            Some(token.trim().to_owned()),
        )
        .expect("client")
    }

    /// A client with the admin token made at first start.
    pub fn admin(&self) -> Client {
        self.client_with("admin.token")
    }

    /// A client with the enrollment secret, as agents use to enroll.
    pub fn enroller(&self) -> Client {
        self.client_with("enroll.secret")
    }

    /// What the collector logged so far (its first 4 MiB), unless `ROLLCALL_TEST_ECHO`
    /// sent it to the terminal.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its `/metrics` text (with the admin token), if it answers.
    pub fn metrics(&self) -> Option<String> {
        let body = self.admin().get("/metrics").ok()?.body;
        body.as_str().map(str::to_owned)
    }

    /// The unlabelled metric `name`, if it answers and has it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_in(&self.metrics()?, name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sets `host`'s lifecycle through `admin` (`PUT /api/v1/hosts/{host}/lifecycle`), as an
/// SRE or the inventory does: `live` makes a host's incidents told.
pub fn set_lifecycle(admin: &Client, host: &str, lifecycle: &str) {
    let r = admin
        .send_json(
            "PUT",
            &format!("/api/v1/hosts/{host}/lifecycle"),
            &serde_json::json!({ "lifecycle": lifecycle }),
        )
        .unwrap_or_else(|e| panic!("lifecycle of {host}: {e}"));
    assert_eq!(r.status, 200, "lifecycle of {host}: {:?}", r.body);
}

/// Puts `host` in maintenance for an hour through `admin`, as an SRE does.
pub fn maintain(admin: &Client, host: &str, reason: &str) {
    let r = admin
        .send_json(
            "PUT",
            &format!("/api/v1/hosts/{host}/maintenance"),
            &serde_json::json!({"for": "1h", "reason": reason}),
        )
        .unwrap_or_else(|e| panic!("maintenance of {host}: {e}"));
    assert_eq!(r.status, 200, "maintenance of {host}: {:?}", r.body);
}

/// The unlabelled metric `name` in a `/metrics` text.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A heartbeat as an agent sends it, now: `health` `ok` or `critical` (BESClient dead,
/// remediation exhausted), `events` numbered as given, `labels` a JSON object. For the
/// tests and benchmarks that stand in for many agents.
pub fn heartbeat(
    host: &str,
    interval: u32,
    health: &str,
    events: &[u64],
    labels: serde_json::Value,
) -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339();
    serde_json::json!({
        "proto_version": 1,
        "host": host,
        "identity": { "machine_id": format!("m-{host}"), "install_id": "i1" },
        "interval_secs": interval,
        "labels": labels,
        "state": {
            "proto_version": 1, "agent_version": "0.1.0", "at": now,
            "besclient": {
                "health": health, "status": if health == "critical" { "dead" } else { "running" },
                "reason": if health == "critical" { "remediation exhausted (round 2)" } else { "BESClient (pid 7) is running and logging" },
                "since": now, "pid": 7, "manager": "systemd", "unit_state": "active (running)",
                "log": { "dir": "/var/opt/BESClient/__BESData/__Global/Logs", "dir_exists": true, "newest": "20261122.log", "last_write": now, "stale_after_secs": 3600, "stale": false },
                "errors": { "count": 0, "last_line": null, "last_at": null },
                "disk": null,
                "remediation": { "enabled": true, "paused_until": null, "pause_reason": null, "step": null, "exhausted_rounds": 0, "next_attempt_at": null, "attempts_in_window": 0, "flapping": false }
            }
        },
        "events": events.iter().map(|s| serde_json::json!({
            "seq": s, "at": now, "check": "besclient", "kind": "action", "message": format!("restart {s}"), "action": "restart", "step": "restart"
        })).collect::<Vec<_>>()
    })
}

/// Resident memory of process `pid`, KiB (`VmRSS` in `/proc/PID/status`), for benchmarks.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A benchmark's numeric option (`--hosts 200`), or its default.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tmpfs of `size` (`512k`, `8m`) mounted on `dir`, unmounted on drop: a filesystem to
/// fill. Needs root, as CI runs.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs needs root; run the tests as root (CI does)"
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
