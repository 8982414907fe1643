//! HTTPS to the collector: its CA pinned (the only one trusted), optionally this host's
//! client certificate, a timeout on everything.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::CollectorConfig;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: refused, timed out, TLS failed, DNS.
    Unreachable(String),
    /// The collector answered with an error.
    Refused {
        status: u16,
        error: String,
        retry_after: Option<Duration>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) => write!(f, "unreachable: {e}"),
            Failure::Refused { status, error, .. } => write!(f, "HTTP {status}: {error}"),
        }
    }
}

#[derive(Clone)]
pub struct Link {
    http: reqwest::Client,
    base: String,
}

fn tls_error(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{}: {e}", path.display()))
}

impl Link {
    pub fn new(c: &CollectorConfig) -> std::io::Result<Link> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(&c.ca_file).map_err(|e| tls_error(&c.ca_file, e))?
        {
            roots
                .add(cert.map_err(|e| tls_error(&c.ca_file, e))?)
                .map_err(|e| tls_error(&c.ca_file, e))?;
        }
        if roots.is_empty() {
            return Err(tls_error(
                &c.ca_file,
                "no certificate in it; point collector.ca_file at the collector's ca.pem",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots);
        let tls = match (&c.client_cert, &c.client_key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| tls_error(cert, e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| tls_error(cert, e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(cert, e))?
            }
            _ => builder.with_no_client_auth(),
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Link {
            http,
            base: c.url.trim_end_matches('/').to_owned(),
        })
    }

    /// POSTs `body` as JSON with `token`; the reply parsed, or why not.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &B,
    ) -> Result<R, Failure> {
        let url = format!("{}{path}", self.base);
        self.call(&url, self.http.post(&url).bearer_auth(token).json(body))
            .await
    }

    /// GETs `path` with `token`; the reply parsed, or why not.
    pub async fn get<R: DeserializeOwned>(&self, path: &str, token: &str) -> Result<R, Failure> {
        let url = format!("{}{path}", self.base);
        self.call(&url, self.http.get(&url).bearer_auth(token))
            .await
    }

    async fn call<R: DeserializeOwned>(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<R, Failure> {
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Unreachable(chain(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::Unreachable(chain(&e)))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| Failure::Refused {
                status,
                error: format!("unreadable answer from {url}: {e}"),
                retry_after: None,
            });
        }
        let error = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        Err(Failure::Refused {
            status,
            error,
            retry_after,
        })
    }
}

/// An error with its causes: reqwest's own message alone says little ("error sending
/// request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
