//! A mutation fuzzer on stable Rust for what rollcall reads from outside: heartbeat and
//! enrollment bodies, the agent's config file, RMCP replies from BMCs, and BESClient's log
//! and RelayChain lines. Each target starts from valid inputs (seeds), mutates them with a
//! seeded generator (bit flips, byte and token insertions, deletions, splices, truncation,
//! repetition) and checks that the parser neither panics nor breaks its contract: a refused
//! body is a 400 that names a field, a config error names its line, an RMCP parser answers
//! yes or no. `rollcall-fuzz` runs millions; the test suite runs a short pass.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use chrono::NaiveDate;
use rollcall_agent::checks::besclient::checkin::{self, LogReader, Patterns};
use rollcall_agent::checks::bmc::rmcp;

/// What one target did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub inputs: u64,
    /// Inputs the parser took (the rest it refused, as it should).
    pub accepted: u64,
    /// Inputs that panicked or broke the contract, with why (at most 10 kept).
    pub failures: Vec<(Vec<u8>, String)>,
    pub failed: u64,
    pub seconds: f64,
}

/// Every target's name.
pub const TARGETS: [&str; 6] = [
    "heartbeat",
    "enroll",
    "agent-config",
    "rmcp",
    "besclient-log",
    "relay-chain",
];

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that parsers trip on: JSON and TOML structure, escapes, huge numbers, control
/// and multi-byte characters, dates at the edges.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"9999-12-31T23:59:59Z",
    b"0000-01-01T00:00:00Z",
    b"\x00",
    b"\n",
    b"\r\n",
    b"\x1b[2J",
    b"\xc3\xa9",
    b"\xf0\x9f\x92\xa5",
    b"\xff",
    b"=",
    b"[[",
    b"]]",
    b"'''",
    b"\"\"\"",
    b"#",
    b" - ",
    b"At 25:61:61 +9999",
    b"r:",
    b"(",
    b")",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seeds[rng.below(seeds.len())]);
    for _ in 0..1 + rng.below(6) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                out.splice(i..i, t.iter().copied());
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            3 if len > 0 => out.truncate(rng.below(len)),
            4 if len > 0 => {
                // Repeat a chunk: deep nesting, long strings.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                let chunk: Vec<u8> = out[i..i + n].to_vec();
                for _ in 0..1 + rng.below(64) {
                    out.splice(i..i, chunk.iter().copied());
                }
            }
            5 => {
                // Splice in part of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a);
                    let i = rng.below(len + 1);
                    out.splice(i..i, other[a..b].iter().copied());
                }
            }
            6 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, b"0123456789"[rng.below(10)]);
            }
        }
    }
}

fn heartbeat_seed() -> Vec<u8> {
    let now = "2026-12-03T10:00:00Z";
    serde_json::json!({
        "proto_version": 1, "host": "web-1",
        "identity": { "machine_id": "m-web-1", "install_id": "i1" },
        "interval_secs": 60,
        "labels": { "env": "prod", "region": "us-south", "zone": "dal10", "role": "worker" },
        "state": {
            "proto_version": 1, "agent_version": "0.1.0", "at": now,
            "besclient": {
                "health": "ok", "status": "running", "reason": "BESClient (pid 7) is running",
                "since": now, "pid": 7, "manager": "systemd", "unit_state": "active (running)",
                "log": { "dir": "/var/opt/BESClient/__BESData/__Global/Logs", "dir_exists": true,
                         "newest": "20261203.log", "last_write": now, "stale_after_secs": 3600, "stale": false },
                "errors": { "count": 0, "last_line": null, "last_at": null },
                "disk": null,
                "remediation": { "enabled": true, "paused_until": null, "pause_reason": null, "step": null,
                                 "exhausted_rounds": 0, "next_attempt_at": null, "attempts_in_window": 0, "flapping": false }
            }
        },
        "events": [{ "seq": 1, "at": now, "check": "besclient", "kind": "action",
                     "message": "restart", "action": "restart", "step": "restart" }],
        "events_dropped": 0
    })
    .to_string()
    .into_bytes()
}

fn enroll_seed() -> Vec<u8> {
    br#"{"proto_version":1,"host":"web-1","identity":{"machine_id":"m","install_id":"i"},"labels":{"env":"prod"},"bmc_address":"10.0.0.5"}"#.to_vec()
}

const CONFIG_SEED: &str = r#"state_dir = "/var/lib/rollcall"

[host]
name = "web-1"
labels = { env = "prod", region = "us-south", zone = "dal10", role = "worker" }

[besclient]
manager = "command"
start = ["/bin/true"]
stop = ["/bin/true"]
status = ["/bin/true"]
stale_after = "1h"
verify_within = "2m"
error_patterns = ["GetURL failed"]

[remediation]
enabled = true
max_restarts = 5
per = "1h"
backoff_base = "10s"
backoff_max = "10m"

[nessusd]
enabled = false
"#;

fn pong(tag: u8) -> Vec<u8> {
    let mut p = vec![
        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x40, tag, 0x00, 0x10, 0x00, 0x00, 0x11,
        0xBE, 0, 0, 0, 0, 0x81, 0,
    ];
    p.extend_from_slice(&[0; 6]);
    p
}

fn auth_caps_reply(seq: u8) -> Vec<u8> {
    let mut p = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 16];
    let mut msg = vec![0x81, 0x07 << 2, 0, 0x20, (seq & 0x3F) << 2, 0x38, 0x00];
    msg[2] = msg[..2]
        .iter()
        .fold(0u8, |s, x| s.wrapping_add(*x))
        .wrapping_neg();
    msg.extend_from_slice(&[0x01, 0x04, 0x04, 0, 0, 0, 0, 0, 0]);
    p.extend(msg);
    p
}

const LOG_SEED: &[&str] = &[
    "At 05:05:13 +0100 -",
    "   RegisterOnce: Attempting secure registration with 'https://relay-dal10:52311/cgi-bin/bfenterprise/clientregister.exe?RequestType=RegisterMe60'",
    "   Registered with url 'https://relay-dal10:52311/cgi-bin/bfenterprise/clientregister.exe'",
    "   Report posted successfully",
    "   GetURL failed - General transport failure. - 'https://relay-dal10:52311/cgi-bin/bfenterprise/PostResults.exe'",
    "At 23:59:59 -0500 -",
];

const RELAY_SEED: &[&str] = &[
    "At 05:05:13 +0100 - S - s:1(bigfix-server) - r:2112(relay-dal10) - c:5551(web-1)",
    "At 05:06:13 +0100 - F - s:1(bigfix-server) - r:2113(relay-wdc04) - c:5551(web-1)",
];

/// Runs `target` on `inputs` generated inputs from `seed`.
pub fn run(target: &'static str, inputs: u64, seed: u64) -> Report {
    let seeds: Vec<Vec<u8>> = match target {
        "heartbeat" => vec![heartbeat_seed(), b"{}".to_vec()],
        "enroll" => vec![enroll_seed()],
        "agent-config" => vec![
            CONFIG_SEED.as_bytes().to_vec(),
            b"[collector]\nurl = \"https://c:8443\"\nca_file = \"/etc/hostname\"\n".to_vec(),
        ],
        "rmcp" => vec![pong(7), auth_caps_reply(9), rmcp::ping(7).to_vec()],
        "besclient-log" => {
            let mut v: Vec<Vec<u8>> = LOG_SEED.iter().map(|l| l.as_bytes().to_vec()).collect();
            v.push(LOG_SEED.join("\n").into_bytes());
            v
        }
        "relay-chain" => RELAY_SEED.iter().map(|l| l.as_bytes().to_vec()).collect(),
        other => panic!("unknown target {other}; one of {TARGETS:?}"),
    };
    let check = checker(target);
    let mut rng = Rng(seed.max(1));
    let mut input = Vec::with_capacity(4096);
    let mut report = Report {
        target,
        inputs: 0,
        accepted: 0,
        failures: Vec::new(),
        failed: 0,
        seconds: 0.0,
    };
    // The panic hook would print every caught panic; failures are reported instead.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let start = std::time::Instant::now();
    for i in 0..inputs {
        // Now and then a seed as it is: the parsers must take their own valid inputs.
        if i % 1000 == 0 {
            input.clear();
            input.extend_from_slice(&seeds[(i / 1000) as usize % seeds.len()]);
        } else {
            mutate(&mut rng, &seeds, &mut input);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        report.inputs += 1;
        let broken = match outcome {
            Ok(Ok(true)) => {
                report.accepted += 1;
                None
            }
            Ok(Ok(false)) => None,
            Ok(Err(why)) => Some(why),
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            )),
        };
        if let Some(why) = broken {
            report.failed += 1;
            if report.failures.len() < 10 {
                report.failures.push((input.clone(), why));
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    std::panic::set_hook(hook);
    report
}

/// `Ok(true)` taken, `Ok(false)` refused as the contract says, `Err` a broken contract.
type Check = Box<dyn Fn(&[u8]) -> Result<bool, String>>;

fn checker(target: &str) -> Check {
    match target {
        "heartbeat" => Box::new(|b| match rollcall_collector::http::decode_heartbeat(b) {
            Err(e) => api_outcome(Err(e)),
            // What is taken is taken again as written back: nothing is lost or changed.
            Ok(hb) => {
                let again = serde_json::to_vec(&hb).map_err(|e| e.to_string())?;
                match rollcall_collector::http::decode_heartbeat(&again) {
                    Ok(back) if back == hb => Ok(true),
                    other => Err(format!("a taken heartbeat does not round-trip: {other:?}")),
                }
            }
        }),
        "enroll" => {
            Box::new(|b| api_outcome(rollcall_collector::http::decode_enroll(b).map(|_| true)))
        }
        "agent-config" => Box::new(|b| {
            let Ok(text) = std::str::from_utf8(b) else {
                return Ok(false);
            };
            match rollcall_agent::config::Config::parse(Path::new("agent.toml"), text) {
                Ok(c) => match c.collector_problem {
                    Some(p) if !p.starts_with("agent.toml:") => {
                        Err(format!("a [collector] problem without its place: {p}"))
                    }
                    _ => Ok(true),
                },
                Err(e) => {
                    let e = e.to_string();
                    if e.starts_with("agent.toml:") {
                        Ok(false)
                    } else {
                        Err(format!("an error without its place: {e}"))
                    }
                }
            }
        }),
        "rmcp" => Box::new(|b| {
            let pong = rmcp::parse_pong(b, 7);
            let caps = rmcp::parse_auth_caps_reply(b, 9);
            if pong.is_some_and(|p| p.tag != 7) {
                return Err("a pong for another tag".into());
            }
            Ok(pong.is_some() || caps)
        }),
        "besclient-log" => Box::new(|b| {
            let text = String::from_utf8_lossy(b);
            let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default();
            let mut reader = LogReader::new(day);
            let p = Patterns::default();
            let mut taken = false;
            for line in text.lines() {
                if let Ok(Some(_)) = reader.line(line, &p) {
                    taken = true;
                }
                let _ = checkin::failure_words(line);
            }
            Ok(taken)
        }),
        "relay-chain" => Box::new(|b| {
            let text = String::from_utf8_lossy(b);
            let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default();
            Ok(text
                .lines()
                .any(|l| checkin::relay_chain_line(day, l).is_ok()))
        }),
        other => panic!("unknown target {other}"),
    }
}

/// A decoder's answer: taken, or a 400 that names a field.
fn api_outcome(r: Result<bool, rollcall_collector::http::ApiError>) -> Result<bool, String> {
    match r {
        Ok(ok) => Ok(ok),
        Err(e) if e.status().as_u16() == 400 && e.field_name().is_some() => Ok(false),
        Err(e) => Err(format!("refused without a field or not as 400: {e:?}")),
    }
}
