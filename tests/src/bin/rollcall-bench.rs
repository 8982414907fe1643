//! Figures for the agent, printed, never asserted (machines are noisy):
//!
//!   rollcall-bench latency [--kills 50] [--monit-kills 10]
//!       kill -9 of the simulated BESClient → restart issued, → verified healthy (from the
//!       agent's own event times), and → new process running, for the agent and, in the same
//!       run, for Debian's monit with a 1-second cycle.
//!   rollcall-bench footprint [--seconds 600]
//!       RSS and CPU of the agent and of monit, each supervising its own healthy simulated
//!       client, side by side for the same time.
//!
//!   rollcall-bench report [--kills 15] [--gap 10]
//!       kill -9 of the simulated BESClient → the collector holding the agent's "restart
//!       issued" event, and → the collector showing the client running again; the agent
//!       reports every 60 s, so only its on-change heartbeats can bring the news.
//!
//! All are bounded in count and time and touch nothing outside their temporary roots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use rollcall_tests::{arg, is, step_is, wait_until, Agent, SimHost};

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<44} n={:<3} p50={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms",
        ms.len(),
        pct(&ms, 50.0),
        pct(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

/// SIGKILL by syscall: spawning kill(1) would add its own start-up to every figure.
fn kill9(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

fn ts(e: &serde_json::Value) -> DateTime<Utc> {
    e["ts"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn since_ms(t0: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    (t - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// Waits (polling every millisecond) for a running client other than `old`.
fn new_client(h: &SimHost, old: u32, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = h.daemon_pids();
        if pids.len() == 1 && pids[0] != old {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("no new client within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn monit_config(h: &SimHost, dir: &Path) -> Result<PathBuf> {
    let cfg = dir.join("monitrc");
    let text = format!(
        "set daemon 1\nset logfile {d}/monit.log\nset idfile {d}/monit.id\nset statefile {d}/monit.state\nset pidfile {d}/monit.pid\n\
         check process besclient with pidfile \"{pidfile}\"\n  start program = \"{init} start\" with timeout 20 seconds\n  stop program = \"{init} stop\"\n",
        d = dir.display(),
        pidfile = h.root().join("var/run/BESClient.pid").display(),
        init = h.init_script().display(),
    );
    std::fs::write(&cfg, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600))?;
    Ok(cfg)
}

struct Monit(Child);

impl Monit {
    fn start(h: &SimHost) -> Result<(Monit, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let cfg = monit_config(h, dir.path())?;
        let child = Command::new("monit")
            .args(["-I", "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting monit; install it with: apt-get install -y monit")?;
        Ok((Monit(child), dir))
    }
}

impl Drop for Monit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn latency() -> Result<()> {
    let kills = arg("--kills", 50);
    let monit_kills = arg("--monit-kills", 10);
    let h = SimHost::new();
    h.faults("interval_ms = 1000\n");
    let mut pid = h.start_client();
    let agent = Agent::start(&h.agent_config(
        "sysv",
        "stale_after = \"1h\"\nverify_within = \"10s\"",
        "max_restarts = 1000\nper = \"1h\"",
    ));
    agent.wait_supervising();

    let (mut issued, mut verified, mut running) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(300));
        let after = agent.events().len();
        let t0: DateTime<Utc> = SystemTime::now().into();
        let t0i = Instant::now();
        kill9(pid);
        let up = new_client(&h, pid, Duration::from_secs(30))?;
        running.push((up - t0i).as_secs_f64() * 1000.0);
        let (i, act) = agent.wait_event("restart issued", after, Duration::from_secs(30), |e| {
            step_is(e, "action", "restart")
        });
        let (_, ok) = agent.wait_event("verified", i, Duration::from_secs(30), |e| {
            is(e, "verified")
        });
        issued.push(since_ms(t0, ts(&act)));
        verified.push(since_ms(t0, ts(&ok)));
        pid = h.daemon_pid();
    }
    println!("rollcall-agent, sysv manager, {kills} kills of the simulated BESClient:");
    summary("  kill -9 -> restart issued", issued);
    summary("  kill -9 -> verified healthy (log written)", verified);
    summary(
        "  kill -9 -> new BESClient process running",
        running.clone(),
    );
    drop(agent);

    if monit_kills == 0 {
        return Ok(());
    }
    let m = SimHost::new();
    m.faults("interval_ms = 1000\n");
    let mut pid = m.start_client();
    let (_monit, dir) = Monit::start(&m)?;
    std::thread::sleep(Duration::from_secs(3));
    let mut monit_running = Vec::new();
    for _ in 0..monit_kills {
        std::thread::sleep(Duration::from_millis(1500));
        let t0i = Instant::now();
        kill9(pid);
        let up = new_client(&m, pid, Duration::from_secs(60))?;
        monit_running.push((up - t0i).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
        let pids = m.daemon_pids();
        if pids.len() != 1 {
            let log = std::fs::read_to_string(dir.path().join("monit.log")).unwrap_or_default();
            bail!(
                "after monit's restart {} clients run: {pids:?}; monit.log:\n{log}",
                pids.len()
            );
        }
        pid = pids[0];
    }
    println!("monit 'set daemon 1', same client and init script, {monit_kills} kills:");
    summary(
        "  kill -9 -> new BESClient process running",
        monit_running.clone(),
    );
    let (mut a, mut b) = (running, monit_running);
    a.sort_by(|x, y| x.total_cmp(y));
    b.sort_by(|x, y| x.total_cmp(y));
    println!(
        "ratio monit/agent, p50 kill -> running: {:.0}x",
        pct(&b, 50.0) / pct(&a, 50.0)
    );
    Ok(())
}

/// (RSS in KiB, CPU time in ns over all its threads) of a process. `schedstat` counts
/// nanoseconds; clock ticks (10 ms) are too coarse for an idle daemon.
fn sample(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    let mut ns = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let st = std::fs::read_to_string(t?.path().join("schedstat"))?;
        ns += st
            .split_whitespace()
            .next()
            .context("schedstat")?
            .parse::<u64>()?;
    }
    Ok((rss, ns))
}

/// Bytes in a host's log directory and RelayChain directory.
fn logged_bytes(h: &SimHost) -> u64 {
    let chain = h
        .root()
        .join("var/opt/BESClient/__BESData/__Global/RelayChain");
    [h.log_dir(), chain]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn footprint() -> Result<()> {
    let seconds = arg("--seconds", 600);
    // The client's pace: one log block a second by default; faster to measure the cost of
    // reading (error lines, check-in lines) per MiB.
    let interval_ms = arg("--interval-ms", 1000);
    let a = SimHost::new();
    a.faults(&format!("interval_ms = {interval_ms}\n"));
    a.start_client();
    let agent = Agent::start(&a.agent_config("sysv", "stale_after = \"1h\"", ""));
    agent.wait_supervising();
    let m = SimHost::new();
    m.faults(&format!("interval_ms = {interval_ms}\n"));
    m.start_client();
    let (monit, _dir) = Monit::start(&m)?;
    let monit_pid = monit.0.id();
    wait_until("monit to settle", Duration::from_secs(10), || {
        sample(monit_pid).is_ok()
    });
    std::thread::sleep(Duration::from_secs(5));

    let (_, a0) = sample(agent.pid())?;
    let (_, m0) = sample(monit_pid)?;
    let bytes0 = logged_bytes(&a);
    let start = Instant::now();
    let (mut a_rss, mut m_rss) = (Vec::new(), Vec::new());
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5).min(Duration::from_secs(seconds)));
        a_rss.push(sample(agent.pid())?.0);
        m_rss.push(sample(monit_pid)?.0);
    }
    let el = start.elapsed().as_secs_f64();
    let (_, a1) = sample(agent.pid())?;
    let (_, m1) = sample(monit_pid)?;
    let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    let cpu = |t0: u64, t1: u64| (t1 - t0) as f64 / 1e9 / el * 100.0;
    let read_mib = logged_bytes(&a).saturating_sub(bytes0) as f64 / (1 << 20) as f64;
    println!(
        "{el:.0} s supervising a healthy simulated BESClient (a log block every {interval_ms} ms, a report and so a check-in each; {:.2} MiB of new log lines):",
        read_mib
    );
    println!(
        "  rollcall-agent  RSS max {:>6} KiB  CPU {:.4} % of one core ({:.1} ms)",
        max(&a_rss),
        cpu(a0, a1),
        (a1 - a0) as f64 / 1e6
    );
    println!(
        "  monit (1 s)     RSS max {:>6} KiB  CPU {:.4} % of one core ({:.1} ms)",
        max(&m_rss),
        cpu(m0, m1),
        (m1 - m0) as f64 / 1e6
    );
    println!(
        "  RSS ratio agent/monit: {:.2}",
        max(&a_rss) as f64 / max(&m_rss) as f64
    );
    if read_mib > 0.0 {
        println!(
            "  rollcall-agent CPU per MiB of new log lines read: {:.0} ms (fixed costs included)",
            (a1 - a0) as f64 / 1e6 / read_mib
        );
    }
    let restarts = agent.events().iter().filter(|e| is(e, "action")).count();
    println!("  agent actions during the run: {restarts} (expected 0)");
    Ok(())
}

fn report() -> Result<()> {
    let kills = arg("--kills", 15);
    let gap = arg("--gap", 10);
    let data = tempfile::tempdir()?;
    use rollcall_tests::Start;
    let c = rollcall_tests::Collector::start(data.path(), "127.0.0.1:0", "120s");
    let admin = c.admin();
    let h = SimHost::new();
    h.faults("interval_ms = 200\n");
    h.start_client();
    // The agent's own budget (5 restarts an hour by default) would hold a series back.
    let config = h.agent_config("sysv", "", "max_restarts = 1000\nper = \"1h\"");
    h.report_to(&config, &c, "bench-host", "60s", "env = \"bench\"");
    let agent = Agent::start(&config);
    agent.wait_supervising();
    let view = || rollcall_tests::host_view(&admin, "bench-host");
    wait_until(
        "bench-host at the collector",
        Duration::from_secs(30),
        || view()["agent_state"]["besclient"]["status"] == "running",
    );
    let (mut to_event, mut to_running) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        // The newest restart the collector holds (the view shows only recent events).
        let restarts = |v: &serde_json::Value| {
            v["events"].as_array().map_or(0, |e| {
                e.iter()
                    .filter(|e| e["action"] == "restart")
                    .filter_map(|e| e["seq"].as_u64())
                    .max()
                    .unwrap_or(0)
            })
        };
        let before = restarts(&view());
        let pid = h.daemon_pid();
        let t = Instant::now();
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        let mut seen_event = None;
        loop {
            let v = view();
            if seen_event.is_none() && restarts(&v) > before {
                seen_event = Some(t.elapsed());
            }
            let b = &v["agent_state"]["besclient"];
            if seen_event.is_some()
                && b["status"] == "running"
                && b["pid"].as_u64() != Some(pid as u64)
            {
                to_running.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t.elapsed() > Duration::from_secs(20) {
                bail!(
                    "the collector did not see kill {} (pid {pid}) healed within 20 s; it shows {}",
                    to_running.len() + 1,
                    v["agent_state"]["besclient"]
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        to_event.push(seen_event.unwrap_or_default().as_secs_f64() * 1000.0);
        // The collector's per-host budget is a burst of 20 then one per 3 s, and a kill
        // costs about three heartbeats: a gap under 10 s spends it, and then shows how the
        // agent waits out the collector's Retry-After.
        std::thread::sleep(Duration::from_secs(gap));
    }
    println!(
        "{kills} kills {gap} s apart, agent reporting every 60 s, collector on loopback, polled every 2 ms:"
    );
    summary("kill -9 -> collector has \"restart issued\"", to_event);
    summary(
        "kill -9 -> collector shows BESClient running again",
        to_running,
    );
    drop(agent);
    Ok(())
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("latency") => latency(),
        Some("footprint") => footprint(),
        Some("report") => report(),
        _ => bail!("usage: rollcall-bench latency [--kills 50] [--monit-kills 10] | footprint [--seconds 600] [--interval-ms 1000] | report [--kills 15] [--gap 10]"),
    }
}
