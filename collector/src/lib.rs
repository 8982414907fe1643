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
