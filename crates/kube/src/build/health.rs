//! Why an instance is not ready and whether its storage has the size it
//! asks for, read from its pods and claims (pure): what the kubelet, the
//! scheduler and the volume resizer report, in the instance's conditions.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{
    ContainerStatus, PersistentVolumeClaim, Pod, PodCondition, PodStatus,
};
use strata_core::instance::set_condition;
use strata_core::{Condition, ConditionStatus};
use time::OffsetDateTime;

use super::status::{DEGRADED, PROGRESSING, READY, from_core, to_core};
use super::{INSTANCE_LABEL, quantity_gib};
use crate::crd::PostgresInstanceStatus;

/// Condition: every data claim has the capacity `storageGb` asks for.
pub const STORAGE_RESIZED: &str = "StorageResized";
/// The reason `status` gives `Ready=False` while the StatefulSet has no
/// ready replica; `set_health` replaces it with what the pod says.
pub const POD_NOT_READY: &str = "PodNotReady";

/// Container states the kubelet reports that will not pass by waiting a
/// little: a user (or the platform) has to act.
const STUCK_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
];

/// Why the instance's pod is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDiagnosis {
    /// `ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`,
    /// `ClaimPending`, `Starting`, `NotReady`, `WaitingForPod`, ….
    pub reason: String,
    pub message: String,
    /// Something someone has to fix, as opposed to a pod on its way up.
    pub problem: bool,
}

impl PodDiagnosis {
    fn new(reason: &str, message: String, problem: bool) -> Self {
        Self {
            reason: reason.to_owned(),
            message,
            problem,
        }
    }
}

/// Why the instance's pods are not ready, from the first pod that is not
/// (the instance runs one): a container the kubelet cannot start or keeps
/// restarting, a pod the scheduler cannot place (and a claim that is not
/// bound), a pod still starting.
pub fn diagnose_pods(pods: &[Pod], claims: &[PersistentVolumeClaim]) -> PodDiagnosis {
    let Some(pod) = pods.iter().find(|p| !pod_ready(p)).or(pods.first()) else {
        return PodDiagnosis::new(
            "WaitingForPod",
            "the StatefulSet has not created the PostgreSQL pod yet".into(),
            false,
        );
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return PodDiagnosis::new("Terminating", format!("pod {name} is shutting down"), false);
    }
    let status = pod.status.clone().unwrap_or_default();
    if let Some(stuck) = stuck_container(&status) {
        return stuck;
    }
    if let Some(unschedulable) = condition(&status, "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    {
        let scheduler = unschedulable.message.clone().unwrap_or_default();
        if let Some(claim) = pending_claim(pod, claims) {
            return PodDiagnosis::new(
                "ClaimPending",
                format!("claim {claim} is not bound to a volume; the scheduler says: {scheduler}"),
                true,
            );
        }
        return PodDiagnosis::new(
            "Unschedulable",
            format!("pod {name} cannot be scheduled: {scheduler}"),
            true,
        );
    }
    if let Some(claim) = pending_claim(pod, claims) {
        return PodDiagnosis::new(
            "ClaimPending",
            format!("pod {name} waits for claim {claim} to be bound to a volume"),
            false,
        );
    }
    let waiting: Vec<String> = containers(&status)
        .filter_map(|c| {
            let reason = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
            Some(format!("{}: {reason}", c.name))
        })
        .collect();
    if !waiting.is_empty() || status.phase.as_deref() == Some("Pending") {
        let detail = if waiting.is_empty() {
            "pending".to_owned()
        } else {
            waiting.join(", ")
        };
        return PodDiagnosis::new(
            "Starting",
            format!("pod {name} is starting ({detail})"),
            false,
        );
    }
    let not_ready: Vec<&str> = status
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let message = if not_ready.is_empty() {
        format!("pod {name} is not ready yet")
    } else {
        format!(
            "pod {name} runs, but its readiness probe fails for {}",
            not_ready.join(", ")
        )
    };
    PodDiagnosis::new("NotReady", message, false)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| condition(s, "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn condition<'a>(status: &'a PodStatus, kind: &str) -> Option<&'a PodCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == kind)
}

/// Init containers first: the others do not start before they are done.
fn containers(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
}

fn stuck_container(status: &PodStatus) -> Option<PodDiagnosis> {
    containers(status).find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        if !STUCK_WAITING.contains(&reason) {
            return None;
        }
        let mut message = format!("container {}: {reason}", c.name);
        if let Some(m) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
            let _ = write!(message, ": {m}");
        }
        // Why it keeps restarting: how it ended last time.
        if let Some(last) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            let _ = write!(
                message,
                "; last exit: {} (code {}, {} restarts)",
                last.reason.as_deref().unwrap_or("terminated"),
                last.exit_code,
                c.restart_count
            );
            if let Some(m) = last.message.as_deref().filter(|m| !m.is_empty()) {
                let _ = write!(message, ": {}", m.trim());
            }
        }
        Some(PodDiagnosis::new(reason, message, true))
    })
}

/// The first claim of `pod` that is not bound.
fn pending_claim(pod: &Pod, claims: &[PersistentVolumeClaim]) -> Option<String> {
    let wanted: Vec<&str> = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.as_str()))
        .collect();
    claims
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| wanted.contains(&n))
        })
        .find(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| p == "Pending")
        })
        .and_then(|c| c.metadata.name.clone())
}

/// What the operator found when it tried to grow the claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResizeAttempt {
    /// A claim's StorageClass that does not allow volume expansion.
    pub class_without_expansion: Option<String>,
    /// The API server refused to grow a claim (its message).
    pub refused: Option<String>,
}

/// `StorageResized`: True when every bound data claim has the capacity
/// `storage_gb` asks for; False with why not. `None` while no claim is
/// bound (nothing to say yet).
pub fn storage_resized(
    claims: &[PersistentVolumeClaim],
    storage_gb: u32,
    attempt: &ResizeAttempt,
) -> Option<(ConditionStatus, String, String)> {
    let want = f64::from(storage_gb);
    let bound: Vec<&PersistentVolumeClaim> = claims
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .collect();
    if bound.is_empty() {
        return None;
    }
    let gib = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(quantity_gib).unwrap_or(0.0)
    };
    let mut growing = Vec::new();
    for claim in bound {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        let capacity = gib(status.capacity.as_ref().and_then(|c| c.get("storage")));
        if capacity >= want {
            continue;
        }
        let requested = gib(claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")));
        if requested < want {
            if let Some(class) = &attempt.class_without_expansion {
                return Some((
                    ConditionStatus::False,
                    "ExpansionNotSupported".into(),
                    format!(
                        "claim {name} stays at {capacity} GiB: its StorageClass {class} does not allow volume expansion (allowVolumeExpansion)"
                    ),
                ));
            }
            if let Some(refused) = &attempt.refused {
                return Some((
                    ConditionStatus::False,
                    "ResizeRefused".into(),
                    format!("growing claim {name} to {storage_gb} GiB was refused: {refused}"),
                ));
            }
        }
        // Asked for; what the resizer says about it.
        let failed = status.conditions.iter().flatten().find(|c| {
            c.status == "True"
                && matches!(
                    c.type_.as_str(),
                    "ControllerResizeError" | "NodeResizeError"
                )
        });
        let infeasible = status
            .allocated_resource_statuses
            .as_ref()
            .and_then(|s| s.get("storage"))
            .filter(|s| s.ends_with("Infeasible"));
        if failed.is_some() || infeasible.is_some() {
            let detail = failed
                .and_then(|c| c.message.clone())
                .or_else(|| infeasible.cloned())
                .unwrap_or_default();
            return Some((
                ConditionStatus::False,
                "ResizeFailed".into(),
                format!("growing claim {name} to {storage_gb} GiB failed: {detail}"),
            ));
        }
        let filesystem = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "FileSystemResizePending" && c.status == "True");
        growing.push(if filesystem {
            format!(
                "{name}: the volume grew, its file system grows when the pod next starts on a node"
            )
        } else {
            format!("{name}: {capacity} GiB, growing to {storage_gb} GiB")
        });
    }
    Some(if growing.is_empty() {
        (
            ConditionStatus::True,
            "Resized".into(),
            format!("the data volume has the requested {storage_gb} GiB"),
        )
    } else {
        (
            ConditionStatus::False,
            "Resizing".into(),
            growing.join("; "),
        )
    })
}

/// What the operator saw of the instance's pods and claims.
#[derive(Debug, Clone, Copy)]
pub struct Health<'a> {
    pub pods: &'a [Pod],
    pub claims: &'a [PersistentVolumeClaim],
    pub storage_gb: u32,
    pub resize: &'a ResizeAttempt,
}

/// Puts what the pods and claims say into a status `status` computed from
/// the StatefulSet: why `Ready` is False (the kubelet's or the scheduler's
/// reason and message instead of "not ready"; `Degraded=True` when someone
/// has to act) and `StorageResized`. Transition times are those of
/// `previous` (the status as written) wherever a condition's status is
/// the same as there.
pub fn set_health(
    status: &mut PostgresInstanceStatus,
    previous: Option<&PostgresInstanceStatus>,
    health: &Health<'_>,
    generation: Option<i64>,
    now: OffsetDateTime,
) {
    let mut conditions: Vec<Condition> = status.conditions.iter().map(to_core).collect();
    let mut set = |kind: &str, value: ConditionStatus, reason: &str, message: &str| {
        set_condition(&mut conditions, kind, value, reason, message, now);
    };
    let waiting = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "False" && c.reason == POD_NOT_READY);
    if waiting {
        let d = diagnose_pods(health.pods, health.claims);
        set(READY, ConditionStatus::False, &d.reason, &d.message);
        set(PROGRESSING, ConditionStatus::True, &d.reason, &d.message);
        if d.problem {
            set(DEGRADED, ConditionStatus::True, &d.reason, &d.message);
            status.message = Some(format!("PostgreSQL is not ready: {}", d.message));
        } else {
            status.message = Some(format!("waiting for PostgreSQL: {}", d.message));
        }
    }
    if let Some((value, reason, message)) =
        storage_resized(health.claims, health.storage_gb, health.resize)
    {
        set(STORAGE_RESIZED, value, &reason, &message);
    }
    status.conditions = conditions
        .iter()
        .map(|c| from_core(c, generation))
        .collect();
    for c in &mut status.conditions {
        let before = previous
            .into_iter()
            .flat_map(|p| p.conditions.iter())
            .find(|b| b.type_ == c.type_ && b.status == c.status);
        if let Some(before) = before {
            c.last_transition_time
                .clone_from(&before.last_transition_time);
        }
    }
}

/// The instance a pod or claim belongs to (its `strata.dev/instance` label).
pub fn instance_of(labels: Option<&std::collections::BTreeMap<String, String>>) -> Option<&str> {
    labels?.get(INSTANCE_LABEL).map(String::as_str)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::needless_pass_by_value
    )]

    use serde_json::{Value, json};

    use super::*;
    use crate::build::{BuildConfig, validate};
    use crate::build::{Outcome, status};
    use crate::crd::PostgresInstance;

    /// The instance's pod as the kubelet and the scheduler report it.
    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "orders-0", "labels": { INSTANCE_LABEL: "orders" } },
            "spec": {
                "containers": [{ "name": "postgres" }],
                "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "data-orders-0" } }]
            },
            "status": status,
        }))
        .unwrap()
    }

    fn claim(phase: &str, requested: &str, status: Value) -> PersistentVolumeClaim {
        let mut status = status;
        status["phase"] = json!(phase);
        serde_json::from_value(json!({
            "metadata": { "name": "data-orders-0" },
            "spec": {
                "storageClassName": "standard",
                "resources": { "requests": { "storage": requested } }
            },
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "True" }],
            "containerStatuses": [{
                "name": "postgres", "image": "postgres:16", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": { "waiting": { "reason": reason, "message": message } }
            }]
        })
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named_with_the_kubelets_message() {
        let d = diagnose_pods(
            &[pod(waiting(
                "ImagePullBackOff",
                "Back-off pulling image \"registry.example/pg:99\"",
            ))],
            &[],
        );
        assert_eq!(d.reason, "ImagePullBackOff");
        assert!(d.problem);
        assert_eq!(
            d.message,
            "container postgres: ImagePullBackOff: Back-off pulling image \"registry.example/pg:99\""
        );
    }

    #[test]
    fn a_crash_loop_says_how_the_container_ended() {
        let mut status = waiting(
            "CrashLoopBackOff",
            "back-off 40s restarting failed container",
        );
        status["containerStatuses"][0]["restartCount"] = json!(3);
        status["containerStatuses"][0]["lastState"] = json!({
            "terminated": { "exitCode": 137, "reason": "OOMKilled" }
        });
        let d = diagnose_pods(&[pod(status)], &[]);
        assert_eq!(d.reason, "CrashLoopBackOff");
        assert!(
            d.message
                .ends_with("; last exit: OOMKilled (code 137, 3 restarts)"),
            "{}",
            d.message
        );
    }

    #[test]
    fn an_init_container_is_looked_at_first() {
        let mut status = waiting("PodInitializing", "");
        status["initContainerStatuses"] = json!([{
            "name": "copy-strata", "image": "strata", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "waiting": { "reason": "ErrImagePull", "message": "not found" } }
        }]);
        let d = diagnose_pods(&[pod(status)], &[]);
        assert_eq!(d.reason, "ErrImagePull");
        assert!(
            d.message.starts_with("container copy-strata:"),
            "{}",
            d.message
        );
    }

    fn unschedulable(message: &str) -> Value {
        json!({
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message
            }]
        })
    }

    #[test]
    fn an_unschedulable_pod_and_a_pending_claim() {
        let scheduler = "0/3 nodes are available: 3 Insufficient memory.";
        let d = diagnose_pods(&[pod(unschedulable(scheduler))], &[]);
        assert_eq!(d.reason, "Unschedulable");
        assert!(d.problem && d.message.ends_with(scheduler), "{}", d.message);

        let scheduler =
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.";
        let pending = claim("Pending", "20Gi", json!({}));
        let d = diagnose_pods(
            &[pod(unschedulable(scheduler))],
            std::slice::from_ref(&pending),
        );
        assert_eq!(d.reason, "ClaimPending");
        assert!(d.message.contains("data-orders-0") && d.message.ends_with(scheduler));
        // Scheduled, waiting for the volume: on its way, not (yet) a problem.
        let d = diagnose_pods(&[pod(waiting("ContainerCreating", ""))], &[pending]);
        assert_eq!((d.reason.as_str(), d.problem), ("ClaimPending", false));
    }

    #[test]
    fn a_pod_on_its_way_up_is_no_problem() {
        let d = diagnose_pods(&[], &[]);
        assert_eq!((d.reason.as_str(), d.problem), ("WaitingForPod", false));
        let d = diagnose_pods(&[pod(waiting("ContainerCreating", ""))], &[]);
        assert_eq!((d.reason.as_str(), d.problem), ("Starting", false));
        assert_eq!(
            d.message,
            "pod orders-0 is starting (postgres: ContainerCreating)"
        );
        let running = json!({
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": "False" }],
            "containerStatuses": [{
                "name": "postgres", "image": "postgres:16", "imageID": "", "ready": false,
                "restartCount": 0, "state": { "running": {} }
            }]
        });
        let d = diagnose_pods(&[pod(running)], &[]);
        assert_eq!((d.reason.as_str(), d.problem), ("NotReady", false));
        assert!(d.message.ends_with("fails for postgres"), "{}", d.message);
    }

    fn bound(requested: &str, capacity: &str, extra: Value) -> PersistentVolumeClaim {
        let mut status = extra;
        status["capacity"] = json!({ "storage": capacity });
        claim("Bound", requested, status)
    }

    #[test]
    fn storage_resized_says_why_a_claim_did_not_grow() {
        let none = ResizeAttempt::default();
        let reason = |claims: &[PersistentVolumeClaim], attempt: &ResizeAttempt| {
            storage_resized(claims, 50, attempt).map(|(s, r, _)| (s, r))
        };
        // Nothing bound yet: nothing to say.
        assert_eq!(reason(&[claim("Pending", "20Gi", json!({}))], &none), None);
        assert_eq!(
            reason(&[bound("50Gi", "50Gi", json!({}))], &none),
            Some((ConditionStatus::True, "Resized".into()))
        );
        let small = [bound("20Gi", "20Gi", json!({}))];
        let no_expansion = ResizeAttempt {
            class_without_expansion: Some("standard".into()),
            ..ResizeAttempt::default()
        };
        let (status, reason_, message) = storage_resized(&small, 50, &no_expansion).unwrap();
        assert_eq!(
            (status, reason_.as_str()),
            (ConditionStatus::False, "ExpansionNotSupported")
        );
        assert!(
            message.contains("data-orders-0") && message.contains("StorageClass standard"),
            "{message}"
        );
        let refused = ResizeAttempt {
            refused: Some("persistentvolumeclaims \"data-orders-0\" is forbidden".into()),
            ..ResizeAttempt::default()
        };
        assert_eq!(
            reason(&small, &refused),
            Some((ConditionStatus::False, "ResizeRefused".into()))
        );
        // Asked for: the resizer's report.
        let failed = bound(
            "50Gi",
            "20Gi",
            json!({ "conditions": [{
                "type": "ControllerResizeError", "status": "True",
                "message": "disk quota exceeded"
            }] }),
        );
        let (_, r, message) = storage_resized(&[failed], 50, &none).unwrap();
        assert_eq!(r, "ResizeFailed");
        assert!(message.ends_with("disk quota exceeded"), "{message}");
        let infeasible = bound(
            "50Gi",
            "20Gi",
            json!({ "allocatedResourceStatuses": { "storage": "ControllerResizeInfeasible" } }),
        );
        assert_eq!(
            reason(&[infeasible], &none),
            Some((ConditionStatus::False, "ResizeFailed".into()))
        );
        let filesystem = bound(
            "50Gi",
            "20Gi",
            json!({ "conditions": [{ "type": "FileSystemResizePending", "status": "True" }] }),
        );
        let (_, r, message) = storage_resized(&[filesystem], 50, &none).unwrap();
        assert_eq!(r, "Resizing");
        assert!(message.contains("file system"), "{message}");
        assert_eq!(
            reason(&[bound("50Gi", "20Gi", json!({}))], &none),
            Some((ConditionStatus::False, "Resizing".into()))
        );
    }

    fn instance() -> PostgresInstance {
        let mut i = crate::fixtures::orders(&[]);
        i.metadata.generation = Some(1);
        i
    }

    fn condition<'a>(s: &'a PostgresInstanceStatus, kind: &str) -> &'a crate::crd::StatusCondition {
        s.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    /// One full pass: the StatefulSet has no ready replica, the pod says why.
    fn pass(i: &PostgresInstance, pods: &[Pod], seconds: i64) -> PostgresInstanceStatus {
        let valid = validate(i, &BuildConfig::default()).unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap();
        let mut s = status(i, Some(&valid), &Outcome::Applied(None), now);
        let health = Health {
            pods,
            claims: &[],
            storage_gb: 20,
            resize: &ResizeAttempt::default(),
        };
        set_health(
            &mut s,
            i.status.as_ref(),
            &health,
            i.metadata.generation,
            now,
        );
        s
    }

    #[test]
    fn the_status_says_why_the_pod_is_not_ready_and_keeps_transition_times() {
        let mut i = instance();
        let starting = pass(&i, &[pod(waiting("ContainerCreating", ""))], 0);
        assert_eq!(condition(&starting, READY).reason, "Starting");
        assert_eq!(condition(&starting, DEGRADED).status, "False");
        assert!(super::super::announcements(None, &starting).is_empty());

        i.status = Some(starting.clone());
        let pull = pod(waiting("ImagePullBackOff", "Back-off pulling image"));
        let stuck = pass(&i, std::slice::from_ref(&pull), 10);
        assert_eq!(stuck.phase.as_deref(), Some("Provisioning"));
        assert_eq!(condition(&stuck, READY).reason, "ImagePullBackOff");
        assert_eq!(condition(&stuck, DEGRADED).status, "True");
        assert_eq!(condition(&stuck, DEGRADED).reason, "ImagePullBackOff");
        assert!(
            stuck
                .message
                .as_deref()
                .unwrap()
                .starts_with("PostgreSQL is not ready: container postgres: ImagePullBackOff")
        );
        let events = super::super::announcements(Some(&starting), &stuck);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].warning && events[0].reason == "ImagePullBackOff");

        // The next pass finds the same: the same status, no new Event.
        i.status = Some(stuck.clone());
        let again = pass(&i, &[pull], 20);
        assert_eq!(again, stuck);
        assert!(super::super::announcements(Some(&stuck), &again).is_empty());
    }
}
