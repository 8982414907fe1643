//! When to send: every `interval` at a stable per-host offset (splay), at once on a change,
//! and after a failure with jittered exponential backoff that honours `Retry-After`. Pure:
//! times in, times out.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The first retry waits about this long; each failure doubles it up to the cap.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Changes are sent at once, but no closer together than this.
pub const MIN_GAP: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    offset: Duration,
    cap: Duration,
    failures: u32,
    /// The collector asked this host to wait (429) until then; not a failure.
    held_until: Option<DateTime<Utc>>,
    rng: u64,
}

/// A stable number from a string (FNV-1a): the same host gets the same offset every run.
pub(crate) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Schedule {
    /// `seed` feeds the jitter; `who` (the host and identity) fixes the splay offset.
    pub fn new(interval: Duration, who: &str, seed: u64) -> Schedule {
        let ms = interval.as_millis().max(1) as u64;
        Schedule {
            interval,
            offset: Duration::from_millis(stable_hash(who) % ms),
            // Retries never wait longer than a heartbeat interval (and at most 5 minutes),
            // so a host is not reported silent because of its own backoff.
            cap: interval.min(Duration::from_secs(300)).max(BACKOFF_BASE),
            failures: 0,
            held_until: None,
            rng: seed | 1,
        }
    }

    pub fn offset(&self) -> Duration {
        self.offset
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The next regular slot strictly after `now`: times whose position within the
    /// interval equals this host's offset.
    pub fn next_regular(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let ms = self.interval.as_millis().max(1) as i64;
        let now_ms = now.timestamp_millis();
        let mut slot = now_ms - now_ms.rem_euclid(ms) + self.offset.as_millis() as i64;
        if slot <= now_ms {
            slot += ms;
        }
        DateTime::from_timestamp_millis(slot).unwrap_or(now)
    }

    /// Whether a change may be sent at `now`: not while backing off or held by the
    /// collector.
    pub fn may_send_now(&self, now: DateTime<Utc>) -> bool {
        self.failures == 0 && self.held_until.is_none_or(|h| now >= h)
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.held_until = None;
    }

    /// The collector said "too many requests from this host, come back in `retry_after`":
    /// the collector is fine, so this is not a failure and the backoff does not grow; the
    /// next send waits exactly that long, plus a little jitter (a tenth, at most 500 ms).
    pub fn throttled(&mut self, now: DateTime<Utc>, retry_after: Duration) -> DateTime<Utc> {
        let spread = (retry_after / 10).min(Duration::from_millis(500));
        let jitter = Duration::from_millis(self.next_random() % (spread.as_millis() as u64 + 1));
        let until = now + chrono::Duration::from_std(retry_after + jitter).unwrap_or_default();
        self.held_until = Some(until);
        until
    }

    /// After a failure at `now`: wait half the backoff plus a random part of the other half
    /// (so a fleet that failed together does not retry together), at least `retry_after`.
    pub fn failed(&mut self, now: DateTime<Utc>, retry_after: Option<Duration>) -> DateTime<Utc> {
        self.failures = self.failures.saturating_add(1);
        let exp = BACKOFF_BASE
            .saturating_mul(1u32 << (self.failures - 1).min(20))
            .min(self.cap);
        let half = exp / 2;
        let jitter = Duration::from_millis(self.next_random() % (half.as_millis() as u64 + 1));
        let wait = (half + jitter).max(retry_after.unwrap_or_default());
        now + chrono::Duration::from_std(wait).unwrap_or_default()
    }

    /// xorshift64*: jitter needs spread, not secrecy.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap() + chrono::Duration::seconds(s)
    }

    #[test]
    fn regular_slots_keep_a_stable_per_host_offset() {
        let a = Schedule::new(Duration::from_secs(60), "web-1/m/i", 1);
        let again = Schedule::new(Duration::from_secs(60), "web-1/m/i", 99);
        assert_eq!(a.offset(), again.offset(), "stable across runs");
        let first = a.next_regular(t(0));
        let second = a.next_regular(first);
        assert_eq!(second - first, chrono::Duration::seconds(60));
        assert!(first > t(0) && first <= t(60));
        // Hosts spread over the interval.
        let offsets: std::collections::BTreeSet<u64> = (0..1000)
            .map(|i| {
                Schedule::new(Duration::from_secs(60), &format!("node-{i}"), 1)
                    .offset()
                    .as_secs()
            })
            .collect();
        assert!(
            offsets.len() > 55,
            "{} distinct seconds of 60",
            offsets.len()
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() {
        let mut s = Schedule::new(Duration::from_secs(60), "h", 7);
        let waits: Vec<i64> = (0..10)
            .map(|_| (s.failed(t(0), None) - t(0)).num_milliseconds())
            .collect();
        for (i, w) in waits.iter().enumerate() {
            let exp = (1000i64 << i).min(60_000);
            assert!(
                *w >= exp / 2 && *w <= exp,
                "failure {}: {w} ms not in [{}, {exp}]",
                i + 1,
                exp / 2
            );
        }
        assert!(waits[9] >= 30_000, "capped at the interval: {waits:?}");
        let w = s.failed(t(0), Some(Duration::from_secs(120)));
        assert_eq!(w, t(120), "Retry-After wins when longer");
        s.succeeded();
        let w = s.failed(t(0), None) - t(0);
        assert!(
            w <= chrono::Duration::seconds(1),
            "reset after success: {w}"
        );
    }

    #[test]
    fn a_throttle_waits_retry_after_without_growing_the_backoff() {
        let mut s = Schedule::new(Duration::from_secs(60), "h", 3);
        for _ in 0..5 {
            let until = s.throttled(t(0), Duration::from_secs(3));
            let w = (until - t(0)).num_milliseconds();
            assert!(
                (3000..=3300).contains(&w),
                "held {w} ms for Retry-After 3 s"
            );
            assert_eq!(s.failures(), 0, "a throttle is not a failure");
        }
        assert!(!s.may_send_now(t(2)), "changes wait for the hold");
        assert!(s.may_send_now(t(4)), "and go once it is over");
        // A real failure after throttles starts from the base backoff.
        let w = s.failed(t(0), None) - t(0);
        assert!(w <= chrono::Duration::seconds(1), "first failure waits {w}");
        s.succeeded();
        assert!(s.may_send_now(t(0)));
    }

    #[test]
    fn a_fleet_failing_together_retries_spread_out() {
        let mut at: Vec<i64> = (0..1000u64)
            .map(|i| {
                let mut s = Schedule::new(Duration::from_secs(60), &format!("n{i}"), i * 7919 + 1);
                let mut now = t(0);
                for _ in 0..8 {
                    now = s.failed(now, None);
                }
                (now - t(0)).num_milliseconds()
            })
            .collect();
        at.sort_unstable();
        let spread = at[at.len() - 1] - at[0];
        assert!(spread > 30_000, "retries spread over {spread} ms");
    }
}
