use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rollcall_agent::checks::besclient::Supervisor;
use rollcall_agent::checks::nessusd::NessusdSupervisor;
use rollcall_agent::clock::{Clock, SystemClock};
use rollcall_agent::config::{Config, EX_CONFIG};
use rollcall_agent::identity::HostIdentity;
use rollcall_agent::manager::ServiceManager;
use rollcall_agent::report::{self, Reporter};
use rollcall_agent::{doctor, logging, pause, state};

const DEFAULT_CONFIG: &str = "/etc/rollcall/agent.toml";

#[derive(Parser)]
#[command(
    name = "rollcall-agent",
    version,
    about = "Keeps the BigFix client alive on this host and reports its health"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise and heal (the daemon systemd runs).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// auto: journald when started by systemd, else text on stderr.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: logging::Format,
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

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("rollcall-agent: {e}");
        ExitCode::from(EX_CONFIG as u8)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config, log_format } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            logging::init(log_format, log::LevelFilter::Info);
            report(run(config))
        }
        Command::Doctor { config, json } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match doctor(config) {
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        print!("{}", r.human());
                    }
                    ExitCode::from(r.exit_code() as u8)
                }
                Err(e) => report(Err(e)),
            }
        }
        Command::Pause {
            config,
            duration,
            reason,
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let until = SystemClock.now()
                + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
            let p = pause::Pause { until, reason };
            report(
                pause::set(&config.state_dir, &p)
                    .with_context(|| {
                        format!("writing {}", pause::path(&config.state_dir).display())
                    })
                    .map(|()| {
                        println!("remediation paused until {}", until.to_rfc3339());
                    }),
            )
        }
        Command::ProbeBmc {
            address,
            port,
            tries,
            spacing,
            rate,
            json,
        } => {
            use rollcall_agent::checks::bmc::probe::{probe_all, ProbeConfig, Reach};
            let cfg = ProbeConfig {
                port,
                tries: tries.max(1),
                spacing,
                rate: rate.max(1),
                ..ProbeConfig::default()
            };
            let results = match runtime() {
                Ok(rt) => rt.block_on(probe_all(&address, &cfg)).0,
                Err(e) => return report(Err(e)),
            };
            let mut all = true;
            for (ip, r) in &results {
                all &= r.reachable();
                let (via, detail) = match r {
                    Reach::Asf { rtt, ipmi } => (
                        "asf",
                        format!(
                            "answered an ASF Presence Ping in {:.1} ms{}",
                            rtt.as_secs_f64() * 1e3,
                            if *ipmi { "; supports IPMI" } else { "" }
                        ),
                    ),
                    Reach::Ipmi { rtt } => (
                        "ipmi",
                        format!(
                            "ignored ASF; answered IPMI Get Channel Authentication Capabilities in {:.1} ms",
                            rtt.as_secs_f64() * 1e3
                        ),
                    ),
                    Reach::Unreachable { reason } => ("none", reason.clone()),
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"address": ip, "reachable": r.reachable(), "via": via, "detail": detail})
                    );
                } else {
                    let word = if r.reachable() {
                        "reachable"
                    } else {
                        "UNREACHABLE"
                    };
                    println!("{ip}: {word}: {detail}");
                }
            }
            if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Resume { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            report(
                pause::clear(&config.state_dir)
                    .context("removing the pause")
                    .map(|had| {
                        println!(
                            "{}",
                            if had {
                                "remediation resumed"
                            } else {
                                "remediation was not paused"
                            }
                        );
                    }),
            )
        }
    }
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

fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state_dir {}", config.state_dir.display()))?;
    let manager = ServiceManager::from_config(&config.besclient)?;
    let watchdog = sd_notify::watchdog_enabled().map(|every| every / 2);
    runtime()?.block_on(async {
        let mut supervisor =
            Supervisor::new(&config, manager, SystemClock).with_watchdog(watchdog);
        log::info!(target: "agent", "rollcall-agent {} started; state in {}", env!("CARGO_PKG_VERSION"), config.state_dir.display());
        let mut nessusd = if config.nessusd.enabled {
            let manager = ServiceManager::for_nessusd(&config.nessusd)?;
            Some(NessusdSupervisor::new(&config, manager, SystemClock)?)
        } else {
            None
        };
        let (stop_reporting, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut reporting = None;
        if config.collector.is_some() {
            let me = HostIdentity::load(&config.state_dir, config.host.name.as_deref())
                .context("establishing this host's identity")?;
            let (reporter, first_seq) = Reporter::new(&config, me, SystemClock)?;
            let (outlet, inlet) = report::channel(first_seq);
            supervisor = supervisor.with_outlet(outlet.state.clone(), outlet.event_log());
            if let Some(n) = nessusd.take() {
                nessusd = Some(n.with_outlet(outlet.nessusd.clone(), outlet.event_log()));
            }
            reporting = Some(tokio::spawn(reporter.run(inlet, async {
                let _ = stopped.await;
            })));
        } else {
            log::info!(target: "agent", "no [collector] configured: supervising without reporting");
        }
        let watching_nessusd =
            nessusd.map(|n| tokio::spawn(n.run(std::future::pending::<()>())));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        supervisor.run(shutdown()).await;
        if let Some(n) = watching_nessusd {
            n.abort();
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = stop_reporting.send(());
        if let Some(r) = reporting {
            // It only has to put what it holds on disk.
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        log::info!(target: "agent", "rollcall-agent stopped");
        Ok(())
    })
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

fn doctor(config: Config) -> anyhow::Result<doctor::Report> {
    let manager = ServiceManager::from_config(&config.besclient)?;
    let rt = runtime()?;
    let besclient = rt.block_on(async {
        Supervisor::new(&config, manager, SystemClock)
            .observe_once()
            .await
    });
    let nessusd = if config.nessusd.enabled {
        use rollcall_agent::checks::nessusd::status::{judge, Prober};
        let prober = Prober::new(&config.nessusd.status_url, Duration::from_secs(5))?;
        let status = rt.block_on(prober.status());
        let free = rollcall_agent::disk::check(std::path::Path::new("/opt/nessus"))
            .map(|d| (d.path, d.avail_bytes));
        let (health, reason) = judge(&status, free);
        Some(doctor::NessusdCheck { health, reason })
    } else {
        None
    };
    let (agent, agent_note) = match state::read(&config.state_dir) {
        Ok(s) if rollcall_agent::process::Proc::get(s.pid).is_some() => (Some(s), None),
        Ok(s) => (
            None,
            Some(format!(
                "not running (last state written by pid {} at {})",
                s.pid,
                s.state.at.to_rfc3339()
            )),
        ),
        Err(e) => (None, Some(format!("no state yet ({e})"))),
    };
    let inband = rt.block_on(rollcall_agent::checks::bmc::inband::check(
        &config.bmc.device,
        &config.bmc.ipmitool,
        Duration::from_secs(10),
    ));
    let bmc = inband.into_state(chrono::Utc::now());
    let health = nessusd
        .as_ref()
        .map_or(besclient.health, |n| n.health.max(besclient.health))
        .max(bmc.health);
    Ok(doctor::Report {
        health,
        besclient,
        nessusd,
        bmc,
        agent,
        agent_note,
    })
}
