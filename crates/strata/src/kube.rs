//! `strata operator`, `strata api --runtime kubernetes` and `strata crd`: the
//! Kubernetes side, wired from strata-kube, the store and the API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use clap::Args;
use strata_api::{AppState, Services, bootstrap, metrics::HttpMetrics};
use strata_core::Secret;
use strata_core::events::NewServiceEvent;
use strata_kube::{KubeRuntime, OperatorConfig, ServiceEventSink};
use strata_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::serve::{bind, init_logging, serve_until_signal, shutdown_signal};

#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "STRATA_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the Lease that elects the one operator that reconciles.
    #[arg(long, env = "POD_NAMESPACE", default_value = "strata-system")]
    lease_namespace: String,
    /// Address of /metrics and /healthz.
    #[arg(long, env = "STRATA_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// Store for service events (postgres://… shared with the API); none when omitted.
    #[arg(long, env = "STRATA_DATABASE_URL")]
    database_url: Option<String>,
    /// Log format: json or text.
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// Image of the credentials agent in every instance's pod (`strata
    /// pod-agent`): the operator's own image [default: this version's].
    #[arg(long, env = "STRATA_AGENT_IMAGE")]
    agent_image: Option<String>,
    /// PostgreSQL image of an instance whose spec names none; `{version}`
    /// becomes the major version. Any image with the server binaries under
    /// /usr/lib/postgresql/<major>/bin serves [default: the official `postgres:{version}`].
    #[arg(long, env = "STRATA_POSTGRES_IMAGE")]
    postgres_image: Option<String>,
    /// Image of the metrics exporter beside each server (postgres_exporter).
    #[arg(long, env = "STRATA_EXPORTER_IMAGE")]
    exporter_image: Option<String>,
    /// The installation's CA Secret, created once when missing.
    #[arg(long, env = "STRATA_CA_SECRET", default_value = strata_kube::tls::DEFAULT_CA_SECRET)]
    ca_secret: String,
    /// Namespace of the CA Secret [default: --lease-namespace, the operator's own].
    #[arg(long, env = "STRATA_CA_NAMESPACE")]
    ca_namespace: Option<String>,
    /// The Strata API's ServiceAccount (NAMESPACE/NAME): each instance lets it
    /// read its credentials and TLS Secrets, so the API needs no Secret
    /// access of its own [default: none granted].
    #[arg(long, env = "STRATA_API_SERVICE_ACCOUNT")]
    api_service_account: Option<strata_kube::build::ServiceAccountRef>,
    /// The cluster's DNS domain: instance endpoints and the names their
    /// certificates carry are `<name>.<namespace>.svc.<domain>`.
    #[arg(long, env = "STRATA_CLUSTER_DOMAIN", default_value = "cluster.local", value_parser = cluster_domain)]
    cluster_domain: String,
    /// Project namespaces are named `<prefix><project>`: the same value as
    /// `strata api --namespace-prefix` (service events name the project).
    #[arg(long, env = "STRATA_NAMESPACE_PREFIX", default_value = "strata-", value_parser = namespace_prefix)]
    namespace_prefix: String,
    /// The namespace whose pods may scrape each instance's metrics port
    /// (9187), e.g. Prometheus' [default: none, no one may].
    #[arg(long, env = "STRATA_MONITORING_NAMESPACE", value_parser = namespace_name)]
    monitoring_namespace: Option<String>,
}

impl OperatorArgs {
    /// Everything the flags set in the operator's configuration.
    fn configure(&self, config: &mut OperatorConfig) {
        config.namespace.clone_from(&self.namespace);
        if let Some(image) = &self.agent_image {
            config.build.agent_image.clone_from(image);
        }
        if let Some(image) = &self.postgres_image {
            config.build.postgres_image.clone_from(image);
        }
        if let Some(image) = &self.exporter_image {
            config.build.exporter_image.clone_from(image);
        }
        config
            .build
            .api_service_account
            .clone_from(&self.api_service_account);
        config.build.cluster_domain.clone_from(&self.cluster_domain);
        config.namespace_prefix.clone_from(&self.namespace_prefix);
        config
            .build
            .monitoring_namespace
            .clone_from(&self.monitoring_namespace);
        config.ca_secret.name.clone_from(&self.ca_secret);
        if let Some(ns) = &self.ca_namespace {
            config.ca_secret.namespace.clone_from(ns);
        }
    }
}

/// A PostgreSQL major the Kubernetes runtime supports (`--postgres-versions`).
fn postgres_version(s: &str) -> Result<u32, String> {
    if strata_kube::crd::SUPPORTED_VERSIONS.contains(&s) {
        s.parse().map_err(|e| format!("{s}: {e}"))
    } else {
        Err(format!(
            "{s} is not a supported major version (supported: {})",
            strata_kube::crd::SUPPORTED_VERSIONS.join(", ")
        ))
    }
}

/// A DNS name (`cluster.local`, `k8s.example.internal`); a trailing dot is dropped.
fn cluster_domain(s: &str) -> Result<String, String> {
    let domain = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() <= 253 && domain.split('.').all(label_ok) {
        Ok(domain.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a DNS domain (lowercase labels separated by dots)"
        ))
    }
}

/// A namespace name (a DNS label).
fn namespace_name(s: &str) -> Result<String, String> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a namespace name (a DNS label: lowercase letters, digits and '-')"
        ))
    }
}

/// The start of a namespace name: lowercase letters, digits and '-', not
/// starting with '-', short enough to leave room for a project name.
fn namespace_prefix(s: &str) -> Result<String, String> {
    let ok = s.len() <= 30
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} cannot start a namespace name: at most 30 lowercase letters, digits or '-', not starting with '-'"
        ))
    }
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Which runtime runs the databases: only `kubernetes` here (`strata serve` is the local one).
    #[arg(long, default_value = "kubernetes", value_parser = ["kubernetes"])]
    runtime: String,
    #[arg(long, env = "STRATA_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    #[arg(long, env = "STRATA_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// The shared store (postgres://…; sqlite:// for a single replica).
    #[arg(long, env = "STRATA_DATABASE_URL")]
    database_url: String,
    /// The `iss` of tokens Strata issues (the public URL of the API).
    #[arg(long, env = "STRATA_ISSUER")]
    issuer: String,
    /// Project namespaces are named `<prefix><project>` (the operator takes
    /// the same value).
    #[arg(long, env = "STRATA_NAMESPACE_PREFIX", default_value = "strata-", value_parser = namespace_prefix)]
    namespace_prefix: String,
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// File holding the key that seals the store's signing keys (base64url of
    /// 32 bytes, e.g. a mounted Secret); every replica needs the same one.
    /// Required unless --allow-unsealed-keys.
    #[arg(long, env = "STRATA_STORE_KEY_FILE")]
    store_key_file: Option<std::path::PathBuf>,
    /// Start without --store-key-file: the signing keys stay in clear in
    /// the store, and anyone with a copy of it can sign tokens.
    #[arg(
        long,
        env = "STRATA_ALLOW_UNSEALED_KEYS",
        conflicts_with = "store_key_file"
    )]
    allow_unsealed_keys: bool,
    /// PostgreSQL major versions offered, comma-separated: those the
    /// operator's PostgreSQL image has (`--postgres-image`); the newest that
    /// is not deprecated is the default [default: every supported one].
    #[arg(long, env = "STRATA_POSTGRES_VERSIONS", value_delimiter = ',', value_parser = postgres_version)]
    postgres_versions: Vec<u32>,
    #[command(flatten)]
    auth: crate::auth_args::AuthArgs,
}

/// Service events of the operator, written to the store the API reads.
struct StoreSink(Store);

#[async_trait]
impl ServiceEventSink for StoreSink {
    async fn record(&self, instance: &strata_core::Instance, event: NewServiceEvent) {
        let result = async {
            let mut tx = self.0.begin().await?;
            tx.add_event(instance, event).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(instance = %instance.name, error = %e, "cannot record a service event");
        }
    }
}

async fn serve_metrics(
    addr: SocketAddr,
    registry: prometheus_client::registry::Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

pub async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let mut config = OperatorConfig::new(client, &args.lease_namespace);
    args.configure(&mut config);
    if let Some(url) = &args.database_url {
        config.service_events = Some(Arc::new(StoreSink(
            Store::open(url).await.context("opening the store")?,
        )));
    }
    let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let operator =
        strata_kube::Operator::new(config, registry.sub_registry_with_prefix("operator"));
    let operator = operator.run(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    let metrics = serve_metrics(args.admin_listen, registry, shutdown.clone());
    let (op, m) = tokio::join!(operator, metrics);
    shutdown.cancel();
    op?;
    m
}

/// Why `strata api` will not start without a store key, and what to do.
const NO_STORE_KEY: &str = "no store key: without --store-key-file (STRATA_STORE_KEY_FILE) the \
private halves of the token signing keys stay in clear in the store, so anyone with a copy of \
the database (a backup, a dump) can sign tokens as any user, admins included. Create a key once \
(32 random bytes, base64url: openssl rand 32 | basenc --base64url), give every replica the same \
file (e.g. a mounted Secret) and pass --store-key-file FILE; or pass --allow-unsealed-keys \
(STRATA_ALLOW_UNSEALED_KEYS=true) to keep the keys in clear";

pub async fn api(args: ApiArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    if args.store_key_file.is_none() && !args.allow_unsealed_keys {
        anyhow::bail!(NO_STORE_KEY);
    }
    if args.allow_unsealed_keys {
        tracing::warn!(
            "--allow-unsealed-keys: the signing keys stay in clear in the store; pass --store-key-file to seal them"
        );
    }
    let mut store = Store::open(&args.database_url)
        .await
        .context("opening the store")?;
    if let Some(path) = &args.store_key_file {
        store = store.with_sealing_key(strata_store::seal::read_key_file(path)?);
        store
            .seal_existing()
            .await
            .context("sealing the store's secrets")?;
    }
    let admin_password = std::env::var("STRATA_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .map(Secret::new);
    if admin_password.is_none() && store.user_by_name(bootstrap::ADMIN_USER).await?.is_none() {
        anyhow::bail!(
            "set STRATA_ADMIN_PASSWORD (from a Secret) for the first start of a stateless API"
        );
    }
    let tmp = tempfile::tempdir()?;
    bootstrap::bootstrap(&store, tmp.path(), admin_password)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e:?}"))?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let mut runtime = KubeRuntime::new(client, &args.namespace_prefix);
    if !args.postgres_versions.is_empty() {
        runtime = runtime.offering(args.postgres_versions.clone());
    }
    let shutdown = CancellationToken::new();
    // Live events for `?follow=true`: stops with the server.
    let watch = tokio::spawn(runtime.watch_events(shutdown.clone().cancelled_owned()));
    let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
    let auth = args.auth.load(&store, args.issuer.clone()).await?;
    let state = AppState::new(Services {
        runtime: Arc::new(runtime),
        store: store.clone(),
        auth,
        metrics: HttpMetrics::register(&mut registry),
        sse_keepalive: Duration::from_secs(15),
        shutdown: shutdown.clone(),
        trusted_proxies: args.auth.trusted_proxies(),
    });
    let (listener, admin_listener) = bind(args.listen, args.admin_listen).await?;
    let pruning = store.spawn_pruning(
        strata_store::prune::PRUNE_INTERVAL,
        shutdown.clone().cancelled_owned(),
    );
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        runtime = %args.runtime,
        "Strata API is serving"
    );
    eprintln!(
        "Strata API is serving on http://{} (metrics: http://{}/metrics)",
        listener.local_addr()?,
        admin_listener.local_addr()?
    );
    let served = serve_until_signal(state, registry, listener, admin_listener).await;
    shutdown.cancel();
    if tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .is_err()
    {
        tracing::warn!("the event watch did not stop in time");
    }
    let _ = pruning.await;
    served?;
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser;
    use strata_kube::{PostgresInstance, PostgresInstanceSpec, build, tls};

    use super::*;

    #[derive(Parser)]
    struct Operator {
        #[command(flatten)]
        args: OperatorArgs,
    }

    fn configured(flags: &[&str]) -> OperatorConfig {
        let args =
            Operator::try_parse_from(std::iter::once("operator").chain(flags.iter().copied()))
                .unwrap()
                .args;
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let mut config = OperatorConfig::new(client, "strata-system");
        args.configure(&mut config);
        config
    }

    #[tokio::test]
    async fn cluster_domain_and_namespace_prefix_reach_the_operator() {
        let config = configured(&[
            "--cluster-domain=k8s.example.internal.",
            "--namespace-prefix=pg-",
        ]);
        assert_eq!(config.build.cluster_domain, "k8s.example.internal");
        assert_eq!(config.namespace_prefix, "pg-");
        // The names the builder gives follow: endpoint and certificate.
        let mut instance = PostgresInstance::new(
            "orders",
            PostgresInstanceSpec {
                version: "16".into(),
                plan: "small".into(),
                storage_gb: 20,
                acl: vec![],
                image: None,
                storage_class: None,
                external_access: false,
            },
        );
        instance.metadata.namespace = Some("pg-shop".into());
        let valid = build::validate(&instance, &config.build).unwrap();
        let host = "orders.pg-shop.svc.k8s.example.internal";
        assert_eq!(build::endpoint(&valid).host, host);
        assert!(tls::server_hosts(&valid).contains(&host.to_owned()));

        let defaults = configured(&[]);
        assert_eq!(defaults.build.cluster_domain, "cluster.local");
        assert_eq!(defaults.namespace_prefix, "strata-");
    }

    #[tokio::test]
    async fn the_monitoring_namespace_reaches_the_builder() {
        let config = configured(&["--monitoring-namespace=monitoring"]);
        assert_eq!(
            config.build.monitoring_namespace.as_deref(),
            Some("monitoring")
        );
        assert_eq!(configured(&[]).build.monitoring_namespace, None);
        assert!(namespace_name("Monitoring").is_err() && namespace_name("").is_err());
    }

    #[test]
    fn bad_domains_and_prefixes_are_refused() {
        for bad in ["", "Cluster.Local", "a..b", "-x.local", "x_y.local"] {
            assert!(cluster_domain(bad).is_err(), "{bad:?}");
        }
        for bad in ["-x", "Strata-", "a/b", &"p".repeat(31)] {
            assert!(namespace_prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(namespace_prefix("").unwrap(), "");
        assert!(Operator::try_parse_from(["operator", "--cluster-domain=EXAMPLE"]).is_err());
    }
}
