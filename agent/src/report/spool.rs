//! Events not yet acknowledged by the collector, on disk: `spool/events.jsonl` (one event
//! per line, appended as they happen) and `spool/meta.json` (the highest acknowledged
//! sequence number and how many events were dropped). Bounded in count and bytes; the
//! oldest go first, and are counted.
//!
//! A torn last line (the agent killed mid-write) or a corrupt one is skipped and reported,
//! never fatal.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rollcall_proto::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    acked: u64,
    dropped: u64,
    /// Dropped and not yet told to the collector.
    #[serde(default)]
    unreported: u64,
    /// The highest sequence number dropped: such lines left in the file are not pending.
    #[serde(default)]
    dropped_through: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    file: Option<File>,
    /// Each event with its encoded size.
    events: VecDeque<(Event, usize)>,
    bytes: u64,
    meta: Meta,
    max_events: usize,
    max_bytes: u64,
    /// Lines in the file that are acknowledged or dropped: rewritten away when many.
    stale_lines: usize,
    /// The last write failed (disk full...): said once, retried on every change.
    write_failed: bool,
}

/// What opening found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// The highest sequence number seen on disk (acknowledged or not).
    pub highest_seq: u64,
    pub skipped_lines: usize,
}

impl Spool {
    pub fn open(dir: &Path, max_events: usize, max_bytes: u64) -> std::io::Result<(Spool, Opened)> {
        std::fs::create_dir_all(dir)?;
        let meta: Meta = std::fs::read(dir.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut opened = Opened {
            highest_seq: meta.acked,
            ..Opened::default()
        };
        let mut spool = Spool {
            dir: dir.to_owned(),
            file: None,
            events: VecDeque::new(),
            bytes: 0,
            meta,
            max_events,
            max_bytes,
            stale_lines: 0,
            write_failed: false,
        };
        let text = match std::fs::read(dir.join("events.jsonl")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Event>(line) {
                Ok(e) => {
                    opened.highest_seq = opened.highest_seq.max(e.seq);
                    let gone = spool.meta.acked.max(spool.meta.dropped_through);
                    if e.seq > gone && spool.events.back().is_none_or(|(b, _)| b.seq < e.seq) {
                        spool.bytes += line.len() as u64 + 1;
                        spool.events.push_back((e, line.len() + 1));
                    } else {
                        spool.stale_lines += 1;
                    }
                }
                Err(_) => opened.skipped_lines += 1,
            }
        }
        spool.trim();
        // Start clean: the file holds exactly what is pending.
        spool.rewrite();
        Ok((spool, opened))
    }

    fn path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    fn append_file(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path())?,
            );
        }
        Ok(self
            .file
            .as_mut()
            .unwrap_or_else(|| unreachable!("just opened")))
    }

    fn failed(&mut self, what: &str, e: std::io::Error) {
        if !self.write_failed {
            log::warn!(target: "agent", "cannot write the event spool in {} ({what}: {e}); events are kept in memory until it can", self.dir.display());
        }
        self.write_failed = true;
        self.file = None;
    }

    /// Adds an event (already numbered) to the end.
    pub fn push(&mut self, e: Event) {
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        let n = line.len();
        if self.write_failed {
            // Retry with a whole rewrite, so that nothing in memory is missing on disk.
            self.events.push_back((e, n));
            self.bytes += n as u64;
            self.trim();
            self.rewrite();
            return;
        }
        let r = self.append_file().and_then(|f| {
            f.write_all(&line)?;
            f.sync_data()
        });
        if let Err(err) = r {
            self.failed("append", err);
        }
        self.events.push_back((e, n));
        self.bytes += n as u64;
        self.trim();
    }

    /// Drops the oldest beyond the limits, counting them.
    fn trim(&mut self) {
        let mut dropped = 0;
        while self.events.len() > self.max_events
            || (self.bytes > self.max_bytes && self.events.len() > 1)
        {
            if let Some((e, n)) = self.events.pop_front() {
                self.bytes -= n as u64;
                dropped += 1;
                self.meta.dropped_through = e.seq;
            }
        }
        if dropped > 0 {
            if self.meta.dropped == 0 || dropped > 1 {
                log::warn!(target: "agent", "event spool full ({} events, {} bytes max): dropped the {dropped} oldest", self.max_events, self.max_bytes);
            }
            self.meta.dropped += dropped;
            self.meta.unreported += dropped;
            self.stale_lines += dropped as usize;
            self.save_meta();
        }
        if self.stale_lines > self.events.len().max(64) {
            self.rewrite();
        }
    }

    /// The oldest pending events, at most `max_bytes` of them encoded (at least one).
    pub fn batch(&self, max_events: usize, max_bytes: usize) -> Vec<Event> {
        let mut out = Vec::new();
        let mut size = 0;
        for (e, n) in &self.events {
            if out.len() == max_events || (!out.is_empty() && size + n > max_bytes) {
                break;
            }
            size += n;
            out.push(e.clone());
        }
        out
    }

    /// Everything up to `seq` is stored by the collector, which was also told of
    /// `reported` dropped events.
    pub fn ack(&mut self, seq: u64, reported: u64) {
        if reported > 0 {
            self.meta.unreported = self.meta.unreported.saturating_sub(reported);
            if seq <= self.meta.acked {
                self.save_meta();
            }
        }
        if seq <= self.meta.acked {
            return;
        }
        while self.events.front().is_some_and(|(e, _)| e.seq <= seq) {
            if let Some((_, n)) = self.events.pop_front() {
                self.bytes -= n as u64;
                self.stale_lines += 1;
            }
        }
        self.meta.acked = seq;
        self.save_meta();
        if self.events.is_empty() || self.stale_lines > self.events.len().max(64) {
            self.rewrite();
        }
    }

    /// Writes the file anew with only what is pending.
    fn rewrite(&mut self) {
        let mut buf = Vec::with_capacity(self.bytes as usize);
        for (e, _) in &self.events {
            buf.extend(serde_json::to_vec(e).unwrap_or_default());
            buf.push(b'\n');
        }
        self.file = None;
        match crate::state::write_atomic(&self.path(), &buf) {
            Ok(()) => {
                self.stale_lines = 0;
                self.write_failed = false;
            }
            Err(e) => self.failed("rewrite", e),
        }
    }

    fn save_meta(&mut self) {
        let b = serde_json::to_vec(&self.meta).unwrap_or_default();
        if let Err(e) = crate::state::write_atomic(&self.dir.join("meta.json"), &b) {
            self.failed("meta.json", e);
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Events dropped since the state directory was made.
    pub fn dropped(&self) -> u64 {
        self.meta.dropped
    }

    /// Events dropped that the collector has not been told of.
    pub fn unreported(&self) -> u64 {
        self.meta.unreported
    }

    pub fn oldest(&self) -> Option<&Event> {
        self.events.front().map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall_proto::EventKind;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            at: chrono::Utc::now(),
            check: "besclient".into(),
            kind: EventKind::Action,
            message: format!("restart issued ({seq})"),
            action: Some("restart".into()),
            step: Some("restart".into()),
            pid: Some(4242),
        }
    }

    fn seqs(s: &Spool) -> Vec<u64> {
        s.batch(usize::MAX, usize::MAX)
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn pending_events_survive_a_restart_and_acked_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, o) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        assert_eq!(o, Opened::default());
        for i in 1..=5 {
            s.push(ev(i));
        }
        s.ack(2, 0);
        drop(s);
        let (s, o) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        assert_eq!(seqs(&s), [3, 4, 5]);
        assert_eq!(o.highest_seq, 5);
        // Everything acknowledged: the file is empty, the high-water mark kept.
        let (mut s, _) = (s, ());
        s.ack(5, 0);
        assert_eq!(std::fs::read(d.path().join("events.jsonl")).unwrap(), b"");
        let (s, o) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        assert!(s.is_empty());
        assert_eq!(o.highest_seq, 5);
    }

    #[test]
    fn limits_drop_the_oldest_and_count_them() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        for i in 1..=250 {
            s.push(ev(i));
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.oldest().unwrap().seq, 151);
        assert_eq!(s.dropped(), 150);
        let on_disk = std::fs::metadata(d.path().join("events.jsonl"))
            .unwrap()
            .len();
        assert!(
            on_disk < 2 * s.bytes() + 4096,
            "the file is compacted: {on_disk} bytes for {}",
            s.bytes()
        );
        drop(s);
        let (s, _) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        assert_eq!(
            (s.len(), s.dropped()),
            (100, 150),
            "the count survives a restart"
        );
        assert_eq!(s.unreported(), 150);
        let mut s = s;
        s.ack(151, 150);
        assert_eq!((s.unreported(), s.dropped(), s.len()), (0, 150, 99));
        // A byte limit too.
        let e = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(e.path(), 10_000, 64 * 1024).unwrap();
        for i in 1..=2000 {
            s.push(ev(i));
        }
        assert!(s.bytes() <= 64 * 1024);
        assert_eq!(s.dropped() as usize + s.len(), 2000);
    }

    #[test]
    fn a_torn_or_corrupt_line_is_skipped_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        s.push(ev(1));
        s.push(ev(2));
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.path().join("events.jsonl"))
            .unwrap();
        f.write_all(b"garbage\n{\"seq\":3,\"at\":\"2026-11-")
            .unwrap();
        std::fs::write(d.path().join("meta.json"), b"not json").unwrap();
        let (s, o) = Spool::open(d.path(), 100, 1 << 20).unwrap();
        assert_eq!(seqs(&s), [1, 2]);
        assert_eq!(o.skipped_lines, 2);
    }

    #[test]
    fn batches_are_bounded_in_count_and_bytes_but_never_empty() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(d.path(), 1000, 1 << 20).unwrap();
        for i in 1..=300 {
            s.push(ev(i));
        }
        assert_eq!(s.batch(100, usize::MAX).len(), 100);
        let small = s.batch(100, 1000);
        assert!(!small.is_empty() && small.len() < 10, "{}", small.len());
        assert_eq!(s.batch(100, 1).len(), 1);
    }
}
