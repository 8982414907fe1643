//! TLS always: on first start the collector makes its own CA and a server certificate
//! signed by it (agents and the CLI pin `ca.pem`); later starts reuse them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
}

pub struct Paths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Paths {
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Makes the CA and server certificate if they do not exist yet. `names` are the server's
/// DNS names and IP addresses. Returns whether anything was created.
pub fn ensure(dir: &Path, names: &[String]) -> Result<bool, TlsError> {
    let p = Paths::in_dir(dir);
    if p.ca.exists() && p.cert.exists() && p.key.exists() {
        return Ok(false);
    }
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rollcall collector CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut server = CertificateParams::new(names.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "rollcall-collector");
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &Issuer::new(ca, &ca_key))?;

    write(&dir.join("ca.key"), &ca_key.serialize_pem(), 0o600)?;
    write(&p.key, &server_key.serialize_pem(), 0o600)?;
    write(
        &p.cert,
        &format!("{}{}", server_cert.pem(), ca_cert.pem()),
        0o644,
    )?;
    write(&p.ca, &ca_cert.pem(), 0o644)?;
    Ok(true)
}

/// The rustls server configuration from the files in `dir`. With `client_ca`, clients may
/// present a certificate, and one that is presented must be signed by that CA (whether one
/// is required is up to each endpoint: agents yes, SREs' API tokens no).
pub fn server_config(
    dir: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
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
    .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// [`ensure`] with the names this host answers to: localhost, its loopback addresses, its
/// kernel host name, and `sans`.
pub fn ensure_for_this_host(dir: &Path, sans: &[String]) -> Result<bool, TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(h.trim().to_owned());
    }
    names.extend(sans.iter().cloned());
    ensure(dir, &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_certificates_once_and_builds_a_server_config() {
        let d = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        assert!(ensure(d.path(), &names).unwrap());
        let ca = std::fs::read(d.path().join("ca.pem")).unwrap();
        assert!(!ensure(d.path(), &names).unwrap(), "kept on the next start");
        assert_eq!(std::fs::read(d.path().join("ca.pem")).unwrap(), ca);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        server_config(d.path(), None).unwrap();
        server_config(d.path(), Some(&d.path().join("ca.pem"))).unwrap();
        let e = server_config(d.path(), Some(&d.path().join("server.key")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("server.key") && e.contains("no CA certificate"),
            "{e}"
        );
    }

    #[test]
    fn a_broken_key_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        ensure(d.path(), &["localhost".to_owned()]).unwrap();
        std::fs::write(d.path().join("server.key"), "garbage").unwrap();
        let e = server_config(d.path(), None).err().unwrap().to_string();
        assert!(e.contains("server.key"), "{e}");
    }
}
