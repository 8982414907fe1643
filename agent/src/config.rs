//! `/etc/rollcall/agent.toml`: parsed once into typed, validated values.
//!
//! Unknown keys are errors, durations are human (`90s`, `2m`, `1h`), and every error names
//! the file, the line, the key and what to write instead.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_spanned::Spanned;

pub use crate::checks::besclient::config::BesclientConfig;
use crate::checks::besclient::config::RawBesclient;
pub use crate::checks::bmc::config::{BmcConfig, ScannerConfig};
use crate::checks::bmc::config::{RawBmc, RawScanner};
pub use crate::checks::nessusd::config::NessusdConfig;
use crate::checks::nessusd::config::RawNessusd;
pub use crate::report::config::CollectorConfig;
use crate::report::config::RawCollector;

pub use rollcall_support::EX_CONFIG;

/// The agent's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the agent keeps its identity, credential, pause flag and last state.
    pub state_dir: PathBuf,
    pub host: HostConfig,
    pub collector: Option<CollectorConfig>,
    /// What is wrong with `[collector]`, located, if anything. The agent then supervises
    /// without reporting (a bootstrap that stopped half-way must not leave the BigFix
    /// client unsupervised); `check-config` and `doctor` fail on it.
    pub collector_problem: Option<String>,
    pub besclient: BesclientConfig,
    pub remediation: RemediationConfig,
    pub nessusd: NessusdConfig,
    pub bmc: BmcConfig,
    pub scanner: ScannerConfig,
}

#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The name this host reports as; default: the kernel's hostname.
    pub name: Option<String>,
    /// Free-form labels (`env`, `region`, `zone`, `role`) the collector filters and groups by.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerKind {
    /// systemd when booted with it, else the SysV init script, else configured commands.
    Auto,
    Systemd,
    Sysv,
    Command,
}

#[derive(Debug, Clone)]
pub struct RemediationConfig {
    /// `false`: observe and report only.
    pub enabled: bool,
    /// At most this many restarts/starts within `per`.
    pub max_restarts: u32,
    pub per: Duration,
    /// The first wait after an exhausted ladder; doubles each round up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Last-resort argv (e.g. re-run bootstrap); empty = no reinstall step.
    pub reinstall: Vec<String>,
}

pub use rollcall_support::ConfigError;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(path, &ConfigError::read(path)?)
    }

    /// The configuration used when no file is given: every documented default.
    pub fn defaults() -> Config {
        match Config::parse(Path::new("<defaults>"), "") {
            Ok(c) => c,
            // The empty document is valid by construction; tests pin this.
            Err(e) => panic!("built-in defaults are invalid: {e}"),
        }
    }

    /// Parses config text; `path` is only used in error messages. What is wrong with
    /// `[collector]` is kept in [`Config::collector_problem`], not returned.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let (mut c, problem) = Config::parse_all(path, text)?;
        c.collector_problem = problem.map(|e| e.to_string());
        Ok(c)
    }

    /// As [`Config::load`], but a problem in `[collector]` is an error too: `check-config`.
    pub fn load_strict(path: &Path) -> Result<Config, ConfigError> {
        Config::parse_strict(path, &ConfigError::read(path)?)
    }

    /// As [`Config::parse`], but a problem in `[collector]` is an error too.
    pub fn parse_strict(path: &Path, text: &str) -> Result<Config, ConfigError> {
        match Config::parse_all(path, text)? {
            (_, Some(e)) => Err(e),
            (c, None) => Ok(c),
        }
    }

    fn parse_all(path: &Path, text: &str) -> Result<(Config, Option<ConfigError>), ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            located(path, text, span, e.message().to_owned())
        })?;
        let (c, problem) = raw
            .validate()
            .map_err(|(span, msg)| located(path, text, span, msg))?;
        Ok((c, problem.map(|(span, msg)| located(path, text, span, msg))))
    }
}

fn located(path: &Path, text: &str, span: Range<usize>, message: String) -> ConfigError {
    ConfigError::at(path, text, span, message)
}

impl fmt::Display for ManagerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ManagerKind::Auto => "auto",
            ManagerKind::Systemd => "systemd",
            ManagerKind::Sysv => "sysv",
            ManagerKind::Command => "command",
        })
    }
}

/// A duration written for humans: `90s`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration \"{s}\" ({e}); write it like \"90s\", \"2m\" or \"1h\""
                ))
            })
    }
}

pub(crate) type Span = Range<usize>;
/// A validation failure: where in the file, and what to write instead.
pub(crate) type Invalid = (Span, String);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<Spanned<PathBuf>>,
    #[serde(default)]
    host: RawHost,
    collector: Option<Spanned<RawCollector>>,
    #[serde(default)]
    besclient: RawBesclient,
    #[serde(default)]
    remediation: RawRemediation,
    #[serde(default)]
    nessusd: RawNessusd,
    #[serde(default)]
    bmc: RawBmc,
    #[serde(default)]
    scanner: RawScanner,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRemediation {
    enabled: Option<bool>,
    max_restarts: Option<Spanned<u32>>,
    per: Option<Spanned<HumanDuration>>,
    backoff_base: Option<Spanned<HumanDuration>>,
    backoff_max: Option<Spanned<HumanDuration>>,
    reinstall: Option<Spanned<Vec<String>>>,
}

/// The keys every managed service's section has, as written.
pub(crate) struct RawManaged {
    pub service: Option<Spanned<String>>,
    pub manager: Option<Spanned<ManagerKind>>,
    pub init_script: Option<Spanned<PathBuf>>,
    pub start: Option<Spanned<Vec<String>>>,
    pub stop: Option<Spanned<Vec<String>>>,
    pub command_timeout: Option<Spanned<HumanDuration>>,
}

impl RawManaged {
    /// `section`'s service, `default_service` unless named.
    pub(crate) fn validate(
        self,
        section: &'static str,
        default_service: &str,
    ) -> Result<crate::manager::Managed, Invalid> {
        let service = service_name(self.service, default_service)?;
        let init_default = format!("/etc/init.d/{service}");
        let start = argv(self.start, "start")?;
        let manager = manager_kind(self.manager, &start, section, &init_default)?;
        Ok(crate::manager::Managed {
            section,
            manager,
            init_script: absolute(self.init_script, &init_default, "init_script")?,
            start,
            stop: argv(self.stop, "stop")?,
            command_timeout: duration(
                self.command_timeout,
                Duration::from_secs(90),
                Duration::from_secs(1),
            )?
            .0,
            service,
        })
    }
}

/// A plain service name (a unit or init script name), `default` when unset.
fn service_name(v: Option<Spanned<String>>, default: &str) -> Result<String, Invalid> {
    match v {
        None => Ok(default.to_owned()),
        Some(s) => {
            let span = s.span();
            let s = s.into_inner();
            if s.is_empty() || s.contains('/') || s.contains(char::is_whitespace) {
                return Err((
                    span,
                    format!("service \"{s}\" must be a plain service name such as \"{default}\""),
                ));
            }
            Ok(s)
        }
    }
}

/// The manager kind, and with `command` the start command it needs.
fn manager_kind(
    v: Option<Spanned<ManagerKind>>,
    start: &[String],
    section: &str,
    init_script: &str,
) -> Result<ManagerKind, Invalid> {
    let (manager, span) = match v {
        None => (ManagerKind::Auto, 0..0),
        Some(m) => (*m.get_ref(), m.span()),
    };
    if manager == ManagerKind::Command && start.is_empty() {
        return Err((
            span,
            format!("manager = \"command\" needs {section}.start (and usually {section}.stop), e.g. start = [\"{init_script}\", \"start\"]"),
        ));
    }
    Ok(manager)
}

pub(crate) fn absolute(
    v: Option<Spanned<PathBuf>>,
    default: &str,
    what: &str,
) -> Result<PathBuf, Invalid> {
    match v {
        None => Ok(PathBuf::from(default)),
        Some(s) if s.get_ref().is_absolute() => Ok(s.into_inner()),
        Some(s) => Err((
            s.span(),
            format!(
                "{what} must be an absolute path, got \"{}\"; write it from / (default \"{default}\")",
                s.get_ref().display()
            ),
        )),
    }
}

pub(crate) fn duration(
    v: Option<Spanned<HumanDuration>>,
    default: Duration,
    min: Duration,
) -> Result<(Duration, Span), Invalid> {
    match v {
        None => Ok((default, 0..0)),
        Some(s) => {
            let span = s.span();
            let d = s.into_inner().0;
            if d < min {
                Err((
                    span,
                    format!(
                        "{} is too short; use at least {}",
                        humantime::format_duration(d),
                        humantime::format_duration(min)
                    ),
                ))
            } else {
                Ok((d, span))
            }
        }
    }
}

/// A command is an argv: an absolute, existing, executable program and its arguments.
pub(crate) fn argv(v: Option<Spanned<Vec<String>>>, what: &str) -> Result<Vec<String>, Invalid> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let span = v.span();
    let argv = v.into_inner();
    let Some(program) = argv.first() else {
        return Ok(argv);
    };
    let p = Path::new(program);
    if !p.is_absolute() {
        return Err((
            span,
            format!("{what}: program \"{program}\" must be an absolute path (commands run without a shell or PATH search)"),
        ));
    }
    match std::fs::metadata(p) {
        Ok(m)
            if m.is_file()
                && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0 =>
        {
            Ok(argv)
        }
        Ok(_) => Err((
            span,
            format!("{what}: \"{program}\" is not an executable file; chmod +x it or fix the path"),
        )),
        Err(e) => Err((
            span,
            format!("{what}: cannot use \"{program}\": {e}; install it or fix the path"),
        )),
    }
}

impl RawConfig {
    /// The configuration, and what is wrong with `[collector]` if anything.
    fn validate(self) -> Result<(Config, Option<Invalid>), Invalid> {
        let state_dir = absolute(self.state_dir, "/var/lib/rollcall", "state_dir")?;

        let host_name = match self.host.name {
            None => None,
            Some(n) if rollcall_proto::valid_host_name(n.get_ref()) => Some(n.into_inner()),
            Some(n) => {
                return Err((
                    n.span(),
                    format!(
                        "host name \"{}\" must be {}",
                        n.get_ref(),
                        rollcall_proto::HOST_NAME_RULE
                    ),
                ))
            }
        };

        let r = self.remediation;
        let max_restarts = match r.max_restarts {
            None => 5,
            Some(m) if *m.get_ref() == 0 => {
                return Err((
                    m.span(),
                    "max_restarts = 0 would never restart; to observe only, set remediation.enabled = false".to_owned(),
                ))
            }
            Some(m) => m.into_inner(),
        };
        let (per, _) = duration(r.per, Duration::from_secs(3600), Duration::from_secs(1))?;
        let (backoff_base, _) = duration(
            r.backoff_base,
            Duration::from_secs(60),
            Duration::from_millis(100),
        )?;
        let (backoff_max, backoff_span) = duration(
            r.backoff_max,
            Duration::from_secs(3600),
            Duration::from_millis(100),
        )?;
        if backoff_max < backoff_base {
            return Err((
                backoff_span,
                format!(
                    "backoff_max ({}) is below backoff_base ({}); raise it",
                    humantime::format_duration(backoff_max),
                    humantime::format_duration(backoff_base)
                ),
            ));
        }
        let remediation = RemediationConfig {
            enabled: r.enabled.unwrap_or(true),
            max_restarts,
            per,
            backoff_base,
            backoff_max,
            reinstall: argv(r.reinstall, "reinstall")?,
        };

        let (collector, problem) = match crate::report::config::validate(self.collector) {
            Ok(c) => (c, None),
            Err(invalid) => (None, Some(invalid)),
        };
        let config = Config {
            state_dir,
            collector,
            collector_problem: None,
            besclient: self.besclient.validate()?,
            remediation,
            nessusd: self.nessusd.validate()?,
            bmc: self.bmc.validate()?,
            scanner: self.scanner.validate(&self.host.labels)?,
            host: HostConfig {
                name: host_name,
                labels: self.host.labels,
            },
        };
        Ok((config, problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_strict(Path::new("agent.toml"), text)
    }

    #[test]
    fn a_broken_collector_section_is_kept_apart_from_the_rest() {
        let text = "[collector]\nurl = \"https://c:8443\"\nca_file = \"/nonexistent/ca.pem\"\n[remediation]\nmax_restarts = 3\n";
        let c = Config::parse(Path::new("agent.toml"), text).unwrap();
        assert!(c.collector.is_none());
        assert_eq!(c.remediation.max_restarts, 3, "the rest is in force");
        let p = c.collector_problem.unwrap();
        assert!(
            p.starts_with("agent.toml:3:") && p.contains("/nonexistent/ca.pem"),
            "{p}"
        );
        assert!(Config::parse_strict(Path::new("agent.toml"), text).is_err());
    }

    fn invalid(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = Config::defaults();
        assert_eq!(c.state_dir, Path::new("/var/lib/rollcall"));
        assert_eq!(c.besclient.managed.service, "besclient");
        assert_eq!(c.besclient.managed.manager, ManagerKind::Auto);
        assert_eq!(
            c.besclient.managed.init_script,
            Path::new("/etc/init.d/besclient")
        );
        assert_eq!(
            c.besclient.log_dir,
            Path::new("/var/opt/BESClient/__BESData/__Global/Logs")
        );
        assert_eq!(c.besclient.stale_after, Duration::from_secs(3600));
        assert_eq!(c.besclient.verify_within, Duration::from_secs(120));
        assert_eq!(c.remediation.max_restarts, 5);
        assert!(c.remediation.enabled);
        assert!(c.collector.is_none());
        assert!(!c.nessusd.enabled);
    }

    #[test]
    fn shipped_config_states_exactly_the_built_in_defaults() {
        let text = include_str!("../../packaging/agent.toml");
        let shipped = Config::parse(Path::new("packaging/agent.toml"), text).unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::defaults()));
    }

    #[test]
    fn design_example_parses() {
        let text = r#"
state_dir = "/var/lib/rollcall"

[host]
labels = { env = "prod", region = "us-south", zone = "dal10", role = "carrier-worker" }

[besclient]
service = "besclient"
manager = "auto"
process = "/opt/BESClient/bin/BESClient"
log_dir = "/var/opt/BESClient/__BESData/__Global/Logs"
stale_after = "1h"
verify_within = "2m"
error_patterns = ["General transport failure", "GetURL failed"]

[remediation]
enabled = true
max_restarts = 5
per = "1h"
backoff_max = "1h"
reinstall = []

[nessusd]
enabled = false
status_url = "https://127.0.0.1:8834/server/status"
service = "nessusd"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.host.labels["zone"], "dal10");
        assert_eq!(c.besclient.error_patterns.len(), 2);
    }

    #[test]
    fn unknown_key_names_section_key_and_line() {
        let (line, key, msg) =
            invalid("[besclient]\nservice = \"besclient\"\nstale_afte = \"1h\"\n");
        assert_eq!(line, 3);
        assert_eq!(key, "besclient.stale_afte");
        assert!(msg.contains("unknown field"), "{msg}");
        assert!(msg.contains("stale_after"), "lists the valid keys: {msg}");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let (line, key, msg) = invalid("\n[besclient]\nstale_after = \"one hour\"\n");
        assert_eq!(line, 3);
        assert_eq!(key, "besclient.stale_after");
        assert!(msg.contains("\"90s\""), "{msg}");
    }

    #[test]
    fn nessusd_is_probed_on_loopback_only() {
        let (line, key, msg) = invalid(
            "[nessusd]\nenabled = true\nstatus_url = \"https://10.0.0.5:8834/server/status\"\n",
        );
        assert_eq!((line, key.as_str()), (3, "nessusd.status_url"));
        assert!(msg.contains("loopback"), "{msg}");
    }

    #[test]
    fn bad_manager_lists_the_choices() {
        let (_, key, msg) = invalid("[besclient]\nmanager = \"upstart\"\n");
        assert_eq!(key, "besclient.manager");
        assert!(msg.contains("systemd") && msg.contains("sysv"), "{msg}");
    }

    #[test]
    fn command_manager_needs_a_start_command() {
        let (line, key, msg) = invalid("[besclient]\nmanager = \"command\"\n");
        assert_eq!((line, key.as_str()), (2, "besclient.manager"));
        assert!(msg.contains("besclient.start"), "{msg}");
    }

    #[test]
    fn nessusd_settings_are_checked_like_besclient_ones() {
        let (line, key, msg) = invalid("[nessusd]\nenabled = true\nmanager = \"command\"\n");
        assert_eq!((line, key.as_str()), (3, "nessusd.manager"));
        assert!(msg.contains("nessusd.start"), "{msg}");
        let (_, key, _) = invalid("[nessusd]\nservice = \"nessus d\"\n");
        assert_eq!(key, "nessusd.service");
        let (_, key, msg) = invalid("[nessusd]\nprocess = \"nessus-service\"\n");
        assert_eq!(key, "nessusd.process");
        assert!(msg.contains("absolute"), "{msg}");
        let (_, key, _) = invalid("[nessusd]\ninterval = \"soon\"\n");
        assert_eq!(key, "nessusd.interval");
    }

    #[test]
    fn scanner_hosts_probe_by_their_role_label() {
        let c = parse("[host]\nlabels = { role = \"scanner\", zone = \"z1\" }\n").unwrap();
        assert!(c.scanner.enabled);
        assert_eq!(
            (c.scanner.port, c.scanner.tries, c.scanner.rate),
            (623, 3, 500)
        );
        let c = parse("[host]\nlabels = { role = \"worker\" }\n").unwrap();
        assert!(!c.scanner.enabled);
        let c = parse("[scanner]\nenabled = true\n").unwrap();
        assert!(c.scanner.enabled);
        let (_, key, msg) = invalid("[scanner]\ntries = 0\n");
        assert_eq!(key, "scanner.tries");
        assert!(msg.contains("at least 1"), "{msg}");
    }

    #[test]
    fn missing_program_is_named() {
        let (line, key, msg) =
            invalid("[remediation]\nenabled = true\nreinstall = [\"/nonexistent/rebootstrap\"]\n");
        assert_eq!((line, key.as_str()), (3, "remediation.reinstall"));
        assert!(msg.contains("/nonexistent/rebootstrap"), "{msg}");
    }

    #[test]
    fn relative_program_is_refused() {
        let (_, _, msg) = invalid(
            "[besclient]\nmanager = \"command\"\nstart = [\"service\", \"besclient\", \"start\"]\n",
        );
        assert!(msg.contains("absolute"), "{msg}");
    }

    #[test]
    fn checkin_settings_are_located_in_their_table() {
        let (line, key, msg) = invalid("[besclient.checkin]\nwarn_after = \"soon\"\n");
        assert_eq!((line, key.as_str()), (2, "besclient.checkin.warn_after"));
        assert!(msg.contains("\"90s\""), "{msg}");
        let (_, key, msg) =
            invalid("[besclient.checkin]\nwarn_after = \"12h\"\ncritical_after = \"6h\"\n");
        assert_eq!(key, "besclient.checkin.critical_after");
        assert!(msg.contains("longer than warn_after"), "{msg}");
        let (_, key, _) = invalid("[besclient.checkin]\nrelay = \"relay-dal10\"\n");
        assert_eq!(key, "besclient.checkin.relay");
        let c = Config::defaults();
        assert_eq!(
            c.besclient.checkin.warn_after,
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            c.besclient.checkin.patterns,
            crate::checks::besclient::checkin::Patterns::default()
        );
    }

    #[test]
    fn zero_budget_points_to_observe_only() {
        let (_, key, msg) = invalid("[remediation]\nmax_restarts = 0\n");
        assert_eq!(key, "remediation.max_restarts");
        assert!(msg.contains("enabled = false"), "{msg}");
    }

    #[test]
    fn stale_shorter_than_verify_is_refused() {
        let (_, key, _) = invalid("[besclient]\nstale_after = \"30s\"\nverify_within = \"2m\"\n");
        assert_eq!(key, "besclient.stale_after");
    }

    #[test]
    fn plain_http_collector_is_refused() {
        let (_, key, msg) = invalid("[collector]\nurl = \"http://c:8443\"\n");
        assert_eq!(key, "collector.url");
        assert!(msg.contains("https://"), "{msg}");
    }

    #[test]
    fn several_collectors_are_a_list_of_https_urls() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let text = format!(
            "[collector]\nurl = [\"https://c1:8443\", \"https://c2:8443\"]\nca_file = {:?}\n",
            ca.display().to_string()
        );
        let c = parse(&text).unwrap().collector.unwrap();
        assert_eq!(c.urls, ["https://c1:8443", "https://c2:8443"]);
        for (list, words) in [
            ("[]", "empty list"),
            (
                "[\"https://c1:8443\", \"http://c2:8443\"]",
                "\"http://c2:8443\" must start with https://",
            ),
            ("[\"https://c1:8443\", \"https://c1:8443\"]", "listed twice"),
        ] {
            let (line, key, msg) = invalid(&format!("[collector]\nurl = {list}\n"));
            assert_eq!((line, key.as_str()), (2, "collector.url"));
            assert!(msg.contains(words), "{msg}");
        }
    }

    #[test]
    fn syntax_error_is_located() {
        let (line, _, _) = invalid("state_dir = \"/var/lib/rollcall\"\n[besclient\n");
        assert_eq!(line, 2);
    }

    #[test]
    fn error_display_has_file_line_and_key() {
        let e = parse("[remediation]\nper = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.toml:2:"), "{e}");
        assert!(e.contains("remediation.per"), "{e}");
    }
}
