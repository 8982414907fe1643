//! Service managers: systemd, SysV init scripts, or configured commands.
//!
//! Every backend starts, stops and restarts the service the way the host itself would, so
//! that on systemd hosts the daemon is always systemd's child, never the agent's. Each
//! backend's status is reported but never trusted alone: a sysv-generated unit reads
//! `active (exited)` long after its daemon died.

mod command;
#[cfg(test)]
pub mod scripted;
mod systemd;
mod sysv;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use command::CommandManager;
pub use systemd::Systemd;
pub use sysv::Sysv;

use crate::config::ManagerKind;
use crate::exec::{self, ExecError, Output};

/// The service manager's own view of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// Human text as the manager says it, e.g. `active (exited)` or `BESClient is stopped`.
    pub text: String,
    /// The main PID the manager knows, if any (systemd's `MainPID`).
    pub main_pid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{command} failed with {status}{}", if .said.is_empty() { String::new() } else { format!(": {}", .said) })]
    Failed {
        command: String,
        status: String,
        said: String,
    },
    #[error("no service manager found for {service}: systemd is not running, {init_script} does not exist and no start command is configured; set {section}.manager and its commands")]
    NotFound {
        section: &'static str,
        service: String,
        init_script: String,
    },
    #[error("manager = \"{kind}\" but {what}")]
    Unusable { kind: ManagerKind, what: String },
}

/// Runs `argv` and turns a non-zero exit into an error that quotes the command's last words.
async fn checked(argv: &[String], timeout: Duration) -> Result<Output, ManagerError> {
    let out = exec::run(argv, timeout).await?;
    if out.status.success() {
        return Ok(out);
    }
    Err(ManagerError::Failed {
        command: argv.join(" "),
        status: match out.status.code() {
            Some(c) => format!("exit status {c}"),
            None => "a signal".to_owned(),
        },
        said: out.last_words().to_owned(),
    })
}

/// How a supervised service is managed: its section's say (`service`, `manager`,
/// `init_script`, `start`, `stop`, `command_timeout`), the same keys in every section.
#[derive(Debug, Clone)]
pub struct Managed {
    /// The config section it comes from, named in errors.
    pub section: &'static str,
    /// Service name: the systemd unit `<service>.service` or `/etc/init.d/<service>`.
    pub service: String,
    pub manager: ManagerKind,
    /// The SysV init script (default `/etc/init.d/<service>`).
    pub init_script: PathBuf,
    /// With `manager = "command"`: argv to start and stop the daemon (no shell).
    pub start: Vec<String>,
    pub stop: Vec<String>,
    /// Longest any service-manager or remediation command may run before it is killed.
    pub command_timeout: Duration,
}

/// One of the backends, picked from the config.
#[derive(Debug, Clone)]
pub enum ServiceManager {
    Systemd(Systemd),
    Sysv(Sysv),
    Command(CommandManager),
    #[cfg(test)]
    Scripted(scripted::Scripted),
}

/// Whether this host was booted with systemd (the test `sd_booted(3)` uses).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

impl ServiceManager {
    /// Picks the backend. `auto`: configured commands if any, else systemd if the host runs
    /// it, else the SysV init script.
    pub fn pick(c: &Managed) -> Result<ServiceManager, ManagerError> {
        let timeout = c.command_timeout;
        let systemd = || Systemd::new(&c.service, timeout);
        let sysv = || Sysv::new(&c.init_script, timeout);
        let command = || CommandManager::new(c.start.clone(), c.stop.clone(), timeout);
        match c.manager {
            ManagerKind::Systemd => {
                systemd()
                    .map(ServiceManager::Systemd)
                    .ok_or_else(|| ManagerError::Unusable {
                        kind: c.manager,
                        what: "no systemctl was found in /usr/bin or /bin".to_owned(),
                    })
            }
            ManagerKind::Sysv if c.init_script.is_file() => Ok(ServiceManager::Sysv(sysv())),
            ManagerKind::Sysv => Err(ManagerError::Unusable {
                kind: c.manager,
                what: format!(
                    "the init script {} does not exist; install the service or set {}.init_script",
                    c.init_script.display(),
                    c.section
                ),
            }),
            ManagerKind::Command => Ok(ServiceManager::Command(command())),
            ManagerKind::Auto if !c.start.is_empty() => Ok(ServiceManager::Command(command())),
            ManagerKind::Auto => {
                if systemd_booted() {
                    if let Some(s) = systemd() {
                        return Ok(ServiceManager::Systemd(s));
                    }
                }
                if c.init_script.is_file() {
                    return Ok(ServiceManager::Sysv(sysv()));
                }
                Err(ManagerError::NotFound {
                    section: c.section,
                    service: c.service.clone(),
                    init_script: c.init_script.display().to_string(),
                })
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ServiceManager::Systemd(_) => "systemd",
            ServiceManager::Sysv(_) => "sysv",
            ServiceManager::Command(_) => "command",
            #[cfg(test)]
            ServiceManager::Scripted(_) => "scripted",
        }
    }

    pub async fn status(&self) -> Result<Option<UnitStatus>, ManagerError> {
        match self {
            ServiceManager::Systemd(m) => m.status().await.map(Some),
            ServiceManager::Sysv(m) => m.status().await.map(Some),
            ServiceManager::Command(_) => Ok(None),
            #[cfg(test)]
            ServiceManager::Scripted(_) => Ok(None),
        }
    }

    pub async fn start(&self) -> Result<(), ManagerError> {
        match self {
            ServiceManager::Systemd(m) => m.start().await,
            ServiceManager::Sysv(m) => m.verb("start").await,
            ServiceManager::Command(m) => m.start().await,
            #[cfg(test)]
            ServiceManager::Scripted(m) => m.start("start"),
        }
    }

    pub async fn stop(&self) -> Result<(), ManagerError> {
        match self {
            ServiceManager::Systemd(m) => m.stop().await,
            ServiceManager::Sysv(m) => m.verb("stop").await,
            ServiceManager::Command(m) => m.stop().await,
            #[cfg(test)]
            ServiceManager::Scripted(m) => m.stop(),
        }
    }

    pub async fn restart(&self) -> Result<(), ManagerError> {
        match self {
            ServiceManager::Systemd(m) => m.restart().await,
            ServiceManager::Sysv(m) => m.verb("restart").await,
            ServiceManager::Command(m) => {
                m.stop().await?;
                m.start().await
            }
            #[cfg(test)]
            ServiceManager::Scripted(m) => m.start("restart"),
        }
    }
}
