//! Strata on Kubernetes: the `PostgresInstance` CRD (`crd`), the pure half of
//! the reconcile (`build`: validate → build → status), the operator that does
//! the I/O (`controller`), and its metrics.

pub mod build;
pub mod controller;
pub mod crd;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod runtime;
pub mod settled;
pub mod tls;

pub use controller::{
    Error, LeaseConfig, Operator, OperatorConfig, ServiceEventSink, run_operator,
};
pub use crd::{PostgresInstance, PostgresInstanceSpec, PostgresInstanceStatus, crd, crd_yaml};
pub use runtime::KubeRuntime;

/// The `kube` and `k8s-openapi` this crate is built with, so that the binary
/// builds a `kube::Client` without declaring (and feature-matching) them.
pub use {k8s_openapi, kube};
