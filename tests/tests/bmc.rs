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
use rollcall_tests::{bin, free_port, host_view, wait_until, Agent, Collector, SimHost, Start};
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

/// One host of the scanner test: its own simulated client and agent; a BMC when `bmc`.
fn zone_host(
    c: &Collector,
    name: &str,
    labels: &str,
    bmc: Option<&str>,
    extra: &str,
) -> (SimHost, Agent) {
    let h = SimHost::new();
    h.faults("interval_ms = 500\n");
    h.start_client();
    let config = h.agent_config("sysv", "", "");
    h.report_to(&config, c, name, "1s", labels);
    let device = h.root().join("dev-ipmi0");
    let mut text = std::fs::read_to_string(&config).unwrap();
    if let Some(addr) = bmc {
        std::fs::write(&device, "").unwrap();
        text.push_str(&format!(
            "\n[bmc]\ninterval = \"1m\"\ndevice = \"{}\"\nipmitool = [\"/usr/bin/ipmitool\", \"-I\", \"lan\", \"-H\", \"{addr}\", \"-U\", \"admin\", \"-P\", \"admin\"]\n",
            device.display()
        ));
    } else {
        text.push_str(&format!("\n[bmc]\ndevice = \"{}\"\n", device.display()));
    }
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    let a = Agent::start(&config);
    (h, a)
}

#[test]
fn scanners_probe_their_zone_and_the_collector_attributes_what_they_find() {
    // Two hosts with BMCs (ipmi_sim, LAN address set with ipmitool) and a scanner in zone
    // z1; a host with a BMC in z2, which z1's scanner must not probe.
    let (a1, a2, a3) = ("127.0.72.1", "127.0.72.2", "127.0.72.3");
    let b1 = Bmc::start(a1);
    let mut b2 = Bmc::start(a2);
    let b3 = Bmc::start(a3);
    for (b, a) in [(&b1, a1), (&b2, a2), (&b3, a3)] {
        b.set_lan_address(a);
    }
    let data = tempfile::tempdir().unwrap();
    let c = Collector::start_with(
        data.path(),
        &format!("127.0.0.1:{}", free_port()),
        "2s",
        &["--probe-interval", "2s"],
    );
    let admin = c.admin();
    let _h1 = zone_host(&c, "h1", "zone = \"z1\", role = \"worker\"", Some(a1), "");
    let _h2 = zone_host(&c, "h2", "zone = \"z1\", role = \"worker\"", Some(a2), "");
    let _far = zone_host(&c, "far", "zone = \"z2\", role = \"worker\"", Some(a3), "");
    let (_s, mut scanner) = zone_host(
        &c,
        "scan-1",
        "zone = \"z1\", role = \"scanner\"",
        None,
        "\n[scanner]\ntries = 2\nspacing = \"300ms\"\n",
    );
    // Hosts are probed once live (a new host is in build for 48 h).
    for h in ["h1", "h2", "far", "scan-1"] {
        wait_until("the host to report", Duration::from_secs(30), || {
            host_view(&admin, h)["host"].is_object()
        });
        rollcall_collector::testing::set_lifecycle(&admin, h, "live");
    }
    let verdict = |h: &str| host_view(&admin, h)["bmc_probes"].clone();
    wait_until(
        "scan-1's verdicts on h1 and h2",
        Duration::from_secs(30),
        || {
            ["h1", "h2"]
                .iter()
                .all(|h| verdict(h)["scanners"][0]["reachable"] == true)
        },
    );
    let v = verdict("h1");
    assert_eq!(v["address"], a1, "{v}");
    assert_eq!(v["scanners"][0]["scanner"], "scan-1", "{v}");
    assert!(
        v["scanners"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("answered the ASF Presence Ping"),
        "{v}"
    );
    // Not z1's: never probed by scan-1.
    assert!(verdict("far")["scanners"].as_array().unwrap().is_empty());
    assert!(rmcpping(a1) && rmcpping(a2));

    // h2's BMC stops answering: h2 unhealthy, attributed to scan-1, h1 up.
    b2.stop();
    assert!(!rmcpping(a2) && !ipmiping(a2), "freeipmi agrees");
    wait_until("h2 unhealthy", Duration::from_secs(30), || {
        host_view(&admin, "h2")["host"]["state"] == "unhealthy"
    });
    let reason = host_view(&admin, "h2")["host"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with(&format!(
            "unhealthy: BMC {a2} of h2 unreachable from scanner scan-1 since "
        )),
        "{reason}"
    );
    rollcall_tests::assert_not_flagged(&host_view(&admin, "h1")["host"], "h1");
    wait_until(
        "the verdict in h2's history",
        Duration::from_secs(5),
        || {
            host_view(&admin, "h2")["history"]
                .to_string()
                .contains(&format!("BMC {a2} unreachable from scanner scan-1"))
        },
    );

    // Maintenance takes h2 off the scanner's list: the zone has one BMC to probe.
    let r = admin
        .send_json(
            "PUT",
            "/api/v1/hosts/h2/maintenance",
            &serde_json::json!({"until": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(), "reason": "BMC firmware"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let zones = admin.get("/api/v1/zones").unwrap().body;
    let z1 = zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "z1")
        .unwrap()
        .clone();
    assert_eq!(
        (z1["bmcs"].as_u64(), z1["flagged"].as_bool()),
        (Some(1), Some(false)),
        "{z1}"
    );

    // The scanner dies: after its interval + grace, zone z1 has no working scanner.
    scanner.kill9();
    wait_until("zone z1 flagged", Duration::from_secs(20), || {
        admin.get("/api/v1/zones").unwrap().body["flagged"] == 1
    });
    let out = c.cli(&["zones"]);
    assert!(
        out.contains("zone z1 has no working scanner (scan-1: silent since"),
        "{out}"
    );
    let summary = admin.get("/api/v1/summary").unwrap().body;
    assert_eq!(summary["zones_flagged"], serde_json::json!(["z1"]));
    let m = admin.get_bytes("/metrics").unwrap().1;
    assert!(
        String::from_utf8_lossy(&m).contains("rollcall_zones_flagged 1"),
        "metrics"
    );
}
