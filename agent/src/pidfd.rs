//! The one `unsafe` spot of the agent: registering a pidfd with tokio's reactor.
//!
//! `AsyncFd::register_with_interest` is unsafe because tokio cannot check that the
//! descriptor stays open and unchanged while registered. An `OwnedFd` moved into the
//! `AsyncFd` guarantees exactly that: nobody else holds it, it is closed only when the
//! `AsyncFd` is dropped (after deregistration), and `as_raw_fd` always returns the same number.

use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Registers `fd` for readability (a pidfd turns readable when its process exits).
pub fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is owned and moved into the AsyncFd; see the module comment.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(Into::into)
}
