//! One HTTP exchange (or, for GitHub, the few it takes) per notification.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::config::{Receiver, ReceiverKind};
use super::wire::{self, Outcome};
use crate::incidents::{Action, Incident};

/// Every request's limit: a receiver that does not answer is retried, not waited for.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Alertmanager resolves a firing alert this long after it was last sent.
pub const ALERTMANAGER_ENDS_IN: i64 = 300;

/// A client for `r`: the system's CAs and `r.ca_file`, a timeout on everything.
pub fn client(r: &Receiver) -> Result<reqwest::Client, String> {
    let roots = crate::tls::system_roots_and(r.ca_file.as_deref())
        .map_err(|e| format!("receiver {}: ca_file {e}", r.name))?;
    let tls = crate::tls::client_config(roots).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .user_agent(concat!("rollcall-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("receiver {}: {e}", r.name))
}

fn header_after(h: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| wire::retry_after(v, now))
}

/// Sends `body` as JSON and classifies the answer.
async fn post(req: reqwest::RequestBuilder, body: &Value, now: DateTime<Utc>) -> Outcome {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    exchange(
        req.header("content-type", "application/json").body(bytes),
        now,
    )
    .await
}

async fn exchange(req: reqwest::RequestBuilder, now: DateTime<Utc>) -> Outcome {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let after = header_after(resp.headers(), now);
            let text = resp.text().await.unwrap_or_default();
            wire::outcome(status, after, &text)
        }
        Err(e) => Outcome::Retry {
            after: None,
            error: describe(&e),
        },
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = if e.is_timeout() {
        format!("no answer within {}s", TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Delivers one notification to `r`. `id` is the outbox row's (stable across retries).
pub async fn deliver(
    http: &reqwest::Client,
    r: &Receiver,
    id: i64,
    action: Action,
    inc: &Incident,
    external: &str,
    now: DateTime<Utc>,
) -> Outcome {
    match r.kind {
        ReceiverKind::Webhook => {
            let body = wire::webhook(&r.name, external, inc, action);
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let mut req = http.post(&r.url).header("content-type", "application/json");
            if let Some(s) = &r.secret {
                for (k, v) in wire::signatures(&s.0, &format!("msg_{}_{id}", r.name), now, &bytes) {
                    req = req.header(k, v);
                }
            }
            exchange(req.body(bytes), now).await
        }
        ReceiverKind::Slack => {
            let body = wire::slack(external, inc, action);
            post(http.post(&r.url), &body, now).await
        }
        ReceiverKind::Pagerduty => {
            let key = r.secret.as_ref().map_or("", |s| s.0.as_str());
            let body = wire::pagerduty(key, external, inc, action);
            let sent = post(http.post(&r.url), &body, now).await;
            if action == Action::Test && sent == Outcome::Sent {
                // A test must not leave a page open.
                let body = wire::pagerduty(key, external, inc, Action::Resolve);
                return post(http.post(&r.url), &body, now).await;
            }
            sent
        }
        ReceiverKind::Github => github(http, r, action, inc, external, now).await,
        ReceiverKind::Alertmanager => {
            let body = wire::alertmanager(
                external,
                &[(inc, action)],
                now,
                chrono::Duration::seconds(ALERTMANAGER_ENDS_IN),
            );
            post(http.post(format!("{}/api/v2/alerts", r.url)), &body, now).await
        }
    }
}

/// Re-sends the firing alerts Alertmanager must keep (it ends those not sent again).
pub async fn alertmanager_refresh(
    http: &reqwest::Client,
    r: &Receiver,
    firing: &[Incident],
    external: &str,
    now: DateTime<Utc>,
) -> Outcome {
    let list: Vec<(&Incident, Action)> = firing.iter().map(|i| (i, Action::Trigger)).collect();
    let body = wire::alertmanager(
        external,
        &list,
        now,
        chrono::Duration::seconds(ALERTMANAGER_ENDS_IN),
    );
    post(http.post(format!("{}/api/v2/alerts", r.url)), &body, now).await
}

fn gh(
    http: &reqwest::Client,
    r: &Receiver,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let token = r.secret.as_ref().map_or("", |s| s.0.as_str());
    http.request(method, format!("{}{path}", r.url))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
}

/// GitHub's answer: its rate limits are 403 or 429 with `retry-after` or
/// `x-ratelimit-remaining: 0` (then wait for `x-ratelimit-reset`, else a minute).
async fn gh_send(
    req: reqwest::RequestBuilder,
    now: DateTime<Utc>,
) -> Result<(u16, Value), Outcome> {
    let resp = req.send().await.map_err(|e| Outcome::Retry {
        after: None,
        error: describe(&e),
    })?;
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    if status == 403 || status == 429 {
        let limited = h.contains_key("retry-after")
            || h.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()) == Some("0")
            || status == 429;
        if limited {
            let after = header_after(&h, now)
                .or_else(|| {
                    let reset: i64 = h.get("x-ratelimit-reset")?.to_str().ok()?.parse().ok()?;
                    (DateTime::from_timestamp(reset, 0)? - now).to_std().ok()
                })
                .unwrap_or(Duration::from_secs(60));
            return Err(Outcome::Retry {
                after: Some(after),
                error: format!("HTTP {status}: GitHub rate limit"),
            });
        }
    }
    match wire::outcome(status, None, &text) {
        Outcome::Sent => Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null))),
        other => Err(other),
    }
}

/// The number of the open issue carrying `inc`'s marker, if any: found by listing the
/// open issues with the receiver's label (search allows too few requests a minute).
async fn gh_find(
    http: &reqwest::Client,
    r: &Receiver,
    inc: &Incident,
    now: DateTime<Utc>,
) -> Result<Option<u64>, Outcome> {
    let repo = r.repo.as_deref().unwrap_or("");
    let marker = wire::marker(inc);
    for page in 1..=20 {
        let req = gh(
            http,
            r,
            reqwest::Method::GET,
            &format!("/repos/{repo}/issues"),
        )
        .query(&[
            ("state", "open"),
            ("labels", r.label.as_str()),
            ("per_page", "100"),
            ("page", &page.to_string()),
        ]);
        let (_, list) = gh_send(req, now).await?;
        let items = list.as_array().cloned().unwrap_or_default();
        for it in &items {
            if it.get("pull_request").is_some() {
                continue;
            }
            if it["body"].as_str().is_some_and(|b| b.contains(&marker)) {
                return Ok(it["number"].as_u64());
            }
        }
        if items.len() < 100 {
            break;
        }
    }
    Ok(None)
}

async fn github(
    http: &reqwest::Client,
    r: &Receiver,
    action: Action,
    inc: &Incident,
    external: &str,
    now: DateTime<Utc>,
) -> Outcome {
    let repo = r.repo.as_deref().unwrap_or("");
    // One request to the repository's API: a path below `/repos/{repo}`, a JSON body.
    let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let req = gh(http, r, method, &format!("/repos/{repo}{path}")).json(&body);
        gh_send(req, now)
    };
    let close = |n: u64| {
        call(
            reqwest::Method::PATCH,
            format!("/issues/{n}"),
            serde_json::json!({"state": "closed", "state_reason": "completed"}),
        )
    };
    let comment = |n: u64, body: serde_json::Value| {
        call(reqwest::Method::POST, format!("/issues/{n}/comments"), body)
    };
    let run = async {
        let found = gh_find(http, r, inc, now).await?;
        match (action, found) {
            // Already opened (a retry after a crash, or a restart): never a second issue.
            (Action::Trigger, Some(_)) => {}
            (Action::Update, Some(n)) => {
                comment(n, wire::github_update(inc)).await?;
            }
            (Action::Trigger | Action::Update | Action::Test, None) => {
                let body = wire::github_issue(external, inc, &r.label, action);
                let (_, created) = call(reqwest::Method::POST, "/issues".into(), body).await?;
                if let (Action::Test, Some(n)) = (action, created["number"].as_u64()) {
                    close(n).await?;
                }
            }
            (_, Some(n)) => {
                comment(n, wire::github_resolution(inc)).await?;
                close(n).await?;
            }
            // Nothing open to close (closed by hand, or never opened).
            (Action::Resolve, None) => {}
        }
        Ok::<(), Outcome>(())
    };
    match run.await {
        Ok(()) => Outcome::Sent,
        Err(o) => o,
    }
}
