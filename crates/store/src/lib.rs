//! Strata's control-plane store: projects, users, signing keys, local
//! instances, service events and idempotency records, on SQLite (embedded
//! default) or PostgreSQL (shared by API replicas), through one schema.
//!
//! Every change goes through a [`Tx`], so that a change and the records that
//! describe it (service events now, audit events later) commit together.

mod audit;
mod cache;
mod identity;
pub mod prune;
mod rows;
pub mod seal;
mod tokens;

use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use strata_core::events::{NewServiceEvent, PublishedEvent};
use strata_core::{Instance, InstanceStatus, Phase, Secret, ServiceEvent};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use audit::AuditFilter;
pub use identity::{MemberRow, ProjectRow};
pub use prune::Pruned;
pub use rows::{InstanceRecord, SigningKeyRow, UserRow};
pub use seal::SealingKey;
pub use tokens::{AccessTokenRow, RefreshTokenRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A sealed value and the store key do not match, or the key is missing.
    #[error("{0}")]
    Sealing(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Hot reads in memory; only on SQLite, where this process is the only writer.
    pub(crate) cache: Option<std::sync::Arc<cache::ReadCache>>,
    events: broadcast::Sender<PublishedEvent>,
    /// Seals instance passwords and signing keys when set (`seal`).
    sealing: Option<std::sync::Arc<SealingKey>>,
}

pub(crate) fn now_text(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("time {s:?}: {e}")))
}

/// Turns a unique-constraint violation into `Conflict`.
pub(crate) fn conflict(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(e),
    }
}

impl Store {
    /// Opens (creating when needed) the store at `url` — `sqlite://path` or
    /// `postgres://…` — and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend: Backend = url
            .parse()
            .map_err(|e: String| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
        let mut options = AnyPoolOptions::new().max_connections(match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        });
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let url = if backend == Backend::Sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_owned()
        };
        let pool = options.connect(&url).await?;
        MIGRATOR.run(&pool).await?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            pool,
            backend,
            cache: (backend == Backend::Sqlite).then(Default::default),
            events,
            sealing: None,
        })
    }

    /// Seals the secrets this store writes from now on with `key`, and opens
    /// those it reads with it (values written before are read as they are
    /// until `seal_existing` seals them).
    #[must_use]
    pub fn with_sealing_key(mut self, key: SealingKey) -> Self {
        self.sealing = Some(std::sync::Arc::new(key));
        self
    }

    fn sealing(&self) -> Option<&SealingKey> {
        self.sealing.as_deref()
    }

    /// Seals the instance passwords and signing keys still stored in clear
    /// (written before the store had a key); returns how many. Nothing
    /// without a key.
    pub async fn seal_existing(&self) -> Result<usize> {
        let Some(key) = self.sealing() else {
            return Ok(0);
        };
        let mut tx = self.begin().await?;
        let mut sealed = 0;
        for column in seal::SEALED_COLUMNS {
            for row in sqlx::query(column.select).fetch_all(&mut *tx.inner).await? {
                let (place, stored): (String, String) =
                    (row.try_get("place")?, row.try_get("value")?);
                if !seal::is_sealed(&stored) {
                    sqlx::query(column.update)
                        .bind(key.seal(&stored, &(column.context)(&place))?)
                        .bind(&place)
                        .execute(&mut *tx.inner)
                        .await?;
                    sealed += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(sealed)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so that two writers queue instead of failing.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            inner: tx,
            backend: self.backend,
            cache: self.cache.clone(),
            events: Vec::new(),
            audits: Vec::new(),
            sender: self.events.clone(),
            sealing: self.sealing.clone(),
        })
    }

    /// Every service event, as its transaction commits.
    pub fn subscribe(&self) -> broadcast::Receiver<PublishedEvent> {
        self.events.subscribe()
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- projects -------------------------------------------------------

    pub async fn project_exists(&self, name: &str) -> Result<bool> {
        let row = sqlx::query("SELECT name FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn projects(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM projects ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("name").map_err(Into::into))
            .collect()
    }

    // ---- users and keys ---------------------------------------------------

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        sqlx::query("SELECT id, username, password_hash, is_admin, created_at FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| UserRow::from_row(&r))
            .transpose()
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_pem, public_key, created_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| SigningKeyRow::from_row(r, self.sealing()))
            .collect()
    }

    // ---- instances --------------------------------------------------------

    pub async fn instance(&self, project: &str, name: &str) -> Result<Option<InstanceRecord>> {
        match &self.cache {
            Some(cache) => {
                let key = (project.to_owned(), name.to_owned());
                cache
                    .get_or_load(|m| &m.instances, key, self.read_instance(project, name))
                    .await
            }
            None => self.read_instance(project, name).await,
        }
    }

    async fn read_instance(&self, project: &str, name: &str) -> Result<Option<InstanceRecord>> {
        sqlx::query("SELECT id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at FROM instances WHERE project = $1 AND name = $2")
            .bind(project)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| InstanceRecord::from_row(&r, self.sealing()))
            .transpose()
    }

    pub async fn instance_by_id(&self, id: Uuid) -> Result<Option<InstanceRecord>> {
        sqlx::query("SELECT id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at FROM instances WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| InstanceRecord::from_row(&r, self.sealing.as_deref()))
            .transpose()
    }

    /// Instances of `project` with names after `after`, by name.
    pub async fn list_instances(
        &self,
        project: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InstanceRecord>> {
        let rows = sqlx::query("SELECT id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at FROM instances WHERE project = $1 AND name > $2 ORDER BY name LIMIT $3")
            .bind(project)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| InstanceRecord::from_row(r, self.sealing()))
            .collect()
    }

    /// Every instance of every project (the supervisor's view at start-up).
    pub async fn all_instances(&self) -> Result<Vec<InstanceRecord>> {
        let rows = sqlx::query("SELECT id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at FROM instances ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| InstanceRecord::from_row(r, self.sealing()))
            .collect()
    }

    pub async fn used_ports(&self) -> Result<Vec<u16>> {
        let rows = sqlx::query("SELECT port FROM instances")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let p: i64 = r.try_get("port")?;
                u16::try_from(p).map_err(|_| StoreError::Corrupt(format!("port {p}")))
            })
            .collect()
    }

    pub async fn count_by_phase(&self) -> Result<Vec<(Phase, i64)>> {
        let rows = sqlx::query("SELECT phase, COUNT(*) AS n FROM instances GROUP BY phase")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let phase: String = r.try_get("phase")?;
            let n: i64 = r.try_get("n")?;
            if let Some(p) = Phase::parse(&phase) {
                out.push((p, n));
            }
        }
        Ok(out)
    }

    // ---- service events ---------------------------------------------------

    pub async fn events(
        &self,
        instance_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ServiceEvent>> {
        let rows = sqlx::query("SELECT id, instance, time, kind, severity, message, from_phase, to_phase FROM service_events WHERE instance_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(instance_id.to_string())
            .bind(after.map(|u| u.to_string()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::event_from_row).collect()
    }

    // ---- idempotency --------------------------------------------------------

    /// The stored response for `key` in `project`: fingerprint, status,
    /// body — unless it is older than [`prune::IDEMPOTENCY_RETENTION`].
    pub async fn idempotent_response(
        &self,
        project: &str,
        key: &str,
    ) -> Result<Option<(String, u16, String)>> {
        let row = sqlx::query(
            "SELECT fingerprint, status, body FROM idempotency_keys WHERE project = $1 AND key = $2 AND created_at >= $3",
        )
        .bind(project)
        .bind(key)
        .bind(prune::idempotency_cutoff(OffsetDateTime::now_utc()))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<_> {
            let status: i64 = r.try_get("status")?;
            Ok((
                r.try_get("fingerprint")?,
                u16::try_from(status).unwrap_or(500),
                r.try_get("body")?,
            ))
        })
        .transpose()
    }
}

/// A write transaction. Service events added to it are published to
/// subscribers only once it commits.
pub struct Tx {
    pub(crate) inner: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    cache: Option<std::sync::Arc<cache::ReadCache>>,
    events: Vec<PublishedEvent>,
    pub(crate) audits: Vec<strata_core::AuditEvent>,
    sender: broadcast::Sender<PublishedEvent>,
    sealing: Option<std::sync::Arc<SealingKey>>,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        let committed = self.inner.commit().await;
        if let Some(cache) = &self.cache {
            cache.invalidate();
        }
        committed?;
        for e in &self.audits {
            log_audit(e);
        }
        for e in self.events {
            // No subscriber is fine.
            let _ = self.sender.send(e);
        }
        Ok(())
    }

    pub async fn insert_project(&mut self, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(Uuid::new_v4().to_string())
            .bind(name)
            .bind(now_text(OffsetDateTime::now_utc()))
            .execute(&mut *self.inner)
            .await
            .map_err(|e| conflict(e, &format!("project {name}")))?;
        Ok(())
    }

    pub async fn insert_user(
        &mut self,
        username: &str,
        password_hash: &str,
        admin: bool,
    ) -> Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO users (id, username, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.to_string())
            .bind(username)
            .bind(password_hash)
            .bind(i64::from(admin))
            .bind(now_text(OffsetDateTime::now_utc()))
            .execute(&mut *self.inner)
            .await
            .map_err(|e| conflict(e, &format!("user {username}")))?;
        Ok(id)
    }

    pub async fn insert_signing_key(&mut self, key: &SigningKeyRow) -> Result<()> {
        sqlx::query("INSERT INTO signing_keys (kid, algorithm, private_pem, public_key, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.kid)
            .bind(&key.algorithm)
            .bind(seal::seal(
                self.sealing.as_deref(),
                key.private_pem.expose(),
                &seal::signing_key(&key.kid),
            )?)
            .bind(&key.public_key)
            .bind(now_text(key.created_at))
            .execute(&mut *self.inner)
            .await
            .map_err(|e| conflict(e, &format!("signing key {}", key.kid)))?;
        Ok(())
    }

    /// Inserts a new instance. A duplicate name or port is a `Conflict`.
    pub async fn insert_instance(&mut self, record: &InstanceRecord) -> Result<()> {
        let i = &record.instance;
        sqlx::query("INSERT INTO instances (id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)")
            .bind(i.id.to_string())
            .bind(&i.project)
            .bind(&i.name)
            .bind(&i.version)
            .bind(&i.plan)
            .bind(i64::from(i.storage_gb))
            .bind(rows::json(&i.acl))
            .bind(rows::json(&i.labels))
            .bind(i.status.phase.as_str())
            .bind(&i.status.message)
            .bind(rows::json(&i.status.conditions))
            .bind(i.status.storage_used_bytes.and_then(|b| i64::try_from(b).ok()))
            .bind(i64::from(record.port))
            .bind(seal::seal(
                self.sealing.as_deref(),
                record.password.expose(),
                &seal::instance_password(&i.id.to_string()),
            )?)
            .bind(record.generation)
            .bind(now_text(i.created_at))
            .bind(now_text(i.updated_at))
            .execute(&mut *self.inner)
            .await
            .map_err(|e| {
                let port_taken = matches!(&e, sqlx::Error::Database(db) if db.message().contains("port"));
                conflict(e, if port_taken { "port" } else { "instance" })
            })?;
        Ok(())
    }

    /// Records a new spec (bumping the generation) and phase `Updating`, only
    /// when the instance is in a phase that accepts changes and still at
    /// `read_generation` (the change was computed from that spec). False
    /// otherwise: another change came first, or the phase does not allow it.
    pub async fn update_spec(
        &mut self,
        record: &InstanceRecord,
        read_generation: i64,
    ) -> Result<bool> {
        let i = &record.instance;
        let done = sqlx::query("UPDATE instances SET plan = $1, storage_gb = $2, acl = $3, labels = $4, phase = $5, message = $6, conditions = $7, generation = $8, updated_at = $9 WHERE id = $10 AND generation = $11 AND phase IN ('Ready', 'Failed', 'Updating')")
            .bind(&i.plan)
            .bind(i64::from(i.storage_gb))
            .bind(rows::json(&i.acl))
            .bind(rows::json(&i.labels))
            .bind(i.status.phase.as_str())
            .bind(&i.status.message)
            .bind(rows::json(&i.status.conditions))
            .bind(record.generation)
            .bind(now_text(i.updated_at))
            .bind(i.id.to_string())
            .bind(read_generation)
            .execute(&mut *self.inner)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes the status of an instance that is not being deleted. False when
    /// it is (deletion wins over every other phase) or is gone.
    pub async fn set_status(
        &mut self,
        id: Uuid,
        status: &InstanceStatus,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE instances SET phase = $1, message = $2, conditions = $3, storage_used_bytes = $4, updated_at = $5 WHERE id = $6 AND phase <> 'Deleting'")
            .bind(status.phase.as_str())
            .bind(&status.message)
            .bind(rows::json(&status.conditions))
            .bind(status.storage_used_bytes.and_then(|b| i64::try_from(b).ok()))
            .bind(now_text(at))
            .bind(id.to_string())
            .execute(&mut *self.inner)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks an instance `Deleting`, whatever its phase. False when it
    /// already was (another request got there first) or is gone.
    pub async fn mark_deleting(
        &mut self,
        id: Uuid,
        status: &InstanceStatus,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE instances SET phase = $1, message = $2, conditions = $3, updated_at = $4 WHERE id = $5 AND phase <> 'Deleting'")
            .bind(status.phase.as_str())
            .bind(&status.message)
            .bind(rows::json(&status.conditions))
            .bind(now_text(at))
            .bind(id.to_string())
            .execute(&mut *self.inner)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_password(&mut self, id: Uuid, password: &Secret) -> Result<()> {
        sqlx::query("UPDATE instances SET password = $1 WHERE id = $2")
            .bind(seal::seal(
                self.sealing.as_deref(),
                password.expose(),
                &seal::instance_password(&id.to_string()),
            )?)
            .bind(id.to_string())
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Moves an instance to another port. A port held by another instance is a `Conflict`.
    pub async fn set_port(&mut self, id: Uuid, port: u16) -> Result<()> {
        sqlx::query("UPDATE instances SET port = $1 WHERE id = $2")
            .bind(i64::from(port))
            .bind(id.to_string())
            .execute(&mut *self.inner)
            .await
            .map_err(|e| conflict(e, "port"))?;
        Ok(())
    }

    /// Re-reads an instance inside the transaction and locks it until the
    /// transaction ends: a row lock on PostgreSQL (`FOR UPDATE`; SQLite has
    /// none and needs none, its writers are serialised by `BEGIN IMMEDIATE`).
    pub async fn instance_for_update(&mut self, id: Uuid) -> Result<Option<InstanceRecord>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at FROM instances WHERE id = $1"
            }
            Backend::Postgres => {
                "SELECT id, project, name, version, plan, storage_gb, acl, labels, phase, message, conditions, storage_used_bytes, port, password, generation, created_at, updated_at FROM instances WHERE id = $1 FOR UPDATE"
            }
        };
        sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(&mut *self.inner)
            .await?
            .map(|r| InstanceRecord::from_row(&r, self.sealing.as_deref()))
            .transpose()
    }

    pub async fn delete_instance(&mut self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Appends a service event for `instance`.
    pub async fn add_event(
        &mut self,
        instance: &Instance,
        event: NewServiceEvent,
    ) -> Result<ServiceEvent> {
        let e = ServiceEvent {
            id: Uuid::now_v7(),
            time: OffsetDateTime::now_utc(),
            instance: instance.name.clone(),
            kind: event.kind,
            severity: event.severity,
            message: event.message,
            from: event.from,
            to: event.to,
        };
        sqlx::query("INSERT INTO service_events (id, instance_id, project, instance, time, kind, severity, message, from_phase, to_phase) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(e.id.to_string())
            .bind(instance.id.to_string())
            .bind(&instance.project)
            .bind(&e.instance)
            .bind(now_text(e.time))
            .bind(e.kind.as_str())
            .bind(e.severity.as_str())
            .bind(&e.message)
            .bind(e.from.map(Phase::as_str))
            .bind(e.to.map(Phase::as_str))
            .execute(&mut *self.inner)
            .await?;
        self.events.push(PublishedEvent {
            instance_id: instance.id,
            project: instance.project.clone(),
            event: e.clone(),
        });
        Ok(e)
    }

    /// Records the response to an idempotent request, in place of an
    /// expired record of the same key. A live key recorded meanwhile by a
    /// concurrent request is a `Conflict`.
    pub async fn insert_idempotent_response(
        &mut self,
        project: &str,
        key: &str,
        fingerprint: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let written = sqlx::query(
            "INSERT INTO idempotency_keys (project, key, fingerprint, status, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (project, key) DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status, \
             body = excluded.body, created_at = excluded.created_at WHERE idempotency_keys.created_at < $7",
        )
        .bind(project)
        .bind(key)
        .bind(fingerprint)
        .bind(i64::from(status))
        .bind(body)
        .bind(now_text(now))
        .bind(prune::idempotency_cutoff(now))
        .execute(&mut *self.inner)
        .await
        .map_err(|e| conflict(e, "idempotency key"))?;
        if written.rows_affected() == 0 {
            return Err(StoreError::Conflict("idempotency key".into()));
        }
        Ok(())
    }

    /// Forgets the response recorded for `key` (its resource is gone: a
    /// retry now creates anew).
    pub async fn forget_idempotent_response(&mut self, project: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE project = $1 AND key = $2")
            .bind(project)
            .bind(key)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }
}

/// Audit events go to the structured log too, under target `audit`. Details
/// never hold secrets; they are logged as they are stored.
fn log_audit(e: &strata_core::AuditEvent) {
    tracing::info!(
        target: "audit",
        seq = e.seq,
        id = %e.id,
        actor = %e.actor.name,
        actor_id = %e.actor.id,
        source_ip = e.source_ip.as_deref().unwrap_or(""),
        user_agent = e.user_agent.as_deref().unwrap_or(""),
        request_id = e.request_id.as_deref().unwrap_or(""),
        project = e.project.as_deref().unwrap_or(""),
        action = %e.action,
        target_kind = %e.target.kind,
        target_name = %e.target.name,
        result = e.outcome.result.as_str(),
        status = e.outcome.status,
        details = %e.details,
        hash = %e.hash,
        "{} {} {}",
        e.actor.name,
        e.action,
        e.outcome.result.as_str()
    );
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(format!("unsupported database URL scheme in {s:?}"))
        }
    }
}
