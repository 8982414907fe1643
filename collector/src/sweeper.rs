//! Flags hosts at their deadlines: the sweeper sleeps until the next possible change and
//! re-judges what is due, on the collector's clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::ingest::Ingest;
use crate::lock;
use crate::metrics::Metrics;
use crate::registry::{Registry, Transition};

/// The longest sleep, so that an earlier deadline added meanwhile is not missed.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Runs forever.
pub async fn run(
    registry: Arc<Mutex<Registry>>,
    metrics: Arc<Metrics>,
    ingest: Ingest,
    clock: Arc<dyn Clock>,
) {
    let mut lost = 0u64;
    loop {
        let next = lock(&registry).next_change();
        let wait = next
            .map(|t| (t - clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::MAX)
            .min(MAX_SLEEP);
        tokio::time::sleep(wait).await;
        let (changes, notes) = {
            let mut r = lock(&registry);
            let now = clock.now();
            r.refresh_relays(now);
            (r.sweep(now), r.take_notes())
        };
        for t in changes {
            announce(&t, &metrics);
        }
        // History lines are written in the next group commit, not waited for; by the
        // leader only, when there are several collectors.
        for n in notes {
            if ingest.submit(crate::store::Write::Note(n)).is_err() {
                lost += 1;
                if lost.is_power_of_two() {
                    log::warn!("ingest queue full: {lost} host history lines not recorded so far");
                }
            }
        }
    }
}

/// Counts a state change and logs it (a host's first contact is counted, not logged).
pub fn announce(t: &Transition, metrics: &Metrics) {
    metrics.transition(t.to);
    if let Some(from) = t.from {
        log::info!("host {} {} -> {}: {}", t.host, from, t.to, t.reason);
    }
}
