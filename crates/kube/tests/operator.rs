//! The operator against a real kube-apiserver (testenv). No kubelet, scheduler
//! or garbage collector runs there: StatefulSet readiness is simulated by
//! patching its status, and deletion checks what the operator itself does.

// Helpers outside #[test] functions panic on purpose too: a failed step
// fails the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, RunningOperator, eventually, spec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use strata_core::events::NewServiceEvent;
use strata_core::{EventKind, Phase};
use strata_kube::crd::{FINALIZER, ROTATE_ANNOTATION};
use strata_kube::{PostgresInstance, ServiceEventSink};
use strata_testenv::mark_statefulset_ready;

#[derive(Default)]
struct CollectingSink(Mutex<Vec<(String, String, NewServiceEvent)>>);

#[async_trait::async_trait]
impl ServiceEventSink for CollectingSink {
    async fn record(&self, instance: &strata_core::Instance, event: NewServiceEvent) {
        self.0
            .lock()
            .unwrap()
            .push((instance.project.clone(), instance.name.clone(), event));
    }
}

async fn get<K>(h: &Harness, name: &str) -> Option<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    h.api::<K>().get_opt(name).await.expect("get")
}

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "PostgresInstance" && o.controller == Some(true))
}

async fn wait_phase(h: &Harness, name: &str, phase: &str) -> PostgresInstance {
    eventually(&format!("{name} to reach phase {phase}"), || async {
        let i = get::<PostgresInstance>(h, name).await?;
        (i.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(i)
    })
    .await
}

async fn mark_ready(h: &Harness, name: &str) {
    mark_statefulset_ready(&h.client, &h.ns, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_builds_every_owned_object_with_an_owner_reference() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let created = h.create("orders", spec()).await;
    let uid = created.uid().unwrap();

    let sts: StatefulSet = eventually("the StatefulSet", || get(&h, "orders")).await;
    let secret: Secret = eventually("the Secret", || get(&h, "orders-credentials")).await;
    let cm: ConfigMap = eventually("the ConfigMap", || get(&h, "orders-config")).await;
    let headless: Service = eventually("the headless Service", || get(&h, "orders-headless")).await;
    let client: Service = eventually("the client Service", || get(&h, "orders")).await;
    let pdb: PodDisruptionBudget = eventually("the PDB", || get(&h, "orders")).await;
    let np: NetworkPolicy = eventually("the NetworkPolicy", || get(&h, "orders")).await;
    let tls: Secret = eventually("the TLS Secret", || get(&h, "orders-tls")).await;
    let agent: ServiceAccount =
        eventually("the agent's ServiceAccount", || get(&h, "orders-agent")).await;
    let role: Role = eventually("the agent's Role", || get(&h, "orders-agent")).await;
    let binding: RoleBinding =
        eventually("the agent's RoleBinding", || get(&h, "orders-agent")).await;

    for meta in [
        &sts.metadata,
        &secret.metadata,
        &tls.metadata,
        &agent.metadata,
        &role.metadata,
        &binding.metadata,
        &cm.metadata,
        &headless.metadata,
        &client.metadata,
        &pdb.metadata,
        &np.metadata,
    ] {
        assert!(
            owned_by(meta, &uid),
            "{:?} lacks the owner reference",
            meta.name
        );
        assert_eq!(
            meta.labels.as_ref().unwrap()["strata.dev/instance"],
            "orders"
        );
    }
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("postgres:16"));
    assert_eq!(pod.containers[1].name, "exporter");
    assert_eq!(pod.containers[2].name, "credentials-agent");
    let password = &secret.data.as_ref().unwrap()["password"].0;
    assert_eq!(password.len(), 32);
    assert!(cm.data.as_ref().unwrap()["pg_hba.conf"].contains("hostssl all all 10.0.0.0/8"));
    assert_eq!(
        headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );
    assert_eq!(
        client.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        5432
    );

    let i = wait_phase(&h, "orders", "Provisioning").await;
    assert!(i.finalizers().contains(&FINALIZER.to_owned()));
    let status = i.status.unwrap();
    assert_eq!(status.observed_generation, i.metadata.generation);
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.status, "True");
    assert!(!progressing.last_transition_time.is_empty());

    // Events for the steps, attached to the instance.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "team-a");
    let reasons: Vec<String> = eventually("events for the instance", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str()))
            .filter_map(|e| e.reason)
            .collect();
        (reasons.len() >= 3).then_some(reasons)
    })
    .await;
    for expected in ["CredentialsCreated", "Applied", "Provisioning"] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_statefulset_makes_the_instance_ready_with_an_endpoint() {
    let h = Harness::new().await;
    let sink = Arc::new(CollectingSink::default());
    let op = RunningOperator::start_with(&h.client, "op-a", |c| {
        c.service_events = Some(sink.clone());
    });
    h.create("orders", spec()).await;
    let _: StatefulSet = eventually("the StatefulSet", || get(&h, "orders")).await;
    wait_phase(&h, "orders", "Provisioning").await;
    mark_ready(&h, "orders").await;
    let i = wait_phase(&h, "orders", "Ready").await;
    let status = i.status.unwrap();
    let endpoint = status.endpoint.unwrap();
    assert_eq!(endpoint.host, "orders.team-a.svc.cluster.local");
    assert_eq!(endpoint.port, 5432);
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "False");

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &op.registry).unwrap();
    assert!(
        text.contains("strata_operator_instances{phase=\"Ready\"} 1"),
        "{text}"
    );

    // Service events for the Strata store, with the API's view of the
    // instance. The status is written before the event is recorded: wait.
    let recorded = eventually("the Ready phase change in the service events", || async {
        let recorded = sink.0.lock().unwrap().clone();
        recorded
            .iter()
            .any(|(_, _, e)| e.to == Some(Phase::Ready))
            .then_some(recorded)
    })
    .await;
    let phases: Vec<_> = recorded
        .iter()
        .filter(|(_, _, e)| e.kind == EventKind::PhaseChanged)
        .map(|(_, _, e)| (e.from, e.to))
        .collect();
    assert_eq!(
        phases,
        [
            (None, Some(Phase::Provisioning)),
            (Some(Phase::Provisioning), Some(Phase::Ready))
        ],
        "{recorded:?}"
    );
    assert!(
        recorded
            .iter()
            .all(|(project, name, _)| project == "team-a" && name == "orders")
    );
    assert!(
        recorded
            .iter()
            .any(|(_, _, e)| e.kind == EventKind::ProvisioningStep)
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_storage_acl_and_rotation_changes_reach_the_objects() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    h.create("orders", spec()).await;
    let first = wait_phase(&h, "orders", "Provisioning").await;
    let generation = first.metadata.generation.unwrap();
    let secret: Secret = eventually("the Secret", || get(&h, "orders-credentials")).await;
    let old_password = secret.data.unwrap()["password"].clone();

    h.api::<PostgresInstance>()
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "annotations": { ROTATE_ANNOTATION: "r1" } },
                "spec": { "plan": "medium", "storageGb": 50, "acl": ["192.0.2.0/24", "10.1.0.0/16"] }
            })),
        )
        .await
        .expect("patch spec");

    let cm: ConfigMap = eventually("the ConfigMap to follow the plan", || async {
        let cm: ConfigMap = get(&h, "orders-config").await?;
        cm.data.as_ref()?["postgresql.conf"]
            .contains("max_connections = '200'")
            .then_some(cm)
    })
    .await;
    let hba = &cm.data.as_ref().unwrap()["pg_hba.conf"];
    assert!(
        hba.contains("192.0.2.0/24") && hba.contains("10.1.0.0/16") && !hba.contains("10.0.0.0/8")
    );

    let sts: StatefulSet = eventually("the StatefulSet to follow plan and storage", || async {
        let sts: StatefulSet = get(&h, "orders").await?;
        (sts.annotations()
            .get("strata.dev/storage-gb")
            .map(String::as_str)
            == Some("50"))
        .then_some(sts)
    })
    .await;
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let limits = pod.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap();
    assert_eq!(
        limits["memory"].0, "4Gi",
        "4096Mi as the apiserver normalises it"
    );
    assert_eq!(limits["cpu"].0, "2");

    let np: NetworkPolicy = eventually("the NetworkPolicy to follow the ACL", || async {
        let np: NetworkPolicy = get(&h, "orders").await?;
        let from = np.spec.as_ref()?.ingress.as_ref()?.first()?.from.clone()?;
        (from.len() == 2).then_some(np)
    })
    .await;
    let cidrs: Vec<String> = np.spec.unwrap().ingress.unwrap()[0]
        .from
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| p.ip_block.unwrap().cidr)
        .collect();
    assert_eq!(cidrs, ["10.1.0.0/16", "192.0.2.0/24"]);

    let i = eventually("observedGeneration to advance", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        (i.status.as_ref()?.observed_generation? > generation).then_some(i)
    })
    .await;
    assert_eq!(i.status.unwrap().observed_generation, i.metadata.generation);

    let secret: Secret = get(&h, "orders-credentials").await.unwrap();
    assert_ne!(
        secret.data.unwrap()["password"],
        old_password,
        "rotation must change the password"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_by_the_crd_schema() {
    let h = Harness::new().await;
    let api = h.api::<PostgresInstance>();
    let reject = |name: &str, patch: serde_json::Value| {
        let mut value = json!({
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "PostgresInstance",
            "metadata": { "name": name },
            "spec": { "version": "16", "plan": "small", "storageGb": 20, "acl": ["10.0.0.0/8"] }
        });
        for (k, v) in patch.as_object().unwrap() {
            value["spec"][k] = v.clone();
        }
        let api = api.clone();
        let name = name.to_owned();
        async move {
            let obj: PostgresInstance = serde_json::from_value(value).unwrap();
            match api.create(&PostParams::default(), &obj).await {
                Err(kube::Error::Api(e)) => {
                    assert_eq!(e.code, 422, "{name}: {e:?}");
                    e.message
                }
                other => panic!("{name} was not rejected: {other:?}"),
            }
        }
    };
    reject("v9", json!({ "version": "9" })).await;
    reject("huge", json!({ "plan": "huge" })).await;
    reject("too-big", json!({ "storageGb": 5000 })).await;
    let m = reject("small-plan", json!({ "plan": "small", "storageGb": 2 })).await;
    assert!(
        m.contains("plan small needs storageGb between 5 and 100"),
        "{m}"
    );
    reject("not-a-cidr", json!({ "acl": ["nope"] })).await;
    let m = reject("host-bits", json!({ "acl": ["10.0.0.1/8"] })).await;
    assert!(m.contains("without host bits"), "{m}");
    let m = reject("open-nobody", json!({ "acl": [], "externalAccess": true })).await;
    assert!(
        m.contains("spec.externalAccess") && m.contains("at least one acl entry"),
        "{m}"
    );
    let m = reject(&"a".repeat(41), json!({})).await;
    assert!(m.contains("at most 40 characters"), "{m}");

    // Updates: storage cannot shrink, version cannot change.
    h.create("orders", common::spec()).await;
    for (patch, message) in [
        (
            json!({ "spec": { "storageGb": 10 } }),
            "storageGb can only grow",
        ),
        (
            json!({ "spec": { "version": "17" } }),
            "version cannot be changed",
        ),
    ] {
        let err = api
            .patch("orders", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
    // The example manifest is accepted as it is.
    let example: serde_yaml::Value = serde_yaml::from_str(include_str!(
        "../../../deploy/examples/postgresinstance.yaml"
    ))
    .unwrap();
    let example: PostgresInstance = serde_yaml::from_value(example).unwrap();
    assert_eq!(example.namespace().as_deref(), Some("default"));
    Api::<PostgresInstance>::namespaced(h.client.clone(), "default")
        .create(&PostParams::default(), &example)
        .await
        .expect("example accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_class_cannot_change() {
    let h = Harness::new().await;
    let api = h.api::<PostgresInstance>();
    h.create("orders", common::spec()).await;
    // The data volume's class is fixed at creation: changing, removing or
    // adding one is refused, naming the field (the StatefulSet's claim
    // template could never follow).
    let mut with_class = common::spec();
    with_class.storage_class = Some("fast".into());
    h.create("classy", with_class).await;
    for (name, patch) in [
        ("classy", json!({ "spec": { "storageClass": "slow" } })),
        ("classy", json!({ "spec": { "storageClass": null } })),
        ("orders", json!({ "spec": { "storageClass": "fast" } })),
    ] {
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{patch}: {e:?}");
                assert!(
                    e.message.contains("spec.storageClass")
                        && e.message.contains("cannot be changed after creation"),
                    "{patch}: {}",
                    e.message
                );
            }
            other => panic!("{patch} was accepted: {other:?}"),
        }
    }
    // Other changes of such an instance still pass the rule.
    api.patch(
        "classy",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "storageGb": 30 } })),
    )
    .await
    .expect("a storage change keeps the class");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_deleted_service_and_hand_edited_fields_are_restored() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    h.create("orders", spec()).await;
    let before: Service = eventually("the client Service", || get(&h, "orders")).await;
    let _: StatefulSet = eventually("the StatefulSet", || get(&h, "orders")).await;
    // The echoes of the operator's own writes wake the instance, and find it
    // as the pass left it: nothing is applied again. What follows shows
    // that a change by someone else still is.
    eventually("a reconcile that found nothing to do", || async {
        (op.metrics.reconcile_skipped.get() >= 1).then_some(())
    })
    .await;

    h.api::<Service>()
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete Service");
    let _: Service = eventually("the Service to come back", || async {
        let s: Service = get(&h, "orders").await?;
        (s.uid() != before.uid()).then_some(s)
    })
    .await;

    // Someone edits operator-owned fields with another field manager.
    h.api::<StatefulSet>()
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json!([
                { "op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:latest" }
            ])).unwrap()),
        )
        .await
        .expect("edit StatefulSet");
    h.api::<ConfigMap>()
        .patch(
            "orders-config",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "pg_hba.conf": "host all all 0.0.0.0/0 trust\n" } })),
        )
        .await
        .expect("edit ConfigMap");
    let _: StatefulSet = eventually("the image to be put back", || async {
        let sts: StatefulSet = get(&h, "orders").await?;
        let image = sts.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .clone()?;
        (image == "postgres:16").then_some(sts)
    })
    .await;
    let _: ConfigMap = eventually("pg_hba.conf to be put back", || async {
        let cm: ConfigMap = get(&h, "orders-config").await?;
        (!cm.data.as_ref()?["pg_hba.conf"].contains("trust\n0")
            && cm.data.as_ref()?["pg_hba.conf"].contains("10.0.0.0/8"))
        .then_some(cm)
    })
    .await;

    // The credentials agent's Role is watched too: deleted, it comes back.
    let role: Role = eventually("the agent's Role", || get(&h, "orders-agent")).await;
    h.api::<Role>()
        .delete("orders-agent", &DeleteParams::default())
        .await
        .expect("delete Role");
    let _: Role = eventually("the agent's Role to come back", || async {
        let r: Role = get(&h, "orders-agent").await?;
        (r.uid() != role.uid()).then_some(r)
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_runs_the_finalizer_and_removes_the_objects() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    h.create("orders", spec()).await;
    let i = wait_phase(&h, "orders", "Provisioning").await;
    assert!(i.finalizers().contains(&FINALIZER.to_owned()));
    let _: NetworkPolicy = eventually("the NetworkPolicy", || get(&h, "orders")).await;

    h.api::<PostgresInstance>()
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the instance to be gone", || async {
        get::<PostgresInstance>(&h, "orders")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // testenv runs no garbage collector: these are gone because the
    // finalizer deleted them.
    assert!(get::<StatefulSet>(&h, "orders").await.is_none());
    assert!(get::<Service>(&h, "orders").await.is_none());
    assert!(get::<Service>(&h, "orders-headless").await.is_none());
    assert!(get::<ConfigMap>(&h, "orders-config").await.is_none());
    assert!(get::<Secret>(&h, "orders-credentials").await.is_none());
    assert!(get::<PodDisruptionBudget>(&h, "orders").await.is_none());
    assert!(get::<NetworkPolicy>(&h, "orders").await.is_none());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_the_other_takes_over() {
    let h = Harness::new().await;
    let a = RunningOperator::start(&h.client, "op-a");
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), "default");
    let holder = eventually("a lease holder", || async {
        leases
            .get_opt("strata-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    })
    .await;
    assert_eq!(holder, "op-a");
    let b = RunningOperator::start(&h.client, "op-b");

    h.create("first", spec()).await;
    wait_phase(&h, "first", "Provisioning").await;
    assert!(a.reconciles() > 0);
    assert_eq!(b.reconciles(), 0, "the standby must not reconcile");

    a.stop().await;
    let holder = eventually("op-b to take the lease", || async {
        leases
            .get_opt("strata-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| h == "op-b")
    })
    .await;
    assert_eq!(holder, "op-b");
    h.create("second", spec()).await;
    wait_phase(&h, "second", "Provisioning").await;
    assert!(b.reconciles() > 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_with_only_the_rbac_manifest() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

    let h = Harness::new().await;
    let user = h.env.vars["STRATA_TESTENV_USER"].clone();
    let docs: Vec<serde_json::Value> =
        serde_yaml::Deserializer::from_str(include_str!("../../../deploy/rbac/operator.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in deploy/rbac/operator.yaml"))
    };
    let pp = PostParams::default();
    let cluster_role: ClusterRole = serde_json::from_value(of_kind("ClusterRole")).unwrap();
    Api::<ClusterRole>::all(h.client.clone())
        .create(&pp, &cluster_role)
        .await
        .unwrap();
    let mut role: Role = serde_json::from_value(of_kind("Role")).unwrap();
    role.metadata.namespace = Some("default".into());
    Api::<Role>::namespaced(h.client.clone(), "default")
        .create(&pp, &role)
        .await
        .unwrap();
    // Bind the manifest's roles to testenv's unprivileged user instead of the
    // service account (there are no pods to carry its token).
    let subject =
        json!([{ "kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io" }]);
    let mut crb = of_kind("ClusterRoleBinding");
    crb["subjects"] = subject.clone();
    let crb: ClusterRoleBinding = serde_json::from_value(crb).unwrap();
    Api::<ClusterRoleBinding>::all(h.client.clone())
        .create(&pp, &crb)
        .await
        .unwrap();
    let mut rb = of_kind("RoleBinding");
    rb["subjects"] = subject;
    rb["metadata"]["namespace"] = json!("default");
    let rb: RoleBinding = serde_json::from_value(rb).unwrap();
    Api::<RoleBinding>::namespaced(h.client.clone(), "default")
        .create(&pp, &rb)
        .await
        .unwrap();

    let user_client = h.env.user_client().await;
    // RBAC bindings reach the authorizer through an informer: wait until
    // they are in effect before the operator starts.
    let probe = Api::<Lease>::namespaced(user_client.clone(), "default");
    let instances = Api::<PostgresInstance>::all(user_client.clone());
    eventually("the RBAC grants to take effect", || async {
        (probe.list(&ListParams::default()).await.is_ok()
            && instances.list(&ListParams::default()).await.is_ok())
        .then_some(())
    })
    .await;
    assert!(
        Api::<Secret>::namespaced(user_client.clone(), "kube-system")
            .get_opt("anything")
            .await
            .is_ok(),
        "the user can read secrets through the ClusterRole"
    );
    let op = RunningOperator::start(&user_client, "op-rbac");
    h.create("orders", spec()).await;
    let _: NetworkPolicy = eventually("the NetworkPolicy", || get(&h, "orders")).await;
    wait_phase(&h, "orders", "Provisioning").await;
    mark_ready(&h, "orders").await;
    wait_phase(&h, "orders", "Ready").await;
    h.api::<PostgresInstance>()
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the instance to be gone", || async {
        get::<PostgresInstance>(&h, "orders")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(get::<Secret>(&h, "orders-credentials").await.is_none());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &op.registry).unwrap();
    assert!(
        !text.contains("reason=\"forbidden\""),
        "no reconcile may fail for lack of permissions:\n{text}"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_committed_files_and_prints_the_columns() {
    let env = common::TestEnv::start();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new(
            std::path::Path::new(&env.vars["STRATA_TESTENV_BIN_DIR"]).join("kubectl"),
        )
        .env("KUBECONFIG", &env.vars["KUBECONFIG"])
        .args(args)
        .output()
        .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let crd = root.join("deploy/crds/postgresinstances.strata.dev.yaml");
    let example = root.join("deploy/examples/postgresinstance.yaml");
    kubectl(&["apply", "-f", crd.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/postgresinstances.strata.dev",
    ]);
    kubectl(&["apply", "-f", example.to_str().unwrap()]);
    let table = kubectl(&["get", "pgi", "-A"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "VERSION",
            "PLAN",
            "STORAGE",
            "ENDPOINT",
            "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["default", "orders"]);
    assert!(
        row.contains(&"small") && row.contains(&"20") && row.contains(&"17"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_storage_grows_the_bound_data_claim() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use k8s_openapi::api::storage::v1::StorageClass;

    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": { "name": "expandable" },
        "provisioner": "example.com/none",
        "allowVolumeExpansion": true
    }))
    .unwrap();
    Api::<StorageClass>::all(h.client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let mut s = spec();
    s.storage_class = Some("expandable".into());
    h.create("orders", s).await;
    wait_phase(&h, "orders", "Provisioning").await;

    // What the StatefulSet controller and a provisioner would do: a claim
    // from the template, bound at the requested size.
    let claims = h.api::<PersistentVolumeClaim>();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "data-orders-0", "labels": {
            "strata.dev/instance": "orders",
            "app.kubernetes.io/managed-by": "strata-operator",
        } },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "expandable",
            "resources": { "requests": { "storage": "20Gi" } }
        }
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    claims
        .patch_status(
            "data-orders-0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "status": { "phase": "Bound", "capacity": { "storage": "20Gi" } } }),
            ),
        )
        .await
        .unwrap();

    h.api::<PostgresInstance>()
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "storageGb": 50 } })),
        )
        .await
        .unwrap();
    eventually("the claim to grow to 50Gi", || async {
        let c = claims.get("data-orders-0").await.ok()?;
        let size = c.spec?.resources?.requests?.get("storage")?.0.clone();
        (size == "50Gi").then_some(())
    })
    .await;
    let resizing = eventually("StorageResized=False (Resizing)", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        condition(&i, "StorageResized").filter(|c| c.reason == "Resizing")
    })
    .await;
    assert_eq!(resizing.status, "False");
    // What the resizer reports when it is done: the status follows.
    claims
        .patch_status(
            "data-orders-0",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "capacity": { "storage": "50Gi" } } })),
        )
        .await
        .unwrap();
    eventually("StorageResized=True", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        (condition(&i, "StorageResized")?.status == "True").then_some(())
    })
    .await;
    assert_eq!(
        op.metrics
            .reconcile_failures
            .get_or_create(&strata_kube::metrics::ReasonLabels {
                reason: "api_error".into()
            })
            .get(),
        0
    );
    op.stop().await;
}

fn condition(i: &PostgresInstance, kind: &str) -> Option<strata_kube::crd::StatusCondition> {
    i.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .cloned()
}

/// Wakes the instance for a full pass without changing its spec.
async fn touch(h: &Harness, name: &str, value: &str) {
    h.api::<PostgresInstance>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": value } } })),
        )
        .await
        .expect("label the instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_apply_errors_keep_a_serving_instance_ready_and_are_retried() {
    use std::sync::atomic::{AtomicU16, Ordering};

    let h = Harness::new().await;
    // The operator's StatefulSet applies get the injected status code.
    let inject = Arc::new(AtomicU16::new(0));
    let client = {
        let inject = Arc::clone(&inject);
        common::faulty_client(h.client.clone(), move |request| {
            let code = inject.load(Ordering::SeqCst);
            (code != 0
                && request.method() == http::Method::PATCH
                && request.uri().path().contains("/statefulsets/"))
            .then_some(code)
        })
    };
    // Backoff as in production, but capped low enough for a test's deadline.
    let op = RunningOperator::start_with(&client, "op-a", |c| {
        c.max_backoff = std::time::Duration::from_secs(2);
    });
    let uid = h.create("orders", spec()).await.uid().unwrap();
    wait_phase(&h, "orders", "Provisioning").await;
    mark_ready(&h, "orders").await;
    let ready = wait_phase(&h, "orders", "Ready").await;
    let endpoint = ready.status.unwrap().endpoint.unwrap();

    for (code, reason) in [
        (503, "ServerError"),
        (429, "TooManyRequests"),
        (409, "Conflict"),
    ] {
        inject.store(code, Ordering::SeqCst);
        touch(&h, "orders", &code.to_string()).await;
        let i = eventually(&format!("Reconciled=False ({reason})"), || async {
            let i = get::<PostgresInstance>(&h, "orders").await?;
            let c = condition(&i, "Reconciled")?;
            (c.status == "False" && c.reason == reason).then_some(i)
        })
        .await;
        let status = i.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Ready"), "{status:?}");
        assert_eq!(status.endpoint.as_ref(), Some(&endpoint));
        assert_eq!(condition(&i, "Ready").unwrap().status, "True");
    }
    // Retried with backoff, not given up.
    let failures = |reason: &str| {
        op.metrics
            .reconcile_failures
            .get_or_create(&strata_kube::metrics::ReasonLabels {
                reason: reason.into(),
            })
            .get()
    };
    let before = failures("conflict");
    eventually("another attempt after the conflict", || async {
        (failures("conflict") > before).then_some(())
    })
    .await;

    // The error passes: the next attempt applies.
    inject.store(0, Ordering::SeqCst);
    eventually("Reconciled=True again", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        (condition(&i, "Reconciled")?.status == "True").then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(h.client.clone(), "team-a");
    let reasons = |list: Vec<Event>| -> Vec<String> {
        list.into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str()))
            .filter_map(|e| e.reason)
            .collect()
    };
    let seen = reasons(events.list(&ListParams::default()).await.unwrap().items);
    assert!(
        seen.iter().any(|r| r == "ServerError") && seen.iter().any(|r| r == "Reconciled"),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|r| r == "Failed"),
        "a transient error must not fail a serving instance: {seen:?}"
    );

    // The API server refusing the objects is another matter: Failed.
    inject.store(422, Ordering::SeqCst);
    touch(&h, "orders", "422").await;
    let failed = wait_phase(&h, "orders", "Failed").await;
    assert_eq!(
        condition(&failed, "Reconciled").unwrap().reason,
        "InvalidObject"
    );
    // The status is applied as a whole: the endpoint is gone with Ready.
    assert_eq!(failed.status.unwrap().endpoint, None);
    inject.store(0, Ordering::SeqCst);
    op.stop().await;
}

/// What the StatefulSet controller would create: the instance's pod, with
/// the template's labels (testenv runs no controllers and no kubelet).
async fn create_pod(h: &Harness, instance: &str) {
    use k8s_openapi::api::core::v1::Pod;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": format!("{instance}-0"),
            "labels": {
                "app.kubernetes.io/name": "postgresql",
                "app.kubernetes.io/instance": instance,
                "app.kubernetes.io/managed-by": "strata-operator",
                "strata.dev/instance": instance,
            },
        },
        "spec": { "containers": [{ "name": "postgres", "image": "registry.example/pg:99" }] },
    }))
    .unwrap();
    h.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create the pod");
}

/// What the kubelet would report: the postgres container waiting.
async fn report_waiting(h: &Harness, pod: &str, reason: &str, message: &str) {
    use k8s_openapi::api::core::v1::Pod;
    h.api::<Pod>()
        .patch_status(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "phase": "Pending",
                "conditions": [
                    { "type": "PodScheduled", "status": "True" },
                    { "type": "Ready", "status": "False" },
                ],
                "containerStatuses": [{
                    "name": "postgres", "image": "registry.example/pg:99", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": { "waiting": { "reason": reason, "message": message } },
                }],
            } })),
        )
        .await
        .expect("patch the pod's status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_says_why_the_pod_is_not_ready() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let uid = h.create("orders", spec()).await.uid().unwrap();
    wait_phase(&h, "orders", "Provisioning").await;
    // The pass that found nothing to do: the fast path is still taken.
    eventually("a reconcile that found nothing to do", || async {
        (op.metrics.reconcile_skipped.get() >= 1).then_some(())
    })
    .await;

    create_pod(&h, "orders").await;
    let pulling = "Back-off pulling image \"registry.example/pg:99\"";
    report_waiting(&h, "orders-0", "ImagePullBackOff", pulling).await;
    let i = eventually("Ready=False with the kubelet's reason", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        (condition(&i, "Ready")?.reason == "ImagePullBackOff").then_some(i)
    })
    .await;
    let ready = condition(&i, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(pulling), "{}", ready.message);
    let degraded = condition(&i, "Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ImagePullBackOff")
    );
    let status = i.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Provisioning"));
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("ImagePullBackOff"),
        "{status:?}"
    );

    // A Warning Event says it too.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "team-a");
    let event = eventually("an ImagePullBackOff Event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str())
                    && e.reason.as_deref() == Some("ImagePullBackOff")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.note.unwrap().contains(pulling));

    // The next report of the kubelet wakes a full pass as well.
    report_waiting(
        &h,
        "orders-0",
        "CrashLoopBackOff",
        "back-off 10s restarting failed container",
    )
    .await;
    eventually("Ready=False with the new reason", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        (condition(&i, "Ready")?.reason == "CrashLoopBackOff").then_some(())
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_cannot_grow_says_why() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use k8s_openapi::api::storage::v1::StorageClass;

    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": { "name": "fixed" },
        "provisioner": "example.com/none",
    }))
    .unwrap();
    Api::<StorageClass>::all(h.client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let mut s = spec();
    s.storage_class = Some("fixed".into());
    let uid = h.create("orders", s).await.uid().unwrap();
    wait_phase(&h, "orders", "Provisioning").await;
    let claims = h.api::<PersistentVolumeClaim>();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "data-orders-0", "labels": {
            "strata.dev/instance": "orders",
            "app.kubernetes.io/managed-by": "strata-operator",
        } },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "fixed",
            "resources": { "requests": { "storage": "20Gi" } }
        }
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    claims
        .patch_status(
            "data-orders-0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "status": { "phase": "Bound", "capacity": { "storage": "20Gi" } } }),
            ),
        )
        .await
        .unwrap();

    h.api::<PostgresInstance>()
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "storageGb": 50 } })),
        )
        .await
        .unwrap();
    let resized = eventually("StorageResized=False (ExpansionNotSupported)", || async {
        let i = get::<PostgresInstance>(&h, "orders").await?;
        condition(&i, "StorageResized").filter(|c| c.reason == "ExpansionNotSupported")
    })
    .await;
    assert_eq!(resized.status, "False");
    assert!(resized.message.contains("fixed"), "{}", resized.message);
    let events: Api<Event> = Api::namespaced(h.client.clone(), "team-a");
    let event = eventually("an ExpansionNotSupported Event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str())
                    && e.reason.as_deref() == Some("ExpansionNotSupported")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // The claim is left alone, and the pass did not fail for it.
    let c = claims.get("data-orders-0").await.unwrap();
    assert_eq!(
        c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "20Gi"
    );
    let i = get::<PostgresInstance>(&h, "orders").await.unwrap();
    assert_eq!(condition(&i, "Reconciled").unwrap().status, "True");
    op.stop().await;
}
