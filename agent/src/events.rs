//! Every observation and action becomes a numbered [`Event`]: written to the log (journald
//! fields when connected to it) and kept for the collector and `doctor`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use log::kv::{Key, Source, Value, VisitSource};
use rollcall_proto::{Event, EventKind};

/// Events kept in memory for the state file and, later, delivery.
const KEEP: usize = 256;

/// One host's events. Clones share the numbering, the recent events and the sink, so that
/// every check's events are one stream.
#[derive(Debug, Clone)]
pub struct EventLog {
    next_seq: Arc<AtomicU64>,
    recent: Arc<Mutex<VecDeque<Event>>>,
    /// Every event also goes here (to the collector's spool), when reporting.
    sink: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
}

/// The optional structured fields of an event.
#[derive(Debug, Default, Clone)]
pub struct Fields<'a> {
    pub action: Option<&'a str>,
    pub step: Option<&'a str>,
    pub pid: Option<u32>,
    /// Overrides the level the kind implies (a recovery is observed, but good news).
    pub level: Option<log::Level>,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            next_seq: Arc::new(AtomicU64::new(1)),
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(16))),
            sink: None,
        }
    }

    /// Numbers from the shared `seq` on, and hands every event to `sink` too.
    pub fn reporting(
        seq: Arc<AtomicU64>,
        sink: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> EventLog {
        EventLog {
            next_seq: seq,
            sink: Some(sink),
            ..EventLog::new()
        }
    }

    pub fn emit(
        &mut self,
        at: DateTime<Utc>,
        check: &str,
        kind: EventKind,
        message: String,
        f: Fields<'_>,
    ) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let level = f.level.unwrap_or(match kind {
            EventKind::Exhausted | EventKind::VerifyFailed => log::Level::Error,
            EventKind::Observed | EventKind::Held => log::Level::Warn,
            EventKind::Action | EventKind::Verified => log::Level::Info,
        });
        if level <= log::max_level() {
            let fields = EventFields {
                check,
                event: kind_str(kind),
                f: &f,
                seq,
            };
            log::logger().log(
                &log::Record::builder()
                    .args(format_args!("{message}"))
                    .level(level)
                    .target(check)
                    .key_values(&fields)
                    .build(),
            );
        }
        let e = Event {
            seq,
            at,
            check: check.to_owned(),
            kind,
            message,
            action: f.action.map(str::to_owned),
            step: f.step.map(str::to_owned),
            pid: f.pid,
        };
        if let Some(sink) = &self.sink {
            // Unbounded and never blocking; a closed receiver (reporting stopped) is fine.
            let _ = sink.send(e.clone());
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(e);
        seq
    }

    /// Says how killing a leftover `name` process went (step `hard_restart`): an action
    /// event, or a warning that it could not be killed.
    pub fn killed(
        &mut self,
        at: DateTime<Utc>,
        check: &str,
        name: &str,
        pid: u32,
        outcome: std::io::Result<()>,
    ) {
        match outcome {
            Ok(()) => {
                self.emit(
                    at,
                    check,
                    EventKind::Action,
                    format!("killed leftover {name} process {pid}"),
                    Fields {
                        action: Some("kill"),
                        step: Some("hard_restart"),
                        pid: Some(pid),
                        level: None,
                    },
                );
            }
            Err(e) => log::warn!(target: check, pid = pid; "cannot kill {name} process {pid}: {e}"),
        }
    }

    /// The newest `n` events, newest first.
    pub fn recent(&self, n: usize) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().take(n).cloned().collect()
    }
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new()
    }
}

/// The structured fields of an event, only those present (journald: `CHECK`, `EVENT`,
/// `ACTION`, `STEP`, `PID`, `SEQ`).
struct EventFields<'a> {
    check: &'a str,
    event: &'static str,
    f: &'a Fields<'a>,
    seq: u64,
}

impl Source for EventFields<'_> {
    fn visit<'kvs>(&'kvs self, v: &mut dyn VisitSource<'kvs>) -> Result<(), log::kv::Error> {
        v.visit_pair(Key::from("check"), Value::from(self.check))?;
        v.visit_pair(Key::from("event"), Value::from(self.event))?;
        if let Some(a) = self.f.action {
            v.visit_pair(Key::from("action"), Value::from(a))?;
        }
        if let Some(s) = self.f.step {
            v.visit_pair(Key::from("step"), Value::from(s))?;
        }
        if let Some(p) = self.f.pid {
            v.visit_pair(Key::from("pid"), Value::from(p))?;
        }
        v.visit_pair(Key::from("seq"), Value::from(self.seq))
    }

    fn count(&self) -> usize {
        3 + usize::from(self.f.action.is_some())
            + usize::from(self.f.step.is_some())
            + usize::from(self.f.pid.is_some())
    }
}

pub fn kind_str(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Observed => "observed",
        EventKind::Action => "action",
        EventKind::Verified => "verified",
        EventKind::VerifyFailed => "verify_failed",
        EventKind::Exhausted => "exhausted",
        EventKind::Held => "held",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_bounded() {
        let mut log = EventLog::new();
        for i in 0..300 {
            log.emit(
                Utc::now(),
                "besclient",
                EventKind::Observed,
                format!("e{i}"),
                Fields::default(),
            );
        }
        let seqs: Vec<u64> = log.recent(usize::MAX).iter().map(|e| e.seq).collect();
        assert_eq!(seqs.len(), KEEP);
        assert_eq!(seqs.first(), Some(&300));
        assert_eq!(seqs.last(), Some(&45));
    }
}
