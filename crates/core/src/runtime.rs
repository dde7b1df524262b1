//! The one interface the API talks to, whichever runtime runs the databases:
//! the local supervisor or Kubernetes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::NewAuditEvent;
use crate::error::ValidationError;
use crate::events::{PublishedEvent, ServiceEvent};
use crate::instance::{ChangeRefused, Instance, InstanceSpec, UpdateInstance};
use crate::names::{InstanceName, ProjectName};
use crate::plans::PlanCatalog;
use crate::secret::Secret;
use crate::versions::VersionCatalog;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A well-formed change that does not fit the instance as it is now.
    #[error("{0}")]
    ConflictingChange(ValidationError),
    #[error("{0}")]
    Unavailable(String),
    /// A capacity limit of the platform is reached; `message` names it. The
    /// same request may succeed after `retry_after`.
    #[error("{message}")]
    AtCapacity {
        message: String,
        retry_after: std::time::Duration,
    },
    /// A fault of Strata's own or of what it runs on: what it was doing,
    /// and the error that stopped it (logged with its whole chain where it
    /// is handled; callers see only that an internal error occurred).
    #[error("internal error: {context}")]
    Internal {
        context: String,
        #[source]
        source: BoxError,
    },
}

/// Any error, as the cause of another.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl RuntimeError {
    /// An internal error: what was being done, and why it failed.
    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl From<ChangeRefused> for RuntimeError {
    fn from(e: ChangeRefused) -> Self {
        match e {
            ChangeRefused::Invalid(v) => Self::Invalid(v),
            ChangeRefused::Conflict(v) => Self::ConflictingChange(v),
        }
    }
}

/// Connection data for an instance's application role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    #[schema(value_type = String)]
    pub password: Secret,
    pub database: String,
    pub host: String,
    pub port: u16,
    /// Always `require` or stricter: instances only accept TLS.
    pub sslmode: String,
    /// A libpq URI with every part of the above.
    #[schema(value_type = String)]
    pub uri: Secret,
    /// PEM of the CA that signed the server certificate (`sslrootcert`).
    pub ca_certificate: String,
}

impl Credentials {
    pub fn new(
        username: &str,
        password: Secret,
        database: &str,
        host: &str,
        port: u16,
        ca_certificate: String,
    ) -> Self {
        let uri = Secret::new(format!(
            "postgresql://{username}:{}@{host}:{port}/{database}?sslmode=require",
            password.expose()
        ));
        Self {
            username: username.to_owned(),
            password,
            database: database.to_owned(),
            host: host.to_owned(),
            port,
            sslmode: "require".to_owned(),
            uri,
            ca_certificate,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// Which part of a list to return.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub size: u32,
    /// Opaque token from a previous page.
    pub token: Option<String>,
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// How often a runtime computes an update again when another write to the
/// instance came between its read and its write, before it answers
/// `Conflict`. An update changes only the fields it names, so computing it
/// on the newer instance is what the caller asked for.
pub const UPDATE_ATTEMPTS: u32 = 5;

/// What the API needs from whatever runs the databases.
#[async_trait]
pub trait InstanceRuntime: Send + Sync + 'static {
    fn plans(&self) -> &PlanCatalog;
    fn versions(&self) -> &VersionCatalog;

    /// Whether instances may have an external endpoint (`external_access`).
    fn offers_external_access(&self) -> bool {
        false
    }

    /// Records the instance (phase `Provisioning`) and starts provisioning in
    /// the background. A duplicate name is a `Conflict`.
    async fn create(&self, project: &ProjectName, spec: InstanceSpec) -> RuntimeResult<Instance>;
    async fn get(&self, project: &ProjectName, name: &InstanceName) -> RuntimeResult<Instance>;
    async fn list(
        &self,
        project: &ProjectName,
        labels: &[(String, String)],
        page: PageRequest,
    ) -> RuntimeResult<Page<Instance>>;
    async fn update(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: UpdateInstance,
    ) -> RuntimeResult<Instance>;
    /// Marks the instance `Deleting` and removes it in the background.
    async fn delete(&self, project: &ProjectName, name: &InstanceName) -> RuntimeResult<Instance>;
    async fn credentials(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<Credentials>;
    /// A new password; the old one stops working before this returns.
    async fn rotate_credentials(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<Credentials>;
    // ---- audited changes -------------------------------------------------
    //
    // Each takes the audit event that records the request (target name,
    // actor, success outcome filled in by the caller) and returns it back
    // (`Some`) when the runtime did not write it. A runtime that keeps its
    // state in the store writes it in the same transaction as the change (the
    // target's id filled in), so that a change is never left unrecorded; the
    // defaults make the change and hand the event back for the caller to
    // append.

    async fn create_audited(
        &self,
        project: &ProjectName,
        spec: InstanceSpec,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        Ok((self.create(project, spec).await?, Some(audit)))
    }
    async fn update_audited(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: UpdateInstance,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        Ok((self.update(project, name, change).await?, Some(audit)))
    }
    async fn delete_audited(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Instance, Option<NewAuditEvent>)> {
        Ok((self.delete(project, name).await?, Some(audit)))
    }
    async fn rotate_credentials_audited(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        audit: NewAuditEvent,
    ) -> RuntimeResult<(Credentials, Option<NewAuditEvent>)> {
        Ok((self.rotate_credentials(project, name).await?, Some(audit)))
    }
    /// The instance's service events after `after` (an event id), oldest first.
    async fn events(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        after: Option<uuid::Uuid>,
        limit: u32,
    ) -> RuntimeResult<Vec<ServiceEvent>>;
    /// Every new service event, as it is recorded.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PublishedEvent>;
}
