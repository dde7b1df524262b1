//! The certificate authority Strata generates, and the server certificates it
//! signs for each instance.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate files: {0}")]
    Io(#[from] std::io::Error),
}

/// The CA's subject and constraints. Its validity lives only in the certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "Strata instance CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Strata");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Strata's CA: created once in the data directory, then reused.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
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
                cert_pem: std::fs::read_to_string(cert_path)?,
                key_pem: std::fs::read_to_string(key_path)?,
            });
        }
        std::fs::create_dir_all(dir)?;
        let key_pair = KeyPair::generate()?;
        let mut params = ca_params();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key_pair)?;
        let ca = Self {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
        };
        std::fs::write(&key_path, &ca.key_pem)?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(&cert_path, &ca.cert_pem)?;
        Ok(ca)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid for a year.
    pub fn issue_server(&self, common_name: &str, hosts: &[&str]) -> Result<ServerCert, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        // The issuer needs the CA's name and key, both of which ca_params() and the key restore.
        let params_of_ca = ca_params();
        let issuer = Issuer::from_params(&params_of_ca, ca_key);
        let key_pair = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*h).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.signed_by(&key_pair, &issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
        })
    }
}
