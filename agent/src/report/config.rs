//! `[collector]`: where and how the agent reports.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::{duration, HumanDuration, Invalid};

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// One collector, or several sharing a database: the agent reports to one at a time
    /// and moves to the next when it fails.
    pub urls: Vec<String>,
    /// The collector's CA, pinned: the only certificate authority trusted.
    pub ca_file: PathBuf,
    /// The enrollment secret, exchanged once for this host's own credential.
    pub enroll_secret_file: Option<PathBuf>,
    pub interval: Duration,
    /// Mutual TLS: this host's certificate chain and key (PEM), when the collector wants one.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Events kept on disk while the collector is unreachable; the oldest beyond these are
    /// dropped (and counted).
    pub spool_max_events: usize,
    pub spool_max_bytes: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCollector {
    url: Spanned<Urls>,
    ca_file: Option<Spanned<PathBuf>>,
    enroll_secret_file: Option<Spanned<PathBuf>>,
    interval: Option<Spanned<HumanDuration>>,
    client_cert: Option<Spanned<PathBuf>>,
    client_key: Option<Spanned<PathBuf>>,
    spool_max_events: Option<Spanned<usize>>,
    spool_max_bytes: Option<Spanned<u64>>,
}

/// `url = "https://…"` or `url = ["https://a…", "https://b…"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

/// The section, checked: TLS always, the CA pinned, files that exist.
pub(crate) fn validate(
    section: Option<Spanned<RawCollector>>,
) -> Result<Option<CollectorConfig>, Invalid> {
    Ok(match section {
        None => None,
        Some(c) => {
            let section = c.span();
            let c = c.into_inner();
            let url_span = c.url.span();
            let urls = match c.url.into_inner() {
                Urls::One(u) => vec![u],
                Urls::Many(list) => list,
            };
            if urls.is_empty() {
                return Err((
                    url_span,
                    "collector url is an empty list; give at least one https:// URL".to_owned(),
                ));
            }
            for (i, url) in urls.iter().enumerate() {
                if !url.starts_with("https://") {
                    return Err((
                        url_span,
                        format!(
                            "collector url \"{url}\" must start with https:// (TLS is always on)"
                        ),
                    ));
                }
                if urls[..i].contains(url) {
                    return Err((url_span, format!("collector url \"{url}\" is listed twice")));
                }
            }
            let mut files = Vec::new();
            for f in [c.ca_file, c.enroll_secret_file, c.client_cert, c.client_key] {
                files.push(match f {
                    None => None,
                    Some(f) => {
                        let span = f.span();
                        let p = f.into_inner();
                        if !p.is_file() {
                            return Err((
                                span,
                                format!(
                                    "file \"{}\" does not exist; create it or fix the path",
                                    p.display()
                                ),
                            ));
                        }
                        Some(p)
                    }
                });
            }
            let client_key = files.pop().flatten();
            let client_cert = files.pop().flatten();
            let enroll_secret_file = files.pop().flatten();
            let Some(ca_file) = files.pop().flatten() else {
                return Err((section, "collector.ca_file is required: the collector's CA certificate (its ca.pem), which the agent pins".to_owned()));
            };
            if client_cert.is_some() != client_key.is_some() {
                return Err((
                    section,
                    "mutual TLS needs both client_cert and client_key (or neither)".to_owned(),
                ));
            }
            let (interval, _) =
                duration(c.interval, Duration::from_secs(60), Duration::from_secs(1))?;
            let spool_max_events = match c.spool_max_events {
                None => 10_000,
                Some(n) if *n.get_ref() >= 100 => n.into_inner(),
                Some(n) => {
                    return Err((n.span(), "spool_max_events must be at least 100".to_owned()))
                }
            };
            let spool_max_bytes = match c.spool_max_bytes {
                None => 8 << 20,
                Some(n) if *n.get_ref() >= 64 * 1024 => n.into_inner(),
                Some(n) => {
                    return Err((
                        n.span(),
                        "spool_max_bytes must be at least 65536".to_owned(),
                    ))
                }
            };
            Some(CollectorConfig {
                urls,
                ca_file,
                enroll_secret_file,
                interval,
                client_cert,
                client_key,
                spool_max_events,
                spool_max_bytes,
            })
        }
    })
}
