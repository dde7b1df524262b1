//! The status step (pure): the phase, the conditions with their transition
//! times, and which condition changes deserve an Event.

use k8s_openapi::api::apps::v1::StatefulSet;
use strata_core::instance::set_condition;
use strata_core::{Condition, ConditionStatus, Phase, ValidationError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    CREDENTIALS_APPLIED, Desired, Observed, ValidSpec, endpoint, requested_rotation, secret_name,
};
use crate::crd::{PostgresInstance, PostgresInstanceStatus, StatusCondition};

/// Condition types the operator maintains.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Whether the last pass applied every object (False: it is being retried,
/// or the API server refused them).
pub const RECONCILED: &str = "Reconciled";

/// Why applying the objects failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyError<'a> {
    /// The API server refused the objects as invalid: only a change of the
    /// spec can help. Everything else (conflicts, throttling, server errors,
    /// timeouts) passes by itself and is retried.
    pub permanent: bool,
    /// The condition's reason: `Conflict`, `TooManyRequests`, `ServerError`,
    /// `Unreachable`, `InvalidObject`, ….
    pub reason: &'a str,
    pub message: &'a str,
}

/// What the status step knows about the world.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// The spec broke a rule.
    Invalid(&'a ValidationError),
    /// Applying the objects failed.
    ApplyFailed(ApplyError<'a>),
    /// Everything was applied; this is the StatefulSet as the server has it.
    Applied(Option<&'a StatefulSet>),
    /// The finalizer is cleaning up.
    Deleting,
}

/// A condition of the resource's status in the domain's terms (an
/// unreadable transition time reads as the epoch).
pub(crate) fn to_core(c: &StatusCondition) -> Condition {
    Condition {
        kind: c.type_.clone(),
        status: match c.status.as_str() {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        },
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: OffsetDateTime::parse(&c.last_transition_time, &Rfc3339)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

pub(super) fn from_core(c: &Condition, generation: Option<i64>) -> StatusCondition {
    StatusCondition {
        type_: c.kind.clone(),
        status: match c.status {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
        .to_owned(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.format(&Rfc3339).unwrap_or_default(),
        observed_generation: generation,
    }
}

/// The status an instance should have, given what happened. Transition
/// times of conditions whose status did not change are kept.
pub fn status(
    instance: &PostgresInstance,
    valid: Option<&ValidSpec>,
    outcome: &Outcome<'_>,
    now: OffsetDateTime,
) -> PostgresInstanceStatus {
    use ConditionStatus::{False, True};
    let previous = instance.status.clone().unwrap_or_default();
    let generation = instance.metadata.generation;
    let was_ready = previous
        .phase
        .as_deref()
        .and_then(Phase::parse)
        .is_some_and(|p| matches!(p, Phase::Ready | Phase::Updating));
    let mut conditions: Vec<Condition> = previous.conditions.iter().map(to_core).collect();
    let mut set = |kind: &str, status: ConditionStatus, reason: &str, message: &str| {
        set_condition(&mut conditions, kind, status, reason, message, now);
    };
    let (phase, message) = match outcome {
        Outcome::Invalid(err) => {
            let message = err.to_string();
            set(READY, False, "InvalidSpec", &message);
            set(PROGRESSING, False, "InvalidSpec", &message);
            set(DEGRADED, True, "InvalidSpec", &message);
            set(RECONCILED, False, "InvalidSpec", &message);
            (Phase::Failed, message)
        }
        Outcome::ApplyFailed(e) if e.permanent => {
            let message = format!(
                "the API server refused the instance's objects: {}",
                e.message
            );
            set(PROGRESSING, False, e.reason, &message);
            set(DEGRADED, True, e.reason, &message);
            set(RECONCILED, False, e.reason, &message);
            if !was_ready {
                set(READY, False, e.reason, &message);
            }
            (Phase::Failed, message)
        }
        Outcome::ApplyFailed(e) => {
            // It passes by itself: the phase, and what the other conditions
            // say about the server, stay as they were; a serving instance
            // keeps serving and keeps its endpoint.
            let message = format!(
                "applying the instance's objects failed; retrying: {}",
                e.message
            );
            set(RECONCILED, False, e.reason, &message);
            let phase = previous
                .phase
                .as_deref()
                .and_then(Phase::parse)
                .unwrap_or(Phase::Provisioning);
            (phase, previous.message.clone().unwrap_or(message))
        }
        Outcome::Deleting => {
            let message = "deleting the instance's objects".to_owned();
            set(READY, False, "Deleting", &message);
            set(PROGRESSING, True, "Deleting", &message);
            (Phase::Deleting, message)
        }
        Outcome::Applied(sts) => {
            set(DEGRADED, False, "AsExpected", "all objects applied");
            set(
                RECONCILED,
                True,
                "Applied",
                &format!(
                    "every object applied for generation {}",
                    generation.unwrap_or_default()
                ),
            );
            applied(*sts, was_ready, &mut conditions, now)
        }
    };
    let ready = matches!(phase, Phase::Ready | Phase::Updating);
    PostgresInstanceStatus {
        phase: Some(phase.as_str().to_owned()),
        message: Some(message),
        observed_generation: generation,
        conditions: conditions
            .iter()
            .map(|c| from_core(c, generation))
            .collect(),
        endpoint: match (ready, valid) {
            (true, Some(v)) => Some(endpoint(v)),
            _ => None,
        },
        // Kept while serving: a full pass sets it from the load balancer
        // (`set_external_endpoint`), a pass that failed to apply keeps it.
        external_endpoint: previous.external_endpoint.clone().filter(|_| ready),
        credentials_secret: valid.map(|v| secret_name(v.name.as_str())),
    }
}

/// Phase and message once every object is applied: from the StatefulSet's
/// readiness and rollout.
fn applied(
    sts: Option<&StatefulSet>,
    was_ready: bool,
    conditions: &mut Vec<Condition>,
    now: OffsetDateTime,
) -> (Phase, String) {
    use ConditionStatus::{False, True};
    let mut set = |kind: &str, status: ConditionStatus, reason: &str, message: &str| {
        set_condition(conditions, kind, status, reason, message, now);
    };
    let ready_replicas = sts
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let rolled_out = sts.is_some_and(|s| {
        let observed = s.status.as_ref().and_then(|st| st.observed_generation);
        let updated = s.status.as_ref().and_then(|st| st.updated_replicas);
        observed.is_none_or(|o| Some(o) >= s.metadata.generation) && updated.is_none_or(|u| u >= 1)
    });
    if ready_replicas >= 1 {
        set(
            READY,
            True,
            "PostgresReady",
            "PostgreSQL accepts connections",
        );
        if rolled_out {
            set(
                PROGRESSING,
                False,
                "RolledOut",
                "the StatefulSet is up to date",
            );
            (Phase::Ready, "PostgreSQL accepts connections".to_owned())
        } else {
            set(
                PROGRESSING,
                True,
                "RollingOut",
                "the StatefulSet is rolling out a change",
            );
            (Phase::Updating, "rolling out a change".to_owned())
        }
    } else {
        let message = "waiting for the PostgreSQL pod to become ready".to_owned();
        set(READY, False, super::POD_NOT_READY, &message);
        set(PROGRESSING, True, "WaitingForPod", &message);
        if was_ready {
            (Phase::Updating, message)
        } else {
            (Phase::Provisioning, message)
        }
    }
}

/// Sets `CredentialsApplied`: True once the credentials agent reported that
/// the running server uses the password the credentials Secret holds (the
/// rotation it answers), False while it has not.
pub fn set_credentials_applied(
    status: &mut PostgresInstanceStatus,
    instance: &PostgresInstance,
    observed: &Observed,
    desired: &Desired,
    now: OffsetDateTime,
) {
    let applied = !desired.new_password
        && observed.applied_rotation.as_deref() == Some(requested_rotation(instance).as_str());
    let mut conditions: Vec<Condition> = status.conditions.iter().map(to_core).collect();
    let (value, reason, message) = if applied {
        (
            ConditionStatus::True,
            "AgentApplied",
            "the running server uses the password of the credentials Secret",
        )
    } else {
        (
            ConditionStatus::False,
            "WaitingForAgent",
            "waiting for the credentials agent to apply the password to the running server",
        )
    };
    set_condition(
        &mut conditions,
        CREDENTIALS_APPLIED,
        value,
        reason,
        message,
        now,
    );
    status.conditions = conditions
        .iter()
        .map(|c| from_core(c, instance.metadata.generation))
        .collect();
}

/// An Event a change of a condition deserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The Events the change from `previous` to `next` deserves, besides the
/// phase change (which has its own Event):
///
/// * `Reconciled` turning False or failing for another reason (a warning
///   with the reason), and turning True again; not when the phase changes
///   too, as its Event says the same;
/// * a pod problem someone has to act on (`Ready=False` with the reason
///   `Degraded=True` carries: `ImagePullBackOff`, `CrashLoopBackOff`,
///   `Unschedulable`, …), once per reason;
/// * `StorageResized` failing (`ExpansionNotSupported`, `ResizeRefused`,
///   `ResizeFailed`), and turning True after it was False.
pub fn announcements(
    previous: Option<&PostgresInstanceStatus>,
    next: &PostgresInstanceStatus,
) -> Vec<Announcement> {
    let find = |s: Option<&PostgresInstanceStatus>, kind: &str| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
            .cloned()
    };
    let changed = |before: Option<&StatusCondition>, now: &StatusCondition| {
        before.is_none_or(|b| b.status != now.status || b.reason != now.reason)
    };
    let warning = |c: &StatusCondition| Announcement {
        warning: true,
        reason: c.reason.clone(),
        note: c.message.clone(),
    };
    let mut out = Vec::new();
    let same_phase = previous.and_then(|p| p.phase.as_ref()) == next.phase.as_ref();
    let before = find(previous, RECONCILED);
    if let Some(now) = find(Some(next), RECONCILED)
        && same_phase
        && changed(before.as_ref(), &now)
    {
        if now.status == "False" {
            out.push(warning(&now));
        } else if before.is_some_and(|b| b.status == "False") {
            out.push(Announcement {
                warning: false,
                reason: RECONCILED.to_owned(),
                note: now.message.clone(),
            });
        }
    }
    if let (Some(ready), Some(degraded)) = (find(Some(next), READY), find(Some(next), DEGRADED))
        && ready.status == "False"
        && degraded.status == "True"
        && degraded.reason == ready.reason
        && changed(find(previous, READY).as_ref(), &ready)
    {
        out.push(warning(&ready));
    }
    let before = find(previous, super::STORAGE_RESIZED);
    if let Some(now) = find(Some(next), super::STORAGE_RESIZED)
        && changed(before.as_ref(), &now)
    {
        if now.status == "False" && now.reason != "Resizing" {
            out.push(warning(&now));
        } else if now.status == "True" && before.is_some_and(|b| b.status == "False") {
            out.push(Announcement {
                warning: false,
                reason: super::STORAGE_RESIZED.to_owned(),
                note: now.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::build::{BuildConfig, validate};

    fn instance() -> PostgresInstance {
        let mut i = crate::fixtures::orders(&["10.0.0.0/8"]);
        i.metadata.generation = Some(2);
        i
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
    }

    fn ready_sts() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                ready_replicas: Some(1),
                replicas: 1,
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn condition<'a>(s: &'a PostgresInstanceStatus, kind: &str) -> &'a StatusCondition {
        s.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    /// A serving instance, as a full pass left it.
    fn serving() -> (PostgresInstance, ValidSpec) {
        let mut i = instance();
        let valid = validate(&i, &BuildConfig::default()).unwrap();
        let sts = ready_sts();
        i.status = Some(status(
            &i,
            Some(&valid),
            &Outcome::Applied(Some(&sts)),
            at(0),
        ));
        assert_eq!(i.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
        (i, valid)
    }

    const CONFLICT: ApplyError<'static> = ApplyError {
        permanent: false,
        reason: "ServerError",
        message: "Kubernetes API: etcdserver: request timed out",
    };

    #[test]
    fn a_transient_apply_error_keeps_a_serving_instance_ready() {
        let (i, valid) = serving();
        let before = i.status.clone().unwrap();
        let s = status(&i, Some(&valid), &Outcome::ApplyFailed(CONFLICT), at(10));
        assert_eq!(s.phase.as_deref(), Some("Ready"));
        assert_eq!(s.message, before.message);
        assert_eq!(s.endpoint, before.endpoint, "clients keep their endpoint");
        assert_eq!(condition(&s, READY), condition(&before, READY));
        assert_eq!(condition(&s, DEGRADED), condition(&before, DEGRADED));
        let reconciled = condition(&s, RECONCILED);
        assert_eq!(reconciled.status, "False");
        assert_eq!(reconciled.reason, "ServerError");
        assert!(reconciled.message.contains("request timed out"));
        assert_eq!(reconciled.last_transition_time, "2023-11-14T22:13:30Z");

        // One Event, with the reason; none for the same failure again.
        let events = announcements(Some(&before), &s);
        assert_eq!(
            events,
            [Announcement {
                warning: true,
                reason: "ServerError".into(),
                note: reconciled.message.clone(),
            }]
        );
        let mut again = i.clone();
        again.status = Some(s.clone());
        let s2 = status(
            &again,
            Some(&valid),
            &Outcome::ApplyFailed(CONFLICT),
            at(20),
        );
        assert_eq!(s2, s, "a repeated failure changes nothing");
        assert!(announcements(Some(&s), &s2).is_empty());

        // The next pass applies: Reconciled again, announced as such.
        let mut retried = i.clone();
        retried.status = Some(s.clone());
        let s3 = status(
            &retried,
            Some(&valid),
            &Outcome::Applied(Some(&ready_sts())),
            at(30),
        );
        assert_eq!(condition(&s3, RECONCILED).status, "True");
        let events = announcements(Some(&s), &s3);
        assert_eq!(events.len(), 1);
        assert!(!events[0].warning && events[0].reason == RECONCILED);
    }

    #[test]
    fn a_transient_error_before_the_first_status_says_provisioning() {
        let i = instance();
        let valid = validate(&i, &BuildConfig::default()).unwrap();
        let s = status(&i, Some(&valid), &Outcome::ApplyFailed(CONFLICT), at(0));
        assert_eq!(s.phase.as_deref(), Some("Provisioning"));
        assert!(s.endpoint.is_none());
        assert_eq!(condition(&s, RECONCILED).reason, "ServerError");
    }

    #[test]
    fn objects_the_api_server_refuses_fail_the_instance() {
        let (i, valid) = serving();
        let refused = ApplyError {
            permanent: true,
            reason: "InvalidObject",
            message: "StatefulSet.apps \"orders\" is invalid",
        };
        let s = status(&i, Some(&valid), &Outcome::ApplyFailed(refused), at(10));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(condition(&s, DEGRADED).reason, "InvalidObject");
        assert_eq!(condition(&s, RECONCILED).status, "False");
        // The phase Event says it; no second Event for the condition.
        assert!(announcements(i.status.as_ref(), &s).is_empty());
    }
}
