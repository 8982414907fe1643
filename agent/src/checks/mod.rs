//! One folder per check, each with its probe, its remediation and its tests.

pub mod besclient;
pub mod bmc;
pub mod nessusd;
