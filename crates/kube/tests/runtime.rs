//! The Kubernetes `InstanceRuntime` against a real kube-apiserver with the
//! operator running: the API's create/get/list/update/credentials/rotate/
//! delete flow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use common::{Harness, RunningOperator, eventually};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use strata_core::events::PublishedEvent;
use strata_core::{
    CreateInstance, InstanceName, InstanceRuntime, PageRequest, Phase, ProjectName, RuntimeError,
    UpdateInstance,
};
use strata_kube::KubeRuntime;
use strata_kube::runtime::PROJECT_LABEL;
use strata_testenv::{mark_statefulset_ready, play_credentials_agent};
use tokio::sync::{broadcast, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_flow_on_the_kubernetes_runtime() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let mut rt = KubeRuntime::new(h.client.clone(), "strata-");
    rt.rotate_timeout = std::time::Duration::from_secs(5);
    let project = ProjectName::parse("shop").unwrap();
    let name = InstanceName::parse("orders").unwrap();

    let spec = common::orders_request(&rt);
    let created = rt.create(&project, spec.clone()).await.unwrap();
    assert_eq!(created.status.phase, Phase::Provisioning);
    assert_eq!(created.project, "shop");
    assert!(!created.id.is_nil());
    assert!(matches!(
        rt.create(&project, spec).await,
        Err(RuntimeError::Conflict(_))
    ));

    let ns = Api::<Namespace>::all(h.client.clone())
        .get("strata-shop")
        .await
        .unwrap();
    assert_eq!(ns.labels()[PROJECT_LABEL], "shop");

    // The operator provisions; a "kubelet" marks the StatefulSet ready.
    mark_statefulset_ready(&h.client, "strata-shop", "orders").await;
    let ready = eventually("Ready through the runtime", || async {
        let i = rt.get(&project, &name).await.ok()?;
        (i.status.phase == Phase::Ready).then_some(i)
    })
    .await;
    let endpoint = ready.status.endpoint.clone().unwrap();
    assert_eq!(endpoint.host, "orders.strata-shop.svc.cluster.local");
    assert_eq!(endpoint.port, 5432);

    let page = rt
        .list(
            &project,
            &[("team".into(), "checkout".into())],
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let none = rt
        .list(
            &project,
            &[("team".into(), "other".into())],
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());

    let creds = rt.credentials(&project, &name).await.unwrap();
    assert_eq!(creds.username, "app");
    assert_eq!(creds.host, endpoint.host);
    assert_eq!(creds.password.expose().len(), 32);
    // The instance is Ready: a rotation is done only when the running server
    // uses the new password, which its credentials agent reports.
    let unconfirmed = rt.rotate_credentials(&project, &name).await;
    assert!(
        matches!(&unconfirmed, Err(RuntimeError::Unavailable(m)) if m.contains("not confirmed")),
        "{unconfirmed:?}"
    );
    let pending = rt.credentials(&project, &name).await.unwrap();
    assert_ne!(pending.password.expose(), creds.password.expose());
    let _agent = play_credentials_agent(&h.client, "strata-shop", "orders");
    let rotated = rt.rotate_credentials(&project, &name).await.unwrap();
    assert_ne!(rotated.password.expose(), creds.password.expose());
    assert_ne!(rotated.password.expose(), pending.password.expose());

    let updated = rt
        .update(
            &project,
            &name,
            UpdateInstance {
                plan: Some("medium".into()),
                storage_gb: Some(50),
                ..UpdateInstance::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.plan, "medium");
    assert_eq!(updated.storage_gb, 50);
    assert_eq!(updated.labels["team"], "checkout");

    let events = rt.events(&project, &name, None, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.to == Some(Phase::Ready)),
        "{events:?}"
    );

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
    op.stop().await;
}

/// Waits for the next published event, or fails after `DEADLINE`.
async fn next_event(rx: &mut broadcast::Receiver<PublishedEvent>) -> PublishedEvent {
    tokio::time::timeout(common::DEADLINE, rx.recv())
        .await
        .expect("no live event in time")
        .expect("the live event channel failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_events_arrive_live_and_history_is_not_replayed() {
    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let rt = KubeRuntime::new(h.client.clone(), "strata-");
    let project = ProjectName::parse("shop").unwrap();
    let validate = |name: &str| {
        CreateInstance {
            name: name.into(),
            ..CreateInstance::default()
        }
        .validate(rt.plans(), rt.versions())
        .unwrap()
    };

    // An instance whose events happened before the watch starts: history.
    // It stays Provisioning (no "kubelet" for it), so it has nothing new to say.
    let before = rt.create(&project, validate("before")).await.unwrap();
    let before_name = InstanceName::parse("before").unwrap();
    eventually(
        "the earlier instance's events up to Provisioning",
        || async {
            let events = rt.events(&project, &before_name, None, 100).await.ok()?;
            events
                .iter()
                .any(|e| e.to == Some(Phase::Provisioning))
                .then_some(())
        },
    )
    .await;

    let (stop, stopped) = oneshot::channel::<()>();
    let watch = tokio::spawn(rt.watch_events(async move {
        let _ = stopped.await;
    }));
    let mut rx = rt.subscribe();

    // An instance outside the project namespaces: its events are not Strata's.
    let foreign = h.create("foreign", common::spec()).await;
    let events_api: Api<KubeEvent> = Api::namespaced(h.client.clone(), &h.ns);
    let foreign_uid = foreign.uid().unwrap();
    eventually(
        "the events of the instance outside the projects",
        || async {
            let list = events_api
                .list(&ListParams::default().fields(&format!("regarding.uid={foreign_uid}")))
                .await
                .ok()?;
            (!list.items.is_empty()).then_some(())
        },
    )
    .await;

    let created = rt.create(&project, validate("orders")).await.unwrap();
    mark_statefulset_ready(&h.client, "strata-shop", "orders").await;

    let mut live = Vec::new();
    loop {
        let p = next_event(&mut rx).await;
        assert_ne!(p.instance_id, before.id, "history replayed: {p:?}");
        assert_ne!(
            p.instance_id.to_string(),
            foreign_uid,
            "an event outside the projects: {p:?}"
        );
        assert_eq!(p.project, "shop");
        assert_eq!(p.instance_id, created.id);
        assert_eq!(p.event.instance, "orders");
        let ready = p.event.to == Some(Phase::Ready);
        live.push(p.event);
        if ready {
            break;
        }
    }
    assert!(
        live.iter()
            .any(|e| e.message == "generated the database credentials"),
        "the credentials event arrives live too: {live:?}"
    );
    // Live events are the ones the event list reads, with the same mapping.
    let name = InstanceName::parse("orders").unwrap();
    let listed = rt.events(&project, &name, None, 100).await.unwrap();
    for e in &live {
        assert!(listed.contains(e), "{e:?} is not in {listed:?}");
    }

    // Each change is an occurrence of its own, also when its reason repeats.
    for (generation, plan) in [(2, "small"), (3, "medium")] {
        rt.update(
            &project,
            &name,
            UpdateInstance {
                plan: Some(plan.into()),
                storage_gb: Some(20),
                ..UpdateInstance::default()
            },
        )
        .await
        .unwrap();
        let note = format!("applied generation {generation} to");
        let applied = loop {
            let p = next_event(&mut rx).await;
            if p.event.message.starts_with(&note) {
                break p.event;
            }
        };
        assert!(
            live.iter().all(|e| e.id != applied.id),
            "{applied:?} repeats an earlier event"
        );
        live.push(applied);
    }

    // The watch stops on shutdown.
    stop.send(()).unwrap();
    tokio::time::timeout(common::DEADLINE, watch)
        .await
        .expect("the event watch did not stop")
        .unwrap();
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_endpoint_through_the_runtime() {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Patch, PatchParams};

    let h = Harness::new().await;
    let op = RunningOperator::start(&h.client, "op-a");
    let rt = KubeRuntime::new(h.client.clone(), "strata-");
    let project = ProjectName::parse("shop").unwrap();
    let name = InstanceName::parse("orders").unwrap();
    let services: Api<Service> = Api::namespaced(h.client.clone(), "strata-shop");

    // An external endpoint that would admit no one is refused, naming the field.
    let refused = CreateInstance {
        name: "orders".into(),
        acl: Some(vec![]),
        external_access: Some(true),
        ..CreateInstance::default()
    }
    .validate(rt.plans(), rt.versions())
    .unwrap_err();
    assert_eq!(refused.errors[0].field, "external_access");

    let spec = CreateInstance {
        name: "orders".into(),
        plan: Some("small".into()),
        acl: Some(vec!["203.0.113.0/24".into(), "198.51.100.0/24".into()]),
        external_access: Some(true),
        ..CreateInstance::default()
    }
    .validate(rt.plans(), rt.versions())
    .unwrap();
    let created = rt.create(&project, spec).await.unwrap();
    assert!(created.external_access);

    // The operator makes a load balancer admitting the ACL.
    let lb = eventually("the external Service", || async {
        services.get_opt("orders-external").await.ok()?
    })
    .await;
    let lb_spec = lb.spec.unwrap();
    assert_eq!(lb_spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        lb_spec.load_balancer_source_ranges.unwrap(),
        ["198.51.100.0/24", "203.0.113.0/24"]
    );
    assert_eq!(lb_spec.external_traffic_policy.as_deref(), Some("Local"));

    mark_statefulset_ready(&h.client, "strata-shop", "orders").await;
    let ready = eventually("Ready through the runtime", || async {
        let i = rt.get(&project, &name).await.ok()?;
        (i.status.phase == Phase::Ready).then_some(i)
    })
    .await;
    assert_eq!(ready.status.external_endpoint, None, "no address yet");

    // What a cloud's load balancer controller reports.
    services
        .patch_status(
            "orders-external",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": { "loadBalancer": { "ingress": [{ "ip": "192.0.2.80" }] } }
            })),
        )
        .await
        .unwrap();
    let external = eventually("the external endpoint in the API's view", || async {
        rt.get(&project, &name).await.ok()?.status.external_endpoint
    })
    .await;
    assert_eq!(
        (external.host.as_str(), external.port),
        ("192.0.2.80", 5432)
    );
    // The server certificate names that address, so verify-full works from outside.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(h.client.clone(), "strata-shop");
    eventually(
        "the certificate to name the load balancer's address",
        || async {
            let tls = secrets.get_opt("orders-tls").await.ok()??;
            let pem = String::from_utf8(tls.data?.get("tls.crt")?.0.clone()).ok()?;
            let names = strata_core::tls::inspect(&pem).ok()?.hosts;
            names.iter().any(|n| n == "192.0.2.80").then_some(())
        },
    )
    .await;

    // PATCH: off again; the load balancer goes, and so does the address.
    let updated = rt
        .update(
            &project,
            &name,
            UpdateInstance {
                external_access: Some(false),
                ..UpdateInstance::default()
            },
        )
        .await
        .unwrap();
    assert!(!updated.external_access);
    eventually("the external Service to be deleted", || async {
        services
            .get_opt("orders-external")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    eventually("no external endpoint", || async {
        let i = rt.get(&project, &name).await.ok()?;
        i.status.external_endpoint.is_none().then_some(())
    })
    .await;
    op.stop().await;
}
