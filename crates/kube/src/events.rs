//! Kubernetes Events about `PostgresInstance` objects as Strata service
//! events: the mapping (pure, used for the event list and for live delivery)
//! and the watch that feeds `KubeRuntime::subscribe`.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use strata_core::events::PublishedEvent;
use strata_core::{EventKind, Phase, ServiceEvent, Severity};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::runtime::{PROJECT_LABEL, parse_time};

/// The kind the operator's Events are about.
const REGARDING_KIND: &str = "PostgresInstance";

/// When the event happened: its `eventTime`, else when it was stored.
fn event_time(e: &KubeEvent) -> OffsetDateTime {
    e.event_time
        .as_ref()
        .and_then(|t| parse_time(&t.0.to_string()))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| parse_time(&t.0.to_string()))
        })
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The service event a Kubernetes Event of the operator stands for. The
/// operator uses the phase as the reason of a phase change.
pub fn service_event(e: &KubeEvent, instance: &str) -> ServiceEvent {
    let reason = e.reason.clone().unwrap_or_default();
    let to = Phase::parse(&reason);
    ServiceEvent {
        id: e
            .metadata
            .uid
            .as_deref()
            .and_then(|u| Uuid::parse_str(u).ok())
            .unwrap_or_default(),
        time: event_time(e),
        instance: instance.to_owned(),
        kind: match reason.as_str() {
            "CredentialsCreated" | "CredentialsRotated" => EventKind::CredentialsRotated,
            "Applied" => EventKind::Updated,
            _ if to == Some(Phase::Failed) => EventKind::Failed,
            _ if to.is_some() => EventKind::PhaseChanged,
            _ => EventKind::ProvisioningStep,
        },
        severity: if e.type_.as_deref() == Some("Warning") {
            Severity::Warning
        } else {
            Severity::Info
        },
        message: e.note.clone().unwrap_or(reason),
        from: None,
        to,
    }
}

/// The event as published to live subscribers, when it is about a
/// `PostgresInstance` (whose uid is the instance id) of `project`.
pub fn published(e: &KubeEvent, project: &str) -> Option<PublishedEvent> {
    let regarding = e.regarding.as_ref()?;
    if regarding.kind.as_deref() != Some(REGARDING_KIND) {
        return None;
    }
    let instance_id = Uuid::parse_str(regarding.uid.as_deref()?).ok()?;
    let name = regarding.name.as_deref()?;
    Some(PublishedEvent {
        instance_id,
        project: project.to_owned(),
        event: service_event(e, name),
    })
}

/// Which watch events are live. The watcher starts with a list of what
/// exists: that is history, not news. An event seen before that changes
/// again (Kubernetes counts a repeat in the same object) is no new service
/// event either: its id and time stay. After a re-list (the watch fell too
/// far behind), the events not known before are the ones it missed.
#[derive(Debug, Default)]
pub struct LiveFilter {
    /// Uids of the events that exist, as far as the watch knows.
    known: HashSet<String>,
    /// Uids listed so far while a list is in progress.
    listing: Option<HashSet<String>>,
    listed: bool,
}

impl LiveFilter {
    /// The event to deliver, if any.
    pub fn accept(&mut self, event: watcher::Event<KubeEvent>) -> Option<KubeEvent> {
        match event {
            watcher::Event::Apply(e) => {
                let uid = e.metadata.uid.clone()?;
                self.known.insert(uid).then_some(e)
            }
            watcher::Event::Delete(e) => {
                if let Some(uid) = &e.metadata.uid {
                    self.known.remove(uid);
                }
                None
            }
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                None
            }
            watcher::Event::InitApply(e) => {
                let uid = e.metadata.uid.clone()?;
                let news = self.listed && !self.known.contains(&uid);
                self.listing.get_or_insert_default().insert(uid);
                news.then_some(e)
            }
            watcher::Event::InitDone => {
                self.known = self.listing.take().unwrap_or_default();
                self.listed = true;
                None
            }
        }
    }
}

/// The project of a namespace: the value of its project label. Namespaces
/// are looked up once; only those with the prefix are considered.
struct Projects {
    api: Api<Namespace>,
    prefix: String,
    known: HashMap<String, String>,
}

impl Projects {
    async fn of(&mut self, namespace: &str) -> Option<String> {
        if !namespace.starts_with(&self.prefix) {
            return None;
        }
        if let Some(project) = self.known.get(namespace) {
            return Some(project.clone());
        }
        match self.api.get_opt(namespace).await {
            Ok(Some(ns)) => {
                let project = ns.labels().get(PROJECT_LABEL)?.clone();
                self.known.insert(namespace.to_owned(), project.clone());
                Some(project)
            }
            Ok(None) => None,
            Err(e) => {
                warn!(namespace, error = %e, "cannot read a project namespace; event not delivered");
                None
            }
        }
    }
}

/// Watches the Events about `PostgresInstance` objects in all namespaces and
/// publishes those in project namespaces to `tx`, until `shutdown` resolves.
/// Errors restart the watch with backoff.
pub async fn watch(
    client: Client,
    namespace_prefix: String,
    tx: broadcast::Sender<PublishedEvent>,
    shutdown: impl Future<Output = ()>,
) {
    let config = watcher::Config::default().fields(&format!("regarding.kind={REGARDING_KIND}"));
    let stream = watcher(Api::<KubeEvent>::all(client.clone()), config).default_backoff();
    let mut projects = Projects {
        api: Api::all(client),
        prefix: namespace_prefix,
        known: HashMap::new(),
    };
    let mut live = LiveFilter::default();
    tokio::pin!(stream, shutdown);
    loop {
        let item = tokio::select! {
            () = &mut shutdown => break,
            item = stream.next() => item,
        };
        match item {
            None => break,
            Some(Err(e)) => warn!(error = %e, "the event watch failed; restarting it"),
            Some(Ok(event)) => {
                let Some(e) = live.accept(event) else {
                    continue;
                };
                let Some(project) = projects.of(&e.namespace().unwrap_or_default()).await else {
                    continue;
                };
                if let Some(p) = published(&e, &project) {
                    debug!(project = %p.project, instance = %p.event.instance, "live event");
                    // No subscriber is not an error.
                    let _ = tx.send(p);
                }
            }
        }
    }
    debug!("the event watch stopped");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn event(uid: &str, reason: &str, type_: &str, time: &str) -> KubeEvent {
        serde_json::from_value(json!({
            "metadata": { "name": format!("orders.{uid}"), "namespace": "strata-shop", "uid": uid },
            "eventTime": time,
            "reason": reason,
            "type": type_,
            "note": format!("note of {reason}"),
            "action": "Reconcile",
            "reportingController": "strata-operator",
            "reportingInstance": "op-a",
            "regarding": {
                "apiVersion": "strata.dev/v1alpha1",
                "kind": "PostgresInstance",
                "name": "orders",
                "namespace": "strata-shop",
                "uid": "6f1c3c1e-0000-4000-8000-000000000001",
            },
        }))
        .unwrap()
    }

    const UID: &str = "0b7a6d2e-0000-4000-8000-0000000000aa";

    #[test]
    fn a_phase_reason_is_a_phase_change() {
        let e = service_event(
            &event(UID, "Ready", "Normal", "2026-01-02T03:04:05.123456Z"),
            "orders",
        );
        assert_eq!(e.id, Uuid::parse_str(UID).unwrap());
        assert_eq!(e.kind, EventKind::PhaseChanged);
        assert_eq!(e.to, Some(Phase::Ready));
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(e.message, "note of Ready");
        assert_eq!(e.instance, "orders");
        assert_eq!(
            e.time,
            time::macros::datetime!(2026-01-02 03:04:05.123456 UTC)
        );
    }

    #[test]
    fn reasons_map_to_kinds_and_warnings_to_severity() {
        let kind = |reason: &str, type_: &str| {
            let e = service_event(&event(UID, reason, type_, "2026-01-02T03:04:05Z"), "x");
            (e.kind, e.severity, e.to)
        };
        assert_eq!(
            kind("Failed", "Warning"),
            (EventKind::Failed, Severity::Warning, Some(Phase::Failed))
        );
        assert_eq!(
            kind("CredentialsRotated", "Normal"),
            (EventKind::CredentialsRotated, Severity::Info, None)
        );
        assert_eq!(
            kind("CredentialsCreated", "Normal").0,
            EventKind::CredentialsRotated
        );
        assert_eq!(kind("Applied", "Normal").0, EventKind::Updated);
        assert_eq!(kind("Deleting", "Normal").0, EventKind::PhaseChanged);
        assert_eq!(
            kind("CleanupStarted", "Normal"),
            (EventKind::ProvisioningStep, Severity::Info, None)
        );
    }

    #[test]
    fn without_event_time_the_creation_time_counts_and_without_a_note_the_reason() {
        let mut e = event(UID, "Applied", "Normal", "2026-01-02T03:04:05Z");
        e.event_time = None;
        e.note = None;
        e.metadata.creation_timestamp = serde_json::from_value(json!("2026-02-03T04:05:06Z")).ok();
        let s = service_event(&e, "orders");
        assert_eq!(s.time, time::macros::datetime!(2026-02-03 04:05:06 UTC));
        assert_eq!(s.message, "Applied");
    }

    #[test]
    fn published_carries_the_instance_id_and_project() {
        let e = event(UID, "Ready", "Normal", "2026-01-02T03:04:05Z");
        let p = published(&e, "shop").unwrap();
        assert_eq!(
            p.instance_id,
            Uuid::parse_str("6f1c3c1e-0000-4000-8000-000000000001").unwrap()
        );
        assert_eq!(p.project, "shop");
        assert_eq!(p.event.instance, "orders");
        assert_eq!(p.event.to, Some(Phase::Ready));

        let mut other = e.clone();
        other.regarding.as_mut().unwrap().kind = Some("StatefulSet".into());
        assert!(published(&other, "shop").is_none());
        let mut no_uid = e;
        no_uid.regarding.as_mut().unwrap().uid = None;
        assert!(published(&no_uid, "shop").is_none());
    }

    fn uid(e: Option<KubeEvent>) -> Option<String> {
        e.and_then(|e| e.metadata.uid)
    }

    #[test]
    fn the_initial_list_is_history_and_new_events_are_live() {
        let old = event("a", "Ready", "Normal", "2026-01-02T03:00:00Z");
        let new = event("b", "Updating", "Normal", "2026-01-02T03:10:00Z");
        let mut live = LiveFilter::default();
        assert!(live.accept(watcher::Event::Init).is_none());
        assert!(
            live.accept(watcher::Event::InitApply(old.clone()))
                .is_none()
        );
        assert!(live.accept(watcher::Event::InitDone).is_none());
        assert_eq!(
            uid(live.accept(watcher::Event::Apply(new.clone()))),
            Some("b".into())
        );
        // A repeat counted in an existing event is no new service event.
        assert!(live.accept(watcher::Event::Apply(old)).is_none());
        assert!(live.accept(watcher::Event::Apply(new.clone())).is_none());
        assert!(live.accept(watcher::Event::Delete(new)).is_none());
    }

    #[test]
    fn a_relist_delivers_only_the_events_missed_meanwhile() {
        let seen = event("a", "Ready", "Normal", "2026-01-02T03:00:00Z");
        let missed = event("b", "Updating", "Normal", "2026-01-02T03:10:00Z");
        let mut live = LiveFilter::default();
        live.accept(watcher::Event::Init);
        live.accept(watcher::Event::InitDone);
        assert!(live.accept(watcher::Event::Apply(seen.clone())).is_some());
        // The watch fell behind and lists again.
        live.accept(watcher::Event::Init);
        assert!(
            live.accept(watcher::Event::InitApply(seen.clone()))
                .is_none()
        );
        assert_eq!(
            uid(live.accept(watcher::Event::InitApply(missed.clone()))),
            Some("b".into())
        );
        live.accept(watcher::Event::InitDone);
        // Both are known now; a third list finds nothing new.
        live.accept(watcher::Event::Init);
        assert!(live.accept(watcher::Event::InitApply(seen)).is_none());
        assert!(live.accept(watcher::Event::InitApply(missed)).is_none());
        live.accept(watcher::Event::InitDone);
    }

    #[test]
    fn an_expired_event_is_forgotten() {
        let e = event("a", "Ready", "Normal", "2026-01-02T03:00:00Z");
        let mut live = LiveFilter::default();
        live.accept(watcher::Event::Init);
        live.accept(watcher::Event::InitDone);
        assert!(live.accept(watcher::Event::Apply(e.clone())).is_some());
        live.accept(watcher::Event::Delete(e.clone()));
        live.accept(watcher::Event::Init);
        live.accept(watcher::Event::InitDone);
        assert!(live.known.is_empty());
    }

    #[test]
    fn an_event_without_uid_is_not_delivered() {
        let mut e = event("a", "Ready", "Normal", "2026-01-02T03:00:00Z");
        e.metadata.uid = None;
        let mut live = LiveFilter::default();
        live.accept(watcher::Event::Init);
        live.accept(watcher::Event::InitDone);
        assert!(live.accept(watcher::Event::Apply(e)).is_none());
    }
}
