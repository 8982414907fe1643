//! Stand-ins for hosted receivers (a webhook, Slack, PagerDuty, GitHub) on loopback: each
//! records what it was sent and answers as its documentation says, or as a test scripts
//! it (429 with Retry-After, 5xx, 410, no answer at all).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted answer: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// 200 `{}`.
    Webhook,
    /// 200 `ok`.
    Slack,
    /// 202 `{"status":"success",...}`.
    Pagerduty,
    /// Issues in a repository, kept across restarts of the stand-in.
    Github,
}

#[derive(Debug, Default)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub state: String,
    pub comments: Vec<String>,
}

#[derive(Default)]
pub struct Shared {
    pub requests: Vec<Request>,
    pub script: VecDeque<Answer>,
    pub issues: Vec<Issue>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub shared: Arc<Mutex<Shared>>,
    flavour: Flavour,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(flavour: Flavour) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), flavour, Default::default())
    }

    fn start_on(addr: SocketAddr, flavour: Flavour, shared: Arc<Mutex<Shared>>) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind stand-in");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        // Accepts blocking (no polling delay on any request); `stop` wakes it with a
        // connection of its own.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || serve(conn, flavour, &s));
                }
            }
        });
        Receiver {
            addr,
            shared,
            flavour,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops answering (connections are refused), keeping what it holds.
    pub fn stop(&self) {
        if !self.stop.swap(true, Ordering::Relaxed) {
            let _ = TcpStream::connect(self.addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    /// The same stand-in again on the same port, with what it held.
    pub fn restart(&self) -> Receiver {
        self.stop();
        let mut tries = 0;
        loop {
            match std::panic::catch_unwind(|| {
                Self::start_on(self.addr, self.flavour, self.shared.clone())
            }) {
                Ok(r) => return r,
                Err(_) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.lock().unwrap().script.extend(answers);
    }

    /// How many requests it took, without copying them.
    pub fn count(&self) -> usize {
        self.shared.lock().unwrap().requests.len()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// `(incident, status)` of each Alertmanager-style webhook body it took, in order.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.taken()
            .iter()
            .map(|v| {
                (
                    v["alerts"][0]["labels"]["incident"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    v["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Bodies of the requests it took (2xx), as JSON.
    pub fn taken(&self) -> Vec<Value> {
        self.requests().iter().map(Request::json).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.stop.swap(true, Ordering::Relaxed) {
            let _ = TcpStream::connect(self.addr);
        }
    }
}

fn serve(conn: TcpStream, flavour: Flavour, shared: &Mutex<Shared>) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    };
    let scripted = shared.lock().unwrap().script.pop_front();
    let (status, extra, text) = match scripted {
        Some((0, _, _)) => {
            // No answer at all: hold the connection past the client's timeout.
            std::thread::sleep(Duration::from_secs(12));
            return;
        }
        Some(a) => {
            if (200..300).contains(&a.0) {
                shared.lock().unwrap().requests.push(req);
            }
            a
        }
        None => {
            let a = answer(flavour, &req, &mut shared.lock().unwrap());
            shared.lock().unwrap().requests.push(req);
            a
        }
    };
    let mut out = conn;
    // One write, no Nagle: a head and a body in two small segments would wait for the
    // client's delayed ACK (40 ms) on every request.
    let _ = out.set_nodelay(true);
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: application/json\r\n",
        text.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&text);
    let _ = out.write_all(head.as_bytes());
}

fn answer(flavour: Flavour, req: &Request, s: &mut Shared) -> Answer {
    match flavour {
        Flavour::Webhook => (200, vec![], "{}".into()),
        Flavour::Slack => (200, vec![], "ok".into()),
        Flavour::Pagerduty => (
            202,
            vec![],
            json!({"status": "success", "message": "Event processed", "dedup_key": req.json()["dedup_key"]})
                .to_string(),
        ),
        Flavour::Github => github(req, s),
    }
}

fn github(req: &Request, s: &mut Shared) -> Answer {
    // GitHub Enterprise serves the same API under /api/v3.
    let path = req.path.split('?').next().unwrap_or("");
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = |v: Value, code: u16| (code, vec![], v.to_string());
    if req.headers.get("authorization").map(String::as_str) != Some("Bearer gh-token") {
        return ok(json!({"message": "Bad credentials"}), 401);
    }
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["repos", _, _, "issues"]) => {
            let label = req
                .path
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("labels="))
                .unwrap_or("")
                .to_owned();
            let list: Vec<Value> = s
                .issues
                .iter()
                .filter(|i| i.state == "open" && i.labels.contains(&label))
                .map(|i| json!({"number": i.number, "title": i.title, "body": i.body, "state": i.state}))
                // A pull request is an issue too, and must be skipped.
                .chain([json!({"number": 999, "title": "a PR", "body": "", "pull_request": {}})])
                .collect();
            ok(Value::Array(list), 200)
        }
        ("POST", ["repos", _, _, "issues"]) => {
            let v = req.json();
            let number = s.issues.len() as u64 + 1;
            s.issues.push(Issue {
                number,
                title: v["title"].as_str().unwrap_or("").into(),
                body: v["body"].as_str().unwrap_or("").into(),
                labels: v["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect(),
                state: "open".into(),
                comments: vec![],
            });
            ok(json!({"number": number}), 201)
        }
        ("POST", ["repos", _, _, "issues", n, "comments"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let body = req.json()["body"].as_str().unwrap_or("").to_owned();
            match s.issues.iter_mut().find(|i| i.number == n) {
                Some(i) => {
                    i.comments.push(body);
                    ok(json!({"id": 1}), 201)
                }
                None => ok(json!({"message": "Not Found"}), 404),
            }
        }
        ("PATCH", ["repos", _, _, "issues", n]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let state = req.json()["state"].as_str().unwrap_or("open").to_owned();
            match s.issues.iter_mut().find(|i| i.number == n) {
                Some(i) => {
                    i.state = state;
                    ok(json!({"number": n}), 200)
                }
                None => ok(json!({"message": "Not Found"}), 404),
            }
        }
        _ => ok(json!({"message": "Not Found"}), 404),
    }
}
