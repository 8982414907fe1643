//! `rollcall`: the SRE's view of the fleet, over the collector's API.
//!
//! Exit codes: 0 ok; 1 the answer is a problem (`silent` found silent hosts); 2 bad usage;
//! 3 the collector refused the request (4xx); 4 the collector could not be reached or
//! answered with an error (5xx, TLS, network).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rollcall_collector::client::{Client, Reply};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "rollcall", version, about = "Which hosts went quiet, and why")]
struct Cli {
    /// The collector, e.g. https://rollcall.internal:8443
    #[arg(long, env = "ROLLCALL_URL", global = true)]
    url: Option<String>,
    /// API token (read or admin).
    #[arg(long, env = "ROLLCALL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The collector's CA certificate (its ca.pem), pinned.
    #[arg(long, env = "ROLLCALL_CA", global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List hosts, filtered.
    Hosts {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        lifecycle: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One host: state, why, and its recent events.
    Host {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Silent hosts; exit 1 if there are any that are flagged.
    Silent {
        #[arg(long)]
        json: bool,
    },
    /// Hosts that enrolled and never sent a heartbeat, oldest first.
    Unheard {
        #[arg(long)]
        json: bool,
    },
    /// Hosts per state.
    Summary {
        #[arg(long)]
        json: bool,
    },
    /// Scan zones and their scanners; exit 1 if a zone has no working scanner.
    Zones {
        #[arg(long)]
        json: bool,
    },
    /// BigFix relays: the live hosts checking in through each, how many fail to; exit 1 if
    /// a relay is suspect.
    Relays {
        #[arg(long)]
        json: bool,
    },
    /// One row per host for a compliance ticket: scope, state, BigFix check-in and relay,
    /// nessusd, BMC and the zone's scanners (a table, --json, or --csv to attach).
    Compliance {
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Incidents, newest first (open ones unless --resolved or --all); with an id, that
    /// incident, its history and its notifications. Exit 1 if any listed is open.
    Incidents {
        /// One incident by id.
        id: Option<String>,
        #[arg(long, conflicts_with = "all")]
        resolved: bool,
        #[arg(long)]
        all: bool,
        /// Only this kind (`unhealthy` takes every unhealthy-…).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Notification receivers: `list` their state, `test NAME` sends a marked test.
    Notify {
        #[command(subcommand)]
        action: NotifyCmd,
    },
    /// The fleet against the inventory: missing, unknown, mismatched, duplicated hosts and
    /// lifecycle disagreements, each with what to do. Exit 1 when there are more than
    /// --max discrepancies.
    Reconcile {
        #[arg(long)]
        json: bool,
        /// Also write reconcile.json and reconcile.txt into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Discrepancies tolerated: a count (`25`) or a share of the inventory's devices
        /// (`0.5%`). Default 0.
        #[arg(long, default_value = "0")]
        max: String,
    },
    /// Put a host under maintenance (or end it with --end).
    Maintenance {
        name: String,
        /// How long, e.g. 2h.
        #[arg(long = "for", required_unless_present = "end")]
        duration: Option<String>,
        #[arg(long, required_unless_present = "end")]
        reason: Option<String>,
        #[arg(long, conflicts_with_all = ["duration", "reason"])]
        end: bool,
    },
    /// Set a host's lifecycle: live, available (decommission) or retired.
    Lifecycle { name: String, lifecycle: String },
    /// Revoke every credential of a host (its agent must enroll again).
    Revoke { name: String },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff).
    #[command(hide = true)]
    Manpage,
}

#[derive(Subcommand)]
enum NotifyCmd {
    /// Each receiver: ok, retrying or failed; notifications pending, sent, refused.
    /// Exit 1 if a receiver has failed for good.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Send a clearly marked test notification to receiver NAME (admin token).
    Test { name: String },
}

enum Failure {
    Usage(String),
    Refused(String),
    Unreachable(String),
}

type Outcome = Result<ExitCode, Failure>;

fn check(r: Reply) -> Result<Value, Failure> {
    match r.status {
        200..=299 => Ok(r.body),
        400..=499 => {
            let field = r.body["field"]
                .as_str()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            Err(Failure::Refused(
                rollcall_support::escape_controls(&format!(
                    "{}{field}",
                    r.body["error"].as_str().unwrap_or("refused")
                ))
                .into_owned(),
            ))
        }
        _ => Err(Failure::Unreachable(
            rollcall_support::escape_controls(&format!(
                "collector answered {}: {}",
                r.status,
                r.body["error"].as_str().unwrap_or("")
            ))
            .into_owned(),
        )),
    }
}

fn get(c: &Client, path: &str) -> Result<Value, Failure> {
    check(
        c.get(path)
            .map_err(|e| Failure::Unreachable(e.to_string()))?,
    )
    .map(for_output)
}

fn send(c: &Client, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
    let reply = match body {
        Some(b) => c.send_json(method, path, &b),
        None => c.request(method, path, None, None),
    };
    check(reply.map_err(|e| Failure::Unreachable(e.to_string()))?).map(for_output)
}

/// Set when the output is a table or text, not JSON.
static FOR_TERMINAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the collector answered, ready to print. Hosts and their agents write reasons,
/// event messages and log lines: for a terminal, their control characters are escaped so
/// they can neither move the cursor nor forge a line. JSON output keeps them, escaped by
/// JSON itself.
fn for_output(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(e) = rollcall_support::escape_controls(s) {
                    *s = e;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::Object(o) => o.values_mut().for_each(walk),
            _ => {}
        }
    }
    if FOR_TERMINAL.load(std::sync::atomic::Ordering::Relaxed) {
        walk(&mut v);
    }
    v
}

impl Cmd {
    /// Whether this command prints JSON.
    fn json(&self) -> bool {
        match self {
            Cmd::Hosts { json, .. }
            | Cmd::Host { json, .. }
            | Cmd::Silent { json }
            | Cmd::Summary { json }
            | Cmd::Unheard { json }
            | Cmd::Zones { json }
            | Cmd::Relays { json }
            | Cmd::Compliance { json, .. }
            | Cmd::Incidents { json, .. }
            | Cmd::Reconcile { json, .. } => *json,
            Cmd::Notify {
                action: NotifyCmd::List { json },
            } => *json,
            _ => false,
        }
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

fn host_rows(v: &Value) -> Vec<Vec<String>> {
    v["hosts"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let s = |k: &str| h[k].as_str().unwrap_or("").to_owned();
                    let flag = if h["flagged"] == true { "!" } else { "" };
                    vec![
                        s("name"),
                        format!("{}{flag}", s("state")),
                        s("lifecycle"),
                        h["labels"]["zone"].as_str().unwrap_or("-").to_owned(),
                        h["checkin"]["last_success"]
                            .as_str()
                            .map_or("-".to_owned(), |t| t.chars().take(16).collect()),
                        h["checkin"]["relay"]
                            .as_str()
                            .filter(|r| !r.is_empty())
                            .unwrap_or("-")
                            .to_owned(),
                        s("reason"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default()
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Exit 1 when the answer is a problem (something flagged, suspect, open, failed).
fn problem_if(problem: bool) -> ExitCode {
    if problem {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_hosts(v: &Value, json: bool) {
    if json {
        print_json(v);
    } else {
        println!(
            "{}",
            table(
                &[
                    "NAME",
                    "STATE",
                    "LIFECYCLE",
                    "ZONE",
                    "CHECK-IN",
                    "RELAY",
                    "WHY"
                ],
                &host_rows(v)
            )
        );
        println!("{} host(s); ! = flagged", v["count"]);
    }
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Percent-encoding for query values and path segments.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn run(cli: Cli) -> Outcome {
    use clap::CommandFactory;
    match cli.command {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "rollcall",
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Manpage => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Failure::Unreachable(e.to_string()))?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let (Some(url), Some(token), Some(ca)) = (cli.url, cli.token, cli.ca) else {
        return Err(Failure::Usage(
            "which collector? set ROLLCALL_URL, ROLLCALL_TOKEN and ROLLCALL_CA (or --url, --token, --ca); the collector prints them at its first start".into(),
        ));
    };
    let c = Client::new(&url, &ca, Some(token)).map_err(|e| Failure::Unreachable(e.to_string()))?;
    FOR_TERMINAL.store(!cli.command.json(), std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        Cmd::Hosts {
            state,
            region,
            zone,
            role,
            lifecycle,
            json,
        } => {
            let q = query(&[
                ("state", &state),
                ("region", &region),
                ("zone", &zone),
                ("role", &role),
                ("lifecycle", &lifecycle),
            ]);
            print_hosts(&get(&c, &format!("/api/v1/hosts{q}"))?, json);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Silent { json } => {
            let v = get(&c, "/api/v1/hosts?state=silent")?;
            print_hosts(&v, json);
            let flagged = v["hosts"]
                .as_array()
                .is_some_and(|h| h.iter().any(|h| h["flagged"] == true));
            Ok(problem_if(flagged))
        }
        Cmd::Host { name, json } => {
            let v = get(&c, &format!("/api/v1/hosts/{}", encode(&name)))?;
            if json {
                print_json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let h = &v["host"];
            println!(
                "{}: {}{} ({}, by {})",
                name,
                h["state"].as_str().unwrap_or(""),
                if h["flagged"] == true {
                    ", flagged"
                } else {
                    ""
                },
                h["lifecycle"].as_str().unwrap_or(""),
                h["lifecycle_source"].as_str().unwrap_or("first seen")
            );
            println!("  why: {}", h["reason"].as_str().unwrap_or(""));
            println!("  last heard: {}", h["last_heard"].as_str().unwrap_or(""));
            println!("  identity: {}", h["identity"].as_str().unwrap_or(""));
            if let Some(d) = h["duplicate_of"].as_str() {
                println!("  also live: {d}");
            }
            if let Some(l) = h["labels"].as_object() {
                let l: Vec<String> = l
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                println!("  labels: {}", l.join(" "));
            }
            let b = &v["agent_state"]["besclient"];
            if b.is_object() {
                println!(
                    "  besclient: {} — {}",
                    b["status"].as_str().unwrap_or(""),
                    b["reason"].as_str().unwrap_or("")
                );
            }
            let ci = &b["checkin"];
            if ci.is_object() {
                // The registry's copy is updated by every heartbeat; the stored state only
                // when the verdict, relay or failing-since change.
                let fresh = &h["checkin"];
                println!(
                    "  BigFix check-in: {} — {} (relay {}, last success {})",
                    ci["verdict"].as_str().unwrap_or(""),
                    ci["reason"].as_str().unwrap_or(""),
                    fresh["relay"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        .unwrap_or("not named"),
                    fresh["last_success"].as_str().unwrap_or("none seen")
                );
            }
            for check in ["nessusd", "bmc"] {
                let c = &v["agent_state"][check];
                if c.is_object() {
                    println!(
                        "  {check}: {} — {}",
                        c["health"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or("")
                    );
                }
            }
            let events = v["events"].as_array().cloned().unwrap_or_default();
            if !events.is_empty() {
                println!("  recent events:");
                for e in events.iter().take(15) {
                    println!(
                        "    {}  {}",
                        e["at"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    );
                }
            }
            let history = v["history"].as_array().cloned().unwrap_or_default();
            if !history.is_empty() {
                println!("  history (as the collector saw it):");
                for l in history.iter().take(15) {
                    println!(
                        "    {}  {}: {}",
                        l["at"].as_str().unwrap_or(""),
                        l["kind"].as_str().unwrap_or(""),
                        l["message"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Unheard { json } => {
            let v = get(&c, "/api/v1/enrollments/unheard")?;
            if json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        vec![
                            h["host"].as_str().unwrap_or("").to_owned(),
                            h["enrolled_at"].as_str().unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                println!("{}", table(&["HOST", "ENROLLED"], &rows));
                println!("{} host(s) enrolled and never heard", v["count"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Summary { json } => {
            let v = get(&c, "/api/v1/summary")?;
            if json {
                print_json(&v);
            } else {
                let order = [
                    "up",
                    "late",
                    "silent",
                    "unhealthy",
                    "maintenance",
                    "duplicate",
                ];
                let rows: Vec<Vec<String>> = order
                    .iter()
                    .map(|s| vec![s.to_string(), v["states"][s].to_string()])
                    .collect();
                println!("{}", table(&["STATE", "HOSTS"], &rows));
                println!("{} host(s), {} flagged", v["hosts"], v["flagged"]);
                if let Some(z) = v["zones_flagged"].as_array().filter(|z| !z.is_empty()) {
                    let z: Vec<&str> = z.iter().filter_map(|z| z.as_str()).collect();
                    println!("zone(s) with no working scanner: {}", z.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Zones { json } => {
            let v = get(&c, "/api/v1/zones")?;
            if json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v["zones"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|z| {
                        let scanners = z["scanners"].as_array().cloned().unwrap_or_default();
                        let working = scanners.iter().filter(|s| s["working"] == true).count();
                        vec![
                            z["zone"].as_str().unwrap_or("").to_owned(),
                            z["hosts"].to_string(),
                            z["bmcs"].to_string(),
                            format!("{working}/{}", scanners.len()),
                            if z["flagged"] == true { "FLAGGED" } else { "" }.to_owned(),
                            z["reason"].as_str().unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["ZONE", "HOSTS", "BMCS", "SCANNERS", "", "WHY"], &rows)
                );
            }
            Ok(problem_if(v["flagged"].as_u64().unwrap_or(0) > 0))
        }
        Cmd::Compliance { json, csv } => {
            if csv {
                let (status, body) = c
                    .get_bytes("/api/v1/compliance?format=csv")
                    .map_err(|e| Failure::Unreachable(e.to_string()))?;
                if !(200..300).contains(&status) {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    return Err(Failure::Refused(
                        v["error"].as_str().unwrap_or("refused").to_owned(),
                    ));
                }
                print!("{}", String::from_utf8_lossy(&body));
                return Ok(ExitCode::SUCCESS);
            }
            let v = get(&c, "/api/v1/compliance")?;
            if json {
                print_json(&v);
            } else {
                let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
                let rows: Vec<Vec<String>> = v["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            s(r, "name"),
                            if r["in_scope"] == true { "yes" } else { "no" }.to_owned(),
                            s(r, "state"),
                            s(r, "besclient"),
                            s(r, "last_checkin"),
                            s(r, "relay"),
                            s(r, "bmc"),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "HOST",
                            "IN SCOPE",
                            "STATE",
                            "BESCLIENT",
                            "LAST CHECK-IN",
                            "RELAY",
                            "BMC"
                        ],
                        &rows
                    )
                );
                println!("{} host(s), {} in scope", v["hosts"], v["in_scope"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Relays { json } => {
            let v = get(&c, "/api/v1/relays")?;
            if json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v["relays"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let regions: Vec<&str> = r["regions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| x.as_str())
                            .collect();
                        vec![
                            r["relay"].as_str().unwrap_or("").to_owned(),
                            r["hosts"].to_string(),
                            r["failing"].to_string(),
                            regions.join(","),
                            if r["suspect"] == true { "SUSPECT" } else { "" }.to_owned(),
                            r["reason"].as_str().unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["RELAY", "HOSTS", "FAILING", "REGIONS", "", "WHY"], &rows)
                );
            }
            Ok(problem_if(v["suspect"].as_u64().unwrap_or(0) > 0))
        }
        Cmd::Incidents {
            id: Some(id), json, ..
        } => {
            let v = get(&c, &format!("/api/v1/incidents/{}", encode(&id)))?;
            if json {
                print_json(&v);
            } else {
                print_incident(&v);
            }
            Ok(problem_if(v["resolved_at"].is_null()))
        }
        Cmd::Incidents {
            id: None,
            resolved,
            all,
            kind,
            region,
            json,
        } => {
            let state = if all {
                "all"
            } else if resolved {
                "resolved"
            } else {
                "open"
            };
            let mut path = format!("/api/v1/incidents?state={state}");
            for (k, v) in [("kind", &kind), ("region", &region)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", encode(v)));
                }
            }
            let v = get(&c, &path)?;
            if json {
                print_json(&v);
            } else {
                let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
                let rows: Vec<Vec<String>> = v["incidents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        let hosts = i["hosts"].as_array().map_or(0, Vec::len);
                        let told = if !i["covered_by"].is_null() {
                            format!("in {}", s(i, "covered_by"))
                        } else {
                            i["notified"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|x| x.as_str())
                                        .collect::<Vec<_>>()
                                        .join(",")
                                })
                                .unwrap_or_default()
                        };
                        vec![
                            i["id"].to_string(),
                            s(i, "state"),
                            s(i, "kind"),
                            s(i, "subject"),
                            s(i, "severity"),
                            hosts.to_string(),
                            s(i, "opened_at"),
                            told,
                            s(i, "summary"),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "ID", "STATE", "KIND", "SUBJECT", "SEVERITY", "HOSTS", "OPENED",
                            "TOLD", "SUMMARY"
                        ],
                        &rows
                    )
                );
                println!("{} incident(s), {} open", rows.len(), v["open"]);
            }
            Ok(problem_if(v["open"].as_u64().unwrap_or(0) > 0))
        }
        Cmd::Notify {
            action: NotifyCmd::List { json },
        } => {
            let v = get(&c, "/api/v1/receivers")?;
            if json {
                print_json(&v);
            } else {
                let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
                let rows: Vec<Vec<String>> = v["receivers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            s(r, "name"),
                            s(r, "kind"),
                            s(r, "state"),
                            r["pending"].to_string(),
                            r["sent"].to_string(),
                            r["failed"].to_string(),
                            s(r, "last_error"),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "RECEIVER",
                            "KIND",
                            "STATE",
                            "PENDING",
                            "SENT",
                            "REFUSED",
                            "LAST ERROR"
                        ],
                        &rows
                    )
                );
            }
            Ok(problem_if(v["failed"].as_u64().unwrap_or(0) > 0))
        }
        Cmd::Notify {
            action: NotifyCmd::Test { name },
        } => {
            let path = format!("/api/v1/receivers/{}/test", encode(&name));
            send(&c, "POST", &path, Some(json!({})))?;
            println!("{name}: test notification sent and taken");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reconcile { json, out, max } => {
            let threshold =
                rollcall_collector::inventory::Threshold::parse(&max).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--max {max:?}: give a count (25) or a percentage (0.5%)"
                    ))
                })?;
            let mut v = get(&c, "/api/v1/reconcile")?;
            let text = v["text"].as_str().unwrap_or("").to_owned();
            if let Some(o) = v.as_object_mut() {
                o.remove("text");
            }
            if let Some(dir) = &out {
                let write = |name: &str, body: &str| {
                    std::fs::write(dir.join(name), body).map_err(|e| {
                        Failure::Usage(format!("cannot write {}: {e}", dir.join(name).display()))
                    })
                };
                write(
                    "reconcile.json",
                    &serde_json::to_string_pretty(&v).unwrap_or_default(),
                )?;
                write("reconcile.txt", &text)?;
            }
            if json {
                print_json(&v);
            } else {
                print!("{text}");
                if let Some(e) = v["inventory_error"].as_str() {
                    println!("\nnote: {e}");
                }
            }
            let total = v["total"].as_u64().unwrap_or(0);
            let allowed = threshold.allowed(v["devices"].as_u64().unwrap_or(0) as usize);
            Ok(problem_if(total > allowed))
        }
        Cmd::Maintenance {
            name,
            duration,
            reason,
            end,
        } => {
            let path = format!("/api/v1/hosts/{}/maintenance", encode(&name));
            if end {
                send(&c, "DELETE", &path, None)?;
                println!("{name}: maintenance ended");
            } else {
                let v = send(
                    &c,
                    "PUT",
                    &path,
                    Some(json!({ "for": duration, "reason": reason })),
                )?;
                println!(
                    "{name}: under maintenance until {}",
                    v["maintenance_until"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lifecycle { name, lifecycle } => {
            let path = format!("/api/v1/hosts/{}/lifecycle", encode(&name));
            send(&c, "PUT", &path, Some(json!({ "lifecycle": lifecycle })))?;
            println!("{name}: lifecycle {lifecycle}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Revoke { name } => {
            let path = format!("/api/v1/hosts/{}/credentials", encode(&name));
            let v = send(&c, "DELETE", &path, None)?;
            println!(
                "{name}: {} credential(s) revoked; its agent must enroll again",
                v["revoked"]
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { .. } | Cmd::Manpage => unreachable!("answered above"),
    }
}

fn print_incident(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    println!("incident {} ({}): {}", v["id"], s("key"), s("state"));
    println!("  {}", s("summary"));
    println!("  severity: {}", s("severity"));
    println!("  opened:   {}", s("opened_at"));
    if !v["resolved_at"].is_null() {
        println!("  resolved: {} ({})", s("resolved_at"), s("resolution"));
    }
    if !v["covered_by"].is_null() {
        println!("  listed in {}, not notified on its own", s("covered_by"));
    }
    println!("  next step: {}", s("next_step"));
    if !v["runbook"].is_null() {
        println!("  runbook:   {}", s("runbook"));
    }
    let hosts: Vec<&str> = v["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str())
        .collect();
    if hosts.len() > 1 {
        let shown = hosts
            .iter()
            .take(40)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = hosts.len().saturating_sub(40);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        println!("  hosts ({}): {shown}{more}", hosts.len());
    }
    println!("  history:");
    for l in v["history"].as_array().into_iter().flatten() {
        println!(
            "    {}  {}: {}",
            l["at"].as_str().unwrap_or(""),
            l["what"].as_str().unwrap_or(""),
            l["message"].as_str().unwrap_or("")
        );
    }
    let deliveries = v["deliveries"].as_array().cloned().unwrap_or_default();
    if !deliveries.is_empty() {
        println!("  notifications:");
        for d in &deliveries {
            let err = d["last_error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            println!(
                "    {} {} to {}: {} after {} attempt(s){err}",
                d["queued_at"].as_str().unwrap_or(""),
                d["action"].as_str().unwrap_or(""),
                d["receiver"].as_str().unwrap_or(""),
                d["state"].as_str().unwrap_or(""),
                d["attempts"]
            );
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("rollcall: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(e)) => {
            eprintln!("rollcall: {e}");
            ExitCode::from(3)
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("rollcall: {e}");
            ExitCode::from(4)
        }
    }
}
