//! The server's certificate: generated on first start into the data directory (self-signed,
//! key mode 0600), or read from `--tls-cert` / `--tls-key` (PEM) and read again on SIGHUP.
//! New handshakes get the current certificate; established connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use weft_agent::tls::Fingerprint;

use crate::Error;

/// The generated certificate and key, in the data directory.
pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";
/// The current certificate's fingerprint, in the data directory beside the API token: the CLI
/// on the server's machine pins it.
pub const FINGERPRINT_FILE: &str = "server-fingerprint";

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `tls-cert.pem` and `tls-key.pem` in `dir`, made on first start for `names` (host names
    /// and IP addresses).
    Generated { dir: PathBuf, names: Vec<String> },
    /// `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
}

impl CertSource {
    fn paths(&self) -> (PathBuf, PathBuf, &'static str, &'static str) {
        match self {
            CertSource::Generated { dir, .. } => (
                dir.join(CERT_FILE),
                dir.join(KEY_FILE),
                "the generated certificate",
                "the generated key",
            ),
            CertSource::Files { cert, key } => {
                (cert.clone(), key.clone(), "--tls-cert", "--tls-key")
            }
        }
    }
}

/// The current certificate, shared by the handshakes and the REST views.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    fingerprint: Fingerprint,
}

/// The server's TLS: its configuration and its current certificate.
#[derive(Debug)]
pub struct ServerTls {
    source: CertSource,
    provider: Arc<CryptoProvider>,
    current: Arc<RwLock<Current>>,
    config: Arc<ServerConfig>,
}

#[derive(Debug)]
struct Resolver(Arc<RwLock<Current>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).key.clone())
    }
}

impl ServerTls {
    /// Loads (or, for [`CertSource::Generated`], first creates) the certificate and key. Every
    /// error names the file and the flag it came from.
    pub fn load(source: CertSource) -> Result<Arc<Self>, Error> {
        if let CertSource::Generated { dir, names } = &source {
            generate_if_missing(dir, names)?;
        }
        let provider = weft_agent::tls::provider();
        let current = Arc::new(RwLock::new(read(&source, &provider)?));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(current.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            source,
            provider,
            current,
            config: Arc::new(config),
        }))
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The current certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .fingerprint
    }

    /// Reads the certificate and key again (SIGHUP). On an error the old ones stay.
    pub fn reload(&self) -> Result<Fingerprint, Error> {
        let next = read(&self.source, &self.provider)?;
        let fp = next.fingerprint;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(fp)
    }
}

fn read(source: &CertSource, provider: &CryptoProvider) -> Result<Current, Error> {
    let (cert_path, key_path, cert_flag, key_flag) = source.paths();
    let bad = |flag: &str, path: &Path, what: String| {
        Error::Config(format!("{flag} {}: {what}", path.display()))
    };
    let text = std::fs::read(&cert_path)
        .map_err(|e| bad(cert_flag, &cert_path, format!("cannot read it: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert_flag, &cert_path, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            cert_flag,
            &cert_path,
            "holds no `BEGIN CERTIFICATE` block".into(),
        ));
    }
    let text = std::fs::read(&key_path)
        .map_err(|e| bad(key_flag, &key_path, format!("cannot read it: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        bad(
            key_flag,
            &key_path,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let fingerprint = Fingerprint::of(&chain[0]);
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        Error::Config(format!(
            "{key_flag} {} does not go with {cert_flag} {}: {e}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok(Current {
        key: Arc::new(key),
        fingerprint,
    })
}

/// Creates a self-signed certificate for `names` and its key in `dir`, unless both exist. One
/// without the other is an error (the certificate enrolled devices trust would change).
fn generate_if_missing(dir: &Path, names: &[String]) -> Result<(), Error> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(()),
        (false, false) => {}
        (has_cert, _) => {
            let (there, missing) = if has_cert {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            return Err(Error::Config(format!(
                "{} is there but {} is not: restore it, or remove both to make a new \
                 certificate (every device then needs the new fingerprint)",
                there.display(),
                missing.display()
            )));
        }
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| Error::Config(format!("cannot make a TLS certificate: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the data directory {}: {e}",
            dir.display()
        ))
    })?;
    crate::token::write_private(&key, made.signing_key.serialize_pem().as_bytes())
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", key.display())))?;
    std::fs::write(&cert, made.cert.pem())
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", cert.display())))?;
    tracing::info!(cert = %cert.display(), ?names, "made a self-signed TLS certificate");
    Ok(())
}

/// The names a generated certificate is made for: the `--allowed-host` names (without their
/// ports), the listen address unless it is a wildcard, and the loopback names.
pub fn certificate_names(listen: std::net::SocketAddr, allowed_hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = allowed_hosts.iter().map(|h| host_of(h)).collect();
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend([
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]);
    names.retain(|n| !n.is_empty());
    names.dedup();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// `weft.lan:7600` → `weft.lan`, `[::1]:7600` → `::1`.
fn host_of(host_port: &str) -> String {
    let h = host_port.trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_owned();
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => h.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let names = certificate_names(
            "10.1.2.3:7600".parse().unwrap(),
            &["weft.lan:7600".into(), "[fd00::1]:7600".into()],
        );
        assert_eq!(
            names,
            [
                "weft.lan",
                "fd00::1",
                "10.1.2.3",
                "localhost",
                "127.0.0.1",
                "::1"
            ]
        );
        let source = CertSource::Generated {
            dir: dir.path().to_owned(),
            names,
        };
        let tls = ServerTls::load(source.clone()).unwrap();
        let fp = tls.fingerprint();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Started again: the same certificate.
        assert_eq!(ServerTls::load(source.clone()).unwrap().fingerprint(), fp);
        assert_eq!(tls.reload().unwrap(), fp);
        // A key without its certificate is refused, naming both files.
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let e = ServerTls::load(source).unwrap_err().to_string();
        assert!(e.contains(KEY_FILE) && e.contains(CERT_FILE), "{e}");
    }

    #[test]
    fn bad_files_are_refused_naming_the_flag_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_owned()]).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cert = write("a.pem", &a.cert.pem());
        let key = write("a.key", &a.signing_key.serialize_pem());
        let other_key = write("b.key", &b.signing_key.serialize_pem());
        let junk = write("junk.pem", "not pem at all");
        let load = |cert: &Path, key: &Path| {
            ServerTls::load(CertSource::Files {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        };
        let tls = load(&cert, &key).unwrap();
        assert_eq!(tls.fingerprint(), Fingerprint::of(a.cert.der()));
        for (c, k, flag, file) in [
            (&junk, &key, "--tls-cert", "junk.pem"),
            (&cert, &junk, "--tls-key", "junk.pem"),
            (&dir.path().join("none.pem"), &key, "--tls-cert", "none.pem"),
            (&cert, &other_key, "--tls-key", "b.key"),
        ] {
            let e = load(c, k).unwrap_err().to_string();
            assert!(e.contains(flag) && e.contains(file), "{e}");
        }
        // A reload that fails keeps the old certificate; one that works takes the new one.
        std::fs::write(&cert, "broken").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.fingerprint(), Fingerprint::of(a.cert.der()));
        std::fs::write(&cert, b.cert.pem()).unwrap();
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        assert_eq!(tls.reload().unwrap(), Fingerprint::of(b.cert.der()));
    }
}
