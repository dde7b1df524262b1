//! TLS inside the pods, the pure half: the installation's CA kept in a
//! Secret, and a server certificate per instance (`<name>-tls`) for the
//! client Service's DNS names, re-issued by `strata_core::tls`'s rule. The
//! controller reads and writes the Secrets; nothing here does I/O.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use strata_core::tls::{self, CertifiedKey, Reissue, TlsError};
use time::OffsetDateTime;

use crate::build::{ValidSpec, client_service_name, meta, owner_reference};
use crate::crd::PostgresInstance;

/// Keys of a `kubernetes.io/tls` Secret, plus the CA that signed it.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";
/// Default name of the installation's CA Secret (in the operator's namespace).
pub const DEFAULT_CA_SECRET: &str = "strata-ca";

/// Where the installation's CA lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSecretRef {
    pub name: String,
    pub namespace: String,
}

pub fn tls_secret_name(instance: &str) -> String {
    format!("{instance}-tls")
}

/// The names the server certificate covers: the client Service as a client
/// in the same namespace, another namespace, or with the full cluster
/// domain addresses it.
pub fn server_hosts(valid: &ValidSpec) -> Vec<String> {
    let svc = client_service_name(valid.name.as_str());
    let ns = &valid.namespace;
    vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.{}", valid.cluster_domain),
    ]
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|s| !s.is_empty())
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

/// The certificate and key a `kubernetes.io/tls` Secret holds.
pub fn certified_key(secret: &Secret) -> Option<CertifiedKey> {
    Some(CertifiedKey {
        cert_pem: text(secret, TLS_CERT_KEY)?,
        key_pem: strata_core::Secret::new(text(secret, TLS_KEY_KEY)?),
    })
}

/// The CA certificate an instance's TLS Secret carries (what clients use as
/// `sslrootcert`).
pub fn ca_certificate(secret: &Secret) -> Option<String> {
    text(secret, CA_CERT_KEY)
}

/// The CA Secret: created once by the operator, never regenerated while it
/// exists; not owned by any instance.
pub fn ca_secret(at: &CaSecretRef, ca: &CertifiedKey) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(at.name.clone()),
            namespace: Some(at.namespace.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    crate::build::FIELD_MANAGER.to_owned(),
                ),
                ("app.kubernetes.io/part-of".to_owned(), "strata".to_owned()),
                ("app.kubernetes.io/component".to_owned(), "ca".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (TLS_CERT_KEY.to_owned(), bytes(&ca.cert_pem)),
            (TLS_KEY_KEY.to_owned(), bytes(ca.key_pem.expose())),
        ])),
        ..Secret::default()
    }
}

/// The server certificate an instance should have: the one in `existing`
/// while `strata_core::tls::reissue_reason` finds nothing wrong with it,
/// else a new one for `new_key` (called only then). Returns why it was
/// issued, if it was.
pub fn server_certificate(
    ca: &CertifiedKey,
    existing: Option<&Secret>,
    hosts: &[String],
    now: OffsetDateTime,
    new_key: impl FnOnce() -> Result<strata_core::Secret, TlsError>,
) -> Result<(CertifiedKey, Option<Reissue>), TlsError> {
    let current = existing.and_then(certified_key);
    let reason = tls::reissue_reason(
        current.as_ref().map(|c| c.cert_pem.as_str()),
        &ca.cert_pem,
        hosts,
        now,
    );
    match (current, reason) {
        (Some(current), None) => Ok((current, None)),
        (_, reason) => {
            let common_name = hosts.first().map_or("", String::as_str);
            let issued = tls::issue_server(
                ca,
                &new_key()?,
                common_name,
                hosts,
                now,
                tls::SERVER_LIFETIME,
            )?;
            Ok((issued, reason.or(Some(Reissue::Missing))))
        }
    }
}

/// The instance's TLS Secret `<name>-tls` (type `kubernetes.io/tls`):
/// `tls.crt`, `tls.key` and the CA's `ca.crt`, owned by the instance.
pub fn tls_secret(instance: &PostgresInstance, cert: &CertifiedKey, ca_cert_pem: &str) -> Secret {
    let owner = owner_reference(instance);
    Secret {
        metadata: meta(instance, tls_secret_name(&instance.name_any()), &owner),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (TLS_CERT_KEY.to_owned(), bytes(&cert.cert_pem)),
            (TLS_KEY_KEY.to_owned(), bytes(cert.key_pem.expose())),
            (CA_CERT_KEY.to_owned(), bytes(ca_cert_pem)),
        ])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::build::{BuildConfig, validate};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn instance() -> PostgresInstance {
        let mut i = crate::fixtures::orders(&["10.0.0.0/8"]);
        i.metadata.uid = Some("uid-1".into());
        i
    }

    fn ca() -> CertifiedKey {
        tls::issue_ca(&tls::generate_key().unwrap(), NOW).unwrap()
    }

    fn hosts() -> Vec<String> {
        let valid = validate(&instance(), &BuildConfig::default()).unwrap();
        server_hosts(&valid)
    }

    #[test]
    fn the_certificate_names_every_dns_name_of_the_client_service() {
        assert_eq!(
            hosts(),
            [
                "orders",
                "orders.team-a",
                "orders.team-a.svc",
                "orders.team-a.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn a_missing_certificate_is_issued_and_a_good_one_kept() {
        let ca = ca();
        let (cert, reason) =
            server_certificate(&ca, None, &hosts(), NOW, tls::generate_key).unwrap();
        assert_eq!(reason, Some(Reissue::Missing));
        tls::verify_issued_by(&cert.cert_pem, &ca.cert_pem).unwrap();
        assert_eq!(tls::inspect(&cert.cert_pem).unwrap().hosts, hosts());

        let secret = tls_secret(&instance(), &cert, &ca.cert_pem);
        assert_eq!(secret.metadata.name.as_deref(), Some("orders-tls"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(
            ca_certificate(&secret).as_deref(),
            Some(ca.cert_pem.as_str())
        );
        let owners = secret.metadata.owner_references.as_ref().unwrap();
        assert_eq!(owners[0].uid, "uid-1");

        // A month later the same certificate stays; no key is drawn.
        let later = NOW + time::Duration::days(30);
        let (kept, reason) = server_certificate(&ca, Some(&secret), &hosts(), later, || {
            panic!("no new key for a good certificate")
        })
        .unwrap();
        assert_eq!(reason, None);
        assert_eq!(kept, cert);

        // Nine months later it is re-issued, and when the names change too.
        let late = NOW + time::Duration::days(270);
        let (renewed, reason) =
            server_certificate(&ca, Some(&secret), &hosts(), late, tls::generate_key).unwrap();
        assert_eq!(reason, Some(Reissue::Expiring));
        assert_ne!(renewed.cert_pem, cert.cert_pem);
        let mut other = hosts();
        other[3] = "orders.team-a.svc.example.org".into();
        let (_, reason) =
            server_certificate(&ca, Some(&secret), &other, later, tls::generate_key).unwrap();
        assert_eq!(reason, Some(Reissue::NamesChanged));
        // A new CA re-issues everything it did not sign.
        let (_, reason) = server_certificate(
            &self::ca(),
            Some(&secret),
            &hosts(),
            later,
            tls::generate_key,
        )
        .unwrap();
        assert_eq!(reason, Some(Reissue::OtherIssuer));
    }

    #[test]
    fn the_ca_secret_round_trips_and_belongs_to_no_instance() {
        let ca = ca();
        let at = CaSecretRef {
            name: DEFAULT_CA_SECRET.into(),
            namespace: "strata-system".into(),
        };
        let secret = ca_secret(&at, &ca);
        assert_eq!(secret.metadata.namespace.as_deref(), Some("strata-system"));
        assert!(secret.metadata.owner_references.is_none());
        assert_eq!(certified_key(&secret), Some(ca));
    }
}
