//! The collector's configuration: command line, environment and `--config` file, in that
//! order of precedence, turned into typed values once. A bad file names its path, line,
//! column and key, and says what to write; the collector then exits 78 (`EX_CONFIG`).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use serde_spanned::Spanned;

pub use rollcall_support::{ConfigError, EX_CONFIG};

/// The options, as flags and environment variables; each may also be in the file.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A TOML file with any of the options below (`listen`, `data_dir`, `grace`,
    /// `probe_interval`, `event_retention_days`, `san`, `queue`, `max_connections`, `client_ca`,
    /// `store`, `store_password_file`); the command line wins.
    #[arg(long, env = "ROLLCALL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve HTTPS on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8443", env = "ROLLCALL_LISTEN")]
    pub listen: SocketAddr,
    /// Database, certificates and tokens; created on first start.
    #[arg(
        long,
        default_value = "/var/lib/rollcall-collector",
        env = "ROLLCALL_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Silence beyond a host's interval plus this is `silent`.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Scanners probe their zone's BMCs once every this; a verdict older than three
    /// rounds no longer counts.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// Agent events older than this many days are deleted.
    #[arg(long, default_value_t = 30)]
    pub event_retention_days: u32,
    /// Extra DNS names or addresses for the server certificate (first start only).
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// Require agents (heartbeats and enrollment) to present a TLS client certificate
    /// signed by the CA in this PEM file. SREs' API calls still need only a token.
    #[arg(long, value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// Heartbeats that may wait for the writer before requests get 503.
    #[arg(long, default_value_t = 50_000)]
    pub queue: usize,
    /// Open connections at most (default 20000, and always below the file limit less 32).
    /// At the cap, the oldest connection serving no request is closed for a new one.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// How long a request's headers may take to arrive, and a kept-alive connection may
    /// wait for its next request (over agents' 60 s interval, so theirs are reused).
    #[arg(long, default_value = "75s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// How long a server certificate is valid; it is renewed from the CA a third of that
    /// (at most 30 days) before it expires.
    #[arg(long, default_value = "365days", value_parser = humantime::parse_duration)]
    pub cert_validity: Duration,
    /// Enrollments a second per enrollment secret, after a burst of 50 times as many
    /// (default 10: 500 at once, a 6,000-host fleet in about ten minutes).
    #[arg(long, default_value_t = 10)]
    pub enroll_rate: u32,
    /// Where the data is kept: `sqlite` (`rollcall.db` in the data directory, one
    /// collector) or a PostgreSQL URL, `postgres://USER@HOST:PORT/DB`, that several
    /// collectors share. The password is never part of the URL: see
    /// `--store-password-file`, or set PGPASSWORD.
    #[arg(
        long,
        default_value = "sqlite",
        env = "ROLLCALL_STORE",
        value_name = "sqlite|URL"
    )]
    pub store: String,
    /// A file holding the PostgreSQL password (its first line), readable by the collector
    /// only.
    #[arg(long, env = "ROLLCALL_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
}

/// What the collector runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub grace: Duration,
    pub probe_interval: Duration,
    pub event_retention_days: u32,
    pub sans: Vec<String>,
    pub client_ca: Option<PathBuf>,
    pub queue: usize,
    pub max_connections: Option<usize>,
    pub header_timeout: Duration,
    pub cert_validity: Duration,
    pub enroll_rate: u32,
    pub store: crate::store::Backend,
    /// `[incidents]` and `[[notify]]` (file only).
    pub notify: crate::notify::NotifyConfig,
    /// `[inventory]` (file only).
    pub inventory: Option<crate::inventory::InventoryConfig>,
}

/// The file: the same options as the command line.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Spanned<String>>,
    data_dir: Option<Spanned<PathBuf>>,
    grace: Option<Spanned<String>>,
    probe_interval: Option<Spanned<String>>,
    event_retention_days: Option<Spanned<u32>>,
    san: Option<Vec<String>>,
    queue: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    client_ca: Option<Spanned<PathBuf>>,
    store: Option<Spanned<String>>,
    store_password_file: Option<Spanned<PathBuf>>,
    incidents: Option<crate::notify::config::RawIncidents>,
    #[serde(default)]
    notify: Vec<crate::notify::config::RawReceiver>,
    inventory: Option<crate::inventory::RawInventory>,
}

impl Config {
    /// `args` as parsed from `matches`, with what the command line and environment left
    /// at its default taken from the `--config` file.
    pub fn load(args: Args, matches: &ArgMatches) -> Result<Config, ConfigError> {
        let given = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let mut c = Config {
            listen: args.listen,
            data_dir: args.data_dir,
            grace: args.grace,
            probe_interval: args.probe_interval,
            event_retention_days: args.event_retention_days,
            sans: args.sans,
            client_ca: args.client_ca,
            queue: args.queue,
            max_connections: args.max_connections,
            header_timeout: args.header_timeout.max(Duration::from_secs(1)),
            cert_validity: args.cert_validity.max(Duration::from_secs(2)),
            enroll_rate: args.enroll_rate.max(1),
            store: crate::store::Backend::Sqlite,
            notify: Default::default(),
            inventory: None,
        };
        let mut store = StoreChoice {
            url: args.store,
            password_file: args.store_password_file,
            from_file: None,
        };
        let mut file = None;
        if let Some(path) = args.config {
            let text = ConfigError::read(&path)?;
            c.merge(&path, &text, &given, &mut store)?;
            file = Some((path, text));
        }
        c.store =
            backend(&store.url, store.password_file.as_deref()).map_err(|message| {
                match (&file, store.from_file) {
                    (Some((path, text)), Some(span)) => ConfigError::at(path, text, span, message),
                    _ => ConfigError::Flag {
                        flag: "store".into(),
                        message,
                    },
                }
            })?;
        c.probe_interval = c.probe_interval.max(Duration::from_secs(1));
        Ok(c)
    }

    /// Takes from the file `text` every option `given` says the command line did not set.
    fn merge(
        &mut self,
        path: &Path,
        text: &str,
        given: &dyn Fn(&str) -> bool,
        store: &mut StoreChoice,
    ) -> Result<(), ConfigError> {
        let invalid =
            |span: Range<usize>, message: String| ConfigError::at(path, text, span, message);
        let f: FileConfig = toml::from_str(text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), e.message().to_owned()))?;
        if let Some(v) = f.listen.filter(|_| !given("listen")) {
            self.listen = v.get_ref().parse().map_err(|e| {
                invalid(
                    v.span(),
                    format!(
                        "invalid address {:?} ({e}); write it like \"0.0.0.0:8443\"",
                        v.get_ref()
                    ),
                )
            })?;
        }
        if let Some(v) = f.data_dir.filter(|_| !given("data_dir")) {
            if !v.get_ref().is_absolute() {
                return Err(invalid(
                    v.span(),
                    format!(
                        "data_dir must be an absolute path, got {:?}",
                        v.get_ref().display().to_string()
                    ),
                ));
            }
            self.data_dir = v.into_inner();
        }
        let duration = |v: Spanned<String>, example: &str| {
            humantime::parse_duration(v.get_ref()).map_err(|e| {
                invalid(
                    v.span(),
                    format!(
                        "invalid duration {:?} ({e}); write it like \"{example}\"",
                        v.get_ref()
                    ),
                )
            })
        };
        if let Some(v) = f.grace.filter(|_| !given("grace")) {
            self.grace = duration(v, "120s")?;
        }
        if let Some(v) = f.probe_interval.filter(|_| !given("probe_interval")) {
            self.probe_interval = duration(v, "5m")?;
        }
        if let Some(v) = f
            .event_retention_days
            .filter(|_| !given("event_retention_days"))
        {
            if *v.get_ref() == 0 {
                return Err(invalid(
                    v.span(),
                    "event_retention_days = 0 would delete every event at once; keep at least 1"
                        .to_owned(),
                ));
            }
            self.event_retention_days = v.into_inner();
        }
        if let Some(v) = f.san.filter(|_| !given("sans")) {
            self.sans = v;
        }
        if let Some(v) = f.queue.filter(|_| !given("queue")) {
            if *v.get_ref() == 0 {
                return Err(invalid(
                    v.span(),
                    "queue = 0 would refuse every heartbeat; the default is 50000".to_owned(),
                ));
            }
            self.queue = v.into_inner();
        }
        if let Some(v) = f.max_connections.filter(|_| !given("max_connections")) {
            if *v.get_ref() == 0 {
                return Err(invalid(
                    v.span(),
                    "max_connections = 0 would refuse every client; leave it out for the default"
                        .to_owned(),
                ));
            }
            self.max_connections = Some(v.into_inner());
        }
        if let Some(v) = f.client_ca.filter(|_| !given("client_ca")) {
            if !v.get_ref().is_file() {
                return Err(invalid(
                    v.span(),
                    format!(
                        "client_ca {:?} does not exist; give the PEM of the CA that signs agents' certificates",
                        v.get_ref().display().to_string()
                    ),
                ));
            }
            self.client_ca = Some(v.into_inner());
        }
        if let Some(v) = f.store.filter(|_| !given("store")) {
            store.from_file = Some(v.span());
            store.url = v.into_inner();
        }
        if let Some(v) = f
            .store_password_file
            .filter(|_| !given("store_password_file"))
        {
            store.from_file = store.from_file.take().or(Some(v.span()));
            store.password_file = Some(v.into_inner());
        }
        self.notify = crate::notify::config::build(path, text, f.incidents, f.notify)?;
        if let Some(i) = f.inventory {
            self.inventory = Some(i.validate(path, text)?);
        }
        Ok(())
    }
}

/// `store` and `store_password_file` as given, and where in the file if they came from it.
struct StoreChoice {
    url: String,
    password_file: Option<PathBuf>,
    from_file: Option<Range<usize>>,
}

/// The store named by `store` (`sqlite` or a PostgreSQL URL), with the password from
/// `password_file`, or else from `PGPASSWORD`.
fn backend(store: &str, password_file: Option<&Path>) -> Result<crate::store::Backend, String> {
    use crate::store::{postgres::Target, Backend};
    if store == "sqlite" {
        if let Some(f) = password_file {
            return Err(format!(
                "store_password_file {} is set but the store is sqlite; set store to the PostgreSQL URL, or remove store_password_file",
                f.display()
            ));
        }
        return Ok(Backend::Sqlite);
    }
    if !(store.starts_with("postgres://") || store.starts_with("postgresql://")) {
        return Err(format!(
            "store {store:?} is neither \"sqlite\" nor a PostgreSQL URL; write \"sqlite\" or \"postgres://rollcall@db.example:5432/rollcall\""
        ));
    }
    let password = match password_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                format!(
                    "cannot read the store password from {}: {e}; the file must be readable by the collector's user",
                    f.display()
                )
            })?;
            let first = text.lines().next().unwrap_or_default().to_owned();
            if first.is_empty() {
                return Err(format!(
                    "the store password file {} is empty; write the password on its first line",
                    f.display()
                ));
            }
            Some(first)
        }
        None => std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
    };
    Target::parse(store, password).map(|t| Backend::Postgres(Box::new(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn load(argv: &[&str], file: Option<&str>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        argv.insert(0, "rollcall-collector".into());
        if let Some(text) = file {
            let p = dir.path().join("collector.toml");
            std::fs::write(&p, text).unwrap();
            argv.push("--config".into());
            argv.push(p.display().to_string());
        }
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        Config::load(cli.args, &matches)
    }

    fn invalid(file: &str) -> (usize, usize, String, String) {
        match load(&[], Some(file)) {
            Err(ConfigError::Invalid {
                line,
                column,
                key,
                message,
                ..
            }) => (line, column, key, message),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn the_shipped_file_parses_and_the_command_line_wins() {
        let shipped = include_str!("../../packaging/collector.toml");
        let c = load(&[], Some(shipped)).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.grace, Duration::from_secs(120));
        let c = load(
            &["--listen", "127.0.0.1:9000", "--grace", "30s"],
            Some(shipped),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.grace, Duration::from_secs(30));
        assert_eq!(c.probe_interval, Duration::from_secs(300), "from the file");
    }

    #[test]
    fn a_bad_value_names_line_column_key_and_what_to_write() {
        let (line, column, key, msg) = invalid("queue = 10\ngrace = \"two minutes\"\n");
        assert_eq!((line, column, key.as_str()), (2, 9, "grace"));
        assert!(msg.contains("\"120s\""), "{msg}");
        let (line, _, key, msg) = invalid("listen = \"everywhere\"\n");
        assert_eq!((line, key.as_str()), (1, "listen"));
        assert!(msg.contains("0.0.0.0:8443"), "{msg}");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let (line, _, key, msg) = invalid("grace = \"2m\"\nlisten_on = \"0.0.0.0:1\"\n");
        assert_eq!((line, key.as_str()), (2, "listen_on"));
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn values_that_cannot_work_are_refused() {
        assert_eq!(invalid("queue = 0\n").2, "queue");
        assert_eq!(
            invalid("event_retention_days = 0\n").2,
            "event_retention_days"
        );
        assert_eq!(invalid("data_dir = \"data\"\n").2, "data_dir");
        assert_eq!(
            invalid("client_ca = \"/nonexistent/ca.pem\"\n").2,
            "client_ca"
        );
    }

    #[test]
    fn the_store_is_sqlite_or_postgres_with_a_password_from_a_file() {
        use crate::store::Backend;
        assert_eq!(load(&[], None).unwrap().store, Backend::Sqlite);
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\nignored\n").unwrap();
        let file = format!(
            "store = \"postgres://rollcall@db1.example:5432/fleet\"\nstore_password_file = {:?}\n",
            pw.display().to_string()
        );
        let Backend::Postgres(t) = load(&[], Some(&file)).unwrap().store else {
            panic!("postgres expected");
        };
        assert_eq!(t.shown, "postgres://rollcall@db1.example:5432/fleet");
        assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));
        // The command line wins over the file.
        let c = load(
            &["--store", "sqlite"],
            Some("store = \"postgres://db/x\"\n"),
        )
        .unwrap();
        assert_eq!(c.store, Backend::Sqlite);
    }

    #[test]
    fn a_bad_store_is_named_with_what_to_do() {
        let (line, _, key, msg) = invalid("grace = \"2m\"\nstore = \"mysql://db/x\"\n");
        assert_eq!((line, key.as_str()), (2, "store"));
        assert!(msg.contains("postgres://"), "{msg}");
        let (_, _, key, msg) = invalid("store = \"postgres://rollcall:hunter2@db/x\"\n");
        assert_eq!(key, "store");
        assert!(
            msg.contains("store_password_file") && !msg.contains("hunter2"),
            "{msg}"
        );
        let (_, _, key, msg) =
            invalid("store = \"postgres://db/x\"\nstore_password_file = \"/nonexistent/pw\"\n");
        assert_eq!(key, "store");
        assert!(msg.contains("/nonexistent/pw"), "{msg}");
        let (_, _, key, msg) = invalid("store_password_file = \"/etc/hostname\"\n");
        assert_eq!(key, "store_password_file");
        assert!(msg.contains("store is sqlite"), "{msg}");
        // On the command line: named by its flag.
        let e = load(&["--store", "postgres://u:pw@db/x"], None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--store: the store URL holds a password"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_says_to_pass_the_right_path() {
        let matches = Cli::command()
            .try_get_matches_from(["rollcall-collector", "--config", "/nonexistent/c.toml"])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let e = Config::load(cli.args, &matches).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/c.toml") && e.contains("--config"),
            "{e}"
        );
    }

    #[test]
    fn receivers_are_read_with_their_secrets_and_routes() {
        let dir = tempfile::tempdir().unwrap();
        let secret = |name: &str, v: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, v).unwrap();
            p.display().to_string()
        };
        let file = format!(
            r#"
[incidents]
flap_changes = 6
runbooks = {{ silent = "https://wiki/silent" }}

[[notify]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/x/"
secret_file = "{}"
match = {{ region = ["us-south", "eu-de"], env = "prod" }}
kinds = ["silent", "unhealthy"]
min_severity = "error"

[[notify]]
name = "pd"
kind = "pagerduty"
routing_key_file = "{}"

[[notify]]
name = "gh"
kind = "github"
base_url = "https://ghe.internal/api/v3"
repo = "sre/fleet"
token_file = "{}"

[[notify]]
name = "am"
kind = "alertmanager"
url = "http://10.1.2.3:9093"
"#,
            secret("hook", "s3cret\n"),
            secret("pd", "KEY"),
            secret("gh", "tok")
        );
        let c = load(&[], Some(&file)).unwrap();
        let n = &c.notify;
        assert_eq!(n.rules.flap_changes, 6);
        assert_eq!(n.receivers.len(), 4);
        let hook = &n.receivers[0];
        assert_eq!(hook.url, "https://hooks.example.com/x");
        assert_eq!(hook.secret.as_ref().unwrap().0, "s3cret");
        assert!(!format!("{hook:?}").contains("s3cret"), "never printed");
        assert_eq!(hook.route.labels["region"], ["us-south", "eu-de"]);
        assert_eq!(hook.route.labels["env"], ["prod"]);
        assert_eq!(n.receivers[1].url, crate::notify::config::PAGERDUTY_URL);
        assert_eq!(n.receivers[2].repo.as_deref(), Some("sre/fleet"));
    }

    #[test]
    fn a_bad_receiver_is_named_with_what_to_do() {
        let cases = [
            (
                "[[notify]]\nname = \"x\"\nkind = \"email\"\nurl = \"https://a.b\"\n",
                "kind",
                "webhook, slack",
            ),
            (
                "[[notify]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"http://hooks.example.com/\"\n",
                "url",
                "allow_http",
            ),
            (
                "[[notify]]\nname = \"x\"\nkind = \"pagerduty\"\n",
                "kind",
                "routing_key_file",
            ),
            (
                "[[notify]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"https://a.b\"\nsecret_file = \"/nonexistent/s\"\n",
                "secret_file",
                "/nonexistent/s",
            ),
            (
                "[[notify]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"https://a.b\"\nkinds = [\"silence\"]\n",
                "kinds",
                "region-dark",
            ),
            (
                "[[notify]]\nname = \"x\"\nkind = \"github\"\ntoken_env = \"NO_SUCH_VAR_ROLLCALL\"\nrepo = \"a/b\"\n",
                "token_env",
                "NO_SUCH_VAR_ROLLCALL",
            ),
            (
                "[incidents]\nrunbooks = { silence = \"https://w\" }\n",
                "runbooks",
                "unknown incident kind \"silence\"",
            ),
        ];
        for (file, key, says) in cases {
            let (_, _, k, msg) = invalid(file);
            assert!(k.ends_with(key), "{file}: key {k}");
            assert!(msg.contains(says), "{file}: {msg}");
        }
        // Loopback and private addresses may use plain http (as Alertmanager allows).
        let ok =
            "[[notify]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\n";
        assert!(load(&[], Some(ok)).is_ok());
    }

    #[test]
    fn the_inventory_section_is_checked() {
        let c = load(
            &[],
            Some("[inventory]\npath = \"/srv/devices.csv\"\ncolumns = { hostname = \"Server\" }\n"),
        )
        .unwrap();
        let i = c.inventory.unwrap();
        assert_eq!(i.columns["hostname"], "Server");
        assert_eq!(i.missing_after, Duration::from_secs(24 * 3600));
        let (_, _, key, msg) = invalid("[inventory]\npath = \"devices.csv\"\n");
        assert!(
            key.ends_with("path") && msg.contains("absolute"),
            "{key}: {msg}"
        );
        let (_, _, key, msg) =
            invalid("[inventory]\npath = \"/d.csv\"\ncolumns = { hostnme = \"x\" }\n");
        assert!(
            key.contains("columns") && msg.contains("hostname, primary_ip"),
            "{key}: {msg}"
        );
        let (_, _, key, _) = invalid("[inventory]\npath = \"/d.csv\"\nmissing_after = \"a day\"\n");
        assert!(key.ends_with("missing_after"), "{key}");
    }
}
