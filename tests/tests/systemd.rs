//! The agent under a real systemd: Debian bookworm booted with systemd-nspawn, the simulated
//! BESClient installed at the real paths with its LSB init script, so that
//! systemd-sysv-generator makes `besclient.service` exactly as on real hosts
//! (`Type=forking`, `Restart=no`, `RemainAfterExit=yes`: `active (exited)` after a death).
//! The agent runs from the repository's own unit file, `Type=notify`, logging to journald.
//!
//! Needs root and the cached root filesystem from `scripts/container-rootfs.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rollcall_tests::{bin, init_script, reap, wait_for_event, wait_until};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn rootfs() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("ROLLCALL_ROOTFS").unwrap_or_else(|_| "/var/cache/rollcall/bookworm".into()),
    );
    assert!(
        p.join("lib/systemd/systemd").exists(),
        "no container root at {}; run scripts/container-rootfs.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

struct Container {
    dir: tempfile::TempDir,
    nspawn: Child,
    pid1: u32,
}

fn put(root: &Path, path: &str, from: Option<&Path>, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    match from {
        Some(src) => {
            std::fs::copy(src, &p).unwrap();
        }
        None => std::fs::write(&p, text).unwrap(),
    }
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Container {
    fn boot(agent_toml: &str) -> Container {
        let base = rootfs();
        let dir = tempfile::Builder::new()
            .prefix("rollcall-ct-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying the container root");

        // The host as bootstrap leaves it: the client at its real paths, the agent and its unit.
        put(
            &root,
            "/opt/BESClient/bin/BESClient",
            Some(&bin("besclient-sim")),
            "",
            0o755,
        );
        put(
            &root,
            "/etc/init.d/besclient",
            None,
            &init_script(Path::new("/")),
            0o755,
        );
        put(
            &root,
            "/etc/opt/BESClient/actionsite.afxm",
            None,
            "simulated masthead\n",
            0o644,
        );
        put(
            &root,
            "/var/opt/BESClient/__BESData/__Global/Logs/.keep",
            None,
            "",
            0o600,
        );
        put(
            &root,
            "/etc/besclient-sim.conf",
            None,
            "interval_ms = 200\n",
            0o644,
        );
        put(
            &root,
            "/usr/bin/rollcall-agent",
            Some(&bin("rollcall-agent")),
            "",
            0o755,
        );
        let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/rollcall-agent.service");
        put(
            &root,
            "/etc/systemd/system/rollcall-agent.service",
            Some(&unit),
            "",
            0o644,
        );
        put(&root, "/etc/rollcall/agent.toml", None, agent_toml, 0o644);

        let log = std::fs::File::create(dir.path().join("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "--register=no",
                "--keep-unit",
                "--private-network",
                "-q",
                "-D",
            ])
            .arg(&root)
            .arg("-b")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn (apt-get install systemd-container)");
        let mut c = Container {
            dir,
            pid1: 0,
            nspawn,
        };
        let deadline = Instant::now() + T;
        while c.pid1 == 0 {
            assert!(
                Instant::now() < deadline,
                "the container never started; console: {}",
                c.console()
            );
            if let Ok(Some(st)) = c.nspawn.try_wait() {
                panic!("systemd-nspawn exited with {st}; console: {}", c.console());
            }
            c.pid1 = child_named(c.nspawn.id(), "systemd").unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until systemd has opened its socket, systemctl answers nothing.
        let mut state = String::new();
        while state.is_empty() || state == "starting" || state == "initializing" {
            assert!(
                Instant::now() < deadline,
                "systemd never came up; console: {}",
                c.console()
            );
            std::thread::sleep(Duration::from_millis(100));
            let o = c.run(&["systemctl", "is-system-running", "--wait"]);
            state = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        }
        assert!(
            state == "running" || state == "degraded",
            "system state {state:?}; console: {}",
            c.console()
        );
        c
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// Runs a command inside the container (all its namespaces), bounded in time.
    fn run(&self, argv: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .args(["nsenter", "-t", &self.pid1.to_string(), "-a"])
            .args(argv)
            .output()
            .unwrap()
    }

    fn sh(&self, script: &str) -> String {
        let o = self.run(&["sh", "-c", script]);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    fn show(&self, unit: &str) -> String {
        self.sh(&format!(
            "systemctl show -p ActiveState,SubState --value {unit} | paste -sd/"
        ))
    }

    /// BESClient PIDs inside the container (its own PID namespace).
    fn client_pids(&self) -> Vec<u32> {
        self.sh("pgrep -x BESClient || true")
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// The agent's journal entries that are events, in order.
    fn events(&self) -> Vec<Value> {
        let o = self.run(&[
            "journalctl",
            "-u",
            "rollcall-agent",
            "-o",
            "json",
            "--no-pager",
        ]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e.get("EVENT").is_some())
            .collect()
    }

    fn wait_event(
        &self,
        what: &str,
        after: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        let journal = || {
            let j = self.sh("journalctl -u rollcall-agent -u besclient --no-pager | tail -40");
            format!("journal:\n{j}")
        };
        wait_for_event(what, after, T, || self.events(), pred, journal)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing the container's init ends its whole PID namespace.
        if self.pid1 != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid1.to_string()])
                .status();
        }
        reap(&mut self.nspawn, Duration::from_secs(10));
    }
}

/// A child of `parent` whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name)
        })
}

fn field<'a>(e: &'a Value, k: &str) -> &'a str {
    e[k].as_str().unwrap_or("")
}

#[test]
fn under_systemd_the_agent_heals_through_systemd_itself() {
    let c = Container::boot(
        "[besclient]\nstale_after = \"3s\"\nverify_within = \"3s\"\n\n[remediation]\nmax_restarts = 20\nbackoff_base = \"1s\"\nbackoff_max = \"2s\"\n",
    );
    // As on a real host: the generated unit, started by systemd.
    let unit = c.sh("systemctl cat besclient.service");
    for line in [
        "Type=forking",
        "Restart=no",
        "RemainAfterExit=yes",
        "GuessMainPID=no",
    ] {
        assert!(
            unit.contains(line),
            "sysv-generator unit lacks {line}:\n{unit}"
        );
    }
    assert_eq!(
        c.run(&["systemctl", "start", "besclient"]).status.code(),
        Some(0)
    );
    let o = c.run(&["systemctl", "start", "rollcall-agent"]);
    assert!(
        o.status.success(),
        "Type=notify start: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(c.show("rollcall-agent"), "active/running");
    wait_until(
        "the agent to supervise via systemd (manager = auto)",
        T,
        || {
            c.sh("journalctl -u rollcall-agent --no-pager")
                .contains("via systemd (exit watched by pidfd)")
        },
    );

    // kill -9: the unit still claims to be active; the agent is not fooled.
    let old = c.client_pids();
    assert_eq!(old.len(), 1);
    c.sh(&format!("kill -9 {}", old[0]));
    let (i, act) = c.wait_event("a restart", 0, |e| {
        field(e, "EVENT") == "action" && field(e, "STEP") == "restart"
    });
    assert_eq!(field(&act, "CHECK"), "besclient");
    assert_eq!(field(&act, "ACTION"), "restart");
    assert!(
        field(&act, "MESSAGE").contains("restart issued via systemd"),
        "{act}"
    );
    let (i, ok) = c.wait_event("verification", i, |e| field(e, "EVENT") == "verified");
    let new = c.client_pids();
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    assert_eq!(
        field(&ok, "PID"),
        new[0].to_string(),
        "journald carries the PID field: {ok}"
    );
    // Started by systemd, in the service's own cgroup: never the agent's child.
    let cg = c.sh(&format!("cat /proc/{}/cgroup", new[0]));
    assert!(cg.contains("/system.slice/besclient.service"), "{cg}");
    let ppid = c.sh(&format!("ps -o ppid= -p {}", new[0]));
    assert_eq!(ppid.trim(), "1", "reparented to systemd, not the agent");

    // SIGSTOP: hung after stale_after, killed, started again by systemd.
    c.sh(&format!("kill -STOP {}", new[0]));
    let (i, _) = c.wait_event("the hang", i, |e| {
        field(e, "EVENT") == "observed"
            && field(e, "MESSAGE").contains("stopped (SIGSTOP) and silent")
    });
    let (i, _) = c.wait_event("the hard restart", i, |e| {
        field(e, "STEP") == "hard_restart" && field(e, "EVENT") == "action"
    });
    let (i, _) = c.wait_event("its verification", i, |e| field(e, "EVENT") == "verified");
    assert!(!c.client_pids().contains(&new[0]));

    // A client that cannot start: systemd reports the failed job; the agent climbs the
    // ladder, says it is exhausted, and keeps trying until the client can start again.
    c.sh("echo 'start = fail' >> /etc/besclient-sim.conf");
    let pid = c.client_pids()[0];
    c.sh(&format!("kill -9 {pid}"));
    let (i, failed) = c.wait_event("a failed verification", i, |e| {
        field(e, "EVENT") == "verify_failed"
    });
    assert!(
        field(&failed, "MESSAGE").contains("besclient.service"),
        "systemctl's words are kept: {failed}"
    );
    let (i, _) = c.wait_event("exhaustion", i, |e| field(e, "EVENT") == "exhausted");
    c.sh("sed -i '/start = fail/d' /etc/besclient-sim.conf");
    c.wait_event("recovery after the backoff", i, |e| {
        field(e, "EVENT") == "verified"
    });
    assert_eq!(c.client_pids().len(), 1);
    assert_eq!(
        c.show("rollcall-agent"),
        "active/running",
        "the agent itself never failed"
    );
}
