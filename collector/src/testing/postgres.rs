//! A throwaway PostgreSQL cluster for the tests and benchmarks: Debian's server binaries,
//! `initdb` into a fresh directory (as the `postgres` user when run as root: initdb
//! refuses root), the server on a free loopback port with password authentication, and
//! killed with the process that started it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::store::postgres::Target;

/// The superuser's password in the throwaway clusters.
pub const PASSWORD: &str = "rollcall-test";

pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT`, without a database.
    pub base: String,
    /// The cluster's directory.
    pub dir: PathBuf,
    port: u16,
    /// The running server's process, while it runs.
    server: Mutex<Option<Child>>,
    durable: bool,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// Where Debian puts the server's binaries.
fn bin(name: &str) -> PathBuf {
    for v in ["17", "16", "15"] {
        let p = Path::new("/usr/lib/postgresql")
            .join(v)
            .join("bin")
            .join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `cmd` run as the `postgres` user when this process is root, and killed when the
/// thread that starts it ends (`setpriv --pdeathsig`).
fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg("--pdeathsig=KILL");
    if is_root() {
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--reset-env",
        ]);
    }
    c.arg("--").arg(program);
    c
}

impl Cluster {
    /// One cluster per test process, started on first use; fast rather than durable
    /// (`fsync = off`: a killed server loses nothing it acknowledged, a power cut would).
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| Cluster::start(false))
    }

    /// A new cluster; `durable` keeps PostgreSQL's defaults (`fsync = on`), as a benchmark
    /// of durable writes needs. Stopped when dropped.
    pub fn start(durable: bool) -> Cluster {
        remove_stale();
        let dir = std::env::temp_dir().join(format!(
            "rollcall-pg-{}-{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        if is_root() {
            let pg = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(pg.success(), "chown {} to postgres", dir.display());
        }
        let out = as_postgres(&bin("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap_or_else(|e| panic!("initdb (Debian's postgresql-15): {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let c = Cluster {
            base: format!("postgres://postgres@127.0.0.1:{port}"),
            dir,
            port,
            server: Mutex::new(None),
            durable,
        };
        c.resume();
        c
    }

    /// Starts the server (again, after [`Cluster::kill`]) and returns once it accepts
    /// connections.
    pub fn resume(&self) {
        let dir = &self.dir;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut cmd = as_postgres(&bin("postgres"));
        cmd.arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
                "-c",
                "shared_memory_type=mmap",
            ]);
        if !self.durable {
            // Not synchronous_commit = off: that acknowledges before the WAL is written,
            // and a killed server loses what it acknowledged.
            cmd.args(["-c", "fsync=off"]);
        }
        let log = std::fs::File::create(dir.join("server.log")).expect("server log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // Started from a thread that lives as long as the server: --pdeathsig fires when
        // the thread that started it ends, which would otherwise be the first test's.
        std::thread::spawn(move || {
            let child = cmd.spawn();
            let failed = child.is_err();
            let _ = tx.send(child);
            if !failed {
                loop {
                    std::thread::park();
                }
            }
        });
        let child = rx
            .recv()
            .expect("starter thread")
            .unwrap_or_else(|e| panic!("starting postgres: {e}"));
        *self.server.lock().unwrap() = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    /// Turns TLS on: a CA and a certificate for `127.0.0.1` made in `dir` (as the collector
    /// makes its own), the server's copy in the cluster's directory, and the configuration
    /// reloaded. Returns the CA's file, for `PGSSLROOTCERT`. Plain connections still work.
    pub fn serve_tls(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("certificate directory");
        crate::tls::ensure(dir, &["127.0.0.1".to_owned()], Duration::from_secs(86_400))
            .expect("certificates");
        for (from, to) in [("server.pem", "tls.pem"), ("server.key", "tls.key")] {
            let to = self.dir.join(to);
            std::fs::copy(dir.join(from), &to).expect("copying the certificate");
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("mode");
            if is_root() {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&to)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "chown {} to postgres", to.display());
            }
        }
        let mut admin = self.superuser().expect("superuser connection");
        // One statement each: ALTER SYSTEM refuses to run inside a transaction block.
        for sql in [
            format!(
                "ALTER SYSTEM SET ssl_cert_file = '{}'",
                self.dir.join("tls.pem").display()
            ),
            format!(
                "ALTER SYSTEM SET ssl_key_file = '{}'",
                self.dir.join("tls.key").display()
            ),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            admin.batch_execute(&sql).expect("turning TLS on");
        }
        dir.join("ca.pem")
    }

    /// What the leader's retention does to database `db`'s change feed an hour after each
    /// change, done now to all of it: a collector that had not read them must load every
    /// host again.
    pub fn prune_feed(&self, db: &str) {
        let mut c = self.target(db).connect().expect("connecting");
        let mut tx = c.transaction().expect("transaction");
        crate::store::feed::prune(&mut tx, chrono::Utc::now() + chrono::Duration::hours(1))
            .expect("pruning the change feed");
        tx.commit().expect("commit");
    }

    /// How many of the collectors' connections to the server are encrypted, of how many.
    pub fn collector_connections(&self) -> (i64, i64) {
        let mut admin = self.superuser().expect("superuser connection");
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'rollcall-collector'",
                &[],
            )
            .expect("pg_stat_ssl");
        (row.get(0), row.get(1))
    }

    /// A connection to the `postgres` database as the superuser.
    fn superuser(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!("{}/postgres?password={PASSWORD}", self.base),
            postgres::NoTls,
        )
    }

    fn wait_ready(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            match self.superuser() {
                Ok(_) => return,
                Err(e) if Instant::now() > until => {
                    let log =
                        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                    panic!("postgres did not start within {within:?}: {e}\n{log}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `kill -9` of the server, as a crash or a failover would stop it.
    pub fn kill(&self) {
        if let Some(mut c) = self.server.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Its backends notice the postmaster gone and exit; wait for the port to close.
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new, empty database (named after `prefix`), and how to reach it.
    pub fn database(&self, prefix: &str) -> Target {
        self.target(&self.create(prefix))
    }

    /// A new, empty database named after `prefix`: its name.
    pub fn create(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = self
            .superuser()
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.base));
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create database");
        name
    }

    /// A file holding the password, for `--store-password-file`.
    pub fn password_file(&self, dir: &Path) -> PathBuf {
        let f = dir.join("store.password");
        std::fs::write(&f, format!("{PASSWORD}\n")).expect("password file");
        f
    }

    /// How to reach database `db`.
    pub fn target(&self, db: &str) -> Target {
        Target::parse(&self.url(db), Some(PASSWORD.to_owned())).expect("target")
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (the password is [`Cluster::password`]).
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base)
    }
}

/// Directories of clusters whose process is gone (a shared cluster is never dropped).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("rollcall-pg-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
