//! `deploy/rbac/api.yaml` against a real kube-apiserver: the Kubernetes
//! runtime, authenticated as the `strata-api` service account and nothing
//! else, runs the API's whole flow; what lies outside its grants is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use common::{Harness, RunningOperator, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use strata_core::{
    CreateInstance, InstanceName, InstanceRuntime, PageRequest, Phase, ProjectName, RuntimeError,
    UpdateInstance,
};
use strata_kube::{KubeRuntime, PostgresInstance};
use strata_testenv::{mark_statefulset_ready, play_credentials_agent};

const MANIFEST: &str = include_str!("../../../deploy/rbac/api.yaml");
const SERVICE_ACCOUNT: &str = "system:serviceaccount:strata-system:strata-api";

/// Creates the manifest's objects as they are (the ServiceAccount in
/// `strata-system`).
async fn install_manifest(admin: &Client) {
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(MANIFEST)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in deploy/rbac/api.yaml"))
    };
    assert_eq!(
        docs.len(),
        3,
        "ServiceAccount, ClusterRole, ClusterRoleBinding"
    );
    common::create_namespace(admin, "strata-system").await;
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(of_kind("ServiceAccount")).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), "strata-system")
        .create(&pp, &sa)
        .await
        .unwrap();
    let role: ClusterRole = serde_json::from_value(of_kind("ClusterRole")).unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding =
        serde_json::from_value(of_kind("ClusterRoleBinding")).unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
}

/// A client that the API server authorises as the service account: testenv's
/// admin impersonates it (no pod exists to carry its token).
async fn service_account_client(kubeconfig: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.into());
    Client::try_from(config).unwrap()
}

fn is_forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_with_only_its_rbac_manifest() {
    let h = Harness::new().await;
    install_manifest(&h.client).await;
    let sa = service_account_client(&h.env.vars["KUBECONFIG"]).await;
    // Bindings reach the authorizer through an informer: wait until they apply.
    let instances = Api::<PostgresInstance>::all(sa.clone());
    eventually("the API's grants to take effect", || async {
        instances.list(&ListParams::default()).await.ok()
    })
    .await;

    // The service account may not read or list Secrets of its own: the
    // impersonation is real, not the admin in disguise.
    let secrets_of_team_a = Api::<Secret>::namespaced(sa.clone(), "team-a");
    assert!(is_forbidden(
        secrets_of_team_a.list(&ListParams::default()).await
    ));

    // The operator runs with its own (admin) client and grants the API's
    // service account access to each instance's two Secrets; the API's
    // runtime runs with the service account's client.
    let op = RunningOperator::start_with(&h.client, "op-api-rbac", |config| {
        config.build.api_service_account = Some("strata-system/strata-api".parse().unwrap());
    });
    let rt = KubeRuntime::new(sa.clone(), "strata-");
    let project = ProjectName::parse("shop").unwrap();
    let name = InstanceName::parse("orders").unwrap();
    let spec = common::orders_request(&rt);

    // create: namespace (create), instance (create), read back (get).
    let created = rt.create(&project, spec.clone()).await.unwrap();
    assert_eq!(created.status.phase, Phase::Provisioning);
    // A second instance in the same project finds the namespace (create → 409 → get).
    let second = CreateInstance {
        name: "billing".into(),
        ..CreateInstance::default()
    }
    .validate(rt.plans(), rt.versions())
    .unwrap();
    rt.create(&project, second).await.unwrap();
    // A duplicate is a conflict, not a permission error.
    assert!(matches!(
        rt.create(&project, spec).await,
        Err(RuntimeError::Conflict(_))
    ));

    // The operator provisions; "a kubelet" (the admin) marks it ready.
    mark_statefulset_ready(&h.client, "strata-shop", "orders").await;
    let ready = eventually("Ready through the runtime", || async {
        let i = rt.get(&project, &name).await.ok()?;
        (i.status.phase == Phase::Ready).then_some(i)
    })
    .await;
    assert!(ready.status.endpoint.is_some());

    // list (label selector, paged).
    let page = rt
        .list(
            &project,
            &[("team".into(), "checkout".into())],
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        rt.list(&project, &[], PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    // credentials (get Secret), rotation (patch + get Secret).
    let _agent = play_credentials_agent(&h.client, "strata-shop", "orders");
    let creds = rt.credentials(&project, &name).await.unwrap();
    assert_eq!(creds.password.expose().len(), 32);
    let rotated = rt.rotate_credentials(&project, &name).await.unwrap();
    assert_ne!(rotated.password.expose(), creds.password.expose());

    // update (patch).
    let updated = rt
        .update(
            &project,
            &name,
            UpdateInstance {
                plan: Some("medium".into()),
                ..UpdateInstance::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.plan, "medium");

    // events (list Events).
    let events = rt.events(&project, &name, None, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.to == Some(Phase::Ready)),
        "{events:?}"
    );

    // Outside the grants: the service account cannot read any other Secret
    // (not the installation's CA key), enumerate or write Secrets, read what
    // the operator owns besides the two Secrets, change or delete
    // namespaces, or write an instance's status.
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "default")
            .get(strata_kube::tls::DEFAULT_CA_SECRET)
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "strata-shop")
            .get("orders-agent-token")
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await
    ));
    let stray: Secret = serde_json::from_value(json!({
        "metadata": { "name": "stray" },
        "stringData": { "k": "v" }
    }))
    .unwrap();
    assert!(is_forbidden(
        secrets_of_team_a
            .create(&PostParams::default(), &stray)
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "strata-shop")
            .patch(
                "orders-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({ "stringData": { "password": "x" } })),
            )
            .await
    ));
    assert!(is_forbidden(
        Api::<StatefulSet>::namespaced(sa.clone(), "strata-shop")
            .get("orders")
            .await
    ));
    assert!(is_forbidden(
        Api::<ConfigMap>::namespaced(sa.clone(), "strata-shop")
            .get("orders-config")
            .await
    ));
    let namespaces = Api::<Namespace>::all(sa.clone());
    assert!(is_forbidden(
        namespaces.delete("team-a", &DeleteParams::default()).await
    ));
    assert!(is_forbidden(
        namespaces
            .delete("strata-shop", &DeleteParams::default())
            .await
    ));
    assert!(is_forbidden(
        namespaces
            .patch(
                "team-a",
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "labels": { "strata.dev/project": "x" } } })),
            )
            .await
    ));
    assert!(is_forbidden(namespaces.list(&ListParams::default()).await));
    assert!(is_forbidden(
        Api::<PostgresInstance>::namespaced(sa.clone(), "strata-shop")
            .patch_status(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": { "phase": "Ready" } })),
            )
            .await
    ));
    assert!(is_forbidden(
        Api::<ClusterRoleBinding>::all(sa.clone())
            .list(&ListParams::default())
            .await
    ));

    // delete (delete); the operator's finalizer removes the rest, the API's
    // access to the instance's Secrets included.
    let deleting = rt.delete(&project, &name).await.unwrap();
    assert_eq!(deleting.status.phase, Phase::Deleting);
    eventually("the instance to be gone", || async {
        matches!(
            rt.get(&project, &name).await,
            Err(RuntimeError::NotFound(_))
        )
        .then_some(())
    })
    .await;
    assert!(
        Api::<Role>::namespaced(h.client.clone(), "strata-shop")
            .get_opt("orders-api")
            .await
            .unwrap()
            .is_none()
    );
    op.stop().await;
}
