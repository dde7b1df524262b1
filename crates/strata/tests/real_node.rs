//! Strata on a real Kubernetes node, as its users meet it: the Helm chart
//! installed on testenv's kubelet-backed node with the images built here
//! (scripts/images.sh), the API and the operator running as pods, and a
//! PostgreSQL instance created through the API whose pod really starts. The
//! test then connects to it over TLS verified against the instance CA, as a
//! tenant would, and goes through rotation, a plan change, an ACL change, a
//! crash of the server and deletion. Nothing is played: no status is patched
//! by the test.
//!
//! Needs root (the node), the node binaries from testenv/build.sh, helm
//! (deploy/test.sh --helm-path) and the images (scripts/images.sh, with the
//! `strata` binary this test run built); each is built on first use and
//! cached.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::missing_panics_doc
)]

#[allow(dead_code)] // this test runs no strata process of its own
mod common;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::http::Http;
use reqwest::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use strata_kube::k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use strata_kube::kube::Api;
use strata_kube::kube::api::ListParams;
use strata_testenv::platform::{ADMIN_USER, Platform};
use tokio::time::Instant;

const PROJECT: &str = "shop";
/// Project `shop` lives in namespace `strata-shop`.
const NAMESPACE: &str = "strata-shop";
const INSTANCE: &str = "orders";

/// Polls `check` until it returns `Some`, or panics after `limit`.
async fn within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The platform (crates/testenv-fixture/src/platform.rs: images, node,
/// store, chart) with the API signed in as the admin, who acts as the
/// tenant of project `shop` and its instance `orders`.
struct Shop {
    platform: Platform,
    api: Http,
}

impl Shop {
    async fn install() -> Self {
        let platform = Platform::install(Path::new(env!("CARGO_BIN_EXE_strata"))).await;
        // What the set-up costs make test (shown with --nocapture).
        let t = platform.timings;
        eprintln!(
            "platform: images {:.1} s, node {:.1} s, chart {:.1} s",
            t.images.as_secs_f64(),
            t.node.as_secs_f64(),
            t.chart.as_secs_f64()
        );
        let mut api = Http::new(&platform.api_url);
        let (status, _, body) = api
            .send(
                Method::POST,
                "/v1/auth/token",
                Some(json!({ "username": ADMIN_USER, "password": platform.admin_password() })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "sign in: {body}");
        api.token = Some(body["access_token"].as_str().unwrap().to_owned());
        Self { platform, api }
    }

    /// PATCHes the instance; the API must accept the change (202).
    async fn change(&self, body: Value) {
        let (status, _, answer) = self
            .api
            .send(
                Method::PATCH,
                &Self::path(&format!("/{INSTANCE}")),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "PATCH {body}: {answer}");
    }

    fn path(rest: &str) -> String {
        format!("/v1/projects/{PROJECT}/instances{rest}")
    }

    async fn instance(&self) -> Value {
        let (status, body) = self.api.get(&Self::path(&format!("/{INSTANCE}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until the instance is Ready at a generation at least `generation`.
    async fn ready(&self, what: &str) -> Value {
        within(Duration::from_mins(4), what, || async {
            let body = self.instance().await;
            (body["status"]["phase"] == "Ready").then_some(body)
        })
        .await
    }

    async fn credentials(&self) -> Value {
        let (status, body) = self
            .api
            .get(&Self::path(&format!("/{INSTANCE}/credentials")))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The instance's one pod.
    async fn pod(&self) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.platform.client.clone(), NAMESPACE);
        let list = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={INSTANCE}")))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1, "one pod for the instance");
        list.items.into_iter().next().unwrap()
    }

    /// The ClusterIP of the instance's client Service.
    async fn service_ip(&self, host: &str) -> Ipv4Addr {
        let name = host.split('.').next().unwrap();
        let services: Api<Service> = Api::namespaced(self.platform.client.clone(), NAMESPACE);
        services
            .get(name)
            .await
            .unwrap()
            .spec
            .and_then(|s| s.cluster_ip)
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Connects as the tenant: TLS verified against the instance CA for the
/// endpoint's DNS name (`sslmode=verify-full`), to the Service's ClusterIP
/// (the test host has no cluster DNS; `hostaddr` keeps the name for TLS).
async fn connect(
    credentials: &Value,
    password: &str,
    address: Ipv4Addr,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            CertificateDer::from_pem_slice(
                credentials["ca_certificate"].as_str().unwrap().as_bytes(),
            )
            .unwrap(),
        )
        .unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = tokio_postgres::Config::new();
    config
        .host(credentials["host"].as_str().unwrap())
        .hostaddr(address.into())
        .port(u16::try_from(credentials["port"].as_u64().unwrap()).unwrap())
        .user(credentials["username"].as_str().unwrap())
        .password(password)
        .dbname(credentials["database"].as_str().unwrap())
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Restarts of all the pod's containers together.
fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| format!("{e:?}"), |d| d.message().to_owned())
}

async fn count_rows(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_on_a_real_node_serves_postgres_over_verified_tls() {
    let shop = Shop::install().await;
    let api = &shop.api;

    // --- create, as a tenant would ------------------------------------------
    let (status, body) = api.get("/v1/projects").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = api
        .send(
            Method::POST,
            "/v1/projects",
            Some(json!({ "name": PROJECT })),
        )
        .await;
    assert!(status.is_success(), "create project: {status} {body}");
    let (status, _, body) = api
        .send(
            Method::POST,
            &Shop::path(""),
            Some(json!({ "name": INSTANCE, "plan": "micro", "storage_gb": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "create instance: {body}");
    let ready = shop.ready("the new instance to be Ready").await;
    let pod = shop.pod().await;
    let statuses = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .clone()
        .unwrap();
    assert!(
        statuses.iter().all(|c| c.ready),
        "every container of the pod is ready: {statuses:?}"
    );

    // --- pod-postgres, the container's PID 1, reaps what an exec leaves ----------
    shop.platform.kubectl(&[
        "exec",
        "-n",
        NAMESPACE,
        "orders-0",
        "-c",
        "postgres",
        "--",
        "sh",
        "-c",
        "sleep 1 & exit 0",
    ]);
    let supervisor = supervisor_pid();
    within(
        Duration::from_secs(30),
        "the orphaned sleep to be reaped",
        || async {
            let children = children_of(supervisor);
            (children == [postmaster_pid()]).then_some(())
        },
    )
    .await;

    // --- connect over verified TLS, write rows, check the role -----------------
    let credentials = shop.credentials().await;
    let host = credentials["host"].as_str().unwrap().to_owned();
    assert_eq!(ready["status"]["endpoint"]["host"], host.as_str());
    let address = shop.service_ip(&host).await;
    let password = credentials["password"].as_str().unwrap().to_owned();
    let db = connect(&credentials, &password, address)
        .await
        .unwrap_or_else(|e| panic!("connecting as the tenant: {}", message(&e)));
    db.batch_execute(
        "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL);
         INSERT INTO orders (item) VALUES ('tea'), ('coffee'), ('cake');",
    )
    .await
    .unwrap();
    assert_eq!(count_rows(&db).await, 3);
    let superuser: bool = db
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!superuser, "the tenant's role is not a superuser");
    let shell = db
        .batch_execute("COPY (SELECT 1) TO PROGRAM 'id'")
        .await
        .expect_err("a tenant must not run programs on the server");
    assert!(
        message(&shell).contains("permission denied")
            || message(&shell).contains("must be superuser")
            || message(&shell).contains("pg_execute_server_program"),
        "{}",
        message(&shell)
    );
    let alter = db
        .batch_execute("ALTER SYSTEM SET ssl = off")
        .await
        .expect_err("a tenant must not change the server's configuration");
    assert!(
        message(&alter).contains("permission denied"),
        "{}",
        message(&alter)
    );
    assert!(
        strata_testpg::is_encrypted(&db).await.unwrap(),
        "the connection is encrypted"
    );
    drop(db);

    // --- rotate: the old password stops working, the exporter keeps scraping ---
    let (status, _, body) = api
        .send(
            Method::POST,
            &Shop::path(&format!("/{INSTANCE}/credentials/rotate")),
            None,
        )
        .await;
    assert!(status.is_success(), "rotate: {status} {body}");
    let rotated = shop.credentials().await;
    let new_password = rotated["password"].as_str().unwrap().to_owned();
    assert_ne!(new_password, password);
    within(
        Duration::from_mins(2),
        "the old password to be refused",
        || async {
            connect(&credentials, &password, address)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let db = connect(&rotated, &new_password, address)
        .await
        .unwrap_or_else(|e| panic!("the new password: {}", message(&e)));
    assert_eq!(count_rows(&db).await, 3);
    drop(db);
    // The exporter's own answer, scraped as Prometheus would (testenv's
    // bridge network enforces no NetworkPolicy, so the host may scrape).
    let pod_ip = shop.pod().await.status.unwrap().pod_ip.unwrap();
    within(
        Duration::from_mins(1),
        "the exporter to reach the database after the rotation",
        || {
            let url = format!("http://{pod_ip}:9187/metrics");
            async move {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                text.lines().any(|l| l == "pg_up 1").then_some(())
            }
        },
    )
    .await;

    // --- plan change: a restart, the rows stay ---------------------------------
    let before = shop.pod().await.metadata.uid.unwrap();
    shop.change(json!({ "plan": "small", "storage_gb": 5 }))
        .await;
    within(
        Duration::from_mins(4),
        "a new pod with the plan's memory",
        || async {
            let pod = shop.pod().await;
            let memory = pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .find(|c| c.name == "postgres")?
                .resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .and_then(strata_kube::build::quantity_gib)?;
            let ready = pod
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .all(|c| c.ready);
            (pod.metadata.uid.as_deref() != Some(&before) && (memory - 1.0).abs() < 1e-9 && ready)
                .then_some(())
        },
    )
    .await;
    let changed = shop.ready("the instance to be Ready on the new plan").await;
    assert_eq!(changed["plan"], "small");
    let db = connect(&rotated, &new_password, address).await.unwrap();
    assert_eq!(count_rows(&db).await, 3, "the rows survive the plan change");
    drop(db);

    // --- ACL change: a reload, not a restart; the refused address is refused ---
    let pod = shop.pod().await;
    let (uid, restarts_before) = (pod.metadata.uid.clone().unwrap(), restarts(&pod));
    shop.change(json!({ "acl": ["192.0.2.0/24"] })).await;
    let refused = within(
        Duration::from_mins(3),
        "the test host to be refused",
        || async {
            match connect(&rotated, &new_password, address).await {
                Err(e) if message(&e).contains("pg_hba.conf") => Some(message(&e)),
                _ => None,
            }
        },
    )
    .await;
    assert!(refused.contains("no pg_hba.conf entry"), "{refused}");
    let pod = shop.pod().await;
    assert_eq!(
        pod.metadata.uid.as_deref(),
        Some(uid.as_str()),
        "the ACL change kept the pod"
    );
    assert_eq!(
        restarts(&pod),
        restarts_before,
        "the ACL change restarted no container"
    );
    shop.change(json!({ "acl": ["0.0.0.0/0"] })).await;
    let db = within(
        Duration::from_mins(3),
        "the test host to be let in again",
        || async { connect(&rotated, &new_password, address).await.ok() },
    )
    .await;
    drop(db);

    // --- the server dies: the kubelet restarts it, the rows stay -----------------
    let postmaster = postmaster_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    within(
        Duration::from_mins(3),
        "postgres to be restarted",
        || async {
            let pod = shop.pod().await;
            let status = pod.status?;
            let postgres = status
                .container_statuses?
                .into_iter()
                .find(|c| c.name == "postgres")?;
            (postgres.restart_count > 0 && postgres.ready).then_some(())
        },
    )
    .await;
    let db = within(
        Duration::from_mins(1),
        "a connection after the crash",
        || async { connect(&rotated, &new_password, address).await.ok() },
    )
    .await;
    assert_eq!(count_rows(&db).await, 3, "the rows survive the crash");
    drop(db);

    // --- delete: the instance and its objects are gone ---------------------------
    let (status, _, body) = api
        .send(Method::DELETE, &Shop::path(&format!("/{INSTANCE}")), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "delete: {body}");
    within(
        Duration::from_mins(3),
        "the instance to be gone",
        || async {
            let (status, _) = api.get(&Shop::path(&format!("/{INSTANCE}"))).await;
            (status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    within(Duration::from_mins(2), "the pod to be gone", || async {
        let pods: Api<Pod> = Api::namespaced(shop.platform.client.clone(), NAMESPACE);
        let list = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={INSTANCE}")))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    // The finalizer deletes the data claim (docs/operator.md); the volume
    // and its directory follow it (reclaim policy Delete).
    within(
        Duration::from_mins(2),
        "the data claim and its volume to be gone",
        || async {
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(shop.platform.client.clone(), NAMESPACE);
            let list = claims
                .list(
                    &ListParams::default()
                        .labels(&format!("app.kubernetes.io/instance={INSTANCE}")),
                )
                .await
                .ok()?;
            let volumes: Api<PersistentVolume> = Api::all(shop.platform.client.clone());
            let bound = volumes
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|v| {
                    v.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|c| c.namespace.as_deref())
                        == Some(NAMESPACE)
                })
                .count();
            (list.items.is_empty() && bound == 0).then_some(())
        },
    )
    .await;
}

/// The command lines of the host's processes (the pods' included), by pid.
fn processes() -> Vec<(i32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// `strata pod-postgres` of the instance (PID 1 of its container).
fn supervisor_pid() -> i32 {
    let found: Vec<i32> = processes()
        .into_iter()
        .filter(|(_, args)| args.get(1).is_some_and(|a| a == "pod-postgres"))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(found.len(), 1, "one pod-postgres runs: {found:?}");
    found[0]
}

/// The children of `parent`, zombies included, in pid order.
fn children_of(parent: i32) -> Vec<i32> {
    let mut children: Vec<i32> = processes()
        .into_iter()
        .filter(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid …: the fields after the last ')'.
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(1))
                    .and_then(|ppid| ppid.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .map(|(pid, _)| pid)
        .collect();
    children.sort_unstable();
    children
}

/// The postmaster of the instance's server: the `postgres` process whose
/// parent is Strata's in-pod supervisor (both visible from the host).
fn postmaster_pid() -> i32 {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_postgres = args.first().is_some_and(|a| a.ends_with("/postgres"));
        let in_pod = args.iter().any(|a| a.contains("/var/lib/postgresql/data"));
        if is_postgres && in_pod {
            found.push(pid);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "exactly one postmaster of an instance runs: {found:?}"
    );
    found[0]
}
