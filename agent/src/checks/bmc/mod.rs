//! BMCs: the host's own, in-band; and the RMCP probes a scanner sends to the BMCs of its
//! zone.

pub mod config;
pub mod inband;
pub mod probe;
pub mod rmcp;
