//! Figures for collector outages, printed, never asserted (machines are noisy):
//!
//!   outage-bench spool [--minutes 60] [--storm 20000]
//!       The agent's reporter (the real one, in this process) loses its collector for an
//!       hour of simulated time at the default 60 s interval; the hour passes on tokio's
//!       paused clock, which the reporter also reads through its injected `Clock`. Twice:
//!       a client killed and healed every minute (6 events a minute), then an event storm
//!       (`--storm` events over the hour). Prints the spool's files, the process's memory,
//!       and, with the real collector back on the same port, the time until every spooled
//!       event is acknowledged.
//!   outage-bench reconnect [--hosts 10000] [--interval 60] [--outage 180]
//!       That many simulated agents, each with the agent's own `Schedule` (splay, jittered
//!       backoff, Retry-After) and its own credential, send heartbeats over the agent's
//!       `Link` to a real collector; the collector is killed for `--outage` seconds and
//!       started again. Prints the requests per second the collector answered: the steady
//!       rate before, and the peak after it returns.
//!
//! Loopback only, bounded in count and time.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use rollcall_agent::clock::Clock;
use rollcall_agent::config::Config;
use rollcall_agent::events::{EventLog, Fields};
use rollcall_agent::identity::HostIdentity;
use rollcall_agent::report::link::{Failure, Link};
use rollcall_agent::report::schedule::Schedule;
use rollcall_agent::report::{self, Reporter};
use rollcall_proto::{
    AgentState, EnrollRequest, EnrollResponse, EventKind, Heartbeat, HeartbeatAck, Identity,
    PROTO_VERSION,
};
use rollcall_tests::{arg, free_port, Collector, Start};
use serde_json::json;

/// Wall time read from tokio's clock: paused, it jumps with `sleep`, so an hour passes in
/// moments and the reporter's schedule sees it pass.
#[derive(Clone)]
struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base
            + chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::zero())
    }
}

/// An agent state as the supervisor publishes it.
fn agent_state(at: DateTime<Utc>, status: &str, pid: u32) -> AgentState {
    let health = if status == "running" {
        "ok"
    } else {
        "critical"
    };
    serde_json::from_value(json!({
        "proto_version": PROTO_VERSION,
        "agent_version": "bench",
        "at": at,
        "besclient": {
            "health": health, "status": status,
            "reason": format!("BESClient {status} (pid {pid})"),
            "since": at, "pid": pid, "manager": "systemd",
            "unit_state": "active (exited)",
            "log": {"dir": "/var/opt/BESClient/__BESData/__Global/Logs", "dir_exists": true,
                    "newest": "20261122.log", "last_write": at, "stale_after_secs": 900,
                    "stale": false},
            "errors": {"count": 0},
            "disk": null,
            "remediation": {"enabled": true, "step": null, "exhausted_rounds": 0,
                            "attempts_in_window": 1, "flapping": false}
        }
    }))
    .expect("agent state")
}

/// The six events of one kill healed, worded as the agent words them.
/// One kill healed, as the supervisor tells it: six events, numbered by `log`; the last
/// sequence number.
fn kill_events(log: &mut EventLog, at: DateTime<Utc>, pid: u32) -> u64 {
    let lines = [
        (EventKind::Observed, None, format!("BESClient died (pid {pid}); pidfd readable, exit seen within 2 ms")),
        (EventKind::Action, Some("restart"), "restart issued: /etc/init.d/besclient restart (step restart, attempt 1 of 5 this hour)".to_owned()),
        (EventKind::Observed, None, format!("BESClient started (pid {})", pid + 1)),
        (EventKind::Observed, None, "BESClient log 20261122.log written after the restart".to_owned()),
        (EventKind::Verified, Some("restart"), format!("verified: BESClient running (pid {}) and writing its log, 412 ms after the restart", pid + 1)),
        (EventKind::Observed, None, "BESClient healthy again after 0.4s down".to_owned()),
    ];
    let mut seq = 0;
    for (kind, action, message) in lines {
        let f = Fields {
            action,
            step: action,
            pid: Some(pid),
            level: None,
        };
        seq = log.emit(at, "besclient", kind, message, f);
    }
    seq
}

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn acked(spool: &Path) -> u64 {
    std::fs::read_to_string(spool.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["acked"].as_u64())
        .unwrap_or(0)
}

fn spool_run(label: &str, minutes: u64, per_minute: u64) -> Result<()> {
    let data = tempfile::tempdir()?;
    let state_dir = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut c = Collector::start(data.path(), &listen, "120s");
    let text = format!(
        "state_dir = \"{state}\"\n[host]\nname = \"spool-bench\"\n[collector]\nurl = \"{url}\"\nca_file = \"{ca}\"\nenroll_secret_file = \"{secret}\"\n",
        state = state_dir.path().display(),
        url = c.url,
        ca = data.path().join("ca.pem").display(),
        secret = data.path().join("enroll.secret").display(),
    );
    let config = Config::parse(Path::new("outage-bench.toml"), &text)?;
    let spool_dir = config.state_dir.join("spool");
    let me = HostIdentity::load(&config.state_dir, Some("spool-bench"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let clock = TokioClock {
            base: Utc::now(),
            start: tokio::time::Instant::now(),
        };
        let (reporter, first) = Reporter::new(&config, me, clock.clone(), Default::default())?;
        let (outlet, inlet) = report::channel(first);
        let mut log = outlet.event_log();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(reporter.run(inlet, async {
            let _ = stopped.await;
        }));
        let mut pid = 4000;
        outlet.state.send_replace(Some(agent_state(clock.now(), "running", pid)));
        let mut seq = kill_events(&mut log, clock.now(), pid);
        let t = Instant::now();
        while acked(&spool_dir) < seq {
            if t.elapsed() > Duration::from_secs(15) {
                bail!("the reporter did not deliver its first events within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.kill9();
        let (rss0, hwm0) = (kib("VmRSS:"), kib("VmHWM:"));
        tokio::time::pause();
        let mut sent = 0u64;
        for _ in 0..minutes {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let mut n = 0;
            while n < per_minute {
                pid += 2;
                seq = kill_events(&mut log, clock.now(), pid);
                n += 6;
                outlet
                    .state
                    .send_replace(Some(agent_state(clock.now(), "running", pid + 1)));
                tokio::task::yield_now().await;
            }
            sent += n;
        }
        // Let the reporter take in the last minute's events.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let simulated = clock.now() - clock.base;
        let files = dir_bytes(&spool_dir);
        let lines = std::fs::read_to_string(spool_dir.join("events.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(spool_dir.join("meta.json")).unwrap_or_default(),
        )
        .unwrap_or_default();
        println!("{label}:");
        println!(
            "  outage of {} simulated ({} real): {sent} events while the collector was down",
            humantime_secs(simulated.num_seconds()),
            humantime_secs(t.elapsed().as_secs() as i64)
        );
        println!(
            "  spool: {files} bytes on disk ({:.1} KiB), {lines} lines in events.jsonl (dropped lines are compacted away in batches); dropped {} (limits {} events, {} bytes)",
            files as f64 / 1024.0,
            meta["dropped"],
            config.collector.as_ref().map_or(0, |c| c.spool_max_events),
            config.collector.as_ref().map_or(0, |c| c.spool_max_bytes),
        );
        println!(
            "  process memory: RSS {rss0} KiB before the outage, {} KiB after (peak {} KiB, {hwm0} KiB before)",
            kib("VmRSS:"),
            kib("VmHWM:")
        );
        tokio::time::resume();
        let back = Instant::now();
        let c = Collector::start(data.path(), &listen, "120s");
        let started = back.elapsed();
        let before = acked(&spool_dir);
        let mut first_delivery = None;
        while acked(&spool_dir) < seq {
            if first_delivery.is_none() && acked(&spool_dir) > before {
                first_delivery = Some(back.elapsed());
            }
            if back.elapsed() > Duration::from_secs(600) {
                bail!("the spool did not drain within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained = back.elapsed();
        let accepted = metric(&c, "rollcall_heartbeats_accepted_total")?;
        let limited = metric(&c, "rollcall_requests_rejected_total{reason=\"rate_limited\"}")?;
        println!(
            "  collector back (listening after {:.1} s): first events acknowledged after {:.1} s, all after {:.1} s; {accepted} heartbeats accepted, {limited} answered 429",
            started.as_secs_f64(),
            first_delivery.unwrap_or(drained).as_secs_f64(),
            drained.as_secs_f64()
        );
        println!(
            "  spool after draining: {} bytes on disk",
            dir_bytes(&spool_dir)
        );
        let _ = stop.send(());
        let _ = task.await;
        drop(c);
        anyhow::Ok(())
    })
}

fn humantime_secs(s: i64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn metric(c: &Collector, name: &str) -> Result<u64> {
    let body = c.admin().get("/metrics")?.body;
    let text = body.as_str().unwrap_or_default().to_owned();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

fn spool() -> Result<()> {
    let minutes = arg("--minutes", 60);
    let storm = arg("--storm", 20_000);
    spool_run(
        "a client killed and healed every minute, default limits",
        minutes,
        6,
    )?;
    spool_run(
        &format!("an event storm ({storm} events over the outage), default limits"),
        minutes,
        storm.div_ceil(minutes.max(1)),
    )
}

/// Requests the collector answered, per second since the start.
struct Seen {
    start: Instant,
    per_second: Vec<AtomicU64>,
}

impl Seen {
    fn count(&self) {
        let s = self.start.elapsed().as_secs() as usize;
        if let Some(c) = self.per_second.get(s) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn at(&self, s: usize) -> u64 {
        self.per_second
            .get(s)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

async fn agent(
    link: Arc<Link>,
    host: String,
    identity: Identity,
    credential: String,
    interval: Duration,
    seen: Arc<Seen>,
    until: Instant,
) {
    let seed = getrandom_u64();
    let mut schedule = Schedule::new(interval, &format!("{host}/{identity}"), seed);
    let clock = rollcall_agent::clock::SystemClock;
    let mut next = schedule.next_regular(clock.now());
    loop {
        let wait = (next - clock.now()).to_std().unwrap_or(Duration::ZERO);
        if Instant::now() + wait > until {
            return;
        }
        tokio::time::sleep(wait).await;
        let now = clock.now();
        let hb = Heartbeat {
            proto_version: PROTO_VERSION,
            host: host.clone(),
            identity: identity.clone(),
            interval_secs: interval.as_secs() as u32,
            labels: Default::default(),
            state: Some(agent_state(now, "running", 4242)),
            state_digest: None,
            events: Vec::new(),
            booted_at: None,
            events_dropped: 0,
        };
        match link
            .post::<_, HeartbeatAck>("/api/v1/heartbeat", &credential, &hb)
            .await
        {
            Ok(_) => {
                seen.count();
                schedule.succeeded();
                next = schedule.next_regular(clock.now());
            }
            Err(Failure::Refused {
                status: 429,
                retry_after: Some(w),
                ..
            }) => {
                seen.count();
                next = schedule.throttled(now, w);
            }
            Err(Failure::Refused { retry_after, .. }) => {
                seen.count();
                next = schedule.failed(now, retry_after);
            }
            Err(Failure::Unreachable(_)) => next = schedule.failed(now, None),
        }
    }
}

fn getrandom_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map(|()| u64::from_le_bytes(b))
        .unwrap_or(1)
}

fn reconnect() -> Result<()> {
    let hosts = arg("--hosts", 10_000) as usize;
    let interval = Duration::from_secs(arg("--interval", 60));
    let outage = Duration::from_secs(arg("--outage", 180));
    let data = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port());
    // The fleet enrolls at once: set-up, not an attack.
    let mut c = Collector::start_with(data.path(), &listen, "600s", &["--enroll-rate", "1000000"]);
    let cfg = rollcall_agent::config::CollectorConfig {
        urls: vec![c.url.clone()],
        ca_file: data.path().join("ca.pem"),
        enroll_secret_file: None,
        interval,
        client_cert: None,
        client_key: None,
        spool_max_events: 10_000,
        spool_max_bytes: 8 << 20,
    };
    let link = Arc::new(Link::new(&cfg, "outage-bench")?);
    let secret = std::fs::read_to_string(data.path().join("enroll.secret"))?
        .trim()
        .to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Every simulated host enrolls first, 200 at a time.
        let t = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(200));
        let mut enrolling = Vec::with_capacity(hosts);
        for i in 0..hosts {
            let (link, secret, sem) = (link.clone(), secret.clone(), sem.clone());
            enrolling.push(tokio::spawn(async move {
                let _permit = sem.acquire().await;
                let host = format!("node-{i:05}.bench");
                let identity = Identity {
                    machine_id: format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                    install_id: format!("{i:016x}"),
                };
                let req = EnrollRequest {
                    proto_version: PROTO_VERSION,
                    host: host.clone(),
                    identity: identity.clone(),
                    labels: Default::default(),
                    bmc_address: None,
                };
                let r = link
                    .post::<_, EnrollResponse>("/api/v1/enroll", &secret, &req)
                    .await;
                r.map(|r| (host, identity, r.credential))
            }));
        }
        let mut enrolled = Vec::with_capacity(hosts);
        for e in enrolling {
            match e.await? {
                Ok(x) => enrolled.push(x),
                Err(f) => bail!("enrollment failed: {f}"),
            }
        }
        println!(
            "{hosts} simulated agents enrolled in {:.1} s; interval {} s, outage {} s",
            t.elapsed().as_secs_f64(),
            interval.as_secs(),
            outage.as_secs()
        );
        let steady = interval + interval / 2;
        let after = interval * 2;
        let total = steady + outage + after;
        let seen = Arc::new(Seen {
            start: Instant::now(),
            per_second: (0..total.as_secs() + 5).map(|_| AtomicU64::new(0)).collect(),
        });
        let until = seen.start + total;
        let mut tasks = Vec::with_capacity(hosts);
        for (host, identity, credential) in enrolled {
            tasks.push(tokio::spawn(agent(
                link.clone(),
                host,
                identity,
                credential,
                interval,
                seen.clone(),
                until,
            )));
        }
        tokio::time::sleep(steady).await;
        c.kill9();
        let down_at = seen.start.elapsed().as_secs() as usize;
        tokio::time::sleep(outage).await;
        let c = Collector::start(data.path(), &listen, "600s");
        let up_at = seen.start.elapsed().as_secs() as usize;
        for t in tasks {
            let _ = t.await;
        }
        let window = interval.as_secs() as usize;
        let steady_rate = (down_at - window..down_at).map(|s| seen.at(s)).sum::<u64>() as f64
            / window as f64;
        let (peak_at, peak) = (up_at..up_at + after.as_secs() as usize)
            .map(|s| (s - up_at, seen.at(s)))
            .max_by_key(|&(_, n)| n)
            .unwrap_or((0, 0));
        let first_minute: u64 = (up_at..up_at + window).map(|s| seen.at(s)).sum();
        println!(
            "steady: {steady_rate:.0} requests/s answered (mean of the {window} s before the outage)"
        );
        println!(
            "after the collector returned: peak {peak} requests/s ({peak_at} s after), {:.2}× steady; {first_minute} answered in the first {window} s",
            peak as f64 / steady_rate.max(1.0)
        );
        let per_sec: Vec<String> = (up_at..up_at + 15).map(|s| seen.at(s).to_string()).collect();
        println!("  first 15 s after, per second: {}", per_sec.join(" "));
        let limited = metric(&c, "rollcall_requests_rejected_total{reason=\"rate_limited\"}")?;
        let busy = metric(&c, "rollcall_requests_rejected_total{reason=\"queue_full\"}")?;
        println!("  collector after returning: {limited} answered 429, {busy} answered 503");
        anyhow::Ok(())
    })
    .context("reconnect run")
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("spool") => spool(),
        Some("reconnect") => reconnect(),
        _ => bail!("usage: outage-bench spool [--minutes 60] [--storm 20000] | reconnect [--hosts 10000] [--interval 60] [--outage 180]"),
    }
}
