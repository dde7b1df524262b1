//! A real kube-apiserver + etcd per test (testenv/, through the
//! `strata-testenv` fixture), and helpers to drive the operator against it.

#![allow(dead_code)]

use std::sync::Arc;

use kube::api::PostParams;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use strata_kube::metrics::Metrics;
use strata_kube::{Operator, OperatorConfig, PostgresInstance, PostgresInstanceSpec};
pub use strata_testenv::{DEADLINE, TestEnv, create_namespace, eventually, install_crd};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running operator; `stop` shuts it down gracefully.
pub struct RunningOperator {
    pub identity: String,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), strata_kube::Error>>>,
}

impl RunningOperator {
    pub fn start(client: &Client, identity: &str) -> Self {
        Self::start_with(client, identity, |_| {})
    }

    pub fn start_with(
        client: &Client,
        identity: &str,
        customise: impl FnOnce(&mut OperatorConfig),
    ) -> Self {
        let mut config = OperatorConfig::new(client.clone(), "default");
        customise(&mut config);
        identity.clone_into(&mut config.lease.identity);
        config.lease.duration_seconds = 4;
        config.lease.grace_seconds = 1;
        let mut registry = Registry::default();
        let operator = Operator::new(config, &mut registry);
        let metrics = operator.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(operator.run(async move {
            let _ = rx.await;
        }));
        Self {
            identity: identity.to_owned(),
            metrics,
            registry,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn reconciles(&self) -> u64 {
        self.metrics.reconcile_runs.get()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("operator did not shut down in time")
                .expect("operator task panicked")
                .expect("operator returned an error");
        }
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A client that sends its requests through `inner`, except those `fault`
/// answers with a status code: those get that code and a Kubernetes
/// `Status` body without reaching the API server (an injected conflict,
/// throttling or server error).
pub fn faulty_client(
    inner: Client,
    fault: impl Fn(&http::Request<kube::client::Body>) -> Option<u16> + Send + Sync + 'static,
) -> Client {
    let fault = Arc::new(fault);
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let inner = inner.clone();
        let injected = fault(&request);
        async move {
            if let Some(code) = injected {
                let body = serde_json::json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": format!("injected by the test: {code}"),
                    "reason": "Injected",
                    "code": code,
                });
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .expect("a response");
                return Ok::<_, kube::Error>(response);
            }
            inner.send(request).await
        }
    });
    Client::new(service, "default")
}

/// Everything a test needs: apiserver, CRD, a namespace, a client.
pub struct Harness {
    pub env: TestEnv,
    pub client: Client,
    pub ns: String,
}

impl Harness {
    pub async fn new() -> Self {
        let env = TestEnv::start();
        let client = env.client().await;
        install_crd(&client).await;
        create_namespace(&client, "team-a").await;
        Self {
            env,
            client,
            ns: "team-a".into(),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create(&self, name: &str, spec: PostgresInstanceSpec) -> PostgresInstance {
        self.api::<PostgresInstance>()
            .create(&PostParams::default(), &PostgresInstance::new(name, spec))
            .await
            .expect("create instance")
    }
}

/// What the API-level flows create through `KubeRuntime`: `orders`
/// (PostgreSQL 16, plan small, 20 GiB, one ACL entry, label team=checkout).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn orders_request(rt: &strata_kube::KubeRuntime) -> strata_core::InstanceSpec {
    use strata_core::InstanceRuntime;
    strata_core::CreateInstance {
        name: "orders".into(),
        version: Some("16".into()),
        plan: Some("small".into()),
        storage_gb: Some(20),
        acl: Some(vec!["10.0.0.0/8".into()]),
        external_access: None,
        labels: Some(std::collections::BTreeMap::from([(
            "team".into(),
            "checkout".into(),
        )])),
    }
    .validate(rt.plans(), rt.versions())
    .expect("a valid request")
}

pub fn spec() -> PostgresInstanceSpec {
    PostgresInstanceSpec {
        version: "16".into(),
        plan: "small".into(),
        storage_gb: 20,
        acl: vec!["10.0.0.0/8".into()],
        image: None,
        storage_class: None,
        external_access: false,
    }
}
