//! `rollcall-collector`: stores what hosts report, flags the ones that went silent or
//! unhealthy the second it happens, and explains why.

pub mod auth;
pub mod client;
pub mod clock;
pub mod command;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod incidents;
pub mod index;
pub mod ingest;
pub mod inventory;
pub mod metrics;
pub mod notify;
pub mod registry;
pub mod replica;
pub mod retention;
pub mod server;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod testing;
pub mod tls;

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

// A panic while a lock was held leaves data that is still consistent here (every writer
// finishes its change before it could panic), so a poisoned lock is taken as it is.

/// This host's name, as the kernel has it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

/// Locks `m`, through poisoning.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `l`, through poisoning.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Writes `l`, through poisoning.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Turns transparent huge pages off for this process. The allocator asks for them, and a
/// first touch then zeroes 2 MiB: at a million hosts that stalled the first listing after
/// a burst of registrations (tens of ms in the kernel's page zeroing) and counted memory
/// never used as resident. 4 KiB pages keep latency and resident size honest. The load
/// generator and benchmarks call it too, so that their figures are the collector's.
pub fn no_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
