//! API tokens for SREs (`read` or `admin`) and the agents' enrollment secret. Only SHA-256
//! hashes are kept in `tokens.json`; a token is shown once, when it is made.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends heartbeats (the enrollment secret until per-host credentials exist).
    Agent,
    Read,
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    role: Role,
    sha256: String,
}

#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("no random numbers from the system: {0}")]
    Random(String),
}

fn hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> Result<String, AuthError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn write_secret(path: &Path, text: &str) -> Result<(), AuthError> {
    let err = |e: std::io::Error| AuthError::File {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

impl Tokens {
    /// Loads `dir/tokens.json`, creating on first start an admin token (`dir/admin.token`)
    /// and an enrollment secret (`dir/enroll.secret`), both 0600. Returns the tokens and the
    /// newly made admin token, if one was made.
    pub fn load_or_init(dir: &Path) -> Result<(Tokens, Option<String>), AuthError> {
        let path = dir.join("tokens.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| AuthError::File {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let entries = serde_json::from_str(&text).map_err(|e| AuthError::File {
                path: path.clone(),
                detail: format!("{e}; fix it, or remove it to have new tokens made"),
            })?;
            return Ok((Tokens { entries }, None));
        }
        let admin = new_token()?;
        let enroll = new_token()?;
        let t = Tokens {
            entries: vec![
                Entry {
                    name: "admin".into(),
                    role: Role::Admin,
                    sha256: hash(&admin),
                },
                Entry {
                    name: "enroll".into(),
                    role: Role::Agent,
                    sha256: hash(&enroll),
                },
            ],
        };
        write_secret(&dir.join("admin.token"), &format!("{admin}\n"))?;
        write_secret(&dir.join("enroll.secret"), &format!("{enroll}\n"))?;
        let json = serde_json::to_string_pretty(&t.entries).unwrap_or_default();
        write_secret(&path, &json)?;
        Ok((t, Some(admin)))
    }

    /// The role of a presented token, if it is one of ours.
    pub fn role(&self, token: &str) -> Option<Role> {
        let h = hash(token.trim());
        self.entries.iter().find(|e| e.sha256 == h).map(|e| e.role)
    }

    /// Makes a new token for `name` with `role`, saves its hash to `dir/tokens.json`, and
    /// returns the token (shown once, never stored).
    pub fn add(dir: &Path, name: &str, role: Role) -> Result<String, AuthError> {
        let (mut t, _) = Tokens::load_or_init(dir)?;
        if name.is_empty() || t.entries.iter().any(|e| e.name == name) {
            return Err(AuthError::File {
                path: dir.join("tokens.json"),
                detail: format!("a token named {name:?} exists already (or the name is empty); pick another name"),
            });
        }
        let token = new_token()?;
        t.entries.push(Entry {
            name: name.into(),
            role,
            sha256: hash(&token),
        });
        let json = serde_json::to_string_pretty(&t.entries).unwrap_or_default();
        let tmp = dir.join(".tokens.json.tmp");
        write_secret(&tmp, &json)?;
        std::fs::rename(&tmp, dir.join("tokens.json")).map_err(|e| AuthError::File {
            path: dir.join("tokens.json"),
            detail: e.to_string(),
        })?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_makes_tokens_and_keeps_only_hashes() {
        let d = tempfile::tempdir().unwrap();
        let (t, admin) = Tokens::load_or_init(d.path()).unwrap();
        let admin = admin.unwrap();
        assert_eq!(t.role(&admin), Some(Role::Admin));
        let enroll = std::fs::read_to_string(d.path().join("enroll.secret")).unwrap();
        assert_eq!(t.role(&enroll), Some(Role::Agent));
        assert_eq!(t.role("nope"), None);
        let stored = std::fs::read_to_string(d.path().join("tokens.json")).unwrap();
        assert!(!stored.contains(&admin), "the token itself is never stored");
        let (again, made) = Tokens::load_or_init(d.path()).unwrap();
        assert!(made.is_none());
        assert_eq!(again.role(&admin), Some(Role::Admin));
        let reader = Tokens::add(d.path(), "alice", Role::Read).unwrap();
        let (t, _) = Tokens::load_or_init(d.path()).unwrap();
        assert_eq!(t.role(&reader), Some(Role::Read));
        assert_eq!(t.role(&admin), Some(Role::Admin), "the others are kept");
        assert!(
            Tokens::add(d.path(), "alice", Role::Admin).is_err(),
            "names are unique"
        );
    }

    #[test]
    fn a_corrupt_token_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokens.json"), "[{").unwrap();
        let e = Tokens::load_or_init(d.path()).unwrap_err().to_string();
        assert!(e.contains("tokens.json"), "{e}");
    }
}
