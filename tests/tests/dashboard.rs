//! The dashboard in Debian's Chromium, headless, against the real collector and a fleet:
//! three real agents supervising simulated BESClients, and synthetic hosts around them.
//! Screenshots of every page go to `target/screenshots/`.

use std::process::Command;
use std::time::Duration;

use rollcall_collector::client::Client;
use rollcall_tests::browser::{self, Browser};
use rollcall_tests::{bin, reporting_host, synthetic, Agent, Collector, SimHost, Start};
use serde_json::Value;

/// A real agent reporting every second, labelled into `region`.
fn real_host(c: &Collector, name: &str, region: &str) -> (SimHost, Agent) {
    reporting_host(
        c,
        name,
        "1s",
        &format!("env = \"prod\", region = \"{region}\", zone = \"{region}-1\", role = \"worker\""),
    )
}

fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/login"));
    b.fill("#token", token);
    b.click("main form button[type=submit]");
    b.wait("signed in", Duration::from_secs(10), |b| {
        b.find("form.signout").is_some()
    });
}

fn sign_out(b: &Browser) {
    b.click("form.signout button");
    b.wait("signed out", Duration::from_secs(10), |b| {
        b.find("#token").is_some()
    });
}

/// Each page a user can reach has a title, the landmarks, and no handler that only a mouse
/// can reach.
fn assert_accessible(b: &Browser, what: &str) {
    assert!(
        b.title().ends_with("· rollcall"),
        "{what}: title {:?}",
        b.title()
    );
    for landmark in [
        "header",
        "nav[aria-label]",
        "main#main",
        "a.skip[href='#main']",
        "h1",
    ] {
        assert!(b.find(landmark).is_some(), "{what}: no {landmark}");
    }
    assert_eq!(
        b.count("[onclick], div[tabindex], span[tabindex]"),
        0,
        "{what}"
    );
    // Every state shown says its word, not only a colour.
    let wordless = b.exec(
        "return [...document.querySelectorAll('.badge')].filter(e => e.textContent.trim().length < 3).length",
    );
    assert_eq!(wordless, 0, "{what}: a badge without its word");
}

fn shot(b: &Browser, name: &str) {
    let p = browser::screenshot_dir().join(format!("{name}.png"));
    b.screenshot(&p);
    println!("screenshot {}", p.display());
}

fn api(admin: &Client, path: &str) -> Value {
    admin.get(path).expect(path).body
}

fn number(s: &str) -> usize {
    s.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {s:?}"))
}

#[test]
fn the_dashboard_shows_the_fleet_live_and_lets_an_admin_act() {
    assert!(
        browser::available(),
        "this test needs Debian's chromium and chromium-driver (scripts/test.sh installs them)"
    );
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("collector");
    // A read token, made before the collector starts (it reads tokens.json at start).
    let o = Command::new(bin("rollcall-collector"))
        .arg("--data-dir")
        .arg(&data)
        .args(["token", "add", "--name", "viewer", "--role", "read"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read_token = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .find(|w| w.len() == 64)
        .expect("a read token printed")
        .to_owned();
    let c = Collector::start(&data, "127.0.0.1:0", "2s");
    let admin_token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin_token = admin_token.trim();
    let base = c.url.clone();
    let admin = c.admin();

    let mut hosts = synthetic::fleet(60);
    // A scanner, put in maintenance below: its zone has no working scanner.
    hosts.push(synthetic::Synthetic {
        name: "scan-1".into(),
        region: "jp-tok".into(),
        zone: "jp-tok-1".into(),
        role: "scanner".into(),
        critical: false,
    });
    synthetic::report(&c, &hosts);
    let real: Vec<(SimHost, Agent)> = [
        ("dash-a", "us-south"),
        ("dash-b", "eu-de"),
        ("dash-c", "eu-de"),
    ]
    .iter()
    .map(|(n, r)| real_host(&c, n, r))
    .collect();
    // Live hosts, so that the collector flags them (new hosts are in `build` for 48 h).
    for name in hosts
        .iter()
        .map(|h| h.name.as_str())
        .chain(["dash-a", "dash-b", "dash-c"])
    {
        c.cli(&["lifecycle", name, "live"]);
    }
    c.cli(&[
        "maintenance",
        "scan-1",
        "--for",
        "2h",
        "--reason",
        "nessus upgrade",
    ]);
    rollcall_tests::wait_until("the fleet is in", Duration::from_secs(20), || {
        api(&admin, "/api/v1/summary")["hosts"] == 64
            && api(&admin, "/api/v1/hosts?lifecycle=live")["count"] == 64
    });

    let b = Browser::start(1280, 900);

    // Signing in: a page asks for it, a wrong token is told so, a right one lands where
    // the user was going.
    b.goto(&format!("{base}/hosts?state=unhealthy"));
    assert!(b.url().contains("/login?next="), "{}", b.url());
    b.fill("#token", "not-a-token");
    b.click_to("main form button[type=submit]");
    assert!(b
        .text("#signin-error")
        .contains("not known to this collector"));
    shot(&b, "login-refused");
    let secret = std::fs::read_to_string(data.join("enroll.secret")).unwrap();
    b.fill("#token", secret.trim());
    b.click_to("main form button[type=submit]");
    assert!(b.text("#signin-error").contains("enrollment secret"));

    // A read session: the fleet, no admin buttons, and a change refused.
    sign_in(&b, &base, &read_token);
    b.goto(&format!("{base}/hosts/web-003"));
    assert!(
        b.text("#host-state").contains("unhealthy"),
        "{}",
        b.text("#host-state")
    );
    assert!(b.text("#host-reason").contains("remediation exhausted"));
    assert_eq!(b.count("form.action"), 0, "a read session sees no action");
    let status = b.exec_async(
        "const done = arguments[0];
         const csrf = document.querySelector('input[name=csrf]').value;
         fetch('/hosts/web-003/maintenance', { method: 'POST',
             headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
             body: new URLSearchParams({ csrf, for: '2h', reason: 'x', confirm: 'yes' }) })
           .then(r => done(r.status))",
    );
    assert_eq!(status, 403, "a read session cannot change a host");
    assert_eq!(
        api(&admin, "/api/v1/hosts/web-003")["host"]["state"],
        "unhealthy"
    );
    sign_out(&b);

    // An admin session.
    sign_in(&b, &base, admin_token);

    // The overview counts are the API's.
    b.goto(&format!("{base}/"));
    assert_accessible(&b, "overview");
    let summary = api(&admin, "/api/v1/summary");
    for (state, n) in summary["states"].as_object().unwrap() {
        let shown = number(&b.text(&format!("a.count[data-state={state}] .n")));
        assert_eq!(shown as u64, n.as_u64().unwrap(), "{state} on the overview");
    }
    assert_eq!(
        number(&b.text("#flagged-count")) as u64,
        summary["flagged"].as_u64().unwrap()
    );
    assert_eq!(summary["states"]["unhealthy"], 6);
    assert_eq!(b.count("li.tile"), 6, "a tile per region and zone");
    assert!(
        b.text("#zones-h + *").contains("jp-tok-1"),
        "the zone whose scanner does not work: {}",
        b.text("#zones-h + *")
    );
    shot(&b, "overview");

    // A host killed in the fleet turns silent on the open page, without a reload: each of
    // the three real agents in turn, the time from the collector's flag to the page
    // printed.
    b.exec("window.rollcallMarker = 42; return null;");
    for (n, (name, (_, agent))) in ["dash-a", "dash-b", "dash-c"].iter().zip(&real).enumerate() {
        let before = number(&b.text("#flagged-count"));
        Command::new("kill")
            .args(["-9", &agent.pid().to_string()])
            .status()
            .unwrap();
        b.wait(
            &format!("{name} flagged on the page"),
            Duration::from_secs(30),
            |b| number(&b.text("#flagged-count")) > before,
        );
        let shown_at = chrono::Utc::now();
        assert_eq!(number(&b.text("a.count[data-state=silent] .n")), n + 1);
        let flagged_at = api(&admin, &format!("/api/v1/hosts/{name}"))["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| {
                l["kind"] == "state" && l["message"].as_str().unwrap_or("").contains("silent")
            })
            .and_then(|l| l["at"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("{name}'s silence in its history"));
        let lag = shown_at - flagged_at.with_timezone(&chrono::Utc);
        println!(
            "figure: {name} flagged to shown on the open page: {} ms",
            lag.num_milliseconds()
        );
        if n == 0 {
            assert!(
                b.text("ul.tiles").contains("1 flagged of 11"),
                "the region's tile counts it: {}",
                b.text("ul.tiles")
            );
            shot(&b, "overview-after-kill");
        }
    }
    assert_eq!(
        b.exec("return window.rollcallMarker"),
        42,
        "the page was not reloaded"
    );
    assert!(
        b.text("#changes").contains("-> silent"),
        "the last hour's changes say it"
    );

    // From the keyboard: the first Tab reaches the skip link, the filter is sent with Enter.
    b.goto(&format!("{base}/hosts"));
    b.press(browser::TAB);
    assert_eq!(b.exec("return document.activeElement.className"), "skip");
    b.exec("document.getElementById('f-name').focus(); return null;");
    b.fill("#f-name", "dash-");
    b.exec("window.rollcallLeaving = true; return null;");
    b.press(browser::ENTER);
    b.wait(
        "the filter sent from the keyboard",
        Duration::from_secs(10),
        |b| {
            b.exec(
                "return window.rollcallLeaving === undefined && document.readyState === 'complete'",
            ) == true
        },
    );
    assert!(b.url().contains("name=dash-"), "{}", b.url());
    assert_eq!(number(&b.text("#match-count")), 3);

    // Filters and search narrow the table; the URL holds them and reproduces them.
    b.goto(&format!("{base}/hosts"));
    assert_accessible(&b, "hosts");
    // Flagged first: the silent real hosts, then the unhealthy, by name.
    assert_eq!(
        b.exec("return [...document.querySelectorAll('#hosts tbody tr')].slice(0, 4).map(r => r.dataset.host)"),
        serde_json::json!(["dash-a", "dash-b", "dash-c", "web-003"])
    );
    shot(&b, "hosts");
    b.select("#f-region", "eu-de");
    b.fill("#f-name", "web-0");
    b.click("form.filters button[type=submit]");
    b.wait("filtered", Duration::from_secs(10), |b| {
        b.url().contains("region=eu-de")
    });
    let url = b.url();
    assert!(url.contains("name=web-0"), "{url}");
    let want = api(&admin, "/api/v1/hosts?region=eu-de&name=web-0")["count"]
        .as_u64()
        .unwrap();
    assert!(want > 0 && want < 60);
    assert_eq!(number(&b.text("#match-count")) as u64, want);
    let rows =
        b.exec("return [...document.querySelectorAll('#hosts tbody tr')].map(r => r.dataset.host)");
    let rows: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rows.len() as u64, want);
    assert!(rows.iter().all(|h| h.starts_with("web-0")), "{rows:?}");
    // The link, opened anew, shows the same.
    b.goto(&format!("{base}/"));
    b.goto(&url);
    assert_eq!(number(&b.text("#match-count")) as u64, want);
    assert_eq!(
        b.exec("return document.querySelector('#f-region').value"),
        "eu-de"
    );
    // The CSV of the filter: the same hosts.
    let csv = b.exec_async(
        "const done = arguments[0];
         fetch(document.querySelector('#csv').href).then(r => r.text()).then(done)",
    );
    let csv = csv.as_str().unwrap();
    assert_eq!(csv.lines().count() as u64, want + 1, "{csv}");
    assert!(csv
        .lines()
        .skip(1)
        .all(|l| l.starts_with("web-0") && l.contains(",eu-de,")));
    // The state filter.
    b.goto(&format!("{base}/hosts?state=unhealthy"));
    let states = b
        .exec("return [...document.querySelectorAll('#hosts tbody tr')].map(r => r.dataset.state)");
    let states = states.as_array().unwrap();
    assert_eq!(states.len(), 6);
    assert!(states.iter().all(|s| s == "unhealthy"));
    // A bad filter is named.
    b.goto(&format!("{base}/hosts?state=asleep"));
    assert!(b.text("main").contains("asleep"));

    // The host page follows a change made elsewhere, but never under a form being filled.
    b.goto(&format!("{base}/hosts/web-020"));
    b.exec("window.rollcallMarker = 7; return null;");
    c.cli(&["lifecycle", "web-020", "available"]);
    b.wait(
        "the host page shows the new lifecycle",
        Duration::from_secs(10),
        |b| b.text("#host-lifecycle").contains("available"),
    );
    b.fill("#m-reason", "half typed");
    c.cli(&["lifecycle", "web-020", "live"]);
    // Three of the script's one-second looks at the generation, each finding it moved.
    std::thread::sleep(Duration::from_secs(3));
    let now_at = b.exec_async(
        "fetch('/ui/generation').then(r => r.text()).then(t => arguments[0](Number(t)))",
    );
    let page_at = b.exec("return Number(document.getElementById('live').dataset.generation)");
    assert!(
        now_at.as_u64() > page_at.as_u64(),
        "a refresh was due: {now_at} > {page_at}"
    );
    assert_eq!(
        b.exec("return document.querySelector('#m-reason').value"),
        "half typed",
        "a refresh does not wipe what is being typed"
    );
    assert!(
        b.text("#host-lifecycle").contains("available"),
        "nor replaces the part around it"
    );
    assert_eq!(b.exec("return window.rollcallMarker"), 7);

    // An admin sets maintenance from the host page, confirmed; the CLI sees it.
    b.goto(&format!("{base}/hosts/web-013"));
    assert_accessible(&b, "host");
    assert!(b.find("#checks tr[data-check=besclient]").is_some());
    assert!(b.find("#timeline").is_some());
    shot(&b, "host");
    b.fill("#m-for", "2h");
    b.fill("#m-reason", "kernel patching, CHG0042");
    b.click_to("#maintenance-form button[type=submit]");
    assert!(b.text("#confirm-form").contains("kernel patching"));
    shot(&b, "confirm");
    assert_eq!(
        api(&admin, "/api/v1/hosts/web-013")["host"]["state"],
        "unhealthy",
        "nothing changes before the confirmation"
    );
    b.click("#confirm");
    b.wait("maintenance set", Duration::from_secs(10), |b| {
        b.url().contains("done=maintenance")
    });
    assert!(b.text("#host-state").contains("maintenance"));
    assert!(b.text("#history").contains("by token admin (dashboard)"));
    let cli = c.cli(&["host", "web-013"]);
    assert!(cli.contains("maintenance"), "{cli}");
    assert!(cli.contains("kernel patching"), "{cli}");

    // A POST without the CSRF token is refused, and changes nothing.
    let status = b.exec_async(
        "const done = arguments[0];
         fetch('/hosts/web-023/maintenance', { method: 'POST',
             headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
             body: new URLSearchParams({ for: '2h', reason: 'x', confirm: 'yes' }) })
           .then(r => done(r.status))",
    );
    assert_eq!(status, 403);
    assert_ne!(
        api(&admin, "/api/v1/hosts/web-023")["host"]["state"],
        "maintenance"
    );

    // The other pages, and the phone width.
    for (path, name) in [
        ("/zones", "zones"),
        ("/incidents", "incidents"),
        ("/relays", "relays"),
    ] {
        b.goto(&format!("{base}{path}"));
        assert_accessible(&b, name);
        shot(&b, name);
    }
    b.resize(390, 844);
    for (path, name) in [("/", "overview"), ("/hosts", "hosts")] {
        b.goto(&format!("{base}{path}"));
        let overflow = b.exec("return document.documentElement.scrollWidth - window.innerWidth");
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{name} fits a phone: {overflow}"
        );
        shot(&b, &format!("{name}-phone"));
    }
}
