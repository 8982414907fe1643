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
