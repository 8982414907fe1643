//! systemd through `systemctl`: the service is started by PID 1, in its own cgroup and
//! sandbox, never as a child of the agent.

use std::path::Path;
use std::time::Duration;

use super::{checked, ManagerError, UnitStatus};

#[derive(Debug, Clone)]
pub struct Systemd {
    systemctl: String,
    unit: String,
    timeout: Duration,
}

impl Systemd {
    /// `None` if no `systemctl` is installed.
    pub fn new(service: &str, timeout: Duration) -> Option<Systemd> {
        let systemctl = ["/usr/bin/systemctl", "/bin/systemctl"]
            .into_iter()
            .find(|p| Path::new(p).is_file())?;
        Some(Systemd {
            systemctl: systemctl.to_owned(),
            unit: format!("{service}.service"),
            timeout,
        })
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        std::iter::once(self.systemctl.as_str())
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    pub async fn status(&self) -> Result<UnitStatus, ManagerError> {
        let out = checked(
            &self.argv(&[
                "show",
                "-p",
                "ActiveState,SubState,MainPID",
                "--",
                &self.unit,
            ]),
            self.timeout,
        )
        .await?;
        let (active, sub, main_pid) = parse_show(&out.stdout);
        Ok(UnitStatus {
            text: format!("{active} ({sub})"),
            main_pid,
        })
    }

    /// Clears a `failed` state first so that systemd's own start limit never blocks a start.
    async fn reset_failed(&self) {
        let _ = checked(
            &self.argv(&["reset-failed", "--", &self.unit]),
            self.timeout,
        )
        .await;
    }

    pub async fn start(&self) -> Result<(), ManagerError> {
        self.reset_failed().await;
        checked(&self.argv(&["start", "--", &self.unit]), self.timeout).await?;
        Ok(())
    }

    pub async fn stop(&self) -> Result<(), ManagerError> {
        checked(&self.argv(&["stop", "--", &self.unit]), self.timeout).await?;
        Ok(())
    }

    /// `restart`, not `start`: a sysv-generated unit stays `active (exited)` after its
    /// daemon died, and `start` on an active unit does nothing.
    pub async fn restart(&self) -> Result<(), ManagerError> {
        self.reset_failed().await;
        checked(&self.argv(&["restart", "--", &self.unit]), self.timeout).await?;
        Ok(())
    }
}

/// `KEY=VALUE` lines of `systemctl show`, in whatever order systemd prints them.
fn parse_show(text: &str) -> (&str, &str, Option<u32>) {
    let mut active = "unknown";
    let mut sub = "unknown";
    let mut main_pid = None;
    for line in text.lines() {
        match line.trim().split_once('=') {
            Some(("ActiveState", v)) => active = v,
            Some(("SubState", v)) => sub = v,
            Some(("MainPID", v)) => main_pid = v.parse::<u32>().ok().filter(|p| *p > 0),
            _ => {}
        }
    }
    (active, sub, main_pid)
}

#[cfg(test)]
mod tests {
    use super::parse_show;

    #[test]
    fn show_output_is_read_in_any_order() {
        let (a, s, pid) = parse_show("MainPID=0\nActiveState=active\nSubState=exited\n");
        assert_eq!((a, s, pid), ("active", "exited", None));
        let (a, s, pid) = parse_show("ActiveState=active\nSubState=running\nMainPID=812\n");
        assert_eq!((a, s, pid), ("active", "running", Some(812)));
        assert_eq!(parse_show(""), ("unknown", "unknown", None));
    }
}
