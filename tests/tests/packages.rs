//! The packages as a host gets them: in a Debian bookworm booted with systemd-nspawn, with
//! the simulated BESClient at its real paths and its LSB init script (so systemd-sysv-
//! generator makes `besclient.service`), the collector's `.deb` is installed and starts
//! under its hardened unit, `packaging/bootstrap.sh` installs the agent's `.deb`, which
//! enrolls and reports; then healing through systemd, the watchdog, re-running bootstrap,
//! upgrade, removal, purge, and a bootstrap that fails. The `.rpm`s are checked with `rpm`.
//!
//! Needs root, the cached root from `scripts/container-rootfs.sh` and the packages from
//! `scripts/build-packages.sh` (twice: the second with a higher version); `scripts/test.sh`
//! does all three.

use std::path::{Path, PathBuf};
use std::process::Command;

use rollcall_tests::container::{install_besclient_sim, put, Container, T};
use rollcall_tests::wait_until;
use serde_json::Value;

fn packages() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/packages")
}

/// The package file of `name` with `ext`, the base build or the `+upgrade` one.
fn package(name: &str, ext: &str, upgrade: bool) -> PathBuf {
    let found = std::fs::read_dir(packages())
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            f.starts_with(name)
                && f[name.len()..].starts_with(['_', '-'])
                && f.ends_with(ext)
                && f.contains("+upgrade") == upgrade
        });
    found.unwrap_or_else(|| {
        panic!(
            "no {name} {ext} package{} in {}; run scripts/build-packages.sh (scripts/test.sh does)",
            if upgrade { " (+upgrade build)" } else { "" },
            packages().display()
        )
    })
}

fn boot() -> Container {
    let files = [
        package("rollcall-collector", ".deb", false),
        package("rollcall-agent", ".deb", false),
        package("rollcall-agent", ".deb", true),
    ];
    Container::boot(|root| {
        install_besclient_sim(root);
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            put(root, &format!("/root/pkgs/{name}"), Some(f), "", 0o644);
        }
        let bootstrap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/bootstrap.sh");
        put(root, "/root/bootstrap.sh", Some(&bootstrap), "", 0o755);
    })
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_owned()
}

/// Runs a shell script in the container; its exit code, stdout and stderr.
fn sh_out(c: &Container, script: &str) -> (i32, String, String) {
    let o = c.run(&["sh", "-c", script]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        String::from_utf8_lossy(&o.stderr).trim().to_owned(),
    )
}

const CLI_ENV: &str = "ROLLCALL_URL=https://127.0.0.1:8443 ROLLCALL_CA=/var/lib/rollcall-collector/ca.pem ROLLCALL_TOKEN=$(cat /var/lib/rollcall-collector/admin.token)";

/// The host's view from the collector, through the packaged `rollcall` CLI.
fn view(c: &Container, host: &str) -> Value {
    let (_, out, _) = sh_out(c, &format!("{CLI_ENV} rollcall host {host} --json"));
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

fn main_pid(c: &Container, unit: &str) -> String {
    c.sh(&format!("systemctl show -p MainPID --value {unit}"))
}

#[test]
fn bootstrap_installs_an_agent_that_enrolls_heals_and_survives_upgrade_and_purge() {
    let c = boot();
    assert_eq!(
        c.run(&["systemctl", "start", "besclient"]).status.code(),
        Some(0)
    );

    // The collector package: its own user, its hardened unit, ready (Type=notify).
    let collector = format!(
        "/root/pkgs/{}",
        file_name(&package("rollcall-collector", ".deb", false))
    );
    let (code, out, err) = sh_out(&c, &format!("dpkg -i {collector}"));
    assert_eq!(code, 0, "dpkg -i collector: {out}\n{err}");
    assert_eq!(
        c.show("rollcall-collector"),
        "active/running",
        "{}",
        c.sh("journalctl -u rollcall-collector --no-pager | tail -20")
    );
    assert_eq!(
        c.sh("stat -c %U /var/lib/rollcall-collector/rollcall.db"),
        "rollcall-collector",
        "the collector runs as its own user"
    );
    // A database file loosened by hand is made private again at the next start, with a
    // warning journald files as one: `journalctl -p warning` shows it and not the
    // start-up lines.
    c.sh("chmod 0644 /var/lib/rollcall-collector/rollcall.db && systemctl restart rollcall-collector");
    assert_eq!(c.show("rollcall-collector"), "active/running");
    assert_eq!(
        c.sh("stat -c %a /var/lib/rollcall-collector/rollcall.db"),
        "600"
    );
    let warnings = c.sh("journalctl -u rollcall-collector -p warning --no-pager -o cat");
    assert!(
        warnings.contains("rollcall.db was mode 644; made 600"),
        "{warnings}"
    );
    assert!(
        !warnings.contains("at most"),
        "an info line filed as a warning: {warnings}"
    );
    assert!(c
        .sh("journalctl -u rollcall-collector -p info --no-pager -o cat")
        .contains("at most"));
    assert!(c
        .sh("ls /usr/share/bash-completion/completions/")
        .contains("rollcall"));
    assert!(c
        .sh("zcat /usr/share/man/man1/rollcall.1.gz")
        .contains(".TH rollcall 1"));

    // Bootstrap: install, configure, enroll, start, one line.
    let agent = format!(
        "/root/pkgs/{}",
        file_name(&package("rollcall-agent", ".deb", false))
    );
    let bootstrap = format!(
        "/root/bootstrap.sh --package {agent} --url https://127.0.0.1:8443 \
         --ca /var/lib/rollcall-collector/ca.pem --secret-file /var/lib/rollcall-collector/enroll.secret \
         --label env=test --label region=lab --label zone=lab-1 --label role=worker --interval 2s"
    );
    let (code, out, err) = sh_out(&c, &bootstrap);
    assert_eq!(
        code,
        0,
        "bootstrap: {out}\n{err}\n{}",
        c.sh("journalctl -u rollcall-agent --no-pager | tail -20")
    );
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    assert!(out.starts_with("rollcall bootstrap ok on "), "{out}");
    assert!(
        out.contains("installed") && out.contains("enrolled"),
        "{out}"
    );
    let host = c.sh("hostname");
    wait_until("the host up at the collector", T, || {
        let v = view(&c, &host);
        v["host"]["state"] == "up" && v["agent_state"]["besclient"]["status"] == "running"
    });
    let v = view(&c, &host);
    assert_eq!(v["host"]["labels"]["region"], "lab", "{v}");
    assert_eq!(c.sh("stat -c %a /var/lib/rollcall/credential"), "600");
    assert_eq!(c.sh("stat -c %a /etc/rollcall/enroll.secret"), "600");

    // Again with the same inputs, given through the environment this time: nothing
    // changes, the agent is not even restarted.
    let pid = main_pid(&c, "rollcall-agent");
    let conf = c.sh("md5sum /etc/rollcall/agent.toml");
    let (code, out, err) = sh_out(
        &c,
        &format!(
            "ROLLCALL_PACKAGE={agent} ROLLCALL_URL=https://127.0.0.1:8443 \
             ROLLCALL_CA=/var/lib/rollcall-collector/ca.pem \
             ROLLCALL_ENROLL_SECRET=$(cat /var/lib/rollcall-collector/enroll.secret) \
             ROLLCALL_LABELS=env=test,region=lab,zone=lab-1,role=worker ROLLCALL_INTERVAL=2s \
             /root/bootstrap.sh"
        ),
    );
    assert_eq!(code, 0, "second bootstrap: {out}\n{err}");
    assert!(
        out.contains("already installed") && out.contains("nothing to change"),
        "{out}"
    );
    assert_eq!(main_pid(&c, "rollcall-agent"), pid, "not restarted");
    assert_eq!(c.sh("md5sum /etc/rollcall/agent.toml"), conf);

    // kill -9 of BESClient: healed through systemd; the collector sees the new process;
    // the journal holds the agent's structured fields.
    let old = c.client_pids();
    assert_eq!(old.len(), 1);
    c.sh(&format!("kill -9 {}", old[0]));
    let (_, verified) = c.wait_event("the restart verified", 0, |e| e["EVENT"] == "verified");
    assert_eq!(verified["CHECK"], "besclient");
    let new = c.client_pids();
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    wait_until("the collector to show the new client", T, || {
        view(&c, &host)["agent_state"]["besclient"]["pid"].as_u64() == Some(new[0] as u64)
    });
    let json =
        c.sh("journalctl -u rollcall-agent -o json --no-pager | grep '\"ACTION\"' | head -n 1");
    let entry: Value = serde_json::from_str(&json).expect("a journal entry with ACTION");
    for f in ["CHECK", "EVENT", "ACTION", "STEP", "SEQ"] {
        assert!(entry.get(f).is_some(), "journal field {f} in {entry}");
    }

    // A frozen agent: systemd's watchdog kills it and starts it again. The shipped 30 s is
    // shortened by a drop-in to keep the test short; the ping is the agent's own.
    c.sh("mkdir -p /etc/systemd/system/rollcall-agent.service.d && printf '[Service]\\nWatchdogSec=3s\\nRestartSec=1s\\n' > /etc/systemd/system/rollcall-agent.service.d/test.conf && systemctl daemon-reload && systemctl restart rollcall-agent");
    let frozen = main_pid(&c, "rollcall-agent");
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        main_pid(&c, "rollcall-agent"),
        frozen,
        "a running agent pings its watchdog"
    );
    c.sh(&format!("kill -STOP {frozen}"));
    wait_until("systemd to restart the frozen agent", T, || {
        let p = main_pid(&c, "rollcall-agent");
        p != frozen && p != "0" && c.show("rollcall-agent") == "active/running"
    });
    assert!(
        c.sh("journalctl -u rollcall-agent --no-pager")
            .contains("Watchdog timeout"),
        "systemd says why"
    );
    c.sh("rm -rf /etc/systemd/system/rollcall-agent.service.d && systemctl daemon-reload");

    // Upgrade: config edits and the credential stay; the agent is restarted on the new one.
    c.sh("echo '# edited by hand' >> /etc/rollcall/agent.toml");
    let credential = c.sh("cat /var/lib/rollcall/credential");
    let before = main_pid(&c, "rollcall-agent");
    let upgrade = format!(
        "/root/pkgs/{}",
        file_name(&package("rollcall-agent", ".deb", true))
    );
    let (code, out, err) = sh_out(
        &c,
        &format!("DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {upgrade}"),
    );
    assert_eq!(code, 0, "upgrade: {out}\n{err}");
    assert!(c
        .sh("dpkg-query -W -f '${Version}' rollcall-agent")
        .contains("+upgrade"));
    assert!(c
        .sh("tail -n 1 /etc/rollcall/agent.toml")
        .contains("edited by hand"));
    assert_eq!(
        c.sh("cat /var/lib/rollcall/credential"),
        credential,
        "credential kept"
    );
    assert_eq!(c.show("rollcall-agent"), "active/running");
    assert_ne!(
        main_pid(&c, "rollcall-agent"),
        before,
        "restarted on upgrade"
    );

    // Removal stops the agent and keeps its state; purge removes it.
    let (code, out, err) = sh_out(&c, "dpkg -r rollcall-agent");
    assert_eq!(code, 0, "remove: {out}\n{err}");
    assert_ne!(c.show("rollcall-agent"), "active/running");
    assert_eq!(
        c.sh("cat /var/lib/rollcall/credential"),
        credential,
        "state kept on removal"
    );
    let (code, out, err) = sh_out(&c, "dpkg -P rollcall-agent");
    assert_eq!(code, 0, "purge: {out}\n{err}");
    assert_eq!(
        c.sh("test -e /var/lib/rollcall && echo present || echo gone"),
        "gone"
    );
    assert_eq!(
        c.sh("test -e /etc/rollcall/agent.toml && echo present || echo gone"),
        "gone"
    );
    assert_eq!(
        c.sh("ls /etc/rollcall 2>/dev/null | grep -e enroll.secret -e ca.pem || echo none"),
        "none",
        "bootstrap's files go with the purge"
    );
    assert_eq!(c.client_pids().len(), 1, "BESClient untouched by all of it");

    // A bootstrap that cannot enroll (wrong secret) says why and leaves the host as it was.
    c.sh("echo not-the-secret > /root/wrong.secret");
    let (code, out, err) = sh_out(
        &c,
        &format!(
            "ROLLCALL_ENROLL_TIMEOUT=8 /root/bootstrap.sh --package {agent} --url https://127.0.0.1:8443 \
             --ca /var/lib/rollcall-collector/ca.pem --secret-file /root/wrong.secret --label env=test"
        ),
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("FAILED") && err.contains("did not enroll"),
        "{err}"
    );
    assert!(
        err.contains("enrollment secret"),
        "the agent's own words are quoted: {err}\njournal:\n{}",
        c.sh("journalctl -u rollcall-agent -o short-precise --no-pager | tail -n 15; date")
    );
    assert_eq!(
        c.sh("dpkg-query -W -f '${db:Status-Status}' rollcall-agent 2>/dev/null | grep -qx installed && echo installed || echo not-installed"),
        "not-installed",
        "the package bootstrap installed is purged again",
    );
    assert_eq!(
        c.sh("test -e /etc/rollcall/enroll.secret && echo present || echo gone"),
        "gone"
    );

    // Bad arguments are refused before anything is touched.
    let (code, _, err) = sh_out(&c, &format!("/root/bootstrap.sh --package {agent} --url http://x --ca /var/lib/rollcall-collector/ca.pem"));
    assert_eq!(code, 2);
    assert!(err.contains("https://"), "{err}");
}

#[test]
fn the_rpms_hold_the_files_and_scriptlets_of_the_debs() {
    let rpm = |args: &[&str], p: &Path| {
        let o = Command::new("rpm")
            .args(args)
            .arg(p)
            .output()
            .expect("rpm (apt-get install rpm; scripts/test.sh does)");
        assert!(
            o.status.success(),
            "rpm {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let agent = package("rollcall-agent", ".rpm", false);
    let files = rpm(&["-qpl"], &agent);
    for f in [
        "/usr/bin/rollcall-agent",
        "/etc/rollcall/agent.toml",
        "/usr/lib/systemd/system/rollcall-agent.service",
    ] {
        assert!(files.lines().any(|l| l == f), "{f} in {files}");
    }
    assert_eq!(
        rpm(&["-qpc"], &agent).trim(),
        "/etc/rollcall/agent.toml",
        "a config file"
    );
    let scripts = rpm(&["-qp", "--scripts"], &agent);
    assert!(
        scripts.contains("systemctl enable --now rollcall-agent.service"),
        "{scripts}"
    );
    assert!(
        scripts.contains("try-restart rollcall-agent.service"),
        "{scripts}"
    );
    assert!(
        scripts.contains("disable --now rollcall-agent.service"),
        "{scripts}"
    );
    assert!(rpm(&["-qpR"], &agent)
        .lines()
        .any(|l| l.trim() == "systemd"));

    let collector = package("rollcall-collector", ".rpm", false);
    let files = rpm(&["-qpl"], &collector);
    for f in [
        "/usr/bin/rollcall-collector",
        "/usr/bin/rollcall",
        "/etc/rollcall/collector.toml",
        "/usr/lib/systemd/system/rollcall-collector.service",
        "/usr/share/man/man1/rollcall.1.gz",
        "/usr/share/bash-completion/completions/rollcall",
    ] {
        assert!(files.lines().any(|l| l == f), "{f} in {files}");
    }
    let scripts = rpm(&["-qp", "--scripts"], &collector);
    assert!(scripts.contains("useradd --system"), "{scripts}");
    assert!(
        scripts.contains("systemctl enable --now rollcall-collector.service"),
        "{scripts}"
    );
    let upgrade = package("rollcall-agent", ".rpm", true);
    assert!(rpm(&["-qp", "--qf", "%{VERSION}"], &upgrade).contains("+upgrade"));
}
