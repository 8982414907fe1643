//! The `rollcall-agent` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::logging;

const DEFAULT_CONFIG: &str = "/etc/rollcall/agent.toml";

#[derive(Parser)]
#[command(
    name = "rollcall-agent",
    version,
    about = "Keeps the BigFix client alive on this host and reports its health"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Supervise and heal (the daemon systemd runs).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// auto: journald when started by systemd, else text on stderr.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: logging::Format,
        /// Least severe log lines written: error, warn, info, debug or trace.
        #[arg(long, default_value = "info", env = "ROLLCALL_LOG_LEVEL", value_parser = rollcall_support::log_level)]
        log_level: log::LevelFilter,
    },
    /// Run every check once and report; exit 2 if anything is critical.
    Doctor {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file; exit 78 with the key and line on error.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Suspend remediation (observation goes on) until a time.
    Pause {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long, e.g. 2h.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long)]
        reason: String,
    },
    /// Lift a pause now.
    Resume {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Is this BMC reachable from here? ASF Presence Ping, then IPMI Get Channel
    /// Authentication Capabilities, as a scanner probes; exit 1 if any is unreachable.
    ProbeBmc {
        /// BMC addresses.
        #[arg(required = true)]
        address: Vec<std::net::IpAddr>,
        #[arg(long, default_value_t = 623)]
        port: u16,
        /// Tries per probe kind, each waiting --spacing for an answer.
        #[arg(long, default_value_t = 3)]
        tries: u32,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        spacing: Duration,
        /// Packets per second over all addresses.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        #[arg(long)]
        json: bool,
    },
}
