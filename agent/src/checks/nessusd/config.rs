//! `[nessusd]`: where nessusd answers, how it is managed, how patiently it is asked.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::{absolute, duration, HumanDuration, Invalid, ManagerKind, RawManaged};
use crate::manager::Managed;

#[derive(Debug, Clone)]
pub struct NessusdConfig {
    pub enabled: bool,
    pub status_url: String,
    /// How it is started, stopped and asked about.
    pub managed: Managed,
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
        let managed = RawManaged {
            service: n.service,
            manager: n.manager,
            init_script: n.init_script,
            start: n.start,
            stop: n.stop,
            command_timeout: n.command_timeout,
        }
        .validate("nessusd", "nessusd")?;
        Ok(NessusdConfig {
            enabled: n.enabled.unwrap_or(false),
            status_url,
            managed,
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
        })
    }
}
