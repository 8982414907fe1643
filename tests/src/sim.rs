//! What both vendor stand-ins (`besclient-sim`, `nessus-sim`) do alike: find the root they
//! are installed under, and start as a detached daemon the way an init script expects.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::os::unix::process::CommandExt;

/// The root a stand-in is installed under: four levels above its executable
/// (`<root>/opt/BESClient/bin/BESClient`, `<root>/opt/nessus/sbin/nessus-service`), or `/`.
pub fn root_of_exe(installed_at: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap_or_else(|_| PathBuf::from(installed_at))
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Re-runs this executable with `args`, detached (own process group, no stdio, cwd `/`),
/// and writes its pid to `pidfile`: a daemon started without `unsafe` fork.
pub fn daemonize(fallback_exe: &Path, args: &[&str], pidfile: &Path) -> std::io::Result<u32> {
    let exe = std::env::current_exe().unwrap_or_else(|_| fallback_exe.to_owned());
    let child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .current_dir("/")
        .spawn()?;
    let _ = std::fs::create_dir_all(pidfile.parent().unwrap_or(Path::new("/")));
    let _ = std::fs::write(pidfile, format!("{}\n", child.id()));
    Ok(child.id())
}
