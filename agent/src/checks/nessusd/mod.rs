//! nessusd on scanner hosts: its status endpoint, judged.

pub mod status;
