//! Incidents and notifications end to end: the real collector, receivers stood in on
//! loopback speaking their documented formats, agents' heartbeats stopped and resumed.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::{Flavour, Receiver};
use common::{admin_cli as cli, heartbeat, wait_for, Collector, Start};
use rollcall_collector::client::Client;
use serde_json::{json, Value};

/// A collector with `notify` (the `[[notify]]` blocks and anything else) in its file.
fn collector(dir: &Path, notify: &str) -> Collector {
    collector_with_grace(dir, notify, "1s")
}

fn collector_with_grace(dir: &Path, notify: &str, grace: &str) -> Collector {
    let file = dir.join("collector.toml");
    std::fs::write(&file, notify).unwrap();
    let data = dir.join("data");
    Collector::start_with(&data, grace, &["--config", file.to_str().unwrap()])
}

/// The collector on `dir` again, on the address it had (its agents keep their URL).
fn restart(dir: &Path, addr: &str) -> Collector {
    let file = dir.join("collector.toml");
    let exe = Path::new(env!("CARGO_BIN_EXE_rollcall-collector"));
    let args = ["--config", file.to_str().unwrap()];
    Collector::spawn(exe, &dir.join("data"), addr, "1s", &args)
}

/// Every 2 s, announcing 3 s: within the collector's per-host budget (a burst of 20,
/// one more every 3 s) for minutes.
const EVERY: Duration = Duration::from_secs(2);

fn beat(host: &str, region: &str, health: &str) -> Value {
    let mut hb = heartbeat(host, 3, health, &[]);
    hb["labels"]["region"] = json!(region);
    hb["labels"]["zone"] = json!(format!("{region}-a"));
    hb
}

/// One simulated host: its region, whether it sends, and the health it reports.
#[derive(Clone)]
struct Member {
    name: String,
    region: String,
    up: Arc<AtomicBool>,
    health: Arc<std::sync::Mutex<&'static str>>,
}

/// Hosts that keep sending heartbeats while they are `up`.
struct Fleet {
    members: Vec<Member>,
    stop: Arc<AtomicBool>,
}

impl Fleet {
    fn start(c: &Collector, hosts: &[(&str, &str)]) -> Fleet {
        let admin = c.admin();
        let agents = Arc::new(c.agents());
        let stop = Arc::new(AtomicBool::new(false));
        let mut members = Vec::new();
        for (h, region) in hosts {
            assert_eq!(agents.post(&beat(h, region, "ok")).status, 200);
            rollcall_collector::testing::set_lifecycle(&admin, h, "live");
            members.push(Member {
                name: h.to_string(),
                region: region.to_string(),
                up: Arc::new(AtomicBool::new(true)),
                health: Arc::new(std::sync::Mutex::new("ok")),
            });
        }
        for m in members.clone() {
            let (agents, stop) = (agents.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if m.up.load(Ordering::Relaxed) {
                        let health = *m.health.lock().unwrap();
                        // A collector being restarted is not the test's failure.
                        let _ = agents.try_post(&beat(&m.name, &m.region, health));
                    }
                    std::thread::sleep(EVERY);
                }
            });
        }
        Fleet { members, stop }
    }

    /// Starts or stops the heartbeats of a host, or of every host of a region.
    fn set(&self, host_or_region: &str, up: bool) {
        for m in &self.members {
            if m.name == host_or_region || m.region == host_or_region {
                m.up.store(up, Ordering::Relaxed);
            }
        }
    }

    /// The health a host reports from its next heartbeat on.
    fn health(&self, host: &str, health: &'static str) {
        for m in &self.members {
            if m.name == host {
                *m.health.lock().unwrap() = health;
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn incidents(c: &Client, query: &str) -> Vec<Value> {
    let r = c.get(&format!("/api/v1/incidents?{query}")).unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["incidents"].as_array().cloned().unwrap_or_default()
}

fn secret(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p.display().to_string()
}

#[test]
fn a_silent_host_is_one_trigger_and_one_resolve_on_every_receiver() {
    let d = tempfile::tempdir().unwrap();
    let (hook, slack, pd, gh) = (
        Receiver::start(Flavour::Webhook),
        Receiver::start(Flavour::Slack),
        Receiver::start(Flavour::Pagerduty),
        Receiver::start(Flavour::Github),
    );
    let c = collector(
        d.path(),
        &format!(
            r#"
[incidents]
runbooks = {{ silent = "https://wiki.internal/runbooks/silent-host" }}

[[notify]]
name = "team-hook"
kind = "webhook"
url = "{}"
secret_file = "{}"

[[notify]]
name = "chat"
kind = "slack"
url = "{}"

[[notify]]
name = "pager"
kind = "pagerduty"
url = "{}"
routing_key_file = "{}"
min_severity = "critical"

[[notify]]
name = "tickets"
kind = "github"
base_url = "{}"
repo = "sre/fleet"
token_file = "{}"
label = "rollcall"
"#,
            hook.url("/hook"),
            secret(d.path(), "hook.secret", "It's a Secret to Everybody"),
            slack.url("/services/T0/B0/x"),
            pd.url("/v2/enqueue"),
            secret(d.path(), "pd.key", "R0UTINGKEY"),
            gh.url("/api/v3"),
            secret(d.path(), "gh.token", "gh-token"),
        ),
    );
    let admin = c.admin();
    let fleet = Fleet::start(&c, &[("web-1", "us-south"), ("web-2", "us-south")]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        incidents(&admin, "state=all").is_empty(),
        "nothing while all is well"
    );

    fleet.set("web-1", false);
    wait_for(
        "the trigger on every receiver",
        Duration::from_secs(15),
        || {
            [&hook, &slack, &pd]
                .iter()
                .all(|r| !r.requests().is_empty())
                && gh.shared.lock().unwrap().issues.len() == 1
        },
    );
    let open = incidents(&admin, "state=open");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["key"], "silent/web-1");
    assert_eq!(
        open[0]["runbook"],
        "https://wiki.internal/runbooks/silent-host"
    );
    let (code, out) = cli(&c, &["incidents"]);
    assert_eq!(code, 1, "an open incident: exit 1\n{out}");
    assert!(out.contains("silent/") || out.contains("web-1"), "{out}");

    fleet.set("web-1", true);
    wait_for(
        "the resolve on every receiver",
        Duration::from_secs(15),
        || {
            [&hook, &slack, &pd].iter().all(|r| r.requests().len() >= 2)
                && gh.shared.lock().unwrap().issues[0].state == "closed"
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    // Webhook: Alertmanager's format, firing then resolved, signed both ways.
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "one trigger, one resolve");
    let (first, second) = (reqs[0].json(), reqs[1].json());
    assert_eq!(
        (first["version"].as_str(), first["status"].as_str()),
        (Some("4"), Some("firing"))
    );
    assert_eq!(second["status"], "resolved");
    assert_eq!(
        first["alerts"][0]["fingerprint"],
        second["alerts"][0]["fingerprint"]
    );
    assert_eq!(first["alerts"][0]["labels"]["subject"], "web-1");
    assert_ne!(second["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    for r in &reqs {
        let want = rollcall_collector::notify::wire::signatures(
            "It's a Secret to Everybody",
            &r.headers["webhook-id"],
            chrono::DateTime::from_timestamp(r.headers["webhook-timestamp"].parse().unwrap(), 0)
                .unwrap(),
            &r.body,
        );
        assert_eq!(r.headers["x-hub-signature-256"], want[0].1);
        assert_eq!(r.headers["webhook-signature"], want[3].1);
    }
    // Slack: one message per change, the second says it is resolved.
    let s = slack.taken();
    assert_eq!(s.len(), 2);
    assert!(
        s[1]["text"].as_str().unwrap().starts_with("Resolved"),
        "{:?}",
        s[1]
    );
    // PagerDuty: trigger then resolve with one dedup key.
    let p = pd.taken();
    assert_eq!(
        p.iter()
            .map(|e| e["event_action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["trigger", "resolve"]
    );
    assert_eq!(p[0]["dedup_key"], p[1]["dedup_key"]);
    assert_eq!(p[0]["routing_key"], "R0UTINGKEY");
    assert_eq!(p[0]["payload"]["severity"], "critical");
    // GitHub: one issue, with the marker, labelled, closed with the resolution.
    {
        let g = gh.shared.lock().unwrap();
        assert_eq!(g.issues.len(), 1);
        let i = &g.issues[0];
        assert!(
            i.body.contains("<!-- rollcall-dedup-key: silent/web-1 -->"),
            "{}",
            i.body
        );
        assert_eq!(i.labels, ["rollcall"]);
        assert!(i.comments[0].contains("web-1 is up"), "{:?}", i.comments);
    }
    // The incident's story, and every delivery sent.
    let all = incidents(&admin, "state=all");
    assert_eq!(all.len(), 1, "{all:?}");
    let id = all[0]["id"].as_i64().unwrap();
    let one = admin.get(&format!("/api/v1/incidents/{id}")).unwrap().body;
    let what: Vec<&str> = one["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["what"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["opened", "notified", "resolved"]);
    let states: Vec<&str> = one["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["sent"; 8]);
    let (code, out) = cli(&c, &["incidents"]);
    assert_eq!(code, 0, "{out}");
    let m = admin.get_bytes("/metrics").unwrap().1;
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains("rollcall_notifications_total{receiver_kind=\"webhook\",outcome=\"sent\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("rollcall_incidents_open{kind=\"silent\"} 0"),
        "{m}"
    );
}

fn hook_config(name: &str, url: &str) -> String {
    format!("[[notify]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\n\n")
}

#[test]
fn a_kill_9_between_trigger_and_resolve_and_a_receiver_down_throughout_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (up, down) = (
        Receiver::start(Flavour::Webhook),
        Receiver::start(Flavour::Webhook),
    );
    // `down` refuses connections for the whole incident.
    down.stop();
    let config = hook_config("up", &up.url("/")) + &hook_config("down", &down.url("/"));
    let mut c = collector(d.path(), &config);
    let fleet = Fleet::start(&c, &[("db-1", "eu-de"), ("db-2", "eu-de")]);
    std::thread::sleep(Duration::from_secs(2));
    fleet.set("db-1", false);
    // The trigger taken, and recorded as taken. (Killed between the receiver taking it
    // and the record, the collector sends it again after the restart: at least once. The
    // `webhook-id` header is the same on both, for a receiver that deduplicates.)
    let admin = c.admin();
    wait_for(
        "the trigger recorded as sent",
        Duration::from_secs(15),
        || {
            let list = incidents(&admin, "state=open");
            let Some(id) = list.first().and_then(|i| i["id"].as_i64()) else {
                return false;
            };
            let one = admin.get(&format!("/api/v1/incidents/{id}")).unwrap().body;
            one["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["receiver"] == "up" && d["action"] == "trigger" && d["state"] == "sent")
        },
    );
    // Killed between trigger and resolve; the host comes back while it is down.
    c.kill9();
    fleet.set("db-1", true);
    std::thread::sleep(Duration::from_secs(3));
    let c = restart(d.path(), &c.addr);
    wait_for(
        "the resolve after the restart",
        Duration::from_secs(20),
        || up.requests().len() >= 2,
    );
    let down = down.restart();
    wait_for(
        "the receiver that was down",
        Duration::from_secs(40),
        || down.requests().len() >= 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    let want = [
        ("silent/db-1".to_owned(), "firing".to_owned()),
        ("silent/db-1".to_owned(), "resolved".to_owned()),
    ];
    assert_eq!(
        up.statuses(),
        want,
        "the resolve sent once, after a kill -9"
    );
    assert_eq!(
        down.statuses(),
        want,
        "in order, once each, when it returned"
    );
    let one = &incidents(&c.admin(), "state=all")[0];
    assert!(one["resolution"]
        .as_str()
        .unwrap()
        .starts_with("db-1 is up"));
    drop(fleet);
}

#[test]
fn retry_after_is_honoured_and_a_receiver_gone_for_good_is_shown_until_fixed() {
    let d = tempfile::tempdir().unwrap();
    let (slack, gone) = (
        Receiver::start(Flavour::Slack),
        Receiver::start(Flavour::Webhook),
    );
    slack.script([(
        429,
        vec![("retry-after".into(), "2".into())],
        "rate_limited".into(),
    )]);
    gone.script([(410, vec![], "Gone".into())]);
    let (flaky, slow) = (
        Receiver::start(Flavour::Webhook),
        Receiver::start(Flavour::Webhook),
    );
    flaky.script([(503, vec![], "busy".into()), (502, vec![], "".into())]);
    // No answer at all: held past the collector's 10 s request timeout.
    slow.script([(0, vec![], String::new())]);
    let config = format!(
        "[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{}\"\n\n{}{}{}",
        slack.url("/services/x"),
        hook_config("old-hook", &gone.url("/")),
        hook_config("flaky", &flaky.url("/")),
        hook_config("slow", &slow.url("/"))
    );
    let c = collector(d.path(), &config);
    let fleet = Fleet::start(&c, &[("app-1", "us-east"), ("app-2", "us-east")]);
    std::thread::sleep(Duration::from_secs(2));
    fleet.set("app-1", false);
    let started = Instant::now();
    wait_for(
        "the message after Retry-After",
        Duration::from_secs(15),
        || !slack.requests().is_empty(),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the 2 s Slack asked for"
    );
    wait_for(
        "the 410 to mark the receiver failed",
        Duration::from_secs(10),
        || cli(&c, &["notify", "list"]).0 == 1,
    );
    let (_, out) = cli(&c, &["notify", "list"]);
    assert!(
        out.contains("old-hook") && out.contains("failed") && out.contains("HTTP 410"),
        "{out}"
    );
    assert!(gone.requests().is_empty());
    // Fixed: a test notification puts it back in service, and what waited is delivered.
    let (code, out) = cli(&c, &["notify", "test", "old-hook"]);
    assert_eq!(code, 0, "{out}");
    wait_for("the pending trigger", Duration::from_secs(10), || {
        gone.requests().len() >= 2
    });
    let taken = gone.taken();
    assert_eq!(taken[0]["alerts"][0]["labels"]["test"], "true");
    assert_eq!(taken[1]["alerts"][0]["labels"]["incident"], "silent/app-1");
    // 5xx and a receiver that does not answer: retried until taken, once.
    wait_for(
        "the trigger through 503 and 502",
        Duration::from_secs(15),
        || !flaky.requests().is_empty(),
    );
    wait_for(
        "the trigger after a timeout",
        Duration::from_secs(40),
        || !slow.requests().is_empty(),
    );
    std::thread::sleep(Duration::from_secs(1));
    for r in [&flaky, &slow] {
        assert_eq!(
            r.statuses(),
            [("silent/app-1".to_owned(), "firing".to_owned())],
            "taken once after the failures"
        );
    }
    let (code, out) = cli(&c, &["notify", "test", "nobody"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("old-hook"),
        "names the receivers there are: {out}"
    );
    drop(fleet);
}

#[test]
fn maintenance_is_quiet_and_a_flapping_host_is_one_incident() {
    let d = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Flavour::Webhook);
    let config = format!(
        "[incidents]\nflap_changes = 4\nflap_window = \"10m\"\n\n{}",
        hook_config("hook", &hook.url("/"))
    );
    let c = collector(d.path(), &config);
    let admin = c.admin();
    let fleet = Fleet::start(
        &c,
        &[
            ("m-1", "ap-south"),
            ("f-1", "ap-south"),
            ("x-1", "ap-south"),
        ],
    );
    let r = admin
        .send_json(
            "PUT",
            "/api/v1/hosts/m-1/maintenance",
            &json!({"for": "1h", "reason": "kernel patching"}),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    fleet.set("m-1", false);
    // f-1 flaps: critical, ok, critical, ... each held over two heartbeats.
    for n in 0..10 {
        fleet.health("f-1", if n % 2 == 0 { "critical" } else { "ok" });
        std::thread::sleep(EVERY * 2);
    }
    fleet.health("f-1", "ok");
    std::thread::sleep(Duration::from_secs(2));
    let all = incidents(&admin, "state=all");
    assert!(
        all.iter().all(|i| i["subject"] != "m-1"),
        "nothing for a host in maintenance: {all:?}"
    );
    let flapping: Vec<&Value> = all.iter().filter(|i| i["kind"] == "flapping").collect();
    assert_eq!(flapping.len(), 1, "{all:?}");
    assert!(flapping[0]["summary"]
        .as_str()
        .unwrap()
        .contains("f-1 flapping"));
    // Before it was called flapping, at most flap_changes / 2 incidents of its own were
    // told; after, its changes are listed inside the flapping incident, not told.
    let own: Vec<&Value> = all
        .iter()
        .filter(|i| i["subject"] == "f-1" && i["kind"] != "flapping")
        .collect();
    let told = own
        .iter()
        .filter(|i| !i["notified"].as_array().unwrap().is_empty())
        .count();
    assert!(told <= 2, "{all:?}");
    assert!(own
        .iter()
        .filter(|i| i["notified"].as_array().unwrap().is_empty())
        .all(|i| i["covered_by"] == "flapping/f-1"));
    let triggers = hook
        .statuses()
        .iter()
        .filter(|(k, s)| k.ends_with("/f-1") && s == "firing")
        .count();
    assert_eq!(triggers, told + 1, "{:?}", hook.statuses());
    drop(fleet);
}

#[test]
fn a_dark_region_is_one_incident_with_its_hosts_inside_and_one_resolve() {
    let d = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Flavour::Webhook);
    let c = collector(d.path(), &hook_config("hook", &hook.url("/")));
    let admin = c.admin();
    let names: Vec<String> = (0..8)
        .map(|i| format!("dal-{i}"))
        .chain((0..4).map(|i| format!("fra-{i}")))
        .collect();
    let hosts: Vec<(&str, &str)> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                if n.starts_with("dal") {
                    "us-south"
                } else {
                    "eu-de"
                },
            )
        })
        .collect();
    let fleet = Fleet::start(&c, &hosts);
    std::thread::sleep(Duration::from_secs(2));
    fleet.set("us-south", false);
    wait_for("the region incident", Duration::from_secs(15), || {
        !hook.requests().is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hook.statuses(),
        [("region-dark/us-south".to_owned(), "firing".to_owned())],
        "one notification, not eight"
    );
    let open = incidents(&admin, "state=open&kind=region-dark");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["hosts"].as_array().unwrap().len(), 8);
    let hosts_inside = incidents(&admin, "state=open&kind=silent");
    assert_eq!(hosts_inside.len(), 8);
    assert!(hosts_inside
        .iter()
        .all(|i| i["covered_by"] == "region-dark/us-south"));
    fleet.set("us-south", true);
    wait_for("the resolve", Duration::from_secs(15), || {
        hook.requests().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hook.statuses(),
        [
            ("region-dark/us-south".to_owned(), "firing".to_owned()),
            ("region-dark/us-south".to_owned(), "resolved".to_owned())
        ]
    );
    assert!(incidents(&admin, "state=open").is_empty());
    drop(fleet);
}

/// A plain HTTP client for the test's own calls to Alertmanager.
fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

/// The real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port.
struct Alertmanager {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: sre\n  group_wait: 1s\nreceivers:\n  - name: sre\n",
        )
        .unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager; scripts/test.sh does)");
        let url = format!("http://127.0.0.1:{port}");
        let http = http();
        wait_for("Alertmanager ready", Duration::from_secs(20), || {
            http.get(format!("{url}/-/ready"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        Alertmanager {
            child,
            url,
            _dir: dir,
        }
    }

    /// The alerts it holds as active, by their `incident` label.
    fn active(&self) -> Vec<Value> {
        let v: Value = http()
            .get(format!("{}/api/v2/alerts", self.url))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn alertmanager_holds_the_alert_while_it_fires_and_lets_it_go_on_resolve() {
    let am = Alertmanager::start();
    let d = tempfile::tempdir().unwrap();
    let c = collector(
        d.path(),
        &format!(
            "[[notify]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{}\"\nmatch = {{ region = \"sa-east\" }}\n",
            am.url
        ),
    );
    let fleet = Fleet::start(
        &c,
        &[("sp-1", "sa-east"), ("sp-2", "sa-east"), ("x-1", "eu-west")],
    );
    std::thread::sleep(Duration::from_secs(2));
    fleet.set("sp-1", false);
    fleet.set("x-1", false);
    wait_for("the alert in Alertmanager", Duration::from_secs(15), || {
        !am.active().is_empty()
    });
    let alerts = am.active();
    assert_eq!(alerts.len(), 1, "routed by region: {alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["labels"]["incident"], "silent/sp-1");
    assert_eq!(a["labels"]["alertname"], "rollcall-silent");
    assert_eq!(a["labels"]["severity"], "critical");
    assert!(a["annotations"]["next_step"]
        .as_str()
        .unwrap()
        .contains("sp-1"));
    assert_eq!(a["status"]["state"], "active");
    // amtool, Alertmanager's own client, sees it too.
    let o = Command::new("amtool")
        .args([
            "alert",
            "query",
            "--alertmanager.url",
            &am.url,
            "-o",
            "simple",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("rollcall-silent"));
    fleet.set("sp-1", true);
    wait_for(
        "the alert resolved in Alertmanager",
        Duration::from_secs(15),
        || am.active().is_empty(),
    );
    drop(fleet);
}

#[test]
fn a_collector_that_hears_nobody_is_one_incident() {
    let d = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Flavour::Webhook);
    // A grace longer than the spread of the hosts' last heartbeats (one send period, 2 s),
    // as the defaults have it (a 60 s interval, 120 s of grace): when the first host is
    // silent, the last one heard is late, and the fleet is seen going quiet as one. With
    // less, a loaded machine that spreads the senders' phases makes the first silences
    // look like hosts of their own.
    let c = collector_with_grace(d.path(), &hook_config("hook", &hook.url("/")), "3s");
    let names: Vec<String> = (0..12).map(|i| format!("b-{i}")).collect();
    let regions = ["ap-1", "ap-2", "ap-3"];
    let hosts: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), regions[i % 3]))
        .collect();
    let fleet = Fleet::start(&c, &hosts);
    std::thread::sleep(Duration::from_secs(2));
    for r in regions {
        fleet.set(r, false);
    }
    wait_for("the blind collector", Duration::from_secs(15), || {
        !hook.requests().is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hook.statuses(),
        [("collector-blind/fleet".to_owned(), "firing".to_owned())],
        "one incident, not twelve"
    );
    for r in regions {
        fleet.set(r, true);
    }
    wait_for("its resolve", Duration::from_secs(15), || {
        hook.requests().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.statuses().len(), 2, "{:?}", hook.statuses());
    assert_eq!(hook.statuses()[1].1, "resolved");
    drop(fleet);
}
