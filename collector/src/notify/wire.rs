//! What each receiver is sent, as its documentation gives the format, and what its answer
//! means. Pure: the HTTP exchange is in `send.rs`.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};

use crate::auth::hex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::incidents::{Action, Incident, Severity};

/// A group incident's hosts listed in a message, at most.
pub const HOSTS_LISTED: usize = 50;
/// Alertmanager's "still firing" end: the zero time.
const FIRING_END: &str = "0001-01-01T00:00:00Z";

/// What a receiver's answer means for the notification and the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Not now: try again, not before `after` if the receiver said so.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// This notification is refused for good (a 400): kept as failed, the next goes.
    Refused(String),
    /// The receiver is gone for good (410, a 404 webhook, a revoked token): it is marked
    /// failed and shown, and nothing more is tried until it is fixed.
    Gone(String),
}

/// Classifies an HTTP answer by the receivers' documented codes.
pub fn outcome(status: u16, retry_after: Option<Duration>, body: &str) -> Outcome {
    let said = body.trim().chars().take(200).collect::<String>();
    let error = if said.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {said}")
    };
    match status {
        200..=299 => Outcome::Sent,
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            error,
        },
        401 | 404 | 410 => Outcome::Gone(error),
        // Slack's action_prohibited; others' forbidden.
        403 => Outcome::Gone(error),
        _ => Outcome::Refused(error),
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(s) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = DateTime::parse_from_rfc2822(v.trim()).ok()?;
    (t.with_timezone(&Utc) - now).to_std().ok()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The headers that sign a webhook body: GitHub's `X-Hub-Signature-256` and Standard
/// Webhooks' `webhook-id` (stable across retries), `webhook-timestamp`, `webhook-signature`.
pub fn signatures(secret: &str, id: &str, at: DateTime<Utc>, body: &[u8]) -> Vec<(String, String)> {
    let ts = at.timestamp().to_string();
    // A `whsec_` secret is base64 after the prefix; any other is taken as its bytes.
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    vec![
        (
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), body))),
        ),
        ("webhook-id".into(), id.to_owned()),
        ("webhook-timestamp".into(), ts),
        (
            "webhook-signature".into(),
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &signed))
            ),
        ),
    ]
}

/// A stable fingerprint of an incident's identity.
pub fn fingerprint(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

fn is_test(a: Action) -> bool {
    a == Action::Test
}

fn firing(a: Action) -> bool {
    a != Action::Resolve
}

/// The labels every receiver sees.
fn labels(i: &Incident, a: Action) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("alertname".into(), json!(format!("rollcall-{}", i.kind)));
    l.insert("incident".into(), json!(i.key));
    l.insert("kind".into(), json!(i.kind.as_str()));
    l.insert("subject".into(), json!(i.subject));
    l.insert("severity".into(), json!(i.severity.as_str()));
    for (k, v) in &i.labels {
        l.insert(k.clone(), json!(v));
    }
    if is_test(a) {
        l.insert("test".into(), json!("true"));
    }
    Value::Object(l)
}

fn hosts_line(i: &Incident) -> String {
    let shown: Vec<&str> = i
        .hosts
        .iter()
        .take(HOSTS_LISTED)
        .map(String::as_str)
        .collect();
    let more = i.hosts.len().saturating_sub(HOSTS_LISTED);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn annotations(i: &Incident) -> Value {
    let mut a = serde_json::Map::new();
    a.insert("summary".into(), json!(i.summary));
    a.insert("next_step".into(), json!(i.next_step));
    a.insert("hosts".into(), json!(hosts_line(i)));
    if let Some(r) = &i.runbook {
        a.insert("runbook_url".into(), json!(r));
    }
    if let Some(r) = &i.resolution {
        a.insert("resolution".into(), json!(r));
    }
    Value::Object(a)
}

fn link(external: &str, i: &Incident) -> String {
    format!("{external}/api/v1/incidents/{}", i.id)
}

/// The Alertmanager webhook payload, version 4, with this one incident as its alert.
pub fn webhook(receiver: &str, external: &str, i: &Incident, a: Action) -> Value {
    let status = if firing(a) { "firing" } else { "resolved" };
    let ends = match (a, i.resolved_at) {
        (Action::Resolve, Some(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        _ => FIRING_END.into(),
    };
    let labels = labels(i, a);
    let annotations = annotations(i);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{incident=\"{}\"}}", i.key),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"incident": i.key},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": i.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "endsAt": ends,
            "generatorURL": link(external, i),
            "fingerprint": fingerprint(&i.key),
        }]
    })
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A Slack message: a header and a section, within Slack's block limits.
pub fn slack(external: &str, i: &Incident, a: Action) -> Value {
    let head = match a {
        Action::Trigger => format!("{} {}", icon(i.severity), i.summary),
        Action::Update => format!("Update: {}", i.summary),
        Action::Resolve => format!("Resolved: {}", i.summary),
        Action::Test => "rollcall test notification (not an incident)".into(),
    };
    let mut body = String::new();
    match a {
        Action::Resolve => {
            body.push_str(&format!(
                "*Resolved:* {}\n",
                i.resolution.as_deref().unwrap_or("")
            ));
        }
        _ => {
            body.push_str(&format!("*Next step:* {}\n", i.next_step));
        }
    }
    if i.hosts.len() > 1 || !i.kind.is_host() {
        body.push_str(&format!("*Hosts ({}):* {}\n", i.hosts.len(), hosts_line(i)));
    }
    if let Some(r) = &i.runbook {
        body.push_str(&format!("*Runbook:* <{r}>\n"));
    }
    body.push_str(&format!(
        "`{}` · {} · <{}|incident {}>",
        i.key,
        i.severity.as_str(),
        link(external, i),
        i.id
    ));
    json!({
        "text": cut(&head, 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(&head, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(&body, 3000)}},
        ]
    })
}

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "[CRITICAL]",
        Severity::Error => "[ERROR]",
        Severity::Warning => "[WARNING]",
        Severity::Info => "[INFO]",
    }
}

/// PagerDuty's dedup key: the incident key, hashed if it would pass 255 characters.
pub fn dedup_key(i: &Incident) -> String {
    if i.key.len() <= 255 {
        i.key.clone()
    } else {
        format!("rollcall-{}", fingerprint(&i.key))
    }
}

/// A PagerDuty Events API v2 event.
pub fn pagerduty(routing_key: &str, external: &str, i: &Incident, a: Action) -> Value {
    let action = if firing(a) { "trigger" } else { "resolve" };
    let mut v = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(i),
    });
    if firing(a) {
        let hosts: Vec<&String> = i.hosts.iter().take(HOSTS_LISTED).collect();
        v["payload"] = json!({
            "summary": cut(&i.summary, 1024),
            "source": i.subject,
            "severity": i.severity.as_str(),
            "component": i.kind.as_str(),
            "group": i.labels.get("region").cloned().unwrap_or_default(),
            "custom_details": {
                "next_step": i.next_step,
                "hosts": hosts,
                "host_count": i.hosts.len(),
                "incident": link(external, i),
            },
        });
        let mut links = vec![json!({"href": link(external, i), "text": "rollcall incident"})];
        if let Some(r) = &i.runbook {
            links.push(json!({"href": r, "text": "runbook"}));
        }
        v["links"] = Value::Array(links);
    }
    v
}

/// The hidden marker that finds an incident's GitHub issue again.
pub fn marker(i: &Incident) -> String {
    format!("<!-- rollcall-dedup-key: {} -->", i.key)
}

pub fn github_issue(external: &str, i: &Incident, label: &str, a: Action) -> Value {
    let title = if is_test(a) {
        "[rollcall test] notification test (not an incident)".to_owned()
    } else {
        cut(&format!("[rollcall] {}", i.summary), 250)
    };
    let mut body = format!("{}\n\n**Next step:** {}\n\n", i.summary, i.next_step);
    if i.hosts.len() > 1 || !i.kind.is_host() {
        body.push_str(&format!(
            "**Hosts ({}):** {}\n\n",
            i.hosts.len(),
            hosts_line(i)
        ));
    }
    if let Some(r) = &i.runbook {
        body.push_str(&format!("**Runbook:** {r}\n\n"));
    }
    body.push_str(&format!(
        "Incident {} (`{}`, {}), opened {}: {}\n\n{}\n",
        i.id,
        i.key,
        i.severity.as_str(),
        i.opened_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        link(external, i),
        marker(i)
    ));
    json!({"title": title, "body": body, "labels": [label]})
}

pub fn github_update(i: &Incident) -> Value {
    json!({"body": format!(
        "Update: {}\n\n**Hosts ({}):** {}",
        i.summary,
        i.hosts.len(),
        hosts_line(i)
    )})
}

pub fn github_resolution(i: &Incident) -> Value {
    json!({"body": format!(
        "Resolved {}: {}",
        i.resolved_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
        i.resolution.as_deref().unwrap_or("")
    )})
}

/// Alertmanager API v2 alerts: firing ones end `ends_in` from now unless sent again;
/// a resolved one ends when it was resolved.
pub fn alertmanager(
    external: &str,
    incidents: &[(&Incident, Action)],
    now: DateTime<Utc>,
    ends_in: chrono::Duration,
) -> Value {
    Value::Array(
        incidents
            .iter()
            .map(|(i, a)| {
                let ends = match (a, i.resolved_at) {
                    (Action::Resolve, Some(t)) => t.min(now),
                    (Action::Resolve, None) => now,
                    _ => now + ends_in,
                };
                json!({
                    "labels": labels(i, *a),
                    "annotations": annotations(i),
                    "startsAt": i.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "generatorURL": link(external, i),
                })
            })
            .collect(),
    )
}

/// The incident a `rollcall notify test` carries: clearly marked, about nothing.
pub fn test_incident(receiver: &str, now: DateTime<Utc>) -> Incident {
    Incident {
        id: 0,
        key: format!("test/{receiver}/{}", now.timestamp()),
        kind: crate::incidents::Kind::Unhealthy,
        subject: "rollcall-test".into(),
        severity: Severity::Info,
        state: "open".into(),
        summary: format!(
            "rollcall test notification for receiver {receiver}: not an incident, nothing to do"
        ),
        next_step: "Nothing: this checks that notifications reach you.".into(),
        runbook: None,
        labels: Default::default(),
        hosts: vec![],
        covered_by: None,
        opened_at: now,
        updated_at: now,
        notified_at: Some(now),
        resolved_at: None,
        resolution: None,
        notified: vec![receiver.to_owned()],
        told_hosts: 0,
        told_at: None,
        history: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::Kind;
    use crate::store::suite::t;

    fn incident(hosts: usize) -> Incident {
        let mut i = test_incident("x", t(0));
        i.id = 7;
        i.key = "region-dark/us-south".into();
        i.kind = Kind::RegionDark;
        i.severity = Severity::Critical;
        i.summary = "region us-south dark: 60 of 100 live hosts silent together".into();
        i.hosts = (0..hosts).map(|n| format!("h{n:04}")).collect();
        i
    }

    #[test]
    fn signatures_match_the_documented_vectors() {
        // GitHub's documented example.
        let h = signatures(
            "It's a Secret to Everybody",
            "msg_1",
            t(0),
            b"Hello, World!",
        );
        assert_eq!(
            h[0].1,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        // Standard Webhooks: a whsec_ key is base64; the signature covers id.ts.body.
        let key = base64::engine::general_purpose::STANDARD.encode(b"k3y");
        let h = signatures(&format!("whsec_{key}"), "msg_9", t(0), b"{}");
        let ts = t(0).timestamp().to_string();
        let want = hmac_sha256(b"k3y", format!("msg_9.{ts}.{{}}").as_bytes());
        assert_eq!(h[1], ("webhook-id".into(), "msg_9".into()));
        assert_eq!(h[2].1, ts);
        assert_eq!(
            h[3].1,
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(want)
            )
        );
    }

    #[test]
    fn the_webhook_is_alertmanager_version_4() {
        let mut i = incident(3);
        let v = webhook("team", "https://c:8443", &i, Action::Trigger);
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        let a = &v["alerts"][0];
        assert_eq!(a["endsAt"], FIRING_END);
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        assert_eq!(a["generatorURL"], "https://c:8443/api/v1/incidents/7");
        i.resolved_at = Some(t(60));
        i.resolution = Some("region back".into());
        let v = webhook("team", "https://c:8443", &i, Action::Resolve);
        assert_eq!(v["alerts"][0]["status"], "resolved");
        assert_eq!(v["alerts"][0]["endsAt"], "2026-11-22T12:01:00Z");
        assert_eq!(
            v["alerts"][0]["fingerprint"], a["fingerprint"],
            "same alert"
        );
    }

    #[test]
    fn slack_and_pagerduty_stay_within_their_limits() {
        let mut i = incident(2000);
        i.summary = "x".repeat(5000);
        let s = slack("https://c", &i, Action::Trigger);
        let head = s["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(head.chars().count(), 150);
        let section = s["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("Hosts (2000)") && section.contains("and 1950 more"));
        assert!(section.chars().count() <= 3000);
        let p = pagerduty("key", "https://c", &i, Action::Trigger);
        assert_eq!(
            p["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        assert_eq!(p["dedup_key"], "region-dark/us-south");
        let r = pagerduty("key", "https://c", &i, Action::Resolve);
        assert_eq!(r["event_action"], "resolve");
        assert!(r.get("payload").is_none());
        i.key = "k".repeat(300);
        assert!(dedup_key(&i).len() <= 255);
    }

    #[test]
    fn answers_are_classified_as_the_receivers_document_them() {
        assert_eq!(outcome(202, None, "{}"), Outcome::Sent);
        assert!(matches!(
            outcome(429, Some(Duration::from_secs(7)), ""),
            Outcome::Retry { after: Some(d), .. } if d.as_secs() == 7
        ));
        assert!(matches!(outcome(503, None, ""), Outcome::Retry { .. }));
        assert_eq!(
            outcome(410, None, "channel_is_archived"),
            Outcome::Gone("HTTP 410: channel_is_archived".into())
        );
        assert!(matches!(
            outcome(400, None, "invalid_payload"),
            Outcome::Refused(_)
        ));
        assert_eq!(retry_after("12", t(0)), Some(Duration::from_secs(12)));
        assert_eq!(
            retry_after("Sun, 22 Nov 2026 12:00:30 GMT", t(0)),
            Some(Duration::from_secs(30))
        );
    }
}
