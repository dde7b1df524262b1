//! The instance the unit tests of this crate start from.

use crate::crd::{PostgresInstance, PostgresInstanceSpec};

/// `orders` in namespace `team-a`: PostgreSQL 16, plan `small`, 20 GB, the
/// given ACL, nothing else set.
pub fn orders(acl: &[&str]) -> PostgresInstance {
    let mut i = PostgresInstance::new(
        "orders",
        PostgresInstanceSpec {
            version: "16".into(),
            plan: "small".into(),
            storage_gb: 20,
            acl: acl.iter().map(|a| (*a).to_owned()).collect(),
            image: None,
            storage_class: None,
            external_access: false,
        },
    );
    i.metadata.namespace = Some("team-a".into());
    i
}
