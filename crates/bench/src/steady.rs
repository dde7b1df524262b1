//! The steady state of the operator benchmark, as a pure function of what the
//! API server holds.
//!
//! An instance is at steady state when
//! 1. its `PostgresInstance` carries the operator's finalizer and a status
//!    with `observedGeneration == metadata.generation` and a phase other than
//!    `Failed` (without a kubelet the StatefulSet never becomes ready, so the
//!    phase stays `Provisioning`), and
//! 2. every object the operator applies for it exists under its expected
//!    name, with that instance as its controlling owner: Secret
//!    `<name>-credentials`, ConfigMap `<name>-config`, Services
//!    `<name>-headless` and `<name>`, StatefulSet, PodDisruptionBudget and
//!    NetworkPolicy `<name>` — and, when the StatefulSet's pod runs as
//!    `<name>-agent` or mounts the Secret `<name>-tls`, that ServiceAccount
//!    with its Role and RoleBinding `<name>-agent`, and that Secret.
//!
//! The run is at steady state when every instance it created is.

use std::collections::HashMap;

use strata_kube::PostgresInstance;
use strata_kube::crd::FINALIZER;
use strata_kube::k8s_openapi::api::apps::v1::StatefulSet;
use strata_kube::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The kinds the operator owns (the operator's own list).
pub use strata_kube::settled::Kind;

const SECRET: u16 = 1;
const CONFIG_MAP: u16 = 1 << 1;
const HEADLESS_SERVICE: u16 = 1 << 2;
const CLIENT_SERVICE: u16 = 1 << 3;
const STATEFUL_SET: u16 = 1 << 4;
const PDB: u16 = 1 << 5;
const NETWORK_POLICY: u16 = 1 << 6;
const TLS_SECRET: u16 = 1 << 7;
const AGENT_SERVICE_ACCOUNT: u16 = 1 << 8;
const AGENT_ROLE: u16 = 1 << 9;
const AGENT_ROLE_BINDING: u16 = 1 << 10;
/// The seven objects every instance has.
const CORE: u16 = (1 << 7) - 1;
const AGENT: u16 = AGENT_SERVICE_ACCOUNT | AGENT_ROLE | AGENT_ROLE_BINDING;

/// Which of an instance's seven objects this is, and the uid of the instance
/// that controls it; `None` for anything else.
pub fn owned(kind: Kind, meta: &ObjectMeta) -> Option<(String, u16)> {
    let owner = meta.owner_references.as_ref()?.iter().find(|o| {
        o.kind == "PostgresInstance"
            && o.api_version == "strata.dev/v1alpha1"
            && o.controller == Some(true)
    })?;
    let name = meta.name.as_deref()?;
    let instance = owner.name.as_str();
    let is = |suffix: &str| name.strip_suffix(suffix) == Some(instance);
    let bit = match kind {
        Kind::Secret if is("-credentials") => SECRET,
        Kind::Secret if is("-tls") => TLS_SECRET,
        Kind::ConfigMap if is("-config") => CONFIG_MAP,
        Kind::Service if is("-headless") => HEADLESS_SERVICE,
        Kind::Service if name == instance => CLIENT_SERVICE,
        Kind::StatefulSet if name == instance => STATEFUL_SET,
        Kind::PodDisruptionBudget if name == instance => PDB,
        Kind::NetworkPolicy if name == instance => NETWORK_POLICY,
        Kind::ServiceAccount if is("-agent") => AGENT_SERVICE_ACCOUNT,
        Kind::Role if is("-agent") => AGENT_ROLE,
        Kind::RoleBinding if is("-agent") => AGENT_ROLE_BINDING,
        _ => return None,
    };
    Some((owner.uid.clone(), bit))
}

/// The objects an instance needs, as its StatefulSet tells: the core seven,
/// plus the agent's identity when the pod runs as `<name>-agent`, plus the
/// TLS Secret when the pod mounts `<name>-tls`.
pub fn required_by(sts: &StatefulSet) -> u16 {
    let Some(name) = sts.metadata.name.as_deref() else {
        return CORE;
    };
    let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let mut required = CORE;
    if pod.and_then(|p| p.service_account_name.as_deref()) == Some(&format!("{name}-agent")) {
        required |= AGENT;
    }
    let tls = format!("{name}-tls");
    let mounts_tls = pod.and_then(|p| p.volumes.as_ref()).is_some_and(|v| {
        v.iter()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(tls.as_str()))
    });
    if mounts_tls {
        required |= TLS_SECRET;
    }
    required
}

/// The status half of the definition: finalizer set, status written for the
/// current generation, not failed.
pub fn status_settled(pi: &PostgresInstance) -> bool {
    let Some(status) = &pi.status else {
        return false;
    };
    let finalized = pi
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    finalized
        && pi.metadata.generation.is_some()
        && status.observed_generation == pi.metadata.generation
        && status.phase.as_deref().is_some_and(|p| p != "Failed")
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seen: bool,
    settled: bool,
    owned: u16,
    required: u16,
}

impl Default for Entry {
    fn default() -> Self {
        Self {
            seen: false,
            settled: false,
            owned: 0,
            required: CORE,
        }
    }
}

impl Entry {
    fn complete(self) -> bool {
        self.seen && self.settled && self.owned & self.required == self.required
    }
}

/// Counts the instances at steady state as objects appear, change and go,
/// in any order (the watches of different kinds are not ordered).
#[derive(Debug, Default)]
pub struct Tracker {
    entries: HashMap<String, Entry>,
    complete: usize,
}

impl Tracker {
    /// A `PostgresInstance` was added or changed.
    pub fn instance(&mut self, pi: &PostgresInstance) {
        if let Some(uid) = pi.metadata.uid.as_deref() {
            let settled = status_settled(pi);
            self.update(uid, |e| {
                e.seen = true;
                e.settled = settled;
            });
        }
    }

    /// A `PostgresInstance` was deleted.
    pub fn instance_deleted(&mut self, pi: &PostgresInstance) {
        if let Some(uid) = pi.metadata.uid.as_deref() {
            self.update(uid, |e| {
                e.seen = false;
                e.settled = false;
            });
        }
    }

    /// An object of `kind` was added or changed (`present`), or deleted.
    pub fn object(&mut self, kind: Kind, meta: &ObjectMeta, present: bool) {
        if let Some((uid, bit)) = owned(kind, meta) {
            self.update(&uid, |e| {
                if present {
                    e.owned |= bit;
                } else {
                    e.owned &= !bit;
                }
            });
        }
    }

    /// A StatefulSet was added or changed (`present`), or deleted: an owned
    /// object that also tells which other objects its instance needs.
    pub fn stateful_set(&mut self, sts: &StatefulSet, present: bool) {
        if let Some((uid, bit)) = owned(Kind::StatefulSet, &sts.metadata) {
            let required = required_by(sts);
            self.update(&uid, |e| {
                if present {
                    e.owned |= bit;
                    e.required = required;
                } else {
                    e.owned &= !bit;
                }
            });
        }
    }

    /// Instances at steady state.
    pub fn complete(&self) -> usize {
        self.complete
    }

    fn update(&mut self, uid: &str, change: impl FnOnce(&mut Entry)) {
        let entry = self.entries.entry(uid.to_owned()).or_default();
        let before = entry.complete();
        change(entry);
        match (before, entry.complete()) {
            (false, true) => self.complete += 1,
            (true, false) => self.complete -= 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_kube::PostgresInstanceSpec;
    use strata_kube::PostgresInstanceStatus;
    use strata_kube::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn instance(uid: &str, generation: i64, observed: Option<i64>) -> PostgresInstance {
        let mut pi = PostgresInstance::new(
            "orders",
            PostgresInstanceSpec {
                version: "17".into(),
                plan: "small".into(),
                storage_gb: 20,
                acl: Vec::new(),
                image: None,
                storage_class: None,
                external_access: false,
            },
        );
        pi.metadata.uid = Some(uid.into());
        pi.metadata.generation = Some(generation);
        pi.metadata.finalizers = Some(vec![FINALIZER.into()]);
        pi.status = observed.map(|g| PostgresInstanceStatus {
            phase: Some("Provisioning".into()),
            observed_generation: Some(g),
            ..PostgresInstanceStatus::default()
        });
        pi
    }

    fn meta(name: &str, owner: &str, uid: &str, controller: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "strata.dev/v1alpha1".into(),
                kind: "PostgresInstance".into(),
                name: owner.into(),
                uid: uid.into(),
                controller: Some(controller),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    fn all_objects(t: &mut Tracker, uid: &str, except: Option<Kind>) {
        for (kind, name) in [
            (Kind::Secret, "orders-credentials"),
            (Kind::ConfigMap, "orders-config"),
            (Kind::Service, "orders-headless"),
            (Kind::Service, "orders"),
            (Kind::StatefulSet, "orders"),
            (Kind::PodDisruptionBudget, "orders"),
            (Kind::NetworkPolicy, "orders"),
        ] {
            if except != Some(kind) {
                t.object(kind, &meta(name, "orders", uid, true), true);
            }
        }
    }

    #[test]
    fn an_instance_is_steady_with_its_status_and_all_seven_objects_in_any_order() {
        let mut t = Tracker::default();
        all_objects(&mut t, "u1", None);
        assert_eq!(t.complete(), 0, "objects alone are not steady");
        t.instance(&instance("u1", 1, None));
        assert_eq!(t.complete(), 0, "no status yet");
        t.instance(&instance("u1", 1, Some(1)));
        assert_eq!(t.complete(), 1);
        t.instance(&instance("u1", 2, Some(1)));
        assert_eq!(t.complete(), 0, "a new generation is not observed yet");
        t.instance(&instance("u1", 2, Some(2)));
        t.object(Kind::Service, &meta("orders", "orders", "u1", true), false);
        assert_eq!(t.complete(), 0, "a deleted Service breaks it");
        t.object(Kind::Service, &meta("orders", "orders", "u1", true), true);
        assert_eq!(t.complete(), 1);
        t.instance_deleted(&instance("u1", 2, Some(2)));
        assert_eq!(t.complete(), 0);
    }

    #[test]
    fn missing_objects_wrong_names_and_foreign_owners_do_not_count() {
        let mut t = Tracker::default();
        t.instance(&instance("u1", 1, Some(1)));
        all_objects(&mut t, "u1", Some(Kind::NetworkPolicy));
        assert_eq!(t.complete(), 0, "six of seven");
        t.object(
            Kind::NetworkPolicy,
            &meta("orders-x", "orders", "u1", true),
            true,
        );
        t.object(
            Kind::NetworkPolicy,
            &meta("orders", "orders", "u1", false),
            true,
        );
        t.object(
            Kind::NetworkPolicy,
            &meta("orders", "orders", "u2", true),
            true,
        );
        assert_eq!(t.complete(), 0);
        t.object(
            Kind::NetworkPolicy,
            &meta("orders", "orders", "u1", true),
            true,
        );
        assert_eq!(t.complete(), 1);
    }

    #[test]
    fn a_pod_that_runs_as_the_agent_and_mounts_tls_needs_those_objects() {
        let mut sts = StatefulSet {
            metadata: meta("orders", "orders", "u1", true),
            ..StatefulSet::default()
        };
        assert_eq!(required_by(&sts), CORE);
        sts.spec = Some(
            serde_json::from_value(serde_json::json!({
                "selector": {},
                "serviceName": "orders-headless",
                "template": { "spec": {
                    "serviceAccountName": "orders-agent",
                    "containers": [],
                    "volumes": [{ "name": "tls", "secret": { "secretName": "orders-tls" } }]
                } }
            }))
            .unwrap_or_default(),
        );
        assert_eq!(required_by(&sts), CORE | AGENT | TLS_SECRET);

        let mut t = Tracker::default();
        t.instance(&instance("u1", 1, Some(1)));
        all_objects(&mut t, "u1", None);
        t.stateful_set(&sts, true);
        assert_eq!(t.complete(), 0, "agent identity and TLS Secret missing");
        for (kind, name) in [
            (Kind::ServiceAccount, "orders-agent"),
            (Kind::Role, "orders-agent"),
            (Kind::RoleBinding, "orders-agent"),
        ] {
            t.object(kind, &meta(name, "orders", "u1", true), true);
        }
        assert_eq!(t.complete(), 0, "TLS Secret missing");
        t.object(
            Kind::Secret,
            &meta("orders-tls", "orders", "u1", true),
            true,
        );
        assert_eq!(t.complete(), 1);
    }

    #[test]
    fn a_failed_or_unfinalized_status_is_not_steady() {
        let mut failed = instance("u1", 1, Some(1));
        if let Some(s) = failed.status.as_mut() {
            s.phase = Some("Failed".into());
        }
        assert!(!status_settled(&failed));
        let mut bare = instance("u1", 1, Some(1));
        bare.metadata.finalizers = None;
        assert!(!status_settled(&bare));
        assert!(status_settled(&instance("u1", 1, Some(1))));
    }
}
