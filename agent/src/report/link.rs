//! HTTPS to the collector: its CA pinned (the only one trusted), optionally this host's
//! client certificate, a timeout on everything.
//!
//! With several collectors (`url` a list), calls go to one at a time. Each host starts at
//! its own place in the list (by a hash of its name), so a fleet whose configs all list the
//! same collectors spreads over them. A collector that does not answer, or answers 503, is
//! left for the next one in the list on the next call (the caller's backoff and jitter
//! still apply). A host that moved away from its own first choice tries it again after
//! 5 to 15 minutes, its own share of that spread: the hosts that moved do not all come
//! back at once when a collector returns.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    route: Arc<Mutex<Route>>,
}

/// The soonest and latest a host that moved goes back to its first choice.
const BACK_AFTER: Duration = Duration::from_secs(300);
const BACK_SPREAD: Duration = Duration::from_secs(600);

/// Which collector the next call goes to.
#[derive(Debug)]
pub(crate) struct Route {
    bases: Vec<String>,
    /// This host's first choice.
    preferred: usize,
    current: usize,
    /// How long after a move this host goes back to its first choice.
    back_after: Duration,
    /// When it goes back, while it is away.
    back_at: Option<Instant>,
}

impl Route {
    pub(crate) fn new(urls: &[String], host: &str) -> Route {
        let bases: Vec<String> = urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        let h = super::schedule::stable_hash(host);
        let preferred = (h % bases.len().max(1) as u64) as usize;
        Route {
            preferred,
            current: preferred,
            back_after: BACK_AFTER
                + Duration::from_millis((h >> 16) % (BACK_SPREAD.as_millis() as u64 + 1)),
            back_at: None,
            bases,
        }
    }

    /// This host's first choice.
    pub(crate) fn first(&self) -> &str {
        &self.bases[self.preferred]
    }

    /// The collector to call at `now`.
    pub(crate) fn target(&mut self, now: Instant) -> String {
        if self.back_at.is_some_and(|t| now >= t) {
            self.back_at = None;
            self.current = self.preferred;
            log::info!(target: "agent", "reporting to {} again, this host's first choice", self.bases[self.current]);
        }
        self.bases[self.current].clone()
    }

    /// A call to `base` failed at `now` with `why`: the next call goes to the next one.
    pub(crate) fn failed(&mut self, base: &str, why: &str, now: Instant) {
        // Another call may have moved on already.
        if self.bases.len() < 2 || self.bases[self.current] != base {
            return;
        }
        self.current = (self.current + 1) % self.bases.len();
        if self.current == self.preferred {
            self.back_at = None;
        } else if self.back_at.is_none() {
            self.back_at = Some(now + self.back_after);
        }
        log::warn!(target: "agent", "collector {base} failed ({why}); reporting to {} from now on", self.bases[self.current]);
    }
}

fn tls_error(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{}: {e}", path.display()))
}

impl Link {
    /// Calls to the collectors of `c`, starting at `host`'s own first choice.
    pub fn new(c: &CollectorConfig, host: &str) -> std::io::Result<Link> {
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
            route: Arc::new(Mutex::new(Route::new(&c.urls, host))),
        })
    }

    /// The collector calls go to now.
    pub fn current(&self) -> String {
        self.route().target(Instant::now())
    }

    fn route(&self) -> std::sync::MutexGuard<'_, Route> {
        self.route.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// POSTs `body` as JSON with `token`; the reply parsed, or why not.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &B,
    ) -> Result<R, Failure> {
        let base = self.current();
        let url = format!("{base}{path}");
        let out = self
            .call(&url, self.http.post(&url).bearer_auth(token).json(body))
            .await;
        self.after(&base, out)
    }

    /// GETs `path` with `token`; the reply parsed, or why not.
    pub async fn get<R: DeserializeOwned>(&self, path: &str, token: &str) -> Result<R, Failure> {
        let base = self.current();
        let url = format!("{base}{path}");
        let out = self
            .call(&url, self.http.get(&url).bearer_auth(token))
            .await;
        self.after(&base, out)
    }

    /// Moves on from `base` if it did not answer, or cannot take anything now (503).
    fn after<R>(&self, base: &str, out: Result<R, Failure>) -> Result<R, Failure> {
        if let Err(f @ (Failure::Unreachable(_) | Failure::Refused { status: 503, .. })) = &out {
            self.route().failed(base, &f.to_string(), Instant::now());
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> Vec<String> {
        ["https://a:8443/", "https://b:8443", "https://c:8443"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn hosts_spread_over_the_list_and_move_on_when_one_fails() {
        let mut first = [0usize; 3];
        for i in 0..300 {
            let r = Route::new(&urls(), &format!("host-{i}"));
            first[r.preferred] += 1;
        }
        assert!(first.iter().all(|n| *n > 60), "{first:?}");
        let t0 = Instant::now();
        let mut r = Route::new(&urls(), "web-1");
        let mine = r.target(t0);
        r.failed(&mine, "unreachable", t0);
        let next = r.target(t0);
        assert_ne!(next, mine);
        // A failure already moved past is not counted twice.
        r.failed(&mine, "unreachable", t0);
        assert_eq!(r.target(t0), next);
        // Back to its own first choice after its share of 5-15 minutes, not before.
        let back = r.back_after;
        assert!(
            back >= BACK_AFTER && back <= BACK_AFTER + BACK_SPREAD,
            "{back:?}"
        );
        assert_eq!(r.target(t0 + back - Duration::from_secs(1)), next);
        assert_eq!(r.target(t0 + back), mine);
        // All down: round and round, one step a failure.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let b = r.target(t0);
            seen.push(b.clone());
            r.failed(&b, "unreachable", t0);
        }
        seen.sort();
        assert_eq!(seen, ["https://a:8443", "https://b:8443", "https://c:8443"]);
    }

    #[test]
    fn the_hosts_that_moved_come_back_spread_out() {
        let backs: Vec<Duration> = (0..200)
            .map(|i| Route::new(&urls(), &format!("h{i}")).back_after)
            .collect();
        let within_a_minute = backs
            .iter()
            .filter(|b| **b < BACK_AFTER + Duration::from_secs(60))
            .count();
        assert!(
            within_a_minute < 40,
            "{within_a_minute} of 200 in the first minute"
        );
    }

    #[test]
    fn one_collector_stays_put() {
        let t0 = Instant::now();
        let mut r = Route::new(&urls()[..1], "web-1");
        r.failed("https://a:8443", "unreachable", t0);
        assert_eq!(r.target(t0), "https://a:8443");
        assert!(r.back_at.is_none());
    }
}
