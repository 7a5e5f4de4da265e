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
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        Ok(Self {
            current: Mutex::new(Arc::new(server_config(cert_file, key_file)?)),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        })
    }

    /// Read the files again; on failure the old certificate stays.
    pub fn reload(&self) -> Result<(), String> {
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

fn server_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| {
            format!(
                "TLS_CERT_FILE: cannot read a PEM certificate chain from {}: {e}",
                cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "TLS_CERT_FILE: {} holds no CERTIFICATE block",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "TLS_KEY_FILE: cannot read a PEM private key from {}: {e}",
            key_file.display()
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS_CERT_FILE {} and TLS_KEY_FILE {} do not make a usable pair: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    // HTTP/2 first: clients that speak it get it; the rest fall back.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
