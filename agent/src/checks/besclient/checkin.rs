//! BigFix check-in: whether the client really talks to its relay or server, from its own
//! records — the RelayChain files (`__BESData/__Global/RelayChain/YYYYMMDD.txt`, one line
//! per registration: `At HH:MM:SS ±ZZZZ - S|F - s:ID(server) - r:ID(relay) - c:ID(client)`)
//! and the registration and report lines of its daily log. A client alive and logging may
//! still fail to check in; this is what tells.
//!
//! Pure: lines and times in, signals and a verdict out. The caller reads the files (at
//! start, everything kept; then new lines as inotify reports them) and holds the clock.

use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};

/// A line stamped later than this past the agent's clock is taken as garbage.
const FUTURE_SLACK: chrono::Duration = chrono::Duration::minutes(5);

/// Substrings that mark the log's check-in lines. The wording varies across client
/// versions, so each list is configurable; these are the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    /// `RegisterOnce: Attempting secure registration with '<url>'`: names the relay in use.
    pub attempting: Vec<String>,
    /// `Registered with url '<url>'`.
    pub registered: Vec<String>,
    /// `Report posted successfully`.
    pub report_posted: Vec<String>,
    /// Transport failures: `GetURL failed - General transport failure`, `Unable to connect`.
    pub failure: Vec<String>,
}

impl Default for Patterns {
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect();
        Patterns {
            attempting: v(&["Attempting secure registration with"]),
            registered: v(&["Registered with url"]),
            report_posted: v(&["Report posted successfully"]),
            failure: v(&[
                "General transport failure",
                "GetURL failed",
                "Unable to connect",
            ]),
        }
    }
}

/// What one record says about the client's contact with its relay or server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// It registered or posted a report: a check-in.
    Success {
        at: DateTime<Utc>,
        /// Which record showed it: `relay chain`, `registration`, `report`.
        via: &'static str,
        relay: Option<String>,
    },
    /// It tried and failed.
    Failure {
        at: DateTime<Utc>,
        line: String,
        relay: Option<String>,
    },
    /// It is about to register with this relay (no verdict either way).
    Attempt { at: DateTime<Utc>, relay: String },
}

impl Signal {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Signal::Success { at, .. }
            | Signal::Failure { at, .. }
            | Signal::Attempt { at, .. } => *at,
        }
    }
}

/// A record that could not be read: truncated, garbage, or stamped in the future.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine(pub String);

/// `At HH:MM:SS ±ZZZZ` on `date` (the file's), as UTC.
fn stamp(date: NaiveDate, text: &str) -> Option<DateTime<Utc>> {
    let rest = text.strip_prefix("At ")?;
    let mut words = rest.split_whitespace();
    let time = NaiveTime::parse_from_str(words.next()?, "%H:%M:%S").ok()?;
    let zone = words.next()?;
    let (sign, digits) = match zone.split_at_checked(1)? {
        ("+", d) => (1, d),
        ("-", d) => (-1, d),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let minutes: i32 = digits[..2].parse::<i32>().ok()? * 60 + digits[2..].parse::<i32>().ok()?;
    let offset = FixedOffset::east_opt(sign * minutes * 60)?;
    let local = offset.from_local_datetime(&date.and_time(time)).single()?;
    Some(local.with_timezone(&Utc))
}

/// A RelayChain file: `YYYYMMDD.txt`.
pub fn is_relay_chain_name(name: &std::ffi::OsStr) -> bool {
    let p = Path::new(name);
    p.extension().is_some_and(|x| x == "txt") && file_date(p).is_some()
}

/// The day a `YYYYMMDD.txt` or `YYYYMMDD.log` file is of.
pub fn file_date(path: &Path) -> Option<NaiveDate> {
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 8 {
        return None;
    }
    NaiveDate::parse_from_str(stem, "%Y%m%d").ok()
}

/// One RelayChain line of the file for `date`.
pub fn relay_chain_line(date: NaiveDate, line: &str) -> Result<Signal, BadLine> {
    let bad = || BadLine(format!("RelayChain line not understood: {line:?}"));
    let mut parts = line.trim_end().split(" - ");
    let at = parts.next().and_then(|p| stamp(date, p)).ok_or_else(bad)?;
    let outcome = parts.next().ok_or_else(bad)?;
    let mut relay = None;
    let mut server = None;
    for p in parts {
        // `r:ID(name)`; the name is what an SRE knows the relay by.
        let named = |prefix: &str| {
            let v = p.strip_prefix(prefix)?;
            let name = v.split_once('(')?.1.strip_suffix(')')?;
            (!name.is_empty()).then(|| name.to_owned())
        };
        relay = relay.or_else(|| named("r:"));
        server = server.or_else(|| named("s:"));
    }
    if server.is_none() {
        return Err(bad());
    }
    match outcome {
        "S" => Ok(Signal::Success {
            at,
            via: "relay chain",
            relay,
        }),
        "F" => Ok(Signal::Failure {
            at,
            line: line.trim().to_owned(),
            relay,
        }),
        _ => Err(bad()),
    }
}

/// The host of the first quoted URL in `line` (`'http://relay-dal10:52311/…'` →
/// `relay-dal10`).
fn relay_in(line: &str) -> Option<String> {
    let start = line.find("://")? + 3;
    let host = line[start..]
        .split(|c: char| c == ':' || c == '/' || c == '\'' || c == '"' || c.is_whitespace())
        .next()?;
    (!host.is_empty()).then(|| host.to_owned())
}

/// Reads a daily log in order: `At HH:MM:SS ±ZZZZ -` block headers give the time of the
/// indented lines under them.
#[derive(Debug)]
pub struct LogReader {
    date: NaiveDate,
    at: Option<DateTime<Utc>>,
}

impl LogReader {
    /// For the log of `date` (its file name's).
    pub fn new(date: NaiveDate) -> LogReader {
        LogReader { date, at: None }
    }

    /// One line; `Ok(None)` for the lines that say nothing about check-in.
    pub fn line(&mut self, line: &str, p: &Patterns) -> Result<Option<Signal>, BadLine> {
        if line.starts_with("At ") {
            self.at =
                Some(stamp(self.date, line).ok_or_else(|| {
                    BadLine(format!("log block header not understood: {line:?}"))
                })?);
            return Ok(None);
        }
        let text = line.trim();
        let has = |list: &[String]| list.iter().any(|pat| text.contains(pat.as_str()));
        let kind = if has(&p.failure) {
            2
        } else if has(&p.registered) {
            1
        } else if has(&p.report_posted) {
            3
        } else if has(&p.attempting) {
            4
        } else {
            return Ok(None);
        };
        // A check-in line before any block header: its time is unknown.
        let at = self
            .at
            .ok_or_else(|| BadLine(format!("check-in line with no time above it: {line:?}")))?;
        let relay = relay_in(text);
        Ok(Some(match kind {
            1 => Signal::Success {
                at,
                via: "registration",
                relay,
            },
            2 => Signal::Failure {
                at,
                line: text.to_owned(),
                relay,
            },
            3 => Signal::Success {
                at,
                via: "report",
                relay,
            },
            _ => match relay {
                Some(relay) => Signal::Attempt { at, relay },
                None => return Ok(None),
            },
        }))
    }
}

pub use rollcall_proto::CheckinVerdict as Verdict;

/// What the records seen so far add up to.
#[derive(Debug, Clone)]
pub struct Checkin {
    /// When the agent started looking (what it read back counts from before that).
    watching_since: DateTime<Utc>,
    /// The earliest record seen: without any success, silence is measured from there.
    first_seen: Option<DateTime<Utc>>,
    pub last_success: Option<(DateTime<Utc>, &'static str)>,
    /// The relay in use, by the latest record that named one.
    pub relay: Option<String>,
    pub last_failure: Option<(DateTime<Utc>, String)>,
    /// The first failure after the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// Records ignored because they could not be read or were stamped in the future.
    pub bad_records: u64,
}

impl Checkin {
    pub fn new(watching_since: DateTime<Utc>) -> Checkin {
        Checkin {
            watching_since,
            first_seen: None,
            last_success: None,
            relay: None,
            last_failure: None,
            failing_since: None,
            bad_records: 0,
        }
    }

    /// Takes a record in, read at `now`; whether it is news: the first success, a failure
    /// starting or ending, another relay. A routine report from a client that checks in is
    /// not (it moves the last success, which the verdict reads on its own time).
    pub fn note(&mut self, r: Result<Signal, BadLine>, now: DateTime<Utc>) -> bool {
        let s = match r {
            Ok(s) if s.at() <= now + FUTURE_SLACK => s,
            Ok(_) | Err(_) => {
                self.bad_records += 1;
                return false;
            }
        };
        let at = s.at();
        self.first_seen = Some(self.first_seen.map_or(at, |t| t.min(at)));
        let (first, failing) = (self.last_success.is_none(), self.failing_since);
        let relay = match s {
            Signal::Success { at, via, relay } => {
                if self.last_success.is_some_and(|(t, _)| t > at) {
                    return false;
                }
                self.last_success = Some((at, via));
                if self.failing_since.is_some_and(|f| f <= at) {
                    self.failing_since = None;
                }
                relay
            }
            Signal::Failure { at, line, relay } => {
                if self.last_failure.as_ref().is_some_and(|(t, _)| *t > at) {
                    return false;
                }
                if self.last_success.is_none_or(|(t, _)| t < at) && self.failing_since.is_none() {
                    self.failing_since = Some(at);
                }
                self.last_failure = Some((at, line));
                relay
            }
            Signal::Attempt { relay, .. } => Some(relay),
        };
        let new_relay = relay.is_some() && relay != self.relay;
        if new_relay {
            self.relay = relay;
        }
        (first && self.last_success.is_some()) || failing != self.failing_since || new_relay
    }

    /// The verdict at `now`, and the reason in words.
    pub fn verdict(
        &self,
        now: DateTime<Utc>,
        warn_after: std::time::Duration,
        critical_after: std::time::Duration,
    ) -> (Verdict, String) {
        let relay = self
            .relay
            .as_deref()
            .map_or(String::new(), |r| format!(" via relay {r}"));
        let failing = match (&self.last_failure, self.failing_since) {
            (Some((_, line)), Some(since)) => format!(
                ": {}{} since {}",
                failure_words(line),
                self.relay
                    .as_deref()
                    .map_or(String::new(), |r| format!(" talking to relay {r}")),
                since.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => String::new(),
        };
        let chrono = |d: std::time::Duration| crate::clock::to_chrono(d);
        let Some(since) = self.last_success.map(|(t, _)| t).or(self.first_seen) else {
            let watched = now - self.watching_since;
            return if watched < chrono(warn_after) {
                (
                    Verdict::Unknown,
                    format!(
                        "no BigFix check-in seen yet (watching since {})",
                        self.watching_since.format("%Y-%m-%d %H:%M UTC")
                    ),
                )
            } else {
                let v = if watched >= chrono(critical_after) {
                    Verdict::Critical
                } else {
                    Verdict::Warn
                };
                (
                    v,
                    format!(
                        "no BigFix check-in seen in {} of watching",
                        crate::clock::ago(watched)
                    ),
                )
            };
        };
        let without = now - since;
        let verdict = if without >= chrono(critical_after) {
            Verdict::Critical
        } else if without >= chrono(warn_after) {
            Verdict::Warn
        } else if self.last_success.is_some() {
            Verdict::Ok
        } else {
            Verdict::Unknown
        };
        let reason = match (verdict, self.last_success) {
            (Verdict::Ok, Some((t, via))) => {
                format!(
                    "checked into BigFix {} ago ({via}){relay}",
                    crate::clock::ago(now - t)
                )
            }
            (Verdict::Unknown, _) => format!("no BigFix check-in seen yet{failing}"),
            (_, Some(_)) => format!(
                "not checked into BigFix for {}{failing}",
                crate::clock::ago(without)
            ),
            (_, None) => format!(
                "no BigFix check-in in the {} of records kept{failing}",
                crate::clock::ago(without)
            ),
        };
        (verdict, reason)
    }
}

impl Checkin {
    /// The state the heartbeat carries.
    pub fn state(
        &self,
        now: DateTime<Utc>,
        warn_after: std::time::Duration,
        critical_after: std::time::Duration,
    ) -> rollcall_proto::CheckinState {
        let (verdict, reason) = self.verdict(now, warn_after, critical_after);
        rollcall_proto::CheckinState {
            verdict,
            reason,
            last_success_at: self.last_success.map(|(t, _)| t),
            last_success_via: self.last_success.map(|(_, via)| via.to_owned()),
            relay: self.relay.clone(),
            last_failure_at: self.last_failure.as_ref().map(|(t, _)| *t),
            last_failure: self.last_failure.as_ref().map(|(_, l)| l.clone()),
            failing_since: self.failing_since,
            bad_records: self.bad_records,
        }
    }

    /// When the verdict next changes by time alone (a threshold passed), if it can.
    pub fn next_change(
        &self,
        now: DateTime<Utc>,
        warn_after: std::time::Duration,
        critical_after: std::time::Duration,
    ) -> Option<DateTime<Utc>> {
        let since = self
            .last_success
            .map(|(t, _)| t)
            .or(self.first_seen)
            .unwrap_or(self.watching_since);
        [warn_after, critical_after]
            .into_iter()
            .map(|d| since + crate::clock::to_chrono(d))
            .find(|t| *t > now)
    }
}

/// What the kept records say, read back at start so that a restarted or reinstalled agent
/// does not forget the last check-in: the daily logs in `log_dir` and the RelayChain files
/// in `relay_dir`, newest day first, back to the newest day that holds a success (older
/// days cannot change the verdict).
pub fn read_back(log_dir: &Path, relay_dir: &Path, p: &Patterns, now: DateTime<Utc>) -> Checkin {
    let mut days: std::collections::BTreeMap<NaiveDate, Vec<std::path::PathBuf>> =
        Default::default();
    for dir in [log_dir, relay_dir] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let ours = matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("log" | "bkg" | "txt")
            );
            if let (true, Some(d)) = (ours, file_date(&path)) {
                days.entry(d).or_default().push(path);
            }
        }
    }
    let mut c = Checkin::new(now);
    let mut records = Vec::new();
    for (date, files) in days.iter().rev() {
        let mut day_has_success = false;
        for f in files {
            // Lossy: a torn write or a stray byte spoils one line, not the file.
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let relay_chain = f.extension().is_some_and(|x| x == "txt");
            let mut log = LogReader::new(*date);
            for line in text.lines() {
                let r = if relay_chain {
                    if line.trim().is_empty() {
                        continue;
                    }
                    relay_chain_line(*date, line)
                } else {
                    match log.line(line, p) {
                        Ok(None) => continue,
                        Ok(Some(s)) => Ok(s),
                        Err(e) => Err(e),
                    }
                };
                day_has_success |= matches!(r, Ok(Signal::Success { .. }));
                records.push(r);
            }
        }
        if day_has_success {
            break;
        }
    }
    // Oldest first, as they happened; unreadable records are counted where they stand.
    records.sort_by_key(|r| r.as_ref().map(Signal::at).ok());
    for r in records {
        c.note(r, now);
    }
    c
}

/// The part of a failure line an SRE recognises (`General transport failure`), or the
/// line.
pub fn failure_words(line: &str) -> &str {
    for known in [
        "General transport failure",
        "Unable to connect",
        "GetURL failed",
    ] {
        if line.contains(known) {
            return known;
        }
    }
    // A RelayChain `F` line: its words are all identifiers.
    if line.contains(" - F - ") {
        return "registration failed";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, s).unwrap()
    }

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn relay_chain_lines_are_read_as_documented() {
        let s = relay_chain_line(
            day(),
            "At 05:05:13 +0100 - S - s:1(bigfix-server) - r:2112(relay-dal10) - c:5551(web-1)",
        )
        .unwrap();
        assert_eq!(
            s,
            Signal::Success {
                at: utc(4, 5, 13),
                via: "relay chain",
                relay: Some("relay-dal10".into())
            }
        );
        let f = relay_chain_line(
            day(),
            "At 23:10:00 -0500 - F - s:1(bigfix-server) - r:2112(relay-dal10) - c:5551(web-1)\n",
        )
        .unwrap();
        assert!(
            matches!(f, Signal::Failure { at, relay: Some(ref r), .. } if r == "relay-dal10" && at == Utc.with_ymd_and_hms(2026, 12, 2, 4, 10, 0).unwrap()),
            "{f:?}"
        );
    }

    #[test]
    fn log_lines_take_their_block_time_and_name_the_relay() {
        let p = Patterns::default();
        let mut r = LogReader::new(day());
        let lines = [
            "At 09:12:00 +0000 -",
            "   RegisterOnce: Attempting secure registration with 'https://relay-dal10.example.com:52311/cgi-bin/bfenterprise/clientregister.exe?RequestType=RegisterMe60'",
            "   Registered with url 'https://relay-dal10.example.com:52311/cgi-bin/bfenterprise/clientregister.exe'",
            "At 09:13:30 +0000 -",
            "   ActiveDirectory: Refreshed Computer Information",
            "   Report posted successfully",
            "At 10:00:00 +0000 -",
            "   RegisterOnce: GetURL failed - General transport failure. - 'http://relay-dal10.example.com:52311/cgi-bin/bfenterprise/clientregister.exe' (Unable to connect)",
        ];
        let got: Vec<Signal> = lines
            .iter()
            .filter_map(|l| r.line(l, &p).unwrap())
            .collect();
        let relay = Some("relay-dal10.example.com".to_owned());
        assert_eq!(
            got,
            [
                Signal::Attempt {
                    at: utc(9, 12, 0),
                    relay: "relay-dal10.example.com".into()
                },
                Signal::Success {
                    at: utc(9, 12, 0),
                    via: "registration",
                    relay: relay.clone()
                },
                Signal::Success {
                    at: utc(9, 13, 30),
                    via: "report",
                    relay: None
                },
                Signal::Failure {
                    at: utc(10, 0, 0),
                    line: lines[7].trim().into(),
                    relay
                },
            ]
        );
    }

    #[test]
    fn truncated_garbage_and_timeless_records_are_refused() {
        let p = Patterns::default();
        for line in [
            "At 05:05:13 +0100 - S - s:1(bigfix-ser",
            "At 05:05 +0100 - S - s:1(server) - r:2(relay) - c:3(client)",
            "At 05:05:13 +01 - S - s:1(server) - r:2(relay) - c:3(client)",
            "At 05:05:13 +0100 - X - s:1(server) - r:2(relay) - c:3(client)",
            "\u{0}\u{1}garbage",
            "",
        ] {
            assert!(relay_chain_line(day(), line).is_err(), "{line:?}");
        }
        let mut r = LogReader::new(day());
        assert!(r.line("   Report posted successfully", &p).is_err());
        assert!(r.line("At 25:00:00 +0000 -", &p).is_err());
        assert_eq!(r.line("   nothing to do with it", &p), Ok(None));
    }

    #[test]
    fn the_verdict_follows_the_time_without_a_success() {
        let (warn, crit) = (6 * H, 24 * H);
        let mut c = Checkin::new(utc(0, 0, 0));
        assert_eq!(c.verdict(utc(1, 0, 0), warn, crit).0, Verdict::Unknown);
        assert_eq!(
            c.verdict(utc(7, 0, 0), warn, crit).0,
            Verdict::Warn,
            "watched 7h, nothing"
        );

        let chain = |t: &str, o: &str| {
            relay_chain_line(
                day(),
                &format!("At {t} +0000 - {o} - s:1(server) - r:7(relay-dal10) - c:9(web-1)"),
            )
        };
        assert!(c.note(chain("08:00:00", "S"), utc(8, 0, 1)));
        let (v, why) = c.verdict(utc(8, 30, 0), warn, crit);
        assert_eq!(v, Verdict::Ok);
        assert_eq!(
            why,
            "checked into BigFix 30m ago (relay chain) via relay relay-dal10"
        );

        // The relay goes away.
        assert!(c.note(chain("09:12:00", "F"), utc(9, 12, 1)));
        assert!(
            !c.note(chain("10:12:00", "F"), utc(10, 12, 1)),
            "still failing: no news"
        );
        assert_eq!(c.failing_since, Some(utc(9, 12, 0)));
        assert_eq!(c.verdict(utc(13, 0, 0), warn, crit).0, Verdict::Ok);
        let (v, why) = c.verdict(utc(14, 0, 0), warn, crit);
        assert_eq!(v, Verdict::Warn);
        assert!(
            why.starts_with("not checked into BigFix for 6h: ")
                && why.ends_with("talking to relay relay-dal10 since 2026-12-01 09:12 UTC"),
            "{why}"
        );
        let next_day = utc(8, 0, 0) + chrono::Duration::hours(27);
        let (v, why) = c.verdict(next_day, warn, crit);
        assert_eq!(v, Verdict::Critical);
        assert!(
            why.starts_with("not checked into BigFix for 1day 3h"),
            "{why}"
        );

        // Back: ok, and no longer failing.
        assert!(c.note(chain("20:00:00", "S"), utc(20, 0, 1)));
        assert_eq!(c.failing_since, None);
        assert_eq!(c.verdict(utc(20, 5, 0), warn, crit).0, Verdict::Ok);
        assert!(
            !c.note(chain("21:00:00", "S"), utc(21, 0, 1)),
            "a routine success is no news"
        );
        assert_eq!(c.last_success.map(|(t, _)| t), Some(utc(21, 0, 0)));
    }

    #[test]
    fn records_from_the_future_or_unreadable_are_counted_and_ignored() {
        let mut c = Checkin::new(utc(0, 0, 0));
        let future = relay_chain_line(
            day(),
            "At 23:00:00 +0000 - S - s:1(server) - r:7(relay) - c:9(web-1)",
        );
        assert!(!c.note(future, utc(12, 0, 0)));
        assert!(!c.note(Err(BadLine("x".into())), utc(12, 0, 0)));
        assert_eq!(c.bad_records, 2);
        assert_eq!(c.last_success, None);
    }

    #[test]
    fn an_older_record_read_late_does_not_hide_a_newer_one() {
        let mut c = Checkin::new(utc(0, 0, 0));
        let s = |h: u32| {
            Ok(Signal::Success {
                at: utc(h, 0, 0),
                via: "report",
                relay: None,
            })
        };
        assert!(c.note(s(10), utc(12, 0, 0)));
        assert!(!c.note(s(9), utc(12, 0, 0)));
        assert_eq!(c.last_success, Some((utc(10, 0, 0), "report")));
    }

    #[test]
    fn the_last_check_in_is_read_back_from_the_kept_files() {
        let d = tempfile::tempdir().unwrap();
        let (logs, chain) = (d.path().join("Logs"), d.path().join("RelayChain"));
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&chain).unwrap();
        std::fs::write(
            chain.join("20261130.txt"),
            "At 22:00:00 +0000 - S - s:1(server) - r:7(relay-dal10) - c:9(web-1)\n",
        )
        .unwrap();
        std::fs::write(
            chain.join("20261201.txt"),
            "At 09:12:00 +0000 - F - s:1(server) - r:7(relay-dal10) - c:9(web-1)\nAt 09:1",
        )
        .unwrap();
        std::fs::write(
            logs.join("20261201.log"),
            "At 09:12:05 +0000 -\n   RegisterOnce: GetURL failed - General transport failure. - 'http://relay-dal10:52311/x'\n",
        )
        .unwrap();
        std::fs::write(logs.join("20261129.log"), "\u{0}not read: an older day").unwrap();
        let c = read_back(&logs, &chain, &Patterns::default(), utc(12, 0, 0));
        assert_eq!(
            c.last_success.map(|(t, _)| t),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 22, 0, 0).unwrap())
        );
        assert_eq!(c.failing_since, Some(utc(9, 12, 0)));
        assert_eq!(c.relay.as_deref(), Some("relay-dal10"));
        assert_eq!(c.bad_records, 1, "the torn last line");
        let (v, why) = c.verdict(utc(12, 0, 0), 6 * H, 24 * H);
        assert_eq!(v, Verdict::Warn, "{why}");
    }

    #[test]
    fn file_names_give_the_day() {
        assert_eq!(
            file_date(Path::new("/x/RelayChain/20261201.txt")),
            Some(day())
        );
        assert_eq!(file_date(Path::new("/x/Logs/20261201.log")), Some(day()));
        assert_eq!(file_date(Path::new("/x/Logs/notes.txt")), None);
    }
}
