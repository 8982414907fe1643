//! nessusd on scanner hosts: its status endpoint, judged; the daemon supervised and healed.

pub mod status;
pub mod supervisor;

pub use supervisor::NessusdSupervisor;
