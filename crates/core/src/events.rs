//! Service events: the per-instance log a tenant reads.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::instance::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PhaseChanged,
    ProvisioningStep,
    Updated,
    Restarted,
    Failed,
    CredentialsRotated,
    StorageQuota,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PhaseChanged => "phase_changed",
            EventKind::ProvisioningStep => "provisioning_step",
            EventKind::Updated => "updated",
            EventKind::Restarted => "restarted",
            EventKind::Failed => "failed",
            EventKind::CredentialsRotated => "credentials_rotated",
            EventKind::StorageQuota => "storage_quota",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            EventKind::PhaseChanged,
            EventKind::ProvisioningStep,
            EventKind::Updated,
            EventKind::Restarted,
            EventKind::Failed,
            EventKind::CredentialsRotated,
            EventKind::StorageQuota,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

/// One entry of an instance's service log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceEvent {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub instance: String,
    pub kind: EventKind,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Phase>,
}

/// A service event as published to live subscribers, with where it belongs.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    pub instance_id: Uuid,
    pub project: String,
    pub event: ServiceEvent,
}

/// A service event before it is stored: the store gives it id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServiceEvent {
    pub kind: EventKind,
    pub severity: Severity,
    pub message: String,
    pub from: Option<Phase>,
    pub to: Option<Phase>,
}

impl NewServiceEvent {
    pub fn info(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            severity: Severity::Info,
            message: message.into(),
            from: None,
            to: None,
        }
    }

    pub fn warning(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::info(kind, message)
        }
    }

    pub fn error(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            ..Self::info(kind, message)
        }
    }

    pub fn phase(from: Option<Phase>, to: Phase, message: impl Into<String>) -> Self {
        Self {
            kind: EventKind::PhaseChanged,
            severity: if to == Phase::Failed {
                Severity::Error
            } else {
                Severity::Info
            },
            message: message.into(),
            from,
            to: Some(to),
        }
    }
}
