//! Strata's domain: the names, plans, versions, ACLs, phases and events that
//! every runtime and every client agree on, and the certificates both
//! runtimes issue. Nothing in here performs I/O.

pub mod access;
pub mod acl;
pub mod audit;
pub mod backoff;
pub mod error;
pub mod events;
pub mod instance;
pub mod names;
pub mod plans;
pub mod runtime;
pub mod secret;
pub mod tls;
pub mod versions;

pub use access::{Action, Decision, Role, Scope};
pub use acl::Acl;
pub use audit::{Actor, AuditEvent, NewAuditEvent, Outcome, OutcomeResult, Target};
pub use backoff::backoff;
pub use error::{FieldError, ValidationError, chain};
pub use events::{EventKind, ServiceEvent, Severity};
pub use instance::{
    ChangeRefused, Condition, ConditionStatus, CreateInstance, Endpoint, Instance, InstanceSpec,
    InstanceStatus, Phase, UpdateInstance,
};
pub use names::{InstanceName, ProjectName, Username};
pub use plans::{Plan, PlanCatalog};
pub use runtime::{
    BoxError, Credentials, InstanceRuntime, Page, PageRequest, RuntimeError, RuntimeResult,
};
pub use secret::Secret;
pub use versions::{Version, VersionCatalog};
