//! Strata as its users meet it, on testenv's real node: the images built by
//! scripts/images.sh with a given `strata` binary, loaded into the node's
//! containerd; this process's PostgreSQL (strata-testpg) as the store,
//! reachable from the pods; the Helm chart installed with
//! `deploy/helm/strata/ci/real-node-values.yaml`; the API reached through its
//! Service's ClusterIP (the host has a route to the Service range).
//!
//! Shared by the end-to-end test (crates/strata/tests/real_node.rs) and
//! `strata-bench node`, which is why [`Platform::install`] takes the binary
//! and reports how long each phase took. On a panic, dropping the platform
//! prints what the cluster saw.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_kube::k8s_openapi::api::core::v1::Service;
use strata_kube::kube::{Api, Client};

use crate::{TestEnv, repo_root};

/// The Helm release.
pub const RELEASE: &str = "strata";
/// Where the chart runs the API and the operator.
pub const SYSTEM_NAMESPACE: &str = "strata-system";
/// The platform admin and the password the chart is given.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "real-node-admin-password";
/// The store's encryption key (32 bytes, base64url), a fixed test value.
const STORE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
/// Longest wait for the API to sign the admin in after `helm install --wait`.
const SIGN_IN_TIMEOUT: Duration = Duration::from_mins(2);

/// An image scripts/images.sh built (or found in its cache).
#[derive(Debug, Clone)]
pub struct Image {
    /// `ghcr.io/strata-dev/strata:0.1.0`, ….
    pub reference: String,
    /// Its docker archive, as loaded into the node.
    pub archive: PathBuf,
}

impl Image {
    /// Bytes of the archive.
    #[must_use]
    pub fn archive_bytes(&self) -> u64 {
        std::fs::metadata(&self.archive).map_or(0, |m| m.len())
    }

    /// The image's uncompressed size as podman reports it
    /// (`podman image inspect --format '{{.Size}}'`); `None` when podman
    /// does not have it.
    #[must_use]
    pub fn size_bytes(&self) -> Option<u64> {
        let out = Command::new("podman")
            .args(["image", "inspect", "--format", "{{.Size}}", &self.reference])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// The part after the last `:`.
    #[must_use]
    pub fn tag(&self) -> &str {
        self.reference
            .rsplit_once(':')
            .map_or(self.reference.as_str(), |(_, t)| t)
    }
}

/// How long each phase of [`Platform::install`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// scripts/images.sh: a build, or only the hash check when cached.
    pub images: Duration,
    /// testenv/start.sh --node: API server, kubelet, containerd and the
    /// image archives loaded into it.
    pub node: Duration,
    /// Namespace and Secrets, `helm install --wait` and the API's first
    /// admin sign-in.
    pub chart: Duration,
}

/// The chart installed on a real node; the node stops on drop.
pub struct Platform {
    /// The API server and the node (stopped last, after the diagnostics).
    pub env: TestEnv,
    /// The cluster admin.
    pub client: Client,
    /// testenv's kubectl.
    pub kubectl: PathBuf,
    /// `http://<ClusterIP of the API Service>`.
    pub api_url: String,
    pub images: Vec<Image>,
    pub timings: Timings,
    /// Helm's cache and configuration.
    work: tempfile::TempDir,
}

impl Platform {
    /// Builds the images with `strata_binary` inside (the Dockerfile's
    /// `prebuilt` target), starts the node with them, exposes this process's
    /// PostgreSQL to the pods as the store and installs the chart; returns
    /// once the API signs the admin in. Panics, loudly, on any failure.
    pub async fn install(strata_binary: &Path) -> Self {
        let t = Instant::now();
        let images = images(strata_binary);
        let images_took = t.elapsed();

        let t = Instant::now();
        let archives: Vec<PathBuf> = images.iter().map(|i| i.archive.clone()).collect();
        let env = TestEnv::start_with_node(&archives);
        let node_took = t.elapsed();
        let client = env.client().await;
        let kubectl = PathBuf::from(env.var("STRATA_TESTENV_BIN_DIR")).join("kubectl");
        let helm = helm();

        // The store: this process's PostgreSQL, reached by the pods at the
        // host end of the node's link.
        let host_ip: Ipv4Addr = env.var("STRATA_TESTENV_NODE_HOST_IP").parse().unwrap();
        strata_testpg::expose_server(host_ip, env.var("STRATA_TESTENV_POD_CIDR"));
        let store = strata_testpg::postgres_database()
            .await
            .replace("@127.0.0.1:", &format!("@{host_ip}:"));

        let mut platform = Self {
            env,
            client,
            kubectl,
            api_url: String::new(),
            images,
            timings: Timings {
                images: images_took,
                node: node_took,
                chart: Duration::ZERO,
            },
            work: tempfile::tempdir().unwrap(),
        };
        let t = Instant::now();
        platform.kubectl(&["create", "namespace", SYSTEM_NAMESPACE]);
        for (name, key, value) in [
            ("strata-database", "url", store.as_str()),
            ("strata-admin", "password", ADMIN_PASSWORD),
            ("strata-store-key", "key", STORE_KEY),
        ] {
            platform.kubectl(&[
                "create",
                "secret",
                "generic",
                name,
                "-n",
                SYSTEM_NAMESPACE,
                &format!("--from-literal={key}={value}"),
            ]);
        }
        let helm_home = platform.work.path().join("helm");
        tool(
            Command::new(helm)
                .env("KUBECONFIG", platform.env.kubeconfig())
                .env("HELM_CACHE_HOME", helm_home.join("cache"))
                .env("HELM_CONFIG_HOME", helm_home.join("config"))
                .env("HELM_DATA_HOME", helm_home.join("data"))
                .args(["install", RELEASE])
                .arg(repo_root().join("deploy/helm/strata"))
                .args(["--namespace", SYSTEM_NAMESPACE, "--wait", "--timeout", "5m"])
                .args(["-f"])
                .arg(repo_root().join("deploy/helm/strata/ci/real-node-values.yaml"))
                .arg("--set")
                .arg(format!("image.tag={}", platform.image("/strata:").tag()))
                .arg("--set-string")
                .arg(format!(
                    "operator.images.postgres={}",
                    platform
                        .image("/postgres:")
                        .reference
                        .replace(":15", ":{version}")
                ))
                .arg("--set")
                .arg(format!(
                    "operator.images.exporter={}",
                    platform.image("/postgres-exporter:").reference
                )),
            "helm install",
        );

        let services: Api<Service> = Api::namespaced(platform.client.clone(), SYSTEM_NAMESPACE);
        let api_ip = services
            .get(&format!("{RELEASE}-api"))
            .await
            .unwrap()
            .spec
            .and_then(|s| s.cluster_ip)
            .unwrap();
        platform.api_url = format!("http://{api_ip}");
        platform.wait_for_sign_in().await;
        platform.timings.chart = t.elapsed();
        platform
    }

    /// Polls until the API signs the admin in (its pod is ready once it
    /// serves, but the Service may take a moment to route to it).
    async fn wait_for_sign_in(&self) {
        let deadline = Instant::now() + SIGN_IN_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match strata_client::Client::new(&self.api_url) {
                Ok(mut c) => match c.login(ADMIN_USER, ADMIN_PASSWORD).await {
                    Ok(()) => return,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "the API at {} did not sign the admin in within {SIGN_IN_TIMEOUT:?}: {last}",
            self.api_url
        );
    }

    /// The password of [`ADMIN_USER`].
    #[must_use]
    pub fn admin_password(&self) -> &str {
        ADMIN_PASSWORD
    }

    /// The image whose reference contains `kind` (`/strata:`, `/postgres:`,
    /// `/postgres-exporter:`).
    #[must_use]
    pub fn image(&self, kind: &str) -> &Image {
        self.images
            .iter()
            .find(|i| i.reference.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} image"))
    }

    /// Runs testenv's kubectl as the cluster admin; panics when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        tool(
            Command::new(&self.kubectl)
                .env("KUBECONFIG", self.env.kubeconfig())
                .args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// Prints what the cluster saw: every object, the events, and the
    /// description and logs of every pod in Strata's namespace and the
    /// projects' (`strata-*`). Never panics.
    pub fn dump_diagnostics(&self) {
        let kubectl = |args: &[&str]| {
            Command::new(&self.kubectl)
                .env("KUBECONFIG", self.env.kubeconfig())
                .args(args)
                .output()
                .map_or_else(
                    |e| e.to_string(),
                    |o| {
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        )
                    },
                )
        };
        eprintln!(
            "--- kubectl get all,pvc,pv -A -o wide\n{}",
            kubectl(&["get", "all,pvc,pv,postgresinstances", "-A", "-o", "wide"])
        );
        eprintln!(
            "--- events\n{}",
            kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"])
        );
        let namespaces = kubectl(&["get", "namespaces", "-o", "name"]);
        let namespaces = namespaces
            .lines()
            .filter_map(|l| l.strip_prefix("namespace/"))
            .filter(|n| n.starts_with("strata-"));
        for namespace in namespaces {
            eprintln!(
                "--- pods of {namespace}\n{}",
                kubectl(&["describe", "pods", "-n", namespace])
            );
            let pods = kubectl(&["get", "pods", "-n", namespace, "-o", "name"]);
            for pod in pods.lines().filter(|l| l.starts_with("pod/")) {
                eprintln!(
                    "--- logs of {namespace}/{pod}\n{}",
                    kubectl(&[
                        "logs",
                        "-n",
                        namespace,
                        pod,
                        "--all-containers",
                        "--prefix",
                        "--tail",
                        "60"
                    ])
                );
            }
        }
    }
}

impl Drop for Platform {
    /// A failed test shows what the cluster saw (the node stops after).
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_diagnostics();
        }
    }
}

/// Runs a command of the repository's tooling; its last stdout lines are
/// its answer.
fn tool(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The images, from the lines `<image-ref> <archive-path>` of
/// scripts/images.sh's answer; the strata image holds `strata_binary`.
fn images(strata_binary: &Path) -> Vec<Image> {
    let out = tool(
        Command::new("bash")
            .arg(repo_root().join("scripts/images.sh"))
            .arg("--strata-binary")
            .arg(strata_binary),
        "scripts/images.sh",
    );
    let images: Vec<Image> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(reference, archive)| Image {
            reference: reference.to_owned(),
            archive: PathBuf::from(archive.trim()),
        })
        .filter(|i| i.archive.is_file())
        .collect();
    for kind in ["/strata:", "/postgres:", "/postgres-exporter:"] {
        assert!(
            images.iter().any(|i| i.reference.contains(kind)),
            "scripts/images.sh built no {kind} image:\n{out}"
        );
    }
    images
}

/// Helm, fetched and cached by deploy/test.sh.
fn helm() -> PathBuf {
    let out = tool(
        Command::new("bash")
            .arg(repo_root().join("deploy/test.sh"))
            .arg("--helm-path"),
        "deploy/test.sh --helm-path",
    );
    PathBuf::from(out.lines().last().unwrap().trim())
}
