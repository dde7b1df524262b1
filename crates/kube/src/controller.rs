//! The I/O half of the reconcile: read what the pure steps need, apply what
//! they built (server-side apply, forced, field manager `strata-operator`),
//! write the status, publish Events; plus the finalizer, per-object backoff,
//! leader election and graceful shutdown.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_core::events::NewServiceEvent;
use strata_core::{EventKind, Instance, Phase, ProjectName};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::build::{
    self, APPLIED_ROTATION_ANNOTATION, BuildConfig, Desired, FIELD_MANAGER, INSTANCE_LABEL,
    Observed, Outcome, ROTATION_ANNOTATION, ValidSpec,
};
use crate::crd::{FINALIZER, PostgresInstance, PostgresInstanceStatus};
use crate::metrics::Metrics;
use crate::runtime::to_instance;
use crate::settled::{self, Applied, Kind, Related, Settled, Versions};
use crate::tls::{self, CaSecretRef};
use strata_core::tls::{CertifiedKey, TlsError};

/// Everything that can make a reconcile fail. `reason()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the resource has no namespace")]
    MissingNamespace,
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leader election task: {0}")]
    LeaseTask(String),
    #[error("certificates: {0}")]
    Tls(#[from] TlsError),
    #[error("the CA Secret {0} exists but holds no readable certificate and key")]
    UnreadableCa(String),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        fn kube_reason(e: &kube::Error) -> &'static str {
            match e {
                kube::Error::Api(s) if s.code == 403 => "forbidden",
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 422 => "invalid",
                kube::Error::Api(_) => "api_error",
                _ => "kube_client",
            }
        }
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(e) => kube_reason(e),
            Error::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.reason(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => kube_reason(e),
                _ => "finalizer",
            },
            Error::MissingNamespace => "missing_namespace",
            Error::Lease(_) | Error::LeaseTask(_) => "lease",
            Error::Tls(_) | Error::UnreadableCa(_) => "tls",
        }
    }

    /// Whether only a change of the spec can help: the API server refused
    /// the objects built from it as invalid (400, 422). Everything else
    /// passes by itself or by someone fixing the installation (a conflict,
    /// throttling, a server error, a timeout, missing permissions, a broken
    /// CA Secret) and is retried with backoff.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 400 || s.code == 422)
    }

    /// What the `Reconciled` condition says: the API server's own message
    /// when it answered, else the error.
    pub fn condition_message(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("{} (HTTP {})", s.message, s.code),
            other => other.to_string(),
        }
    }

    /// The reason the `Reconciled` condition gives for this error.
    pub fn condition_reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) => match s.code {
                400 | 422 => "InvalidObject",
                401 | 403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                429 => "TooManyRequests",
                500..=599 => "ServerError",
                _ => "ApiError",
            },
            Error::Kube(_) => "Unreachable",
            Error::Tls(_) | Error::UnreadableCa(_) => "CertificateError",
            Error::Finalizer(_) => "FinalizerError",
            Error::MissingNamespace => "MissingNamespace",
            Error::Lease(_) | Error::LeaseTask(_) => "LeaseError",
        }
    }
}

/// Where the operator records service events (phase changes, credential
/// rotations, applied changes, failures) for the Strata API's per-instance
/// log; the binary implements it on the Strata store.
#[async_trait::async_trait]
pub trait ServiceEventSink: Send + Sync + 'static {
    /// `instance` is the API's view of the resource (id = the resource's uid,
    /// project = the namespace without `OperatorConfig::namespace_prefix`).
    async fn record(&self, instance: &Instance, event: NewServiceEvent);
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per operator process (the pod name in a cluster).
    pub identity: String,
    pub duration_seconds: u64,
    pub grace_seconds: u64,
}

/// How to run the operator.
#[derive(Clone)]
pub struct OperatorConfig {
    pub client: Client,
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub build: BuildConfig,
    pub lease: LeaseConfig,
    /// Requeue interval of a healthy instance.
    pub resync: Duration,
    /// Longest delay between retries of a failing instance.
    pub max_backoff: Duration,
    /// Service events go here too when set.
    pub service_events: Option<Arc<dyn ServiceEventSink>>,
    /// Namespaces of projects are `<prefix><project>` (see `KubeRuntime`).
    pub namespace_prefix: String,
    /// The installation's CA Secret, created once when missing.
    pub ca_secret: CaSecretRef,
    /// Reconciles running at once. Bounded so that a burst of new instances
    /// queues instead of holding a connection and its buffers each.
    pub concurrency: u16,
}

impl OperatorConfig {
    /// Defaults: all namespaces, Lease `strata-operator` in `lease_namespace`,
    /// identity from `$POD_NAME` or a random one, 15 s lease, 5 min resync.
    pub fn new(client: Client, lease_namespace: &str) -> Self {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("strata-operator-{}", uuid::Uuid::new_v4()));
        Self {
            client,
            namespace: None,
            build: BuildConfig::default(),
            lease: LeaseConfig {
                name: "strata-operator".into(),
                namespace: lease_namespace.into(),
                identity,
                duration_seconds: 15,
                grace_seconds: 5,
            },
            resync: Duration::from_mins(5),
            max_backoff: Duration::from_mins(5),
            service_events: None,
            namespace_prefix: "strata-".into(),
            ca_secret: CaSecretRef {
                name: tls::DEFAULT_CA_SECRET.into(),
                namespace: lease_namespace.into(),
            },
            concurrency: 16,
        }
    }
}

struct Context {
    client: Client,
    build: BuildConfig,
    metrics: Arc<Metrics>,
    reporter: Reporter,
    resync: Duration,
    max_backoff: Duration,
    failures: Mutex<HashMap<String, u32>>,
    sink: Option<Arc<dyn ServiceEventSink>>,
    namespace_prefix: String,
    ca_secret: CaSecretRef,
    /// The CA, read (or created) once per process.
    ca: tokio::sync::OnceCell<CertifiedKey>,
    /// The watch caches of the owned kinds, while the controller runs.
    caches: std::sync::RwLock<Option<Caches>>,
    /// Per instance: what its last full pass left, and when.
    settled: Mutex<HashMap<String, (Settled, Instant)>>,
}

impl Context {
    /// Whether the instance and its objects are as its last full pass left
    /// them (see `settled`); then the time until its next full pass.
    fn unchanged(&self, instance: &PostgresInstance) -> Option<Duration> {
        let caches = self.caches.read().ok()?;
        let caches = caches.as_ref()?;
        let namespace = instance.namespace()?;
        let settled = self.settled.lock().ok()?;
        let (record, at) = settled.get(&key(instance))?;
        let wait = settled::next_full_pass(at.elapsed(), self.resync)?;
        record
            .holds(instance.resource_version().as_deref(), |kind, name| {
                caches.version(kind, &namespace, name)
            })
            .then_some(wait)
    }

    fn remember(&self, instance: &PostgresInstance, record: Option<Settled>) {
        if let Ok(mut settled) = self.settled.lock() {
            match record {
                Some(record) => settled.insert(key(instance), (record, Instant::now())),
                None => settled.remove(&key(instance)),
            };
        }
    }

    fn version(&self, kind: Kind, namespace: &str, name: &str) -> Option<String> {
        let caches = self.caches.read().ok()?;
        caches.as_ref()?.version(kind, namespace, name)
    }
}

/// The controller's watch caches of the objects it applies: metadata only,
/// and of that only what finding an object's owner and version needs.
struct Caches {
    secrets: Store<PartialObjectMeta<Secret>>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    services: Store<PartialObjectMeta<Service>>,
    stateful_sets: Store<PartialObjectMeta<StatefulSet>>,
    pdbs: Store<PartialObjectMeta<PodDisruptionBudget>>,
    network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    roles: Store<PartialObjectMeta<Role>>,
    role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    /// Read, not applied: a change of a pod (the kubelet's report) or a
    /// claim (a resize) can change what the status says.
    pods: Store<PartialObjectMeta<Pod>>,
    claims: Store<PartialObjectMeta<PersistentVolumeClaim>>,
}

impl Caches {
    fn version(&self, kind: Kind, namespace: &str, name: &str) -> Option<String> {
        fn in_store<K>(store: &Store<PartialObjectMeta<K>>, ns: &str, name: &str) -> Option<String>
        where
            K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Send + Sync + 'static,
        {
            store
                .get(&ObjectRef::new(name).within(ns))
                .and_then(|o| o.metadata.resource_version.clone())
        }
        match kind {
            Kind::Secret => in_store(&self.secrets, namespace, name),
            Kind::ConfigMap => in_store(&self.config_maps, namespace, name),
            Kind::Service => in_store(&self.services, namespace, name),
            Kind::StatefulSet => in_store(&self.stateful_sets, namespace, name),
            Kind::PodDisruptionBudget => in_store(&self.pdbs, namespace, name),
            Kind::NetworkPolicy => in_store(&self.network_policies, namespace, name),
            Kind::ServiceAccount => in_store(&self.service_accounts, namespace, name),
            Kind::Role => in_store(&self.roles, namespace, name),
            Kind::RoleBinding => in_store(&self.role_bindings, namespace, name),
            Kind::Pod => in_store(&self.pods, namespace, name),
            Kind::PersistentVolumeClaim => in_store(&self.claims, namespace, name),
        }
    }
}

/// Which labels a metadata watch keeps of each object.
#[derive(Clone, Copy)]
enum Keep {
    /// None: an owned object wakes its instance through its owner reference.
    Nothing,
    /// The instance label: pods and claims are owned by the StatefulSet,
    /// not the instance, and name it by that label.
    InstanceLabel,
}

/// A metadata watch of one kind labelled as ours, reflected into a cache;
/// the stream is what wakes the instance the objects belong to.
fn metadata_watch<K>(
    client: &Client,
    ns: Option<&str>,
    keep: Keep,
) -> (
    Store<PartialObjectMeta<K>>,
    impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let config =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    // An Api of PartialObjectMeta asks for metadata only.
    let stream = watcher(api::<PartialObjectMeta<K>>(client, ns), config)
        .default_backoff()
        .modify(move |object: &mut PartialObjectMeta<K>| {
            // Kept: name, namespace, owner references, resourceVersion, and
            // what `keep` says of the labels.
            object.metadata.managed_fields = None;
            object.metadata.annotations = None;
            object.metadata.labels = match keep {
                Keep::Nothing => None,
                Keep::InstanceLabel => object
                    .labels()
                    .get(INSTANCE_LABEL)
                    .cloned()
                    .map(|i| std::collections::BTreeMap::from([(INSTANCE_LABEL.into(), i)])),
            };
        })
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// The instance a pod or claim belongs to.
fn instance_ref<K: Resource>(object: &PartialObjectMeta<K>) -> Option<ObjectRef<PostgresInstance>> {
    let name = build::instance_of(object.metadata.labels.as_ref())?;
    Some(ObjectRef::new(name).within(&object.namespace()?))
}

/// A configured operator whose metrics are registered; `run` starts it.
pub struct Operator {
    config: OperatorConfig,
    metrics: Arc<Metrics>,
}

impl Operator {
    /// Registers the operator's metrics (`strata_operator_*`) into `registry`.
    pub fn new(config: OperatorConfig, registry: &mut Registry) -> Self {
        Self {
            config,
            metrics: Arc::new(Metrics::register(registry)),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until `shutdown` completes: waits for the Lease, reconciles while
    /// holding it, stops reconciling when it is lost, and on shutdown lets
    /// running reconciles finish and releases the Lease.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let config = self.config;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_task = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let lease = &config.lease;
        let manager = LeaseManagerBuilder::new(config.client.clone(), &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_duration(lease.duration_seconds)
            .with_grace(lease.grace_seconds)
            .with_field_manager(format!("{FIELD_MANAGER}-lease"))
            .build()
            .await?;
        let (mut leader, lease_task) = manager.watch().await;
        let ctx = Arc::new(Context {
            client: config.client.clone(),
            build: config.build.clone(),
            metrics: Arc::clone(&self.metrics),
            reporter: Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(lease.identity.clone()),
            },
            resync: config.resync,
            max_backoff: config.max_backoff,
            failures: Mutex::new(HashMap::new()),
            sink: config.service_events.clone(),
            namespace_prefix: config.namespace_prefix.clone(),
            ca_secret: config.ca_secret.clone(),
            ca: tokio::sync::OnceCell::new(),
            caches: std::sync::RwLock::new(None),
            settled: Mutex::new(HashMap::new()),
        });
        let mut stopping = stop_rx.clone();
        loop {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => break,
                acquired = leader.wait_for(|l| *l) => {
                    if acquired.is_err() {
                        break;
                    }
                }
            }
            info!(identity = %lease.identity, "acquired the lease; reconciling");
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let mut lost = leader.clone();
            let mut stop = stop_rx.clone();
            let watchdog = tokio::spawn(async move {
                tokio::select! {
                    _ = lost.wait_for(|l| !*l) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                let _ = tx.send(());
            });
            run_controller(&config, Arc::clone(&ctx), rx.map(|_| ())).await;
            watchdog.abort();
            if *stop_rx.borrow() {
                break;
            }
            warn!(identity = %lease.identity, "lost the lease; stopped reconciling");
        }
        stop_task.abort();
        // Dropping the receiver makes the lease task release the Lease.
        drop(leader);
        match lease_task.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(Error::LeaseTask(e.to_string())),
        }
    }
}

/// Builds the operator, registers its metrics and runs it until `shutdown`.
pub async fn run_operator(
    config: OperatorConfig,
    registry: &mut Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Operator::new(config, registry).run(shutdown).await
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run_controller(
    config: &OperatorConfig,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = config.namespace.as_deref();
    let client = &config.client;
    let (secrets, secret_events) = metadata_watch::<Secret>(client, ns, Keep::Nothing);
    let (config_maps, config_map_events) = metadata_watch::<ConfigMap>(client, ns, Keep::Nothing);
    let (services, service_events) = metadata_watch::<Service>(client, ns, Keep::Nothing);
    let (stateful_sets, stateful_set_events) =
        metadata_watch::<StatefulSet>(client, ns, Keep::Nothing);
    let (pdbs, pdb_events) = metadata_watch::<PodDisruptionBudget>(client, ns, Keep::Nothing);
    let (network_policies, network_policy_events) =
        metadata_watch::<NetworkPolicy>(client, ns, Keep::Nothing);
    let (service_accounts, service_account_events) =
        metadata_watch::<ServiceAccount>(client, ns, Keep::Nothing);
    let (roles, role_events) = metadata_watch::<Role>(client, ns, Keep::Nothing);
    let (role_bindings, role_binding_events) =
        metadata_watch::<RoleBinding>(client, ns, Keep::Nothing);
    let (pods, pod_events) = metadata_watch::<Pod>(client, ns, Keep::InstanceLabel);
    let (claims, claim_events) =
        metadata_watch::<PersistentVolumeClaim>(client, ns, Keep::InstanceLabel);
    // A new term starts with empty caches: every instance gets a full pass.
    if let Ok(mut caches) = ctx.caches.write() {
        *caches = Some(Caches {
            secrets,
            config_maps,
            services,
            stateful_sets,
            pdbs,
            network_policies,
            service_accounts,
            roles,
            role_bindings,
            pods,
            claims,
        });
    }
    if let Ok(mut settled) = ctx.settled.lock() {
        settled.clear();
    }
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(config.concurrency);
    Controller::new(
        api::<PostgresInstance>(client, ns),
        watcher::Config::default(),
    )
    .owns_stream(secret_events)
    .owns_stream(config_map_events)
    .owns_stream(service_events)
    .owns_stream(stateful_set_events)
    .owns_stream(pdb_events)
    .owns_stream(network_policy_events)
    .owns_stream(service_account_events)
    .owns_stream(role_events)
    .owns_stream(role_binding_events)
    .watches_stream(pod_events, |pod| instance_ref(&pod))
    .watches_stream(claim_events, |claim| instance_ref(&claim))
    .with_config(controller_config)
    .graceful_shutdown_on(stop)
    .run(reconcile, error_policy, Arc::clone(&ctx))
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => debug!(instance = %obj, "reconciled"),
            Err(e) => debug!(error = %e, "reconcile error"),
        }
    })
    .await;
    if let Ok(mut caches) = ctx.caches.write() {
        *caches = None;
    }
}

fn key(instance: &PostgresInstance) -> String {
    format!(
        "{}/{}",
        instance.namespace().unwrap_or_default(),
        instance.name_any()
    )
}

async fn reconcile(instance: Arc<PostgresInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconcile_runs.inc();
    let namespace = instance.namespace().ok_or(Error::MissingNamespace)?;
    let instances: Api<PostgresInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    let id = key(&instance);
    let result = Box::pin(finalizer(&instances, FINALIZER, instance, |event| async {
        match event {
            Finalizer::Apply(instance) => Box::pin(apply(&instance, &ctx)).await,
            Finalizer::Cleanup(instance) => Box::pin(cleanup(&instance, &ctx)).await,
        }
    }))
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&id);
    }
    result
}

#[allow(clippy::needless_pass_by_value)] // the signature kube's Controller::run expects
fn error_policy(instance: Arc<PostgresInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.reason());
    let attempts = ctx.failures.lock().map_or(1, |mut failures| {
        let n = failures.entry(key(&instance)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    });
    // With jitter: instances that failed together (an API server outage)
    // do not all come back at the same instant.
    let delay = strata_core::backoff(attempts, Duration::from_millis(500), ctx.max_backoff);
    warn!(instance = %key(&instance), %error, attempts, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

async fn publish(
    ctx: &Context,
    instance: &PostgresInstance,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    // A recorder per occurrence: kube's Recorder folds a repeat of the same
    // reason into the first Event's series (keeping the first note), and the
    // operator's Events are occurrences (a new generation applied, another
    // rotation), each of which readers and the live stream should see.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&event, &instance.object_ref(&())).await {
        warn!(instance = %key(instance), error = %e, "could not publish an event");
    }
}

async fn record(ctx: &Context, instance: &PostgresInstance, event: NewServiceEvent) {
    let Some(sink) = &ctx.sink else {
        return;
    };
    let ns = instance.namespace().unwrap_or_default();
    let project = ns
        .strip_prefix(ctx.namespace_prefix.as_str())
        .unwrap_or(&ns);
    if let Ok(project) = ProjectName::parse(project) {
        sink.record(&to_instance(&project, instance), event).await;
    } else {
        debug!(namespace = %ns, "namespace names no project; service event not recorded");
    }
}

/// Writes the status when it differs; returns the instance as the write
/// left it (`None` when nothing was written).
async fn write_status(
    ctx: &Context,
    instance: &PostgresInstance,
    status: PostgresInstanceStatus,
) -> Result<Option<PostgresInstance>, Error> {
    let phase = status.phase.as_deref().and_then(Phase::parse);
    ctx.metrics.set_phase(&key(instance), phase);
    if instance.status.as_ref() == Some(&status) {
        return Ok(None);
    }
    let mut previous = instance.status.as_ref().and_then(|s| s.phase.clone());
    let api: Api<PostgresInstance> = Api::namespaced(
        ctx.client.clone(),
        &instance.namespace().ok_or(Error::MissingNamespace)?,
    );
    if previous != status.phase {
        // The watch cache may not show our own last status write yet: ask the
        // server, so that one transition is announced once.
        if let Some(fresh) = api.get_opt(&instance.name_any()).await? {
            previous = fresh.status.and_then(|s| s.phase);
        }
    }
    // Server-side apply: a field the new status leaves out (the endpoint of
    // an instance that stopped serving) is removed, which a merge patch
    // cannot do.
    let patch = serde_json::json!({
        "apiVersion": PostgresInstance::api_version(&()),
        "kind": PostgresInstance::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &instance.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    for a in build::announcements(instance.status.as_ref(), &status) {
        let type_ = if a.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, instance, type_, &a.reason, a.note).await;
    }
    if previous != status.phase {
        let phase = status.phase.clone().unwrap_or_default();
        let type_ = if phase == Phase::Failed.as_str() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = status.message.clone().unwrap_or_default();
        publish(ctx, instance, type_, &phase, note.clone()).await;
        if let Some(to) = Phase::parse(&phase) {
            let from = previous.as_deref().and_then(Phase::parse);
            record(ctx, instance, NewServiceEvent::phase(from, to, note)).await;
        }
    }
    Ok(Some(written))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc())
}

async fn observe(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(Observed, Option<StatefulSet>), Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&build::secret_name(name))
        .await?;
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?;
    let password = secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("password"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|p| !p.is_empty());
    let monitor_password = secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(build::MONITOR_PASSWORD_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|p| !p.is_empty())
        .map(strata_core::Secret::new);
    let rotation = secret
        .as_ref()
        .and_then(|s| s.annotations().get(ROTATION_ANNOTATION).cloned());
    let applied_rotation = secret
        .as_ref()
        .and_then(|s| s.annotations().get(APPLIED_ROTATION_ANNOTATION).cloned());
    let claim_template = sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|t| t.first())
        .and_then(|c| c.spec.as_ref());
    let claim_storage = claim_template
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned());
    let claim_storage_class = claim_template.map(|s| s.storage_class_name.clone());
    Ok((
        Observed {
            password,
            monitor_password,
            rotation,
            applied_rotation,
            claim_storage,
            claim_storage_class,
        },
        sts,
    ))
}

/// The instance's pods and claims as a full pass read them.
struct Seen {
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
    resize: build::ResizeAttempt,
}

/// One full pass's applies, with the versions each object was seen at and
/// left at (what `settled` remembers).
struct Pass<'a> {
    ctx: &'a Context,
    ns: &'a str,
    applied: Vec<Applied>,
    /// The pods and claims the status was computed from.
    related: Vec<Related>,
    /// False once a write came back with a change the pass did not act on.
    complete: bool,
}

impl<'a> Pass<'a> {
    fn new(ctx: &'a Context, ns: &'a str) -> Self {
        Self {
            ctx,
            ns,
            applied: Vec::with_capacity(13),
            related: Vec::with_capacity(2),
            complete: true,
        }
    }

    /// Server-side apply, forced, as `strata-operator`.
    async fn apply<K>(&mut self, kind: Kind, object: &K) -> Result<K, Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let name = object.name_any();
        let seen = self.ctx.version(kind, self.ns, &name);
        let written = Api::<K>::namespaced(self.ctx.client.clone(), self.ns)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await?;
        self.applied.push(Applied {
            kind,
            name,
            // No version (never seen in practice) matches nothing: the next
            // reconcile makes a full pass.
            versions: Versions {
                seen,
                wrote: written.resource_version().unwrap_or_default(),
            },
        });
        Ok(written)
    }

    /// Applies every object; returns the StatefulSet as the server has it.
    async fn apply_all(
        &mut self,
        desired: &Desired,
        observed: &Observed,
    ) -> Result<(StatefulSet, Option<Service>), Error> {
        let secret = self.apply(Kind::Secret, &desired.secret).await?;
        // The agent may have reported a rotation since `observe`.
        if secret.annotations().get(APPLIED_ROTATION_ANNOTATION)
            != observed.applied_rotation.as_ref()
        {
            self.complete = false;
        }
        self.apply(Kind::ConfigMap, &desired.config_map).await?;
        self.apply(Kind::Service, &desired.headless_service).await?;
        self.apply(Kind::Service, &desired.client_service).await?;
        let external = self.apply_external(desired).await?;
        self.apply(Kind::ServiceAccount, &desired.agent_service_account)
            .await?;
        self.apply(Kind::Role, &desired.agent_role).await?;
        self.apply(Kind::RoleBinding, &desired.agent_role_binding)
            .await?;
        let sts = self.apply(Kind::StatefulSet, &desired.stateful_set).await?;
        self.apply(Kind::PodDisruptionBudget, &desired.pdb).await?;
        self.apply(Kind::NetworkPolicy, &desired.network_policy)
            .await?;
        Ok((sts, external))
    }

    /// The external LoadBalancer Service when the spec asks for one (as the
    /// server has it: its status carries the address); without, an existing
    /// one (the watch cache knows) is deleted.
    async fn apply_external(&mut self, desired: &Desired) -> Result<Option<Service>, Error> {
        if let Some(service) = &desired.external_service {
            return Ok(Some(self.apply(Kind::Service, service).await?));
        }
        let name = build::external_service_name(&desired.client_service.name_any());
        if self.ctx.version(Kind::Service, self.ns, &name).is_some() {
            match Api::<Service>::namespaced(self.ctx.client.clone(), self.ns)
                .delete(&name, &DeleteParams::background())
                .await
            {
                Ok(_) => {
                    info!(service = %name, namespace = %self.ns, "deleted the external endpoint");
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The instance's pods and claims, as the status needs them, with the
    /// claims grown to the spec's size where they are smaller (claims exist
    /// only once the StatefulSet did). Remembers their versions.
    async fn read_pods_and_claims(
        &mut self,
        valid: &ValidSpec,
        sts_existed: bool,
    ) -> Result<Seen, Error> {
        let name = valid.name.as_str();
        let (claims, resize) = if sts_existed {
            grow_claims(&self.ctx.client, self.ns, valid).await?
        } else {
            (Vec::new(), build::ResizeAttempt::default())
        };
        let pods = Api::<Pod>::namespaced(self.ctx.client.clone(), self.ns)
            .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
            .await?
            .items;
        // The StatefulSet's first pod and its claim (one replica).
        self.read(Kind::Pod, &pods, &[format!("{name}-0")]);
        self.read(
            Kind::PersistentVolumeClaim,
            &claims,
            &[format!("data-{name}-0")],
        );
        Ok(Seen {
            pods,
            claims,
            resize,
        })
    }

    /// Remembers the versions of `objects` (read, not applied), and that
    /// each of `expected` that is not among them did not exist.
    fn read<K: Resource>(&mut self, kind: Kind, objects: &[K], expected: &[String]) {
        for o in objects {
            self.related.push(Related {
                kind,
                name: o.name_any(),
                version: o.resource_version(),
            });
        }
        for name in expected {
            if !objects.iter().any(|o| o.meta().name.as_ref() == Some(name)) {
                self.related.push(Related {
                    kind,
                    name: name.clone(),
                    version: None,
                });
            }
        }
    }

    /// The API's access to the instance's Secrets, when the operator knows
    /// the API's ServiceAccount.
    async fn apply_api_access(&mut self, instance: &PostgresInstance) -> Result<(), Error> {
        if let Some(api) = &self.ctx.build.api_service_account {
            let (role, binding) = build::api_access(instance, &instance.name_any(), api);
            self.apply(Kind::Role, &role).await?;
            self.apply(Kind::RoleBinding, &binding).await?;
        }
        Ok(())
    }

    /// What the pass left, once the instance's status is written (`written`:
    /// the instance as that write returned it, `None` when nothing was
    /// written). `None` when the pass cannot stand for the current state.
    fn settled(
        self,
        instance: &PostgresInstance,
        written: Option<&PostgresInstance>,
    ) -> Option<Settled> {
        let wrote = match written {
            None => instance.resource_version()?,
            Some(w) if settled::acted_on_all_of(instance, w) => w.resource_version()?,
            Some(_) => return None,
        };
        self.complete.then(|| Settled {
            instance: Versions {
                seen: instance.resource_version(),
                wrote,
            },
            objects: self.applied,
            related: self.related,
        })
    }
}

async fn apply(instance: &PostgresInstance, ctx: &Context) -> Result<Action, Error> {
    if let Some(next_full_pass) = ctx.unchanged(instance) {
        ctx.metrics.reconcile_skipped.inc();
        return Ok(Action::requeue(next_full_pass));
    }
    // Forgotten until this pass has finished: a failed pass leaves no record.
    ctx.remember(instance, None);
    let ns = instance.namespace().ok_or(Error::MissingNamespace)?;
    let name = instance.name_any();
    let valid = match build::validate(instance, &ctx.build) {
        Ok(valid) => valid,
        Err(e) => {
            let status = build::status(instance, None, &Outcome::Invalid(&e), now());
            write_status(ctx, instance, status).await?;
            return Ok(Action::await_change());
        }
    };
    let (observed, existing_sts) = observe(&ctx.client, &ns, &name).await?;
    let first_credentials = observed.password.is_none();
    let desired = build::build(
        instance,
        &valid,
        &observed,
        &generate_password(),
        &generate_password(),
    );
    let mut pass = Pass::new(ctx, &ns);
    let applied = async {
        // The certificate first: the pod mounts its Secret.
        ensure_server_certificate(ctx, instance, &valid, &mut pass).await?;
        let (sts, external) = pass.apply_all(&desired, &observed).await?;
        pass.apply_api_access(instance).await?;
        let seen = pass
            .read_pods_and_claims(&valid, existing_sts.is_some())
            .await?;
        Ok::<_, Error>((sts, external, seen))
    };
    let (sts, external, seen) = match applied.await {
        Ok(applied) => applied,
        Err(e) => {
            let message = e.condition_message();
            let failure = build::ApplyError {
                permanent: e.is_permanent(),
                reason: e.condition_reason(),
                message: &message,
            };
            let status = build::status(
                instance,
                Some(&valid),
                &Outcome::ApplyFailed(failure),
                now(),
            );
            if let Err(status_error) = write_status(ctx, instance, status).await {
                warn!(instance = %key(instance), error = %status_error, "could not write status");
            }
            return Err(e);
        }
    };
    announce_pass(ctx, instance, desired.new_password, first_credentials).await;
    let mut status = build::status(instance, Some(&valid), &Outcome::Applied(Some(&sts)), now());
    build::set_credentials_applied(&mut status, instance, &observed, &desired, now());
    let health = build::Health {
        pods: &seen.pods,
        claims: &seen.claims,
        storage_gb: valid.storage_gb,
        resize: &seen.resize,
    };
    build::set_health(
        &mut status,
        instance.status.as_ref(),
        &health,
        instance.metadata.generation,
        now(),
    );
    build::set_external_endpoint(&mut status, external.as_ref());
    let written = write_status(ctx, instance, status).await?;
    ctx.remember(instance, pass.settled(instance, written.as_ref()));
    Ok(Action::requeue(ctx.resync))
}

/// The Events and service events of a pass that applied everything: new
/// credentials, a new generation applied.
async fn announce_pass(
    ctx: &Context,
    instance: &PostgresInstance,
    new_password: bool,
    first_credentials: bool,
) {
    if new_password {
        let (reason, note) = if first_credentials {
            ("CredentialsCreated", "generated the database credentials")
        } else {
            (
                "CredentialsRotated",
                "rotated the database password on request",
            )
        };
        publish(ctx, instance, EventType::Normal, reason, note.into()).await;
        let kind = if first_credentials {
            EventKind::ProvisioningStep
        } else {
            EventKind::CredentialsRotated
        };
        record(ctx, instance, NewServiceEvent::info(kind, note)).await;
    }
    let observed_generation = instance.status.as_ref().and_then(|s| s.observed_generation);
    if observed_generation != instance.metadata.generation {
        let note = format!(
            "applied generation {} to Secret, ConfigMap, Services, StatefulSet, PodDisruptionBudget and NetworkPolicy",
            instance.metadata.generation.unwrap_or_default()
        );
        publish(ctx, instance, EventType::Normal, "Applied", note.clone()).await;
        let kind = if observed_generation.is_none() {
            EventKind::ProvisioningStep
        } else {
            EventKind::Updated
        };
        record(ctx, instance, NewServiceEvent::info(kind, note)).await;
    }
}

/// The installation's CA: read from its Secret, or created there when the
/// Secret does not exist. An existing Secret is never replaced; one that
/// cannot be read stops the reconcile instead.
async fn load_or_create_ca(client: &Client, at: &CaSecretRef) -> Result<CertifiedKey, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &at.namespace);
    let unreadable = || Error::UnreadableCa(format!("{}/{}", at.namespace, at.name));
    if let Some(existing) = api.get_opt(&at.name).await? {
        return tls::certified_key(&existing).ok_or_else(unreadable);
    }
    let ca = strata_core::tls::issue_ca(&strata_core::tls::generate_key()?, now())?;
    match api
        .create(&PostParams::default(), &tls::ca_secret(at, &ca))
        .await
    {
        Ok(_) => {
            info!(secret = %at.name, namespace = %at.namespace, "created the installation's CA");
            Ok(ca)
        }
        // Another operator process created it first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&at.name).await?;
            tls::certified_key(&existing).ok_or_else(unreadable)
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies the instance's TLS Secret: the current certificate while it is
/// good, a new one when it is missing, expiring, names other hosts or was
/// signed by another CA.
async fn ensure_server_certificate(
    ctx: &Context,
    instance: &PostgresInstance,
    valid: &ValidSpec,
    pass: &mut Pass<'_>,
) -> Result<(), Error> {
    let ca = ctx
        .ca
        .get_or_try_init(|| load_or_create_ca(&ctx.client, &ctx.ca_secret))
        .await?;
    let ns = &valid.namespace;
    let existing = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(&tls::tls_secret_name(valid.name.as_str()))
        .await?;
    let mut hosts = tls::server_hosts(valid);
    // Clients outside the cluster connect to the load balancer's address:
    // the certificate names it too, once there is one (verify-full).
    if valid.external_access {
        let external = Api::<Service>::namespaced(ctx.client.clone(), ns)
            .get_opt(&build::external_service_name(valid.name.as_str()))
            .await?;
        hosts.extend(external.as_ref().and_then(build::load_balancer_address));
    }
    let (cert, reissued) = tls::server_certificate(
        ca,
        existing.as_ref(),
        &hosts,
        now(),
        strata_core::tls::generate_key,
    )?;
    // Applied on every full pass, so that a hand-edited Secret is put back too.
    pass.apply(
        Kind::Secret,
        &tls::tls_secret(instance, &cert, &ca.cert_pem),
    )
    .await?;
    if let Some(reason) = reissued {
        let note = format!(
            "issued the server certificate for {} ({})",
            hosts.join(", "),
            reason.as_str()
        );
        publish(ctx, instance, EventType::Normal, "CertificateIssued", note).await;
    }
    Ok(())
}

/// Grows the instance's data claims to the size the spec asks for (the
/// StatefulSet's claim template is immutable) and returns them as they are
/// now. A claim whose StorageClass does not allow volume expansion is left
/// alone, and a refusal by the API server is reported, not retried: both
/// end up in the `StorageResized` condition. Other errors fail the pass.
async fn grow_claims(
    client: &Client,
    ns: &str,
    valid: &ValidSpec,
) -> Result<(Vec<PersistentVolumeClaim>, build::ResizeAttempt), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let selector = format!("{INSTANCE_LABEL}={}", valid.name);
    let mut claims = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let mut attempt = build::ResizeAttempt::default();
    let size = build::storage_quantity(valid.storage_gb);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    for name in build::claims_to_grow(&claims, valid.storage_gb) {
        let class = claims
            .iter()
            .find(|c| c.metadata.name.as_ref() == Some(&name))
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| s.storage_class_name.clone());
        if let Some(class) = class {
            let expandable = Api::<StorageClass>::all(client.clone())
                .get_opt(&class)
                .await?
                .map(|sc| sc.allow_volume_expansion == Some(true));
            // An unknown class: the API server decides.
            if expandable == Some(false) {
                attempt.class_without_expansion = Some(class);
                continue;
            }
        }
        let patch =
            serde_json::json!({ "spec": { "resources": { "requests": { "storage": size } } } });
        match api.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(grown) => {
                info!(claim = %name, size = %size.0, "growing data claim");
                if let Some(c) = claims
                    .iter_mut()
                    .find(|c| c.metadata.name == grown.metadata.name)
                {
                    *c = grown;
                }
            }
            Err(kube::Error::Api(e)) if matches!(e.code, 403 | 422) => {
                warn!(claim = %name, error = %e.message, "growing the data claim was refused");
                attempt.refused = Some(format!("{} (HTTP {})", e.message, e.code));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((claims, attempt))
}

async fn delete_owned<K>(
    client: &Client,
    ns: &str,
    instance: &PostgresInstance,
) -> Result<usize, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let selector = format!("{INSTANCE_LABEL}={}", instance.name_any());
    let uid = instance.metadata.uid.clone().unwrap_or_default();
    let mut deleted = 0;
    for object in api.list(&ListParams::default().labels(&selector)).await? {
        // Claims carry the label but no owner; everything else must be ours.
        let ours = object.owner_references().iter().any(|o| o.uid == uid)
            || object.owner_references().is_empty();
        if !ours {
            continue;
        }
        match api
            .delete(&object.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

async fn cleanup(instance: &PostgresInstance, ctx: &Context) -> Result<Action, Error> {
    let ns = instance.namespace().ok_or(Error::MissingNamespace)?;
    let valid = build::validate(instance, &ctx.build).ok();
    let status = build::status(instance, valid.as_ref(), &Outcome::Deleting, now());
    if let Err(e) = write_status(ctx, instance, status).await {
        debug!(instance = %key(instance), error = %e, "could not write the Deleting status");
    }
    let client = &ctx.client;
    let mut deleted = 0;
    deleted += delete_owned::<NetworkPolicy>(client, &ns, instance).await?;
    deleted += delete_owned::<PodDisruptionBudget>(client, &ns, instance).await?;
    deleted += delete_owned::<StatefulSet>(client, &ns, instance).await?;
    deleted += delete_owned::<Service>(client, &ns, instance).await?;
    deleted += delete_owned::<ConfigMap>(client, &ns, instance).await?;
    deleted += delete_owned::<Secret>(client, &ns, instance).await?;
    deleted += delete_owned::<RoleBinding>(client, &ns, instance).await?;
    deleted += delete_owned::<Role>(client, &ns, instance).await?;
    deleted += delete_owned::<ServiceAccount>(client, &ns, instance).await?;
    deleted += delete_owned::<PersistentVolumeClaim>(client, &ns, instance).await?;
    publish(
        ctx,
        instance,
        EventType::Normal,
        "Deleted",
        format!("deleted {deleted} objects; removing the finalizer"),
    )
    .await;
    ctx.remember(instance, None);
    ctx.metrics.set_phase(&key(instance), None);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        let mut status = kube::core::Status::failure("refused", "");
        status.code = code;
        Error::Kube(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn only_objects_refused_as_invalid_are_permanent() {
        for (code, reason) in [(400, "InvalidObject"), (422, "InvalidObject")] {
            assert!(api(code).is_permanent(), "{code}");
            assert_eq!(api(code).condition_reason(), reason);
        }
        for (code, reason) in [
            (409, "Conflict"),
            (429, "TooManyRequests"),
            (500, "ServerError"),
            (503, "ServerError"),
            (504, "ServerError"),
            (403, "Forbidden"),
            (404, "NotFound"),
        ] {
            assert!(!api(code).is_permanent(), "{code}");
            assert_eq!(api(code).condition_reason(), reason, "{code}");
        }
        let timeout = Error::Kube(kube::Error::Service("deadline has elapsed".into()));
        assert!(!timeout.is_permanent());
        assert_eq!(timeout.condition_reason(), "Unreachable");
        assert!(!Error::UnreadableCa("strata-system/strata-ca".into()).is_permanent());
    }
}
