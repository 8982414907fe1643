//! The fleet against the inventory, end to end: the collector reads `[inventory] path`,
//! the CLI reports every discrepancy, a malformed file keeps the previous inventory.

mod common;

use std::time::Duration;

use common::{admin_cli as rollcall, heartbeat, wait_for, Collector, Start};

/// A collector in `dir` reading the inventory at `devices`, with `more` in `[inventory]`.
fn with_inventory(dir: &std::path::Path, devices: &std::path::Path, more: &str) -> Collector {
    let config = dir.join("collector.toml");
    let text = format!("[inventory]\npath = \"{}\"\n{more}\n", devices.display());
    std::fs::write(&config, text).unwrap();
    // A short grace: incidents are judged 2 s after start.
    Collector::start_with(
        &dir.join("data"),
        "2s",
        &["--config", config.to_str().unwrap()],
    )
}

#[test]
fn the_fleet_is_reconciled_against_the_inventory_it_reads() {
    let d = tempfile::tempdir().unwrap();
    let devices = d.path().join("devices.csv");
    std::fs::write(
        &devices,
        "hostname,region,zone,status\r\n\
         web-1,us-south,dal10,live\r\n\
         web-2,eu-de,dal10,live\r\n\
         never-1,us-south,dal10,live\r\n\
         gone,us-south,dal10,cancelled\r\n",
    )
    .unwrap();
    let c = with_inventory(d.path(), &devices, "missing_after = \"1h\"");
    let agents = c.agents();
    for h in ["web-1", "web-2", "stray-1"] {
        assert_eq!(agents.post(&heartbeat(h, 60, "ok", &[])).status, 200);
    }
    // heartbeat() labels every host region us-south, zone dal10: web-2 disagrees.
    let (code, out) = rollcall(&c, &["reconcile", "--out", d.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 discrepancies"), "{out}");
    assert!(
        out.contains("never-1: in the inventory, never heard from — never enrolled: run bootstrap"),
        "{out}"
    );
    assert!(
        out.contains("stray-1: reporting, but in no inventory"),
        "{out}"
    );
    assert!(
        out.contains("web-2: region: the agent says \"us-south\", the inventory \"eu-de\""),
        "{out}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("reconcile.json")).unwrap())
            .unwrap();
    assert_eq!(written["counts"]["missing"], 1);
    assert_eq!(written["devices"], 4);
    assert_eq!(
        std::fs::read_to_string(d.path().join("reconcile.txt")).unwrap(),
        out
    );
    assert_eq!(rollcall(&c, &["reconcile", "--max", "3"]).0, 0);
    // A share of the 4 devices: 50 % tolerates 2, 75 % tolerates 3.
    assert_eq!(rollcall(&c, &["reconcile", "--max", "50%"]).0, 1);
    assert_eq!(rollcall(&c, &["reconcile", "--max", "75%"]).0, 0);
    let (code, out) = rollcall(&c, &["reconcile", "--max", "lots"]);
    assert_eq!(code, 2, "{out}");

    // A file cut short: refused with the place, the previous inventory kept.
    std::fs::write(&devices, "hostname,region,zone,status\nweb-1,us-south\n").unwrap();
    let admin = c.admin();
    wait_for("the bad file noticed", Duration::from_secs(15), || {
        admin.get("/api/v1/reconcile").unwrap().body["inventory_error"].is_string()
    });
    let v = admin.get("/api/v1/reconcile").unwrap().body;
    let e = v["inventory_error"].as_str().unwrap();
    assert!(e.contains("row 2, column \"zone\""), "{e}");
    assert_eq!(v["devices"], 4, "the previous inventory stays");
    // Fixed: read again.
    std::fs::write(
        &devices,
        "hostname,region,zone,status\nweb-1,us-south,dal10,live\nweb-2,us-south,dal10,live\nstray-1,us-south,dal10,live\n",
    )
    .unwrap();
    wait_for("the good file read", Duration::from_secs(15), || {
        admin.get("/api/v1/reconcile").unwrap().body["devices"] == 3
    });
    let (code, out) = rollcall(&c, &["reconcile"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 discrepancies"), "{out}");
    let m = String::from_utf8_lossy(&admin.get_bytes("/metrics").unwrap().1).into_owned();
    assert!(m.contains("rollcall_inventory_devices 3"), "{m}");
}

#[test]
fn without_an_inventory_reconcile_says_how_to_configure_one() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "60s");
    let (code, out) = rollcall(&c, &["reconcile"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("[inventory] path"), "{out}");
}

#[test]
fn only_listed_hosts_enroll_when_the_inventory_says_so() {
    let d = tempfile::tempdir().unwrap();
    let devices = d.path().join("devices.json");
    std::fs::write(&devices, r#"[{"hostname": "web-1", "region": "us-south"}]"#).unwrap();
    let c = with_inventory(d.path(), &devices, "enroll = \"listed-only\"");
    let enroller = c.enroller();
    let ok = enroller
        .send_json("POST", "/api/v1/enroll", &common::enroll_body("web-1"))
        .unwrap();
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let no = enroller
        .send_json("POST", "/api/v1/enroll", &common::enroll_body("stray-1"))
        .unwrap();
    assert_eq!(no.status, 403, "{:?}", no.body);
    assert_eq!(no.body["field"], "host");
    let why = no.body["error"].as_str().unwrap();
    assert!(
        why.contains("stray-1 is not in the inventory") && why.contains("devices.json"),
        "{why}"
    );
    let m = String::from_utf8_lossy(&c.admin().get_bytes("/metrics").unwrap().1).into_owned();
    assert!(
        m.contains("rollcall_requests_rejected_total{reason=\"not_in_inventory\"} 1"),
        "{m}"
    );
}

#[test]
fn a_significant_drift_is_one_incident_until_the_inventory_agrees() {
    use common::receiver::{Flavour, Receiver};
    let d = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Flavour::Webhook);
    let devices = d.path().join("devices.csv");
    std::fs::write(&devices, "hostname\nweb-1\nnever-1\nnever-2\nnever-3\n").unwrap();
    let more = format!(
        "alert_over = \"50%\"\n\n[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/")
    );
    let c = with_inventory(d.path(), &devices, &more);
    assert_eq!(
        c.agents().post(&heartbeat("web-1", 60, "ok", &[])).status,
        200
    );
    wait_for("the drift incident", Duration::from_secs(20), || {
        hook.count() >= 1
    });
    let first = hook.taken()[0].clone();
    let alert = &first["alerts"][0];
    assert_eq!(alert["labels"]["incident"], "inventory-drift/inventory");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    // 3 missing, or 4 if it was judged before web-1's first heartbeat landed.
    assert!(
        summary.contains("discrepancies (missing ") && summary.ends_with("over the 2 tolerated"),
        "{summary}"
    );
    assert!(alert["annotations"]["next_step"]
        .as_str()
        .unwrap()
        .contains("rollcall reconcile"));
    // The inventory corrected: the incident resolves, once.
    std::fs::write(&devices, "hostname\nweb-1\n").unwrap();
    wait_for("its resolve", Duration::from_secs(20), || hook.count() >= 2);
    std::thread::sleep(Duration::from_secs(1));
    let statuses: Vec<String> = hook
        .taken()
        .iter()
        .map(|v| v["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"]);
}
