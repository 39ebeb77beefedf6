//! TLS for the Kafka client through rustls (the aws-lc-rs provider already in the tree):
//! a private CA, an optional client certificate and key, and an optional server name that
//! replaces each broker's host in the certificate check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Why TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind needed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        message: String,
    },
    /// rustls refused the material (a key that does not match the certificate, …).
    #[error("{0}")]
    Rustls(String),
    /// `server_name` is not a DNS name or an IP address.
    #[error("`{0}` is not a DNS name or IP address")]
    ServerName(String),
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (the first one: PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        message: format!("no usable private key: {e}"),
    })
}

/// Resolved TLS settings: a rustls client config and the optional server name override.
#[derive(Clone)]
pub struct TlsSettings {
    /// The rustls configuration (trust anchors, client certificate).
    pub config: Arc<ClientConfig>,
    /// Checked against every broker's certificate instead of its host, when set.
    pub server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Reads the CA file and, when both are given, the client certificate and key.
    pub fn from_files(
        ca_file: &Path,
        client: Option<(&Path, &Path)>,
        server_name: Option<&str>,
    ) -> Result<TlsSettings, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_file)? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                path: ca_file.to_path_buf(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
                .map_err(|e| {
                    TlsError::Rustls(format!(
                        "client certificate {} / key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?,
            None => builder.with_no_client_auth(),
        };
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_string()).map_err(|_| TlsError::ServerName(n.into()))
            })
            .transpose()?;
        Ok(TlsSettings {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name `host`'s certificate is checked against.
    pub fn name_for(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => ServerName::try_from(host.to_string())
                .map_err(|_| TlsError::ServerName(host.into())),
        }
    }
}
