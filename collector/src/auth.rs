//! API tokens for SREs (`read` or `admin`), enrollment secrets (`enroll`), and the per-host
//! credentials agents get in exchange. Only SHA-256 hashes are kept (`tokens.json`, the
//! `credentials` table); a token is shown once, when it is made.

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
    /// An enrollment secret: exchanged by an agent for its own host credential, nothing
    /// else. Several may be valid at once, so that one can be rotated out.
    #[serde(alias = "agent")]
    Enroll,
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

pub fn hash(token: &str) -> String {
    hex(&digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Bytes as lowercase hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a presented host credential is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Valid, for this host.
    Host(&'a str),
    /// Was valid for this host until an operator revoked it.
    Revoked(&'a str),
    Unknown,
}

#[derive(Debug)]
struct Cred {
    sha256: [u8; 32],
    host: Box<str>,
    /// [`key`] of its host and identity.
    key: u64,
    revoked: bool,
    /// When it was issued, ms since the epoch.
    issued_ms: i64,
}

/// Host and identity, hashed: a re-enrollment finds the credential it replaces by it.
fn key(host: &str, identity: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (host, identity).hash(&mut h);
    h.finish()
}

/// A SHA-256 is already uniformly spread: its first 8 bytes serve as its hash.
fn spread(sha256: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&sha256[..8]);
    u64::from_le_bytes(b)
}

/// Every host credential, by hash, in memory: looked up on every heartbeat. One per host
/// at fleet scale, so the tables hold slot numbers (4 bytes) into `creds`, not copies.
#[derive(Debug, Default)]
pub struct Credentials {
    creds: Vec<Cred>,
    /// Slots by SHA-256.
    by_hash: hashbrown::HashTable<u32>,
    /// The one live credential per host and identity: its slot, by [`key`].
    live: hashbrown::HashTable<u32>,
}

impl Credentials {
    pub fn load(rows: Vec<crate::store::CredentialRow>) -> Credentials {
        let mut c = Credentials::default();
        for r in rows {
            let Some(h) = unhex(&r.sha256) else { continue };
            let issued = r.issued_at.timestamp_millis();
            c.put(h, &r.host, key(&r.host, &r.identity), r.revoked, issued);
        }
        c
    }

    fn slot(&self, sha256: &[u8; 32]) -> Option<usize> {
        self.by_hash
            .find(spread(sha256), |&i| {
                self.creds[i as usize].sha256 == *sha256
            })
            .map(|&i| i as usize)
    }

    /// Records a credential; a live one replaces (revokes) the live one of its host and
    /// identity.
    fn put(&mut self, sha256: [u8; 32], host: &str, key: u64, revoked: bool, issued_ms: i64) {
        let cred = Cred {
            sha256,
            host: host.into(),
            key,
            revoked: true,
            issued_ms,
        };
        let i = match self.slot(&sha256) {
            Some(i) => {
                self.unlive(i);
                self.creds[i] = cred;
                i
            }
            None => {
                let i = self.creds.len();
                self.creds.push(cred);
                let creds = &self.creds;
                self.by_hash.insert_unique(spread(&sha256), i as u32, |&j| {
                    spread(&creds[j as usize].sha256)
                });
                i
            }
        };
        if !revoked {
            self.make_live(i);
        }
    }

    /// Makes slot `i` (revoked) the live credential of its host and identity.
    fn make_live(&mut self, i: usize) {
        self.creds[i].revoked = false;
        let (creds, key) = (&self.creds, self.creds[i].key);
        let entry = self.live.entry(
            key,
            |&j| creds[j as usize].key == key,
            |&j| creds[j as usize].key,
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                let old = std::mem::replace(e.get_mut(), i as u32);
                self.creds[old as usize].revoked = true;
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(i as u32);
            }
        }
    }

    /// Revokes slot `i`, if live.
    fn unlive(&mut self, i: usize) {
        let c = &mut self.creds[i];
        if c.revoked {
            return;
        }
        c.revoked = true;
        if let Ok(e) = self.live.find_entry(c.key, |&j| j as usize == i) {
            e.remove();
        }
    }

    pub fn check(&self, token: &str) -> Credential<'_> {
        match self.slot(&digest(token)).map(|i| &self.creds[i]) {
            Some(c) if c.revoked => Credential::Revoked(&c.host),
            Some(c) => Credential::Host(&c.host),
            None => Credential::Unknown,
        }
    }

    /// Applies a durable change (the same rules as the store's).
    pub fn apply(&mut self, r: &crate::store::CredentialRecord) {
        use crate::store::CredentialRecord::*;
        match r {
            Issue {
                sha256,
                host,
                identity,
                at,
                ..
            } => {
                let Some(h) = unhex(sha256) else { return };
                self.put(h, host, key(host, identity), false, at.timestamp_millis());
            }
            // An operator's act: a scan of every credential is affordable.
            RevokeHost { host, .. } => {
                for i in 0..self.creds.len() {
                    if *self.creds[i].host == **host {
                        self.unlive(i);
                    }
                }
            }
        }
    }

    /// Hosts holding a live credential that `heard` says never spoke, with when their
    /// newest was issued, oldest first: enrolled, but no heartbeat ever came.
    pub fn unheard(
        &self,
        heard: impl Fn(&str) -> bool,
    ) -> Vec<(&str, chrono::DateTime<chrono::Utc>)> {
        let mut by_host: std::collections::HashMap<&str, i64> = Default::default();
        for c in self.creds.iter().filter(|c| !c.revoked && !heard(&c.host)) {
            let t = by_host.entry(&c.host).or_insert(c.issued_ms);
            *t = (*t).max(c.issued_ms);
        }
        let mut v: Vec<_> = by_host
            .into_iter()
            .map(|(h, ms)| {
                (
                    h,
                    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default(),
                )
            })
            .collect();
        v.sort_by_key(|&(h, t)| (t, h));
        v
    }

    /// Live credentials of `host`.
    pub fn live(&self, host: &str) -> usize {
        self.creds
            .iter()
            .filter(|c| !c.revoked && &*c.host == host)
            .count()
    }
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> Result<String, AuthError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex(&b))
}

pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), AuthError> {
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
    // `rollcall-collector token add` run as root in the data directory of a collector that
    // runs as its own user: the file goes to the directory's owner, or the service could
    // not read it. (Not root: the file is already ours, or the chown is refused; either
    // way nothing to do.)
    if let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) {
        use std::os::unix::fs::MetadataExt;
        if f.metadata().is_ok_and(|m| m.uid() != dir.uid()) {
            let _ = std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid()));
        }
    }
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
                    role: Role::Enroll,
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
        self.who(token).map(|(_, role, _)| role)
    }

    /// The name, role and hash of a presented token, if it is one of ours.
    pub fn who(&self, token: &str) -> Option<(&str, Role, &str)> {
        let h = hash(token);
        self.entries
            .iter()
            .find(|e| e.sha256 == h)
            .map(|e| (e.name.as_str(), e.role, e.sha256.as_str()))
    }

    /// The role of the token named `name` if its hash still begins with `tag`: a
    /// dashboard session lives only as long as the token it was opened with.
    pub fn still(&self, name: &str, tag: &str) -> Option<Role> {
        self.entries
            .iter()
            .find(|e| e.name == name && !tag.is_empty() && e.sha256.starts_with(tag))
            .map(|e| e.role)
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
        t.save(dir)?;
        Ok(token)
    }

    /// Removes the token named `name` (e.g. an enrollment secret rotated out; hosts that
    /// enrolled with it keep their own credentials).
    pub fn remove(dir: &Path, name: &str) -> Result<Role, AuthError> {
        let (mut t, _) = Tokens::load_or_init(dir)?;
        let Some(i) = t.entries.iter().position(|e| e.name == name) else {
            return Err(AuthError::File {
                path: dir.join("tokens.json"),
                detail: format!(
                    "no token named {name:?}; `rollcall-collector token list` shows the names"
                ),
            });
        };
        let role = t.entries.remove(i).role;
        t.save(dir)?;
        Ok(role)
    }

    /// Names and roles, never hashes.
    pub fn list(&self) -> Vec<(String, Role)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.role))
            .collect()
    }

    fn save(&self, dir: &Path) -> Result<(), AuthError> {
        let json = serde_json::to_string_pretty(&self.entries).unwrap_or_default();
        let tmp = dir.join(".tokens.json.tmp");
        write_secret(&tmp, &json)?;
        std::fs::rename(&tmp, dir.join("tokens.json")).map_err(|e| AuthError::File {
            path: dir.join("tokens.json"),
            detail: e.to_string(),
        })
    }
}

/// SIGHUP: read `tokens.json` again (after `rollcall-collector token add`). A broken file
/// is reported and the tokens in force are kept. Runs forever.
pub async fn reload_on_hup(tokens: std::sync::Arc<crate::http::App>, dir: std::path::PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match Tokens::load_or_init(&dir) {
            Ok((t, _)) => {
                *crate::write(&tokens.tokens) = t;
                log::info!("tokens reloaded from {}/tokens.json", dir.display());
            }
            Err(e) => log::warn!("tokens not reloaded, the old ones stay in force: {e}"),
        }
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
        assert_eq!(t.role(&enroll), Some(Role::Enroll));
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
        // Rotating the enrollment secret: a new one, then the old one removed.
        let new_secret = Tokens::add(d.path(), "enroll-2027", Role::Enroll).unwrap();
        assert_eq!(Tokens::remove(d.path(), "enroll").unwrap(), Role::Enroll);
        let (t, _) = Tokens::load_or_init(d.path()).unwrap();
        assert_eq!(t.role(&enroll), None);
        assert_eq!(t.role(&new_secret), Some(Role::Enroll));
        assert!(Tokens::remove(d.path(), "enroll")
            .unwrap_err()
            .to_string()
            .contains("token list"));
    }

    #[test]
    fn credentials_are_checked_by_hash_and_revoked_by_host_or_reenrollment() {
        use crate::store::{CredentialRecord, CredentialRow};
        let issue = |tok: &str, host: &str, id: &str| CredentialRecord::Issue {
            sha256: hash(tok),
            host: host.into(),
            identity: id.into(),
            at: chrono::Utc::now(),
            bmc_address: None,
        };
        let mut c = Credentials::load(vec![CredentialRow {
            sha256: hash("old"),
            host: "web1".into(),
            identity: "m/i".into(),
            issued_at: chrono::Utc::now(),
            revoked: true,
        }]);
        assert_eq!(c.check("old"), Credential::Revoked("web1"));
        assert_eq!(c.check("nope"), Credential::Unknown);
        c.apply(&issue("a", "web1", "m/i"));
        c.apply(&issue("b", "web1", "clone/i"));
        assert_eq!(
            c.check("a\n"),
            Credential::Host("web1"),
            "trailing newline of a file"
        );
        c.apply(&issue("a2", "web1", "m/i"));
        assert_eq!(
            c.check("a"),
            Credential::Revoked("web1"),
            "re-enrollment replaces"
        );
        assert_eq!(
            c.check("b"),
            Credential::Host("web1"),
            "another identity keeps its own"
        );
        assert_eq!(c.live("web1"), 2);
        c.apply(&CredentialRecord::RevokeHost {
            host: "web1".into(),
            at: chrono::Utc::now(),
        });
        assert_eq!(c.live("web1"), 0);
        assert_eq!(c.check("a2"), Credential::Revoked("web1"));
        c.apply(&issue("a3", "web1", "m/i"));
        assert_eq!(c.check("a3"), Credential::Host("web1"), "enrolled again");
        assert_eq!(c.live("web1"), 1);
        // A fleet's worth: every one found after the tables grew.
        for i in 0..5000 {
            c.apply(&issue(&format!("t{i}"), &format!("h{i}"), "m/i"));
        }
        for i in 0..5000 {
            assert_eq!(
                c.check(&format!("t{i}")),
                Credential::Host(&format!("h{i}"))
            );
        }
        assert_eq!(c.check("a3"), Credential::Host("web1"));
    }

    #[test]
    fn a_corrupt_token_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tokens.json"), "[{").unwrap();
        let e = Tokens::load_or_init(d.path()).unwrap_err().to_string();
        assert!(e.contains("tokens.json"), "{e}");
    }
}
