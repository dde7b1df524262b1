//! The pool of prepared data directories: per installed major, a few
//! clusters made ahead of any request (a copy of the template, re-keyed,
//! with the prepared role and database), so that a create only renames one
//! into place. A background task keeps the pool full.
//!
//! An entry is handed out at most once: it is taken off its queue under a
//! mutex, then moved with one `rename(2)`; an entry is a new directory
//! name (`pool/<major>/<uuid>`) that is queued once and never reused.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::Inner;
use crate::cluster::Urgency;
use crate::error::StepError;

/// How long the refill waits after a failed preparation before it tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The queues of prepared entries, per major. No I/O.
#[derive(Debug)]
pub(crate) struct Pool {
    size: usize,
    queues: Mutex<HashMap<String, VecDeque<PathBuf>>>,
    /// Woken by every claim: the refill has work.
    wake: Notify,
    /// Entries ready, all majors together.
    prepared: Gauge,
}

impl Pool {
    pub fn new(size: usize, prepared: Gauge) -> Self {
        Self {
            size,
            queues: Mutex::default(),
            wake: Notify::new(),
            prepared,
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<PathBuf>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the oldest prepared entry of `version`, if there is one; it is
    /// the caller's from now on, and nobody else's.
    pub fn claim(&self, version: &str) -> Option<PathBuf> {
        let entry = self.queues().get_mut(version)?.pop_front();
        self.wake.notify_one();
        if entry.is_some() {
            self.prepared.dec();
        }
        entry
    }

    /// Adds a prepared entry of `version`.
    pub fn add(&self, version: &str, entry: PathBuf) {
        self.queues()
            .entry(version.to_owned())
            .or_default()
            .push_back(entry);
        self.prepared.inc();
    }

    /// Entries of `version` ready to be claimed.
    pub fn len(&self, version: &str) -> usize {
        self.queues().get(version).map_or(0, VecDeque::len)
    }

    /// Whether `version` has fewer entries than the pool keeps.
    pub fn wants(&self, version: &str) -> bool {
        self.missing(version) > 0
    }

    /// How many entries `version` lacks to be full.
    pub fn missing(&self, version: &str) -> usize {
        self.size.saturating_sub(self.len(version))
    }
}

impl Inner {
    /// Keeps every installed major's pool full until Strata stops. Entries
    /// left by an earlier run of Strata are removed, not trusted: the pool
    /// starts empty and fills in the background, one entry at a time, at a
    /// lower CPU priority than creates.
    pub(crate) async fn refill_pools(self: Arc<Self>) {
        let versions: Vec<String> = self
            .versions
            .all()
            .iter()
            .map(|v| v.version.clone())
            .collect();
        for version in &versions {
            if let Err(e) = self.ensure_template(version).await {
                tracing::warn!(error = %e.chain(), version, "cannot prepare the PostgreSQL template");
            }
        }
        if self.pool.size == 0 {
            return;
        }
        let root = self.root.join("pool");
        for version in &versions {
            let dir = root.join(version);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::warn!(error = %e, "cannot clear the pool of prepared clusters");
                return;
            }
            if let Err(e) = self.run_as.own_dir(&dir, 0o700) {
                tracing::warn!(error = %e, "cannot make the pool of prepared clusters");
                return;
            }
        }
        loop {
            let woken = self.pool.wake.notified();
            for version in &versions {
                while self.pool.wants(version) && !self.shutdown.is_cancelled() {
                    // Two at a time when two are missing: most of the work is
                    // copying and writing files, which two CPUs overlap.
                    let two = self.pool.missing(version) >= 2;
                    let (first, second) = tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        r = async {
                            if two {
                                let (a, b) = tokio::join!(
                                    self.prepare_entry(version),
                                    self.prepare_entry(version)
                                );
                                (a, Some(b))
                            } else {
                                (self.prepare_entry(version).await, None)
                            }
                        } => r,
                    };
                    let mut failed = None;
                    for prepared in std::iter::once(first).chain(second) {
                        match prepared {
                            Ok(entry) => self.pool.add(version, entry),
                            Err(e) => failed = Some(e),
                        }
                    }
                    if let Some(e) = failed {
                        tracing::warn!(error = %e.chain(), version, "cannot prepare a cluster for the pool");
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            () = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                        }
                        break;
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = woken => {}
            }
        }
    }

    /// One new entry of `version`'s pool, prepared under a temporary name
    /// and renamed when complete.
    async fn prepare_entry(&self, version: &str) -> Result<PathBuf, StepError> {
        let dir = self.root.join("pool").join(version);
        let id = Uuid::new_v4();
        let tmp = dir.join(format!("{id}.tmp"));
        let entry = dir.join(id.to_string());
        if let Err(e) = self
            .prepare_cluster(version, &tmp, Urgency::Background)
            .await
        {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &entry).map_err(StepError::io("adding to the pool"))?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_entry_is_claimed_once_even_by_concurrent_claimers() {
        let pool = Arc::new(Pool::new(1000, Gauge::default()));
        for i in 0..1000 {
            pool.add("15", PathBuf::from(format!("/pool/15/{i}")));
        }
        let claimers: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(entry) = pool.claim("15") {
                        mine.push(entry);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for c in claimers {
            all.extend(c.join().unwrap());
        }
        let distinct: BTreeSet<_> = all.iter().collect();
        assert_eq!(all.len(), 1000, "every entry was claimed");
        assert_eq!(distinct.len(), 1000, "and none twice");
        assert_eq!(pool.claim("15"), None);
    }

    #[test]
    fn the_pool_wants_entries_up_to_its_size_per_version() {
        let prepared = Gauge::default();
        let pool = Pool::new(2, prepared.clone());
        assert!(pool.wants("15"));
        pool.add("15", PathBuf::from("/pool/15/a"));
        pool.add("15", PathBuf::from("/pool/15/b"));
        assert!(!pool.wants("15"));
        assert_eq!(pool.missing("15"), 0);
        assert_eq!(pool.missing("16"), 2);
        assert_eq!(prepared.get(), 2);
        assert!(pool.wants("16"), "each major has its own pool");
        assert_eq!(pool.claim("15"), Some(PathBuf::from("/pool/15/a")));
        assert!(pool.wants("15"));
        assert_eq!(pool.claim("16"), None);
        assert_eq!(prepared.get(), 1);
    }
}
