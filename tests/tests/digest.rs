//! An agent that moves from a collector of this release to one of an earlier release: the
//! earlier one takes no state digest (it refuses a heartbeat without `state`, 400) and
//! gives none. A stand-in in front of a real collector plays both: first it passes
//! everything through, then it answers as the earlier release. The agent sends one digest
//! there, is refused, and sends whole states from then on; its host stays up.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rollcall_collector::client::Client;
use rollcall_tests::{reporting_host_at, wait_until, Collector, Start};
use serde_json::Value;

/// What the stand-in saw and how it answers.
#[derive(Default)]
struct Seen {
    /// Answer as an earlier release.
    earlier: AtomicBool,
    digests_passed: AtomicUsize,
    digests_refused: AtomicUsize,
    whole_states_after: AtomicUsize,
}

/// One HTTP/1.1 request: method, path, authorization, body; `None` at the end of the stream.
fn read_request(r: &mut impl BufRead) -> Option<(String, String, Option<String>, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (mut len, mut auth) = (0usize, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = v.trim().strip_prefix("Bearer ").map(str::to_owned),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, auth, body))
}

/// Serves TLS on `listener` with the certificate in `dir`, passing requests to `upstream`.
fn stand_in(listener: TcpListener, dir: std::path::PathBuf, upstream: Client, seen: Arc<Seen>) {
    let served = Arc::new(rollcall_collector::tls::Served::load(&dir).expect("certificate"));
    let config = rollcall_collector::tls::server_config(served, None).expect("tls");
    let upstream = Arc::new(upstream);
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let (config, upstream, seen) = (config.clone(), upstream.clone(), seen.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("tls");
                let tls = rustls::StreamOwned::new(conn, tcp);
                let mut r = std::io::BufReader::new(tls);
                while let Some((method, path, auth, body)) = read_request(&mut r) {
                    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let digest = sent.get("state_digest").is_some();
                    let earlier = seen.earlier.load(Ordering::Relaxed);
                    let (status, answer) = if earlier && digest {
                        seen.digests_refused.fetch_add(1, Ordering::Relaxed);
                        (
                            400,
                            serde_json::json!({"error": "invalid JSON: missing field `state` at line 1 column 400", "field": "state"}),
                        )
                    } else {
                        if digest {
                            seen.digests_passed.fetch_add(1, Ordering::Relaxed);
                        } else if earlier && sent.get("state").is_some() {
                            seen.whole_states_after.fetch_add(1, Ordering::Relaxed);
                        }
                        let reply = upstream
                            .request(&method, &path, auth.as_deref(), Some(body))
                            .expect("the collector answers");
                        let mut answer = reply.body;
                        if earlier {
                            // An earlier release gives no digest.
                            if let Some(o) = answer.as_object_mut() {
                                o.remove("state_digest");
                            }
                        }
                        (reply.status, answer)
                    };
                    let text = answer.to_string();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        text.len()
                    );
                    let w = r.get_mut();
                    if w.write_all(head.as_bytes())
                        .and_then(|_| w.write_all(text.as_bytes()))
                        .and_then(|_| w.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
}

#[test]
fn an_agent_that_meets_a_collector_taking_no_digest_sends_whole_states() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(&d.path().join("data"), "127.0.0.1:0", "30s");
    // The stand-in's certificate from the collector's CA, so that the agent trusts it.
    let certs = d.path().join("stand-in");
    std::fs::create_dir(&certs).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(c.data.join(f), certs.join(f)).unwrap();
    }
    rollcall_collector::tls::ensure(
        &certs,
        &["localhost".into(), "127.0.0.1".into()],
        Duration::from_secs(3600),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let upstream = Client::new(&c.url, &c.data.join("ca.pem"), None).unwrap();
    stand_in(listener, certs, upstream, seen.clone());
    // The agent reports to the stand-in, listed as its one collector.
    let (_h, _a) = reporting_host_at(
        &[url],
        &c.data,
        "dg-1",
        "1s",
        "env = \"prod\", region = \"eu-de\", zone = \"fra02\", role = \"worker\"",
    );
    wait_until("digests passed through", Duration::from_secs(20), || {
        seen.digests_passed.load(Ordering::Relaxed) >= 2
    });
    seen.earlier.store(true, Ordering::Relaxed);
    wait_until(
        "whole states to the earlier release",
        Duration::from_secs(20),
        || seen.whole_states_after.load(Ordering::Relaxed) >= 3,
    );
    assert_eq!(
        seen.digests_refused.load(Ordering::Relaxed),
        1,
        "one digest refused, then whole states only"
    );
    let host = c.admin().get("/api/v1/hosts/dg-1").unwrap().body;
    rollcall_tests::assert_not_flagged(&host["host"], "dg-1");
}
