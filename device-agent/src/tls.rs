//! TLS as the agent (and the `weft` CLI) speak it: rustls with the `ring` provider, no OpenSSL.
//!
//! With a [`Fingerprint`] (trust on enrollment: `weft device add` prints the server
//! certificate's, `weft-agent init` writes it as `server_fingerprint`) exactly that certificate
//! is accepted, whatever names or issuer it has; the handshake's signature is still checked
//! against its key, so only the holder of that key can answer. Without one, the server's
//! certificate must chain to the webpki roots (a public certificate, e.g. behind Caddy or
//! nginx). A refusal names the expected and the presented fingerprint. There is no fallback to
//! plain text.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 of a certificate (its DER), written `sha256:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    /// `sha256:` then 64 hex digits, in either case, optionally in colon-separated pairs (as
    /// `openssl x509 -fingerprint -sha256` prints them).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not a certificate fingerprint: expected `sha256:` followed by 64 hex \
                 digits (as `weft device add` prints it)"
            )
        };
        let t = s.trim();
        let rest = t
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256:"))
            .map(|_| &t[7..])
            .ok_or_else(bad)?;
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An orchestrator's base URL: `https://host[:port][/prefix]`, or `http://` (`wss://` and
/// `ws://`, with or without the agent path, are read the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub tls: bool,
    /// As written in the URL (an IPv6 address in brackets).
    pub host: String,
    pub port: u16,
    /// The path prefix before `/v1/...` (empty, or `/weft`), behind a reverse proxy.
    pub prefix: String,
}

impl ServerUrl {
    pub fn parse(base: &str) -> Result<Self, String> {
        let base = base.trim().trim_end_matches('/');
        let (tls, rest) = if let Some(r) = base.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = base.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = base.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = base.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(format!(
                "server `{base}` must be an https:// URL such as https://weft.lan:7600 (or \
                 http:// on this machine)"
            ));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("server `{base}`: `{p}` is not a port"))?;
                (h, port)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("server `{base}` has no host"));
        }
        let prefix = path
            .strip_suffix(weft_protocol::AGENT_WS_PATH)
            .unwrap_or(path)
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            prefix,
        })
    }

    /// The host without IPv6 brackets, to connect to and to name in TLS.
    pub fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// `localhost` or a loopback address: the connection never leaves this machine.
    pub fn is_loopback(&self) -> bool {
        let h = self.bare_host();
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The agent endpoint's WebSocket URL.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!(
            "{scheme}://{}:{}{}{}",
            self.host,
            self.port,
            self.prefix,
            weft_protocol::AGENT_WS_PATH
        )
    }

    /// No token crosses the network in plain text unless `insecure_plaintext`; a fingerprint
    /// pins a TLS certificate, so it needs `https://`.
    pub fn check(&self, pinned: bool, insecure_plaintext: bool) -> Result<(), String> {
        let https = format!("https://{}:{}{}", self.host, self.port, self.prefix);
        if pinned && !self.tls {
            return Err(format!(
                "server_fingerprint is set, but the server URL is plain http://: use {https} \
                 (the fingerprint pins the server's TLS certificate)"
            ));
        }
        if !self.tls && !self.is_loopback() && !insecure_plaintext {
            return Err(format!(
                "server {}:{} is not on this machine, and plain text would send the token \
                 across the network unencrypted: use {https} (`weft serve` serves TLS on \
                 non-loopback addresses), or allow plain text with insecure_plaintext = true \
                 (--insecure-plaintext)",
                self.host, self.port
            ));
        }
        Ok(())
    }
}

/// A connection to the server, TLS or not.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `url`: TCP, then TLS (pinned to `pin`, or verified against the webpki roots)
/// for `https://`.
pub async fn connect(url: &ServerUrl, pin: Option<Fingerprint>) -> std::io::Result<Box<dyn Io>> {
    let tcp = tokio::net::TcpStream::connect((url.bare_host(), url.port)).await?;
    tcp.set_nodelay(true)?;
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(url.bare_host().to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tls = tokio_rustls::TlsConnector::from(client_config(pin))
        .connect(name, tcp)
        .await?;
    Ok(Box::new(tls))
}

/// The crypto provider of every TLS connection weft makes or accepts.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The presented certificate is not the pinned one.
#[derive(Debug)]
pub struct FingerprintMismatch {
    pub expected: Fingerprint,
    pub presented: Fingerprint,
}

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server presented the certificate {}, but server_fingerprint is {}: this is not \
             the server this device enrolled with, or its certificate changed (then set the new \
             fingerprint that `weft serve` prints)",
            self.presented, self.expected
        )
    }
}

impl std::error::Error for FingerprintMismatch {}

/// Accepts exactly the certificate with the expected fingerprint.
#[derive(Debug)]
struct Pinned {
    expected: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        if presented == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    FingerprintMismatch {
                        expected: self.expected,
                        presented,
                    },
                ))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client side of TLS: pinned to `pin`, or verified against the webpki roots.
pub fn client_config(pin: Option<Fingerprint>) -> Arc<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        // The ring provider supports the default protocol versions.
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
    let mut config = match pin {
        Some(expected) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { expected, provider }))
            .with_no_client_auth(),
        None => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_with_ports_prefixes_and_ipv6() {
        let u = ServerUrl::parse("https://weft.example.com/weft/").unwrap();
        assert_eq!((u.tls, u.port, u.prefix.as_str()), (true, 443, "/weft"));
        let u = ServerUrl::parse("wss://[::1]:7600/p/v1/agent").unwrap();
        assert_eq!(
            (u.bare_host(), u.port, u.prefix.as_str()),
            ("::1", 7600, "/p")
        );
        assert!(u.is_loopback());
        assert_eq!(u.ws_url(), "wss://[::1]:7600/p/v1/agent");
        assert!(!ServerUrl::parse("http://weft.lan").unwrap().is_loopback());
        for bad in ["ftp://x", "https://", "http://h:port", "weft.lan:7600"] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_read_back_as_written_in_either_form() {
        let fp = Fingerprint::of(b"certificate");
        let text = fp.to_string();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        let openssl = format!(
            "SHA256:{}",
            hex::encode_upper(fp.0)
                .as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(":")
        );
        assert_eq!(openssl.parse::<Fingerprint>().unwrap(), fp);
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &text[..text.len() - 1],
            &format!("{text}00"),
            &text.replace("sha256:", "sha1:"),
            "sha256:zz",
        ] {
            let e = bad.parse::<Fingerprint>().unwrap_err();
            assert!(e.contains("sha256:"), "{e}");
        }
    }
}
