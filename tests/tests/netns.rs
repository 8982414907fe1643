//! Several hosts on one machine: each agent in its own network namespace behind a veth
//! pair on a bridge where the collector listens. Cutting links is what a switch or a
//! region's uplink failing looks like to the collector. Needs root (CI runs as root).

use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_tests::{free_port, host_view, wait_until, Agent, Collector, SimHost, Start};
use serde_json::json;

/// Receivers stood in on loopback (a webhook, Slack), as the collector's own tests use them.
#[path = "../../collector/tests/common/receiver.rs"]
#[allow(dead_code)]
mod receiver;
use receiver::{Flavour, Receiver};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge with the collector's address, and one namespace per host; all removed on drop.
struct Net {
    tag: String,
    subnet: String,
    hosts: usize,
}

impl Net {
    fn new(hosts: usize) -> Net {
        // Tests of one binary run at once: each network its own names and subnet.
        static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() % 10_000;
        let net = Net {
            tag: format!("rc{id}{n}"),
            subnet: format!("10.{}.{}", 213 + n, std::process::id() % 250),
            hosts,
        };
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("{}.1/24", net.subnet), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for i in 0..hosts {
            let (ns, veth) = (net.ns(i), net.veth(i));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &br]);
            ip(&["link", "set", &veth, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}.{}/24", net.subnet, 10 + i),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    fn collector_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// Cuts (or restores) host `i`'s link, as a dead switch port would.
    fn link(&self, i: usize, up: bool) {
        ip(&["link", "set", &self.veth(i), if up { "up" } else { "down" }]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}

fn state(admin: &rollcall_collector::client::Client, name: &str) -> String {
    host_view(admin, name)["host"]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn cutting_links_silences_exactly_the_hosts_behind_them() {
    let net = Net::new(4);
    let d = tempfile::tempdir().unwrap();
    let listen = format!("{}:{}", net.collector_ip(), free_port());
    let c = Collector::start_with(d.path(), &listen, "2s", &["--san", &net.collector_ip()]);
    let admin = c.admin();
    let regions = ["north", "north", "south", "south"];
    let names: Vec<String> = (0..4).map(|i| format!("ns-host-{i}")).collect();
    let mut hosts = Vec::new();
    for i in 0..4 {
        let h = SimHost::new();
        h.faults("interval_ms = 500\n");
        h.start_client();
        let config = h.agent_config("sysv", "", "");
        h.report_to(
            &config,
            &c,
            &names[i],
            "1s",
            &format!("region = \"{}\", zone = \"{}-1\"", regions[i], regions[i]),
        );
        let a = Agent::start_in_netns(&net.ns(i), &config);
        hosts.push((h, a));
    }
    for n in &names {
        wait_until(&format!("{n} up"), Duration::from_secs(30), || {
            state(&admin, n) == "up"
        });
    }
    let states = || names.iter().map(|n| state(&admin, n)).collect::<Vec<_>>();
    // `late` (a heartbeat a little past its 1 s interval on a busy machine) is not a flag.
    let flagged = |s: &[String]| s.iter().map(|x| x == "silent").collect::<Vec<_>>();

    // One link: exactly that host.
    net.link(0, false);
    let cut = Instant::now();
    wait_until("ns-host-0 silent", Duration::from_secs(10), || {
        state(&admin, &names[0]) == "silent"
    });
    assert!(
        cut.elapsed() <= Duration::from_secs(4),
        "silent after {:?}",
        cut.elapsed()
    );
    assert_eq!(
        flagged(&states()[1..]),
        [false, false, false],
        "the others are not flagged"
    );
    net.link(0, true);
    wait_until("ns-host-0 back", Duration::from_secs(20), || {
        state(&admin, &names[0]) == "up"
    });

    // A whole region: its hosts silent, the other region up.
    net.link(2, false);
    net.link(3, false);
    wait_until("south silent", Duration::from_secs(10), || {
        states()[2..] == ["silent", "silent"]
    });
    assert_eq!(
        flagged(&states()[..2]),
        [false, false],
        "north is not flagged"
    );
    let south = admin
        .get("/api/v1/hosts?region=south&state=silent")
        .unwrap()
        .body;
    assert_eq!(south["count"], 2, "{south}");
    net.link(2, true);
    net.link(3, true);
    wait_until("south back", Duration::from_secs(20), || {
        states() == ["up", "up", "up", "up"]
    });
}

#[test]
fn a_region_cut_off_is_one_incident_and_one_notification_per_receiver() {
    let net = Net::new(8);
    let d = tempfile::tempdir().unwrap();
    let (hook, slack) = (
        Receiver::start(Flavour::Webhook),
        Receiver::start(Flavour::Slack),
    );
    let config = d.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n\n[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{}\"\n",
            hook.url("/"),
            slack.url("/services/x")
        ),
    )
    .unwrap();
    let listen = format!("{}:{}", net.collector_ip(), free_port());
    let c = Collector::start_with(
        &d.path().join("data"),
        &listen,
        "2s",
        &[
            "--san",
            &net.collector_ip(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let admin = c.admin();
    let region = |i: usize| if i < 6 { "east" } else { "west" };
    let names: Vec<String> = (0..8).map(|i| format!("ns-{}-{i}", region(i))).collect();
    let mut hosts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let h = SimHost::new();
        h.faults("interval_ms = 500\n");
        h.start_client();
        let config = h.agent_config("sysv", "", "");
        let labels = format!("region = \"{0}\", zone = \"{0}-1\"", region(i));
        h.report_to(&config, &c, name, "1s", &labels);
        let a = Agent::start_in_netns(&net.ns(i), &config);
        hosts.push((h, a));
    }
    for n in &names {
        wait_until(&format!("{n} up"), Duration::from_secs(30), || {
            state(&admin, n) == "up"
        });
        let r = admin
            .send_json(
                "PUT",
                &format!("/api/v1/hosts/{n}/lifecycle"),
                &json!({"lifecycle": "live"}),
            )
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    std::thread::sleep(Duration::from_secs(2));

    // The region's uplink fails: its six hosts' links go down at once.
    for i in 0..6 {
        net.link(i, false);
    }
    wait_until("the notification", Duration::from_secs(20), || {
        !hook.requests().is_empty() && !slack.requests().is_empty()
    });
    std::thread::sleep(Duration::from_secs(4));
    let told = |r: &Receiver| {
        r.taken()
            .iter()
            .map(|v| {
                let incident = v["alerts"][0]["labels"]["incident"].as_str().unwrap_or("");
                let status = v["status"].as_str().unwrap_or("");
                format!("{incident} {status}")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(told(&hook), ["region-dark/east firing"], "one, not six");
    let messages = slack.taken();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let text = messages[0]["blocks"][1]["text"]["text"].as_str().unwrap();
    // The hosts silent when it was told (the last of the six may join a moment later;
    // the incident itself lists all of them).
    assert!(
        text.contains("Hosts (5)") || text.contains("Hosts (6)"),
        "{text}"
    );
    assert!(!text.contains("ns-west"), "{text}");
    let open = admin
        .get("/api/v1/incidents?kind=region-dark")
        .unwrap()
        .body;
    assert_eq!(open["incidents"][0]["hosts"].as_array().unwrap().len(), 6);
    let west = admin.get("/api/v1/incidents?region=west").unwrap().body;
    assert_eq!(west["incidents"].as_array().unwrap().len(), 0, "{west}");

    for i in 0..6 {
        net.link(i, true);
    }
    wait_until("the resolve", Duration::from_secs(30), || {
        hook.requests().len() >= 2 && slack.requests().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        told(&hook),
        ["region-dark/east firing", "region-dark/east resolved"]
    );
    assert_eq!(slack.taken().len(), 2);
    let open = admin.get("/api/v1/incidents").unwrap().body;
    assert_eq!(open["open"], 0, "{open}");
    drop(hosts);
}
