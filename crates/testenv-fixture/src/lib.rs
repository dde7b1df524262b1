//! A real kube-apiserver + etcd per test (testenv/), for the integration
//! tests of every crate that talks to Kubernetes. Starting fails the test
//! loudly; nothing is skipped. [`platform`] installs Strata's chart on
//! testenv's real node, for the end-to-end test and `strata-bench node`.

// A fixture fails the test by panicking: that is its error handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use strata_kube::k8s_openapi::api::apps::v1::StatefulSet;
use strata_kube::k8s_openapi::api::core::v1::Namespace;
use strata_kube::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use strata_kube::kube::api::{Patch, PatchParams, PostParams};
use strata_kube::kube::config::{KubeConfigOptions, Kubeconfig};
use strata_kube::kube::{Api, Client, Config};
use tokio::time::Instant;

pub mod platform;

/// How long any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("testenv: could not run {what}: {e}"));
    assert!(
        out.status.success(),
        "testenv: {what} failed ({}).\nstdout:\n{}\nstderr:\n{}\n\
         The Kubernetes integration tests need testenv's kube-apiserver and etcd: \
         run testenv/build.sh (needs Go and the Go module proxy) or set \
         STRATA_TESTENV_BIN_DIR to a directory holding kube-apiserver, kubectl and etcd.",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One running kube-apiserver + etcd, stopped on drop.
pub struct TestEnv {
    dir: tempfile::TempDir,
    /// What testenv/start.sh printed: `KUBECONFIG`, the user context, ….
    pub vars: HashMap<String, String>,
}

impl TestEnv {
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The API server with a real node beside it (`testenv/start.sh
    /// --node`: kubelet, containerd, scheduler, controller-manager,
    /// kube-proxy, local volumes), the image archives `images` loaded into
    /// the node's containerd. Needs root; one node runs per machine at a
    /// time (a second waits for the first to stop).
    #[must_use]
    pub fn start_with_node(images: &[PathBuf]) -> Self {
        let mut args = vec!["--node".to_owned()];
        for image in images {
            args.push("--image".to_owned());
            args.push(image.display().to_string());
        }
        Self::start_with(&args)
    }

    fn start_with(extra: &[String]) -> Self {
        let root = repo_root();
        let bin_dir = match std::env::var("STRATA_TESTENV_BIN_DIR") {
            Ok(dir) if !dir.is_empty() => dir,
            _ => {
                let out = run(
                    Command::new("bash").arg(root.join("testenv/build.sh")),
                    "testenv/build.sh",
                );
                out.lines()
                    .last()
                    .unwrap_or_else(|| panic!("testenv/build.sh printed no bin dir"))
                    .trim()
                    .to_owned()
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("strata-kube-test-")
            .tempdir()
            .expect("temp dir");
        let out = run(
            Command::new("bash")
                .arg(root.join("testenv/start.sh"))
                .arg("--dir")
                .arg(dir.path())
                .arg("--bin-dir")
                .arg(&bin_dir)
                .arg("--owner-pid")
                .arg(std::process::id().to_string())
                .args(extra),
            "testenv/start.sh",
        );
        let vars = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<HashMap<_, _>>();
        assert!(
            vars.contains_key("KUBECONFIG"),
            "start.sh printed no KUBECONFIG: {out}"
        );
        Self { dir, vars }
    }

    /// A variable `testenv/start.sh` printed, e.g. `STRATA_TESTENV_NODE_HOST_IP`.
    #[must_use]
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("testenv/start.sh printed no {name}"))
    }

    /// The kubeconfig of the cluster admin.
    #[must_use]
    pub fn kubeconfig(&self) -> &str {
        &self.vars["KUBECONFIG"]
    }

    pub async fn client(&self) -> Client {
        self.client_for(KubeConfigOptions::default()).await
    }

    /// A client as testenv's unprivileged user (no RBAC grants of its own).
    pub async fn user_client(&self) -> Client {
        self.client_for(KubeConfigOptions {
            context: Some(self.vars["STRATA_TESTENV_USER_CONTEXT"].clone()),
            ..KubeConfigOptions::default()
        })
        .await
    }

    async fn client_for(&self, options: KubeConfigOptions) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(repo_root().join("testenv/stop.sh"))
            .arg("--dir")
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("testenv/stop.sh failed: {status:?}");
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies the `PostgresInstance` CRD and waits until it is established.
pub async fn install_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = strata_kube::crd();
    api.patch(
        "postgresinstances.strata.dev",
        &PatchParams::apply("strata-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    eventually("the CRD to be established", || {
        let api = api.clone();
        async move {
            let crd = api.get("postgresinstances.strata.dev").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name }
    }))
    .unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Plays the kubelet, which testenv has none of: waits until the operator
/// created the StatefulSet `name` in `namespace`, then reports its one pod
/// ready.
pub async fn mark_statefulset_ready(client: &Client, namespace: &str, name: &str) {
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("the StatefulSet {namespace}/{name}"), || async {
        sts.get_opt(name).await.ok()?
    })
    .await;
    let ready = serde_json::json!({ "status": {
        "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
    } });
    if let Err(e) = sts
        .patch_status(name, &PatchParams::default(), &Patch::Merge(ready))
        .await
    {
        panic!("marking the StatefulSet {namespace}/{name} ready: {e}");
    }
}

/// A background task of the test, stopped when this is dropped.
pub struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Plays the credentials agent in the pod of the instance `name`, which
/// testenv cannot run (no kubelet): whenever the instance's credentials
/// Secret carries a rotation the agent has not reported yet, reports it as
/// applied, as `strata pod-agent` does once the running server uses the new
/// password (the agent itself is tested against a real PostgreSQL in
/// crates/strata/tests/pod_agent.rs). Runs until the guard is dropped.
#[must_use]
pub fn play_credentials_agent(client: &Client, namespace: &str, name: &str) -> TaskGuard {
    use strata_kube::build::{APPLIED_ROTATION_ANNOTATION, ROTATION_KEY, secret_name};
    use strata_kube::k8s_openapi::api::core::v1::Secret;
    use strata_kube::kube::ResourceExt;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secret_name(name);
    TaskGuard(tokio::spawn(async move {
        loop {
            if let Ok(Some(s)) = secrets.get_opt(&secret).await {
                let rotation = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(ROTATION_KEY))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned());
                if let Some(rotation) = rotation
                    && s.annotations().get(APPLIED_ROTATION_ANNOTATION) != Some(&rotation)
                {
                    let report = serde_json::json!({ "metadata": { "annotations": {
                        APPLIED_ROTATION_ANNOTATION: rotation,
                    } } });
                    let params = PatchParams {
                        field_manager: Some("strata-pod-agent".into()),
                        ..PatchParams::default()
                    };
                    let _ = secrets.patch(&secret, &params, &Patch::Merge(report)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}
