//! The host's own BMC, in-band: whether there is one (`/dev/ipmi0`; none on a VM, which
//! is not an error), whether it answers (`ipmitool mc info`), and its LAN address (the
//! first channel whose `ipmitool lan print N` shows one; the channel number varies).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rollcall_proto::Health;

/// Channels walked for a LAN address; IPMI numbers channels 0–11 (0 is IPMB).
const CHANNELS: std::ops::RangeInclusive<u8> = 1..=11;
/// Longest one in-band check may take (ipmitool over a wedged BMC can hang).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What `ipmitool lan print` says of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lan {
    pub source: Option<String>,
    /// `None` when unconfigured (0.0.0.0) or absent.
    pub address: Option<IpAddr>,
    pub mac: Option<String>,
}

/// Reads the `Key : value` lines of `ipmitool lan print`.
pub fn parse_lan_print(text: &str) -> Lan {
    let mut lan = Lan::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "IP Address Source" => lan.source = Some(v.to_owned()),
            "IP Address" => lan.address = v.parse::<IpAddr>().ok().filter(|a| !a.is_unspecified()),
            "MAC Address" => lan.mac = Some(v.to_owned()),
            _ => {}
        }
    }
    lan
}

/// The in-band verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InBand {
    pub health: Health,
    /// Whether the host has a BMC device at all.
    pub present: bool,
    /// The BMC's LAN address and the channel it is on.
    pub address: Option<(u8, IpAddr)>,
    pub reason: String,
}

impl InBand {
    /// As reported to the collector, checked at `at`.
    pub fn into_state(self, at: chrono::DateTime<chrono::Utc>) -> rollcall_proto::BmcState {
        rollcall_proto::BmcState {
            health: self.health,
            present: self.present,
            address: self.address.map(|(_, a)| a),
            channel: self.address.map(|(c, _)| c),
            reason: self.reason,
            checked_at: at,
        }
    }
}

/// Checks the BMC behind `device` with `ipmitool` (argv prefix, e.g. `["ipmitool"]`).
pub async fn check(device: &Path, ipmitool: &[String], timeout: Duration) -> InBand {
    if !device.exists() {
        return InBand {
            health: Health::Ok,
            present: false,
            address: None,
            reason: format!(
                "no BMC: {} does not exist (a VM, or the ipmi_si and ipmi_devintf modules are not loaded)",
                device.display()
            ),
        };
    }
    let run = |args: &[&str]| {
        let mut argv = ipmitool.to_vec();
        argv.extend(args.iter().map(|s| s.to_string()));
        async move { crate::exec::run(&argv, timeout).await }
    };
    match run(&["mc", "info"]).await {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return InBand {
                health: Health::Critical,
                present: true,
                address: None,
                reason: format!(
                    "the BMC does not answer in-band: ipmitool mc info: {}",
                    o.last_words()
                ),
            }
        }
        Err(e @ crate::exec::ExecError::Timeout { .. }) => {
            return InBand {
                health: Health::Critical,
                present: true,
                address: None,
                reason: format!("the BMC does not answer in-band: ipmitool mc info: {e}"),
            }
        }
        // Not the BMC's fault: unknown, said as a warning.
        Err(e) => {
            return InBand {
                health: Health::Warn,
                present: true,
                address: None,
                reason: format!("cannot ask the BMC: {e}; install ipmitool or set bmc.ipmitool"),
            }
        }
    }
    let mut unconfigured = Vec::new();
    for ch in CHANNELS {
        let Ok(o) = run(&["lan", "print", &ch.to_string()]).await else {
            continue;
        };
        if !o.status.success() {
            continue;
        }
        let lan = parse_lan_print(&o.stdout);
        match lan.address {
            Some(a) => {
                return InBand {
                    health: Health::Ok,
                    present: true,
                    address: Some((ch, a)),
                    reason: format!(
                        "BMC answering; LAN address {a} on channel {ch}{}",
                        lan.source.map(|s| format!(" ({s})")).unwrap_or_default()
                    ),
                }
            }
            None => unconfigured.push(ch.to_string()),
        }
    }
    InBand {
        health: Health::Critical,
        present: true,
        address: None,
        reason: if unconfigured.is_empty() {
            "BMC answering, but no LAN channel answered `lan print`: scanners cannot reach it"
                .to_owned()
        } else {
            format!(
                "BMC answering, but its LAN channel(s) {} have no address (0.0.0.0): scanners cannot reach it",
                unconfigured.join(", ")
            )
        },
    }
}

/// Checks the BMC now and every `interval`, handing each result over, until the receiver
/// is gone.
pub async fn watch(cfg: super::config::BmcConfig, tx: tokio::sync::mpsc::UnboundedSender<InBand>) {
    loop {
        let r = check(&cfg.device, &cfg.ipmitool, CHECK_TIMEOUT).await;
        if tx.send(r).is_err() {
            return;
        }
        tokio::time::sleep(cfg.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_channel_has_no_address() {
        // `ipmitool lan print 1` as ipmitool 1.8.19 printed it against ipmi_sim.
        let lan = parse_lan_print(include_str!("testdata/lan-print-ipmi-sim.txt"));
        assert_eq!(lan.address, None);
        assert_eq!(lan.source.as_deref(), Some("Unspecified"));
        assert_eq!(lan.mac.as_deref(), Some("00:00:00:00:00:00"));
    }

    #[test]
    fn a_configured_channel_gives_its_address() {
        let text = include_str!("testdata/lan-print-ipmi-sim.txt")
            .replace(
                "IP Address Source       : Unspecified",
                "IP Address Source       : Static Address",
            )
            .replace(
                "IP Address              : 0.0.0.0",
                "IP Address              : 10.1.2.3",
            );
        let lan = parse_lan_print(&text);
        assert_eq!(lan.address, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(lan.source.as_deref(), Some("Static Address"));
    }

    fn script(dir: &Path, body: &str) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("ipmitool");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        vec![p.display().to_string()]
    }

    #[tokio::test]
    async fn no_device_is_no_bmc_and_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let r = check(
            &d.path().join("ipmi0"),
            &["ipmitool".into()],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r.health, Health::Ok);
        assert!(!r.present);
        assert!(r.reason.starts_with("no BMC"), "{}", r.reason);
    }

    #[tokio::test]
    async fn channels_are_walked_to_the_first_with_an_address() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("ipmi0");
        std::fs::write(&dev, "").unwrap();
        let sample = d.path().join("lan.txt");
        std::fs::write(
            &sample,
            include_str!("testdata/lan-print-ipmi-sim.txt").replace(
                "IP Address              : 0.0.0.0",
                "IP Address              : 10.9.8.7",
            ),
        )
        .unwrap();
        let unconfigured = d.path().join("unconfigured.txt");
        std::fs::write(
            &unconfigured,
            include_str!("testdata/lan-print-ipmi-sim.txt"),
        )
        .unwrap();
        // Channel 1 unconfigured, 2 invalid, 3 configured.
        let tool = script(
            d.path(),
            &format!(
                "case \"$*\" in\n  'mc info') echo 'Device ID : 32' ;;\n  'lan print 1') cat {u} ;;\n  'lan print 3') cat {s} ;;\n  *) echo \"Invalid channel: $3\" >&2; exit 1 ;;\nesac",
                u = unconfigured.display(),
                s = sample.display()
            ),
        );
        let r = check(&dev, &tool, Duration::from_secs(5)).await;
        assert_eq!(r.health, Health::Ok, "{}", r.reason);
        assert_eq!(r.address, Some((3, "10.9.8.7".parse().unwrap())));

        // Only unconfigured channels: the scanners cannot reach it.
        let tool = script(
            d.path(),
            &format!(
                "case \"$*\" in\n  'mc info') echo ok ;;\n  'lan print 1') cat {u} ;;\n  *) exit 1 ;;\nesac",
                u = unconfigured.display()
            ),
        );
        let r = check(&dev, &tool, Duration::from_secs(5)).await;
        assert_eq!(r.health, Health::Critical);
        assert!(
            r.reason.contains("channel(s) 1 have no address"),
            "{}",
            r.reason
        );

        // A BMC that does not answer.
        let tool = script(
            d.path(),
            "echo 'Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such device' >&2; exit 1",
        );
        let r = check(&dev, &tool, Duration::from_secs(5)).await;
        assert_eq!(r.health, Health::Critical);
        assert!(r.reason.contains("Could not open device"), "{}", r.reason);
    }
}
