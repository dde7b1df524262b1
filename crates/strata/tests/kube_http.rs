//! `strata api --runtime kubernetes` as a user meets it: the real `strata
//! operator` and `strata api` processes against testenv's kube-apiserver, on
//! loopback ports with a temp SQLite store, driven over HTTP. No kubelet runs:
//! the test marks the StatefulSet ready by patching its status.

// Test helpers outside #[test] functions may panic: that is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::cast_possible_wrap
)]

mod common;

use std::time::{Duration, Instant};

use common::Process;
use common::http::Http;

use futures::StreamExt;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use strata_kube::PostgresInstance;
use strata_kube::crd::ROTATE_ANNOTATION;
use strata_kube::kube::api::ListParams;
use strata_kube::kube::{Api, Client, ResourceExt};
use strata_testenv::{
    DEADLINE, TestEnv, eventually, install_crd, mark_statefulset_ready, play_credentials_agent,
};

const PASSWORD: &str = "integration-admin-password";
/// Project `default` lives in namespace `strata-default`.
const NAMESPACE: &str = "strata-default";

/// The API and the operator on one testenv. Fields drop in order: the
/// processes stop before the API server they talk to.
struct Platform {
    api: Process,
    operator: Process,
    env: TestEnv,
    client: Client,
    _dir: tempfile::TempDir,
    url: String,
}

impl Platform {
    async fn start() -> Self {
        let env = TestEnv::start();
        let client = env.client().await;
        install_crd(&client).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = env.kubeconfig().to_owned();
        let (operator, _) = Process::start(
            "operator",
            dir.path(),
            [
                "operator",
                "--lease-namespace",
                "default",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "text",
            ],
            &[("KUBECONFIG", &kubeconfig)],
        );
        let store = format!("sqlite://{}", dir.path().join("strata.db").display());
        let key_file = dir.path().join("store.key");
        strata_store::seal::load_or_create_key_file(&key_file).unwrap();
        let (api, lines) = Process::start(
            "api",
            dir.path(),
            [
                "api",
                "--runtime",
                "kubernetes",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--database-url",
                &store,
                "--issuer",
                "http://127.0.0.1",
                "--store-key-file",
                key_file.to_str().unwrap(),
                "--log-format",
                "text",
            ],
            &[
                ("KUBECONFIG", &kubeconfig),
                ("STRATA_ADMIN_PASSWORD", PASSWORD),
            ],
        );
        let deadline = Instant::now() + DEADLINE;
        let url = loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("strata api did not report that it is serving");
            if let Some(rest) = line.strip_prefix("Strata API is serving on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        Self {
            env,
            client,
            _dir: dir,
            operator,
            api,
            url,
        }
    }

    fn instances(&self) -> Api<PostgresInstance> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Instances in the cluster, in every namespace.
    async fn all_instance_names(&self) -> Vec<String> {
        Api::<PostgresInstance>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|i| i.metadata.name)
            .collect()
    }

    /// Plays the kubelet: the StatefulSet of `name` reports a ready pod.
    async fn mark_ready(&self, name: &str) {
        mark_statefulset_ready(&self.client, NAMESPACE, name).await;
    }

    fn stop(self) {
        self.api.stop();
        self.operator.stop();
        drop(self.env);
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default)]
struct Sse {
    id: String,
    event: String,
    data: String,
}

/// An open `text/event-stream` response, read event by event.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

impl SseReader {
    fn new(res: reqwest::Response) -> Self {
        Self {
            body: res.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next event (keep-alive comments skipped); fails after `DEADLINE`.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                    let mut sse = Sse::default();
                    for line in std::str::from_utf8(&block).unwrap().lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            v.trim().clone_into(&mut sse.id);
                        } else if let Some(v) = line.strip_prefix("event:") {
                            v.trim().clone_into(&mut sse.event);
                        } else if let Some(v) = line.strip_prefix("data:") {
                            sse.data.push_str(v.trim());
                        }
                    }
                    if !sse.id.is_empty() {
                        return sse;
                    }
                    continue;
                }
                let chunk = self
                    .body
                    .next()
                    .await
                    .expect("the event stream ended")
                    .unwrap();
                self.buffer.extend_from_slice(&chunk);
            }
        })
        .await
        .expect("no event on the stream in time")
    }
}

async fn wait_for_phase(api: &Http, path: &str, phase: &str) -> Value {
    eventually(&format!("{path} to be {phase}"), || async {
        let (status, body) = api.get(path).await;
        (status == StatusCode::OK && body["status"]["phase"] == phase).then_some(body)
    })
    .await
}

fn field_of(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_on_the_kubernetes_runtime_over_http() {
    let p = Platform::start().await;
    let api = Http::login(&p.url, "admin", PASSWORD).await;
    let instances = "/v1/projects/default/instances";

    // Create: 202 with the instance's Location, a resource in the project's namespace.
    let (status, headers, created) = api
        .send(
            Method::POST,
            instances,
            Some(json!({
                "name": "orders", "version": "16", "plan": "small", "storage_gb": 20,
                "acl": ["10.0.0.0/8"], "labels": { "team": "checkout" },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{instances}/orders"));
    assert_eq!(created["status"]["phase"], "Provisioning");
    let resource = p.instances().get("orders").await.unwrap();
    assert_eq!(resource.spec.plan, created["plan"].as_str().unwrap());
    assert_eq!(
        created["id"].as_str().unwrap(),
        resource.metadata.uid.as_deref().unwrap()
    );

    let (status, list) = api.get(&format!("{instances}?label=team=checkout")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders"]);
    let (status, got) = api.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], created["id"]);

    // The operator provisions; the "kubelet" marks the pod ready.
    p.mark_ready("orders").await;
    let ready = wait_for_phase(&api, &location, "Ready").await;
    assert_eq!(
        ready["status"]["endpoint"],
        json!({ "host": "orders.strata-default.svc.cluster.local", "port": 5432 })
    );

    // Credentials from the operator's Secret; the read is audited, without them.
    let (status, creds) = api.get(&format!("{location}/credentials")).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    assert_eq!(creds["username"], "app");
    assert_eq!(creds["host"], "orders.strata-default.svc.cluster.local");
    let password = creds["password"].as_str().unwrap().to_owned();
    assert_eq!(password.len(), 32);
    let (status, audit) = api
        .get("/v1/projects/default/audit-events?action=instance.credentials.read")
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let credential_reads = audit["items"].as_array().unwrap();
    assert_eq!(credential_reads.len(), 1, "{audit}");
    assert_eq!(credential_reads[0]["target"]["name"], "orders");
    assert_eq!(credential_reads[0]["actor"]["name"], "admin");
    assert!(!audit.to_string().contains(&password));

    // Follow the service log: first what happened so far, then live.
    let (status, history) = api.get(&format!("{location}/events")).await;
    assert_eq!(status, StatusCode::OK);
    let history: Vec<String> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!history.is_empty());
    let res = api
        .request(Method::GET, &format!("{location}/events?follow=true"))
        .timeout(Duration::from_mins(10))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = SseReader::new(res);
    for id in &history {
        assert_eq!(&stream.next().await.id, id, "the backlog, in order");
    }

    // PATCH the plan: the resource follows, the status observes it.
    let (status, _, patched) = api
        .send(Method::PATCH, &location, Some(json!({ "plan": "medium" })))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{patched}");
    assert_eq!(patched["plan"], "medium");
    eventually("the operator to apply the new plan", || async {
        let r = p.instances().get("orders").await.ok()?;
        (r.spec.plan == "medium" && r.status?.observed_generation == r.metadata.generation)
            .then_some(())
    })
    .await;

    // Rotate: a new password from the operator, applied by the pod's agent,
    // and the stream tells live.
    let _agent = play_credentials_agent(&p.client, NAMESPACE, "orders");
    let (status, _, rotated) = api
        .send(
            Method::POST,
            &format!("{location}/credentials/rotate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["password"].as_str().unwrap(), password);
    let (_, creds) = api.get(&format!("{location}/credentials")).await;
    assert_eq!(creds["password"], rotated["password"]);
    let live = loop {
        let live = stream.next().await;
        assert!(!history.contains(&live.id), "{live:?} was sent before");
        let event: Value = serde_json::from_str(&live.data).unwrap();
        assert_eq!(live.event, event["kind"].as_str().unwrap());
        if event["message"] == "rotated the database password on request" {
            break event;
        }
    };
    assert_eq!(live["kind"], "credentials_rotated");
    assert_eq!(live["instance"], "orders");
    assert!(
        !live
            .to_string()
            .contains(rotated["password"].as_str().unwrap())
    );

    // Delete: 202, the finalizer runs, then 404.
    let (status, _, deleting) = api.send(Method::DELETE, &location, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleting}");
    assert_eq!(deleting["status"]["phase"], "Deleting");
    eventually("the resource to be gone", || async {
        p.instances()
            .get_opt("orders")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let (status, problem) = api.get(&location).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    drop(stream);
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_other_tenants_get_nothing_on_the_kubernetes_runtime() {
    let p = Platform::start().await;
    let admin = Http::login(&p.url, "admin", PASSWORD).await;
    let instances = "/v1/projects/default/instances";

    // Invalid name and plan: 400 naming the field, nothing in the cluster.
    for (body, field) in [
        (json!({ "name": "Not_A_Label" }), "name"),
        (json!({ "name": "huge", "plan": "enormous" }), "plan"),
        (json!({ "name": "tiny", "storage_gb": 0 }), "storage_gb"),
    ] {
        let (status, _, problem) = admin.send(Method::POST, instances, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(field_of(&problem), [field], "{problem}");
    }
    assert!(p.all_instance_names().await.is_empty());

    let (status, _, created) = admin
        .send(Method::POST, instances, Some(json!({ "name": "orders" })))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");

    // A user without a role in the project sees nothing and changes nothing.
    let (status, _, user) = admin
        .send(
            Method::POST,
            "/v1/users",
            Some(json!({ "username": "mallory", "password": "mallory-password-1234" })),
        )
        .await;
    assert!(status.is_success(), "{status}: {user}");
    let mallory = Http::login(&p.url, "mallory", "mallory-password-1234").await;
    let location = format!("{instances}/orders");
    for (method, path, body) in [
        (Method::GET, instances.to_owned(), None),
        (Method::GET, location.clone(), None),
        (Method::GET, format!("{location}/credentials"), None),
        (Method::GET, format!("{location}/events"), None),
        (Method::POST, format!("{location}/credentials/rotate"), None),
        (
            Method::PATCH,
            location.clone(),
            Some(json!({ "plan": "large" })),
        ),
        (Method::DELETE, location.clone(), None),
        (
            Method::POST,
            instances.to_owned(),
            Some(json!({ "name": "intruder" })),
        ),
    ] {
        let (status, _, problem) = mallory.send(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
    }
    let resource = p.instances().get("orders").await.unwrap();
    assert_eq!(resource.spec.plan, created["plan"].as_str().unwrap());
    assert!(resource.metadata.deletion_timestamp.is_none());
    assert!(!resource.annotations().contains_key(ROTATE_ANNOTATION));
    assert_eq!(p.all_instance_names().await, ["orders"]);
    p.stop();
}
