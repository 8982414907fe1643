//! The supervisor's judgement across a day boundary, with an injected clock and real files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rollcall_proto::{DaemonStatus, Health};

use super::{logs, Besclient};
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::events::EventLog;
use crate::publish::Board;
use crate::remediation::Step;
use crate::supervisor::{Daemon, Supervisor};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// Writes a log file whose modification time is the clock's now.
fn write_log(dir: &Path, name: &str, text: &str, clock: &ManualClock) -> std::path::PathBuf {
    let p = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap();
    std::io::Write::write_all(&mut &f, text.as_bytes()).unwrap();
    f.set_modified(clock.now().into()).unwrap();
    p
}

/// Takes this very test process for BESClient: it is alive throughout. Its RelayChain
/// directory is `state/RelayChain`.
fn config(state: &Path, logs: &Path) -> Config {
    let exe = std::env::current_exe().unwrap();
    let text = format!(
        "state_dir = \"{}\"\n[besclient]\nmanager = \"command\"\nstart = [\"/bin/true\"]\nprocess = \"{}\"\nlog_dir = \"{}\"\ndata_dir = \"{}\"\nstale_after = \"1h\"\nverify_within = \"2m\"\n[besclient.checkin]\nrelay_chain_dir = \"{}\"\n",
        state.display(),
        exe.display(),
        logs.display(),
        logs.display(),
        state.join("RelayChain").display()
    );
    Config::parse(Path::new("test.toml"), &text).unwrap()
}

/// A host's state and log directories and a clock, with `log` (if any) as the day's log.
struct Fixture {
    state: tempfile::TempDir,
    logs: tempfile::TempDir,
    clock: ManualClock,
}

fn fixture(now: DateTime<Utc>, log: Option<&str>) -> Fixture {
    let f = Fixture {
        state: tempfile::tempdir().unwrap(),
        logs: tempfile::tempdir().unwrap(),
        clock: ManualClock::new(now),
    };
    if let Some(text) = log {
        write_log(
            f.logs.path(),
            &f.clock.now().format("%Y%m%d.log").to_string(),
            text,
            &f.clock,
        );
    }
    f
}

impl Fixture {
    fn config(&self) -> Config {
        config(self.state.path(), self.logs.path())
    }

    fn supervisor(&self) -> Supervisor<Besclient> {
        super::supervisor(&self.config(), Arc::new(self.clock.clone())).unwrap()
    }
}

#[tokio::test]
async fn day_rollover_moves_today_to_the_new_file_without_a_false_hang() {
    let f = fixture(
        at(2026, 11, 22, 23, 59, 50),
        Some("At 23:59:50 +0000 -\n   Report posted successfully\n"),
    );
    let (logs, clock) = (&f.logs, f.clock.clone());
    let mut sup = f.supervisor();

    let s = sup.observe_once().await;
    assert_eq!(s.status, DaemonStatus::Running, "{}", s.reason);
    assert_eq!(s.log.newest.as_deref(), Some("20261122.log"));

    // Just past midnight, before the client's first message of the day: yesterday's
    // write does not verify a restart issued now.
    clock.set(at(2026, 11, 23, 0, 0, 20));
    let (d, core) = sup.parts();
    d.rescan_logs(core);
    let issued = clock.now();
    d.find_process(core);
    let why = d.verify(core, Step::Restart, issued).unwrap_err();
    assert!(why.contains("20261123.log has not appeared"), "{why}");

    // The new day's file appears, with an error line in it: today is that file, the error
    // is counted, and the client is still running.
    clock.advance(Duration::from_secs(5));
    let p = write_log(
        logs.path(),
        "20261123.log",
        "At 00:00:25 +0000 -\n   RegisterOnce: GetURL failed - General transport failure.\n",
        &clock,
    );
    assert!(d.on_written(p, core), "an error line needs an evaluation");
    d.rescan_logs(core);
    assert!(
        d.verify(core, Step::Restart, issued).is_ok(),
        "today's new file verifies"
    );
    let v = d.classify(core).await.unwrap();
    assert_eq!(v.status, DaemonStatus::Running);
    assert_eq!(v.health, Health::Warn, "an error line warns: {}", v.reason);
    let s = d.state(core);
    assert_eq!(s.log.newest.as_deref(), Some("20261123.log"));
    assert_eq!(s.errors.count, 1);

    // Silent for longer than stale_after: hung, measured from the last write.
    clock.advance(Duration::from_secs(3600 + 1));
    d.rescan_logs(core);
    let v = d.classify(core).await.unwrap();
    assert_eq!(v.status, DaemonStatus::Hung, "{}", v.reason);
    assert!(v.reason.contains("stale after 1h"), "{}", v.reason);
}

#[tokio::test]
async fn no_logs_at_all_counts_from_the_agent_start() {
    let f = fixture(at(2026, 11, 22, 12, 0, 0), None);
    let clock = f.clock.clone();
    let mut sup = f.supervisor();
    let s = sup.observe_once().await;
    assert_eq!(
        s.status,
        DaemonStatus::Running,
        "not hung before stale_after: {}",
        s.reason
    );
    clock.advance(Duration::from_secs(3601));
    let (d, core) = sup.parts();
    let v = d.classify(core).await.unwrap();
    assert_eq!(v.status, DaemonStatus::Hung);
    assert!(v.reason.contains("no daily log"), "{}", v.reason);
}

#[tokio::test]
async fn error_lines_from_before_the_agent_started_are_not_counted() {
    let f = fixture(
        at(2026, 11, 22, 12, 0, 0),
        Some("At 11:00:00 +0000 -\n   RegisterOnce: GetURL failed - General transport failure.\n"),
    );
    let events = EventLog::new();
    let board = Board::new(
        f.state.path().to_owned(),
        events.clone(),
        Arc::new(f.clock.clone()),
        None,
    );
    let sup = f.supervisor().with_outlet(board, events);
    // Start and stop at once: the start-up observation and one evaluation.
    sup.run(async {}).await;
    let s = crate::state::read(f.state.path()).unwrap();
    assert_eq!(
        s.state.besclient.errors.count, 0,
        "history is not news: {:?}",
        s.state.besclient.errors
    );
    assert!(
        s.events
            .iter()
            .all(|e| !e.message.contains("logged an error")),
        "{:?}",
        s.events
    );
}

#[tokio::test]
async fn a_one_shot_look_reports_the_errors_already_in_the_newest_log() {
    let f = fixture(at(2026, 11, 22, 12, 0, 0), Some("At 11:00:00 +0000 -\n   RegisterOnce: GetURL failed - General transport failure.\nAt 11:30:00 +0000 -\n   Report posted successfully\n"));
    let s = super::look_once(&f.config(), Arc::new(f.clock.clone()))
        .await
        .unwrap();
    assert_eq!(s.errors.count, 1);
    assert!(s.errors.last_line.unwrap().contains("GetURL failed"));
    assert_eq!(s.health, Health::Warn);
}

/// Writes RelayChain lines for `day` (YYYYMMDD) into the fixture's RelayChain directory.
fn relay_chain(f: &Fixture, day: &str, lines: &[&str]) -> std::path::PathBuf {
    let dir = f.state.path().join("RelayChain");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{day}.txt"));
    let mut text = std::fs::read_to_string(&p).unwrap_or_default();
    for l in lines {
        text.push_str(&format!(
            "At {l} - s:1(bigfix-server) - r:2112(relay-dal10) - c:5551(web-1)\n"
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn alive_and_logging_but_not_checking_in_is_critical_and_names_the_relay() {
    let f = fixture(
        at(2026, 11, 22, 12, 0, 0),
        Some("At 11:59:50 +0000 -\n   ActiveDirectory: Refreshed Computer Information\n"),
    );
    relay_chain(&f, "20261121", &["09:00:00 +0000 - S"]);
    relay_chain(
        &f,
        "20261122",
        &["09:12:00 +0000 - F", "10:12:00 +0000 - F"],
    );
    let s = f.supervisor().observe_once().await;
    assert_eq!(s.status, DaemonStatus::Running);
    assert_eq!(s.health, Health::Critical, "{}", s.reason);
    assert!(
        s.reason.ends_with(
            "is running and logging, but not checked into BigFix for 1day 3h: registration failed talking to relay relay-dal10 since 2026-11-22 09:12 UTC"
        ),
        "{}",
        s.reason
    );
    let c = s.checkin.unwrap();
    assert_eq!(c.verdict, rollcall_proto::CheckinVerdict::Critical);
    assert_eq!(c.relay.as_deref(), Some("relay-dal10"));
    assert_eq!(c.last_success_at, Some(at(2026, 11, 21, 9, 0, 0)));
    assert_eq!(c.failing_since, Some(at(2026, 11, 22, 9, 12, 0)));
}

#[tokio::test]
async fn a_new_registration_line_ends_the_failure_at_once() {
    let f = fixture(
        at(2026, 11, 22, 12, 0, 0),
        Some("At 11:59:50 +0000 -\n   ActiveDirectory: Refreshed Computer Information\n"),
    );
    relay_chain(
        &f,
        "20261122",
        &["05:00:00 +0000 - S", "06:00:00 +0000 - F"],
    );
    let mut sup = f.supervisor();
    let (d, core) = sup.parts();
    d.start(core).await;
    let v = d.classify(core).await.unwrap();
    assert_eq!(v.health, Health::Warn, "6h without a success: {}", v.reason);
    assert!(
        v.reason.contains("not checked into BigFix for 7h"),
        "{}",
        v.reason
    );

    // The client registers: a RelayChain line, seen through the directory's watch.
    let p = relay_chain(&f, "20261122", &["11:59:58 +0000 - S"]);
    let changed = d.on_signal(super::Signal::Relay(Some(logs::Change::Written(p))), core);
    assert!(changed, "a check-in is news");
    let v = d.classify(core).await.unwrap();
    assert_eq!(v.health, Health::Ok, "{}", v.reason);
    let c = d.state(core).checkin.unwrap();
    assert_eq!(c.verdict, rollcall_proto::CheckinVerdict::Ok);
    assert_eq!(c.failing_since, None);

    // A report in the log counts too; one before any block header is refused and counted.
    f.clock.advance(Duration::from_secs(8 * 3600));
    let p = write_log(
        f.logs.path(),
        "20261122.log",
        "At 19:59:59 +0000 -\n   Report posted successfully\n",
        &f.clock,
    );
    assert!(d.on_signal(super::Signal::Log(Some(logs::Change::Written(p))), core));
    let c = d.state(core).checkin.unwrap();
    assert_eq!(
        c.verdict,
        rollcall_proto::CheckinVerdict::Ok,
        "{}",
        c.reason
    );
    assert_eq!(c.last_success_via.as_deref(), Some("report"));
}
