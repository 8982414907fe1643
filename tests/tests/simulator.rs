//! The BESClient simulator behaves as the vendor documents the real client: its paths, daily
//! logs, size cap and retention, and LSB init script verbs.

use std::process::Command;
use std::time::Duration;

use rollcall_tests::{wait_until, SimHost};

#[test]
fn init_script_verbs_and_status_words() {
    let h = SimHost::new();
    let o = h.service("status");
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "BESClient is stopped"
    );
    let pid = h.start_client();
    let o = h.service("status");
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("pid {pid}")));
    assert!(h.service("restart").status.success());
    wait_until(
        "a new daemon after restart",
        Duration::from_secs(10),
        || h.daemon_pids().len() == 1 && h.daemon_pid() != pid,
    );
    assert!(h.service("stop").status.success());
    assert!(h.daemon_pids().is_empty());
    assert_eq!(h.service("bogus").status.code(), Some(2));
}

#[test]
fn the_daemon_is_not_a_child_of_whoever_started_it() {
    let h = SimHost::new();
    let pid = h.start_client();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, h.exe());
}

#[test]
fn logs_are_daily_blocks_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let h = SimHost::new();
    h.start_client();
    let today = h
        .log_dir()
        .join(format!("{}.log", chrono::Local::now().format("%Y%m%d")));
    wait_until("today's log", Duration::from_secs(10), || today.exists());
    let text = std::fs::read_to_string(&today).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("At ") && first.ends_with(" -"), "{first}");
    assert!(text.contains("Starting client version"));
    assert_eq!(
        std::fs::metadata(&today).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn size_cap_renames_to_bkg_then_recreates() {
    let h = SimHost::new();
    std::fs::write(
        h.root().join("var/opt/BESClient/besclient.config"),
        "[Software\\BigFix\\EnterpriseClient\\Settings\\Client\\_BESClient_Log_MaxSize]\nvalue = 2000\n",
    )
    .unwrap();
    h.faults("interval_ms = 20\n");
    h.start_client();
    let day = chrono::Local::now().format("%Y%m%d").to_string();
    let bkg = h.log_dir().join(format!("{day}.bkg"));
    wait_until("the .bkg after the cap", Duration::from_secs(10), || {
        bkg.exists()
    });
    let bkg_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&bkg).unwrap());
    let log = h.log_dir().join(format!("{day}.log"));
    // With a .bkg already there, the next cap deletes and recreates the .log in place.
    let ino = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    // Recreated: a new inode, or (the filesystem may hand the freed inode number straight
    // back) a file smaller than it was, since the log otherwise only grows.
    let first = ino(&log);
    let mut last_len = 0;
    wait_until("the .log to be recreated", Duration::from_secs(10), || {
        let len = std::fs::metadata(&log).map_or(0, |m| m.len());
        let shrank = len < last_len;
        last_len = len;
        ino(&log).is_some_and(|i| Some(i) != first) || shrank
    });
    assert_eq!(ino(&bkg), Some(bkg_ino), "the .bkg is kept");
    // The client goes on writing and capping: between a cap's delete and its re-creation
    // the .log is briefly absent, so its size is read once it is there.
    let mut len = None;
    wait_until("the .log to be there", Duration::from_secs(10), || {
        len = std::fs::metadata(&log).ok().map(|m| m.len());
        len.is_some()
    });
    assert!(len.is_some_and(|l| l <= 2000 + 400), "{len:?}");
}

#[test]
fn retention_deletes_days_beyond_log_days() {
    let h = SimHost::new();
    std::fs::write(
        h.root().join("var/opt/BESClient/besclient.config"),
        "[Software\\BigFix\\EnterpriseClient\\Settings\\Client\\_BESClient_Log_Days]\nvalue = 2\n",
    )
    .unwrap();
    for d in ["20200101.log", "20200102.log", "20200102.bkg"] {
        std::fs::write(h.log_dir().join(d), "old\n").unwrap();
    }
    h.start_client();
    wait_until("retention", Duration::from_secs(10), || {
        !h.log_dir().join("20200101.log").exists()
    });
    assert!(
        h.log_dir().join("20200102.log").exists(),
        "the newest old day is kept (2 days)"
    );
}

#[test]
fn faults_refuse_start_and_hang() {
    let h = SimHost::new();
    h.faults("start = fail\n");
    let o = h.service("start");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("failed to start"));
    assert!(h.daemon_pids().is_empty());

    h.faults("run = hang\n");
    let pid = h.start_client();
    let today = h
        .log_dir()
        .join(format!("{}.log", chrono::Local::now().format("%Y%m%d")));
    wait_until("the first block", Duration::from_secs(10), || {
        today.exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let len = std::fs::metadata(&today).unwrap().len();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        std::fs::metadata(&today).unwrap().len(),
        len,
        "a hung client writes nothing"
    );
    assert!(
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap()
            .success(),
        "but is alive"
    );
}
