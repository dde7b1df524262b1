//! Mapping between rows and domain types.

use sqlx::Row;
use sqlx::any::AnyRow;
use strata_core::events::{EventKind, Severity};
use strata_core::{Instance, InstanceStatus, Phase, Secret, ServiceEvent};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, StoreError, parse_time};

pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("id {s:?}: {e}")))
}

/// An instance of the local runtime with what only the runtime needs.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub instance: Instance,
    /// The TCP port its server listens on (127.0.0.1).
    pub port: u16,
    /// The application role's password.
    pub password: Secret,
    /// Bumped on every change of spec; the supervisor applies up to it.
    pub generation: i64,
}

impl InstanceRecord {
    pub(crate) fn from_row(r: &AnyRow, key: Option<&crate::SealingKey>) -> Result<Self> {
        let phase: String = r.try_get("phase")?;
        let storage_gb: i64 = r.try_get("storage_gb")?;
        let port: i64 = r.try_get("port")?;
        let used: Option<i64> = r.try_get("storage_used_bytes")?;
        let instance = Instance {
            id: uuid(&r.try_get::<String, _>("id")?)?,
            name: r.try_get("name")?,
            project: r.try_get("project")?,
            engine: strata_core::instance::ENGINE.to_owned(),
            version: r.try_get("version")?,
            plan: r.try_get("plan")?,
            storage_gb: u32::try_from(storage_gb)
                .map_err(|_| StoreError::Corrupt(format!("storage_gb {storage_gb}")))?,
            acl: from_json(&r.try_get::<String, _>("acl")?, "acl")?,
            // The local runtime (the only one that keeps instances here)
            // offers no external endpoint.
            external_access: false,
            labels: from_json(&r.try_get::<String, _>("labels")?, "labels")?,
            status: InstanceStatus {
                phase: Phase::parse(&phase)
                    .ok_or_else(|| StoreError::Corrupt(format!("phase {phase:?}")))?,
                message: r.try_get("message")?,
                endpoint: None,
                external_endpoint: None,
                conditions: from_json(&r.try_get::<String, _>("conditions")?, "conditions")?,
                storage_used_bytes: used.and_then(|b| u64::try_from(b).ok()),
            },
            created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
            updated_at: parse_time(&r.try_get::<String, _>("updated_at")?)?,
        };
        let password = crate::seal::open(
            key,
            &r.try_get::<String, _>("password")?,
            &crate::seal::instance_password(&instance.id.to_string()),
        )?;
        Ok(Self {
            instance,
            port: u16::try_from(port).map_err(|_| StoreError::Corrupt(format!("port {port}")))?,
            password,
            generation: r.try_get("generation")?,
        })
    }
}

pub(crate) fn event_from_row(r: &AnyRow) -> Result<ServiceEvent> {
    let kind: String = r.try_get("kind")?;
    let severity: String = r.try_get("severity")?;
    let from: Option<String> = r.try_get("from_phase")?;
    let to: Option<String> = r.try_get("to_phase")?;
    Ok(ServiceEvent {
        id: uuid(&r.try_get::<String, _>("id")?)?,
        time: parse_time(&r.try_get::<String, _>("time")?)?,
        instance: r.try_get("instance")?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::Corrupt(format!("severity {severity:?}")))?,
        message: r.try_get("message")?,
        from: from.as_deref().and_then(Phase::parse),
        to: to.as_deref().and_then(Phase::parse),
    })
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: Secret,
    pub is_admin: bool,
    pub created_at: OffsetDateTime,
}

impl UserRow {
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self> {
        let admin: i64 = r.try_get("is_admin")?;
        Ok(Self {
            id: uuid(&r.try_get::<String, _>("id")?)?,
            username: r.try_get("username")?,
            password_hash: Secret::new(r.try_get::<String, _>("password_hash")?),
            is_admin: admin != 0,
            created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
        })
    }
}

/// A key the built-in token issuer signs with.
#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    pub private_pem: Secret,
    /// The public key, encoded as the algorithm's JWK needs it.
    pub public_key: String,
    pub created_at: OffsetDateTime,
}

impl SigningKeyRow {
    pub(crate) fn from_row(r: &AnyRow, key: Option<&crate::SealingKey>) -> Result<Self> {
        let kid: String = r.try_get("kid")?;
        Ok(Self {
            algorithm: r.try_get("algorithm")?,
            private_pem: crate::seal::open(
                key,
                &r.try_get::<String, _>("private_pem")?,
                &crate::seal::signing_key(&kid),
            )?,
            kid,
            public_key: r.try_get("public_key")?,
            created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
        })
    }
}
