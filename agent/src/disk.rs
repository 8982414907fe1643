//! Space on the filesystem holding the BESClient data directory.

use std::path::Path;

use rollcall_proto::DiskState;

/// Full: less than 1 % of the filesystem, and less than 16 MiB, is available.
pub fn check(data_dir: &Path) -> Option<DiskState> {
    // The directory may be gone (reinstall): the filesystem that will hold it is the one of
    // its nearest existing ancestor.
    let path = data_dir.ancestors().find(|p| p.is_dir())?;
    let st = rustix::fs::statvfs(path).ok()?;
    let frsize = st.f_frsize.max(1);
    let total_bytes = st.f_blocks.saturating_mul(frsize);
    let avail_bytes = st.f_bavail.saturating_mul(frsize);
    let full = total_bytes > 0 && avail_bytes < (total_bytes / 100).min(16 << 20);
    Some(DiskState {
        path: path.display().to_string(),
        avail_bytes,
        total_bytes,
        full,
    })
}

/// `1.5 GiB`-style sizes for reasons.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_measured_on_its_nearest_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let s = check(&d.path().join("var/opt/BESClient")).unwrap();
        assert_eq!(s.path, d.path().display().to_string());
        assert!(s.total_bytes > 0);
    }

    #[test]
    fn sizes_read_like_df() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
