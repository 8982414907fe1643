use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use rollcall_collector::api::{self, App};
use rollcall_collector::auth::{Credentials, Role, Tokens};
use rollcall_collector::ingest::Ingest;
use rollcall_collector::metrics::Metrics;
use rollcall_collector::registry::{Registry, Transition};
use rollcall_collector::state::Policy;
use rollcall_collector::store::{SqliteStore, Store};
use rollcall_collector::{server, tls};

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
    /// A TOML file with any of the options below (`listen`, `data_dir`, `grace`,
    /// `probe_interval`, `event_retention_days`, `san`, `queue`, `client_ca`); the command line wins.
    #[arg(long, env = "ROLLCALL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve HTTPS on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8443", env = "ROLLCALL_LISTEN")]
    listen: SocketAddr,
    /// Database, certificates and tokens; created on first start.
    #[arg(
        long,
        default_value = "/var/lib/rollcall-collector",
        env = "ROLLCALL_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Silence beyond a host's interval plus this is `silent`.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Scanners probe their zone's BMCs once every this; a verdict older than three
    /// rounds no longer counts.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    probe_interval: Duration,
    /// Agent events older than this many days are deleted.
    #[arg(long, default_value_t = 30)]
    event_retention_days: u32,
    /// Extra DNS names or addresses for the server certificate (first start only).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Require agents (heartbeats and enrollment) to present a TLS client certificate
    /// signed by the CA in this PEM file. SREs' API calls still need only a token.
    #[arg(long, value_name = "PEM")]
    client_ca: Option<PathBuf>,
    /// Heartbeats that may wait for the writer before requests get 503.
    #[arg(long, default_value_t = 50_000)]
    queue: usize,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
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

/// `--config` file: the same options as the command line.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    grace: Option<String>,
    probe_interval: Option<String>,
    event_retention_days: Option<u32>,
    san: Option<Vec<String>>,
    queue: Option<usize>,
    client_ca: Option<PathBuf>,
}

/// The command line, with what it left at its defaults taken from `--config`.
fn parse_cli() -> anyhow::Result<Cli> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches)?;
    let Some(path) = cli.config.clone() else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let line = text[..at.min(text.len())].matches('\n').count() + 1;
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
    })?;
    let unset = |id: &str| {
        !matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    if let Some(v) = file.listen.filter(|_| unset("listen")) {
        cli.listen = v;
    }
    if let Some(v) = file.data_dir.filter(|_| unset("data_dir")) {
        cli.data_dir = v;
    }
    if let Some(v) = file.grace.filter(|_| unset("grace")) {
        cli.grace = humantime::parse_duration(&v).map_err(|e| {
            anyhow::anyhow!(
                "{}: grace: {e}; write it like \"120s\" or \"2m\"",
                path.display()
            )
        })?;
    }
    if let Some(v) = file.probe_interval.filter(|_| unset("probe_interval")) {
        cli.probe_interval = humantime::parse_duration(&v).map_err(|e| {
            anyhow::anyhow!(
                "{}: probe_interval: {e}; write it like \"5m\"",
                path.display()
            )
        })?;
    }
    if let Some(v) = file
        .event_retention_days
        .filter(|_| unset("event_retention_days"))
    {
        cli.event_retention_days = v;
    }
    if let Some(v) = file.san.filter(|_| unset("sans")) {
        cli.sans = v;
    }
    if let Some(v) = file.queue.filter(|_| unset("queue")) {
        cli.queue = v;
    }
    if let Some(v) = file.client_ca.filter(|_| unset("client_ca")) {
        cli.client_ca = Some(v);
    }
    Ok(cli)
}

fn main() -> std::process::ExitCode {
    rollcall_collector::no_huge_pages();
    let _ = log::set_logger(&Stderr).map(|()| log::set_max_level(log::LevelFilter::Info));
    match parse_cli().and_then(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall-collector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = &cli.data_dir;
    create_private_dir(dir)?;
    if let Some(Sub::Token { action }) = &cli.command {
        match action {
            TokenAction::Add { name, role } => {
                let token = Tokens::add(dir, name, *role)?;
                println!("{token}");
                eprintln!("token {name:?} ({role:?}) added to {}/tokens.json; send SIGHUP to a running collector to load it", dir.display());
            }
            TokenAction::Remove { name } => {
                let role = Tokens::remove(dir, name)?;
                eprintln!("token {name:?} ({role:?}) removed from {}/tokens.json; send SIGHUP to a running collector to apply it", dir.display());
            }
            TokenAction::List => {
                for (name, role) in Tokens::load_or_init(dir)?.0.list() {
                    println!("{name}\t{role:?}");
                }
            }
        }
        return Ok(());
    }
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

    let up_since = Utc::now();
    let db = dir.join("rollcall.db");
    let writer_store = SqliteStore::open(&db)?;
    let reader_store = SqliteStore::open(&db)?;
    let policy = Policy {
        grace: cli.grace,
        probe_interval: cli.probe_interval.max(Duration::from_secs(1)),
        ..Policy::default()
    };
    let credentials = Credentials::load(writer_store.load_credentials()?);
    let mut registry = Registry::new(policy, up_since);
    registry.load(writer_store.load_hosts()?, up_since);
    log::info!(
        "loaded {} hosts from {}; flagging nobody before {}",
        registry.len(),
        db.display(),
        (up_since + chrono::Duration::from_std(cli.grace).unwrap_or_default()).to_rfc3339()
    );
    let registry = Arc::new(Mutex::new(registry));
    let metrics = Arc::new(Metrics::default());

    let (reg, m) = (registry.clone(), metrics.clone());
    let (ingest, _writer) = Ingest::start(writer_store, cli.queue, 4096, move |done| {
        m.committed(
            done.records.len(),
            done.took,
            done.stats.events_new,
            done.stats.events_duplicate,
        );
        let mut r = reg.lock().unwrap_or_else(|p| p.into_inner());
        for rec in done.heartbeats() {
            if let Some(t) = r.apply(rec) {
                announce(&t, &m);
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
        tokio::spawn(sweeper(
            registry.clone(),
            metrics.clone(),
            app.ingest.clone(),
        ));
        tokio::spawn(retention(app.clone(), cli.event_retention_days));
        tokio::spawn(reload_tokens_on_hup(app.clone(), dir.clone()));
        // Under systemd (Type=notify): ready once the socket is bound and state loaded.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        server::serve(
            listener,
            tls_config,
            api::router(app.clone()),
            metrics.clone(),
            shutdown(),
        )
        .await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        log::info!("stopping");
        anyhow::Ok(())
    })
}

/// Flags hosts at their deadlines: sleeps until the next possible change (at most half a
/// second, so an earlier deadline added meanwhile is not missed), then re-judges what is due.
async fn sweeper(registry: Arc<Mutex<Registry>>, metrics: Arc<Metrics>, ingest: Ingest) {
    let mut lost = 0u64;
    loop {
        let next = registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_change();
        let wait = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(500));
        tokio::time::sleep(wait).await;
        let (changes, notes) = {
            let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
            (r.sweep(Utc::now()), r.take_notes())
        };
        for t in changes {
            announce(&t, &metrics);
        }
        // History lines are written in the next group commit, not waited for.
        for n in notes {
            if ingest.submit(n).is_err() {
                lost += 1;
                if lost.is_power_of_two() {
                    log::warn!("ingest queue full: {lost} host history lines not recorded so far");
                }
            }
        }
    }
}

/// Counts a state change and logs it (a host's first contact is counted, not logged).
fn announce(t: &Transition, metrics: &Metrics) {
    metrics.transition(t.to);
    if let Some(from) = t.from {
        log::info!("host {} {} -> {}: {}", t.host, from, t.to, t.reason);
    }
}

/// SIGHUP: read `tokens.json` again (after `rollcall-collector token add`). A broken file
/// is reported and the tokens in force are kept.
async fn reload_tokens_on_hup(app: Arc<App>, dir: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match Tokens::load_or_init(&dir) {
            Ok((t, _)) => {
                *app.tokens.write().unwrap_or_else(|p| p.into_inner()) = t;
                log::info!("tokens reloaded from {}/tokens.json", dir.display());
            }
            Err(e) => log::warn!("tokens not reloaded, the old ones stay in force: {e}"),
        }
    }
}

/// Deletes old agent events once an hour.
async fn retention(app: Arc<App>, days: u32) {
    loop {
        let before = Utc::now() - chrono::Duration::days(days as i64);
        let pruned = app
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prune_events(before);
        match pruned {
            Ok(0) => {}
            Ok(n) => log::info!("deleted {n} events older than {days} days"),
            Err(e) => log::warn!("event retention: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
