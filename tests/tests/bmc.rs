//! BMC probes against real BMC simulators: Debian's `ipmi_sim` (openipmi) on several
//! 127.0.x.y addresses, one of them behind a relay that drops ASF and passes IPMI (a BMC
//! that ignores ASF), one stopped mid-test, and an address where nothing listens. Every
//! verdict of `rollcall-agent probe-bmc` is cross-checked against freeipmi's `rmcpping`
//! and `ipmiping` on the same targets.
//!
//! Needs root (UDP 623) and `apt-get install openipmi freeipmi-tools` (scripts/test.sh).

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rollcall_tests::bmc::{ipmiping, rmcpping, Bmc};
use rollcall_tests::{bin, free_port, host_view, wait_until, Agent, Collector, SimHost};
use serde_json::Value;

/// A BMC that ignores ASF: a relay on `front`:623 passing only IPMI-class datagrams to the
/// simulator on `back`:623, and its answers back.
fn asf_dropping_relay(front: &str, back: &str) {
    let outer = UdpSocket::bind((front, 623)).unwrap();
    let inner = UdpSocket::bind((front, 0)).unwrap();
    inner.connect((back, 623)).unwrap();
    let (o2, i2) = (outer.try_clone().unwrap(), inner.try_clone().unwrap());
    let client = std::sync::Arc::new(std::sync::Mutex::new(None));
    let c2 = client.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = outer.recv_from(&mut b) {
            // Byte 3 is the RMCP class: 0x06 ASF (dropped), 0x07 IPMI (passed).
            if n > 4 && b[3] & 0x1F == 0x07 {
                *c2.lock().unwrap() = Some(from);
                let _ = inner.send(&b[..n]);
            }
        }
    });
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        loop {
            match i2.recv(&mut b) {
                Ok(n) => {
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = o2.send_to(&b[..n], to);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// `rollcall-agent probe-bmc --json` over `addrs`: address → (reachable, via, detail).
fn probe(addrs: &[&str]) -> Vec<(String, bool, String, String)> {
    let o = Command::new(bin("rollcall-agent"))
        .args(["probe-bmc", "--json", "--tries", "2", "--spacing", "400ms"])
        .args(addrs)
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|v| {
            (
                v["address"].as_str().unwrap_or("").to_owned(),
                v["reachable"].as_bool().unwrap_or(false),
                v["via"].as_str().unwrap_or("").to_owned(),
                v["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect::<Vec<_>>();
    let unreachable = all.iter().any(|r| !r.1);
    assert_eq!(
        o.status.code(),
        Some(if unreachable { 1 } else { 0 }),
        "exit code"
    );
    assert_eq!(all.len(), addrs.len());
    all
}

#[test]
fn probes_agree_with_freeipmi_on_real_bmc_simulators() {
    assert!(
        Path::new("/usr/bin/ipmi_sim").exists(),
        "apt-get install openipmi"
    );
    let (a, b, b_sim, c, d) = (
        "127.0.71.1",
        "127.0.71.2",
        "127.0.71.12",
        "127.0.71.3",
        "127.0.71.4",
    );
    let _bmc_a = Bmc::start(a);
    let _bmc_b = Bmc::start(b_sim);
    asf_dropping_relay(b, b_sim);
    let mut bmc_c = Bmc::start(c);

    let r = probe(&[a, b, c, d]);
    assert_eq!((r[0].1, r[0].2.as_str()), (true, "asf"), "{r:?}");
    assert!(r[0].3.contains("supports IPMI"), "{r:?}");
    assert_eq!(
        (r[1].1, r[1].2.as_str()),
        (true, "ipmi"),
        "ASF dropped, IPMI answered: {r:?}"
    );
    assert_eq!((r[2].1, r[2].2.as_str()), (true, "asf"), "{r:?}");
    assert_eq!((r[3].1, r[3].2.as_str()), (false, "none"), "{r:?}");
    assert!(r[3].3.contains("ICMP port unreachable"), "{r:?}");

    // The same verdicts from freeipmi's own tools.
    assert!(rmcpping(a) && ipmiping(a));
    assert!(
        !rmcpping(b) && ipmiping(b),
        "freeipmi sees b ignore ASF too"
    );
    assert!(rmcpping(c));
    assert!(!rmcpping(d) && !ipmiping(d));

    // c's BMC stops mid-test: unreachable now, for both.
    bmc_c.stop();
    let r = probe(&[a, c]);
    assert!(r[0].1, "{r:?}");
    assert_eq!((r[1].1, r[1].2.as_str()), (false, "none"), "{r:?}");
    assert!(!rmcpping(c) && !ipmiping(c));
}

#[test]
fn agents_report_their_own_bmc_in_band() {
    // A host with a BMC (ipmitool reaching ipmi_sim over its LAN interface stands in for
    // the in-band device), and one without (a VM: no device).
    let addr = "127.0.71.5";
    let mut bmc = Bmc::start(addr);
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start(data.path(), &format!("127.0.0.1:{}", free_port()), "5s");
    let admin = c.admin();
    let mut running = Vec::new();
    for (name, with_bmc) in [("metal-1", true), ("vm-1", false)] {
        let h = SimHost::new();
        h.faults("interval_ms = 500\n");
        h.start_client();
        let config = h.agent_config("sysv", "", "");
        h.report_to(&config, &c, name, "2s", "env = \"test\"");
        let device = h.root().join("dev-ipmi0");
        if with_bmc {
            std::fs::write(&device, "").unwrap();
        }
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[bmc]\ninterval = \"1s\"\ndevice = \"{}\"\nipmitool = [\"/usr/bin/ipmitool\", \"-I\", \"lan\", \"-H\", \"{addr}\", \"-U\", \"admin\", \"-P\", \"admin\"]\n",
            device.display()
        ));
        std::fs::write(&config, text).unwrap();
        running.push((h, Agent::start(&config)));
    }
    wait_until(
        "both BMC states at the collector",
        Duration::from_secs(60),
        || {
            ["metal-1", "vm-1"]
                .iter()
                .all(|n| host_view(&admin, n)["agent_state"]["bmc"].is_object())
        },
    );
    let metal = host_view(&admin, "metal-1")["agent_state"]["bmc"].clone();
    assert_eq!(metal["present"], true, "{metal}");
    // ipmi_sim's LAN channel 1 has no address configured (0.0.0.0): scanners could not
    // reach this BMC, and the agent says so.
    assert_eq!(metal["health"], "critical", "{metal}");
    assert!(
        metal["reason"]
            .as_str()
            .unwrap()
            .contains("channel(s) 1 have no address"),
        "{metal}"
    );
    let vm = host_view(&admin, "vm-1")["agent_state"]["bmc"].clone();
    assert_eq!(
        (vm["present"].clone(), vm["health"].clone()),
        (false.into(), "ok".into()),
        "{vm}"
    );
    assert!(vm["reason"].as_str().unwrap().starts_with("no BMC"), "{vm}");

    // The CLI shows it.
    let out = c.cli(&["host", "metal-1"]);
    assert!(out.contains("bmc: critical"), "{out}");

    // The BMC stops answering: the next check says so, and the collector shows it.
    bmc.stop();
    wait_until(
        "the silent BMC at the collector",
        Duration::from_secs(60),
        || {
            host_view(&admin, "metal-1")["agent_state"]["bmc"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("does not answer in-band"))
        },
    );
}
