//! A SysV/LSB init script: `/etc/init.d/besclient {start|stop|restart|status}`.

use std::path::Path;
use std::time::Duration;

use super::{checked, ManagerError, UnitStatus};
use crate::exec;

#[derive(Debug, Clone)]
pub struct Sysv {
    script: String,
    timeout: Duration,
}

impl Sysv {
    pub fn new(script: &Path, timeout: Duration) -> Sysv {
        Sysv {
            script: script.display().to_string(),
            timeout,
        }
    }

    pub async fn verb(&self, verb: &str) -> Result<(), ManagerError> {
        checked(&[self.script.clone(), verb.to_owned()], self.timeout).await?;
        Ok(())
    }

    /// LSB: exit 0 running, 1–3 not running, 4 unknown; the text is the script's own line.
    pub async fn status(&self) -> Result<UnitStatus, ManagerError> {
        let out = exec::run(&[self.script.clone(), "status".to_owned()], self.timeout).await?;
        let said = out.last_words();
        let text = match (out.status.code(), said.is_empty()) {
            (_, false) => said.to_owned(),
            (Some(0), true) => "running".to_owned(),
            (Some(1..=3), true) => "stopped".to_owned(),
            _ => "unknown".to_owned(),
        };
        Ok(UnitStatus {
            text,
            main_pid: None,
        })
    }
}
