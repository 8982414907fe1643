//! Finding the BESClient process and awaiting its exit.
//!
//! Exit is awaited with a pidfd (readable the instant the process exits, for non-children
//! too). The identity of a PID is its start time: checked again after the pidfd is open, so
//! a PID reused by another process is never mistaken for the daemon.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// A process, identified by PID and start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub start_time: u64,
}

/// State letter and start time from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall (starttime) is the 20th after the name.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

impl Proc {
    /// The live (not zombie) process with this PID, if any.
    pub fn get(pid: u32) -> Option<Proc> {
        match stat(pid)? {
            ('Z' | 'X', _) => None,
            (_, start_time) => Some(Proc { pid, start_time }),
        }
    }

    /// Whether this very process (not a successor with the same PID) is still alive.
    pub fn alive(&self) -> bool {
        Proc::get(self.pid) == Some(*self)
    }

    /// Whether the process is stopped (SIGSTOP) or traced.
    pub fn stopped(&self) -> bool {
        matches!(stat(self.pid), Some(('T' | 't', st)) if st == self.start_time)
    }
}

/// Whether `pid` runs `exe`: by `/proc/PID/exe` (a reinstalled binary reads
/// "... (deleted)"), else by argv\[0\] for processes whose exe cannot be read.
/// `exe` may go through symlinks (`/opt` relocated to a data disk): the kernel shows the
/// resolved path, so that is compared too.
pub fn runs(pid: u32, exe: &Path) -> bool {
    let resolved = std::fs::canonicalize(exe).ok();
    runs_any(pid, exe, resolved.as_deref())
}

fn runs_any(pid: u32, exe: &Path, resolved: Option<&Path>) -> bool {
    let candidates = [Some(exe), resolved];
    let names = candidates
        .iter()
        .flatten()
        .map(|p| p.as_os_str().as_encoded_bytes());
    if let Ok(target) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        let t = target.as_os_str().as_encoded_bytes();
        let t_live = t.strip_suffix(b" (deleted)").unwrap_or(t);
        return names.into_iter().any(|n| n == t_live);
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
            names.into_iter().any(|n| n == argv0)
        })
        .unwrap_or(false)
}

/// Every live process running `exe`, oldest first.
pub fn find_by_exe(exe: &Path) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let resolved = std::fs::canonicalize(exe).ok();
    let mut found: Vec<Proc> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| runs_any(*pid, exe, resolved.as_deref()))
        .filter_map(Proc::get)
        .collect();
    found.sort_by_key(|p| p.start_time);
    found
}

/// The PID in a pidfile, if the file holds one.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// SIGKILL to one identified process; a process that is already gone is not an error.
pub fn kill(p: Proc) -> std::io::Result<()> {
    if !p.alive() {
        return Ok(());
    }
    let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) else {
        return Ok(());
    };
    match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// SIGKILLs every one of `procs`, then waits (at most 2 s) for them to be gone, so that a
/// start that follows does not find them. The outcome of each kill.
pub async fn kill_all(procs: &[Proc]) -> Vec<(Proc, std::io::Result<()>)> {
    let outcomes: Vec<_> = procs.iter().map(|p| (*p, kill(*p))).collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while procs.iter().any(Proc::alive) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    outcomes
}

/// Resolves when the watched process has exited.
pub enum ExitWatch {
    Pidfd(AsyncFd<OwnedFd>),
    /// Kernels without pidfd (before 5.3) or where it is refused: poll once a second.
    Poll(Proc),
    /// The process was gone (or its PID reused) before the watch was set.
    Gone,
}

impl ExitWatch {
    pub fn new(p: Proc) -> ExitWatch {
        let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) else {
            return ExitWatch::Gone;
        };
        let watch = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => match crate::pidfd::register(fd) {
                Ok(fd) => ExitWatch::Pidfd(fd),
                Err(_) => ExitWatch::Poll(p),
            },
            Err(rustix::io::Errno::SRCH) => return ExitWatch::Gone,
            Err(_) => ExitWatch::Poll(p),
        };
        // The pidfd refers to whatever holds the PID now: make sure that is still our process.
        if p.alive() {
            watch
        } else {
            ExitWatch::Gone
        }
    }

    pub fn uses_pidfd(&self) -> bool {
        matches!(self, ExitWatch::Pidfd(_))
    }

    pub async fn exited(&self) {
        match self {
            ExitWatch::Pidfd(fd) => {
                // Readable means exited; an error on the fd is treated the same way, and the
                // supervisor re-checks with /proc before acting.
                let _ = fd.readable().await;
            }
            ExitWatch::Poll(p) => {
                while p.alive() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            ExitWatch::Gone => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_found_with_a_stable_identity() {
        let me = Proc::get(std::process::id()).unwrap();
        assert!(me.alive());
        assert_eq!(Proc::get(me.pid), Some(me));
        let exe = std::env::current_exe().unwrap();
        assert!(runs(me.pid, &exe));
        assert!(find_by_exe(&exe).contains(&me));
    }

    #[test]
    fn a_process_is_found_through_a_symlinked_path() {
        let d = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let link = d.path().join("BESClient");
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        let me = Proc::get(std::process::id()).unwrap();
        assert!(runs(me.pid, &link));
        assert!(find_by_exe(&link).contains(&me));
        assert!(!runs(me.pid, &d.path().join("other")));
    }

    #[tokio::test]
    async fn a_reused_pid_is_not_the_same_process() {
        let me = Proc::get(std::process::id()).unwrap();
        let impostor = Proc {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!impostor.alive());
        assert!(matches!(ExitWatch::new(impostor), ExitWatch::Gone));
    }

    #[tokio::test]
    async fn pidfd_resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = Proc::get(child.id()).unwrap();
        let watch = ExitWatch::new(p);
        assert!(watch.uses_pidfd(), "this kernel should have pidfd_open");
        kill(p).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.exited())
            .await
            .expect("pidfd did not turn readable after the kill");
        child.wait().unwrap();
        assert!(!p.alive());
    }

    #[tokio::test(start_paused = true)]
    async fn polling_fallback_resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = Proc::get(child.id()).unwrap();
        let watch = ExitWatch::Poll(p);
        let exited = watch.exited();
        tokio::pin!(exited);
        assert!(futures_util::poll!(&mut exited).is_pending());
        kill(p).unwrap();
        child.wait().unwrap();
        tokio::time::timeout(Duration::from_secs(5), exited)
            .await
            .expect("polling saw the exit");
    }

    #[test]
    fn pidfile_parsing_tolerates_whitespace_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pid");
        std::fs::write(&f, " 1234\n").unwrap();
        assert_eq!(read_pidfile(&f), Some(1234));
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(read_pidfile(&f), None);
        std::fs::write(&f, "0").unwrap();
        assert_eq!(read_pidfile(&f), None);
        assert_eq!(read_pidfile(&dir.path().join("missing")), None);
    }
}
