//! Test harness: a simulated host (the BESClient simulator installed under a temporary root
//! with its LSB init script) and the real `rollcall-agent` binary driven as a process.

pub mod bmc;
pub mod browser;
pub mod container;
pub mod fuzz;
pub mod sim;
pub mod synthetic;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory holding this build's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

static BUILD: Once = Once::new();

/// Path of a workspace binary, built first (once per process) so it is never stale.
pub fn bin(name: &str) -> PathBuf {
    build_binaries(false);
    bin_dir().join(name)
}

/// Builds every binary of the workspace in this build's profile, once per process. With
/// `show`, says so and lets cargo show its progress (a first build takes minutes); tests
/// build quietly.
pub fn build_binaries(show: bool) {
    BUILD.call_once(|| {
        let dir = bin_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--workspace", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        if show {
            eprintln!(
                "building rollcall-agent, rollcall-collector, rollcall and the simulators: cargo build --workspace --bins{}",
                if release { " --release" } else { "" }
            );
        } else {
            cmd.arg("--quiet");
        }
        // What `cargo run` and `cargo test` set for the program they run is not this
        // build's environment: ring's build script watches CARGO_MANIFEST_DIR, and a changed
        // value would rebuild the TLS stack here and again in the next plain build.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || matches!(
                    k.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                )
            {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
    });
}

/// Waits for `cond` up to `timeout`, polling every 20 ms. Panics with `what` on time-out.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The LSB init script, as the real client ships one: no pidfile in its header, so
/// systemd-sysv-generator makes `besclient.service` with `RemainAfterExit=yes`.
pub fn init_script(root: &Path) -> String {
    lsb_script(&LsbDaemon {
        root,
        provides: "besclient",
        description: "BigFix client (simulated BESClient)",
        name: "BESClient",
        daemon: "opt/BESClient/bin/BESClient",
        pidfile: "var/run/BESClient.pid",
    })
}

/// The LSB init script of the simulated nessusd, as older scanners have one.
pub fn nessusd_init_script(root: &Path) -> String {
    lsb_script(&LsbDaemon {
        root,
        provides: "nessusd",
        description: "Nessus scanner (simulated)",
        name: "nessusd",
        daemon: "opt/nessus/sbin/nessus-service",
        pidfile: "opt/nessus/var/nessus/nessus-service.pid",
    })
}

struct LsbDaemon<'a> {
    root: &'a Path,
    provides: &'a str,
    description: &'a str,
    /// How the script names it in what it prints.
    name: &'a str,
    /// Paths under the root.
    daemon: &'a str,
    pidfile: &'a str,
}

fn lsb_script(d: &LsbDaemon<'_>) -> String {
    let root = d.root.display().to_string();
    let root = root.trim_end_matches('/');
    let LsbDaemon {
        provides,
        description,
        name,
        daemon,
        pidfile,
        ..
    } = d;
    format!(
        r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          {provides}
# Required-Start:    $remote_fs $syslog
# Required-Stop:     $remote_fs $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: {description}
### END INIT INFO
ROOT="{root}"
DAEMON="$ROOT/{daemon}"
PIDFILE="$ROOT/{pidfile}"

pid_running() {{
    [ -n "$1" ] && [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$DAEMON" ]
}}

running() {{
    [ -f "$PIDFILE" ] && pid=$(cat "$PIDFILE") && pid_running "$pid"
}}

case "$1" in
    start)
        if running; then echo "{name} is already running (pid $pid)"; exit 0; fi
        echo "Starting {name}"
        "$DAEMON" || exit 1
        ;;
    stop)
        if running; then
            echo "Stopping {name}"
            kill -TERM "$pid"
            i=0
            while pid_running "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
            pid_running "$pid" && kill -KILL "$pid"
        fi
        rm -f "$PIDFILE"
        ;;
    restart|force-reload)
        "$0" stop
        "$0" start
        ;;
    status)
        if running; then echo "{name} is running (pid $pid)"; exit 0; fi
        echo "{name} is stopped"; exit 3
        ;;
    *)
        echo "Usage: $0 {{start|stop|restart|force-reload|status}}" >&2; exit 2
        ;;
esac
"#
    )
}

/// A host laid out like a real one under a temporary root.
pub struct SimHost {
    dir: tempfile::TempDir,
}

impl Default for SimHost {
    fn default() -> Self {
        SimHost::new()
    }
}

impl SimHost {
    pub fn new() -> SimHost {
        let dir = tempfile::Builder::new()
            .prefix("rollcall-host-")
            .tempdir()
            .expect("tempdir");
        let h = SimHost { dir };
        for d in [
            "opt/BESClient/bin",
            "var/opt/BESClient/__BESData/__Global/Logs",
            "etc/opt/BESClient",
            "etc/init.d",
            "var/run",
            "var/lib/rollcall",
            "etc/rollcall",
        ] {
            std::fs::create_dir_all(h.root().join(d)).expect("layout");
        }
        // A copy, not a link: /proc/PID/exe must read as the client's own path.
        std::fs::copy(bin("besclient-sim"), h.exe()).expect("installing the simulator");
        std::fs::write(
            h.root().join("etc/opt/BESClient/actionsite.afxm"),
            "simulated masthead\n",
        )
        .expect("masthead");
        std::fs::write(
            h.root().join("var/opt/BESClient/besclient.config"),
            "[Software\\BigFix\\EnterpriseClient\\Settings\\Client\\_BESClient_Log_Days]\nvalue = 10\n",
        )
        .expect("besclient.config");
        h.write_exec(&h.init_script(), &init_script(h.root()));
        h.faults("");
        h
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn exe(&self) -> PathBuf {
        self.root().join("opt/BESClient/bin/BESClient")
    }
    pub fn init_script(&self) -> PathBuf {
        self.root().join("etc/init.d/besclient")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root()
            .join("var/opt/BESClient/__BESData/__Global/Logs")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root().join("var/lib/rollcall")
    }

    pub fn write_exec(&self, path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).expect("writing script");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Sets the simulator's faults (`start = fail`, `run = hang`, `interval_ms = 200`...).
    pub fn faults(&self, text: &str) {
        let mut t = String::from("interval_ms = 200\n");
        t.push_str(text);
        std::fs::write(self.root().join("etc/besclient-sim.conf"), t).expect("faults");
    }

    /// Live BESClient processes of this host.
    pub fn daemon_pids(&self) -> Vec<u32> {
        pids_of(&self.exe())
    }

    /// The one running daemon; panics if there is not exactly one.
    pub fn daemon_pid(&self) -> u32 {
        let p = self.daemon_pids();
        assert_eq!(p.len(), 1, "expected one BESClient process, found {p:?}");
        p[0]
    }

    pub fn service(&self, verb: &str) -> std::process::Output {
        Command::new(self.init_script())
            .arg(verb)
            .output()
            .expect("running the init script")
    }

    /// Starts the client through its init script and waits for its first log block.
    pub fn start_client(&self) -> u32 {
        let mut out = self.service("start");
        // Just installed: a process another test thread forked while the copy's write fd was
        // open may still hold it for an instant (ETXTBSY); that passes.
        for _ in 0..20 {
            if out.status.success()
                || !String::from_utf8_lossy(&out.stderr).contains("Text file busy")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = self.service("start");
        }
        assert!(
            out.status.success(),
            "init script start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(
            "the simulated client to start",
            Duration::from_secs(10),
            || self.daemon_pids().len() == 1,
        );
        let today = self
            .log_dir()
            .join(format!("{}.log", chrono::Local::now().format("%Y%m%d")));
        wait_until(
            "the client's first log block",
            Duration::from_secs(10),
            || std::fs::metadata(&today).is_ok_and(|m| m.len() > 0),
        );
        self.daemon_pid()
    }

    /// Writes `agent.toml` for this host: state, paths and the given manager; `extra` is
    /// appended to the `[besclient]` section, `remediation` becomes the `[remediation]` body.
    pub fn agent_config(&self, manager: &str, besclient_extra: &str, remediation: &str) -> PathBuf {
        let script = self.init_script().display().to_string();
        let commands = if manager == "command" {
            format!("start = [\"{script}\", \"start\"]\nstop = [\"{script}\", \"stop\"]\n")
        } else {
            String::new()
        };
        let verify = if besclient_extra.contains("verify_within") {
            ""
        } else {
            "verify_within = \"5s\"\n"
        };
        let text = format!(
            r#"state_dir = "{state}"

[besclient]
manager = "{manager}"
process = "{exe}"
init_script = "{script}"
log_dir = "{logs}"
data_dir = "{data}"
command_timeout = "20s"
{commands}{verify}{besclient_extra}

[remediation]
{remediation}
"#,
            state = self.state_dir().display(),
            exe = self.exe().display(),
            logs = self.log_dir().display(),
            data = self.root().join("var/opt/BESClient").display(),
        );
        let path = self.root().join("etc/rollcall/agent.toml");
        std::fs::write(&path, text).expect("agent.toml");
        path
    }

    /// `[besclient.checkin]` for this host's RelayChain directory, with `extra` settings
    /// (`warn_after = "3s"`...), to append to its agent config.
    pub fn checkin_section(&self, extra: &str) -> String {
        format!(
            "\n[besclient.checkin]\nrelay_chain_dir = \"{}\"\n{extra}\n",
            self.root()
                .join("var/opt/BESClient/__BESData/__Global/RelayChain")
                .display()
        )
    }

    /// Adds `[host]` (name, labels) and `[collector]` to this host's agent config.
    pub fn report_to(
        &self,
        config: &Path,
        c: &Collector,
        name: &str,
        interval: &str,
        labels: &str,
    ) {
        self.report_to_all(config, &[c], name, interval, labels);
    }

    /// As [`SimHost::report_to`], with every collector of `cs` listed (they share a CA and
    /// an enrollment secret).
    pub fn report_to_all(
        &self,
        config: &Path,
        cs: &[&Collector],
        name: &str,
        interval: &str,
        labels: &str,
    ) {
        let urls: Vec<String> = cs.iter().map(|c| c.url.clone()).collect();
        self.report_to_urls(config, &urls, &cs[0].data, name, interval, labels);
    }

    /// As [`SimHost::report_to_all`], with the collectors' `urls` and the data directory
    /// (`data`) whose CA and enrollment secret they share.
    pub fn report_to_urls(
        &self,
        config: &Path,
        urls: &[String],
        data: &Path,
        name: &str,
        interval: &str,
        labels: &str,
    ) {
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        let mut text = std::fs::read_to_string(config).expect("agent.toml");
        text.push_str(&format!(
            "\n[host]\nname = \"{name}\"\nlabels = {{ {labels} }}\n\n[collector]\nurl = [{urls}]\nca_file = \"{ca}\"\nenroll_secret_file = \"{secret}\"\ninterval = \"{interval}\"\n",
            urls = urls.join(", "),
            ca = data.join("ca.pem").display(),
            secret = data.join("enroll.secret").display(),
        ));
        std::fs::write(config, text).expect("agent.toml");
    }

    /// Installs the simulated nessusd (listening on `listen`, compiling plugins for
    /// `loading_ms` after each start) and its init script.
    pub fn install_nessus(&self, listen: &str, loading_ms: u64) {
        std::fs::create_dir_all(self.root().join("opt/nessus/sbin")).expect("layout");
        std::fs::copy(bin("nessus-sim"), self.nessus_exe()).expect("installing nessusd");
        self.write_exec(
            &self.root().join("etc/init.d/nessusd"),
            &nessusd_init_script(self.root()),
        );
        self.nessus_settings(&format!("listen = {listen}\nloading_ms = {loading_ms}\n"));
    }

    pub fn nessus_exe(&self) -> PathBuf {
        self.root().join("opt/nessus/sbin/nessus-service")
    }

    /// `listen`, `loading_ms`, `start = fail`: read by the next start.
    pub fn nessus_settings(&self, text: &str) {
        std::fs::write(self.root().join("etc/nessus-sim.conf"), text).expect("settings");
    }

    /// A fault for the running nessusd: `download-failed`, `hang`, `http500`, `exit`.
    pub fn nessus_fault(&self, fault: &str) {
        std::fs::write(self.root().join("etc/nessus-sim.fault"), fault).expect("fault");
    }

    pub fn nessus_service(&self, verb: &str) -> std::process::Output {
        Command::new(self.root().join("etc/init.d/nessusd"))
            .arg(verb)
            .output()
            .expect("running nessusd's init script")
    }

    /// Live simulated nessusd processes of this host.
    pub fn nessus_pids(&self) -> Vec<u32> {
        pids_of(&self.nessus_exe())
    }

    /// The `[nessusd]` section for this host's agent, asking every `interval`.
    pub fn nessusd_section(&self, listen: &str, interval: &str) -> String {
        format!(
            "\n[nessusd]\nenabled = true\nstatus_url = \"https://{listen}/server/status\"\nmanager = \"sysv\"\ninit_script = \"{script}\"\nprocess = \"{exe}\"\ninstall_dir = \"{dir}\"\ninterval = \"{interval}\"\ntimeout = \"1s\"\nverify_within = \"5s\"\ncommand_timeout = \"20s\"\n",
            script = self.root().join("etc/init.d/nessusd").display(),
            exe = self.nessus_exe().display(),
            dir = self.root().join("opt/nessus").display(),
        )
    }

    /// The agent's last published state (`state_dir/state.json`), if written yet.
    pub fn agent_state(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state_dir().join("state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Live (not zombie) processes running `exe`.
pub fn pids_of(exe: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|t| t == exe) {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            if state != Some('Z') {
                pids.push(pid);
            }
        }
    }
    pids
}

impl Drop for SimHost {
    fn drop(&mut self) {
        // An agent configured under this root still running (a helper's `(SimHost,
        // Agent)` drops the host first) is stopped first: it would restart the client
        // killed below, and its last state write on the way out would re-create the
        // directory after it is removed.
        let root = self.root().display().to_string();
        let agents: Vec<u32> = pids_of(&bin("rollcall-agent"))
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&root))
            })
            .collect();
        for pid in &agents {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && pids_of(&bin("rollcall-agent"))
                .iter()
                .any(|p| agents.contains(p))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.daemon_pids().into_iter().chain(self.nessus_pids()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// `rollcall-agent run` as a child process, its JSON log lines collected as they come.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Agent {
    /// Starts the agent with JSON logs, collected for assertions.
    pub fn start(config: &Path) -> Agent {
        Agent::start_with(
            config,
            "json",
            std::env::var_os("ROLLCALL_TEST_ECHO").is_some(),
        )
    }

    /// `format` is `json` or `text`; with `echo`, every log line is also copied to stderr.
    pub fn start_with(config: &Path, format: &str, echo: bool) -> Agent {
        Agent::spawn(Command::new(bin("rollcall-agent")), config, format, echo)
    }

    /// Starts the agent inside network namespace `netns` (`ip netns exec`, which execs it:
    /// the child is the agent itself).
    pub fn start_in_netns(netns: &str, config: &Path) -> Agent {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(bin("rollcall-agent"));
        Agent::spawn(
            cmd,
            config,
            "json",
            std::env::var_os("ROLLCALL_TEST_ECHO").is_some(),
        )
    }

    fn spawn(mut cmd: Command, config: &Path, format: &str, echo: bool) -> Agent {
        let mut child = cmd
            .args(["run", "--config"])
            .arg(config)
            .args(["--log-format", format])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rollcall-agent");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("agent: {line}");
                }
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }
        });
        Agent { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Structured events (lines with an `event` field), in order.
    pub fn events(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l.get("event").is_some())
            .collect()
    }

    /// Waits for an event matching `pred` whose position is after `after` events; returns
    /// it and its index.
    pub fn wait_event(
        &self,
        what: &str,
        after: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        wait_for_event(what, after, timeout, || self.events(), pred, || self.log())
    }

    /// Waits for the agent's first log line saying it supervises a process.
    pub fn wait_supervising(&self) {
        let says = |l: &Value| {
            let text = l["msg"].as_str().or(l.as_str());
            text.is_some_and(|m| m.contains("supervising BESClient"))
        };
        let timeout = Duration::from_secs(20);
        wait_for_event(
            "supervising",
            0,
            timeout,
            || self.lines(),
            says,
            || self.log(),
        );
    }

    fn log(&self) -> String {
        let lines: Vec<String> = self.lines().iter().map(Value::to_string).collect();
        format!("agent log:\n{}", lines.join("\n"))
    }
}

/// The first of `events()` past index `after` that matches `pred`, polling every 20 ms for up
/// to `timeout`; a time-out panics naming `what`, followed by `context()`.
pub fn wait_for_event(
    what: &str,
    after: usize,
    timeout: Duration,
    events: impl Fn() -> Vec<Value>,
    pred: impl Fn(&Value) -> bool,
    context: impl Fn() -> String,
) -> (usize, Value) {
    let deadline = Instant::now() + timeout;
    loop {
        let events = events();
        if let Some((i, e)) = events.iter().enumerate().skip(after).find(|(_, e)| pred(e)) {
            return (i, e.clone());
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; {}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `event` and `action`/`step` of an event line, for matching.
pub fn is(e: &Value, event: &str) -> bool {
    e["event"] == event
}

pub fn step_is(e: &Value, event: &str, step: &str) -> bool {
    e["event"] == event && e["step"] == step
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        reap(&mut self.child, Duration::from_secs(5));
    }
}

/// Waits up to `within` for `child` to exit, then kills it; either way it is reaped.
pub fn reap(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub use rollcall_collector::testing::Collector;

/// The built `rollcall-collector`, started through the workspace's one harness, and the
/// `rollcall` CLI pointed at it.
pub trait Start {
    /// `listen` may be `127.0.0.1:0`; `grace` as the flag takes it (`2s`).
    fn start(data: &Path, listen: &str, grace: &str) -> Collector;
    fn start_with(data: &Path, listen: &str, grace: &str, extra: &[&str]) -> Collector;
    /// The `rollcall` CLI with the admin token; its stdout.
    fn cli(&self, args: &[&str]) -> String;
}

impl Start for Collector {
    fn start(data: &Path, listen: &str, grace: &str) -> Collector {
        Collector::start_with(data, listen, grace, &[])
    }

    fn start_with(data: &Path, listen: &str, grace: &str, extra: &[&str]) -> Collector {
        Collector::spawn(&bin("rollcall-collector"), data, listen, grace, extra)
    }

    fn cli(&self, args: &[&str]) -> String {
        let token = std::fs::read_to_string(self.data.join("admin.token")).expect("admin.token");
        let o = Command::new(bin("rollcall"))
            .args(args)
            .env("ROLLCALL_URL", &self.url)
            .env("ROLLCALL_CA", self.data.join("ca.pem"))
            .env("ROLLCALL_TOKEN", token.trim())
            .output()
            .expect("running rollcall");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// A host as the collector shows it (`GET /api/v1/hosts/{name}`), or `Null`.
pub fn host_view(admin: &rollcall_collector::client::Client, name: &str) -> Value {
    admin
        .get(&format!("/api/v1/hosts/{name}"))
        .map(|r| r.body)
        .unwrap_or(Value::Null)
}

/// Asserts that `host` (the `host` object of a host's view) is not flagged: `up`, or
/// `late`, which a busy machine may catch a few milliseconds after a 1 s interval and
/// which is not a flag. `who` names it in the failure.
pub fn assert_not_flagged(host: &Value, who: &str) {
    assert_eq!(host["flagged"], false, "{who}: {host}");
    assert!(
        host["state"] == "up" || host["state"] == "late",
        "{who}: {host}"
    );
}

/// A simulated host whose running client is supervised by an agent reporting to `c` every
/// `interval`, with `labels` (TOML inline-table contents) in `[host]`.
pub fn reporting_host(c: &Collector, name: &str, interval: &str, labels: &str) -> (SimHost, Agent) {
    reporting_host_to(&[c], name, interval, labels)
}

/// As [`reporting_host`], listing every collector of `cs`.
pub fn reporting_host_to(
    cs: &[&Collector],
    name: &str,
    interval: &str,
    labels: &str,
) -> (SimHost, Agent) {
    let urls: Vec<String> = cs.iter().map(|c| c.url.clone()).collect();
    reporting_host_at(&urls, &cs[0].data, name, interval, labels)
}

/// As [`reporting_host_to`], with the collectors' `urls` and the data directory `data`
/// whose CA and enrollment secret they share.
pub fn reporting_host_at(
    urls: &[String],
    data: &Path,
    name: &str,
    interval: &str,
    labels: &str,
) -> (SimHost, Agent) {
    let h = SimHost::new();
    h.faults("interval_ms = 200\n");
    h.start_client();
    let config = h.agent_config("sysv", "", "");
    h.report_to_urls(&config, urls, data, name, interval, labels);
    let a = Agent::start(&config);
    a.wait_supervising();
    (h, a)
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub use rollcall_collector::testing::{arg, Tmpfs};
