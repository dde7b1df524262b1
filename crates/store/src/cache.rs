//! Hot reads kept in memory when the store is the process's own SQLite
//! file: the user behind a token, the caller's access to a project and an
//! instance — the three reads of every `GET` of an instance. Any committed
//! write transaction empties the cache, so a read never sees less than what
//! was committed before it started. Not used on PostgreSQL, where other API
//! replicas write too.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use strata_core::Role;

use crate::rows::{InstanceRecord, UserRow};

/// Entries per map before it is emptied (a bound, not an eviction policy).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct Maps {
    pub users: HashMap<String, Option<UserRow>>,
    /// As `Store::project_access` answers: no project, or the role (if any).
    #[allow(clippy::option_option)]
    pub access: HashMap<(String, String), Option<Option<Role>>>,
    pub instances: HashMap<(String, String), Option<InstanceRecord>>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every invalidation: a value read from the database under
    /// an older generation is not kept.
    generation: u64,
    maps: Maps,
}

#[derive(Default)]
pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything; called after each write transaction.
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.maps = Maps::default();
    }

    /// The cached value of `key` in `map`, or the one `load` reads (kept
    /// unless a write committed meanwhile).
    pub async fn get_or_load<K, V, E>(
        &self,
        map: fn(&mut Maps) -> &mut HashMap<K, V>,
        key: K,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E>
    where
        K: Hash + Eq,
        V: Clone,
    {
        let generation = {
            let mut inner = self.lock();
            if let Some(v) = map(&mut inner.maps).get(&key) {
                return Ok(v.clone());
            }
            inner.generation
        };
        let value = load.await?;
        let mut inner = self.lock();
        if inner.generation == generation {
            let m = map(&mut inner.maps);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(m: &mut Maps) -> &mut HashMap<String, Option<UserRow>> {
        &mut m.users
    }

    #[tokio::test]
    async fn loads_once_until_a_write() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let cache = ReadCache::default();
        let calls = AtomicU32::new(0);
        let load = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(None)
        };
        for _ in 0..3 {
            let v = cache.get_or_load(users, "u".into(), load()).await;
            assert_eq!(v.map(|u| u.is_none()), Ok(true));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.invalidate();
        let _ = cache.get_or_load(users, "u".into(), load()).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_value_read_across_a_write_is_not_kept() {
        let cache = ReadCache::default();
        let stale = async {
            // A write commits while this read is under way.
            cache.invalidate();
            Ok::<_, ()>(None)
        };
        let _ = cache.get_or_load(users, "u".into(), stale).await;
        assert!(cache.lock().maps.users.is_empty());
    }
}
