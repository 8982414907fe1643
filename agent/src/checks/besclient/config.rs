//! `[besclient]`: how the BigFix client is found, judged and managed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::checkin::Patterns;
use crate::config::{absolute, duration, HumanDuration, Invalid, ManagerKind, RawManaged};
use crate::manager::Managed;

#[derive(Debug, Clone)]
pub struct BesclientConfig {
    /// How it is started, stopped and asked about.
    pub managed: Managed,
    /// The daemon's executable; processes running it are BESClient.
    pub process: PathBuf,
    /// Optional pidfile written by the init script.
    pub pidfile: Option<PathBuf>,
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
    /// `[besclient.checkin]`: whether the client checks into BigFix.
    pub checkin: CheckinConfig,
}

#[derive(Debug, Clone)]
pub struct CheckinConfig {
    /// The client's registration records, `YYYYMMDD.txt`.
    pub relay_chain_dir: PathBuf,
    /// Without a successful check-in this long: warn.
    pub warn_after: Duration,
    /// Without a successful check-in this long: critical.
    pub critical_after: Duration,
    /// After a restart for check-in, a new success must show within this.
    pub verify_within: Duration,
    /// Which log lines are registrations, reports and failures (substrings,
    /// case-sensitive); the wording varies across client versions.
    pub patterns: Patterns,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheckin {
    relay_chain_dir: Option<Spanned<PathBuf>>,
    warn_after: Option<Spanned<HumanDuration>>,
    critical_after: Option<Spanned<HumanDuration>>,
    verify_within: Option<Spanned<HumanDuration>>,
    attempt_patterns: Option<Vec<String>>,
    registered_patterns: Option<Vec<String>>,
    report_patterns: Option<Vec<String>>,
    failure_patterns: Option<Vec<String>>,
}

impl RawCheckin {
    fn validate(self) -> Result<CheckinConfig, Invalid> {
        let d = Patterns::default();
        let (warn_after, _) = duration(
            self.warn_after,
            Duration::from_secs(6 * 3600),
            Duration::from_secs(1),
        )?;
        let (critical_after, span) = duration(
            self.critical_after,
            Duration::from_secs(24 * 3600),
            Duration::from_secs(1),
        )?;
        if critical_after <= warn_after {
            return Err((
                span,
                format!(
                    "critical_after ({}) must be longer than warn_after ({})",
                    humantime::format_duration(critical_after),
                    humantime::format_duration(warn_after)
                ),
            ));
        }
        Ok(CheckinConfig {
            relay_chain_dir: absolute(
                self.relay_chain_dir,
                "/var/opt/BESClient/__BESData/__Global/RelayChain",
                "relay_chain_dir",
            )?,
            warn_after,
            critical_after,
            verify_within: duration(
                self.verify_within,
                Duration::from_secs(30 * 60),
                Duration::from_millis(100),
            )?
            .0,
            patterns: Patterns {
                attempting: self.attempt_patterns.unwrap_or(d.attempting),
                registered: self.registered_patterns.unwrap_or(d.registered),
                report_posted: self.report_patterns.unwrap_or(d.report_posted),
                failure: self.failure_patterns.unwrap_or(d.failure),
            },
        })
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
    #[serde(default)]
    checkin: RawCheckin,
    start: Option<Spanned<Vec<String>>>,
    stop: Option<Spanned<Vec<String>>>,
    command_timeout: Option<Spanned<HumanDuration>>,
}

impl RawBesclient {
    pub(crate) fn validate(self) -> Result<BesclientConfig, Invalid> {
        let b = self;
        let managed = RawManaged {
            service: b.service,
            manager: b.manager,
            init_script: b.init_script,
            start: b.start,
            stop: b.stop,
            command_timeout: b.command_timeout,
        }
        .validate("besclient", "besclient")?;
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
        Ok(BesclientConfig {
            process: absolute(b.process, "/opt/BESClient/bin/BESClient", "process")?,
            pidfile: match b.pidfile {
                None => None,
                Some(p) => Some(absolute(Some(p), "/var/run/BESClient.pid", "pidfile")?),
            },
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
            managed,
            checkin: b.checkin.validate()?,
        })
    }
}
