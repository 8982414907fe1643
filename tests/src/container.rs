//! A Debian bookworm booted with systemd-nspawn: a real systemd, journald and
//! sysv-generator, for the tests that need them. Needs root and the cached root filesystem
//! from `scripts/container-rootfs.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, init_script, reap, wait_for_event};

pub const T: Duration = Duration::from_secs(60);

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

pub struct Container {
    dir: tempfile::TempDir,
    nspawn: Child,
    pid1: u32,
}

pub fn put(root: &Path, path: &str, from: Option<&Path>, text: &str, mode: u32) {
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
    /// Boots a copy of the cached root after `setup` has put files into it.
    pub fn boot(setup: impl FnOnce(&Path)) -> Container {
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

        setup(&root);

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

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// Runs a command inside the container (all its namespaces), bounded in time.
    pub fn run(&self, argv: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .args(["nsenter", "-t", &self.pid1.to_string(), "-a"])
            .args(argv)
            .output()
            .unwrap()
    }

    pub fn sh(&self, script: &str) -> String {
        let o = self.run(&["sh", "-c", script]);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    pub fn show(&self, unit: &str) -> String {
        self.sh(&format!(
            "systemctl show -p ActiveState,SubState --value {unit} | paste -sd/"
        ))
    }

    /// BESClient PIDs inside the container (its own PID namespace).
    pub fn client_pids(&self) -> Vec<u32> {
        self.sh("pgrep -x BESClient || true")
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// The agent's journal entries that are events, in order.
    pub fn events(&self) -> Vec<Value> {
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

    pub fn wait_event(
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

/// The simulated BESClient at its real paths, with its LSB init script (so that
/// systemd-sysv-generator makes `besclient.service`), logging every 200 ms.
pub fn install_besclient_sim(root: &Path) {
    put(
        root,
        "/opt/BESClient/bin/BESClient",
        Some(&bin("besclient-sim")),
        "",
        0o755,
    );
    put(
        root,
        "/etc/init.d/besclient",
        None,
        &init_script(Path::new("/")),
        0o755,
    );
    put(
        root,
        "/etc/opt/BESClient/actionsite.afxm",
        None,
        "simulated masthead\n",
        0o644,
    );
    put(
        root,
        "/var/opt/BESClient/__BESData/__Global/Logs/.keep",
        None,
        "",
        0o600,
    );
    put(
        root,
        "/etc/besclient-sim.conf",
        None,
        "interval_ms = 200\n",
        0o644,
    );
}
