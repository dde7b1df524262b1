//! Audit events: who did what, to what, with which outcome. Append-only and
//! hash-chained: each event's hash covers its fields and the previous hash.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// `user` (or `anonymous` for requests without a valid token).
    pub kind: String,
    pub id: String,
    pub name: String,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// `instance`, `project`, `user`, `member`, `audit`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeResult {
    Success,
    Failure,
}

impl OutcomeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeResult::Success => "success",
            OutcomeResult::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(OutcomeResult::Success),
            "failure" => Some(OutcomeResult::Failure),
            _ => None,
        }
    }
}

/// The result of the request: success or failure, and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    pub result: OutcomeResult,
    pub status: u16,
}

impl Outcome {
    pub fn of_status(status: u16) -> Self {
        Self {
            result: if status < 400 {
                OutcomeResult::Success
            } else {
                OutcomeResult::Failure
            },
            status,
        }
    }
}

/// An audit event before it is appended: the store adds sequence, id, time
/// and the chain's hashes. `details` must never hold a secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAuditEvent {
    pub actor: Actor,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub project: Option<String>,
    pub action: String,
    pub target: Target,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

/// One recorded audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub actor: Actor,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub project: Option<String>,
    /// `instance.create`, `instance.credentials.read`, `member.add`, …
    pub action: String,
    pub target: Target,
    pub outcome: Outcome,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hash of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of this event's canonical encoding, which includes `prev_hash`.
    pub hash: String,
}

/// The fixed-width UTC form audit times are stored and hashed in
/// (`2026-11-25T00:13:00.123456Z`): it sorts as text.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// `t` cut to the microseconds that [`format_time`] keeps.
pub fn truncate_time(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t)
}

impl AuditEvent {
    /// The canonical encoding the hash covers: a JSON array of every field in
    /// a fixed order (strings escaped by JSON, so fields cannot run into each
    /// other), ending with `prev_hash`.
    pub fn canonical(&self) -> String {
        serde_json::json!([
            "strata-audit-v1",
            self.seq,
            self.id.to_string(),
            format_time(self.time),
            self.actor.kind,
            self.actor.id,
            self.actor.name,
            self.source_ip,
            self.user_agent,
            self.request_id,
            self.project,
            self.action,
            self.target.kind,
            self.target.id,
            self.target.name,
            self.outcome.result.as_str(),
            self.outcome.status,
            self.details.to_string(),
            self.prev_hash,
        ])
        .to_string()
    }

    /// SHA-256 of [`AuditEvent::canonical`], lowercase hex.
    pub fn compute_hash(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.canonical().as_bytes()))
    }
}

/// The first event at which the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BrokenLink {
    /// Sequence number of the event (or of the gap) that breaks the chain.
    pub seq: i64,
    /// The event's id, when the row could be read.
    pub id: Option<String>,
    pub reason: String,
}

/// What a walk over the whole chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainReport {
    /// True when every event and the chain head agree.
    pub ok: bool,
    /// Events checked before the walk ended.
    pub events: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<BrokenLink>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(prev: &str) -> AuditEvent {
        let mut e = AuditEvent {
            seq: 1,
            id: Uuid::nil(),
            time: truncate_time(OffsetDateTime::now_utc()),
            actor: Actor {
                kind: "user".into(),
                id: "u".into(),
                name: "alice".into(),
            },
            source_ip: Some("127.0.0.1".into()),
            user_agent: None,
            request_id: Some("r".into()),
            project: Some("default".into()),
            action: "instance.create".into(),
            target: Target {
                kind: "instance".into(),
                id: None,
                name: "orders".into(),
            },
            outcome: Outcome::of_status(202),
            details: serde_json::json!({"plan": "micro"}),
            prev_hash: prev.into(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    #[test]
    fn hash_covers_every_field_and_the_previous_hash() {
        let e = event(GENESIS_HASH);
        assert_eq!(e.hash.len(), 64);
        assert_eq!(e.compute_hash(), e.hash);
        let mut changed = e.clone();
        changed.actor.name = "mallory".into();
        assert_ne!(changed.compute_hash(), e.hash);
        let mut changed = e.clone();
        changed.outcome = Outcome::of_status(403);
        assert_ne!(changed.compute_hash(), e.hash);
        let mut changed = e.clone();
        changed.details = serde_json::json!({"plan": "large"});
        assert_ne!(changed.compute_hash(), e.hash);
        assert_ne!(event(&e.hash).hash, e.hash);
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let mut a = event(GENESIS_HASH);
        a.actor.id = "ab".into();
        a.actor.name = "c".into();
        let mut b = a.clone();
        b.actor.id = "a".into();
        b.actor.name = "bc".into();
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn times_are_fixed_width_and_sort_as_text() {
        let t = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(format_time(t), "1970-01-01T00:00:00.000000Z");
        let later = t + time::Duration::microseconds(1);
        assert!(format_time(later) > format_time(t));
        assert_eq!(
            OutcomeResult::parse("failure"),
            Some(OutcomeResult::Failure)
        );
        assert_eq!(Outcome::of_status(404).result, OutcomeResult::Failure);
    }
}
