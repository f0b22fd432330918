//! TLS on both sides of the server: its own certificate (`--tls-cert`, `--tls-key`), so
//! browsers use `https://` and `wss://` directly, and the trust its clients place in peers
//! (`--tls-ca`): the Raft network, a follower's WebSocket and probes, forwarded writes.
//!
//! rustls on the ring provider (aws-lc-rs needs cmake and nasm at build time). Every file is
//! read and checked before the server binds or opens its data directory, so a bad file stops
//! the start with a stable code and changes nothing on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why the TLS files are unusable. Each message starts with its stable code.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{code}: cannot read {flag} {}: {source}", path.display())]
    Unreadable {
        /// `tls_cert_unreadable`, `tls_key_unreadable` or `tls_ca_unreadable`.
        code: &'static str,
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind its flag needs.
    #[error("{code}: {flag} {} {reason}", path.display())]
    Invalid {
        /// `tls_cert_invalid`, `tls_key_invalid` or `tls_ca_invalid`.
        code: &'static str,
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key does not belong to the certificate (or rustls refuses the pair).
    #[error("tls_key_mismatch: --tls-key does not fit --tls-cert: {0}")]
    KeyMismatch(String),
    /// `--tls-ca` was already loaded in this process.
    #[error("tls_ca_invalid: the peers' trust roots were already set in this process")]
    CaAlreadySet,
}

impl TlsError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Unreadable { code, .. } | TlsError::Invalid { code, .. } => code,
            TlsError::KeyMismatch(_) => "tls_key_mismatch",
            TlsError::CaAlreadySet => "tls_ca_invalid",
        }
    }
}

/// ring's provider. rustls 0.23.48 deprecates it for lacking post-quantum key exchange, which
/// only aws-lc-rs offers; aws-lc-rs needs cmake and nasm to build, which the project's machines
/// do not have. Revisit when they do.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, flag: &'static str, code: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        code,
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file (at least one).
fn certificates(
    path: &Path,
    flag: &'static str,
    unreadable: &'static str,
    invalid: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, flag, unreadable)?;
    let invalid = |reason: String| TlsError::Invalid {
        code: invalid,
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The server's TLS configuration from `--tls-cert` (a PEM chain, leaf first) and `--tls-key`
/// (a PEM private key: PKCS#8, PKCS#1 or SEC1). HTTP/1.1 only (ALPN), so WebSocket upgrades
/// work as over plain TCP.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(
        cert,
        "--tls-cert",
        "tls_cert_unreadable",
        "tls_cert_invalid",
    )?;
    let key_pem = read(key, "--tls-key", "tls_key_unreadable")?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        code: "tls_key_invalid",
        flag: "--tls-key",
        path: key.to_path_buf(),
        reason: format!("holds no usable PEM private key: {e}"),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::KeyMismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Extra trust roots for peers (`--tls-ca`), set once at start.
static PEER_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// Reads `--tls-ca` (PEM certificates) and trusts them, besides the public web roots, in every
/// client this process opens to a peer.
pub fn trust_peer_ca(path: &Path) -> Result<(), TlsError> {
    let roots = certificates(path, "--tls-ca", "tls_ca_unreadable", "tls_ca_invalid")?;
    let mut store = RootCertStore::empty();
    for root in &roots {
        store.add(root.clone()).map_err(|e| TlsError::Invalid {
            code: "tls_ca_invalid",
            flag: "--tls-ca",
            path: path.to_path_buf(),
            reason: format!("holds a certificate that cannot be a trust root: {e}"),
        })?;
    }
    PEER_ROOTS.set(roots).map_err(|_| TlsError::CaAlreadySet)
}

fn peer_roots() -> &'static [CertificateDer<'static>] {
    PEER_ROOTS.get().map_or(&[], Vec::as_slice)
}

/// A `reqwest` client builder (rustls) that trusts the public web roots and `--tls-ca`: for
/// every HTTP client toward a peer.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    for root in peer_roots() {
        match reqwest::Certificate::from_der(root) {
            Ok(certificate) => builder = builder.add_root_certificate(certificate),
            // Checked by `trust_peer_ca`; a root refused here is a bug.
            Err(e) => tracing::error!(error = %e, "a --tls-ca root was refused by the HTTP client"),
        }
    }
    builder
}

/// The rustls client configuration for `wss://` connections to peers: the public web roots
/// and `--tls-ca`.
pub fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in peer_roots() {
            let _ = roots.add(root.clone());
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }))
}
