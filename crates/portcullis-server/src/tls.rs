//! TLS termination with rustls (aws-lc-rs provider), reloadable.
//!
//! The certificate and key are read from PEM files at start and again on
//! SIGHUP ([`Tls::reload`]). Each accepted connection takes the config that
//! is current at its handshake, so a reload changes what new connections
//! see and never touches connections already open. A reload that fails
//! (a half-written file, a key that does not match) keeps the old
//! certificate and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// The current TLS configuration and where it is read from.
#[derive(Debug)]
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Mutex<Arc<ServerConfig>>,
}

impl Tls {
    /// Read the certificate chain and key; the error names the file.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            current: Mutex::new(Arc::new(server_config(cert_file, key_file)?)),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        })
    }

    /// Read the files again; on failure the old certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(server_config(&self.cert_file, &self.key_file)?);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// An acceptor with the current certificate.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Why a certificate and key cannot be used; the message names the
/// setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `TLS_CERT_FILE` cannot be read as PEM.
    #[error("TLS_CERT_FILE: cannot read a PEM certificate chain from {}: {source}", .file.display())]
    Certificate {
        /// The file.
        file: PathBuf,
        /// The reader's reason.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// `TLS_CERT_FILE` holds no certificate.
    #[error("TLS_CERT_FILE: {} holds no CERTIFICATE block", .0.display())]
    NoCertificate(PathBuf),
    /// `TLS_KEY_FILE` cannot be read as PEM.
    #[error("TLS_KEY_FILE: cannot read a PEM private key from {}: {source}", .file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// The reader's reason.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the protocol versions (not expected with its defaults).
    #[error("TLS: {0}")]
    Protocols(#[source] tokio_rustls::rustls::Error),
    /// The key does not go with the certificate, or rustls refused either.
    #[error("TLS_CERT_FILE {} and TLS_KEY_FILE {} do not make a usable pair: {source}", .cert_file.display(), .key_file.display())]
    Pair {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// rustls's reason.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
}

fn server_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| TlsError::Certificate {
            file: cert_file.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_file.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::Key {
        file: key_file.to_owned(),
        source,
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Pair {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            source,
        })?;
    // HTTP/2 first: clients that speak it get it; the rest fall back.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
