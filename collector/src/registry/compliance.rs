//! The compliance export: one row per host with what the compliance portal asks about —
//! the file an SRE attaches to a compliance ticket.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{at, relays::in_scope, Registry};
use crate::state::{HostState, Lifecycle};

/// One host's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplianceRow<'r> {
    pub name: &'r str,
    pub env: &'r str,
    pub region: &'r str,
    pub zone: &'r str,
    pub role: &'r str,
    pub lifecycle: Lifecycle,
    /// Live and not in maintenance: counted by the compliance report.
    pub in_scope: bool,
    pub state: HostState,
    pub reason: String,
    pub last_heard: DateTime<Utc>,
    /// The BigFix client: `running`, `hung`, `dead`, `restarting`, `unknown`.
    pub besclient: &'static str,
    pub last_checkin: Option<DateTime<Utc>>,
    pub relay: &'r str,
    /// Scanners only: `ok` or `critical`; empty for other hosts.
    pub nessusd: &'static str,
    /// The scanners' verdict on its BMC.
    pub bmc: String,
    /// Whether its zone has a working scanner, in words.
    pub zone_scanners: String,
    pub maintenance_until: Option<DateTime<Utc>>,
}

/// The CSV header, in the rows' field order.
pub const CSV_HEADER: &str = "name,env,region,zone,role,lifecycle,in_scope,state,reason,last_heard,besclient,last_checkin,relay,nessusd,bmc,zone_scanners,maintenance_until";

impl ComplianceRow<'_> {
    /// One CSV record (RFC 4180: fields with a comma, quote or line break are quoted).
    pub fn csv(&self) -> String {
        let time = |t: Option<DateTime<Utc>>| t.map_or(String::new(), |t| t.to_rfc3339());
        [
            self.name.to_owned(),
            self.env.to_owned(),
            self.region.to_owned(),
            self.zone.to_owned(),
            self.role.to_owned(),
            self.lifecycle.as_str().to_owned(),
            self.in_scope.to_string(),
            self.state.as_str().to_owned(),
            self.reason.clone(),
            self.last_heard.to_rfc3339(),
            self.besclient.to_owned(),
            time(self.last_checkin),
            self.relay.to_owned(),
            self.nessusd.to_owned(),
            self.bmc.clone(),
            self.zone_scanners.clone(),
            time(self.maintenance_until),
        ]
        .iter()
        .map(|f| quote(f))
        .collect::<Vec<_>>()
        .join(",")
    }
}

fn quote(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

impl Registry {
    /// Every host (retired ones too, marked out of scope), by name.
    pub fn compliance(&self, now: DateTime<Utc>) -> Vec<ComplianceRow<'_>> {
        let zones: HashMap<String, (bool, String)> = self
            .zones()
            .into_iter()
            .map(|z| (z.zone, (z.flagged, z.reason)))
            .collect();
        let mut ids: Vec<usize> = (0..self.hosts.len()).collect();
        ids.sort_unstable_by(|a, b| self.hosts[*a].name.cmp(&self.hosts[*b].name));
        ids.into_iter()
            .map(|i| {
                let h = &self.hosts[i];
                let [env, region, zone, role] = h.labels.map(|v| self.labels.get(v));
                let checkin = h.checkin.as_deref();
                ComplianceRow {
                    name: &h.name,
                    env,
                    region,
                    zone,
                    role,
                    lifecycle: h.lifecycle,
                    in_scope: in_scope(h),
                    state: h.state,
                    reason: self.reason(i as crate::index::HostId, now),
                    last_heard: at(h.last_heard_ms),
                    besclient: h.besclient.as_str(),
                    last_checkin: checkin.and_then(|c| c.last_success_ms).map(at),
                    relay: checkin.map_or("", |c| self.labels.get(c.relay)),
                    nessusd: match (role == super::scan::SCANNER_ROLE, h.nessusd_down) {
                        (false, _) => "",
                        (true, false) => "ok",
                        (true, true) => "critical",
                    },
                    bmc: self.bmc_verdict(h, now),
                    zone_scanners: match zones.get(zone) {
                        _ if zone.is_empty() => "no zone label".to_owned(),
                        Some((false, _)) => "working scanner".to_owned(),
                        Some((true, why)) => why.clone(),
                        None => "no scanner".to_owned(),
                    },
                    maintenance_until: h
                        .maintenance
                        .as_ref()
                        .filter(|_| h.state == HostState::Maintenance)
                        .map(|m| at(m.0)),
                }
            })
            .collect()
    }
}
