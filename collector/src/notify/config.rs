//! `[[notify]]` blocks and `[incidents]` in collector.toml: receivers, their routes and
//! secrets (read from files or the environment, never printed), checked once at load.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use rollcall_support::ConfigError;

use crate::incidents::{Incident, Kind, Rules, Severity};

/// Which wire a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReceiverKind {
    /// The Alertmanager webhook JSON, signed.
    Webhook,
    Slack,
    Pagerduty,
    Github,
    /// Alertmanager's own API (`POST /api/v2/alerts`).
    Alertmanager,
}

impl ReceiverKind {
    pub const ALL: [ReceiverKind; 5] = [
        ReceiverKind::Webhook,
        ReceiverKind::Slack,
        ReceiverKind::Pagerduty,
        ReceiverKind::Github,
        ReceiverKind::Alertmanager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Pagerduty => "pagerduty",
            ReceiverKind::Github => "github",
            ReceiverKind::Alertmanager => "alertmanager",
        }
    }

    /// The least time between two requests to one receiver, from its documented limits.
    pub fn spacing(self) -> Duration {
        match self {
            ReceiverKind::Slack => Duration::from_secs(1),
            // About 120 events a minute per integration key.
            ReceiverKind::Pagerduty => Duration::from_millis(500),
            // At most 80 content-creating requests a minute.
            ReceiverKind::Github => Duration::from_millis(750),
            ReceiverKind::Webhook | ReceiverKind::Alertmanager => Duration::ZERO,
        }
    }
}

/// A secret's value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Which incidents a receiver takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Route {
    /// Per label, the values taken; a label not listed matches anything. An incident
    /// without the label (a fleet-wide one) matches too.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Kinds taken (`unhealthy` takes every `unhealthy-…`); empty takes all.
    pub kinds: Vec<String>,
    pub min_severity: Severity,
}

impl Route {
    pub fn takes(&self, i: &Incident) -> bool {
        i.severity >= self.min_severity
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| i.kind.matches(k)))
            && self
                .labels
                .iter()
                .all(|(label, values)| i.labels.get(label).is_none_or(|v| values.contains(v)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// Where to send: the webhook, the Events API, the GitHub API base, Alertmanager's base.
    pub url: String,
    /// HMAC key (webhook), routing key (PagerDuty), token (GitHub).
    pub secret: Option<Secret>,
    /// GitHub: `owner/repo`.
    pub repo: Option<String>,
    /// GitHub: the label every rollcall issue carries.
    pub label: String,
    /// Extra CA certificates to trust (PEM), for an internal receiver.
    pub ca_file: Option<PathBuf>,
    pub route: Route,
}

/// `[incidents]` and `[[notify]]`, as read from the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifyConfig {
    pub rules: Rules,
    pub receivers: Vec<Receiver>,
    /// The collector's address for links in notifications.
    pub external_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIncidents {
    flap_changes: Option<Spanned<usize>>,
    flap_window: Option<Spanned<String>>,
    dark_min_hosts: Option<Spanned<usize>>,
    runbooks: Option<BTreeMap<Spanned<String>, String>>,
    external_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReceiver {
    name: Spanned<String>,
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
    url_env: Option<Spanned<String>>,
    base_url: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    secret_env: Option<Spanned<String>>,
    routing_key_file: Option<Spanned<PathBuf>>,
    routing_key_env: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    token_env: Option<Spanned<String>>,
    repo: Option<Spanned<String>>,
    label: Option<String>,
    ca_file: Option<Spanned<PathBuf>>,
    allow_http: Option<bool>,
    #[serde(rename = "match")]
    matchers: Option<BTreeMap<String, OneOrMany>>,
    kinds: Option<Vec<Spanned<String>>>,
    min_severity: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// PagerDuty's Events API v2.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
pub const GITHUB_URL: &str = "https://api.github.com";

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::at(self.path, self.text, span, message)
    }

    /// A secret from a file (trimmed) or an environment variable; the value is never put
    /// in an error.
    fn secret(
        &self,
        what: &str,
        file: &Option<Spanned<PathBuf>>,
        env: &Option<Spanned<String>>,
    ) -> Result<Option<Secret>, ConfigError> {
        let value = match (file, env) {
            (Some(f), Some(_)) => {
                return Err(self.err(
                    f.span(),
                    format!("give the {what} either from a file or from the environment, not both"),
                ))
            }
            (Some(f), None) => {
                let p = f.get_ref();
                let v = std::fs::read_to_string(p).map_err(|e| {
                    self.err(
                        f.span(),
                        format!(
                            "cannot read the {what} from {} ({e}); the collector reads it at start, so make it readable by its user",
                            p.display()
                        ),
                    )
                })?;
                (v.trim().to_owned(), f.span())
            }
            (None, Some(e)) => {
                let v = std::env::var(e.get_ref()).map_err(|_| {
                    self.err(
                        e.span(),
                        format!(
                            "the environment variable {} (the {what}) is not set",
                            e.get_ref()
                        ),
                    )
                })?;
                (v.trim().to_owned(), e.span())
            }
            (None, None) => return Ok(None),
        };
        if value.0.is_empty() {
            return Err(self.err(value.1, format!("the {what} is empty")));
        }
        Ok(Some(Secret(value.0)))
    }

    /// Checks a receiver URL: http(s), and plain http only where it cannot cross an
    /// untrusted network (loopback, private addresses, internal names) unless allowed.
    fn url(&self, v: &str, span: Range<usize>, allow_http: bool) -> Result<String, ConfigError> {
        let u = reqwest::Url::parse(v).map_err(|e| {
            self.err(
                span.clone(),
                format!("invalid URL ({e}); write it like \"https://hooks.example.com/rollcall\""),
            )
        })?;
        match u.scheme() {
            "https" => {}
            "http" if allow_http || internal(&u) => {}
            "http" => {
                return Err(self.err(
                    span,
                    format!(
                        "plain http to {} would send incidents and credentials in the clear; use https, or set allow_http = true if that network is internal",
                        u.host_str().unwrap_or("?")
                    ),
                ))
            }
            s => {
                return Err(self.err(
                    span,
                    format!("URL scheme {s:?} is not supported; use https://"),
                ))
            }
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(self.err(span, "the URL has no host".into()));
        }
        Ok(v.trim_end_matches('/').to_owned())
    }
}

/// Loopback, a private or link-local address, or a name that only resolves inside.
fn internal(u: &reqwest::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback() || a.is_private() || a.is_link_local(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d == "localhost"
                || !d.contains('.')
                || [
                    ".internal",
                    ".local",
                    ".lan",
                    ".localhost",
                    ".intranet",
                    ".corp",
                    ".home.arpa",
                ]
                .iter()
                .any(|s| d.ends_with(s))
                || d.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
        }
        None => false,
    }
}

fn duration(ctx: &Ctx, v: &Spanned<String>, example: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.get_ref()).map_err(|e| {
        ctx.err(
            v.span(),
            format!(
                "invalid duration {:?} ({e}); write it like \"{example}\"",
                v.get_ref()
            ),
        )
    })
}

pub(crate) fn build(
    path: &Path,
    text: &str,
    incidents: Option<RawIncidents>,
    notify: Vec<RawReceiver>,
) -> Result<NotifyConfig, ConfigError> {
    let ctx = Ctx { path, text };
    let mut c = NotifyConfig::default();
    if let Some(i) = incidents {
        if let Some(v) = i.flap_changes {
            if *v.get_ref() < 2 {
                return Err(ctx.err(
                    v.span(),
                    "flap_changes below 2 would call every failure flapping; the default is 4"
                        .into(),
                ));
            }
            c.rules.flap_changes = v.into_inner();
        }
        if let Some(v) = &i.flap_window {
            c.rules.flap_window = duration(&ctx, v, "1h")?;
        }
        if let Some(v) = i.dark_min_hosts {
            if *v.get_ref() < 2 {
                return Err(ctx.err(
                    v.span(),
                    "dark_min_hosts below 2 would call one silent host a dark region; the default is 5".into(),
                ));
            }
            c.rules.dark_min_hosts = v.into_inner();
        }
        for (k, link) in i.runbooks.unwrap_or_default() {
            let kind = Kind::parse(k.get_ref()).ok_or_else(|| {
                ctx.err(
                    k.span(),
                    format!(
                        "unknown incident kind {:?}; the kinds are: {}",
                        k.get_ref(),
                        Kind::ALL.map(Kind::as_str).join(", ")
                    ),
                )
            })?;
            c.rules.runbooks.insert(kind, link);
        }
        if let Some(v) = i.external_url {
            c.external_url = Some(ctx.url(v.get_ref(), v.span(), true)?);
        }
    }
    for r in notify {
        let name = r.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(ctx.err(
                r.name.span(),
                format!("receiver name {name:?}: use letters, digits, '-', '_' or '.'"),
            ));
        }
        if c.receivers.iter().any(|x| x.name == name) {
            return Err(ctx.err(
                r.name.span(),
                format!("two receivers are named {name:?}; each needs its own name"),
            ));
        }
        let kind = ReceiverKind::ALL
            .into_iter()
            .find(|k| k.as_str() == r.kind.get_ref())
            .ok_or_else(|| {
                ctx.err(
                    r.kind.span(),
                    format!(
                        "unknown receiver kind {:?}; use one of: webhook, slack, pagerduty, github, alertmanager",
                        r.kind.get_ref()
                    ),
                )
            })?;
        let allow_http = r.allow_http.unwrap_or(false);
        let url_secret = ctx.secret("receiver URL", &r.url_file, &r.url_env)?;
        let url = match (&r.url, &r.base_url, url_secret, kind) {
            (Some(u), None, None, ReceiverKind::Github)
            | (None, Some(u), None, ReceiverKind::Github) => {
                ctx.url(u.get_ref(), u.span(), allow_http)?
            }
            (None, None, None, ReceiverKind::Github) => GITHUB_URL.into(),
            (None, None, None, ReceiverKind::Pagerduty) => PAGERDUTY_URL.into(),
            (Some(u), None, None, _) => ctx.url(u.get_ref(), u.span(), allow_http)?,
            (None, None, Some(s), _) => ctx.url(&s.0, r.kind.span(), allow_http).map_err(|_| {
                ctx.err(
                    r.kind.span(),
                    format!("receiver {name}: the URL in its url_file/url_env is not an https URL"),
                )
            })?,
            (None, Some(u), _, _) => {
                return Err(ctx.err(
                    u.span(),
                    "base_url is for kind = \"github\"; other receivers take url".into(),
                ))
            }
            (None, None, None, _) => {
                return Err(ctx.err(
                    r.kind.span(),
                    format!("receiver {name} needs url (or url_file / url_env)"),
                ))
            }
            _ => {
                return Err(ctx.err(
                    r.name.span(),
                    format!("receiver {name}: give its URL once (url, url_file or url_env)"),
                ))
            }
        };
        let secret = match kind {
            ReceiverKind::Webhook => ctx.secret("signing secret", &r.secret_file, &r.secret_env)?,
            ReceiverKind::Pagerduty => Some(
                ctx.secret("routing key", &r.routing_key_file, &r.routing_key_env)?
                    .ok_or_else(|| {
                        ctx.err(
                            r.kind.span(),
                            format!("receiver {name} needs routing_key_file (or routing_key_env): the integration key of its PagerDuty service"),
                        )
                    })?,
            ),
            ReceiverKind::Github => Some(ctx.secret("token", &r.token_file, &r.token_env)?.ok_or_else(|| {
                ctx.err(
                    r.kind.span(),
                    format!("receiver {name} needs token_file (or token_env): a token that may open issues in its repo"),
                )
            })?),
            ReceiverKind::Slack | ReceiverKind::Alertmanager => None,
        };
        for (given, key) in [
            (&r.secret_file, "secret_file"),
            (&r.routing_key_file, "routing_key_file"),
            (&r.token_file, "token_file"),
        ] {
            let fits = matches!(
                (key, kind),
                ("secret_file", ReceiverKind::Webhook)
                    | ("routing_key_file", ReceiverKind::Pagerduty)
                    | ("token_file", ReceiverKind::Github)
            );
            if let (Some(v), false) = (given, fits) {
                return Err(ctx.err(
                    v.span(),
                    format!("{key} does not apply to a {} receiver", kind.as_str()),
                ));
            }
        }
        let repo = match (kind, &r.repo) {
            (ReceiverKind::Github, Some(v)) => {
                let ok = v.get_ref().split('/').filter(|p| !p.is_empty()).count() == 2
                    && v.get_ref().matches('/').count() == 1;
                if !ok {
                    return Err(ctx.err(
                        v.span(),
                        format!("repo {:?}: write it as \"owner/name\"", v.get_ref()),
                    ));
                }
                Some(v.get_ref().clone())
            }
            (ReceiverKind::Github, None) => {
                return Err(ctx.err(
                    r.kind.span(),
                    format!(
                        "receiver {name} needs repo = \"owner/name\": where its issues are opened"
                    ),
                ))
            }
            (_, Some(v)) => return Err(ctx.err(v.span(), "repo is for kind = \"github\"".into())),
            (_, None) => None,
        };
        if let Some(ca) = &r.ca_file {
            if !ca.get_ref().is_file() {
                return Err(ctx.err(
                    ca.span(),
                    format!(
                        "ca_file {} does not exist; give the PEM of the CA that signs this receiver's certificate",
                        ca.get_ref().display()
                    ),
                ));
            }
        }
        let mut route = Route::default();
        for (label, values) in r.matchers.unwrap_or_default() {
            let values = match values {
                OneOrMany::One(v) => vec![v],
                OneOrMany::Many(v) => v,
            };
            if !["env", "region", "zone", "role"].contains(&label.as_str()) {
                return Err(ctx.err(
                    r.name.span(),
                    format!("receiver {name}: match on {label:?} is not possible; incidents carry env, region, zone and role"),
                ));
            }
            route.labels.insert(label, values);
        }
        for k in r.kinds.unwrap_or_default() {
            if !Kind::ALL.iter().any(|kind| kind.matches(k.get_ref())) {
                return Err(ctx.err(
                    k.span(),
                    format!(
                        "unknown incident kind {:?}; the kinds are: {} (\"unhealthy\" takes every unhealthy-…)",
                        k.get_ref(),
                        Kind::ALL.map(Kind::as_str).join(", ")
                    ),
                ));
            }
            route.kinds.push(k.into_inner());
        }
        if let Some(s) = r.min_severity {
            route.min_severity = Severity::parse(s.get_ref()).ok_or_else(|| {
                ctx.err(
                    s.span(),
                    format!(
                        "unknown severity {:?}; use info, warning, error or critical",
                        s.get_ref()
                    ),
                )
            })?;
        }
        c.receivers.push(Receiver {
            name,
            kind,
            url,
            secret,
            repo,
            label: r.label.unwrap_or_else(|| "rollcall".into()),
            ca_file: r.ca_file.map(Spanned::into_inner),
            route,
        });
    }
    Ok(c)
}
