use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures_util::future::{join_all, LocalBoxFuture};
use rollcall_agent::checks::bmc::probe::{self, ProbeConfig};
use rollcall_agent::checks::{besclient, nessusd};
use rollcall_agent::cli::{Cli, Command};
use rollcall_agent::clock::{Clock, SystemClock};
use rollcall_agent::config::{Config, EX_CONFIG};
use rollcall_agent::events::EventLog;
use rollcall_agent::identity::HostIdentity;
use rollcall_agent::publish::Board;
use rollcall_agent::report::{self, Reporter};
use rollcall_agent::{doctor, logging, pause};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { config } => load_strict(&config).map_or_else(
            |code| code,
            |_| {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            },
        ),
        Command::Run {
            config,
            log_format,
            log_level,
        } => load(&config).map_or_else(
            |code| code,
            |config| {
                logging::init(log_format, log_level);
                report(run(config))
            },
        ),
        Command::Doctor { config, json } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime()
                .and_then(|rt| rt.block_on(doctor::collect(&config, Arc::new(SystemClock))))
            {
                Ok(r) => ExitCode::from(r.print(json)),
                Err(e) => report(Err(e)),
            }
        }
        Command::Pause {
            config,
            duration,
            reason,
        } => load(&config).map_or_else(
            |code| code,
            |config| {
                report(pause::pause_for(
                    &config.state_dir,
                    SystemClock.now(),
                    duration,
                    reason,
                ))
            },
        ),
        Command::Resume { config } => load(&config).map_or_else(
            |code| code,
            |config| report(pause::resume(&config.state_dir)),
        ),
        Command::ProbeBmc {
            address,
            port,
            tries,
            spacing,
            rate,
            json,
        } => {
            let cfg = ProbeConfig {
                port,
                tries: tries.max(1),
                spacing,
                rate: rate.max(1),
                ..ProbeConfig::default()
            };
            match runtime() {
                Ok(rt)
                    if probe::print_verdicts(
                        &rt.block_on(probe::probe_all(&address, &cfg)).0,
                        json,
                    ) =>
                {
                    ExitCode::SUCCESS
                }
                Ok(_) => ExitCode::from(1),
                Err(e) => report(Err(e)),
            }
        }
    }
}

/// The config, or exit 78. `check-config` is strict: a broken `[collector]` fails it
/// too, where the daemon and doctor go on without reporting.
fn load_strict(path: &std::path::Path) -> Result<Config, ExitCode> {
    config_or_exit(Config::load_strict(path))
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config_or_exit(Config::load(path))
}

fn config_or_exit(c: Result<Config, rollcall_support::ConfigError>) -> Result<Config, ExitCode> {
    c.map_err(|e| {
        eprintln!("rollcall-agent: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: the agent waits on a handful of fds and timers.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// The daemon: every supervised check, the board their states meet on, the reporter.
fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state_dir {}", config.state_dir.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let watchdog = sd_notify::watchdog_enabled().map(|every| every / 2);
    runtime()?.block_on(async {
        log::info!(target: "agent", "rollcall-agent {} started; state in {}", env!("CARGO_PKG_VERSION"), config.state_dir.display());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let problem = report::Problem::default();
        if let Some(p) = &config.collector_problem {
            let why = format!("reporting is off: {p}; supervision and healing go on; fix the file and restart the agent");
            log::error!(target: "agent", "{why}");
            *rollcall_agent::lock(&problem) = Some(why);
        }
        let reporter = match &config.collector {
            Some(_) => HostIdentity::load(&config.state_dir, config.host.name.as_deref())
                .context("establishing this host's identity")
                .and_then(|me| Reporter::new(&config, me, clock.clone(), problem.clone()))
                .map(Some)
                .unwrap_or_else(|e| {
                    // Reporting is what failed; supervising must not.
                    let why = format!("reporting is off: {e:#}; supervision and healing go on; fix it and restart the agent");
                    log::error!(target: "agent", "{why}");
                    *rollcall_agent::lock(&problem) = Some(why);
                    None
                }),
            None if config.collector_problem.is_some() => None,
            None => {
                log::info!(target: "agent", "no [collector] configured: supervising without reporting");
                None
            }
        };
        let (events, reporting, reporter) = match reporter {
            Some((reporter, first_seq)) => {
                let (outlet, inlet) = report::channel(first_seq);
                let task = tokio::spawn(reporter.run(inlet, until(stopped.clone())));
                (outlet.event_log(), Some(outlet.state), Some(task))
            }
            None => (EventLog::new(), None, None),
        };
        let board = Board::new(config.state_dir.clone(), events.clone(), clock.clone(), reporting)
            .with_reporting_problem(problem);
        let outlet = (board, events);
        // One line per supervised daemon.
        let mut supervising: Vec<LocalBoxFuture<()>> = vec![Box::pin(
            besclient::supervisor(&config, clock.clone())?
                .with_watchdog(watchdog)
                .with_outlet(outlet.0.clone(), outlet.1.clone())
                .run(until(stopped.clone())),
        )];
        if config.nessusd.enabled {
            supervising.push(Box::pin(
                nessusd::supervisor(&config, clock.clone())?
                    .with_outlet(outlet.0.clone(), outlet.1.clone())
                    .run(until(stopped.clone())),
            ));
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let signalled = async {
            rollcall_support::shutdown_signal().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            let _ = stop.send(true);
        };
        futures_util::future::join(join_all(supervising), signalled).await;
        if let Some(r) = reporter {
            // It only has to put what it holds on disk.
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        log::info!(target: "agent", "rollcall-agent stopped");
        Ok(())
    })
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn until(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
