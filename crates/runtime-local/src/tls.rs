//! The local runtime's certificate authority, kept as files in the data
//! directory, and the server certificates it signs for each instance. The
//! certificates themselves are built by `strata_core::tls`, shared with the
//! operator.

use std::path::Path;

use strata_core::Secret;
use strata_core::tls::{self, CertifiedKey};

pub use strata_core::tls::TlsError as CertError;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("certificate files: {0}")]
    Io(#[from] std::io::Error),
}

/// Strata's CA: created once in the data directory, then reused.
pub struct CertificateAuthority {
    ca: CertifiedKey,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority { .. }")
    }
}

/// A server certificate and its key, as PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertificateAuthority {
    /// Loads `dir/ca.crt` and `dir/ca.key`, creating them on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        use std::os::unix::fs::PermissionsExt;
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if cert_path.is_file() && key_path.is_file() {
            return Ok(Self {
                ca: CertifiedKey {
                    cert_pem: std::fs::read_to_string(cert_path)?,
                    key_pem: Secret::new(std::fs::read_to_string(key_path)?),
                },
            });
        }
        std::fs::create_dir_all(dir)?;
        let ca = tls::issue_ca(&tls::generate_key()?, time::OffsetDateTime::now_utc())?;
        std::fs::write(&key_path, ca.key_pem.expose())?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(&cert_path, &ca.cert_pem)?;
        Ok(Self { ca })
    }

    pub fn cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid for a year.
    pub fn issue_server(&self, common_name: &str, hosts: &[&str]) -> Result<ServerCert, TlsError> {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let cert = tls::issue_server(
            &self.ca,
            &tls::generate_key()?,
            common_name,
            &hosts,
            time::OffsetDateTime::now_utc(),
            tls::SERVER_LIFETIME,
        )?;
        Ok(ServerCert {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem.expose().to_owned(),
        })
    }
}
