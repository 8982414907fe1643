//! On scanner hosts: a round of BMC probes for the collector. Ask which BMCs (the live
//! hosts' of this zone), probe them all (paced, one probe outstanding per BMC), report the
//! results in batches. The collector attributes them to their hosts.

use std::time::Duration;

use chrono::Utc;
use rollcall_proto::{
    ProbeAck, ProbeResult, ProbeResults, ProbeTargets, MAX_PROBE_RESULTS, PROTO_VERSION,
};

use super::link::{Failure, Link};
use crate::checks::bmc::probe::{probe_all, ProbeConfig};
use crate::config::ScannerConfig;

/// A round's work: what the collector assigned, then what was found.
pub struct Round {
    pub zone: String,
    pub results: Vec<ProbeResult>,
    pub packets: u64,
    pub took: Duration,
}

/// The assignment, and when the next round is due; or how long to wait before asking again.
pub async fn assignment(
    link: &Link,
    credential: &str,
) -> Result<(ProbeTargets, Duration), (Duration, String)> {
    match link
        .get::<ProbeTargets>("/api/v1/probe-targets", credential)
        .await
    {
        Ok(t) => {
            let every = Duration::from_secs(t.interval_secs.max(1) as u64);
            Ok((t, every))
        }
        // Not a scanner (yet): the labels may change with the next config; ask now and then.
        Err(Failure::Refused {
            status: 403, error, ..
        }) => Err((
            Duration::from_secs(600),
            format!("the collector assigns no BMCs to this host: {error}"),
        )),
        Err(e) => Err((
            Duration::from_secs(60),
            format!("cannot get probe targets: {e}"),
        )),
    }
}

/// Probes every target.
pub async fn probe(t: ProbeTargets, cfg: ScannerConfig) -> Round {
    let started = tokio::time::Instant::now();
    let pc = ProbeConfig {
        port: cfg.port,
        tries: cfg.tries,
        spacing: cfg.spacing,
        rate: cfg.rate,
        ..ProbeConfig::default()
    };
    let addresses: Vec<_> = t.targets.iter().map(|x| x.address).collect();
    let (found, packets) = probe_all(&addresses, &pc).await;
    let at = Utc::now();
    let results = t
        .targets
        .into_iter()
        .zip(found)
        .map(|(target, (_, reach))| {
            let (via, detail) = reach.describe();
            ProbeResult {
                host: target.host,
                address: target.address,
                reachable: reach.reachable(),
                via: via.map(str::to_owned),
                detail,
                at,
            }
        })
        .collect();
    Round {
        zone: t.zone,
        results,
        packets,
        took: started.elapsed(),
    }
}

/// Sends a round's results in batches; what the collector took, and what it ignored and why.
pub async fn report(
    link: &Link,
    credential: &str,
    scanner: &str,
    round: &Round,
) -> Result<(u32, u32, Vec<String>), Failure> {
    let (mut taken, mut ignored, mut why) = (0, 0, Vec::new());
    for batch in round.results.chunks(MAX_PROBE_RESULTS) {
        let body = ProbeResults {
            proto_version: PROTO_VERSION,
            scanner: scanner.to_owned(),
            results: batch.to_vec(),
        };
        let ack: ProbeAck = link
            .post("/api/v1/probe-results", credential, &body)
            .await?;
        taken += ack.recorded;
        ignored += ack.ignored;
        why.extend(ack.why_ignored);
    }
    Ok((taken, ignored, why))
}
