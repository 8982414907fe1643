//! Prometheus metrics. Never a label per host: fleets have thousands.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::state::HostState;

#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    digests: AtomicU64,
    enrolled: AtomicU64,
    tls_failed: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    commits: AtomicU64,
    committed_heartbeats: AtomicU64,
    commit_micros: AtomicU64,
    events_new: AtomicU64,
    events_duplicate: AtomicU64,
    transitions: Mutex<BTreeMap<&'static str, u64>>,
    store_failures: AtomicU64,
    /// Set while the store's last write failed: what `/readyz` says.
    store_failing: std::sync::atomic::AtomicBool,
    store_error: Mutex<String>,
}

impl Metrics {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A heartbeat that carried the digest of its unchanged state instead of the state.
    pub fn digest(&self) {
        self.digests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn enrolled(&self) {
        self.enrolled.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake that failed or timed out.
    pub fn tls_failed(&self) {
        self.tls_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A refused request, by reason (`unauthenticated`, `revoked`, `forbidden`,
    /// `wrong_host`, `no_client_cert`, `bad_request`, `too_large`, `rate_limited`, `queue_full`,
    /// `not_in_inventory`).
    pub fn rejected(&self, reason: &'static str) {
        *crate::lock(&self.rejected).entry(reason).or_default() += 1;
    }

    pub fn committed(
        &self,
        heartbeats: usize,
        took: Duration,
        events_new: usize,
        events_duplicate: usize,
    ) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_heartbeats
            .fetch_add(heartbeats as u64, Ordering::Relaxed);
        self.commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.events_new
            .fetch_add(events_new as u64, Ordering::Relaxed);
        self.events_duplicate
            .fetch_add(events_duplicate as u64, Ordering::Relaxed);
    }

    /// A write the store refused; `sentence` says why and what to do. Logged when the
    /// store starts failing, not for every write it refuses.
    pub fn store_failed(&self, sentence: &str) {
        self.store_failures.fetch_add(1, Ordering::Relaxed);
        sentence.clone_into(&mut crate::lock(&self.store_error));
        if !self.store_failing.swap(true, Ordering::Relaxed) {
            log::error!("{sentence}; writes are refused with 503 and nothing is acknowledged until it works again");
        }
    }

    /// A write the store took: it works again.
    pub fn store_ok(&self) {
        if self.store_failing.swap(false, Ordering::Relaxed) {
            log::warn!("the store takes writes again");
        }
    }

    /// Why the store's last write failed, while it fails.
    pub fn store_failing(&self) -> Option<String> {
        self.store_failing
            .load(Ordering::Relaxed)
            .then(|| crate::lock(&self.store_error).clone())
    }

    pub fn transition(&self, to: HostState) {
        *crate::lock(&self.transitions)
            .entry(to.as_str())
            .or_default() += 1;
    }

    pub fn render(
        &self,
        states: &BTreeMap<HostState, usize>,
        lifecycles: &BTreeMap<&'static str, usize>,
        flagged: usize,
        queue_depth: usize,
    ) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP rollcall_hosts Hosts by derived state.\n# TYPE rollcall_hosts gauge"
        );
        for (s, n) in states {
            let _ = writeln!(o, "rollcall_hosts{{state=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP rollcall_hosts_lifecycle Hosts by lifecycle.\n# TYPE rollcall_hosts_lifecycle gauge");
        for (l, n) in lifecycles {
            let _ = writeln!(o, "rollcall_hosts_lifecycle{{lifecycle=\"{l}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP rollcall_hosts_flagged Live hosts flagged silent, unhealthy or duplicate.\n# TYPE rollcall_hosts_flagged gauge\nrollcall_hosts_flagged {flagged}");
        let _ = writeln!(o, "# HELP rollcall_heartbeats_accepted_total Heartbeats stored and acknowledged.\n# TYPE rollcall_heartbeats_accepted_total counter\nrollcall_heartbeats_accepted_total {}", self.accepted.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_heartbeats_digest_total Heartbeats stored that carried the digest of an unchanged state instead of the state.\n# TYPE rollcall_heartbeats_digest_total counter\nrollcall_heartbeats_digest_total {}", self.digests.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_enrollments_total Host credentials issued.\n# TYPE rollcall_enrollments_total counter\nrollcall_enrollments_total {}", self.enrolled.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_requests_rejected_total Requests refused, by reason.\n# TYPE rollcall_requests_rejected_total counter");
        for (r, n) in crate::lock(&self.rejected).iter() {
            let _ = writeln!(o, "rollcall_requests_rejected_total{{reason=\"{r}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP rollcall_tls_handshakes_failed_total TLS handshakes that failed or timed out: a client that does not trust this collector's CA, a client certificate the client CA did not sign, a port scanner.\n# TYPE rollcall_tls_handshakes_failed_total counter\nrollcall_tls_handshakes_failed_total {}", self.tls_failed.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_ingest_queue_depth Heartbeats waiting for the writer.\n# TYPE rollcall_ingest_queue_depth gauge\nrollcall_ingest_queue_depth {queue_depth}");
        let _ = writeln!(o, "# HELP rollcall_commits_total Store transactions (group commits).\n# TYPE rollcall_commits_total counter\nrollcall_commits_total {}", self.commits.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_committed_heartbeats_total Heartbeats made durable.\n# TYPE rollcall_committed_heartbeats_total counter\nrollcall_committed_heartbeats_total {}", self.committed_heartbeats.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_commit_seconds_total Time spent committing.\n# TYPE rollcall_commit_seconds_total counter\nrollcall_commit_seconds_total {:.6}", self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "# HELP rollcall_events_total Agent events stored, and redeliveries ignored.\n# TYPE rollcall_events_total counter\nrollcall_events_total{{outcome=\"new\"}} {}\nrollcall_events_total{{outcome=\"duplicate\"}} {}", self.events_new.load(Ordering::Relaxed), self.events_duplicate.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_store_failures_total Writes the store refused (a full disk, an I/O error); nothing refused was acknowledged.\n# TYPE rollcall_store_failures_total counter\nrollcall_store_failures_total {}", self.store_failures.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP rollcall_store_failing 1 while the store's last write failed.\n# TYPE rollcall_store_failing gauge\nrollcall_store_failing {}", u8::from(self.store_failing.load(Ordering::Relaxed)));
        let _ = writeln!(o, "# HELP rollcall_state_transitions_total Host state changes, by new state.\n# TYPE rollcall_state_transitions_total counter");
        for (s, n) in crate::lock(&self.transitions).iter() {
            let _ = writeln!(o, "rollcall_state_transitions_total{{to=\"{s}\"}} {n}");
        }
        o
    }
}
