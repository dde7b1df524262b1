//! Strata's certificates: the CA of an installation and the server
//! certificates it signs for instances. Both runtimes use this one place:
//! the local runtime keeps the results in files, the operator in Secrets.
//!
//! Everything here is a function of its inputs — the clock and the keys are
//! passed in — except `generate_key`, which draws a fresh key pair.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::Secret;

/// How long a CA certificate is valid.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// How long a server certificate is valid.
pub const SERVER_LIFETIME: Duration = Duration::days(365);
/// Certificates start this long before `now`, for clocks that lag a little.
const BACKDATE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate is not valid PEM/X.509: {0}")]
    Parse(String),
    #[error("certificate was not signed by the CA")]
    NotIssuedBy,
}

/// A certificate and its private key, both PEM. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: Secret,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

/// A fresh ECDSA P-256 key pair, PEM (PKCS#8).
pub fn generate_key() -> Result<Secret, TlsError> {
    Ok(Secret::new(KeyPair::generate()?.serialize_pem()))
}

/// The self-signed certificate of Strata's CA for `key_pem`, valid from
/// an hour before `now` for `CA_LIFETIME`.
pub fn issue_ca(key_pem: &Secret, now: OffsetDateTime) -> Result<CertifiedKey, TlsError> {
    let key = KeyPair::from_pem(key_pem.expose())?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "Strata instance CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Strata");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key_pem.clone(),
    })
}

/// A server certificate named `common_name` for `hosts` (DNS names or IP
/// addresses) with `key_pem`, signed by `ca`, valid from an hour before
/// `now` for `lifetime`.
pub fn issue_server(
    ca: &CertifiedKey,
    key_pem: &Secret,
    common_name: &str,
    hosts: &[String],
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertifiedKey, TlsError> {
    let ca_key = KeyPair::from_pem(ca.key_pem.expose())?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::from_pem(key_pem.expose())?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(h.as_str().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key_pem.clone(),
    })
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses of the subject alternative names.
    pub hosts: Vec<String>,
}

fn with_cert<T>(
    pem: &str,
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> Result<T, TlsError>,
) -> Result<T, TlsError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    f(&cert)
}

fn time_of(t: x509_parser::time::ASN1Time) -> Result<OffsetDateTime, TlsError> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| TlsError::Parse(e.to_string()))
}

/// Reads a certificate's validity and subject alternative names.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, TlsError> {
    use x509_parser::extensions::GeneralName;
    with_cert(cert_pem, |cert| {
        let hosts = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Parse(e.to_string()))?
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                        GeneralName::IPAddress(bytes) => ip_of(bytes),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(CertInfo {
            not_before: time_of(cert.validity().not_before)?,
            not_after: time_of(cert.validity().not_after)?,
            hosts,
        })
    })
}

fn ip_of(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        _ => None,
    }
}

/// Checks that `cert_pem` carries a valid signature of the CA `ca_cert_pem`.
pub fn verify_issued_by(cert_pem: &str, ca_cert_pem: &str) -> Result<(), TlsError> {
    with_cert(ca_cert_pem, |ca| {
        with_cert(cert_pem, |cert| {
            if cert.issuer() != ca.subject() {
                return Err(TlsError::NotIssuedBy);
            }
            cert.verify_signature(Some(ca.public_key()))
                .map_err(|_| TlsError::NotIssuedBy)
        })
    })
}

/// Why a server certificate must be issued (again), or `None` when the
/// existing one is still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    /// There is no certificate, or it cannot be read.
    Missing,
    /// It was not signed by the current CA.
    OtherIssuer,
    /// Its names differ from the names it must cover.
    NamesChanged,
    /// Less than a third of its lifetime remains (or it has expired).
    Expiring,
}

impl Reissue {
    pub fn as_str(self) -> &'static str {
        match self {
            Reissue::Missing => "missing",
            Reissue::OtherIssuer => "other issuer",
            Reissue::NamesChanged => "names changed",
            Reissue::Expiring => "expiring",
        }
    }
}

/// The re-issue rule: a certificate is replaced when it is missing or
/// unreadable, was signed by another CA, covers other names than `hosts`
/// (order does not matter), or has less than a third of its lifetime left
/// at `now`.
pub fn reissue_reason(
    cert_pem: Option<&str>,
    ca_cert_pem: &str,
    hosts: &[String],
    now: OffsetDateTime,
) -> Option<Reissue> {
    let Some(cert_pem) = cert_pem else {
        return Some(Reissue::Missing);
    };
    let Ok(info) = inspect(cert_pem) else {
        return Some(Reissue::Missing);
    };
    if verify_issued_by(cert_pem, ca_cert_pem).is_err() {
        return Some(Reissue::OtherIssuer);
    }
    let mut have = info.hosts.clone();
    let mut want = hosts.to_vec();
    have.sort();
    want.sort();
    if have != want {
        return Some(Reissue::NamesChanged);
    }
    let lifetime = info.not_after - info.not_before;
    if info.not_after - now < lifetime / 3 {
        return Some(Reissue::Expiring);
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn ca() -> CertifiedKey {
        issue_ca(&generate_key().unwrap(), NOW).unwrap()
    }

    fn hosts() -> Vec<String> {
        ["orders", "orders.team-a", "orders.team-a.svc", "127.0.0.1"]
            .map(String::from)
            .to_vec()
    }

    fn server(ca: &CertifiedKey, now: OffsetDateTime) -> CertifiedKey {
        issue_server(
            ca,
            &generate_key().unwrap(),
            "orders",
            &hosts(),
            now,
            SERVER_LIFETIME,
        )
        .unwrap()
    }

    #[test]
    fn a_server_certificate_names_its_hosts_and_chains_to_the_ca() {
        let ca = ca();
        let cert = server(&ca, NOW);
        let info = inspect(&cert.cert_pem).unwrap();
        assert_eq!(info.hosts, hosts());
        assert_eq!(info.not_before, NOW - BACKDATE);
        assert_eq!(info.not_after, NOW + SERVER_LIFETIME);
        verify_issued_by(&cert.cert_pem, &ca.cert_pem).unwrap();
        verify_issued_by(&ca.cert_pem, &ca.cert_pem).unwrap();
        let other = self::ca();
        assert!(matches!(
            verify_issued_by(&cert.cert_pem, &other.cert_pem),
            Err(TlsError::NotIssuedBy)
        ));
    }

    #[test]
    fn the_ca_is_valid_for_ten_years() {
        let ca = ca();
        let info = inspect(&ca.cert_pem).unwrap();
        assert_eq!(info.not_after, NOW + CA_LIFETIME);
        assert!(info.hosts.is_empty());
    }

    #[test]
    fn reissue_rule() {
        let ca = ca();
        let cert = server(&ca, NOW);
        let pem = Some(cert.cert_pem.as_str());
        assert_eq!(reissue_reason(pem, &ca.cert_pem, &hosts(), NOW), None);
        // Names in another order are the same names.
        let mut reversed = hosts();
        reversed.reverse();
        assert_eq!(reissue_reason(pem, &ca.cert_pem, &reversed, NOW), None);
        // Two thirds of the lifetime in, it is still good; past that, not.
        let early = NOW + Duration::days(240);
        assert_eq!(reissue_reason(pem, &ca.cert_pem, &hosts(), early), None);
        let late = NOW + Duration::days(245);
        assert_eq!(
            reissue_reason(pem, &ca.cert_pem, &hosts(), late),
            Some(Reissue::Expiring)
        );
        assert_eq!(
            reissue_reason(pem, &ca.cert_pem, &hosts()[..2], NOW),
            Some(Reissue::NamesChanged)
        );
        assert_eq!(
            reissue_reason(pem, &self::ca().cert_pem, &hosts(), NOW),
            Some(Reissue::OtherIssuer)
        );
        assert_eq!(
            reissue_reason(None, &ca.cert_pem, &hosts(), NOW),
            Some(Reissue::Missing)
        );
        assert_eq!(
            reissue_reason(Some("garbage"), &ca.cert_pem, &hosts(), NOW),
            Some(Reissue::Missing)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let ca = ca();
        let shown = format!("{ca:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
