//! Who this host is to the collector: its name, machine-id + an install id made on the
//! first run (kept in `state_dir`), and when it booted.

use std::path::Path;

use chrono::{DateTime, Utc};
use rollcall_proto::Identity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub host: String,
    pub identity: Identity,
    pub booted_at: Option<DateTime<Utc>>,
}

/// Random bytes as hex.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A value file in `state_dir`: read, or made once.
fn install_id(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join("install-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if is_id(s.trim()) => return Ok(s.trim().to_owned()),
        Ok(_) => {
            log::warn!(target: "agent", "{} is not an install id; making a new one (the collector will see a new identity)", path.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        }
    }
    let id = random_hex(16)?;
    crate::state::write_atomic(&path, format!("{id}\n").as_bytes())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(id)
}

fn is_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The boot time from `btime` in /proc/stat.
pub fn booted_at(proc_stat: &str) -> Option<DateTime<Utc>> {
    let secs: i64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    DateTime::from_timestamp(secs, 0)
}

impl HostIdentity {
    /// `name` overrides the kernel's hostname (several agents on one machine in tests, or a
    /// host known by another name in the inventory).
    pub fn load(state_dir: &Path, name: Option<&str>) -> std::io::Result<HostIdentity> {
        let host = match name {
            Some(n) => n.to_owned(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("reading the hostname: {e}; set [host] name in the config"),
                    )
                })?,
        };
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| is_id(s))
            // Containers may have none: the install id alone then tells installs apart.
            .unwrap_or_else(|| "none".to_owned());
        Ok(HostIdentity {
            host,
            identity: Identity {
                machine_id,
                install_id: install_id(state_dir)?,
            },
            booted_at: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| booted_at(&s)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_id_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = HostIdentity::load(d.path(), Some("web-1")).unwrap();
        let b = HostIdentity::load(d.path(), Some("web-1")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.identity.install_id.len(), 32);
        assert_eq!(a.host, "web-1");
        // A reinstall (a new state_dir) is a new identity.
        let e = tempfile::tempdir().unwrap();
        let c = HostIdentity::load(e.path(), Some("web-1")).unwrap();
        assert_ne!(c.identity, a.identity);
    }

    #[test]
    fn boot_time_comes_from_btime() {
        let t = booted_at("cpu  1 2 3\nbtime 1763800000\nprocesses 9\n").unwrap();
        assert_eq!(t.timestamp(), 1_763_800_000);
        assert_eq!(booted_at("cpu 1\n"), None);
    }
}
