//! What incidents say: summaries, next steps from the runbooks' own advice, resolutions.

use super::{Incident, Kind, Observed};

pub fn blind(silent: usize, live: usize) -> String {
    format!(
        "collector blind: {silent} of {live} live hosts went silent at once; the collector's own network, not the fleet, is the likely cause"
    )
}

pub fn dark(label: &str, name: &str, silent: usize, live: usize) -> String {
    format!("{label} {name} dark: {silent} of {live} live hosts silent together")
}

pub fn flapping(host: &str, changes: usize, window: std::time::Duration) -> String {
    format!(
        "{host} flapping: its state changed {changes} times within {}",
        humantime::format_duration(window)
    )
}

/// What to do next, from the runbooks' own advice. `reason` is the problem in words,
/// where the step depends on it.
pub fn next_step(kind: Kind, subject: &str, reason: &str) -> String {
    match kind {
        Kind::Silent => format!(
            "Check that {subject} is up and reachable (ping it, or its console through its BMC). If it is up, look at `systemctl status rollcall-agent` and `journalctl -u rollcall-agent` there. If it was decommissioned, run `rollcall lifecycle {subject} retired`."
        ),
        Kind::UnhealthyBesclient => format!(
            "The agent on {subject} restarts the BigFix client by itself; `rollcall host {subject}` shows the steps it took. If they do not hold, look at the client's logs under /var/opt/BESClient/__BESData/__Global/Logs and reinstall the client."
        ),
        Kind::UnhealthyCheckin => format!(
            "The BigFix client on {subject} runs but does not check in. From {subject}, check that its relay answers on port 52311 and read /var/opt/BESClient/__BESData/__Global/Logs; if many hosts of one relay fail, fix the relay first."
        ),
        Kind::UnhealthyNessusd => format!(
            "nessusd on scanner {subject} is down or cannot scan ({reason}). The agent restarts it by itself; if that does not hold, check `systemctl status nessusd`, its disk and its plugin feed."
        ),
        Kind::UnhealthyBmc => format!(
            "The BMC of {subject} fails its in-band check. Run `ipmitool mc info` and `ipmitool lan print 1` on {subject}; reset it with `ipmitool mc reset cold`, or raise a hardware ticket."
        ),
        Kind::BmcUnreachable => format!(
            "Raise an infrastructure ticket to refresh the IPMI switch configuration for the BMC of {subject}: no scanner of its zone reaches it ({reason})."
        ),
        Kind::Unhealthy => format!("Run `rollcall host {subject}` for what its agent reports, and act on its reason."),
        Kind::Duplicate => format!(
            "Two machines report as {subject} (a cloned image or a restored snapshot): find the one whose identity `rollcall host {subject}` shows as the newcomer and re-bootstrap it under its own hostname. The inventory lookup fails while two servers share a hostname."
        ),
        Kind::Flapping => format!(
            "{subject} keeps changing state: read `rollcall host {subject}` for the pattern (network drops, overload, a crash loop) before acting on any single change."
        ),
        Kind::RegionDark | Kind::ZoneDark => format!(
            "Many hosts of {subject} went silent together: check the network path from {subject} to the collector (routing, firewall, VPN, DNS) before any single host."
        ),
        Kind::CollectorBlind => "Check the collector itself: its network interfaces and routes, its listener and certificate, and any firewall in front of it. The hosts are most likely fine.".into(),
        Kind::ZoneNoScanner => format!(
            "{reason}. Bring one scanner of zone {subject} back (the agent already restarts nessusd by itself: `rollcall host SCANNER` shows what it tried); until then the zone's BMCs are not probed."
        ),
        Kind::InventoryDrift => "Run `rollcall reconcile` for every discrepancy and what to do about it: bootstrap the missing hosts, add or retire the unknown ones, correct labels and lifecycles.".into(),
        Kind::RelaySuspect => format!(
            "Check relay {subject}: its BESRelay service, its disk and its own parent relay. Its hosts are listed here and not notified one by one."
        ),
    }
}

/// Why `inc` is no longer open.
pub fn resolution(
    inc: &Incident,
    obs: &Observed,
    status: &dyn Fn(&str) -> Option<String>,
) -> String {
    let silent = |label: &str| {
        obs.hosts
            .iter()
            .filter(|h| {
                h.state == crate::state::HostState::Silent
                    && h.labels.get(label) == Some(&inc.subject)
            })
            .count()
    };
    match inc.kind {
        Kind::RegionDark | Kind::ZoneDark => {
            let (label, tallies) = if inc.kind == Kind::RegionDark {
                ("region", &obs.regions)
            } else {
                ("zone", &obs.zones)
            };
            let live = tallies.get(&inc.subject).map_or(0, |t| t.live);
            format!(
                "{label} {} back: {} of {live} live hosts silent",
                inc.subject,
                silent(label)
            )
        }
        Kind::CollectorBlind => {
            let n = obs
                .hosts
                .iter()
                .filter(|h| h.state == crate::state::HostState::Silent)
                .count();
            format!(
                "the collector hears the fleet again: {n} of {} live hosts silent",
                obs.live
            )
        }
        Kind::RelaySuspect => format!("relay {} no longer suspect", inc.subject),
        Kind::ZoneNoScanner => format!("zone {} has a working scanner again", inc.subject),
        Kind::InventoryDrift => {
            "the fleet and the inventory agree again, within the threshold".into()
        }
        Kind::Flapping => format!("{} has been steady", inc.subject),
        _ => match status(&inc.subject) {
            Some(s) => format!("{} is {s}", inc.subject),
            None => format!("{} is no longer known to the collector", inc.subject),
        },
    }
}
