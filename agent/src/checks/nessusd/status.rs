//! nessusd's own word on its health: `GET /server/status` over HTTPS on this host's
//! loopback. nessusd serves a self-signed certificate, so the certificate is not checked —
//! which is only sound because the address is loopback (config refuses any other), where
//! nobody else can answer. The handshake signature is still verified.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;

/// What `/server/status` said (Nessus answers `{"status": "ready"}`, `"loading"` with a
/// `progress` while it compiles plugins, other words such as `"download-failed"` when it
/// cannot scan): `ready` ok, `loading` busy, anything else (or nothing) down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Compiling plugins, `progress` percent done when it says.
    Loading {
        progress: Option<u32>,
    },
    /// With the reason in words, and nessusd's own status word when it gave one.
    Down {
        reason: String,
        status: Option<String>,
        /// It took the connection but did not answer in time: wedged, not gone.
        timed_out: bool,
    },
}

/// Judges an answer: the HTTP status code and the body.
pub fn classify(code: u16, body: &[u8]) -> Status {
    if !(200..300).contains(&code) {
        return Status::Down {
            reason: format!("/server/status answered HTTP {code}"),
            status: None,
            timed_out: false,
        };
    }
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Status::Down {
                reason: format!("/server/status answered something other than JSON ({e})"),
                status: None,
                timed_out: false,
            }
        }
    };
    match v["status"].as_str() {
        Some("ready") => Status::Ready,
        Some("loading") => Status::Loading {
            progress: v["progress"]
                .as_u64()
                .or_else(|| v["progress"].as_str().and_then(|s| s.parse().ok()))
                .map(|p| p.min(100) as u32),
        },
        Some(other) => Status::Down {
            reason: format!("nessusd reports status \"{other}\""),
            status: Some(other.to_owned()),
            timed_out: false,
        },
        None => Status::Down {
            reason: "/server/status answered without a status".to_owned(),
            status: None,
            timed_out: false,
        },
    }
}

/// Whether `url`'s host is this host's loopback (the only place the certificate may go
/// unchecked).
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Plugin compilation needs about this much free under /opt/nessus.
pub const COMPILE_NEEDS: u64 = 5 << 30;

/// The health and the sentence for `status`; `free` is what is available under
/// /opt/nessus, named as the likely cause of `download-failed` when short.
pub fn judge(status: &Status, free: Option<(String, u64)>) -> (rollcall_proto::Health, String) {
    use rollcall_proto::Health;
    match status {
        Status::Ready => (Health::Ok, "nessusd is ready".to_owned()),
        Status::Loading { progress } => (
            Health::Warn,
            match progress {
                Some(p) => format!("nessusd is loading (compiling plugins, {p}% done); it scans nothing until ready"),
                None => "nessusd is loading (compiling plugins); it scans nothing until ready".to_owned(),
            },
        ),
        Status::Down { reason, status, .. } => {
            let mut r = format!("{reason}; this scanner scans nothing");
            if status.as_deref() == Some("download-failed") {
                if let Some((path, avail)) = free.filter(|(_, a)| *a < COMPILE_NEEDS) {
                    r.push_str(&format!(
                        "; likely cause: only {} free under {path} (compiling plugins needs about 5 GiB)",
                        crate::disk::human_bytes(avail)
                    ));
                }
            }
            (Health::Critical, r)
        }
    }
}

/// Accepts any certificate; verifies the handshake signatures with it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks nessusd at `url` (loopback only) for its status, waiting at most `timeout`.
pub struct Prober {
    http: reqwest::Client,
    url: String,
}

impl Prober {
    pub fn new(url: &str, timeout: Duration) -> std::io::Result<Prober> {
        if !is_loopback_url(url) {
            return Err(std::io::Error::other(format!(
                "{url}: nessusd's self-signed certificate is accepted on loopback only"
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Prober {
            http,
            url: url.to_owned(),
        })
    }

    pub async fn status(&self) -> Status {
        let resp = match self.http.get(&self.url).send().await {
            Ok(r) => r,
            Err(e) => {
                return Status::Down {
                    reason: format!("no answer from {}: {}", self.url, why(&e)),
                    status: None,
                    timed_out: e.is_timeout(),
                }
            }
        };
        let code = resp.status().as_u16();
        match resp.bytes().await {
            Ok(b) => classify(code, &b),
            Err(e) => Status::Down {
                reason: format!("{} broke off its answer: {}", self.url, why(&e)),
                status: None,
                timed_out: e.is_timeout(),
            },
        }
    }
}

/// The innermost cause, which is what an SRE can act on (refused, timed out, TLS alert).
fn why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out (nessusd accepted the connection but did not answer)".to_owned();
    }
    let mut last = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_answers_are_judged_as_documented() {
        assert_eq!(
            classify(
                200,
                br#"{"status":"ready","progress":null,"must_destroy_session":false}"#
            ),
            Status::Ready
        );
        assert_eq!(
            classify(200, br#"{"status":"loading","progress":50}"#),
            Status::Loading { progress: Some(50) }
        );
        assert_eq!(
            classify(200, br#"{"status":"loading","progress":null}"#),
            Status::Loading { progress: None }
        );
        match classify(200, br#"{"status":"download-failed"}"#) {
            Status::Down { reason, status, .. } => {
                assert!(reason.contains("download-failed"), "{reason}");
                assert_eq!(status.as_deref(), Some("download-failed"));
            }
            s => panic!("{s:?}"),
        }
        assert!(matches!(classify(503, b"busy"), Status::Down { .. }));
        assert!(matches!(classify(200, b"<html>"), Status::Down { .. }));
        assert!(matches!(classify(200, b"{}"), Status::Down { .. }));
    }

    #[test]
    fn low_disk_is_named_as_the_likely_cause_of_a_failed_download() {
        use rollcall_proto::Health;
        let failed = classify(200, br#"{"status":"download-failed"}"#);
        let (h, r) = judge(&failed, Some(("/opt/nessus".into(), 1 << 30)));
        assert_eq!(h, Health::Critical);
        assert!(
            r.contains("likely cause: only 1.0 GiB free under /opt/nessus"),
            "{r}"
        );
        let (_, r) = judge(&failed, Some(("/opt/nessus".into(), 50 << 30)));
        assert!(!r.contains("likely cause"), "plenty of space: {r}");
        let (h, r) = judge(&Status::Loading { progress: Some(50) }, None);
        assert_eq!(h, Health::Warn);
        assert!(r.contains("50%"), "{r}");
        assert_eq!(judge(&Status::Ready, None).0, Health::Ok);
    }

    #[test]
    fn only_loopback_urls_may_skip_the_certificate() {
        for ok in [
            "https://127.0.0.1:8834/server/status",
            "https://localhost:8834/server/status",
            "https://[::1]:8834/server/status",
            "https://127.1.2.3/server/status",
        ] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for no in [
            "https://10.0.0.1:8834/server/status",
            "https://scanner.example:8834/",
            "http://127.0.0.1:8834/",
            "https://127.0.0.1.example.com/",
        ] {
            assert!(!is_loopback_url(no), "{no}");
        }
        assert!(Prober::new(
            "https://10.0.0.1:8834/server/status",
            Duration::from_secs(1)
        )
        .is_err());
    }

    /// nessusd as the agent meets it: HTTPS on loopback with a self-signed certificate,
    /// answering `/server/status` with whatever `answer` holds at the time (`None`: accept
    /// the connection and say nothing).
    async fn responder(
        answer: Arc<std::sync::Mutex<Option<(u16, String)>>>,
    ) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rcgen::generate_simple_self_signed(vec!["nessus.local".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (acceptor, answer) = (acceptor.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut req = [0u8; 2048];
                    let _ = tls.read(&mut req).await;
                    let reply = answer.lock().unwrap().clone();
                    match reply {
                        Some((code, body)) => {
                            let r = format!(
                                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = tls.write_all(r.as_bytes()).await;
                            let _ = tls.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_self_signed_nessusd_on_loopback_through_its_states() {
        let answer = Arc::new(std::sync::Mutex::new(Some((
            200,
            r#"{"status":"loading","progress":37}"#.to_owned(),
        ))));
        let addr = responder(answer.clone()).await;
        let url = format!("https://127.0.0.1:{}/server/status", addr.port());
        let p = Prober::new(&url, Duration::from_millis(500)).unwrap();
        assert_eq!(p.status().await, Status::Loading { progress: Some(37) });

        *answer.lock().unwrap() = Some((
            200,
            r#"{"status":"ready","progress":null,"must_destroy_session":false}"#.to_owned(),
        ));
        assert_eq!(p.status().await, Status::Ready);

        *answer.lock().unwrap() = Some((200, r#"{"status":"download-failed"}"#.to_owned()));
        assert!(
            matches!(p.status().await, Status::Down { status: Some(s), .. } if s == "download-failed")
        );

        *answer.lock().unwrap() = Some((500, "{}".to_owned()));
        match p.status().await {
            Status::Down { reason, .. } => assert!(reason.contains("HTTP 500"), "{reason}"),
            s => panic!("{s:?}"),
        }

        // Accepts, then hangs: the timeout says so.
        *answer.lock().unwrap() = None;
        match p.status().await {
            Status::Down {
                reason, timed_out, ..
            } => assert!(timed_out && reason.contains("timed out"), "{reason}"),
            s => panic!("{s:?}"),
        }

        // Nothing listening.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let p = Prober::new(
            &format!("https://127.0.0.1:{port}/server/status"),
            Duration::from_millis(500),
        )
        .unwrap();
        match p.status().await {
            Status::Down { reason, .. } => {
                assert!(reason.to_lowercase().contains("refused"), "{reason}")
            }
            s => panic!("{s:?}"),
        }
    }

    #[tokio::test]
    async fn a_tls_failure_is_down_with_the_reason() {
        // A plain-text server where HTTPS is expected.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut tcp, _)) = l.accept().await {
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let p = Prober::new(
            &format!("https://127.0.0.1:{port}/server/status"),
            Duration::from_millis(500),
        )
        .unwrap();
        assert!(matches!(p.status().await, Status::Down { .. }));
    }
}
