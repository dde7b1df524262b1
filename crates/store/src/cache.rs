//! Hot reads kept in memory when the store is the process's own SQLite
//! file: the user behind a token, the caller's access to a project and an
//! instance — the three reads of every `GET` of an instance. Any committed
//! write transaction empties the cache, so a read never sees less than what
//! was committed before it started. Not used on PostgreSQL, where other API
//! replicas write too. Each map is a bounded `moka` cache: when one is
//! full, the entries least worth keeping make room (a miss costs one read).

use std::hash::Hash;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use moka::sync::Cache;
use strata_core::Role;

use crate::rows::{InstanceRecord, UserRow};

/// Entries per map at most.
const MAX_ENTRIES: u64 = 10_000;

fn bounded<K, V>() -> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(MAX_ENTRIES).build()
}

pub(crate) struct Maps {
    pub users: Cache<String, Option<UserRow>>,
    /// As `Store::project_access` answers: no project, or the role (if any).
    #[allow(clippy::option_option)]
    pub access: Cache<(String, String), Option<Option<Role>>>,
    pub instances: Cache<(String, String), Option<InstanceRecord>>,
}

impl Default for Maps {
    fn default() -> Self {
        Self {
            users: bounded(),
            access: bounded(),
            instances: bounded(),
        }
    }
}

#[derive(Default)]
pub(crate) struct ReadCache {
    /// Bumped by every invalidation: a value read from the database under
    /// an older generation is not kept. Read-locked while the maps are read
    /// or a value is stored, write-locked while they are emptied, so that
    /// reads run side by side and never interleave with an invalidation.
    generation: RwLock<u64>,
    maps: Maps,
}

impl ReadCache {
    fn generation(&self) -> RwLockReadGuard<'_, u64> {
        self.generation
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn generation_mut(&self) -> RwLockWriteGuard<'_, u64> {
        self.generation
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything; called after each write transaction.
    pub fn invalidate(&self) {
        let mut generation = self.generation_mut();
        *generation += 1;
        self.maps.users.invalidate_all();
        self.maps.access.invalidate_all();
        self.maps.instances.invalidate_all();
    }

    /// The cached value of `key` in `map`, or the one `load` reads (kept
    /// unless a write committed meanwhile).
    pub async fn get_or_load<K, V, E>(
        &self,
        map: fn(&Maps) -> &Cache<K, V>,
        key: K,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let generation = {
            let generation = self.generation();
            if let Some(v) = map(&self.maps).get(&key) {
                return Ok(v);
            }
            *generation
        };
        let value = load.await?;
        let current = self.generation();
        if *current == generation {
            map(&self.maps).insert(key, value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(m: &Maps) -> &Cache<String, Option<UserRow>> {
        &m.users
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
    async fn a_full_map_stays_bounded() {
        let cache = ReadCache::default();
        let load = |_| async { Ok::<_, ()>(None) };
        let n = u32::try_from(MAX_ENTRIES).unwrap() * 3;
        for i in 0..n {
            let _ = cache.get_or_load(users, format!("user-{i}"), load(i)).await;
        }
        cache.maps.users.run_pending_tasks();
        assert!(
            cache.maps.users.entry_count() <= MAX_ENTRIES,
            "{}",
            cache.maps.users.entry_count()
        );
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
        cache.maps.users.run_pending_tasks();
        assert_eq!(cache.maps.users.entry_count(), 0);
        assert!(cache.maps.users.get("u").is_none());
    }
}
