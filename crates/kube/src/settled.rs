//! What the operator last left in place for an instance, so that a reconcile
//! woken only by the echo of its own writes does nothing.
//!
//! Every write the operator makes (applying an owned object, writing the
//! status) comes back as a watch event and wakes the instance again. Without
//! this record each of those wake-ups would re-read and re-apply every object:
//! a no-op for the cluster, but a dozen server-side applies for the API server.
//! A full pass remembers the `resourceVersion` of the instance and of every
//! object it applied; the next reconcile compares them with the watch caches
//! and skips the pass when nothing moved. Any other writer (a user editing a
//! field, deleting a Service, annotating the Secret for a rotation, the
//! StatefulSet controller reporting readiness) changes a `resourceVersion`
//! and so gets a full pass. Pure: the caches are read through a closure.
//!
//! A version the pass wrote stands only for what the pass acted on: a write
//! answers with the object as it is after the write, which includes any
//! change someone else made since the pass read it (a rotation requested
//! while the status was being written). `acted_on_all_of` tells whether the
//! instance came back unchanged but for the status; when it did not, the
//! pass is not remembered and the next reconcile makes a full pass.
//!
//! The status also says what the instance's pods and claims report (why a
//! pod is not ready, whether a claim grew). Those are read, not applied:
//! the record keeps the version each was read at, or that it was absent,
//! and a pod whose status the kubelet changes (or a pod that appears) gets
//! a full pass like any other change.

use std::time::Duration;

use kube::ResourceExt;

use crate::crd::PostgresInstance;

/// The kinds of objects the operator applies for an instance (each watched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
    Service,
    StatefulSet,
    PodDisruptionBudget,
    NetworkPolicy,
    ServiceAccount,
    Role,
    RoleBinding,
    /// Read, not applied: the instance's pods and data claims.
    Pod,
    PersistentVolumeClaim,
}

/// The versions of one object that stand for "as the operator left it": the
/// one it wrote, and the one it saw before writing (a watch cache that lags
/// may still show that one; the write's own event follows and wakes the
/// instance again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub seen: Option<String>,
    pub wrote: String,
}

impl Versions {
    fn accepts(&self, current: Option<&str>) -> bool {
        match current {
            Some(v) => v == self.wrote || self.seen.as_deref() == Some(v),
            // Missing from the cache: deleted, or not seen yet. Both need a
            // pass (a lagging cache costs one no-op pass, a deletion is
            // repaired).
            None => false,
        }
    }
}

/// One applied object of an instance (the namespace is the instance's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: Kind,
    pub name: String,
    pub versions: Versions,
}

/// An object the pass read but did not write (a pod, a claim), at the
/// version it read; `None`: it did not exist. Any other version, or its
/// appearance, means the status may say something else now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub kind: Kind,
    pub name: String,
    pub version: Option<String>,
}

/// The record of one full pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub instance: Versions,
    pub objects: Vec<Applied>,
    pub related: Vec<Related>,
}

impl Settled {
    /// Whether nothing has changed since the pass: the instance and every
    /// object are at a version the pass saw or wrote. `current(kind, name)`
    /// reads an object's `resourceVersion` from the watch caches.
    pub fn holds(
        &self,
        instance_version: Option<&str>,
        current: impl Fn(Kind, &str) -> Option<String>,
    ) -> bool {
        self.instance.accepts(instance_version)
            && self
                .objects
                .iter()
                .all(|o| o.versions.accepts(current(o.kind, &o.name).as_deref()))
            && self
                .related
                .iter()
                .all(|r| current(r.kind, &r.name) == r.version)
    }
}

/// Whether `written` (the instance as the status write returned it) holds
/// nothing the pass did not act on: same spec, generation, labels,
/// annotations and deletion state as `read` (what the pass reconciled).
pub fn acted_on_all_of(read: &PostgresInstance, written: &PostgresInstance) -> bool {
    read.metadata.generation == written.metadata.generation
        && read.spec == written.spec
        && read.labels() == written.labels()
        && read.annotations() == written.annotations()
        && read.metadata.deletion_timestamp == written.metadata.deletion_timestamp
}

/// When a pass that found nothing to do should wake the instance again: at
/// the end of the resync interval counted from the last full pass, so that
/// every instance still gets a full pass (certificate renewal, repairs of
/// objects that are not watched) once per interval. `None` when that time has
/// (almost) come: a full pass is due now. The last tenth of the interval
/// counts as due, so that a timer firing a little early does not loop.
pub fn next_full_pass(since_last: Duration, resync: Duration) -> Option<Duration> {
    let due = resync.saturating_sub(resync / 10);
    (since_last < due).then(|| resync.saturating_sub(since_last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(seen: Option<&str>, wrote: &str) -> Versions {
        Versions {
            seen: seen.map(str::to_owned),
            wrote: wrote.to_owned(),
        }
    }

    fn record() -> Settled {
        Settled {
            instance: versions(Some("10"), "12"),
            objects: vec![
                Applied {
                    kind: Kind::Service,
                    name: "orders".into(),
                    versions: versions(None, "11"),
                },
                Applied {
                    kind: Kind::Secret,
                    name: "orders-credentials".into(),
                    versions: versions(Some("5"), "9"),
                },
            ],
            related: vec![
                Related {
                    kind: Kind::Pod,
                    name: "orders-0".into(),
                    version: Some("20".into()),
                },
                Related {
                    kind: Kind::PersistentVolumeClaim,
                    name: "data-orders-0".into(),
                    version: None,
                },
            ],
        }
    }

    const APPLIED: [(Kind, &str, &str); 3] = [
        (Kind::Service, "orders", "11"),
        (Kind::Secret, "orders-credentials", "9"),
        (Kind::Pod, "orders-0", "20"),
    ];

    #[test]
    fn a_pod_the_kubelet_changed_breaks_it() {
        assert!(record().holds(Some("12"), cache(&APPLIED)));
        // The kubelet reports ImagePullBackOff: a new version of the pod.
        let mut objects = APPLIED;
        objects[2] = (Kind::Pod, "orders-0", "21");
        assert!(!record().holds(Some("12"), cache(&objects)));
        // The pod is gone (evicted, deleted).
        assert!(!record().holds(Some("12"), cache(&APPLIED[..2])));
    }

    #[test]
    fn a_claim_that_appears_breaks_it() {
        let mut objects = APPLIED.to_vec();
        objects.push((Kind::PersistentVolumeClaim, "data-orders-0", "30"));
        assert!(!record().holds(Some("12"), cache(&objects)));
    }

    fn cache(entries: &[(Kind, &str, &str)]) -> impl Fn(Kind, &str) -> Option<String> {
        move |kind, name| {
            entries
                .iter()
                .find(|(k, n, _)| *k == kind && *n == name)
                .map(|(_, _, v)| (*v).to_owned())
        }
    }

    #[test]
    fn holds_when_everything_is_as_written() {
        assert!(record().holds(Some("12"), cache(&APPLIED)));
    }

    #[test]
    fn a_lagging_cache_showing_what_the_pass_saw_still_holds() {
        let objects = [
            (Kind::Service, "orders", "11"),
            (Kind::Secret, "orders-credentials", "5"),
            (Kind::Pod, "orders-0", "20"),
        ];
        assert!(record().holds(Some("10"), cache(&objects)));
    }

    #[test]
    fn another_writer_breaks_it() {
        // A hand edit of the Service.
        let objects = [
            (Kind::Service, "orders", "13"),
            (Kind::Secret, "orders-credentials", "9"),
            (Kind::Pod, "orders-0", "20"),
        ];
        assert!(!record().holds(Some("12"), cache(&objects)));
        // A spec change or a label on the instance.
        let objects = [
            (Kind::Service, "orders", "11"),
            (Kind::Secret, "orders-credentials", "9"),
            (Kind::Pod, "orders-0", "20"),
        ];
        assert!(!record().holds(Some("14"), cache(&objects)));
    }

    #[test]
    fn a_missing_object_breaks_it_even_when_the_pass_created_it() {
        let objects = [
            (Kind::Secret, "orders-credentials", "9"),
            (Kind::Pod, "orders-0", "20"),
        ];
        assert!(!record().holds(Some("12"), cache(&objects)));
        // Same name, other kind: not the object.
        let objects = [
            (Kind::ConfigMap, "orders", "11"),
            (Kind::Secret, "orders-credentials", "9"),
            (Kind::Pod, "orders-0", "20"),
        ];
        assert!(!record().holds(Some("12"), cache(&objects)));
    }

    #[test]
    fn an_unknown_instance_version_breaks_it() {
        let objects = [
            (Kind::Service, "orders", "11"),
            (Kind::Secret, "orders-credentials", "9"),
            (Kind::Pod, "orders-0", "20"),
        ];
        assert!(!record().holds(None, cache(&objects)));
    }

    fn instance() -> PostgresInstance {
        let mut i = PostgresInstance::new(
            "orders",
            crate::crd::PostgresInstanceSpec {
                version: "16".into(),
                plan: "small".into(),
                storage_gb: 20,
                acl: vec![],
                image: None,
                storage_class: None,
                external_access: false,
            },
        );
        i.metadata.generation = Some(2);
        i.metadata.resource_version = Some("10".into());
        i
    }

    #[test]
    fn a_status_write_alone_changes_nothing_the_pass_acted_on() {
        let read = instance();
        let mut written = read.clone();
        written.metadata.resource_version = Some("12".into());
        written.status = Some(crate::crd::PostgresInstanceStatus::default());
        assert!(acted_on_all_of(&read, &written));
    }

    #[test]
    fn a_change_that_came_back_with_the_status_write_is_not_acted_on() {
        let read = instance();
        let rotation_requested = {
            let mut w = read.clone();
            w.annotations_mut()
                .insert(crate::crd::ROTATE_ANNOTATION.into(), "r2".into());
            w
        };
        let new_generation = {
            let mut w = read.clone();
            w.spec.plan = "medium".into();
            w.metadata.generation = Some(3);
            w
        };
        let labelled = {
            let mut w = read.clone();
            w.labels_mut().insert("team".into(), "a".into());
            w
        };
        for written in [rotation_requested, new_generation, labelled] {
            assert!(!acted_on_all_of(&read, &written), "{written:?}");
        }
    }

    #[test]
    fn full_pass_is_due_once_per_resync_interval() {
        let resync = Duration::from_mins(5);
        assert_eq!(
            next_full_pass(Duration::from_secs(1), resync),
            Some(Duration::from_secs(299))
        );
        assert_eq!(
            next_full_pass(Duration::from_secs(269), resync),
            Some(Duration::from_secs(31))
        );
        assert_eq!(next_full_pass(Duration::from_secs(270), resync), None);
        assert_eq!(next_full_pass(Duration::from_mins(6), resync), None);
    }
}
