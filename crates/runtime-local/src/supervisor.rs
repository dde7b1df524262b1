//! One supervisor task per instance: provisions it, keeps its server running
//! (restarting with backoff), applies changes, watches its storage, deletes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::events::NewServiceEvent;
use strata_core::instance::ConditionStatus;
use strata_core::{EventKind, InstanceStatus, Phase, Secret};
use strata_store::InstanceRecord;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::Urgency;
use crate::config::{QuotaState, ServerConfig, quota_state, render_hba};
use crate::error::StepError;
use crate::server::{ExitReason, Server, stop_any, wait_accepting};
use crate::{Inner, sql};

/// What the API asks of a running supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// The spec changed: apply the newest generation.
    Apply,
    /// Stop and remove the instance.
    Delete,
}

const STOP_GRACE: Duration = Duration::from_secs(30);
const START_DEADLINE: Duration = Duration::from_mins(1);
/// Failed restarts in a row before the phase turns `Failed`.
const FAILED_AFTER: u32 = 3;

/// 200 ms doubling up to 30 s, with jitter: servers that died together
/// (a host restart) do not all restart at the same instant.
fn backoff(attempt: u32) -> Duration {
    strata_core::backoff(attempt, Duration::from_millis(200), Duration::from_secs(30))
}

pub(crate) struct Paths {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub run: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn new(root: &std::path::Path, id: Uuid) -> Self {
        let dir = root.join("instances").join(id.to_string());
        Self {
            data: dir.join("data"),
            run: dir.join("run"),
            log: dir.join("postgres.log"),
            dir,
        }
    }
}

struct Supervisor {
    rt: Arc<Inner>,
    id: Uuid,
    paths: Paths,
    server: Option<Server>,
    applied: Option<ServerConfig>,
    quota: QuotaState,
}

pub(crate) async fn run(
    rt: Arc<Inner>,
    id: Uuid,
    rx: mpsc::UnboundedReceiver<Command>,
    cancel: CancellationToken,
) {
    let paths = Paths::new(&rt.root, id);
    let mut s = Supervisor {
        rt: rt.clone(),
        id,
        paths,
        server: None,
        applied: None,
        quota: QuotaState::Within,
    };
    s.main(rx, cancel).await;
    rt.forget_supervisor(id);
}

impl Supervisor {
    async fn load(&self) -> Option<InstanceRecord> {
        match self.rt.store.instance_by_id(self.id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(instance_id = %self.id, error = %e, "cannot read instance");
                None
            }
        }
    }

    /// Writes a new status (and events, plus a phase event when the phase
    /// changes). False when the instance is being deleted or is gone.
    async fn set_status(
        &self,
        change: impl FnOnce(&mut InstanceStatus, OffsetDateTime),
        events: Vec<NewServiceEvent>,
    ) -> bool {
        let result: Result<bool, strata_store::StoreError> = async {
            let Some(rec) = self.rt.store.instance_by_id(self.id).await? else {
                return Ok(false);
            };
            let now = OffsetDateTime::now_utc();
            let before = rec.instance.status.phase;
            let mut status = rec.instance.status.clone();
            change(&mut status, now);
            let mut tx = self.rt.store.begin().await?;
            if !tx.set_status(self.id, &status, now).await? {
                return Ok(false);
            }
            for e in events {
                tx.add_event(&rec.instance, e).await?;
            }
            if before != status.phase {
                tx.add_event(
                    &rec.instance,
                    NewServiceEvent::phase(Some(before), status.phase, status.message.clone()),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::error!(instance_id = %self.id, error = %e, "cannot record status");
            false
        })
    }

    async fn step(&self, message: &str) -> bool {
        let m = message.to_owned();
        self.set_status(
            move |s, _| s.message = m,
            vec![NewServiceEvent::info(EventKind::ProvisioningStep, message)],
        )
        .await
    }

    async fn set_phase(
        &self,
        phase: Phase,
        reason: &str,
        message: &str,
        extra: Vec<NewServiceEvent>,
    ) -> bool {
        let (r, m) = (reason.to_owned(), message.to_owned());
        self.set_status(move |s, now| s.set_phase(phase, &r, &m, now), extra)
            .await
    }

    /// Marks the instance `Failed` for `reason`, with the step's message in
    /// its status and a service event; the whole cause goes to the log.
    async fn fail(&self, reason: &str, error: &StepError) {
        tracing::warn!(instance_id = %self.id, reason, error = %error.chain(), "instance failed");
        let message = error.to_string();
        self.set_phase(
            Phase::Failed,
            reason,
            &message,
            vec![NewServiceEvent::error(EventKind::Failed, message.clone())],
        )
        .await;
    }

    async fn main(&mut self, mut rx: mpsc::UnboundedReceiver<Command>, cancel: CancellationToken) {
        let Some(rec) = self.load().await else { return };
        match rec.instance.status.phase {
            Phase::Deleting => return self.teardown().await,
            Phase::Provisioning => {
                let mut attempt = 0;
                loop {
                    let started = Instant::now();
                    let shutdown = self.rt.shutdown.clone();
                    let outcome = tokio::select! {
                        biased;
                        () = cancel.cancelled() => None,
                        () = shutdown.cancelled() => Some(Err(StepError::state("shutting down"))),
                        r = self.provision() => Some(r),
                    };
                    if shutdown.is_cancelled() {
                        // Left in Provisioning: the next start of Strata provisions again.
                        self.stop_server().await;
                        return;
                    }
                    match outcome {
                        None => return self.teardown().await,
                        Some(Ok(())) => {
                            self.rt
                                .metrics
                                .provision_seconds
                                .observe(started.elapsed().as_secs_f64());
                            break;
                        }
                        Some(Err(reason)) => {
                            self.rt.metrics.provision_failures.inc();
                            self.stop_server().await;
                            self.fail("ProvisioningFailed", &reason).await;
                            if !self.sleep(backoff(attempt + 3), &cancel).await {
                                if cancel.is_cancelled() {
                                    return self.teardown().await;
                                }
                                return;
                            }
                            attempt += 1;
                            // Retry from the start, as Provisioning again.
                            if !self
                                .set_phase(
                                    Phase::Provisioning,
                                    "Retrying",
                                    "retrying provisioning",
                                    vec![],
                                )
                                .await
                            {
                                return self.teardown().await;
                            }
                        }
                    }
                }
            }
            Phase::Ready | Phase::Updating | Phase::Failed => {
                if let Err(reason) = self.resume(&rec).await {
                    self.fail("StartFailed", &reason).await;
                    self.recover(None, &cancel).await;
                }
            }
        }
        let mut quota_tick = tokio::time::interval(self.rt.cfg.quota_interval);
        let shutdown = self.rt.shutdown.clone();
        loop {
            let server = &mut self.server;
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.stop_server().await;
                    return;
                }
                cmd = rx.recv() => match cmd {
                    Some(Command::Apply) => self.apply(&cancel).await,
                    Some(Command::Delete) | None => return self.teardown().await,
                },
                reason = async {
                    match server {
                        Some(s) => s.exited().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.server = None;
                    self.recover(Some(reason), &cancel).await;
                }
                _ = quota_tick.tick() => self.check_quota().await,
            }
        }
    }

    /// Sleeps unless the instance is deleted or Strata stops; false if interrupted.
    async fn sleep(&self, d: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = cancel.cancelled() => false,
            () = self.rt.shutdown.cancelled() => false,
        }
    }

    fn config(&self, rec: &InstanceRecord) -> Result<ServerConfig, StepError> {
        let plan = self
            .rt
            .plans
            .get(&rec.instance.plan)
            .map_err(StepError::other("reading the plan"))?;
        Ok(ServerConfig::new(
            plan,
            rec.port,
            &self.rt.cfg.listen,
            &self.paths.run,
        ))
    }

    fn write_config(&self, rec: &InstanceRecord) -> Result<ServerConfig, StepError> {
        let cfg = self.config(rec)?;
        let spec = rec
            .instance
            .spec()
            .map_err(StepError::other("reading the instance's settings"))?;
        let io = StepError::io("writing configuration");
        self.rt
            .run_as
            .write_private(
                &self.paths.data.join("strata.conf"),
                cfg.render().as_bytes(),
            )
            .map_err(&io)?;
        self.rt
            .run_as
            .write_private(
                &self.paths.data.join("pg_hba.conf"),
                render_hba(&rec.instance.name, &rec.instance.name, &spec.acl).as_bytes(),
            )
            .map_err(&io)?;
        Ok(cfg)
    }

    /// Starts the server and waits until it accepts connections; returns
    /// the first one (as the superuser, over the private socket).
    async fn start_server(
        &mut self,
        rec: &InstanceRecord,
    ) -> Result<tokio_postgres::Client, StepError> {
        self.spawn_server(rec)?;
        self.wait_server(rec).await
    }

    /// Starts the server process; it becomes ready on its own.
    fn spawn_server(&mut self, rec: &InstanceRecord) -> Result<(), StepError> {
        let bindir = self.rt.bindir(&rec.instance.version)?;
        self.rt
            .run_as
            .own_dir(&self.paths.run, 0o700)
            .map_err(StepError::io("making the socket directory"))?;
        // A stale pid file from a killed server is PostgreSQL's to handle.
        let server = Server::start(&bindir, &self.paths.data, &self.paths.log, self.rt.run_as)
            .map_err(StepError::io("starting PostgreSQL"))?;
        self.server = Some(server);
        Ok(())
    }

    /// Waits until the started server accepts connections; returns the first.
    async fn wait_server(
        &mut self,
        rec: &InstanceRecord,
    ) -> Result<tokio_postgres::Client, StepError> {
        let Some(server) = self.server.as_mut() else {
            return Err(StepError::state("PostgreSQL was not started"));
        };
        wait_accepting(
            server,
            &self.paths.data,
            &self.paths.run,
            rec.port,
            &self.paths.log,
            START_DEADLINE,
        )
        .await
    }

    async fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop(STOP_GRACE).await;
        }
        stop_any(&self.paths.data, STOP_GRACE).await;
    }

    /// The instance's data directory: a prepared one from the pool when
    /// there is one, else one prepared now the same way. Says which.
    async fn claim_data_directory(&self, version: &str) -> Result<String, StepError> {
        if let Some(entry) = self.rt.pool.claim(version) {
            match std::fs::rename(&entry, &self.paths.data) {
                Ok(()) => {
                    return Ok(format!(
                        "data directory taken from the pool of prepared PostgreSQL {version} clusters \
                         (its own system identifier)"
                    ));
                }
                Err(e) => {
                    tracing::warn!(instance_id = %self.id, error = %e, "cannot take a prepared cluster; preparing one");
                }
            }
        }
        self.rt
            .prepare_cluster(version, &self.paths.data, Urgency::Now)
            .await?;
        Ok(format!(
            "data directory prepared from the PostgreSQL {version} template \
             (its own system identifier; the pool was empty)"
        ))
    }

    async fn provision(&mut self) -> Result<(), StepError> {
        let Some(mut rec) = self.load().await else {
            return Err(StepError::state("instance vanished"));
        };
        let version = rec.instance.version.clone();
        // Start clean: whatever an interrupted attempt left goes.
        self.stop_server().await;
        if self.paths.dir.exists() {
            std::fs::remove_dir_all(&self.paths.dir).map_err(StepError::io("cleaning up"))?;
        }
        self.rt
            .run_as
            .own_dir(&self.paths.dir, 0o700)
            .map_err(StepError::io("making the instance's directory"))?;
        let claimed = self.claim_data_directory(&version).await?;

        // A key and certificate of its own, made now.
        let cert = self
            .rt
            .ca
            .issue_server(&rec.instance.name, &[&self.rt.cfg.listen, "localhost"])
            .map_err(StepError::other("issuing the server certificate"))?;
        let io = StepError::io("writing the server certificate");
        self.rt
            .run_as
            .write_private(
                &self.paths.data.join("server.crt"),
                cert.cert_pem.as_bytes(),
            )
            .map_err(&io)?;
        self.rt
            .run_as
            .write_private(&self.paths.data.join("server.key"), cert.key_pem.as_bytes())
            .map_err(&io)?;

        let mut events = vec![NewServiceEvent::info(EventKind::ProvisioningStep, claimed)];
        if !crate::port_free(&self.rt.cfg.listen, rec.port) {
            let old = rec.port;
            rec.port = self.rt.move_port(self.id, old).await?;
            events.push(NewServiceEvent::info(
                EventKind::ProvisioningStep,
                format!(
                    "port {old} is taken by another process; moved to port {}",
                    rec.port
                ),
            ));
        }
        let cfg = self.write_config(&rec)?;
        let written = "TLS certificate issued and configuration written";
        events.push(NewServiceEvent::info(EventKind::ProvisioningStep, written));
        // PostgreSQL starts while the steps so far are recorded.
        self.spawn_server(&rec)?;
        if !self
            .set_status(move |s, _| written.clone_into(&mut s.message), events)
            .await
        {
            return Err(StepError::state("deleted"));
        }
        let client = self.wait_server(&rec).await?;
        self.applied = Some(cfg);
        // The event is written while the role and database are renamed.
        let accepting = format!("PostgreSQL accepting connections on port {}", rec.port);
        let (_, claimed) = tokio::join!(
            self.step(&accepting),
            sql::claim_role_and_database(
                &client,
                &rec.instance.name,
                &rec.instance.name,
                &rec.password,
            )
        );
        claimed.map_err(StepError::sql("creating role and database"))?;
        drop(client);
        if !self
            .set_phase(
                Phase::Ready,
                "Ready",
                "accepting connections",
                vec![NewServiceEvent::info(
                    EventKind::ProvisioningStep,
                    "role and database created",
                )],
            )
            .await
        {
            return Err(StepError::state("deleted"));
        }
        Ok(())
    }

    /// After Strata restarts: adopt a server that still runs, or start it.
    async fn resume(&mut self, rec: &InstanceRecord) -> Result<(), StepError> {
        if !self.paths.data.join("PG_VERSION").is_file() {
            return Err(StepError::state(
                "the data directory is missing; the instance cannot be recovered",
            ));
        }
        let cfg = self.write_config(rec)?;
        let how = if let Some(pid) = crate::os::running_postmaster(&self.paths.data) {
            let server = Server::adopt(pid);
            server.reload();
            self.server = Some(server);
            format!("adopted the running PostgreSQL server (pid {pid})")
        } else {
            self.start_server(rec).await?;
            "started PostgreSQL after a Strata restart".to_owned()
        };
        self.applied = Some(cfg);
        let phase = rec.instance.status.phase;
        if phase == Phase::Ready {
            self.step_kind(EventKind::Restarted, &how).await;
        } else {
            self.set_phase(
                Phase::Ready,
                "Ready",
                "accepting connections",
                vec![NewServiceEvent::info(EventKind::Restarted, how)],
            )
            .await;
        }
        Ok(())
    }

    async fn step_kind(&self, kind: EventKind, message: &str) {
        self.set_status(|_, _| {}, vec![NewServiceEvent::info(kind, message)])
            .await;
    }

    /// The server died (or never started): restart it with backoff until it
    /// runs, the instance is deleted, or Strata stops.
    async fn recover(&mut self, reason: Option<ExitReason>, cancel: &CancellationToken) {
        if let Some(reason) = &reason {
            self.rt.metrics.restarts.inc();
            tracing::warn!(instance_id = %self.id, reason = %reason.0, "PostgreSQL stopped unexpectedly");
            self.set_status(
                |_, _| {},
                vec![NewServiceEvent::warning(
                    EventKind::Restarted,
                    format!("PostgreSQL {}; restarting", reason.0),
                )],
            )
            .await;
        }
        let mut attempt = 0;
        loop {
            if !self.sleep(backoff(attempt), cancel).await {
                return;
            }
            let Some(rec) = self.load().await else { return };
            let result = match self.write_config(&rec) {
                Ok(cfg) => self.start_server(&rec).await.map(|_| cfg),
                Err(e) => Err(e),
            };
            match result {
                Ok(cfg) => {
                    self.applied = Some(cfg);
                    let msg = format!("PostgreSQL restarted (attempt {})", attempt + 1);
                    let current = rec.instance.status.phase;
                    if current == Phase::Ready {
                        self.step_kind(EventKind::Restarted, &msg).await;
                    } else {
                        self.set_phase(
                            Phase::Ready,
                            "Recovered",
                            "accepting connections",
                            vec![NewServiceEvent::info(EventKind::Restarted, msg)],
                        )
                        .await;
                    }
                    return;
                }
                Err(e) => {
                    self.stop_server().await;
                    attempt += 1;
                    if attempt == FAILED_AFTER {
                        self.fail("RestartFailed", &e).await;
                    }
                }
            }
        }
    }

    /// Applies the newest spec: reload, or restart when a setting needs it.
    async fn apply(&mut self, cancel: &CancellationToken) {
        let Some(rec) = self.load().await else { return };
        if rec.instance.status.phase != Phase::Updating {
            return;
        }
        let cfg = match self.write_config(&rec) {
            Ok(c) => c,
            Err(e) => {
                self.fail("ApplyFailed", &e).await;
                return;
            }
        };
        let restart =
            self.applied.as_ref().is_none_or(|a| a.needs_restart(&cfg)) || self.server.is_none();
        let how = if restart {
            self.stop_server().await;
            if let Err(e) = self.start_server(&rec).await {
                self.fail("ApplyFailed", &e).await;
                self.stop_server().await;
                self.recover(None, cancel).await;
                return;
            }
            "restarted"
        } else {
            self.server.as_ref().map(Server::reload);
            "reloaded"
        };
        self.applied = Some(cfg);
        // A newer change may have arrived meanwhile; its own Apply finishes the job.
        let latest = self.load().await.map_or(rec.generation, |r| r.generation);
        if latest == rec.generation {
            self.set_phase(
                Phase::Ready,
                "Ready",
                "accepting connections",
                vec![NewServiceEvent::info(
                    EventKind::Updated,
                    format!(
                        "applied plan {}, {} GiB, {} ACL entries; PostgreSQL {how}",
                        rec.instance.plan,
                        rec.instance.storage_gb,
                        rec.instance.acl.len()
                    ),
                )],
            )
            .await;
        }
        // Storage quota may have changed.
        self.check_quota().await;
    }

    async fn check_quota(&mut self) {
        let data = self.paths.data.clone();
        let Ok(used) = tokio::task::spawn_blocking(move || crate::os::disk_usage(&data)).await
        else {
            return;
        };
        let Some(rec) = self.load().await else { return };
        let state = quota_state(used, rec.instance.storage_gb);
        let gb = rec.instance.storage_gb;
        let mib = used / (1024 * 1024);
        let changed = state != self.quota;
        let old_used = rec.instance.status.storage_used_bytes.unwrap_or(0);
        if !changed && old_used.abs_diff(used) < 1024 * 1024 {
            return;
        }
        self.quota = state;
        let (status, reason, event) = match state {
            QuotaState::Within => (
                ConditionStatus::True,
                "WithinQuota",
                NewServiceEvent::info(
                    EventKind::StorageQuota,
                    format!("storage back within quota: {mib} MiB of {gb} GiB"),
                ),
            ),
            QuotaState::Near => (
                ConditionStatus::True,
                "NearQuota",
                NewServiceEvent::warning(
                    EventKind::StorageQuota,
                    format!("storage at 90 % of quota or more: {mib} MiB of {gb} GiB"),
                ),
            ),
            QuotaState::Over => (
                ConditionStatus::False,
                "OverQuota",
                NewServiceEvent::error(
                    EventKind::StorageQuota,
                    format!(
                        "storage over quota: {mib} MiB of {gb} GiB; grow storage_gb or delete data"
                    ),
                ),
            ),
        };
        let message = format!("{mib} MiB of {gb} GiB used");
        let events = if changed { vec![event] } else { vec![] };
        self.set_status(
            move |s, now| {
                s.storage_used_bytes = Some(used);
                strata_core::instance::set_condition(
                    &mut s.conditions,
                    "StorageWithinQuota",
                    status,
                    reason,
                    &message,
                    now,
                );
            },
            events,
        )
        .await;
    }

    async fn teardown(&mut self) {
        let port = self.load().await.map(|r| r.port);
        self.stop_server().await;
        if let Err(e) = std::fs::remove_dir_all(&self.paths.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(instance_id = %self.id, error = %e, "cannot remove the data directory");
        }
        let result: Result<(), strata_store::StoreError> = async {
            let mut tx = self.rt.store.begin().await?;
            tx.delete_instance(self.id).await?;
            tx.commit().await
        }
        .await;
        match (result, port) {
            (Ok(()), Some(port)) => self.rt.release_port(port),
            (Ok(()), None) => {}
            (Err(e), _) => {
                tracing::error!(instance_id = %self.id, error = %e, "cannot remove the instance record");
            }
        }
    }
}

/// A fresh password: 40 characters from the operating system's CSPRNG.
pub(crate) fn generate_password() -> Secret {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    let s: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    Secret::new(s)
}
