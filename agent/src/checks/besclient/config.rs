//! `[besclient]`: how the BigFix client is found, judged and managed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::{
    absolute, argv, duration, manager_kind, service_name, HumanDuration, Invalid, ManagerKind,
};
use crate::manager::Service;

#[derive(Debug, Clone)]
pub struct BesclientConfig {
    /// Service name: the systemd unit `<service>.service` or `/etc/init.d/<service>`.
    pub service: String,
    pub manager: ManagerKind,
    /// The daemon's executable; processes running it are BESClient.
    pub process: PathBuf,
    /// Optional pidfile written by the init script.
    pub pidfile: Option<PathBuf>,
    /// The SysV init script (default `/etc/init.d/<service>`).
    pub init_script: PathBuf,
    /// Directory of the daily `YYYYMMDD.log` files.
    pub log_dir: PathBuf,
    /// The client's data directory; the filesystem holding it is checked for space.
    pub data_dir: PathBuf,
    /// A running daemon whose newest log is older than this is hung.
    pub stale_after: Duration,
    /// After an action, the daemon must be up and today's log written within this.
    pub verify_within: Duration,
    /// Substrings that mark a log line as an error (case-sensitive).
    pub error_patterns: Vec<String>,
    /// With `manager = "command"`: argv to start and stop the daemon (no shell).
    pub start: Vec<String>,
    pub stop: Vec<String>,
    /// Longest any service-manager or remediation command may run before it is killed.
    pub command_timeout: Duration,
}

impl BesclientConfig {
    /// What the service manager is picked for.
    pub fn service(&self) -> Service<'_> {
        Service {
            section: "besclient",
            kind: self.manager,
            name: &self.service,
            init_script: &self.init_script,
            start: &self.start,
            stop: &self.stop,
            timeout: self.command_timeout,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBesclient {
    service: Option<Spanned<String>>,
    manager: Option<Spanned<ManagerKind>>,
    process: Option<Spanned<PathBuf>>,
    pidfile: Option<Spanned<PathBuf>>,
    init_script: Option<Spanned<PathBuf>>,
    log_dir: Option<Spanned<PathBuf>>,
    data_dir: Option<Spanned<PathBuf>>,
    stale_after: Option<Spanned<HumanDuration>>,
    verify_within: Option<Spanned<HumanDuration>>,
    error_patterns: Option<Vec<String>>,
    start: Option<Spanned<Vec<String>>>,
    stop: Option<Spanned<Vec<String>>>,
    command_timeout: Option<Spanned<HumanDuration>>,
}

impl RawBesclient {
    pub(crate) fn validate(self) -> Result<BesclientConfig, Invalid> {
        let b = self;
        let service = service_name(b.service, "besclient")?;
        let init_default = format!("/etc/init.d/{service}");
        let start = argv(b.start, "start")?;
        let stop = argv(b.stop, "stop")?;
        let manager = manager_kind(b.manager, &start, "besclient", &init_default)?;
        let (stale_after, stale_span) = duration(
            b.stale_after,
            Duration::from_secs(3600),
            Duration::from_secs(1),
        )?;
        let (verify_within, _) = duration(
            b.verify_within,
            Duration::from_secs(120),
            Duration::from_millis(100),
        )?;
        if stale_after < verify_within {
            return Err((
                stale_span,
                format!(
                    "stale_after ({}) is shorter than verify_within ({}); a freshly started client would count as hung",
                    humantime::format_duration(stale_after),
                    humantime::format_duration(verify_within)
                ),
            ));
        }
        let (command_timeout, _) = duration(
            b.command_timeout,
            Duration::from_secs(90),
            Duration::from_secs(1),
        )?;
        Ok(BesclientConfig {
            process: absolute(b.process, "/opt/BESClient/bin/BESClient", "process")?,
            pidfile: match b.pidfile {
                None => None,
                Some(p) => Some(absolute(Some(p), "/var/run/BESClient.pid", "pidfile")?),
            },
            init_script: absolute(b.init_script, &init_default, "init_script")?,
            log_dir: absolute(
                b.log_dir,
                "/var/opt/BESClient/__BESData/__Global/Logs",
                "log_dir",
            )?,
            data_dir: absolute(b.data_dir, "/var/opt/BESClient", "data_dir")?,
            stale_after,
            verify_within,
            error_patterns: b.error_patterns.unwrap_or_else(|| {
                vec![
                    "General transport failure".to_owned(),
                    "GetURL failed".to_owned(),
                ]
            }),
            start,
            stop,
            command_timeout,
            service,
            manager,
        })
    }
}
