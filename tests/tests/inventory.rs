//! Real agents against the inventory: what `rollcall reconcile` says of a listed host that
//! reports, one that never did, and an agent the inventory does not list; and a host's
//! lifecycle taken from its inventory entry.

use std::time::Duration;

use rollcall_tests::{free_port, host_view, wait_until, Agent, Collector, SimHost, Start};

#[test]
fn real_agents_are_reconciled_against_the_inventory() {
    let d = tempfile::tempdir().unwrap();
    let devices = d.path().join("devices.csv");
    std::fs::write(
        &devices,
        "Server,Datacenter,Zone,Status\ninv-a,us-south,dal10,live\ninv-b,us-south,dal10,Pending Cancellation\ninv-never,us-south,dal10,live\n",
    )
    .unwrap();
    let config = d.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[inventory]\npath = \"{}\"\ncolumns = {{ hostname = \"Server\" }}\n",
            devices.display()
        ),
    )
    .unwrap();
    let c = Collector::start_with(
        &d.path().join("data"),
        &format!("127.0.0.1:{}", free_port()),
        "5s",
        &["--config", config.to_str().unwrap()],
    );
    let admin = c.admin();
    let mut agents = Vec::new();
    for name in ["inv-a", "inv-b", "inv-stray"] {
        let h = SimHost::new();
        h.start_client();
        let config = h.agent_config("sysv", "", "");
        h.report_to(
            &config,
            &c,
            name,
            "1s",
            "region = \"us-south\", zone = \"dal10\"",
        );
        agents.push((Agent::start(&config), h));
    }
    for name in ["inv-a", "inv-b", "inv-stray"] {
        wait_until(&format!("{name} heard"), Duration::from_secs(30), || {
            host_view(&admin, name)["host"]["state"] == "up"
        });
    }
    // Lifecycle from the inventory: listed → live, marked for cancellation → available.
    let v = host_view(&admin, "inv-b");
    assert_eq!(v["host"]["lifecycle"], "available", "{v}");
    assert_eq!(v["host"]["lifecycle_source"], "inventory", "{v}");
    assert_eq!(host_view(&admin, "inv-a")["host"]["lifecycle"], "live");

    let out = c.cli(&["reconcile"]);
    assert!(out.contains("2 discrepancies"), "{out}");
    assert!(
        out.contains(
            "inv-never: in the inventory, never heard from — never enrolled: run bootstrap"
        ),
        "{out}"
    );
    assert!(
        out.contains("inv-stray: reporting, but in no inventory"),
        "{out}"
    );
    drop(agents);
}
