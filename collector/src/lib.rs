//! `rollcall-collector`: stores what hosts report, flags the ones that went silent or
//! unhealthy the second it happens, and explains why.

pub mod api;
pub mod auth;
pub mod client;
pub mod index;
pub mod ingest;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;

/// Turns transparent huge pages off for this process. The allocator asks for them, and a
/// first touch then zeroes 2 MiB: at a million hosts that stalled the first listing after
/// a burst of registrations (tens of ms in the kernel's page zeroing) and counted memory
/// never used as resident. 4 KiB pages keep latency and resident size honest. The load
/// generator and benchmarks call it too, so that their figures are the collector's.
pub fn no_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
