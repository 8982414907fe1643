//! `rollcall-agent`: keeps the BigFix client alive on its host and reports its health.
//!
//! The binary (`main.rs`) only wires these together; see ARCHITECTURE.md for the map.

pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod disk;
pub mod doctor;
pub mod events;
pub mod exec;
pub mod identity;
pub mod logging;
pub mod manager;
pub mod pause;
mod pidfd;
pub mod process;
pub mod publish;
pub mod remediation;
pub mod report;
pub mod state;
pub mod supervisor;

/// A mutex's contents, even if a thread panicked while holding it: the agent keeps going.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
