//! BMC reachability: the RMCP probes a scanner sends to the BMCs of its zone.

pub mod probe;
pub mod rmcp;
