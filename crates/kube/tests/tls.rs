//! TLS inside the pods and credential rotation, against a real
//! kube-apiserver (testenv): the installation's CA, each instance's server
//! certificate, what the pod mounts, and the credentials agent's report
//! through its own, narrowly bound service account.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, RunningOperator, eventually, spec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;
use strata_core::{InstanceName, InstanceRuntime, ProjectName, tls};
use strata_kube::build::APPLIED_ROTATION_ANNOTATION;
use strata_kube::crd::ROTATE_ANNOTATION;
use strata_kube::{KubeRuntime, PostgresInstance};

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

async fn get<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get")
}

/// A client acting as `user` (the test's admin may impersonate anyone).
async fn impersonating(h: &Harness, user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(&h.env.vars["KUBECONFIG"]).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
}

fn condition(i: &PostgresInstance, kind: &str) -> Option<String> {
    i.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_serve_tls_with_a_certificate_from_the_installation_ca() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    h.create("orders", spec()).await;
    let secrets = h.api::<Secret>();
    let ca_secrets: Api<Secret> = Api::namespaced(h.client.clone(), "default");

    // The CA: created once in the operator's namespace, owned by no instance.
    let ca: Secret = eventually("the CA Secret", || get(&ca_secrets, "strata-ca")).await;
    assert_eq!(ca.type_.as_deref(), Some("kubernetes.io/tls"));
    assert!(ca.owner_references().is_empty());
    let ca_cert = text(&ca, "tls.crt");

    // The server certificate: chains to the CA, names the client Service.
    let server: Secret = eventually("the TLS Secret", || get(&secrets, "orders-tls")).await;
    assert_eq!(server.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(server.owner_references()[0].kind, "PostgresInstance");
    let cert = text(&server, "tls.crt");
    tls::verify_issued_by(&cert, &ca_cert).unwrap();
    assert_eq!(text(&server, "ca.crt"), ca_cert);
    assert!(text(&server, "tls.key").contains("PRIVATE KEY"));
    let info = tls::inspect(&cert).unwrap();
    for host in [
        "orders",
        "orders.team-a",
        "orders.team-a.svc",
        "orders.team-a.svc.cluster.local",
    ] {
        assert!(info.hosts.iter().any(|h| h == host), "{host} in {info:?}");
    }

    // The API's credentials carry the CA, and the host they name is one the
    // certificate covers: what `sslmode=verify-full` needs.
    let rt = KubeRuntime::new(h.client.clone(), "team-");
    let creds = eventually("the credentials", || async {
        let project = ProjectName::parse("a").unwrap();
        let name = InstanceName::parse("orders").unwrap();
        rt.credentials(&project, &name).await.ok()
    })
    .await;
    assert_eq!(creds.ca_certificate, ca_cert);
    assert!(
        info.hosts.contains(&creds.host),
        "{} in {info:?}",
        creds.host
    );

    // The pod mounts it, and PostgreSQL is told to use it.
    let (stateful_sets, config_maps) = (h.api::<StatefulSet>(), h.api::<ConfigMap>());
    let sts: StatefulSet = eventually("the StatefulSet", || get(&stateful_sets, "orders")).await;
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "tls")
        .unwrap();
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(source.secret_name.as_deref(), Some("orders-tls"));
    assert_eq!(source.default_mode, Some(0o640));
    let postgres = &pod.containers[0];
    assert!(
        postgres
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "tls" && m.mount_path == "/etc/strata-tls")
    );
    let cm: ConfigMap = eventually("the ConfigMap", || get(&config_maps, "orders-config")).await;
    let data = cm.data.unwrap();
    assert!(data["postgresql.conf"].contains("\nssl = on\n"));
    assert!(data["pg_hba.conf"].contains("hostssl all all 10.0.0.0/8 scram-sha-256"));

    // A deleted certificate comes back, signed by the same CA.
    secrets
        .delete("orders-tls", &DeleteParams::default())
        .await
        .unwrap();
    let uid = server.uid().unwrap();
    let again: Secret = eventually("the TLS Secret to come back", || async {
        get(&secrets, "orders-tls")
            .await
            .filter(|s| s.uid().as_deref() != Some(uid.as_str()))
    })
    .await;
    tls::verify_issued_by(&text(&again, "tls.crt"), &ca_cert).unwrap();

    // Another operator process (after a restart) keeps the CA as it is.
    op.stop().await;
    let op = RunningOperator::start(&h.client, "op-b");
    h.create("billing", spec()).await;
    let billing: Secret = eventually("billing's TLS Secret", || get(&secrets, "billing-tls")).await;
    tls::verify_issued_by(&text(&billing, "tls.crt"), &ca_cert).unwrap();
    let after = get(&ca_secrets, "strata-ca").await.unwrap();
    assert_eq!(after.data, ca.data);
    assert_eq!(after.resource_version(), ca.resource_version());
    // orders' certificate is still good: it is not re-issued.
    let kept = get(&secrets, "orders-tls").await.unwrap();
    assert_eq!(text(&kept, "tls.crt"), text(&again, "tls.crt"));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_agent_reports_rotations_with_its_own_service_account() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    h.create("orders", spec()).await;
    let instances = h.api::<PostgresInstance>();
    let secrets = h.api::<Secret>();
    let _: Secret = eventually("the credentials", || get(&secrets, "orders-credentials")).await;
    let i = eventually("CredentialsApplied=False", || async {
        get(&instances, "orders")
            .await
            .filter(|i| condition(i, "CredentialsApplied").as_deref() == Some("False"))
    })
    .await;
    assert!(condition(&i, "Ready").is_some());

    // The agent's identity (what the pod's token would carry).
    let agent = impersonating(&h, "system:serviceaccount:team-a:orders-agent").await;
    let agent_secrets: Api<Secret> = Api::namespaced(agent, "team-a");
    let report = |rotation: String| json!({ "metadata": { "annotations": { APPLIED_ROTATION_ANNOTATION: rotation } } });
    let params = PatchParams {
        field_manager: Some("strata-pod-agent".into()),
        ..PatchParams::default()
    };
    // The RoleBinding reaches the authorizer through an informer: wait for it.
    let read = eventually("the agent's Role to take effect", || async {
        agent_secrets.get("orders-credentials").await.ok()
    })
    .await;
    assert_eq!(text(&read, "rotation"), "");
    // It may touch nothing else: not the TLS key, not a list of Secrets.
    let denied = agent_secrets.get("orders-tls").await.unwrap_err();
    assert!(
        matches!(denied, kube::Error::Api(ref e) if e.code == 403),
        "{denied:?}"
    );
    assert!(agent_secrets.list(&ListParams::default()).await.is_err());

    agent_secrets
        .patch(
            "orders-credentials",
            &params,
            &Patch::Merge(report(String::new())),
        )
        .await
        .unwrap();
    eventually("CredentialsApplied=True", || async {
        get(&instances, "orders")
            .await
            .filter(|i| condition(i, "CredentialsApplied").as_deref() == Some("True"))
    })
    .await;

    // A rotation: a new password and token, not applied until reported.
    instances
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: "r2" } } })),
        )
        .await
        .unwrap();
    let rotated = eventually("the rotated Secret", || async {
        get(&secrets, "orders-credentials")
            .await
            .filter(|s| text(s, "rotation") == "r2")
    })
    .await;
    assert_ne!(text(&rotated, "password"), text(&read, "password"));
    eventually("CredentialsApplied=False after the rotation", || async {
        get(&instances, "orders")
            .await
            .filter(|i| condition(i, "CredentialsApplied").as_deref() == Some("False"))
    })
    .await;
    agent_secrets
        .patch(
            "orders-credentials",
            &params,
            &Patch::Merge(report("r2".into())),
        )
        .await
        .unwrap();
    eventually("CredentialsApplied=True after the report", || async {
        get(&instances, "orders")
            .await
            .filter(|i| condition(i, "CredentialsApplied").as_deref() == Some("True"))
    })
    .await;
    // The operator's next apply keeps the agent's annotation.
    let secret = get(&secrets, "orders-credentials").await.unwrap();
    assert_eq!(secret.annotations()[APPLIED_ROTATION_ANNOTATION], "r2");
    op.stop().await;
}
