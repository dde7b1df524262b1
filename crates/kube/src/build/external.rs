//! The optional external endpoint (pure): a LoadBalancer Service that
//! admits only the ACL's networks, and its address in the status.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ValidSpec, meta, owner_reference, selector_labels};
use crate::crd::{EndpointStatus, POSTGRES_PORT, PostgresInstance, PostgresInstanceStatus};

/// The LoadBalancer Service of an instance with external access.
pub fn external_service_name(instance: &str) -> String {
    format!("{instance}-external")
}

/// The LoadBalancer Service when the spec asks for external access:
/// PostgreSQL's port, `loadBalancerSourceRanges` from the ACL (the cloud's
/// load balancer or firewall drops everyone else), and
/// `externalTrafficPolicy: Local`, so that the pod sees the client's own
/// address — the NetworkPolicy's ACL and pg_hba.conf check it again.
pub fn external_service(instance: &PostgresInstance, valid: &ValidSpec) -> Option<Service> {
    if !valid.external_access {
        return None;
    }
    let name = valid.name.as_str();
    let owner = owner_reference(instance);
    Some(Service {
        metadata: meta(instance, external_service_name(name), &owner),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(selector_labels(name)),
            ports: Some(vec![ServicePort {
                name: Some("postgres".into()),
                port: i32::from(POSTGRES_PORT),
                target_port: Some(IntOrString::String("postgres".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            load_balancer_source_ranges: Some(valid.acl.to_strings()),
            external_traffic_policy: Some("Local".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The load balancer's first address (IP or host name), once it has one.
pub fn load_balancer_address(service: &Service) -> Option<String> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()
        .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .filter(|a| !a.is_empty())
}

/// The external endpoint in the status: the load balancer's address once
/// it has one, while the instance serves (it has its in-cluster
/// endpoint); none otherwise.
pub fn set_external_endpoint(status: &mut PostgresInstanceStatus, service: Option<&Service>) {
    let address = service.and_then(load_balancer_address);
    status.external_endpoint = match (&status.endpoint, address) {
        (Some(_), Some(host)) => Some(EndpointStatus {
            host,
            port: POSTGRES_PORT,
        }),
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::build::{BuildConfig, validate};

    fn instance(external_access: bool, acl: &[&str]) -> PostgresInstance {
        let mut i = crate::fixtures::orders(acl);
        i.spec.external_access = external_access;
        i.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
        i
    }

    #[test]
    fn external_access_is_a_load_balancer_admitting_the_acl() {
        let i = instance(true, &["203.0.113.0/24", "2001:db8::/32"]);
        let valid = validate(&i, &BuildConfig::default()).unwrap();
        let svc = external_service(&i, &valid).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("orders-external"));
        assert_eq!(
            svc.metadata.owner_references.unwrap()[0].uid,
            "11111111-2222-3333-4444-555555555555"
        );
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec.load_balancer_source_ranges.unwrap(),
            ["203.0.113.0/24", "2001:db8::/32"]
        );
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        let ports = spec.ports.unwrap();
        assert_eq!((ports.len(), ports[0].port), (1, 5432));
        assert_eq!(spec.selector.unwrap(), selector_labels("orders"));

        let i = instance(false, &["203.0.113.0/24"]);
        let valid = validate(&i, &BuildConfig::default()).unwrap();
        assert!(external_service(&i, &valid).is_none());
    }

    #[test]
    fn external_access_without_an_acl_entry_is_refused() {
        let err = validate(&instance(true, &[]), &BuildConfig::default()).unwrap_err();
        assert_eq!(err.errors[0].field, "spec.externalAccess");
    }

    #[test]
    fn the_external_endpoint_is_the_load_balancers_address_while_serving() {
        let with_address = |ingress: serde_json::Value| -> Service {
            serde_json::from_value(json!({
                "metadata": { "name": "orders-external" },
                "status": { "loadBalancer": { "ingress": ingress } }
            }))
            .unwrap()
        };
        let serving = PostgresInstanceStatus {
            endpoint: Some(EndpointStatus {
                host: "orders.team-a.svc.cluster.local".into(),
                port: 5432,
            }),
            ..PostgresInstanceStatus::default()
        };
        let mut s = serving.clone();
        set_external_endpoint(
            &mut s,
            Some(&with_address(json!([{ "ip": "198.51.100.7" }]))),
        );
        assert_eq!(
            s.external_endpoint,
            Some(EndpointStatus {
                host: "198.51.100.7".into(),
                port: 5432
            })
        );
        let mut s = serving.clone();
        let named = with_address(json!([{ "hostname": "lb-1.example.net" }]));
        set_external_endpoint(&mut s, Some(&named));
        assert_eq!(s.external_endpoint.unwrap().host, "lb-1.example.net");
        // No address yet, no Service, or not serving: none.
        let mut s = serving.clone();
        set_external_endpoint(&mut s, Some(&with_address(json!([]))));
        assert_eq!(s.external_endpoint, None);
        let mut s = serving;
        s.external_endpoint = Some(EndpointStatus {
            host: "198.51.100.7".into(),
            port: 5432,
        });
        set_external_endpoint(&mut s, None);
        assert_eq!(s.external_endpoint, None);
        let mut s = PostgresInstanceStatus::default();
        set_external_endpoint(
            &mut s,
            Some(&with_address(json!([{ "ip": "198.51.100.7" }]))),
        );
        assert_eq!(s.external_endpoint, None);
    }
}
