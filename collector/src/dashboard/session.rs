//! Dashboard sessions: an API token, presented once at sign-in, exchanged for a cookie the
//! collector signs. The cookie names the token and the start of its hash, so a session ends
//! when its token is removed from `tokens.json`, when it expires, or when the signing key
//! (`session.key` in the data directory) is replaced. Nothing is kept per session: replicas
//! sharing the key accept each other's sessions, and a restart signs nobody out.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, Role, Tokens};

/// The cookie's name.
pub const COOKIE: &str = "rollcall_session";

/// How long a session lasts: a working day.
pub const TTL: chrono::TimeDelta = chrono::TimeDelta::hours(12);

/// Signs and checks session cookies.
pub struct Sessions {
    key: Vec<u8>,
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token's name in `tokens.json`.
    pub name: String,
    pub role: Role,
    pub expires: DateTime<Utc>,
    /// What forms must carry back: derived from the session, so only a page the
    /// collector served to this session has it.
    pub csrf: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// Token name.
    n: String,
    /// The first 16 hex digits of the token's hash.
    t: String,
    /// Expiry, Unix seconds.
    e: i64,
    /// Random, per sign-in: the CSRF token is derived from it.
    x: String,
}

impl Sessions {
    /// A key made for one test: another key's sessions are not its own.
    #[cfg(test)]
    fn ephemeral() -> Result<Sessions, AuthError> {
        Ok(Sessions {
            key: crate::auth::new_token()?.into_bytes(),
        })
    }

    /// Reads `dir/session.key`, making it (0600) on first start.
    pub fn load_or_init(dir: &Path) -> Result<Sessions, AuthError> {
        let path = dir.join("session.key");
        let err = |e: std::io::Error| AuthError::File {
            path: path.clone(),
            detail: format!("{e}; remove it to have a new one made (everyone signs in again)"),
        };
        match std::fs::read_to_string(&path) {
            Ok(k) if k.trim().len() >= 32 => Ok(Sessions {
                key: k.trim().as_bytes().to_vec(),
            }),
            Ok(_) => Err(err(std::io::Error::other("shorter than 32 characters"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crate::auth::new_token()?;
                crate::auth::write_secret(&path, &format!("{key}\n"))?;
                Ok(Sessions {
                    key: key.into_bytes(),
                })
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Signs in with `token`: the cookie's value and the session, or why not.
    pub fn sign_in(
        &self,
        tokens: &Tokens,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), &'static str> {
        let (name, role, hash) = tokens.who(token).ok_or(
            "This token is not known to this collector. Use a read or admin token \
             (rollcall-collector token add --name NAME --role read).",
        )?;
        if role == Role::Enroll {
            return Err(
                "This is an enrollment secret: it enrolls hosts and cannot sign in. \
                        Use a read or admin token.",
            );
        }
        let nonce = crate::auth::new_token()
            .map_err(|_| "No random numbers from the system; try again.")?;
        let claims = Claims {
            n: name.to_owned(),
            t: hash[..16].to_owned(),
            e: (now + TTL).timestamp(),
            x: nonce[..32].to_owned(),
        };
        let body = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = B64.encode(self.mac(body.as_bytes()));
        let session = self.session(&claims, role);
        Ok((format!("{body}.{mac}"), session))
    }

    /// The session a cookie value stands for, if it is ours, unexpired and its token is
    /// still in force.
    pub fn check(&self, tokens: &Tokens, cookie: &str, now: DateTime<Utc>) -> Option<Session> {
        let (body, mac) = cookie.split_once('.')?;
        let mac = B64.decode(mac).ok()?;
        if !constant_time_eq(&mac, &self.mac(body.as_bytes())) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        if claims.e <= now.timestamp() {
            return None;
        }
        let role = tokens.still(&claims.n, &claims.t)?;
        (role != Role::Enroll).then(|| self.session(&claims, role))
    }

    fn session(&self, c: &Claims, role: Role) -> Session {
        let csrf = crate::auth::hex(&self.mac(format!("csrf:{}", c.x).as_bytes())[..16]);
        Session {
            name: c.n.clone(),
            role,
            expires: DateTime::from_timestamp(c.e, 0).unwrap_or_default(),
            csrf,
        }
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        crate::notify::wire::hmac_sha256(&self.key, data)
    }
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether a form's CSRF token is this session's.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(dir: &Path) -> (Tokens, String, String, String) {
        let (_, admin) = Tokens::load_or_init(dir).unwrap();
        let reader = Tokens::add(dir, "alice", Role::Read).unwrap();
        let enroll = std::fs::read_to_string(dir.join("enroll.secret")).unwrap();
        let (t, _) = Tokens::load_or_init(dir).unwrap();
        (t, admin.unwrap(), reader, enroll.trim().to_owned())
    }

    #[test]
    fn a_session_is_its_tokens_role_until_it_expires_or_the_token_goes() {
        let d = tempfile::tempdir().unwrap();
        let (t, admin, reader, enroll) = tokens(d.path());
        let s = Sessions::load_or_init(d.path()).unwrap();
        let now = Utc::now();
        let (cookie, a) = s.sign_in(&t, &admin, now).unwrap();
        assert_eq!((a.name.as_str(), a.role), ("admin", Role::Admin));
        assert_eq!(s.check(&t, &cookie, now), Some(a.clone()));
        let (rc, r) = s.sign_in(&t, &reader, now).unwrap();
        assert_eq!(s.check(&t, &rc, now).map(|s| s.role), Some(Role::Read));
        assert_ne!(r.csrf, a.csrf, "each sign-in has its own CSRF token");
        assert!(s
            .sign_in(&t, &enroll, now)
            .unwrap_err()
            .contains("enrollment secret"));
        assert!(s
            .sign_in(&t, "nope", now)
            .unwrap_err()
            .contains("not known"));
        // Expired.
        assert_eq!(s.check(&t, &cookie, now + TTL), None);
        // The same key read again (a restart) keeps sessions; another key does not.
        let again = Sessions::load_or_init(d.path()).unwrap();
        assert!(again.check(&t, &cookie, now).is_some());
        assert!(Sessions::ephemeral()
            .unwrap()
            .check(&t, &cookie, now)
            .is_none());
        // The token removed: its sessions end.
        Tokens::remove(d.path(), "alice").unwrap();
        let (t, _) = Tokens::load_or_init(d.path()).unwrap();
        assert_eq!(s.check(&t, &rc, now), None);
        assert!(s.check(&t, &cookie, now).is_some());
    }

    #[test]
    fn a_forged_or_altered_cookie_is_no_session() {
        let d = tempfile::tempdir().unwrap();
        let (t, _, reader, _) = tokens(d.path());
        let s = Sessions::load_or_init(d.path()).unwrap();
        let now = Utc::now();
        let (cookie, _) = s.sign_in(&t, &reader, now).unwrap();
        let (body, mac) = cookie.split_once('.').unwrap();
        // The claims rewritten to name the admin token: the signature no longer fits.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        claims["n"] = "admin".into();
        let forged = format!("{}.{mac}", B64.encode(claims.to_string()));
        assert_eq!(s.check(&t, &forged, now), None);
        for bad in ["", ".", "x.y", &format!("{body}."), &format!(".{mac}")] {
            assert_eq!(s.check(&t, bad, now), None, "{bad:?}");
        }
    }
}
