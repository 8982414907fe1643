//! The BESClient log directory: which daily file is newest, when it was last written, and
//! which new lines match `error_patterns`.
//!
//! Files are `YYYYMMDD.log`, one a day; at the size cap today's file is renamed to
//! `YYYYMMDD.bkg` (or deleted and recreated), and retention deletes old days. The directory
//! itself disappears during a reinstall.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};

/// At most this much of a log is read per change; a burst beyond it is skipped, not buffered.
const MAX_READ: u64 = 1 << 20;
/// A line longer than this is cut when matched.
const MAX_LINE: usize = 4096;

/// Whether a file name is a BESClient daily log: `YYYYMMDD.log` or `YYYYMMDD.bkg`.
pub fn is_log_name(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.len() == 12
        && b[..8].iter().all(u8::is_ascii_digit)
        && (b.ends_with(b".log") || b.ends_with(b".bkg"))
}

/// One look at the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub dir_exists: bool,
    /// Name of the newest daily file (by its date, `.log` before `.bkg`).
    pub newest: Option<String>,
    /// Latest modification time over all daily files.
    pub last_write: Option<DateTime<Utc>>,
    /// Modification time of today's `.log`, if it exists.
    pub today_write: Option<DateTime<Utc>>,
    /// Inode and length of the newest file: what proves a write happened.
    pub newest_id: Option<(u64, u64)>,
}

impl Snapshot {
    /// Takes `prev`'s write times if the newest file has not changed in inode or length.
    ///
    /// On a full filesystem a failed write still advances the file's mtime (the kernel
    /// updates the times before copying), so an mtime alone does not prove the client wrote.
    pub fn keep_times_if_unwritten(&mut self, prev: &Snapshot) {
        if self.newest.is_some() && self.newest == prev.newest && self.newest_id == prev.newest_id {
            self.last_write = prev.last_write;
            // Only while today's file is that same file: after midnight yesterday's time
            // must not count for today.
            if self.today_write.is_some() {
                self.today_write = prev.today_write.or(self.today_write);
            }
        }
    }
}

pub fn scan(dir: &Path, today_log_name: &str) -> Snapshot {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Snapshot {
            dir_exists: dir.is_dir(),
            newest: None,
            last_write: None,
            today_write: None,
            newest_id: None,
        };
    };
    let mut newest: Option<String> = None;
    let mut last_write: Option<DateTime<Utc>> = None;
    let mut today_write = None;
    let mut newest_id = None;
    for e in entries.flatten() {
        let name = e.file_name();
        if !is_log_name(&name) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let Ok(mtime) = meta.modified() else { continue };
        let mtime = DateTime::<Utc>::from(mtime);
        let name = name.to_string_lossy().into_owned();
        if name == today_log_name {
            today_write = Some(mtime);
        }
        last_write = last_write.max(Some(mtime));
        // "20261122.log" sorts after "20261122.bkg": reverse the suffix order by comparing
        // the date, then preferring .log.
        let key = |n: &str| (n[..8].to_owned(), n.ends_with(".log"));
        if newest.as_deref().is_none_or(|n| key(&name) > key(n)) {
            newest = Some(name);
            newest_id = Some((meta.ino(), meta.len()));
        }
    }
    Snapshot {
        dir_exists: true,
        newest,
        last_write,
        today_write,
        newest_id,
    }
}

/// A line that matched one of the error patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLine {
    pub line: String,
}

/// Follows the newest log file and matches each complete new line against the patterns.
#[derive(Debug)]
pub struct Tail {
    patterns: Vec<String>,
    path: Option<PathBuf>,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    pub fn new(patterns: Vec<String>) -> Tail {
        Tail {
            patterns,
            path: None,
            ino: 0,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Starts following `path` from its current end: what was written before is history.
    pub fn follow_from_end(&mut self, path: PathBuf) {
        let meta = std::fs::metadata(&path).ok();
        self.ino = meta.as_ref().map_or(0, |m| m.ino());
        self.offset = meta.map_or(0, |m| m.len());
        self.path = Some(path);
        self.partial.clear();
    }

    /// Reads what was appended to `path` since the last call and returns the matching
    /// lines, and the file's modification time: when it was really written, which may be
    /// well before the event announcing it is handled. A different file, a new inode
    /// (recreated at the size cap) or a shorter file (truncated) is read from its start.
    pub fn poll(&mut self, path: &Path) -> (Vec<ErrorLine>, Option<DateTime<Utc>>) {
        let (lines, mtime) = self.poll_lines(path);
        (lines.iter().filter_map(|l| self.error(l)).collect(), mtime)
    }

    /// The line, if it matches an error pattern.
    pub fn error(&self, line: &str) -> Option<ErrorLine> {
        self.patterns
            .iter()
            .any(|p| line.contains(p.as_str()))
            .then(|| ErrorLine {
                line: line.trim().chars().take(MAX_LINE).collect(),
            })
    }

    /// As [`Tail::poll`], with every complete new line (each at most 4 KiB).
    pub fn poll_lines(&mut self, path: &Path) -> (Vec<String>, Option<DateTime<Utc>>) {
        let Ok(f) = File::open(path) else {
            return (Vec::new(), None);
        };
        let Ok(meta) = f.metadata() else {
            return (Vec::new(), None);
        };
        let mtime = meta.modified().ok().map(DateTime::<Utc>::from);
        (self.read_new(f, &meta, path), mtime)
    }

    fn read_new(&mut self, mut f: File, meta: &std::fs::Metadata, path: &Path) -> Vec<String> {
        if self.path.as_deref() != Some(path) || meta.ino() != self.ino || meta.len() < self.offset
        {
            self.path = Some(path.to_owned());
            self.ino = meta.ino();
            self.offset = 0;
            self.partial.clear();
        }
        if meta.len() == self.offset {
            return Vec::new();
        }
        if meta.len() - self.offset > MAX_READ {
            self.offset = meta.len() - MAX_READ;
            self.partial.clear();
        }
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err()
            || f.take(MAX_READ).read_to_end(&mut buf).is_err()
        {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
            }
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(|l| l.chars().take(MAX_LINE).collect())
            .collect()
    }
}

/// What an inotify event means for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A daily log file was written or created.
    Written(PathBuf),
    /// Something structural: files renamed or deleted, the directory itself gone or back,
    /// events lost. Look at the whole directory again.
    Rescan,
}

/// Watches the log directory, and its nearest existing ancestor so that a deleted and
/// re-created directory (a reinstall) is followed.
pub struct LogWatcher {
    dir: PathBuf,
    /// Which file names in it matter.
    names: fn(&OsStr) -> bool,
    watches: Watches,
    stream: EventStream<Vec<u8>>,
    dir_wd: Option<WatchDescriptor>,
    ancestor_wd: Option<WatchDescriptor>,
}

impl LogWatcher {
    pub fn new(dir: &Path) -> std::io::Result<LogWatcher> {
        LogWatcher::for_files(dir, is_log_name)
    }

    /// Watches `dir` for the files whose names `names` accepts.
    pub fn for_files(dir: &Path, names: fn(&OsStr) -> bool) -> std::io::Result<LogWatcher> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let stream = inotify.into_event_stream(vec![0u8; 4096])?;
        let mut w = LogWatcher {
            dir: dir.to_owned(),
            names,
            watches,
            stream,
            dir_wd: None,
            ancestor_wd: None,
        };
        w.rewatch();
        Ok(w)
    }

    /// Whether the log directory itself is under watch (else only an ancestor is).
    pub fn watching_dir(&self) -> bool {
        self.dir_wd.is_some()
    }

    /// Places the watches for where the directory is now.
    pub fn rewatch(&mut self) {
        for wd in [self.dir_wd.take(), self.ancestor_wd.take()]
            .into_iter()
            .flatten()
        {
            let _ = self.watches.remove(wd);
        }
        let files = WatchMask::MODIFY
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        let dirs = WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::ONLYDIR;
        if let Ok(wd) = self.watches.add(&self.dir, files) {
            self.dir_wd = Some(wd);
        }
        // The parent when the directory exists (to see it go), else the deepest existing
        // ancestor (to see the path come back one level at a time).
        let mut up = self.dir.parent();
        while let Some(a) = up {
            if let Ok(wd) = self.watches.add(a, dirs) {
                self.ancestor_wd = Some(wd);
                break;
            }
            up = a.parent();
        }
    }

    /// Waits for the next change that matters. `None` if inotify itself failed.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            let ev = match self.stream.next().await? {
                Ok(ev) => ev,
                Err(_) => return Some(Change::Rescan),
            };
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                self.rewatch();
                return Some(Change::Rescan);
            }
            if Some(&ev.wd) == self.dir_wd.as_ref() {
                if ev
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
                {
                    self.rewatch();
                    return Some(Change::Rescan);
                }
                let Some(name) = ev.name.as_deref() else {
                    continue;
                };
                if !(self.names)(name) {
                    continue;
                }
                if ev.mask.intersects(EventMask::MODIFY | EventMask::CREATE) {
                    return Some(Change::Written(self.dir.join(name)));
                }
                return Some(Change::Rescan);
            }
            if Some(&ev.wd) == self.ancestor_wd.as_ref() {
                if ev.mask.contains(EventMask::IGNORED) {
                    self.rewatch();
                    return Some(Change::Rescan);
                }
                // Only changes on the path to the log directory matter.
                let Some(name) = ev.name.as_deref() else {
                    continue;
                };
                let on_path = self.dir.ancestors().any(|a| a.file_name() == Some(name));
                if on_path {
                    self.rewatch();
                    return Some(Change::Rescan);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn log_names_are_recognised() {
        for ok in ["20261122.log", "20261122.bkg"] {
            assert!(is_log_name(OsStr::new(ok)), "{ok}");
        }
        for bad in [
            "2026112.log",
            "20261122.txt",
            "x0261122.log",
            "20261122.log.1",
            "besclient.log",
        ] {
            assert!(!is_log_name(OsStr::new(bad)), "{bad}");
        }
    }

    #[test]
    fn scan_finds_newest_day_and_todays_file() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "20261120.log",
            "20261121.log",
            "20261122.bkg",
            "20261122.log",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        let s = scan(d.path(), "20261122.log");
        assert!(s.dir_exists);
        assert_eq!(s.newest.as_deref(), Some("20261122.log"));
        assert!(s.today_write.is_some());
        let s = scan(d.path(), "20261123.log");
        assert_eq!(s.today_write, None, "no file for the new day yet");
    }

    #[test]
    fn an_mtime_without_growth_is_not_a_write() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("20261122.log");
        std::fs::write(&f, "At 06:00:00 +0000 -\n").unwrap();
        let first = scan(d.path(), "20261122.log");
        // What a write failing with ENOSPC does: the time moves, the content does not.
        let later = std::time::SystemTime::now() + Duration::from_secs(60);
        std::fs::File::options()
            .append(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let mut second = scan(d.path(), "20261122.log");
        assert_ne!(second.last_write, first.last_write);
        second.keep_times_if_unwritten(&first);
        assert_eq!(second.last_write, first.last_write);
        // A real append counts.
        append(&f, "   Report posted successfully\n");
        let mut third = scan(d.path(), "20261122.log");
        third.keep_times_if_unwritten(&second);
        assert!(third.last_write > first.last_write);
    }

    #[test]
    fn scan_of_missing_dir_says_so() {
        let s = scan(Path::new("/nonexistent/Logs"), "20261122.log");
        assert!(!s.dir_exists);
        assert_eq!(s.newest, None);
    }

    #[test]
    fn tail_matches_only_new_complete_lines() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("20261122.log");
        append(&f, "At 05:00:00 +0000 -\n   GetURL failed old history\n");
        let mut t = Tail::new(vec![
            "GetURL failed".into(),
            "General transport failure".into(),
        ]);
        t.follow_from_end(f.clone());
        assert!(
            t.poll(&f).0.is_empty(),
            "history before the agent started is not counted"
        );
        append(
            &f,
            "At 05:01:00 +0000 -\n   Report posted successfully\n   General transport fai",
        );
        assert!(t.poll(&f).0.is_empty(), "half a line waits for its end");
        append(&f, "lure\n");
        let m = t.poll(&f).0;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].line, "General transport failure");
    }

    #[test]
    fn tail_restarts_on_truncation_and_recreation() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("20261122.log");
        append(&f, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
        let mut t = Tail::new(vec!["GetURL failed".into()]);
        t.follow_from_end(f.clone());
        std::fs::write(&f, "GetURL failed 1\n").unwrap(); // truncated, shorter
        assert_eq!(t.poll(&f).0.len(), 1);
        // Size cap: renamed to .bkg and a fresh file under the same name.
        std::fs::rename(&f, d.path().join("20261122.bkg")).unwrap();
        append(&f, "GetURL failed 2\n");
        let m = t.poll(&f).0;
        assert_eq!(m.len(), 1);
        assert!(m[0].line.ends_with('2'));
    }

    #[tokio::test]
    async fn watcher_follows_writes_rotation_and_a_recreated_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("__BESData/__Global/Logs");
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = LogWatcher::new(&dir).unwrap();
        assert!(w.watching_dir());
        let f = dir.join("20261122.log");
        append(&f, "At 06:00:00 +0000 -\n");
        let c = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap();
        assert_eq!(c, Some(Change::Written(f.clone())));

        std::fs::rename(&f, dir.join("20261122.bkg")).unwrap();
        // The write may still have a MODIFY queued behind its CREATE; the rename follows.
        loop {
            let c = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .unwrap();
            if c == Some(Change::Rescan) {
                break;
            }
            assert_eq!(c, Some(Change::Written(f.clone())));
        }

        // Reinstall: the whole data tree goes, then comes back.
        std::fs::remove_dir_all(root.path().join("__BESData")).unwrap();
        loop {
            let c = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .unwrap();
            assert_eq!(c, Some(Change::Rescan));
            if !w.watching_dir() {
                break;
            }
        }
        std::fs::create_dir_all(&dir).unwrap();
        // Each level that appears moves the watch one step down until the directory itself.
        while !w.watching_dir() {
            let c = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .unwrap();
            assert_eq!(c, Some(Change::Rescan));
        }
        let f2 = dir.join("20261123.log");
        append(&f2, "At 00:00:01 +0000 -\n");
        loop {
            let c = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .unwrap();
            if c == Some(Change::Written(f2.clone())) {
                break;
            }
            assert_eq!(c, Some(Change::Rescan));
        }
    }
}
