use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use rollcall_collector::auth::{self, Credentials, Tokens};
use rollcall_collector::clock::{Clock, SystemClock};
use rollcall_collector::command::{cert, create_private_dir, first_start, token, Cli, Stderr, Sub};
use rollcall_collector::config::{Config, EX_CONFIG};
use rollcall_collector::http::{self, App};
use rollcall_collector::ingest::Ingest;
use rollcall_collector::metrics::Metrics;
use rollcall_collector::notify::Notifier;
use rollcall_collector::registry::Registry;
use rollcall_collector::replica::{self, Replica};
use rollcall_collector::state::{Lifecycle, Policy};
use rollcall_collector::store::{self, Store};
use rollcall_collector::{lock, retention, server, sweeper, tls};

/// The API allocates per request (TLS records, JSON, events): on the load generator the
/// collector did 28–33k durable heartbeats/s with mimalloc, 26–29k with glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rollcall_collector::no_huge_pages();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    Stderr::install(cli.log_level);
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
                "configuration ok: listen {}, data_dir {}, store {}",
                config.listen,
                config.data_dir.display(),
                config.store.describe(&config.data_dir)
            );
            for r in &config.notify.receivers {
                // Only the host: a Slack webhook URL is itself a secret.
                let host = url::Url::parse(&r.url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                println!(
                    "receiver {}: {} to {host}{}",
                    r.name,
                    r.kind.as_str(),
                    if r.secret.is_some() {
                        " (secret read)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Some(Sub::Token { action }) => token(&config.data_dir, action),
        Some(Sub::Cert { action }) => {
            cert(&config.data_dir, &config.sans, config.cert_validity, action)
        }
        Some(Sub::Store { action }) => rollcall_collector::command::store(&config, action),
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

/// Opens a connection with `open`; a PostgreSQL server that cannot be reached (down,
/// starting, refusing the password) is said and tried again, with the wait doubling to 30 s,
/// and systemd told so rather than left to time the start out. A database this binary
/// cannot use (newer schema, unreadable values) ends the start.
fn patiently<T>(
    backend: &store::Backend,
    dir: &std::path::Path,
    open: impl Fn() -> Result<T, store::StoreError>,
) -> anyhow::Result<T> {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match open() {
            Ok(s) => return Ok(s),
            Err(e @ store::StoreError::Postgres { .. }) => {
                let said = format!("{}; trying again in {}s", e.sentence(), wait.as_secs());
                log::warn!("{said}");
                let _ = sd_notify::notify(&[
                    sd_notify::NotifyState::Status(&said),
                    sd_notify::NotifyState::ExtendTimeoutUsec(
                        (wait.as_micros() as u32).saturating_add(30_000_000),
                    ),
                ]);
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => {
                return Err(anyhow::Error::msg(e.sentence()))
                    .with_context(|| format!("opening {}", backend.describe(dir)))
            }
        }
    }
}

fn run(cli: Config) -> anyhow::Result<()> {
    let dir = &cli.data_dir;
    // Everything the collector creates is its own: the database, its journal, keys.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    create_private_dir(dir)?;
    let names = tls::names_for_this_host(&cli.sans);
    tls::ensure(dir, &names, cli.cert_validity)?;
    let served = Arc::new(tls::Served::load(dir)?);
    match served.renew_if_due(&names, cli.cert_validity, chrono::Utc::now()) {
        Ok(Some(said)) => log::info!("{said}"),
        Ok(None) => {}
        Err(e) => log::warn!("{e}"),
    }
    let tls_config = tls::server_config(served.clone(), cli.client_ca.as_deref())?;
    let (tokens, new_admin) = Tokens::load_or_init(dir)?;
    let sessions = rollcall_collector::dashboard::Sessions::load_or_init(dir)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let up_since = clock.now();
    let replica = match &cli.store {
        store::Backend::Postgres(_) => Replica::shared(),
        store::Backend::Sqlite => Replica::alone(),
    };
    let writer_store = patiently(&cli.store, dir, || store::open(&cli.store, dir, &replica))?;
    let reader_store = patiently(&cli.store, dir, || store::open(&cli.store, dir, &replica))?;
    let policy = Policy {
        grace: cli.grace,
        probe_interval: cli.probe_interval,
        ..Policy::default()
    };
    let notifier = Arc::new(
        Notifier::new(
            cli.notify.clone(),
            patiently(&cli.store, dir, || {
                store::open_incidents(&cli.store, dir, &replica)
            })?,
            external_url(&cli.listen),
            replica.clone(),
        )
        .map_err(anyhow::Error::msg)?,
    );
    let engine = notifier.engine()?;
    let inventory = Arc::new(rollcall_collector::inventory::Watch::new(
        cli.inventory.clone(),
    ));
    match inventory.load(up_since) {
        Ok(0) => {}
        Ok(n) => log::info!("inventory: {n} devices"),
        // Not fatal: the collector runs without it, says why, and reads it again when
        // the file changes.
        Err(e) => log::warn!("{e}"),
    }
    // Following the other collectors starts from before the load: what committed
    // before it is in what is loaded, the rest comes through the feed.
    if let store::Backend::Postgres(t) = &cli.store {
        patiently(&cli.store, dir, || {
            replica::start_position(&replica, t).map_err(|source| store::StoreError::Postgres {
                target: t.shown.clone(),
                source,
            })
        })?;
    }
    let credentials = Credentials::load(writer_store.load_credentials()?);
    let mut registry = Registry::new(policy, up_since);
    registry.load(writer_store.load_hosts()?, up_since);
    log::info!(
        "loaded {} hosts from {}; flagging nobody before {}",
        registry.len(),
        cli.store.describe(dir),
        (up_since + chrono::Duration::from_std(cli.grace).unwrap_or_default()).to_rfc3339()
    );
    if let Some(inv) = inventory.current() {
        registry.apply_inventory(inv, up_since);
    }
    let registry = Arc::new(Mutex::new(registry));
    let metrics = Arc::new(Metrics::default());

    // The registry follows what is durable: updated from each commit, on the writer thread.
    let (reg, m) = (registry.clone(), metrics.clone());
    let (ingest, _writer) = Ingest::start(writer_store, cli.queue, 4096, move |done| {
        m.store_ok();
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
        secret_rate: Mutex::new(Default::default()),
        secret_limit: http::Rate::per_secret(cli.enroll_rate),
        ready: Default::default(),
        require_client_cert: cli.client_ca.is_some(),
        clock: clock.clone(),
        notifier: notifier.clone(),
        inventory: inventory.clone(),
        connections: Default::default(),
        refusals: Default::default(),
        tls: served.clone(),
        sessions,
        replica: replica.clone(),
    });
    if let store::Backend::Postgres(t) = &cli.store {
        let (r, t2) = (replica.clone(), (**t).clone());
        std::thread::Builder::new()
            .name("leader-election".into())
            .spawn(move || replica::run_election(r, t2, |_, _| {}))
            .context("starting the leader election thread")?;
        let (r, t2, a) = (replica.clone(), (**t).clone(), app.clone());
        std::thread::Builder::new()
            .name("change-feed".into())
            .spawn(move || replica::run_follower(r, t2, |e| follow(&a, e), || reload(&a)))
            .context("starting the change feed thread")?;
    }
    let limits = server::Limits::new(cli.max_connections, cli.header_timeout);
    log::info!(
        "at most {} connections, headers within {:?}",
        limits.max_connections,
        limits.header_timeout
    );

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
        if new_admin.is_some() {
            first_start(&addr, dir);
        }
        tokio::spawn(sweeper::run(
            registry.clone(),
            metrics.clone(),
            app.ingest.clone(),
            clock.clone(),
        ));
        tokio::spawn(retention::run(app.clone(), cli.event_retention_days));
        tokio::spawn(notifier.clone().run_incidents(
            engine,
            registry.clone(),
            inventory.clone(),
            clock.clone(),
        ));
        tokio::spawn(inventory.clone().run(registry.clone(), clock.clone()));
        for i in 0..notifier.config.receivers.len() {
            tokio::spawn(notifier.clone().run_receiver(i, clock.clone()));
        }
        tokio::spawn(auth::reload_on_hup(app.clone(), dir.clone()));
        tokio::spawn(tls::run_renewal(
            served.clone(),
            names.clone(),
            cli.cert_validity,
            clock.clone(),
        ));
        let a = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(15)).await;
                a.say_refusals(a.now());
            }
        });
        // Under systemd (Type=notify): ready once the socket is bound and state loaded.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        server::serve(
            listener,
            tls_config,
            http::router(app.clone()),
            metrics.clone(),
            limits,
            app.connections.clone(),
            rollcall_support::shutdown_signal(),
        )
        .await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        log::info!("stopping");
        anyhow::Ok(())
    })
}

/// Every host and credential loaded from the store again, into the registry and the
/// credentials in force; how many hosts.
fn reload(app: &App) -> Result<usize, String> {
    let (hosts, creds) = {
        let s = lock(&app.store);
        (
            s.load_hosts().map_err(|e| e.sentence())?,
            s.load_credentials().map_err(|e| e.sentence())?,
        )
    };
    let n = hosts.len();
    *app.credentials.write().unwrap_or_else(|e| e.into_inner()) = Credentials::load(creds);
    lock(&app.registry).load(hosts, app.now());
    Ok(n)
}

/// Applies what another collector wrote to this one's registry and credentials.
fn follow(app: &App, e: &store::feed::Entry) {
    use store::feed::Change;
    let now = app.now();
    for c in &e.changes {
        match c {
            Change::Host {
                host,
                identity,
                at,
                interval,
                labels,
                health,
                reason,
                state,
                fp,
                booted_at,
            } => {
                let state_json = match serde_json::from_str(state) {
                    Ok(s) => store::StateJson::Parsed(Arc::new(s)),
                    Err(_) => store::StateJson::Same,
                };
                let rec = store::HeartbeatRecord {
                    host: host.clone(),
                    identity: identity.clone(),
                    received_at: *at,
                    interval_secs: *interval,
                    labels: labels.clone(),
                    health: *health,
                    reason: reason.clone(),
                    state_json,
                    state_fingerprint: *fp,
                    events: Vec::new(),
                    booted_at: *booted_at,
                };
                if let Some(t) = lock(&app.registry).apply(&rec) {
                    sweeper::announce(&t, &app.metrics);
                }
            }
            Change::Heard { host, at } => {
                if let Some(t) = lock(&app.registry).heard(host, *at) {
                    sweeper::announce(&t, &app.metrics);
                }
            }
            Change::Credential(r) => {
                app.credentials
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply(r);
            }
            Change::Maintenance { host, until } => {
                if let Some(Some(t)) = lock(&app.registry).set_maintenance(host, until.clone(), now)
                {
                    sweeper::announce(&t, &app.metrics);
                }
            }
            Change::Lifecycle { host, lifecycle } => {
                let l = lifecycle.as_deref().and_then(Lifecycle::parse);
                if let Some(Some(t)) = lock(&app.registry).set_lifecycle(host, l, now) {
                    sweeper::announce(&t, &app.metrics);
                }
            }
        }
    }
}

/// The collector's address in links: its listen address, or this host's name when it
/// listens on every address.
fn external_url(listen: &std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        let host = rollcall_collector::host_name().unwrap_or_else(|| "localhost".into());
        format!("https://{host}:{}", listen.port())
    } else {
        format!("https://{listen}")
    }
}
