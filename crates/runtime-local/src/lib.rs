//! The local runtime: real PostgreSQL servers on this machine, one per
//! instance, each under a supervisor task. State lives in the store.
//!
//! Layout under the data directory:
//! `pg/templates/<major>/` (an initialised cluster, copied for the pool),
//! `pg/pool/<major>/<uuid>/` (prepared clusters, each claimed by one create),
//! `pg/instances/<id>/{data,run,postgres.log}`, `tls/ca.{crt,key}`.

mod binaries;
mod cluster;
mod config;
mod control;
mod error;
mod os;
pub mod pod;
mod pool;
mod ports;
mod server;
pub mod sql;
mod supervisor;
mod tls;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_core::NewAuditEvent;
use strata_core::events::NewServiceEvent;
use strata_core::{
    Credentials, EventKind, Instance, InstanceName, InstanceRuntime, InstanceSpec, InstanceStatus,
    Page, PageRequest, Phase, PlanCatalog, ProjectName, RuntimeError, RuntimeResult, ServiceEvent,
    UpdateInstance, VersionCatalog,
};
use strata_store::{InstanceRecord, Store, StoreError};

use crate::error::StepError;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use binaries::Installations;
pub use os::RunAs;
use supervisor::Command;

/// Prepared data directories kept per installed major unless configured
/// otherwise: enough that back-to-back creates rarely find the pool empty
/// while it refills (each entry is about 50 MiB on disk).
pub const DEFAULT_POOL_SIZE: usize = 4;

/// How the local runtime places its servers.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Strata's data directory; the runtime uses `pg/` and `tls/` in it.
    pub data_dir: PathBuf,
    /// Address the servers listen on, and the host in credentials.
    pub listen: String,
    pub ports: RangeInclusive<u16>,
    /// The OS user PostgreSQL runs as when Strata runs as root.
    pub postgres_user: String,
    /// More directories with PostgreSQL binaries, searched first.
    pub extra_bindirs: Vec<PathBuf>,
    /// How often each instance's disk usage is measured.
    pub quota_interval: Duration,
    /// Prepared data directories kept per installed major (0: none, every
    /// create prepares its own).
    pub pool_size: usize,
}

impl LocalConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: "127.0.0.1".into(),
            ports: 15432..=16431,
            postgres_user: "postgres".into(),
            extra_bindirs: Vec::new(),
            quota_interval: Duration::from_secs(30),
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and pg_config --bindir); \
         install them with: apt-get install -y postgresql"
    )]
    NoPostgres,
}

pub(crate) struct Metrics {
    pub restarts: Counter,
    pub provision_failures: Counter,
    pub provision_seconds: Histogram,
    pub prepared_clusters: Gauge,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            restarts: Counter::default(),
            provision_failures: Counter::default(),
            provision_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 10)),
            prepared_clusters: Gauge::default(),
        };
        registry.register(
            "server_restarts",
            "PostgreSQL servers restarted after they stopped unexpectedly",
            m.restarts.clone(),
        );
        registry.register(
            "provision_failures",
            "Provisioning attempts that failed",
            m.provision_failures.clone(),
        );
        registry.register(
            "provision_duration_seconds",
            "Time from the start of provisioning to Ready",
            m.provision_seconds.clone(),
        );
        registry.register(
            "prepared_clusters",
            "Prepared PostgreSQL data directories in the pool, ready to be claimed by a create",
            m.prepared_clusters.clone(),
        );
        m
    }
}

struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Command>,
    cancel: CancellationToken,
}

pub(crate) struct Inner {
    cfg: LocalConfig,
    root: PathBuf,
    store: Store,
    plans: PlanCatalog,
    versions: VersionCatalog,
    installs: Installations,
    run_as: RunAs,
    ca: tls::CertificateAuthority,
    template_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    supervisors: Mutex<HashMap<Uuid, SupervisorHandle>>,
    /// Ports held by instances or reserved by creates in flight.
    ports: Mutex<ports::PortBook>,
    pool: pool::Pool,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    metrics: Metrics,
}

/// The local runtime; cheap to clone.
#[derive(Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

pub(crate) fn port_free(host: &str, port: u16) -> bool {
    std::net::TcpListener::bind((host, port)).is_ok()
}

/// How long a client is asked to wait when every port is held: ports come
/// free only as instances are deleted.
const PORT_RETRY_AFTER: Duration = Duration::from_mins(1);

/// A port reserved in the runtime's book: given back when dropped, unless
/// kept (an instance now holds it in the store).
struct PortLease<'a> {
    inner: &'a Inner,
    port: u16,
    kept: bool,
}

impl PortLease<'_> {
    fn keep(mut self) -> u16 {
        self.kept = true;
        self.port
    }
}

impl Drop for PortLease<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.inner.release_port(self.port);
        }
    }
}

fn store_err(e: StoreError) -> RuntimeError {
    match e {
        StoreError::Conflict(m) => RuntimeError::Conflict(m),
        other => RuntimeError::internal("the store", other),
    }
}

impl Inner {
    fn forget_supervisor(&self, id: Uuid) {
        self.supervisors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn port_book(&self) -> std::sync::MutexGuard<'_, ports::PortBook> {
        self.ports.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves a port: in range, held by no instance and no create in
    /// flight, bindable now. Every port held is a capacity limit, answered
    /// with the range and a time to retry after.
    fn reserve_port(&self) -> Result<PortLease<'_>, RuntimeError> {
        let mut book = self.port_book();
        match book.reserve(|p| port_free(&self.cfg.listen, p)) {
            Some(port) => Ok(PortLease {
                inner: self,
                port,
                kept: false,
            }),
            None => Err(RuntimeError::AtCapacity {
                message: format!(
                    "every port of the local runtime's range {} ({} ports) is held by an instance \
                     or another process; delete an instance, or start Strata with a wider --port-range",
                    book.describe(),
                    book.capacity()
                ),
                retry_after: PORT_RETRY_AFTER,
            }),
        }
    }

    pub(crate) fn release_port(&self, port: u16) {
        self.port_book().release(port);
    }

    /// Moves an instance to a newly reserved port and gives its old one back.
    async fn move_port(&self, id: Uuid, old: u16) -> Result<u16, StepError> {
        loop {
            let lease = self
                .reserve_port()
                .map_err(StepError::other("moving to another port"))?;
            let result = async {
                let mut tx = self.store.begin().await?;
                tx.set_port(id, lease.port).await?;
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => {
                    let port = lease.keep();
                    self.release_port(old);
                    return Ok(port);
                }
                // The store knows a holder the book did not: it stays held.
                Err(StoreError::Conflict(_)) => {
                    lease.keep();
                }
                Err(e) => return Err(StepError::other("moving to another port")(e)),
            }
        }
    }
}

impl LocalRuntime {
    /// Prepares the runtime and starts a supervisor for every recorded
    /// instance: running servers are adopted, stopped ones started,
    /// interrupted creates finished, interrupted deletes completed.
    pub async fn start(
        cfg: LocalConfig,
        store: Store,
        registry: &mut Registry,
    ) -> Result<Self, StartError> {
        let installs = Installations::discover(&cfg.extra_bindirs);
        if installs.majors().is_empty() {
            return Err(StartError::NoPostgres);
        }
        let run_as = RunAs::detect(&cfg.postgres_user)?;
        let root = cfg.data_dir.join("pg");
        for dir in [
            &root,
            &root.join("templates"),
            &root.join("pool"),
            &root.join("instances"),
        ] {
            std::fs::create_dir_all(dir)?;
            if run_as.drop_privileges {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
            }
        }
        run_as.check_traversable(&root.join("instances"))?;
        let ca = tls::CertificateAuthority::load_or_create(&cfg.data_dir.join("tls"))?;
        let versions = VersionCatalog::from_majors(installs.majors());
        let cfg_ports = cfg.ports.clone();
        let pool_size = cfg.pool_size;
        let metrics = Metrics::register(registry);
        let inner = Arc::new(Inner {
            cfg,
            root,
            store,
            plans: PlanCatalog::default(),
            versions,
            installs,
            run_as,
            ca,
            template_locks: Mutex::default(),
            supervisors: Mutex::default(),
            ports: Mutex::new(ports::PortBook::new(cfg_ports)),
            pool: pool::Pool::new(pool_size, metrics.prepared_clusters.clone()),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            metrics,
        });
        let rt = Self { inner };
        let recorded = rt.inner.store.all_instances().await?;
        for rec in &recorded {
            rt.inner.port_book().hold(rec.port);
        }
        for rec in recorded {
            rt.supervise(rec.instance.id);
        }
        // Make the first create fast too: the templates and the pool are
        // prepared in the background, never on the way to serving.
        rt.inner.tracker.spawn(rt.inner.clone().refill_pools());
        Ok(rt)
    }

    /// Stops every server cleanly and waits for the supervisors to end.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn supervise(&self, id: Uuid) {
        let mut map = self
            .inner
            .supervisors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&id) || self.inner.shutdown.is_cancelled() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        map.insert(
            id,
            SupervisorHandle {
                tx,
                cancel: cancel.clone(),
            },
        );
        self.inner
            .tracker
            .spawn(supervisor::run(self.inner.clone(), id, rx, cancel));
    }

    fn notify(&self, id: Uuid, cmd: Command) {
        let delete = matches!(cmd, Command::Delete);
        let sent = {
            let map = self
                .inner
                .supervisors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.get(&id).is_some_and(|h| {
                if delete {
                    h.cancel.cancel();
                }
                h.tx.send(cmd).is_ok()
            })
        };
        if !sent {
            // No supervisor (it ended): a new one reads the phase and acts on it.
            self.supervise(id);
        }
    }

    fn view(&self, rec: InstanceRecord) -> Instance {
        let mut i = rec.instance;
        if i.status.has_endpoint() {
            i.status.endpoint = Some(strata_core::Endpoint {
                host: self.inner.cfg.listen.clone(),
                port: rec.port,
            });
        }
        i
    }

    async fn record(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<InstanceRecord> {
        self.inner
            .store
            .instance(project.as_str(), name.as_str())
            .await
            .map_err(store_err)?
            .ok_or_else(|| RuntimeError::NotFound(format!("instance {name}")))
    }

    fn credentials_of(&self, rec: &InstanceRecord) -> Credentials {
        Credentials::new(
            &rec.instance.name,
            rec.password.clone(),
            &rec.instance.name,
            &self.inner.cfg.listen,
            rec.port,
            self.inner.ca.cert_pem().to_owned(),
        )
    }

    /// The supervisor's data directory of an instance (for tests and operators).
    pub fn instance_dir(&self, id: Uuid) -> PathBuf {
        supervisor::Paths::new(&self.inner.root, id).dir
    }
}

#[async_trait]
impl InstanceRuntime for LocalRuntime {
    fn plans(&self) -> &PlanCatalog {
        &self.inner.plans
    }

    fn versions(&self) -> &VersionCatalog {
        &self.inner.versions
    }

    async fn create(&self, project: &ProjectName, spec: InstanceSpec) -> RuntimeResult<Instance> {
        self.create_with(project, spec, None).await.map(|(i, _)| i)
    }

    async fn create_audited(
        &self,
        project: &ProjectName,
        spec: InstanceSpec,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        self.create_with(project, spec, Some(audit)).await
    }

    async fn update_audited(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: UpdateInstance,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        self.update_with(project, name, change, Some(audit)).await
    }

    async fn delete_audited(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        self.delete_with(project, name, Some(audit)).await
    }

    async fn rotate_credentials_audited(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Credentials, Option<NewAuditEvent>)> {
        self.rotate_with(project, name, Some(audit)).await
    }

    async fn get(&self, project: &ProjectName, name: &InstanceName) -> RuntimeResult<Instance> {
        Ok(self.view(self.record(project, name).await?))
    }

    async fn list(
        &self,
        project: &ProjectName,
        labels: &[(String, String)],
        page: PageRequest,
    ) -> RuntimeResult<Page<Instance>> {
        self.list_page(project, labels, page).await
    }

    async fn update(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: UpdateInstance,
    ) -> RuntimeResult<Instance> {
        self.update_with(project, name, change, None)
            .await
            .map(|(i, _)| i)
    }

    async fn delete(&self, project: &ProjectName, name: &InstanceName) -> RuntimeResult<Instance> {
        self.delete_with(project, name, None).await.map(|(i, _)| i)
    }

    async fn credentials(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<Credentials> {
        let rec = self.record(project, name).await?;
        match rec.instance.status.phase {
            Phase::Provisioning => Err(RuntimeError::Conflict(format!(
                "instance {name} is still provisioning; credentials are available once it is Ready"
            ))),
            Phase::Deleting => Err(RuntimeError::Conflict(format!(
                "instance {name} is being deleted"
            ))),
            _ => Ok(self.credentials_of(&rec)),
        }
    }

    async fn rotate_credentials(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<Credentials> {
        self.rotate_with(project, name, None).await.map(|(c, _)| c)
    }

    async fn events(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        after: Option<Uuid>,
        limit: u32,
    ) -> RuntimeResult<Vec<ServiceEvent>> {
        let rec = self.record(project, name).await?;
        self.inner
            .store
            .events(rec.instance.id, after, limit)
            .await
            .map_err(store_err)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<strata_core::events::PublishedEvent> {
        self.inner.store.subscribe()
    }
}

/// The local runtime serves on the address it listens on and nowhere else:
/// an external endpoint (a load balancer) is a Kubernetes runtime feature.
fn refuse_external_access(external: bool) -> RuntimeResult<()> {
    if external {
        return Err(RuntimeError::Invalid(strata_core::ValidationError::field(
            "external_access",
            "not offered by this platform: instances are reachable at their endpoint only (the Kubernetes runtime offers external endpoints)",
        )));
    }
    Ok(())
}

/// The changes, each with the audit event (if any) that records it, written
/// in the change's transaction. They return the event back when there was
/// nothing to write it with (a change that changes nothing).
impl LocalRuntime {
    async fn create_with(
        &self,
        project: &ProjectName,
        spec: InstanceSpec,
        audit: Option<NewAuditEvent>,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        refuse_external_access(spec.external_access)?;
        let name = spec.name.clone();
        let taken = || {
            RuntimeError::Conflict(format!(
                "instance {name} already exists in project {project}"
            ))
        };
        let now = OffsetDateTime::now_utc();
        let instance = Instance {
            id: Uuid::now_v7(),
            name: spec.name.to_string(),
            project: project.to_string(),
            engine: strata_core::instance::ENGINE.into(),
            version: spec.version,
            plan: spec.plan,
            storage_gb: spec.storage_gb,
            acl: spec.acl.to_strings(),
            external_access: false,
            labels: spec.labels,
            status: InstanceStatus::provisioning(now),
            created_at: now,
            updated_at: now,
        };
        // The book hands each port to one create at a time; the store's
        // unique port is the final guard, and a port it reports taken stays
        // held, so this ends: with the instance written, or at capacity.
        loop {
            let lease = match self.inner.reserve_port() {
                Ok(lease) => lease,
                // A taken name is the answer that stays true: it comes
                // before "try again later".
                Err(full) => {
                    return Err(match self.record(project, &name).await {
                        Ok(_) => taken(),
                        Err(_) => full,
                    });
                }
            };
            let rec = InstanceRecord {
                instance: instance.clone(),
                port: lease.port,
                password: supervisor::generate_password(),
                generation: 1,
            };
            let result = async {
                let mut tx = self.inner.store.begin().await?;
                tx.insert_instance(&rec).await?;
                tx.add_event(
                    &rec.instance,
                    NewServiceEvent::phase(None, Phase::Provisioning, "instance requested"),
                )
                .await?;
                if let Some(a) = &audit {
                    tx.append_audit(with_target(a, &rec.instance)).await?;
                }
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => {
                    lease.keep();
                    self.supervise(rec.instance.id);
                    return Ok((self.view(rec), None));
                }
                Err(StoreError::Conflict(what)) if what == "port" => {
                    lease.keep();
                }
                Err(StoreError::Conflict(_)) => return Err(taken()),
                Err(e) => return Err(store_err(e)),
            }
        }
    }

    async fn list_page(
        &self,
        project: &ProjectName,
        labels: &[(String, String)],
        page: PageRequest,
    ) -> RuntimeResult<Page<Instance>> {
        let mut items = Vec::new();
        let mut after = page.token.clone();
        let size = page.size.clamp(1, 500) as usize;
        // Label filters are applied here; keep reading until the page is full.
        loop {
            let batch = self
                .inner
                .store
                .list_instances(project.as_str(), after.as_deref(), 500)
                .await
                .map_err(store_err)?;
            let exhausted = batch.len() < 500;
            after = batch.last().map(|r| r.instance.name.clone());
            for rec in batch {
                if rec.instance.matches_labels(labels) {
                    if items.len() == size {
                        // One more matches: the page is full and another follows.
                        let last = items.last().map(|i: &Instance| i.name.clone());
                        return Ok(Page {
                            items,
                            next_page_token: last,
                        });
                    }
                    items.push(self.view(rec));
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_page_token: None,
                });
            }
        }
    }

    async fn update_with(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: UpdateInstance,
        audit: Option<NewAuditEvent>,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        // The change is computed from the spec as read and written only if
        // the instance is still at that generation; when another change came
        // first it is computed again from the newer spec (a PATCH changes only
        // the fields it names), so concurrent changes of different fields
        // all take effect.
        let mut attempts = 0;
        let (mut tx, rec, phase) = loop {
            attempts += 1;
            let mut rec = self.record(project, name).await?;
            // As on Kubernetes: the phase decides first, so even a change that
            // changes nothing is refused while the instance is not Ready.
            let phase = rec.instance.status.phase;
            if !phase.accepts_update() {
                return Err(RuntimeError::Conflict(format!(
                    "instance {name} is {phase}; changes are accepted once it is Ready"
                )));
            }
            let current = rec.instance.spec()?;
            let next = change.clone().apply(&current, &self.inner.plans)?;
            refuse_external_access(next.external_access)?;
            if next == current {
                return Ok((self.view(rec), audit));
            }
            let now = OffsetDateTime::now_utc();
            rec.instance.plan = next.plan;
            rec.instance.storage_gb = next.storage_gb;
            rec.instance.acl = next.acl.to_strings();
            rec.instance.labels = next.labels;
            rec.instance.updated_at = now;
            rec.instance
                .status
                .set_phase(Phase::Updating, "SpecChanged", "applying changes", now);
            let read_generation = rec.generation;
            rec.generation += 1;
            let mut tx = self.inner.store.begin().await.map_err(store_err)?;
            if tx
                .update_spec(&rec, read_generation)
                .await
                .map_err(store_err)?
            {
                break (tx, rec, phase);
            }
            if attempts >= strata_core::runtime::UPDATE_ATTEMPTS {
                return Err(RuntimeError::Conflict(format!(
                    "instance {name} changed concurrently; try again"
                )));
            }
        };
        tx.add_event(
            &rec.instance,
            NewServiceEvent::info(EventKind::Updated, "change requested"),
        )
        .await
        .map_err(store_err)?;
        if phase != Phase::Updating {
            tx.add_event(
                &rec.instance,
                NewServiceEvent::phase(Some(phase), Phase::Updating, "applying changes"),
            )
            .await
            .map_err(store_err)?;
        }
        if let Some(a) = &audit {
            tx.append_audit(with_target(a, &rec.instance))
                .await
                .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)?;
        self.notify(rec.instance.id, Command::Apply);
        Ok((self.view(rec), None))
    }

    async fn delete_with(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        mut audit: Option<NewAuditEvent>,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        let mut rec = self.record(project, name).await?;
        let before = rec.instance.status.phase;
        if before != Phase::Deleting {
            let now = OffsetDateTime::now_utc();
            rec.instance
                .status
                .set_phase(Phase::Deleting, "DeleteRequested", "deleting", now);
            rec.instance.updated_at = now;
            let mut tx = self.inner.store.begin().await.map_err(store_err)?;
            if !tx
                .mark_deleting(rec.instance.id, &rec.instance.status, now)
                .await
                .map_err(store_err)?
            {
                // Another request marked it a moment ago: its events and
                // audit record stand; this one is answered like a repeat.
                drop(tx);
                let rec = self.record(project, name).await?;
                return Ok((self.view(rec), audit));
            }
            tx.add_event(
                &rec.instance,
                NewServiceEvent::phase(Some(before), Phase::Deleting, "deletion requested"),
            )
            .await
            .map_err(store_err)?;
            if let Some(a) = audit.take() {
                tx.append_audit(with_target(&a, &rec.instance))
                    .await
                    .map_err(store_err)?;
            }
            tx.commit().await.map_err(store_err)?;
        }
        self.notify(rec.instance.id, Command::Delete);
        Ok((self.view(rec), audit))
    }

    async fn rotate_with(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        audit: Option<NewAuditEvent>,
    ) -> RuntimeResult<(Credentials, Option<NewAuditEvent>)> {
        let rec = self.record(project, name).await?;
        if !matches!(rec.instance.status.phase, Phase::Ready | Phase::Updating) {
            return Err(RuntimeError::Conflict(format!(
                "instance {name} is {}; credentials can be rotated once it is Ready",
                rec.instance.status.phase
            )));
        }
        let paths = supervisor::Paths::new(&self.inner.root, rec.instance.id);
        let client = sql::connect(&paths.run, rec.port).await.map_err(|e| {
            RuntimeError::Unavailable(format!("instance {name} is not reachable: {e}"))
        })?;
        let password = supervisor::generate_password();
        sql::set_password(&client, &rec.instance.name, &password)
            .await
            .map_err(|e| RuntimeError::internal("changing the password", e))?;
        let recorded = async {
            let mut tx = self.inner.store.begin().await?;
            tx.set_password(rec.instance.id, &password).await?;
            tx.add_event(
                &rec.instance,
                NewServiceEvent::info(
                    EventKind::CredentialsRotated,
                    "password rotated; the previous one no longer works",
                ),
            )
            .await?;
            if let Some(a) = &audit {
                tx.append_audit(with_target(a, &rec.instance)).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = recorded {
            // Keep server and store in agreement: put the old password back.
            let _ = sql::set_password(&client, &rec.instance.name, &rec.password).await;
            return Err(store_err(e));
        }
        let mut rec = rec;
        rec.password = password;
        Ok((self.credentials_of(&rec), None))
    }
}

/// The audit event with its target's id.
fn with_target(audit: &NewAuditEvent, instance: &Instance) -> NewAuditEvent {
    let mut a = audit.clone();
    a.target.id = Some(instance.id.to_string());
    a
}
