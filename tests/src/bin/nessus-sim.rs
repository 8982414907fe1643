//! A stand-in for the closed Nessus scanner daemon, behaving as the vendor documents it
//! (paths, LSB init script, `/server/status` JSON over HTTPS with a self-signed certificate).
//!
//! Installed as `<root>/opt/nessus/sbin/nessus-service` (root `/` on a real host) and
//! started by the LSB init script `<root>/etc/init.d/nessusd` (verbs start, stop, restart,
//! status). Run with no arguments it checks it can start, daemonizes (new process group,
//! stdio on /dev/null, parent exits, pidfile `<root>/opt/nessus/var/nessus/nessus-service.pid`)
//! and serves HTTPS with a self-signed certificate. `GET /server/status` answers as nessusd
//! does: `{"status":"loading","progress":N}` while it compiles plugins after a start, then
//! `{"status":"ready","progress":null,"must_destroy_session":false}`. It logs to
//! `<root>/opt/nessus/var/nessus/logs/nessusd.messages`.
//!
//! Settings in `<root>/etc/nessus-sim.conf` (read at start):
//!   listen = 127.0.0.1:8834
//!   loading_ms = 2000        how long plugin compilation takes after a start
//!   start = ok | fail        refuse to start (as with a broken install)
//! A fault for the running process in `<root>/etc/nessus-sim.fault`, taken (and the file
//! removed) on the next request; a restart clears it, as restarting the real one would:
//!   download-failed          answer `{"status":"download-failed"}` from now on
//!   hang                     accept connections, never answer
//!   http500                  answer HTTP 500
//!   exit                     exit at once (the daemon died)

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VERSION: &str = "10.8.3";

struct Layout {
    root: PathBuf,
}

impl Layout {
    fn from_exe() -> Layout {
        Layout {
            root: rollcall_tests::sim::root_of_exe("/opt/nessus/sbin/nessus-service"),
        }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn pidfile(&self) -> PathBuf {
        self.p("opt/nessus/var/nessus/nessus-service.pid")
    }
}

struct Settings {
    listen: String,
    loading: Duration,
    start: String,
}

fn settings(l: &Layout) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:8834".into(),
        loading: Duration::from_millis(2000),
        start: "ok".into(),
    };
    let text = fs::read_to_string(l.p("etc/nessus-sim.conf")).unwrap_or_default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "listen" => s.listen = v,
            "loading_ms" => {
                if let Ok(ms) = v.parse() {
                    s.loading = Duration::from_millis(ms);
                }
            }
            "start" => s.start = v,
            _ => {}
        }
    }
    s
}

fn log(l: &Layout, line: &str) {
    let dir = l.p("opt/nessus/var/nessus/logs");
    let _ = fs::create_dir_all(&dir);
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nessusd.messages"))
    {
        let _ = writeln!(
            f,
            "[{}][{}.0] {line}",
            chrono::Local::now().format("%a %b %e %H:%M:%S %Y"),
            std::process::id()
        );
    }
}

fn main() -> ExitCode {
    let l = Layout::from_exe();
    if std::env::args().nth(1).as_deref() == Some("--daemon") {
        return serve(&l);
    }
    let s = settings(&l);
    if s.start == "fail" {
        eprintln!("nessusd: could not start: /opt/nessus/lib/nessus/plugins is unreadable");
        return ExitCode::from(1);
    }
    let exe = l.p("opt/nessus/sbin/nessus-service");
    match rollcall_tests::sim::daemonize(&exe, &["--daemon", "-q"], &l.pidfile()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nessusd: could not start: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    DownloadFailed,
    Hang,
    Http500,
}

fn serve(l: &Layout) -> ExitCode {
    let s = settings(l);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(l, &format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let tls = match tls_config() {
            Ok(t) => t,
            Err(e) => {
                log(l, &format!("cannot make its certificate: {e}"));
                return ExitCode::from(1);
            }
        };
        let listener = match tokio::net::TcpListener::bind(&s.listen).await {
            Ok(x) => x,
            Err(e) => {
                log(l, &format!("cannot listen on {}: {e}", s.listen));
                return ExitCode::from(1);
            }
        };
        log(l, &format!("nessusd {VERSION} started, listening on {}", s.listen));
        log(l, "Compiling plugins");
        let started = Instant::now();
        let fault = Arc::new(Mutex::new(Fault::None));
        let fault_file = l.p("etc/nessus-sim.fault");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            // A fault for this run, taken once.
            if let Ok(text) = fs::read_to_string(&fault_file) {
                let _ = fs::remove_file(&fault_file);
                let mut f = fault.lock().unwrap_or_else(|p| p.into_inner());
                match text.trim() {
                    "download-failed" => {
                        log(l, "Plugin feed update failed: not enough free disk space");
                        *f = Fault::DownloadFailed;
                    }
                    "hang" => *f = Fault::Hang,
                    "http500" => *f = Fault::Http500,
                    "exit" => {
                        log(l, "nessusd exiting");
                        std::process::exit(1);
                    }
                    _ => {}
                }
            }
            let f = *fault.lock().unwrap_or_else(|p| p.into_inner());
            let loading = s.loading;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (code, body) = match (f, path) {
                    (Fault::Hang, _) => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    (_, p) if p != "/server/status" => (404, r#"{"error":"Not Found"}"#.to_owned()),
                    (Fault::Http500, _) => (500, r#"{"error":"Internal Server Error"}"#.to_owned()),
                    (Fault::DownloadFailed, _) => (
                        200,
                        r#"{"status":"download-failed","progress":null,"must_destroy_session":false}"#.to_owned(),
                    ),
                    (Fault::None, _) if started.elapsed() < loading => {
                        let p = (started.elapsed().as_millis() * 100 / loading.as_millis().max(1))
                            .min(99);
                        (200, format!(r#"{{"status":"loading","progress":{p}}}"#))
                    }
                    (Fault::None, _) => (
                        200,
                        r#"{"status":"ready","progress":null,"must_destroy_session":false}"#.to_owned(),
                    ),
                };
                let reason = match code {
                    200 => "OK",
                    404 => "Not Found",
                    _ => "Internal Server Error",
                };
                let resp = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}

/// A fresh self-signed certificate, as nessusd makes at install.
fn tls_config() -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    Ok(Arc::new(config))
}
