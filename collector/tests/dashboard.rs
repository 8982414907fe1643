//! The dashboard over HTTPS, as a browser meets it: sign-in and the session cookie, the
//! headers that keep pages to themselves, the CSRF check and the confirmation of admin
//! forms, escaping, and the live part. The same pages in a real browser are in
//! `tests/tests/dashboard.rs`.

mod common;

use common::{heartbeat, token, wait, Collector, Start};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

struct Web {
    http: Client,
    base: String,
}

impl Web {
    fn new(c: &Collector) -> Web {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(c.data.join("ca.pem")).unwrap();
        Web {
            http: Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: c.url.clone(),
        }
    }

    fn get(&self, path: &str, cookie: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .unwrap()
    }

    fn live(&self, path: &str, cookie: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("x-rollcall-live", "1")
            .send()
            .unwrap()
    }

    fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Response {
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap()
    }

    /// Signs in with `token`: the cookie to send back.
    fn sign_in(&self, token: &str) -> String {
        let r = self.post("/login", "", &[("token", token), ("next", "/hosts")]);
        assert_eq!(r.status(), 303);
        cookie_of(r.headers())
    }
}

fn cookie_of(h: &HeaderMap) -> String {
    h.get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a cookie")
        .to_owned()
}

/// The CSRF token a page carries (in the sign-out form of every page).
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 32].to_owned()
}

#[test]
fn signing_in_gives_a_strict_session_cookie_and_pages_keep_to_themselves() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let web = Web::new(&c);

    // Not signed in: sent to sign in, and back afterwards.
    let r = web.get("/hosts?state=silent", "");
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/login?next=%2Fhosts%3Fstate%3Dsilent"
    );

    // Wrong token, enrollment secret: 401 with words that say what to use.
    let r = web.post("/login", "", &[("token", "nope")]);
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("not known to this collector"));
    let r = web.post("/login", "", &[("token", &token(&c, "enroll.secret"))]);
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("enrollment secret"));

    // The right one: a cookie only this site's HTTPS pages get, for a working day.
    let r = web.post(
        "/login",
        "",
        &[("token", &token(&c, "admin.token")), ("next", "/hosts")],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/hosts");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(
        !set.contains(&token(&c, "admin.token")),
        "the token is not the cookie"
    );
    let cookie = cookie_of(r.headers());

    // Going back is only ever to this site.
    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let r = web.post(
            "/login",
            "",
            &[("token", &token(&c, "admin.token")), ("next", evil)],
        );
        assert_eq!(r.headers()[LOCATION], "/", "{evil}");
    }

    for path in ["/", "/hosts", "/zones", "/incidents", "/relays"] {
        let r = web.get(path, &cookie);
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-store");
        let page = r.text().unwrap();
        // Nothing from elsewhere: every script, stylesheet and icon is ours.
        for attr in ["src=\"", "href=\""] {
            for at in page.match_indices(attr).map(|(i, _)| i + attr.len()) {
                let url = &page[at..];
                assert!(
                    url.starts_with('/') || url.starts_with('#'),
                    "{path} refers elsewhere: {}",
                    &url[..url.len().min(60)]
                );
            }
        }
    }
    // The assets: compiled in, cached for good (their paths carry the version).
    let page = web.get("/", &cookie).text().unwrap();
    for asset in ["/assets/dashboard-", "/assets/live-"] {
        let at = page.find(asset).unwrap();
        let path = &page[at..at + page[at..].find('"').unwrap()];
        let r = web.get(path, "");
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
    }
    assert_eq!(web.get("/assets/other.js", "").status(), 404);

    // A forged or stale cookie is no session.
    let forged = format!("{}x", cookie);
    assert_eq!(web.get("/", &forged).status(), 303);
    // Signing out ends it in the browser.
    let r = web.post("/logout", &cookie, &[("csrf", &csrf(&page))]);
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[test]
fn admin_forms_need_the_csrf_token_a_confirmation_and_an_admin() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("c");
    std::fs::create_dir_all(&data).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
        .arg("--data-dir")
        .arg(&data)
        .args(["token", "add", "--name", "viewer", "--role", "read"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let read_token = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap()
        .to_owned();
    let c = Collector::start(&data, "120s");
    let agents = c.agents();
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[1])).status, 200);
    let web = Web::new(&c);
    let admin = web.sign_in(&token(&c, "admin.token"));
    let page = web.get("/hosts/web-1", &admin).text().unwrap();
    assert!(page.contains("id=\"maintenance-form\""));
    let token_of_page = csrf(&page);
    let state = || {
        c.admin().get("/api/v1/hosts/web-1").unwrap().body["host"]["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let form = |csrf: &str, confirm: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("for", "2h".to_owned()),
            ("reason", "<script>alert(1)</script> patching".to_owned()),
            ("confirm", confirm.to_owned()),
        ]
    };
    let send = |cookie: &str, f: Vec<(&str, String)>| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        web.post("/hosts/web-1/maintenance", cookie, &f)
    };

    // No CSRF token, or another session's: refused, nothing changed.
    let r = send(&admin, form("", "yes"));
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("CSRF"));
    let other = web.sign_in(&token(&c, "admin.token"));
    let other_csrf = csrf(&web.get("/", &other).text().unwrap());
    assert_ne!(other_csrf, token_of_page);
    assert_eq!(send(&admin, form(&other_csrf, "yes")).status(), 403);
    assert_eq!(state(), "up");

    // Without the confirmation: shown back, nothing changed; the text is escaped.
    let r = send(&admin, form(&token_of_page, ""));
    assert_eq!(r.status(), 200);
    let confirm = r.text().unwrap();
    assert!(confirm.contains("id=\"confirm-form\""));
    // The answer to a form is not fetched again by the live script (a GET of a form's
    // target is no page).
    assert!(!confirm.contains("id=\"live\""));
    assert!(!confirm.contains("<script>alert"), "escaped");
    assert!(confirm.contains("&lt;script&gt;"));
    assert_eq!(state(), "up");

    // Confirmed: done, said in the history with who did it.
    let r = send(&admin, form(&token_of_page, "yes"));
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/hosts/web-1?done=maintenance");
    assert_eq!(state(), "maintenance");
    let page = web
        .get("/hosts/web-1?done=maintenance", &admin)
        .text()
        .unwrap();
    assert!(
        page.contains("by token admin (dashboard)"),
        "history names who"
    );
    assert!(!page.contains("<script>alert"));

    // A bad duration is named, and nothing changes.
    let r = web.post(
        "/hosts/web-1/maintenance",
        &admin,
        &[
            ("csrf", &token_of_page),
            ("for", "forever"),
            ("reason", "x"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("invalid duration"));

    // A read session: no forms, and its CSRF token does not make it an admin.
    let reader = web.sign_in(&read_token);
    let page = web.get("/hosts/web-1", &reader).text().unwrap();
    assert!(!page.contains("id=\"maintenance-form\""));
    assert!(!page.contains("class=\"action\""));
    let r = web.post(
        "/hosts/web-1/end-maintenance",
        &reader,
        &[("csrf", &csrf(&page)), ("confirm", "yes")],
    );
    assert_eq!(r.status(), 403);
    assert_eq!(state(), "maintenance");

    // The admin ends it.
    let r = web.post(
        "/hosts/web-1/end-maintenance",
        &admin,
        &[("csrf", &token_of_page), ("confirm", "yes")],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(state(), "up");

    // Removing a token ends its sessions (once the collector reloads tokens).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall-collector"))
        .arg("--data-dir")
        .arg(&data)
        .args(["token", "remove", "--name", "viewer"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::process::Command::new("kill")
        .args(["-HUP", &c.pid().to_string()])
        .status()
        .unwrap();
    wait(|| web.get("/", &reader).status() == 303);
    assert_eq!(web.get("/", &admin).status(), 200);
}

#[test]
fn the_live_part_comes_alone_with_the_generation_it_was_made_at() {
    let d = tempfile::tempdir().unwrap();
    let c = Collector::start(d.path(), "120s");
    let agents = c.agents();
    assert_eq!(agents.post(&heartbeat("web-1", 60, "ok", &[1])).status, 200);
    let web = Web::new(&c);
    let cookie = web.sign_in(&token(&c, "admin.token"));
    let g0: u64 = web
        .get("/ui/generation", &cookie)
        .text()
        .unwrap()
        .parse()
        .unwrap();
    let r = web.live("/hosts", &cookie);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-rollcall-generation"],
        g0.to_string().as_str()
    );
    let part = r.text().unwrap();
    assert!(
        !part.contains("<html") && part.contains("id=\"hosts\""),
        "{part}"
    );
    assert!(part.contains("web-1"));
    // A host's state changes: the generation moves.
    assert_eq!(
        agents
            .post(&heartbeat("web-1", 60, "critical", &[2]))
            .status,
        200
    );
    wait(|| {
        web.get("/ui/generation", &cookie)
            .text()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > g0
    });
    // Without a session, a live request is told so (the page then reloads to sign in).
    assert_eq!(web.live("/hosts", "").status(), 401);
    assert_eq!(web.get("/ui/generation", "").status(), 303);
}
