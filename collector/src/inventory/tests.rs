use super::reconcile::{reconcile, Reported};
use super::*;
use crate::state::{HostState, Lifecycle};
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
}

fn read(text: &str) -> Result<Inventory, InventoryError> {
    parse(
        Path::new("devices.csv"),
        text.as_bytes(),
        &BTreeMap::new(),
        now(),
    )
}

#[test]
fn csv_with_quotes_bom_crlf_blank_lines_and_extra_columns() {
    let text = "\u{feff}Host Name,IP,BMC IP,Datacenter,Zone,Role,Environment,Provisioned,Status,Owner\r\n\
                web-1,10.0.0.1,10.1.0.1,us-south,dal10,web,prod,2026-11-01,Live,\"Smith, J\"\r\n\
                \r\n\
                \"db-1\",10.0.0.2,,us-south,dal12,db,prod,2026-12-02T08:00:00Z,\"Pending Cancellation\",\"say \"\"hi\"\"\",extra\r\n";
    let inv = read(text).unwrap();
    assert_eq!(inv.devices.len(), 2);
    let w = &inv.devices[0];
    assert_eq!(
        (&*w.hostname, &*w.mgmt_ip, &*w.region, &*w.env),
        ("web-1", "10.1.0.1", "us-south", "prod")
    );
    assert_eq!(
        w.provisioned,
        Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
    );
    let d = &inv.devices[1];
    assert!(d.cancelled() && !w.cancelled());
    assert!(inv.contains("DB-1"), "names compare without case");
}

#[test]
fn columns_are_mapped_by_configuration() {
    let mapping = BTreeMap::from([
        ("hostname".to_owned(), "Server".to_owned()),
        ("region".to_owned(), "Site".to_owned()),
    ]);
    let inv = parse(
        Path::new("d.csv"),
        b"Server,Site\nh1,eu-de\n",
        &mapping,
        now(),
    )
    .unwrap();
    assert_eq!(&*inv.devices[0].region, "eu-de");
    let e = parse(
        Path::new("d.csv"),
        b"Name,Site\nh1,eu-de\n",
        &mapping,
        now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("maps hostname to \"Server\""), "{e}");
}

#[test]
fn a_malformed_file_is_refused_with_the_place() {
    let e = read("hostname,region,zone\nh1,us-south,dal10\nh2,us-south\n").unwrap_err();
    assert_eq!(
        e,
        InventoryError::Row {
            path: "devices.csv".into(),
            row: 3,
            column: Some("zone".into()),
            message: "2 fields where the header has 3: a row cut short (is the file still being written?)".into()
        }
    );
    let e = read("hostname,provisioned\nh1,last tuesday\n").unwrap_err();
    assert!(
        e.to_string().contains("row 2, column \"provisioned\""),
        "{e}"
    );
    let e = read("region\nus-south\n").unwrap_err();
    assert!(e.to_string().contains("no hostname column"), "{e}");
    assert!(read("  \n").unwrap_err().to_string().contains("empty"));
    let e = read("[{\"hostname\": \"a\"}, 3]").unwrap_err();
    assert!(e.to_string().contains("row 2"), "{e}");
}

#[test]
fn json_lists_and_objects_are_read() {
    let inv = read(
        r#"{"devices": [{"hostname": "a", "region": "r1", "mgmt_ip": "10.0.0.9"}, {"name": "b"}]}"#,
    )
    .unwrap();
    assert_eq!(inv.devices.len(), 2);
    assert_eq!(&*inv.devices[0].mgmt_ip, "10.0.0.9");
    assert_eq!(&*inv.devices[1].hostname, "b");
}

fn host<'a>(
    name: &'a str,
    region: &'a str,
    state: HostState,
    lifecycle: Lifecycle,
) -> Reported<'a> {
    Reported {
        name,
        labels: ["prod", region, "", ""],
        last_heard: now() - chrono::Duration::minutes(1),
        state,
        lifecycle,
        bmc: None,
    }
}

#[test]
fn every_class_is_found_and_says_what_to_do() {
    let inv = read(
        "hostname,region,mgmt_ip,status\n\
         ok-1,us-south,,live\n\
         never,us-south,,live\n\
         gone-quiet,us-south,,live\n\
         moved,eu-de,,live\n\
         bmc-1,us-south,10.9.9.9,live\n\
         twice,us-south,,live\n\
         twice,us-south,,live\n\
         leaving,us-south,,cancelled\n\
         back,us-south,,live\n",
    )
    .unwrap();
    let mut quiet = host("gone-quiet", "us-south", HostState::Silent, Lifecycle::Live);
    quiet.last_heard = now() - chrono::Duration::hours(30);
    let mut bmc = host("bmc-1", "us-south", HostState::Up, Lifecycle::Live);
    bmc.bmc = Some("10.9.9.8".parse().unwrap());
    let hosts = vec![
        host("ok-1", "us-south", HostState::Up, Lifecycle::Live),
        quiet,
        host("moved", "us-south", HostState::Up, Lifecycle::Live),
        bmc,
        host("twice", "us-south", HostState::Up, Lifecycle::Live),
        host("leaving", "us-south", HostState::Up, Lifecycle::Live),
        host("back", "us-south", HostState::Up, Lifecycle::Available),
        host("stray", "us-south", HostState::Up, Lifecycle::Live),
        host("clone", "us-south", HostState::Duplicate, Lifecycle::Live),
        host("old", "us-south", HostState::Silent, Lifecycle::Retired),
    ];
    let r = reconcile(
        &inv,
        hosts.into_iter(),
        now(),
        std::time::Duration::from_secs(24 * 3600),
    );
    let got: Vec<(&str, &str)> = r
        .discrepancies
        .iter()
        .map(|d| (d.class, d.host.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("missing", "gone-quiet"),
            ("missing", "never"),
            ("unknown", "clone"),
            ("unknown", "stray"),
            ("mismatch", "bmc-1"),
            ("mismatch", "moved"),
            ("duplicate", "clone"),
            ("duplicate", "twice"),
            ("lifecycle", "back"),
            ("lifecycle", "leaving"),
        ]
    );
    assert_eq!(r.total, 10);
    assert_eq!(r.counts["missing"], 2);
    let never = &r.discrepancies[1];
    assert!(
        never.to_do.starts_with("never enrolled: run bootstrap"),
        "{never:?}"
    );
    let moved = r.discrepancies.iter().find(|d| d.host == "moved").unwrap();
    assert_eq!(
        moved.what,
        "region: the agent says \"us-south\", the inventory \"eu-de\""
    );
    let text = r.text();
    assert!(
        text.contains("10 discrepancies") && text.contains("\nmissing (2):"),
        "{text}"
    );
}

/// 10,000 devices with discrepancies of every class planted among simulated hosts: the
/// counts and the named hosts are exactly the planted ones.
#[test]
fn ten_thousand_devices_with_planted_discrepancies() {
    use crate::registry::Registry;
    use crate::state::Policy;
    use crate::store::suite::hb;
    use rollcall_proto::Health;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    let t0 = crate::store::suite::t(0);
    let now = t0 + chrono::Duration::hours(30);
    let name = |i: usize| format!("node-{i:05}");
    // Planted, by device number.
    let never: BTreeSet<usize> = (0..10_000).step_by(211).collect();
    let quiet: BTreeSet<usize> = (7..10_000)
        .step_by(389)
        .filter(|i| !never.contains(i))
        .collect();
    let moved: BTreeSet<usize> = (13..10_000)
        .step_by(457)
        .filter(|i| !never.contains(i) && !quiet.contains(i))
        .collect();
    let doubled: BTreeSet<usize> = [17, 4242, 9001].into();
    let overridden: BTreeSet<usize> = [23, 5555].into();
    let strays: Vec<String> = (0..37).map(|i| format!("stray-{i:02}")).collect();

    let mut csv = String::from("hostname,region,status\n");
    for i in 0..10_000 {
        let region = if moved.contains(&i) {
            "eu-de"
        } else {
            "us-south"
        };
        csv.push_str(&format!("{},{region},live\n", name(i)));
        if doubled.contains(&i) {
            csv.push_str(&format!("{},{region},live\n", name(i)));
        }
    }
    let inv = Arc::new(
        parse(
            Path::new("devices.csv"),
            csv.as_bytes(),
            &BTreeMap::new(),
            t0,
        )
        .unwrap(),
    );
    assert_eq!(inv.devices.len(), 10_003);

    let mut reg = Registry::new(Policy::default(), t0);
    reg.apply_inventory(inv.clone(), t0);
    let beat = |host: &str, at: DateTime<Utc>| {
        let mut r = hb(host, 0, Health::Ok, vec![]);
        r.received_at = at;
        r
    };
    for i in (0..10_000).filter(|i| !never.contains(i)) {
        let at = if quiet.contains(&i) { t0 } else { now };
        reg.apply(&beat(&name(i), at));
    }
    for s in &strays {
        reg.apply(&beat(s, now));
    }
    // A clone: two identities alternating under one name.
    let clone = name(31);
    let mut other = beat(&clone, now);
    other.identity = "cloned-image".into();
    reg.apply(&other);
    reg.apply(&beat(&clone, now));
    for i in &overridden {
        reg.set_lifecycle(&name(*i), Some(Lifecycle::Available), now);
    }
    reg.sweep(now);

    let r = reconcile(
        &inv,
        reg.reported(),
        now,
        std::time::Duration::from_secs(24 * 3600),
    );
    let named = |class: &str| -> BTreeSet<String> {
        r.discrepancies
            .iter()
            .filter(|d| d.class == class)
            .map(|d| d.host.clone())
            .collect()
    };
    let names = |set: &BTreeSet<usize>| set.iter().map(|i| name(*i)).collect::<BTreeSet<_>>();
    assert_eq!(named("missing"), &names(&never) | &names(&quiet));
    assert_eq!(named("unknown"), strays.iter().cloned().collect());
    assert_eq!(named("mismatch"), names(&moved));
    let mut dup = names(&doubled);
    dup.insert(clone);
    assert_eq!(named("duplicate"), dup);
    assert_eq!(named("lifecycle"), names(&overridden));
    assert_eq!(
        r.total,
        never.len()
            + quiet.len()
            + strays.len()
            + moved.len()
            + doubled.len()
            + 1
            + overridden.len()
    );
}
