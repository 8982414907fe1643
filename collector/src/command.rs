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
    /// Least severe log lines written: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info", env = "ROLLCALL_LOG_LEVEL", value_parser = rollcall_support::log_level)]
    pub log_level: log::LevelFilter,
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
    /// The collector's certificates: `show` them, `rotate` the server's now.
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
    /// Between stores: `copy` this collector's SQLite database into PostgreSQL.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

#[derive(clap::Subcommand)]
pub enum StoreAction {
    /// Copy `rollcall.db` of --data-dir (the collector stopped) into the empty PostgreSQL
    /// database that --store names: hosts, states, maintenance, credentials (agents keep
    /// theirs), history, events, incidents and notifications, in one transaction.
    Copy,
}

/// `rollcall-collector store copy`.
pub fn store(config: &crate::config::Config, action: StoreAction) -> anyhow::Result<()> {
    use crate::store::{copy, Backend, DB_FILE};
    match action {
        StoreAction::Copy => {
            let Backend::Postgres(to) = &config.store else {
                anyhow::bail!("store copy writes into PostgreSQL: give its URL with --store (or store in the config file); the database copied is {} in --data-dir", DB_FILE);
            };
            let from = config.data_dir.join(DB_FILE);
            let n =
                copy::sqlite_to_postgres(&from, to).map_err(|e| anyhow::anyhow!(e.sentence()))?;
            println!("copied {n} from {} into {}", from.display(), to.shown);
            Ok(())
        }
    }
}

#[derive(clap::Subcommand)]
pub enum CertAction {
    /// The CA and the server certificate: names, validity, SHA-256 fingerprints.
    Show,
    /// Issue a new server key and certificate from the CA now. A running collector serves
    /// them within a minute; clients pin the CA and notice nothing.
    Rotate {
        /// The CA key, if it is kept off this server (default: ca.key in the data
        /// directory).
        #[arg(long, value_name = "FILE")]
        ca_key: Option<std::path::PathBuf>,
    },
}

/// `rollcall-collector cert show|rotate`.
pub fn cert(
    dir: &Path,
    sans: &[String],
    validity: std::time::Duration,
    action: CertAction,
) -> anyhow::Result<()> {
    use crate::tls;
    let p = tls::Paths::in_dir(dir);
    match action {
        CertAction::Show => {
            let now = Utc::now();
            for (what, path) in [("CA", &p.ca), ("server", &p.cert)] {
                let i = tls::info(path)?;
                let left = i.not_after - now;
                println!("{what} certificate {}", path.display());
                println!("  subject:  {}", i.subject);
                if !i.names.is_empty() {
                    println!("  names:    {}", i.names.join(", "));
                }
                println!(
                    "  valid:    {} to {}",
                    i.not_before.to_rfc3339(),
                    i.not_after.to_rfc3339()
                );
                println!(
                    "  expires:  {}",
                    if left.num_seconds() <= 0 {
                        "EXPIRED".to_owned()
                    } else {
                        format!("in {} days", left.num_days())
                    }
                );
                println!("  sha256:   {}", i.sha256);
            }
            println!(
                "CA key: {}",
                if p.ca_key.exists() {
                    format!(
                        "{} (the server certificate is renewed automatically)",
                        p.ca_key.display()
                    )
                } else {
                    "not in the data directory: renew with `cert rotate --ca-key FILE`".to_owned()
                }
            );
        }
        CertAction::Rotate { ca_key } => {
            let current = tls::info(&p.cert).map(|i| i.names).unwrap_or_default();
            let names = tls::renewed_names(&current, &tls::names_for_this_host(sans));
            tls::issue(
                dir,
                &names,
                validity,
                ca_key.as_deref().unwrap_or(&p.ca_key),
            )?;
            let i = tls::info(&p.cert)?;
            println!(
                "new server certificate for {} valid until {}; a running collector serves it within a minute",
                i.names.join(", "),
                i.not_after.to_rfc3339()
            );
        }
    }
    Ok(())
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

/// Lines on stderr. Under systemd, journald takes them, and each carries its syslog
/// priority as a `<N>` prefix, so `journalctl -p warning` shows warnings and errors. Text
/// from outside that reaches a line (a host's reason, a label) has its control characters
/// escaped: a newline cannot forge a second line.
pub struct Stderr;

impl Stderr {
    /// Installs the log at `level`.
    pub fn install(level: log::LevelFilter) {
        static LOG: Stderr = Stderr;
        let _ = log::set_logger(&LOG);
        log::set_max_level(level);
    }

    fn journal() -> bool {
        static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *JOURNAL.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some())
    }

    /// The line for `r`, as written.
    pub fn line(r: &log::Record<'_>, journal: bool) -> String {
        let text = r.args().to_string();
        let text = rollcall_support::escape_controls(&text);
        if journal {
            // sd-daemon(3) priorities: journald adds its own timestamp.
            let priority = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            format!("<{priority}>{:<5} {text}", r.level())
        } else {
            format!(
                "{} {:<5} {text}",
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.level(),
            )
        }
    }
}

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                Stderr::line(r, Stderr::journal())
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

/// The data directory, made private: 0700 even if it existed, and every file in it 0600
/// but the certificates (public). Says what it tightened.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let tighten = |path: &Path, mode: u32| -> anyhow::Result<()> {
        let m = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading {}", path.display()))?;
        if m.file_type().is_symlink() || m.permissions().mode() & 0o777 == mode {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} mode {mode:o}; fix its owner", path.display()))?;
        log::warn!(
            "{} was mode {:o}; made {mode:o}",
            path.display(),
            m.permissions().mode() & 0o777
        );
        Ok(())
    };
    tighten(dir, 0o700)?;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in entries.flatten() {
        let path = e.path();
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let public = matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("ca.pem" | "server.pem")
        );
        if !public {
            tighten(&path, 0o600)?;
        }
    }
    Ok(())
}

/// What a first start made, and how to point the CLI at it. The admin token is named by
/// its file, never printed: under systemd, stdout goes to the journal.
pub fn first_start(addr: &std::net::SocketAddr, dir: &Path) {
    println!(
        "first start: made a CA, a server certificate and tokens in {}",
        dir.display()
    );
    println!("point the CLI at it:");
    println!(
        "  export ROLLCALL_URL=https://{addr} ROLLCALL_CA={}/ca.pem ROLLCALL_TOKEN=$(cat {}/admin.token)",
        dir.display(),
        dir.display()
    );
    println!(
        "agents enroll with the secret in {}/enroll.secret",
        dir.display()
    );
    println!(
        "the dashboard is https://{addr}/ (sign in with that token; trust {}/ca.pem in the browser)",
        dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::Stderr;

    #[test]
    fn a_line_is_one_line_and_carries_its_priority_for_journald() {
        let args = format_args!("host {} says {}", "web-1", "ok\nINFO forged line\u{1b}[2J");
        let r = log::Record::builder()
            .level(log::Level::Warn)
            .args(args)
            .build();
        let journal = Stderr::line(&r, true);
        assert_eq!(
            journal,
            "<4>WARN  host web-1 says ok\\nINFO forged line\\u{1b}[2J"
        );
        let text = Stderr::line(&r, false);
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(text.ends_with("WARN  host web-1 says ok\\nINFO forged line\\u{1b}[2J"));
    }
}
