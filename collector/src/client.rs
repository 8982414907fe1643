//! An HTTPS client for the collector's API with its CA pinned: the `rollcall` CLI and the
//! tests use it.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot read the collector's CA {path}: {detail}; set ROLLCALL_CA or --ca to its ca.pem"
    )]
    Ca { path: String, detail: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot reach the collector at {url}: {detail}")]
    Http { url: String, detail: String },
}

/// A response: status, JSON body (or `null`), and `Retry-After` if given.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(url: &str, ca_file: &Path, token: Option<String>) -> Result<Client, ClientError> {
        let ca_err = |detail: String| ClientError::Ca {
            path: ca_file.display().to_string(),
            detail,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| ca_err(e.to_string()))? {
            roots.add(cert.map_err(|e| ca_err(e.to_string()))?)?;
        }
        if roots.is_empty() {
            return Err(ca_err("no certificate in it".into()));
        }
        let tls = crate::tls::client_config(roots)?;
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Http {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Client {
            http,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends a request with this client's token (or `token` if given) and a raw body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut rq = self.http.request(method, &url);
        if let Some(t) = token.or(self.token.as_deref()) {
            rq = rq.bearer_auth(t);
        }
        if let Some(b) = body {
            rq = rq.header("content-type", "application/json").body(b);
        }
        let resp = rq.send().map_err(|e| ClientError::Http {
            url: url.clone(),
            detail: error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let text = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }

    /// The status and raw body, unparsed: for timing the server, and for bodies that are
    /// not JSON (a CSV export).
    pub fn get_bytes(&self, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut rq = self.http.get(&url);
        if let Some(t) = self.token.as_deref() {
            rq = rq.bearer_auth(t);
        }
        let http = |e: reqwest::Error| ClientError::Http {
            url: url.clone(),
            detail: error_chain(&e),
        };
        let resp = rq.send().map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().map_err(http)?;
        Ok((status, body.to_vec()))
    }

    pub fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.request("GET", path, None, None)
    }

    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> Result<Reply, ClientError> {
        self.request(method, path, None, Some(body.to_string().into_bytes()))
    }
}

/// The whole cause chain: reqwest's top-level message alone rarely says what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
