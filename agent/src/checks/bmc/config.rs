//! `[bmc]` (the in-band check on every host) and `[scanner]` (probing the zone's BMCs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::{absolute, argv, duration, HumanDuration, Invalid};

/// Probing the zone's BMCs for the collector, on scanner hosts.
#[derive(Debug, Clone)]
pub struct ScannerConfig {
    /// Default: this host's `role` label is `scanner`.
    pub enabled: bool,
    /// UDP port of RMCP.
    pub port: u16,
    pub tries: u32,
    pub spacing: Duration,
    /// Packets per second over all BMCs.
    pub rate: u32,
}

/// The in-band BMC check.
#[derive(Debug, Clone)]
pub struct BmcConfig {
    /// The IPMI device; absent = no BMC (a VM).
    pub device: PathBuf,
    /// argv prefix for ipmitool (`mc info`, `lan print N` are appended).
    pub ipmitool: Vec<String>,
    pub interval: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScanner {
    enabled: Option<bool>,
    port: Option<Spanned<u16>>,
    tries: Option<Spanned<u32>>,
    spacing: Option<Spanned<HumanDuration>>,
    rate: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBmc {
    device: Option<Spanned<PathBuf>>,
    ipmitool: Option<Spanned<Vec<String>>>,
    interval: Option<Spanned<HumanDuration>>,
}

impl RawBmc {
    pub(crate) fn validate(self) -> Result<BmcConfig, Invalid> {
        let b = self;
        let ipmitool = match b.ipmitool {
            None => vec!["/usr/bin/ipmitool".to_owned()],
            Some(v) if v.get_ref().is_empty() => {
                return Err((v.span(), "bmc.ipmitool: give the ipmitool program (and any options), e.g. [\"/usr/bin/ipmitool\"]".to_owned()))
            }
            Some(v) => argv(Some(v), "bmc.ipmitool")?,
        };
        Ok(BmcConfig {
            device: absolute(b.device, "/dev/ipmi0", "bmc.device")?,
            ipmitool,
            interval: duration(b.interval, Duration::from_secs(900), Duration::from_secs(1))?.0,
        })
    }
}

impl RawScanner {
    /// Scanners are, by default, the hosts whose `role` label is `scanner`.
    pub(crate) fn validate(
        self,
        labels: &BTreeMap<String, String>,
    ) -> Result<ScannerConfig, Invalid> {
        let sc = self;
        let positive = |v: Option<Spanned<u32>>, default: u32, what: &str| match v {
            None => Ok(default),
            Some(v) if *v.get_ref() == 0 => Err((v.span(), format!("{what} must be at least 1"))),
            Some(v) => Ok(v.into_inner()),
        };
        Ok(ScannerConfig {
            enabled: sc
                .enabled
                .unwrap_or_else(|| labels.get("role").is_some_and(|r| r == "scanner")),
            port: match sc.port {
                None => 623,
                Some(p) if *p.get_ref() == 0 => {
                    return Err((
                        p.span(),
                        "port 0 cannot be probed; RMCP is on 623".to_owned(),
                    ))
                }
                Some(p) => p.into_inner(),
            },
            tries: positive(sc.tries, 3, "tries")?,
            spacing: duration(
                sc.spacing,
                Duration::from_secs(1),
                Duration::from_millis(10),
            )?
            .0,
            rate: positive(sc.rate, 500, "rate")?,
        })
    }
}
