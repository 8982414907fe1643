//! TLS always. On first start the collector makes its own CA (ten years) and a server
//! certificate signed by it (a year, `--cert-validity`); agents and the CLI pin `ca.pem`.
//! The server certificate is renewed from the CA before it expires, and served without a
//! restart: clients pin the CA, so a renewal is invisible to them. A CA key moved off the
//! server (an offline CA) leaves renewal to `rollcall-collector cert rotate --ca-key FILE`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {detail}; remove the file to have a new one made, or fix it")]
    Read { path: PathBuf, detail: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the CA key {0} is not there, so the server certificate cannot be renewed here; run `rollcall-collector cert rotate --ca-key FILE` with the CA key kept elsewhere")]
    NoCaKey(PathBuf),
}

/// How long the CA made at first start is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The default validity of a server certificate.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

pub struct Paths {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Paths {
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// Writes `path` whole or not at all: a temporary file renamed over it.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    // Exactly `mode`, whatever the umask: certificates are public, keys are not.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Makes the CA and server certificate if they do not exist yet. `names` are the server's
/// DNS names and IP addresses. Returns whether anything was created.
pub fn ensure(dir: &Path, names: &[String], validity: Duration) -> Result<bool, TlsError> {
    let p = Paths::in_dir(dir);
    if p.ca.exists() && p.cert.exists() && p.key.exists() {
        return Ok(false);
    }
    // A CA given to this collector (another collector's, shared so that agents trust
    // both): its own server certificate from it, never a CA of its own over it.
    if p.ca.exists() && p.ca_key.exists() {
        issue(dir, names, validity, &p.ca_key)?;
        return Ok(true);
    }
    let now = Utc::now();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "rollcall collector CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = offset(now - chrono::Duration::hours(1));
    ca.not_after = offset(now + chrono::Duration::from_std(CA_VALIDITY).unwrap_or_default());
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(&p.ca_key, &ca_key.serialize_pem(), 0o600)?;
    write(&p.ca, &ca_cert.pem(), 0o644)?;
    issue(dir, names, validity, &p.ca_key)?;
    Ok(true)
}

/// A new key and server certificate for `names`, valid for `validity`, signed by the CA in
/// `dir` with the key in `ca_key`; written over `server.pem` and `server.key`.
pub fn issue(
    dir: &Path,
    names: &[String],
    validity: Duration,
    ca_key: &Path,
) -> Result<(), TlsError> {
    let p = Paths::in_dir(dir);
    let read = |path: &Path, detail: String| TlsError::Read {
        path: path.to_owned(),
        detail,
    };
    if !ca_key.exists() {
        return Err(TlsError::NoCaKey(ca_key.to_owned()));
    }
    let key_pem = std::fs::read_to_string(ca_key).map_err(|e| read(ca_key, e.to_string()))?;
    let ca_key_pair = KeyPair::from_pem(&key_pem).map_err(|e| read(ca_key, e.to_string()))?;
    let ca_pem = std::fs::read_to_string(&p.ca).map_err(|e| read(&p.ca, e.to_string()))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key_pair).map_err(|e| read(&p.ca, e.to_string()))?;
    let now = Utc::now();
    let mut server = CertificateParams::new(names.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "rollcall-collector");
    // A minute back, for clocks a little behind this one.
    server.not_before = offset(now - chrono::Duration::minutes(1));
    server.not_after = offset(now + chrono::Duration::from_std(validity).unwrap_or_default());
    let server_key = KeyPair::generate()?;
    let cert = server.signed_by(&server_key, &issuer)?;
    write(&p.key, &server_key.serialize_pem(), 0o600)?;
    write(
        &p.cert,
        &format!("{}{}", cert.pem(), ca_pem.trim_end()),
        0o644,
    )?;
    Ok(())
}

/// What `cert show` prints of a certificate.
#[derive(Debug, Clone)]
pub struct Info {
    pub subject: String,
    pub names: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

/// The first certificate in the PEM file `path`.
pub fn info(path: &Path) -> Result<Info, TlsError> {
    let read = |detail: String| TlsError::Read {
        path: path.to_owned(),
        detail,
    };
    let der = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .next()
        .ok_or_else(|| read("no certificate in it".into()))?
        .map_err(|e| read(e.to_string()))?;
    info_of(&der).map_err(read)
}

/// What the certificate `der` says of itself.
fn info_of(der: &CertificateDer<'_>) -> Result<Info, String> {
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let at = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*ip).map(std::net::IpAddr::from).ok(),
                        _ => None,
                    };
                    names.extend(ip.map(|i| i.to_string()));
                }
                _ => {}
            }
        }
    }
    use sha2::Digest;
    Ok(Info {
        subject: x.subject().to_string(),
        names,
        not_before: at(x.validity().not_before),
        not_after: at(x.validity().not_after),
        sha256: sha2::Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// The server certificate being served: swapped in place when renewed.
#[derive(Debug)]
pub struct Served {
    dir: PathBuf,
    key: RwLock<Arc<CertifiedKey>>,
    info: RwLock<Info>,
    ca: Info,
}

impl rustls::server::ResolvesServerCert for Served {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(crate::read(&self.key).clone())
    }
}

fn certified_key(dir: &Path) -> Result<(Arc<CertifiedKey>, Info), TlsError> {
    let p = Paths::in_dir(dir);
    let read = |path: &Path, detail: String| TlsError::Read {
        path: path.to_owned(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&p.cert)
        .map_err(|e| read(&p.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(&p.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(read(&p.cert, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&p.key).map_err(|e| read(&p.key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let info = info_of(&certs[0]).map_err(|e| read(&p.cert, e))?;
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| read(&p.key, format!("{e} (does it match server.pem?)")))?;
    Ok((Arc::new(ck), info))
}

impl Served {
    pub fn load(dir: &Path) -> Result<Served, TlsError> {
        let (key, info) = certified_key(dir)?;
        Ok(Served {
            dir: dir.to_owned(),
            key: RwLock::new(key),
            info: RwLock::new(info),
            ca: self::info(&Paths::in_dir(dir).ca)?,
        })
    }

    pub fn server(&self) -> Info {
        crate::read(&self.info).clone()
    }

    pub fn ca(&self) -> &Info {
        &self.ca
    }

    /// Serves what `server.pem` and `server.key` hold now, if they changed.
    fn reload(&self) -> Result<bool, TlsError> {
        let on_disk = info(&Paths::in_dir(&self.dir).cert)?;
        if on_disk.sha256 == crate::read(&self.info).sha256 {
            return Ok(false);
        }
        let (key, info) = certified_key(&self.dir)?;
        *crate::write(&self.key) = key;
        *crate::write(&self.info) = info;
        Ok(true)
    }

    /// Serves what is on disk if it changed (`cert rotate`), then renews the server
    /// certificate if it is due, or if it is valid for far longer than `validity` (as the
    /// certificates made before renewal existed are). Says what it did.
    pub fn renew_if_due(
        &self,
        names: &[String],
        validity: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, TlsError> {
        let p = Paths::in_dir(&self.dir);
        let mut said = self.reload()?.then(|| {
            format!(
                "serving the server certificate now in {}, valid until {}",
                p.cert.display(),
                self.server().not_after.to_rfc3339()
            )
        });
        let current = self.server();
        let validity_c = chrono::Duration::from_std(validity).unwrap_or(chrono::Duration::MAX);
        let left = current.not_after - now;
        if left < renew_before(validity) || left > validity_c + chrono::Duration::days(1) {
            issue(
                &self.dir,
                &renewed_names(&current.names, names),
                validity,
                &p.ca_key,
            )?;
            self.reload()?;
            said = Some(format!(
                "server certificate renewed: it was valid until {}, the new one until {}",
                current.not_after.to_rfc3339(),
                self.server().not_after.to_rfc3339()
            ));
        }
        Ok(said)
    }
}

/// The names a renewed certificate is for: the current one's, then `more` it lacks.
pub fn renewed_names(current: &[String], more: &[String]) -> Vec<String> {
    let mut all = current.to_vec();
    for n in more {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    all
}

/// How long before expiry a server certificate is renewed: a third of its validity, at
/// most 30 days.
pub fn renew_before(validity: Duration) -> chrono::Duration {
    chrono::Duration::from_std(validity / 3)
        .unwrap_or_default()
        .min(chrono::Duration::days(30))
}

/// Renews and reloads the server certificate as it comes due, checking every twentieth of
/// its validity (at least every minute). A renewal that fails is said, once per failure
/// kind, and retried at the next check.
pub async fn run_renewal(
    served: Arc<Served>,
    names: Vec<String>,
    validity: Duration,
    clock: Arc<dyn crate::clock::Clock>,
) {
    let every = (validity / 20).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut failing: Option<String> = None;
    loop {
        // The first check was made at start, before serving.
        tokio::time::sleep(every).await;
        match served.renew_if_due(&names, validity, clock.now()) {
            Ok(said) => {
                if let Some(s) = said {
                    log::info!("{s}");
                }
                failing = None;
            }
            Err(e) => {
                let e = e.to_string();
                if failing.as_deref() != Some(&e) {
                    log::warn!(
                        "{e}; the server certificate expires {}",
                        served.server().not_after.to_rfc3339()
                    );
                    failing = Some(e);
                }
            }
        }
    }
}

/// The rustls server configuration serving `served`. With `client_ca`, clients may
/// present a certificate, and one that is presented must be signed by that CA (whether one
/// is required is up to each endpoint: agents yes, SREs' API tokens no).
pub fn server_config(
    served: Arc<Served>,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |path: &Path, detail: String| TlsError::Read {
        path: path.to_owned(),
        detail,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| read(ca, e.to_string()))? {
                roots
                    .add(c.map_err(|e| read(ca, e.to_string()))?)
                    .map_err(|e| read(ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(read(ca, "no CA certificate in it".into()));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| read(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_cert_resolver(served);
    Ok(Arc::new(config))
}

/// The names this host answers to: localhost, its loopback addresses, its kernel host
/// name, and `sans`.
/// The system's CAs, and those in the PEM file `extra` if one is given; an `extra` that
/// cannot be read or holds no certificate is an error naming it.
pub fn system_roots_and(extra: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(ca) = extra {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", ca.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
    }
    Ok(roots)
}

/// A TLS client trusting `roots`, on the same crypto provider as the server.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub fn names_for_this_host(sans: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(crate::host_name());
    names.extend(sans.iter().cloned());
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = SERVER_VALIDITY;

    #[test]
    fn makes_certificates_once_and_builds_a_server_config() {
        let d = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        assert!(ensure(d.path(), &names, YEAR).unwrap());
        let ca = std::fs::read(d.path().join("ca.pem")).unwrap();
        assert!(
            !ensure(d.path(), &names, YEAR).unwrap(),
            "kept on the next start"
        );
        assert_eq!(std::fs::read(d.path().join("ca.pem")).unwrap(), ca);
        // Another collector given this one's CA makes its own server certificate from it.
        let other = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "ca.key"] {
            std::fs::copy(d.path().join(f), other.path().join(f)).unwrap();
        }
        assert!(ensure(other.path(), &names, YEAR).unwrap());
        assert_eq!(std::fs::read(other.path().join("ca.pem")).unwrap(), ca);
        let theirs = std::fs::read_to_string(other.path().join("server.pem")).unwrap();
        let ours = std::fs::read_to_string(d.path().join("server.pem")).unwrap();
        assert_ne!(theirs, ours);
        assert!(theirs.ends_with(String::from_utf8(ca.clone()).unwrap().trim_end()));
        use std::os::unix::fs::PermissionsExt;
        for f in ["server.key", "ca.key"] {
            let mode = std::fs::metadata(d.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let served = Arc::new(Served::load(d.path()).unwrap());
        let s = served.server();
        assert_eq!(s.names, names);
        let days = (s.not_after - s.not_before).num_days();
        assert_eq!(days, 365, "{s:?}");
        assert_eq!((served.ca().not_after - Utc::now()).num_days(), 3649);
        server_config(served.clone(), None).unwrap();
        server_config(served.clone(), Some(&d.path().join("ca.pem"))).unwrap();
        let e = server_config(served, Some(&d.path().join("server.key")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("server.key") && e.contains("no CA certificate"),
            "{e}"
        );
    }

    #[test]
    fn the_server_certificate_is_renewed_when_due_and_kept_otherwise() {
        let d = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        ensure(d.path(), &names, YEAR).unwrap();
        let served = Served::load(d.path()).unwrap();
        let first = served.server();
        let now = Utc::now();
        assert_eq!(served.renew_if_due(&names, YEAR, now).unwrap(), None);
        // 31 days before it expires: renewed, with its names and more.
        let later = first.not_after - chrono::Duration::days(29);
        let more = vec!["collector.example".to_owned()];
        let said = served.renew_if_due(&more, YEAR, later).unwrap().unwrap();
        assert!(said.contains("renewed"), "{said}");
        let second = served.server();
        assert_ne!(second.sha256, first.sha256);
        assert_eq!(second.names, ["localhost", "collector.example"]);
        // The CA stays: clients that pin it trust the new one.
        assert_eq!(
            info(&d.path().join("ca.pem")).unwrap().sha256,
            served.ca().sha256
        );
        // A certificate valid for far longer than the validity (made before renewal
        // existed) is replaced at once.
        let e = served
            .renew_if_due(&names, Duration::from_secs(86_400), now)
            .unwrap();
        assert!(e.is_some_and(|s| s.contains("renewed")));
        assert!((served.server().not_after - now).num_hours() <= 24);
        // Without the CA key, renewal says where it went.
        std::fs::rename(d.path().join("ca.key"), d.path().join("offline.key")).unwrap();
        let e = served
            .renew_if_due(&names, YEAR, now + chrono::Duration::days(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cert rotate --ca-key"), "{e}");
        issue(d.path(), &names, YEAR, &d.path().join("offline.key")).unwrap();
        let said = served.renew_if_due(&names, YEAR, now).unwrap().unwrap();
        assert!(
            said.contains("serving the server certificate now"),
            "{said}"
        );
    }

    #[test]
    fn a_broken_key_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        ensure(d.path(), &["localhost".to_owned()], YEAR).unwrap();
        std::fs::write(d.path().join("server.key"), "garbage").unwrap();
        let e = Served::load(d.path()).err().unwrap().to_string();
        assert!(e.contains("server.key"), "{e}");
    }
}
