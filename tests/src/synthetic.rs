//! Hosts that exist only as heartbeats: enrolled with the collector's secret, each sends
//! one heartbeat with a long interval, so it stays `up` (or `unhealthy`) for the length of
//! a test without an agent. The many hosts a page lists around the few real agents a test
//! kills.

use rollcall_collector::client::Client;
use rollcall_collector::testing::Collector;
use serde_json::{json, Value};

/// One synthetic host.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub name: String,
    pub region: String,
    pub zone: String,
    pub role: String,
    /// Its BESClient is critical (remediation exhausted): the host is `unhealthy`.
    pub critical: bool,
}

/// `n` hosts `web-000`…: regions us-south, eu-de and jp-tok in turn, two zones each,
/// every tenth one critical.
pub fn fleet(n: usize) -> Vec<Synthetic> {
    let regions = ["us-south", "eu-de", "jp-tok"];
    (0..n)
        .map(|i| {
            let region = regions[i % 3];
            Synthetic {
                name: format!("web-{i:03}"),
                region: region.to_owned(),
                zone: format!("{region}-{}", 1 + (i / 3) % 2),
                role: if i % 4 == 0 { "db" } else { "worker" }.to_owned(),
                critical: i % 10 == 3,
            }
        })
        .collect()
}

fn heartbeat(h: &Synthetic, interval: u32) -> Value {
    let health = if h.critical { "critical" } else { "ok" };
    rollcall_collector::testing::heartbeat(&h.name, interval, health, &[1], labels(h))
}

fn labels(h: &Synthetic) -> Value {
    json!({ "env": "prod", "region": h.region, "zone": h.zone, "role": h.role })
}

/// Enrolls each host and sends its one heartbeat (interval an hour).
pub fn report(c: &Collector, hosts: &[Synthetic]) {
    let enroller = c.enroller();
    let ca = c.data.join("ca.pem");
    for h in hosts {
        let body = json!({
            "proto_version": 1,
            "host": h.name,
            "identity": { "machine_id": format!("m-{}", h.name), "install_id": "i1" },
            "labels": labels(h),
        });
        let r = enroller
            .send_json("POST", "/api/v1/enroll", &body)
            .expect("enroll");
        assert_eq!(r.status, 200, "enroll {}: {}", h.name, r.body);
        let cred = r.body["credential"]
            .as_str()
            .expect("credential")
            .to_owned();
        let client = Client::new(&c.url, &ca, Some(cred)).expect("client");
        let r = client
            .send_json("POST", "/api/v1/heartbeat", &heartbeat(h, 3600))
            .expect("heartbeat");
        assert_eq!(r.status, 200, "heartbeat {}: {}", h.name, r.body);
    }
}
