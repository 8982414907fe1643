//! Debian's Chromium, headless, driven through Debian's chromedriver over the W3C WebDriver
//! protocol: what a user's browser does with the dashboard, checked from a test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether this machine has both (the test script installs them).
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// One browser window.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

/// WebDriver's key codes.
pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// A fresh headless Chromium with an empty profile, `width` × `height`. The collector's
    /// certificate is its own CA's, which this profile does not trust: certificate errors
    /// are ignored (the dashboard is under test, not the PKI).
    pub fn start(width: u32, height: u32) -> Browser {
        let port = crate::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver)");
        // reqwest is built without a TLS provider of its own (chromedriver speaks plain
        // HTTP, but the client is made with TLS support all the same).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("{base}/status"))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_none_or(|v| v["value"]["ready"] != true)
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-features=Translate,MediaRouter,OptimizationHints".into(),
            "--ignore-certificate-errors".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        } } });
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .expect("new WebDriver session");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        v["value"].clone()
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.call(method, path, body);
        if let Some(e) = v.get("error") {
            panic!("WebDriver {method} {path}: {e}: {}", v["message"]);
        }
        v
    }

    pub fn goto(&self, url: &str) {
        self.ok("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.ok("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn title(&self) -> String {
        self.ok("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The element `css` selects, if there is one.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.get(ELEMENT).and_then(Value::as_str).map(str::to_owned)
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> usize {
        self.ok(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    fn must(&self, css: &str) -> String {
        self.find(css).unwrap_or_else(|| {
            let page = self.exec("return document.documentElement.outerHTML");
            let page: String = page.as_str().unwrap_or("").chars().take(1500).collect();
            panic!("no element {css:?} on {}: {page}", self.url())
        })
    }

    /// The visible text of the element `css` selects. Read in one step in the page: a live
    /// refresh between finding the element and reading it cannot make it stale.
    pub fn text(&self, css: &str) -> String {
        let v = self.ok(
            "POST",
            "/execute/sync",
            Some(json!({
                "script": "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
                "args": [css],
            })),
        );
        match v.as_str() {
            Some(t) => t.to_owned(),
            None => {
                self.must(css);
                String::new()
            }
        }
    }

    pub fn click(&self, css: &str) {
        let e = self.must(css);
        self.ok("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Replaces the field's content with `text`.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.must(css);
        self.ok("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.ok(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Presses a key on the keyboard, where the focus is: `TAB`, `ENTER`.
    pub fn press(&self, key: char) {
        self.ok(
            "POST",
            "/actions",
            Some(
                json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": [
                { "type": "keyDown", "value": key.to_string() },
                { "type": "keyUp", "value": key.to_string() },
            ] }] }),
            ),
        );
    }

    /// Chooses the option with value `value` of the select `css`.
    pub fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"));
    }

    /// Runs `script` in the page; what it returns.
    pub fn exec(&self, script: &str) -> Value {
        self.ok(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script`, which calls `arguments[0]` with its result when done (a fetch).
    pub fn exec_async(&self, script: &str) -> Value {
        self.ok(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let b64 = self.ok("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("screenshot is base64");
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.ok(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Clicks `css` (a link or a form's button) and waits until the page it leads to has
    /// loaded.
    pub fn click_to(&self, css: &str) {
        self.navigating(|b| b.click(css));
    }

    /// Does `act`, which leads to another page, and waits until that page has loaded.
    pub fn navigating(&self, act: impl FnOnce(&Browser)) {
        self.exec("window.rollcallLeaving = true; return null;");
        act(self);
        self.wait("the next page", Duration::from_secs(10), |b| {
            b.exec(
                "return window.rollcallLeaving === undefined && document.readyState === 'complete'",
            ) == true
        });
    }

    /// Waits until `cond` holds, up to `timeout`; how long it took.
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Browser) -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < timeout,
                "{what}: not within {timeout:?} (page {})",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    crate::bin_dir()
        .ancestors()
        .find(|p| p.ends_with("target"))
        .map(|t| t.join("screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/screenshots"))
}
