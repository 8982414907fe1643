//! Wall-clock time, injected so that day rollover and staleness are tested without waiting.
//!
//! Monotonic deadlines use `tokio::time::Instant` (paused in tests); this trait is only for
//! what is compared with file times and written into events.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Local, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// The time as file modification times are stamped: the kernel's coarse clock, which
    /// runs up to a tick behind `now`. Compared with an mtime, it needs no slack.
    fn now_coarse(&self) -> DateTime<Utc> {
        self.now()
    }

    /// File name of today's BESClient log, `YYYYMMDD.log`, by the host's local date
    /// (the client names its files in local time).
    fn today_log_name(&self) -> String {
        format!("{}.log", self.now().with_timezone(&Local).format("%Y%m%d"))
    }
}

/// A shared clock is a clock (the supervisors hold one as `Arc<dyn Clock>`).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn now_coarse(&self) -> DateTime<Utc> {
        (**self).now_coarse()
    }

    fn today_log_name(&self) -> String {
        (**self).today_log_name()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn now_coarse(&self) -> DateTime<Utc> {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        DateTime::from_timestamp(t.tv_sec, t.tv_nsec as u32).unwrap_or_else(Utc::now)
    }
}

/// A monotonic span as a calendar one (saturating).
pub fn to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `3h12m`-style ages, to the second.
pub fn ago(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
}

/// A clock tests set and advance by hand. Its dates are UTC.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn today_log_name(&self) -> String {
        format!("{}.log", self.now().format("%Y%m%d"))
    }
}
