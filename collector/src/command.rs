//! The `rollcall-collector` command line: the options (see [`crate::config::Args`]), the
//! subcommands, the token administration they run, and the log on stderr.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use clap::Parser;

use crate::auth::{Role, Tokens};
use crate::config::Args;

#[derive(Parser)]
#[command(
    name = "rollcall-collector",
    version,
    about = "Stores host heartbeats and flags silent or unhealthy hosts"
)]
pub struct Cli {
    #[command(flatten)]
    pub args: Args,
    #[command(subcommand)]
    pub command: Option<Sub>,
}

#[derive(clap::Subcommand)]
pub enum Sub {
    /// Validate the configuration (flags, environment, --config file); exit 78 with the
    /// file, line, column and key on error.
    CheckConfig,
    /// Make an API token for an SRE or a script; printed once, only its hash is kept.
    /// A running collector picks it up on SIGHUP.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(clap::Subcommand)]
pub enum TokenAction {
    Add {
        /// Who or what uses it, e.g. alice or grafana.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Remove a token by name (rotate an enrollment secret out; enrolled hosts are not
    /// affected).
    Remove {
        #[arg(long)]
        name: String,
    },
    /// Names and roles of the tokens (never the tokens).
    List,
}

/// Lines on stderr (journald takes them under systemd), info and above.
pub struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "{} {:<5} {}",
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.level(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

/// `rollcall-collector token add|remove|list`.
pub fn token(dir: &Path, action: TokenAction) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    match action {
        TokenAction::Add { name, role } => {
            let token = Tokens::add(dir, &name, role)?;
            println!("{token}");
            eprintln!("token {name:?} ({role:?}) added to {}/tokens.json; send SIGHUP to a running collector to load it", dir.display());
        }
        TokenAction::Remove { name } => {
            let role = Tokens::remove(dir, &name)?;
            eprintln!("token {name:?} ({role:?}) removed from {}/tokens.json; send SIGHUP to a running collector to apply it", dir.display());
        }
        TokenAction::List => {
            for (name, role) in Tokens::load_or_init(dir)?.0.list() {
                println!("{name}\t{role:?}");
            }
        }
    }
    Ok(())
}

/// The data directory, made private (0700) if new.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// What a first start made, and how to point the CLI at it.
pub fn first_start(addr: &std::net::SocketAddr, dir: &Path, admin_token: &str) {
    println!(
        "first start: made a CA, a server certificate and tokens in {}",
        dir.display()
    );
    println!("point the CLI at it:");
    println!(
        "  export ROLLCALL_URL=https://{addr} ROLLCALL_CA={}/ca.pem ROLLCALL_TOKEN={admin_token}",
        dir.display()
    );
    println!(
        "agents enroll with the secret in {}/enroll.secret",
        dir.display()
    );
}
