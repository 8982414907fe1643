//! One scanner's round over many BMC addresses, printed, never asserted:
//!
//!   bmc-bench [--targets 5000] [--sims 10] [--rate 500]
//!
//! In a network namespace of its own: `--sims` real BMC simulators (`ipmi_sim`) on
//! 127.0.73.x, and the rest of the targets on 10.99.0.0/16, routed through a veth to a
//! second namespace that drops them without an answer (BMCs that are down). The agent's prober (default
//! tries and spacing; `--rate` packets/s) probes them all once. Prints the time to a
//! complete round, packets sent, and the packet rate per second as the veth
//! counted it (so the global limit is checked on the wire, not by the prober's own count).
//! Needs root and `apt-get install openipmi iproute2`.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rollcall_agent::checks::bmc::probe::{probe_all, ProbeConfig};
use rollcall_tests::arg;
use rollcall_tests::bmc::Bmc;

const NETNS: &str = "rollcall-bmc-bench";
const SINK: &str = "rollcall-bmc-sink";

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip")
        .args(args)
        .status()
        .context("ip (iproute2)")?;
    if !st.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

fn tx_packets() -> u64 {
    std::fs::read_to_string("/sys/class/net/rcbmc0/statistics/tx_packets")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs inside the namespace.
fn inner() -> Result<()> {
    let targets = arg("--targets", 5000) as usize;
    let sims = (arg("--sims", 10) as usize).min(targets);
    let rate = arg("--rate", 500) as u32;
    let _bmcs: Vec<Bmc> = (1..=sims)
        .map(|i| Bmc::start(&format!("127.0.73.{i}")))
        .collect();
    let mut addrs: Vec<IpAddr> = (1..=sims)
        .map(|i| format!("127.0.73.{i}").parse().unwrap())
        .collect();
    let mut n = 0u32;
    while addrs.len() < targets {
        n += 1;
        let (hi, lo) = ((n / 250) % 250 + 1, n % 250 + 1);
        addrs.push(format!("10.99.{hi}.{lo}").parse()?);
    }
    let cfg = ProbeConfig {
        rate,
        ..ProbeConfig::default()
    };
    // Sample the veth's transmit counter every 100 ms.
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut samples = vec![(Instant::now(), tx_packets())];
        while !d2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            samples.push((Instant::now(), tx_packets()));
        }
        samples
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    let (results, sent) = rt.block_on(probe_all(&addrs, &cfg));
    let took = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let reachable = results.iter().filter(|(_, r)| r.reachable()).count();
    // Packets on the wire in any 1-second window (10 samples apart).
    let peak = samples
        .windows(11)
        .map(|w| w[10].1 - w[0].1)
        .max()
        .unwrap_or(0);
    let wire = samples.last().map_or(0, |s| s.1) - samples.first().map_or(0, |s| s.1);
    println!(
        "{targets} BMC addresses ({sims} ipmi_sim, {} silent), tries {} × 2 kinds, spacing {:?}, rate limit {rate}/s, {} in parallel:",
        targets - sims,
        cfg.tries,
        cfg.spacing,
        cfg.parallel
    );
    println!(
        "  complete round in {:.1} s; {sent} packets sent ({:.0}/s on average); {reachable} reachable",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "  on the wire to the silent addresses: {wire} packets, at most {peak} in any 1 s window (limit {rate})"
    );
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--inner") {
        return inner();
    }
    let cleanup = || {
        for ns in [NETNS, SINK] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    };
    cleanup();
    let run = (|| -> Result<()> {
        ip(&["netns", "add", NETNS])?;
        ip(&["netns", "add", SINK])?;
        ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", NETNS, "link", "add", "rcbmc0", "type", "veth", "peer", "name", "rcbmc1",
            "netns", SINK,
        ])?;
        ip(&["-n", NETNS, "addr", "add", "10.98.0.1/24", "dev", "rcbmc0"])?;
        ip(&["-n", NETNS, "link", "set", "rcbmc0", "up"])?;
        ip(&[
            "-n",
            SINK,
            "link",
            "set",
            "rcbmc1",
            "address",
            "02:00:00:00:98:02",
            "up",
        ])?;
        // The silent BMCs: everything in 10.99/16 goes to the sink, which has no address
        // and drops it; a permanent neighbour entry spares the ARP.
        ip(&[
            "-n",
            NETNS,
            "neigh",
            "add",
            "10.98.0.2",
            "lladdr",
            "02:00:00:00:98:02",
            "dev",
            "rcbmc0",
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            NETNS,
            "route",
            "add",
            "10.99.0.0/16",
            "via",
            "10.98.0.2",
            "dev",
            "rcbmc0",
        ])?;
        let exe = std::env::current_exe()?;
        let st = Command::new("ip")
            .args(["netns", "exec", NETNS])
            .arg(exe)
            .arg("--inner")
            .args(std::env::args().skip(1))
            .status()?;
        if !st.success() {
            bail!("the benchmark inside the namespace failed");
        }
        Ok(())
    })();
    cleanup();
    run
}
