use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::Utc;
use clap::{CommandFactory, FromArgMatches, Parser};
use rollcall_collector::auth::{self, Credentials, Role, Tokens};
use rollcall_collector::clock::{Clock, SystemClock};
use rollcall_collector::config::{Args, Config, EX_CONFIG};
use rollcall_collector::http::{self, App};
use rollcall_collector::ingest::Ingest;
use rollcall_collector::metrics::Metrics;
use rollcall_collector::registry::Registry;
use rollcall_collector::state::Policy;
use rollcall_collector::store::{self, Store};
use rollcall_collector::{lock, retention, server, sweeper, tls};

/// The API allocates per request (TLS records, JSON, events): on the load generator the
/// collector did 28–33k durable heartbeats/s with mimalloc, 26–29k with glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rollcall-collector",
    version,
    about = "Stores host heartbeats and flags silent or unhealthy hosts"
)]
struct Cli {
    #[command(flatten)]
    args: Args,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
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
enum TokenAction {
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

struct Stderr;

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

fn main() -> ExitCode {
    rollcall_collector::no_huge_pages();
    let _ = log::set_logger(&Stderr).map(|()| log::set_max_level(log::LevelFilter::Info));
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let config = match Config::load(cli.args, &matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rollcall-collector: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let done = match cli.command {
        Some(Sub::CheckConfig) => {
            println!(
                "configuration ok: listen {}, data_dir {}",
                config.listen,
                config.data_dir.display()
            );
            Ok(())
        }
        Some(Sub::Token { action }) => token(&config.data_dir, action),
        None => run(config),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(dir: &Path, action: TokenAction) -> anyhow::Result<()> {
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

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

fn run(cli: Config) -> anyhow::Result<()> {
    let dir = &cli.data_dir;
    create_private_dir(dir)?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(h.trim().to_owned());
    }
    names.extend(cli.sans.iter().cloned());
    tls::ensure(dir, &names)?;
    let tls_config = tls::server_config(dir, cli.client_ca.as_deref())?;
    let (tokens, new_admin) = Tokens::load_or_init(dir)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let up_since = clock.now();
    let writer_store = store::open(dir)?;
    let reader_store = store::open(dir)?;
    let policy = Policy {
        grace: cli.grace,
        probe_interval: cli.probe_interval,
        ..Policy::default()
    };
    let credentials = Credentials::load(writer_store.load_credentials()?);
    let mut registry = Registry::new(policy, up_since);
    registry.load(writer_store.load_hosts()?, up_since);
    log::info!(
        "loaded {} hosts from {}; flagging nobody before {}",
        registry.len(),
        dir.join(store::DB_FILE).display(),
        (up_since + chrono::Duration::from_std(cli.grace).unwrap_or_default()).to_rfc3339()
    );
    let registry = Arc::new(Mutex::new(registry));
    let metrics = Arc::new(Metrics::default());

    // The registry follows what is durable: updated from each commit, on the writer thread.
    let (reg, m) = (registry.clone(), metrics.clone());
    let (ingest, _writer) = Ingest::start(writer_store, cli.queue, 4096, move |done| {
        m.committed(
            done.records.len(),
            done.took,
            done.stats.events_new,
            done.stats.events_duplicate,
        );
        let mut r = lock(&reg);
        for rec in done.heartbeats() {
            if let Some(t) = r.apply(rec) {
                sweeper::announce(&t, &m);
            }
        }
    })
    .context("starting the ingest writer thread")?;

    let app = Arc::new(App {
        registry: registry.clone(),
        ingest,
        store: Mutex::new(reader_store),
        tokens: std::sync::RwLock::new(tokens),
        credentials: std::sync::RwLock::new(credentials),
        metrics: metrics.clone(),
        rate: Mutex::new(Default::default()),
        enroll_rate: Mutex::new(Default::default()),
        ready: Default::default(),
        require_client_cert: cli.client_ca.is_some(),
        clock: clock.clone(),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("binding {}", cli.listen))?;
        let addr = listener.local_addr()?;
        app.ready.store(true, Ordering::Relaxed);
        println!("rollcall-collector listening on https://{addr}");
        if let Some(token) = new_admin {
            println!(
                "first start: made a CA, a server certificate and tokens in {}",
                dir.display()
            );
            println!("point the CLI at it:");
            println!(
                "  export ROLLCALL_URL=https://{addr} ROLLCALL_CA={}/ca.pem ROLLCALL_TOKEN={token}",
                dir.display()
            );
            println!(
                "agents enroll with the secret in {}/enroll.secret",
                dir.display()
            );
        }
        tokio::spawn(sweeper::run(
            registry.clone(),
            metrics.clone(),
            app.ingest.clone(),
            clock.clone(),
        ));
        tokio::spawn(retention::run(app.clone(), cli.event_retention_days));
        tokio::spawn(auth::reload_on_hup(app.clone(), dir.clone()));
        // Under systemd (Type=notify): ready once the socket is bound and state loaded.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        server::serve(
            listener,
            tls_config,
            http::router(app.clone()),
            metrics.clone(),
            rollcall_support::shutdown_signal(),
        )
        .await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        log::info!("stopping");
        anyhow::Ok(())
    })
}
