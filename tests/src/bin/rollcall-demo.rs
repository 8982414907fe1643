//! The README's first command: a collector and an agent supervising a simulated BESClient
//! in a temporary directory, on loopback, with embedded defaults; the demo breaks the
//! client the ways real ones break, then stops the agent itself, and shows each time what
//! an SRE sees with the `rollcall` CLI.
//!
//!   cargo run --release -p rollcall-tests --bin rollcall-demo [-- --forever]

use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_tests::{bin, host_view, wait_until, Agent, Collector, SimHost, Start};

fn say(msg: &str) {
    eprintln!("\x1b[1mdemo:\x1b[0m {msg}");
}

fn wait_healed(h: &SimHost, old: u32, started: Instant) -> u32 {
    wait_until(
        "the agent to heal the client",
        Duration::from_secs(60),
        || {
            h.daemon_pids().len() == 1
                && h.daemon_pid() != old
                && h.agent_state()
                    .is_some_and(|s| s["state"]["besclient"]["status"] == "running")
        },
    );
    let new = h.daemon_pid();
    say(&format!(
        "healed: new BESClient pid {new}, verified {} ms after the fault",
        started.elapsed().as_millis()
    ));
    new
}

/// `rollcall ARGS` against the demo's collector, its output shown.
fn cli(c: &Collector, args: &[&str]) {
    let token = std::fs::read_to_string(c.data.join("admin.token")).expect("admin.token");
    say(&format!("rollcall {}", args.join(" ")));
    let out = Command::new(bin("rollcall"))
        .args(args)
        .env("ROLLCALL_URL", &c.url)
        .env("ROLLCALL_CA", c.data.join("ca.pem"))
        .env("ROLLCALL_TOKEN", token.trim())
        .output()
        .expect("rollcall");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

fn main() {
    let forever = std::env::args().any(|a| a == "--forever");
    // The binaries it runs, built before anything starts, with cargo's progress shown.
    rollcall_tests::build_binaries(true);
    let data = tempfile::tempdir().expect("temporary directory");
    say("starting rollcall-collector on 127.0.0.1 (no config: it makes its CA, certificate and tokens)");
    let c = Collector::start(data.path(), "127.0.0.1:0", "5s");
    say(&format!(
        "collector at {} (grace 5s), data in {}",
        c.url,
        c.data.display()
    ));
    let h = SimHost::new();
    h.faults("interval_ms = 1000\n");
    let mut pid = h.start_client();
    let config = h.agent_config("sysv", "stale_after = \"10s\"\nverify_within = \"10s\"", "");
    h.report_to(
        &config,
        &c,
        "demo-host",
        "5s",
        "env = \"demo\", region = \"local\", zone = \"local-1\", role = \"worker\"",
    );
    say(&format!("simulated host under {}", h.root().display()));
    say(&format!(
        "BESClient running as pid {pid}, logging to {}",
        h.log_dir().display()
    ));
    say(&format!(
        "starting rollcall-agent run --config {}",
        config.display()
    ));
    let agent = Agent::start_with(&config, "text", true);
    agent.wait_supervising();
    let admin = c.admin();
    wait_until(
        "demo-host up at the collector",
        Duration::from_secs(30),
        || host_view(&admin, "demo-host")["host"]["state"] == "up",
    );
    cli(&c, &["hosts"]);

    std::thread::sleep(Duration::from_secs(3));
    say(&format!("kill -9 {pid}  (the client dies)"));
    let t = Instant::now();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    pid = wait_healed(&h, pid, t);

    std::thread::sleep(Duration::from_secs(3));
    say(&format!(
        "kill -STOP {pid}  (the client hangs: alive, silent; stale_after is 10s)"
    ));
    let t = Instant::now();
    Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill");
    pid = wait_healed(&h, pid, t);

    std::thread::sleep(Duration::from_secs(1));
    cli(&c, &["host", "demo-host"]);

    say(&format!(
        "kill -STOP {}  (the agent itself freezes: the collector must notice)",
        agent.pid()
    ));
    let t = Instant::now();
    Command::new("kill")
        .args(["-STOP", &agent.pid().to_string()])
        .status()
        .expect("kill");
    wait_until("demo-host silent", Duration::from_secs(30), || {
        host_view(&admin, "demo-host")["host"]["state"] == "silent"
    });
    say(&format!(
        "flagged silent {:.1} s after the agent stopped (interval 5s + grace 5s)",
        t.elapsed().as_secs_f64()
    ));
    cli(&c, &["silent"]);
    Command::new("kill")
        .args(["-CONT", &agent.pid().to_string()])
        .status()
        .expect("kill");
    wait_until("demo-host up again", Duration::from_secs(30), || {
        host_view(&admin, "demo-host")["host"]["state"] == "up"
    });
    say("kill -CONT: up again, the silence kept in its history");
    cli(&c, &["summary"]);

    say("rollcall-agent doctor:");
    let out = Command::new(bin("rollcall-agent"))
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .expect("doctor");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));

    if forever {
        let token = std::fs::read_to_string(c.data.join("admin.token")).unwrap_or_default();
        say(&format!("still running; try `kill -9 {pid}` or `kill -STOP {pid}` from another shell, and watch with:\n  export ROLLCALL_URL={} ROLLCALL_CA={} ROLLCALL_TOKEN={}\n  {} host demo-host\nor in a browser at {}/ (sign in with that token; the certificate is the demo's own CA's)\nCtrl-C ends the demo", c.url, c.data.join("ca.pem").display(), token.trim(), bin("rollcall").display(), c.url));
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    say("done (run with -- --forever to keep it running and break it yourself)");
    drop(agent);
}
