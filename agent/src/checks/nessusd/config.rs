//! `[nessusd]`: where nessusd answers, how it is managed, how patiently it is asked.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::{
    absolute, argv, duration, manager_kind, service_name, HumanDuration, Invalid, ManagerKind,
};
use crate::manager::Service;

#[derive(Debug, Clone)]
pub struct NessusdConfig {
    pub enabled: bool,
    pub status_url: String,
    /// Service name: the systemd unit `<service>.service` or `/etc/init.d/<service>`.
    pub service: String,
    pub manager: ManagerKind,
    pub init_script: PathBuf,
    /// With `manager = "command"`: argv to start and stop nessusd (no shell).
    pub start: Vec<String>,
    pub stop: Vec<String>,
    /// nessusd's supervisor executable; leftovers running it are killed by a hard restart.
    pub process: PathBuf,
    /// Nessus's install directory; the filesystem holding it is checked for space.
    pub install_dir: PathBuf,
    /// How often `/server/status` is asked.
    pub interval: Duration,
    /// Longest a status request may take: a connection that hangs longer is a hung nessusd.
    pub timeout: Duration,
    /// After an action, nessusd must answer (`loading` or `ready`) within this.
    pub verify_within: Duration,
    pub command_timeout: Duration,
}

impl NessusdConfig {
    /// What the service manager is picked for.
    pub fn service(&self) -> Service<'_> {
        Service {
            section: "nessusd",
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
pub(crate) struct RawNessusd {
    enabled: Option<bool>,
    status_url: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    manager: Option<Spanned<ManagerKind>>,
    init_script: Option<Spanned<PathBuf>>,
    start: Option<Spanned<Vec<String>>>,
    stop: Option<Spanned<Vec<String>>>,
    process: Option<Spanned<PathBuf>>,
    install_dir: Option<Spanned<PathBuf>>,
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
    verify_within: Option<Spanned<HumanDuration>>,
    command_timeout: Option<Spanned<HumanDuration>>,
}

impl RawNessusd {
    pub(crate) fn validate(self) -> Result<NessusdConfig, Invalid> {
        let n = self;
        let status_url = match n.status_url {
            None => "https://127.0.0.1:8834/server/status".to_owned(),
            Some(u) if super::status::is_loopback_url(u.get_ref()) => {
                u.into_inner()
            }
            Some(u) if u.get_ref().starts_with("https://") => {
                return Err((
                    u.span(),
                    format!(
                        "status_url \"{}\" is not on this host's loopback; nessusd is probed at https://127.0.0.1:8834 (its self-signed certificate is accepted there only)",
                        u.get_ref()
                    ),
                ))
            }
            Some(u) => {
                return Err((
                    u.span(),
                    format!("status_url \"{}\" must be an https:// URL", u.get_ref()),
                ))
            }
        };
        let service = service_name(n.service, "nessusd")?;
        let init_default = format!("/etc/init.d/{service}");
        let start = argv(n.start, "start")?;
        let stop = argv(n.stop, "stop")?;
        Ok(NessusdConfig {
            enabled: n.enabled.unwrap_or(false),
            status_url,
            manager: manager_kind(n.manager, &start, "nessusd", &init_default)?,
            init_script: absolute(n.init_script, &init_default, "init_script")?,
            start,
            stop,
            process: absolute(n.process, "/opt/nessus/sbin/nessus-service", "process")?,
            install_dir: absolute(n.install_dir, "/opt/nessus", "install_dir")?,
            interval: duration(
                n.interval,
                Duration::from_secs(30),
                Duration::from_millis(100),
            )?
            .0,
            timeout: duration(
                n.timeout,
                Duration::from_secs(10),
                Duration::from_millis(100),
            )?
            .0,
            verify_within: duration(
                n.verify_within,
                Duration::from_secs(180),
                Duration::from_millis(100),
            )?
            .0,
            command_timeout: duration(
                n.command_timeout,
                Duration::from_secs(90),
                Duration::from_secs(1),
            )?
            .0,
            service,
        })
    }
}
