//! A stand-in for the closed BigFix client daemon, behaving as the vendor documents it
//! (the layout, logs, settings and RelayChain records described below).
//!
//! Installed as `<root>/opt/BESClient/bin/BESClient` (root `/` on a real host or container)
//! and started by the LSB init script `<root>/etc/init.d/besclient`. Run with no arguments
//! it checks it can start, daemonizes (new process group, stdio on /dev/null, parent exits),
//! and then writes `At HH:MM:SS +ZZZZ -` blocks to
//! `<root>/var/opt/BESClient/__BESData/__Global/Logs/YYYYMMDD.log`, one file a day, honouring
//! `_BESClient_Log_MaxSize` (rename to `.bkg`, or delete and recreate) and
//! `_BESClient_Log_Days` from `<root>/var/opt/BESClient/besclient.config`.
//!
//! Its faults are set in `<root>/etc/besclient-sim.conf` (re-read every tick), outside the
//! client's own trees so that a reinstall keeps them:
//!   start = ok | fail | slow:SECS      refuse to start, or start silently for SECS
//!   run = ok | hang | crash:SECS | errors | relay-down | refused
//!   relay = relay.example              the relay it registers with
//!   interval_ms = 1000                 how often it logs
//!
//! It registers with its relay at start (and again after the relay comes back): the log's
//! `RegisterOnce: Attempting secure registration with '<url>'` and `Registered with url
//! '<url>'`, and a line in `__BESData/__Global/RelayChain/YYYYMMDD.txt`
//! (`At HH:MM:SS +ZZZZ - S - s:ID(server) - r:ID(relay) - c:ID(client)`), then posts a
//! report every tick. With `relay-down` every tick is a failed registration: the log's
//! `GetURL failed - General transport failure` and an `F` RelayChain line, no reports. With
//! `refused` the relay answers but refuses it: an `F` RelayChain line and a log line in no
//! documented wording, so only the RelayChain file tells.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Local;
use std::os::unix::fs::OpenOptionsExt;

const VERSION: &str = "9.5.13.130";

struct Layout {
    root: PathBuf,
}

impl Layout {
    fn from_exe() -> Layout {
        Layout {
            root: rollcall_tests::sim::root_of_exe("/opt/BESClient/bin/BESClient"),
        }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn log_dir(&self) -> PathBuf {
        self.p("var/opt/BESClient/__BESData/__Global/Logs")
    }
    fn pidfile(&self) -> PathBuf {
        self.p("var/run/BESClient.pid")
    }
    fn relay_chain_dir(&self) -> PathBuf {
        self.p("var/opt/BESClient/__BESData/__Global/RelayChain")
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Faults {
    start: String,
    run: String,
    interval: Duration,
    relay: String,
}

fn faults(l: &Layout) -> Faults {
    let mut f = Faults {
        start: "ok".into(),
        run: "ok".into(),
        interval: Duration::from_millis(1000),
        relay: "relay.example".into(),
    };
    let text = fs::read_to_string(l.p("etc/besclient-sim.conf")).unwrap_or_default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "start" => f.start = v,
            "run" => f.run = v,
            "relay" if !v.is_empty() => f.relay = v,
            "interval_ms" => {
                if let Ok(ms) = v.parse() {
                    f.interval = Duration::from_millis(ms);
                }
            }
            _ => {}
        }
    }
    f
}

/// A client setting from besclient.config:
/// `[Software\BigFix\EnterpriseClient\Settings\Client\NAME]` followed by `value = V`.
fn setting(l: &Layout, name: &str) -> Option<u64> {
    let text = fs::read_to_string(l.p("var/opt/BESClient/besclient.config")).ok()?;
    let header = format!("[Software\\BigFix\\EnterpriseClient\\Settings\\Client\\{name}]");
    let mut lines = text.lines().skip_while(|l| l.trim() != header).skip(1);
    lines
        .find_map(|l| {
            l.trim()
                .strip_prefix("value")
                .map(|r| r.trim_start_matches([' ', '=']).trim().to_owned())
        })?
        .parse()
        .ok()
}

fn secs(spec: &str, prefix: &str) -> Option<Duration> {
    spec.strip_prefix(prefix)?
        .parse()
        .ok()
        .map(Duration::from_secs_f64)
}

fn main() -> ExitCode {
    let l = Layout::from_exe();
    let daemon = std::env::args().nth(1).as_deref() == Some("--daemon");
    if daemon {
        return run(&l);
    }
    let f = faults(&l);
    if f.start == "fail" {
        eprintln!(
            "BESClient failed to start: unable to load masthead /etc/opt/BESClient/actionsite.afxm"
        );
        return ExitCode::from(1);
    }
    let exe = l.p("opt/BESClient/bin/BESClient");
    match rollcall_tests::sim::daemonize(&exe, &["--daemon"], &l.pidfile()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("BESClient failed to start: {e}");
            ExitCode::from(1)
        }
    }
}

struct Logger<'a> {
    l: &'a Layout,
    max_size: u64,
    days: u64,
}

impl Logger<'_> {
    fn block(&self, lines: &[String]) {
        let dir = self.l.log_dir();
        if fs::create_dir_all(&dir).is_err() {
            return;
        }
        let now = Local::now();
        let path = dir.join(format!("{}.log", now.format("%Y%m%d")));
        let new_day = !path.exists() && !path.with_extension("bkg").exists();
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size >= self.max_size {
            let bkg = path.with_extension("bkg");
            if bkg.exists() {
                let _ = fs::remove_file(&path);
            } else {
                let _ = fs::rename(&path, &bkg);
            }
        }
        let mut text = format!("At {} -\n", now.format("%H:%M:%S %z"));
        for line in lines {
            text.push_str("   ");
            text.push_str(line);
            text.push('\n');
        }
        // Mode 0600, root's, like the real client's logs.
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path);
        if let Ok(mut f) = f {
            let _ = f.write_all(text.as_bytes());
        }
        if new_day {
            self.retention();
        }
    }

    /// One registration with `relay`: its log lines and its RelayChain line. `how`: `ok`,
    /// `refused`, anything else a transport failure.
    fn register(&self, relay: &str, how: &str) {
        let url = format!("https://{relay}:52311/cgi-bin/bfenterprise/clientregister.exe");
        let ok = how == "ok";
        let outcome = match how {
            "ok" => format!("Registered with url '{url}'"),
            "refused" => format!("RegisterOnce: registration refused by '{url}'"),
            _ => format!("RegisterOnce: GetURL failed - General transport failure. - '{url}' (winsock error 4294967295 - registration url - {url})"),
        };
        self.block(&[
            format!("RegisterOnce: Attempting secure registration with '{url}?RequestType=RegisterMe60'"),
            outcome,
        ]);
        let dir = self.l.relay_chain_dir();
        if fs::create_dir_all(&dir).is_err() {
            return;
        }
        let now = Local::now();
        let line = format!(
            "At {} - {} - s:1(bigfix-server) - r:2112({relay}) - c:{}(client)\n",
            now.format("%H:%M:%S %z"),
            if ok { "S" } else { "F" },
            std::process::id()
        );
        let path = dir.join(format!("{}.txt", now.format("%Y%m%d")));
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// `_BESClient_Log_Days`, applied when a day's file is created: keep that many days of
    /// files (by their date), delete the rest.
    fn retention(&self) {
        let days = self.days;
        let Ok(entries) = fs::read_dir(self.l.log_dir()) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 12 && n[..8].bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let mut dates: Vec<String> = names.iter().map(|n| n[..8].to_owned()).collect();
        dates.sort();
        dates.dedup();
        if dates.len() as u64 <= days {
            return;
        }
        let cutoff = dates[dates.len() - days as usize].clone();
        names.retain(|n| n[..8] < *cutoff);
        for n in names {
            let _ = fs::remove_file(self.l.log_dir().join(n));
        }
    }
}

fn run(l: &Layout) -> ExitCode {
    let mut f = faults(l);
    if let Some(d) = secs(&f.start, "slow:") {
        std::thread::sleep(d);
    }
    let log = Logger {
        l,
        max_size: setting(l, "_BESClient_Log_MaxSize").unwrap_or(1_500_000),
        days: setting(l, "_BESClient_Log_Days")
            .unwrap_or(10)
            .clamp(1, 366),
    };
    log.block(&[
        format!("Starting client version {VERSION}"),
        "FIPS mode disabled by default.".into(),
        "Cryptographic module initialized successfully in non-FIPS mode.".into(),
        "Using crypto library libBEScrypto - OpenSSL".into(),
        "Client has an AuthenticationCertificate".into(),
    ]);
    let failing = |run: &str| matches!(run, "relay-down" | "refused");
    let mut registered = !failing(&f.run);
    log.register(&f.relay, if registered { "ok" } else { &f.run });
    let started = Instant::now();
    let mut n: u64 = 0;
    loop {
        std::thread::sleep(f.interval);
        f = faults(l);
        if failing(&f.run) {
            registered = false;
            log.register(&f.relay, &f.run);
            continue;
        }
        if !registered && f.run != "hang" {
            // The relay is back: register again before reporting.
            registered = true;
            log.register(&f.relay, "ok");
        }
        if let Some(after) = secs(&f.run, "crash:") {
            if started.elapsed() >= after {
                std::process::abort();
            }
        }
        match f.run.as_str() {
            // Alive, holding its pid, writing nothing: what a wedged client looks like.
            "hang" => continue,
            "errors" => log.block(&[
                "RegisterOnce: Attempting secure registration with 'https://relay.example:52311/cgi-bin/bfenterprise/clientregister.exe?RequestType=RegisterMe60'".into(),
                "RegisterOnce: GetURL failed - General transport failure. - 'https://relay.example:52311/...' (winsock error 4294967295 - registration url - https://relay.example:52311/)".into(),
            ]),
            _ => {
                n += 1;
                log.block(&[
                    format!("Report posted successfully (sequence {n})"),
                    "ActionLogMessage: (action:1) Action signature verified for Execution".into(),
                ]);
            }
        }
    }
}
