//! The README's first command: rollcall-agent supervising a simulated BESClient in a
//! temporary directory, while this demo breaks the client the ways real ones break.
//!
//!   cargo run --release -p rollcall-tests --bin rollcall-demo [-- --forever]

use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_tests::{bin, wait_until, Agent, SimHost};

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

fn main() {
    let forever = std::env::args().any(|a| a == "--forever");
    let h = SimHost::new();
    h.faults("interval_ms = 1000\n");
    let mut pid = h.start_client();
    let config = h.agent_config("sysv", "stale_after = \"10s\"\nverify_within = \"10s\"", "");
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

    std::thread::sleep(Duration::from_secs(2));
    say("rollcall-agent doctor:");
    let out = Command::new(bin("rollcall-agent"))
        .args(["doctor", "--config"])
        .arg(&config)
        .output()
        .expect("doctor");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));

    if forever {
        say(&format!("still supervising; try `kill -9 {pid}` or `kill -STOP {pid}` from another shell; Ctrl-C ends the demo"));
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    say("done (run with -- --forever to keep it running and break it yourself)");
    drop(agent);
}
